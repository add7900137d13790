/* The client channel against a server in a child process that is killed with
 * SIGKILL, restarted, or not there yet: no call hangs, new calls fail fast
 * while it is down, and the same channel heals by itself. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "proc.h"

/* Failures in a row that eject an endpoint (client.h, EJECT_AFTER). */
#define EJECT_AFTER_CALLS 5

typedef struct fixture {
    proc srv;
    proc srv2;
    char listen[64];
    char listen2[64];
    rpc_channel *ch;
    rpc_stats *stats;
} fixture;

static int start_server_on(proc *p, char *listen)
{
    char bin[512];
    char *argv[] = {(char *)proc_bin("tcpops-test-echo", bin, sizeof(bin)), "--listen",
                    listen, NULL};
    return proc_start(p, argv, 1);
}

static int start_server(fixture *fx)
{
    return start_server_on(&fx->srv, fx->listen);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->listen, sizeof(fx->listen), "127.0.0.1:%d", free_port());
    snprintf(fx->listen2, sizeof(fx->listen2), "127.0.0.1:%d", free_port());
    rpc_stats_new(&fx->stats);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rpc_channel_free(fx->ch);
    proc_stop(&fx->srv);
    proc_stop(&fx->srv2);
    rpc_stats_free(fx->stats);
    free(fx);
    return 0;
}

/* A channel to the first server (and the second when two), pool_size
 * connections each; keepalive values of 0 keep the defaults. */
static void open_channel_with(fixture *fx, int two, int pool_size, int ka_idle, int ka_timeout)
{
    char err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    const char *eps[] = {fx->listen, fx->listen2};
    rpc_channel_cfg_default(&cfg);
    cfg.name = "echo";
    cfg.endpoints = eps;
    cfg.nendpoints = two ? 2 : 1;
    cfg.pool_size = pool_size;
    cfg.stats = fx->stats;
    if (ka_idle > 0) {
        cfg.keepalive_idle_ms = ka_idle;
        cfg.keepalive_timeout_ms = ka_timeout;
    }
    if (rpc_channel_new(&fx->ch, &cfg, err) < 0)
        fail_msg("channel: %s", err);
}

static void open_channel(fixture *fx)
{
    open_channel_with(fx, 0, 2, 0, 0);
}

static int call(rpc_channel *ch, const char *method, const char *body, int deadline_ms,
                char *out, size_t cap)
{
    rpc_call c = {.method = method, .body = (const uint8_t *)body,
                  .body_len = strlen(body), .deadline_ms = deadline_ms};
    int st = rpc_channel_call(ch, &c);
    if (out != NULL) {
        if (st == TCPOPS__STATUS__OK)
            snprintf(out, cap, "%.*s", (int)c.resp_len, (const char *)c.resp);
        else
            snprintf(out, cap, "%s", c.error);
    }
    rpc_call_fini(&c);
    return st;
}

/* Calls until one succeeds, for at most ~10 s. Returns the attempts made, or
 * -1 if none succeeded. */
static int call_until_ok(rpc_channel *ch)
{
    char got[256];
    for (int i = 1; i <= 1000; i++) {
        if (call(ch, "test.Echo", "back", 1000, got, sizeof(got)) == TCPOPS__STATUS__OK) {
            assert_string_equal(got, "back");
            return i;
        }
        usleep(10 * 1000);
    }
    return -1;
}

typedef struct inflight {
    rpc_channel *ch;
    const char *sleep_ms;
    int idempotent;
    int status;
    char error[256];
} inflight;

static void *slow_call(void *arg)
{
    inflight *f = arg;
    /* 10 s deadline: if a lost call hung until its deadline it would come back
     * DEADLINE_EXCEEDED, not UNAVAILABLE. */
    rpc_call c = {.method = "test.Sleep", .body = (const uint8_t *)f->sleep_ms,
                  .body_len = strlen(f->sleep_ms), .deadline_ms = 10000,
                  .idempotent = f->idempotent};
    f->status = rpc_channel_call(f->ch, &c);
    if (f->status == TCPOPS__STATUS__OK)
        snprintf(f->error, sizeof(f->error), "%.*s", (int)c.resp_len, (const char *)c.resp);
    else
        snprintf(f->error, sizeof(f->error), "%s", c.error);
    rpc_call_fini(&c);
    return NULL;
}

/* Waits until n calls are in flight on ch (sent, not yet answered), for at
 * most 10 s: a server killed before its calls went out would see none. */
static void wait_inflight(rpc_channel *ch, int n)
{
    int out = 0;
    for (int i = 0; i < 10000 && out < n; i++) {
        rpc_endpoint_info info[2];
        size_t k = rpc_channel_endpoints(ch, info, 2);
        out = 0;
        for (size_t e = 0; e < k && e < 2; e++)
            out += info[e].outstanding;
        if (out < n)
            usleep(1000);
    }
    if (out < n)
        fail_msg("expected %d calls in flight within 10 s, %d were", n, out);
}

static void test_kill9_fails_inflight_then_heals(void **state)
{
    fixture *fx = *state;
    char got[256];
    assert_int_equal(start_server(fx), 0);
    open_channel(fx);
    assert_true(call_until_ok(fx->ch) > 0);

    enum { N = 6 };
    pthread_t th[N];
    inflight f[N];
    for (int i = 0; i < N; i++) {
        f[i] = (inflight){.ch = fx->ch, .sleep_ms = "5000", .status = -1};
        pthread_create(&th[i], NULL, slow_call, &f[i]);
    }
    wait_inflight(fx->ch, N); /* on the wire, sleeping in the server */
    proc_signal(&fx->srv, SIGKILL);
    assert_int_equal(proc_wait(&fx->srv, 5000), 128 + SIGKILL);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (f[i].status != TCPOPS__STATUS__UNAVAILABLE)
            fail_msg("in-flight call %d: expected UNAVAILABLE at once, got %s (%s)", i,
                     rpc_status_name(f[i].status), f[i].error);
    }

    /* While it is down, new calls fail fast, even with a long deadline. */
    int64_t before = rpc_stats_get(fx->stats, RPC_C_FAIL_FAST);
    for (int i = 0; i < 20; i++) {
        int st = call(fx->ch, "test.Echo", "x", 10000, got, sizeof(got));
        if (st != TCPOPS__STATUS__UNAVAILABLE)
            fail_msg("call %d while down: expected UNAVAILABLE, got %s (%s)", i,
                     rpc_status_name(st), got);
    }
    assert_true(rpc_stats_get(fx->stats, RPC_C_FAIL_FAST) > before);

    /* Same port, same channel object: it comes back by itself. */
    assert_int_equal(start_server(fx), 0);
    assert_true(call_until_ok(fx->ch) > 0);
    assert_true(rpc_stats_get(fx->stats, RPC_C_RECONNECTS) >= 1);
}

/* A call for one endpoint (rpc_call.to, the gateway's scrape of a member)
 * says nothing of how the channel serves the rest: one for an endpoint not
 * connected counts no fail-fast, and its timeouts eject nothing, however
 * many in a row. */
static void test_calls_to_one_endpoint_count_against_nothing(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start_server(fx), 0);
    open_channel(fx);
    assert_true(call_until_ok(fx->ch) > 0);

    rpc_call c = {.method = "test.Echo", .deadline_ms = 1000, .to = "127.0.0.1:1"};
    int st = rpc_channel_call(fx->ch, &c);
    rpc_call_fini(&c);
    assert_int_equal(st, TCPOPS__STATUS__UNAVAILABLE);
    if (rpc_stats_get(fx->stats, RPC_C_FAIL_FAST) != 0)
        fail_msg("expected no fail_fast for a call to an endpoint not listed, got %lld",
                 (long long)rpc_stats_get(fx->stats, RPC_C_FAIL_FAST));

    for (int i = 0; i < 2 * EJECT_AFTER_CALLS; i++) {
        rpc_call s = {.method = "test.Sleep", .body = (const uint8_t *)"1000", .body_len = 4,
                      .deadline_ms = 20, .idempotent = 1, .to = fx->listen};
        st = rpc_channel_call(fx->ch, &s);
        rpc_call_fini(&s);
        if (st != TCPOPS__STATUS__DEADLINE_EXCEEDED)
            fail_msg("call %d to a sleeping endpoint: expected DEADLINE_EXCEEDED, got %s", i,
                     rpc_status_name(st));
    }
    if (rpc_stats_get(fx->stats, RPC_C_EJECTIONS) != 0)
        fail_msg("expected no ejection after timed-out calls to one endpoint, got %lld",
                 (long long)rpc_stats_get(fx->stats, RPC_C_EJECTIONS));
    rpc_endpoint_info info[1];
    assert_int_equal(rpc_channel_endpoints(fx->ch, info, 1), 1);
    assert_false(info[0].ejected);
}

static void test_client_before_server(void **state)
{
    fixture *fx = *state;
    char got[256];
    open_channel(fx);
    int st = call(fx->ch, "test.Echo", "early", 1000, got, sizeof(got));
    if (st != TCPOPS__STATUS__UNAVAILABLE)
        fail_msg("expected UNAVAILABLE before the server exists, got %s (%s)",
                 rpc_status_name(st), got);
    usleep(300 * 1000); /* let the channel back off a few times */
    assert_true(rpc_stats_get(fx->stats, RPC_C_CONNECT_FAILURES) >= 2);
    assert_int_equal(start_server(fx), 0);
    assert_true(call_until_ok(fx->ch) > 0);
    assert_int_equal(call(fx->ch, "test.Echo", "now", 1000, got, sizeof(got)),
                     TCPOPS__STATUS__OK);
    assert_string_equal(got, "now");
}

/* SIGTERM drains: a call in flight is answered, then the server exits 0. */
static void test_sigterm_finishes_inflight(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start_server(fx), 0);
    open_channel(fx);
    assert_true(call_until_ok(fx->ch) > 0);
    inflight f = {.ch = fx->ch, .sleep_ms = "1000", .status = -1};
    pthread_t th;
    pthread_create(&th, NULL, slow_call, &f);
    usleep(300 * 1000);
    proc_signal(&fx->srv, SIGTERM);
    pthread_join(th, NULL);
    if (f.status != TCPOPS__STATUS__OK)
        fail_msg("expected the in-flight call answered during drain, got %s (%s)",
                 rpc_status_name(f.status), f.error);
    assert_string_equal(f.error, "1000");
    assert_int_equal(proc_wait(&fx->srv, 10000), 0);
}

/* Reads lost with a connection are retried once on another; writes are not:
 * they come back UNAVAILABLE, never silently sent twice. */
static void test_reads_retried_elsewhere_writes_not(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start_server(fx), 0);
    assert_int_equal(start_server_on(&fx->srv2, fx->listen2), 0);
    open_channel_with(fx, 1, 1, 0, 0);
    for (int i = 0; i < 200 && rpc_channel_ready(fx->ch) < 2; i++)
        usleep(10000);
    assert_int_equal(rpc_channel_ready(fx->ch), 2);

    enum { N = 16 };
    pthread_t th[N];
    inflight f[N];
    for (int i = 0; i < N; i++) {
        /* R R W W ...: the channel alternates between the two idle servers,
         * so reads and writes must not alternate in step with it. */
        /* 3 s each: all 16 must be in flight at once before the kill, and
         * starting them one at a time takes long under ASan on a busy
         * machine (700 ms was once not enough). */
        f[i] = (inflight){.ch = fx->ch, .sleep_ms = "3000", .idempotent = (i / 2) % 2 == 0,
                          .status = -1};
        pthread_create(&th[i], NULL, slow_call, &f[i]);
        /* One at a time: calls that pick together see the same counts, and
         * which server each gets is then a coin toss (all writes on one). */
        wait_inflight(fx->ch, i + 1);
    }
    proc_signal(&fx->srv, SIGKILL);
    int reads_ok = 0, writes_ok = 0, writes_unavailable = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (f[i].idempotent) {
            if (f[i].status != TCPOPS__STATUS__OK)
                fail_msg("read %d: expected OK after a retry, got %s (%s)", i,
                         rpc_status_name(f[i].status), f[i].error);
            reads_ok++;
        } else if (f[i].status == TCPOPS__STATUS__OK) {
            writes_ok++;
        } else if (f[i].status == TCPOPS__STATUS__UNAVAILABLE) {
            writes_unavailable++;
        } else {
            fail_msg("write %d: expected OK or UNAVAILABLE, got %s (%s)", i,
                     rpc_status_name(f[i].status), f[i].error);
        }
    }
    assert_int_equal(reads_ok, N / 2);
    /* Calls spread over both servers, so some writes were on the one killed. */
    if (writes_unavailable == 0 || writes_ok == 0)
        fail_msg("expected writes on both servers (some lost, some answered); got %d OK, "
                 "%d UNAVAILABLE", writes_ok, writes_unavailable);
    assert_true(rpc_stats_get(fx->stats, RPC_C_RETRIES) >= 1);
}

/* A server that freezes (SIGSTOP) keeps its sockets open: only keepalive can
 * tell. Calls on it fail with UNAVAILABLE instead of waiting out their
 * deadline, and the channel heals when the server thaws. */
static void test_keepalive_finds_a_frozen_server(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start_server(fx), 0);
    open_channel_with(fx, 0, 1, 200, 300);
    assert_true(call_until_ok(fx->ch) > 0);
    proc_signal(&fx->srv, SIGSTOP);
    inflight f = {.ch = fx->ch, .sleep_ms = "10", .status = -1};
    slow_call(&f);
    proc_signal(&fx->srv, SIGCONT);
    if (f.status != TCPOPS__STATUS__UNAVAILABLE)
        fail_msg("call to a frozen server: expected UNAVAILABLE from keepalive, got %s (%s)",
                 rpc_status_name(f.status), f.error);
    assert_true(call_until_ok(fx->ch) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_fails_inflight_then_heals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_before_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls_to_one_endpoint_count_against_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_finishes_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_retried_elsewhere_writes_not, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_finds_a_frozen_server, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
