/* One call on one client connection over a socketpair: exchange_send and
 * exchange_wait with the dialer's read role, but no dialer thread. The test
 * plays the server on the other end. No TCP, no sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fakechan.h"
#include "rpc/clock.h"

typedef struct pair {
    fakechan *f;
    conn *cn;    /* ours: READY on one end of the socketpair */
    rpc_conn peer; /* the server's end */
} pair;

static void pair_open(pair *p)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    p->f = fakechan_new(1, 8);
    p->cn = &p->f->conns[0][0];
    rpc_conn_attach(&p->cn->io, sv[0]);
    fakechan_ready(p->f, 0, 0, 0);
    rpc_conn_init(&p->peer, sv[1], RPC_FRAME_MAX_DEFAULT, 0);
}

static void pair_close(pair *p)
{
    rpc_conn_fini(&p->peer);
    fakechan_free(p->f); /* closes our end */
}

static int64_t soon(void)
{
    return rpc_now_ms() + 5000;
}

/* The server reads the next request; returns its id. */
static uint64_t peer_request(pair *p, const char *method)
{
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_recv_frame(&p->peer, &f, soon()), 1);
    assert_int_equal(f->kind, TCPOPS__KIND__REQUEST);
    assert_string_equal(f->method, method);
    uint64_t id = f->id;
    rpc_frame_free(f);
    return id;
}

static void peer_send(pair *p, int kind, uint64_t id, int status, const char *body)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = kind;
    f.id = id;
    f.last_id = id;
    f.status = status;
    f.body.data = (uint8_t *)body;
    f.body.len = body != NULL ? strlen(body) : 0;
    assert_int_equal(rpc_conn_send(&p->peer, &f), 0);
    assert_int_equal(rpc_conn_flush_wait(&p->peer, soon()), 0);
}

static void send_ok(pair *p, pending *pd, const char *method)
{
    rpc_call call = {.method = method};
    assert_int_equal(exchange_send(p->cn, &call, pd, soon()), 0);
}

static void expect_answer(pending *pd, const char *body)
{
    assert_int_equal(pd->how, END_ANSWER);
    assert_int_equal(pd->answer->body.len, strlen(body));
    assert_memory_equal(pd->answer->body.data, body, strlen(body));
    rpc_frame_free(pd->answer);
}

/* Opens p and sends two calls, a then b, which the server reads. */
static void two_calls(pair *p, pending *a, pending *b, uint64_t *ida, uint64_t *idb)
{
    pair_open(p);
    send_ok(p, a, "t.A");
    send_ok(p, b, "t.B");
    assert_int_equal(atomic_load(&p->cn->outstanding), 2);
    *ida = peer_request(p, "t.A");
    *idb = peer_request(p, "t.B");
    assert_true(*idb > *ida);
}

/* The caller reads its own answer off the socket, and an answer for another
 * call that comes first is handed to that call. */
static void test_answers_in_any_order(void **state)
{
    (void)state;
    pair p;
    pending a = {.how = END_NONE}, b = {.how = END_NONE};
    uint64_t ida = 0, idb = 0;
    two_calls(&p, &a, &b, &ida, &idb);
    peer_send(&p, TCPOPS__KIND__RESPONSE, idb, TCPOPS__STATUS__OK, "bee");
    peer_send(&p, TCPOPS__KIND__RESPONSE, 999, TCPOPS__STATUS__OK, "nobody's");
    peer_send(&p, TCPOPS__KIND__RESPONSE, ida, TCPOPS__STATUS__OK, "ay");
    assert_int_equal(exchange_wait(p.cn, &a, soon()), 1);
    expect_answer(&a, "ay");
    assert_true(atomic_load(&b.word) & P_DONE); /* a's reader completed it */
    assert_int_equal(exchange_wait(p.cn, &b, soon()), 1);
    expect_answer(&b, "bee");
    assert_int_equal(rpc_stats_get(p.f->stats, RPC_C_LATE_ANSWERS), 1);
    assert_int_equal(atomic_load(&p.cn->outstanding), 0);
    assert_int_equal(p.cn->reading, 0);
    assert_null(rpc_conn_oldest(&p.cn->io));
    pair_close(&p);
}

/* GOAWAY: calls above its last id come back unsent, the conn drains. */
static void test_goaway_returns_unsent_calls(void **state)
{
    (void)state;
    pair p;
    pending a = {.how = END_NONE}, b = {.how = END_NONE};
    uint64_t ida = 0, idb = 0;
    two_calls(&p, &a, &b, &ida, &idb);
    peer_send(&p, TCPOPS__KIND__GOAWAY, ida, 0, NULL);
    peer_send(&p, TCPOPS__KIND__RESPONSE, ida, TCPOPS__STATUS__OK, "ay");
    assert_int_equal(exchange_wait(p.cn, &a, soon()), 1);
    expect_answer(&a, "ay");
    assert_int_equal(exchange_wait(p.cn, &b, soon()), 1);
    assert_int_equal(b.how, END_UNSENT);
    assert_int_equal(atomic_load(&p.cn->state), CONN_DRAINING);
    assert_int_equal(p.f->last.type, RPC_EV_GOAWAY);
    assert_int_equal(atomic_load(&p.cn->outstanding), 0);
    pair_close(&p);
}

/* A GOAWAY that came while nobody read is seen before the next call goes
 * out: that call is not sent at all. */
static void test_idle_goaway_seen_before_sending(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    peer_send(&p, TCPOPS__KIND__GOAWAY, 0, 0, NULL);
    pending a = {.how = END_NONE};
    rpc_call call = {.method = "t.A"};
    assert_int_equal(exchange_send(p.cn, &call, &a, soon()), -EAGAIN);
    assert_null(rpc_conn_oldest(&p.cn->io));
    assert_int_equal(atomic_load(&p.cn->outstanding), 0);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_recv_frame(&p.peer, &f, rpc_now_ms() + 20), -ETIMEDOUT);
    pair_close(&p);
}

/* A call whose deadline passes leaves the table; its answer, if it comes,
 * is dropped as late. */
static void test_deadline_takes_the_call_back(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    pending a = {.how = END_NONE};
    send_ok(&p, &a, "t.A");
    uint64_t ida = peer_request(&p, "t.A");
    assert_int_equal(exchange_wait(p.cn, &a, rpc_now_ms() + 30), 0);
    assert_null(rpc_conn_oldest(&p.cn->io));
    assert_int_equal(atomic_load(&p.cn->outstanding), 0);
    assert_int_equal(p.cn->reading, 0);
    peer_send(&p, TCPOPS__KIND__RESPONSE, ida, TCPOPS__STATUS__OK, "late");
    p.cn->reading = 1;
    assert_int_equal(dialer_read(p.cn, 5000), 1);
    assert_int_equal(rpc_stats_get(p.f->stats, RPC_C_LATE_ANSWERS), 1);
    pair_close(&p);
}

/* The server's end reads two frames (the test's peer thread). */
typedef struct reader {
    pair *p;
    char method[2][16];
    size_t body_len[2];
    int got;
} reader;

static void *read_two(void *arg)
{
    reader *r = arg;
    r->p->peer.max_frame = 16u << 20; /* the big frame too */
    for (r->got = 0; r->got < 2; r->got++) {
        rpc_frame *f = NULL;
        if (rpc_conn_recv_frame(&r->p->peer, &f, soon()) != 1)
            break;
        snprintf(r->method[r->got], sizeof(r->method[0]), "%s", f->method);
        r->body_len[r->got] = f->body.len;
        rpc_frame_free(f);
    }
    return NULL;
}

/* A frame that cannot all leave by its call's deadline: the call times
 * out, and the rest of the frame stays queued in order, so the stream stays
 * whole: once the peer reads, it reads that frame entire, then the next
 * call's, and the connection was never given up. */
static void test_slow_write_keeps_the_stream_whole(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    size_t n = 8u << 20; /* far more than the socket buffer holds */
    uint8_t *body = calloc(1, n);
    assert_non_null(body);
    rpc_call big = {.method = "t.Big", .body = body, .body_len = n};
    pending a = {.how = END_NONE};
    assert_int_equal(exchange_send(p.cn, &big, &a, rpc_now_ms() + 30), 0);
    assert_int_equal(exchange_wait(p.cn, &a, rpc_now_ms() + 30), 0);
    assert_true(rpc_conn_unsent(&p.cn->io) > 0);
    assert_int_equal(p.cn->broken, 0);
    assert_int_equal(atomic_load(&p.cn->state), CONN_READY);

    reader r = {.p = &p};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_two, &r), 0);
    pending b = {.how = END_NONE};
    rpc_call small = {.method = "t.A"};
    assert_int_equal(exchange_send(p.cn, &small, &b, soon()), 0);
    pthread_join(th, NULL);
    if (r.got != 2 || strcmp(r.method[0], "t.Big") != 0 || r.body_len[0] != n ||
        strcmp(r.method[1], "t.A") != 0)
        fail_msg("expected t.Big (%zu bytes) then t.A whole; got %d frames: %s (%zu), %s",
                 n, r.got, r.method[0], r.body_len[0], r.method[1]);
    assert_int_equal(rpc_conn_unsent(&p.cn->io), 0);
    assert_int_equal(p.cn->broken, 0);
    free(body);
    pair_close(&p);
}

/* A sender stuck on a full socket: more than DIALER_QUEUE_MAX bytes of
 * calls are not piled up behind it; a call that does not fit waits for the
 * sender until its deadline, then is refused as unsent (to go elsewhere, or
 * fail on its deadline). A keepalive PING still goes in: a slow peer is
 * not a dead one. */
static void test_full_queue_refuses_as_unsent(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    size_t n = DIALER_QUEUE_MAX / 2 + 1;
    uint8_t *body = calloc(1, n);
    assert_non_null(body);
    rpc_call call = {.method = "t.Big", .body = body, .body_len = n};
    /* Hold the sender's lock, as a sender stuck on a full socket does. */
    pthread_mutex_lock(&p.cn->wlock);
    pending a = {.how = END_NONE}, b = {.how = END_NONE};
    assert_int_equal(exchange_send(p.cn, &call, &a, soon()), 0);
    assert_int_equal(exchange_send(p.cn, &call, &b, rpc_now_ms() + 50), -EAGAIN);
    assert_int_equal(atomic_load(&p.cn->outstanding), 1);
    assert_ptr_equal(rpc_conn_oldest(&p.cn->io), &a.link); /* b is not filed */
    rpc_frame ping = TCPOPS__FRAME__INIT;
    ping.kind = TCPOPS__KIND__PING;
    pthread_mutex_lock(&p.cn->lock);
    int rc = dialer_queue_locked(p.cn, &ping);
    pthread_mutex_unlock(&p.cn->lock);
    assert_int_equal(rc, 0);
    pthread_mutex_unlock(&p.cn->wlock);
    free(body);
    pair_close(&p);
}

/* What the read role's holder makes of the peer's bytes. */
static int read_after(pair *p, const void *bytes, size_t n)
{
    assert_int_equal(write(p->peer.fd, bytes, n), (ssize_t)n);
    p->cn->reading = 1;
    return dialer_read(p->cn, 5000);
}

static void test_not_a_server(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    const char http[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    assert_int_equal(read_after(&p, http, sizeof(http) - 1), -EPROTONOSUPPORT);
    pair_close(&p);

    /* Our own request echoed back: a frame, but none a server sends. */
    pair_open(&p);
    uint8_t buf[128];
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = "t.A";
    size_t len = rpc_frame_write(&f, buf);
    assert_int_equal(read_after(&p, buf, len), -EPROTONOSUPPORT);
    pair_close(&p);

    /* After a good frame, the same is a protocol error of a server. */
    pair_open(&p);
    rpc_frame pong = TCPOPS__FRAME__INIT;
    pong.kind = TCPOPS__KIND__PONG;
    size_t plen = rpc_frame_write(&pong, buf);
    len = rpc_frame_write(&f, buf + plen);
    assert_int_equal(read_after(&p, buf, plen + len), -EPROTO);
    pair_close(&p);
}

static void test_peer_close_ends_the_read(void **state)
{
    (void)state;
    pair p;
    pair_open(&p);
    shutdown(p.peer.fd, SHUT_WR);
    p.cn->reading = 1;
    assert_int_equal(dialer_read(p.cn, 5000), -ECONNRESET);
    dialer_done_reading(p.cn, -ECONNRESET);
    assert_int_equal(p.cn->broken, -ECONNRESET);
    assert_int_equal(atomic_load(&p.cn->state), CONN_DOWN);
    pending a = {.how = END_NONE};
    rpc_call call = {.method = "t.A"};
    assert_int_equal(exchange_send(p.cn, &call, &a, soon()), -EAGAIN);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_in_any_order),
        cmocka_unit_test(test_goaway_returns_unsent_calls),
        cmocka_unit_test(test_idle_goaway_seen_before_sending),
        cmocka_unit_test(test_deadline_takes_the_call_back),
        cmocka_unit_test(test_slow_write_keeps_the_stream_whole),
        cmocka_unit_test(test_full_queue_refuses_as_unsent),
        cmocka_unit_test(test_not_a_server),
        cmocka_unit_test(test_peer_close_ends_the_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
