/* The client channel against services that misbehave: answers with unknown
 * ids, duplicate answers, late answers, oversize frames, garbage, GOAWAY over
 * and over, and a backend that accepts and never answers. Each runs beside a
 * good server on the same channel; the bad one is contained (dropped
 * answers are counted, bad connections closed, a silent endpoint ejected)
 * and the calls keep being answered.
 *
 * `test_hostile tls` (test_hostile_tls) runs every case again over mutual
 * TLS: the good server and the channel get dev-certs.sh credentials, and the
 * bad service speaks through tlspeer's relay, so its hostile bytes arrive
 * inside TLS records with the same expectations. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/buf.h"
#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rpc/server.h"
#include "testsvc.h"
#include "tlspeer.h"

enum evil_mode { UNKNOWN_IDS, OVERSIZE, GARBAGE, GOAWAY_STORM, BLACKHOLE, LATE, ECHO };

typedef struct evil {
    int mode;
    int lfd;
    int port;
    pthread_t thread;
    _Atomic int stop;
    _Atomic int live;  /* connection threads still serving */
} evil;

static void put_frame(int fd, const rpc_frame *f)
{
    uint8_t buf[4096];
    size_t n = rpc_frame_write(f, buf);
    size_t w = 0;
    rpc_sock_write_all(fd, buf, n, rpc_now_ms() + 1000, &w);
}

static void answer(int fd, const rpc_frame *req, uint64_t id)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.body = req->body;
    put_frame(fd, &f);
}

/* Serves one connection the evil way until it closes. */
static void serve(evil *e, int fd)
{
    rpc_buf rb;
    rpc_buf_init(&rb);
    while (!atomic_load(&e->stop)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        if (rpc_buf_reserve(&rb, 65536, 1 << 20) < 0)
            break;
        ssize_t r = recv(fd, rb.data + rb.len, rb.cap - rb.len, 0);
        if (r <= 0)
            break;
        rb.len += (size_t)r;
        if (e->mode == ECHO) { /* an echo server: every byte back as it came */
            send(fd, rpc_buf_head(&rb), rpc_buf_used(&rb), MSG_NOSIGNAL);
            rpc_buf_consume(&rb, rpc_buf_used(&rb));
            continue;
        }
        for (;;) {
            const uint8_t *pl;
            size_t pn;
            int k = rpc_frame_decode(rpc_buf_head(&rb), rpc_buf_used(&rb), 1 << 20, &pl, &pn);
            if (k <= 0)
                break;
            rpc_frame *req = NULL;
            if (rpc_frame_unpack(pl, pn, &req) == 0 && req->kind == TCPOPS__KIND__REQUEST) {
                switch (e->mode) {
                case UNKNOWN_IDS:
                    answer(fd, req, req->id + 100000); /* nobody's */
                    answer(fd, req, req->id);
                    answer(fd, req, req->id); /* again */
                    break;
                case OVERSIZE: {
                    uint8_t h[4];
                    rpc_frame_put_len(h, 0x00FFFFF0u);
                    send(fd, h, 4, MSG_NOSIGNAL);
                    break;
                }
                case GARBAGE:
                    send(fd, "\x00\x00\x00\x04\xff\xff\xff\xff", 8, MSG_NOSIGNAL);
                    break;
                case GOAWAY_STORM: {
                    answer(fd, req, req->id);
                    rpc_frame g = TCPOPS__FRAME__INIT;
                    g.kind = TCPOPS__KIND__GOAWAY;
                    g.last_id = req->id;
                    put_frame(fd, &g);
                    break;
                }
                case BLACKHOLE:
                    break; /* says nothing, ever, not even PONG */
                case LATE:
                    usleep(300 * 1000);
                    answer(fd, req, req->id);
                    break;
                }
            } else if (req != NULL && req->kind == TCPOPS__KIND__PING && e->mode != BLACKHOLE) {
                rpc_frame pong = TCPOPS__FRAME__INIT;
                pong.kind = TCPOPS__KIND__PONG;
                put_frame(fd, &pong);
            }
            rpc_frame_free(req);
            rpc_buf_consume(&rb, (size_t)k);
        }
    }
    rpc_buf_fini(&rb);
    close(fd);
}

typedef struct conn_arg {
    evil *e;
    int fd;
} conn_arg;

static void *conn_main(void *arg)
{
    conn_arg *a = arg;
    evil *e = a->e;
    serve(e, a->fd);
    free(a);
    atomic_fetch_sub(&e->live, 1);
    return NULL;
}

/* Accepts connections and serves each on its own (detached) thread, so a
 * slow mode never holds up the others; as many as come (a GOAWAY storm
 * makes one per call). */
static void *evil_main(void *arg)
{
    evil *e = arg;
    while (!atomic_load(&e->stop)) {
        struct pollfd pf = {.fd = e->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(e->lfd, NULL, NULL);
        if (fd >= 0 && tlspeer_tls.peer_server != NULL)
            fd = tlspeer_wrap(fd, tlspeer_tls.peer_server); /* the bytes, inside TLS */
        conn_arg *a = fd >= 0 ? malloc(sizeof(*a)) : NULL;
        if (a == NULL) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        a->e = e;
        a->fd = fd;
        pthread_t th;
        atomic_fetch_add(&e->live, 1);
        if (pthread_create(&th, NULL, conn_main, a) == 0) {
            pthread_detach(th);
        } else {
            atomic_fetch_sub(&e->live, 1);
            close(fd), free(a);
        }
    }
    /* Each sees stop within its 50 ms poll. */
    while (atomic_load(&e->live) > 0)
        usleep(10 * 1000);
    return NULL;
}

static void evil_start(evil *e, int mode)
{
    char err[RPC_ERRLEN];
    struct sockaddr_in sa;
    memset(e, 0, sizeof(*e));
    e->mode = mode;
    assert_int_equal(rpc_addr_parse("127.0.0.1:0", &sa, err), 0);
    e->lfd = rpc_sock_listen(&sa, 0, 64, err);
    assert_true(e->lfd >= 0);
    e->port = rpc_sock_port(e->lfd);
    pthread_create(&e->thread, NULL, evil_main, e);
}

static void evil_stop(evil *e)
{
    atomic_store(&e->stop, 1);
    pthread_join(e->thread, NULL);
    close(e->lfd);
}

typedef struct fixture {
    rpc_server *good;
    char good_addr[64];
    evil bad;
    char bad_addr[64];
    rpc_channel *ch;
    rpc_stats *stats;
} fixture;

static void setup_mode(fixture *fx, int mode)
{
    char err[RPC_ERRLEN];
    rpc_server_cfg scfg;
    rpc_server_cfg_default(&scfg);
    scfg.listen = "127.0.0.1:0";
    scfg.threads = 2;
    scfg.methods = testsvc_methods;
    scfg.nmethods = testsvc_nmethods;
    scfg.tls = tlspeer_tls.server;
    if (rpc_server_new(&fx->good, &scfg, err) < 0)
        fail_msg("server: %s", err);
    assert_int_equal(rpc_server_start(fx->good), 0);
    snprintf(fx->good_addr, sizeof(fx->good_addr), "127.0.0.1:%d", rpc_server_port(fx->good, 0));
    evil_start(&fx->bad, mode);
    snprintf(fx->bad_addr, sizeof(fx->bad_addr), "127.0.0.1:%d", fx->bad.port);

    rpc_stats_new(&fx->stats);
    rpc_channel_cfg cfg;
    const char *eps[] = {fx->bad_addr, fx->good_addr};
    rpc_channel_cfg_default(&cfg);
    cfg.name = "mixed";
    cfg.endpoints = eps;
    cfg.nendpoints = 2;
    cfg.pool_size = 1;
    cfg.stats = fx->stats;
    cfg.tls = tlspeer_tls.client;
    cfg.keepalive_idle_ms = 100;
    cfg.keepalive_timeout_ms = 200;
    /* The storm sends writes, which are lost, not retried, when their
     * connection dies: a PONG late by 200 ms on a loaded machine (the good
     * server's, under ASan) must not count as a dead peer there. The other
     * modes read, and the black hole is found by this timeout. */
    if (mode == GOAWAY_STORM)
        cfg.keepalive_timeout_ms = 5000;
    if (rpc_channel_new(&fx->ch, &cfg, err) < 0)
        fail_msg("channel: %s", err);
    for (int i = 0; i < 200 && rpc_channel_ready(fx->ch) < 2; i++)
        usleep(10000);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    rpc_channel_free(fx->ch);
    evil_stop(&fx->bad);
    rpc_server_drain(fx->good, 1000);
    rpc_server_free(fx->good);
    rpc_stats_free(fx->stats);
    free(fx);
    return 0;
}

/* n reads (idempotent echoes) with a deadline of deadline_ms each; returns
 * how many got their own answer back. */
static int reads(fixture *fx, int n, int deadline_ms, char *problem, size_t plen)
{
    int ok = 0;
    problem[0] = '\0';
    for (int i = 0; i < n; i++) {
        char token[32];
        snprintf(token, sizeof(token), "read-%d", i);
        rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)token,
                      .body_len = strlen(token), .deadline_ms = deadline_ms, .idempotent = 1};
        int st = rpc_channel_call(fx->ch, &c);
        if (st == TCPOPS__STATUS__OK && c.resp_len == strlen(token) &&
            memcmp(c.resp, token, c.resp_len) == 0)
            ok++;
        else if (problem[0] == '\0')
            snprintf(problem, plen, "%s: %s", rpc_status_name(st), c.error);
        rpc_call_fini(&c);
    }
    return ok;
}

#define MODE_SETUP(name, mode)                                                                 \
    static int name(void **state)                                                              \
    {                                                                                          \
        fixture *fx = calloc(1, sizeof(*fx));                                                  \
        setup_mode(fx, mode);                                                                  \
        *state = fx;                                                                           \
        return 0;                                                                              \
    }
MODE_SETUP(setup_unknown_ids, UNKNOWN_IDS)
MODE_SETUP(setup_oversize, OVERSIZE)
MODE_SETUP(setup_garbage, GARBAGE)
MODE_SETUP(setup_goaway_storm, GOAWAY_STORM)
MODE_SETUP(setup_blackhole, BLACKHOLE)
MODE_SETUP(setup_late, LATE)
MODE_SETUP(setup_echo, ECHO)

/* Unknown and duplicate answers are dropped and counted; every call gets its
 * own answer. */
static void test_unknown_and_duplicate_answers(void **state)
{
    fixture *fx = *state;
    char problem[320];
    int ok = reads(fx, 400, 2000, problem, sizeof(problem));
    if (ok != 400)
        fail_msg("expected 400 answers, got %d (first problem: %s)", ok, problem);
    assert_true(rpc_stats_get(fx->stats, RPC_C_LATE_ANSWERS) >= 100);
}

/* A service that sends an oversize frame or garbage loses its connection;
 * reads caught on it are retried on the good one. */
static void expect_contained(fixture *fx, const char *what)
{
    char problem[320];
    int ok = reads(fx, 400, 2000, problem, sizeof(problem));
    if (ok != 400)
        fail_msg("%s: expected all 400 reads answered, got %d (first problem: %s)", what, ok,
                 problem);
    assert_true(rpc_stats_get(fx->stats, RPC_C_PROTOCOL_ERRORS) >= 1);
    assert_true(rpc_stats_get(fx->stats, RPC_C_RETRIES) >= 1);
}

static void test_oversize_frame_from_service(void **state)
{
    expect_contained(*state, "oversize");
    assert_true(rpc_stats_get(((fixture *)*state)->stats, RPC_C_OVERSIZE_FRAMES) >= 1);
}

static void test_garbage_from_service(void **state)
{
    expect_contained(*state, "garbage");
}

/* GOAWAY after every answer: nothing fails, connections are remade. */
static void test_goaway_over_and_over(void **state)
{
    fixture *fx = *state;
    char problem[320];
    /* Writes too: only GOAWAY's promise makes sending them again safe. */
    int ok = 0;
    for (int i = 0; i < 300; i++) {
        /* Both endpoints up again before each call, so the storm happens
         * however slowly a loaded machine reconnects: otherwise the calls
         * all go to the good one while the bad one is remade. */
        for (int j = 0; j < 2000 && rpc_channel_ready(fx->ch) < 2; j++)
            usleep(1000);
        rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)"w", .body_len = 1,
                      .deadline_ms = 2000};
        if (rpc_channel_call(fx->ch, &c) == TCPOPS__STATUS__OK)
            ok++;
        else
            snprintf(problem, sizeof(problem), "%s", c.error);
        rpc_call_fini(&c);
    }
    if (ok != 300)
        fail_msg("expected all 300 calls answered, got %d (%s)", ok, problem);
    print_message("goaway storm: %lld GOAWAYs, %lld connects\n",
                  (long long)rpc_stats_get(fx->stats, RPC_C_GOAWAYS),
                  (long long)rpc_stats_get(fx->stats, RPC_C_CONNECTS));
    assert_true(rpc_stats_get(fx->stats, RPC_C_GOAWAYS) >= 10);
}

/* A backend that never answers (or answers after the deadline) costs the
 * calls that land on it until it is ejected: a handful, then none. */
static void expect_ejected(fixture *fx, const char *what)
{
    char problem[320];
    /* Reads spread over time, so the bad endpoint keeps coming back (it
     * accepts every connection) until it has failed enough to be set aside. */
    int failed = 0, sent = 0;
    for (int round = 0; round < 200 && rpc_stats_get(fx->stats, RPC_C_EJECTIONS) == 0; round++) {
        failed += 10 - reads(fx, 10, 150, problem, sizeof(problem));
        sent += 10;
        usleep(20 * 1000);
    }
    print_message("%s: ejected after %d reads, %d of them not answered (%s); lost %lld, "
                  "retries %lld, late %lld\n", what, sent, failed, problem,
                  (long long)rpc_stats_get(fx->stats, RPC_C_CONNS_LOST),
                  (long long)rpc_stats_get(fx->stats, RPC_C_RETRIES),
                  (long long)rpc_stats_get(fx->stats, RPC_C_LATE_ANSWERS));
    assert_true(rpc_stats_get(fx->stats, RPC_C_EJECTIONS) >= 1);
    if (failed > 10)
        fail_msg("%s: expected at most 10 reads lost before the ejection, %d were (%s)", what,
                 failed, problem);
    /* Now ejected: everything goes to the good endpoint. */
    int ok = reads(fx, 200, 150, problem, sizeof(problem));
    if (ok != 200)
        fail_msg("%s: after the ejection expected 200 answers, got %d (%s)", what, ok, problem);
    rpc_endpoint_info info[4];
    size_t n = rpc_channel_endpoints(fx->ch, info, 4);
    int ejected = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        ejected += info[i].ejected && strcmp(info[i].addr, fx->bad_addr) == 0;
    assert_int_equal(ejected, 1);
}

static void test_backend_that_never_answers(void **state)
{
    expect_ejected(*state, "black hole");
}

static void test_answers_after_the_deadline(void **state)
{
    /* (Whether a late answer still arrives depends on keepalive closing the
     * connection first; test_channel checks that late answers are dropped.) */
    expect_ejected(*state, "late");
}

/* An echo server sends our own REQUEST back, a frame no tcpops server
 * sends: a call to it alone ends as "not a tcpops service" (what
 * tcpops-cli reports with exit 3), not as a lost connection. */
static void test_echo_server_is_not_a_service(void **state)
{
    fixture *fx = *state;
    char err[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    rpc_channel_cfg_default(&cfg);
    cfg.pool_size = 1;
    cfg.tls = tlspeer_tls.client;
    rpc_channel *ch = testsvc_channel("echo", fx->bad_addr, &cfg, err);
    if (ch == NULL)
        fail_msg("channel: %s", err);
    rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)"x", .body_len = 1,
                  .deadline_ms = 2000};
    int st = rpc_channel_call(ch, &c);
    if (st != TCPOPS__STATUS__UNAVAILABLE || c.err != -EPROTONOSUPPORT ||
        strstr(c.error, "not a tcpops service") == NULL)
        fail_msg("a call to an echo server: expected UNAVAILABLE, -EPROTONOSUPPORT and \"not a "
                 "tcpops service\", got %s, %d, \"%s\"", rpc_status_name(st), c.err, c.error);
    rpc_call_fini(&c);
    rpc_channel_free(ch);
}

int main(int argc, char **argv)
{
    int with_tls = argc > 1 && strcmp(argv[1], "tls") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_and_duplicate_answers, setup_unknown_ids,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversize_frame_from_service, setup_oversize,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_garbage_from_service, setup_garbage, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_over_and_over, setup_goaway_storm, teardown),
        cmocka_unit_test_setup_teardown(test_backend_that_never_answers, setup_blackhole,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_answers_after_the_deadline, setup_late, teardown),
        cmocka_unit_test_setup_teardown(test_echo_server_is_not_a_service, setup_echo, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    if (with_tls)
        return cmocka_run_group_tests_name("test_hostile_tls", tests, tlspeer_group_setup,
                                           tlspeer_group_teardown);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
