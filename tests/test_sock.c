/* src/rpc/sock.c: address parsing and formatting, listeners on a free port,
 * connects that fail, and whole-buffer writes over a socketpair. Loopback
 * only, no sleeps. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

#include "rpc/clock.h"
#include "rpc/sock.h"

/* ---- rpc_addr_parse / rpc_addr_format ---- */

static void expect_addr(const char *text, const char *want)
{
    struct sockaddr_in sa;
    char err[RPC_ERRLEN] = "", got[32];
    int rc = rpc_addr_parse(text, &sa, err);
    if (rc != 0)
        fail_msg("\"%s\": expected %s, got %d (%s)", text, want, rc, err);
    rpc_addr_format(&sa, got, sizeof(got));
    if (strcmp(got, want) != 0 || sa.sin_family != AF_INET)
        fail_msg("\"%s\": expected %s, got %s (family %d)", text, want, got, sa.sin_family);
}

static void expect_bad_addr(const char *text, const char *reason)
{
    struct sockaddr_in sa;
    char err[RPC_ERRLEN] = "";
    int rc = rpc_addr_parse(text, &sa, err);
    if (rc != -EINVAL || strstr(err, reason) == NULL)
        fail_msg("\"%s\": expected -EINVAL saying \"%s\", got %d (%s)", text ? text : "NULL",
                 reason, rc, err);
}

static void test_addr_parse_good(void **state)
{
    (void)state;
    expect_addr("127.0.0.1:5001", "127.0.0.1:5001");
    expect_addr("10.1.2.3:0", "10.1.2.3:0");
    expect_addr("0.0.0.0:65535", "0.0.0.0:65535");
    expect_addr(":80", "127.0.0.1:80");       /* no host: loopback */
    expect_addr("localhost:7", "127.0.0.1:7"); /* a name that resolves (/etc/hosts) */
    expect_addr("127.0.0.1:080", "127.0.0.1:80");
}

static void test_addr_parse_bad(void **state)
{
    (void)state;
    expect_bad_addr(NULL, "is not HOST:PORT");
    expect_bad_addr("", "is not HOST:PORT");
    expect_bad_addr("127.0.0.1", "is not HOST:PORT");
    expect_bad_addr("127.0.0.1:", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:65536", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:-1", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:99999999999999999999999", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:80x", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:80 ", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:8.0", "port must be 0-65535");
    /* Digits only, as every other number tcpops reads (util/flags.h). */
    expect_bad_addr("127.0.0.1: 80", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:+80", "port must be 0-65535");
    expect_bad_addr("127.0.0.1:-0", "port must be 0-65535");
    /* The sentence names what was given. */
    expect_bad_addr("h:70000", "\"h:70000\"");
    /* However long the address, the reason still fits after it. */
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    strcpy(longhost + 280, ":80");
    expect_bad_addr(longhost, "is not HOST:PORT");
    strcpy(longhost + 200, ":80x");
    expect_bad_addr(longhost, "port must be 0-65535");
}

static void test_addr_format(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(8080)};
    inet_pton(AF_INET, "192.168.100.200", &sa.sin_addr);
    char out[32];
    rpc_addr_format(&sa, out, sizeof(out));
    assert_string_equal(out, "192.168.100.200:8080");
    char small[8];
    rpc_addr_format(&sa, small, sizeof(small)); /* truncated, still a string */
    assert_string_equal(small, "192.168");
}

/* ---- listen, connect, prepare ---- */

static int listen_free(char *err)
{
    struct sockaddr_in sa;
    assert_int_equal(rpc_addr_parse("127.0.0.1:0", &sa, err), 0);
    return rpc_sock_listen(&sa, 0, 16, err);
}

static void expect_nonblocking_nodelay(int fd)
{
    int one = 0;
    socklen_t sl = sizeof(one);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &sl), 0);
    assert_int_not_equal(one, 0);
}

static void test_listen_port0_connect_accept(void **state)
{
    (void)state;
    char err[RPC_ERRLEN] = "";
    int lfd = listen_free(err);
    if (lfd < 0)
        fail_msg("listen on 127.0.0.1:0: %s", err);
    int port = rpc_sock_port(lfd);
    assert_in_range(port, 1, 65535);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);

    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int cfd = rpc_sock_connect(&to, 5000);
    if (cfd < 0)
        fail_msg("connect to our own listener on port %d: %s", port, strerror(-cfd));
    expect_nonblocking_nodelay(cfd);
    assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);

    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&pl, 1, -1), 1);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    assert_int_equal(rpc_sock_prepare(afd), 0);
    expect_nonblocking_nodelay(afd);
    assert_int_equal(rpc_sock_port(afd), port);
    assert_int_equal(write(cfd, "hi", 2), 2);
    char b[2];
    size_t got = 0;
    while (got < 2) {
        ssize_t r = read(afd, b + got, 2 - got);
        if (r > 0)
            got += (size_t)r;
        else
            assert_true(r < 0 && errno == EAGAIN);
    }
    assert_memory_equal(b, "hi", 2);
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_listen_port_taken(void **state)
{
    (void)state;
    char err[RPC_ERRLEN] = "";
    int a = listen_free(err);
    assert_true(a >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rpc_sock_port(a)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char want[64], addr[32];
    rpc_addr_format(&sa, addr, sizeof(addr));
    snprintf(want, sizeof(want), "bind %s: ", addr);
    int b = rpc_sock_listen(&sa, 0, 16, err);
    if (b != -EADDRINUSE || strstr(err, want) == NULL)
        fail_msg("second listener on %s: expected -EADDRINUSE and \"%s...\", got %d (%s)", addr,
                 want, b, err);
    close(a);

    /* With SO_REUSEPORT on both, two listeners share the port. */
    sa.sin_port = 0;
    a = rpc_sock_listen(&sa, 1, 16, err);
    assert_true(a >= 0);
    sa.sin_port = htons((uint16_t)rpc_sock_port(a));
    b = rpc_sock_listen(&sa, 1, 16, err);
    if (b < 0)
        fail_msg("second SO_REUSEPORT listener: %s", err);
    assert_int_equal(rpc_sock_port(b), rpc_sock_port(a));
    close(b);
    close(a);
}

static void test_sock_port_not_a_socket(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(rpc_sock_port(p[0]), -ENOTSOCK);
    assert_int_equal(rpc_sock_port(-1), -EBADF);
    close(p[0]);
    close(p[1]);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* A port bound but not listening: nobody else can take it meanwhile, and
     * the kernel answers a SYN to it with a reset. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    sa.sin_port = htons((uint16_t)rpc_sock_port(fd));
    int rc = rpc_sock_connect(&sa, 5000);
    if (rc != -ECONNREFUSED)
        fail_msg("connect to a closed port: expected -ECONNREFUSED, got %d (%s)", rc,
                 rc < 0 ? strerror(-rc) : "a connection");
    close(fd);
}

/* ---- rpc_sock_write_all ---- */

/* A non-blocking socketpair end (sv[0]) with a small send buffer, and a
 * blocking reader (sv[1]). */
static void pair_open(int sv[2])
{
    int small = 4096;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
    return p;
}

static void read_exactly(int fd, uint8_t *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        if (r <= 0)
            fail_msg("reading %zu bytes: got %zu, then %zd (%s)", n, got, r, strerror(errno));
        got += (size_t)r;
    }
}

static void test_write_all_small(void **state)
{
    (void)state;
    int sv[2];
    pair_open(sv);
    size_t written = 99;
    assert_int_equal(rpc_sock_write_all(sv[0], "hello", 5, 0, &written), 0);
    assert_int_equal(written, 5);
    assert_int_equal(rpc_sock_write_all(sv[0], "", 0, 0, &written), 0);
    assert_int_equal(written, 0);
    assert_int_equal(rpc_sock_write_all(sv[0], " world", 6, 0, NULL), 0);
    uint8_t b[11];
    read_exactly(sv[1], b, sizeof(b));
    assert_memory_equal(b, "hello world", 11);
    close(sv[0]);
    close(sv[1]);
}

typedef struct reader {
    int fd;
    uint8_t *buf;
    size_t n;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    read_exactly(r->fd, r->buf, r->n);
    return NULL;
}

/* Far more than the socket holds: write_all waits for room (poll) while a
 * reader drains, until every byte went out in order. */
static void write_large(int64_t deadline_ms)
{
    int sv[2];
    pair_open(sv);
    size_t n = 4 << 20;
    uint8_t *src = pattern(n);
    reader r = {.fd = sv[1], .buf = malloc(n), .n = n};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
    size_t written = 0;
    int rc = rpc_sock_write_all(sv[0], src, n, deadline_ms, &written);
    pthread_join(th, NULL);
    if (rc != 0 || written != n)
        fail_msg("4 MiB to a reader: expected 0 and %zu written, got %d and %zu", n, rc, written);
    assert_memory_equal(r.buf, src, n);
    free(r.buf);
    free(src);
    close(sv[0]);
    close(sv[1]);
}

static void test_write_all_waits_for_room(void **state)
{
    (void)state;
    write_large(0);                    /* no deadline */
    write_large(rpc_now_ms() + 60000); /* a deadline far away */
}

/* Nobody reads and the deadline has passed: -ETIMEDOUT once the socket is
 * full, and *written says how much of the buffer went out (a prefix). */
static void test_write_all_deadline(void **state)
{
    (void)state;
    int sv[2];
    pair_open(sv);
    size_t n = 4 << 20;
    uint8_t *src = pattern(n);
    size_t written = 0;
    int rc = rpc_sock_write_all(sv[0], src, n, rpc_now_ms() - 1, &written);
    if (rc != -ETIMEDOUT || written == 0 || written >= n)
        fail_msg("4 MiB to nobody, deadline passed: expected -ETIMEDOUT with part written, "
                 "got %d with %zu of %zu", rc, written, n);
    uint8_t *got = malloc(written);
    read_exactly(sv[1], got, written);
    assert_memory_equal(got, src, written);
    /* What went out is all there is. */
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    uint8_t extra;
    assert_int_equal(read(sv[1], &extra, 1), -1);
    assert_int_equal(errno, EAGAIN);
    free(got);
    free(src);
    close(sv[0]);
    close(sv[1]);
}

static void test_write_all_peer_gone(void **state)
{
    (void)state;
    int sv[2];
    pair_open(sv);
    close(sv[1]);
    size_t written = 99;
    /* MSG_NOSIGNAL: an error, not SIGPIPE. */
    assert_int_equal(rpc_sock_write_all(sv[0], "x", 1, 0, &written), -EPIPE);
    assert_int_equal(written, 0);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_good),
        cmocka_unit_test(test_addr_parse_bad),
        cmocka_unit_test(test_addr_format),
        cmocka_unit_test(test_listen_port0_connect_accept),
        cmocka_unit_test(test_listen_port_taken),
        cmocka_unit_test(test_sock_port_not_a_socket),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_write_all_small),
        cmocka_unit_test(test_write_all_waits_for_room),
        cmocka_unit_test(test_write_all_deadline),
        cmocka_unit_test(test_write_all_peer_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
