/*
 * RPC server: the public API, its life cycle and drain/GOAWAY. The other
 * modules of the server (srv.h is their shared, private header), each
 * calling only those below it:
 *
 *   srvloop.c  the I/O thread: accept and evict at max_conns, reading with
 *              back-pressure, the timeouts
 *   dispatch.c a decoded frame: PING, the method, the max_inflight cap, a
 *              job for a worker or a quick call run at once (srv_on_frame)
 *   lines.c    line mode (text_first_byte connections, cfg.text)
 *   srvconn.c  one connection: references, the writer under its lock and
 *              its high/low-water marks, jobs
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
