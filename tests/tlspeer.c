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

/* ---- the relay ---- */

typedef struct relay {
    SSL *ssl;
    int net;     /* TLS */
    int local;   /* plaintext, the relay's end of the caller's socket */
} relay;

/* Plaintext from TLS to the caller. Returns 0 to go on, -1 when TLS ended. */
static int relay_in(relay *r)
{
    char buf[16384];
    for (;;) {
        size_t got = 0;
        int rc = SSL_read_ex(r->ssl, buf, sizeof(buf), &got);
        if (rc != 1)
            return SSL_get_error(r->ssl, rc) == SSL_ERROR_WANT_READ ? 0 : -1;
        size_t w = 0;
        if (rpc_sock_write_all(r->local, buf, got, rpc_now_ms() + 60000, &w) < 0)
            return -1;
    }
}

/* Plaintext from the caller into TLS. Returns 0 to go on, -1 when the caller
 * closed its side (close_notify sent) or TLS failed. */
static int relay_out(relay *r)
{
    char buf[16384];
    ssize_t n = recv(r->local, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        SSL_shutdown(r->ssl);
        shutdown(r->net, SHUT_WR);
        return -1;
    }
    return tlspeer_write(r->ssl, buf, (size_t)n, 60000);
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    int ok = 0;
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        int rc = SSL_do_handshake(r->ssl);
        if (rc == 1) {
            ok = 1;
            break;
        }
        if (wait_ssl(r->ssl, rc, deadline) <= 0)
            break;
    }
    int in_open = ok, out_open = ok;
    while (in_open) {
        struct pollfd pf[2] = {{.fd = r->net, .events = POLLIN},
                               {.fd = out_open ? r->local : -1, .events = POLLIN}};
        if (!SSL_has_pending(r->ssl) && poll(pf, 2, 1000) < 0 && errno != EINTR)
            break;
        if (SSL_has_pending(r->ssl) || (pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
            in_open = relay_in(r) == 0;
        if (out_open && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
            out_open = relay_out(r) == 0;
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
