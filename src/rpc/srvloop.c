/* The server's I/O thread: it accepts (making room at max_conns by evicting
 * the connection idle longest), reads each connection through its rpc_conn
 * while it can take what comes (the back-pressure of server.c's header
 * comment), hands frames to dispatch (srv_on_frame) and lines to line mode,
 * flushes what workers could not write, and does the periodic work: GOAWAY
 * when asked, stalled frames, peers that read no answers, idle
 * connections. The loop's mechanics (epoll, wake-up, tick) are rpc_evloop's. */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rpc/srv.h"
#include "rpc/stats.h"

#define MAX_EVENTS 64

static int conn_pump(rpc_server *s, srv_conn *c);

/* Why c may not speak line mode (cfg.text_peers), or NULL when it may. */
static const char *text_refusal(const rpc_server *s, const srv_conn *c)
{
    if (s->cfg.text_peers == RPC_TEXT_OFF)
        return "text mode is off on this server";
    if (s->cfg.text_peers == RPC_TEXT_LOOPBACK &&
        (ntohl(c->peer.sin_addr.s_addr) >> 24) != 127)
        return "text mode is served to loopback clients only";
    return NULL;
}

/* Refuses line mode to c: counted, told, answered with why, closed. */
static void refuse_text(rpc_server *s, srv_conn *c, const char *why)
{
    rpc_stats_add(s->cfg.stats, RPC_C_TEXT_REFUSED, 1);
    if (s->cfg.on_text_refused != NULL) {
        char peer[32];
        rpc_addr_format(&c->peer, peer, sizeof(peer));
        s->cfg.on_text_refused(s->cfg.user, peer, why);
    }
    srv_lines_error(s, c, why);
}

/* The first byte decides the mode: a frame (its length starts with 0) or,
 * when the server has line mode and c may speak it, a line. Returns -1
 * when c was closed. */
static int choose_mode(rpc_server *s, srv_conn *c)
{
    uint8_t first = rpc_buf_head(&c->io.rbuf)[0];
    if (s->cfg.text != NULL && first == s->cfg.text_first_byte) {
        const char *why = text_refusal(s, c);
        if (why != NULL) {
            refuse_text(s, c, why);
            return -1;
        }
        c->mode = SRV_MODE_LINES;
        /* Before the first line goes out: its end must be heard of. */
        pthread_mutex_lock(&c->lock);
        c->notify = 1;
        pthread_mutex_unlock(&c->lock);
    } else if (first == 0) {
        c->mode = SRV_MODE_BINARY;
    } else {
        srv_protocol_error(s, c, 0, "a frame starts with byte 0 (a length below 16 MiB)");
        return -1;
    }
    return 0;
}

/* Handles what the read buffer holds, up to a request that waits for a slot
 * or until answers are held (srv_answers_held). Returns the frames consumed,
 * or -1 when c was closed. */
static int process_input(rpc_server *s, srv_conn *c)
{
    int frames = 0;

    if (c->mode == SRV_MODE_UNKNOWN && rpc_buf_used(&c->io.rbuf) > 0 &&
        choose_mode(s, c) < 0)
        return -1;
    if (c->mode == SRV_MODE_LINES)
        return srv_lines_next(s, c);

    c->at_cap = 0;
    for (;;) {
        const uint8_t *payload = NULL;
        size_t plen = 0;
        if (srv_answers_held(s, c))
            break; /* what waits is decoded once the peer has read its answers */
        int n = rpc_conn_next(&c->io, &payload, &plen);
        if (n == -EMSGSIZE) {
            rpc_stats_add(s->cfg.stats, RPC_C_OVERSIZE_FRAMES, 1);
            srv_protocol_error(s, c, 0, "frame larger than the maximum");
            return -1;
        }
        if (n == 0)
            break;
        int rc = srv_on_frame(s, c, payload, plen);
        if (rc < 0)
            return -1;
        if (rc > 0)
            break; /* a request waits for a slot; so does everything behind it */
        rpc_conn_consume(&c->io, (size_t)n);
        frames++;
    }
    return frames;
}

/* Starts or stops the clocks and switches of reading after input was
 * handled: the stalled-frame clock, and rfull. */
static void input_state(srv_conn *c, int frames)
{
    size_t used = rpc_buf_used(&c->io.rbuf);
    if (used == 0 && !rpc_conn_partial(&c->io)) {
        rpc_buf_shrink(&c->io.rbuf, RPC_CONN_READ_CHUNK); /* keeps one read's room */
        c->partial_since = 0;
    } else if (frames > 0 || c->partial_since == 0 || c->at_cap || c->wfull) {
        /* A stalled frame's clock starts at its first byte, or when the
         * server stops holding the peer back. */
        c->partial_since = rpc_now_ms();
    }
    /* Lines wait in rbuf behind the one on a worker: stop reading when no
     * read fits, and read again once half the buffer is free rather than at
     * every line. */
    size_t limit = rpc_conn_rbuf_limit(&c->io);
    if (used + RPC_CONN_READ_CHUNK > limit)
        c->rfull = 1;
    else if (used <= limit / 2)
        c->rfull = 0;
}

/* Moves c on after anything happened to it (bytes read, a job ended, answers
 * flushed): handles what waits in rbuf, turns reading on or off to match,
 * and once the peer has sent its last byte and every answer it is owed is
 * out, closes c. I/O thread. Returns -1 when c was closed. */
static int conn_pump(rpc_server *s, srv_conn *c)
{
    int frames = 0;
    for (;;) {
        srv_cork(s, c, 1);
        int n = process_input(s, c);
        if (n < 0)
            return -1; /* closed, and its answers with it */
        srv_cork(s, c, 0);
        frames += n;
        input_state(c, frames);

        pthread_mutex_lock(&c->lock);
        if (c->wfull && rpc_conn_unsent(&c->io) <= srv_wbuf_low(s)) {
            /* The batch's own answers, or a worker's send, drained what held
             * c back: go on with what waits. */
            c->wfull = 0;
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        c->want_in = !c->rd_eof && !c->at_cap && !c->rfull && !c->wfull;
        /* While answers are held, a job's end may be the send that drains
         * them, so the I/O thread hears of it. */
        c->notify = c->mode == SRV_MODE_LINES || c->at_cap || c->rd_eof || c->wfull;
        srv_set_events_locked(s, c);
        int owed = c->inflight > 0 || rpc_conn_unsent(&c->io) > 0;
        pthread_mutex_unlock(&c->lock);
        /* TLS decrypted more than rbuf took: no readiness will say so. */
        if (c->want_in && rpc_conn_buffered(&c->io))
            srv_notice(s, c);
        /* After EOF, done when nothing runs, nothing waits to be sent and no
         * whole request or line is left; a frame the peer never finished is
         * dropped with the connection. */
        if (c->rd_eof && !owed && !c->at_cap &&
            (c->mode != SRV_MODE_LINES || rpc_buf_used(&c->io.rbuf) == 0)) {
            srv_conn_close(s, c);
            return -1;
        }
        return 0;
    }
}

/* Reads c while it takes input. Returns -1 when c was closed. */
static int on_readable(rpc_server *s, srv_conn *c)
{
    /* Only the I/O thread sets want_in, so it reads it without the lock. */
    while (c->want_in) {
        int r = rpc_conn_fill(&c->io);
        if (r > 0) {
            c->rx_seq = ++s->rx_seq;
            if (conn_pump(s, c) < 0)
                return -1;
            if (r < RPC_CONN_READ_CHUNK)
                return 0;
            continue;
        }
        if (r == -EAGAIN) {
            if (c->io.tls != NULL) {
                /* A TLS record (or the handshake) under way: its clock
                 * runs from its first byte; and TLS may wait to write
                 * before it reads on. */
                int partial = rpc_conn_partial(&c->io);
                if (!partial && rpc_buf_used(&c->io.rbuf) == 0)
                    c->partial_since = 0; /* e.g. the handshake just ended */
                else if (partial && c->partial_since == 0)
                    c->partial_since = rpc_now_ms();
                pthread_mutex_lock(&c->lock);
                srv_set_events_locked(s, c);
                pthread_mutex_unlock(&c->lock);
            }
            return 0;
        }
        if (r < 0) {
            /* A read failed, or (conn_pump leaves room for a read whenever
             * reading is on) an allocation did. A refused TLS handshake
             * was counted as such (RPC_C_TLS_REFUSED). */
            if (r != -ECONNABORTED)
                rpc_stats_add(s->cfg.stats, RPC_C_CONNS_LOST, 1);
            srv_conn_close(s, c);
            return -1;
        }
        /* The peer sent its last byte (a half-close, or a close): what it
         * asked for is still run and answered, then the connection closes. */
        c->rd_eof = 1;
        return conn_pump(s, c);
    }
    return 0;
}

/* The socket is shut both ways (the peer reset it, or a worker shut it
 * down): nothing more can be read or sent. */
static void on_hangup(rpc_server *s, srv_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
        rpc_stats_add(s->cfg.stats, RPC_C_CONNS_LOST, 1);
    srv_conn_close(s, c);
}

/* The socket takes bytes again: sends what waits. After EOF the last answer
 * out is the cue to close; a peer held back for its unread answers goes on
 * once they drain. Returns -1 when c was closed. */
static int on_writable(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int rc = srv_flush_locked(s, c);
    size_t left = rpc_conn_unsent(&c->io);
    pthread_mutex_unlock(&c->lock);
    if (rc < 0) {
        srv_conn_close(s, c); /* epoll lists a descriptor once per batch */
        return -1;
    }
    if ((left == 0 && c->rd_eof) || (c->wfull && left <= srv_wbuf_low(s))) {
        if (conn_pump(s, c) < 0)
            return -1;
    }
    if (c->io.tls != NULL && rpc_tls_conn_wants_write(c->io.tls)) {
        /* TLS had to write for a read (the handshake): send that, then
         * read on; or, while c is held back, just stop watching. */
        if (rpc_tls_conn_write_pending(c->io.tls) < 0) {
            srv_conn_close(s, c);
            return -1;
        }
        if (c->want_in)
            return on_readable(s, c);
        pthread_mutex_lock(&c->lock);
        srv_set_events_locked(s, c);
        pthread_mutex_unlock(&c->lock);
    }
    return 0;
}

void srv_take_notices(rpc_server *s)
{
    pthread_mutex_lock(&s->nlock);
    srv_conn *c = s->notices;
    s->notices = NULL;
    pthread_mutex_unlock(&s->nlock);
    while (c != NULL) {
        /* Once noticed is clear a worker may list c again, through nnext. */
        pthread_mutex_lock(&s->nlock);
        srv_conn *next = c->nnext;
        c->noticed = 0;
        pthread_mutex_unlock(&s->nlock);
        if (!c->gone && conn_pump(s, c) == 0 && c->want_in && rpc_conn_buffered(&c->io))
            on_readable(s, c);
        srv_conn_unref(c);
        c = next;
    }
}

/* Whether nothing runs for c and no answer waits. Takes c->lock. */
static int conn_idle(srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int idle = c->inflight == 0 && rpc_conn_unsent(&c->io) == 0;
    pthread_mutex_unlock(&c->lock);
    return idle;
}

/* At the connection limit: closes the connection idle longest with nothing
 * owed either way, so a new client gets in instead of waiting out the idle
 * timeout. A binary peer gets GOAWAY first: it knows no call of its was cut
 * and reconnects at once. Returns 0, or -1 when every connection is busy. */
static int evict_idlest(rpc_server *s)
{
    srv_conn *victim = NULL;
    for (srv_conn *c = s->conns; c != NULL; c = c->next) {
        if (c->rd_eof || rpc_buf_used(&c->io.rbuf) > 0 ||
            (victim != NULL && c->rx_seq >= victim->rx_seq))
            continue;
        if (conn_idle(c))
            victim = c;
    }
    if (victim == NULL)
        return -1;
    if (victim->mode == SRV_MODE_BINARY)
        srv_send_goaway(s, victim);
    rpc_stats_add(s->cfg.stats, RPC_C_CONNS_EVICTED, 1);
    srv_conn_close(s, victim);
    return 0;
}

static void on_accept(rpc_server *s, srv_listener *l)
{
    for (;;) {
        struct sockaddr_in peer = {0};
        socklen_t plen = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
        if (srv_conn_new(s, fd, &peer) == NULL) {
            close(fd);
            continue;
        }
        rpc_stats_add(s->cfg.stats, RPC_C_CONNS_OPEN, 1);
    }
}

void srv_close_listeners(rpc_server *s)
{
    for (int i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd >= 0) {
            rpc_evloop_del(&s->loop, s->listeners[i].fd);
            close(s->listeners[i].fd);
            s->listeners[i].fd = -1;
        }
    }
}

/* The timeouts of one connection at now. Returns -1 when c was closed. */
static int conn_timeouts(rpc_server *s, srv_conn *c, int64_t now)
{
    /* Whole requests that wait for a slot or for answers to drain, or the
     * leftovers of a peer that has ended, are not a stalled frame. */
    if (c->mode != SRV_MODE_LINES && !c->at_cap && !c->wfull && !c->rd_eof &&
        (rpc_buf_used(&c->io.rbuf) > 0 || rpc_conn_partial(&c->io)) && c->partial_since != 0 &&
        now - c->partial_since > s->cfg.partial_timeout_ms) {
        rpc_stats_add(s->cfg.stats, RPC_C_PARTIAL_TIMEOUT, 1);
        srv_conn_close(s, c);
        return -1;
    }
    /* A peer that has read none of its answers for as long is not coming
     * back for them: holding it back would keep it open forever. */
    pthread_mutex_lock(&c->lock);
    int unread = rpc_conn_unsent(&c->io) > 0 &&
                 now - c->io.wprogress > s->cfg.partial_timeout_ms;
    pthread_mutex_unlock(&c->lock);
    if (unread) {
        rpc_stats_add(s->cfg.stats, RPC_C_WRITE_BUF_FULL, 1);
        srv_conn_close(s, c);
        return -1;
    }
    if (now - c->io.last_rx > s->cfg.idle_timeout_ms && conn_idle(c)) {
        rpc_stats_add(s->cfg.stats, RPC_C_IDLE_CLOSED, 1);
        srv_conn_close(s, c);
        return -1;
    }
    /* The client should have closed by now; one that ignores GOAWAY does not
     * keep a recycled connection forever. */
    if (c->goaway && now - c->goaway_at >= SRV_GOAWAY_GRACE_MS && conn_idle(c)) {
        srv_conn_close(s, c);
        return -1;
    }
    return 0;
}

/* Periodic work: GOAWAY when asked, lines the full job queue turned away,
 * and the timeouts of every connection. */
static void housekeeping(rpc_server *s)
{
    int64_t now = rpc_now_ms();
    int goaway = atomic_exchange(&s->want_goaway, 0);
    srv_conn *next;

    for (srv_conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (goaway)
            srv_send_goaway(s, c);
        if (c->mode == SRV_MODE_LINES && rpc_buf_used(&c->io.rbuf) > 0 && conn_pump(s, c) < 0)
            continue;
        conn_timeouts(s, c, now);
    }
}

/* The events of one batch. Connections first: each event closes at most its
 * own connection, so none still listed is ever freed. Accepting may close
 * another one (evict_idlest), so it waits until every event of the batch
 * has been handled. */
static void on_events(rpc_server *s, struct epoll_event *evs, int n)
{
    int type[MAX_EVENTS];
    /* What each event is for, read before anything is closed. */
    for (int i = 0; i < n; i++)
        type[i] = *(int *)evs[i].data.ptr;
    for (int i = 0; i < n; i++) {
        if (type[i] != SRV_EP_CONN)
            continue;
        srv_conn *c = evs[i].data.ptr;
        if ((evs[i].events & EPOLLOUT) && on_writable(s, c) < 0)
            continue;
        if (evs[i].events & (EPOLLHUP | EPOLLERR))
            on_hangup(s, c);
        else if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
            on_readable(s, c);
    }
    for (int i = 0; i < n; i++)
        if (type[i] == SRV_EP_LISTENER)
            on_accept(s, evs[i].data.ptr);
}

/* Draining: stop accepting and tell every client at once, before anyone
 * waits for the calls in flight: a client must see GOAWAY before its
 * connection closes, or it cannot tell which calls never ran. */
static void start_drain(rpc_server *s)
{
    srv_close_listeners(s);
    for (srv_conn *c = s->conns; c != NULL; c = c->next)
        srv_send_goaway(s, c);
    pthread_mutex_lock(&s->dlock);
    s->drain_started = 1;
    pthread_cond_broadcast(&s->dcond);
    pthread_mutex_unlock(&s->dlock);
}

void *srv_io_main(void *arg)
{
    rpc_server *s = arg;
    struct epoll_event evs[MAX_EVENTS];

    while (!atomic_load(&s->io_stop)) {
        int woke = 0;
        int n = rpc_evloop_wait(&s->loop, evs, MAX_EVENTS, &woke);
        on_events(s, evs, n);
        if (woke)
            srv_take_notices(s);
        if (atomic_load(&s->draining) && s->nlisteners > 0 && s->listeners[0].fd >= 0)
            start_drain(s);
        if (rpc_evloop_tick(&s->loop, rpc_now_ms(), atomic_load(&s->want_goaway)))
            housekeeping(s);
    }
    /* Stopping: cut every connection that is left. */
    while (s->conns != NULL)
        srv_conn_close(s, s->conns);
    srv_take_notices(s);
    return NULL;
}
