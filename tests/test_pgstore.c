/* The store pieces that need no database server: --db parsing
 * (svc_store_parse), the description logs and `tcpops ps` show
 * (svc_store_describe, which must never show a password), the SQLSTATE to
 * status mapping (svc_pg_sqlstate_status), and a --db the services cannot
 * use being a usage error (exit 2, the reason on stderr). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "rpc/frame.h"
#include "svc/pg.h"
#include "svc/store.h"
#include "tcpops.pb-c.h"

/* Parses db for the people service with data dir "/data" and expects
 * success with backend and the path (SQLite) or URL (PostgreSQL) want. */
static void expect_parsed(const char *db, svc_backend backend, const char *want, int in_dir)
{
    svc_store st;
    char err[512] = "";
    int rc = svc_store_parse(&st, db, "/data", "people", err, sizeof(err));
    if (rc != 0)
        fail_msg("--db \"%s\": expected it parsed, got %d \"%s\"", db ? db : "(none)", rc, err);
    const char *got = backend == SVC_SQLITE ? st.path : st.url;
    if (st.backend != backend || strcmp(got, want) != 0 || st.in_data_dir != in_dir)
        fail_msg("--db \"%s\": expected %s \"%s\" (in data dir: %d), got %s \"%s\" (%d)",
                 db ? db : "(none)", backend == SVC_SQLITE ? "sqlite" : "postgresql", want,
                 in_dir, st.backend == SVC_SQLITE ? "sqlite" : "postgresql", got,
                 st.in_data_dir);
}

/* Expects db refused with -EINVAL and a reason containing why. */
static void expect_refused(const char *db, const char *why)
{
    svc_store st;
    char err[512] = "";
    int rc = svc_store_parse(&st, db, "/data", "people", err, sizeof(err));
    if (rc != -EINVAL || strstr(err, why) == NULL)
        fail_msg("--db \"%.80s\": expected -EINVAL saying \"%s\", got %d \"%s\"", db, why, rc,
                 err);
}

static void test_parse_sqlite(void **state)
{
    (void)state;
    expect_parsed(NULL, SVC_SQLITE, "/data/people.db", 1);
    expect_parsed("", SVC_SQLITE, "/data/people.db", 1);
    expect_parsed("sqlite:", SVC_SQLITE, "/data/people.db", 1);
    expect_parsed("sqlite:/srv/p.db", SVC_SQLITE, "/srv/p.db", 0);
    expect_parsed("sqlite:rel/p.db", SVC_SQLITE, "rel/p.db", 0);
}

static void test_parse_postgresql(void **state)
{
    (void)state;
    const char *ok[] = {
        "postgresql://tcpops@127.0.0.1:5432/tcpops",
        "postgres://db.example/app",
        "postgresql://alice:s3cret@db.example:6000/app?sslmode=disable",
        "postgresql:///app?host=/run/postgresql",
        "postgresql://",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        expect_parsed(ok[i], SVC_POSTGRES, ok[i], 0);
}

static void test_parse_garbage_is_einval_with_a_reason(void **state)
{
    (void)state;
    expect_refused("nonsense://x", "expected sqlite:, sqlite:PATH, postgresql://");
    expect_refused("nonsense://x", "\"nonsense://x\"");
    expect_refused("mysql://root@localhost/db", "got \"mysql://root@localhost/db\"");
    expect_refused("SQLITE:", "expected");
    expect_refused("postgresql:/x", "expected");
    /* Ours by its scheme, but not a URL libpq accepts: libpq's reason. */
    expect_refused("postgresql://h/db?nonsense=1", "nonsense");
    expect_refused("postgresql://h/db?nonsense=1", "not a PostgreSQL URL libpq accepts");
    expect_refused("postgresql://h/%zz", "percent");
    char *longurl = malloc(5000);
    assert_non_null(longurl);
    memset(longurl, 'a', 4999);
    longurl[4999] = '\0';
    memcpy(longurl, "postgresql://", 13);
    expect_refused(longurl, "longer than");
    free(longurl);
}

/* Expects the description of db to be want. */
static void expect_described(const char *db, const char *want)
{
    svc_store st;
    char err[512], got[4200];
    if (svc_store_parse(&st, db, "/data", "pets", err, sizeof(err)) != 0)
        fail_msg("--db \"%s\": expected it parsed, got \"%s\"", db, err);
    svc_store_describe(&st, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("--db \"%s\": expected it described as \"%s\", got \"%s\"", db, want, got);
}

static void test_describe_hides_the_password(void **state)
{
    (void)state;
    expect_described(NULL, "sqlite:/data/pets.db");
    expect_described("sqlite:/srv/x.db", "sqlite:/srv/x.db");
    expect_described("postgresql://alice:s3cret@db.example:5432/app",
                     "postgresql://alice:***@db.example:5432/app");
    expect_described("postgres://alice:s3%40c:r@db/app", "postgres://alice:***@db/app");
    expect_described("postgresql://:pw@db/app", "postgresql://:***@db/app");
    /* libpq also takes the password as a query parameter. */
    expect_described("postgresql://alice@db/app?sslmode=require&password=s3cret",
                     "postgresql://alice@db/app?sslmode=require&password=***");
    expect_described("postgresql://db/app?password=s3cret&user=alice",
                     "postgresql://db/app?password=***&user=alice");
    /* No password: as given. */
    expect_described("postgresql://alice@db.example:5432/app",
                     "postgresql://alice@db.example:5432/app");
    expect_described("postgresql://db.example:5432/app", "postgresql://db.example:5432/app");
}

static void test_sqlstate_status(void **state)
{
    (void)state;
    static const struct {
        const char *state;
        int want;
    } cases[] = {
        {"23505", TCPOPS__STATUS__ALREADY_EXISTS}, /* unique_violation */
        {"53100", TCPOPS__STATUS__STORAGE_FULL},   /* disk_full */
        {"08000", TCPOPS__STATUS__UNAVAILABLE},    /* connection_exception */
        {"08006", TCPOPS__STATUS__UNAVAILABLE},    /* connection_failure */
        {"08001", TCPOPS__STATUS__UNAVAILABLE},    /* could not establish */
        {"57P01", TCPOPS__STATUS__UNAVAILABLE},    /* admin_shutdown */
        {"57P02", TCPOPS__STATUS__UNAVAILABLE},    /* crash_shutdown */
        {"57P03", TCPOPS__STATUS__UNAVAILABLE},    /* cannot_connect_now */
        {"53300", TCPOPS__STATUS__UNAVAILABLE},    /* too_many_connections */
        {"40001", TCPOPS__STATUS__UNAVAILABLE},    /* serialization_failure */
        {"40P01", TCPOPS__STATUS__UNAVAILABLE},    /* deadlock_detected */
        {NULL, TCPOPS__STATUS__UNAVAILABLE},       /* no SQLSTATE: the connection broke */
        {"23503", TCPOPS__STATUS__INTERNAL},       /* foreign_key_violation */
        {"23502", TCPOPS__STATUS__INTERNAL},       /* not_null_violation */
        {"42P01", TCPOPS__STATUS__INTERNAL},       /* undefined_table */
        {"42601", TCPOPS__STATUS__INTERNAL},       /* syntax_error */
        {"53200", TCPOPS__STATUS__INTERNAL},       /* out_of_memory */
        {"57014", TCPOPS__STATUS__INTERNAL},       /* query_canceled */
        {"55P03", TCPOPS__STATUS__UNAVAILABLE},    /* lock_not_available (lock_timeout) */
        {"25P03", TCPOPS__STATUS__UNAVAILABLE},    /* idle_in_transaction_session_timeout */
        {"XX000", TCPOPS__STATUS__INTERNAL},       /* internal_error */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = svc_pg_sqlstate_status(cases[i].state);
        if (got != cases[i].want)
            fail_msg("SQLSTATE %s: expected %s, got %s", cases[i].state ? cases[i].state : "NULL",
                     rpc_status_name(cases[i].want), rpc_status_name(got));
    }
}

/* Runs build/bin/prog with argv rest and expects exit 2 with want on
 * stderr, and that nothing was served or created. */
static void expect_usage_error(const char *prog, const char *flag, const char *value,
                               const char *want)
{
    char bin[512], dir[256], out[4096], err[4096], listen[64];
    assert_int_equal(make_temp_dir(dir, sizeof(dir)), 0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
    char *argv[] = {(char *)proc_bin(prog, bin, sizeof(bin)), "--listen", listen, "--data-dir",
                    dir, (char *)flag, (char *)value, NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
    char db[400];
    snprintf(db, sizeof(db), "%s/%s.db", dir, prog + strlen("tcpops-"));
    int created = access(db, F_OK) == 0;
    rm_rf(dir);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("%s %s %s: expected exit 2 with \"%s\" on stderr, got exit %d (-1: still "
                 "running after 10 s), stderr \"%s\"",
                 prog, flag ? flag : "", value ? value : "", want, code, err);
    if (created)
        fail_msg("%s with an unusable --db: expected no database file, it created %s", prog,
                 db);
}

static void test_unusable_db_is_exit_2(void **state)
{
    (void)state;
    expect_usage_error("tcpops-people", "--db", "nonsense://x", "\"nonsense://x\"");
    expect_usage_error("tcpops-pets", "--db", "nonsense://x", "expected sqlite:");
    expect_usage_error("tcpops-people", "--db", "postgresql://h/db?nonsense=1", "nonsense");
    /* The environment's TCPOPS_PEOPLE_DB is read the same way. */
    setenv("TCPOPS_PEOPLE_DB", "nonsense://env", 1);
    expect_usage_error("tcpops-people", NULL, NULL, "\"nonsense://env\"");
    unsetenv("TCPOPS_PEOPLE_DB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_sqlite),
        cmocka_unit_test(test_parse_postgresql),
        cmocka_unit_test(test_parse_garbage_is_einval_with_a_reason),
        cmocka_unit_test(test_describe_hides_the_password),
        cmocka_unit_test(test_sqlstate_status),
        cmocka_unit_test(test_unusable_db_is_exit_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
