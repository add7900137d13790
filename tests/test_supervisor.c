/* The supervisor `tcpops up` running the whole system on free ports, under a
 * steady load, while workers are killed, scaled, restarted, starved of a
 * database or grow past their memory limit (RELIABILITY.md scenarios 2, 3,
 * 12-17); and the logs an operator ships (test_logs_*): `tcpops up
 * --detach` writes DIR/tcpops.log where every line parses as logfmt (or,
 * with --log-format json, as a JSON object) with no key twice and
 * worker=APP.N on every worker's line; the request id has one name from
 * the gateway to the service; `tcpops logs` shows the last lines, one
 * app's, and follows the file across logrotate's rename (SIGHUP reopens it)
 * and a truncation; a gateway that crashes loses none of the lines it
 * buffered. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "http_client.h"
#include "proc.h"
#include "util/logfmt.h"

typedef struct fixture {
    char dir[256];
    char log[300];
    char tcpops_bin[320];     /* the tcpops `up` runs; "" = build/bin's */
    proc master;
    pid_t detached;           /* the master of `up --detach` (up_detached), 0 none */
    proc follower;            /* a `tcpops logs -f`, pid 0 none */
    int gw_port, people_port, pets_port;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->log, sizeof(fx->log), "%s/master.log", fx->dir);
    fx->gw_port = free_port();
    fx->people_port = free_port();
    fx->pets_port = free_port();
    *state = fx;
    return 0;
}

static int tcpops(fixture *fx, char *out, size_t outlen, ...);

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop(&fx->follower);
    if (fx->detached > 0) {
        /* down answers once the workers left; the master exits after. */
        tcpops(fx, NULL, 0, "down", NULL);
        for (int64_t deadline = rpc_now_ms() + 15000;
             kill(fx->detached, 0) == 0 && rpc_now_ms() < deadline;)
            usleep(10 * 1000);
        kill(fx->detached, SIGKILL);
    }
    proc_stop_gracefully(&fx->master, 15000); /* the workers leave with the master */
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* argv of `tcpops up` with the fixture's ports and the extra flags of ap
 * (NULL-terminated); the strings live in u. */
typedef struct up_cmd {
    char bin[512], gw[64], people[64], pets[64];
    char *argv[32];
} up_cmd;

static void up_argv(fixture *fx, up_cmd *u, va_list ap)
{
    int n = 0;
    snprintf(u->gw, sizeof(u->gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(u->people, sizeof(u->people), "127.0.0.1:%d", fx->people_port);
    snprintf(u->pets, sizeof(u->pets), "127.0.0.1:%d", fx->pets_port);
    u->argv[n++] = fx->tcpops_bin[0] != '\0' ? fx->tcpops_bin
                                             : (char *)proc_bin("tcpops", u->bin, sizeof(u->bin));
    u->argv[n++] = "up";
    u->argv[n++] = "--data-dir";
    u->argv[n++] = fx->dir;
    u->argv[n++] = "--gateway";
    u->argv[n++] = u->gw;
    u->argv[n++] = "--people";
    u->argv[n++] = u->people;
    u->argv[n++] = "--pets";
    u->argv[n++] = u->pets;
    u->argv[n++] = "--gateway-args";
    /* civetweb starts every thread up front: the default 1024 is more than
     * these loaders need, and tests run side by side. */
    u->argv[n++] = "--access-log=false --threads=128";
    for (char *a; n < 31 && (a = va_arg(ap, char *)) != NULL;)
        u->argv[n++] = a;
    u->argv[n] = NULL;
}

static void wait_ready(fixture *fx);

/* Runs `tcpops up` with the fixture's ports and the extra flags given. */
static void up(fixture *fx, ...)
{
    up_cmd u;
    char **argv = u.argv;
    va_list ap;
    va_start(ap, fx);
    up_argv(fx, &u, ap);
    va_end(ap);
    assert_int_equal(proc_start_logged(&fx->master, argv, fx->log), 0);
    wait_ready(fx);
}

/* Ready when the gateway says every service is reachable. */
static void wait_ready(fixture *fx)
{
    for (int i = 0; i < 1000; i++) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", "/readyz", NULL, NULL, &r) == 0) {
            int ok = r.status == 200;
            http_resp_free(&r);
            if (ok)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("tcpops up: the gateway was not ready within 20 s (log in %s)", fx->log);
}

/* Runs `tcpops --data-dir DIR ARGS...`; returns its exit code, stdout and
 * stderr (err: errlen bytes). */
static int vtcpops(fixture *fx, char *out, size_t outlen, char *err, size_t errlen, va_list ap)
{
    char dummy[16], cmd[256];
    if (out == NULL) {
        out = dummy;
        outlen = sizeof(dummy);
    }
    int code = proc_run_tool("tcpops", "--data-dir", fx->dir, ap, out, outlen, err, errlen,
                             120000, cmd, sizeof(cmd));
    if (code != 0)
        print_message("tcpops %s: exit %d: %s\n", cmd, code, err);
    return code;
}

/* Runs `tcpops --data-dir DIR ARGS...`; returns its exit code and stdout. */
static int tcpops(fixture *fx, char *out, size_t outlen, ...)
{
    char err[4096];
    va_list ap;
    va_start(ap, outlen);
    int code = vtcpops(fx, out, outlen, err, sizeof(err), ap);
    va_end(ap);
    return code;
}

/* tcpops with its stderr too. */
static int tcpops_err(fixture *fx, char *out, size_t outlen, char *err, size_t errlen, ...)
{
    va_list ap;
    va_start(ap, errlen);
    int code = vtcpops(fx, out, outlen, err, errlen, ap);
    va_end(ap);
    return code;
}

/* The workers of app from `tcpops ps --json`: pids[] and states (running
 * count returned through *running). Returns how many there are. */
static int workers(fixture *fx, const char *app, int *pids, int max, int *running,
                   int *restarts)
{
    char out[16384];
    int n = 0;
    *running = 0;
    if (restarts != NULL)
        *restarts = 0;
    if (tcpops(fx, out, sizeof(out), "ps", "--json", NULL) != 0)
        return -1;
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    json_t *w;
    size_t i;
    json_array_foreach(json_object_get(doc, "workers"), i, w) {
        if (strcmp(json_string_value(json_object_get(w, "app")), app) != 0)
            continue;
        if (n < max)
            pids[n] = (int)json_integer_value(json_object_get(w, "pid"));
        n++;
        if (strcmp(json_string_value(json_object_get(w, "state")), "running") == 0)
            (*running)++;
        if (restarts != NULL)
            *restarts += (int)json_integer_value(json_object_get(w, "restarts"));
    }
    json_decref(doc);
    return n;
}

/* Waits (up to a deadline) until n workers of app run; fills pids. Fails the
 * test with what it saw otherwise. */
static void wait_running(fixture *fx, const char *app, int n, int *pids, int max)
{
    int running = 0;
    int64_t deadline = rpc_now_ms() + 10000;
    while (rpc_now_ms() < deadline) {
        workers(fx, app, pids, max, &running, NULL);
        if (running >= n)
            return;
        usleep(50 * 1000);
    }
    fail_msg("expected %d %s workers running, saw %d", n, app, running);
}

static int state_of(fixture *fx, const char *app, const char *want)
{
    char out[16384];
    if (tcpops(fx, out, sizeof(out), "ps", "--json", NULL) != 0)
        return 0;
    char needle[128];
    snprintf(needle, sizeof(needle), "\"app\":\"%s\"", app);
    const char *p = strstr(out, needle);
    return p != NULL && strstr(p, want) != NULL;
}

/* ---- load ---- */

#define LOADERS 6

typedef struct loader {
    int port, index;
    int posts;                /* also create people */
    _Atomic int *stop;
    _Atomic int ok;           /* read while the load runs */
    int non2xx, wrong, transport;
    int only_503_504;         /* every failure was a JSON 503/504 */
    char problem[512];
    char (*created)[32];
    int ncreated;
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    http_conn c = {.fd = -1, .port = l->port};
    l->only_503_504 = 1;
    for (int i = 0; !atomic_load(l->stop); i++) {
        char path[96], name[32];
        const char *method = "GET", *want = "[\"bixa\",\"rex\"]";
        int kind = i % 5;
        if (l->posts && kind == 4) {
            method = "POST";
            snprintf(name, sizeof(name), "l%d-%d", l->index, i);
            snprintf(path, sizeof(path), "/people?name=%s", name);
            want = NULL;
        } else if (kind == 3) {
            snprintf(path, sizeof(path), "/people?limit=2");
            want = "[\"bob\",\"jane\"]";
        } else {
            snprintf(path, sizeof(path), "/people/pets?owner=bob");
        }
        http_resp r;
        if (http_do(&c, method, path, NULL, NULL, 0, &r, 10000) < 0) {
            if (l->transport++ == 0)
                snprintf(l->problem, sizeof(l->problem), "%s %s: no answer", method, path);
            l->only_503_504 = 0;
            continue;
        }
        if (r.status >= 200 && r.status < 300) {
            if (want != NULL && strcmp(r.body, want) != 0) {
                if (l->wrong++ == 0)
                    snprintf(l->problem, sizeof(l->problem), "%s %s: wrong body %.200s", method,
                             path, r.body);
            } else {
                l->ok++;
                if (want == NULL && l->ncreated < 100000)
                    snprintf(l->created[l->ncreated++], 32, "%s", name);
            }
        } else {
            if ((r.status != 503 && r.status != 504) || strncmp(r.body, "{\"error\":", 9) != 0)
                l->only_503_504 = 0;
            if (l->non2xx++ == 0)
                snprintf(l->problem, sizeof(l->problem), "%s %s: %d %.200s", method, path,
                         r.status, r.body);
        }
        http_resp_free(&r);
    }
    http_close(&c);
    return NULL;
}

typedef struct load_run {
    pthread_t th[LOADERS];
    loader l[LOADERS];
    _Atomic int stop;
} load_run;

static void load_start(load_run *lr, fixture *fx, int posts)
{
    memset(lr, 0, sizeof(*lr));
    for (int i = 0; i < LOADERS; i++) {
        lr->l[i] = (loader){.port = fx->gw_port, .index = i, .posts = posts, .stop = &lr->stop};
        lr->l[i].created = calloc(100000, 32);
        pthread_create(&lr->th[i], NULL, load, &lr->l[i]);
    }
}

/* Stops the load and sums it up into *sum (created names are kept). */
static void load_stop(load_run *lr, loader *sum)
{
    atomic_store(&lr->stop, 1);
    memset(sum, 0, sizeof(*sum));
    sum->only_503_504 = 1;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(lr->th[i], NULL);
        sum->ok += lr->l[i].ok;
        sum->non2xx += lr->l[i].non2xx;
        sum->wrong += lr->l[i].wrong;
        sum->transport += lr->l[i].transport;
        sum->only_503_504 &= lr->l[i].only_503_504;
        if (lr->l[i].problem[0] && !sum->problem[0])
            snprintf(sum->problem, sizeof(sum->problem), "%s", lr->l[i].problem);
    }
}

static void load_free(load_run *lr)
{
    for (int i = 0; i < LOADERS; i++)
        free(lr->l[i].created);
}

static void expect_clean(const loader *s, const char *what)
{
    print_message("%s: %d ok, %d non-2xx, %d wrong, %d unanswered\n", what, s->ok, s->non2xx,
                  s->wrong, s->transport);
    if (s->non2xx != 0 || s->wrong != 0 || s->transport != 0)
        fail_msg("%s: expected zero non-2xx; got %d non-2xx, %d wrong, %d unanswered (%s)",
                 what, s->non2xx, s->wrong, s->transport, s->problem);
    assert_true(s->ok > 0);
}

/* ---- scenario 2 ---- */

static void test_kill9_only_pets_worker(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    int pids[4], running;
    assert_int_equal(workers(fx, "pets", pids, 4, &running, NULL), 1);
    load_run lr;
    load_start(&lr, fx, 0);
    usleep(500 * 1000);
    kill(pids[0], SIGKILL);
    /* The supervisor brings it back; then success resumes. */
    int back = 0, newpid[4], restarts = 0;
    for (int i = 0; i < 200 && !back; i++) {
        usleep(50 * 1000);
        back = workers(fx, "pets", newpid, 4, &running, &restarts) == 1 && running == 1 &&
               newpid[0] != pids[0] && restarts == 1;
    }
    assert_true(back);
    int ok_before = 0;
    for (int i = 0; i < LOADERS; i++)
        ok_before += lr.l[i].ok;
    usleep(1500 * 1000);
    loader s;
    load_stop(&lr, &s);
    load_free(&lr);
    print_message("kill -9 pets: %d ok, %d failed (all JSON 503/504: %s)\n", s.ok, s.non2xx,
                  s.only_503_504 ? "yes" : "no");
    assert_int_equal(s.wrong, 0);
    assert_int_equal(s.transport, 0);
    if (!s.only_503_504)
        fail_msg("expected every failure to be a JSON 503/504; first: %s", s.problem);
    assert_true(s.ok > ok_before); /* success resumed after the restart */

    /* A rolling restart replaces the worker; its restart count goes on. */
    int code = tcpops(fx, NULL, 0, "restart", "pets", NULL);
    if (code != 0)
        fail_msg("tcpops restart pets: expected exit 0, got %d", code);
    int after[4];
    if (workers(fx, "pets", after, 4, &running, &restarts) != 1 || after[0] == newpid[0] ||
        restarts != 1)
        fail_msg("after a rolling restart expected one new pets worker (not pid %d) with "
                 "restarts 1, as before it; got pid %d, restarts %d",
                 newpid[0], after[0], restarts);
}

/* ---- scenario 3 ---- */

static void test_kill9_one_of_four_people_workers(void **state)
{
    fixture *fx = *state;
    up(fx, "--workers", "people=4", NULL);
    int pids[8];
    wait_running(fx, "people", 4, pids, 8);
    usleep(1500 * 1000); /* the gateway knows all four members */
    load_run lr;
    load_start(&lr, fx, 1);
    usleep(800 * 1000);
    kill(pids[1], SIGKILL);
    usleep(2500 * 1000);
    atomic_store(&lr.stop, 1);
    int get_failed = 0, post_failed_other = 0, posts_ok = 0;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(lr.th[i], NULL);
        posts_ok += lr.l[i].ncreated;
    }
    /* Reads: none may fail. Writes: a failure must be a 503, never a lost 2xx. */
    for (int i = 0; i < LOADERS; i++) {
        if (lr.l[i].wrong || lr.l[i].transport)
            fail_msg("loader %d: %s", i, lr.l[i].problem);
        if (lr.l[i].non2xx && strncmp(lr.l[i].problem, "GET", 3) == 0)
            get_failed += lr.l[i].non2xx;
        else if (lr.l[i].non2xx && strstr(lr.l[i].problem, ": 503 ") == NULL)
            post_failed_other++;
    }
    if (get_failed != 0)
        fail_msg("expected zero failed GETs after kill -9 of one of 4 workers; got %d (%s)",
                 get_failed, lr.l[0].problem);
    assert_int_equal(post_failed_other, 0);
    /* Every acknowledged create is there. */
    http_resp r;
    int missing = 0;
    for (int i = 0; i < LOADERS; i++) {
        for (int k = 0; k < lr.l[i].ncreated; k++) {
            char path[96];
            snprintf(path, sizeof(path), "/people/pets?owner=%s", lr.l[i].created[k]);
            assert_int_equal(http_once(fx->gw_port, "GET", path, NULL, NULL, &r), 0);
            missing += r.status != 200;
            http_resp_free(&r);
        }
    }
    load_free(&lr);
    print_message("kill -9 one of 4 people workers: %d creates acknowledged, %d missing\n",
                  posts_ok, missing);
    assert_int_equal(missing, 0);
}

/* ---- scenarios 12, 13 ---- */

static void test_scale_up_then_down_under_load(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    load_run lr;
    load_start(&lr, fx, 1);
    usleep(300 * 1000);
    assert_int_equal(tcpops(fx, NULL, 0, "scale", "people", "4", NULL), 0);
    usleep(3000 * 1000); /* load spreads over the new members */

    /* Each new worker served calls: ask each member for its own count. */
    char out[8192], bin[512], err[1024];
    http_resp st;
    assert_int_equal(http_once(fx->gw_port, "GET", "/status", NULL, NULL, &st), 0);
    json_error_t je;
    json_t *doc = json_loads(st.body, 0, &je);
    http_resp_free(&st);
    json_t *members = json_object_get(json_object_get(json_object_get(doc, "services"), "people"),
                                      "members");
    assert_int_equal(json_array_size(members), 4);
    size_t i;
    json_t *mbr;
    json_array_foreach(members, i, mbr) {
        char *argv[] = {(char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr",
                        (char *)json_string_value(json_object_get(mbr, "address")), "status",
                        NULL};
        assert_int_equal(proc_run(argv, out, sizeof(out), err, sizeof(err), 5000), 0);
        const char *calls = strstr(out, "\"calls\":");
        assert_non_null(calls);
        if (atol(calls + 8) < 10)
            fail_msg("member %s served %ld calls after scale-up; expected its share",
                     json_string_value(json_object_get(mbr, "address")), atol(calls + 8));
    }
    json_decref(doc);

    assert_int_equal(tcpops(fx, NULL, 0, "scale", "people", "1", NULL), 0);
    usleep(1000 * 1000);
    loader s;
    load_stop(&lr, &s);
    load_free(&lr);
    expect_clean(&s, "scale people 1 -> 4 -> 1 under load");
    int pids[8], running;
    assert_int_equal(workers(fx, "people", pids, 8, &running, NULL), 1);
    /* The removed workers drained and exited 0. */
    FILE *f = fopen(fx->log, "r");
    char line[4096];
    int exited0 = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        exited0 += strstr(line, "msg=stopped worker=people.") != NULL &&
                   strstr(line, "exit=0") != NULL;
    if (f != NULL)
        fclose(f);
    assert_int_equal(exited0, 3);
}

/* ---- scenario 14 ---- */

static void test_rolling_restart_under_load(void **state)
{
    fixture *fx = *state;
    up(fx, "--workers", "pets=2", NULL);
    int before[4], after[4], running;
    assert_int_equal(workers(fx, "pets", before, 4, &running, NULL), 2);
    usleep(1200 * 1000);
    load_run lr;
    load_start(&lr, fx, 1);
    usleep(300 * 1000);
    assert_int_equal(tcpops(fx, NULL, 0, "restart", "pets", NULL), 0);
    assert_int_equal(tcpops(fx, NULL, 0, "restart", "people", NULL), 0);
    usleep(500 * 1000);
    loader s;
    load_stop(&lr, &s);
    load_free(&lr);
    expect_clean(&s, "restart pets (2 workers) and people (1) under load");
    assert_int_equal(workers(fx, "pets", after, 4, &running, NULL), 2);
    assert_int_equal(running, 2);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            assert_int_not_equal(after[i], before[k]);
}

/* ---- scenario 15 ---- */

typedef struct one_req {
    int port;
    const char *path;
    int status;
} one_req;

static void *one(void *arg)
{
    one_req *o = arg;
    http_resp r;
    o->status = http_once(o->port, "GET", o->path, NULL, NULL, &r) == 0 ? r.status : -1;
    http_resp_free(&r);
    return NULL;
}

static void test_sigterm_with_idle_busy_and_stuck(void **state)
{
    fixture *fx = *state;
    /* people.List takes 300 ms (busy); pets.GetByIds never finishes in time
     * (stuck: 30 s against the gateway's 2 s deadline). */
    up(fx, "--drain-ms", "4000", "--people-args",
       "--drain-ms 1000 --delay-ms 300 --delay-method people.List", "--pets-args",
       "--drain-ms 1000 --delay-ms 30000 --delay-method pets.GetByIds", NULL);
    http_conn idle = {.fd = -1, .port = fx->gw_port};
    http_resp r;
    assert_int_equal(http_do(&idle, "GET", "/healthz", NULL, NULL, 0, &r, 5000), 0);
    http_resp_free(&r); /* an idle keep-alive connection stays open */

    one_req busy = {.port = fx->gw_port, .path = "/people?limit=2"};
    one_req stuck = {.port = fx->gw_port, .path = "/people/pets?owner=bob"};
    pthread_t tb, ts;
    pthread_create(&ts, NULL, one, &stuck);
    pthread_create(&tb, NULL, one, &busy);
    usleep(100 * 1000);
    proc_signal(&fx->master, SIGTERM);
    pthread_join(tb, NULL);
    pthread_join(ts, NULL);
    int code = proc_wait(&fx->master, 30000);
    http_close(&idle);
    assert_int_equal(busy.status, 200); /* in flight: finished */
    if (stuck.status != 503 && stuck.status != 504)
        fail_msg("stuck call: expected 503 or 504, got %d", stuck.status);
    assert_int_equal(code, 0);
    /* Everything it started is gone. */
    assert_int_not_equal(wait_port(fx->gw_port, 200), 0);
    assert_int_not_equal(wait_port(fx->people_port, 200), 0);
    assert_int_not_equal(wait_port(fx->pets_port, 200), 0);
}

/* ---- scenario 16 ---- */

static void test_crash_loop_then_recovery(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    /* pets.db turned into a directory: a pets worker cannot open its store.
     * (Tests run as root, so a permission change would not stop it.) */
    char db[400], side[400];
    snprintf(db, sizeof(db), "%s/pets.db", fx->dir);
    snprintf(side, sizeof(side), "%s/pets.db.saved", fx->dir);
    assert_int_equal(rename(db, side), 0);
    assert_int_equal(mkdir(db, 0755), 0);
    int pids[4], running;
    workers(fx, "pets", pids, 4, &running, NULL);
    kill(pids[0], SIGKILL);

    int looping = 0;
    for (int i = 0; i < 200 && !looping; i++) {
        usleep(50 * 1000);
        looping = state_of(fx, "pets", "crash-looping");
    }
    assert_true(looping);
    int restarts;
    workers(fx, "pets", pids, 4, &running, &restarts);
    print_message("pets crash-looping after %d restarts\n", restarts);
    assert_in_range(restarts, 5, 12); /* bounded: backoff, not a storm */
    /* The others keep serving. */
    http_resp r;
    assert_int_equal(http_once(fx->gw_port, "GET", "/people", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http_once(fx->gw_port, "GET", "/people/pets?owner=bob", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 503);
    http_resp_free(&r);

    /* The cause goes away: it recovers by itself. */
    assert_int_equal(rmdir(db), 0);
    assert_int_equal(rename(side, db), 0);
    int ok = 0;
    for (int i = 0; i < 400 && !ok; i++) {
        usleep(50 * 1000);
        if (http_once(fx->gw_port, "GET", "/people/pets?owner=bob", NULL, NULL, &r) == 0) {
            ok = r.status == 200 && strcmp(r.body, "[\"bixa\",\"rex\"]") == 0;
            http_resp_free(&r);
        }
    }
    assert_true(ok);
    assert_true(state_of(fx, "pets", "\"running\""));
}

/* 1 when a line of the file at path contains both a and b. */
static int log_has(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int found = 0;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

/* A second `tcpops up --data-dir other` on the same ports is refused ("in
 * use") rather than its workers serving beside the first deployment's
 * (SO_REUSEPORT), so every create lands in the first store and every list
 * sees it. */
static void test_second_deployment_on_the_same_ports(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    char bin[512], gw[64], people[64], pets[64], other[300], olog[320];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    snprintf(other, sizeof(other), "%s/other", fx->dir);
    snprintf(olog, sizeof(olog), "%s/other.log", fx->dir);
    char *const argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "up", "--data-dir",
                          other, "--gateway", gw, "--people", people, "--pets", pets,
                          "--gateway-args", "--access-log=false --threads=16", NULL};
    proc second = {0};
    assert_int_equal(proc_start_logged(&second, argv, olog), 0);
    /* Refused either before anything starts (tcpops up's preflight binds
     * each port without SO_REUSEPORT) or by the workers' own claim. */
    int refused = 0, code = -1;
    for (int i = 0; i < 500 && !refused; i++) {
        usleep(20 * 1000);
        if (code < 0 && (code = proc_wait(&second, 0)) >= 0)
            refused = code != 0 && log_has(olog, "cannot listen", "in use");
        else
            refused = log_has(olog, "app=people", "address in use") &&
                      log_has(olog, "app=pets", "address in use");
    }
    /* Creates and lists while the second deployment keeps trying. */
    int created = 0;
    for (int i = 0; i < 20; i++) {
        char path[64];
        http_resp r;
        snprintf(path, sizeof(path), "/people?name=split%d", i);
        if (http_once(fx->gw_port, "POST", path, NULL, NULL, &r) == 0) {
            created += r.status == 201;
            http_resp_free(&r);
        }
    }
    int complete = 0;
    for (int i = 0; i < 10; i++) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", "/people?limit=1000", NULL, NULL, &r) == 0) {
            complete += r.status == 200 && strstr(r.body, "\"split0\"") != NULL &&
                        strstr(r.body, "\"split19\"") != NULL;
            http_resp_free(&r);
        }
    }
    if (code < 0)
        proc_stop_gracefully(&second, 15000);
    if (!refused)
        fail_msg("expected the second deployment to be refused with \"in use\" (tcpops up "
                 "exiting non-zero, or its people and pets workers) within 10 s; exit %d (log "
                 "in %s)",
                 code, olog);
    assert_int_equal(created, 20);
    if (complete != 10)
        fail_msg("expected all 20 new people in each of 10 lists; %d lists had them", complete);
    char db[400];
    snprintf(db, sizeof(db), "%s/people.db", other);
    if (access(db, F_OK) == 0)
        fail_msg("expected the second deployment to leave %s uncreated; it exists", db);
}

/* ---- scenario 17 ---- */

static void test_memory_limit_replaces_worker(void **state)
{
    fixture *fx = *state;
    /* Each people worker leaks 8 MiB a second; the limit is 40 MiB. */
    up(fx, "--workers", "people=2", "--max-memory", "people=40M", "--people-args",
       "--fault-grow-mb 8", NULL);
    int before[4], after[4], running;
    assert_int_equal(workers(fx, "people", before, 4, &running, NULL), 2);
    usleep(1200 * 1000);
    load_run lr;
    load_start(&lr, fx, 0);
    int replaced = 0;
    /* A deadline, not a speed: under ASan beside other tests both workers
     * can take longer than 20 s to reach the limit and be replaced. */
    for (int i = 0; i < 600 && !replaced; i++) {
        usleep(100 * 1000);
        int n = workers(fx, "people", after, 4, &running, NULL);
        replaced = n == 2 && running == 2 && after[0] != before[0] && after[0] != before[1] &&
                   after[1] != before[0] && after[1] != before[1];
    }
    loader s;
    load_stop(&lr, &s);
    load_free(&lr);
    assert_true(replaced);
    expect_clean(&s, "people workers replaced at their memory limit");
    FILE *f = fopen(fx->log, "r");
    char line[4096];
    int limits = 0, exits = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        limits += strstr(line, "msg=\"memory limit\" worker=people.") != NULL;
        int people = strstr(line, "worker=people.") != NULL;
        int exit = people && strstr(line, "app=tcpops") != NULL &&
                   (strstr(line, "msg=exited") != NULL || strstr(line, "msg=stopped") != NULL);
        exits += exit;
        /* Why a worker left, if it did: its own error line comes before. */
        if (exit || (people && strstr(line, "level=error") != NULL))
            print_message("%s", line);
    }
    if (f != NULL)
        fclose(f);
    int restarts = 0;
    workers(fx, "people", after, 4, &running, &restarts);
    print_message("memory-limit replacements: %d, people exits logged: %d, restarts: %d\n",
                  limits, exits, restarts);
    /* Replaced for its memory, not restarted after dying. */
    assert_true(limits >= 1);
    assert_int_equal(restarts, 0);
}

/* ---- numbers ---- */

static void test_scale_rejects_counts_out_of_range(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    /* 4294967298 was cast to int on the way: 2 workers. */
    const char *bad[] = {"4294967298", "65", "-1", "2k", " 2", "+2", "banana"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int code = tcpops(fx, NULL, 0, "scale", "people", bad[i], NULL);
        if (code != 2)
            fail_msg("tcpops scale people \"%s\": expected exit 2 (usage), got %d", bad[i],
                     code);
    }
    int pids[8], running;
    int n = workers(fx, "people", pids, 8, &running, NULL);
    if (n != 1 || running != 1)
        fail_msg("expected 1 running people worker after the refused scales, got %d (%d "
                 "running)",
                 n, running);
    /* ps --json: null for what there is none of (no worker has exited). */
    char out[16384];
    assert_int_equal(tcpops(fx, out, sizeof(out), "ps", "--json", NULL), 0);
    json_t *doc = json_loads(out, 0, NULL);
    json_t *w;
    size_t i;
    json_array_foreach(json_object_get(doc, "workers"), i, w) {
        if (!json_is_null(json_object_get(w, "last_exit")) ||
            !json_is_integer(json_object_get(w, "pid")))
            fail_msg("ps --json: expected an integer pid and \"last_exit\":null for a worker "
                     "that never exited, got %s", out);
    }
    json_decref(doc);
}

/* ---- what cannot run is refused before anything starts ---- */

/* Runs `tcpops up` with the extra flags given; expects exit 2 with want in
 * its stderr, and nothing started: no control socket, no gateway port. */
static void up_refused(fixture *fx, const char *want, ...)
{
    up_cmd u;
    char out[4096], err[4096];
    va_list ap;
    va_start(ap, want);
    up_argv(fx, &u, ap);
    va_end(ap);
    /* Not refused, it would run: the timeout stops it. */
    int code = proc_run(u.argv, out, sizeof(out), err, sizeof(err), 8000);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("tcpops up %s %s: expected exit 2 saying \"%s\"; got exit %d: %s",
                 u.argv[12] ? u.argv[12] : "", u.argv[12] && u.argv[13] ? u.argv[13] : "",
                 want, code, err);
    char sock[400];
    struct stat st;
    snprintf(sock, sizeof(sock), "%s/tcpops.sock", fx->dir);
    assert_int_not_equal(stat(sock, &st), 0);
    assert_int_not_equal(wait_port(fx->gw_port, 100), 0);
}

static void test_up_refuses_what_cannot_run(void **state)
{
    fixture *fx = *state;
    char ini[400], busy[64];
    snprintf(ini, sizeof(ini), "%s/tcpops.ini", fx->dir);

    /* A port held by anything, even a listener sharing with SO_REUSEPORT. */
    int one = 1, holder = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->pets_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(setsockopt(holder, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    assert_int_equal(bind(holder, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(holder, 8), 0);
    snprintf(busy, sizeof(busy), "pets cannot listen on 127.0.0.1:%d", fx->pets_port);
    up_refused(fx, busy, NULL);
    close(holder);

    up_refused(fx, "people listen: address \"127.0.0.1:nope\"", "--people", "127.0.0.1:nope",
               NULL);
    up_refused(fx, "needs a fixed port", "--people", "127.0.0.1:0", NULL);
    up_refused(fx, "people args \"--threads banana\": tcpops-people: --threads: \"banana\"",
               "--people-args", "--threads banana", NULL);
    up_refused(fx, "pets args \"--no-such-flag\": tcpops-pets: unknown flag --no-such-flag",
               "--pets-args", "--no-such-flag", NULL);
    up_refused(fx, "tcpops-pets: --sync: \"sometimes\" is not one of normal|full",
               "--pets-args", "--sync sometimes", NULL);
    /* Milliseconds take no size suffix (item 12): this was 5120 ms. */
    up_refused(fx, "--deadline-ms: \"18014398509481989k\" is not a whole number",
               "--gateway-args", "--deadline-ms 18014398509481989k", NULL);

    /* INI numbers are parsed like flags. */
    const char *inis[][2] = {
        {"[tcpops]\ndrain_ms = banana\n", "drain_ms: \"banana\" is not a whole number"},
        {"[tcpops]\ndrain_ms = -5000\n", "drain_ms: \"-5000\" is out of range: 0 to 600000"},
        {"[tcpops]\ndrain_ms = 5k\n", "drain_ms: \"5k\" is not a whole number"},
        {"[people]\nworkers = 4294967298\n", "workers: \"4294967298\" is out of range"},
        {"[people]\nmax_memory = 18014398509481989k\n", "is out of range"},
        {"[people]\nargs = --max-frame 1T\n", "--max-frame: \"1T\" is not a size"},
    };
    for (size_t i = 0; i < sizeof(inis) / sizeof(inis[0]); i++) {
        FILE *f = fopen(ini, "w");
        assert_non_null(f);
        fputs(inis[i][0], f);
        fclose(f);
        up_refused(fx, inis[i][1], "--config", ini, NULL);
    }
}

/* ---- the master's own resources and signals ---- */

/* Lines of the master's log that contain needle. */
static int log_count(fixture *fx, const char *needle)
{
    FILE *f = fopen(fx->log, "r");
    char line[4096];
    int n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

/* Waits up to timeout_ms for needle in the master's log; 1 when it came. */
static int wait_log(fixture *fx, const char *needle, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (log_count(fx, needle) > 0)
            return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* CPU time pid has used, in clock ticks (utime + stime of /proc/PID/stat). */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* After the ")" that ends the name: state is field 3, utime 14, stime 15. */
    const char *p = strrchr(buf, ')');
    assert_non_null(p);
    unsigned long utime = 0, stime = 0;
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                            &stime),
                     2);
    return (long)(utime + stime);
}

/* Sockets pid holds open (the master: its control socket and its clients). */
static int open_sockets(pid_t pid)
{
    char dir[64], link[384], target[128];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        ssize_t r = readlink(link, target, sizeof(target) - 1);
        if (r > 0) {
            target[r] = '\0';
            n += strncmp(target, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

/* A `tcpops restart` client that leaves at once: the master must drop the
 * connection (a peer that hung up polls as POLLHUP for ever; kept in the
 * poll set, it made the master spin at 100% CPU for the rest of the roll)
 * and finish the restart. Two observations, neither a time: the master's
 * socket count falls back while the restart still runs, and the CPU the
 * master used over the whole roll stays under 1 s. The roll of 3 workers
 * lasts several seconds of wall time, which a spin fills with CPU (several
 * hundred ticks); a master that sleeps in poll uses a few. */
static void test_restart_client_leaves_early(void **state)
{
    fixture *fx = *state;
    up(fx, "--workers", "people=3", NULL);
    int pids[8], running = 0;
    wait_running(fx, "people", 3, pids, 8);
    /* The sockets it holds when no client is connected (the last `ps` may
     * still be closing on its side: wait until the count holds still). */
    int base = open_sockets(fx->master.pid);
    for (int i = 0, prev = -1; i < 100 && base != prev; i++) {
        usleep(20 * 1000);
        prev = base;
        base = open_sockets(fx->master.pid);
    }
    long ticks0 = cpu_ticks(fx->master.pid);

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[300];
    snprintf(path, sizeof(path), "%s/tcpops.sock", fx->dir);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const char req[] = "{\"cmd\":\"restart\",\"app\":\"people\"}\n";
    assert_int_equal(send(c, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
    assert_true(wait_log(fx, "msg=restart worker=people.*", 5000));
    close(c);

    int dropped = 0, done = 0;
    const char *done_line = "msg=\"restart done\" worker=people.*";
    for (int i = 0; i < 12000 && !done; i++) {
        /* Sockets first: the old master closed it only after logging done. */
        int n = open_sockets(fx->master.pid);
        done = log_count(fx, done_line) > 0;
        dropped |= n == base && !done;
        usleep(5 * 1000);
    }
    long used = cpu_ticks(fx->master.pid) - ticks0;
    long hz = sysconf(_SC_CLK_TCK);
    print_message("restart with its client gone: master used %ld ticks (%ld per s)\n", used, hz);
    assert_true(done);
    if (!dropped)
        fail_msg("expected the master to close the control connection of a client that left "
                 "while the restart still ran; it kept it until the end");
    if (used >= hz)
        fail_msg("expected the master to use under %ld ticks (1 s of CPU) over a 3-worker "
                 "restart; it used %ld",
                 hz, used);
    /* The restart itself completed: 3 new workers serve. */
    int after[8];
    assert_int_equal(workers(fx, "people", after, 8, &running, NULL), 3);
    assert_int_equal(running, 3);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++)
            assert_int_not_equal(after[i], pids[k]);
}

/* SIGHUP (and the other signals whose default is to die) no longer kill the
 * master: one log line each, and it serves on; SIGTERM then stops it and
 * removes its control socket. */
static void test_sighup_keeps_master_serving(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    proc_signal(&fx->master, SIGHUP);
    if (!wait_log(fx, "msg=signal signal=HUP action=ignore", 5000))
        fail_msg("expected one log line for SIGHUP; log in %s", fx->log);
    proc_signal(&fx->master, SIGUSR1);
    assert_true(wait_log(fx, "msg=signal signal=USR1 action=ignore", 5000));
    assert_int_equal(proc_wait(&fx->master, 0), -1); /* still running */
    char out[16384];
    assert_int_equal(tcpops(fx, out, sizeof(out), "ps", NULL), 0);
    assert_non_null(strstr(out, "gateway"));
    assert_int_equal(log_count(fx, "signal=HUP"), 1);

    proc_signal(&fx->master, SIGTERM);
    assert_int_equal(proc_wait(&fx->master, 15000), 0);
    char sock[400];
    struct stat st;
    snprintf(sock, sizeof(sock), "%s/tcpops.sock", fx->dir);
    if (stat(sock, &st) == 0)
        fail_msg("expected no control socket after the master stopped; %s is still there",
                 sock);
}

/* ---- rolling restart of the gateway ---- */

/* The gateway rolls like a service: the new one serves on the same socket
 * (tcpops holds it) before the old one drains, under keep-alive load, with
 * no failed request and one gateway row at the end. */
static void test_restart_gateway_under_load(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    int before[4], after[4], running;
    assert_int_equal(workers(fx, "gateway", before, 4, &running, NULL), 1);
    load_run lr;
    load_start(&lr, fx, 0);
    usleep(300 * 1000);
    for (int round = 0; round < 2; round++) {
        int code = tcpops(fx, NULL, 0, "restart", "gateway", NULL);
        if (code != 0)
            fail_msg("tcpops restart gateway (round %d): expected exit 0, got %d (log in %s)",
                     round + 1, code, fx->log);
    }
    usleep(300 * 1000);
    loader s;
    load_stop(&lr, &s);
    load_free(&lr);
    expect_clean(&s, "restart gateway twice under keep-alive load");
    int n = workers(fx, "gateway", after, 4, &running, NULL);
    if (n != 1 || running != 1)
        fail_msg("expected exactly one running gateway row after the restarts; got %d rows "
                 "(%d running)",
                 n, running);
    assert_int_not_equal(after[0], before[0]);
}

/* A replacement that cannot start fails the restart, keeps the old worker,
 * and leaves no row behind (it used to stay as "replaced", pid 0). */
static void test_failed_restart_leaves_no_ghost(void **state)
{
    fixture *fx = *state;
    up(fx, NULL);
    int before[4], after[4], running;
    assert_int_equal(workers(fx, "people", before, 4, &running, NULL), 1);
    /* The running worker keeps its open database; a new one cannot open
     * people.db, now a directory. */
    char db[400], side[400];
    snprintf(db, sizeof(db), "%s/people.db", fx->dir);
    snprintf(side, sizeof(side), "%s/people.db.saved", fx->dir);
    assert_int_equal(rename(db, side), 0);
    assert_int_equal(mkdir(db, 0755), 0);
    assert_int_equal(tcpops(fx, NULL, 0, "restart", "people", NULL), 1);
    int n = workers(fx, "people", after, 4, &running, NULL);
    if (n != 1 || running != 1 || after[0] != before[0])
        fail_msg("expected the old people worker (pid %d) as the only row after a failed "
                 "restart; got %d rows, %d running, first pid %d",
                 before[0], n, running, after[0]);
    assert_int_equal(rmdir(db), 0);
    assert_int_equal(rename(side, db), 0);
}

/* ---- a worker that refuses its flags: failed, not restarted ---- */

/* Copies the file at from to to, executable. */
static void copy_program(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    if (in == NULL || out == NULL)
        fail_msg("expected to copy %s to %s: %s", from, to, strerror(errno));
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(chmod(to, 0755), 0);
}

/* Gives fx a bin dir of its own, DIR/bin, for `tcpops up` (which starts the
 * programs beside itself): a copy of tcpops, the real gateway and people,
 * and for pets a script that runs the real one, adding --threads 999999
 * (a flag value it refuses: exit 2) while the file *bad exists. tcpops up's
 * preflight passes; a pets worker started later fails, as after an upgrade
 * to a program that no longer takes a flag it is given. A bad_action other
 * than NULL is what the script does instead while *bad exists (sh code). */
static void own_bin_dir(fixture *fx, char *bad, size_t badlen, const char *bad_action)
{
    char bin[300], path[400], real[512], script[1600], action[700];
    snprintf(bin, sizeof(bin), "%s/bin", fx->dir);
    assert_int_equal(mkdir(bin, 0755), 0);
    snprintf(fx->tcpops_bin, sizeof(fx->tcpops_bin), "%s/tcpops", bin);
    copy_program(proc_bin("tcpops", real, sizeof(real)), fx->tcpops_bin);
    static const char *const linked[] = {"tcpops-gateway", "tcpops-people"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", bin, linked[i]);
        assert_int_equal(symlink(proc_bin(linked[i], real, sizeof(real)), path), 0);
    }
    snprintf(bad, badlen, "%s/bad-flag", fx->dir);
    proc_bin("tcpops-pets", real, sizeof(real));
    if (bad_action == NULL)
        snprintf(action, sizeof(action), "exec '%s' \"$@\" --threads 999999", real);
    else
        snprintf(action, sizeof(action), "%s", bad_action);
    snprintf(script, sizeof(script),
             "#!/bin/sh\nif [ -e '%s' ]; then %s; fi\nexec '%s' \"$@\"\n", bad, action, real);
    snprintf(path, sizeof(path), "%s/tcpops-pets", bin);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(script, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/* Worker app.index from `tcpops ps --json` (caller json_decref's it). */
static json_t *ps_worker(fixture *fx, const char *app, int index)
{
    char out[16384];
    json_t *found = NULL, *w;
    size_t i;
    assert_int_equal(tcpops(fx, out, sizeof(out), "ps", "--json", NULL), 0);
    json_t *doc = json_loads(out, 0, NULL);
    json_array_foreach(json_object_get(doc, "workers"), i, w) {
        if (strcmp(json_string_value(json_object_get(w, "app")), app) == 0 &&
            json_integer_value(json_object_get(w, "worker")) == index)
            found = json_incref(w);
    }
    json_decref(doc);
    if (found == NULL)
        fail_msg("expected %s.%d in tcpops ps --json, got %s", app, index, out);
    return found;
}

/* pets.index is failed for the bad --threads, has no process and was never
 * restarted. */
static void expect_failed(fixture *fx, int index, const char *when)
{
    json_t *w = ps_worker(fx, "pets", index);
    const char *state = json_string_value(json_object_get(w, "state"));
    const char *reason = json_string_value(json_object_get(w, "reason"));
    char *text = json_dumps(w, JSON_COMPACT);
    if (state == NULL || strcmp(state, "failed") != 0 || reason == NULL ||
        strstr(reason, "exit 2 before ready: tcpops-pets: --threads: \"999999\" is out of "
                       "range") == NULL ||
        !json_is_null(json_object_get(w, "pid")) ||
        json_integer_value(json_object_get(w, "restarts")) != 0 ||
        json_integer_value(json_object_get(w, "last_exit")) != 2)
        fail_msg("%s: expected pets.%d failed with reason \"exit 2 before ready: tcpops-pets: "
                 "--threads: ...\", pid null, 0 restarts, last exit 2; got %s",
                 when, index, text);
    free(text);
    json_decref(w);
}

/* out (a command's stdout) ends with the line last. */
static void expect_last_line(const char *out, const char *last, const char *what)
{
    size_t n = strlen(out), k = strlen(last);
    if (n < k || strcmp(out + n - k, last) != 0 || (n > k && out[n - k - 1] != '\n'))
        fail_msg("%s: expected the last line \"%s\", got:\n%s", what, last, out);
}

static void expect_has(const char *text, const char *want, const char *what)
{
    if (strstr(text, want) == NULL)
        fail_msg("%s: expected \"%s\" in:\n%s", what, want, text);
}

/* A pets worker that exits 2 (a flag it refuses) before it is ready is
 * failed, with the reason, not restarted: no pid, 0 restarts, even after a
 * rolling restart of people has come and gone (1.5 s of settling, many
 * times the first restart delay). A scale or restart that waits on it fails
 * at once with that reason; once the cause is gone, restart and scale start
 * it again. Along the way, what scale, restart and down print. */
static void test_failed_worker_is_not_restarted(void **state)
{
    fixture *fx = *state;
    char bad[400], out[16384], err[4096];
    own_bin_dir(fx, bad, sizeof(bad), NULL);
    up(fx, NULL);

    touch(bad);
    assert_int_equal(tcpops_err(fx, out, sizeof(out), err, sizeof(err), "scale", "pets", "2",
                                NULL),
                     1);
    expect_has(err, "tcpops: pets.2 failed: exit 2 before ready: tcpops-pets: --threads",
               "scale pets 2 with a worker that refuses its flags");
    expect_failed(fx, 2, "after the scale");
    assert_int_equal(tcpops(fx, out, sizeof(out), "ps", NULL), 0);
    expect_has(out, "failed pets.2: exit 2 before ready: tcpops-pets: --threads", "tcpops ps");
    expect_has(out, "pets     2      -        failed", "tcpops ps");

    /* The event to wait for: a roll of people, each step printed. */
    assert_int_equal(tcpops(fx, out, sizeof(out), "restart", "people", NULL), 0);
    expect_has(out, "people.1: replaced by pid ", "restart people");
    expect_last_line(out, "people: restarted 1 worker\n", "restart people");
    expect_failed(fx, 2, "after restart people");
    assert_int_equal(log_count(fx, "msg=started worker=pets.2 "), 1);

    /* A roll whose replacement fails ends with that reason; the old stays. */
    json_t *old = ps_worker(fx, "pets", 1);
    assert_int_equal(tcpops_err(fx, out, sizeof(out), err, sizeof(err), "restart", "pets", NULL),
                     1);
    expect_has(err, "tcpops: pets.1's replacement failed: exit 2 before ready: tcpops-pets: "
                    "--threads", "restart pets with a worker that refuses its flags");
    json_t *now = ps_worker(fx, "pets", 1);
    assert_true(json_equal(json_object_get(old, "pid"), json_object_get(now, "pid")));
    assert_string_equal(json_string_value(json_object_get(now, "state")), "running");
    json_decref(old);
    json_decref(now);

    /* The cause gone: restart replaces pets.1 and starts pets.2 again. */
    assert_int_equal(unlink(bad), 0);
    assert_int_equal(tcpops(fx, out, sizeof(out), "restart", "pets", NULL), 0);
    expect_has(out, "pets.1: replaced by pid ", "restart pets");
    expect_has(out, "pets.2: was failed, started again as pid ", "restart pets");
    expect_last_line(out, "pets: restarted 2 workers\n", "restart pets");
    int pids[8], running;
    assert_int_equal(workers(fx, "pets", pids, 8, &running, NULL), 2);
    assert_int_equal(running, 2);

    /* scale N starts a failed worker among the N again; --json: the answer. */
    touch(bad);
    assert_int_equal(tcpops(fx, out, sizeof(out), "scale", "pets", "3", NULL), 1);
    expect_failed(fx, 3, "after scale pets 3");
    assert_int_equal(unlink(bad), 0);
    assert_int_equal(tcpops(fx, out, sizeof(out), "scale", "pets", "3", "--json", NULL), 0);
    json_t *ans = json_loads(out, 0, NULL);
    if (ans == NULL || !json_is_true(json_object_get(ans, "ok")) ||
        json_integer_value(json_object_get(ans, "workers")) != 3 ||
        json_integer_value(json_object_get(ans, "was")) != 3 ||
        strchr(out, '\n') != out + strlen(out) - 1)
        fail_msg("scale pets 3 --json: expected one line {\"ok\":true,\"app\":\"pets\","
                 "\"workers\":3,\"was\":3}, got %s", out);
    json_decref(ans);
    assert_int_equal(tcpops(fx, out, sizeof(out), "scale", "people", "2", NULL), 0);
    expect_has(out, "people.2: ready as pid ", "scale people 2");
    expect_last_line(out, "people: 2 workers (was 1)\n", "scale people 2");

    /* down: each worker as it stops, then how many. */
    assert_int_equal(tcpops(fx, out, sizeof(out), "down", NULL), 0);
    static const char *const gone[] = {"gateway.1: stopped\n", "people.1: stopped\n",
                                       "people.2: stopped\n", "pets.1: stopped\n",
                                       "pets.2: stopped\n", "pets.3: stopped\n"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        expect_has(out, gone[i], "tcpops down");
    expect_last_line(out, "stopped 6 workers\n", "tcpops down");
    assert_int_equal(proc_wait(&fx->master, 15000), 0);
}

/* Waits until pets.index's reason has want and it was restarted since
 * (restarts above 0, not failed); fails with what ps showed otherwise. */
static void wait_not_ready(fixture *fx, int index, const char *want)
{
    char *text = NULL;
    /* The backoff grows with each failed start, up to 15 s. */
    for (int64_t deadline = rpc_now_ms() + 40000; rpc_now_ms() < deadline;
         usleep(50 * 1000)) {
        json_t *w = ps_worker(fx, "pets", index);
        const char *reason = json_string_value(json_object_get(w, "reason"));
        const char *st = json_string_value(json_object_get(w, "state"));
        int ok = reason != NULL && strstr(reason, want) != NULL && strcmp(st, "failed") != 0 &&
                 json_integer_value(json_object_get(w, "restarts")) > 0;
        free(text);
        text = json_dumps(w, JSON_COMPACT);
        json_decref(w);
        if (ok) {
            free(text);
            return;
        }
    }
    fail_msg("expected pets.%d restarted with reason \"%s\", not failed; got %s", index, want,
             text);
}

/* A pets worker that never says "ready" (it sleeps, the pipe open) is
 * stopped after [tcpops] ready_timeout_ms and restarted with backoff, ps
 * showing why; one that closes its ready pipe without the line and lives
 * on is stopped the same way, a moment later. Once it serves again the reason is gone. */
static void test_worker_never_ready_is_stopped(void **state)
{
    fixture *fx = *state;
    char bad[400], ini[400], out[16384];
    /* --ready-fd N comes first ($1 $2): the .eof marker closes fd N (bash:
     * dash takes one-digit descriptors only). */
    own_bin_dir(fx, bad, sizeof(bad),
                "if [ -e \"$0.eof\" ]; then exec bash -c \"exec $2>&-; exec sleep 600\"; fi; "
                "exec sleep 600");
    snprintf(ini, sizeof(ini), "%s/tcpops.ini", fx->dir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    /* A ready timeout past SUP_READY_EOF_GRACE_MS (1 s), so that the closed
     * pipe is what stops it there; a short drain: the scale below answers at
     * its deadline. */
    fputs("[tcpops]\nready_timeout_ms = 1500\ndrain_ms = 500\n", f);
    assert_int_equal(fclose(f), 0);
    up(fx, "--config", ini, NULL);

    touch(bad);
    /* It does not settle: the answer comes at its deadline. */
    assert_int_equal(tcpops(fx, out, sizeof(out), "scale", "pets", "2", NULL), 1);
    wait_not_ready(fx, 2, "not ready: no \"ready\" within 1500 ms");
    assert_true(log_has(fx->log, "not ready", "worker=pets.2 "));
    assert_int_equal(tcpops(fx, out, sizeof(out), "ps", NULL), 0);
    expect_has(out, " pets.2: not ready: no \"ready\" within 1500 ms", "tcpops ps");

    char eof[400];
    snprintf(eof, sizeof(eof), "%s/bin/tcpops-pets.eof", fx->dir);
    touch(eof);
    wait_not_ready(fx, 2, "not ready: its ready pipe closed without a \"ready\" line");

    /* Its next start (after up to the backoff's 15 s cap) serves. */
    assert_int_equal(unlink(bad), 0);
    char *text = NULL;
    int served = 0;
    for (int64_t deadline = rpc_now_ms() + 40000; !served && rpc_now_ms() < deadline;
         usleep(100 * 1000)) {
        json_t *w = ps_worker(fx, "pets", 2);
        served = strcmp(json_string_value(json_object_get(w, "state")), "running") == 0 &&
                 json_is_null(json_object_get(w, "reason"));
        free(text);
        text = json_dumps(w, JSON_COMPACT);
        json_decref(w);
    }
    if (!served)
        fail_msg("expected pets.2 running with no reason once it could start, got %s", text);
    free(text);
    assert_int_equal(unlink(eof), 0);
}

/* ---- the environment: each program reads its own names ---- */

static const char *const env_vars[] = {"TCPOPS_GATEWAY_DEADLINE_MS", "TCPOPS_PEOPLE_THREADS",
                                       "TCPOPS_THREADS"};

static int env_teardown(void **state)
{
    for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
        unsetenv(env_vars[i]);
    return teardown(state);
}

/* Waits up to timeout_ms for a line of the master's log with a and b. */
static int wait_log_line(fixture *fx, const char *a, const char *b, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (log_has(fx->log, a, b))
            return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* tcpops up's workers inherit its environment, and each reads its own
 * names only: TCPOPS_GATEWAY_DEADLINE_MS reaches the gateway,
 * TCPOPS_PEOPLE_THREADS people and not pets, and TCPOPS_THREADS, once every
 * program's name (2000: valid for the gateway, past the services' 256,
 * so they could not start), none of them. */
static void test_environment_reaches_the_program_it_names(void **state)
{
    fixture *fx = *state;
    setenv("TCPOPS_GATEWAY_DEADLINE_MS", "1234", 1);
    setenv("TCPOPS_PEOPLE_THREADS", "3", 1);
    setenv("TCPOPS_THREADS", "2000", 1);
    up(fx, NULL);
    if (!wait_log_line(fx, "app=gateway", "deadline_ms=1234", 10000))
        fail_msg("TCPOPS_GATEWAY_DEADLINE_MS=1234: expected the gateway to log deadline_ms=1234 "
                 "(log in %s)", fx->log);
    if (!wait_log_line(fx, "app=people", "threads=3 ", 10000))
        fail_msg("TCPOPS_PEOPLE_THREADS=3: expected people to log threads=3 (log in %s)",
                 fx->log);
    if (!wait_log_line(fx, "app=pets", "threads=", 10000) ||
        log_has(fx->log, "app=pets", "threads=3 "))
        fail_msg("TCPOPS_PEOPLE_THREADS=3: expected pets to start with its own thread count, "
                 "not 3 (log in %s)", fx->log);
}

/* ---- logs ---- */

/* `tcpops up --detach` with the fixture's ports and the extra flags given
 * (NULL-terminated): the master's log is then DIR/tcpops.log. */
static void up_detached(fixture *fx, ...)
{
    up_cmd u;
    char out[1024], err[4096];
    va_list ap;
    va_start(ap, fx);
    up_argv(fx, &u, ap);
    va_end(ap);
    int n = 0;
    while (u.argv[n] != NULL)
        n++;
    u.argv[n++] = "--detach";
    u.argv[n] = NULL;
    int code = proc_run(u.argv, out, sizeof(out), err, sizeof(err), 30000);
    const char *pid = strstr(out, "(pid ");
    if (code != 0 || pid == NULL)
        fail_msg("tcpops up --detach: expected exit 0 and its pid, got %d: %s %s", code, out,
                 err);
    fx->detached = (pid_t)atoi(pid + 5);
    snprintf(fx->log, sizeof(fx->log), "%s/tcpops.log", fx->dir);
    wait_ready(fx);
}

/* The whole file at path (malloc'd, NUL-terminated), "" when missing. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = NULL;
    size_t n = 0;
    if (f == NULL)
        return strdup("");
    s = malloc(1);
    for (char buf[65536];;) {
        size_t r = fread(buf, 1, sizeof(buf), f);
        if (r == 0)
            break;
        s = realloc(s, n + r + 1);
        memcpy(s + n, buf, r);
        n += r;
    }
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The first line of the master's log that holds a and b, or fails. */
static void line_with(fixture *fx, const char *a, const char *b, char *line, size_t len)
{
    FILE *f = fopen(fx->log, "r");
    int found = 0;
    while (f != NULL && !found && fgets(line, (int)len, f) != NULL)
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    if (f != NULL)
        fclose(f);
    if (!found)
        fail_msg("expected a line with %s and %s in %s", a, b, fx->log);
}

/* Every one of the NULL-terminated strings is in line. */
static void expect_in(const char *line, ...)
{
    va_list ap;
    va_start(ap, line);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        if (strstr(line, s) == NULL)
            fail_msg("expected %s in: %s", s, line);
    va_end(ap);
}

static void get(fixture *fx, const char *path, const char *headers, int want)
{
    http_resp r;
    assert_int_equal(http_once(fx->gw_port, "GET", path, headers, NULL, &r), 0);
    if (r.status != want)
        fail_msg("GET %s: expected %d, got %d", path, want, r.status);
    http_resp_free(&r);
}

/* The value of key in a parsed line, as a string in buf ("" when absent). */
static const char *value(const util_kv *kv, int n, const char *key, char *buf, size_t len)
{
    int i = util_logfmt_find(kv, n, key);
    snprintf(buf, len, "%.*s", i >= 0 ? (int)kv[i].vlen : 0, i >= 0 ? kv[i].val : "");
    return buf;
}

/* Every line of the log parses (logfmt or JSON as asked), starts with ts,
 * has level and msg, no key twice; a worker's own lines (app= not tcpops)
 * carry worker=APP.N. Returns how many lines were worker lines. */
static int check_lines(fixture *fx, int json)
{
    char *all = slurp(fx->log);
    int lines = 0, relayed = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        util_kv kv[UTIL_LOGFMT_MAX_PAIRS];
        char buf[8192], app[64], worker[64];
        *nl = '\0';
        lines++;
        if (json && line[0] != '{')
            fail_msg("line %d: expected a JSON object, got: %s", lines, line);
        int n = util_logfmt_parse(line, strlen(line), kv, UTIL_LOGFMT_MAX_PAIRS, buf,
                                  sizeof(buf));
        if (n < 0 || util_logfmt_find(kv, n, "ts") != 0 ||
            util_logfmt_find(kv, n, "level") < 0 || util_logfmt_find(kv, n, "msg") < 0)
            fail_msg("line %d: expected a log line (ts=, level=, msg=), got: %s", lines, line);
        for (int i = 0; i < n; i++)
            for (int k = i + 1; k < n; k++)
                if (kv[i].klen == kv[k].klen && memcmp(kv[i].key, kv[k].key, kv[i].klen) == 0)
                    fail_msg("line %d: key %.*s twice: %s", lines, (int)kv[i].klen, kv[i].key,
                             line);
        value(kv, n, "app", app, sizeof(app));
        value(kv, n, "worker", worker, sizeof(worker));
        if (strcmp(app, "tcpops") != 0) {
            char want[80];
            snprintf(want, sizeof(want), "%s.", app);
            if (strncmp(worker, want, strlen(want)) != 0)
                fail_msg("line %d: expected worker=%sN on a line of %s, got: %s", lines, want,
                         app, line);
            relayed++;
        }
    }
    free(all);
    return relayed;
}

/* ---- the lines ---- */

static void test_logs_relayed_lines_are_logfmt(void **state)
{
    fixture *fx = *state;
    char line[4096];
    up_detached(fx, "--gateway-args", "--threads=8", "--people-args", "--log-calls", NULL);
    get(fx, "/people/pets?owner=nobody", "X-Request-Id: trace-42\r\nUser-Agent: t est/1\r\n",
        404);
    /* The same id, by the same name, on the gateway's access line and on
     * the service's line for the call it caused. */
    if (!wait_log_line(fx, "app=gateway", "request_id=trace-42", 10000))
        fail_msg("expected the gateway's access line with request_id=trace-42 in %s", fx->log);
    if (!wait_log_line(fx, "app=people", "request_id=trace-42", 10000))
        fail_msg("expected people's call line with request_id=trace-42 in %s", fx->log);
    line_with(fx, "msg=request ", "request_id=trace-42", line, sizeof(line));
    expect_in(line, "app=gateway worker=gateway.1 ", "remote=127.0.0.1:", "method=GET",
              "path=\"/people/pets?owner=nobody\"", "status=404", "bytes=", "dur_us=",
              "ua=\"t est/1\"", "request_id=trace-42", NULL);
    line_with(fx, "msg=call ", "request_id=trace-42", line, sizeof(line));
    expect_in(line, "app=people worker=people.1 ", "request_id=trace-42", NULL);
    /* The master's own lines name a worker as worker=APP.N too. */
    line_with(fx, "msg=started ", "app=tcpops", line, sizeof(line));
    expect_in(line, "app=tcpops", "worker=", "worker_pid=", NULL);
    if (check_lines(fx, 0) < 3)
        fail_msg("expected lines from the workers in %s", fx->log);
}

static void test_logs_json_lines(void **state)
{
    fixture *fx = *state;
    char line[4096];
    up_detached(fx, "--log-format", "json", "--gateway-args", "--threads=8", NULL);
    get(fx, "/healthz", "X-Request-Id: j-1\r\n", 200);
    assert_true(wait_log(fx, "\"request_id\":\"j-1\"", 10000));
    line_with(fx, "\"request_id\":\"j-1\"", "\"msg\":\"request\"", line, sizeof(line));
    expect_in(line, "\"status\":200", "\"worker\":\"gateway.1\"", NULL);
    check_lines(fx, 1);
    /* tcpops logs reads them as well. */
    char out[8192];
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "gateway", "-n", "1", NULL), 0);
    if (strstr(out, "\"worker\":\"gateway.1\"") == NULL)
        fail_msg("tcpops logs gateway -n 1: expected the gateway's last JSON line, got: %s",
                 out);
}

/* ---- tcpops logs ---- */

/* The last n lines of the file, or of the lines with worker=app. */
static void last_lines(fixture *fx, const char *app, int n, char *out, size_t len)
{
    char *all = slurp(fx->log);
    char *lines[4096];
    int k = 0;
    for (char *line = all, *nl; k < 4096 && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char want[64];
        snprintf(want, sizeof(want), " worker=%s.", app != NULL ? app : "");
        nl[0] = '\0';
        if (app == NULL || strstr(line, want) != NULL)
            lines[k++] = line;
        nl[0] = '\n';
    }
    out[0] = '\0';
    for (int i = k > n ? k - n : 0; i < k; i++) {
        size_t l = (size_t)(strchr(lines[i], '\n') - lines[i]) + 1;
        strncat(out, lines[i], l < len - strlen(out) - 1 ? l : len - strlen(out) - 1);
    }
    free(all);
}

static off_t log_size(fixture *fx)
{
    struct stat st;
    return stat(fx->log, &st) == 0 ? st.st_size : -1;
}

/* Runs `tcpops logs ARGS...` (NULL-terminated, at most 4) and expects what
 * last_lines(app, n) reads from the file; the workers may log meanwhile,
 * so a run during which the file grew is done again. */
static void expect_logs(fixture *fx, const char *app, int n, ...)
{
    static char out[65536], want[65536];
    const char *a[4] = {NULL};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < 4 && (a[i] = va_arg(ap, const char *)) != NULL; i++)
        ;
    va_end(ap);
    for (int64_t deadline = rpc_now_ms() + 10000;;) {
        off_t before = log_size(fx);
        assert_int_equal(tcpops(fx, out, sizeof(out), "logs", a[0], a[1], a[2], a[3], NULL), 0);
        last_lines(fx, app, n, want, sizeof(want));
        if (log_size(fx) != before && rpc_now_ms() < deadline)
            continue;
        if (strcmp(out, want) != 0)
            fail_msg("tcpops logs %s %s %s: expected the file's last %d lines%s%s:\n%s\ngot:\n%s",
                     a[0] ? a[0] : "", a[1] ? a[1] : "", a[2] ? a[2] : "", n,
                     app ? " of " : "", app ? app : "", want, out);
        return;
    }
}

static void test_logs_command(void **state)
{
    fixture *fx = *state;
    up_detached(fx, "--workers", "people=2", NULL);
    char out[1024];
    get(fx, "/healthz", NULL, 200);
    expect_logs(fx, NULL, 3, "-n", "3", NULL);
    expect_logs(fx, "people", 4, "people", "--lines=4", NULL);
    expect_logs(fx, NULL, 20, NULL); /* the default */
    expect_logs(fx, "pets", 100000, "-n", "100000", "pets", NULL); /* all there are */
    expect_logs(fx, NULL, 0, "-n", "0", NULL);
    /* Wrong words are usage errors. */
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "cats", NULL), 2);
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "-n", "x", NULL), 2);
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "people", "pets", NULL), 2);
}

/* Reads the follower's output until it holds want; fails after 10 s. */
static void follower_shows(fixture *fx, char *buf, size_t cap, size_t *n, const char *want)
{
    if (http_read_until(fx->follower.out_fd, buf, cap, n, want, 10000) < 0)
        fail_msg("tcpops logs -f: expected a line with %s, got so far:\n%s", want, buf);
}

/* -f across logrotate without copytruncate (rename, then SIGHUP: the master
 * reopens DIR/tcpops.log) and with it (the file cut to 0). */
static void test_logs_follow_rotation_and_truncation(void **state)
{
    fixture *fx = *state;
    up_detached(fx, "--gateway-args", "--threads=8", NULL);
    char bin[512], dir_flag[300];
    snprintf(dir_flag, sizeof(dir_flag), "--data-dir=%s", fx->dir);
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "logs", "gateway", "-f",
                    "-n", "0", dir_flag, NULL};
    assert_int_equal(proc_start(&fx->follower, argv, 0), 0);
    static char seen[1 << 20];
    size_t n = 0;
    seen[0] = '\0';
    /* New lines come; -n 0 showed none of the old ones. A request made
     * before the follower found the end of the file would not show: ask
     * again until one does. */
    int live = 0;
    for (int i = 0; i < 50 && !live; i++) {
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "X-Request-Id: before-rotate-%d\r\n", i);
        get(fx, "/healthz", hdr, 200);
        live = http_read_until(fx->follower.out_fd, seen, sizeof(seen), &n,
                               "request_id=before-rotate-", 200) == 0;
    }
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=before-rotate-");
    assert_null(strstr(seen, "msg=listening"));
    assert_null(strstr(seen, "app=tcpops")); /* only the gateway's */

    /* logrotate: rename, then HUP. */
    char rotated[400];
    snprintf(rotated, sizeof(rotated), "%s.1", fx->log);
    assert_int_equal(rename(fx->log, rotated), 0);
    assert_int_equal(kill(fx->detached, SIGHUP), 0);
    if (!wait_log(fx, "msg=\"reopened log\"", 10000))
        fail_msg("expected the master to reopen %s after SIGHUP", fx->log);
    get(fx, "/healthz", "X-Request-Id: after-rotate\r\n", 200);
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=after-rotate");
    /* The new file has the new line, the old one kept what it had. */
    assert_true(wait_log(fx, "request_id=after-rotate", 10000));
    char *old = slurp(rotated);
    assert_non_null(strstr(old, "request_id=before-rotate"));
    assert_null(strstr(old, "request_id=after-rotate"));
    free(old);

    /* copytruncate: the file cut to nothing, then written again. */
    assert_int_equal(truncate(fx->log, 0), 0);
    get(fx, "/healthz", "X-Request-Id: after-truncate\r\n", 200);
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=after-truncate");
}

/* ---- a crash ---- */

/* The gateway buffers its lines (50 ms); killed by SIGSEGV right after its
 * answers, it still writes every access line before it dies of it. */
static void test_logs_crash_loses_no_line(void **state)
{
    fixture *fx = *state;
    char bin[512], listen[64], logpath[400];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->gw_port);
    snprintf(logpath, sizeof(logpath), "%s/gateway.log", fx->dir);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--threads", "4", NULL};
    proc gw;
    assert_int_equal(proc_start_logged(&gw, argv, logpath), 0);
    assert_int_equal(wait_port(fx->gw_port, 10000), 0);
    http_conn c = {.fd = -1, .port = fx->gw_port};
    enum { REQUESTS = 50 };
    /* On one keep-alive connection: civetweb reads a request once the
     * handler of the one before has returned, access line logged, so the
     * answer to the last (uncounted) one says every counted line is in. */
    for (int i = 0; i <= REQUESTS; i++) {
        char hdr[64];
        http_resp r;
        snprintf(hdr, sizeof(hdr), "X-Request-Id: crash-%d\r\n", i);
        assert_int_equal(http_do(&c, "GET", "/healthz", hdr, NULL, 0, &r, 5000), 0);
        http_resp_free(&r);
    }
    proc_signal(&gw, SIGSEGV);
    http_close(&c);
    int code = proc_wait(&gw, 10000);
    if (code != 128 + SIGSEGV && code != 1) /* 1: ASan reports the signal and exits */
        fail_msg("expected the gateway to die of SIGSEGV (exit 139), got %d", code);
    char *all = slurp(logpath);
    int found = 0;
    for (int i = 0; i < REQUESTS; i++) {
        char want[64];
        snprintf(want, sizeof(want), "request_id=crash-%d\n", i);
        found += strstr(all, want) != NULL;
    }
    if (found != REQUESTS)
        fail_msg("expected all %d access lines logged before the crash, found %d:\n%s",
                 REQUESTS, found, all);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_only_pets_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_one_of_four_people_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale_up_then_down_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolling_restart_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_with_idle_busy_and_stuck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_loop_then_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_deployment_on_the_same_ports, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit_replaces_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale_rejects_counts_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_up_refuses_what_cannot_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_client_leaves_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sighup_keeps_master_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_gateway_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_restart_leaves_no_ghost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_worker_is_not_restarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_never_ready_is_stopped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment_reaches_the_program_it_names, setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_logs_relayed_lines_are_logfmt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_follow_rotation_and_truncation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_logs_crash_loses_no_line, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    /* TCPOPS_TEST_FILTER=test_memory* runs one scenario (e.g. to repeat it). */
    if (getenv("TCPOPS_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TCPOPS_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
