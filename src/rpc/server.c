/*
 * RPC server: the public API, its life cycle, dispatch of frames and jobs,
 * and drain/GOAWAY. The other modules of the server (srv.h is their shared,
 * private header):
 *
 *   srvloop.c  the I/O thread: accept and evict at max_conns, reading with
 *              back-pressure, the timeouts; calls dispatch (srv_on_frame)
 *   srvconn.c  one connection: references, the writer under its lock, jobs
 *   lines.c    line mode (text_first_byte connections, cfg.text)
 *   evloop.c   epoll, wake-up and tick; taskq.c the workers; conn.c the
 *              socket's reader and writer
 *
 * Ownership of a connection:
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
 *    ^ off while: rbuf is full of lines waiting for the one on a worker,
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
 *
 * Locks, and the order they are taken in (an arrow: the left one may be
 * held while the right one is taken; no other nesting):
 *
 *   c->lock ──> s->dlock          a write under the connection's lock counts
 *                                 it among the connections owing bytes
 *   s->nlock, s->tq.lock          leaves: nothing is taken while they are
 *                                 held; a worker runs its task with no lock
 *   s->dlock                      a leaf too (the drain counters)
 *
 * No lock is held while a handler, cfg.text, cfg.text_error or cfg.on_call
 * runs, and none across a call into the task queue or the notice list.
 * The I/O thread owns the connection list and everything marked "I/O thread
 * only" in srv.h, and takes a connection's lock only for its writer side
 * and job counters. See docs/architecture.md for the path of one request.
 */
#include "rpc/server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "rpc/pbcheck.h"
#include "rpc/srv.h"

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
    /* max_write_buf stays 0: rpc_server_new makes it
     * rpc_conn_write_buf_default of the max_frame finally chosen. */
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

/* ---- running a call ---- */

/* Sends the answer rep to j's request, which ends the job (see
 * srv_job_end_locked). Returns whether to notice the I/O thread. */
static int answer(rpc_server *s, srv_job *j, const rpc_reply *rep)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = j->req->id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.status = rep->status;
    f.error = rep->status != TCPOPS__STATUS__OK ? (char *)rep->error : (char *)"";
    f.body.data = rep->body;
    f.body.len = rep->body_len;
    if (rpc_frame_size(&f) - RPC_FRAME_HEADER > s->cfg.max_frame) {
        f.status = TCPOPS__STATUS__RESOURCE_EXHAUSTED;
        f.error = (char *)"response larger than the maximum frame";
        f.body.data = NULL;
        f.body.len = 0;
    }
    srv_conn *c = j->c;
    pthread_mutex_lock(&c->lock);
    srv_send_locked(s, c, &f);
    int notify = srv_job_end_locked(c);
    pthread_mutex_unlock(&c->lock);
    return notify;
}

/* Runs a binary job and sends its answer. Returns whether to notice the I/O
 * thread. No lock held. */
static int run_binary(rpc_server *s, srv_job *j, void *state)
{
    rpc_frame *req = j->req;
    rpc_reply rep;
    memset(&rep, 0, sizeof(rep));

    int64_t t0 = s->cfg.on_call != NULL ? rpc_now_us() : 0;
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
    int notify = answer(s, j, &rep);
    free(rep.body);
    return notify;
}

/* A binary job on a worker (rpc_task_fn). */
static void run_job(rpc_task *t, void *state)
{
    srv_job *j = (srv_job *)t;
    srv_job_done(j, run_binary(j->s, j, state));
}

/* ---- dispatch ---- */

void srv_protocol_error(rpc_server *s, srv_conn *c, uint64_t id, const char *why)
{
    rpc_stats_add(s->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
    srv_send_status(s, c, id, TCPOPS__STATUS__INVALID_ARGUMENT, why);
    srv_cork(s, c, 0); /* what the batch answered, and why it ends, go out first */
    srv_conn_close(s, c);
}

void srv_send_goaway(rpc_server *s, srv_conn *c)
{
    if (c->goaway || c->mode == SRV_MODE_LINES)
        return;
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__GOAWAY;
    f.last_id = c->last_id;
    srv_send(s, c, &f);
    c->goaway = 1;
    c->goaway_at = rpc_now_ms();
    rpc_stats_add(s->cfg.stats, RPC_C_GOAWAYS, 1);
}

static const rpc_method *find_method(const rpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->cfg.nmethods; i++)
        if (strcmp(s->methods[i].name, name) == 0)
            return &s->methods[i];
    return NULL;
}

/* Handles a frame that is no REQUEST: PING is answered, PONG and GOAWAY (the
 * client is leaving; its close follows) are dropped, any other kind is a
 * protocol error. Returns 0, or -1 when c was closed. Frees f. */
static int on_control(rpc_server *s, srv_conn *c, rpc_frame *f)
{
    uint64_t id = f->id;
    int kind = f->kind;
    rpc_frame_free(f);
    if (kind == TCPOPS__KIND__PING) {
        rpc_frame pong = TCPOPS__FRAME__INIT;
        pong.id = id;
        pong.kind = TCPOPS__KIND__PONG;
        srv_send(s, c, &pong);
    } else if (kind != TCPOPS__KIND__PONG && kind != TCPOPS__KIND__GOAWAY) {
        srv_protocol_error(s, c, id, "a server accepts only REQUEST, PING, PONG and GOAWAY");
        return -1;
    }
    return 0;
}

/* The method request f names, or NULL when f is answered here already (it
 * crossed our GOAWAY, does not check out, or names no method we have: then
 * f is freed and *rc is 0) or breaks the protocol (*rc -1: c was closed). */
static const rpc_method *request_method(rpc_server *s, srv_conn *c, rpc_frame *f,
                                        const uint8_t *payload, size_t len, int *rc)
{
    uint64_t id = f->id;
    char why[160];
    *rc = 0;
    if (id <= c->last_id) {
        rpc_frame_free(f);
        srv_protocol_error(s, c, id, "request id not above the previous one (ids must rise)");
        *rc = -1;
        return NULL;
    }
    if (c->goaway) {
        /* Crossed our GOAWAY: never run, so the client may send it elsewhere. */
        rpc_frame_free(f);
        srv_send_status(s, c, id, TCPOPS__STATUS__UNAVAILABLE, "server is going away");
        return NULL;
    }
    /* protobuf-c cut each string at its first NUL: "people.List\0junk"
     * must not run people.List. */
    int status = TCPOPS__STATUS__OK;
    const rpc_method *m = NULL;
    if (rpc_pb_check(&tcpops__frame__descriptor, payload, len, why, sizeof(why)) < 0) {
        status = TCPOPS__STATUS__INVALID_ARGUMENT;
        rpc_stats_call(s->cfg.stats, "invalid", status);
    } else if ((m = find_method(s, f->method)) == NULL) {
        status = TCPOPS__STATUS__UNIMPLEMENTED;
        snprintf(why, sizeof(why), "unknown method \"%.100s\"", f->method);
        rpc_stats_call(s->cfg.stats, "unknown", status);
    }
    if (m != NULL)
        return m;
    c->last_id = id;
    rpc_frame_free(f);
    srv_send_status(s, c, id, status, why);
    return NULL;
}

/* Whether c has no free in-flight slot. Past the cap the request waits (the
 * peer is not read meanwhile) rather than being refused: a client a frame
 * ahead of the answers it has read, or one that pipelines, loses nothing.
 * notify is set with the count seen, so the job that frees a slot tells the
 * I/O thread. Takes c->lock. */
static int at_cap(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int full = c->inflight >= s->cfg.max_inflight;
    if (full)
        c->notify = 1;
    pthread_mutex_unlock(&c->lock);
    return full;
}

/* Runs request f of method m: here when it is quick and no job waits for a
 * worker (its answer goes out with the rest of the batch's, and the I/O
 * thread needs no notice of it), else on a worker. Takes f. */
static void dispatch(rpc_server *s, srv_conn *c, rpc_frame *f, const rpc_method *m)
{
    uint64_t id = f->id;
    srv_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        rpc_frame_free(f);
        srv_send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->task.fn = run_job;
    j->s = s;
    j->c = c;
    j->req = f;
    j->m = m;
    j->deadline_ms = f->deadline_ms > 0 ? rpc_now_ms() + f->deadline_ms : 0;
    srv_inflight_add(s, c, 1);
    if (m->quick && s->io_state_ok && rpc_taskq_idle(&s->tq)) {
        run_binary(s, j, s->io_state);
        srv_jobs_add(s, -1);
        srv_job_free(j);
        return;
    }
    if (srv_job_push(s, j) < 0) {
        srv_inflight_add(s, c, -1);
        rpc_stats_add(s->cfg.stats, RPC_C_INFLIGHT_LIMIT, 1);
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        srv_job_free(j);
        srv_send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "server queue is full");
    }
}

int srv_on_frame(rpc_server *s, srv_conn *c, const uint8_t *payload, size_t len)
{
    rpc_frame *f = NULL;
    if (rpc_frame_unpack(payload, len, &f) < 0) {
        srv_protocol_error(s, c, 0, "frame does not decode");
        return -1;
    }
    if (f->kind != TCPOPS__KIND__REQUEST)
        return on_control(s, c, f);
    int rc = 0;
    const rpc_method *m = request_method(s, c, f, payload, len, &rc);
    if (m == NULL)
        return rc;
    if (at_cap(s, c)) {
        rpc_frame_free(f);
        c->at_cap = 1;
        return 1;
    }
    c->last_id = f->id;
    dispatch(s, c, f, m);
    return 0;
}

/* ---- life cycle ---- */

/* Fills what cfg left 0 with the defaults of rpc_server_cfg_default, and
 * max_write_buf with rpc_conn_write_buf_default(max_frame). */
static void cfg_resolve(rpc_server_cfg *cfg)
{
    rpc_server_cfg d;
    rpc_server_cfg_default(&d);
    if (cfg->threads <= 0)
        cfg->threads = d.threads;
    if (cfg->max_frame == 0)
        cfg->max_frame = d.max_frame;
    if (cfg->max_conns <= 0)
        cfg->max_conns = d.max_conns;
    if (cfg->max_write_buf == 0)
        cfg->max_write_buf = rpc_conn_write_buf_default(cfg->max_frame);
    if (cfg->max_inflight <= 0)
        cfg->max_inflight = d.max_inflight;
    if (cfg->partial_timeout_ms <= 0)
        cfg->partial_timeout_ms = d.partial_timeout_ms;
    if (cfg->idle_timeout_ms <= 0)
        cfg->idle_timeout_ms = d.idle_timeout_ms;
    if (cfg->queue_max <= 0)
        cfg->queue_max = d.queue_max;
}

int rpc_server_new(rpc_server **out, const rpc_server_cfg *cfg, char *err)
{
    int rc = -ENOMEM;
    if (cfg->text != NULL && (cfg->text_first_byte <= 0 || cfg->text_first_byte > 255)) {
        snprintf(err, RPC_ERRLEN, "line mode needs the byte that starts it (text_first_byte)");
        return -EINVAL;
    }
    rpc_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        return -ENOMEM;
    }
    s->cfg = *cfg;
    cfg_resolve(&s->cfg);
    s->cfg.listen = NULL; /* not owned; the listener keeps the socket */
    s->loop.epfd = s->loop.wakefd = -1;
    for (int i = 0; i < SRV_MAX_LISTENERS; i++)
        s->listeners[i].fd = -1;
    rpc_taskq_cfg tc = {.threads = s->cfg.threads, .queue_max = s->cfg.queue_max,
                        .thread_init = s->cfg.thread_init, .thread_fini = s->cfg.thread_fini,
                        .user = s->cfg.user};
    rpc_taskq_init(&s->tq, &tc);
    pthread_mutex_init(&s->dlock, NULL);
    rpc_cond_init(&s->dcond);
    pthread_mutex_init(&s->nlock, NULL);

    s->methods = calloc(cfg->nmethods ? cfg->nmethods : 1, sizeof(*s->methods));
    if (s->methods == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        goto fail;
    }
    memcpy(s->methods, cfg->methods, cfg->nmethods * sizeof(*s->methods));
    s->cfg.methods = s->methods;
    if ((rc = rpc_evloop_init(&s->loop, SRV_TICK_MS, err)) < 0)
        goto fail;
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
    if (s->nlisteners >= SRV_MAX_LISTENERS || s->started) {
        snprintf(err, RPC_ERRLEN, "cannot add listener %s now", addr);
        return -EINVAL;
    }
    int fd = rpc_sock_listen(&sa, reuseport, SRV_BACKLOG, err);
    if (fd < 0)
        return fd;
    srv_listener *l = &s->listeners[s->nlisteners];
    l->type = SRV_EP_LISTENER;
    l->fd = fd;
    if ((rc = rpc_evloop_add(&s->loop, fd, EPOLLIN, l)) < 0) {
        snprintf(err, RPC_ERRLEN, "epoll_ctl: %s", strerror(-rc));
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
    s->started = 1;
    int rc = rpc_taskq_start(&s->tq);
    if (rc == 0 && s->cfg.thread_init != NULL) {
        rc = s->cfg.thread_init(s->cfg.user, &s->io_state);
        s->io_state_ok = rc == 0;
    } else if (rc == 0) {
        s->io_state_ok = 1;
    }
    if (rc == 0 && (rc = -pthread_create(&s->io_thread, NULL, srv_io_main, s)) == 0)
        return 0;
    s->started = 0;
    return rc;
}

void rpc_server_goaway(rpc_server *s)
{
    atomic_store(&s->want_goaway, 1);
    rpc_evloop_wake(&s->loop);
}

int rpc_server_drain(rpc_server *s, int timeout_ms)
{
    int rc = 0;
    atomic_store(&s->draining, 1);
    rpc_evloop_wake(&s->loop);
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

/* Stops the workers: each gets SRV_STUCK_MS to finish its call. Jobs never
 * started, and notices of jobs that ended after the I/O thread did, still
 * hold connection references, dropped here. Returns whether a worker stuck
 * in a handler was abandoned. */
static int stop_workers(rpc_server *s)
{
    int abandoned = rpc_taskq_stop(&s->tq, SRV_STUCK_MS) > 0;
    rpc_task *t = rpc_taskq_take_all(&s->tq);
    while (t != NULL) {
        srv_job *j = (srv_job *)t;
        srv_conn *c = j->c;
        t = t->next;
        srv_job_free(j);
        srv_conn_unref(c);
    }
    if (!abandoned)
        srv_take_notices(s);
    return abandoned;
}

void rpc_server_free(rpc_server *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        atomic_store(&s->io_stop, 1);
        rpc_evloop_wake(&s->loop);
        pthread_join(s->io_thread, NULL);
    }
    if (s->io_state_ok && s->cfg.thread_fini != NULL)
        s->cfg.thread_fini(s->cfg.user, s->io_state);
    s->io_state_ok = 0;
    int abandoned = stop_workers(s);
    srv_close_listeners(s);
    rpc_evloop_fini(&s->loop);
    free(s->methods);
    if (abandoned)
        return; /* stuck workers may still touch the locks and queue */
    rpc_taskq_fini(&s->tq);
    pthread_mutex_destroy(&s->dlock);
    pthread_cond_destroy(&s->dcond);
    pthread_mutex_destroy(&s->nlock);
    free(s);
}
