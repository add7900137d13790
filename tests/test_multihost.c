/* Several hosts on one machine (issue 10, section 6): network namespaces on a
 * bridge (netns.h), one running PostgreSQL, two service hosts (A, B) running
 * people and pets against it, a third (C) on a database of its own, and a
 * gateway host whose load threads (httpload.h) send steady GETs and POSTs.
 * Scenarios, in an order that leaves every fault a live host to fail over
 * to: both hosts carry calls; kill -9 of host A (then A comes back); a
 * partition of host B (then healed); PostgreSQL restarted; the gateway's
 * service name moved to host C. Measured times are printed as
 * "multihost: SCENARIO NAME_ms=N" lines; only "it happens at all" within
 * generous deadlines is asserted. Needs root and `ip netns`; skipped (77)
 * without them or without PostgreSQL. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "httpload.h"
#include "netns.h"
#include "pgserver.h"
#include "proc.h"
#include "rpc/clock.h"

#define PEOPLE_PORT "5002"     /* every host's own ports, as on real machines */
#define PETS_PORT "5003"
#define GW_PORT 5001
#define DEADLINE_MS 2000       /* the gateway's --deadline-ms */
#define RESOLVE_MS 1000        /* its --resolve-ms */
#define GIVE_UP_MS 30000       /* "it happens at all" */
#define CARRY_WINDOW_MS 500    /* a host carries traffic: each worker answers */
#define CARRY_CALLS 10         /* this many calls in one window (Status alone: ~1) */

typedef struct host {
    const netns_host *nh;
    char dir[256];      /* locks/ (its /tmp/tcpops-UID), data/, logs */
    const char *db;     /* its --db URL */
    proc people, pets;
} host;

typedef struct world {
    netns_net net;
    pgserver pg;
    char url2[320];     /* host C's database */
    host a, b, c;
    const netns_host *gwh;
    proc gw;
    int dns;            /* the gateway re-resolves names (--resolve-ms) */
    httpload *load;
} world;

static world W;

/* ---- hosts ---- */

/* Starts build/bin/prog in h's namespace with h's own lock directory
 * mounted over /tmp/tcpops-UID, as if h were a machine of its own. */
static int start_in(host *h, proc *p, const char *prog, const char *log, char **args)
{
    char bin[512], locks[300], logp[320];
    char *argv[32];
    int n = 0;
    snprintf(locks, sizeof(locks), "%s/locks", h->dir);
    snprintf(logp, sizeof(logp), "%s/%s", h->dir, log);
    argv[n++] = (char *)netns_ip();
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = (char *)h->nh->ns;
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = "mount --bind \"$0\" /tmp/tcpops-$(id -u) && exec \"$@\"";
    argv[n++] = locks;
    argv[n++] = (char *)proc_bin(prog, bin, sizeof(bin));
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return proc_start_logged(p, argv, logp);
}

/* One worker's Status, asked from inside its host: calls, pid and the
 * member list as text. 0, or -1 when it did not answer. */
typedef struct wstatus {
    long long calls;
    long pid;
    char members[1024];
} wstatus;

static int status_of(const netns_host *nh, const char *port, wstatus *st)
{
    char bin[512], addr[64], out[8192], err[1024];
    snprintf(addr, sizeof(addr), "%s:%s", nh->ip, port);
    char *argv[] = {(char *)netns_ip(), "netns", "exec", (char *)nh->ns,
                    (char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr,
                    "--timeout", "1000", "status", NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 5000) != 0)
        return -1;
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je), *m;
    size_t i, used = 0;
    if (doc == NULL)
        return -1;
    st->calls = json_integer_value(json_object_get(doc, "calls"));
    st->pid = (long)json_integer_value(json_object_get(doc, "pid"));
    st->members[0] = '\0';
    json_array_foreach(json_object_get(doc, "members"), i, m) {
        const char *a = json_string_value(json_object_get(m, "address"));
        used += (size_t)snprintf(st->members + used, sizeof(st->members) - used, "%s ",
                                 a != NULL ? a : "?");
        if (used >= sizeof(st->members))
            break;
    }
    json_decref(doc);
    return 0;
}

/* Starts h's people and pets workers and waits until both answer. */
static void host_start(host *h)
{
    char listen[2][64], member[64], data[300];
    snprintf(listen[0], sizeof(listen[0]), "%s:" PEOPLE_PORT, h->nh->ip);
    snprintf(listen[1], sizeof(listen[1]), "%s:" PETS_PORT, h->nh->ip);
    snprintf(member, sizeof(member), "%s:0", h->nh->ip);
    snprintf(data, sizeof(data), "%s/data", h->dir);
    static const char *const progs[] = {"tcpops-people", "tcpops-pets"};
    static const char *const logs[] = {"people.log", "pets.log"};
    proc *ps[] = {&h->people, &h->pets};
    for (int i = 0; i < 2; i++) {
        char *args[] = {"--listen", listen[i], "--member-listen", member,
                        "--advertise", (char *)h->nh->ip, "--db", (char *)h->db,
                        "--data-dir", data, "--threads", "2", NULL};
        assert_int_equal(start_in(h, ps[i], progs[i], logs[i], args), 0);
    }
    int64_t deadline = rpc_now_ms() + 20000;
    wstatus st;
    while (status_of(h->nh, PEOPLE_PORT, &st) < 0 || status_of(h->nh, PETS_PORT, &st) < 0) {
        if (rpc_now_ms() > deadline)
            fail_msg("host %s: people and pets did not answer within 20 s (logs in %s)",
                     h->nh->ns, h->dir);
        usleep(50 * 1000);
    }
}

/* Whether both of h's workers answer at least CARRY_CALLS calls within
 * one CARRY_WINDOW_MS window, which only the gateway's traffic does. */
static int carries(const host *h)
{
    wstatus p0, t0, p1, t1;
    if (status_of(h->nh, PEOPLE_PORT, &p0) < 0 || status_of(h->nh, PETS_PORT, &t0) < 0)
        return 0;
    usleep(CARRY_WINDOW_MS * 1000);
    if (status_of(h->nh, PEOPLE_PORT, &p1) < 0 || status_of(h->nh, PETS_PORT, &t1) < 0)
        return 0;
    return p1.calls - p0.calls >= CARRY_CALLS && t1.calls - t0.calls >= CARRY_CALLS;
}

/* Waits until h carries traffic; the ms from since, or -1 after GIVE_UP_MS. */
static long wait_carries(const host *h, int64_t since)
{
    while (rpc_now_ms() - since < GIVE_UP_MS)
        if (carries(h))
            return (long)(rpc_now_ms() - since);
    return -1;
}

/* Waits until the Status of `asked`'s people worker lists no worker of
 * `gone` (its heartbeats stopped). 0, or -1 after GIVE_UP_MS. */
static int wait_unlisted(const host *asked, const host *gone)
{
    char needle[32];
    snprintf(needle, sizeof(needle), "%s:", gone->nh->ip);
    int64_t deadline = rpc_now_ms() + GIVE_UP_MS;
    wstatus st;
    while (rpc_now_ms() < deadline) {
        if (status_of(asked->nh, PEOPLE_PORT, &st) == 0 && strstr(st.members, needle) == NULL)
            return 0;
        usleep(100 * 1000);
    }
    return -1;
}

static void host_kill9(host *h)
{
    proc_signal(&h->people, SIGKILL);
    proc_signal(&h->pets, SIGKILL);
    proc_wait(&h->people, 10000);
    proc_wait(&h->pets, 10000);
}

/* Whether h's workers still run (none exited). */
static int host_alive(host *h)
{
    return proc_wait(&h->people, 0) == -1 && proc_wait(&h->pets, 0) == -1;
}

/* ---- what the load saw ---- */

typedef struct tally {
    int gets, get_fail, posts, post_fail, post_not_503, unanswered;
    int64_t last_get_fail_end; /* 0: none */
    int64_t max_ms;
    char example[160];
} tally;

/* Tallies the requests that were in flight at any time in [from, to). */
static void tally_window(int64_t from, int64_t to, tally *t)
{
    httpload_req *r = NULL;
    size_t n = httpload_snapshot(W.load, &r);
    memset(t, 0, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        if (r[i].end_ms < from || r[i].start_ms >= to)
            continue;
        int64_t ms = r[i].end_ms - r[i].start_ms;
        t->max_ms = ms > t->max_ms ? ms : t->max_ms;
        t->unanswered += r[i].status == 0;
        if (!r[i].ok && !t->example[0])
            snprintf(t->example, sizeof(t->example), "%s %s -> %d after %lld ms",
                     r[i].post ? "POST" : "GET", r[i].post ? r[i].name : "",
                     r[i].status, (long long)ms);
        if (r[i].post) {
            t->posts++;
            t->post_fail += !r[i].ok;
            t->post_not_503 += !r[i].ok && r[i].status != 503;
        } else {
            t->gets++;
            t->get_fail += !r[i].ok;
            if (!r[i].ok && r[i].end_ms > t->last_get_fail_end)
                t->last_get_fail_end = r[i].end_ms;
        }
    }
    free(r);
}

static void print_tally(const char *what, const tally *t)
{
    print_message("multihost: %s: %d GETs (%d failed), %d POSTs (%d failed, %d not 503), "
                  "%d unanswered, longest %lld ms%s%s\n", what, t->gets, t->get_fail, t->posts,
                  t->post_fail, t->post_not_503, t->unanswered, (long long)t->max_ms,
                  t->example[0] ? "; first failure: " : "", t->example);
}

/* Waits until n GETs in a row that started after since succeeded: the
 * moment the first of them started, or -1 after GIVE_UP_MS. */
static int64_t wait_gets_ok(int64_t since, int n)
{
    while (rpc_now_ms() - since < GIVE_UP_MS) {
        httpload_req *r = NULL;
        size_t k = httpload_snapshot(W.load, &r);
        int run = 0;
        int64_t first = -1;
        for (size_t i = 0; i < k && run < n; i++) {
            if (r[i].start_ms < since || r[i].post)
                continue;
            run = r[i].ok ? run + 1 : 0;
            first = run == 1 ? r[i].start_ms : first;
        }
        free(r);
        if (run >= n)
            return first;
        usleep(50 * 1000);
    }
    return -1;
}

/* ---- the world ---- */

/* The hosts file the gateway's namespace sees: both service names at ips. */
static void point_names(const char *ip1, const char *ip2)
{
    char text[512], err[512];
    int n = snprintf(text, sizeof(text), "127.0.0.1 localhost\n");
    for (const char *ip = ip1; ip != NULL; ip = ip == ip1 ? ip2 : NULL)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s people.mh.test pets.mh.test\n",
                      ip);
    if (netns_write_hosts(W.gwh, text, err, sizeof(err)) < 0)
        fail_msg("%s", err);
}

/* Whether this build's gateway re-resolves names (--resolve-ms). */
static int gateway_resolves(void)
{
    char bin[512], out[16384], err[512];
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--help", NULL};
    return proc_run(argv, out, sizeof(out), err, sizeof(err), 5000) == 0 &&
           strstr(out, "--resolve-ms") != NULL;
}

static void start_gateway(void)
{
    char bin[512], listen[32], people[96], pets[96], resolve[16], log[300];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", GW_PORT);
    snprintf(resolve, sizeof(resolve), "%d", RESOLVE_MS);
    snprintf(log, sizeof(log), "%s/gateway.log", W.a.dir);
    if (W.dns) {
        point_names(W.a.nh->ip, W.b.nh->ip);
        snprintf(people, sizeof(people), "people.mh.test:" PEOPLE_PORT);
        snprintf(pets, sizeof(pets), "pets.mh.test:" PETS_PORT);
    } else {
        snprintf(people, sizeof(people), "%s:" PEOPLE_PORT ",%s:" PEOPLE_PORT, W.a.nh->ip,
                 W.b.nh->ip);
        snprintf(pets, sizeof(pets), "%s:" PETS_PORT ",%s:" PETS_PORT, W.a.nh->ip, W.b.nh->ip);
    }
    char *argv[] = {(char *)netns_ip(), "netns", "exec", (char *)W.gwh->ns,
                    (char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", people, "--pets", pets, "--deadline-ms", "2000",
                    "--access-log=false", "--threads", "64",
                    W.dns ? "--resolve-ms" : NULL, resolve, NULL};
    assert_int_equal(proc_start_logged(&W.gw, argv, log), 0);
    int64_t deadline = rpc_now_ms() + 20000;
    for (;;) {
        http_resp r;
        int ok = http_once(GW_PORT, "GET", "/readyz", NULL, NULL, &r) == 0 && r.status == 200;
        if (ok || rpc_now_ms() > deadline)
            http_resp_free(&r);
        if (ok)
            return;
        if (rpc_now_ms() > deadline)
            fail_msg("the gateway was not ready within 20 s (log in %s)", log);
        usleep(50 * 1000);
    }
}

/* At exit, also after a stop signal: the hosts' directories. */
static void remove_host_dirs(void)
{
    host *hs[] = {&W.a, &W.b, &W.c};
    for (int i = 0; i < 3; i++)
        if (hs[i]->dir[0])
            rm_rf(hs[i]->dir);
}

static void add_host(host *h, const char *role, int last, const char *db)
{
    static int registered;
    if (!registered++)
        atexit(remove_host_dirs);
    char err[512], locks[300];
    h->nh = netns_add_host(&W.net, role, last, err, sizeof(err));
    if (h->nh == NULL)
        fail_msg("host %s: %s", role, err);
    h->db = db;
    assert_int_equal(make_temp_dir(h->dir, sizeof(h->dir)), 0);
    snprintf(locks, sizeof(locks), "%s/locks", h->dir);
    assert_int_equal(mkdir(locks, 0700), 0);
}

static int setup(void **state)
{
    char err[1024], out[512], mnt[64];
    (void)state;
    if (netns_setup(&W.net, "tcpopsmh", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    const netns_host *dbh = netns_add_host(&W.net, "db", 1, err, sizeof(err));
    if (dbh == NULL)
        fail_msg("%s", err);
    if (pgserver_start_in(&W.pg, dbh->ns, dbh->ip, err, sizeof(err)) < 0)
        fail_msg("PostgreSQL: %s", err);
    if (pgserver_sql(&W.pg, "CREATE DATABASE tcpops2", out, sizeof(out)) < 0)
        fail_msg("CREATE DATABASE tcpops2: %s", out);
    snprintf(W.url2, sizeof(W.url2), "postgresql://tcpops@%s:%d/tcpops2", dbh->ip, W.pg.port);
    /* Each host mounts its own lock directory here (start_in). */
    snprintf(mnt, sizeof(mnt), "/tmp/tcpops-%u", (unsigned)getuid());
    if (mkdir(mnt, 0700) < 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", mnt, strerror(errno));
    W.dns = gateway_resolves();
    add_host(&W.a, "a", 2, W.pg.url);
    add_host(&W.b, "b", 3, W.pg.url);
    if (W.dns)
        add_host(&W.c, "c", 5, W.url2);
    W.gwh = netns_add_host(&W.net, "gw", 4, err, sizeof(err));
    if (W.gwh == NULL)
        fail_msg("%s", err);
    host_start(&W.a);
    host_start(&W.b);
    if (W.dns)
        host_start(&W.c);
    /* This thread, and the load threads it starts, talk from the gateway's
     * host: 127.0.0.1:GW_PORT there is the gateway. */
    assert_int_equal(netns_enter(W.gwh), 0);
    start_gateway();
    httpload_cfg lc = {.port = GW_PORT, .threads = 4, .pace_ms = 15,
                       .timeout_ms = DEADLINE_MS + 3000, .prefix = "mh"};
    assert_int_equal(httpload_start(&W.load, &lc), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    httpload_free(W.load);
    W.load = NULL;
    proc_stop(&W.gw);
    host *hs[] = {&W.a, &W.b, &W.c};
    for (int i = 0; i < 3; i++) {
        proc_stop(&hs[i]->people);
        proc_stop(&hs[i]->pets);
    }
    remove_host_dirs();
    pgserver_destroy(&W.pg);
    netns_destroy();
    return 0;
}

/* ---- scenarios ---- */

static void test_both_hosts_carry_calls(void **state)
{
    (void)state;
    int64_t t0 = rpc_now_ms();
    long a = wait_carries(&W.a, t0), b = wait_carries(&W.b, t0);
    print_message("multihost: start carry_a_ms=%ld carry_b_ms=%ld\n", a, b);
    if (a < 0 || b < 0)
        fail_msg("both service hosts carry calls: expected >= %d calls per %d ms on each "
                 "worker within %d s; got host a %s, host b %s", CARRY_CALLS, CARRY_WINDOW_MS,
                 GIVE_UP_MS / 1000, a < 0 ? "no" : "yes", b < 0 ? "no" : "yes");
}

/* kill -9 every process of host A: B takes every GET at once (0 failed),
 * a POST may fail only with 503; then A comes back and carries again. */
static void test_kill9_host_a(void **state)
{
    (void)state;
    int64_t t_kill = rpc_now_ms();
    host_kill9(&W.a);
    /* The gateway has had every chance to notice once A's heartbeats have
     * expired from B's member list and a deadline more has passed. */
    assert_int_equal(wait_unlisted(&W.b, &W.a), 0);
    int64_t settled = rpc_now_ms() + DEADLINE_MS;
    while (rpc_now_ms() < settled)
        usleep(50 * 1000);
    tally t;
    tally_window(t_kill, rpc_now_ms(), &t);
    print_tally("kill9 host a", &t);
    int64_t t_up = rpc_now_ms();
    host_start(&W.a);
    long back = wait_carries(&W.a, t_up);
    print_message("multihost: kill9 restarted_host_carries_ms=%ld\n", back);
    if (t.get_fail != 0 || t.post_not_503 != 0 || t.unanswered != 0)
        fail_msg("kill -9 of host a: expected 0 failed GETs and only 503 POST failures; got "
                 "%d failed GETs, %d POST failures not 503, %d unanswered (%s)", t.get_fail,
                 t.post_not_503, t.unanswered, t.example);
    assert_true(t.gets > 0);
    if (back < 0)
        fail_msg("host a restarted: expected it to carry calls within %d s; it did not",
                 GIVE_UP_MS / 1000);
}

/* Host B's link down (packets vanish): nothing waits past its deadline,
 * GETs fail over to A; after healing B carries traffic again. */
static void test_partition_host_b(void **state)
{
    char err[512];
    (void)state;
    int64_t t_down = rpc_now_ms();
    if (netns_link(&W.net, W.b.nh, 0, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    int64_t ok_from = wait_gets_ok(t_down, 40);
    int unlisted = wait_unlisted(&W.a, &W.b);
    tally t;
    tally_window(t_down, rpc_now_ms(), &t);
    print_tally("partition host b", &t);
    long failover = t.last_get_fail_end > 0 ? (long)(t.last_get_fail_end - t_down) : 0;
    print_message("multihost: partition failover_ms=%ld\n", failover);
    int64_t t_up = rpc_now_ms();
    if (netns_link(&W.net, W.b.nh, 1, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    long heal = wait_carries(&W.b, t_up);
    print_message("multihost: partition heal_ms=%ld\n", heal);
    if (ok_from < 0 || unlisted < 0)
        fail_msg("partition of host b: expected GETs to succeed again and b to leave the "
                 "member list within %d s; got %s, %s", GIVE_UP_MS / 1000,
                 ok_from < 0 ? "GETs still failing" : "GETs fine",
                 unlisted < 0 ? "b still listed" : "b unlisted");
    if (t.unanswered != 0)
        fail_msg("partition of host b: expected every request answered by its deadline "
                 "(%d ms, %d ms more allowed); %d were not", DEADLINE_MS, 3000, t.unanswered);
    if (heal < 0)
        fail_msg("healed host b: expected it to carry calls within %d s; it did not",
                 GIVE_UP_MS / 1000);
}

/* pg_ctl restart -m fast under the load: no worker exits, reads resume. */
static void test_postgresql_restart(void **state)
{
    char err[1024];
    (void)state;
    int64_t t0 = rpc_now_ms();
    if (pgserver_restart(&W.pg, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    int64_t t_back = rpc_now_ms();
    int64_t ok_from = wait_gets_ok(t_back, 40);
    tally t;
    tally_window(t0, rpc_now_ms(), &t);
    print_tally("postgresql restart", &t);
    tally after;
    tally_window(t_back, rpc_now_ms(), &after);
    long resume = after.last_get_fail_end > 0 ? (long)(after.last_get_fail_end - t_back) : 0;
    print_message("multihost: pg_restart down_ms=%lld reads_resume_ms=%ld\n",
                  (long long)(t_back - t0), resume);
    if (ok_from < 0)
        fail_msg("after PostgreSQL restarted: expected GETs to succeed within %d s; they did "
                 "not", GIVE_UP_MS / 1000);
    host *hs[] = {&W.a, &W.b, &W.c};
    for (int i = 0; i < (W.dns ? 3 : 2); i++)
        if (!host_alive(hs[i]))
            fail_msg("PostgreSQL restart: expected every worker to keep running; one on %s "
                     "exited (logs in %s)", hs[i]->nh->ns, hs[i]->dir);
}

/* GET /people/pets?owner=NAME's status from the gateway, 0 on no answer. */
static int owner_status(const char *name)
{
    char path[128];
    http_resp r;
    snprintf(path, sizeof(path), "/people/pets?owner=%s", name);
    if (http_once(GW_PORT, "GET", path, NULL, NULL, &r) < 0)
        return 0;
    int st = r.status;
    http_resp_free(&r);
    return st;
}

/* The gateway's service names move from A and B to C, whose workers keep
 * their data and members in a database of their own: the gateway follows
 * (a person only C's database has is found through it). */
static void test_dns_follows(void **state)
{
    char bin[512], addr[64], marker[32], out[1024], err[1024];
    (void)state;
    if (!W.dns) {
        print_message("multihost: dns: skipped: this gateway has no --resolve-ms (branch "
                      "gwdns not merged)\n");
        skip();
    }
    snprintf(marker, sizeof(marker), "mhc%d", (int)getpid());
    snprintf(addr, sizeof(addr), "%s:" PEOPLE_PORT, W.c.nh->ip);
    char *argv[] = {(char *)netns_ip(), "netns", "exec", (char *)W.c.nh->ns,
                    (char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr,
                    "people", "create", marker, NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 10000) != 0)
        fail_msg("tcpops-cli people create %s on host c: %s%s", marker, out, err);
    int before = owner_status(marker);
    if (before != 404)
        fail_msg("before the names move: expected 404 for an owner only host c knows; got %d",
                 before);
    int64_t t_flip = rpc_now_ms();
    point_names(W.c.nh->ip, NULL);
    int run = 0;
    int64_t first = 0;
    while (run < 20 && rpc_now_ms() - t_flip < GIVE_UP_MS) {
        int64_t t = rpc_now_ms();
        int st = owner_status(marker);
        run = st == 200 ? run + 1 : 0;
        first = run == 1 ? t : first;
        usleep(20 * 1000);
    }
    print_message("multihost: dns follow_ms=%lld (resolve_ms=%d)\n",
                  (long long)(first - t_flip), RESOLVE_MS);
    if (run < 20)
        fail_msg("names moved to host c: expected GET /people/pets?owner=%s to answer 200 "
                 "(20 in a row) within %d s; it did not", marker, GIVE_UP_MS / 1000);
}

/* The names of people in db (one per line) into a sorted array. */
static size_t stored_names(const char *url, char ***names)
{
    pgserver q = W.pg;
    static char out[4 << 20];
    snprintf(q.url, sizeof(q.url), "%s", url);
    if (pgserver_sql(&q, "SELECT name FROM people WHERE name LIKE 'mh-%' ORDER BY name", out,
                     sizeof(out)) < 0)
        fail_msg("reading people: %.300s", out);
    size_t n = 0, cap = 1024;
    char **v = malloc(cap * sizeof(*v));
    for (char *save = NULL, *t = strtok_r(out, "\n", &save); t != NULL;
         t = strtok_r(NULL, "\n", &save)) {
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        v[n++] = strdup(t);
    }
    *names = v;
    return n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every POST the gateway acknowledged (201) is stored in one of the
 * databases, whatever happened meanwhile. */
static void test_acknowledged_posts_stored(void **state)
{
    (void)state;
    httpload_stop(W.load); /* nothing is in flight from here on */
    httpload_req *r = NULL;
    size_t n = httpload_snapshot(W.load, &r), acked = 0, missing = 0;
    char **s1 = NULL, **s2 = NULL;
    size_t n1 = stored_names(W.pg.url, &s1), n2 = W.dns ? stored_names(W.url2, &s2) : 0;
    qsort(s1, n1, sizeof(*s1), cmp_str);
    qsort(s2, n2, sizeof(*s2), cmp_str);
    char example[32] = "";
    for (size_t i = 0; i < n; i++) {
        if (!r[i].post || r[i].status != 201)
            continue;
        acked++;
        char *key = r[i].name;
        if (bsearch(&key, s1, n1, sizeof(*s1), cmp_str) == NULL &&
            (n2 == 0 || bsearch(&key, s2, n2, sizeof(*s2), cmp_str) == NULL) && missing++ == 0)
            snprintf(example, sizeof(example), "%s", r[i].name);
    }
    print_message("multihost: %zu POSTs acknowledged, %zu rows stored, %zu missing\n", acked,
                  n1 + n2, missing);
    if (missing != 0)
        fail_msg("expected every acknowledged POST stored; %zu missing (e.g. %s)", missing,
                 example);
    free(r);
    assert_true(acked > 0);
    for (size_t i = 0; i < n1; i++)
        free(s1[i]);
    for (size_t i = 0; i < n2; i++)
        free(s2[i]);
    free(s1);
    free(s2);
}

/* A stop signal (ctest's, or Ctrl-C) ends the run through exit(), so the
 * atexit handlers stop every process and delete the namespaces. */
static void *on_stop_signal(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    sigwait(set, &sig);
    fprintf(stderr, "test_multihost: signal %d: cleaning up\n", sig);
    exit(128 + sig);
}

int main(void)
{
    char why[512];
    if (!netns_available(why, sizeof(why)) || !pgserver_available(why, sizeof(why))) {
        printf("test_multihost: skipped: %s\n", why);
        return PGSERVER_SKIP;
    }
    static sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGHUP);
    sigaddset(&stops, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &stops, NULL);
    pthread_t th;
    pthread_create(&th, NULL, on_stop_signal, &stops);
    pthread_detach(th);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_hosts_carry_calls),
        cmocka_unit_test(test_kill9_host_a),
        cmocka_unit_test(test_partition_host_b),
        cmocka_unit_test(test_postgresql_restart),
        cmocka_unit_test(test_dns_follows),
        cmocka_unit_test(test_acknowledged_posts_stored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
