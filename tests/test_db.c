/* svc/db.c: migrations applied once and atomically, the busy timeout, the
 * statement cache, read transactions, and how SQLite's errors map to
 * statuses (a full database is STORAGE_FULL, a lock held past the timeout
 * UNAVAILABLE, anything else INTERNAL). On files in a temporary directory. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "svc/db.h"
#include "tcpops.pb-c.h"

typedef dir_fixture fixture;

static int setup(void **state)
{
    return dir_fixture_setup(state, "t.db");
}

static int teardown(void **state)
{
    return dir_fixture_teardown(state);
}

static svc_db *open_db(const char *path)
{
    char err[256];
    svc_db *db = NULL;
    if (svc_db_open(&db, path, 0, err, sizeof(err)) != 0)
        fail_msg("expected %s to open, got \"%s\"", path, err);
    return db;
}

/* The single integer the query sql answers, or -1. */
static long long query_int(svc_db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(svc_db_handle(db), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const svc_migration TWO[] = {
    {1, "001_t.sql", "CREATE TABLE t (x INTEGER NOT NULL);"},
    {2, "002_seed.sql", "INSERT INTO t (x) VALUES (1);"},
};

/* Each migration runs once, however often migrate is called and from how
 * many connections; a newer one added later runs alone. */
static void test_migrations_apply_once(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_db *a = open_db(fx->path), *b = open_db(fx->path);
    assert_int_equal(svc_db_migrate(a, TWO, 2, err, sizeof(err)), 0);
    assert_int_equal(svc_db_migrate(a, TWO, 2, err, sizeof(err)), 0);
    assert_int_equal(svc_db_migrate(b, TWO, 2, err, sizeof(err)), 0);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 1);
    assert_int_equal(query_int(a, "PRAGMA user_version"), 2);

    const svc_migration three[] = {TWO[0], TWO[1], {3, "003_more.sql", "INSERT INTO t VALUES (3);"}};
    assert_int_equal(svc_db_migrate(b, three, 3, err, sizeof(err)), 0);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), 2);
    assert_int_equal(query_int(a, "SELECT sum(x) FROM t"), 4);
    assert_int_equal(query_int(a, "PRAGMA user_version"), 3);
    svc_db_close(a);
    svc_db_close(b);
}

/* A migration that fails leaves nothing of the run behind, and says which. */
static void test_failed_migration_rolls_back(void **state)
{
    fixture *fx = *state;
    char err[256] = "";
    const svc_migration bad[] = {TWO[0], {2, "002_bad.sql", "INSERT INTO nowhere VALUES (1);"}};
    svc_db *db = open_db(fx->path);
    assert_int_equal(svc_db_migrate(db, bad, 2, err, sizeof(err)), -EIO);
    if (strstr(err, "002_bad.sql") == NULL || strstr(err, "nowhere") == NULL)
        fail_msg("expected the error to name 002_bad.sql and the table, got \"%s\"", err);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 't'"), 0);
    assert_int_equal(sqlite3_get_autocommit(svc_db_handle(db)), 1);
    svc_db_close(db);
}

/* Every connection is in WAL mode and waits SVC_BUSY_TIMEOUT_MS for a lock. */
static void test_open_sets_wal_and_busy_timeout(void **state)
{
    fixture *fx = *state;
    svc_db *db = open_db(fx->path);
    assert_int_equal(query_int(db, "PRAGMA busy_timeout"), SVC_BUSY_TIMEOUT_MS);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(svc_db_handle(db), "PRAGMA journal_mode", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    svc_db_close(db);

    char err[256];
    svc_db *full = NULL;
    assert_int_equal(svc_db_open(&full, fx->path, 1, err, sizeof(err)), 0);
    assert_int_equal(query_int(full, "PRAGMA synchronous"), 2); /* FULL */
    svc_db_close(full);
}

static void test_open_missing_dir_fails(void **state)
{
    fixture *fx = *state;
    char path[600], err[256] = "";
    svc_db *db = NULL;
    snprintf(path, sizeof(path), "%s/no/such/dir/t.db", fx->dir);
    assert_int_equal(svc_db_open(&db, path, 0, err, sizeof(err)), -EIO);
    assert_null(db);
    if (strstr(err, path) == NULL)
        fail_msg("expected the error to name %s, got \"%s\"", path, err);
}

/* A write lock held by another connection past the busy timeout (here 0)
 * is UNAVAILABLE: the caller may try again. */
static void test_locked_is_unavailable(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_db *a = open_db(fx->path), *b = open_db(fx->path);
    assert_int_equal(svc_db_migrate(a, TWO, 1, err, sizeof(err)), 0);
    assert_int_equal(svc_db_exec(a, "BEGIN IMMEDIATE", err, sizeof(err)), 0);
    sqlite3_busy_timeout(svc_db_handle(b), 0);
    assert_int_equal(svc_db_exec(b, "INSERT INTO t VALUES (2)", err, sizeof(err)), -EIO);
    assert_int_equal(svc_db_status(b), TCPOPS__STATUS__UNAVAILABLE);
    assert_int_equal(svc_db_fail(b, "create", err, sizeof(err)), TCPOPS__STATUS__UNAVAILABLE);
    if (strncmp(err, "create: ", 8) != 0 || strstr(err, "locked") == NULL)
        fail_msg("expected \"create: ...locked...\", got \"%s\"", err);
    assert_int_equal(svc_db_exec(a, "COMMIT", err, sizeof(err)), 0);
    svc_db_close(a);
    svc_db_close(b);
}

/* SQLITE_FULL (here the database's page limit) is STORAGE_FULL. */
static void test_full_database_is_storage_full(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_db *db = open_db(fx->path);
    assert_int_equal(svc_db_migrate(db, TWO, 1, err, sizeof(err)), 0);
    assert_int_equal(svc_db_exec(db, "CREATE TABLE blobs (b BLOB)", err, sizeof(err)), 0);
    long long pages = query_int(db, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", pages + 2);
    assert_int_equal(svc_db_exec(db, sql, err, sizeof(err)), 0);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = svc_db_exec(db, "INSERT INTO blobs VALUES (zeroblob(65536))", err, sizeof(err));
    assert_int_equal(rc, -EIO);
    assert_int_equal(sqlite3_errcode(svc_db_handle(db)), SQLITE_FULL);
    assert_int_equal(svc_db_status(db), TCPOPS__STATUS__STORAGE_FULL);
    assert_int_equal(svc_db_fail(db, "create", err, sizeof(err)), TCPOPS__STATUS__STORAGE_FULL);
    if (strstr(err, "full") == NULL)
        fail_msg("expected the error to say the database is full, got \"%s\"", err);
    svc_db_close(db);
}

/* A write past RLIMIT_FSIZE is an I/O error to SQLite (EFBIG): still
 * STORAGE_FULL. In a child, since the limit is per process. Exit codes:
 * 0 ok, 1 the write did not fail, 2 wrong status. */
static int fsize_child(const char *path)
{
    char err[256];
    svc_db *db = NULL;
    if (svc_db_open(&db, path, 0, err, sizeof(err)) != 0)
        return 3;
    if (svc_db_exec(db, "CREATE TABLE blobs (b BLOB)", err, sizeof(err)) != 0)
        return 3;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1 << 20, 1 << 20};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 3;
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++)
        rc = svc_db_exec(db, "INSERT INTO blobs VALUES (zeroblob(65536))", err, sizeof(err));
    if (rc == 0)
        return 1;
    return svc_db_status(db) == TCPOPS__STATUS__STORAGE_FULL ? 0 : 2;
}

static void test_file_size_limit_is_storage_full(void **state)
{
    fixture *fx = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fsize_child(fx->path));
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("expected a write past RLIMIT_FSIZE to be STORAGE_FULL; the child ended with "
                 "%d (1: the write succeeded, 2: another status, 3: setup failed)",
                 WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
}

/* Other errors (here a constraint) are INTERNAL, with SQLite's reason. */
static void test_other_errors_are_internal(void **state)
{
    fixture *fx = *state;
    char err[256];
    svc_db *db = open_db(fx->path);
    assert_int_equal(svc_db_migrate(db, TWO, 1, err, sizeof(err)), 0);
    assert_int_equal(svc_db_exec(db, "INSERT INTO t VALUES (NULL)", err, sizeof(err)), -EIO);
    assert_int_equal(svc_db_status(db), TCPOPS__STATUS__INTERNAL);
    assert_int_equal(svc_db_fail(db, "insert", err, sizeof(err)), TCPOPS__STATUS__INTERNAL);
    if (strncmp(err, "insert: ", 8) != 0 || strstr(err, "NOT NULL") == NULL)
        fail_msg("expected \"insert: ...NOT NULL...\", got \"%s\"", err);
    svc_db_close(db);
}

/* One SQL text, one prepared statement, handed out reset with its bindings
 * cleared; more texts than the cache holds still prepare. */
static void test_statement_cache(void **state)
{
    fixture *fx = *state;
    static const char SQL[] = "SELECT ?1";
    static char many[40][32];
    svc_db *db = open_db(fx->path);
    sqlite3_stmt *st = svc_db_stmt(db, SQL);
    assert_non_null(st);
    sqlite3_bind_int(st, 1, 7);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 7);
    sqlite3_stmt *again = svc_db_stmt(db, SQL);
    assert_ptr_equal(again, st);
    assert_int_equal(sqlite3_step(again), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(again, 0), SQLITE_NULL); /* bindings cleared */
    for (int i = 0; i < 40; i++) {
        snprintf(many[i], sizeof(many[i]), "SELECT %d", i);
        sqlite3_stmt *m = svc_db_stmt(db, many[i]);
        assert_non_null(m);
        assert_int_equal(sqlite3_step(m), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(m, 0), i);
    }
    assert_null(svc_db_stmt(db, "SELECT FROM"));
    svc_db_close(db);
}

/* insert_named binds the name and the time; a read transaction ends with
 * the connection back in autocommit. */
static void test_insert_named_and_read_transaction(void **state)
{
    fixture *fx = *state;
    static const char SQL_INS[] = "INSERT INTO n (name, ms) VALUES (?1, ?2)";
    char err[256];
    svc_db *db = open_db(fx->path);
    assert_int_equal(svc_db_exec(db, "CREATE TABLE n (name TEXT UNIQUE, ms INTEGER)", err,
                                 sizeof(err)),
                     0);
    assert_int_equal(svc_db_insert_named(db, SQL_INS, "ann"), SQLITE_DONE);
    assert_int_equal(svc_db_insert_named(db, SQL_INS, "ann"), SQLITE_CONSTRAINT);
    assert_true(query_int(db, "SELECT ms FROM n WHERE name = 'ann'") > 0);
    assert_int_equal(svc_db_begin_read(db), 0);
    assert_int_equal(sqlite3_get_autocommit(svc_db_handle(db)), 0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM n"), 1);
    svc_db_end_read(db);
    assert_int_equal(sqlite3_get_autocommit(svc_db_handle(db)), 1);
    svc_db_close(db);
    svc_db_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_apply_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_sets_wal_and_busy_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_missing_dir_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_database_is_storage_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit_is_storage_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_errors_are_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_named_and_read_transaction, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
