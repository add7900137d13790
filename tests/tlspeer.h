/* TLS for the tests' own peers (OpenSSL, TLS 1.3): certificates made by
 * scripts/dev-certs.sh (and an expired one by `openssl ca`), contexts, a
 * blocking client handshake, the bytes of a real ClientHello, and a relay
 * that puts TLS under a raw peer: the test reads and writes plaintext on a
 * local socket while the relay speaks TLS on the network one, so hostile
 * bytes travel inside TLS exactly as they would in the clear. */
#ifndef TCPOPS_TEST_TLSPEER_H
#define TCPOPS_TEST_TLSPEER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* scripts/dev-certs.sh DIR: DIR/ca.crt, server.crt/key, client.crt/key.
 * With expired, also DIR/expired.crt/key: a client certificate of the same
 * CA that expired in 2020. Returns 0 or -1 (the reason on stderr). */
int tlspeer_certs(const char *dir, int expired);

/* A TLS 1.3 context: server (requires a client certificate) or client,
 * trusting ca, showing cert/key (both NULL: no certificate). NULL on
 * failure (the reason on stderr). */
SSL_CTX *tlspeer_ctx(int server, const char *ca, const char *cert, const char *key);

/* The same from DIR/ca.crt and DIR/NAME.crt, DIR/NAME.key (name NULL: no
 * certificate). */
SSL_CTX *tlspeer_ctx_dir(int server, const char *dir, const char *name);

/* Connects to 127.0.0.1:port and runs the client handshake within
 * timeout_ms. Returns the socket (non-blocking) with *ssl set, or -1 when
 * the TCP connect failed. *ok: 1 when the handshake completed as the
 * client saw it (in TLS 1.3 a server may still refuse the client's
 * certificate after that), 0 when it failed or timed out. */
int tlspeer_connect(SSL_CTX *ctx, int port, SSL **ssl, int *ok, int timeout_ms);

/* Writes all n bytes of p on ssl within timeout_ms. 0 or -1. */
int tlspeer_write(SSL *ssl, const void *p, size_t n, int timeout_ms);

/* Whether the server ended the connection within timeout_ms (an alert, a
 * close or a reset), reading and dropping whatever plaintext came first.
 * 1 ended, 0 still open at the deadline. */
int tlspeer_ended(SSL *ssl, int timeout_ms);

/* The first flight of a real client handshake (its ClientHello) made with
 * ctx over memory BIOs: up to cap bytes into buf. Returns the count, 0 on
 * failure. */
size_t tlspeer_client_hello(SSL_CTX *ctx, uint8_t *buf, size_t cap);

/* Everything a test that runs its cases again over TLS needs: dev-certs.sh
 * certificates in a temp dir, rpc_tls credentials for an rpc_server and an
 * rpc_channel, and OpenSSL contexts for the test's own raw peers (as a
 * server, and as a client with client.crt). */
typedef struct tlspeer_world {
    char dir[256];
    struct rpc_tls *server, *client;
    SSL_CTX *peer_server, *peer_client;
} tlspeer_world;

/* Fills w. 0, or -1 (the reason on stderr; w is then freed). */
int tlspeer_world_init(tlspeer_world *w);

/* Frees everything and removes the temp dir. */
void tlspeer_world_fini(tlspeer_world *w);

/* For a test binary that runs its cases again over TLS: the world its
 * fixtures take credentials from (all NULL without TLS), and cmocka group
 * setup and teardown that fill and free it. */
extern tlspeer_world tlspeer_tls;
int tlspeer_group_setup(void **state);
int tlspeer_group_teardown(void **state);

/* Puts TLS (ctx's role) on the connected socket fd: a thread runs the
 * handshake and then relays plaintext between TLS on fd and the socket it
 * returns, which the caller reads and writes as it would fd. Either side
 * closing or failing ends the other: the relay then closes fd. Returns the
 * caller's socket, or -1 (fd closed). */
int tlspeer_wrap(int fd, SSL_CTX *ctx);

#endif
