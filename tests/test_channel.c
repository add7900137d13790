/* The client channel against a real server in this process: correctness
 * under concurrency, no head-of-line blocking, deadlines, GOAWAY. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rpc/server.h"
#include "testsvc.h"

typedef struct fixture {
    rpc_server *srv;
    rpc_stats *srv_stats;
    rpc_channel *ch;
    rpc_stats *ch_stats;
    char addr[64];
} fixture;

/* A test server (tests/testsvc.c methods) on a free port; addr gets it. */
static rpc_server *start_server(rpc_stats *stats, int threads, char *addr, size_t len)
{
    char err[RPC_ERRLEN];
    rpc_server *srv = testsvc_start(NULL, 0, threads, NULL, stats, addr, len, err);
    if (srv == NULL)
        fail_msg("server: %s", err);
    return srv;
}

/* A channel of pool connections of max_inflight calls each, max_waiting
 * calls may wait for a slot (a negative value: the defaults). */
static int setup_channel(void **state, int pool, int max_inflight, int max_waiting)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char err[RPC_ERRLEN];
    rpc_channel_cfg ccfg;

    rpc_stats_new(&fx->srv_stats);
    rpc_stats_new(&fx->ch_stats);
    fx->srv = start_server(fx->srv_stats, 4, fx->addr, sizeof(fx->addr));

    const char *eps[] = {fx->addr};
    rpc_channel_cfg_default(&ccfg);
    ccfg.name = "test";
    ccfg.endpoints = eps;
    ccfg.nendpoints = 1;
    ccfg.pool_size = pool;
    if (max_inflight > 0)
        ccfg.max_inflight = max_inflight;
    if (max_waiting >= 0)
        ccfg.max_waiting = max_waiting;
    ccfg.stats = fx->ch_stats;
    if (rpc_channel_new(&fx->ch, &ccfg, err) < 0)
        fail_msg("channel: %s", err);
    *state = fx;
    return 0;
}

static int setup_pool2(void **state) { return setup_channel(state, 2, -1, -1); }
static int setup_pool1(void **state) { return setup_channel(state, 1, -1, -1); }
/* One connection of 2 calls in flight, 8 more may wait. */
#define TINY_INFLIGHT 2
#define TINY_WAITING 8
static int setup_tiny(void **state)
{
    return setup_channel(state, 1, TINY_INFLIGHT, TINY_WAITING);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rpc_channel_free(fx->ch);
    rpc_server_drain(fx->srv, 1000);
    rpc_server_free(fx->srv);
    rpc_stats_free(fx->ch_stats);
    rpc_stats_free(fx->srv_stats);
    free(fx);
    return 0;
}

/* One call; returns its status and copies up to cap-1 answer bytes to out. */
static int call(rpc_channel *ch, const char *method, const char *body, int deadline_ms,
                char *out, size_t cap)
{
    rpc_call c = {
        .method = method,
        .body = (const uint8_t *)body,
        .body_len = strlen(body),
        .deadline_ms = deadline_ms,
    };
    int st = rpc_channel_call(ch, &c);
    if (out != NULL && cap > 0) {
        size_t n = c.resp_len < cap - 1 ? c.resp_len : cap - 1;
        if (n > 0)
            memcpy(out, c.resp, n);
        out[n] = '\0';
        if (st != TCPOPS__STATUS__OK)
            snprintf(out, cap, "%s", c.error);
    }
    rpc_call_fini(&c);
    return st;
}

/* ---- 32 threads x 5000 calls, each answer checked against its token ---- */

#define THREADS 32
#define CALLS 5000

typedef struct worker {
    rpc_channel *ch;
    int index;
    int ok;
    int wrong;
    int failed;
    char first_problem[320];
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    char token[96], got[128];
    for (int i = 0; i < CALLS; i++) {
        /* Lengths vary so frames of different sizes interleave. */
        snprintf(token, sizeof(token), "t%02d-c%05d-%.*s", w->index, i, i % 48,
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV");
        int st = call(w->ch, "test.Echo", token, 5000, got, sizeof(got));
        if (st != TCPOPS__STATUS__OK) {
            if (w->failed++ == 0)
                snprintf(w->first_problem, sizeof(w->first_problem), "%s: %s",
                         rpc_status_name(st), got);
        } else if (strcmp(got, token) != 0) {
            if (w->wrong++ == 0)
                snprintf(w->first_problem, sizeof(w->first_problem),
                         "sent \"%s\", answer was \"%s\"", token, got);
        } else {
            w->ok++;
        }
    }
    return NULL;
}

static void test_concurrent_calls_match_their_answers(void **state)
{
    fixture *fx = *state;
    pthread_t th[THREADS];
    worker w[THREADS];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < THREADS; i++) {
        w[i].ch = fx->ch;
        w[i].index = i;
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int ok = 0, wrong = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        wrong += w[i].wrong;
        failed += w[i].failed;
        if (w[i].first_problem[0])
            print_message("thread %d: %s\n", i, w[i].first_problem);
    }
    if (wrong != 0 || failed != 0)
        fail_msg("expected %d correct answers, got %d correct, %d wrong, %d failed",
                 THREADS * CALLS, ok, wrong, failed);
    /* Both connections of the pool carried the load; the server agrees. */
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_CONNECTS), 2);
    assert_int_equal(rpc_stats_calls(fx->srv_stats, "test.Echo", TCPOPS__STATUS__OK),
                     THREADS * CALLS);
}

/* ---- one slow call does not hold up a thousand fast ones ---- */

typedef struct slow_call {
    rpc_channel *ch;
    int status;
    _Atomic int done;
} slow_call;

static void *run_slow(void *arg)
{
    slow_call *s = arg;
    s->status = call(s->ch, "test.Sleep", "2000", 5000, NULL, 0);
    s->done = 1;
    return NULL;
}

static void test_slow_call_does_not_block_fast_ones(void **state)
{
    fixture *fx = *state;
    slow_call s = {.ch = fx->ch};
    pthread_t th;
    char got[64];

    /* The pool has one connection: everything shares it. */
    assert_int_equal(call(fx->ch, "test.Echo", "warm", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__OK);
    pthread_create(&th, NULL, run_slow, &s);
    usleep(100 * 1000); /* let the slow call get onto the wire first */
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        char token[32];
        snprintf(token, sizeof(token), "fast-%d", i);
        if (call(fx->ch, "test.Echo", token, 2000, got, sizeof(got)) == TCPOPS__STATUS__OK &&
            strcmp(got, token) == 0)
            ok++;
    }
    int slow_done_before = s.done;
    pthread_join(th, NULL);
    assert_int_equal(ok, 1000);
    if (slow_done_before)
        fail_msg("expected the 2 s call still running after 1000 fast calls; it had finished");
    assert_int_equal(s.status, TCPOPS__STATUS__OK);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_CONNECTS), 1);
}

/* ---- deadlines ---- */

static void test_deadline_exceeded_and_late_answer_dropped(void **state)
{
    fixture *fx = *state;
    char got[256];

    int st = call(fx->ch, "test.Sleep", "600", 100, got, sizeof(got));
    if (st != TCPOPS__STATUS__DEADLINE_EXCEEDED)
        fail_msg("expected DEADLINE_EXCEEDED, got %s (%s)", rpc_status_name(st), got);

    /* The same connection keeps working. */
    assert_int_equal(call(fx->ch, "test.Echo", "after", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__OK);
    assert_string_equal(got, "after");
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_CONNECTS), 1);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_CONNS_LOST), 0);

    /* The answer that comes after the deadline is dropped and counted. */
    for (int i = 0; i < 500 && rpc_stats_get(fx->ch_stats, RPC_C_LATE_ANSWERS) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_LATE_ANSWERS), 1);
    /* and a new call still gets its own answer, not the stale one */
    assert_int_equal(call(fx->ch, "test.Echo", "mine", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__OK);
    assert_string_equal(got, "mine");
}

/* ---- statuses travel ---- */

static void test_statuses_reach_the_caller(void **state)
{
    fixture *fx = *state;
    char got[256];
    assert_int_equal(call(fx->ch, "test.Fail", "bad input", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__INVALID_ARGUMENT);
    assert_string_equal(got, "bad input");
    int st = call(fx->ch, "no.Such", "", 2000, got, sizeof(got));
    assert_int_equal(st, TCPOPS__STATUS__UNIMPLEMENTED);
    assert_non_null(strstr(got, "no.Such"));
    /* An application error does not cost the connection. */
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_CONNS_LOST), 0);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_RECONNECTS), 0);
}

/* ---- a full pool: calls wait for a slot; a full wait queue refuses ---- */

typedef struct queued_caller {
    rpc_channel *ch;
    const char *method;
    const char *body;
    int calls;                /* calls to make, one after another */
    int ok, exhausted, other;
    char problem[320];
} queued_caller;

static void *queued_calls(void *arg)
{
    queued_caller *q = arg;
    char got[256];
    for (int i = 0; i < q->calls; i++) {
        int st = call(q->ch, q->method, q->body, 5000, got, sizeof(got));
        if (st == TCPOPS__STATUS__OK && strcmp(got, q->body) == 0) {
            q->ok++;
        } else {
            if (st == TCPOPS__STATUS__RESOURCE_EXHAUSTED)
                q->exhausted++;
            else
                q->other++;
            if (q->problem[0] == '\0')
                snprintf(q->problem, sizeof(q->problem), "%s: %s", rpc_status_name(st), got);
        }
    }
    return NULL;
}

/* As many callers as slots plus wait queue: each call waits its turn and
 * none is refused (the pool of one connection takes 2 at a time). */
static void test_full_pool_calls_wait_for_a_slot(void **state)
{
    fixture *fx = *state;
    enum { CALLERS = TINY_INFLIGHT + TINY_WAITING, EACH = 20 };
    pthread_t th[CALLERS];
    queued_caller q[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        q[i] = (queued_caller){.ch = fx->ch, .method = "test.Sleep", .body = "5", .calls = EACH};
        pthread_create(&th[i], NULL, queued_calls, &q[i]);
    }
    int ok = 0, exhausted = 0, other = 0;
    for (int i = 0; i < CALLERS; i++) {
        pthread_join(th[i], NULL);
        ok += q[i].ok;
        exhausted += q[i].exhausted;
        other += q[i].other;
        if (q[i].problem[0])
            print_message("caller %d: %s\n", i, q[i].problem);
    }
    if (ok != CALLERS * EACH)
        fail_msg("expected all %d calls answered OK (at most %d in flight, %d waiting); "
                 "got %d OK, %d RESOURCE_EXHAUSTED, %d other",
                 CALLERS * EACH, TINY_INFLIGHT, TINY_WAITING, ok, exhausted, other);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_INFLIGHT_LIMIT), 0);
    assert_int_equal(rpc_stats_calls(fx->srv_stats, "test.Sleep", TCPOPS__STATUS__OK),
                     CALLERS * EACH);
    assert_int_equal(rpc_channel_waiting(fx->ch), 0);
}

/* Waits (up to 5 s) until fn(ch) == want. */
static int until_equal(int (*fn)(rpc_channel *), rpc_channel *ch, int want)
{
    int64_t until = rpc_now_ms() + 5000;
    while (fn(ch) != want && rpc_now_ms() < until)
        usleep(1000);
    return fn(ch);
}

static int in_flight(rpc_channel *ch)
{
    rpc_endpoint_info info;
    return rpc_channel_endpoints(ch, &info, 1) == 1 ? info.outstanding : -1;
}

/* Both slots held by slow calls and the wait queue full: each further call
 * is refused at once with RESOURCE_EXHAUSTED; every queued one is answered. */
static void test_full_wait_queue_refuses_the_excess(void **state)
{
    fixture *fx = *state;
    enum { EXCESS = 5 };
    char got[256];
    pthread_t slow_th[TINY_INFLIGHT], wait_th[TINY_WAITING];
    queued_caller slow[TINY_INFLIGHT], waiter[TINY_WAITING];

    /* A first call brings the connection up. */
    assert_int_equal(call(fx->ch, "test.Echo", "up", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__OK);
    for (int i = 0; i < TINY_INFLIGHT; i++) {
        slow[i] = (queued_caller){.ch = fx->ch, .method = "test.Sleep", .body = "1500",
                                  .calls = 1};
        pthread_create(&slow_th[i], NULL, queued_calls, &slow[i]);
    }
    assert_int_equal(until_equal(in_flight, fx->ch, TINY_INFLIGHT), TINY_INFLIGHT);
    for (int i = 0; i < TINY_WAITING; i++) {
        waiter[i] = (queued_caller){.ch = fx->ch, .method = "test.Echo", .body = "waited",
                                    .calls = 1};
        pthread_create(&wait_th[i], NULL, queued_calls, &waiter[i]);
    }
    assert_int_equal(until_equal(rpc_channel_waiting, fx->ch, TINY_WAITING), TINY_WAITING);

    int refused = 0;
    for (int i = 0; i < EXCESS; i++) {
        int st = call(fx->ch, "test.Echo", "excess", 5000, got, sizeof(got));
        if (st == TCPOPS__STATUS__RESOURCE_EXHAUSTED)
            refused++;
        else
            print_message("excess call %d: expected RESOURCE_EXHAUSTED, got %s (%s)\n", i,
                          rpc_status_name(st), got);
    }
    int ok = 0;
    for (int i = 0; i < TINY_INFLIGHT; i++) {
        pthread_join(slow_th[i], NULL);
        ok += slow[i].ok;
    }
    for (int i = 0; i < TINY_WAITING; i++) {
        pthread_join(wait_th[i], NULL);
        ok += waiter[i].ok;
        if (waiter[i].problem[0])
            print_message("waiter %d: %s\n", i, waiter[i].problem);
    }
    if (refused != EXCESS || ok != TINY_INFLIGHT + TINY_WAITING)
        fail_msg("expected %d calls refused and %d answered OK; got %d refused, %d OK", EXCESS,
                 TINY_INFLIGHT + TINY_WAITING, refused, ok);
    assert_int_equal(rpc_stats_get(fx->ch_stats, RPC_C_INFLIGHT_LIMIT), EXCESS);
    assert_int_equal(rpc_stats_calls(fx->srv_stats, "test.Echo", TCPOPS__STATUS__OK),
                     1 + TINY_WAITING);
    assert_int_equal(rpc_channel_waiting(fx->ch), 0);
}

/* ---- GOAWAY during a stream of calls ---- */

typedef struct streamer {
    rpc_channel *ch;
    _Atomic int *stop;
    int ok, failed;
    char problem[320];
} streamer;

static void *stream_calls(void *arg)
{
    streamer *s = arg;
    char token[64];
    for (int i = 0; !*s->stop; i++) {
        snprintf(token, sizeof(token), "%p-%d", (void *)s, i);
        /* Writes too: not idempotent, so only GOAWAY's promise keeps them safe. */
        rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)token,
                      .body_len = strlen(token), .deadline_ms = 5000};
        int st = rpc_channel_call(s->ch, &c);
        if (st == TCPOPS__STATUS__OK && c.resp_len == strlen(token) &&
            memcmp(c.resp, token, c.resp_len) == 0) {
            s->ok++;
        } else if (s->failed++ == 0) {
            snprintf(s->problem, sizeof(s->problem), "%s: %s", rpc_status_name(st), c.error);
        }
        rpc_call_fini(&c);
    }
    return NULL;
}

#define STREAMERS 8

typedef struct streamers {
    pthread_t th[STREAMERS];
    streamer s[STREAMERS];
    _Atomic int stop;
} streamers;

static void streamers_start(streamers *st, rpc_channel *ch)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < STREAMERS; i++) {
        st->s[i].ch = ch;
        st->s[i].stop = &st->stop;
        pthread_create(&st->th[i], NULL, stream_calls, &st->s[i]);
    }
}

/* Stops them; returns the calls that failed and adds the good ones to *ok. */
static int streamers_stop(streamers *st, int *ok)
{
    int failed = 0;
    atomic_store(&st->stop, 1);
    *ok = 0;
    for (int i = 0; i < STREAMERS; i++) {
        pthread_join(st->th[i], NULL);
        *ok += st->s[i].ok;
        failed += st->s[i].failed;
        if (st->s[i].problem[0])
            print_message("streamer %d: %s\n", i, st->s[i].problem);
    }
    return failed;
}

static void test_goaway_loses_no_call(void **state)
{
    fixture *fx = *state;
    streamers st;
    streamers_start(&st, fx->ch);
    for (int round = 0; round < 5; round++) {
        usleep(150 * 1000);
        rpc_server_goaway(fx->srv);
    }
    usleep(300 * 1000);
    int ok = 0;
    int failed = streamers_stop(&st, &ok);
    if (failed != 0)
        fail_msg("expected no failed call across 5 GOAWAYs; %d of %d failed", failed,
                 ok + failed);
    assert_true(ok > 0);
    assert_true(rpc_stats_get(fx->ch_stats, RPC_C_GOAWAYS) >= 5);
    /* Each GOAWAY'd connection was replaced by a new one. */
    assert_true(rpc_stats_get(fx->ch_stats, RPC_C_CONNECTS) >= 2 + 5);
}

/* ---- endpoints replaced while calls flow ---- */

static void test_set_endpoints_loses_no_call(void **state)
{
    fixture *fx = *state;
    rpc_stats *bstats = NULL;
    char baddr[64], err[RPC_ERRLEN];
    rpc_stats_new(&bstats);
    rpc_server *b = start_server(bstats, 2, baddr, sizeof(baddr));

    streamers st;
    streamers_start(&st, fx->ch);
    usleep(200 * 1000);
    /* Move everything to B. */
    const char *only_b[] = {baddr};
    assert_int_equal(rpc_channel_set_endpoints(fx->ch, only_b, 1, err), 0);
    usleep(300 * 1000);
    uint64_t a_before = rpc_stats_calls(fx->srv_stats, "test.Echo", TCPOPS__STATUS__OK);
    usleep(300 * 1000);
    uint64_t a_after = rpc_stats_calls(fx->srv_stats, "test.Echo", TCPOPS__STATUS__OK);
    uint64_t b_mid = rpc_stats_calls(bstats, "test.Echo", TCPOPS__STATUS__OK);
    /* Both again. */
    const char *both[] = {fx->addr, baddr};
    assert_int_equal(rpc_channel_set_endpoints(fx->ch, both, 2, err), 0);
    usleep(300 * 1000);
    int ok = 0;
    int failed = streamers_stop(&st, &ok);
    uint64_t a_end = rpc_stats_calls(fx->srv_stats, "test.Echo", TCPOPS__STATUS__OK);
    rpc_server_drain(b, 1000);
    rpc_server_free(b);
    uint64_t b_end = rpc_stats_calls(bstats, "test.Echo", TCPOPS__STATUS__OK);
    rpc_stats_free(bstats);
    if (failed != 0)
        fail_msg("expected no failed call while endpoints changed; %d of %d failed", failed,
                 ok + failed);
    if (a_after != a_before)
        fail_msg("expected no calls on the removed endpoint; it got %llu more",
                 (unsigned long long)(a_after - a_before));
    assert_true(b_mid > 0);
    assert_true(a_end > a_after); /* added back, it takes calls again */
    assert_true(b_end > b_mid);
}

/* ---- GOAWAY on idle connections of several endpoints ---- */

/* Three of four servers say GOAWAY while the channel is idle. Nobody reads
 * an idle connection at once, so the next call may pick several of those
 * connections before a live one: each is found gone before anything is sent
 * on it, and must not count as one of the call's attempts. */
static void test_idle_goaways_cost_no_call(void **state)
{
    fixture *fx = *state;
    rpc_stats *stats[3];
    rpc_server *srv[3];
    char addrs[3][64], err[RPC_ERRLEN], out[320];
    const char *eps[4] = {fx->addr, addrs[0], addrs[1], addrs[2]};
    for (int i = 0; i < 3; i++) {
        rpc_stats_new(&stats[i]);
        srv[i] = start_server(stats[i], 2, addrs[i], sizeof(addrs[i]));
    }
    assert_int_equal(rpc_channel_set_endpoints(fx->ch, eps, 4, err), 0);
    int failed = 0;
    for (int round = 0; round < 30; round++) {
        for (int i = 0; i < 200 && rpc_channel_ready(fx->ch) < 8; i++)
            usleep(5 * 1000);
        for (int i = 0; i < 3; i++)
            rpc_server_goaway(srv[i]);
        usleep(20 * 1000); /* the GOAWAYs arrive; nobody reads them yet */
        int st = call(fx->ch, "test.Echo", "x", 2000, out, sizeof(out));
        if (st != TCPOPS__STATUS__OK && failed++ == 0)
            print_message("round %d: status %d: %s\n", round, st, out);
    }
    for (int i = 0; i < 3; i++) {
        rpc_server_drain(srv[i], 1000);
        rpc_server_free(srv[i]);
        rpc_stats_free(stats[i]);
    }
    if (failed != 0)
        fail_msg("expected every call after idle GOAWAYs answered; %d of 30 failed", failed);
}

/* An empty list (a gateway whose names do not resolve yet): calls fail fast
 * with UNAVAILABLE, and the channel serves again once given an endpoint. */
static void test_empty_endpoint_list(void **state)
{
    fixture *fx = *state;
    char err[RPC_ERRLEN], got[64];
    assert_int_equal(call(fx->ch, "test.Echo", "a", 2000, got, sizeof(got)), TCPOPS__STATUS__OK);
    assert_int_equal(rpc_channel_set_endpoints(fx->ch, NULL, 0, err), 0);
    assert_int_equal(call(fx->ch, "test.Echo", "b", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__UNAVAILABLE);
    const char *eps[] = {fx->addr};
    assert_int_equal(rpc_channel_set_endpoints(fx->ch, eps, 1, err), 0);
    assert_int_equal(call(fx->ch, "test.Echo", "c", 2000, got, sizeof(got)), TCPOPS__STATUS__OK);

    rpc_channel_cfg ccfg;
    rpc_channel *none = NULL;
    rpc_channel_cfg_default(&ccfg);
    ccfg.name = "none";
    assert_int_equal(rpc_channel_new(&none, &ccfg, err), 0);
    assert_int_equal(call(none, "test.Echo", "d", 2000, got, sizeof(got)),
                     TCPOPS__STATUS__UNAVAILABLE);
    assert_int_equal(rpc_channel_set_endpoints(none, eps, 1, err), 0);
    assert_int_equal(call(none, "test.Echo", "e", 2000, got, sizeof(got)), TCPOPS__STATUS__OK);
    rpc_channel_free(none);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_calls_match_their_answers,
                                        setup_pool2, teardown),
        cmocka_unit_test_setup_teardown(test_slow_call_does_not_block_fast_ones,
                                        setup_pool1, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_exceeded_and_late_answer_dropped,
                                        setup_pool1, teardown),
        cmocka_unit_test_setup_teardown(test_statuses_reach_the_caller, setup_pool2,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_goaway_loses_no_call, setup_pool2, teardown),
        cmocka_unit_test_setup_teardown(test_set_endpoints_loses_no_call, setup_pool2, teardown),
        cmocka_unit_test_setup_teardown(test_empty_endpoint_list, setup_pool1, teardown),
        cmocka_unit_test_setup_teardown(test_idle_goaways_cost_no_call, setup_pool2, teardown),
        cmocka_unit_test_setup_teardown(test_full_pool_calls_wait_for_a_slot, setup_tiny,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_wait_queue_refuses_the_excess, setup_tiny,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
