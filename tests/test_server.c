/* The server against raw sockets: control frames, text mode, and peers that
 * break the protocol or push against a limit. Each offender is answered with
 * an error where possible and cut off; a good client on the same server keeps
 * getting every answer.
 *
 * `test_server tls` (test_server_tls) runs every case again over mutual TLS:
 * the server and the good channel get dev-certs.sh credentials, and each raw
 * peer speaks through tlspeer's relay (a TLS client with client.crt), so its
 * bytes, half-closes and silences reach the server inside TLS. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rawpeer.h"
#include "rpc/server.h"
#include "testsvc.h"
#include "tlspeer.h"

typedef struct fixture {
    rpc_server *srv;
    rpc_stats *stats;
    rpc_channel *good;
    struct sockaddr_in sa;
    char addr[64];
} fixture;

/* The configuration every server here starts from: the test methods and
 * line mode, on a free port. */
static void base_cfg(rpc_server_cfg *cfg)
{
    rpc_server_cfg_default(cfg);
    cfg->listen = "127.0.0.1:0";
    cfg->threads = 2;
    cfg->methods = testsvc_methods;
    cfg->nmethods = testsvc_nmethods;
    cfg->text = testsvc_text;
    cfg->text_first_byte = '{';
    cfg->text_error = testsvc_text_error;
    cfg->tls = tlspeer_tls.server;
}

/* Starts fx->srv from cfg and fills fx->addr and fx->sa. */
static void start_server(fixture *fx, const rpc_server_cfg *cfg)
{
    char err[RPC_ERRLEN];
    if (rpc_server_new(&fx->srv, cfg, err) < 0)
        fail_msg("server: %s", err);
    assert_int_equal(rpc_server_start(fx->srv), 0);
    snprintf(fx->addr, sizeof(fx->addr), "127.0.0.1:%d", rpc_server_port(fx->srv, 0));
    assert_int_equal(rpc_addr_parse(fx->addr, &fx->sa, err), 0);
}

static int setup_with(void **state, int max_conns, size_t max_write_buf, int partial_ms,
                      int idle_ms, int max_inflight)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char err[RPC_ERRLEN];
    rpc_server_cfg cfg;
    rpc_stats_new(&fx->stats);
    base_cfg(&cfg);
    cfg.stats = fx->stats;
    cfg.max_frame = 65536;
    cfg.max_conns = max_conns;
    cfg.max_write_buf = max_write_buf;
    cfg.partial_timeout_ms = partial_ms;
    cfg.idle_timeout_ms = idle_ms;
    cfg.max_inflight = max_inflight;
    start_server(fx, &cfg);

    rpc_channel_cfg ccfg;
    rpc_channel_cfg_default(&ccfg);
    ccfg.pool_size = 1;
    ccfg.tls = tlspeer_tls.client;
    ccfg.keepalive_idle_ms = idle_ms / 4; /* a good client is never idle for long */
    fx->good = testsvc_channel("good", fx->addr, &ccfg, err);
    if (fx->good == NULL)
        fail_msg("channel: %s", err);
    *state = fx;
    return 0;
}

static int setup(void **state) { return setup_with(state, 64, 0, 10000, 60000, 256); }
static int setup_limits(void **state) { return setup_with(state, 4, 65536, 300, 600, 256); }
/* Two calls in flight per connection, so a short pipeline passes the cap. */
static int setup_inflight2(void **state) { return setup_with(state, 64, 0, 10000, 60000, 2); }
/* Four connections and an idle timeout far beyond the test. */
static int setup_conns4(void **state) { return setup_with(state, 4, 0, 10000, 60000, 256); }

static int teardown(void **state)
{
    fixture *fx = *state;
    rpc_channel_free(fx->good);
    rpc_server_drain(fx->srv, 1000);
    rpc_server_free(fx->srv);
    rpc_stats_free(fx->stats);
    free(fx);
    return 0;
}

/* The good client: an echo that must come back intact. */
static void assert_good_client_served(fixture *fx, const char *token)
{
    rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)token,
                  .body_len = strlen(token), .deadline_ms = 2000};
    int st = rpc_channel_call(fx->good, &c);
    if (st != TCPOPS__STATUS__OK || c.resp_len != strlen(token) ||
        memcmp(c.resp, token, c.resp_len) != 0)
        fail_msg("good client: expected OK \"%s\", got %s (%s)", token, rpc_status_name(st),
                 c.error);
    rpc_call_fini(&c);
}

static int raw_connect(fixture *fx)
{
    int fd = rpc_sock_connect(&fx->sa, 1000);
    assert_true(fd >= 0);
    if (tlspeer_tls.peer_client != NULL)
        fd = tlspeer_wrap(fd, tlspeer_tls.peer_client); /* the bytes, inside TLS */
    assert_true(fd >= 0);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, p, n, rpc_now_ms() + 2000, &w), 0);
}

static void raw_send_frame(int fd, const rpc_frame *f)
{
    uint8_t buf[70000];
    size_t n = rpc_frame_write(f, buf);
    raw_send(fd, buf, n);
}

static void send_request(int fd, uint64_t id, const char *method, const char *body)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = id;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = (char *)method;
    f.body.data = (uint8_t *)body;
    f.body.len = strlen(body);
    raw_send_frame(fd, &f);
}

/* Sends PING id on fd and expects its PONG. */
static void assert_pong(int fd, uint64_t id, const char *who)
{
    rpc_frame ping = TCPOPS__FRAME__INIT;
    ping.kind = TCPOPS__KIND__PING;
    ping.id = id;
    raw_send_frame(fd, &ping);
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    if (f == NULL || f->kind != TCPOPS__KIND__PONG || f->id != id)
        fail_msg("%s: expected PONG %llu, got %s", who, (unsigned long long)id,
                 f == NULL ? "a closed connection" : "another frame");
    rpc_frame_free(f);
}

/* Expects an error RESPONSE then a close. */
static void assert_error_then_closed(int fd, const char *what)
{
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    if (f == NULL)
        fail_msg("%s: expected an error frame before the close, got none", what);
    if (f->kind != TCPOPS__KIND__RESPONSE || f->status != TCPOPS__STATUS__INVALID_ARGUMENT)
        fail_msg("%s: expected RESPONSE INVALID_ARGUMENT, got kind %d status %s", what,
                 f->kind, rpc_status_name(f->status));
    rpc_frame_free(f);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("%s: expected the server to close the connection; it stayed open", what);
}

static void test_ping_pong(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    rpc_frame ping = TCPOPS__FRAME__INIT;
    ping.kind = TCPOPS__KIND__PING;
    ping.id = 77;
    raw_send_frame(fd, &ping);
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    assert_non_null(f);
    assert_int_equal(f->kind, TCPOPS__KIND__PONG);
    assert_int_equal(f->id, 77);
    rpc_frame_free(f);
    close(fd);
}

static void test_requests_answered_by_id(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    send_request(fd, 1, "test.Sleep", "300");
    send_request(fd, 2, "test.Echo", "quick");
    send_request(fd, 3, "no.Such", "");
    /* The quick ones overtake the sleeping one. */
    rpc_frame *a = rawpeer_read_frame(fd, 70000, 5000);
    rpc_frame *b = rawpeer_read_frame(fd, 70000, 5000);
    rpc_frame *c = rawpeer_read_frame(fd, 70000, 5000);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    rpc_frame *byid[4] = {0};
    byid[a->id] = a;
    byid[b->id] = b;
    byid[c->id] = c;
    assert_int_equal(c->id, 1);
    assert_int_equal(byid[2]->status, TCPOPS__STATUS__OK);
    assert_memory_equal(byid[2]->body.data, "quick", 5);
    assert_int_equal(byid[3]->status, TCPOPS__STATUS__UNIMPLEMENTED);
    assert_int_equal(byid[1]->status, TCPOPS__STATUS__OK);
    rpc_frame_free(a);
    rpc_frame_free(b);
    rpc_frame_free(c);
    close(fd);
}

/* A REQUEST frame whose method and trace id are exactly the given bytes, NULs
 * included (protobuf-c would stop at the first NUL packing a C string).
 * Returns the frame's size in out. Every length must fit in one varint byte. */
static size_t raw_request(uint8_t *out, uint8_t id, const char *method, size_t mlen,
                          const char *trace, size_t tlen, const char *body)
{
    size_t blen = strlen(body), n = RPC_FRAME_HEADER;
    assert_true(id < 128 && mlen < 128 && tlen < 128 && blen < 128);
    out[n++] = 0x08, out[n++] = id;   /* id */
    out[n++] = 0x10, out[n++] = 1;    /* kind REQUEST */
    out[n++] = 0x1a, out[n++] = (uint8_t)mlen;
    memcpy(out + n, method, mlen), n += mlen;
    if (tlen > 0) {
        out[n++] = 0x3a, out[n++] = (uint8_t)tlen;
        memcpy(out + n, trace, tlen), n += tlen;
    }
    out[n++] = 0x42, out[n++] = (uint8_t)blen;
    memcpy(out + n, body, blen), n += blen;
    rpc_frame_put_len(out, (uint32_t)(n - RPC_FRAME_HEADER));
    return n;
}

/* Expects the answer to request id to be INVALID_ARGUMENT mentioning word. */
static void expect_invalid(int fd, uint64_t id, const char *word, const char *what)
{
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    if (f == NULL)
        fail_msg("%s: expected an INVALID_ARGUMENT answer, the server closed instead", what);
    if (f->id != id || f->status != TCPOPS__STATUS__INVALID_ARGUMENT ||
        strstr(f->error, word) == NULL)
        fail_msg("%s: expected id %llu INVALID_ARGUMENT mentioning \"%s\"; got id %llu %s "
                 "\"%s\"",
                 what, (unsigned long long)id, word, (unsigned long long)f->id,
                 rpc_status_name(f->status), f->error);
    rpc_frame_free(f);
}

/* protobuf-c hands strings out cut at their first NUL: "test.Echo\0junk"
 * must not run test.Echo, and a trace id must be what was sent. An answer,
 * not a disconnect: the connection keeps serving. */
static void test_nul_in_frame_strings_is_invalid(void **state)
{
    fixture *fx = *state;
    uint8_t buf[256];
    int fd = raw_connect(fx);
    raw_send(fd, buf, raw_request(buf, 1, "test.Echo\0junk", 14, "", 0, "hi"));
    expect_invalid(fd, 1, "method", "method \"test.Echo\\0junk\"");
    raw_send(fd, buf, raw_request(buf, 2, "test.Echo\0", 10, "", 0, "hi"));
    expect_invalid(fd, 2, "method", "method \"test.Echo\\0\"");
    raw_send(fd, buf, raw_request(buf, 3, "test.Echo", 9, "tr\0ace", 6, "hi"));
    expect_invalid(fd, 3, "trace_id", "trace id \"tr\\0ace\"");
    raw_send(fd, buf, raw_request(buf, 4, "test.Echo", 9, "trace", 5, "still here"));
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    assert_non_null(f);
    assert_int_equal(f->id, 4);
    assert_int_equal(f->status, TCPOPS__STATUS__OK);
    assert_int_equal(f->body.len, 10);
    assert_memory_equal(f->body.data, "still here", 10);
    rpc_frame_free(f);
    close(fd);
}

static void test_oversize_claim_is_cut_off(void **state)
{
    fixture *fx = *state;
    /* Claims over the 64 KiB maximum that still start with byte 0. */
    const uint32_t claims[] = {0x00FFFFFFu, 65536 + 1};
    for (size_t i = 0; i < 2; i++) {
        int fd = raw_connect(fx);
        uint8_t h[4];
        rpc_frame_put_len(h, claims[i]);
        raw_send(fd, h, 4);
        assert_error_then_closed(fd, "oversize length");
        close(fd);
        assert_good_client_served(fx, "after-oversize");
    }
    /* A first byte that is neither 0 nor '{' is a claim over 16 MiB. */
    int fd = raw_connect(fx);
    raw_send(fd, "\xff\xff\xff\xff", 4);
    assert_error_then_closed(fd, "length 0xFFFFFFFF");
    close(fd);
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_PROTOCOL_ERRORS), 3);
    assert_good_client_served(fx, "still-here");
}

static void test_garbage_and_wrong_kinds_are_cut_off(void **state)
{
    fixture *fx = *state;

    int fd = raw_connect(fx);
    const uint8_t garbage[] = {0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
    raw_send(fd, garbage, sizeof(garbage));
    assert_error_then_closed(fd, "garbage protobuf");
    close(fd);

    fd = raw_connect(fx);
    const uint8_t zero[] = {0, 0, 0, 0};
    raw_send(fd, zero, sizeof(zero));
    assert_error_then_closed(fd, "length 0 (no kind)");
    close(fd);

    fd = raw_connect(fx);
    rpc_frame resp = TCPOPS__FRAME__INIT;
    resp.kind = TCPOPS__KIND__RESPONSE;
    resp.id = 1;
    raw_send_frame(fd, &resp);
    assert_error_then_closed(fd, "RESPONSE sent to a server");
    close(fd);

    fd = raw_connect(fx);
    send_request(fd, 5, "test.Echo", "first");
    rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
    assert_non_null(f);
    assert_int_equal(f->status, TCPOPS__STATUS__OK);
    rpc_frame_free(f);
    send_request(fd, 5, "test.Echo", "duplicate");
    assert_error_then_closed(fd, "duplicate request id");
    close(fd);

    fd = raw_connect(fx);
    raw_send(fd, "\x00\x00", 2); /* a truncated header, then hang up */
    close(fd);

    assert_good_client_served(fx, "unaffected");
}

static void test_text_mode_lines_in_order(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    const char *lines = "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\r\n";
    raw_send(fd, lines, strlen(lines));
    const char *want = "echo: {\"cmd\":\"a\"}\necho: {\"cmd\":\"b\"}\n";
    char got[128] = {0};
    size_t n = rawpeer_read_n(fd, (uint8_t *)got, strlen(want), 5000);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("text mode: expected \"%s\", got \"%.*s\"", want, (int)n, got);
    /* One more line later, on the same connection. */
    raw_send(fd, "{}\n", 3);
    n = rawpeer_read_n(fd, (uint8_t *)got, 9, 5000);
    assert_int_equal(n, 9);
    assert_memory_equal(got, "echo: {}\n", 9);
    close(fd);
}

/* A line longer than max_frame (64 KiB here) with no newline: the server
 * sends the line cfg.text_error makes of the reason, then closes. Exactly
 * one byte too many, so the server has read everything when it closes. */
static void test_line_too_long_is_told_then_closed(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    size_t n = 65536 + 1;
    char *line = malloc(n);
    assert_non_null(line);
    memset(line, 'x', n);
    line[0] = '{';
    raw_send(fd, line, n);
    free(line);
    char got[128] = {0};
    ssize_t r = rawpeer_read_until_closed(fd, got, sizeof(got), 5000);
    const char *want = "error: line too long\n";
    if (r < 0 || strcmp(got, want) != 0)
        fail_msg("line too long: expected \"%s\" then the close, got \"%s\" (%s)", want, got,
                 r < 0 ? "still open" : "closed");
    close(fd);
    assert_good_client_served(fx, "after a long line");
}

/* cfg.text_first_byte picks the byte that starts line mode; '{' then
 * starts no mode at all and is a protocol error. */
static void test_line_mode_first_byte(void **state)
{
    (void)state;
    fixture fx = {0};
    rpc_server_cfg cfg;
    base_cfg(&cfg);
    cfg.text_first_byte = '#';
    start_server(&fx, &cfg);

    int fd = raw_connect(&fx);
    raw_send(fd, "# hi\n", 5);
    char got[32] = {0};
    size_t n = rawpeer_read_n(fd, (uint8_t *)got, 11, 5000);
    if (n != 11 || memcmp(got, "echo: # hi\n", 11) != 0)
        fail_msg("first byte '#': expected \"echo: # hi\\n\", got \"%.*s\"", (int)n, got);
    close(fd);

    fd = raw_connect(&fx);
    raw_send(fd, "{}\n", 3);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("first byte '{' on a '#' server: expected the server to close, it stayed open");
    close(fd);
    rpc_server_free(fx.srv);
}

/* Over the limit with every connection busy, a new one is refused; once
 * the calls are answered, a new client gets in again. */
static void test_connection_limit(void **state)
{
    fixture *fx = *state;
    /* Four raw connections take the four slots: the good client leaves. */
    rpc_channel_free(fx->good);
    fx->good = NULL;
    for (int i = 0; i < 250 && rpc_stats_get(fx->stats, RPC_C_CONNS_OPEN) > 0; i++)
        usleep(20000);
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_CONNS_OPEN), 0);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = raw_connect(fx);
        send_request(fds[i], 1, "test.Sleep", "800");
        /* Its PONG comes once the server has read the request before it. */
        assert_pong(fds[i], 2, "a busy connection");
    }
    int extra = raw_connect(fx);
    if (!rawpeer_closed(extra, 5000))
        fail_msg("expected the 5th connection over a limit of 4, all busy, to be closed");
    close(extra);
    assert_true(rpc_stats_get(fx->stats, RPC_C_CONNS_REFUSED) >= 1);
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_CONNS_EVICTED), 0);
    for (int i = 0; i < 4; i++) {
        rpc_frame *f = rawpeer_read_frame(fds[i], 70000, 5000);
        if (f == NULL || f->status != TCPOPS__STATUS__OK)
            fail_msg("a call inside the limit: expected OK, got %s",
                     f == NULL ? "a closed connection" : rpc_status_name(f->status));
        rpc_frame_free(f);
    }
    /* Nothing in flight any more: a new client is let in. */
    int again = raw_connect(fx);
    send_request(again, 1, "test.Echo", "x");
    rpc_frame *f = rawpeer_read_frame(again, 70000, 5000);
    if (f == NULL || f->status != TCPOPS__STATUS__OK)
        fail_msg("a new client once the calls were answered: expected OK, got %s",
                 f == NULL ? "a closed connection" : rpc_status_name(f->status));
    rpc_frame_free(f);
    close(again);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

static void test_stalled_frame_is_cut_off(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    /* A header promising 100 bytes, then only 3 of them. */
    raw_send(fd, "\x00\x00\x00\x64\x08\x01\x10", 7);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("expected a frame stalled past the partial-frame timeout to be closed");
    close(fd);
    assert_true(rpc_stats_get(fx->stats, RPC_C_PARTIAL_TIMEOUT) >= 1);
    assert_good_client_served(fx, "after-stall");
}

static void test_peer_that_never_reads_is_cut_off(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    char body[16001];
    memset(body, 'z', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    /* Echo answers pile up unread: the server stops reading this peer once
     * half its 64 KiB write buffer waits, and cuts it off when it has read
     * nothing for the partial-frame timeout (300 ms here). */
    int sent = 0;
    for (uint64_t id = 1; id <= 400; id++) {
        rpc_frame f = TCPOPS__FRAME__INIT;
        f.id = id;
        f.kind = TCPOPS__KIND__REQUEST;
        f.method = "test.Echo";
        f.body.data = (uint8_t *)body;
        f.body.len = sizeof(body) - 1;
        uint8_t buf[17000];
        size_t n = rpc_frame_write(&f, buf);
        size_t w = 0;
        if (rpc_sock_write_all(fd, buf, n, rpc_now_ms() + 1000, &w) < 0)
            break;
        sent++;
    }
    for (int i = 0; i < 250 && rpc_stats_get(fx->stats, RPC_C_WRITE_BUF_FULL) == 0; i++)
        usleep(20000);
    if (rpc_stats_get(fx->stats, RPC_C_WRITE_BUF_FULL) == 0)
        fail_msg("expected a peer that never reads to be cut off (sent %d frames)", sent);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("expected the server to close a peer that never reads; it stayed open");
    close(fd);
    assert_good_client_served(fx, "after-slow-reader");
}

/* A peer that connects and says nothing is closed after the idle timeout;
 * the good client, which PINGs when idle, keeps its connection. */
static void test_silent_peer_is_cut_off(void **state)
{
    fixture *fx = *state;
    assert_good_client_served(fx, "before");
    int fd = raw_connect(fx);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("expected a silent connection to be closed after the idle timeout");
    close(fd);
    assert_true(rpc_stats_get(fx->stats, RPC_C_IDLE_CLOSED) >= 1);
    assert_good_client_served(fx, "after-idle");
}

/* A peer that sends its requests and then half-closes (SHUT_WR, as
 * `printf ... | nc -q1` does) gets every answer, from the workers (Sleep)
 * and from the I/O thread (Echo, Fail) alike, and only then the end of the
 * stream. */
static void test_half_close_binary_answers_every_call(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    send_request(fd, 1, "test.Sleep", "200");
    send_request(fd, 2, "test.Echo", "two");
    send_request(fd, 3, "test.Sleep", "100");
    send_request(fd, 4, "test.Fail", "four");
    send_request(fd, 5, "test.Sleep", "50");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    int seen[6] = {0};
    for (int i = 0; i < 5; i++) {
        rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
        if (f == NULL)
            fail_msg("half-close: expected 5 answers, the connection ended after %d", i);
        if (f->kind != TCPOPS__KIND__RESPONSE || f->id < 1 || f->id > 5 || seen[f->id]++)
            fail_msg("half-close: expected one RESPONSE for each id 1-5, got kind %d id %llu",
                     f->kind, (unsigned long long)f->id);
        int want = f->id == 4 ? TCPOPS__STATUS__INVALID_ARGUMENT : TCPOPS__STATUS__OK;
        if ((int)f->status != want)
            fail_msg("half-close: call %llu expected %s, got %s (%s)",
                     (unsigned long long)f->id, rpc_status_name(want),
                     rpc_status_name(f->status), f->error);
        rpc_frame_free(f);
    }
    if (!rawpeer_closed(fd, 5000))
        fail_msg("half-close: expected the server to close after the last answer; it stayed open");
    close(fd);
    assert_good_client_served(fx, "after-half-close");
}

/* The same in text mode, where every line runs on a worker; a last line
 * without its newline is ended by the end of the stream. */
static void test_half_close_text_answers_every_line(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx);
    const char *lines = "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\r\n{\"cmd\":\"c\"}";
    raw_send(fd, lines, strlen(lines));
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    const char *want = "echo: {\"cmd\":\"a\"}\necho: {\"cmd\":\"b\"}\necho: {\"cmd\":\"c\"}\n";
    char got[512];
    ssize_t n = rawpeer_read_until_closed(fd, got, sizeof(got), 5000);
    if (n < 0)
        fail_msg("half-close text: expected the server to close after the last answer; "
                 "got \"%s\" and it stayed open", got);
    if (strcmp(got, want) != 0)
        fail_msg("half-close text: expected \"%s\" then the end, got \"%s\"", want, got);
    close(fd);
}

/* Requests past a connection's in-flight cap wait for a free slot (the
 * server stops reading from that peer) rather than being refused: twelve
 * pipelined calls on a connection capped at two all succeed, and the
 * connection goes on. */
static void test_pipeline_past_inflight_cap_waits(void **state)
{
    fixture *fx = *state;
    enum { N = 12 };
    int fd = raw_connect(fx);
    for (uint64_t id = 1; id <= N; id++)
        send_request(fd, id, "test.Sleep", "20");
    for (int i = 0; i < N; i++) {
        rpc_frame *f = rawpeer_read_frame(fd, 70000, 5000);
        if (f == NULL)
            fail_msg("pipeline past the cap: expected %d answers, the connection ended after %d",
                     N, i);
        if (f->status != TCPOPS__STATUS__OK)
            fail_msg("pipeline past a cap of 2: call %llu expected OK, got %s (%s)",
                     (unsigned long long)f->id, rpc_status_name(f->status), f->error);
        rpc_frame_free(f);
    }
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_INFLIGHT_LIMIT), 0);
    assert_pong(fd, 99, "after the pipeline");
    close(fd);
}

/* Checks that text answer i echoes line i ({"n":i}, padded with pad when
 * pad is set); keeps the first that does not, for the failure message. */
typedef struct echo_check {
    const char *pad;
    char got[64];
} echo_check;

static int check_echo(void *arg, int i, const char *line, size_t len)
{
    echo_check *ec = arg;
    char want[8192];
    int wl = ec->pad != NULL
                 ? snprintf(want, sizeof(want), "echo: {\"n\":%d,\"pad\":\"%s\"}", i, ec->pad)
                 : snprintf(want, sizeof(want), "echo: {\"n\":%d}", i);
    if (len == (size_t)wl && memcmp(line, want, len) == 0)
        return 0;
    snprintf(ec->got, sizeof(ec->got), "%.*s", (int)(len < 60 ? len : 60), line);
    return 1;
}

/* Builds n lines {"n":i} (padded with pad when set), malloc'd, into *len. */
static char *echo_lines(int n, const char *pad, size_t *len)
{
    size_t cap = (size_t)n * (32 + (pad != NULL ? strlen(pad) + 10 : 0));
    char *buf = malloc(cap);
    assert_non_null(buf);
    *len = 0;
    for (int i = 0; i < n; i++)
        *len += (size_t)(pad != NULL
                             ? snprintf(buf + *len, cap - *len, "{\"n\":%d,\"pad\":\"%s\"}\n", i, pad)
                             : snprintf(buf + *len, cap - *len, "{\"n\":%d}\n", i));
    return buf;
}

/* After a pipeline: the connection still answers a line. */
static void assert_text_open(int fd, const char *what)
{
    raw_send(fd, "{}\n", 3);
    char got[16] = {0};
    size_t n = rawpeer_read_n(fd, (uint8_t *)got, 9, 5000);
    if (n != 9 || memcmp(got, "echo: {}\n", 9) != 0)
        fail_msg("%s: expected the connection to stay open and answer, got \"%.*s\"", what,
                 (int)n, got);
}

/* Many more pipelined lines than the read buffer holds (frames of 64 KiB
 * here): the server stops reading while lines wait and answers every one,
 * in order, on a connection that stays open. */
static void test_text_pipeline_is_back_pressured(void **state)
{
    fixture *fx = *state;
    enum { N = 20000 };
    int fd = raw_connect(fx);
    size_t len = 0;
    char *lines = echo_lines(N, NULL, &len);
    rawpeer_writer w;
    assert_int_equal(rawpeer_writer_start(&w, fd, lines, len, 60000), 0);
    echo_check ec = {.pad = NULL};
    int answered = rawpeer_read_lines(fd, N, 0, 60000, check_echo, &ec);
    int wrc = rawpeer_writer_join(&w);
    free(lines);
    if (answered < N)
        fail_msg("text pipeline: expected %d answers in order, got %d (then \"%s\")", N,
                 answered, ec.got);
    assert_int_equal(wrc, 0);
    assert_text_open(fd, "text pipeline");
    close(fd);
}

/* Pipelined lines with large answers, read slowly: the server stops handing
 * out lines while answers wait (and is not cut off for it), so every answer
 * arrives, in order, and the connection stays open. */
static void test_text_slow_reader_is_back_pressured(void **state)
{
    fixture *fx = *state;
    enum { N = 3000, PAD = 4000 }; /* 12 MB of answers */
    int fd = raw_connect(fx);
    char pad[PAD + 1];
    memset(pad, 'p', PAD);
    pad[PAD] = '\0';
    size_t len = 0;
    char *lines = echo_lines(N, pad, &len);
    rawpeer_writer w;
    assert_int_equal(rawpeer_writer_start(&w, fd, lines, len, 60000), 0);
    echo_check ec = {.pad = pad};
    int answered = rawpeer_read_lines(fd, N, 1, 60000, check_echo, &ec);
    int wrc = rawpeer_writer_join(&w);
    free(lines);
    if (answered < N)
        fail_msg("slow text reader: expected %d answers in order, got %d (then \"%s\"), then "
                 "the connection %s (write_buffer_full %lld)",
                 N, answered, ec.got, rawpeer_closed(fd, 1000) ? "closed" : "went silent",
                 (long long)rpc_stats_get(fx->stats, RPC_C_WRITE_BUF_FULL));
    assert_int_equal(wrc, 0);
    assert_text_open(fd, "slow text reader");
    close(fd);
}

/* The same in binary mode: pipelined calls with 16 KB answers, read slowly,
 * are each answered once and intact, and the connection goes on. */
static void test_binary_slow_reader_is_back_pressured(void **state)
{
    fixture *fx = *state;
    enum { N = 750, BODY = 16000 }; /* 12 MB of answers */
    int fd = raw_connect(fx);
    char body[BODY];
    size_t fsize = 0;
    char *frames = malloc((size_t)N * (BODY + 64));
    for (uint64_t id = 1; id <= N; id++) {
        memset(body, 'a' + (int)(id % 26), BODY);
        rpc_frame f = TCPOPS__FRAME__INIT;
        f.id = id;
        f.kind = TCPOPS__KIND__REQUEST;
        f.method = "test.Echo";
        f.body.data = (uint8_t *)body;
        f.body.len = BODY;
        rpc_frame_write(&f, (uint8_t *)frames + fsize);
        fsize += rpc_frame_size(&f);
    }
    rawpeer_writer w;
    assert_int_equal(rawpeer_writer_start(&w, fd, frames, fsize, 60000), 0);
    static char buf[4 * 65536];
    size_t have = 0;
    int answered = 0;
    char seen[N + 1] = {0};
    int64_t deadline = rpc_now_ms() + 60000;
    while (answered < N && rawpeer_read_some(fd, buf, sizeof(buf), &have, deadline, 1) > 0) {
        size_t off = 0;
        for (;;) {
            const uint8_t *payload = NULL;
            size_t plen = 0;
            int n = rpc_frame_decode((uint8_t *)buf + off, have - off, 65536, &payload, &plen);
            if (n <= 0)
                break;
            rpc_frame *f = NULL;
            if (rpc_frame_unpack(payload, plen, &f) < 0)
                fail_msg("slow binary reader: answer %d does not decode", answered);
            if (f->kind != TCPOPS__KIND__RESPONSE || f->id < 1 || f->id > N || seen[f->id]++)
                fail_msg("slow binary reader: expected one RESPONSE for each id 1-%d, got "
                         "kind %d id %llu", N, f->kind, (unsigned long long)f->id);
            memset(body, 'a' + (int)(f->id % 26), BODY);
            if (f->status != TCPOPS__STATUS__OK || f->body.len != BODY ||
                memcmp(f->body.data, body, BODY) != 0)
                fail_msg("slow binary reader: call %llu expected OK with its %d bytes back, "
                         "got %s with %zu bytes (%s)", (unsigned long long)f->id, BODY,
                         rpc_status_name(f->status), f->body.len, f->error);
            rpc_frame_free(f);
            answered++;
            off += (size_t)n;
        }
        have -= off;
        memmove(buf, buf + off, have);
    }
    int wrc = rawpeer_writer_join(&w);
    free(frames);
    if (answered < N)
        fail_msg("slow binary reader: expected %d answers, got %d, then the connection %s "
                 "(write_buffer_full %lld)",
                 N, answered, rawpeer_closed(fd, 1000) ? "closed" : "went silent",
                 (long long)rpc_stats_get(fx->stats, RPC_C_WRITE_BUF_FULL));
    assert_int_equal(wrc, 0);
    assert_pong(fd, N + 1, "after the slow reader");
    close(fd);
}

/* At the connection limit a new client is let in by closing the connection
 * that has been idle longest with nothing in flight: that one gets GOAWAY
 * and the end of the stream, the newcomer is served, the others are left
 * alone, and the eviction is counted. */
static void test_limit_evicts_longest_idle(void **state)
{
    fixture *fx = *state; /* at most 4 connections */
    int a = raw_connect(fx);
    assert_pong(a, 1, "a");
    assert_good_client_served(fx, "warm"); /* after a: a is idle longest */
    int b = raw_connect(fx);
    assert_pong(b, 1, "b");
    int c = raw_connect(fx);
    assert_pong(c, 1, "c");

    int d = raw_connect(fx);
    send_request(d, 1, "test.Echo", "newcomer");
    rpc_frame *f = rawpeer_read_frame(d, 70000, 5000);
    if (f == NULL || f->status != TCPOPS__STATUS__OK)
        fail_msg("a new client at the limit: expected its call answered OK, got %s",
                 f == NULL ? "a closed connection" : rpc_status_name(f->status));
    rpc_frame_free(f);
    f = rawpeer_read_frame(a, 70000, 5000);
    if (f == NULL || f->kind != TCPOPS__KIND__GOAWAY)
        fail_msg("the longest-idle connection: expected GOAWAY, got %s",
                 f == NULL ? "a close without it" : "another frame");
    rpc_frame_free(f);
    if (!rawpeer_closed(a, 5000))
        fail_msg("the longest-idle connection: expected it closed after GOAWAY; it stayed open");
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_CONNS_EVICTED), 1);
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_CONNS_REFUSED), 0);
    assert_pong(b, 2, "b after the eviction");
    assert_pong(c, 2, "c after the eviction");
    assert_good_client_served(fx, "after-eviction");
    close(a);
    close(b);
    close(c);
    close(d);
}

/* Eviction under churn: a new client arrives at the limit while the
 * connection idle longest closes, so the accept that evicts it and the
 * victim's own end of stream come in one batch of events. The server must
 * not look at the evicted connection again (it once read it after freeing
 * it, which AddressSanitizer reports and which otherwise hands the victim's
 * events to whatever the memory holds next). Every newcomer is served. */
static void test_eviction_under_churn(void **state)
{
    fixture *fx = *state; /* at most 4 connections */
    enum { ROUNDS = 300 };
    /* Only this test's connections, so the one closing is the idlest. */
    rpc_channel_free(fx->good);
    fx->good = NULL;
    for (int i = 0; i < 250 && rpc_stats_get(fx->stats, RPC_C_CONNS_OPEN) > 0; i++)
        usleep(20000);
    assert_int_equal(rpc_stats_get(fx->stats, RPC_C_CONNS_OPEN), 0);
    int q[4];
    for (int i = 0; i < 4; i++) {
        q[i] = raw_connect(fx);
        assert_pong(q[i], 1, "warm-up");
    }
    /* A burst of PINGs keeps the I/O thread busy, so what happens next
     * (the idlest closes, a newcomer arrives) reaches it in one batch. */
    enum { BURST = 2000 };
    rpc_frame ping = TCPOPS__FRAME__INIT, pong = TCPOPS__FRAME__INIT;
    ping.kind = TCPOPS__KIND__PING;
    pong.kind = TCPOPS__KIND__PONG;
    ping.id = pong.id = 7;
    size_t ping_len = rpc_frame_size(&ping), pong_len = rpc_frame_size(&pong);
    uint8_t *burst = malloc(ping_len * BURST), *pongs = malloc(pong_len * BURST);
    for (int i = 0; i < BURST; i++)
        rpc_frame_write(&ping, burst + (size_t)i * ping_len);
    for (int r = 0; r < ROUNDS; r++) {
        raw_send(q[1], burst, ping_len * BURST);
        close(q[0]); /* the idlest closes just as the newcomer arrives */
        int fresh = raw_connect(fx);
        char who[48];
        size_t got = rawpeer_read_n(q[1], pongs, pong_len * BURST, 5000);
        if (got != pong_len * BURST)
            fail_msg("round %d: expected %d PONGs to the burst, got %zu bytes of %zu", r,
                     BURST, got, pong_len * BURST);
        snprintf(who, sizeof(who), "newcomer %d", r);
        assert_pong(fresh, 1, who);
        memmove(q, q + 1, 3 * sizeof(q[0]));
        q[3] = fresh;
        /* Oldest first, so q[0] is again the idlest. */
        for (int i = 0; i < 4; i++) {
            snprintf(who, sizeof(who), "round %d, connection %d", r, i);
            assert_pong(q[i], 2, who);
        }
    }
    free(burst);
    free(pongs);
    for (int i = 0; i < 4; i++)
        close(q[i]);
    int last = raw_connect(fx);
    assert_pong(last, 1, "after the churn");
    close(last);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ping_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_answered_by_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_frame_strings_is_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_claim_is_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_and_wrong_kinds_are_cut_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_mode_lines_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_too_long_is_told_then_closed, setup,
                                        teardown),
        cmocka_unit_test(test_line_mode_first_byte),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup_limits, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_frame_is_cut_off, setup_limits, teardown),
        cmocka_unit_test_setup_teardown(test_peer_that_never_reads_is_cut_off, setup_limits,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_silent_peer_is_cut_off, setup_limits, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_binary_answers_every_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_half_close_text_answers_every_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_past_inflight_cap_waits, setup_inflight2,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_pipeline_is_back_pressured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_slow_reader_is_back_pressured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_slow_reader_is_back_pressured, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_limit_evicts_longest_idle, setup_conns4, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_under_churn, setup_conns4, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "tls") == 0)
        return cmocka_run_group_tests_name("test_server_tls", tests, tlspeer_group_setup,
                                           tlspeer_group_teardown);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
