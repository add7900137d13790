/* What a crash may not take away (RELIABILITY.md scenarios 18 and 19):
 * every create that was answered OK is in the file after kill -9, the file
 * passes PRAGMA integrity_check, and four worker processes writing one file
 * give exactly one winner for a contested name and no BUSY to any client. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
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
#include "proc.h"
#include "testsvc.h"

typedef dir_fixture fixture;

static int setup(void **state)
{
    return dir_fixture_setup(state, "people.db");
}

static int teardown(void **state)
{
    return dir_fixture_teardown(state);
}

static rpc_channel *channel_to(int port)
{
    char addr[64], err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    rpc_channel_cfg_default(&cfg);
    cfg.pool_size = 1;
    rpc_channel *ch = testsvc_channel("people", addr, &cfg, err);
    if (ch == NULL)
        fail_msg("channel: %s", err);
    return ch;
}

/* people.Create name; returns the status. */
static int create(rpc_channel *ch, const char *name)
{
    Tcpops__CreatePersonRequest req = TCPOPS__CREATE_PERSON_REQUEST__INIT;
    uint8_t body[128];
    req.name = (char *)name;
    size_t n = tcpops__create_person_request__pack(&req, body);
    rpc_call c = {.method = "people.Create", .body = body, .body_len = n, .deadline_ms = 5000};
    int st = rpc_channel_call(ch, &c);
    rpc_call_fini(&c);
    return st;
}

/* Runs sql on the database file and returns the first column of the first
 * row as an integer (or copies text into txt). */
static long long query(const char *db, const char *sql, char *txt, size_t len)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        if (txt != NULL)
            snprintf(txt, len, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static int name_in_db(const char *db, const char *name)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT 1 FROM people WHERE name = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return found;
}

/* ---- scenario 18 ---- */

#define WRITERS 4
#define MAX_ACKED 100000

typedef struct writer {
    rpc_channel *ch;
    int round, index;
    _Atomic int *stop;
    char (*acked)[32];
    int nacked;
} writer;

static void *write_stream(void *arg)
{
    writer *w = arg;
    for (int i = 0; !atomic_load(w->stop) && w->nacked < MAX_ACKED / WRITERS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "r%d-w%d-%d", w->round, w->index, i);
        int st = create(w->ch, name);
        if (st == TCPOPS__STATUS__OK)
            snprintf(w->acked[w->nacked++], 32, "%s", name);
        else if (st == TCPOPS__STATUS__UNAVAILABLE)
            break; /* the service is gone: nothing more will be acknowledged */
    }
    return NULL;
}

static void test_acknowledged_creates_survive_kill9(void **state)
{
    fixture *fx = *state;
    int port = free_port();
    int total_acked = 0;
    srand((unsigned)getpid());
    for (int round = 0; round < 5; round++) {
        proc p = {0};
        assert_int_equal(proc_start_service(&p, "tcpops-people", port, fx->dir, NULL), 0);
        rpc_channel *ch = channel_to(port);
        _Atomic int stop = 0;
        pthread_t th[WRITERS];
        writer w[WRITERS];
        for (int i = 0; i < WRITERS; i++) {
            w[i] = (writer){.ch = ch, .round = round, .index = i, .stop = &stop};
            w[i].acked = calloc(MAX_ACKED / WRITERS, 32);
            pthread_create(&th[i], NULL, write_stream, &w[i]);
        }
        usleep((useconds_t)(100000 + rand() % 400000)); /* a random moment */
        proc_signal(&p, SIGKILL);
        assert_int_equal(proc_wait(&p, 5000), 128 + SIGKILL);
        atomic_store(&stop, 1);
        for (int i = 0; i < WRITERS; i++)
            pthread_join(th[i], NULL);
        rpc_channel_free(ch);

        /* Restart on the same file: recovery runs, then every 201 is there. */
        assert_int_equal(proc_start_service(&p, "tcpops-people", port, fx->dir, NULL), 0);
        int round_acked = 0;
        for (int i = 0; i < WRITERS; i++) {
            for (int k = 0; k < w[i].nacked; k++)
                if (!name_in_db(fx->path, w[i].acked[k]))
                    fail_msg("round %d: \"%s\" was acknowledged but is missing after kill -9",
                             round, w[i].acked[k]);
            round_acked += w[i].nacked;
            free(w[i].acked);
        }
        total_acked += round_acked;
        proc_signal(&p, SIGTERM);
        assert_int_equal(proc_wait(&p, 10000), 0);
    }
    print_message("%d acknowledged creates over 5 kill -9 rounds, all present\n", total_acked);
    assert_true(total_acked > 0);
    char ok[64];
    query(fx->path, "PRAGMA integrity_check", ok, sizeof(ok));
    assert_string_equal(ok, "ok");
    assert_int_equal(query(fx->path, "SELECT count(*) - count(DISTINCT name) FROM people", NULL, 0),
                     0);
}

/* ---- scenario 19 ---- */

typedef struct contender {
    rpc_channel *ch;
    pthread_barrier_t *go;
    const char *name;
    int status;
} contender;

static void *contend(void *arg)
{
    contender *c = arg;
    pthread_barrier_wait(c->go);
    c->status = create(c->ch, c->name);
    return NULL;
}

typedef struct loader {
    rpc_channel *ch;
    int index;
    int ok, failed;
    char problem[128];
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof(name), "load-%d-%d", l->index, i);
        int st = create(l->ch, name);
        if (st == TCPOPS__STATUS__OK)
            l->ok++;
        else if (l->failed++ == 0)
            snprintf(l->problem, sizeof(l->problem), "%s", rpc_status_name(st));
    }
    return NULL;
}

static void test_four_workers_one_file(void **state)
{
    fixture *fx = *state;
    enum { WORKERS = 4, CONTENDERS = 50, LOADERS = 16 };
    proc p[WORKERS];
    int ports[WORKERS];
    rpc_channel *ch[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        ports[i] = free_port();
        memset(&p[i], 0, sizeof(p[i]));
        assert_int_equal(proc_start_service(&p[i], "tcpops-people", ports[i], fx->dir, NULL), 0);
        ch[i] = channel_to(ports[i]);
    }

    /* 50 creates of one name at once, spread over the four processes. */
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, CONTENDERS);
    pthread_t th[CONTENDERS];
    contender c[CONTENDERS];
    for (int i = 0; i < CONTENDERS; i++) {
        c[i] = (contender){.ch = ch[i % WORKERS], .go = &go, .name = "contested"};
        pthread_create(&th[i], NULL, contend, &c[i]);
    }
    int ok = 0, exists = 0, other = 0;
    for (int i = 0; i < CONTENDERS; i++) {
        pthread_join(th[i], NULL);
        ok += c[i].status == TCPOPS__STATUS__OK;
        exists += c[i].status == TCPOPS__STATUS__ALREADY_EXISTS;
        other += c[i].status != TCPOPS__STATUS__OK &&
                 c[i].status != TCPOPS__STATUS__ALREADY_EXISTS;
    }
    pthread_barrier_destroy(&go);
    if (ok != 1 || exists != CONTENDERS - 1 || other != 0)
        fail_msg("50 creates of one name: expected 1 OK and 49 ALREADY_EXISTS, got %d OK, %d "
                 "ALREADY_EXISTS, %d other", ok, exists, other);

    /* Write load on all four at once: no BUSY (or anything else) reaches a client. */
    pthread_t lt[LOADERS];
    loader l[LOADERS];
    for (int i = 0; i < LOADERS; i++) {
        l[i] = (loader){.ch = ch[i % WORKERS], .index = i};
        pthread_create(&lt[i], NULL, load, &l[i]);
    }
    int lok = 0;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(lt[i], NULL);
        if (l[i].failed)
            fail_msg("loader %d: %d creates failed, first with %s", i, l[i].failed, l[i].problem);
        lok += l[i].ok;
    }
    assert_int_equal(lok, LOADERS * 300);
    for (int i = 0; i < WORKERS; i++) {
        rpc_channel_free(ch[i]);
        proc_signal(&p[i], SIGTERM);
        assert_int_equal(proc_wait(&p[i], 10000), 0);
    }
    assert_int_equal(query(fx->path, "SELECT count(*) FROM people", NULL, 0), 2 + 1 + lok);
    char okc[64];
    query(fx->path, "PRAGMA integrity_check", okc, sizeof(okc));
    assert_string_equal(okc, "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acknowledged_creates_survive_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_workers_one_file, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
