/* The world of test_multihost: hosts in network namespaces (mhworld.h). */
#include "mhworld.h"

#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "rpc/clock.h"

static mh_world *W; /* the one world of this process, for remove_host_dirs */

/* ---- hosts ---- */

/* Starts build/bin/prog in h's namespace with h's own lock directory
 * mounted over /tmp/tcpops-UID, as if h were a machine of its own. */
static int start_in(mh_host *h, proc *p, const char *prog, const char *log, char **args)
{
    char bin[512], locks[300], logp[320];
    char *argv[48];
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
    for (int i = 0; args[i] != NULL && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return proc_start_logged(p, argv, logp);
}

/* dev-certs.sh's file name in the world's certificate directory. */
static char *cert_path(const char *name)
{
    static char paths[6][320];
    static const char *const names[6] = {"server.crt", "server.key", "client.crt",
                                         "client.key", "ca.crt", ""};
    int i = 0;
    while (i < 5 && strcmp(names[i], name) != 0)
        i++;
    snprintf(paths[i], sizeof(paths[i]), "%s/%s", W->certs, name);
    return paths[i];
}

/* Appends --tls-cert PREFIX.crt --tls-key PREFIX.key --tls-ca ca.crt. */
static int add_tls(char **argv, int n, const char *prefix)
{
    char crt[32], key[32];
    snprintf(crt, sizeof(crt), "%s.crt", prefix);
    snprintf(key, sizeof(key), "%s.key", prefix);
    argv[n++] = "--tls-cert";
    argv[n++] = cert_path(crt);
    argv[n++] = "--tls-key";
    argv[n++] = cert_path(key);
    argv[n++] = "--tls-ca";
    argv[n++] = cert_path("ca.crt");
    return n;
}

int mh_cli_tls(char **argv, int n)
{
    return W->tls ? add_tls(argv, n, "client") : n;
}

int mh_status_of(const mh_host *h, const char *port, mh_status *st)
{
    const netns_host *nh = h->nh;
    char bin[512], addr[64], out[8192], err[1024];
    snprintf(addr, sizeof(addr), "%s:%s", nh->ip, port);
    char *argv[20] = {(char *)netns_ip(), "netns", "exec", (char *)nh->ns,
                      (char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr,
                      "--timeout", "1000"};
    int n = mh_cli_tls(argv, 9);
    argv[n++] = "status";
    argv[n] = NULL;
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

/* Starts h: `tcpops up --apps people,pets`, and waits until both services
 * answer there. */
void mh_host_start(mh_host *h)
{
    char listen[2][64], data[300];
    snprintf(listen[0], sizeof(listen[0]), "%s:" MH_PEOPLE_PORT, h->nh->ip);
    snprintf(listen[1], sizeof(listen[1]), "%s:" MH_PETS_PORT, h->nh->ip);
    snprintf(data, sizeof(data), "%s/data", h->dir);
    char *args[32] = {"up", "--apps", "people,pets", "--data-dir", data, "--people", listen[0],
                      "--pets", listen[1], "--db", (char *)h->db, "--advertise",
                      (char *)h->nh->ip, "--people-args", "--threads 2", "--pets-args",
                      "--threads 2"};
    int n = 17;
    /* The 198.18 addresses face the bridge: TLS, or plaintext knowingly. */
    if (W->tls)
        n = add_tls(args, n, "server");
    else
        args[n++] = "--insecure";
    args[n] = NULL;
    assert_int_equal(start_in(h, &h->sup, "tcpops", "tcpops.log", args), 0);
    int64_t deadline = rpc_now_ms() + 20000;
    mh_status st;
    while (mh_status_of(h, MH_PEOPLE_PORT, &st) < 0 || mh_status_of(h, MH_PETS_PORT, &st) < 0) {
        if (rpc_now_ms() > deadline)
            fail_msg("host %s: people and pets did not answer within 20 s (logs in %s)",
                     h->nh->ns, h->dir);
        usleep(50 * 1000);
    }
}

/* Whether both of h's workers answer at least MH_CARRY_CALLS calls within
 * one MH_CARRY_WINDOW_MS window, which only the gateway's traffic does. */
static int carries(const mh_host *h)
{
    mh_status p0, t0, p1, t1;
    if (mh_status_of(h, MH_PEOPLE_PORT, &p0) < 0 || mh_status_of(h, MH_PETS_PORT, &t0) < 0)
        return 0;
    usleep(MH_CARRY_WINDOW_MS * 1000);
    if (mh_status_of(h, MH_PEOPLE_PORT, &p1) < 0 || mh_status_of(h, MH_PETS_PORT, &t1) < 0)
        return 0;
    return p1.calls - p0.calls >= MH_CARRY_CALLS && t1.calls - t0.calls >= MH_CARRY_CALLS;
}

/* Waits until h carries traffic; the ms from since, or -1 after MH_GIVE_UP_MS. */
long mh_wait_carries(const mh_host *h, int64_t since)
{
    while (rpc_now_ms() - since < MH_GIVE_UP_MS)
        if (carries(h))
            return (long)(rpc_now_ms() - since);
    return -1;
}

/* Waits until the Status of `asked`'s people worker lists no worker of
 * `gone` (its heartbeats stopped). 0, or -1 after MH_GIVE_UP_MS. */
int mh_wait_unlisted(const mh_host *asked, const mh_host *gone)
{
    char needle[32];
    snprintf(needle, sizeof(needle), "%s:", gone->nh->ip);
    int64_t deadline = rpc_now_ms() + MH_GIVE_UP_MS;
    mh_status st;
    while (rpc_now_ms() < deadline) {
        if (mh_status_of(asked, MH_PEOPLE_PORT, &st) == 0 && strstr(st.members, needle) == NULL)
            return 0;
        usleep(100 * 1000);
    }
    return -1;
}

/* The pids of h's people and pets workers (from their Status) into
 * pids[2]. 0, or -1 when one does not answer. */
int mh_worker_pids(const mh_host *h, long pids[2])
{
    mh_status p, t;
    if (mh_status_of(h, MH_PEOPLE_PORT, &p) < 0 || mh_status_of(h, MH_PETS_PORT, &t) < 0)
        return -1;
    pids[0] = p.pid;
    pids[1] = t.pid;
    return 0;
}

/* kill -9 of every process of h, by pid: the supervisor is stopped first,
 * so it neither restarts the workers nor lets them drain (they would get
 * its death signal, SIGTERM, if it died first). */
void mh_host_kill9(mh_host *h)
{
    long pids[2] = {0, 0};
    assert_int_equal(mh_worker_pids(h, pids), 0);
    proc_signal(&h->sup, SIGSTOP);
    kill((pid_t)pids[0], SIGKILL);
    kill((pid_t)pids[1], SIGKILL);
    proc_signal(&h->sup, SIGKILL);
    proc_wait(&h->sup, 10000);
}
/* ---- the world ---- */

/* The hosts file the gateway's namespace sees: both service names at ips. */
void mh_point_names(const char *ip1, const char *ip2)
{
    char text[512], err[512];
    int n = snprintf(text, sizeof(text), "127.0.0.1 localhost\n");
    for (const char *ip = ip1; ip != NULL; ip = ip == ip1 ? ip2 : NULL)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s people.mh.test pets.mh.test\n",
                      ip);
    if (netns_write_hosts(W->g.nh, text, err, sizeof(err)) < 0)
        fail_msg("%s", err);
}

/* Waits until the gateway's /readyz is 200 (20 s at most). */
static void wait_ready(const char *log)
{
    int64_t deadline = rpc_now_ms() + 20000;
    for (;;) {
        http_resp r;
        int st = http_once(MH_GW_PORT, "GET", "/readyz", NULL, NULL, &r) == 0 ? r.status : 0;
        if (st != 0)
            http_resp_free(&r);
        if (st == 200)
            return;
        if (rpc_now_ms() > deadline)
            fail_msg("the gateway: expected /readyz 200 within 20 s; got %d (log in %s)", st,
                     log);
        usleep(50 * 1000);
    }
}

/* Starts the gateway host: `tcpops up --apps gateway` with both services'
 * lists as names (people.mh.test, pets.mh.test) that its hosts file points
 * at A and B, resolved again every MH_RESOLVE_MS. */
static void start_gateway(void)
{
    char listen[32], people[96], pets[96], gwargs[160], log[300], data[300];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", MH_GW_PORT);
    snprintf(data, sizeof(data), "%s/data", W->g.dir);
    mh_point_names(W->a.nh->ip, W->b.nh->ip);
    snprintf(people, sizeof(people), "people.mh.test:" MH_PEOPLE_PORT);
    snprintf(pets, sizeof(pets), "pets.mh.test:" MH_PETS_PORT);
    snprintf(gwargs, sizeof(gwargs),
             "--deadline-ms %d --resolve-ms %d --access-log=false --threads 64", MH_DEADLINE_MS,
             MH_RESOLVE_MS);
    char *args[24] = {"up", "--apps", "gateway", "--data-dir", data, "--gateway", listen,
                      "--people", people, "--pets", pets, "--gateway-args", gwargs};
    args[W->tls ? add_tls(args, 13, "client") : 13] = NULL;
    snprintf(log, sizeof(log), "%s/tcpops.log", W->g.dir);
    assert_int_equal(start_in(&W->g, &W->g.sup, "tcpops", "tcpops.log", args), 0);
    wait_ready(log);
}

/* At exit, also after a stop signal: the hosts' directories. */
static void remove_host_dirs(void)
{
    mh_host *hs[] = {&W->g, &W->a, &W->b, &W->c};
    for (int i = 0; i < 4; i++)
        if (hs[i]->dir[0])
            rm_rf(hs[i]->dir);
    if (W->certs[0])
        rm_rf(W->certs);
}

/* The certificates of a TLS run: the services' valid for each service
 * host's address and the names the gateway dials, made by the script the
 * README uses. */
static void make_certs(void)
{
    char out[2048], err[2048];
    assert_int_equal(make_temp_dir(W->certs, sizeof(W->certs)), 0);
    char *argv[] = {TCPOPS_DEV_CERTS, W->certs, (char *)W->a.nh->ip, (char *)W->b.nh->ip,
                    (char *)W->c.nh->ip, "people.mh.test", "pets.mh.test", NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 30000) != 0)
        fail_msg("%s: expected exit 0; got: %s%s", TCPOPS_DEV_CERTS, out, err);
}

static void add_host(mh_host *h, const char *role, int last, const char *db)
{
    static int registered;
    if (!registered++)
        atexit(remove_host_dirs);
    char err[512], locks[300];
    h->nh = netns_add_host(&W->net, role, last, err, sizeof(err));
    if (h->nh == NULL)
        fail_msg("host %s: %s", role, err);
    h->db = db;
    assert_int_equal(make_temp_dir(h->dir, sizeof(h->dir)), 0);
    snprintf(locks, sizeof(locks), "%s/locks", h->dir);
    assert_int_equal(mkdir(locks, 0700), 0);
}

void mh_world_start(mh_world *w)
{
    char err[1024], out[512], mnt[64];
    W = w;
    if (netns_setup(&W->net, "tcpopsmh", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    const netns_host *dbh = netns_add_host(&W->net, "db", 1, err, sizeof(err));
    if (dbh == NULL)
        fail_msg("%s", err);
    if (pgserver_start_in(&W->pg, dbh->ns, dbh->ip, err, sizeof(err)) < 0)
        fail_msg("PostgreSQL: %s", err);
    if (pgserver_sql(&W->pg, "CREATE DATABASE tcpops2", out, sizeof(out)) < 0)
        fail_msg("CREATE DATABASE tcpops2: %s", out);
    snprintf(W->url2, sizeof(W->url2), "postgresql://tcpops@%s:%d/tcpops2", dbh->ip,
             W->pg.port);
    /* Each host mounts its own lock directory here (start_in). */
    snprintf(mnt, sizeof(mnt), "/tmp/tcpops-%u", (unsigned)getuid());
    if (mkdir(mnt, 0700) < 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", mnt, strerror(errno));
    add_host(&W->a, "a", 2, W->pg.url);
    add_host(&W->b, "b", 3, W->pg.url);
    add_host(&W->c, "c", 5, W->url2);
    add_host(&W->g, "gw", 4, NULL);
    if (W->tls)
        make_certs();
    mh_host_start(&W->a);
    mh_host_start(&W->b);
    mh_host_start(&W->c);
    /* The calling thread talks from the gateway's host from here on. */
    assert_int_equal(netns_enter(W->g.nh), 0);
    start_gateway();
}

void mh_world_stop(mh_world *w)
{
    mh_host *hs[] = {&w->g, &w->a, &w->b, &w->c};
    for (int i = 0; i < 4; i++)
        proc_stop(&hs[i]->sup);
    remove_host_dirs();
    pgserver_destroy(&w->pg);
    netns_destroy();
}
