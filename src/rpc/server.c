/*
 * RPC server. Ownership of a connection:
 *
 *   I/O thread: accepts, reads, decodes, answers PING, queues jobs (or runs
 *               a quick one itself when no job waits), sends a batch's
 *               answers together, flushes what a worker could not write,
 *               closes.
 *   workers:    run one job each; write the answer straight to the socket
 *               while the write buffer is empty, else append to it.
 *
 * A connection is reference counted (the I/O thread's reference plus one per
 * queued job or pending notice), and its fd is closed only when the last
 * reference goes, so a worker finishing late never writes to a reused
 * descriptor. A worker that needs a connection closed shuts the socket down;
 * the I/O thread then sees the hang-up and does the rest.
 *
 * The I/O thread reads from a peer only while it can take what comes:
 *
 *   read ──> rbuf ──decode──> job ──> worker ──answer──> wbuf/socket
 *    ^ off while: rbuf is full of text lines waiting for the one on a worker,
 *    |            a binary request waits for one of max_inflight slots,
 *    |            answers fill wbuf past half of max_write_buf (the peer
 *    |            reads slowly: no more lines or requests are handed out
 *    |            either, until wbuf drains to a quarter, seen on EPOLLOUT),
 *    |            or the peer has sent its last byte (EOF)
 *    └── a worker that ends a job tells the I/O thread (a notice), which
 *        decodes what waits, turns reading back on, or, after EOF, closes
 *        once every answer owed has been sent.
 *
 * Calls already running when wbuf passes the high-water mark may overshoot
 * it; max_write_buf stays the hard cap. A peer whose waiting answers see no
 * byte leave for partial_timeout_ms is cut off (write_buffer_full), else
 * one that never reads would be held open forever.
 */
#include "rpc/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rpc/buf.h"
#include "rpc/clock.h"
#include "rpc/frame.h"
#include "rpc/pbcheck.h"

#define MAX_LISTENERS 4
#define TICK_MS 200
#define READ_CHUNK 65536
#define GOAWAY_GRACE_MS 10000

enum { EP_LISTENER, EP_WAKE, EP_CONN };
enum { MODE_UNKNOWN, MODE_BINARY, MODE_TEXT };

typedef struct ep_tag {
    int type;
} ep_tag;

typedef struct listener {
    ep_tag tag;
    int fd;
} listener;

typedef struct conn {
    ep_tag tag;
    int fd;
    _Atomic int refs;
    struct conn *prev, *next; /* I/O thread's list */
    int mode;                 /* I/O thread only */
    rpc_buf rbuf;             /* I/O thread only */
    int64_t partial_since;    /* I/O thread only: when unread bytes began; 0 none */
    uint64_t last_id;         /* I/O thread only: highest request id accepted */
    int goaway;               /* I/O thread only: GOAWAY sent */
    int64_t goaway_at;        /* I/O thread only */
    int64_t last_rx;          /* I/O thread only: when bytes last arrived */
    uint64_t rx_seq;          /* I/O thread only: order of last activity, for eviction */
    int rd_eof;               /* I/O thread only: the peer sent its last byte */
    int rfull;                /* I/O thread only: rbuf has no room for another read */
    int at_cap;               /* I/O thread only: a request waits for an in-flight slot */
    int wfull;                /* I/O thread only: answers wait past the high-water mark */
    int gone;                 /* I/O thread only: conn_close ran */

    pthread_mutex_t lock;     /* guards everything below */
    rpc_buf wbuf;
    int64_t wprogress;        /* when wbuf last began to hold bytes or sent some */
    uint32_t events;          /* epoll interest registered now */
    int want_in;              /* read interest (set by the I/O thread) */
    int notify;               /* a worker ending a job tells the I/O thread */
    int corked;               /* the I/O thread is handling a batch: write at its end */
    int closed;               /* no more writes */
    int inflight;             /* queued or running jobs */
    int text_busy;            /* a text line is with a worker */

    struct conn *nnext;       /* under the server's nlock: notice list */
    int noticed;              /* under the server's nlock: on the notice list */
} conn;

typedef struct job {
    struct job *next;
    conn *c;
    rpc_frame *req;           /* binary mode */
    char *line;               /* text mode */
    size_t line_len;
    const rpc_method *m;
    int64_t deadline_ms;
} job;

struct rpc_server {
    rpc_server_cfg cfg;
    rpc_method *methods;
    listener listeners[MAX_LISTENERS];
    int nlisteners;
    int epfd;
    ep_tag wake_tag;
    int wakefd;

    pthread_t io_thread;
    void *io_state;           /* thread_init's state for quick calls on the I/O thread */
    int io_state_ok;
    pthread_t *workers;
    int nworkers;             /* started */
    int started;

    /* queue of jobs for the workers */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    job *qhead, *qtail;
    int qlen;
    int stopping;             /* under qlock: workers exit when set */

    /* I/O thread state */
    conn *conns;
    int nconns;
    _Atomic int io_stop;
    _Atomic int want_goaway;  /* rpc_server_goaway asked */
    _Atomic int draining;     /* rpc_server_drain asked */
    uint64_t rx_seq;          /* I/O thread only: last conn->rx_seq handed out */

    /* connections whose jobs ended while the I/O thread waits on them */
    pthread_mutex_t nlock;
    conn *notices;

    /* drain accounting */
    pthread_mutex_t dlock;
    pthread_cond_t dcond;
    int inflight;             /* under dlock: jobs in all connections */
    int unflushed;            /* under dlock: connections with bytes in wbuf */
    int drain_started;        /* under dlock: listeners closed, GOAWAY sent to all */
};

/* ---- helpers ---- */

void rpc_server_cfg_default(rpc_server_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->threads = 4;
    cfg->max_frame = RPC_FRAME_MAX_DEFAULT;
    cfg->max_conns = 1024;
    cfg->max_inflight = 256;
    cfg->partial_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->queue_max = 4096;
}

int rpc_reply_pack(rpc_reply *out, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = malloc(n ? n : 1);
    if (p == NULL) {
        rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "out of memory");
        return -ENOMEM;
    }
    protobuf_c_message_pack(msg, p);
    free(out->body);
    out->body = p;
    out->body_len = n;
    return 0;
}

void rpc_reply_error(rpc_reply *out, int status, const char *fmt, ...)
{
    va_list ap;
    out->status = status;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof(out->error), fmt, ap);
    va_end(ap);
}

static void wake_io(rpc_server *s)
{
    uint64_t one = 1;
    ssize_t r = write(s->wakefd, &one, sizeof(one));
    (void)r; /* a full eventfd is already a pending wake-up */
}

static void conn_unref(conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    close(c->fd);
    rpc_buf_fini(&c->rbuf);
    rpc_buf_fini(&c->wbuf);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void unflushed_add(rpc_server *s, int delta)
{
    pthread_mutex_lock(&s->dlock);
    s->unflushed += delta;
    if (s->unflushed == 0)
        pthread_cond_broadcast(&s->dcond);
    pthread_mutex_unlock(&s->dlock);
}

/* Registers the epoll interest c needs now: reading while want_in, writing
 * while answers wait in wbuf. Caller holds c->lock. */
static void set_events_locked(rpc_server *s, conn *c)
{
    uint32_t want = (c->want_in ? EPOLLIN | EPOLLRDHUP : 0) |
                    (rpc_buf_used(&c->wbuf) > 0 ? EPOLLOUT : 0);
    if (want == c->events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* Sends what the write buffer holds. Caller holds c->lock. Returns 0 or a
 * negative errno when the connection is finished. */
static int flush_locked(rpc_server *s, conn *c)
{
    while (rpc_buf_used(&c->wbuf) > 0) {
        ssize_t w = send(c->fd, rpc_buf_head(&c->wbuf), rpc_buf_used(&c->wbuf),
                         MSG_NOSIGNAL);
        if (w > 0) {
            rpc_buf_consume(&c->wbuf, (size_t)w);
            c->wprogress = rpc_now_ms();
            if (rpc_buf_used(&c->wbuf) == 0)
                unflushed_add(s, -1);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return w < 0 ? -errno : -ECONNRESET;
    }
    set_events_locked(s, c);
    rpc_buf_shrink(&c->wbuf, 65536);
    return 0;
}

/* Queues bytes for the peer and writes what the socket takes now. The I/O
 * thread stops handing out work past the high-water mark (answers_held), but
 * calls already running may overshoot it: a peer whose buffer would fill
 * past max_write_buf even so is cut off. Caller holds c->lock. */
static void send_locked(rpc_server *s, conn *c, const uint8_t *p, size_t n)
{
    if (c->closed)
        return;
    int was_empty = rpc_buf_used(&c->wbuf) == 0;
    if (rpc_buf_append(&c->wbuf, p, n, s->cfg.max_write_buf) < 0) {
        rpc_stats_add(s->cfg.stats, RPC_C_WRITE_BUF_FULL, 1);
        c->closed = 1;
        shutdown(c->fd, SHUT_RDWR);
        return;
    }
    if (was_empty) {
        c->wprogress = rpc_now_ms();
        unflushed_add(s, 1);
    }
    if (c->corked)
        return; /* the I/O thread sends the whole batch's answers at once */
    if (flush_locked(s, c) < 0) {
        c->closed = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
}

/* Ends one job of c. Caller holds c->lock, in the same critical section
 * that hands the job's answer to the socket: whoever sees the answer go out
 * (the peer, which may send its next request at once, or the I/O thread
 * looking for an idle connection) sees the job gone too. Returns whether the
 * I/O thread waits to hear of it (then the caller calls notice). */
static int job_end_locked(conn *c)
{
    c->inflight--;
    return c->notify;
}

/* Sends f; when end_job, also ends the job it answers (job_end_locked) and
 * returns whether to notice the I/O thread, else returns 0. */
static int send_frame_ex(rpc_server *s, conn *c, const rpc_frame *f, int end_job)
{
    uint8_t stackbuf[1024];
    size_t n = rpc_frame_size(f);
    uint8_t *p = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    int notify = 0;
    if (p != NULL)
        rpc_frame_write(f, p);
    pthread_mutex_lock(&c->lock);
    if (p != NULL)
        send_locked(s, c, p, n);
    if (end_job)
        notify = job_end_locked(c);
    pthread_mutex_unlock(&c->lock);
    if (p != stackbuf)
        free(p);
    return notify;
}

static void send_frame(rpc_server *s, conn *c, const rpc_frame *f)
{
    send_frame_ex(s, c, f, 0);
}

static void send_status(rpc_server *s, conn *c, uint64_t id, int status,
                        const char *error)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.status = status;
    f.error = (char *)error;
    send_frame(s, c, &f);
}

/* ---- job queue ---- */

/* Counts jobs in all connections, for rpc_server_drain. */
static void server_jobs_add(rpc_server *s, int delta)
{
    pthread_mutex_lock(&s->dlock);
    s->inflight += delta;
    if (s->inflight == 0)
        pthread_cond_broadcast(&s->dcond);
    pthread_mutex_unlock(&s->dlock);
}

/* Counts a job of c, or (delta -1) takes back one that never ran; a job that
 * ran ends with its answer (job_end_locked) and server_jobs_add. */
static void inflight_add(rpc_server *s, conn *c, int delta)
{
    pthread_mutex_lock(&c->lock);
    c->inflight += delta;
    pthread_mutex_unlock(&c->lock);
    server_jobs_add(s, delta);
}

/* Puts c on the notice list (once) and wakes the I/O thread, which then
 * looks at c again. Any thread; takes nlock. */
static void notice(rpc_server *s, conn *c)
{
    pthread_mutex_lock(&s->nlock);
    if (!c->noticed) {
        c->noticed = 1;
        atomic_fetch_add(&c->refs, 1);
        c->nnext = s->notices;
        s->notices = c;
    }
    pthread_mutex_unlock(&s->nlock);
    wake_io(s);
}

/* Hands j to the workers. Returns 0, or -EAGAIN when the queue is full (the
 * caller still owns j). */
static int queue_push(rpc_server *s, job *j)
{
    pthread_mutex_lock(&s->qlock);
    if (s->qlen >= s->cfg.queue_max) {
        pthread_mutex_unlock(&s->qlock);
        return -EAGAIN;
    }
    atomic_fetch_add(&j->c->refs, 1);
    j->next = NULL;
    if (s->qtail != NULL)
        s->qtail->next = j;
    else
        s->qhead = j;
    s->qtail = j;
    s->qlen++;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    return 0;
}

static job *queue_pop(rpc_server *s)
{
    pthread_mutex_lock(&s->qlock);
    while (s->qhead == NULL && !s->stopping)
        pthread_cond_wait(&s->qcond, &s->qlock);
    job *j = s->qhead;
    if (j != NULL) {
        s->qhead = j->next;
        if (s->qhead == NULL)
            s->qtail = NULL;
        s->qlen--;
    }
    pthread_mutex_unlock(&s->qlock);
    return j;
}

static int queue_idle(rpc_server *s)
{
    pthread_mutex_lock(&s->qlock);
    int idle = s->qlen == 0;
    pthread_mutex_unlock(&s->qlock);
    return idle;
}

static void job_free(job *j)
{
    rpc_frame_free(j->req);
    free(j->line);
    free(j);
}

/* ---- workers ---- */

/* Runs a binary job and sends its answer, which ends the job (see
 * job_end_locked). Returns whether to notice the I/O thread. */
static int run_binary(rpc_server *s, job *j, void *state)
{
    rpc_frame *req = j->req;
    rpc_reply rep;
    memset(&rep, 0, sizeof(rep));

    int64_t t0 = s->cfg.on_call != NULL ? rpc_now_us() : 0;
    if (s->cfg.delay_ms > 0 &&
        (s->cfg.delay_method == NULL || strcmp(s->cfg.delay_method, req->method) == 0)) {
        struct timespec ts = {s->cfg.delay_ms / 1000, (s->cfg.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    rpc_call_ctx ctx = {
        .method = req->method,
        .trace_id = req->trace_id != NULL ? req->trace_id : "",
        .id = req->id,
        .deadline_ms = j->deadline_ms,
        .thread_state = state,
        .user = s->cfg.user,
    };
    if (j->deadline_ms > 0 && rpc_now_ms() >= j->deadline_ms) {
        /* The caller has given up: do not spend a database call on it. */
        rpc_stats_add(s->cfg.stats, RPC_C_EXPIRED_SKIPPED, 1);
        rpc_reply_error(&rep, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                        "deadline passed before the call ran");
    } else {
        j->m->fn(&ctx, req->body.data, req->body.len, &rep);
    }
    rpc_stats_call(s->cfg.stats, req->method, rep.status);
    if (s->cfg.on_call != NULL)
        s->cfg.on_call(s->cfg.user, &ctx, rep.status, rep.error, rpc_now_us() - t0);

    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = req->id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.status = rep.status;
    f.error = rep.status != TCPOPS__STATUS__OK ? rep.error : (char *)"";
    f.body.data = rep.body;
    f.body.len = rep.body_len;
    if (rpc_frame_size(&f) - RPC_FRAME_HEADER > s->cfg.max_frame) {
        f.status = TCPOPS__STATUS__RESOURCE_EXHAUSTED;
        f.error = (char *)"response larger than the maximum frame";
        f.body.data = NULL;
        f.body.len = 0;
    }
    int notify = send_frame_ex(s, j->c, &f, 1);
    free(rep.body);
    return notify;
}

/* Runs a text line and sends its answer line (or closes), which ends the
 * job. Returns whether to notice the I/O thread. */
static int run_text(rpc_server *s, job *j, void *state)
{
    char *out = s->cfg.text(state, s->cfg.user, j->line, j->line_len);
    conn *c = j->c;

    pthread_mutex_lock(&c->lock);
    if (out != NULL) {
        size_t n = strlen(out);
        out[n] = '\n'; /* replaces the NUL; the length is what counts */
        send_locked(s, c, (const uint8_t *)out, n + 1);
    } else if (!c->closed) {
        c->closed = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
    c->text_busy = 0; /* the notice that follows hands on the next line */
    int notify = job_end_locked(c);
    pthread_mutex_unlock(&c->lock);
    free(out);
    return notify;
}

typedef struct worker_arg {
    rpc_server *s;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int rc;
} worker_arg;

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    rpc_server *s = wa->s;
    void *state = NULL;
    int rc = s->cfg.thread_init != NULL ? s->cfg.thread_init(s->cfg.user, &state) : 0;

    pthread_mutex_lock(&wa->lock);
    wa->rc = rc;
    wa->done = 1;
    pthread_cond_signal(&wa->cond);
    pthread_mutex_unlock(&wa->lock);
    if (rc < 0)
        return NULL;

    job *j;
    while ((j = queue_pop(s)) != NULL) {
        conn *c = j->c;
        int notify = j->req != NULL ? run_binary(s, j, state) : run_text(s, j, state);
        server_jobs_add(s, -1);
        if (notify)
            notice(s, c);
        job_free(j);
        conn_unref(c);
    }
    if (s->cfg.thread_fini != NULL)
        s->cfg.thread_fini(s->cfg.user, state);
    return NULL;
}

/* ---- I/O thread ---- */

static void conn_close(rpc_server *s, conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    int had_bytes = rpc_buf_used(&c->wbuf) > 0;
    rpc_buf_consume(&c->wbuf, rpc_buf_used(&c->wbuf));
    pthread_mutex_unlock(&c->lock);
    if (had_bytes)
        unflushed_add(s, -1);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    shutdown(c->fd, SHUT_RDWR);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    c->gone = 1;
    rpc_stats_add(s->cfg.stats, RPC_C_CONNS_OPEN, -1);
    conn_unref(c);
}

static void cork(rpc_server *s, conn *c, int on);

/* Tells the peer why it is being cut off, where the socket still takes it. */
static void protocol_error(rpc_server *s, conn *c, uint64_t id, const char *why)
{
    rpc_stats_add(s->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
    send_status(s, c, id, TCPOPS__STATUS__INVALID_ARGUMENT, why);
    cork(s, c, 0); /* what the batch answered, and why it ends, go out first */
    conn_close(s, c);
}

static void send_goaway(rpc_server *s, conn *c)
{
    if (c->goaway || c->mode == MODE_TEXT)
        return;
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__GOAWAY;
    f.last_id = c->last_id;
    send_frame(s, c, &f);
    c->goaway = 1;
    c->goaway_at = rpc_now_ms();
    rpc_stats_add(s->cfg.stats, RPC_C_GOAWAYS, 1);
}

/* Answers waiting for a slow reader hold its connection back: once they
 * reach the high-water mark (half of max_write_buf) the I/O thread hands
 * out no more of its lines or requests and stops reading it, until they
 * drain to the low-water mark (a quarter). */
static size_t wbuf_high(const rpc_server *s) { return s->cfg.max_write_buf / 2; }
static size_t wbuf_low(const rpc_server *s) { return s->cfg.max_write_buf / 4; }

/* Updates c->wfull from what c's write buffer holds now and returns it.
 * I/O thread; takes c->lock. */
static int answers_held(rpc_server *s, conn *c)
{
    pthread_mutex_lock(&c->lock);
    size_t used = rpc_buf_used(&c->wbuf);
    pthread_mutex_unlock(&c->lock);
    if (used >= wbuf_high(s))
        c->wfull = 1;
    else if (used <= wbuf_low(s))
        c->wfull = 0;
    return c->wfull;
}

static const rpc_method *find_method(const rpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->cfg.nmethods; i++)
        if (strcmp(s->methods[i].name, name) == 0)
            return &s->methods[i];
    return NULL;
}

/* Handles one decoded frame. Returns 0; 1 when it is a request that must
 * wait for one of the connection's in-flight slots (nothing was done: it
 * stays in rbuf and c->at_cap is set); or -1 when c was closed. */
static int on_frame(rpc_server *s, conn *c, const uint8_t *payload, size_t len)
{
    rpc_frame *f = NULL;
    if (rpc_frame_unpack(payload, len, &f) < 0) {
        protocol_error(s, c, 0, "frame does not decode");
        return -1;
    }
    switch (f->kind) {
    case TCPOPS__KIND__PING: {
        rpc_frame pong = TCPOPS__FRAME__INIT;
        pong.id = f->id;
        pong.kind = TCPOPS__KIND__PONG;
        send_frame(s, c, &pong);
        rpc_frame_free(f);
        return 0;
    }
    case TCPOPS__KIND__PONG:
    case TCPOPS__KIND__GOAWAY: /* the client is leaving; its close follows */
        rpc_frame_free(f);
        return 0;
    case TCPOPS__KIND__REQUEST:
        break;
    default: {
        uint64_t id = f->id;
        rpc_frame_free(f);
        protocol_error(s, c, id, "a server accepts only REQUEST, PING, PONG and GOAWAY");
        return -1;
    }
    }

    uint64_t id = f->id;
    if (id <= c->last_id) {
        rpc_frame_free(f);
        protocol_error(s, c, id, "request id not above the previous one (ids must rise)");
        return -1;
    }
    if (c->goaway) {
        /* Crossed our GOAWAY: never run, so the client may send it elsewhere. */
        rpc_frame_free(f);
        send_status(s, c, id, TCPOPS__STATUS__UNAVAILABLE, "server is going away");
        return 0;
    }

    /* protobuf-c cut each string at its first NUL: "people.List\0junk"
     * must not run people.List. */
    char bad[160];
    if (rpc_pb_check(&tcpops__frame__descriptor, payload, len, bad, sizeof(bad)) < 0) {
        c->last_id = id;
        rpc_stats_call(s->cfg.stats, "invalid", TCPOPS__STATUS__INVALID_ARGUMENT);
        rpc_frame_free(f);
        send_status(s, c, id, TCPOPS__STATUS__INVALID_ARGUMENT, bad);
        return 0;
    }
    const rpc_method *m = find_method(s, f->method);
    if (m == NULL) {
        c->last_id = id;
        char why[160];
        snprintf(why, sizeof(why), "unknown method \"%.100s\"", f->method);
        rpc_stats_call(s->cfg.stats, "unknown", TCPOPS__STATUS__UNIMPLEMENTED);
        rpc_frame_free(f);
        send_status(s, c, id, TCPOPS__STATUS__UNIMPLEMENTED, why);
        return 0;
    }

    /* Past the cap the request waits (the peer is not read meanwhile)
     * rather than being refused: a client a frame ahead of the answers it
     * has read, or one that pipelines, loses nothing. notify is set with the
     * count seen, so the job that frees a slot tells the I/O thread. */
    pthread_mutex_lock(&c->lock);
    int full = c->inflight >= s->cfg.max_inflight;
    if (full)
        c->notify = 1;
    pthread_mutex_unlock(&c->lock);
    if (full) {
        rpc_frame_free(f);
        c->at_cap = 1;
        return 1;
    }
    c->last_id = id;
    job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        rpc_frame_free(f);
        send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "out of memory");
        return 0;
    }
    j->c = c;
    j->req = f;
    j->m = m;
    j->deadline_ms = f->deadline_ms > 0 ? rpc_now_ms() + f->deadline_ms : 0;
    inflight_add(s, c, 1);
    if (m->quick && s->io_state_ok && s->cfg.delay_ms == 0 && queue_idle(s)) {
        /* No job waits for a worker: run it here rather than wake one for
         * it. Its answer goes out with the rest of the batch's. */
        run_binary(s, j, s->io_state); /* the I/O thread needs no notice of it */
        server_jobs_add(s, -1);
        job_free(j);
        return 0;
    }
    if (queue_push(s, j) < 0) {
        inflight_add(s, c, -1);
        rpc_stats_add(s->cfg.stats, RPC_C_INFLIGHT_LIMIT, 1);
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        job_free(j);
        send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "server queue is full");
    }
    return 0;
}

/* Tells a text-mode peer why it is cut off, as a JSON line, and closes. */
static void text_error(rpc_server *s, conn *c, const char *why)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "{\"error\":\"%s\"}\n", why);
    rpc_stats_add(s->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
    pthread_mutex_lock(&c->lock);
    send_locked(s, c, (const uint8_t *)line, (size_t)n);
    pthread_mutex_unlock(&c->lock);
    cork(s, c, 0);
    conn_close(s, c);
}

/* Hands the next complete text line to a worker, if none is running and the
 * answers before it have drained (answers_held). After EOF the end of the
 * stream also ends a last line without its newline. */
static int next_text_line(rpc_server *s, conn *c)
{
    pthread_mutex_lock(&c->lock);
    int busy = c->text_busy;
    pthread_mutex_unlock(&c->lock);
    size_t used = rpc_buf_used(&c->rbuf);
    if (busy || used == 0 || answers_held(s, c))
        return 0; /* (an empty buffer may have no memory at all) */
    uint8_t *head = rpc_buf_head(&c->rbuf);
    uint8_t *nl = memchr(head, '\n', used);
    size_t n = nl != NULL ? (size_t)(nl - head) : used;
    if (nl == NULL) {
        if (used > s->cfg.max_frame) {
            text_error(s, c, "line too long");
            return -1;
        }
        if (!c->rd_eof || used == 0)
            return 0;
    }
    size_t take = n;
    if (take > 0 && head[take - 1] == '\r')
        take--;
    job *j = calloc(1, sizeof(*j));
    char *line = malloc(take + 1);
    if (j == NULL || line == NULL) {
        free(j);
        free(line);
        return 0; /* try again on the next event */
    }
    memcpy(line, head, take);
    line[take] = '\0';
    j->c = c;
    j->line = line;
    j->line_len = take;
    pthread_mutex_lock(&c->lock);
    c->text_busy = 1;
    pthread_mutex_unlock(&c->lock);
    inflight_add(s, c, 1);
    if (queue_push(s, j) < 0) {
        inflight_add(s, c, -1);
        pthread_mutex_lock(&c->lock);
        c->text_busy = 0;
        pthread_mutex_unlock(&c->lock);
        job_free(j);
        return 0;
    }
    rpc_buf_consume(&c->rbuf, nl != NULL ? n + 1 : n);
    return 0;
}

/* Decodes what the read buffer holds, up to a request that waits for a slot
 * or until answers are held (answers_held). Returns the frames consumed, or
 * -1 when c was closed. */
static int process_input(rpc_server *s, conn *c)
{
    int frames = 0;

    if (c->mode == MODE_UNKNOWN && rpc_buf_used(&c->rbuf) > 0) {
        uint8_t first = rpc_buf_head(&c->rbuf)[0];
        if (first == '{' && s->cfg.text != NULL) {
            c->mode = MODE_TEXT;
            /* Before the first line goes out: its end must be heard of. */
            pthread_mutex_lock(&c->lock);
            c->notify = 1;
            pthread_mutex_unlock(&c->lock);
        } else if (first == 0) {
            c->mode = MODE_BINARY;
        } else {
            protocol_error(s, c, 0, "a frame starts with byte 0 (a length below 16 MiB)");
            return -1;
        }
    }
    if (c->mode == MODE_TEXT)
        return next_text_line(s, c);

    c->at_cap = 0;
    for (;;) {
        const uint8_t *payload = NULL;
        size_t plen = 0;
        if (answers_held(s, c))
            break; /* what waits is decoded once the peer has read its answers */
        int n = rpc_frame_decode(rpc_buf_head(&c->rbuf), rpc_buf_used(&c->rbuf),
                                 s->cfg.max_frame, &payload, &plen);
        if (n == -EMSGSIZE) {
            rpc_stats_add(s->cfg.stats, RPC_C_OVERSIZE_FRAMES, 1);
            protocol_error(s, c, 0, "frame larger than the maximum");
            return -1;
        }
        if (n == 0)
            break;
        int rc = on_frame(s, c, payload, plen);
        if (rc < 0)
            return -1;
        if (rc > 0)
            break; /* a request waits for a slot; so does everything behind it */
        rpc_buf_consume(&c->rbuf, (size_t)n);
        frames++;
    }
    return frames;
}

/* While corked, answers written to c wait in its buffer; uncorking sends
 * them in one go: one send for a batch of quick calls instead of one each. */
static void cork(rpc_server *s, conn *c, int on)
{
    pthread_mutex_lock(&c->lock);
    c->corked = on;
    if (!on && !c->closed && flush_locked(s, c) < 0) {
        c->closed = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&c->lock);
}

/* What a connection's read buffer may hold: one whole frame (or line) plus
 * one read. */
static size_t rbuf_limit(const rpc_server *s)
{
    return s->cfg.max_frame + RPC_FRAME_HEADER + READ_CHUNK;
}

/* Moves c on after anything happened to it (bytes read, a job ended, answers
 * flushed): decodes what waits in rbuf, turns reading on or off to match,
 * and once the peer has sent its last byte and every answer it is owed is
 * out, closes c. I/O thread. Returns -1 when c was closed. */
static int conn_pump(rpc_server *s, conn *c)
{
    int frames = 0;
    for (;;) {
        cork(s, c, 1);
        int n = process_input(s, c);
        if (n < 0)
            return -1; /* closed, and its answers with it */
        cork(s, c, 0);
        frames += n;

        size_t used = rpc_buf_used(&c->rbuf);
        if (used == 0) {
            rpc_buf_shrink(&c->rbuf, 65536);
            c->partial_since = 0;
        } else if (frames > 0 || c->partial_since == 0 || c->at_cap || c->wfull) {
            /* A stalled frame's clock starts at its first byte, or when the
             * server stops holding the peer back. */
            c->partial_since = rpc_now_ms();
        }
        /* Text lines wait in rbuf behind the one on a worker: stop reading
         * when no read fits, and read again once half the buffer is free
         * rather than at every line. */
        size_t limit = rbuf_limit(s);
        if (used + READ_CHUNK > limit)
            c->rfull = 1;
        else if (used <= limit / 2)
            c->rfull = 0;

        pthread_mutex_lock(&c->lock);
        if (c->wfull && rpc_buf_used(&c->wbuf) <= wbuf_low(s)) {
            /* The batch's own answers, or a worker's send, drained what held
             * c back: go on with what waits. */
            c->wfull = 0;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        c->want_in = !c->rd_eof && !c->at_cap && !c->rfull && !c->wfull;
        /* While answers are held, a job's end may be the send that drains
         * them, so the I/O thread hears of it. */
        c->notify = c->mode == MODE_TEXT || c->at_cap || c->rd_eof || c->wfull;
        set_events_locked(s, c);
        int owed = c->inflight > 0 || rpc_buf_used(&c->wbuf) > 0;
        pthread_mutex_unlock(&c->lock);
        /* After EOF, done when nothing runs, nothing waits to be sent and no
         * whole request or line is left; a frame the peer never finished is
         * dropped with the connection. */
        if (c->rd_eof && !owed && !c->at_cap && (c->mode != MODE_TEXT || used == 0)) {
            conn_close(s, c);
            return -1;
        }
        return 0;
    }
}

static void on_readable(rpc_server *s, conn *c)
{
    /* Only the I/O thread sets want_in, so it reads it without the lock. */
    while (c->want_in) {
        /* conn_pump leaves room for a read whenever reading is on, so only
         * a failed allocation ends up here. */
        if (rpc_buf_reserve(&c->rbuf, READ_CHUNK, rbuf_limit(s)) < 0) {
            rpc_stats_add(s->cfg.stats, RPC_C_CONNS_LOST, 1);
            conn_close(s, c);
            return;
        }
        ssize_t r = recv(c->fd, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len, 0);
        if (r > 0) {
            c->rbuf.len += (size_t)r;
            c->last_rx = rpc_now_ms();
            c->rx_seq = ++s->rx_seq;
            if (conn_pump(s, c) < 0)
                return;
            if ((size_t)r < READ_CHUNK)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0) {
            rpc_stats_add(s->cfg.stats, RPC_C_CONNS_LOST, 1);
            conn_close(s, c);
            return;
        }
        /* The peer sent its last byte (a half-close, or a close): what it
         * asked for is still run and answered, then the connection closes. */
        c->rd_eof = 1;
        conn_pump(s, c);
        return;
    }
}

/* The socket is shut both ways (the peer reset it, or a worker shut it
 * down): nothing more can be read or sent. */
static void on_hangup(rpc_server *s, conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
        rpc_stats_add(s->cfg.stats, RPC_C_CONNS_LOST, 1);
    conn_close(s, c);
}

/* Looks again at every connection a worker told about (its job ended). */
static void take_notices(rpc_server *s)
{
    pthread_mutex_lock(&s->nlock);
    conn *c = s->notices;
    s->notices = NULL;
    pthread_mutex_unlock(&s->nlock);
    while (c != NULL) {
        /* Once noticed is clear a worker may list c again, through nnext. */
        pthread_mutex_lock(&s->nlock);
        conn *next = c->nnext;
        c->noticed = 0;
        pthread_mutex_unlock(&s->nlock);
        if (!c->gone)
            conn_pump(s, c);
        conn_unref(c);
        c = next;
    }
}

/* At the connection limit: closes the connection idle longest with nothing
 * owed either way, so a new client gets in instead of waiting out the idle
 * timeout. A binary peer gets GOAWAY first: it knows no call of its was cut
 * and reconnects at once. Returns 0, or -1 when every connection is busy. */
static int evict_idlest(rpc_server *s)
{
    conn *victim = NULL;
    for (conn *c = s->conns; c != NULL; c = c->next) {
        if (c->rd_eof || rpc_buf_used(&c->rbuf) > 0 ||
            (victim != NULL && c->rx_seq >= victim->rx_seq))
            continue;
        pthread_mutex_lock(&c->lock);
        int busy = c->inflight > 0 || rpc_buf_used(&c->wbuf) > 0;
        pthread_mutex_unlock(&c->lock);
        if (!busy)
            victim = c;
    }
    if (victim == NULL)
        return -1;
    if (victim->mode == MODE_BINARY)
        send_goaway(s, victim);
    rpc_stats_add(s->cfg.stats, RPC_C_CONNS_EVICTED, 1);
    conn_close(s, victim);
    return 0;
}

static void on_accept(rpc_server *s, listener *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a transient error; epoll tells us again */
        if (s->nconns >= s->cfg.max_conns && !atomic_load(&s->draining))
            evict_idlest(s);
        if (s->nconns >= s->cfg.max_conns || atomic_load(&s->draining)) {
            rpc_stats_add(s->cfg.stats, RPC_C_CONNS_REFUSED, 1);
            close(fd);
            continue;
        }
        rpc_sock_prepare(fd);
        conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->tag.type = EP_CONN;
        c->fd = fd;
        c->last_rx = rpc_now_ms();
        c->rx_seq = ++s->rx_seq;
        c->want_in = 1;
        c->events = EPOLLIN | EPOLLRDHUP;
        atomic_init(&c->refs, 1);
        pthread_mutex_init(&c->lock, NULL);
        struct epoll_event ev = {.events = c->events, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            pthread_mutex_destroy(&c->lock);
            free(c);
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        rpc_stats_add(s->cfg.stats, RPC_C_CONNS_OPEN, 1);
    }
}

static void close_listeners(rpc_server *s)
{
    for (int i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd >= 0) {
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listeners[i].fd, NULL);
            close(s->listeners[i].fd);
            s->listeners[i].fd = -1;
        }
    }
}

/* Periodic work: GOAWAY when asked, stalled frames, peers that read no
 * answers, idle connections, text lines the full job queue turned away. */
static void housekeeping(rpc_server *s)
{
    int64_t now = rpc_now_ms();
    int goaway = atomic_exchange(&s->want_goaway, 0);
    conn *next;

    for (conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (goaway)
            send_goaway(s, c);
        if (c->mode == MODE_TEXT && rpc_buf_used(&c->rbuf) > 0 && conn_pump(s, c) < 0)
            continue;
        /* Whole requests that wait for a slot or for answers to drain, or
         * the leftovers of a peer that has ended, are not a stalled frame. */
        if (c->mode != MODE_TEXT && !c->at_cap && !c->wfull && !c->rd_eof &&
            rpc_buf_used(&c->rbuf) > 0 && now - c->partial_since > s->cfg.partial_timeout_ms) {
            rpc_stats_add(s->cfg.stats, RPC_C_PARTIAL_TIMEOUT, 1);
            conn_close(s, c);
            continue;
        }
        /* A peer that has read none of its answers for as long is not coming
         * back for them: holding it back would keep it open forever. */
        pthread_mutex_lock(&c->lock);
        int unread = rpc_buf_used(&c->wbuf) > 0 &&
                     now - c->wprogress > s->cfg.partial_timeout_ms;
        pthread_mutex_unlock(&c->lock);
        if (unread) {
            rpc_stats_add(s->cfg.stats, RPC_C_WRITE_BUF_FULL, 1);
            conn_close(s, c);
            continue;
        }
        if (now - c->last_rx > s->cfg.idle_timeout_ms) {
            pthread_mutex_lock(&c->lock);
            int busy = c->inflight > 0 || rpc_buf_used(&c->wbuf) > 0;
            pthread_mutex_unlock(&c->lock);
            if (!busy) {
                rpc_stats_add(s->cfg.stats, RPC_C_IDLE_CLOSED, 1);
                conn_close(s, c);
                continue;
            }
        }
        if (c->goaway && now - c->goaway_at >= GOAWAY_GRACE_MS) {
            /* The client should have closed by now; one that ignores GOAWAY
             * does not keep a recycled connection forever. */
            pthread_mutex_lock(&c->lock);
            int idle = c->inflight == 0 && rpc_buf_used(&c->wbuf) == 0;
            pthread_mutex_unlock(&c->lock);
            if (idle)
                conn_close(s, c);
        }
    }
}

static void *io_main(void *arg)
{
    rpc_server *s = arg;
    struct epoll_event evs[64];
    int64_t last_tick = rpc_now_ms();

    while (!atomic_load(&s->io_stop)) {
        int n = epoll_wait(s->epfd, evs, 64, TICK_MS);
        int woke = 0;
        int type[64];
        /* What each event is for, read before anything is closed. */
        for (int i = 0; i < n; i++)
            type[i] = ((ep_tag *)evs[i].data.ptr)->type;
        /* Connections first: each event closes at most its own connection,
         * so none still listed is ever freed. Accepting may close another
         * one (evict_idlest), so it waits until every event of the batch
         * has been handled. */
        for (int i = 0; i < n; i++) {
            ep_tag *t = evs[i].data.ptr;
            if (type[i] != EP_CONN)
                continue;
            conn *c = (conn *)t;
            if (evs[i].events & EPOLLOUT) {
                pthread_mutex_lock(&c->lock);
                int rc = flush_locked(s, c);
                size_t left = rpc_buf_used(&c->wbuf);
                pthread_mutex_unlock(&c->lock);
                if (rc < 0) {
                    conn_close(s, c); /* epoll lists a descriptor once per batch */
                    continue;
                }
                /* After EOF the last answer out is the cue to close; a peer
                 * held back for its unread answers goes on once they drain. */
                if (((left == 0 && c->rd_eof) || (c->wfull && left <= wbuf_low(s))) &&
                    conn_pump(s, c) < 0)
                    continue;
            }
            if (evs[i].events & (EPOLLHUP | EPOLLERR))
                on_hangup(s, c);
            else if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
                on_readable(s, c);
        }
        for (int i = 0; i < n; i++) {
            if (type[i] == EP_LISTENER) {
                on_accept(s, (listener *)evs[i].data.ptr);
            } else if (type[i] == EP_WAKE) {
                uint64_t v;
                ssize_t r = read(s->wakefd, &v, sizeof(v));
                (void)r;
                woke = 1;
            }
        }
        if (woke)
            take_notices(s);
        if (atomic_load(&s->draining) && s->nlisteners > 0 && s->listeners[0].fd >= 0) {
            /* Stop accepting and tell every client at once, before anyone
             * waits for the calls in flight: a client must see GOAWAY before
             * its connection closes, or it cannot tell which calls never ran. */
            close_listeners(s);
            for (conn *c = s->conns; c != NULL; c = c->next)
                send_goaway(s, c);
            pthread_mutex_lock(&s->dlock);
            s->drain_started = 1;
            pthread_cond_broadcast(&s->dcond);
            pthread_mutex_unlock(&s->dlock);
        }
        int64_t now = rpc_now_ms();
        if (atomic_load(&s->want_goaway) || now - last_tick >= TICK_MS) {
            last_tick = now;
            housekeeping(s);
        }
    }
    /* Stopping: cut every connection that is left. */
    while (s->conns != NULL)
        conn_close(s, s->conns);
    take_notices(s);
    return NULL;
}

/* ---- life cycle ---- */

int rpc_server_new(rpc_server **out, const rpc_server_cfg *cfg, char *err)
{
    int rc = -ENOMEM;
    rpc_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        return -ENOMEM;
    }
    s->cfg = *cfg;
    s->epfd = -1;
    s->wakefd = -1;
    for (int i = 0; i < MAX_LISTENERS; i++)
        s->listeners[i].fd = -1;
    if (s->cfg.threads <= 0)
        s->cfg.threads = 4;
    if (s->cfg.max_frame == 0)
        s->cfg.max_frame = RPC_FRAME_MAX_DEFAULT;
    if (s->cfg.max_conns <= 0)
        s->cfg.max_conns = 1024;
    if (s->cfg.max_write_buf == 0)
        s->cfg.max_write_buf = 4 * (s->cfg.max_frame + RPC_FRAME_HEADER);
    if (s->cfg.max_inflight <= 0)
        s->cfg.max_inflight = 256;
    if (s->cfg.partial_timeout_ms <= 0)
        s->cfg.partial_timeout_ms = 10000;
    if (s->cfg.idle_timeout_ms <= 0)
        s->cfg.idle_timeout_ms = 60000;
    if (s->cfg.queue_max <= 0)
        s->cfg.queue_max = 4096;
    s->cfg.listen = NULL; /* not owned; the listener keeps the socket */

    s->methods = calloc(cfg->nmethods ? cfg->nmethods : 1, sizeof(*s->methods));
    if (s->methods == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        goto fail;
    }
    memcpy(s->methods, cfg->methods, cfg->nmethods * sizeof(*s->methods));
    s->cfg.methods = s->methods;
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->dlock, NULL);
    rpc_cond_init(&s->dcond);
    pthread_mutex_init(&s->nlock, NULL);

    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd < 0 || s->wakefd < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "epoll/eventfd: %s", strerror(errno));
        goto fail;
    }
    s->wake_tag.type = EP_WAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->wake_tag};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd, &ev) < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    rc = rpc_server_listen(s, cfg->listen, cfg->reuseport, err);
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    rpc_server_free(s);
    return rc;
}

int rpc_server_listen(rpc_server *s, const char *addr, int reuseport, char *err)
{
    struct sockaddr_in sa;
    int rc = rpc_addr_parse(addr, &sa, err);
    if (rc < 0)
        return rc;
    if (s->nlisteners >= MAX_LISTENERS || s->started) {
        snprintf(err, RPC_ERRLEN, "cannot add listener %s now", addr);
        return -EINVAL;
    }
    int fd = rpc_sock_listen(&sa, reuseport, 1024, err);
    if (fd < 0)
        return fd;
    listener *l = &s->listeners[s->nlisteners];
    l->tag.type = EP_LISTENER;
    l->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "epoll_ctl: %s", strerror(errno));
        close(fd);
        l->fd = -1;
        return rc;
    }
    return s->nlisteners++;
}

int rpc_server_port(const rpc_server *s, int idx)
{
    if (idx < 0 || idx >= s->nlisteners || s->listeners[idx].fd < 0)
        return -EINVAL;
    return rpc_sock_port(s->listeners[idx].fd);
}

int rpc_server_start(rpc_server *s)
{
    int rc = 0;
    s->workers = calloc((size_t)s->cfg.threads, sizeof(pthread_t));
    if (s->workers == NULL)
        return -ENOMEM;
    s->started = 1;
    for (int i = 0; i < s->cfg.threads; i++) {
        worker_arg wa = {.s = s};
        pthread_mutex_init(&wa.lock, NULL);
        pthread_cond_init(&wa.cond, NULL);
        if ((rc = -pthread_create(&s->workers[i], NULL, worker_main, &wa)) < 0)
            break;
        pthread_mutex_lock(&wa.lock);
        while (!wa.done)
            pthread_cond_wait(&wa.cond, &wa.lock);
        pthread_mutex_unlock(&wa.lock);
        pthread_mutex_destroy(&wa.lock);
        pthread_cond_destroy(&wa.cond);
        if (wa.rc < 0) {
            pthread_join(s->workers[i], NULL);
            rc = wa.rc;
            break;
        }
        s->nworkers++;
    }
    if (rc == 0 && s->cfg.thread_init != NULL) {
        rc = s->cfg.thread_init(s->cfg.user, &s->io_state);
        s->io_state_ok = rc == 0;
    } else if (rc == 0) {
        s->io_state_ok = 1;
    }
    if (rc == 0 && (rc = -pthread_create(&s->io_thread, NULL, io_main, s)) == 0)
        return 0;
    s->started = 0;
    return rc;
}

void rpc_server_goaway(rpc_server *s)
{
    atomic_store(&s->want_goaway, 1);
    wake_io(s);
}

int rpc_server_drain(rpc_server *s, int timeout_ms)
{
    int rc = 0;
    atomic_store(&s->draining, 1);
    wake_io(s);
    if (!s->started)
        return 0;
    struct timespec ts;
    rpc_ms_to_timespec(rpc_now_ms() + timeout_ms, &ts);
    pthread_mutex_lock(&s->dlock);
    while ((!s->drain_started || s->inflight > 0 || s->unflushed > 0) && rc == 0)
        rc = -pthread_cond_timedwait(&s->dcond, &s->dlock, &ts);
    if (rc != 0 && s->inflight == 0 && s->unflushed == 0)
        rc = 0;
    pthread_mutex_unlock(&s->dlock);
    return rc == 0 ? 0 : -ETIMEDOUT;
}

void rpc_server_free(rpc_server *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        atomic_store(&s->io_stop, 1);
        wake_io(s);
        pthread_join(s->io_thread, NULL);
    }
    if (s->io_state_ok && s->cfg.thread_fini != NULL)
        s->cfg.thread_fini(s->cfg.user, s->io_state);
    s->io_state_ok = 0;
    pthread_mutex_lock(&s->qlock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    int abandoned = 0;
    for (int i = 0; i < s->nworkers; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (pthread_timedjoin_np(s->workers[i], NULL, &ts) != 0) {
            /* A handler that never returns: leave it; the process is exiting. */
            pthread_detach(s->workers[i]);
            abandoned = 1;
        }
    }
    /* Jobs never started, and notices of jobs that ended after the I/O
     * thread did, still hold connection references. */
    job *j;
    while ((j = s->qhead) != NULL) {
        s->qhead = j->next;
        conn *c = j->c;
        job_free(j);
        conn_unref(c);
    }
    if (!abandoned)
        take_notices(s);
    close_listeners(s);
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->wakefd >= 0)
        close(s->wakefd);
    free(s->workers);
    free(s->methods);
    if (abandoned)
        return; /* stuck workers may still touch the locks and queue */
    pthread_mutex_destroy(&s->qlock);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->dlock);
    pthread_cond_destroy(&s->dcond);
    pthread_mutex_destroy(&s->nlock);
    free(s);
}
