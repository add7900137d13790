/* src/rpc/stats.c: counters, calls by method and status, the "other" rows,
 * and what rpc_stats_foreach_call reports (what /metrics shows). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/stats.h"
#include "tcpops.pb-c.h"

static rpc_stats *fresh(void)
{
    rpc_stats *s = NULL;
    assert_int_equal(rpc_stats_new(&s), 0);
    assert_non_null(s);
    return s;
}

static void test_counters(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    for (int c = 0; c < RPC_C_COUNT; c++)
        assert_int_equal(rpc_stats_get(s, (rpc_counter)c), 0);
    rpc_stats_add(s, RPC_C_CONNECTS, 1);
    rpc_stats_add(s, RPC_C_CONNECTS, 2);
    rpc_stats_add(s, RPC_C_CONNS_OPEN, 3);
    rpc_stats_add(s, RPC_C_CONNS_OPEN, -1); /* a gauge goes down too */
    assert_int_equal(rpc_stats_get(s, RPC_C_CONNECTS), 3);
    assert_int_equal(rpc_stats_get(s, RPC_C_CONNS_OPEN), 2);
    assert_int_equal(rpc_stats_get(s, RPC_C_RECONNECTS), 0);
    rpc_stats_add(NULL, RPC_C_CONNECTS, 1); /* counts nothing, no crash */
    rpc_stats_call(NULL, "people.List", TCPOPS__STATUS__OK);
    rpc_stats_free(s);
    rpc_stats_free(NULL);
}

static void test_counter_names(void **state)
{
    (void)state;
    assert_string_equal(rpc_counter_name(RPC_C_CONNECTS), "connects");
    assert_string_equal(rpc_counter_name(RPC_C_LATE_ANSWERS), "late_answers");
    assert_string_equal(rpc_counter_name(RPC_C_COUNT), "unknown");
    assert_string_equal(rpc_counter_name((rpc_counter)-1), "unknown");
    assert_string_equal(rpc_counter_help(RPC_C_COUNT), "");
    /* Every counter has a metric name of its own and a help sentence. */
    for (int c = 0; c < RPC_C_COUNT; c++) {
        const char *n = rpc_counter_name((rpc_counter)c);
        const char *h = rpc_counter_help((rpc_counter)c);
        if (n == NULL || h == NULL || n[0] == '\0' || h[0] == '\0')
            fail_msg("counter %d: expected a name and a help text, got \"%s\" \"%s\"", c,
                     n ? n : "NULL", h ? h : "NULL");
        for (const char *p = n; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
                fail_msg("counter %d: name \"%s\" is not a metric name", c, n);
        for (int k = 0; k < c; k++)
            if (strcmp(rpc_counter_name((rpc_counter)k), n) == 0)
                fail_msg("counters %d and %d are both named \"%s\"", k, c, n);
    }
}

static void test_calls_by_method_and_status(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    rpc_stats_call(s, "people.List", TCPOPS__STATUS__OK);
    rpc_stats_call(s, "people.List", TCPOPS__STATUS__OK);
    rpc_stats_call(s, "people.List", TCPOPS__STATUS__NOT_FOUND);
    rpc_stats_call(s, "pets.Get", TCPOPS__STATUS__OK);
    assert_int_equal(rpc_stats_calls(s, "people.List", TCPOPS__STATUS__OK), 2);
    assert_int_equal(rpc_stats_calls(s, "people.List", TCPOPS__STATUS__NOT_FOUND), 1);
    assert_int_equal(rpc_stats_calls(s, "people.List", TCPOPS__STATUS__INTERNAL), 0);
    assert_int_equal(rpc_stats_calls(s, "pets.Get", TCPOPS__STATUS__OK), 1);
    assert_int_equal(rpc_stats_calls(s, "pets.Never", TCPOPS__STATUS__OK), 0);
    assert_int_equal(rpc_stats_calls(s, NULL, TCPOPS__STATUS__OK), 3); /* every method */
    assert_int_equal(rpc_stats_calls(s, NULL, TCPOPS__STATUS__NOT_FOUND), 1);
    rpc_stats_free(s);
}

/* Statuses past RPC_STATS_STATUSES (or negative) share one row. */
static void test_calls_status_out_of_range(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    rpc_stats_call(s, "m", -1);
    rpc_stats_call(s, "m", RPC_STATS_STATUSES);
    rpc_stats_call(s, "m", 1000);
    rpc_stats_call(s, "m", RPC_STATS_STATUSES - 1);
    assert_int_equal(rpc_stats_calls(s, "m", 1000), 3);
    assert_int_equal(rpc_stats_calls(s, "m", -5), 3);
    assert_int_equal(rpc_stats_calls(s, "m", RPC_STATS_STATUSES - 1), 1);
    rpc_stats_free(s);
}

/* ---- what foreach reports ---- */

#define MAX_SEEN 256

typedef struct seen {
    struct {
        char method[80], status[40];
        uint64_t n;
    } rows[MAX_SEEN];
    int n;
} seen;

static void collect(void *user, const char *method, const char *status, uint64_t n)
{
    seen *v = user;
    if (v->n >= MAX_SEEN)
        fail_msg("more than %d (method, status) rows", MAX_SEEN);
    snprintf(v->rows[v->n].method, sizeof(v->rows[0].method), "%s", method);
    snprintf(v->rows[v->n].status, sizeof(v->rows[0].status), "%s", status);
    v->rows[v->n].n = n;
    v->n++;
}

/* Collects s's rows; fails if a (method, status) pair is reported twice (as
 * /metrics would then show two series with the same labels). */
static void report(const rpc_stats *s, seen *v)
{
    memset(v, 0, sizeof(*v));
    rpc_stats_foreach_call(s, collect, v);
    for (int i = 0; i < v->n; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(v->rows[i].method, v->rows[k].method) == 0 &&
                strcmp(v->rows[i].status, v->rows[k].status) == 0)
                fail_msg("method=%s status=%s reported twice (%llu and %llu)",
                         v->rows[i].method, v->rows[i].status,
                         (unsigned long long)v->rows[k].n, (unsigned long long)v->rows[i].n);
}

static uint64_t seen_n(const seen *v, const char *method, const char *status)
{
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->rows[i].method, method) == 0 && strcmp(v->rows[i].status, status) == 0)
            return v->rows[i].n;
    return 0;
}

static void test_foreach(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    seen v;
    report(s, &v);
    assert_int_equal(v.n, 0); /* nothing counted: nothing reported */
    rpc_stats_call(s, "people.List", TCPOPS__STATUS__OK);
    rpc_stats_call(s, "people.List", TCPOPS__STATUS__OK);
    rpc_stats_call(s, "people.Create", TCPOPS__STATUS__ALREADY_EXISTS);
    report(s, &v);
    assert_int_equal(v.n, 2); /* only non-zero pairs */
    assert_int_equal(seen_n(&v, "people.List", "OK"), 2);
    assert_int_equal(seen_n(&v, "people.Create", "ALREADY_EXISTS"), 1);
    rpc_stats_free(s);
}

/* A method with no name, or one too long for a row, counts as "other";
 * so do the methods past the first 64. Whichever way a call got there,
 * "other" is one row. */
static void test_other_is_one_row(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    char longname[100];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    rpc_stats_call(s, NULL, TCPOPS__STATUS__OK);
    rpc_stats_call(s, longname, TCPOPS__STATUS__OK);
    for (int i = 0; i < 70; i++) {
        char m[32];
        snprintf(m, sizeof(m), "svc.M%d", i);
        rpc_stats_call(s, m, TCPOPS__STATUS__OK);
    }
    rpc_stats_call(s, "other", TCPOPS__STATUS__OK);
    seen v;
    report(s, &v);
    assert_int_equal(rpc_stats_calls(s, NULL, TCPOPS__STATUS__OK), 73);
    assert_int_equal(rpc_stats_calls(s, longname, TCPOPS__STATUS__OK), 0);
    uint64_t named = 0;
    for (int i = 0; i < v.n; i++)
        if (strcmp(v.rows[i].method, "other") != 0)
            named += v.rows[i].n;
    /* 64 rows of their own; the rest is "other". */
    assert_int_equal(v.n, 65);
    assert_int_equal(seen_n(&v, "other", "OK"), 73 - named);
    assert_int_equal(rpc_stats_calls(s, "other", TCPOPS__STATUS__OK), 73 - named);
    rpc_stats_free(s);
}

/* Statuses with no name (a peer may answer any number) are reported as one
 * UNKNOWN per method. */
static void test_unknown_statuses_are_one_row(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    rpc_stats_call(s, "m", 1); /* not a Tcpops__Status */
    rpc_stats_call(s, "m", 2);
    rpc_stats_call(s, "m", 40);
    rpc_stats_call(s, "m", TCPOPS__STATUS__INTERNAL);
    seen v;
    report(s, &v);
    assert_int_equal(v.n, 2);
    assert_int_equal(seen_n(&v, "m", "UNKNOWN"), 3);
    assert_int_equal(seen_n(&v, "m", "INTERNAL"), 1);
    rpc_stats_free(s);
}

/* Counting from many threads at once loses nothing. */
#define THREADS 8
#define PER_THREAD 20000

static void *hammer(void *arg)
{
    rpc_stats *s = arg;
    char m[16];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(m, sizeof(m), "m%d", i % 5);
        rpc_stats_call(s, m, TCPOPS__STATUS__OK);
        rpc_stats_add(s, RPC_C_RETRIES, 1);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    rpc_stats *s = fresh();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(rpc_stats_get(s, RPC_C_RETRIES), THREADS * PER_THREAD);
    assert_int_equal(rpc_stats_calls(s, NULL, TCPOPS__STATUS__OK), THREADS * PER_THREAD);
    assert_int_equal(rpc_stats_calls(s, "m0", TCPOPS__STATUS__OK), THREADS * PER_THREAD / 5);
    seen v;
    report(s, &v); /* each method got one row, however the threads raced */
    assert_int_equal(v.n, 5);
    rpc_stats_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_counter_names),
        cmocka_unit_test(test_calls_by_method_and_status),
        cmocka_unit_test(test_calls_status_out_of_range),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_other_is_one_row),
        cmocka_unit_test(test_unknown_statuses_are_one_row),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
