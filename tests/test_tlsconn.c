/* rpc_conn over TLS on a socketpair, both ends driven by this one thread
 * through the non-blocking calls the server and client use: the handshake,
 * frames far larger than a TLS record and than the socket buffers (so
 * reads and writes stop half way, SSL_ERROR_WANT_* both ways), decrypted
 * bytes left inside TLS when rbuf is full (rpc_conn_buffered), the
 * server-name check, a client without a certificate, and the counters.
 * Certificates come from scripts/dev-certs.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/conn.h"
#include "rpc/sock.h"
#include "rpc/stats.h"
#include "rpc/tls.h"

#define BIG (3u << 20) /* a 3 MiB frame: ~190 TLS records */

static char dir[] = "/tmp/tcpops-tlsconn-XXXXXX";

static int make_certs(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s/scripts/dev-certs.sh %s/a >/dev/null && "
             "%s/scripts/dev-certs.sh %s/b >/dev/null",
             TCPOPS_SOURCE_DIR, dir, TCPOPS_SOURCE_DIR, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Credentials from dir/ca (server or client files of that CA). */
static rpc_tls *tls_of(const char *ca, rpc_tls_role role, const char *who)
{
    char cert[256], key[256], caf[256], err[RPC_ERRLEN];
    snprintf(cert, sizeof(cert), "%s/%s/%s.crt", dir, ca, who);
    snprintf(key, sizeof(key), "%s/%s/%s.key", dir, ca, who);
    snprintf(caf, sizeof(caf), "%s/%s/ca.crt", dir, ca);
    rpc_tls_files f = {cert, key, caf};
    rpc_tls *t = NULL;
    int rc = rpc_tls_new(&t, role, &f, err);
    if (rc != 0)
        fail_msg("rpc_tls_new(%s/%s): expected 0, got %d: %s", ca, who, rc, err);
    return t;
}

typedef struct pair {
    rpc_conn srv, cli;
    rpc_stats *sst, *cst;
} pair;

/* A socketpair (with small buffers when srv_max_frame is BIG's: a frame
 * then crosses them many times), TLS started on both ends. */
static void pair_open(pair *p, rpc_tls *st, rpc_tls *ct, const char *dialled,
                      size_t srv_max_frame)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 16384;
    for (int i = 0; i < 2 && srv_max_frame > BIG; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    char err[RPC_ERRLEN];
    assert_int_equal(rpc_stats_new(&p->sst), 0);
    assert_int_equal(rpc_stats_new(&p->cst), 0);
    rpc_conn_init(&p->srv, sv[0], srv_max_frame, 0);
    rpc_conn_init(&p->cli, sv[1], BIG + 64, SIZE_MAX);
    assert_int_equal(rpc_conn_tls_start(&p->srv, st, "peer:1", p->sst, err), 0);
    assert_int_equal(rpc_conn_tls_start(&p->cli, ct, dialled, p->cst, err), 0);
}

static void pair_close(pair *p)
{
    rpc_conn_fini(&p->srv);
    rpc_conn_fini(&p->cli);
    rpc_stats_free(p->sst);
    rpc_stats_free(p->cst);
}

/* Drives both handshakes, alternating. Returns 0 when both completed, or
 * the first error (-ECONNABORTED: refused). */
static int handshake(pair *p)
{
    for (int i = 0; i < 1000; i++) {
        int c = rpc_tls_conn_handshake(p->cli.tls);
        int s = rpc_tls_conn_handshake(p->srv.tls);
        if (c == 1 && s == 1)
            return 0;
        if (c < 0 && c != -EAGAIN)
            return c;
        if (s < 0 && s != -EAGAIN)
            return s;
    }
    return -ETIMEDOUT;
}

/* Moves bytes both ways until the reader holds one whole frame or nothing
 * moves any more. Returns the frame (NULL when none came). */
static rpc_frame *pump_until_frame(rpc_conn *from, rpc_conn *to)
{
    rpc_frame *f = NULL;
    for (int idle = 0; idle < 50;) {
        int moved = 0;
        size_t before = rpc_conn_unsent(from);
        assert_int_equal(rpc_conn_flush(from), 0);
        moved |= rpc_conn_unsent(from) != before;
        int r = rpc_conn_fill(to);
        if (r > 0)
            moved = 1;
        else if (r != -EAGAIN)
            fail_msg("rpc_conn_fill: expected bytes or -EAGAIN, got %d (%s)", r,
                     rpc_conn_tls_error(to));
        int got = rpc_conn_read_frame(to, &f);
        if (got == 1)
            return f;
        assert_int_equal(got, 0);
        idle = moved ? 0 : idle + 1;
    }
    return NULL;
}

static rpc_frame big_frame(uint8_t *body, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)(i * 7 + id);
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__REQUEST;
    f.id = id;
    f.method = "echo.Big";
    f.body.data = body;
    f.body.len = n;
    return f;
}

static void frames_far_larger_than_records_and_buffers(void **state)
{
    (void)state;
    rpc_tls *st = tls_of("a", RPC_TLS_SERVER, "server");
    rpc_tls *ct = tls_of("a", RPC_TLS_CLIENT, "client");
    pair p;
    pair_open(&p, st, ct, "127.0.0.1:5002", BIG + 64);
    assert_int_equal(handshake(&p), 0);
    assert_int_equal(rpc_stats_get(p.sst, RPC_C_TLS_HANDSHAKES), 1);
    assert_int_equal(rpc_stats_get(p.cst, RPC_C_TLS_HANDSHAKES), 1);

    uint8_t *body = malloc(BIG - 100);
    assert_non_null(body);
    for (uint64_t id = 1; id <= 3; id++) {
        rpc_conn *from = id % 2 ? &p.cli : &p.srv, *to = id % 2 ? &p.srv : &p.cli;
        rpc_frame f = big_frame(body, BIG - 100, id);
        /* The socket takes a few records: the rest waits in wbuf. */
        assert_int_equal(rpc_conn_send(from, &f), 0);
        assert_true(rpc_conn_unsent(from) > 0);
        rpc_frame *got = pump_until_frame(from, to);
        if (got == NULL)
            fail_msg("frame %llu: expected it whole at the other end, got nothing "
                     "(unsent %zu)", (unsigned long long)id, rpc_conn_unsent(from));
        assert_int_equal(got->id, id);
        assert_int_equal(got->body.len, BIG - 100);
        assert_memory_equal(got->body.data, body, BIG - 100);
        rpc_frame_free(got);
        assert_int_equal(rpc_conn_unsent(from), 0);
    }
    free(body);
    pair_close(&p);
    rpc_tls_free(st);
    rpc_tls_free(ct);
}

/* Small frames, client to server, until the server holds n whole ones
 * (consuming each). Fails when nothing moves any more. */
static void take_frames(pair *p, int n, int *got)
{
    for (int idle = 0; *got < n && idle < 50;) {
        size_t before = rpc_conn_unsent(&p->cli);
        assert_int_equal(rpc_conn_flush(&p->cli), 0);
        int r = rpc_conn_fill(&p->srv);
        assert_true(r > 0 || r == -EAGAIN || r == -EMSGSIZE);
        rpc_frame *f = NULL;
        int moved = r > 0 || rpc_conn_unsent(&p->cli) != before;
        while (rpc_conn_read_frame(&p->srv, &f) == 1) {
            assert_int_equal(f->id, (uint64_t)*got + 1);
            rpc_frame_free(f);
            (*got)++;
            moved = 1;
        }
        idle = moved ? 0 : idle + 1;
    }
    if (*got != n)
        fail_msg("expected %d frames at the server, got %d", n, *got);
}

/* rbuf full while TLS holds decrypted bytes of a record it could not hand
 * over whole: rpc_conn_buffered says so, which is how the server knows to
 * read again when no readiness will tell it. */
static void bytes_left_inside_tls_are_announced(void **state)
{
    (void)state;
    rpc_tls *st = tls_of("a", RPC_TLS_SERVER, "server");
    rpc_tls *ct = tls_of("a", RPC_TLS_CLIENT, "client");
    pair p;
    /* max_frame 64: rbuf holds 64 + 4 + one 64 KiB read at most. */
    pair_open(&p, st, ct, "127.0.0.1:5002", 64);
    assert_int_equal(handshake(&p), 0);
    uint8_t body[30];
    memset(body, 'x', sizeof(body));
    const int n = 4000; /* ~200 KiB: over three times what rbuf takes */
    for (int i = 1; i <= n; i++) {
        rpc_frame f = TCPOPS__FRAME__INIT;
        f.kind = TCPOPS__KIND__REQUEST;
        f.id = (uint64_t)i;
        f.method = "m";
        f.body.data = body;
        f.body.len = sizeof(body);
        assert_int_equal(rpc_conn_cork(&p.cli, 1), 0);
        assert_int_equal(rpc_conn_send(&p.cli, &f), 0);
        if (i == 1) { /* the first alone: rbuf starts off a record boundary */
            int got = 0;
            take_frames(&p, 0, &got);
            assert_int_equal(rpc_conn_cork(&p.cli, 0), 0);
            while (rpc_conn_fill(&p.srv) == -EAGAIN)
                ;
        }
    }
    /* The socket takes it all; one fill takes the 64 KiB (and a bit)
     * rbuf has room for, ending inside a record. */
    assert_int_equal(rpc_conn_flush(&p.cli), 0);
    int r = rpc_conn_fill(&p.srv);
    assert_true(r > RPC_CONN_READ_CHUNK - 100);
    int saw_buffered = rpc_conn_buffered(&p.srv);
    if (!saw_buffered)
        fail_msg("expected TLS to hold decrypted bytes once rbuf was full (rbuf %zu bytes)",
                 rpc_buf_used(&p.srv.rbuf));
    int got = 0;
    take_frames(&p, n, &got);
    assert_false(rpc_conn_buffered(&p.srv));
    pair_close(&p);
    rpc_tls_free(st);
    rpc_tls_free(ct);
}

static void server_name_is_checked(void **state)
{
    (void)state;
    rpc_tls *st = tls_of("a", RPC_TLS_SERVER, "server");
    rpc_tls *ct = tls_of("a", RPC_TLS_CLIENT, "client");
    const char *names[] = {"10.9.8.7:5002", "elsewhere.example:5002"};
    for (size_t i = 0; i < 2; i++) {
        pair p;
        pair_open(&p, st, ct, names[i], BIG + 64);
        int rc = handshake(&p);
        if (rc != -ECONNABORTED)
            fail_msg("dialling %s with a certificate for 127.0.0.1/localhost: expected "
                     "-ECONNABORTED, got %d", names[i], rc);
        if (strstr(rpc_conn_tls_error(&p.cli), "certificate") == NULL)
            fail_msg("expected the client to say why (certificate ...), got \"%s\"",
                     rpc_conn_tls_error(&p.cli));
        pair_close(&p);
    }
    /* localhost by name passes. */
    pair p;
    pair_open(&p, st, ct, "localhost:5002", BIG + 64);
    assert_int_equal(handshake(&p), 0);
    pair_close(&p);
    rpc_tls_free(st);
    rpc_tls_free(ct);
}

static const char *refused_why;
static int refused_n;
static void on_refused(void *user, const char *peer, const char *why)
{
    (void)user;
    (void)peer;
    refused_n++;
    refused_why = why;
}

static void client_of_another_ca_is_refused_and_counted(void **state)
{
    (void)state;
    rpc_tls *st = tls_of("a", RPC_TLS_SERVER, "server");
    /* b's client certificate, trusting a's CA so that only the server
     * has a reason to refuse. */
    char cert[256], key[256], caf[256], err[RPC_ERRLEN];
    snprintf(cert, sizeof(cert), "%s/b/client.crt", dir);
    snprintf(key, sizeof(key), "%s/b/client.key", dir);
    snprintf(caf, sizeof(caf), "%s/a/ca.crt", dir);
    rpc_tls_files f = {cert, key, caf};
    rpc_tls *ct = NULL;
    assert_int_equal(rpc_tls_new(&ct, RPC_TLS_CLIENT, &f, err), 0);
    rpc_tls_on_refused(st, on_refused, NULL);
    refused_n = 0;
    pair p;
    pair_open(&p, st, ct, "127.0.0.1:5002", BIG + 64);
    int rc = handshake(&p);
    /* TLS 1.3: the client finishes first, and learns of the refusal at
     * its first read. */
    if (rc == 0) {
        rc = rpc_conn_fill(&p.cli);
        if (rc == -EAGAIN)
            rc = rpc_conn_fill(&p.cli);
    }
    assert_true(rc < 0 && rc != -EAGAIN);
    assert_int_equal(rpc_stats_get(p.sst, RPC_C_TLS_REFUSED), 1);
    assert_int_equal(refused_n, 1);
    assert_non_null(strstr(refused_why, "certificate"));
    pair_close(&p);
    rpc_tls_free(st);
    rpc_tls_free(ct);
}

/* A restart as the client sees it: every connection ends without
 * close_notify (lost, or cut by the server going away), and the server
 * comes back as a new process with the same key. Each next connection
 * still resumes with the ticket kept, also after one that resumed and was
 * lost before the server's next ticket came. (OpenSSL marks the session of
 * a connection freed without close_notify not resumable, so the client
 * must not keep or offer a connection's own session object.) */
static void sessions_resume_after_lost_connections_and_a_restart(void **state)
{
    (void)state;
    rpc_tls *ct = tls_of("a", RPC_TLS_CLIENT, "client");
    rpc_tls *st[2] = {tls_of("a", RPC_TLS_SERVER, "server"), NULL};
    uint8_t body[16] = {0};
    for (int i = 0; i < 4; i++) {
        if (i == 1) /* the restarted server: a new context from the same files */
            st[1] = tls_of("a", RPC_TLS_SERVER, "server");
        pair p;
        pair_open(&p, st[i > 0], ct, "127.0.0.1:5002", BIG + 64);
        assert_int_equal(handshake(&p), 0);
        int resumed = rpc_tls_conn_resumed(p.cli.tls);
        if (resumed != (i > 0))
            fail_msg("connection %d: expected resumed=%d, got %d", i, i > 0, resumed);
        if (i != 2) { /* a frame back brings the client the server's next ticket */
            rpc_frame f = big_frame(body, sizeof(body), 1);
            assert_int_equal(rpc_conn_send(&p.srv, &f), 0);
            rpc_frame *got = pump_until_frame(&p.srv, &p.cli);
            assert_non_null(got);
            rpc_frame_free(got);
        }
        pair_close(&p); /* no close_notify */
    }
    rpc_tls_free(st[0]);
    rpc_tls_free(st[1]);
    rpc_tls_free(ct);
}

static void files_all_or_none(void **state)
{
    (void)state;
    char err[RPC_ERRLEN];
    rpc_tls_files none = {0}, some = {"a.crt", NULL, "ca.crt"};
    assert_int_equal(rpc_tls_files_check(&none, err), 0);
    assert_int_equal(rpc_tls_files_check(&some, err), -EINVAL);
    assert_non_null(strstr(err, "--tls-key"));
    rpc_tls_files missing = {"/nonexistent.crt", "/nonexistent.key", "/nonexistent.ca"};
    rpc_tls *t = NULL;
    assert_int_equal(rpc_tls_new(&t, RPC_TLS_SERVER, &missing, err), -EINVAL);
    assert_null(t);
    assert_non_null(strstr(err, "/nonexistent.crt"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_far_larger_than_records_and_buffers),
        cmocka_unit_test(bytes_left_inside_tls_are_announced),
        cmocka_unit_test(server_name_is_checked),
        cmocka_unit_test(client_of_another_ca_is_refused_and_counted),
        cmocka_unit_test(sessions_resume_after_lost_connections_and_a_restart),
        cmocka_unit_test(files_all_or_none),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
