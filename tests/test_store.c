/* The people and pets stores, migrations and the group-commit writer, on
 * the backend the run names (testdb.h): temporary SQLite files, or a fresh
 * PostgreSQL database per test. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "svc/db.h"
#include "rpc/frame.h"
#include "people_svc/people_store.h"
#include "pets_svc/pets_store.h"
#include "proc.h"
#include "tcpops.pb-c.h"
#include "svc/writer.h"
#include "testdb.h"

typedef struct fixture {
    char dir[256];
    char url[320];            /* PostgreSQL: the test's own database */
    svc_store people_store;   /* for the writer too */
    svc_store pets_store;
    svc_conn *pc, *tc;        /* the store functions' view of people, pets */
} fixture;

/* Parses db (a URL, or "" for the file under dir), brings its schema up to
 * date and opens a connection to it. */
static svc_conn *open_store(svc_store *st, const char *db, const char *dir, const char *service,
                            const svc_migration *sqlite_m, size_t sqlite_n,
                            const svc_migration *pg_m, size_t pg_n)
{
    char err[256];
    svc_conn *c = NULL;
    if (svc_store_parse(st, db, dir, service, err, sizeof(err)) < 0 ||
        svc_store_prepare(st, service, sqlite_m, sqlite_n, pg_m, pg_n, err, sizeof(err)) < 0 ||
        svc_conn_open(&c, st, 1, "test_store", err, sizeof(err)) < 0)
        fail_msg("%s store on %s: %s", service, testdb_name(), err);
    return c;
}

static svc_conn *open_people(fixture *fx, svc_store *st)
{
    return open_store(st, fx->url, fx->dir, "people", people_sqlite_migrations,
                      people_sqlite_nmigrations, people_postgresql_migrations,
                      people_postgresql_nmigrations);
}

/* A fresh store on the run's backend: SQLite files in a new directory, or
 * a new PostgreSQL database holding both services' tables. */
static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    if (testdb_new(fx->url, sizeof(fx->url)) < 0)
        fail_msg("setup: %s", fx->url);
    fx->pc = open_people(fx, &fx->people_store);
    fx->tc = open_store(&fx->pets_store, fx->url, fx->dir, "pets", pets_sqlite_migrations,
                        pets_sqlite_nmigrations, pets_postgresql_migrations,
                        pets_postgresql_nmigrations);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    svc_conn_close(fx->pc);
    svc_conn_close(fx->tc);
    svc_store_fini(&fx->people_store);
    svc_store_fini(&fx->pets_store);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

static void expect_names(svc_conn *db, uint32_t limit, const char *after, const char *want)
{
    char **names = NULL;
    size_t n = 0;
    char err[256], got[1024] = "";
    int st = people_store_list(db, limit, after, &names, &n, err, sizeof(err));
    if (st != TCPOPS__STATUS__OK)
        fail_msg("list: expected OK, got %s (%s)", rpc_status_name(st), err);
    for (size_t i = 0; i < n; i++) {
        strcat(got, i ? "," : "");
        strcat(got, names[i]);
    }
    people_store_free_names(names, n);
    if (strcmp(got, want) != 0)
        fail_msg("list(limit %u, after \"%s\"): expected [%s], got [%s]", limit,
                 after ? after : "", want, got);
}

static void test_seed_and_migrations_are_idempotent(void **state)
{
    fixture *fx = *state;
    char err[256];
    expect_names(fx->pc, 0, NULL, "bob,jane");
    /* Another process (a new store, a new connection) applying the
     * migrations again changes nothing. */
    svc_store again;
    svc_conn *c = open_people(fx, &again);
    expect_names(c, 0, NULL, "bob,jane");
    svc_conn_close(c);
    svc_store_fini(&again);
    expect_names(fx->pc, 0, NULL, "bob,jane");
    uint64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(people_store_pet_ids(fx->pc, "bob", &ids, &n, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_int_equal(n, 2);
    char *names[2];
    assert_int_equal(pets_store_get_by_ids(fx->tc, ids, n, names, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_string_equal(names[0], "bixa");
    assert_string_equal(names[1], "rex");
    pets_store_free_names(names, 2);
    free(ids);
    assert_int_equal(people_store_pet_ids(fx->pc, "jane", &ids, &n, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_int_equal(n, 0);
    free(ids);
}

static void test_people_create_list_page(void **state)
{
    fixture *fx = *state;
    char err[256];
    assert_int_equal(people_store_create(fx->pc, "ann", err, sizeof(err)), TCPOPS__STATUS__OK);
    assert_int_equal(people_store_create(fx->pc, "zed", err, sizeof(err)), TCPOPS__STATUS__OK);
    assert_int_equal(people_store_create(fx->pc, "ann", err, sizeof(err)),
                     TCPOPS__STATUS__ALREADY_EXISTS);
    assert_non_null(strstr(err, "ann"));
    /* Oldest first, not alphabetical. */
    expect_names(fx->pc, 0, NULL, "bob,jane,ann,zed");
    expect_names(fx->pc, 2, NULL, "bob,jane");
    expect_names(fx->pc, 2, "jane", "ann,zed");
    expect_names(fx->pc, 2, "zed", "");
    char **names;
    size_t n;
    assert_int_equal(people_store_list(fx->pc, 0, "nobody", &names, &n, err, sizeof(err)),
                     TCPOPS__STATUS__INVALID_ARGUMENT);
    assert_int_equal(people_store_list(fx->pc, 1001, NULL, &names, &n, err, sizeof(err)),
                     TCPOPS__STATUS__INVALID_ARGUMENT);
}

static void test_people_pets(void **state)
{
    fixture *fx = *state;
    char err[256];
    uint64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(people_store_pet_ids(fx->pc, "nobody", &ids, &n, err, sizeof(err)),
                     TCPOPS__STATUS__NOT_FOUND);
    assert_int_equal(people_store_add_pet(fx->pc, "jane", 2, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_int_equal(people_store_add_pet(fx->pc, "jane", 2, err, sizeof(err)),
                     TCPOPS__STATUS__OK); /* owning it twice is owning it */
    assert_int_equal(people_store_add_pet(fx->pc, "nobody", 2, err, sizeof(err)),
                     TCPOPS__STATUS__NOT_FOUND);
    assert_int_equal(people_store_add_pet(fx->pc, "jane", 0, err, sizeof(err)),
                     TCPOPS__STATUS__INVALID_ARGUMENT);
    assert_int_equal(people_store_pet_ids(fx->pc, "jane", &ids, &n, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 2);
    free(ids);
}

static void test_pets_get_and_create(void **state)
{
    fixture *fx = *state;
    char err[256];
    uint64_t id = 0;
    assert_int_equal(pets_store_create(fx->tc, "kitty", &id, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_int_equal(id, 4); /* after the three seeded pets */
    uint64_t ids[] = {4, 99, 2, 0, 1};
    char *names[5];
    assert_int_equal(pets_store_get_by_ids(fx->tc, ids, 5, names, err, sizeof(err)),
                     TCPOPS__STATUS__OK);
    assert_string_equal(names[0], "kitty");
    assert_null(names[1]);
    assert_string_equal(names[2], "kitty");
    assert_null(names[3]);
    assert_string_equal(names[4], "bixa");
    pets_store_free_names(names, 5);
    uint64_t many[PETS_GET_MAX + 1] = {0};
    char *lots[PETS_GET_MAX + 1];
    assert_int_equal(pets_store_get_by_ids(fx->tc, many, PETS_GET_MAX + 1, lots, err,
                                           sizeof(err)),
                     TCPOPS__STATUS__INVALID_ARGUMENT);
}

/* ---- group commit ---- */

typedef struct writer_arg {
    svc_writer *w;
    int index;
    int ok, exists, other;
} writer_arg;

static int write_create(svc_conn *db, void *arg, char *err, size_t errlen)
{
    return people_store_create(db, arg, err, errlen);
}

static void *create_many(void *p)
{
    writer_arg *a = p;
    char name[64], err[256];
    for (int i = 0; i < 200; i++) {
        /* Every thread also tries one shared name, which only one may get. */
        if (i == 100)
            snprintf(name, sizeof(name), "shared");
        else
            snprintf(name, sizeof(name), "w%d-%d", a->index, i);
        int st = svc_writer_run(a->w, write_create, name, err, sizeof(err));
        if (st == TCPOPS__STATUS__OK)
            a->ok++;
        else if (st == TCPOPS__STATUS__ALREADY_EXISTS)
            a->exists++;
        else
            a->other++;
    }
    return NULL;
}

/* How many people the store lists, page by page. */
static size_t count_people(svc_conn *c)
{
    char err[256], after[128] = "";
    size_t total = 0, n;
    do {
        char **names = NULL;
        int st = people_store_list(c, PEOPLE_LIST_MAX, after, &names, &n, err, sizeof(err));
        if (st != TCPOPS__STATUS__OK)
            fail_msg("list after \"%s\": expected OK, got %s (%s)", after, rpc_status_name(st),
                     err);
        if (n > 0)
            snprintf(after, sizeof(after), "%s", names[n - 1]);
        total += n;
        people_store_free_names(names, n);
    } while (n == PEOPLE_LIST_MAX);
    return total;
}

static void test_group_commit(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_writer *w = NULL;
    enum { T = 16 };
    assert_int_equal(svc_writer_new(&w, &fx->people_store, err, sizeof(err)), 0);
    pthread_t th[T];
    writer_arg a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (writer_arg){.w = w, .index = i};
        pthread_create(&th[i], NULL, create_many, &a[i]);
    }
    int ok = 0, exists = 0, other = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
        exists += a[i].exists;
        other += a[i].other;
    }
    unsigned long commits = svc_writer_commits(w);
    svc_writer_free(w);
    assert_int_equal(other, 0);
    assert_int_equal(ok, T * 199 + 1);
    assert_int_equal(exists, T - 1);
    /* Every acknowledged write is stored, seen by another connection. */
    size_t people = count_people(fx->pc);
    if (people != 2 + (size_t)ok)
        fail_msg("expected the 2 seeded people and the %d acknowledged, got %zu people", ok,
                 people);
    /* Writes that waited together were committed together. */
    if (commits >= (unsigned long)ok)
        fail_msg("expected fewer commits than the %d writes, got %lu", ok, commits);
}

static int write_add_pet_0(svc_conn *c, void *arg, char *err, size_t errlen)
{
    return people_store_add_pet(c, arg, 0, err, errlen);
}

typedef struct mixed_arg {
    svc_writer *w;
    int index;
    int created, refused, other;
    char problem[400];
} mixed_arg;

static void *create_and_refuse(void *p)
{
    mixed_arg *a = p;
    char name[64], err[256];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "m%d-%d", a->index, i);
        int st = svc_writer_run(a->w, i % 2 ? write_add_pet_0 : write_create,
                                i % 2 ? (void *)"bob" : name, err, sizeof(err));
        int want = i % 2 ? TCPOPS__STATUS__INVALID_ARGUMENT : TCPOPS__STATUS__OK;
        if (st == want)
            *(i % 2 ? &a->refused : &a->created) += 1;
        else if (a->other++ == 0)
            snprintf(a->problem, sizeof(a->problem), "%s: expected %s, got %s (%s)",
                     i % 2 ? "add pet 0" : name, rpc_status_name(want), rpc_status_name(st),
                     err);
    }
    return NULL;
}

/* A write that its store refuses before it touches the database (pet id 0)
 * gets its own answer; the writes committed with it are unaffected, and the
 * writer goes on (on PostgreSQL such a write once left the pipeline
 * unsynced and the writer waiting forever). */
static void test_group_commit_with_refused_writes(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_writer *w = NULL;
    enum { T = 8 };
    assert_int_equal(svc_writer_new(&w, &fx->people_store, err, sizeof(err)), 0);
    int st = svc_writer_run(w, write_add_pet_0, "bob", err, sizeof(err));
    if (st != TCPOPS__STATUS__INVALID_ARGUMENT)
        fail_msg("add pet 0 alone: expected INVALID_ARGUMENT, got %s (%s)", rpc_status_name(st),
                 err);
    pthread_t th[T];
    mixed_arg a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (mixed_arg){.w = w, .index = i};
        pthread_create(&th[i], NULL, create_and_refuse, &a[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        if (a[i].other != 0)
            fail_msg("thread %d: %d of 20 writes answered wrongly; first: %s", i, a[i].other,
                     a[i].problem);
    }
    svc_writer_free(w);
    size_t people = count_people(fx->pc);
    if (people != 2 + T * 10)
        fail_msg("expected the 2 seeded people and the %d created, got %zu", T * 10, people);
}

/* ---- a full database: STORAGE_FULL, never INTERNAL ---- */

/* Caps db at the pages it has now: SQLite's own SQLITE_FULL, no root needed. */
static void cap_pages(svc_db *db)
{
    char err[256];
    if (svc_db_exec(db, "PRAGMA max_page_count = 1", err, sizeof(err)) < 0)
        fail_msg("max_page_count: %s", err);
}

static void test_full_database_is_storage_full(void **state)
{
    fixture *fx = *state;
    char name[80], err[256];
    uint64_t id;
    cap_pages(fx->pc->sqlite);
    cap_pages(fx->tc->sqlite);
    int st = TCPOPS__STATUS__OK, i;
    for (i = 0; i < 5000 && st == TCPOPS__STATUS__OK; i++) {
        snprintf(name, sizeof(name), "person-%05d-%054d", i, 0);
        st = people_store_create(fx->pc, name, err, sizeof(err));
    }
    if (st != TCPOPS__STATUS__STORAGE_FULL || strstr(err, "full") == NULL)
        fail_msg("people create %d on a full database: expected STORAGE_FULL \"...full\", "
                 "got %s \"%s\"", i, rpc_status_name(st), err);
    st = TCPOPS__STATUS__OK;
    for (i = 0; i < 5000 && st == TCPOPS__STATUS__OK; i++) {
        snprintf(name, sizeof(name), "pet-%05d-%054d", i, 0);
        st = pets_store_create(fx->tc, name, &id, err, sizeof(err));
    }
    if (st != TCPOPS__STATUS__STORAGE_FULL)
        fail_msg("pets create %d on a full database: expected STORAGE_FULL, got %s \"%s\"", i,
                 rpc_status_name(st), err);
    /* Reads still work. */
    expect_names(fx->pc, 2, NULL, "bob,jane");
}

static int write_cap(svc_conn *c, void *arg, char *err, size_t errlen)
{
    (void)arg;
    (void)err;
    (void)errlen;
    cap_pages(c->sqlite);
    return TCPOPS__STATUS__OK;
}

typedef struct full_writer {
    svc_writer *w;
    int index;
    int ok, full, other;
    char oks[50][40], fulls[50][40];
} full_writer;

static void *create_until_full(void *p)
{
    full_writer *a = p;
    char name[40], err[256];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "f%02d-%02d-%030d", a->index, i, 0);
        int st = svc_writer_run(a->w, write_create, name, err, sizeof(err));
        if (st == TCPOPS__STATUS__OK)
            snprintf(a->oks[a->ok++], 40, "%s", name);
        else if (st == TCPOPS__STATUS__STORAGE_FULL)
            snprintf(a->fulls[a->full++], 40, "%s", name);
        else
            a->other++;
    }
    return NULL;
}

static int name_count(svc_db *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(svc_db_handle(db), "SELECT count(*) FROM people WHERE name = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

/* Group commit on a database that fills up: each write is answered OK (and
 * is in the file) or STORAGE_FULL (and is not), and the writer says why it
 * fails. */
static void test_group_commit_when_full(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_writer *w = NULL;
    enum { T = 8 };
    assert_int_equal(svc_writer_new(&w, &fx->people_store, err, sizeof(err)), 0);
    assert_int_equal(svc_writer_run(w, write_cap, NULL, err, sizeof(err)), TCPOPS__STATUS__OK);
    pthread_t th[T];
    full_writer *a = calloc(T, sizeof(*a));
    for (int i = 0; i < T; i++) {
        a[i].w = w;
        a[i].index = i;
        pthread_create(&th[i], NULL, create_until_full, &a[i]);
    }
    int ok = 0, full = 0, other = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
        full += a[i].full;
        other += a[i].other;
    }
    /* The writer's health is how its last transaction ended, and a small
     * row may still fit after a rollback: write until one is refused, then
     * ask. */
    int last = TCPOPS__STATUS__OK;
    char extra[64];
    for (int i = 0; i < 1000 && last == TCPOPS__STATUS__OK; i++) {
        snprintf(extra, sizeof(extra), "extra-%04d-%040d", i, 0);
        last = svc_writer_run(w, write_create, extra, err, sizeof(err));
    }
    int health = svc_writer_health(w, err, sizeof(err));
    svc_writer_free(w);
    if (last != TCPOPS__STATUS__STORAGE_FULL)
        fail_msg("expected a write to the full database to be STORAGE_FULL, got %d (%s)", last,
                 err);
    if (other != 0 || full == 0 || ok + full != T * 50)
        fail_msg("expected %d writes each OK or STORAGE_FULL, some full; got %d OK, %d "
                 "STORAGE_FULL, %d other", T * 50, ok, full, other);
    assert_int_equal(health, TCPOPS__STATUS__STORAGE_FULL);
    for (int i = 0; i < T; i++) {
        for (int k = 0; k < a[i].ok; k++)
            if (name_count(fx->pc->sqlite, a[i].oks[k]) != 1)
                fail_msg("%s was answered OK but is not in the file", a[i].oks[k]);
        for (int k = 0; k < a[i].full; k++)
            if (name_count(fx->pc->sqlite, a[i].fulls[k]) != 0)
                fail_msg("%s was answered STORAGE_FULL but is in the file", a[i].fulls[k]);
    }
    free(a);
}

int main(int argc, char **argv)
{
    int rc = testdb_init(argc, argv);
    if (rc != 0)
        return rc;
    /* The same tests on either backend. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_and_migrations_are_idempotent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_people_create_list_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_people_pets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pets_get_and_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_with_refused_writes, setup,
                                        teardown),
    };
    /* SQLite's own full database (max_page_count): SQLite only. */
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test_setup_teardown(test_full_database_is_storage_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_when_full, setup, teardown),
    };
    rc = cmocka_run_group_tests_name(testdb_name(), tests, NULL, NULL);
    if (!testdb_is_pg())
        rc += cmocka_run_group_tests_name("sqlite only", sqlite_only, NULL, NULL);
    return rc != 0; /* a count of failures could be mistaken for PGSERVER_SKIP */
}
