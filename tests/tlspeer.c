/* TLS for the tests' own peers: certificates, contexts, a client
 * handshake, a real ClientHello, and the relay that puts TLS under a raw
 * peer. See tlspeer.h. */
#include "tlspeer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/err.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rpc/tls.h"
#include "proc.h"

#ifndef TCPOPS_SOURCE_DIR
#error "tests/CMakeLists.txt defines TCPOPS_SOURCE_DIR (where scripts/dev-certs.sh is)"
#endif

/* An expired client certificate of DIR's CA: `openssl x509 -req` cannot
 * date a certificate in the past, `openssl ca` can (-startdate/-enddate). */
static const char EXPIRED_SH[] =
    "set -e; cd \"$1\"; mkdir -p expired-ca; : > expired-ca/index.txt;"
    "echo 1000 > expired-ca/serial;"
    "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=expired-ca/index.txt\\n"
    "new_certs_dir=expired-ca\\nserial=expired-ca/serial\\ndefault_md=sha256\\n"
    "policy=p\\n[p]\\ncommonName=supplied\\n[x]\\nbasicConstraints=CA:FALSE\\n"
    "extendedKeyUsage=clientAuth\\n' > expired-ca/ca.cnf;"
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out expired.key;"
    "openssl req -new -key expired.key -subj '/CN=tcpops expired client' -out expired.csr;"
    "openssl ca -batch -notext -config expired-ca/ca.cnf -extensions x -cert ca.crt"
    " -keyfile ca.key -startdate 20200101000000Z -enddate 20200201000000Z"
    " -in expired.csr -out expired.crt 2>/dev/null;"
    "rm -f expired.csr";

int tlspeer_certs(const char *dir, int expired)
{
    char out[4096], err[4096];
    char *mk[] = {"/bin/bash", TCPOPS_SOURCE_DIR "/scripts/dev-certs.sh", (char *)dir, NULL};
    char *ex[] = {"/bin/bash", "-c", (char *)EXPIRED_SH, "expired", (char *)dir, NULL};
    int rc = proc_run(mk, out, sizeof(out), err, sizeof(err), 30000);
    if (rc == 0 && expired)
        rc = proc_run(ex, out, sizeof(out), err, sizeof(err), 30000);
    if (rc != 0)
        fprintf(stderr, "tlspeer_certs %s: exit %d: %s\n", dir, rc, err);
    return rc == 0 ? 0 : -1;
}

SSL_CTX *tlspeer_ctx(int server, const char *ca, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                   : SSL_VERIFY_PEER,
                       NULL);
    /* A server that verifies its peers aborts a resumed handshake unless it
     * has a session id context. */
    if (server)
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tlspeer", 7);
    int ok = SSL_CTX_load_verify_file(ctx, ca) == 1;
    if (ok && cert != NULL)
        ok = SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 &&
             SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1;
    if (!ok) {
        fprintf(stderr, "tlspeer_ctx %s %s: %s\n", ca, cert != NULL ? cert : "-",
                ERR_error_string(ERR_get_error(), NULL));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tlspeer_ctx_dir(int server, const char *dir, const char *name)
{
    char ca[512], cert[512], key[512];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(cert, sizeof(cert), "%s/%s.crt", dir, name != NULL ? name : "");
    snprintf(key, sizeof(key), "%s/%s.key", dir, name != NULL ? name : "");
    return tlspeer_ctx(server, ca, name != NULL ? cert : NULL, name != NULL ? key : NULL);
}

/* Waits until fd is ready the way ssl's last call r asked, or deadline.
 * 1 ready, 0 not in time, -1 when that call failed for good. */
static int wait_ssl(SSL *ssl, int r, int64_t deadline)
{
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        return -1;
    int64_t left = deadline - rpc_now_ms();
    if (left <= 0)
        return 0;
    struct pollfd pf = {.fd = SSL_get_fd(ssl),
                        .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    return poll(&pf, 1, (int)left) >= 0 || errno == EINTR ? 1 : -1;
}

int tlspeer_connect(SSL_CTX *ctx, int port, SSL **ssl, int *ok, int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *ssl = NULL;
    *ok = 0;
    int fd = rpc_sock_connect(&sa, timeout_ms);
    if (fd < 0)
        return -1;
    *ssl = SSL_new(ctx);
    SSL_set_fd(*ssl, fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(*ssl), "127.0.0.1");
    int64_t deadline = rpc_now_ms() + timeout_ms;
    for (;;) {
        int r = SSL_connect(*ssl);
        if (r == 1) {
            *ok = 1;
            break;
        }
        if (wait_ssl(*ssl, r, deadline) <= 0)
            break;
    }
    ERR_clear_error();
    return fd;
}

int tlspeer_write(SSL *ssl, const void *p, size_t n, int timeout_ms)
{
    int64_t deadline = rpc_now_ms() + timeout_ms;
    size_t done = 0;
    while (done < n) {
        size_t w = 0;
        int r = SSL_write_ex(ssl, (const char *)p + done, n - done, &w);
        if (r == 1) {
            done += w;
            continue;
        }
        if (wait_ssl(ssl, r, deadline) <= 0) {
            ERR_clear_error();
            return -1;
        }
    }
    return 0;
}

int tlspeer_ended(SSL *ssl, int timeout_ms)
{
    int64_t deadline = rpc_now_ms() + timeout_ms;
    char buf[4096];
    for (;;) {
        size_t got = 0;
        int r = SSL_read_ex(ssl, buf, sizeof(buf), &got);
        if (r == 1)
            continue;
        int w = wait_ssl(ssl, r, deadline);
        if (w < 0) {
            ERR_clear_error();
            return 1; /* an alert, close_notify, EOF or a reset */
        }
        if (w == 0)
            return 0;
    }
}

size_t tlspeer_client_hello(SSL_CTX *ctx, uint8_t *buf, size_t cap)
{
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (ssl == NULL || rbio == NULL || wbio == NULL) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        return 0;
    }
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns both */
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl); /* WANT_READ, with the ClientHello in wbio */
    int n = BIO_read(wbio, buf, (int)cap);
    SSL_free(ssl);
    ERR_clear_error();
    return n > 0 ? (size_t)n : 0;
}

int tlspeer_world_init(tlspeer_world *w)
{
    char err[RPC_ERRLEN], f[5][320];
    const char *names[] = {"server.crt", "server.key", "ca.crt", "client.crt", "client.key"};
    memset(w, 0, sizeof(*w));
    if (make_temp_dir(w->dir, sizeof(w->dir)) < 0 || tlspeer_certs(w->dir, 0) < 0)
        return -1;
    for (int i = 0; i < 5; i++)
        snprintf(f[i], sizeof(f[i]), "%s/%s", w->dir, names[i]);
    rpc_tls_files sf = {f[0], f[1], f[2]}, cf = {f[3], f[4], f[2]};
    if (rpc_tls_new(&w->server, RPC_TLS_SERVER, &sf, err) < 0 ||
        rpc_tls_new(&w->client, RPC_TLS_CLIENT, &cf, err) < 0) {
        fprintf(stderr, "tlspeer_world_init: %s\n", err);
        tlspeer_world_fini(w);
        return -1;
    }
    w->peer_server = tlspeer_ctx(1, f[2], f[0], f[1]);
    w->peer_client = tlspeer_ctx(0, f[2], f[3], f[4]);
    if (w->peer_server == NULL || w->peer_client == NULL) {
        tlspeer_world_fini(w);
        return -1;
    }
    return 0;
}

void tlspeer_world_fini(tlspeer_world *w)
{
    rpc_tls_free(w->server);
    rpc_tls_free(w->client);
    SSL_CTX_free(w->peer_server);
    SSL_CTX_free(w->peer_client);
    if (w->dir[0] != '\0')
        rm_rf(w->dir);
    memset(w, 0, sizeof(*w));
}

tlspeer_world tlspeer_tls;

int tlspeer_group_setup(void **state)
{
    (void)state;
    return tlspeer_world_init(&tlspeer_tls);
}

int tlspeer_group_teardown(void **state)
{
    (void)state;
    tlspeer_world_fini(&tlspeer_tls);
    return 0;
}

/* ---- the relay ---- */

/* Each direction holds at most one chunk and never blocks the other: a
 * caller that stops reading stops only the TLS side's reading, and a far
 * end that stops reading stops only the caller's, as with one socket. */
typedef struct relay {
    SSL *ssl;
    int net;                      /* TLS */
    int local;                    /* plaintext: the relay's end of the caller's socket */
    char in[16384];               /* from TLS, not yet taken by the caller */
    size_t in_len, in_off;
    char out[16384];              /* from the caller, not yet taken by TLS */
    size_t out_len;
    int in_open, out_open;        /* TLS may still send; the caller may still send */
    int out_wants_write;          /* the last SSL_write waits for the socket to take bytes */
} relay;

/* TLS to the caller: one chunk read, or what is left of it written. Returns
 * -1 when the caller is gone. */
static int relay_in(relay *r)
{
    if (r->in_len == 0 && r->in_open) {
        size_t got = 0;
        int rc = SSL_read_ex(r->ssl, r->in, sizeof(r->in), &got);
        if (rc == 1) {
            r->in_len = got;
            r->in_off = 0;
        } else if (SSL_get_error(r->ssl, rc) != SSL_ERROR_WANT_READ) {
            r->in_open = 0; /* close_notify, EOF, a reset or an alert */
        }
    }
    if (r->in_off < r->in_len) {
        ssize_t w = send(r->local, r->in + r->in_off, r->in_len - r->in_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        r->in_off += w > 0 ? (size_t)w : 0;
        if (r->in_off == r->in_len)
            r->in_len = r->in_off = 0;
    }
    return 0;
}

/* The caller to TLS: one chunk read, or written again. The caller's close
 * (or half-close) becomes close_notify. */
static void relay_out(relay *r, int readable)
{
    if (r->out_len == 0 && r->out_open && readable) {
        ssize_t n = recv(r->local, r->out, sizeof(r->out), MSG_DONTWAIT);
        if (n > 0) {
            r->out_len = (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            SSL_shutdown(r->ssl);
            shutdown(r->net, SHUT_WR);
            r->out_open = 0;
        }
    }
    if (r->out_len > 0) {
        size_t w = 0;
        int rc = SSL_write_ex(r->ssl, r->out, r->out_len, &w);
        int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(r->ssl, rc);
        r->out_wants_write = e == SSL_ERROR_WANT_WRITE;
        if (rc == 1 || (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ))
            r->out_len = 0; /* written, or TLS failed: the reading side says so */
    }
}

static void relay_loop(relay *r)
{
    while (r->in_open || r->in_len > 0) {
        int take_in = r->in_open && r->in_len == 0;
        short net_ev = (short)((take_in ? POLLIN : 0) |
                               (r->out_len > 0 && r->out_wants_write ? POLLOUT : 0));
        short loc_ev = (short)((r->in_len > 0 ? POLLOUT : 0) |
                               (r->out_open && r->out_len == 0 ? POLLIN : 0));
        /* A side with nothing to wait for is left out: its hang-up would
         * wake the loop over and over. */
        struct pollfd pf[2] = {{.fd = net_ev ? r->net : -1, .events = net_ev},
                               {.fd = loc_ev ? r->local : -1, .events = loc_ev}};
        int ready = take_in && SSL_has_pending(r->ssl);
        if (!ready && poll(pf, 2, 1000) < 0 && errno != EINTR)
            return;
        if (relay_in(r) < 0)
            return;
        relay_out(r, (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0);
    }
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        int rc = SSL_do_handshake(r->ssl);
        if (rc == 1) {
            r->in_open = r->out_open = 1;
            relay_loop(r);
            break;
        }
        if (wait_ssl(r->ssl, rc, deadline) <= 0)
            break;
    }
    ERR_clear_error();
    SSL_free(r->ssl);
    close(r->net);
    close(r->local); /* the caller sees its peer close */
    free(r);
    return NULL;
}

int tlspeer_wrap(int fd, SSL_CTX *ctx)
{
    int sv[2];
    relay *r = calloc(1, sizeof(*r));
    if (r == NULL || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        free(r);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    /* Modest buffers on the way in (loopback TCP would grow to megabytes):
     * a caller that stops reading holds the far end back soon, as it would
     * without the relay. */
    int room = 65536;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &room, sizeof(room));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &room, sizeof(room));
    r->net = fd;
    r->local = sv[1];
    r->ssl = SSL_new(ctx);
    pthread_t th;
    if (r->ssl == NULL || SSL_set_fd(r->ssl, fd) != 1) {
        SSL_free(r->ssl);
        goto fail;
    }
    if (SSL_is_server(r->ssl)) { /* the role of ctx's method */
        SSL_set_accept_state(r->ssl);
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), "127.0.0.1");
        SSL_set_connect_state(r->ssl);
    }
    if (pthread_create(&th, NULL, relay_main, r) != 0) {
        SSL_free(r->ssl);
        goto fail;
    }
    pthread_detach(th);
    return sv[0];
fail:
    close(fd);
    close(sv[0]);
    close(sv[1]);
    free(r);
    return -1;
}
