/* Hostile TLS peers against a real tcpops-people with mutual TLS and a short
 * partial-frame timeout (500 ms): a ClientHello one byte at a time, a record
 * or a frame stalled after a good handshake, 10,000 garbage records instead
 * of a handshake or after one, 200 such peers (the service's memory stays
 * bounded), and the connection limit. Each is cut off by the same limits as
 * in plaintext, the counters say so, and a good client goes on. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rawpeer.h"
#include "tlspeer.h"
#include "tlsworld.h"

#define PARTIAL_MS "500"
#define MAX_CONNS 32

typedef struct fixture {
    tlsworld w;
    SSL_CTX *good;       /* live's client certificate */
    uint8_t hello[4096]; /* a real ClientHello */
    size_t hello_len;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    tlsworld_init(&fx->w);
    const char *const extra[] = {"--partial-timeout-ms=" PARTIAL_MS, "--max-conns=32", NULL};
    tlsworld_start(&fx->w, extra);
    fx->good = tlspeer_ctx_dir(0, fx->w.live, "client");
    assert_non_null(fx->good);
    fx->hello_len = tlspeer_client_hello(fx->good, fx->hello, sizeof(fx->hello));
    assert_true(fx->hello_len > 100);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    SSL_CTX_free(fx->good);
    tlsworld_fini(&fx->w);
    free(fx);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int raw_connect(fixture *fx)
{
    struct sockaddr_in sa;
    char err[RPC_ERRLEN];
    assert_int_equal(rpc_addr_parse(fx->w.addr, &sa, err), 0);
    int fd = rpc_sock_connect(&sa, 5000);
    assert_true(fd >= 0);
    return fd;
}

/* A good handshake with live's client certificate; fails the test if not. */
static int good_tls(fixture *fx, SSL **ssl)
{
    int ok = 0;
    int fd = tlspeer_connect(fx->good, fx->w.port, ssl, &ok, 5000);
    if (fd < 0 || !ok)
        fail_msg("expected a good TLS handshake with %s", fx->w.addr);
    return fd;
}

/* Whether the server closed fd (EOF or reset), without waiting. */
static int closed_now(int fd)
{
    return rawpeer_closed(fd, 0);
}

/* n records of random bytes that claim to be application data. */
static void garbage_records(int fd, int n)
{
    enum { LEN = 16 };
    uint8_t *buf = malloc((size_t)n * (5 + LEN));
    assert_non_null(buf);
    for (int i = 0; i < n; i++) {
        uint8_t *r = buf + (size_t)i * (5 + LEN);
        r[0] = 0x17, r[1] = 0x03, r[2] = 0x03, r[3] = 0, r[4] = LEN;
        for (int j = 0; j < LEN; j++)
            r[5 + j] = (uint8_t)rand();
    }
    size_t w = 0; /* the server closes at the first: the rest may not go */
    rpc_sock_write_all(fd, buf, (size_t)n * (5 + LEN), rpc_now_ms() + 5000, &w);
    free(buf);
}

/* The counter name rose by at least want since before (polled: the
 * server counts as it closes). */
static void expect_counter(fixture *fx, const char *name, long before, long want)
{
    int64_t deadline = rpc_now_ms() + 5000;
    long now;
    while ((now = tlsworld_counter(fx->w.addr, fx->w.live, name)) - before < want &&
           rpc_now_ms() < deadline)
        sleep_ms(50);
    if (now - before < want)
        fail_msg("%s: expected to rise by at least %ld, rose by %ld", name, want, now - before);
}

/* The good client still gets its answer. */
static void good_client_works(fixture *fx)
{
    char out[4096], err[4096];
    int rc = tlsworld_cli(fx->w.addr, fx->w.live, out, sizeof(out), err, sizeof(err), "people",
                          "list", NULL);
    if (rc != 0 || strstr(out, "\"names\"") == NULL)
        fail_msg("good client: expected exit 0 and the names, got %d, \"%s\" (%s)", rc, out, err);
}

static void test_client_hello_one_byte_at_a_time_is_cut_off(void **state)
{
    fixture *fx = *state;
    long before = tlsworld_counter(fx->w.addr, fx->w.live, "partial_frame_timeout");
    int fd = raw_connect(fx);
    /* 20 ms a byte: the whole hello would take ten times the timeout. */
    size_t sent = 0;
    while (sent < fx->hello_len && !closed_now(fd)) {
        if (send(fd, fx->hello + sent, 1, MSG_NOSIGNAL) != 1)
            break;
        sent++;
        sleep_ms(20);
    }
    if (sent >= fx->hello_len && !rawpeer_closed(fd, 5000))
        fail_msg("a ClientHello one byte at a time: expected the server to close the "
                 "connection before its %zu bytes were in, it took them all", fx->hello_len);
    close(fd);
    expect_counter(fx, "partial_frame_timeout", before, 1);
    good_client_works(fx);
}

/* A good handshake, then a record whose header promises 100 bytes and 10
 * come; and a frame inside TLS that promises 100 bytes and 3 come. */
static void test_stalls_after_the_handshake_are_cut_off(void **state)
{
    fixture *fx = *state;
    long before = tlsworld_counter(fx->w.addr, fx->w.live, "partial_frame_timeout");
    SSL *ssl = NULL;
    int fd = good_tls(fx, &ssl);
    const uint8_t part[] = {0x17, 0x03, 0x03, 0x00, 0x64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, part, sizeof(part), rpc_now_ms() + 2000, &w), 0);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("a TLS record stalled halfway: expected the server to close the connection");
    SSL_free(ssl);
    close(fd);

    fd = good_tls(fx, &ssl);
    assert_int_equal(tlspeer_write(ssl, "\x00\x00\x00\x64\x08\x01\x10", 7, 2000), 0);
    if (!tlspeer_ended(ssl, 5000))
        fail_msg("a frame stalled inside TLS: expected the server to close the connection");
    SSL_free(ssl);
    close(fd);
    expect_counter(fx, "partial_frame_timeout", before, 2);
    good_client_works(fx);
}

/* A client idle after its handshake for longer than the partial-frame
 * timeout, then sending a request in two parts: the clock starts at the
 * request's first byte, not at the handshake. */
static void test_request_long_after_the_handshake_is_answered(void **state)
{
    fixture *fx = *state;
    SSL *ssl = NULL;
    int fd = good_tls(fx, &ssl);
    sleep_ms(1500); /* the client has nothing to say for three timeouts */
    uint8_t frame[256];
    size_t n = tlsworld_create_frame(frame, "latecomer");
    assert_int_equal(tlspeer_write(ssl, frame, 5, 2000), 0);
    sleep_ms(300); /* past a housekeeping tick, within the timeout */
    assert_int_equal(tlspeer_write(ssl, frame + 5, n - 5, 2000), 0);
    uint8_t got[64];
    size_t have = 0;
    int64_t deadline = rpc_now_ms() + 5000;
    while (have < 4 && rpc_now_ms() < deadline) {
        size_t r = 0;
        if (SSL_read_ex(ssl, got + have, sizeof(got) - have, &r) == 1) {
            have += r;
            continue;
        }
        if (SSL_get_error(ssl, 0) != SSL_ERROR_WANT_READ)
            break;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        poll(&pf, 1, 100);
    }
    SSL_free(ssl);
    close(fd);
    if (have < 4)
        fail_msg("a request sent after a long idle: expected an answer, got %zu bytes", have);
}

static void test_garbage_records_are_cut_off(void **state)
{
    fixture *fx = *state;
    long refused = tlsworld_counter(fx->w.addr, fx->w.live, "tls_refused");
    long lost = tlsworld_counter(fx->w.addr, fx->w.live, "connections_lost");
    int fd = raw_connect(fx); /* instead of a handshake */
    garbage_records(fd, 10000);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("10,000 garbage records instead of a handshake: expected a close");
    close(fd);
    expect_counter(fx, "tls_refused", refused, 1);

    SSL *ssl = NULL;
    fd = good_tls(fx, &ssl); /* after a good one */
    garbage_records(fd, 10000);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("10,000 garbage records after the handshake: expected a close");
    SSL_free(ssl);
    close(fd);
    expect_counter(fx, "connections_lost", lost, 1);
    good_client_works(fx);
}

/* One round of hostile peers, KINDS of each, all open at once; returns the
 * service's RSS (KiB) while they are. */
static long hostile_round(fixture *fx, int per_kind)
{
    enum { MAXP = 32 };
    int fds[MAXP];
    SSL *ssls[MAXP] = {0};
    int n = 0;
    uint8_t half[8192 + 5] = {0x17, 0x03, 0x03, 0x40, 0x00}; /* claims 16 KiB */
    for (int i = 0; i < per_kind && n + 4 <= MAXP; i++) {
        int fd = raw_connect(fx); /* half a ClientHello */
        send(fd, fx->hello, fx->hello_len / 2, MSG_NOSIGNAL);
        fds[n++] = fd;
        fd = good_tls(fx, &ssls[n]); /* half of a 16 KiB record */
        size_t w = 0;
        rpc_sock_write_all(fd, half, sizeof(half), rpc_now_ms() + 2000, &w);
        fds[n++] = fd;
        fd = raw_connect(fx);
        garbage_records(fd, 10000);
        fds[n++] = fd;
        fd = good_tls(fx, &ssls[n]);
        garbage_records(fd, 10000);
        fds[n++] = fd;
    }
    long rss = proc_rss_kb(&fx->w.people);
    for (int i = 0; i < n; i++) {
        if (!rawpeer_closed(fds[i], 5000))
            fail_msg("hostile peer %d of its round: expected the server to close it", i);
        SSL_free(ssls[i]);
        close(fds[i]);
    }
    return rss;
}

static void test_200_hostile_peers_memory_bounded(void **state)
{
    fixture *fx = *state;
    long base = proc_rss_kb(&fx->w.people), peak = base;
    long timeouts = tlsworld_counter(fx->w.addr, fx->w.live, "partial_frame_timeout");
    for (int round = 0; round < 10; round++) {
        long rss = hostile_round(fx, 5);
        peak = rss > peak ? rss : peak;
    }
    long after = proc_rss_kb(&fx->w.people);
    print_message("200 hostile TLS peers: RSS %ld KiB before, %ld at the peak, %ld after\n",
                  base, peak, after);
#ifndef __SANITIZE_ADDRESS__ /* ASan's shadow and quarantine make RSS say little */
    if (peak - base > 64 * 1024)
        fail_msg("expected RSS to grow by under 64 MiB, it grew by %ld KiB", peak - base);
#endif
    expect_counter(fx, "partial_frame_timeout", timeouts, 100);
    good_client_works(fx);
}

/* Idle TLS clients past --max-conns: the longest idle make room, as in
 * plaintext, and a new client still gets in. */
static void test_connection_limit_holds_under_tls(void **state)
{
    fixture *fx = *state;
    enum { PEERS = MAX_CONNS + 18 };
    int fds[PEERS];
    SSL *ssls[PEERS];
    long evicted = tlsworld_counter(fx->w.addr, fx->w.live, "connections_evicted");
    for (int i = 0; i < PEERS; i++)
        fds[i] = good_tls(fx, &ssls[i]);
    char status[8192];
    tlsworld_status(fx->w.addr, fx->w.live, status, sizeof(status));
    const char *c = strstr(status, "\"connections\":");
    long open = c != NULL ? strtol(c + 14, NULL, 10) : -1;
    if (open < 1 || open > MAX_CONNS)
        fail_msg("expected at most %d connections open, status says %ld", MAX_CONNS, open);
    int closed = 0;
    for (int i = 0; i < PEERS; i++) {
        closed += tlspeer_ended(ssls[i], 0);
        SSL_free(ssls[i]);
        close(fds[i]);
    }
    if (closed < PEERS - MAX_CONNS)
        fail_msg("expected at least %d idle peers evicted, %d were closed", PEERS - MAX_CONNS,
                 closed);
    expect_counter(fx, "connections_evicted", evicted, PEERS - MAX_CONNS);
    good_client_works(fx);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_client_hello_one_byte_at_a_time_is_cut_off),
        T(test_stalls_after_the_handshake_are_cut_off),
        T(test_request_long_after_the_handshake_is_answered),
        T(test_garbage_records_are_cut_off),
        T(test_200_hostile_peers_memory_bounded),
        T(test_connection_limit_holds_under_tls),
    };
#undef T
    signal(SIGPIPE, SIG_IGN);
    srand(7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
