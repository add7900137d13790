/* One server connection: its references, its writer (the rpc_conn's write
 * side under the connection's lock, with the drain counter of connections
 * that owe bytes), and the accounting of its jobs. See srv.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rpc/srv.h"
#include "rpc/stats.h"

srv_conn *srv_conn_new(rpc_server *s, int fd, const struct sockaddr_in *peer)
{
    srv_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->type = SRV_EP_CONN;
    c->peer = *peer;
    rpc_conn_init(&c->io, fd, s->cfg.max_frame, s->cfg.max_write_buf);
    if (s->cfg.tls != NULL) {
        char addr[32], err[RPC_ERRLEN];
        rpc_addr_format(peer, addr, sizeof(addr));
        if (rpc_conn_tls_start(&c->io, s->cfg.tls, addr, s->cfg.stats, err) < 0) {
            c->io.fd = -1; /* the caller closes fd */
            rpc_conn_fini(&c->io);
            free(c);
            return NULL;
        }
        c->partial_since = rpc_now_ms(); /* the handshake is owed */
    }
    c->rx_seq = ++s->rx_seq;
    c->want_in = 1;
    c->events = EPOLLIN | EPOLLRDHUP;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    if (rpc_evloop_add(&s->loop, fd, c->events, c) < 0) {
        c->io.fd = -1; /* the caller closes fd */
        rpc_conn_fini(&c->io);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    return c;
}

void srv_conn_unref(srv_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    rpc_conn_fini(&c->io); /* closes the socket */
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

/* Counts c among the connections that owe bytes while its buffer holds any
 * (for rpc_server_drain): before is what it held before a write or flush.
 * Caller holds c->lock. */
static void owed_track(rpc_server *s, srv_conn *c, size_t before)
{
    size_t now = rpc_conn_unsent(&c->io);
    if (before == 0 && now > 0)
        unflushed_add(s, 1);
    else if (before > 0 && now == 0)
        unflushed_add(s, -1);
}

void srv_conn_close(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    size_t before = rpc_conn_unsent(&c->io);
    rpc_buf_consume(&c->io.wbuf, before);
    owed_track(s, c, before);
    pthread_mutex_unlock(&c->lock);
    rpc_evloop_del(&s->loop, c->io.fd);
    shutdown(c->io.fd, SHUT_RDWR);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    c->gone = 1;
    rpc_stats_add(s->cfg.stats, RPC_C_CONNS_OPEN, -1);
    srv_conn_unref(c);
}

void srv_shut_locked(srv_conn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    shutdown(c->io.fd, SHUT_RDWR);
}

void srv_set_events_locked(rpc_server *s, srv_conn *c)
{
    uint32_t want = (c->want_in ? EPOLLIN | EPOLLRDHUP : 0) |
                    (rpc_conn_wants_write(&c->io) ? EPOLLOUT : 0);
    if (want == c->events)
        return;
    rpc_evloop_mod(&s->loop, c->io.fd, want, c);
    c->events = want;
}

int srv_flush_locked(rpc_server *s, srv_conn *c)
{
    size_t before = rpc_conn_unsent(&c->io);
    int rc = rpc_conn_flush(&c->io);
    owed_track(s, c, before);
    if (rc == 0)
        srv_set_events_locked(s, c);
    return rc;
}

/* After a write of rc (rpc_conn_send or rpc_conn_queue, then a flush unless
 * corked): a buffer that would pass max_write_buf (-ENOBUFS), or no memory
 * for it, cuts the peer off as RPC_C_WRITE_BUF_FULL; a failed send just
 * ends the connection. The I/O thread stops handing out work past the
 * high-water mark (srv_answers_held), but calls already running may
 * overshoot it; max_write_buf stays the hard cap. Caller holds c->lock. */
static void written(rpc_server *s, srv_conn *c, size_t before, int rc)
{
    owed_track(s, c, before);
    if (rc == -ENOBUFS || rc == -ENOMEM)
        rpc_stats_add(s->cfg.stats, RPC_C_WRITE_BUF_FULL, 1);
    if (rc < 0)
        srv_shut_locked(c);
    else if (!c->io.corked)
        srv_set_events_locked(s, c);
}

void srv_send_locked(rpc_server *s, srv_conn *c, const rpc_frame *f)
{
    if (c->closed)
        return;
    size_t before = rpc_conn_unsent(&c->io);
    written(s, c, before, rpc_conn_send(&c->io, f));
}

void srv_queue_locked(rpc_server *s, srv_conn *c, const void *p, size_t n)
{
    if (c->closed)
        return;
    size_t before = rpc_conn_unsent(&c->io);
    int rc = rpc_conn_queue(&c->io, p, n);
    if (rc == 0 && !c->io.corked)
        rc = rpc_conn_flush(&c->io);
    written(s, c, before, rc);
}

void srv_cork(rpc_server *s, srv_conn *c, int on)
{
    pthread_mutex_lock(&c->lock);
    if (on || c->closed) {
        c->io.corked = on;
    } else {
        size_t before = rpc_conn_unsent(&c->io);
        written(s, c, before, rpc_conn_cork(&c->io, 0));
    }
    pthread_mutex_unlock(&c->lock);
}

void srv_send(rpc_server *s, srv_conn *c, const rpc_frame *f)
{
    pthread_mutex_lock(&c->lock);
    srv_send_locked(s, c, f);
    pthread_mutex_unlock(&c->lock);
}

void srv_send_status(rpc_server *s, srv_conn *c, uint64_t id, int status, const char *error)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.status = status;
    f.error = (char *)error;
    srv_send(s, c, &f);
}

/* ---- jobs ---- */

int srv_job_end_locked(srv_conn *c)
{
    c->inflight--;
    return c->notify;
}

void srv_jobs_add(rpc_server *s, int delta)
{
    pthread_mutex_lock(&s->dlock);
    s->inflight += delta;
    if (s->inflight == 0)
        pthread_cond_broadcast(&s->dcond);
    pthread_mutex_unlock(&s->dlock);
}

void srv_inflight_add(rpc_server *s, srv_conn *c, int delta)
{
    pthread_mutex_lock(&c->lock);
    c->inflight += delta;
    pthread_mutex_unlock(&c->lock);
    srv_jobs_add(s, delta);
}

int srv_job_push(rpc_server *s, srv_job *j)
{
    atomic_fetch_add(&j->c->refs, 1);
    if (rpc_taskq_push(&s->tq, &j->task) < 0) {
        atomic_fetch_sub(&j->c->refs, 1); /* the I/O thread's stays */
        return -EAGAIN;
    }
    return 0;
}

void srv_job_free(srv_job *j)
{
    rpc_frame_free(j->req);
    free(j->line);
    free(j);
}

void srv_job_done(srv_job *j, int notify)
{
    rpc_server *s = j->s;
    srv_conn *c = j->c;
    srv_jobs_add(s, -1);
    if (notify)
        srv_notice(s, c);
    srv_job_free(j);
    srv_conn_unref(c);
}

void srv_notice(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&s->nlock);
    if (!c->noticed) {
        c->noticed = 1;
        atomic_fetch_add(&c->refs, 1);
        c->nnext = s->notices;
        s->notices = c;
    }
    pthread_mutex_unlock(&s->nlock);
    rpc_evloop_wake(&s->loop);
}

/* Answers waiting for a slow reader hold its connection back: once they
 * reach the high-water mark (half of max_write_buf) the I/O thread hands
 * out no more of its lines or requests and stops reading it, until they
 * drain to the low-water mark (a quarter). */
static size_t wbuf_high(const rpc_server *s) { return s->cfg.max_write_buf / 2; }

size_t srv_wbuf_low(const rpc_server *s) { return s->cfg.max_write_buf / 4; }

int srv_answers_held(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    size_t used = rpc_conn_unsent(&c->io);
    pthread_mutex_unlock(&c->lock);
    if (used >= wbuf_high(s))
        c->wfull = 1;
    else if (used <= srv_wbuf_low(s))
        c->wfull = 0;
    return c->wfull;
}
