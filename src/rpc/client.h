/* The RPC client's inside, for its own files only (channel.c, balance.c,
 * exchange.c, dialer.c, client.c) and their tests: the records of a channel,
 * its endpoints, their connections and a call waiting on one. Nothing
 * outside src/rpc includes it; programs use rpc/channel.h.
 *
 *   channel.c   rpc_channel_*: deadlines, retries, the wait queue, membership
 *   balance.c   which connection takes a call; outlier ejection
 *   exchange.c  one call on one connection: send it, wait (or read) for it
 *   dialer.c    one thread per connection: connect with backoff, keepalive,
 *               reading while no caller does, teardown; the read role and
 *               the connection's one write path
 *   client.c    events and the wake-ups every file above sends
 *
 * Each file calls only the ones listed below it here, and rpc/conn.h,
 * rpc/waiter.h, rpc/backoff.h, rpc/sock.h, rpc/stats.h under them. */
#ifndef TCPOPS_RPC_CLIENT_H
#define TCPOPS_RPC_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <netinet/in.h>

#include "rpc/backoff.h"
#include "rpc/channel.h"
#include "rpc/conn.h"

#define MAX_ATTEMPTS 4            /* sends of one call; a connection found gone
                                   * before anything was sent is not one */
#define EJECT_AFTER 5             /* failures in a row */
#define EJECT_BASE_MS 1000        /* x times ejected ... */
#define EJECT_MAX_MS 30000        /* ... up to this */
#define DIALER_QUEUE_MAX (1u << 20) /* bytes queued behind a sender */

/* A connection's state, read without a lock when picking. */
enum { CONN_DOWN, CONN_CONNECTING, CONN_READY, CONN_DRAINING };

/* How a pending call ended before a server answered it. */
enum { END_NONE, END_ANSWER, END_LOST, END_UNSENT };

/* A pending's word: what its caller sleeps on (rpc_waiter). */
#define P_DONE 1u            /* completed: how, err, answer are set */
#define P_LEAD 2u            /* holds the read role (set and cleared under conn->lock) */
#define P_SLEEP 4u           /* its caller sleeps (or is about to) on the word:
                              * whoever sets DONE or LEAD must wake it */

/* A call in flight on one connection; lives on its caller's stack. */
typedef struct pending {
    rpc_pending link;        /* first: the connection's table files it */
    int waiting;             /* under conn->lock: its caller is in exchange_wait */
    _Atomic uint32_t word;   /* P_DONE | P_LEAD */
    int how;                 /* END_* */
    int err;                 /* END_LOST: the reason */
    rpc_frame *answer;       /* END_ANSWER */
} pending;

static inline pending *as_pending(rpc_pending *l) { return (pending *)l; }

typedef struct endpoint endpoint;

/* One connection of an endpoint's pool, with the thread that keeps it. */
typedef struct conn {
    rpc_channel *ch;
    endpoint *ep;
    int index;               /* within the endpoint's pool */
    pthread_t thread;

    pthread_mutex_t wlock;   /* the sender (dialer_flush): io's writer side */
    pthread_mutex_t lock;    /* the fields below and io's pending table */
    pthread_cond_t cond;     /* the conn thread's sleep: a reader left */
    _Atomic int state;       /* CONN_*; read without the lock when picking */
    _Atomic int outstanding;
    _Atomic int soon;        /* a connection is expected at once: worth waiting */
    _Atomic int last_err;    /* why the last attempt or connection failed (-errno) */
    rpc_buf outq;            /* frames queued for the sender, in id order */
    uint64_t unsent_from;    /* lowest call id of outq (or of a batch of
                              * which no byte left); 0: none */
    rpc_conn io;             /* io.fd changes under wlock and lock; the reader
                              * side belongs to the read role's holder */
    uint64_t goaway_last;    /* with goaway_seen: ids above it never ran */
    int goaway_seen;
    int reading;             /* a thread holds the read role */
    int broken;              /* the connection failed (read, write, teardown): why (-errno) */
    unsigned failures_seen;  /* consecutive failed attempts (for fail-fast) */
    int64_t ping_sent_ms;    /* 0 when no PING is outstanding */

    _Atomic int64_t last_rx; /* rpc_now_ms when bytes last arrived */
    /* A call's deadline passed while nothing arrived for a keepalive
     * timeout: the peer may be gone without a word (a partition). Picked
     * last until bytes arrive; its thread PINGs it at once. */
    _Atomic int suspect;
    _Atomic int bursting;    /* a reader hands out answers: it sends after */
    _Atomic int64_t last_frame; /* rpc_now_ms when an answer or PONG last arrived */
    _Atomic uint64_t answered; /* calls answered on it: a worker's calls/s in /status */
    rpc_backoff bo;          /* the conn's own thread only */
} conn;

/* An endpoint is shared by the channel's list, its conn threads and calls
 * in flight; it is freed only once it has left the list, its threads have
 * exited and no call uses it (users == 0), all checked under ch->eplock held
 * for writing. */
struct endpoint {
    char addr[64];
    struct sockaddr_in sa;
    conn *conns;              /* cfg.pool_size of them */
    _Atomic int removed;      /* left the list: drain, then stop */
    _Atomic int backup;       /* used only when no other endpoint is ready */
    _Atomic int failures;     /* calls lost or timed out in a row */
    _Atomic int ejections;    /* times set aside; each lasts longer */
    _Atomic int64_t ejected_until; /* rpc_now_ms; used last until then */
    _Atomic int users;        /* calls holding one of its conns */
    _Atomic int exited;       /* conn threads that have returned */
    int started;              /* conn threads started */
    struct endpoint *next;    /* on ch->retired */
};

struct rpc_channel {
    rpc_channel_cfg cfg;
    char name[64];
    pthread_rwlock_t eplock; /* guards eps, neps and retired */
    endpoint **eps;
    size_t neps;
    endpoint *retired;       /* removed, not yet freed */
    _Atomic unsigned rr;     /* spreads ties between equally loaded conns */

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* a conn changed state; also wakes sleepers */
    int stopping;            /* under lock */

    _Atomic int waiting;     /* calls in the wait queue (see channel.c) */
    _Atomic uint32_t free_seq; /* waiter word: bumped when a conn frees room
                                * for a call or comes up */
};

/* ---- client.c ---- */

/* Calls the channel's on_event for cn (no lock may be held). why: see
 * rpc_event; NULL for none. */
void client_emit(conn *cn, rpc_event_type type, int err, int64_t delay_ms, const char *why);

/* n calls' worth of room was freed (INT_MAX: connections changed state):
 * wakes up to n calls of the wait queue. Any thread, any lock held. The
 * caller lowered `outstanding` (or changed a state) first: see channel.c. */
void client_wake_waiters(rpc_channel *ch, int n);

/* A conn changed state: wakes ch->cond's sleepers and the wait queue.
 * Takes ch->lock: call with no conn lock held. */
void client_notify(rpc_channel *ch);

/* Whether rpc_channel_free has begun. Takes ch->lock. */
int client_stopping(rpc_channel *ch);

/* ---- dialer.c ---- */

/* Fills cn (state DOWN, no socket, first attempt immediate); starts nothing. */
void dialer_init(conn *cn, rpc_channel *ch, endpoint *ep, int index);

/* Starts cn's thread. 0 or a negative errno. */
int dialer_start(conn *cn);

/* Frees what dialer_init made; cn's thread must have been joined. */
void dialer_fini(conn *cn);

/* Completes p (how: END_*) and wakes its caller; p may be gone on return. */
void dialer_complete(pending *p, int how, int err, rpc_frame *answer);

/* Queues f for the sender (the connection's one write path: frames leave
 * in the order they were queued, so ids in wire order when queued in id
 * order). Caller holds cn->lock and has checked the connection is not
 * broken. 0, -EAGAIN when DIALER_QUEUE_MAX bytes already wait (nothing
 * queued), or -ENOMEM. */
int dialer_queue_locked(conn *cn, const rpc_frame *f);

/* Sends what the queue holds, in one write for every frame queued so far
 * (write combining), unless another thread is sending: that one sends it.
 * Waits for room in the socket until deadline_ms (0: not at all; what is
 * left goes with the next send, or the conn thread's within ~200 ms); a
 * send that fails marks the connection broken (its thread tears it down
 * and completes the calls). Takes cn->wlock, then cn->lock; neither may be
 * held. */
void dialer_flush(conn *cn, int64_t deadline_ms);

/* dialer_flush, but waits for the sender (until deadline_ms) instead of
 * leaving the queue to it: for a caller whose frame did not fit in the
 * queue, so that it sleeps until the stuck sender lets go rather than
 * trying again at once. */
void dialer_flush_wait(conn *cn, int64_t deadline_ms);

/* Reads and handles what the connection sends, waiting up to wait_ms for
 * the first bytes. Only the read role's holder calls it. Returns the frames
 * handled (0 when none came), or a negative errno when the connection is
 * finished: -EPROTONOSUPPORT when the peer's first bytes are not a frame, or
 * its first frame is one a server never sends. */
int dialer_read(conn *cn, int wait_ms);

/* Gives up the read role and passes it to the oldest call whose caller
 * waits. Caller holds cn->lock. */
void dialer_leave_reading_locked(conn *cn);

/* Records that the connection failed (why: a negative errno): nothing is
 * picked for it or sent on it from now; its thread tears it down. Caller
 * holds cn->lock. */
void dialer_mark_broken_locked(conn *cn, int why);

/* After a read: records a connection that ended (rc < 0) and passes the
 * role on. Takes cn->lock. */
void dialer_done_reading(conn *cn, int rc);

/* ---- exchange.c ---- */

/* Calls in flight in this process, over all channels (spin_us looks). */
extern _Atomic int exchange_calls_in_process;

/* Files p on cn and queues call's frame, then sends the queue unless
 * another caller is sending it. Returns 0 when the frame is on its way (a
 * send that fails later completes p: unsent when none of its batch left,
 * else lost), -EAGAIN when the conn was not ready or its queue is full
 * (nothing queued: safe to send elsewhere) or -ENOMEM (nothing queued, p
 * out of the table). Takes cn->lock, then dialer_flush's locks. */
int exchange_send(conn *cn, rpc_call *call, pending *p, int64_t deadline);

/* Waits for p until deadline, reading the connection itself whenever the
 * read role is free or handed to it. Returns 1 when p completed, 0 on
 * deadline (p is then out of every table and will never be touched again). */
int exchange_wait(conn *cn, pending *p, int64_t deadline);

/* ---- balance.c ---- */

/* The ready conn with the fewest calls outstanding, on another endpoint
 * than `avoid` when there is one (only compared, never dereferenced), and
 * on the endpoint whose address is `only` when that is not NULL.
 * Primary endpoints first, then backups, then ejected ones. Returns NULL
 * when none is ready; *full says one was ready but at max_inflight. A conn
 * returned holds a use of its endpoint: release it with balance_release.
 * Takes ch->eplock for reading. */
conn *balance_pick(rpc_channel *ch, const endpoint *avoid, const char *only, int *full);

/* Gives back the use balance_pick took. */
void balance_release(conn *cn);

/* Outlier ejection: records a call's end on cn's endpoint (failed: lost or
 * timed out). EJECT_AFTER failures in a row set it aside for EJECT_BASE_MS
 * x times ejected (up to EJECT_MAX_MS) and emit RPC_EV_EJECTED; any answer
 * clears the count. The caller holds a use of the endpoint. */
void balance_note(conn *cn, int failed);

/* Whether a connection is about to be ready: an attempt without backoff
 * under way, or a GOAWAY'd one that reconnects as soon as it drains. Takes
 * ch->eplock for reading. */
int balance_coming_up(rpc_channel *ch);

/* Why a conn last failed (the first with a failure), a negative errno; 0
 * when none has. Takes ch->eplock for reading. */
int balance_last_error(rpc_channel *ch);

#endif
