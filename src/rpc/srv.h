/* Private to the server's modules (server.c, srvconn.c, srvloop.c,
 * lines.c): the server, its connections and its jobs, and the calls they
 * make on each other. Nothing outside src/rpc/server*.c, srv*.c and lines.c
 * includes it. The lock order is in server.c's header comment. */
#ifndef TCPOPS_RPC_SRV_H
#define TCPOPS_RPC_SRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "rpc/conn.h"
#include "rpc/evloop.h"
#include "rpc/server.h"
#include "rpc/taskq.h"

#define SRV_MAX_LISTENERS 4
#define SRV_TICK_MS 200
#define SRV_GOAWAY_GRACE_MS 10000
#define SRV_BACKLOG 1024       /* listen() backlog of every listener */
#define SRV_STUCK_MS 1000      /* rpc_server_free waits this long for a worker */

enum { SRV_EP_LISTENER, SRV_EP_CONN };
enum { SRV_MODE_UNKNOWN, SRV_MODE_BINARY, SRV_MODE_LINES };

typedef struct srv_listener {
    int type;                 /* SRV_EP_LISTENER: first, as in srv_conn */
    int fd;
} srv_listener;

typedef struct srv_conn {
    int type;                 /* SRV_EP_CONN: first, for the event loop */
    rpc_conn io;              /* fd and rbuf: I/O thread; wbuf, corked,
                               * wprogress: under lock */
    struct sockaddr_in peer;  /* the client's address */
    _Atomic int refs;         /* the I/O thread's, + one per job or notice */
    struct srv_conn *prev, *next; /* I/O thread's list */
    int mode;                 /* I/O thread only */
    int64_t partial_since;    /* I/O thread only: when unread bytes began; 0 none */
    uint64_t last_id;         /* I/O thread only: highest request id accepted */
    int goaway;               /* I/O thread only: GOAWAY sent */
    int64_t goaway_at;        /* I/O thread only */
    uint64_t rx_seq;          /* I/O thread only: order of last activity, for eviction */
    int rd_eof;               /* I/O thread only: the peer sent its last byte */
    int rfull;                /* I/O thread only: rbuf has no room for another read */
    int at_cap;               /* I/O thread only: a request waits for an in-flight slot */
    int wfull;                /* I/O thread only: answers wait past the high-water mark */
    int gone;                 /* I/O thread only: srv_conn_close ran */

    pthread_mutex_t lock;     /* guards io's writer side and everything below */
    uint32_t events;          /* epoll interest registered now */
    int want_in;              /* read interest (set by the I/O thread) */
    int notify;               /* a worker ending a job tells the I/O thread */
    int closed;               /* no more writes */
    int inflight;             /* queued or running jobs */
    int line_busy;            /* a line is with a worker */

    struct srv_conn *nnext;   /* under the server's nlock: notice list */
    int noticed;              /* under the server's nlock: on the notice list */
} srv_conn;

typedef struct srv_job {
    rpc_task task;            /* first: the task queue's */
    rpc_server *s;
    srv_conn *c;              /* holds a reference */
    rpc_frame *req;           /* binary mode */
    char *line;               /* line mode */
    size_t line_len;
    const rpc_method *m;
    int64_t deadline_ms;
} srv_job;

struct rpc_server {
    rpc_server_cfg cfg;
    rpc_method *methods;
    srv_listener listeners[SRV_MAX_LISTENERS];
    int nlisteners;
    rpc_evloop loop;

    pthread_t io_thread;
    void *io_state;           /* thread_init's state for quick calls on the I/O thread */
    int io_state_ok;
    int started;
    rpc_taskq tq;             /* jobs and the workers */

    /* I/O thread state */
    srv_conn *conns;
    int nconns;
    _Atomic int io_stop;
    _Atomic int want_goaway;  /* rpc_server_goaway asked */
    _Atomic int draining;     /* rpc_server_drain asked */
    uint64_t rx_seq;          /* I/O thread only: last conn->rx_seq handed out */

    /* connections whose jobs ended while the I/O thread waits on them */
    pthread_mutex_t nlock;
    srv_conn *notices;

    /* drain accounting */
    pthread_mutex_t dlock;
    pthread_cond_t dcond;
    int inflight;             /* under dlock: jobs in all connections */
    int unflushed;            /* under dlock: connections with bytes in wbuf */
    int drain_started;        /* under dlock: listeners closed, GOAWAY sent to all */
};

/* ---- srvconn.c: one connection, its references and its writer ---- */

/* A new connection on fd (non-blocking) from peer, registered for reading
 * and listed; with TLS, its handshake begins. Returns NULL (fd untouched)
 * when out of memory or epoll refuses. I/O thread. */
srv_conn *srv_conn_new(rpc_server *s, int fd, const struct sockaddr_in *peer);

/* Drops a reference; the last one closes the socket and frees c. Any thread. */
void srv_conn_unref(srv_conn *c);

/* Drops what waits to be sent, unregisters and shuts c down, unlists it and
 * drops the I/O thread's reference. I/O thread; takes c->lock, then dlock. */
void srv_conn_close(rpc_server *s, srv_conn *c);

/* Stops every write to c and shuts its socket down; the I/O thread sees the
 * hang-up and closes c. Caller holds c->lock. */
void srv_shut_locked(srv_conn *c);

/* Encodes f into c's write buffer and, unless corked, writes what the
 * socket takes. A frame that would pass max_write_buf cuts the peer off
 * (RPC_C_WRITE_BUF_FULL). Caller holds c->lock (takes dlock). */
void srv_send_locked(rpc_server *s, srv_conn *c, const rpc_frame *f);

/* The same for n raw bytes (a line and its newline). Caller holds c->lock. */
void srv_queue_locked(rpc_server *s, srv_conn *c, const void *p, size_t n);

/* Writes what the socket takes now and updates the epoll interest. Returns
 * 0 or a negative errno when the connection is finished. Caller holds
 * c->lock (takes dlock). */
int srv_flush_locked(rpc_server *s, srv_conn *c);

/* Registers the epoll interest c needs now: reading while want_in, writing
 * while answers (or TLS) wait. Caller holds c->lock. */
void srv_set_events_locked(rpc_server *s, srv_conn *c);

/* While corked, answers wait in c's buffer; uncorking sends them in one go.
 * Takes c->lock. */
void srv_cork(rpc_server *s, srv_conn *c, int on);

/* Sends f (srv_send_locked under c->lock). Any thread. */
void srv_send(rpc_server *s, srv_conn *c, const rpc_frame *f);

/* Sends a RESPONSE with no body. Any thread; takes c->lock. */
void srv_send_status(rpc_server *s, srv_conn *c, uint64_t id, int status, const char *error);

/* Ends one job of c. Caller holds c->lock, in the same critical section
 * that hands the job's answer to the socket: whoever sees the answer go out
 * (the peer, which may send its next request at once, or the I/O thread
 * looking for an idle connection) sees the job gone too. Returns whether the
 * I/O thread waits to hear of it (then the caller calls srv_notice). */
int srv_job_end_locked(srv_conn *c);

/* Counts a job of c (delta 1), or takes back one that never ran (-1).
 * Takes c->lock, then dlock. */
void srv_inflight_add(rpc_server *s, srv_conn *c, int delta);

/* Counts jobs in all connections, for rpc_server_drain. Takes dlock. */
void srv_jobs_add(rpc_server *s, int delta);

/* Queues j for a worker (taking a reference to its connection). Returns 0,
 * or -EAGAIN when the queue is full (the caller still owns j). */
int srv_job_push(rpc_server *s, srv_job *j);

/* After a worker ran j: counts it done, tells the I/O thread when notify,
 * frees j and drops its reference. No lock held. */
void srv_job_done(srv_job *j, int notify);

/* Frees j (not its connection reference). */
void srv_job_free(srv_job *j);

/* Puts c on the notice list (once) and wakes the I/O thread, which then
 * looks at c again. Any thread; takes nlock. */
void srv_notice(rpc_server *s, srv_conn *c);

/* Whether c's waiting answers hold it back (past half of max_write_buf,
 * until they drain to a quarter); updates c->wfull. I/O thread; takes
 * c->lock. */
int srv_answers_held(rpc_server *s, srv_conn *c);

/* The low-water mark: answers held back from a connection resume once its
 * write buffer drains to this (a quarter of max_write_buf). */
size_t srv_wbuf_low(const rpc_server *s);

/* ---- srvloop.c: the I/O thread ---- */

/* The I/O thread's main; arg is the server. */
void *srv_io_main(void *arg);

/* Looks again at every connection a worker told about. I/O thread, or after
 * it ended. */
void srv_take_notices(rpc_server *s);

/* Closes and unregisters every listener. */
void srv_close_listeners(rpc_server *s);

/* ---- dispatch.c: frames, calls and GOAWAY ---- */

/* Handles one frame of c. Returns 0; 1 when it is a request that must wait
 * for one of the connection's in-flight slots (nothing was done and
 * c->at_cap is set); or -1 when c was closed. I/O thread. */
int srv_on_frame(rpc_server *s, srv_conn *c, const uint8_t *payload, size_t len);

/* Counts a protocol error, tells the peer why where the socket takes it,
 * and closes c. I/O thread. */
void srv_protocol_error(rpc_server *s, srv_conn *c, uint64_t id, const char *why);

/* Sends GOAWAY on c once (a binary connection only). I/O thread. */
void srv_send_goaway(rpc_server *s, srv_conn *c);

/* ---- lines.c: line mode ---- */

/* Tells a line-mode peer why it is cut off, with the line cfg.text_error
 * makes of why (none when it is NULL or answers NULL), and closes c. The
 * caller counts why. I/O thread. */
void srv_lines_error(rpc_server *s, srv_conn *c, const char *why);

/* Hands c's next whole line to a worker when none of its lines runs and its
 * answers are not held. Returns 0, or -1 when c was closed (a line past
 * max_frame). I/O thread. */
int srv_lines_next(rpc_server *s, srv_conn *c);

#endif
