/* One client connection's life, on its own thread: connect with backoff,
 * keep alive with PING, read while no caller does (an idle connection's
 * GOAWAY, close or PONG), and tear down, failing every pending call at once.
 * Also the two things every holder of the connection shares: the read role
 * (whoever holds it reads and hands each answer to its caller) and the one
 * write path.
 *
 *   dial --fd--> attach: READY --serve: keepalive, idle reads--> ends (why)
 *     ^                                                            |
 *     +--- backoff <--- teardown: detach pending, fail each <-----+
 *
 * Locks: cn->wlock before cn->lock; ch->lock alone (never with a conn lock).
 * No lock is held while a call completes or an event is emitted. */
#include "rpc/client.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rpc/waiter.h"

void dialer_complete(pending *p, int how, int err, rpc_frame *answer)
{
    /* p may be gone once P_DONE is set (its caller returns): the wake that
     * follows then finds no sleeper, or wakes a later wait on the same stack
     * address spuriously, which every wait tolerates. No wake at all when
     * the caller is not asleep (it reads the word before it sleeps): e.g. a
     * reader completing its own call. */
    p->how = how;
    p->err = err;
    p->answer = answer;
    if (atomic_fetch_or_explicit(&p->word, P_DONE, memory_order_acq_rel) & P_SLEEP)
        rpc_waiter_wake(&p->word, 1);
}

static void complete_list(rpc_pending *list, int how, int err)
{
    while (list != NULL) {
        rpc_pending *next = list->next;
        dialer_complete(as_pending(list), how, err, NULL);
        list = next;
    }
}

/* ---- the write path ---- */

int dialer_queue_locked(conn *cn, const rpc_frame *f)
{
    size_t n = rpc_frame_size(f);
    size_t queued = rpc_buf_used(&cn->outq);
    /* The sender is stuck on a full socket: more calls wait for it rather
     * than pile up behind it. One frame of any size goes when none waits,
     * and a PING always does (a slow peer is not a dead one). */
    if (f->id != 0 && queued > 0 && queued + n > DIALER_QUEUE_MAX)
        return -EAGAIN;
    int rc = rpc_buf_reserve(&cn->outq, n, SIZE_MAX);
    if (rc < 0)
        return rc;
    cn->outq.len += rpc_frame_write(f, cn->outq.data + cn->outq.len);
    if (f->id != 0 && cn->unsent_from == 0)
        cn->unsent_from = f->id;
    return 0;
}

/* The queue's frames go behind what wbuf still holds. Caller holds wlock
 * and lock. */
static int take_queue_locked(conn *cn)
{
    rpc_buf *q = &cn->outq, *w = &cn->io.wbuf;
    if (rpc_buf_used(q) == 0)
        return 0;
    int rc = 0;
    if (rpc_buf_used(w) == 0) {
        rpc_buf t = *w; /* the common case: no copy */
        *w = *q;
        *q = t;
        rpc_buf_consume(q, rpc_buf_used(q));
        cn->io.wprogress = rpc_now_ms();
    } else {
        rc = rpc_conn_queue(&cn->io, rpc_buf_head(q), rpc_buf_used(q));
        if (rc == 0)
            rpc_buf_consume(q, rpc_buf_used(q));
    }
    rpc_buf_shrink(q, 65536);
    return rc;
}

/* Sends wbuf, waiting for room until deadline_ms (0: not at all). Caller
 * holds wlock. A failure (not the deadline: bytes left then wait for the
 * next sender, in order) ends the connection; when not one byte of the
 * batch that began at call id `from` left, its calls count as never sent. */
static void send_batch(conn *cn, uint64_t from, int64_t deadline_ms)
{
    size_t before = rpc_conn_unsent(&cn->io);
    int rc = rpc_conn_flush(&cn->io);
    if (rc == 0 && rpc_conn_unsent(&cn->io) > 0 && deadline_ms > 0)
        rc = rpc_conn_flush_wait(&cn->io, deadline_ms);
    if (rc == 0 || rc == -ETIMEDOUT)
        return;
    pthread_mutex_lock(&cn->lock);
    /* TLS may have sealed some into a record it holds: never "unsent". */
    if (from != 0 && cn->io.tls == NULL && rpc_conn_unsent(&cn->io) == before)
        cn->unsent_from = from;
    dialer_mark_broken_locked(cn, rc);
    pthread_mutex_unlock(&cn->lock);
}

/* Takes wlock: at once or not at all, or (wait) until deadline_ms. */
static int take_wlock(conn *cn, int64_t deadline_ms, int wait)
{
    if (!wait)
        return pthread_mutex_trylock(&cn->wlock) == 0;
    struct timespec ts;
    rpc_ms_to_timespec(deadline_ms, &ts);
    return pthread_mutex_clocklock(&cn->wlock, CLOCK_MONOTONIC, &ts) == 0;
}

/* dialer_flush, with wlock waited for until deadline_ms when wait. */
static void flush_queue(conn *cn, int64_t deadline_ms, int wait)
{
    /* Whoever holds wlock sends; the others leave their frames queued. The
     * holder looks at the queue again after letting go, so a frame queued
     * while it sent (whose thread found wlock taken) leaves all the same. */
    while (take_wlock(cn, deadline_ms, wait)) {
        wait = 0;
        pthread_mutex_lock(&cn->lock);
        int usable = cn->broken == 0 && cn->io.fd >= 0;
        /* Only a batch that starts on a frame boundary may count as unsent. */
        uint64_t from = rpc_conn_unsent(&cn->io) == 0 ? cn->unsent_from : 0;
        int rc = usable ? take_queue_locked(cn) : 0;
        if (usable && rc == 0)
            cn->unsent_from = 0;
        else if (rc < 0)
            dialer_mark_broken_locked(cn, rc);
        pthread_mutex_unlock(&cn->lock);
        if (usable && rc == 0 && rpc_conn_unsent(&cn->io) > 0)
            send_batch(cn, from, deadline_ms);
        pthread_mutex_unlock(&cn->wlock);

        pthread_mutex_lock(&cn->lock);
        int more = rpc_buf_used(&cn->outq) > 0 && cn->broken == 0 && cn->io.fd >= 0;
        pthread_mutex_unlock(&cn->lock);
        if (!more)
            return;
    }
}

void dialer_flush(conn *cn, int64_t deadline_ms)
{
    flush_queue(cn, deadline_ms, 0);
}

void dialer_flush_wait(conn *cn, int64_t deadline_ms)
{
    flush_queue(cn, deadline_ms, 1);
}

/* ---- the read role ---- */

void dialer_leave_reading_locked(conn *cn)
{
    cn->reading = 0;
    if (cn->broken == 0 && cn->io.fd >= 0) {
        /* To the oldest call whose caller waits (not one still writing its
         * request), so that caller reads next; cn->lock keeps it in the
         * table (and alive) while it is woken. */
        for (rpc_pending *l = rpc_conn_oldest(&cn->io); l != NULL; l = l->newer) {
            pending *q = as_pending(l);
            if ((atomic_load(&q->word) & P_LEAD) || !q->waiting)
                continue;
            cn->reading = 1;
            if (atomic_fetch_or(&q->word, P_LEAD) & P_SLEEP)
                rpc_waiter_wake(&q->word, 1);
            break;
        }
    }
    /* The conn thread waits for this when the connection ends or drains;
     * otherwise it is left asleep, so the next caller finds the role free. */
    if (!cn->reading && (cn->broken != 0 || atomic_load(&cn->state) != CONN_READY))
        pthread_cond_signal(&cn->cond);
}

void dialer_mark_broken_locked(conn *cn, int why)
{
    if (cn->broken == 0) {
        cn->broken = why;
        atomic_store(&cn->state, CONN_DOWN);
    }
    pthread_cond_signal(&cn->cond);
}

void dialer_done_reading(conn *cn, int rc)
{
    pthread_mutex_lock(&cn->lock);
    if (rc < 0)
        dialer_mark_broken_locked(cn, rc);
    dialer_leave_reading_locked(cn);
    pthread_mutex_unlock(&cn->lock);
}

/* An answer: to its caller, who may have given up (then it is dropped). */
static void on_response(conn *cn, rpc_frame *f)
{
    rpc_channel *ch = cn->ch;
    atomic_store(&cn->last_frame, atomic_load(&cn->last_rx));
    pthread_mutex_lock(&cn->lock);
    rpc_pending *l = rpc_conn_take(&cn->io, f->id);
    if (l != NULL)
        atomic_fetch_sub(&cn->outstanding, 1);
    /* A refusal of a call that crossed our GOAWAY: it never ran. */
    int unsent = cn->goaway_seen && f->id > cn->goaway_last &&
                 f->status == TCPOPS__STATUS__UNAVAILABLE;
    pthread_mutex_unlock(&cn->lock);
    if (l == NULL) {
        /* The caller gave up (deadline) or the id is not ours: drop it. */
        rpc_stats_add(ch->cfg.stats, RPC_C_LATE_ANSWERS, 1);
        rpc_frame_free(f);
        return;
    }
    client_wake_waiters(ch, 1);
    if (unsent) {
        rpc_frame_free(f);
        dialer_complete(as_pending(l), END_UNSENT, 0, NULL);
        return;
    }
    dialer_complete(as_pending(l), END_ANSWER, 0, f);
}

/* GOAWAY: no new calls here; those above its last id never ran. */
static void on_goaway(conn *cn, rpc_frame *f)
{
    rpc_channel *ch = cn->ch;
    pthread_mutex_lock(&cn->lock);
    cn->goaway_last = f->last_id;
    cn->goaway_seen = 1;
    atomic_store(&cn->soon, 1);
    atomic_store(&cn->state, CONN_DRAINING);
    rpc_pending *unsent = rpc_conn_detach(&cn->io, f->last_id);
    for (rpc_pending *l = unsent; l != NULL; l = l->next)
        atomic_fetch_sub(&cn->outstanding, 1);
    pthread_mutex_unlock(&cn->lock);
    rpc_frame_free(f);
    rpc_stats_add(ch->cfg.stats, RPC_C_GOAWAYS, 1);
    complete_list(unsent, END_UNSENT, 0);
    client_emit(cn, RPC_EV_GOAWAY, 0, 0, NULL);
    client_notify(ch);
}

/* Handles one frame from the server (and frees it). Returns 0, or -EPROTO
 * when the connection must be dropped. */
static int on_frame(conn *cn, rpc_frame *f)
{
    switch (f->kind) {
    case TCPOPS__KIND__RESPONSE:
        on_response(cn, f);
        return 0;
    case TCPOPS__KIND__PONG:
        atomic_store(&cn->last_frame, atomic_load(&cn->last_rx));
        pthread_mutex_lock(&cn->lock);
        cn->ping_sent_ms = 0;
        pthread_mutex_unlock(&cn->lock);
        rpc_frame_free(f);
        return 0;
    case TCPOPS__KIND__GOAWAY:
        on_goaway(cn, f);
        return 0;
    default:
        /* A server does not send requests or pings to its clients. */
        rpc_stats_add(cn->ch->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
        rpc_frame_free(f);
        return -EPROTO;
    }
}

/* Handles every whole frame rbuf holds. Returns how many, or a negative
 * errno when the connection is finished. */
static int handle_frames(conn *cn)
{
    rpc_stats *stats = cn->ch->cfg.stats;
    int frames = 0;
    for (;;) {
        rpc_frame *f = NULL;
        int rc = rpc_conn_read_frame(&cn->io, &f);
        if (rc == 0)
            return frames;
        if (rc < 0) {
            if (rc == -EMSGSIZE)
                rpc_stats_add(stats, RPC_C_OVERSIZE_FRAMES, 1);
            rpc_stats_add(stats, RPC_C_PROTOCOL_ERRORS, 1);
            return rc;
        }
        rc = on_frame(cn, f);
        /* A first frame no server sends (our own REQUEST, from an echo
         * server) is no more a tcpops server than bytes that do not
         * decode. */
        if (rc == -EPROTO && cn->io.frames_in == 1)
            return -EPROTONOSUPPORT;
        if (rc < 0)
            return rc;
        frames++;
    }
}

int dialer_read(conn *cn, int wait_ms)
{
    if (!rpc_conn_buffered(&cn->io)) {
        struct pollfd pf = {.fd = cn->io.fd,
                            .events = cn->io.tls != NULL && rpc_tls_conn_wants_write(cn->io.tls)
                                          ? POLLOUT
                                          : POLLIN};
        int n = poll(&pf, 1, wait_ms);
        if (n < 0)
            return errno == EINTR ? 0 : -errno;
        if (n == 0)
            return 0;
    }
    int frames = 0;
    for (;;) {
        int r = rpc_conn_fill(&cn->io);
        if (r == -EAGAIN)
            break;
        if (r == 0)
            return -ECONNRESET;
        if (r < 0)
            return r;
        atomic_store(&cn->last_rx, cn->io.last_rx);
        atomic_store(&cn->suspect, 0);
        /* Less than asked for (room left): the socket is drained. */
        int drained = cn->io.rbuf.len < cn->io.rbuf.cap;
        /* Callers woken by these answers queue their next calls without
         * sending: one send after the batch takes them all. */
        atomic_store(&cn->bursting, 1);
        int k = handle_frames(cn);
        atomic_store(&cn->bursting, 0);
        if (k < 0)
            return k; /* what was queued stays unsent: teardown says so */
        dialer_flush(cn, 0); /* never waits for room: the reader must read */
        frames += k;
        if (drained)
            break;
    }
    return frames;
}

/* ---- the connection's thread ---- */

/* Queues a PING when the connection has been quiet for keepalive_idle_ms,
 * or at once when it is suspect (a call timed out in its silence); serve's
 * flush sends it. Returns 0, or a negative errno when the connection is
 * finished (no PONG within keepalive_timeout_ms). */
static int keepalive(conn *cn, int64_t now)
{
    const rpc_channel_cfg *cfg = &cn->ch->cfg;
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__PING;
    int rc = 0;
    pthread_mutex_lock(&cn->lock);
    int64_t ping_sent = cn->ping_sent_ms;
    if (ping_sent == 0 && (now - atomic_load(&cn->last_rx) >= cfg->keepalive_idle_ms ||
                           atomic_load(&cn->suspect))) {
        cn->ping_sent_ms = now;
        if (cn->broken == 0)
            rc = dialer_queue_locked(cn, &f);
    }
    pthread_mutex_unlock(&cn->lock);
    if (ping_sent != 0 && now - ping_sent >= cfg->keepalive_timeout_ms)
        return -ETIMEDOUT;
    return rc;
}

/* Looks after a connection until it ends: keepalive, and reading whenever
 * no caller does. Returns why it ended (a negative errno), or 0 when it
 * ended cleanly after a GOAWAY drained. */
static int serve(conn *cn)
{
    for (;;) {
        if (client_stopping(cn->ch))
            return -ECANCELED;
        int64_t now = rpc_now_ms();
        if (atomic_load(&cn->ep->removed) && atomic_load(&cn->state) == CONN_READY)
            atomic_store(&cn->state, CONN_DRAINING); /* no new calls; finish these */
        if (atomic_load(&cn->state) == CONN_DRAINING && atomic_load(&cn->outstanding) == 0)
            return 0;
        pthread_mutex_lock(&cn->lock);
        int broken = cn->broken;
        pthread_mutex_unlock(&cn->lock);
        if (broken != 0)
            return broken;
        int rc = keepalive(cn, now);
        if (rc < 0)
            return rc;
        /* A PING just queued, and bytes a sender left when its deadline
         * came with no sender since. */
        dialer_flush(cn, now + 100);

        /* A ready connection is looked at every 100 ms: to notice stop,
         * keepalive deadlines and anything that came while nobody read. The
         * wait comes first, so a caller finds the role free between its
         * calls. One that ended or drains is woken by its last reader. */
        struct timespec ts;
        rpc_ms_to_timespec(now + 100, &ts);
        pthread_mutex_lock(&cn->lock);
        if (cn->broken == 0 && (atomic_load(&cn->state) == CONN_READY || cn->reading))
            pthread_cond_timedwait(&cn->cond, &cn->lock, &ts);
        int drained = atomic_load(&cn->state) == CONN_DRAINING &&
                      atomic_load(&cn->outstanding) == 0;
        int take = !cn->reading && cn->broken == 0 && !drained;
        if (take)
            cn->reading = 1;
        pthread_mutex_unlock(&cn->lock);
        if (take)
            dialer_done_reading(cn, dialer_read(cn, 100));
    }
}

/* Sleeps for ms unless the channel stops or the conn's endpoint is removed
 * first. Returns 1 when the conn should end. */
static int sleep_unless_stopping(conn *cn, int64_t ms)
{
    rpc_channel *ch = cn->ch;
    struct timespec ts;
    rpc_ms_to_timespec(rpc_now_ms() + ms, &ts);
    pthread_mutex_lock(&ch->lock);
    while (!ch->stopping && !atomic_load(&cn->ep->removed) && ms > 0) {
        if (pthread_cond_timedwait(&ch->cond, &ch->lock, &ts) == ETIMEDOUT)
            break;
    }
    int s = ch->stopping || atomic_load(&cn->ep->removed);
    pthread_mutex_unlock(&ch->lock);
    return s;
}

/* An attempt failed with fd (a negative errno): records it and returns
 * the delay before the next, the one the event reports. */
static int64_t connect_failed(conn *cn, int fd, const char *why)
{
    rpc_channel *ch = cn->ch;
    pthread_mutex_lock(&cn->lock);
    cn->failures_seen++;
    atomic_store(&cn->soon, 0);
    atomic_store(&cn->state, CONN_DOWN);
    pthread_mutex_unlock(&cn->lock);
    atomic_store(&cn->last_err, fd);
    rpc_stats_add(ch->cfg.stats, RPC_C_CONNECT_FAILURES, 1);
    int64_t delay = rpc_backoff_next(&cn->bo);
    /* The event first: a waiter woken next may read what it recorded. */
    client_emit(cn, RPC_EV_CONNECT_FAILED, fd, delay, why);
    client_notify(ch); /* waiters for this attempt can stop waiting */
    return delay;
}

/* With TLS, the handshake on the fd just connected, by connect_deadline.
 * Returns 0 with *tls set (NULL for plaintext), or a negative errno with
 * why filled and fd closed. */
static int secure(conn *cn, int fd, int64_t connect_deadline, rpc_tls_conn **tls, char *why)
{
    *tls = NULL;
    if (cn->ch->cfg.tls == NULL)
        return 0;
    rpc_conn tmp;
    rpc_conn_init(&tmp, fd, 0, 0);
    int rc = rpc_conn_tls_start(&tmp, cn->ch->cfg.tls, cn->ep->addr, cn->ch->cfg.stats, why);
    if (rc == 0)
        rc = rpc_conn_handshake(&tmp, connect_deadline);
    if (rc == -ECONNABORTED)
        snprintf(why, RPC_ERRLEN, "TLS: %s", rpc_conn_tls_error(&tmp));
    else if (rc == -ETIMEDOUT)
        snprintf(why, RPC_ERRLEN, "TLS: no handshake within the connect timeout");
    if (rc == 0) {
        *tls = tmp.tls;
        tmp.tls = NULL;
        tmp.fd = -1;
    }
    rpc_conn_fini(&tmp);
    return rc;
}

/* The connection is up on fd (through tls, or plaintext): a fresh start,
 * and READY. */
static void conn_up(conn *cn, int fd, rpc_tls_conn *tls, int reconnect)
{
    rpc_channel *ch = cn->ch;
    pthread_mutex_lock(&cn->wlock);
    pthread_mutex_lock(&cn->lock);
    rpc_conn_attach(&cn->io, fd);
    cn->io.tls = tls;
    cn->goaway_last = 0;
    cn->goaway_seen = 0;
    cn->ping_sent_ms = 0;
    atomic_store(&cn->suspect, 0);
    cn->failures_seen = 0;
    cn->broken = 0;
    cn->reading = 0;
    atomic_store(&cn->last_rx, cn->io.last_rx);
    atomic_store(&cn->outstanding, 0);
    atomic_store(&cn->state, CONN_READY); /* before soon drops: see rpc_channel_call */
    atomic_store(&cn->soon, 0);
    pthread_mutex_unlock(&cn->lock);
    pthread_mutex_unlock(&cn->wlock);
    rpc_backoff_up(&cn->bo, rpc_now_ms());
    rpc_stats_add(ch->cfg.stats, RPC_C_CONNECTS, 1);
    if (reconnect)
        rpc_stats_add(ch->cfg.stats, RPC_C_RECONNECTS, 1);
    rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_OPEN, 1);
    client_notify(ch);
    client_emit(cn, RPC_EV_CONNECTED, 0, 0, NULL);
}

/* Ends the connection (why: a negative errno, 0 after a drained GOAWAY):
 * stops new calls, unblocks a writer stuck on a full socket and waits for
 * the reader and writer to leave, closes the socket, then fails every call
 * still pending, at once and with no lock held. */
static void teardown(conn *cn, int why)
{
    int err = why != 0 ? why : -ECONNRESET;
    atomic_store(&cn->state, CONN_DOWN);
    shutdown(cn->io.fd, SHUT_RDWR);
    /* No new reader from here; one reading now sees the shutdown. */
    pthread_mutex_lock(&cn->lock);
    if (cn->broken == 0)
        cn->broken = err;
    while (cn->reading)
        pthread_cond_wait(&cn->cond, &cn->lock);
    pthread_mutex_unlock(&cn->lock);
    pthread_mutex_lock(&cn->wlock);
    pthread_mutex_lock(&cn->lock);
    /* After a GOAWAY, calls above its last id were never run by the
     * server (they raced with it): those may go elsewhere, even writes. */
    rpc_pending *unsent = cn->goaway_seen ? rpc_conn_detach(&cn->io, cn->goaway_last) : NULL;
    /* Calls whose frames never left the queue (or a batch of which not a
     * byte left) may go elsewhere too. */
    rpc_pending *queued = cn->unsent_from != 0 ? rpc_conn_detach(&cn->io, cn->unsent_from - 1)
                                               : NULL;
    rpc_pending *lost = rpc_conn_detach(&cn->io, 0);
    atomic_store(&cn->outstanding, 0);
    rpc_conn_close(&cn->io);
    rpc_buf_fini(&cn->outq);
    cn->unsent_from = 0;
    pthread_mutex_unlock(&cn->lock);
    pthread_mutex_unlock(&cn->wlock);
    complete_list(unsent, END_UNSENT, 0);
    complete_list(queued, END_UNSENT, 0);
    complete_list(lost, END_LOST, err);
}

/* After teardown: stats, backoff and the event. */
static void conn_down(conn *cn, int why)
{
    rpc_channel *ch = cn->ch;
    rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_OPEN, -1);
    if (why != 0)
        atomic_store(&cn->last_err, why);
    if (why != 0 && why != -ECANCELED)
        rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_LOST, 1);
    rpc_backoff_down(&cn->bo, rpc_now_ms());
    if (why == 0)
        cn->bo.failures = 0; /* GOAWAY drained: reconnect at once */
    client_notify(ch);
    if (why != -ECANCELED)
        client_emit(cn, RPC_EV_DISCONNECTED, why, 0, NULL);
}

static void *conn_main(void *arg)
{
    conn *cn = arg;
    int ever_up = 0;
    int64_t delay = -1; /* drawn after a failed attempt, or at the loop's top */

    for (;;) {
        if (delay < 0)
            delay = rpc_backoff_next(&cn->bo);
        atomic_store(&cn->soon, delay == 0);
        if (sleep_unless_stopping(cn, delay))
            break;
        delay = -1;
        atomic_store(&cn->state, CONN_CONNECTING);
        int64_t deadline = rpc_now_ms() + cn->ch->cfg.connect_timeout_ms;
        int fd = rpc_sock_connect(&cn->ep->sa, cn->ch->cfg.connect_timeout_ms);
        rpc_tls_conn *tls = NULL;
        char refused[RPC_ERRLEN] = "";
        int rc = fd < 0 ? fd : secure(cn, fd, deadline, &tls, refused);
        if (rc < 0) {
            delay = connect_failed(cn, rc, refused);
            continue;
        }
        conn_up(cn, fd, tls, ever_up);
        ever_up = 1;
        int why = serve(cn);
        teardown(cn, why);
        conn_down(cn, why);
        if (atomic_load(&cn->ep->removed))
            break;
    }
    atomic_store(&cn->soon, 0);
    atomic_store(&cn->state, CONN_DOWN);
    atomic_fetch_add(&cn->ep->exited, 1);
    return NULL;
}

void dialer_init(conn *cn, rpc_channel *ch, endpoint *ep, int index)
{
    cn->ch = ch;
    cn->ep = ep;
    cn->index = index;
    pthread_mutex_init(&cn->wlock, NULL);
    pthread_mutex_init(&cn->lock, NULL);
    rpc_cond_init(&cn->cond);
    atomic_init(&cn->state, CONN_DOWN);
    atomic_init(&cn->soon, 1); /* the first attempt is immediate */
    rpc_backoff_init(&cn->bo, &ch->cfg.backoff, ch->cfg.rand, ch->cfg.rand_user);
    /* No cap on the write buffer: a request is the caller's own, written
     * whole whatever its size (the server judges it against its max_frame). */
    rpc_conn_init(&cn->io, -1, ch->cfg.max_frame, SIZE_MAX);
    rpc_buf_init(&cn->outq);
}

int dialer_start(conn *cn)
{
    return -pthread_create(&cn->thread, NULL, conn_main, cn);
}

void dialer_fini(conn *cn)
{
    pthread_mutex_destroy(&cn->wlock);
    pthread_mutex_destroy(&cn->lock);
    pthread_cond_destroy(&cn->cond);
    rpc_conn_fini(&cn->io);
    rpc_buf_fini(&cn->outq);
}
