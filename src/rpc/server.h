/* The RPC server: one I/O thread (epoll) reads and writes non-blocking
 * sockets and decodes frames; a fixed pool of worker threads runs the
 * handlers, so calls on one connection run concurrently and are answered in
 * any order. PING is answered by the I/O thread; GOAWAY tells clients to move
 * on when the server drains or recycles connections. A connection whose first
 * byte is cfg.text_first_byte is in line mode: handed to
 * the text callback one newline-delimited line at a time.
 *
 *   peer --frame--> I/O thread --job--> worker: handler(ctx, body) -> reply
 *   peer <--frame-- (worker writes, or I/O thread flushes what did not fit)
 *
 * A quick method (rpc_method.quick) runs on the I/O thread instead when no
 * job waits for a worker: no hand-off and no wake-up of a worker, and the
 * answers to a batch of frames read at once leave in one send.
 *
 *   peer --frames--> I/O thread: quick handler(ctx, body) -> reply ... --> peer
 *                    (the batch's answers corked, then sent in one go)
 *
 * Flow control, in both modes: a connection is not read while a request
 * waits for one of its max_inflight slots, while its read buffer is full of
 * lines waiting their turn, or while the answers it has not read yet
 * fill half of max_write_buf (then no more of its lines or requests run
 * either, until they drain to a quarter); TCP then holds the peer back, and
 * nothing is refused or cut for sending ahead or reading slowly. A peer
 * whose answers wait with no byte taken for partial_timeout_ms is cut off.
 * When the peer half-closes (EOF), the connection stops reading, runs and
 * answers everything it has read, then closes. At max_conns, a new
 * connection is let in by closing the one idle longest with nothing owed
 * either way (GOAWAY first when it speaks frames).
 *
 * The wire protocol: docs/protocol.md. The server's modules and the path of
 * one request through them: docs/architecture.md.
 */
#ifndef TCPOPS_RPC_SERVER_H
#define TCPOPS_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/frame.h"
#include "rpc/sock.h"
#include "rpc/stats.h"
#include "rpc/tls.h"

typedef struct rpc_server rpc_server;

/* What a handler knows about the call it runs. Valid during the call only. */
typedef struct rpc_call_ctx {
    const char *method;
    const char *trace_id;  /* "" when the caller sent none */
    uint64_t id;
    int64_t deadline_ms;   /* rpc_now_ms instant the caller stops waiting; 0 = none */
    void *thread_state;    /* from rpc_server_cfg.thread_init, per worker thread */
    void *user;            /* rpc_server_cfg.user */
} rpc_call_ctx;

/* What a handler answers. The server zeroes it (status OK) before the call. */
typedef struct rpc_reply {
    int status;            /* a Tcpops__Status */
    char error[256];       /* human text when status != OK */
    uint8_t *body;         /* malloc'd by the handler; the server frees it */
    size_t body_len;
} rpc_reply;

typedef void (*rpc_handler_fn)(const rpc_call_ctx *ctx, const uint8_t *body,
                               size_t len, rpc_reply *out);

typedef struct rpc_method {
    const char *name;      /* "people.List" */
    rpc_handler_fn fn;
    /* Never waits on anything but its own short work (a bounded read): the
     * I/O thread may run it itself, which saves handing it to a worker and
     * waking that worker. */
    int quick;
} rpc_method;

/* Line mode: one line (without its newline, not NUL-terminated; the NUL
 * after it is there) in; a malloc'd NUL-terminated reply line (without
 * newline) out, or NULL to close the connection. Runs on a worker thread;
 * lines of one connection run one at a time, in order; after EOF a last
 * line without its newline runs too. The server gives the lines no meaning:
 * what they say is the callback's business (src/svc speaks JSON). */
typedef char *(*rpc_text_fn)(void *thread_state, void *user,
                             const char *line, size_t len);

/* Who may speak line mode (rpc_server_cfg.text_peers). A line is readable
 * by anyone on its path and text mode is for a human at the machine, so by
 * default only loopback peers (127.0.0.0/8) get it, with TLS or without. */
typedef enum rpc_text_peers {
    RPC_TEXT_LOOPBACK = 0,     /* the default */
    RPC_TEXT_ANY,
    RPC_TEXT_OFF,
} rpc_text_peers;

typedef struct rpc_server_cfg {
    const char *listen;        /* "127.0.0.1:5002"; port 0 picks one */
    int reuseport;             /* share the port with sibling processes */
    int threads;               /* worker threads (default 4) */
    size_t max_frame;          /* default RPC_FRAME_MAX_DEFAULT */
    int max_conns;             /* default 1024; past it the longest-idle
                                * connection makes room (counted as
                                * RPC_C_CONNS_EVICTED), or, all busy, the new
                                * one is refused (RPC_C_CONNS_REFUSED) */
    size_t max_write_buf;      /* per connection; 0 (the default) means
                                * rpc_conn_write_buf_default(max_frame). Past
                                * half of it the peer is held back (see above);
                                * calls already running that overshoot the
                                * whole of it cut the peer off */
    int max_inflight;          /* per connection, default 256; a request past
                                * it waits, and the peer is not read meanwhile */
    int partial_timeout_ms;    /* a started frame must complete within, and
                                * waiting answers must make progress within
                                * (else RPC_C_WRITE_BUF_FULL); 10000 */
    int idle_timeout_ms;       /* close a connection silent this long; 60000
                                * (clients PING after 5 s idle) */
    int queue_max;             /* jobs waiting for a worker, default 4096 */
    const rpc_method *methods; /* copied by rpc_server_new */
    size_t nmethods;
    rpc_text_fn text;          /* NULL turns line mode off */
    /* Line mode: the reply line (malloc'd, no newline) sent before a
     * line-mode connection is cut off for breaking a rule (why says which:
     * "line too long"), or NULL to close without one. NULL: none. Called on
     * the I/O thread, with no lock held. */
    char *(*text_error)(void *user, const char *why);
    int text_first_byte;       /* the first byte that selects line mode;
                                * required with text (never 0, a frame's
                                * first byte) */
    /* Who gets line mode; any other peer that starts with text_first_byte
     * gets text_error's line saying so and is closed, counted as
     * RPC_C_TEXT_REFUSED, and told to on_text_refused (optional: peer as
     * "a.b.c.d:port", why as sent; on the I/O thread, no lock held, must
     * not block). */
    rpc_text_peers text_peers;
    void (*on_text_refused)(void *user, const char *peer, const char *why);
    /* Per thread state (e.g. a database connection), for each worker and
     * for the I/O thread (quick methods). thread_init returns 0 or a
     * negative errno; a failure stops rpc_server_start. */
    int (*thread_init)(void *user, void **state);
    void (*thread_fini)(void *user, void *state);
    void *user;
    rpc_stats *stats;          /* optional; counts calls and events */
    rpc_tls *tls;              /* optional (RPC_TLS_SERVER): every connection
                                * is TLS, and a handshake that fails closes it
                                * before any byte reaches a handler; its time
                                * counts against partial_timeout_ms */
    /* Optional: told of every finished binary call (for access logs), on the
     * worker thread, with no lock held. */
    void (*on_call)(void *user, const rpc_call_ctx *ctx, int status, const char *error,
                    int64_t duration_us);
} rpc_server_cfg;

/* Fills cfg with the defaults above (no listen address, no methods). */
void rpc_server_cfg_default(rpc_server_cfg *cfg);

/* Binds cfg->listen (so the port is known before start) and copies cfg.
 * Returns 0, or a negative errno with a sentence in err (RPC_ERRLEN). */
int rpc_server_new(rpc_server **out, const rpc_server_cfg *cfg, char *err);

/* Adds one more listening address served the same way (a worker's own port
 * beside the shared one). Before rpc_server_start only. Returns the index of
 * the listener (>= 0) or a negative errno with err filled. */
int rpc_server_listen(rpc_server *s, const char *addr, int reuseport, char *err);

/* Port of listener idx (0 is cfg->listen), or a negative errno. */
int rpc_server_port(const rpc_server *s, int idx);

/* Starts the worker threads (running thread_init in each) and the I/O thread.
 * 0 or a negative errno. */
int rpc_server_start(rpc_server *s);

/* Sends GOAWAY on every open connection and keeps listening: clients finish
 * their calls there and open new connections. Any thread. */
void rpc_server_goaway(rpc_server *s);

/* Graceful stop: closes the listeners, sends GOAWAY, waits for calls in
 * flight to be answered (idle connections do not delay it), for at most
 * timeout_ms. Returns 0 when everything was answered, -ETIMEDOUT otherwise.
 * Call rpc_server_free afterwards. Any thread but a worker's. */
int rpc_server_drain(rpc_server *s, int timeout_ms);

/* Stops the threads and frees everything; NULL does nothing. Workers stuck
 * in a handler are abandoned after a second rather than joined forever. */
void rpc_server_free(rpc_server *s);

/* Helper for handlers: packs msg into out->body (malloc'd). 0 or -ENOMEM
 * (then out is an INTERNAL error). */
struct ProtobufCMessage;
int rpc_reply_pack(rpc_reply *out, const struct ProtobufCMessage *msg);

/* Helper for handlers: sets status and a printf-style error text. */
void rpc_reply_error(rpc_reply *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
