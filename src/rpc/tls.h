/* Mutual TLS for the RPC connections (OpenSSL 3, TLS 1.3 only).
 *
 * An rpc_tls is one side's credentials: a certificate and key, and the CA
 * that signs every peer's certificate. A server requires a client
 * certificate signed by the CA; a client checks the server's certificate
 * against the CA and against the name or address it dialled. The files are
 * read by rpc_tls_new and again by rpc_tls_reload (SIGHUP): connections
 * made after a reload use the new credentials, those already open keep
 * theirs.
 *
 * Sessions resume: a client keeps the last ticket each host gave it, and a
 * server's ticket keys are derived from its private key, so every
 * worker sharing a key (the workers behind one port, the same worker after
 * a restart) takes the tickets the others issued. A resumed TLS 1.3
 * handshake still agrees on fresh keys (psk_dhe_ke): it saves the
 * certificate checks and signatures, not forward secrecy.
 *
 * A connection's TLS state lives in its rpc_conn (rpc_conn_tls_start);
 * rpc_conn_fill and rpc_conn_flush then read and write through it, and the
 * socket stays non-blocking. OpenSSL does not let two threads use one SSL
 * at once, so every SSL call on a connection holds that connection's TLS
 * lock (rpc/tls.c only; short: the socket never blocks).
 *
 * The counters (rpc/stats.h): RPC_C_TLS_HANDSHAKES (full),
 * RPC_C_TLS_RESUMED, RPC_C_TLS_REFUSED (server: a handshake that failed; a
 * peer that closes without sending a byte, a port probe, is not one). */
#ifndef TCPOPS_RPC_TLS_H
#define TCPOPS_RPC_TLS_H

#include <stddef.h>

#include "rpc/stats.h"

typedef struct rpc_tls rpc_tls;
typedef struct rpc_tls_conn rpc_tls_conn; /* one connection's; rpc/conn.c holds it */

typedef enum { RPC_TLS_SERVER, RPC_TLS_CLIENT } rpc_tls_role;

/* The three files every TLS side names. */
typedef struct rpc_tls_files {
    const char *cert;   /* PEM certificate (a chain may follow it) */
    const char *key;    /* PEM private key of cert */
    const char *ca;     /* PEM CA certificate(s) that sign the peers */
} rpc_tls_files;

/* Whether f names TLS files: 0 when none is given, 1 when all three are,
 * -EINVAL (a sentence in err) when only some are. */
int rpc_tls_files_check(const rpc_tls_files *f, char *err);

/* Told of a handshake the server refused: peer "a.b.c.d:port", why in
 * OpenSSL's words. On the server's I/O thread, with no lock of the
 * server's held; must not block. */
typedef void (*rpc_tls_refused_fn)(void *user, const char *peer, const char *why);

/* Reads the files and makes the context. Returns 0, or a negative errno
 * with a sentence in err (RPC_ERRLEN): a file missing or unreadable, a key
 * that does not match its certificate. *out untouched on failure. */
int rpc_tls_new(rpc_tls **out, rpc_tls_role role, const rpc_tls_files *f, char *err);

/* NULL does nothing. Connections still open keep what they use. */
void rpc_tls_free(rpc_tls *t);

/* Reads the files again (certificate rotation). On failure (0 or a negative
 * errno, err filled) the credentials in use stay. Any thread. */
int rpc_tls_reload(rpc_tls *t, char *err);

/* Server: who to tell of refused handshakes. Before any connection. */
void rpc_tls_on_refused(rpc_tls *t, rpc_tls_refused_fn fn, void *user);

/* Client: forgets every session kept (the next handshakes are full). */
void rpc_tls_forget_sessions(rpc_tls *t);

/* ---- one connection's TLS, for rpc/conn.c ---- */

/* A connection's TLS over the socket fd. peer: the address dialled
 * ("host:port"; the client checks the certificate against host, a name or
 * an IP address) or, on a server, the client's address (for the refusal
 * callback). stats (may be NULL) counts the handshake. Returns 0, -ENOMEM
 * or -EINVAL (err filled). */
int rpc_tls_conn_new(rpc_tls_conn **out, rpc_tls *t, int fd, const char *peer,
                     rpc_stats *stats, char *err);
void rpc_tls_conn_free(rpc_tls_conn *tc);

/* Moves the handshake on. Returns 1 once it is complete, -EAGAIN while it
 * waits for the socket (rpc_tls_conn_wants_write says which way), or
 * -ECONNABORTED when it failed (rpc_tls_conn_error says why; a server
 * counts RPC_C_TLS_REFUSED and tells its refusal callback). */
int rpc_tls_conn_handshake(rpc_tls_conn *tc);

/* The socket takes bytes again while TLS wanted to write: sends what TLS
 * holds (the handshake's, or a post-handshake message a read produced),
 * without reading application data. Returns 0, or a negative errno when
 * the connection is finished. */
int rpc_tls_conn_write_pending(rpc_tls_conn *tc);

/* Client: after the handshake, waits (with the socket, like the handshake)
 * for the server to accept the client certificate: in TLS 1.3 the client
 * finishes first, and the server's verdict is its session ticket or an
 * alert. Returns 1 once a ticket or data came, -EAGAIN meanwhile, or
 * -ECONNABORTED (rpc_tls_conn_error says why: "unknown ca", ...). */
int rpc_tls_conn_confirm(rpc_tls_conn *tc);

/* Reads plaintext into p (up to n bytes) until the socket has no more.
 * Returns the bytes read (> 0), 0 when the peer closed, -EAGAIN when none
 * came, or a negative errno when the connection is finished. Runs the
 * handshake first while it is not complete. */
int rpc_tls_conn_read(rpc_tls_conn *tc, void *p, size_t n);

/* Writes up to n bytes of p. Returns the bytes taken (>= 0: 0 when the
 * socket has no room) or a negative errno when the connection is
 * finished. */
int rpc_tls_conn_write(rpc_tls_conn *tc, const void *p, size_t n);

/* Whether TLS waits to write (a handshake message, or a record a read had
 * to send) once the socket takes bytes: the owner then watches for
 * writability and calls read (or handshake) again. */
int rpc_tls_conn_wants_write(rpc_tls_conn *tc);

/* Whether decrypted bytes wait inside TLS, which the socket's readiness
 * no longer announces. */
int rpc_tls_conn_buffered(rpc_tls_conn *tc);

/* Whether a record or the handshake is half received: the peer owes the
 * rest (the partial-frame timeout applies). */
int rpc_tls_conn_partial(rpc_tls_conn *tc);

/* Whether the handshake resumed a session (after it completed). */
int rpc_tls_conn_resumed(rpc_tls_conn *tc);

/* Why the handshake or the connection failed, or "". */
const char *rpc_tls_conn_error(const rpc_tls_conn *tc);

#endif
