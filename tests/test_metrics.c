/* Prometheus text from the real programs: the gateway's /metrics after
 * traffic on every route (an RPC error among it), with a member that stops
 * answering, many scrapes at once (the members asked by one of them), and
 * `tcpops metrics` with and without a master. The series
 * and their values are checked here; `promtool check metrics` checks the
 * format, and is skipped (visibly: cmocka's SKIPPED, and exit 77, which
 * ctest shows as Skipped) where promtool is not installed (a failure under
 * CI, where scripts/deps.sh installs it). */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "http_client.h"
#include "proc.h"

#define PETS_ASKED 5 /* /people/pets?owner=bob requests made */

static int skipped; /* tests skipped for want of promtool: ctest shows Skipped */

typedef struct fixture {
    trio t;
    proc master;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(trio_init(&fx->t), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop_gracefully(&fx->master, 15000);
    trio_fini(&fx->t); /* SIGKILL ends a stopped process too */
    free(fx);
    return 0;
}

/* ---- reading the text ---- */

/* Fails with a sentence after printing text whole (fail_msg cuts a long
 * message short). */
#define fail_in(text, ...)                                                                 \
    do {                                                                                   \
        print_message("---- the text ----\n%s---- end ----\n", (text));                   \
        fail_msg(__VA_ARGS__);                                                             \
    } while (0)

/* The value of the first sample line of body that starts with prefix (a
 * name, or a name and the start of its labels), or -1 with none. */
static double sample(const char *body, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = body; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, prefix, n) == 0) {
            const char *space = NULL;
            for (const char *p = line; p < (end != NULL ? end : line + strlen(line)); p++)
                if (*p == ' ')
                    space = p;
            return space != NULL ? atof(space + 1) : -1;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return -1;
}

/* Fails unless body has a sample starting with prefix whose value is at
 * least min. */
static double expect_at_least(const char *body, const char *prefix, double min)
{
    double v = sample(body, prefix);
    if (v < min)
        fail_in(body, "expected a sample %s... of at least %g, got %s%g (the text above)",
                prefix, min, v < 0 ? "none, or " : "", v);
    return v;
}

/* The version `NAME --version` prints (after the program's name). */
static void version_of(const char *name, char *out, size_t len)
{
    char bin[512], buf[256], err[256];
    char *argv[] = {(char *)proc_bin(name, bin, sizeof(bin)), "--version", NULL};
    assert_int_equal(proc_run(argv, buf, sizeof(buf), err, sizeof(err), 10000), 0);
    const char *v = strchr(buf, ' ');
    assert_non_null(v);
    snprintf(out, len, "%s", v + 1);
    out[strcspn(out, "\n")] = '\0';
}

/* Fails unless body has tcpops_build_info with NAME --version's version. */
static void expect_build_info(const char *body, const char *name)
{
    char version[200], want[300];
    version_of(name, version, sizeof(version));
    snprintf(want, sizeof(want), "tcpops_build_info{version=\"%s\",program=\"%s\"} 1\n",
             version, name);
    if (strstr(body, want) == NULL)
        fail_in(body, "expected %s (the text above)", want);
}

/* `promtool check metrics` over text: 1 when it found it clean, 0 after a
 * cmocka skip (no promtool, outside CI); fails the test when it complains. */
static int promtool_clean(fixture *fx, const char *what, const char *text)
{
    char out[4096], err[4096], cmd[700], path[400];
    char *find[] = {"/bin/sh", "-c", "command -v promtool", NULL};
    if (proc_run(find, out, sizeof(out), err, sizeof(err), 10000) != 0) {
        if (proc_in_ci())
            fail_msg("promtool is not installed (Debian: prometheus; scripts/deps.sh)");
        print_message("promtool is not installed (Debian: prometheus): %s not checked\n",
                      what);
        skipped++;
        skip();
        return 0;
    }
    snprintf(path, sizeof(path), "%s/check.prom", fx->t.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    int rc = proc_run(argv, out, sizeof(out), err, sizeof(err), 30000);
    if (rc != 0 || out[0] != '\0')
        fail_msg("promtool check metrics on %s: expected exit 0 and nothing said, got exit %d:"
                 "\n%s", what, rc, out);
    return 1;
}

/* ---- the gateway ---- */

static void start_gateway(fixture *fx)
{
    char bin[512], listen[64], people[64], pets[64];
    assert_int_equal(proc_start_service(&fx->t.people, "tcpops-people", fx->t.people_port, fx->t.dir,
                                        NULL), 0);
    assert_int_equal(proc_start_service(&fx->t.pets, "tcpops-pets", fx->t.pets_port, fx->t.dir, NULL),
                     0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->t.gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->t.people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->t.pets_port);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", people, "--pets", pets, "--access-log=false", "--threads=16",
                    NULL};
    assert_int_equal(proc_start(&fx->t.gw, argv, 0), 0);
    assert_int_equal(wait_port(fx->t.gw_port, 10000), 0);
}

/* GET /metrics into *body (malloc'd). */
static char *scrape(fixture *fx)
{
    http_resp r;
    if (http_once(fx->t.gw_port, "GET", "/metrics", NULL, NULL, &r) < 0)
        fail_msg("GET /metrics: no answer from the gateway");
    if (r.status != 200)
        fail_msg("GET /metrics: expected 200, got %d %s", r.status, r.body);
    return r.body;
}

/* Scrapes until the sample starting with prefix is within [lo, hi], for at
 * most 10 s: the members' counters in /metrics are asked at most once a
 * second (SCRAPE_CACHE_MS), so a scrape just after another may show what
 * they said before. Returns that body (malloc'd). */
static char *scrape_when(fixture *fx, const char *prefix, double lo, double hi)
{
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        char *body = scrape(fx);
        double v = sample(body, prefix);
        if (v >= lo && v <= hi)
            return body;
        if (rpc_now_ms() > deadline)
            fail_in(body, "expected a sample %s... within [%g, %g] within 10 s, got %g", prefix,
                    lo, hi, v);
        free(body);
        usleep(20 * 1000);
    }
}

/* Waits until the gateway knows a member of each service (learnt in the
 * background after it is ready), so that a scrape asks them. */
static void wait_members(fixture *fx)
{
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        char *body = scrape(fx);
        int known = sample(body, "tcpops_rpc_members{service=\"people\"}") >= 1 &&
                    sample(body, "tcpops_rpc_members{service=\"pets\"}") >= 1;
        free(body);
        if (known)
            return;
        if (rpc_now_ms() > deadline)
            fail_msg("expected a member of people and of pets in /metrics within 10 s");
        usleep(20 * 1000);
    }
}

/* One request; fails unless it answers want. */
static void ask(fixture *fx, const char *method, const char *path, int want)
{
    http_resp r;
    if (http_once(fx->t.gw_port, method, path, NULL, NULL, &r) < 0)
        fail_msg("%s %s: no answer", method, path);
    if (r.status != want)
        fail_msg("%s %s: expected %d, got %d %s", method, path, want, r.status, r.body);
    http_resp_free(&r);
}

/* Every route once or more, with RPC errors (ALREADY_EXISTS, NOT_FOUND). */
static void traffic(fixture *fx)
{
    ask(fx, "GET", "/people", 200);
    ask(fx, "POST", "/people?name=ann", 201);
    ask(fx, "POST", "/people?name=ann", 409);
    for (int i = 0; i < PETS_ASKED; i++)
        ask(fx, "GET", "/people/pets?owner=bob", 200);
    ask(fx, "GET", "/people/pets?owner=nobody", 404);
    ask(fx, "GET", "/status", 200);
    ask(fx, "GET", "/healthz", 200);
    ask(fx, "GET", "/readyz", 200);
    ask(fx, "GET", "/no/such/route", 404);
}

static void test_gateway_series(void **state)
{
    fixture *fx = *state;
    char want[200];
    start_gateway(fx);
    wait_members(fx);
    traffic(fx);
    /* people answered List, 2 Creates and PET_ASKED + 1 PetIds at least */
    char *body = scrape_when(fx, "tcpops_service_calls_total{service=\"people\"", PETS_ASKED + 4,
                             1e18);

    /* RPC latency and outcomes, per service and method */
    expect_at_least(body, "tcpops_rpc_duration_seconds_count{service=\"people\",method=\"people."
                          "PetIds\"}", PETS_ASKED + 1);
    expect_at_least(body, "tcpops_rpc_duration_seconds_bucket{service=\"people\",method=\"people."
                          "PetIds\",le=\"+Inf\"}", PETS_ASKED + 1);
    expect_at_least(body, "tcpops_rpc_duration_seconds_count{service=\"pets\",method=\"pets."
                          "GetByIds\"}", PETS_ASKED);
    expect_at_least(body, "tcpops_rpc_calls_total{service=\"people\",method=\"people.Create\","
                          "status=\"ALREADY_EXISTS\"}", 1);
    expect_at_least(body, "tcpops_rpc_calls_total{service=\"people\",method=\"people.PetIds\","
                          "status=\"NOT_FOUND\"}", 1);
    /* In flight: this scrape at least (a request counts itself out after its
     * answer is sent, so the one before may still be in). Its RPCs come
     * after the gauge is read, and every other call ended before its
     * answer. */
    expect_at_least(body, "tcpops_http_requests_in_flight ", 1);
    if (sample(body, "tcpops_rpc_in_flight{service=\"people\"}") != 0)
        fail_in(body, "expected tcpops_rpc_in_flight{service=\"people\"} 0");
    /* /status's, /readyz's and the scrapes' svc.Status: counted as calls,
     * but no data call's latency. */
    expect_at_least(body, "tcpops_rpc_calls_total{service=\"people\",method=\"svc.Status\","
                          "status=\"OK\"}", 1);
    if (sample(body, "tcpops_rpc_duration_seconds_count{service=\"people\",method=\"svc.Status\"")
        != -1)
        fail_in(body, "expected no tcpops_rpc_duration_seconds for svc.Status");

    /* the process, from /proc */
    double fds = expect_at_least(body, "process_open_fds ", 1);
    expect_at_least(body, "process_max_fds ", fds);
    expect_at_least(body, "process_resident_memory_bytes ", 1);
    expect_at_least(body, "process_virtual_memory_bytes ", 1);
    expect_at_least(body, "process_cpu_seconds_total ", 0);
    struct timeval now;
    gettimeofday(&now, NULL);
    double started = sample(body, "process_start_time_seconds ");
    if (started > (double)now.tv_sec + 1 || started < (double)now.tv_sec - 3600)
        fail_msg("process_start_time_seconds: expected within the last hour of %lld, got %f",
                 (long long)now.tv_sec, started);
    expect_build_info(body, "tcpops-gateway");

    /* each member's own counters, labelled with its pid */
    expect_at_least(body, "tcpops_service_member_up{service=\"people\",member=\"127.0.0.1:", 1);
    expect_at_least(body, "tcpops_service_member_up{service=\"pets\",member=\"127.0.0.1:", 1);
    const char *line = strstr(body, "tcpops_service_calls_total{service=\"people\",member=\"");
    snprintf(want, sizeof(want), "pid=\"%d\"}", (int)fx->t.people.pid);
    if (line == NULL || strstr(line, want) == NULL || strstr(line, want) > strchr(line, '\n'))
        fail_in(body, "expected tcpops_service_calls_total of people with %s (the text above)",
                want);
    /* people answered List, 2 Creates and PET_ASKED + 1 PetIds at least */
    expect_at_least(body, "tcpops_service_calls_total{service=\"people\"", PETS_ASKED + 4);
    expect_at_least(body, "tcpops_service_connections_open{service=\"people\"", 1);
    assert_true(sample(body, "tcpops_service_scrape_errors_total{service=\"people\"}") == 0);
    free(body);
}

static void test_gateway_promtool(void **state)
{
    fixture *fx = *state;
    start_gateway(fx);
    wait_members(fx);
    traffic(fx);
    char *body = scrape(fx);
    promtool_clean(fx, "the gateway's /metrics", body);
    free(body);
}

/* 1 when every thread of pid is stopped (state T in its stat). */
static int all_stopped(pid_t pid)
{
    char path[300], text[512];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int stopped = d != NULL, tasks = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        FILE *f = fopen(path, "r");
        size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        text[n] = '\0';
        const char *close = strrchr(text, ')');
        stopped &= close != NULL && close[1] == ' ' && close[2] == 'T';
        tasks++;
    }
    if (d != NULL)
        closedir(d);
    return stopped && tasks > 0;
}

/* Waits until every thread of p is stopped: kill(SIGSTOP) returns before
 * that. */
static void wait_stopped(const proc *p)
{
    int64_t deadline = rpc_now_ms() + 5000;
    while (!all_stopped(p->pid)) {
        if (rpc_now_ms() > deadline)
            fail_msg("pid %d: expected every thread stopped within 5 s of SIGSTOP",
                     (int)p->pid);
        usleep(1000);
    }
}

/* A member that does not answer (stopped) costs a scrape its deadline, not
 * the scrape: /metrics answers, says so, and stays clean. */
static void test_member_not_answering(void **state)
{
    fixture *fx = *state;
    start_gateway(fx);
    wait_members(fx);
    traffic(fx);
    proc_signal(&fx->t.people, SIGSTOP);
    wait_stopped(&fx->t.people);
    char *body = scrape_when(fx, "tcpops_service_member_up{service=\"people\"", 0, 0);
    proc_signal(&fx->t.people, SIGCONT);
    if (sample(body, "tcpops_service_member_up{service=\"people\"") != 0)
        fail_in(body, "a stopped people worker: expected tcpops_service_member_up 0");
    expect_at_least(body, "tcpops_service_scrape_errors_total{service=\"people\"}", 1);
    if (sample(body, "tcpops_service_calls_total{service=\"people\"") != -1)
        fail_in(body, "a stopped people worker: expected no counters of it");
    expect_at_least(body, "tcpops_service_member_up{service=\"pets\"", 1);
    expect_at_least(body, "tcpops_service_calls_total{service=\"pets\"", PETS_ASKED);
    promtool_clean(fx, "/metrics with a member not answering", body);
    free(body);
}

#define SCRAPERS 48 /* /metrics requests at once */

typedef struct scraper {
    int port;
    int status; /* the answer's, or -1: none */
} scraper;

static void *scrape_once(void *arg)
{
    scraper *sc = arg;
    http_resp r;
    sc->status = http_once(sc->port, "GET", "/metrics", NULL, NULL, &r) < 0 ? -1 : r.status;
    if (sc->status >= 0)
        http_resp_free(&r);
    return NULL;
}

/* /metrics needs no credentials: many scrapes at once ask each member for
 * svc.Status once between them (and once a second at most), not once each.
 * The gateway's own count of its svc.Status calls to people (readiness,
 * /status and the scrapes make them, and none of the first two come here)
 * tells how often it asked. */
static void test_scrapes_share_one_member_ask(void **state)
{
    fixture *fx = *state;
    const char *asked = "tcpops_rpc_calls_total{service=\"people\",method=\"svc.Status\","
                        "status=\"OK\"}";
    start_gateway(fx);
    wait_members(fx);
    /* After a scrape that asked people (one from before it was known may
     * be what the first ones show), the next counts that ask: a scrape
     * reads the gateway's counters before it asks the members. */
    free(scrape_when(fx, "tcpops_service_member_up{service=\"people\"", 1, 1));
    char *body = scrape(fx);
    double before = expect_at_least(body, asked, 1);
    free(body);
    pthread_t th[SCRAPERS];
    scraper sc[SCRAPERS];
    for (int i = 0; i < SCRAPERS; i++) {
        sc[i] = (scraper){.port = fx->t.gw_port, .status = -1};
        if (pthread_create(&th[i], NULL, scrape_once, &sc[i]) != 0)
            fail_msg("pthread_create for scraper %d failed", i);
    }
    for (int i = 0; i < SCRAPERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < SCRAPERS; i++)
        if (sc[i].status != 200)
            fail_msg("scraper %d: expected 200, got %d", i, sc[i].status);
    body = scrape(fx);
    double after = expect_at_least(body, asked, 1);
    /* One ask per second the scrapes took, and the last scrape's: far
     * fewer than SCRAPERS unless each scrape asked on its own. */
    if (after - before > SCRAPERS / 6)
        fail_in(body, "%d scrapes at once: expected at most %d svc.Status calls to people, got "
                      "%g (%g before, %g after)",
                SCRAPERS + 1, SCRAPERS / 6, after - before, before, after);
    free(body);
}

/* ---- tcpops metrics ---- */

/* Runs `tcpops metrics --data-dir DIR`; its exit code, stdout in out. */
static int tcpops_metrics(const char *dir, char *out, size_t len)
{
    char err[2048], bin[512];
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "metrics", "--data-dir",
                    (char *)dir, NULL};
    return proc_run(argv, out, len, err, sizeof(err), 30000);
}

static void up(fixture *fx)
{
    char bin[512], gw[64], people[64], pets[64], log[300];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->t.gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->t.people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->t.pets_port);
    snprintf(log, sizeof(log), "%s/master.log", fx->t.dir);
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "up", "--data-dir", fx->t.dir,
                    "--gateway", gw, "--people", people, "--pets", pets, "--workers",
                    "people=2", "--gateway-args", "--access-log=false --threads=16", NULL};
    assert_int_equal(proc_start_logged(&fx->master, argv, log), 0);
}

static void test_tcpops_metrics(void **state)
{
    fixture *fx = *state;
    char out[16384];
    up(fx);
    /* Every worker up (numbered from 1): what the text says once they all
     * serve. */
    int64_t deadline = rpc_now_ms() + 20000;
    for (;;) {
        int rc = tcpops_metrics(fx->t.dir, out, sizeof(out));
        if (rc == 0 && sample(out, "tcpops_worker_up{app=\"people\",worker=\"1\"}") == 1 &&
            sample(out, "tcpops_worker_up{app=\"people\",worker=\"2\"}") == 1 &&
            sample(out, "tcpops_worker_up{app=\"pets\",worker=\"1\"}") == 1 &&
            sample(out, "tcpops_worker_up{app=\"gateway\",worker=\"1\"}") == 1)
            break;
        if (rpc_now_ms() > deadline)
            fail_in(out, "tcpops metrics: expected every worker up within 20 s, got exit %d", rc);
        usleep(50 * 1000);
    }
    assert_true(sample(out, "tcpops_supervisor_up ") == 1);
    expect_build_info(out, "tcpops");
    assert_true(sample(out, "tcpops_worker_state{app=\"people\",worker=\"1\",state=\"running\"}")
                == 1);
    assert_true(sample(out, "tcpops_worker_restarts_total{app=\"people\",worker=\"1\"}") == 0);
    expect_at_least(out, "tcpops_worker_resident_memory_bytes{app=\"people\",worker=\"1\",pid=\"",
                    4096);
    expect_at_least(out, "tcpops_worker_uptime_seconds{app=\"gateway\",worker=\"1\",pid=\"", 0);
    promtool_clean(fx, "tcpops metrics", out);
}

/* No master: the text still comes, saying so, with exit 3. */
static void test_tcpops_metrics_without_master(void **state)
{
    fixture *fx = *state;
    char out[4096];
    assert_int_equal(tcpops_metrics(fx->t.dir, out, sizeof(out)), 3);
    assert_true(sample(out, "tcpops_supervisor_up ") == 0);
    assert_true(sample(out, "tcpops_worker_up") == -1);
    expect_build_info(out, "tcpops");
    promtool_clean(fx, "tcpops metrics without a master", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gateway_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_promtool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_not_answering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrapes_share_one_member_ask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcpops_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcpops_metrics_without_master, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed == 0 && skipped > 0 ? 77 : failed;
}
