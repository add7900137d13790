/* rpc_conn over a socketpair: the frame reader fed a byte at a time, oversize
 * and foreign first bytes, the writer's cork, cap and waiting flush, and the
 * pending table. No TCP, no sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "rpc/conn.h"

typedef struct pair {
    rpc_conn c; /* our end, non-blocking */
    int peer;   /* the other end, blocking */
} pair;

static void pair_open(pair *p, size_t max_frame, size_t max_write_buf)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    rpc_conn_init(&p->c, sv[0], max_frame, max_write_buf);
    p->peer = sv[1];
}

static void pair_close(pair *p)
{
    rpc_conn_fini(&p->c);
    close(p->peer);
}

static size_t encode(uint8_t *out, int kind, uint64_t id, const char *method)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = kind;
    f.id = id;
    f.method = (char *)method;
    return rpc_frame_write(&f, out);
}

static void peer_write(pair *p, const void *b, size_t n)
{
    assert_int_equal(write(p->peer, b, n), (ssize_t)n);
}

static void test_frame_one_byte_at_a_time(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    uint8_t buf[128];
    size_t n = encode(buf, TCPOPS__KIND__REQUEST, 7, "people.List");
    rpc_frame *f = NULL;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rpc_conn_read_frame(&p.c, &f), 0);
        peer_write(&p, buf + i, 1);
        assert_int_equal(rpc_conn_fill(&p.c), 1);
    }
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), 1);
    assert_int_equal(f->id, 7);
    assert_string_equal(f->method, "people.List");
    assert_int_equal(p.c.frames_in, 1);
    assert_int_equal(rpc_conn_read_frame(&p.c, &f) == 0, 1);
    rpc_frame_free(f);
    assert_int_equal(rpc_conn_fill(&p.c), -EAGAIN);
    pair_close(&p);
}

static void test_several_frames_in_one_read(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    uint8_t buf[512];
    size_t n = 0;
    for (int i = 1; i <= 5; i++)
        n += encode(buf + n, TCPOPS__KIND__PING, (uint64_t)i, NULL);
    peer_write(&p, buf, n);
    assert_int_equal(rpc_conn_fill(&p.c), (int)n);
    for (int i = 1; i <= 5; i++) {
        rpc_frame *f = NULL;
        assert_int_equal(rpc_conn_read_frame(&p.c, &f), 1);
        assert_int_equal(f->id, (uint64_t)i);
        rpc_frame_free(f);
    }
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), 0);
    pair_close(&p);
}

/* A length over max_frame after a good frame is a frame too large, not a
 * foreign peer. */
static void test_oversize_after_first_frame(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 64, 0);
    uint8_t buf[128];
    size_t n = encode(buf, TCPOPS__KIND__PONG, 1, NULL);
    rpc_frame_put_len(buf + n, 65);
    peer_write(&p, buf, n + 4);
    assert_true(rpc_conn_fill(&p.c) > 0);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), 1);
    rpc_frame_free(f);
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), -EMSGSIZE);
    pair_close(&p);
}

/* An HTTP server's answer as the first bytes: not a tcpops peer. */
static void test_http_answer_is_foreign(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    const char *http = "HTTP/1.1 400 Bad Request\r\n\r\n";
    peer_write(&p, http, strlen(http));
    assert_true(rpc_conn_fill(&p.c) > 0);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), -EPROTONOSUPPORT);
    pair_close(&p);
}

/* A first frame slightly too large is an oversize frame (a peer with a
 * larger --max-frame), not a foreign one. */
static void test_first_frame_too_large_is_not_foreign(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 64, 0);
    uint8_t h[4];
    rpc_frame_put_len(h, 1000);
    peer_write(&p, h, 4);
    assert_int_equal(rpc_conn_fill(&p.c), 4);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), -EMSGSIZE);
    pair_close(&p);
}

static void test_bytes_that_do_not_decode(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    uint8_t buf[128];
    size_t n = encode(buf, TCPOPS__KIND__PONG, 1, NULL);
    uint8_t bad[] = {0, 0, 0, 2, 0xff, 0xff};
    memcpy(buf + n, bad, sizeof(bad));
    peer_write(&p, buf, n + sizeof(bad));
    assert_true(rpc_conn_fill(&p.c) > 0);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), 1);
    rpc_frame_free(f);
    assert_int_equal(rpc_conn_read_frame(&p.c, &f), -EPROTO);
    pair_close(&p);
}

static void test_recv_frame_waits_then_times_out(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    uint8_t buf[64];
    size_t n = encode(buf, TCPOPS__KIND__PONG, 3, NULL);
    peer_write(&p, buf, n);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_conn_recv_frame(&p.c, &f, rpc_now_ms() + 5000), 1);
    assert_int_equal(f->id, 3);
    rpc_frame_free(f);
    assert_int_equal(rpc_conn_recv_frame(&p.c, &f, rpc_now_ms() + 20), -ETIMEDOUT);
    shutdown(p.peer, SHUT_WR);
    assert_int_equal(rpc_conn_recv_frame(&p.c, &f, rpc_now_ms() + 5000), -ECONNRESET);
    pair_close(&p);
}

static void test_fill_sees_eof(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    shutdown(p.peer, SHUT_WR);
    assert_int_equal(rpc_conn_fill(&p.c), 0);
    pair_close(&p);
}

static size_t peer_read_all(pair *p, uint8_t *out, size_t cap)
{
    assert_int_equal(fcntl(p->peer, F_SETFL, O_NONBLOCK), 0);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(p->peer, out + got, cap - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    assert_int_equal(fcntl(p->peer, F_SETFL, 0), 0);
    return got;
}

/* Corked frames wait in wbuf and leave together when uncorked. */
static void test_cork_batches(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__RESPONSE;
    assert_int_equal(rpc_conn_cork(&p.c, 1), 0);
    for (int i = 1; i <= 3; i++) {
        f.id = (uint64_t)i;
        assert_int_equal(rpc_conn_send(&p.c, &f), 0);
    }
    uint8_t got[256];
    assert_int_equal(peer_read_all(&p, got, sizeof(got)), 0);
    size_t queued = rpc_conn_unsent(&p.c);
    assert_true(queued > 0);
    assert_int_equal(rpc_conn_cork(&p.c, 0), 0);
    assert_int_equal(rpc_conn_unsent(&p.c), 0);
    assert_int_equal(peer_read_all(&p, got, sizeof(got)), queued);
    pair_close(&p);
}

/* A frame that would take wbuf past its cap is refused whole; the frames
 * before it stay intact. */
static void test_write_cap_refuses_whole_frame(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 300);
    uint8_t body[120];
    memset(body, 'b', sizeof(body));
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.body.data = body;
    f.body.len = sizeof(body);
    rpc_conn_cork(&p.c, 1);
    assert_int_equal(rpc_conn_send(&p.c, &f), 0);
    assert_int_equal(rpc_conn_send(&p.c, &f), 0);
    size_t two = rpc_conn_unsent(&p.c);
    assert_int_equal(rpc_conn_send(&p.c, &f), -ENOBUFS);
    assert_int_equal(rpc_conn_unsent(&p.c), two);
    assert_int_equal(rpc_conn_queue(&p.c, body, 300 - two + 1), -ENOBUFS);
    assert_int_equal(rpc_conn_queue(&p.c, body, 300 - two), 0);
    pair_close(&p);
}

/* The default cap holds four frames of max_frame, headers included. */
static void test_default_cap_holds_four_largest_frames(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 4096, 0);
    assert_int_equal(p.c.max_write_buf, rpc_conn_write_buf_default(4096));
    uint8_t *body = calloc(1, 4096);
    assert_non_null(body);
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.body.data = body;
    f.body.len = 4096 - 16;
    assert_true(rpc_frame_size(&f) <= 4096 + RPC_FRAME_HEADER);
    rpc_conn_cork(&p.c, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rpc_conn_send(&p.c, &f), 0);
    free(body);
    pair_close(&p);
}

/* flush_wait sends more than the socket buffer holds once the peer reads,
 * and times out while it does not. */
static void test_flush_wait(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1 << 20, 0);
    int small = 4096;
    setsockopt(p.c.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    uint8_t *big = calloc(1, 1 << 20);
    assert_non_null(big);
    assert_int_equal(rpc_conn_queue(&p.c, big, 1 << 20), 0);
    assert_int_equal(rpc_conn_flush_wait(&p.c, rpc_now_ms() + 30), -ETIMEDOUT);
    size_t left = rpc_conn_unsent(&p.c);
    assert_true(left > 0 && left < (1u << 20));
    size_t got = peer_read_all(&p, big, 1 << 20);
    assert_int_equal(got + left, 1 << 20);
    /* The rest: a reader drains it while flush_wait waits for room. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t n = 0;
        while (n < left) {
            ssize_t r = read(p.peer, big, 1 << 20);
            if (r <= 0)
                _exit(1);
            n += (size_t)r;
        }
        _exit(n == left ? 0 : 2);
    }
    assert_int_equal(rpc_conn_flush_wait(&p.c, rpc_now_ms() + 20000), 0);
    assert_int_equal(rpc_conn_unsent(&p.c), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(big);
    pair_close(&p);
}

static void test_flush_to_closed_peer_fails(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, 1024, 0);
    close(p.peer);
    p.peer = open("/dev/null", O_RDONLY);
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__PING;
    assert_int_equal(rpc_conn_send(&p.c, &f), -EPIPE);
    pair_close(&p);
}

typedef struct call {
    rpc_pending pend; /* first */
    int n;
} call;

static void test_pending_table(void **state)
{
    (void)state;
    rpc_conn c;
    rpc_conn_init(&c, -1, 1024, 0);
    call calls[300];
    for (int i = 0; i < 300; i++) {
        calls[i].n = i;
        rpc_conn_put(&c, &calls[i].pend);
        assert_int_equal(calls[i].pend.id, (uint64_t)i + 1);
    }
    assert_ptr_equal(rpc_conn_oldest(&c), &calls[0].pend);
    assert_ptr_equal(rpc_conn_take(&c, 1), &calls[0].pend);
    assert_null(rpc_conn_take(&c, 1));
    assert_null(rpc_conn_take(&c, 9999));
    assert_ptr_equal(rpc_conn_oldest(&c), &calls[1].pend);
    assert_ptr_equal(rpc_conn_take(&c, 65), &calls[64].pend); /* same bucket as 1 */

    /* Above 250: 50 calls, oldest first. */
    rpc_pending *list = rpc_conn_detach(&c, 250);
    uint64_t want = 251;
    for (rpc_pending *p = list; p != NULL; p = p->next)
        assert_int_equal(p->id, want++);
    assert_int_equal(want, 301);
    assert_null(rpc_conn_take(&c, 260));

    int left = 0;
    for (rpc_pending *p = rpc_conn_detach(&c, 0); p != NULL; p = p->next)
        left++;
    assert_int_equal(left, 250 - 2);
    assert_null(rpc_conn_oldest(&c));
    rpc_conn_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_one_byte_at_a_time),
        cmocka_unit_test(test_several_frames_in_one_read),
        cmocka_unit_test(test_oversize_after_first_frame),
        cmocka_unit_test(test_http_answer_is_foreign),
        cmocka_unit_test(test_first_frame_too_large_is_not_foreign),
        cmocka_unit_test(test_bytes_that_do_not_decode),
        cmocka_unit_test(test_recv_frame_waits_then_times_out),
        cmocka_unit_test(test_fill_sees_eof),
        cmocka_unit_test(test_cork_batches),
        cmocka_unit_test(test_write_cap_refuses_whole_frame),
        cmocka_unit_test(test_default_cap_holds_four_largest_frames),
        cmocka_unit_test(test_flush_wait),
        cmocka_unit_test(test_flush_to_closed_peer_fails),
        cmocka_unit_test(test_pending_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
