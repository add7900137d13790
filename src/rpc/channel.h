/* The RPC client: a channel to one service. It holds one or more endpoints,
 * a pool of persistent connections to each, and spreads calls over the healthy
 * ones (least outstanding calls first). Many calls are in flight on one
 * connection at once; answers are matched by request id, and read by a
 * waiting caller itself when no other is reading. Connections are made
 * and remade in the background with exponential backoff and jitter; a call
 * never waits for a connection that is backing off: it fails fast with
 * UNAVAILABLE. A call that finds every connection at max_inflight waits for
 * room on one (or a new connection) until its deadline, as one of at most
 * max_waiting such calls; past that it fails at once with RESOURCE_EXHAUSTED
 * (like gRPC's queueing on a connection's stream limit). A server's GOAWAY
 * moves new calls to other connections, and calls it never accepted are sent
 * again elsewhere. How it works: the top of src/rpc/channel.c; the wire
 * protocol (deadlines, retries, GOAWAY): docs/protocol.md; the client's
 * modules and locks: docs/architecture.md.
 *
 * Every function here may be called from any thread, concurrently. */
#ifndef TCPOPS_RPC_CHANNEL_H
#define TCPOPS_RPC_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/backoff.h"
#include "rpc/frame.h"
#include "rpc/sock.h"
#include "rpc/stats.h"
#include "rpc/tls.h"

typedef struct rpc_channel rpc_channel;

typedef enum rpc_event_type {
    RPC_EV_CONNECTED,      /* a connection came up */
    RPC_EV_CONNECT_FAILED, /* an attempt failed; delay_ms until the next */
    RPC_EV_DISCONNECTED,   /* a connection was lost (err says why) */
    RPC_EV_GOAWAY,         /* the server asked us to move on */
    RPC_EV_EJECTED,        /* set aside for delay_ms after failing calls in a row */
} rpc_event_type;

typedef struct rpc_event {
    rpc_event_type type;
    const char *service;   /* rpc_channel_cfg.name */
    const char *endpoint;  /* "127.0.0.1:5002" */
    int conn;              /* connection index within the endpoint's pool */
    int err;               /* negative errno, 0 when none */
    unsigned attempt;      /* consecutive failed attempts so far */
    int64_t delay_ms;      /* RPC_EV_CONNECT_FAILED: wait before the next */
    const char *why;       /* RPC_EV_CONNECT_FAILED: more than err says (TLS's
                            * reason a handshake failed), or "" */
} rpc_event;

/* Called with no lock held, on a connection's own thread or on a calling
 * thread (one reading the connection sees GOAWAY; a failing call ejects).
 * Must not block. */
typedef void (*rpc_event_fn)(void *user, const rpc_event *ev);

typedef struct rpc_channel_cfg {
    const char *name;            /* service name, for events ("people") */
    const char *const *endpoints;/* "host:port" each */
    size_t nendpoints;
    int pool_size;               /* connections per endpoint, default 2 */
    int max_inflight;            /* calls in flight per connection, default 256 */
    int max_waiting;             /* calls that may wait for room when every
                                  * connection has max_inflight, default 1024;
                                  * 0: none wait (RESOURCE_EXHAUSTED at once) */
    size_t max_frame;            /* default RPC_FRAME_MAX_DEFAULT */
    int connect_timeout_ms;      /* default 1000 */
    int deadline_ms;             /* default call deadline, 2000 */
    int max_deadline_ms;         /* a call may ask for at most this, 10000 */
    int keepalive_idle_ms;       /* PING after this long without a frame, 5000 */
    int keepalive_timeout_ms;    /* dead after this long without a PONG, 2000 */
    int spin_us;                 /* the only call in flight in the process looks
                                  * for its answer this long before sleeping in
                                  * poll; default 0 = never */
    rpc_backoff_cfg backoff;     /* zeroed: the defaults */
    rpc_rand_fn rand;            /* NULL: rpc_rand01 */
    void *rand_user;
    rpc_stats *stats;            /* optional */
    rpc_tls *tls;                /* optional (RPC_TLS_CLIENT): every connection
                                  * is TLS, its handshake part of connecting
                                  * (within connect_timeout_ms) */
    rpc_event_fn on_event;       /* optional */
    void *event_user;
} rpc_channel_cfg;

/* Fills cfg with the defaults above (no name, no endpoints). */
void rpc_channel_cfg_default(rpc_channel_cfg *cfg);

/* One call. The caller fills the inputs; rpc_channel_call fills the outputs;
 * rpc_call_fini releases them. */
struct rpc_answer; /* the channel's own, never defined for callers */
typedef struct rpc_call {
    /* in */
    const char *method;          /* "people.List" */
    const uint8_t *body;         /* the method's encoded request; may be NULL */
    size_t body_len;
    const char *trace_id;        /* may be NULL */
    int deadline_ms;             /* 0: the channel default; capped at max */
    int idempotent;              /* a read: may be retried once elsewhere */
    const char *to;              /* only this endpoint, as listed ("host:port"), or
                                  * NULL for any: asks one worker for its own
                                  * answer (the gateway's scrape of each member's
                                  * svc.Status); not there or not ready: the call
                                  * fails as when nothing is healthy, without
                                  * counting fail_fast; its failures and
                                  * timeouts count toward no ejection */
    /* out */
    int status;                  /* a Tcpops__Status */
    char error[256];             /* human text when status != OK */
    const uint8_t *resp;         /* the answer's body; valid until fini */
    size_t resp_len;
    char endpoint[64];           /* the endpoint that answered, if any */
    int attempts;                /* times the call was sent */
    int err;                     /* the transport failure behind an UNAVAILABLE or
                                  * DEADLINE_EXCEEDED the channel made up (negative
                                  * errno; -EPROTONOSUPPORT: the peer's answer was
                                  * not a frame, it is no tcpops service); 0 if none */
    struct rpc_answer *answer;   /* opaque: the answer as received, which resp
                                  * points into; freed by rpc_call_fini */
} rpc_call;

/* Starts connecting to every endpoint in the background and returns at once.
 * No endpoints is allowed: calls fail at once with UNAVAILABLE until
 * rpc_channel_set_members gives some. Returns 0, or a negative errno with a
 * sentence in err (RPC_ERRLEN): bad endpoint text, out of memory, no
 * threads. *out untouched on failure. */
int rpc_channel_new(rpc_channel **out, const rpc_channel_cfg *cfg, char *err);

/* Stops every connection thread; calls still waiting complete with
 * UNAVAILABLE first. No call may start after this begins. NULL does nothing. */
void rpc_channel_free(rpc_channel *ch);

/* Makes one call and waits for its answer, at most its deadline. Returns the
 * status (also in call->status): the server's, or UNAVAILABLE when no
 * connection was healthy or one was lost with the call on it,
 * DEADLINE_EXCEEDED when the deadline passed (also while waiting for room),
 * RESOURCE_EXHAUSTED when every connection has max_inflight calls and
 * max_waiting calls already wait. Call rpc_call_fini afterwards. */
int rpc_channel_call(rpc_channel *ch, rpc_call *call);

/* Frees what a call's answer holds; the inputs are the caller's. */
void rpc_call_fini(rpc_call *call);

/* Connections that are up and taking calls now. */
int rpc_channel_ready(rpc_channel *ch);

/* Calls waiting now for room on a connection (see max_waiting). */
int rpc_channel_waiting(rpc_channel *ch);

/* rpc_now_ms when the last answer or PONG arrived from any endpoint on the
 * list, 0 when none has: how recently the service was seen alive. */
int64_t rpc_channel_last_answer_ms(rpc_channel *ch);

/* Replaces the endpoints (membership changed). Endpoints in both the old and
 * the new list keep their connections; new ones start connecting; the others
 * take no new calls, finish the calls they have, and close (an empty list
 * drains them all). 0, or a negative
 * errno with err filled (then the old list stays). */
int rpc_channel_set_endpoints(rpc_channel *ch, const char *const *addrs, size_t n, char *err);

/* Replaces the members: primary endpoints as rpc_channel_set_endpoints, plus
 * backup endpoints that keep their own connections but take calls only
 * while no primary one has a connection up (the gateway keeps a service's
 * shared address as backup to its members, so a restarted worker is
 * reachable before membership has caught up). An address in both lists is
 * primary. 0, or a negative errno with err filled (the old list stays). */
int rpc_channel_set_members(rpc_channel *ch, const char *const *primary, size_t np,
                            const char *const *backup, size_t nb, char *err);

typedef struct rpc_endpoint_info {
    char addr[64];
    int backup;       /* see rpc_channel_set_members */
    int conns;        /* pool size */
    int ready;        /* connections up and taking calls */
    int outstanding;  /* calls in flight */
    int last_err;     /* negative errno of the last failure, 0 if none */
    int ejected;      /* set aside now after failing calls in a row */
    uint64_t calls;   /* calls it answered (any status) since it was added */
} rpc_endpoint_info;

/* Copies up to max endpoints' state into out; returns how many there are. */
size_t rpc_channel_endpoints(rpc_channel *ch, rpc_endpoint_info *out, size_t max);

#endif
