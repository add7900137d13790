/* rpc_conn: one socket and its frames, for the client and the server alike.
 * It holds the frame reader (the one read-and-decode loop of the project:
 * the channel, the server and tcpops-cli all read through it), the
 * whole-frame writer with its buffer and cork, and the table of calls
 * pending on the connection. An rpc_conn owns its socket: rpc_conn_fini
 * closes it.
 *
 *   socket --rpc_conn_fill--> rbuf --rpc_conn_next--> payload
 *                                  --rpc_conn_read_frame--> rpc_frame
 *   rpc_frame --rpc_conn_send--> wbuf --rpc_conn_flush--> socket
 *
 * Threads: the module takes no lock. The reader side (rbuf, frames_in,
 * last_rx) belongs to one reader at a time, the writer side (wbuf, corked,
 * wprogress) to whoever holds the owner's write lock, the pending table to
 * whoever holds the owner's state lock; the owner says which lock is which.
 * With TLS (rpc_conn_tls_start) the same calls read and write through
 * it: rpc_conn_fill decrypts into rbuf, rpc_conn_flush encrypts wbuf, and
 * the socket stays non-blocking (rpc/tls.h).
 *
 * See docs/protocol.md for the frame itself. */
#ifndef TCPOPS_RPC_CONN_H
#define TCPOPS_RPC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/buf.h"
#include "rpc/frame.h"
#include "rpc/tls.h"

/* Bytes asked of the socket per read. */
#define RPC_CONN_READ_CHUNK 65536

/* A first frame header claiming this much or more is not a tcpops frame from
 * any configuration (every --max-frame is below 16 MiB): text such as
 * "HTTP/1.1 400" reads as a length of about 1.2 GB. */
#define RPC_CONN_FOREIGN_LEN (1u << 24)

#define RPC_CONN_TABLE 64 /* pending-table buckets (a power of two): 256 calls
                           * in flight make chains of 4 */

/* A call waiting for its answer, as the table sees it. The owner embeds it
 * in its own record (first member) and keeps everything else there. */
typedef struct rpc_pending {
    struct rpc_pending *next;           /* bucket chain, or a detached list */
    struct rpc_pending *older, *newer;  /* the connection's calls, by id */
    uint64_t id;
} rpc_pending;

typedef struct rpc_conn {
    int fd;                 /* owned; -1 when none */
    rpc_tls_conn *tls;      /* owned; NULL: plaintext */
    size_t max_frame;       /* largest frame payload, either way */
    size_t max_write_buf;   /* wbuf's cap */

    /* reader side */
    rpc_buf rbuf;
    uint64_t frames_in;     /* whole frames consumed */
    int64_t last_rx;        /* rpc_now_ms when bytes last arrived */

    /* writer side */
    rpc_buf wbuf;
    int corked;             /* hold frames in wbuf until uncorked */
    int64_t wprogress;      /* rpc_now_ms when wbuf last began to fill or sent bytes */

    /* pending table */
    rpc_pending *table[RPC_CONN_TABLE];
    rpc_pending *oldest, *newest;
    uint64_t next_id;       /* the last id handed out by rpc_conn_put */
} rpc_conn;

/* The write-buffer cap every program and library uses unless told
 * otherwise: room for four frames of max_frame, headers included. The one
 * place this default is written. */
size_t rpc_conn_write_buf_default(size_t max_frame);

/* Takes fd (may be -1, see rpc_conn_attach). max_write_buf 0 means
 * rpc_conn_write_buf_default(max_frame). Allocates nothing. */
void rpc_conn_init(rpc_conn *c, int fd, size_t max_frame, size_t max_write_buf);

/* Closes the socket (if any) and frees both buffers; the pending table must
 * already be empty or detached. The struct may be init'ed again. */
void rpc_conn_fini(rpc_conn *c);

/* Takes a new socket after the last one was closed by rpc_conn_close:
 * counters, ids and buffers start over. */
void rpc_conn_attach(rpc_conn *c, int fd);

/* Closes the socket and empties both buffers (keeping the struct, for a
 * reconnect); fd becomes -1 and TLS ends. Pending calls are left in the
 * table: detach them first. */
void rpc_conn_close(rpc_conn *c);

/* ---- TLS ---- */

/* Puts TLS (t's role) over the socket just attached; every read and write
 * then goes through it. peer as rpc_tls_conn_new. Returns 0 or a negative
 * errno with err filled (RPC_ERRLEN). */
int rpc_conn_tls_start(rpc_conn *c, rpc_tls *t, const char *peer, rpc_stats *stats,
                       char *err);

/* Client: completes the handshake and waits for the server to accept the
 * client certificate (rpc_tls_conn_confirm), waiting on the socket until
 * deadline_ms (rpc_now_ms clock). Returns 0, -ETIMEDOUT, or -ECONNABORTED
 * (refused: rpc_conn_tls_error says why) or another negative errno.
 * Plaintext: 0. */
int rpc_conn_handshake(rpc_conn *c, int64_t deadline_ms);

/* Why TLS failed on c, or "" (also for plaintext). */
const char *rpc_conn_tls_error(const rpc_conn *c);

/* Whether bytes were read off the socket that a fill has not yet taken
 * (TLS decrypted more than rbuf had room for): the socket's readiness will
 * not announce them. */
int rpc_conn_buffered(const rpc_conn *c);

/* Whether the peer owes the rest of something it began: a TLS handshake or
 * record under way (rbuf's bytes aside). */
int rpc_conn_partial(const rpc_conn *c);

/* Whether c waits for the socket to take bytes: frames in wbuf, or TLS
 * that must write before it can read on. */
int rpc_conn_wants_write(const rpc_conn *c);

/* ---- reader ---- */

/* What rbuf may hold: one whole frame (or text line) plus one read. */
size_t rpc_conn_rbuf_limit(const rpc_conn *c);

/* One recv of what the socket has into rbuf. Returns the bytes read (> 0),
 * 0 when the peer sent its last byte, -EAGAIN when nothing waits, -EMSGSIZE
 * when rbuf is full, -ENOMEM, or another negative errno when the connection
 * is finished. */
int rpc_conn_fill(rpc_conn *c);

/* Looks at the head of rbuf for one whole frame. Returns the bytes it
 * occupies (> 0; the caller consumes them with rpc_conn_consume once
 * handled) and points *payload and *len at its protobuf bytes; 0 when more bytes
 * are needed; -EMSGSIZE when the header claims more than max_frame. */
int rpc_conn_next(const rpc_conn *c, const uint8_t **payload, size_t *len);

/* Drops n bytes (one whole frame) from the head of rbuf. */
void rpc_conn_consume(rpc_conn *c, size_t n);

/* Whether a failure rc (-EMSGSIZE or -EPROTO) on the connection's first
 * frame means the peer is not a tcpops server or client at all: its first
 * bytes are no frame (an HTTP answer), rather than a frame too large. */
int rpc_conn_foreign(const rpc_conn *c, int rc);

/* Decodes the next whole frame in rbuf. Returns 1 and sets *out (free with
 * rpc_frame_free), 0 when more bytes are needed, -EMSGSIZE (oversize),
 * -EPROTO (does not decode) or -EPROTONOSUPPORT (the first bytes the peer
 * sent are not a frame: see rpc_conn_foreign). */
int rpc_conn_read_frame(rpc_conn *c, rpc_frame **out);

/* Blocks until one whole frame has come or deadline_ms (rpc_now_ms clock)
 * passes: for a caller that owns the connection alone (tcpops-cli). Returns
 * 1 with *out set, -ETIMEDOUT, -ECONNRESET when the peer closed, or an error
 * of rpc_conn_read_frame/rpc_conn_fill. */
int rpc_conn_recv_frame(rpc_conn *c, rpc_frame **out, int64_t deadline_ms);

/* ---- writer ---- */

/* Bytes in wbuf not yet taken by the socket. */
static inline size_t rpc_conn_unsent(const rpc_conn *c) { return rpc_buf_used(&c->wbuf); }

/* Appends n raw bytes (a text-mode line) to wbuf, whole or not at all.
 * Returns 0, -ENOBUFS past max_write_buf, or -ENOMEM. Does not write. */
int rpc_conn_queue(rpc_conn *c, const void *p, size_t n);

/* Encodes f whole into wbuf (header and all, no copy in between), then,
 * unless corked, writes what the socket takes now. Returns 0 (bytes may be
 * left: rpc_conn_unsent), -ENOBUFS when the frame does not fit under
 * max_write_buf (nothing queued), -ENOMEM, or the negative errno of a failed
 * write (the connection is finished). */
int rpc_conn_send(rpc_conn *c, const rpc_frame *f);

/* Writes what the socket takes now, without waiting. Returns 0 (bytes may
 * be left) or a negative errno when the connection is finished. */
int rpc_conn_flush(rpc_conn *c);

/* Writes until wbuf is empty, waiting for room until deadline_ms (rpc_now_ms
 * clock; <= 0 waits without limit). Returns 0, -ETIMEDOUT (bytes left), or
 * a negative errno when the connection is finished. */
int rpc_conn_flush_wait(rpc_conn *c, int64_t deadline_ms);

/* Corks (frames stay in wbuf: a batch of answers leaves in one send) or
 * uncorks and flushes. Returns 0 or the error of that flush. */
int rpc_conn_cork(rpc_conn *c, int on);

/* ---- pending table ---- */

/* Gives p the next id (above every id before it on this connection) and
 * files it. */
void rpc_conn_put(rpc_conn *c, rpc_pending *p);

/* Takes the call with this id out of the table; NULL when none has it
 * (its caller gave up, or the id is not one of ours). */
rpc_pending *rpc_conn_take(rpc_conn *c, uint64_t id);

/* The call waiting longest, or NULL. Iterate with ->newer. */
static inline rpc_pending *rpc_conn_oldest(const rpc_conn *c) { return c->oldest; }

/* Takes every call with an id above `above` out of the table (0: all) and
 * returns them as a list linked by ->next. When a connection is lost, the
 * owner detaches under its lock, releases the lock, then fails each call. */
rpc_pending *rpc_conn_detach(rpc_conn *c, uint64_t above);

#endif
