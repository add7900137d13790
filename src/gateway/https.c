/* HTTPS on the gateway's listener (https.h): the context civetweb serves
 * with, and the certificate each handshake takes. */
#include "gateway/https.h"

#include <civetweb.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher, for RSA and
 * ECDSA certificates alike. TLS 1.3's suites are all of that kind. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define SID_CONTEXT "tcpops-gateway"

struct gw_https {
    char *cert, *key;
    SSL_CTX *ctx;            /* civetweb's: protocol settings, no certificate */
    pthread_mutex_t lock;    /* creds */
    SSL_CTX *creds;          /* holds the current certificate, chain and key */
};

/* What civetweb 1.15, built for the OpenSSL 1.1 names, looks up in the
 * library it loads as libssl.so (the gateway program: https.h); OpenSSL 3
 * has it under a new name only. Exported by the gateway's link options. */
#undef SSL_get_peer_certificate
X509 *SSL_get_peer_certificate(const SSL *s);
X509 *SSL_get_peer_certificate(const SSL *s)
{
    return SSL_get1_peer_certificate(s);
}

/* OpenSSL's reason for the first error in its queue (the cause: "no start
 * line" rather than "PEM lib"), or fallback; empties the queue. */
static const char *ssl_why(const char *fallback)
{
    unsigned long e = ERR_peek_error();
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return why != NULL ? why : fallback;
}

/* Whether the first error in OpenSSL's queue says a key is not the one of
 * its certificate. */
static int key_mismatch(void)
{
    unsigned long e = ERR_peek_error();
    return ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
}

int gw_https_init_library(char *err, size_t errlen)
{
    if (!mg_check_feature(MG_FEATURES_SSL)) {
        mg_init_library(0);
        snprintf(err, errlen, "HTTPS: this civetweb library was built without TLS support");
        return -1;
    }
    /* mg_init_library clears the TLS bit when its dlopen fails. */
    if (!(mg_init_library(MG_FEATURES_SSL) & MG_FEATURES_SSL)) {
        snprintf(err, errlen, "HTTPS: the civetweb library cannot do TLS here: it loads "
                 "libssl.so and libcrypto.so at run time, and they are missing (Debian: "
                 "apt-get install libssl-dev)");
        return -1;
    }
    return 0;
}

/* Whether path can be opened for reading (OpenSSL's own words for a
 * missing file are "system lib"). 0, or -1 with err filled. */
static int readable(const char *flag, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "HTTPS: %s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* A context holding the certificate chain of cert and the key of key, both
 * checked. NULL with err filled. */
static SSL_CTX *load_creds(const char *cert, const char *key, char *err, size_t errlen)
{
    if (readable("--https-cert", cert, err, errlen) < 0 ||
        readable("--https-key", key, err, errlen) < 0)
        return NULL;
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        snprintf(err, errlen, "HTTPS: cannot make a TLS context: %s", ssl_why("out of memory"));
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
        snprintf(err, errlen, "HTTPS: --https-cert %s: %s (expected a PEM certificate)", cert,
                 ssl_why("unreadable"));
    } else if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
               SSL_CTX_check_private_key(c) != 1) {
        if (key_mismatch())
            snprintf(err, errlen, "HTTPS: --https-key %s is not the key of --https-cert %s "
                     "(%s)", key, cert, ssl_why("key values mismatch"));
        else
            snprintf(err, errlen, "HTTPS: --https-key %s: %s (expected a PEM private key)", key,
                     ssl_why("unreadable"));
    } else {
        return c;
    }
    SSL_CTX_free(c);
    return NULL;
}

/* OpenSSL's certificate callback, before the server picks its certificate:
 * the current credentials, taken under the lock (a reference keeps them
 * while they are copied in). 1, or 0 to fail the handshake. */
static int pick_cert(SSL *ssl, void *arg)
{
    gw_https *h = arg;
    pthread_mutex_lock(&h->lock);
    SSL_CTX *c = h->creds;
    SSL_CTX_up_ref(c);
    pthread_mutex_unlock(&h->lock);
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(c, &chain);
    int ok = SSL_use_cert_and_key(ssl, SSL_CTX_get0_certificate(c), SSL_CTX_get0_privatekey(c),
                                  chain, 1);
    SSL_CTX_free(c);
    return ok == 1;
}

/* The context civetweb serves with. NULL with err filled. */
static SSL_CTX *make_ctx(gw_https *h, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SID_CONTEXT,
                                       sizeof(SID_CONTEXT) - 1) != 1) {
        snprintf(err, errlen, "HTTPS: cannot make a TLS context: %s", ssl_why("out of memory"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_cert_cb(ctx, pick_cert, h);
    return ctx;
}

int gw_https_new(gw_https **out, const char *cert, const char *key, char *err, size_t errlen)
{
    gw_https *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&h->lock, NULL);
    h->cert = strdup(cert);
    h->key = strdup(key);
    if (h->cert == NULL || h->key == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    h->creds = load_creds(cert, key, err, errlen);
    if (h->creds == NULL)
        goto fail;
    h->ctx = make_ctx(h, err, errlen);
    if (h->ctx == NULL)
        goto fail;
    *out = h;
    return 0;
fail:
    gw_https_free(h);
    return -1;
}

void gw_https_free(gw_https *h)
{
    if (h == NULL)
        return;
    SSL_CTX_free(h->ctx);
    SSL_CTX_free(h->creds);
    pthread_mutex_destroy(&h->lock);
    free(h->cert);
    free(h->key);
    free(h);
}

int gw_https_reload(gw_https *h, char *err, size_t errlen)
{
    SSL_CTX *c = load_creds(h->cert, h->key, err, errlen);
    if (c == NULL)
        return -1;
    pthread_mutex_lock(&h->lock);
    SSL_CTX *old = h->creds;
    h->creds = c;
    pthread_mutex_unlock(&h->lock);
    SSL_CTX_free(old); /* a handshake copying from it holds its own reference */
    return 0;
}

int gw_https_civetweb_ctx(void **ssl_ctx, gw_https *h)
{
    if (*ssl_ctx == NULL)
        *ssl_ctx = h->ctx;
    return 1;
}
