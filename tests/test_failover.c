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

#include "channel.h"
#include "clock.h"
#include "proc.h"

typedef struct fixture {
    proc srv;
    char listen[64];
    rpc_channel *ch;
    rpc_stats *stats;
} fixture;

static int start_server(fixture *fx)
{
    char bin[512];
    char *argv[] = {(char *)proc_bin("tcpops-test-echo", bin, sizeof(bin)), "--listen",
                    fx->listen, NULL};
    return proc_start(&fx->srv, argv, 1);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->listen, sizeof(fx->listen), "127.0.0.1:%d", free_port());
    rpc_stats_new(&fx->stats);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rpc_channel_free(fx->ch);
    proc_stop(&fx->srv);
    rpc_stats_free(fx->stats);
    free(fx);
    return 0;
}

static void open_channel(fixture *fx)
{
    char err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    const char *eps[] = {fx->listen};
    rpc_channel_cfg_default(&cfg);
    cfg.name = "echo";
    cfg.endpoints = eps;
    cfg.nendpoints = 1;
    cfg.stats = fx->stats;
    if (rpc_channel_new(&fx->ch, &cfg, err) < 0)
        fail_msg("channel: %s", err);
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
    int status;
    char error[256];
} inflight;

static void *slow_call(void *arg)
{
    inflight *f = arg;
    /* 10 s deadline: if a lost call hung until its deadline it would come back
     * DEADLINE_EXCEEDED, not UNAVAILABLE. */
    f->status = call(f->ch, "test.Sleep", f->sleep_ms, 10000, f->error, sizeof(f->error));
    return NULL;
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
    usleep(300 * 1000); /* they are on the wire, sleeping in the server */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_fails_inflight_then_heals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_before_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_finishes_inflight, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
