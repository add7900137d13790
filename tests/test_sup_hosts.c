/* `tcpops up` as one host of several: only some apps (--apps), the services'
 * store (--db: a SQLite file elsewhere, or PostgreSQL), the address each
 * worker advertises (--advertise), a gateway-only host given the services'
 * addresses, and `tcpops ps` showing the store and the addresses. Each
 * "host" is a master with its own data dir on 127.0.0.1. */
#include <jansson.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "pgserver.h"
#include "proc.h"
#include "rpc/clock.h"

#define HOSTS 2

typedef struct fixture {
    char dir[256];
    char data[HOSTS][300];  /* each master's --data-dir */
    char log[HOSTS][300];
    proc master[HOSTS];
    int gw_port, people_port, pets_port;
    pgserver pg;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    for (int h = 0; h < HOSTS; h++) {
        snprintf(fx->data[h], sizeof(fx->data[h]), "%s/host%d", fx->dir, h);
        snprintf(fx->log[h], sizeof(fx->log[h]), "%s/master%d.log", fx->dir, h);
    }
    fx->gw_port = free_port();
    fx->people_port = free_port();
    fx->pets_port = free_port();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    for (int h = 0; h < HOSTS; h++)
        proc_stop_gracefully(&fx->master[h], 15000); /* the workers leave with it */
    pgserver_destroy(&fx->pg);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* argv of `tcpops up --data-dir DATA[h] ARGS...`, ARGS from ap up to a
 * NULL; bin holds the program's path. */
#define UP_MAX_ARGS 24
static void up_argv(fixture *fx, int h, char **argv, char *bin, size_t binlen, va_list ap)
{
    int n = 0;
    argv[n++] = (char *)proc_bin("tcpops", bin, binlen);
    argv[n++] = "up";
    argv[n++] = "--data-dir";
    argv[n++] = fx->data[h];
    for (char *a; n < UP_MAX_ARGS - 1 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    argv[n] = NULL;
}

/* Starts `tcpops up --data-dir DATA[h] ARGS...` (NULL-terminated) as host h. */
static void up(fixture *fx, int h, ...)
{
    char bin[512];
    char *argv[UP_MAX_ARGS];
    va_list ap;
    va_start(ap, h);
    up_argv(fx, h, argv, bin, sizeof(bin), ap);
    va_end(ap);
    assert_int_equal(proc_start_logged(&fx->master[h], argv, fx->log[h]), 0);
}

/* `tcpops --data-dir DATA[h] ps --json` parsed, or NULL. Caller frees. */
static json_t *ps(fixture *fx, int h)
{
    char bin[512], out[16384], err[4096];
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "--data-dir", fx->data[h],
                    "ps", "--json", NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 10000) != 0)
        return NULL;
    json_error_t je;
    return json_loads(out, 0, &je);
}

/* Waits until host h's workers are exactly the running ones of apps
 * ("people pets"), one each; returns ps's answer (caller frees). */
static json_t *wait_running(fixture *fx, int h, const char *apps)
{
    char seen[512] = "";
    int64_t deadline = rpc_now_ms() + 20000;
    while (rpc_now_ms() < deadline) {
        json_t *doc = ps(fx, h), *w;
        size_t i;
        seen[0] = '\0';
        json_array_foreach(json_object_get(doc, "workers"), i, w) {
            const char *st = json_string_value(json_object_get(w, "state"));
            snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), "%s%s",
                     seen[0] ? " " : "", json_string_value(json_object_get(w, "app")));
            if (strcmp(st, "running") != 0)
                snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), "(%s)", st);
        }
        if (strcmp(seen, apps) == 0)
            return doc;
        json_decref(doc);
        usleep(50 * 1000);
    }
    fail_msg("host %d: expected running workers \"%s\", saw \"%s\" (log %s)", h, apps, seen,
             fx->log[h]);
    return NULL;
}

/* The ps entry of app's first worker (borrowed from doc). */
static json_t *worker_of(json_t *doc, const char *app)
{
    json_t *w;
    size_t i;
    json_array_foreach(json_object_get(doc, "workers"), i, w)
        if (strcmp(json_string_value(json_object_get(w, "app")), app) == 0)
            return w;
    fail_msg("no %s worker in ps", app);
    return NULL;
}

/* Runs tcpops-cli --addr 127.0.0.1:port ARGS...; its exit code, stdout in out. */
static int cli(int port, char *out, size_t outlen, ...)
{
    char addr[32], err[2048];
    va_list ap;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    va_start(ap, outlen);
    int code = proc_run_tool("tcpops-cli", "--addr", addr, ap, out, outlen, err, sizeof(err),
                             10000, NULL, 0);
    va_end(ap);
    if (code != 0)
        print_message("tcpops-cli: exit %d: %s\n", code, err);
    return code;
}

/* The string field name of o (a ps worker, a Status answer), or "(none)". */
static const char *str(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s != NULL ? s : "(none)";
}

/* A people host with --db sqlite:PATH outside its data dir and --advertise
 * HOST: the rows land in PATH; the worker's own Status says HOST:PORT and
 * ps shows the same, with the absolute path of the database. */
static void test_people_host_db_path_and_advertise(void **state)
{
    fixture *fx = *state;
    char listen[32], path[400], real[PATH_MAX], want[PATH_MAX + 16], out[8192];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->people_port);
    snprintf(path, sizeof(path), "sqlite:%s/elsewhere.db", fx->dir);
    up(fx, 0, "--apps", "people", "--people", listen, "--db", path, "--advertise", "127.0.0.2",
       NULL);
    json_t *doc = wait_running(fx, 0, "people");
    json_t *w = worker_of(doc, "people");

    assert_non_null(realpath(path + 7, real));
    snprintf(want, sizeof(want), "sqlite:%s", real);
    if (strcmp(str(w, "db"), want) != 0)
        fail_msg("ps db: expected \"%s\", got \"%s\"", want, str(w, "db"));
    assert_int_equal(cli(fx->people_port, out, sizeof(out), "status", NULL), 0);
    json_error_t je;
    json_t *status = json_loads(out, 0, &je);
    const char *adv = str(w, "advertised");
    if (strncmp(adv, "127.0.0.2:", 10) != 0 || strcmp(adv, str(status, "address")) != 0)
        fail_msg("expected the advertised address 127.0.0.2:PORT in ps and Status alike, got "
                 "\"%s\" in ps and \"%s\" in Status", adv, str(status, "address"));
    json_decref(status);
    json_decref(doc);

    assert_int_equal(cli(fx->people_port, out, sizeof(out), "people", "create", "ann", NULL), 0);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path + 7, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM people WHERE name = 'ann'",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int rows = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (rows != 1)
        fail_msg("expected ann in %s, found %d rows", path + 7, rows);
    char unused[400];
    struct stat sb;
    snprintf(unused, sizeof(unused), "%s/people.db", fx->data[0]);
    if (stat(unused, &sb) == 0)
        fail_msg("expected no %s with --db %s", unused, path);
}

/* A service host and a gateway-only host given the services' addresses
 * (people as a list): requests through the gateway reach the services;
 * each master runs and manages only its own apps. */
static void test_gateway_host_and_service_host(void **state)
{
    fixture *fx = *state;
    char gw[32], people[32], pets[32], list[80], out[4096], err[4096], bin[512];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    snprintf(list, sizeof(list), "%s,localhost:%d", people, fx->people_port);
    up(fx, 0, "--apps", "people,pets", "--people", people, "--pets", pets, NULL);
    json_decref(wait_running(fx, 0, "people pets"));
    up(fx, 1, "--apps", "gateway", "--gateway", gw, "--people", list, "--pets", pets,
       "--gateway-args", "--access-log=false --threads=16", NULL);
    json_decref(wait_running(fx, 1, "gateway"));

    http_resp r = {0};
    int64_t deadline = rpc_now_ms() + 10000;
    while (rpc_now_ms() < deadline) {
        http_resp_free(&r);
        memset(&r, 0, sizeof(r));
        if (http_once(fx->gw_port, "GET", "/people/pets?owner=bob", NULL, NULL, &r) == 0 &&
            r.status == 200)
            break;
        usleep(50 * 1000);
    }
    if (r.status != 200 || r.body == NULL || strstr(r.body, "rex") == NULL)
        fail_msg("GET /people/pets?owner=bob through the gateway host: expected 200 with rex, "
                 "got %d %s", r.status, r.body ? r.body : "");
    http_resp_free(&r);

    /* The gateway host does not run people: nothing to scale there. */
    char *scale[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "--data-dir", fx->data[1],
                     "scale", "people", "2", NULL};
    int code = proc_run(scale, out, sizeof(out), err, sizeof(err), 10000);
    if (code != 1 || strstr(err, "people does not run on this host") == NULL)
        fail_msg("scale people on the gateway host: expected exit 1 saying it does not run "
                 "there, got %d: %s", code, err);
}

/* PostgreSQL: ps shows the URL with its password hidden, and a create
 * through the worker is a row in that database. */
static void test_postgresql_in_ps(void **state)
{
    fixture *fx = *state;
    char why[256], err[1024], url[400], listen[32], out[4096], want[400];
    if (!pgserver_available(why, sizeof(why)))
        skip();
    if (pgserver_start(&fx->pg, err, sizeof(err)) < 0)
        fail_msg("PostgreSQL did not start: %s", err);
    /* trust authentication: the password is only there to be hidden. */
    snprintf(url, sizeof(url), "postgresql://tcpops:s3cret@127.0.0.1:%d/tcpops", fx->pg.port);
    snprintf(want, sizeof(want), "postgresql://tcpops:***@127.0.0.1:%d/tcpops", fx->pg.port);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->people_port);
    up(fx, 0, "--apps", "people", "--people", listen, "--db", url, NULL);
    json_t *doc = wait_running(fx, 0, "people");
    if (strcmp(str(worker_of(doc, "people"), "db"), want) != 0)
        fail_msg("ps db: expected \"%s\", got \"%s\"", want, str(worker_of(doc, "people"), "db"));
    json_decref(doc);

    char bin[512], text[4096];
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "--data-dir", fx->data[0],
                    "ps", NULL};
    assert_int_equal(proc_run(argv, text, sizeof(text), err, sizeof(err), 10000), 0);
    if (strstr(text, want) == NULL || strstr(text, "s3cret") != NULL)
        fail_msg("tcpops ps: expected \"%s\" and no password, got:\n%s", want, text);

    int64_t deadline = rpc_now_ms() + 10000;
    while (cli(fx->people_port, out, sizeof(out), "people", "create", "pg-ann", NULL) != 0 &&
           rpc_now_ms() < deadline)
        usleep(100 * 1000);
    assert_int_equal(pgserver_sql(&fx->pg, "SELECT count(*) FROM people WHERE name = 'pg-ann'",
                                  out, sizeof(out)), 0);
    if (atoi(out) != 1)
        fail_msg("expected pg-ann in PostgreSQL, got \"%s\"", out);
}

/* Runs `tcpops up --data-dir DATA[0] ARGS...`; expects exit 2 with want in
 * its stderr, and nothing started (no control socket). */
static void refused(fixture *fx, const char *want, ...)
{
    char bin[512], out[4096], err[4096], sock[400];
    char *argv[UP_MAX_ARGS];
    va_list ap;
    va_start(ap, want);
    up_argv(fx, 0, argv, bin, sizeof(bin), ap);
    va_end(ap);
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 8000);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("tcpops up %s %s: expected exit 2 saying \"%s\", got exit %d: %s", argv[4],
                 argv[5] ? argv[5] : "", want, code, err);
    struct stat sb;
    snprintf(sock, sizeof(sock), "%s/tcpops.sock", fx->data[0]);
    assert_int_not_equal(stat(sock, &sb), 0);
}

static void test_up_refuses_bad_host_settings(void **state)
{
    fixture *fx = *state;
    char people[32], shared[400];
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(shared, sizeof(shared), "sqlite:%s/both.db", fx->dir);
    refused(fx, "--apps: unknown app \"fish\" (gateway, people, pets)", "--apps", "people,fish",
            NULL);
    refused(fx, "people: --db: expected sqlite:, sqlite:PATH, postgresql://... or "
                "postgres://..., got \"mysql://db1/x\"",
            "--apps", "people", "--people", people, "--db", "mysql://db1/x", NULL);
    refused(fx, "people: --db: not a PostgreSQL URL libpq accepts", "--apps", "people",
            "--people", people, "--db", "postgresql://db1/x?nosuch=1", NULL);
    refused(fx, "people advertise \"h1:7000\": expected a HOST alone", "--apps", "people",
            "--people", people, "--advertise", "h1:7000", NULL);
    char pets[32];
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    refused(fx, "people and pets would share the SQLite file", "--apps", "people,pets",
            "--people", people, "--pets", pets, "--db", shared, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_people_host_db_path_and_advertise, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gateway_host_and_service_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_postgresql_in_ps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_up_refuses_bad_host_settings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
