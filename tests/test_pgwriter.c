/* The PostgreSQL store's two batching paths against a real server: the
 * group-commit writer's pipelines (a write that fails is left out, the
 * others commit) and the read pool's combined pipelines (every caller gets
 * its own answer), also across a server restart. In process: the store
 * functions, the writer and the pool, no RPC. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "people_svc/people_store.h"
#include "pgserver.h"
#include "rpc/frame.h"
#include "svc/writer.h"
#include "tcpops.pb-c.h"

enum { THREADS = 16, WRITES = 60, PEOPLE = 120 };

static pgserver pg;

typedef struct fixture {
    svc_store store;
    svc_writer *w;
    svc_conn *readers;        /* the shared pool */
} fixture;

static int setup(void **state)
{
    static int db;
    char err[512], sql[64], out[256], url[400];
    fixture *fx = calloc(1, sizeof(*fx));
    snprintf(sql, sizeof(sql), "CREATE DATABASE w%d", ++db);
    if (pgserver_sql(&pg, sql, out, sizeof(out)) < 0)
        fail_msg("%s: %s", sql, out);
    snprintf(url, sizeof(url), "postgresql://tcpops@127.0.0.1:%d/w%d", pg.port, db);
    if (svc_store_parse(&fx->store, url, "/nonexistent", "people", err, sizeof(err)) < 0 ||
        svc_store_prepare(&fx->store, "people", people_sqlite_migrations,
                          people_sqlite_nmigrations, people_postgresql_migrations,
                          people_postgresql_nmigrations, err, sizeof(err)) < 0 ||
        svc_writer_new(&fx->w, &fx->store, err, sizeof(err)) < 0 ||
        svc_conn_open(&fx->readers, &fx->store, 0, "test", err, sizeof(err)) < 0)
        fail_msg("setup: %s", err);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    svc_writer_free(fx->w);
    svc_conn_close(fx->readers);
    svc_store_fini(&fx->store);
    free(fx);
    return 0;
}

/* The number of people whose name is LIKE pattern, read through the pool. */
static long count_rows(fixture *fx, const char *pattern)
{
    static const char SQL_COUNT[] = "SELECT count(*) FROM people WHERE name LIKE $1";
    const char *p[1] = {pattern};
    char err[256];
    int st;
    PGresult *r = svc_pg_run(fx->readers->pg, "count", SQL_COUNT, 1, p, &st, err, sizeof(err));
    if (r == NULL)
        fail_msg("count: %s: %s", rpc_status_name(st), err);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

/* A write whose statement fails on the server (division by zero): it
 * breaks its group's pipeline. */
static int write_broken(svc_conn *c, void *arg, char *err, size_t errlen)
{
    static const char SQL_BROKEN[] = "SELECT 1 / (count(*) - count(*)) FROM people";
    int st;
    (void)arg;
    PQclear(svc_pg_run(c->pg, "broken", SQL_BROKEN, 0, NULL, &st, err, errlen));
    return st;
}

static int write_create(svc_conn *c, void *arg, char *err, size_t errlen)
{
    return people_store_create(c, arg, err, errlen);
}

typedef struct writer_arg {
    fixture *fx;
    int index;
    int ok, internal, other;
    char other_err[512];
} writer_arg;

/* Every tenth write is broken; the others create w<index>-<i>. */
static void *write_many(void *p)
{
    writer_arg *a = p;
    char name[64], err[256];
    for (int i = 0; i < WRITES; i++) {
        snprintf(name, sizeof(name), "w%d-%d", a->index, i);
        int broken = i % 10 == 5;
        int st = svc_writer_run(a->fx->w, broken ? write_broken : write_create, name, err,
                                sizeof(err));
        if (!broken && st == TCPOPS__STATUS__OK) {
            a->ok++;
        } else if (broken && st == TCPOPS__STATUS__INTERNAL) {
            a->internal++;
        } else {
            a->other++;
            snprintf(a->other_err, sizeof(a->other_err), "%s write %d: %s: %s",
                     broken ? "broken" : "create", i, rpc_status_name(st), err);
        }
    }
    return NULL;
}

static void test_a_failing_write_leaves_its_group_committed(void **state)
{
    fixture *fx = *state;
    pthread_t th[THREADS];
    writer_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (writer_arg){.fx = fx, .index = i};
        pthread_create(&th[i], NULL, write_many, &a[i]);
    }
    int ok = 0, internal = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (a[i].other != 0)
            fail_msg("expected OK for creates and INTERNAL for broken writes, got %s",
                     a[i].other_err);
        ok += a[i].ok;
        internal += a[i].internal;
    }
    assert_int_equal(internal, THREADS * WRITES / 10);
    assert_int_equal(ok, THREADS * WRITES * 9 / 10);
    long rows = count_rows(fx, "w%-%");
    if (rows != ok)
        fail_msg("expected the %d acknowledged creates in the database, found %ld rows", ok,
                 rows);
}

typedef struct reader_arg {
    fixture *fx;
    unsigned seed;
    int wrong;
    char why[512];
} reader_arg;

/* 300 reads of random owners: p<i> owns pet 1000 + i; "nobody" no one. */
static void *read_many(void *p)
{
    reader_arg *a = p;
    char owner[32], err[256];
    for (int k = 0; k < 300 && !a->wrong; k++) {
        int i = (int)(rand_r(&a->seed) % (PEOPLE + 1));
        snprintf(owner, sizeof(owner), i == PEOPLE ? "nobody" : "p%d", i);
        uint64_t *ids = NULL;
        size_t n = 0;
        int st = people_store_pet_ids(a->fx->readers, owner, &ids, &n, err, sizeof(err));
        int want = i == PEOPLE ? TCPOPS__STATUS__NOT_FOUND : TCPOPS__STATUS__OK;
        if (st != want || (st == TCPOPS__STATUS__OK && (n != 1 || ids[0] != 1000u + (unsigned)i))) {
            a->wrong = 1;
            snprintf(a->why, sizeof(a->why), "%s: expected %s [%d], got %s (%zu ids, first %llu) %s",
                     owner, rpc_status_name(want), 1000 + i, rpc_status_name(st), n,
                     n ? (unsigned long long)ids[0] : 0ULL, st ? err : "");
        }
        free(ids);
    }
    return NULL;
}

typedef struct add_pet_arg {
    const char *owner;
    uint64_t pet;
} add_pet_arg;

static int write_add_pet(svc_conn *c, void *arg, char *err, size_t errlen)
{
    add_pet_arg *a = arg;
    return people_store_add_pet(c, a->owner, a->pet, err, errlen);
}

/* p0..p<PEOPLE-1>, each owning pet 1000 + i. */
static void seed_people(fixture *fx)
{
    char name[32], err[256];
    for (int i = 0; i < PEOPLE; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        add_pet_arg a = {.owner = name, .pet = 1000u + (unsigned)i};
        int st = svc_writer_run(fx->w, write_create, name, err, sizeof(err));
        if (st == TCPOPS__STATUS__OK)
            st = svc_writer_run(fx->w, write_add_pet, &a, err, sizeof(err));
        if (st != TCPOPS__STATUS__OK)
            fail_msg("seeding %s: expected OK, got %s: %s", name, rpc_status_name(st), err);
    }
}

/* 32 threads reading at once through the pool: answers combined in
 * pipelines still reach the caller that asked. */
static void run_readers(fixture *fx)
{
    enum { READERS = 32 };
    pthread_t th[READERS];
    reader_arg a[READERS];
    for (int i = 0; i < READERS; i++) {
        a[i] = (reader_arg){.fx = fx, .seed = (unsigned)i * 7919u + 1};
        pthread_create(&th[i], NULL, read_many, &a[i]);
    }
    for (int i = 0; i < READERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < READERS; i++)
        if (a[i].wrong)
            fail_msg("reader %d: %s", i, a[i].why);
}

static void test_combined_reads_answer_their_own_callers(void **state)
{
    fixture *fx = *state;
    seed_people(fx);
    run_readers(fx);
}

/* After the server restarts, the pooled connections and the writer's are
 * dead: each is replaced when first used and the call still succeeds. */
static void test_reads_and_writes_right_after_a_restart(void **state)
{
    fixture *fx = *state;
    char err[512];
    seed_people(fx);
    run_readers(fx); /* every pooled connection is open now */
    if (pgserver_restart(&pg, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    run_readers(fx);
    int st = svc_writer_run(fx->w, write_create, "after-restart", err, sizeof(err));
    if (st != TCPOPS__STATUS__OK)
        fail_msg("create after the restart: expected OK, got %s: %s", rpc_status_name(st), err);
    assert_int_equal(count_rows(fx, "after-restart"), 1);
}

/* A session that took a name and then went quiet inside its transaction
 * (its client partitioned away) must not hold the writers back for the
 * kernel's two hours of keepalive: the server ends it (idle in transaction
 * 5 s) or the writer's wait ends (lock_timeout 5 s), and the create
 * answers. Without the session options it waits for good (the ctest
 * timeout fails it). */
static void test_an_abandoned_transaction_does_not_hold_writes(void **state)
{
    fixture *fx = *state;
    static const char SQL_TAKE[] =
        "INSERT INTO people (name, created_ms) VALUES ('held', 0)";
    char err[512];
    svc_conn *holder = NULL;
    int st;
    if (svc_conn_open(&holder, &fx->store, 1, "holder", err, sizeof(err)) < 0)
        fail_msg("%s", err);
    if ((st = svc_pg_begin(holder->pg, err, sizeof(err))) != TCPOPS__STATUS__OK)
        fail_msg("begin: %s: %s", rpc_status_name(st), err);
    PQclear(svc_pg_run(holder->pg, "take", SQL_TAKE, 0, NULL, &st, err, sizeof(err)));
    if (st != TCPOPS__STATUS__OK)
        fail_msg("take: %s: %s", rpc_status_name(st), err);
    /* The holder never commits. */
    st = svc_writer_run(fx->w, write_create, "held", err, sizeof(err));
    if (st != TCPOPS__STATUS__OK && st != TCPOPS__STATUS__UNAVAILABLE)
        fail_msg("create behind an abandoned transaction: expected OK (its session ended) or "
                 "UNAVAILABLE (lock timeout), got %s: %s", rpc_status_name(st), err);
    /* Once the holder's session is gone the name is free or taken, never stuck. */
    do {
        st = svc_writer_run(fx->w, write_create, "held", err, sizeof(err));
    } while (st == TCPOPS__STATUS__UNAVAILABLE);
    if (st != TCPOPS__STATUS__OK && st != TCPOPS__STATUS__ALREADY_EXISTS)
        fail_msg("create after: expected OK or ALREADY_EXISTS, got %s: %s",
                 rpc_status_name(st), err);
    assert_int_equal(count_rows(fx, "held"), 1);
    svc_conn_close(holder);
}

int main(void)
{
    char why[256], err[1024];
    if (!pgserver_available(why, sizeof(why))) {
        printf("skipped: %s\n", why);
        return PGSERVER_SKIP;
    }
    if (pgserver_start(&pg, err, sizeof(err)) < 0) {
        fprintf(stderr, "cannot start PostgreSQL: %s\n", err);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_failing_write_leaves_its_group_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_combined_reads_answer_their_own_callers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reads_and_writes_right_after_a_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_abandoned_transaction_does_not_hold_writes,
                                        setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pgserver_destroy(&pg);
    return rc;
}
