/* Several workers on one PostgreSQL database, as on several hosts: workers
 * starting at the same moment apply each migration exactly once (under
 * pg_advisory_xact_lock), and svc.Status on any worker lists the live
 * workers from the members table: one killed drops out when its heartbeat
 * expires, and with the database gone Status says UNAVAILABLE rather than
 * answer a stale list. Needs PostgreSQL (testdb.h): skipped without it. */
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

#include "proc.h"
#include "rpc/clock.h"
#include "testdb.h"

#define MAXW 6
#define DEADLINE_MS 10000 /* heartbeats expire after 3 s; give up well after */

typedef struct fixture {
    char dir[256];
    char url[320];
    proc w[MAXW];
    int port[MAXW];
    char addr[MAXW][64];
    int n;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    if (testdb_new(fx->url, sizeof(fx->url)) < 0)
        fail_msg("expected a fresh database, got \"%s\"", fx->url);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char err[1024];
    for (int i = 0; i < fx->n; i++)
        proc_stop(&fx->w[i]);
    /* A test that failed with the database stopped leaves it running for
     * the next. */
    if (!testdb_server()->running && pgserver_resume(testdb_server(), err, sizeof(err)) < 0)
        fprintf(stderr, "teardown: %s\n", err);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* Starts build/bin/NAME on a free port against the test's database, without
 * waiting for it: worker fx->n. */
static int start_worker(fixture *fx, const char *name)
{
    char bin[512], listen[64];
    int i = fx->n++;
    fx->port[i] = free_port();
    snprintf(fx->addr[i], sizeof(fx->addr[i]), "127.0.0.1:%d", fx->port[i]);
    snprintf(listen, sizeof(listen), "%s", fx->addr[i]);
    char *const argv[] = {(char *)proc_bin(name, bin, sizeof(bin)), "--listen", listen,
                          "--data-dir", fx->dir, "--db", fx->url, NULL};
    if (proc_start(&fx->w[i], argv, 0) < 0)
        fail_msg("expected %s to start, it did not", name);
    return i;
}

static void wait_listening(fixture *fx, int i)
{
    if (wait_port(fx->port[i], DEADLINE_MS) < 0)
        fail_msg("expected worker %d (pid %d) to listen on %s within %d ms", i,
                 (int)fx->w[i].pid, fx->addr[i], DEADLINE_MS);
}

/* Runs tcpops-cli --addr addr ARGS...; its stdout in out, stderr in err.
 * The exit code. */
static int cli(const char *addr, char *out, size_t outlen, char *err, size_t errlen, ...)
{
    va_list ap;
    va_start(ap, errlen);
    int code = proc_run_tool("tcpops-cli", "--addr", addr, ap, out, outlen, err, errlen, 10000,
                             NULL, 0);
    va_end(ap);
    return code;
}

/* Runs SQL on the test's database and expects exactly want as its rows. */
static void expect_rows(const fixture *fx, const char *sql, const char *want)
{
    char out[4096];
    if (testdb_sql(fx->url, sql, out, sizeof(out)) < 0)
        fail_msg("%s: expected rows, got the error \"%s\"", sql, out);
    if (strcmp(out, want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", sql, want, out);
}

/* Six workers of two services start at once on an empty database: every
 * one serves, each migration is recorded once, the seed rows exist once,
 * and new rows get ids above the seed's. SQLite is never touched. */
static void test_migrations_at_once_apply_once(void **state)
{
    fixture *fx = *state;
    char out[4096], err[4096];
    for (int i = 0; i < 6; i++)
        start_worker(fx, i < 4 ? "tcpops-people" : "tcpops-pets");
    for (int i = 0; i < 6; i++) {
        wait_listening(fx, i);
        int code = i < 4 ? cli(fx->addr[i], out, sizeof(out), err, sizeof(err), "people",
                               "list", NULL)
                         : cli(fx->addr[i], out, sizeof(out), err, sizeof(err), "pets", "get",
                               "1", "2", "3", NULL);
        const char *want = i < 4 ? "{\"names\":[\"bob\",\"jane\"]}\n"
                                 : "{\"pets\":[{\"id\":1,\"name\":\"bixa\"},{\"id\":2,\"name\":"
                                   "\"kitty\"},{\"id\":3,\"name\":\"rex\"}],\"missing\":[]}\n";
        if (code != 0 || strcmp(out, want) != 0)
            fail_msg("worker %d: expected exit 0 and %s, got exit %d, %s (stderr \"%s\")", i,
                     want, code, out, err);
    }
    expect_rows(fx, "SELECT component, version FROM tcpops_schema ORDER BY component",
                "people|2\npets|2\nsvc|1\n");
    expect_rows(fx, "SELECT id, name FROM people ORDER BY id", "1|bob\n2|jane\n");
    expect_rows(fx, "SELECT person_id, pet_id FROM ownership ORDER BY 1, 2", "1|1\n1|3\n");
    expect_rows(fx, "SELECT id, name FROM pets ORDER BY id", "1|bixa\n2|kitty\n3|rex\n");
    int code = cli(fx->addr[1], out, sizeof(out), err, sizeof(err), "people", "create", "ann",
                   NULL);
    if (code != 0)
        fail_msg("people create ann: expected exit 0, got %d (stderr \"%s\")", code, err);
    code = cli(fx->addr[5], out, sizeof(out), err, sizeof(err), "pets", "create", "tom", NULL);
    if (code != 0 || strcmp(out, "{\"id\":4}\n") != 0)
        fail_msg("pets create tom: expected exit 0 and {\"id\":4}, got %d %s (stderr \"%s\")",
                 code, out, err);
    expect_rows(fx, "SELECT count(*) FROM people WHERE name = 'ann' AND id > 2", "1\n");
    /* Nothing went to SQLite. */
    char path[400];
    snprintf(path, sizeof(path), "%s/people.db", fx->dir);
    if (access(path, F_OK) == 0)
        fail_msg("expected no SQLite file with --db postgresql://, found %s", path);
    snprintf(path, sizeof(path), "%s/pets.db", fx->dir);
    if (access(path, F_OK) == 0)
        fail_msg("expected no SQLite file with --db postgresql://, found %s", path);
}

/* The pids svc.Status on addr lists as members, into pids (at most max).
 * Returns how many, or -1 when the call failed (its stderr in err). */
static int members(const char *addr, long *pids, int max, char *err, size_t errlen)
{
    char out[8192];
    if (cli(addr, out, sizeof(out), err, errlen, "status", NULL) != 0)
        return -1;
    const char *p = strstr(out, "\"members\":[");
    const char *end = p != NULL ? strchr(p, ']') : NULL;
    int n = 0;
    if (p == NULL || end == NULL) {
        snprintf(err, errlen, "no members in %.*s", (int)(errlen > 20 ? errlen - 20 : 0), out);
        return -1;
    }
    while ((p = strstr(p, "\"pid\":")) != NULL && p < end && n < max) {
        pids[n++] = strtol(p + 6, NULL, 10);
        p += 6;
    }
    return n;
}

/* Whether Status on worker i lists exactly the workers in want (pids, n). */
static int lists_exactly(fixture *fx, int i, const long *want, int n, char *got, size_t len)
{
    long pids[16];
    char err[4096];
    int k = members(fx->addr[i], pids, 16, err, sizeof(err));
    if (k < 0) {
        snprintf(got, len, "an error: %.*s", (int)(len > 12 ? len - 12 : 0), err);
        return 0;
    }
    size_t used = (size_t)snprintf(got, len, "[");
    for (int j = 0; j < k && used < len; j++)
        used += (size_t)snprintf(got + used, len - used, "%s%ld", j ? "," : "", pids[j]);
    if (used < len)
        snprintf(got + used, len - used, "]");
    int found = 0;
    for (int j = 0; j < k; j++)
        for (int w = 0; w < n; w++)
            found += pids[j] == want[w];
    return k == n && found == n;
}

/* Polls until Status on worker i lists exactly want, or fails saying what
 * it listed last. */
static void wait_members(fixture *fx, int i, const long *want, int n, const char *what)
{
    char got[512] = "";
    int64_t deadline = rpc_now_ms() + DEADLINE_MS;
    while (!lists_exactly(fx, i, want, n, got, sizeof(got))) {
        if (rpc_now_ms() > deadline)
            fail_msg("%s: expected Status on worker %d to list %d member(s) (pids %ld%s%ld) "
                     "within %d ms; it lists %s",
                     what, i, n, want[0], n > 1 ? "," : "", n > 1 ? want[1] : 0L, DEADLINE_MS,
                     got);
        usleep(100 * 1000);
    }
}

static void start_two(fixture *fx, long pids[2])
{
    for (int i = 0; i < 2; i++)
        start_worker(fx, "tcpops-people");
    for (int i = 0; i < 2; i++) {
        wait_listening(fx, i);
        pids[i] = fx->w[i].pid;
    }
    wait_members(fx, 0, pids, 2, "two workers on one database");
    wait_members(fx, 1, pids, 2, "two workers on one database");
}

/* kill -9 one of two workers: it never leaves, so the other lists it until
 * its heartbeat expires, then lists only itself. */
static void test_killed_worker_drops_out(void **state)
{
    fixture *fx = *state;
    long pids[2];
    start_two(fx, pids);
    proc_signal(&fx->w[1], SIGKILL);
    assert_int_equal(proc_wait(&fx->w[1], 5000), 128 + SIGKILL);
    wait_members(fx, 0, pids, 1, "after kill -9 of the second worker");
}

/* With the database stopped, Status answers UNAVAILABLE (it cannot know who
 * is live) and the workers keep running; once the database is back, both
 * are listed again. */
static void test_status_without_the_database_is_unavailable(void **state)
{
    fixture *fx = *state;
    long pids[2];
    char err[4096], why[1024];
    start_two(fx, pids);
    if (pgserver_stop(testdb_server(), why, sizeof(why)) < 0)
        fail_msg("expected PostgreSQL to stop, got \"%s\"", why);
    for (int i = 0; i < 2; i++) {
        long got[16];
        int n = members(fx->addr[i], got, 16, err, sizeof(err));
        if (n >= 0 || strstr(err, "UNAVAILABLE") == NULL)
            fail_msg("Status on worker %d with the database stopped: expected UNAVAILABLE, "
                     "got %d member(s) (stderr \"%s\")",
                     i, n, n < 0 ? err : "");
    }
    if (pgserver_resume(testdb_server(), why, sizeof(why)) < 0)
        fail_msg("expected PostgreSQL to start again, got \"%s\"", why);
    wait_members(fx, 0, pids, 2, "after the database came back");
    wait_members(fx, 1, pids, 2, "after the database came back");
    for (int i = 0; i < 2; i++)
        if (proc_wait(&fx->w[i], 0) != -1)
            fail_msg("expected worker %d to keep running without its database; it exited", i);
}

int main(int argc, char **argv)
{
    (void)argc;
    char *pg_argv[] = {argv[0], "postgresql", NULL};
    int rc = testdb_init(2, pg_argv);
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrations_at_once_apply_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_worker_drops_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_without_the_database_is_unavailable,
                                        setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL) != 0;
}
