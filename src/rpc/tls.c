/* Mutual TLS over a non-blocking socket: the credentials (rpc_tls), the
 * client's session cache, the server's ticket keys, and one connection's
 * handshake, reads and writes (rpc_tls_conn). See tls.h. */
#include "rpc/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "rpc/sock.h"

#define SESSIONS 64               /* peers whose last ticket a client keeps */
#define TICKET_KEYS_LEN 80        /* name 16 + HMAC 32 + AES 32 (OpenSSL 3) */
#define TICKET_INFO "tcpops session ticket keys 1"
#define SID_CONTEXT "tcpops"
#define RPC_TLS_HOSTLEN 256       /* a DNS name's 253 characters, and a NUL */
#define SESSION_TIMEOUT_S 7200    /* a ticket's lifetime; each resumption checks the
                                   * client's certificate again anyway */

/* A ticket is kept per host, not per port: only a server holding the key
 * that issued it (and so a certificate valid for this host) can take it
 * back, and a restarted worker comes back on a new member port. */
typedef struct session {
    char host[RPC_TLS_HOSTLEN];   /* "" when the slot is free */
    SSL_SESSION *sess;
    uint64_t used;                /* for replacing the least recently used */
} session;

struct rpc_tls {
    rpc_tls_role role;
    char *cert, *key, *ca;
    rpc_tls_refused_fn refused;
    void *refused_user;

    pthread_mutex_t lock;         /* ctx, sessions, tick */
    SSL_CTX *ctx;                 /* the current credentials */
    session sessions[SESSIONS];
    uint64_t tick;
};

struct rpc_tls_conn {
    rpc_tls *t;
    rpc_stats *stats;
    pthread_mutex_t lock;         /* every SSL call on ssl */
    SSL *ssl;
    int done;                     /* the handshake completed */
    int failed;                   /* the handshake failed: why says why */
    _Atomic int wwant;            /* TLS waits for the socket to take bytes */
    char peer[RPC_TLS_HOSTLEN + 8];
    char host[RPC_TLS_HOSTLEN];   /* client: peer's host, which the certificate must name */
    int confirmed;                /* client: the server accepted us (a ticket or data came) */
    int more;                     /* the last read stopped for want of room, not of
                                   * bytes: TLS may hold whole records read ahead */
    int err;                      /* a fatal error met after bytes were returned: next call's */
    char why[160];
};

int rpc_tls_files_check(const rpc_tls_files *f, char *err)
{
    int given = (f->cert != NULL && *f->cert) + (f->key != NULL && *f->key) +
                (f->ca != NULL && *f->ca);
    if (given == 0)
        return 0;
    if (given == 3)
        return 1;
    snprintf(err, RPC_ERRLEN,
             "TLS needs all three of --tls-cert, --tls-key and --tls-ca (%s%s%s missing)",
             f->cert == NULL || !*f->cert ? "--tls-cert " : "",
             f->key == NULL || !*f->key ? "--tls-key " : "",
             f->ca == NULL || !*f->ca ? "--tls-ca " : "");
    return -EINVAL;
}

/* OpenSSL's last error as a sentence, or fallback. Empties its queue. */
static void ssl_reason(char *out, size_t len, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(out, len, "%s", fallback);
    else
        ERR_error_string_n(e, out, len);
    ERR_clear_error();
}

/* ---- the client's session cache ---- */

/* The ticket a server just gave: a copy kept as this peer's, replacing the
 * last one (or the peer used longest ago). A copy, because sess is also the
 * connection's own session, and OpenSSL marks that not resumable when the
 * connection is freed without close_notify (a lost peer, a restarting
 * server): every reconnect would then be a full handshake. Returns 0:
 * OpenSSL keeps its reference. */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    rpc_tls_conn *tc = SSL_get_app_data(ssl);
    if (tc == NULL)
        return 0;
    tc->confirmed = 1; /* a ticket comes only after the server took our certificate */
    if (!SSL_SESSION_is_resumable(sess))
        return 0;
    rpc_tls *t = tc->t;
    pthread_mutex_lock(&t->lock);
    session *slot = &t->sessions[0];
    for (int i = 0; i < SESSIONS; i++) {
        session *s = &t->sessions[i];
        if (strcmp(s->host, tc->host) == 0) {
            slot = s;
            break;
        }
        if (s->used < slot->used)
            slot = s;
    }
    if (slot->sess != NULL)
        SSL_SESSION_free(slot->sess);
    snprintf(slot->host, sizeof(slot->host), "%s", tc->host);
    slot->sess = SSL_SESSION_dup(sess); /* NULL (no memory): nothing kept */
    slot->used = ++t->tick;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Offers a copy of the host's last ticket to ssl, if one is kept: the
 * connection's session is marked not resumable when its handshake fails or
 * it is freed without close_notify, which must not spoil the kept one.
 * Caller holds t->lock. */
static void offer_session_locked(rpc_tls *t, SSL *ssl, const char *host)
{
    for (int i = 0; i < SESSIONS; i++) {
        session *s = &t->sessions[i];
        if (s->sess != NULL && strcmp(s->host, host) == 0) {
            SSL_SESSION *d = SSL_SESSION_dup(s->sess);
            if (d != NULL) {
                SSL_set_session(ssl, d);
                SSL_SESSION_free(d);
            }
            s->used = ++t->tick;
            return;
        }
    }
}

void rpc_tls_forget_sessions(rpc_tls *t)
{
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < SESSIONS; i++) {
        if (t->sessions[i].sess != NULL)
            SSL_SESSION_free(t->sessions[i].sess);
        memset(&t->sessions[i], 0, sizeof(t->sessions[i]));
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- the context ---- */

/* The server's ticket keys, derived from its private key (HKDF-SHA256): every
 * process with the same key encrypts and decrypts the same tickets. */
static int set_ticket_keys(SSL_CTX *ctx, char *err)
{
    unsigned char keys[TICKET_KEYS_LEN];
    unsigned char *der = NULL;
    EVP_PKEY_CTX *kdf = NULL;
    int rc = -EINVAL;

    EVP_PKEY *pkey = SSL_CTX_get0_privatekey(ctx);
    int n = pkey != NULL ? i2d_PrivateKey(pkey, &der) : -1;
    if (n <= 0)
        goto out;
    size_t klen = sizeof(keys);
    kdf = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (kdf == NULL || EVP_PKEY_derive_init(kdf) <= 0 ||
        EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set1_hkdf_key(kdf, der, n) <= 0 ||
        EVP_PKEY_CTX_add1_hkdf_info(kdf, (const unsigned char *)TICKET_INFO,
                                    (int)strlen(TICKET_INFO)) <= 0 ||
        EVP_PKEY_derive(kdf, keys, &klen) <= 0 ||
        SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys)) != 1)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        ssl_reason(err, RPC_ERRLEN, "cannot derive the session ticket keys");
    OPENSSL_cleanse(keys, sizeof(keys));
    if (der != NULL)
        OPENSSL_clear_free(der, (size_t)n);
    EVP_PKEY_CTX_free(kdf);
    return rc;
}

/* The server, taking a ticket back: a resumed handshake checks no
 * certificate, so the client's is checked here again, against the CA and
 * the clock of now. A client whose certificate has expired, or whose CA is
 * no longer trusted after a reload, gets a full handshake instead (and is
 * refused there). */
static SSL_TICKET_RETURN ticket_back(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
                                     size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    if (status == SSL_TICKET_FATAL_ERR_MALLOC || status == SSL_TICKET_FATAL_ERR_OTHER)
        return SSL_TICKET_RETURN_ABORT;
    if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    X509 *peer = SSL_SESSION_get0_peer(sess);
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    int ok = peer != NULL && vctx != NULL &&
             X509_STORE_CTX_init(vctx, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), peer,
                                 NULL) == 1 &&
             X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_CLIENT) == 1 &&
             X509_verify_cert(vctx) == 1;
    X509_STORE_CTX_free(vctx);
    ERR_clear_error();
    if (!ok)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/* A context from t's files. Returns NULL with err filled. */
static SSL_CTX *make_ctx(const rpc_tls *t, char *err)
{
    char why[160];
    const char *step = "";
    SSL_CTX *ctx = SSL_CTX_new(t->role == RPC_TLS_SERVER ? TLS_server_method()
                                                         : TLS_client_method());
    if (ctx == NULL) {
        step = "cannot make a TLS context";
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read ahead: one read takes every record the socket holds, where
     * record by record costs two reads each (header, then body), and a
     * client's frames come one record each. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    step = t->cert;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
        goto fail;
    step = t->key;
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    step = t->ca;
    if (SSL_CTX_load_verify_file(ctx, t->ca) != 1)
        goto fail;
    if (t->role == RPC_TLS_SERVER) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SID_CONTEXT,
                                       sizeof(SID_CONTEXT) - 1);
        /* Stateless tickets only: no per-session memory on the server. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 1);
        SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT_S);
        SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_back, NULL);
        if (set_ticket_keys(ctx, err) < 0) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session);
    }
    return ctx;
fail:
    ssl_reason(why, sizeof(why), "unreadable");
    snprintf(err, RPC_ERRLEN, "TLS: %.80s: %s", step, why);
    SSL_CTX_free(ctx);
    return NULL;
}

int rpc_tls_new(rpc_tls **out, rpc_tls_role role, const rpc_tls_files *f, char *err)
{
    int given = rpc_tls_files_check(f, err);
    if (given == 0)
        snprintf(err, RPC_ERRLEN, "TLS needs --tls-cert, --tls-key and --tls-ca");
    if (given != 1)
        return -EINVAL;
    rpc_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->role = role;
    t->cert = strdup(f->cert);
    t->key = strdup(f->key);
    t->ca = strdup(f->ca);
    pthread_mutex_init(&t->lock, NULL);
    if (t->cert == NULL || t->key == NULL || t->ca == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        rpc_tls_free(t);
        return -ENOMEM;
    }
    t->ctx = make_ctx(t, err);
    if (t->ctx == NULL) {
        rpc_tls_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

void rpc_tls_free(rpc_tls *t)
{
    if (t == NULL)
        return;
    rpc_tls_forget_sessions(t);
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t);
}

int rpc_tls_reload(rpc_tls *t, char *err)
{
    SSL_CTX *ctx = make_ctx(t, err);
    if (ctx == NULL)
        return -EINVAL;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* each open connection's SSL holds its own reference */
    /* Tickets were taken from servers checked against the old CA. */
    if (t->role == RPC_TLS_CLIENT)
        rpc_tls_forget_sessions(t);
    return 0;
}

void rpc_tls_on_refused(rpc_tls *t, rpc_tls_refused_fn fn, void *user)
{
    t->refused = fn;
    t->refused_user = user;
}

/* ---- one connection ---- */

/* The host part of "host:port" into host (RPC_TLS_HOSTLEN bytes).
 * Returns 0, or -EINVAL when it is longer than any DNS name. */
static int host_of(const char *peer, char *host)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon != NULL ? (size_t)(colon - peer) : strlen(peer);
    if (n >= RPC_TLS_HOSTLEN)
        return -EINVAL;
    memcpy(host, peer, n);
    host[n] = '\0';
    if (n == 0)
        snprintf(host, RPC_TLS_HOSTLEN, "127.0.0.1"); /* ":5002" dials 127.0.0.1 */
    return 0;
}

/* Client: checks the server's certificate against the host dialled, an IP
 * address or a DNS name. */
static int expect_host(SSL *ssl, const char *host)
{
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -EINVAL;
    if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1)
        return -EINVAL;
    return 0;
}

int rpc_tls_conn_new(rpc_tls_conn **out, rpc_tls *t, int fd, const char *peer,
                     rpc_stats *stats, char *err)
{
    rpc_tls_conn *tc = calloc(1, sizeof(*tc));
    if (tc == NULL)
        return -ENOMEM;
    tc->t = t;
    tc->stats = stats;
    if (peer == NULL)
        peer = "";
    if (strlen(peer) >= sizeof(tc->peer) || host_of(peer, tc->host) < 0) {
        snprintf(err, RPC_ERRLEN, "TLS: address too long: %.64s...", peer);
        free(tc);
        return -EINVAL;
    }
    snprintf(tc->peer, sizeof(tc->peer), "%s", peer);
    pthread_mutex_init(&tc->lock, NULL);
    pthread_mutex_lock(&t->lock);
    tc->ssl = SSL_new(t->ctx);
    if (tc->ssl != NULL && t->role == RPC_TLS_CLIENT)
        offer_session_locked(t, tc->ssl, tc->host);
    pthread_mutex_unlock(&t->lock);
    int rc = tc->ssl == NULL ? -ENOMEM : 0;
    if (rc == 0 && SSL_set_fd(tc->ssl, fd) != 1)
        rc = -ENOMEM;
    if (rc == 0 && t->role == RPC_TLS_CLIENT && expect_host(tc->ssl, tc->host) < 0) {
        snprintf(err, RPC_ERRLEN, "TLS: cannot check a certificate against \"%.200s\"",
                 tc->host);
        rc = -EINVAL;
    }
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, RPC_ERRLEN, "out of memory");
        rpc_tls_conn_free(tc);
        return rc;
    }
    SSL_set_app_data(tc->ssl, tc);
    if (t->role == RPC_TLS_SERVER)
        SSL_set_accept_state(tc->ssl);
    else
        SSL_set_connect_state(tc->ssl);
    *out = tc;
    return 0;
}

void rpc_tls_conn_free(rpc_tls_conn *tc)
{
    if (tc == NULL)
        return;
    SSL_free(tc->ssl); /* the socket is the rpc_conn's to close */
    pthread_mutex_destroy(&tc->lock);
    free(tc);
}

/* Records why the handshake failed, counts a server's refusal and tells
 * its callback. Caller holds tc->lock. */
static void handshake_failed(rpc_tls_conn *tc, int e, int sys_errno)
{
    long v = SSL_get_verify_result(tc->ssl);
    if (v != X509_V_OK)
        snprintf(tc->why, sizeof(tc->why), "certificate: %s",
                 X509_verify_cert_error_string(v));
    else if (e == SSL_ERROR_SYSCALL && sys_errno != 0)
        snprintf(tc->why, sizeof(tc->why), "%s", strerror(sys_errno));
    else
        ssl_reason(tc->why, sizeof(tc->why), "the peer closed during the handshake");
    ERR_clear_error();
    tc->failed = 1;
    if (tc->t->role != RPC_TLS_SERVER)
        return;
    /* A peer that closed without sending a byte (a port probe, a load
     * balancer's TCP check) tried nothing: closed, not refused. */
    if (BIO_number_read(SSL_get_rbio(tc->ssl)) == 0) {
        snprintf(tc->why, sizeof(tc->why), "the peer closed before sending anything");
        return;
    }
    rpc_stats_add(tc->stats, RPC_C_TLS_REFUSED, 1);
    if (tc->t->refused != NULL)
        tc->t->refused(tc->t->refused_user, tc->peer, tc->why);
}

/* Caller holds tc->lock. Returns as rpc_tls_conn_handshake. */
static int handshake_locked(rpc_tls_conn *tc)
{
    if (tc->done)
        return 1;
    if (tc->failed)
        return -ECONNABORTED;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(tc->ssl);
    if (r == 1) {
        tc->done = 1;
        atomic_store(&tc->wwant, 0);
        int resumed = SSL_session_reused(tc->ssl);
        rpc_stats_add(tc->stats, resumed ? RPC_C_TLS_RESUMED : RPC_C_TLS_HANDSHAKES, 1);
        return 1;
    }
    int sys_errno = errno;
    int e = SSL_get_error(tc->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        atomic_store(&tc->wwant, e == SSL_ERROR_WANT_WRITE);
        return -EAGAIN;
    }
    handshake_failed(tc, e, sys_errno);
    return -ECONNABORTED;
}

/* The negative errno for an SSL call that failed with e (not WANT_*), the
 * reason kept in tc->why. Caller holds tc->lock. */
static int io_failed(rpc_tls_conn *tc, int e, int sys_errno)
{
    if (e == SSL_ERROR_SYSCALL) {
        snprintf(tc->why, sizeof(tc->why), "%s",
                 sys_errno != 0 ? strerror(sys_errno) : "connection reset");
        ERR_clear_error();
        return sys_errno != 0 ? -sys_errno : -ECONNRESET;
    }
    ssl_reason(tc->why, sizeof(tc->why), "TLS error");
    return -EPROTO; /* a record that does not decrypt, an alert */
}

int rpc_tls_conn_write_pending(rpc_tls_conn *tc)
{
    pthread_mutex_lock(&tc->lock);
    int rc = 0;
    if (!tc->done || tc->failed) {
        rc = handshake_locked(tc) == -ECONNABORTED ? -ECONNABORTED : 0;
    } else if (atomic_load(&tc->wwant)) {
        /* A post-handshake message a read had to send (a KeyUpdate's
         * answer): the state machine takes it on from here. */
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(tc->ssl);
        int sys_errno = errno;
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
        atomic_store(&tc->wwant, e == SSL_ERROR_WANT_WRITE);
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            rc = io_failed(tc, e, sys_errno);
    }
    pthread_mutex_unlock(&tc->lock);
    return rc;
}

int rpc_tls_conn_handshake(rpc_tls_conn *tc)
{
    pthread_mutex_lock(&tc->lock);
    int rc = handshake_locked(tc);
    pthread_mutex_unlock(&tc->lock);
    return rc;
}

int rpc_tls_conn_read(rpc_tls_conn *tc, void *p, size_t n)
{
    size_t total = 0;
    int rc = 0;
    if (n > INT_MAX)
        n = INT_MAX;
    pthread_mutex_lock(&tc->lock);
    rc = tc->err != 0 ? tc->err : handshake_locked(tc);
    if (rc != 1)
        goto out;
    rc = 0;
    while (total < n) {
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        if (SSL_read_ex(tc->ssl, (char *)p + total, n - total, &got) == 1) {
            total += got;
            continue;
        }
        int sys_errno = errno;
        int e = SSL_get_error(tc->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            atomic_store(&tc->wwant, e == SSL_ERROR_WANT_WRITE);
            rc = -EAGAIN;
        } else if (e == SSL_ERROR_ZERO_RETURN) {
            rc = 0; /* the peer closed (close_notify, or a plain EOF) */
        } else {
            rc = io_failed(tc, e, sys_errno);
        }
        break;
    }
    tc->more = total == n;
    if (total > 0)
        tc->confirmed = 1;
    if (total > 0 && rc < 0 && rc != -EAGAIN)
        tc->err = rc; /* said at the next call, once these bytes are handled */
out:
    pthread_mutex_unlock(&tc->lock);
    return total > 0 ? (int)total : rc;
}

int rpc_tls_conn_confirm(rpc_tls_conn *tc)
{
    unsigned char b;
    size_t got = 0;
    pthread_mutex_lock(&tc->lock);
    int rc = handshake_locked(tc);
    if (rc != 1 || tc->confirmed)
        goto out;
    ERR_clear_error();
    errno = 0;
    /* A peek takes post-handshake messages (the ticket, an alert) and
     * leaves application data where it is. */
    if (SSL_peek_ex(tc->ssl, &b, 1, &got) == 1) {
        tc->confirmed = 1;
        goto out;
    }
    int sys_errno = errno;
    int e = SSL_get_error(tc->ssl, 0);
    if (tc->confirmed) {
        rc = 1;
    } else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        atomic_store(&tc->wwant, e == SSL_ERROR_WANT_WRITE);
        rc = -EAGAIN;
    } else {
        if (e == SSL_ERROR_ZERO_RETURN)
            snprintf(tc->why, sizeof(tc->why), "the server closed after the handshake");
        else
            io_failed(tc, e, sys_errno);
        tc->failed = 1;
        rc = -ECONNABORTED;
    }
out:
    pthread_mutex_unlock(&tc->lock);
    return rc;
}

int rpc_tls_conn_write(rpc_tls_conn *tc, const void *p, size_t n)
{
    size_t done = 0;
    int rc = 0;
    if (n > INT_MAX)
        n = INT_MAX;
    pthread_mutex_lock(&tc->lock);
    rc = handshake_locked(tc);
    if (rc != 1) {
        rc = rc == -EAGAIN ? 0 : rc;
        goto out;
    }
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(tc->ssl, p, n, &done) == 1) {
        rc = (int)done;
        goto out;
    }
    int sys_errno = errno;
    int e = SSL_get_error(tc->ssl, 0);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        rc = 0;
    else
        rc = io_failed(tc, e, sys_errno);
out:
    pthread_mutex_unlock(&tc->lock);
    return rc;
}

int rpc_tls_conn_wants_write(rpc_tls_conn *tc)
{
    return atomic_load(&tc->wwant);
}

int rpc_tls_conn_buffered(rpc_tls_conn *tc)
{
    pthread_mutex_lock(&tc->lock);
    int n = tc->done && (tc->more || SSL_pending(tc->ssl) > 0);
    pthread_mutex_unlock(&tc->lock);
    return n;
}

int rpc_tls_conn_partial(rpc_tls_conn *tc)
{
    pthread_mutex_lock(&tc->lock);
    int partial = !tc->done || SSL_has_pending(tc->ssl);
    pthread_mutex_unlock(&tc->lock);
    return partial;
}

int rpc_tls_conn_resumed(rpc_tls_conn *tc)
{
    pthread_mutex_lock(&tc->lock);
    int r = tc->done && SSL_session_reused(tc->ssl);
    pthread_mutex_unlock(&tc->lock);
    return r;
}

const char *rpc_tls_conn_error(const rpc_tls_conn *tc)
{
    return tc->why;
}
