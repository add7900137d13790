/*
 * RPC client channel.
 *
 *   caller thread                         connection thread (one per slot)
 *   -------------                         --------------------------------
 *   pick slot (least outstanding)         connect, with backoff
 *   every slot full? join the wait queue    (up: wake the queue)
 *     (at most max_waiting, else
 *     RESOURCE_EXHAUSTED), sleep on
 *     ch->slot_seq until a slot frees or
 *     a connection comes up; pick again
 *   wlock: id = ++next_id,                every 100 ms: keepalive PING; when
 *          pending[id] = &p, write frame    nobody reads, read what came
 *   read role free? take it: poll, recv,    (GOAWAY, close, PONG)
 *     decode, hand each answer to its     lost (a reader saw the end, or
 *     caller, until p is answered;          keepalive): detach pending,
 *     then pass the role to the oldest      fail each with UNAVAILABLE
 *     call still waiting
 *   else sleep on p until answered,
 *     made reader, or deadline
 *
 * One thread at a time holds a connection's read role (slot->reading): most
 * often a caller waiting for its own answer, which then wakes straight from
 * the socket instead of from a reader thread. Answers for other callers it
 * reads are handed over as before; GOAWAY and errors are handled by whoever
 * reads them.
 *
 * Locks: slot->wlock (one frame written whole, ids in wire order) is taken
 * before slot->lock (state, pending table, read role). A waiting caller
 * sleeps on its pending's futex word (answered, or made reader), which is
 * set without any lock. ch->lock guards the slot list's waiters (ch->cond).
 *
 * The wait queue is a count (ch->waiting) and a futex word (ch->slot_seq).
 * A caller counts itself in, reads the word, then picks; whoever frees a slot
 * lowers outstanding, then bumps the word and wakes one sleeper if anyone is
 * counted in. Either the pick sees the freed slot or the word has moved and
 * the sleep returns at once: no wake is lost, and nothing polls.
 */
#include "rpc/channel.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "rpc/buf.h"
#include "rpc/clock.h"

#define TABLE_SIZE 512 /* buckets; a power of two */
#define READ_CHUNK 65536
#define MAX_ATTEMPTS 4            /* sends of one call; a slot found gone before
                                   * anything was sent is not one */
#define EJECT_AFTER 5             /* failures in a row */
#define EJECT_BASE_MS 1000        /* x times ejected ... */
#define EJECT_MAX_MS 30000        /* ... up to this */
/* A first frame header claiming this much or more is not a tcpops frame from
 * any configuration (every --max-frame is below 16 MiB): text such as
 * "HTTP/1.1 400" reads as a length of about 1.2 GB. */
#define FOREIGN_LEN (1u << 24)

enum { S_DOWN, S_CONNECTING, S_READY, S_DRAINING };

/* How a pending call ended before a server answered it. */
enum { END_NONE, END_ANSWER, END_LOST, END_UNSENT };

/* A pending's word: what its caller sleeps on (a futex). */
#define P_DONE 1u            /* completed: how, err, answer are set */
#define P_LEAD 2u            /* holds the read role (set and cleared under slot->lock) */

typedef struct pending {
    struct pending *next;    /* bucket chain, or detached list */
    struct pending *older, *newer; /* the slot's calls in flight, by id */
    uint64_t id;
    int waiting;             /* under slot->lock: its caller is in wait_pending */
    _Atomic uint32_t word;   /* P_DONE | P_LEAD */
    int how;                 /* END_* */
    int err;                 /* END_LOST: the reason */
    rpc_frame *answer;       /* END_ANSWER */
} pending;

static void word_wake(pending *p)
{
    syscall(SYS_futex, &p->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleeps while p's word is still w, for at most until_ms (0: no limit).
 * Returns 0, or ETIMEDOUT once until_ms has passed. Wakes may be spurious. */
static int word_wait(pending *p, uint32_t w, int64_t until_ms)
{
    struct timespec rel, *t = NULL;
    if (until_ms > 0) {
        int64_t left = until_ms - rpc_now_ms();
        if (left <= 0)
            return ETIMEDOUT;
        rel.tv_sec = left / 1000;
        rel.tv_nsec = (left % 1000) * 1000000L;
        t = &rel;
    }
    long r = syscall(SYS_futex, &p->word, FUTEX_WAIT_PRIVATE, w, t, NULL, 0);
    return r < 0 && errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

static int is_done(pending *p)
{
    return (atomic_load_explicit(&p->word, memory_order_acquire) & P_DONE) != 0;
}

typedef struct slot slot;

/* An endpoint is shared by the channel's list, its slot threads and calls
 * in flight; it is freed only once it has left the list, its threads have
 * exited and no call uses it (users == 0), all checked under ch->eplock held
 * for writing. */
typedef struct endpoint {
    char addr[64];
    struct sockaddr_in sa;
    slot *slots;
    _Atomic int removed;      /* left the list: drain, then stop */
    _Atomic int backup;       /* used only when no other endpoint is ready */
    _Atomic int failures;     /* calls lost or timed out in a row */
    _Atomic int ejections;    /* times set aside; each lasts longer */
    _Atomic int64_t ejected_until; /* rpc_now_ms; used last until then */
    _Atomic int users;        /* calls holding one of its slots */
    _Atomic int exited;       /* slot threads that have returned */
    int started;              /* slot threads started */
    struct endpoint *next;    /* on ch->retired */
} endpoint;

struct slot {
    rpc_channel *ch;
    endpoint *ep;
    int index;
    pthread_t thread;
    int started;

    pthread_mutex_t wlock;   /* writers: one frame at a time, in id order */
    pthread_mutex_t lock;    /* guards the fields below */
    pthread_cond_t cond;     /* the slot thread's sleep: a reader left */
    _Atomic int state;       /* read without the lock when picking */
    _Atomic int outstanding;
    _Atomic int soon;        /* a connection is expected at once: worth waiting */
    _Atomic int last_err;    /* why the last attempt or connection failed (-errno) */
    int fd;
    uint64_t next_id;
    uint64_t goaway_last;    /* with goaway_seen: ids above it never ran */
    int goaway_seen;
    pending *table[TABLE_SIZE];
    pending *oldest, *newest; /* the same calls, in id order */
    int reading;             /* a thread holds the read role */
    int broken;              /* the connection failed (read, write, teardown): why (-errno) */
    unsigned failures_seen;  /* consecutive failed attempts (for fail-fast) */
    int64_t ping_sent_ms;    /* 0 when no PING is outstanding */
    int frames_seen;         /* the read role's holder: valid frames on this connection */

    _Atomic int64_t last_rx; /* rpc_now_ms when bytes last arrived */
    _Atomic int64_t last_frame; /* rpc_now_ms when an answer or PONG last arrived */
    rpc_backoff bo;          /* the slot's own thread only */
    rpc_buf rbuf;            /* the read role's holder only */
};

struct rpc_channel {
    rpc_channel_cfg cfg;
    char name[64];
    pthread_rwlock_t eplock; /* guards eps, neps and retired */
    endpoint **eps;
    size_t neps;
    endpoint *retired;       /* removed, not yet freed */
    _Atomic unsigned rr;     /* spreads ties between equally loaded slots */

    pthread_mutex_t lock;
    pthread_cond_t cond;     /* a slot changed state; also wakes sleepers */
    int stopping;            /* under lock */

    _Atomic int waiting;     /* calls in the wait queue (see the top) */
    _Atomic uint32_t slot_seq; /* futex word: bumped when a slot frees or comes up */
};

void rpc_channel_cfg_default(rpc_channel_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->pool_size = 2;
    cfg->max_inflight = 256;
    cfg->max_waiting = 1024;
    cfg->max_frame = RPC_FRAME_MAX_DEFAULT;
    cfg->connect_timeout_ms = 1000;
    cfg->deadline_ms = 2000;
    cfg->max_deadline_ms = 10000;
    cfg->keepalive_idle_ms = 5000;
    cfg->keepalive_timeout_ms = 2000;
    rpc_backoff_cfg_default(&cfg->backoff);
}

static void emit(slot *sl, rpc_event_type type, int err, int64_t delay_ms)
{
    rpc_channel *ch = sl->ch;
    if (ch->cfg.on_event == NULL)
        return;
    rpc_event ev = {
        .type = type,
        .service = ch->name,
        .endpoint = sl->ep->addr,
        .conn = sl->index,
        .err = err,
        .attempt = sl->failures_seen,
        .delay_ms = delay_ms,
    };
    ch->cfg.on_event(ch->cfg.event_user, &ev);
}

/* n call slots were freed (INT_MAX: connections changed state): wakes up to
 * n calls of the wait queue. Any thread, no lock needed. The caller lowered
 * `outstanding` (or changed a state) first: see the top of the file. */
static void wake_waiters(rpc_channel *ch, int n)
{
    if (atomic_load(&ch->waiting) == 0)
        return;
    atomic_fetch_add(&ch->slot_seq, 1);
    syscall(SYS_futex, &ch->slot_seq, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Sleeps while ch->slot_seq is still seq, at most until until_ms. */
static void wait_for_slot(rpc_channel *ch, uint32_t seq, int64_t until_ms)
{
    int64_t left = until_ms - rpc_now_ms();
    if (left <= 0)
        return;
    struct timespec rel = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000L};
    syscall(SYS_futex, &ch->slot_seq, FUTEX_WAIT_PRIVATE, seq, &rel, NULL, 0);
}

static void notify_channel(rpc_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    pthread_cond_broadcast(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    wake_waiters(ch, INT_MAX); /* the queue picks again: a slot may be up, or none left */
}

/* ---- pending table (slot->lock held) ---- */

static void table_put(slot *sl, pending *p)
{
    pending **b = &sl->table[p->id & (TABLE_SIZE - 1)];
    p->next = *b;
    *b = p;
    p->newer = NULL;
    p->older = sl->newest;
    if (sl->newest != NULL)
        sl->newest->newer = p;
    else
        sl->oldest = p;
    sl->newest = p;
}

static void unlink_call(slot *sl, pending *p)
{
    if (p->older != NULL)
        p->older->newer = p->newer;
    else
        sl->oldest = p->newer;
    if (p->newer != NULL)
        p->newer->older = p->older;
    else
        sl->newest = p->older;
    p->older = p->newer = NULL;
}

static pending *table_take(slot *sl, uint64_t id)
{
    for (pending **pp = &sl->table[id & (TABLE_SIZE - 1)]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            pending *p = *pp;
            *pp = p->next;
            unlink_call(sl, p);
            return p;
        }
    }
    return NULL;
}

/* Moves every pending call (with id above `above`) to a list. */
static pending *table_detach(slot *sl, uint64_t above)
{
    pending *list = NULL;
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        for (pending **pp = &sl->table[i]; *pp != NULL;) {
            pending *p = *pp;
            if (p->id > above) {
                *pp = p->next;
                unlink_call(sl, p);
                p->next = list;
                list = p;
            } else {
                pp = &p->next;
            }
        }
    }
    return list;
}

/* Wakes a waiter. p may be gone once P_DONE is set (its caller returns):
 * the wake that follows then finds no sleeper, or wakes a later wait on the
 * same stack address spuriously, which every wait tolerates. */
static void complete(pending *p, int how, int err, rpc_frame *answer)
{
    p->how = how;
    p->err = err;
    p->answer = answer;
    atomic_fetch_or_explicit(&p->word, P_DONE, memory_order_release);
    word_wake(p);
}

static void complete_list(pending *list, int how, int err)
{
    while (list != NULL) {
        pending *next = list->next;
        complete(list, how, err, NULL);
        list = next;
    }
}

/* ---- the read role ---- */

static int on_frame(slot *sl, rpc_frame *f);

/* Gives up the read role and passes it to the oldest call whose caller
 * waits (not one still writing its request), so that caller reads next.
 * Caller holds sl->lock, which keeps that call in the table (and alive)
 * while it is woken. */
static void leave_reading_locked(slot *sl)
{
    sl->reading = 0;
    if (sl->broken == 0 && sl->fd >= 0) {
        for (pending *q = sl->oldest; q != NULL; q = q->newer) {
            if ((atomic_load(&q->word) & P_LEAD) || !q->waiting)
                continue;
            sl->reading = 1;
            atomic_fetch_or(&q->word, P_LEAD);
            word_wake(q);
            break;
        }
    }
    /* The slot thread waits for this when the connection ends or drains;
     * otherwise it is left asleep, so the next caller finds the role free. */
    if (!sl->reading && (sl->broken != 0 || atomic_load(&sl->state) != S_READY))
        pthread_cond_signal(&sl->cond);
}

/* Whether bytes that do not decode are the first the peer sent: then it is
 * not a tcpops server at all (an HTTP port answers "HTTP/1.1 400 ..."). */
static int foreign_peer(slot *sl, int decode_rc)
{
    if (sl->frames_seen != 0)
        return 0;
    return decode_rc != -EMSGSIZE || rpc_frame_get_len(rpc_buf_head(&sl->rbuf)) >= FOREIGN_LEN;
}

/* Reads and handles what the connection sends, waiting up to wait_ms for
 * the first bytes. Only the read role's holder calls it. Returns the frames
 * handled (0 when none came), or a negative errno when the connection is
 * finished: -EPROTONOSUPPORT when the peer's first bytes are not a frame, or
 * its first frame is one a server never sends. */
static int read_frames(slot *sl, int wait_ms)
{
    rpc_channel *ch = sl->ch;
    size_t limit = ch->cfg.max_frame + RPC_FRAME_HEADER + READ_CHUNK;
    struct pollfd pf = {.fd = sl->fd, .events = POLLIN};
    int n = poll(&pf, 1, wait_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n == 0)
        return 0;
    int frames = 0;
    for (;;) {
        if (rpc_buf_reserve(&sl->rbuf, READ_CHUNK, limit) < 0)
            return -ENOMEM;
        size_t room = sl->rbuf.cap - sl->rbuf.len;
        ssize_t r = recv(sl->fd, sl->rbuf.data + sl->rbuf.len, room, 0);
        if (r == 0)
            return -ECONNRESET;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        sl->rbuf.len += (size_t)r;
        atomic_store(&sl->last_rx, rpc_now_ms());
        for (;;) {
            const uint8_t *payload = NULL;
            size_t plen = 0;
            int c = rpc_frame_decode(rpc_buf_head(&sl->rbuf), rpc_buf_used(&sl->rbuf),
                                     ch->cfg.max_frame, &payload, &plen);
            if (c < 0) {
                int foreign = foreign_peer(sl, c);
                if (!foreign)
                    rpc_stats_add(ch->cfg.stats, RPC_C_OVERSIZE_FRAMES, 1);
                rpc_stats_add(ch->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
                return foreign ? -EPROTONOSUPPORT : c;
            }
            if (c == 0)
                break;
            rpc_frame *f = NULL;
            if (rpc_frame_unpack(payload, plen, &f) < 0) {
                rpc_stats_add(ch->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
                return foreign_peer(sl, -EPROTO) ? -EPROTONOSUPPORT : -EPROTO;
            }
            rpc_buf_consume(&sl->rbuf, (size_t)c);
            int rc = on_frame(sl, f);
            /* A first frame no server sends (our own REQUEST, from an echo
             * server) is no more a tcpops server than bytes that do not
             * decode. */
            if (rc == -EPROTO && sl->frames_seen == 0)
                return -EPROTONOSUPPORT;
            if (rc < 0)
                return rc;
            sl->frames_seen++;
            frames++;
        }
        if ((size_t)r < room)
            break; /* the socket had less than we asked for: drained */
    }
    rpc_buf_shrink(&sl->rbuf, 65536);
    return frames;
}

/* Records that the connection has failed (why: a negative errno): no call
 * is picked for it or sent on it from now, and its slot thread, woken here,
 * tears it down. Caller holds sl->lock. */
static void mark_broken_locked(slot *sl, int why)
{
    if (sl->broken == 0) {
        sl->broken = why;
        atomic_store(&sl->state, S_DOWN);
    }
    pthread_cond_signal(&sl->cond);
}

/* After a read: records a connection that ended and passes the role on. */
static void done_reading(slot *sl, int rc)
{
    pthread_mutex_lock(&sl->lock);
    if (rc < 0)
        mark_broken_locked(sl, rc);
    leave_reading_locked(sl);
    pthread_mutex_unlock(&sl->lock);
}

/* ---- connection thread ---- */

/* Writes a control frame (PING). Returns 0 or a negative errno. */
static int send_control(slot *sl, int kind)
{
    uint8_t buf[64];
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = kind;
    size_t n = rpc_frame_write(&f, buf);
    pthread_mutex_lock(&sl->wlock);
    int rc = sl->fd >= 0 ? rpc_sock_write_all(sl->fd, buf, n,
                                              rpc_now_ms() + sl->ch->cfg.keepalive_timeout_ms, NULL)
                         : -ENOTCONN;
    pthread_mutex_unlock(&sl->wlock);
    return rc;
}

/* Handles one frame from the server. Returns 0, or a negative errno when the
 * connection must be dropped. */
static int on_frame(slot *sl, rpc_frame *f)
{
    rpc_channel *ch = sl->ch;
    switch (f->kind) {
    case TCPOPS__KIND__RESPONSE: {
        atomic_store(&sl->last_frame, atomic_load(&sl->last_rx));
        pthread_mutex_lock(&sl->lock);
        pending *p = table_take(sl, f->id);
        if (p != NULL)
            atomic_fetch_sub(&sl->outstanding, 1);
        /* A refusal of a call that crossed our GOAWAY: it never ran. */
        int unsent = sl->goaway_seen && f->id > sl->goaway_last &&
                     f->status == TCPOPS__STATUS__UNAVAILABLE;
        pthread_mutex_unlock(&sl->lock);
        if (p != NULL)
            wake_waiters(ch, 1);
        if (p == NULL) {
            /* The caller gave up (deadline) or the id is not ours: drop it. */
            rpc_stats_add(ch->cfg.stats, RPC_C_LATE_ANSWERS, 1);
            rpc_frame_free(f);
            return 0;
        }
        if (unsent) {
            rpc_frame_free(f);
            complete(p, END_UNSENT, 0, NULL);
            return 0;
        }
        complete(p, END_ANSWER, 0, f);
        return 0;
    }
    case TCPOPS__KIND__PONG:
        atomic_store(&sl->last_frame, atomic_load(&sl->last_rx));
        pthread_mutex_lock(&sl->lock);
        sl->ping_sent_ms = 0;
        pthread_mutex_unlock(&sl->lock);
        rpc_frame_free(f);
        return 0;
    case TCPOPS__KIND__GOAWAY: {
        pthread_mutex_lock(&sl->lock);
        sl->goaway_last = f->last_id;
        sl->goaway_seen = 1;
        atomic_store(&sl->soon, 1);
        atomic_store(&sl->state, S_DRAINING);
        pending *unsent = table_detach(sl, f->last_id);
        for (pending *p = unsent; p != NULL; p = p->next)
            atomic_fetch_sub(&sl->outstanding, 1);
        pthread_mutex_unlock(&sl->lock);
        rpc_frame_free(f);
        rpc_stats_add(ch->cfg.stats, RPC_C_GOAWAYS, 1);
        complete_list(unsent, END_UNSENT, 0);
        emit(sl, RPC_EV_GOAWAY, 0, 0);
        notify_channel(ch);
        return 0;
    }
    default:
        /* A server does not send requests or pings to its clients. */
        rpc_stats_add(ch->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
        rpc_frame_free(f);
        return -EPROTO;
    }
}

static int stopping(rpc_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    int s = ch->stopping;
    pthread_mutex_unlock(&ch->lock);
    return s;
}

/* Looks after a connection until it ends: keepalive, and reading whenever
 * no caller does (an idle connection's GOAWAY, close or PONG). Returns why
 * it ended (a negative errno), or 0 when it ended cleanly after a GOAWAY
 * drained. */
static int serve_conn(slot *sl)
{
    rpc_channel *ch = sl->ch;

    for (;;) {
        if (stopping(ch))
            return -ECANCELED;
        int64_t now = rpc_now_ms();
        if (atomic_load(&sl->ep->removed) && atomic_load(&sl->state) == S_READY)
            atomic_store(&sl->state, S_DRAINING); /* no new calls; finish these */
        int state = atomic_load(&sl->state);
        if (state == S_DRAINING && atomic_load(&sl->outstanding) == 0)
            return 0;

        pthread_mutex_lock(&sl->lock);
        int64_t ping_sent = sl->ping_sent_ms;
        int broken = sl->broken;
        pthread_mutex_unlock(&sl->lock);
        if (broken != 0)
            return broken;
        if (ping_sent != 0 && now - ping_sent >= ch->cfg.keepalive_timeout_ms)
            return -ETIMEDOUT;
        if (ping_sent == 0 && now - atomic_load(&sl->last_rx) >= ch->cfg.keepalive_idle_ms) {
            pthread_mutex_lock(&sl->lock);
            sl->ping_sent_ms = now;
            pthread_mutex_unlock(&sl->lock);
            int rc = send_control(sl, TCPOPS__KIND__PING);
            if (rc < 0)
                return rc;
        }

        /* A ready connection is looked at every 100 ms: to notice stop,
         * keepalive deadlines and anything that came while nobody read. The
         * wait comes first, so a caller finds the role free between its
         * calls. One that ended or drains is woken by its last reader. */
        struct timespec ts;
        rpc_ms_to_timespec(now + 100, &ts);
        pthread_mutex_lock(&sl->lock);
        if (sl->broken == 0 && (atomic_load(&sl->state) == S_READY || sl->reading))
            pthread_cond_timedwait(&sl->cond, &sl->lock, &ts);
        int drained = atomic_load(&sl->state) == S_DRAINING && atomic_load(&sl->outstanding) == 0;
        int take = !sl->reading && sl->broken == 0 && !drained;
        if (take)
            sl->reading = 1;
        pthread_mutex_unlock(&sl->lock);
        if (take)
            done_reading(sl, read_frames(sl, 100));
    }
}

/* Sleeps for ms unless the channel stops or the slot's endpoint is removed
 * first. Returns 1 when the slot should end. */
static int sleep_unless_stopping(slot *sl, int64_t ms)
{
    rpc_channel *ch = sl->ch;
    struct timespec ts;
    rpc_ms_to_timespec(rpc_now_ms() + ms, &ts);
    pthread_mutex_lock(&ch->lock);
    while (!ch->stopping && !atomic_load(&sl->ep->removed) && ms > 0) {
        if (pthread_cond_timedwait(&ch->cond, &ch->lock, &ts) == ETIMEDOUT)
            break;
    }
    int s = ch->stopping || atomic_load(&sl->ep->removed);
    pthread_mutex_unlock(&ch->lock);
    return s;
}

static void *slot_main(void *arg)
{
    slot *sl = arg;
    rpc_channel *ch = sl->ch;
    int ever_up = 0;

    for (;;) {
        int64_t delay = rpc_backoff_next(&sl->bo);
        atomic_store(&sl->soon, delay == 0);
        if (sleep_unless_stopping(sl, delay))
            break;
        atomic_store(&sl->state, S_CONNECTING);
        int fd = rpc_sock_connect(&sl->ep->sa, ch->cfg.connect_timeout_ms);
        if (fd < 0) {
            pthread_mutex_lock(&sl->lock);
            sl->failures_seen++;
            atomic_store(&sl->soon, 0);
            atomic_store(&sl->state, S_DOWN);
            pthread_mutex_unlock(&sl->lock);
            atomic_store(&sl->last_err, fd);
            rpc_stats_add(ch->cfg.stats, RPC_C_CONNECT_FAILURES, 1);
            notify_channel(ch); /* waiters for this attempt can stop waiting */
            /* Peek at the next delay for the event without consuming it. */
            rpc_backoff peek = sl->bo;
            emit(sl, RPC_EV_CONNECT_FAILED, fd, rpc_backoff_next(&peek));
            continue;
        }

        pthread_mutex_lock(&sl->wlock);
        pthread_mutex_lock(&sl->lock);
        sl->fd = fd;
        sl->next_id = 0;
        sl->goaway_last = 0;
        sl->goaway_seen = 0;
        sl->ping_sent_ms = 0;
        sl->failures_seen = 0;
        sl->frames_seen = 0;
        sl->broken = 0;
        sl->reading = 0;
        atomic_store(&sl->last_rx, rpc_now_ms());
        atomic_store(&sl->outstanding, 0);
        atomic_store(&sl->state, S_READY); /* before soon drops: see rpc_channel_call */
        atomic_store(&sl->soon, 0);
        pthread_mutex_unlock(&sl->lock);
        pthread_mutex_unlock(&sl->wlock);
        rpc_backoff_up(&sl->bo, rpc_now_ms());
        rpc_stats_add(ch->cfg.stats, RPC_C_CONNECTS, 1);
        if (ever_up)
            rpc_stats_add(ch->cfg.stats, RPC_C_RECONNECTS, 1);
        ever_up = 1;
        rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_OPEN, 1);
        notify_channel(ch);
        emit(sl, RPC_EV_CONNECTED, 0, 0);

        int why = serve_conn(sl);

        /* Stop new calls, unblock a writer stuck on a full socket, then wait
         * for it to leave before the descriptor goes away. */
        atomic_store(&sl->state, S_DOWN);
        shutdown(fd, SHUT_RDWR);
        /* No new reader from here; one reading now sees the shutdown. */
        pthread_mutex_lock(&sl->lock);
        if (sl->broken == 0)
            sl->broken = why != 0 ? why : -ECONNRESET;
        while (sl->reading)
            pthread_cond_wait(&sl->cond, &sl->lock);
        pthread_mutex_unlock(&sl->lock);
        pthread_mutex_lock(&sl->wlock);
        pthread_mutex_lock(&sl->lock);
        sl->fd = -1;
        /* After a GOAWAY, calls above its last id were never run by the
         * server (they raced with it): those may go elsewhere, even writes. */
        pending *unsent = sl->goaway_seen ? table_detach(sl, sl->goaway_last) : NULL;
        pending *lost = table_detach(sl, 0);
        atomic_store(&sl->outstanding, 0);
        pthread_mutex_unlock(&sl->lock);
        pthread_mutex_unlock(&sl->wlock);
        close(fd);
        rpc_buf_consume(&sl->rbuf, rpc_buf_used(&sl->rbuf));
        rpc_buf_shrink(&sl->rbuf, 0);
        complete_list(unsent, END_UNSENT, 0);
        complete_list(lost, END_LOST, why != 0 ? why : -ECONNRESET);

        rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_OPEN, -1);
        if (why != 0)
            atomic_store(&sl->last_err, why);
        if (why != 0 && why != -ECANCELED)
            rpc_stats_add(ch->cfg.stats, RPC_C_CONNS_LOST, 1);
        rpc_backoff_down(&sl->bo, rpc_now_ms());
        if (why == 0)
            sl->bo.failures = 0; /* GOAWAY drained: reconnect at once */
        notify_channel(ch);
        if (why != -ECANCELED)
            emit(sl, RPC_EV_DISCONNECTED, why, 0);
        if (atomic_load(&sl->ep->removed))
            break;
    }
    atomic_store(&sl->soon, 0);
    atomic_store(&sl->state, S_DOWN);
    atomic_fetch_add(&sl->ep->exited, 1);
    return NULL;
}

/* ---- calls ---- */

/* The ready slot with the fewest calls outstanding, on another endpoint than
 * `avoid` when there is one (a retry should not go back to a worker that just
 * failed it; `avoid` is only compared, never dereferenced: it may be gone).
 * Returns NULL when none is ready; *full says one was ready but at its cap.
 * A slot returned holds a use of its endpoint: release it with unpick. */
static slot *pick(rpc_channel *ch, const endpoint *avoid, int *full)
{
    /* best[0]: primary endpoints, best[1]: backups, best[2]: ejected ones
     * (never set aside so far that nothing is left); then the avoided one. */
    slot *best[3] = {NULL, NULL, NULL}, *fallback = NULL;
    int best_out[3] = {0, 0, 0};
    int64_t now = rpc_now_ms();
    unsigned start = atomic_fetch_add_explicit(&ch->rr, 1, memory_order_relaxed);

    *full = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    size_t total = ch->neps * (size_t)ch->cfg.pool_size;
    for (size_t k = 0; k < total; k++) {
        size_t i = (start + k) % total;
        slot *sl = &ch->eps[i / (size_t)ch->cfg.pool_size]
                        ->slots[i % (size_t)ch->cfg.pool_size];
        if (atomic_load(&sl->state) != S_READY)
            continue;
        int out = atomic_load(&sl->outstanding);
        if (out >= ch->cfg.max_inflight) {
            *full = 1;
            continue;
        }
        if (sl->ep == avoid) {
            if (fallback == NULL || out < atomic_load(&fallback->outstanding))
                fallback = sl;
            continue;
        }
        int b = now < atomic_load(&sl->ep->ejected_until) ? 2
                : atomic_load(&sl->ep->backup)           ? 1
                                                         : 0;
        if (best[b] == NULL || out < best_out[b]) {
            best[b] = sl;
            best_out[b] = out;
        }
    }
    slot *chosen = best[0] != NULL   ? best[0]
                   : best[1] != NULL ? best[1]
                   : best[2] != NULL ? best[2]
                                     : fallback;
    if (chosen != NULL)
        atomic_fetch_add(&chosen->ep->users, 1);
    pthread_rwlock_unlock(&ch->eplock);
    return chosen;
}

static void unpick(slot *sl)
{
    atomic_fetch_sub(&sl->ep->users, 1);
}

/* Outlier ejection: an endpoint that loses or times out EJECT_AFTER calls in a
 * row is used last for 1 s x times ejected (up to 30 s); any answer clears
 * the count. The caller holds a use of sl's endpoint. */
static void note_outcome(slot *sl, int failed)
{
    endpoint *ep = sl->ep;
    if (!failed) {
        atomic_store(&ep->failures, 0);
        return;
    }
    if (atomic_fetch_add(&ep->failures, 1) + 1 < EJECT_AFTER)
        return;
    atomic_store(&ep->failures, 0);
    int n = atomic_fetch_add(&ep->ejections, 1) + 1;
    int64_t ms = (int64_t)EJECT_BASE_MS * n;
    if (ms > EJECT_MAX_MS)
        ms = EJECT_MAX_MS;
    atomic_store(&ep->ejected_until, rpc_now_ms() + ms);
    rpc_stats_add(sl->ch->cfg.stats, RPC_C_EJECTIONS, 1);
    emit(sl, RPC_EV_EJECTED, 0, ms);
}

/* Whether a connection is about to be ready: an attempt without backoff
 * under way, or a GOAWAY'd one that reconnects as soon as it drains. Such a
 * state is worth a short wait; a slot that is backing off is not (fail fast). */
static int coming_up(rpc_channel *ch)
{
    int soon = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps && !soon; e++)
        for (int i = 0; i < ch->cfg.pool_size && !soon; i++)
            soon = atomic_load(&ch->eps[e]->slots[i].soon);
    pthread_rwlock_unlock(&ch->eplock);
    return soon;
}

/* Why a slot last failed (the first slot with a failure), as a negative
 * errno; 0 when none has. */
static int last_error(rpc_channel *ch)
{
    int err = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps && err == 0; e++)
        for (int i = 0; i < ch->cfg.pool_size && err == 0; i++)
            err = atomic_load(&ch->eps[e]->slots[i].last_err);
    pthread_rwlock_unlock(&ch->eplock);
    return err;
}

/* Waits until a slot changes state or until_ms. */
static void wait_for_change(rpc_channel *ch, int64_t until_ms)
{
    struct timespec ts;
    rpc_ms_to_timespec(until_ms, &ts);
    pthread_mutex_lock(&ch->lock);
    if (!ch->stopping)
        pthread_cond_timedwait(&ch->cond, &ch->lock, &ts);
    pthread_mutex_unlock(&ch->lock);
}

/* Takes p back out of sl's calls (deadline, or a send that failed). When
 * it was just made reader, the role goes on to the next call. Returns
 * whether p was still there: if not, whoever took it completes it. */
static int take_back(slot *sl, pending *p)
{
    pthread_mutex_lock(&sl->lock);
    pending *mine = table_take(sl, p->id);
    if (mine != NULL) {
        atomic_fetch_sub(&sl->outstanding, 1);
        if (atomic_fetch_and(&p->word, ~P_LEAD) & P_LEAD)
            leave_reading_locked(sl);
    }
    pthread_mutex_unlock(&sl->lock);
    if (mine != NULL)
        wake_waiters(sl->ch, 1);
    return mine != NULL;
}

/* Sends call on sl with p registered. Returns 0 when the frame went out,
 * -EAGAIN when it provably did not (the slot was not ready: safe to send
 * elsewhere), or -ECONNRESET when it may have partly gone (the connection is
 * torn down and p completes as lost). */
static int send_call(slot *sl, rpc_call *call, pending *p, int64_t deadline)
{
    rpc_channel *ch = sl->ch;
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = (char *)call->method;
    f.trace_id = (char *)(call->trace_id != NULL ? call->trace_id : "");
    f.body.data = (uint8_t *)call->body;
    f.body.len = call->body_len;
    int64_t left = deadline - rpc_now_ms();
    f.deadline_ms = left > 0 ? (uint32_t)left : 1;
    f.id = UINT64_MAX; /* sizes the frame for the largest id */

    /* Nobody reads this connection now: first take in what it has, so a
     * GOAWAY or a close that came while it was idle is seen before the call
     * goes out on it rather than after. */
    pthread_mutex_lock(&sl->lock);
    int peek = !sl->reading && sl->broken == 0 && sl->fd >= 0;
    if (peek)
        sl->reading = 1;
    pthread_mutex_unlock(&sl->lock);
    if (peek)
        done_reading(sl, read_frames(sl, 0));

    uint8_t stackbuf[1024];
    size_t cap = rpc_frame_size(&f);
    uint8_t *buf = cap <= sizeof(stackbuf) ? stackbuf : malloc(cap);
    if (buf == NULL)
        return -ENOMEM;

    int rc = 0;
    struct timespec ts;
    rpc_ms_to_timespec(deadline, &ts);
    /* Bounded by the deadline: a writer stuck on a full socket holds wlock. */
    if (pthread_mutex_clocklock(&sl->wlock, CLOCK_MONOTONIC, &ts) != 0) {
        rc = -EAGAIN;
        goto out_unlocked;
    }
    pthread_mutex_lock(&sl->lock);
    if (atomic_load(&sl->state) != S_READY || sl->fd < 0 || sl->broken != 0 ||
        atomic_load(&sl->outstanding) >= ch->cfg.max_inflight) {
        pthread_mutex_unlock(&sl->lock);
        rc = -EAGAIN;
        goto out;
    }
    p->id = f.id = ++sl->next_id;
    table_put(sl, p);
    atomic_fetch_add(&sl->outstanding, 1);
    int fd = sl->fd;
    pthread_mutex_unlock(&sl->lock);

    size_t n = rpc_frame_write(&f, buf);
    size_t written = 0;
    rc = rpc_sock_write_all(fd, buf, n, deadline, &written);
    if (rc < 0) {
        int mine = take_back(sl, p);
        if (rc != -ETIMEDOUT) {
            pthread_mutex_lock(&sl->lock);
            mark_broken_locked(sl, rc);
            pthread_mutex_unlock(&sl->lock);
        }
        if (written == 0 && mine) {
            rc = -EAGAIN; /* nothing left us: the server never saw it */
        } else {
            /* A torn frame poisons the stream: end the connection. */
            shutdown(fd, SHUT_RDWR);
            if (mine)
                complete(p, END_LOST, rc, NULL);
            rc = -ECONNRESET;
        }
    }
out:
    pthread_mutex_unlock(&sl->wlock);
out_unlocked:
    if (buf != stackbuf)
        free(buf);
    return rc;
}

/* Calls in flight in this process, over all channels. */
static _Atomic int calls_in_process;

/* Reads the connection as its reader until p is answered, the deadline
 * passes or the connection ends, then passes the role on. */
static void read_for(slot *sl, pending *p, int64_t deadline)
{
    int rc = 0;
    /* The only call in flight in the process: the machine has a core to
     * spare, so look for the answer for up to spin_us before sleeping in
     * poll (waking a sleeping CPU costs more than the wait, on a VM). */
    int spin_us = sl->ch->cfg.spin_us;
    int64_t spin_until =
        spin_us > 0 && atomic_load_explicit(&calls_in_process, memory_order_relaxed) == 1
            ? rpc_now_us() + spin_us
            : 0;
    for (;;) {
        int64_t left = deadline - rpc_now_ms();
        if (is_done(p) || left <= 0 || rc < 0)
            break;
        int wait_ms = left < 100 ? (int)left : 100;
        rc = read_frames(sl, spin_until != 0 && rpc_now_us() < spin_until ? 0 : wait_ms);
    }
    pthread_mutex_lock(&sl->lock);
    atomic_fetch_and(&p->word, ~P_LEAD);
    if (rc < 0)
        mark_broken_locked(sl, rc);
    leave_reading_locked(sl);
    pthread_mutex_unlock(&sl->lock);
}

/* Waits for p until deadline, reading the connection itself whenever the
 * read role is free or handed to it. Returns 1 when p completed, 0 on
 * deadline (p is then out of every table and will never be touched again). */
static int wait_pending(slot *sl, pending *p, int64_t deadline)
{
    for (;;) {
        pthread_mutex_lock(&sl->lock);
        p->waiting = 1;
        uint32_t w = atomic_load(&p->word);
        if (w == 0 && !sl->reading && sl->broken == 0 && sl->fd >= 0) {
            sl->reading = 1;
            w = atomic_fetch_or(&p->word, P_LEAD) | P_LEAD;
        }
        pthread_mutex_unlock(&sl->lock);
        if ((w & P_LEAD) && !(w & P_DONE))
            read_for(sl, p, deadline);

        int timed_out = 0;
        while ((w = atomic_load_explicit(&p->word, memory_order_acquire)) == 0 && !timed_out)
            timed_out = word_wait(p, 0, deadline) == ETIMEDOUT;
        if (w & P_DONE)
            return 1;
        if (timed_out || rpc_now_ms() >= deadline)
            break;
    }
    if (take_back(sl, p))
        return 0;
    /* Someone took it from the table to complete it: wait for that. */
    uint32_t w;
    while (!((w = atomic_load_explicit(&p->word, memory_order_acquire)) & P_DONE))
        word_wait(p, w, 0);
    return 1;
}

static void set_error(rpc_call *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(rpc_call *call, int status, const char *fmt, ...)
{
    va_list ap;
    call->status = status;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
}

int rpc_channel_call(rpc_channel *ch, rpc_call *call)
{
    atomic_fetch_add_explicit(&calls_in_process, 1, memory_order_relaxed);
    int64_t now = rpc_now_ms();
    int dl = call->deadline_ms > 0 ? call->deadline_ms : ch->cfg.deadline_ms;
    if (dl > ch->cfg.max_deadline_ms)
        dl = ch->cfg.max_deadline_ms;
    int64_t deadline = now + dl;
    const endpoint *avoid = NULL;
    int read_retried = 0;
    int queued = 0; /* counted in ch->waiting */

    set_error(call, TCPOPS__STATUS__UNAVAILABLE, "%s: no connection took the call",
              ch->name);
    call->resp = NULL;
    call->resp_len = 0;
    call->endpoint[0] = '\0';
    call->attempts = 0;
    call->err = 0;
    call->frame_ = NULL;

    /* Ends by an answer, an error, MAX_ATTEMPTS sends, or the deadline:
     * every pick that sends nothing takes its slot out of the picking (it
     * is no longer ready, or is full), so picks cannot repeat forever; a
     * call that finds every slot full waits for one until its deadline. */
    while (call->attempts < MAX_ATTEMPTS) {
        int full = 0;
        uint32_t seq = atomic_load(&ch->slot_seq); /* before the pick: see the top */
        slot *sl = pick(ch, avoid, &full);
        while (sl == NULL && !full && !stopping(ch) && rpc_now_ms() < deadline) {
            if (!coming_up(ch)) {
                /* A slot turns READY before it clears `soon`: one more look
                 * catches a connection that came up since the pick above. */
                sl = pick(ch, avoid, &full);
                break;
            }
            int64_t until = rpc_now_ms() + ch->cfg.connect_timeout_ms;
            wait_for_change(ch, until < deadline ? until : deadline);
            sl = pick(ch, avoid, &full);
        }
        if (sl == NULL && full && !stopping(ch) && rpc_now_ms() < deadline) {
            if (queued) {
                wait_for_slot(ch, seq, deadline);
                continue;
            }
            if (atomic_fetch_add(&ch->waiting, 1) < ch->cfg.max_waiting) {
                queued = 1;
                continue; /* counted in: pick again before sleeping */
            }
            atomic_fetch_sub(&ch->waiting, 1);
            rpc_stats_add(ch->cfg.stats, RPC_C_INFLIGHT_LIMIT, 1);
            set_error(call, TCPOPS__STATUS__RESOURCE_EXHAUSTED,
                      "%s: every connection has its maximum of calls in flight and %d "
                      "calls already wait", ch->name, ch->cfg.max_waiting);
            break;
        }
        if (sl == NULL) {
            if (rpc_now_ms() >= deadline) {
                set_error(call, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                          "%s: deadline passed waiting for %s", ch->name,
                          full ? "a free call slot" : "a connection");
            } else if (full) {
                set_error(call, TCPOPS__STATUS__UNAVAILABLE, "%s: channel stopping", ch->name);
            } else {
                rpc_stats_add(ch->cfg.stats, RPC_C_FAIL_FAST, 1);
                int e = last_error(ch);
                call->err = e;
                set_error(call, TCPOPS__STATUS__UNAVAILABLE,
                          "%s: no healthy connection%s%s%s", ch->name,
                          e != 0 ? " (last attempt: " : "", e != 0 ? strerror(-e) : "",
                          e != 0 ? ")" : "");
            }
            break;
        }

        if (queued) {
            /* Out of the queue before sending: counted there, it would
             * refuse a caller while it is itself in flight. */
            atomic_fetch_sub(&ch->waiting, 1);
            queued = 0;
        }
        pending p = {.how = END_NONE};
        if (call->attempts > 0)
            rpc_stats_add(ch->cfg.stats, RPC_C_RETRIES, 1);
        int rc = send_call(sl, call, &p, deadline);
        int done = 1;
        if (rc == -EAGAIN) {
            p.how = END_UNSENT; /* e.g. an idle GOAWAY or close, read just now */
        } else if (rc == -ENOMEM) {
            p.how = END_NONE;
            set_error(call, TCPOPS__STATUS__INTERNAL, "%s: out of memory", ch->name);
        } else {
            call->attempts++;
            done = wait_pending(sl, &p, deadline);
        }

        snprintf(call->endpoint, sizeof(call->endpoint), "%s", sl->ep->addr);
        if (!done || p.how == END_ANSWER || p.how == END_LOST)
            note_outcome(sl, !done || p.how == END_LOST);
        const endpoint *used = sl->ep;
        unpick(sl); /* from here sl and used are only compared, never used */
        if (!done) {
            set_error(call, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                      "%s (%s): deadline passed waiting for the answer", ch->name,
                      call->endpoint);
            break;
        }
        if (p.how == END_ANSWER) {
            call->frame_ = p.answer;
            call->status = p.answer->status;
            snprintf(call->error, sizeof(call->error), "%s",
                     p.answer->error != NULL ? p.answer->error : "");
            call->resp = p.answer->body.data;
            call->resp_len = p.answer->body.len;
            break;
        }
        if (p.how == END_NONE)
            break;
        avoid = used;
        if (p.how == END_UNSENT && rpc_now_ms() < deadline)
            continue; /* never reached the server: safe for any call */
        if (p.how == END_LOST && call->idempotent && !read_retried &&
            rpc_now_ms() < deadline) {
            read_retried = 1;
            continue;
        }
        call->err = p.how == END_LOST ? p.err : 0;
        if (p.err == -EPROTONOSUPPORT)
            set_error(call, TCPOPS__STATUS__UNAVAILABLE,
                      "%s (%s): not a tcpops service (its answer is not a frame)", ch->name,
                      call->endpoint);
        else
            set_error(call, TCPOPS__STATUS__UNAVAILABLE,
                      p.how == END_LOST ? "%s (%s): connection lost during the call"
                                        : "%s (%s): could not send the call",
                      ch->name, call->endpoint);
        if (p.how == END_LOST && rpc_now_ms() >= deadline)
            call->status = TCPOPS__STATUS__DEADLINE_EXCEEDED;
        break;
    }
    if (queued) {
        /* Left the queue without a slot: a wake meant for it goes on. */
        atomic_fetch_sub(&ch->waiting, 1);
        wake_waiters(ch, 1);
    }
    rpc_stats_call(ch->cfg.stats, call->method, call->status);
    atomic_fetch_sub_explicit(&calls_in_process, 1, memory_order_relaxed);
    return call->status;
}

void rpc_call_fini(rpc_call *call)
{
    rpc_frame_free(call->frame_);
    call->frame_ = NULL;
    call->resp = NULL;
    call->resp_len = 0;
}

int rpc_channel_ready(rpc_channel *ch)
{
    int n = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps; e++)
        for (int i = 0; i < ch->cfg.pool_size; i++)
            n += atomic_load(&ch->eps[e]->slots[i].state) == S_READY;
    pthread_rwlock_unlock(&ch->eplock);
    return n;
}

int rpc_channel_waiting(rpc_channel *ch)
{
    return atomic_load(&ch->waiting);
}

int64_t rpc_channel_last_answer_ms(rpc_channel *ch)
{
    int64_t last = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps; e++) {
        for (int i = 0; i < ch->cfg.pool_size; i++) {
            int64_t t = atomic_load(&ch->eps[e]->slots[i].last_frame);
            if (t > last)
                last = t;
        }
    }
    pthread_rwlock_unlock(&ch->eplock);
    return last;
}

size_t rpc_channel_endpoints(rpc_channel *ch, rpc_endpoint_info *out, size_t max)
{
    pthread_rwlock_rdlock(&ch->eplock);
    size_t n = ch->neps;
    for (size_t e = 0; e < n && e < max; e++) {
        endpoint *ep = ch->eps[e];
        rpc_endpoint_info *info = &out[e];
        memset(info, 0, sizeof(*info));
        snprintf(info->addr, sizeof(info->addr), "%s", ep->addr);
        info->backup = atomic_load(&ep->backup);
        info->conns = ch->cfg.pool_size;
        for (int i = 0; i < ch->cfg.pool_size; i++) {
            slot *sl = &ep->slots[i];
            info->ready += atomic_load(&sl->state) == S_READY;
            info->outstanding += atomic_load(&sl->outstanding);
            if (info->last_err == 0)
                info->last_err = atomic_load(&sl->last_err);
        }
        info->ejected = rpc_now_ms() < atomic_load(&ep->ejected_until);
    }
    pthread_rwlock_unlock(&ch->eplock);
    return n;
}

/* ---- life cycle ---- */

/* A new endpoint with its slots, threads not started. NULL with err filled. */
static endpoint *endpoint_new(rpc_channel *ch, const char *addr, char *err)
{
    endpoint *ep = calloc(1, sizeof(*ep));
    if (ep == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        return NULL;
    }
    if (rpc_addr_parse(addr, &ep->sa, err) < 0) {
        free(ep);
        return NULL;
    }
    snprintf(ep->addr, sizeof(ep->addr), "%s", addr);
    ep->slots = calloc((size_t)ch->cfg.pool_size, sizeof(slot));
    if (ep->slots == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        free(ep);
        return NULL;
    }
    for (int i = 0; i < ch->cfg.pool_size; i++) {
        slot *sl = &ep->slots[i];
        sl->ch = ch;
        sl->ep = ep;
        sl->index = i;
        sl->fd = -1;
        pthread_mutex_init(&sl->wlock, NULL);
        pthread_mutex_init(&sl->lock, NULL);
        rpc_cond_init(&sl->cond);
        atomic_init(&sl->state, S_DOWN);
        atomic_init(&sl->soon, 1); /* the first attempt is immediate */
        rpc_backoff_init(&sl->bo, &ch->cfg.backoff, ch->cfg.rand, ch->cfg.rand_user);
        rpc_buf_init(&sl->rbuf);
    }
    return ep;
}

static int endpoint_start(endpoint *ep, char *err)
{
    for (int i = 0; i < ep->slots[0].ch->cfg.pool_size; i++) {
        int rc = pthread_create(&ep->slots[i].thread, NULL, slot_main, &ep->slots[i]);
        if (rc != 0) {
            snprintf(err, RPC_ERRLEN, "pthread_create: %s", strerror(rc));
            return -rc;
        }
        ep->started++;
    }
    return 0;
}

/* Joins the threads (they must be ending) and frees ep. */
static void endpoint_free(endpoint *ep)
{
    for (int i = 0; i < ep->started; i++)
        pthread_join(ep->slots[i].thread, NULL);
    int n = ep->slots[0].ch->cfg.pool_size;
    for (int i = 0; i < n; i++) {
        pthread_mutex_destroy(&ep->slots[i].wlock);
        pthread_mutex_destroy(&ep->slots[i].lock);
        pthread_cond_destroy(&ep->slots[i].cond);
        rpc_buf_fini(&ep->slots[i].rbuf);
    }
    free(ep->slots);
    free(ep);
}

/* Frees retired endpoints that nothing uses any more. Caller holds eplock
 * for writing. */
static void reap_retired(rpc_channel *ch)
{
    for (endpoint **pp = &ch->retired; *pp != NULL;) {
        endpoint *ep = *pp;
        if (atomic_load(&ep->exited) == ep->started && atomic_load(&ep->users) == 0) {
            *pp = ep->next;
            endpoint_free(ep);
        } else {
            pp = &ep->next;
        }
    }
}

int rpc_channel_set_endpoints(rpc_channel *ch, const char *const *addrs, size_t n, char *err)
{
    return rpc_channel_set_endpoints2(ch, addrs, n, NULL, 0, err);
}

int rpc_channel_set_endpoints2(rpc_channel *ch, const char *const *primary, size_t np,
                               const char *const *backup, size_t nb, char *err)
{
    int rc = 0;
    size_t n = np + nb;
    if (np == 0) {
        snprintf(err, RPC_ERRLEN, "%s: no endpoints", ch->name);
        return -EINVAL;
    }
    const char **addrs = calloc(n, sizeof(*addrs));
    endpoint **next = calloc(n, sizeof(*next));
    if (addrs == NULL || next == NULL) {
        free(addrs);
        free(next);
        snprintf(err, RPC_ERRLEN, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < np; i++)
        addrs[i] = primary[i];
    for (size_t i = 0; i < nb; i++)
        addrs[np + i] = backup[i];
    size_t nn = 0;
    pthread_rwlock_wrlock(&ch->eplock);
    /* Keep the endpoints still wanted; make the new ones. */
    for (size_t i = 0; i < n; i++) {
        endpoint *found = NULL;
        for (size_t e = 0; e < ch->neps && found == NULL; e++)
            if (ch->eps[e] != NULL && strcmp(ch->eps[e]->addr, addrs[i]) == 0)
                found = ch->eps[e];
        for (size_t k = 0; k < nn && found == NULL; k++)
            if (strcmp(next[k]->addr, addrs[i]) == 0)
                found = next[k]; /* listed twice */
        if (found != NULL) {
            int dup = 0;
            for (size_t k = 0; k < nn; k++)
                dup |= next[k] == found;
            if (!dup) {
                atomic_store(&found->backup, i >= np);
                next[nn++] = found;
            }
            continue; /* listed as primary and backup: primary wins */
        }
        endpoint *ep = endpoint_new(ch, addrs[i], err);
        if (ep == NULL || (rc = endpoint_start(ep, err)) < 0) {
            if (ep != NULL) {
                atomic_store(&ep->removed, 1);
                ep->next = ch->retired;
                ch->retired = ep;
            }
            rc = rc < 0 ? rc : -EINVAL;
            /* Keep what was there; drop what this call made. */
            for (size_t k = 0; k < nn; k++) {
                int old = 0;
                for (size_t e = 0; e < ch->neps; e++)
                    old |= ch->eps[e] == next[k];
                if (!old) {
                    atomic_store(&next[k]->removed, 1);
                    next[k]->next = ch->retired;
                    ch->retired = next[k];
                }
            }
            free(next);
            free(addrs);
            pthread_rwlock_unlock(&ch->eplock);
            notify_channel(ch);
            return rc;
        }
        atomic_store(&ep->backup, i >= np);
        next[nn++] = ep;
    }
    /* The rest leave: they drain their calls and stop. */
    for (size_t e = 0; e < ch->neps; e++) {
        int kept = 0;
        for (size_t k = 0; k < nn; k++)
            kept |= next[k] == ch->eps[e];
        if (!kept) {
            atomic_store(&ch->eps[e]->removed, 1);
            ch->eps[e]->next = ch->retired;
            ch->retired = ch->eps[e];
        }
    }
    free(ch->eps);
    free(addrs);
    ch->eps = next;
    ch->neps = nn;
    reap_retired(ch);
    pthread_rwlock_unlock(&ch->eplock);
    notify_channel(ch); /* removed slots sleeping in backoff end now */
    return 0;
}

int rpc_channel_new(rpc_channel **out, const rpc_channel_cfg *cfg, char *err)
{
    int rc = 0;
    rpc_channel *ch = calloc(1, sizeof(*ch));
    if (ch == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        return -ENOMEM;
    }
    ch->cfg = *cfg;
    snprintf(ch->name, sizeof(ch->name), "%s", cfg->name != NULL ? cfg->name : "service");
    ch->cfg.name = ch->name;
    ch->cfg.endpoints = NULL;
    if (ch->cfg.pool_size <= 0)
        ch->cfg.pool_size = 2;
    if (ch->cfg.max_inflight <= 0)
        ch->cfg.max_inflight = 256;
    if (ch->cfg.max_waiting < 0)
        ch->cfg.max_waiting = 0;
    if (ch->cfg.max_frame == 0)
        ch->cfg.max_frame = RPC_FRAME_MAX_DEFAULT;
    if (ch->cfg.connect_timeout_ms <= 0)
        ch->cfg.connect_timeout_ms = 1000;
    if (ch->cfg.deadline_ms <= 0)
        ch->cfg.deadline_ms = 2000;
    if (ch->cfg.max_deadline_ms <= 0)
        ch->cfg.max_deadline_ms = 10000;
    if (ch->cfg.keepalive_idle_ms <= 0)
        ch->cfg.keepalive_idle_ms = 5000;
    if (ch->cfg.keepalive_timeout_ms <= 0)
        ch->cfg.keepalive_timeout_ms = 2000;
    if (ch->cfg.backoff.initial_ms <= 0)
        rpc_backoff_cfg_default(&ch->cfg.backoff);
    pthread_mutex_init(&ch->lock, NULL);
    rpc_cond_init(&ch->cond);
    pthread_rwlock_init(&ch->eplock, NULL);

    if ((rc = rpc_channel_set_endpoints(ch, cfg->endpoints, cfg->nendpoints, err)) < 0)
        goto fail;
    *out = ch;
    return 0;
fail:
    rpc_channel_free(ch);
    return rc;
}

void rpc_channel_free(rpc_channel *ch)
{
    if (ch == NULL)
        return;
    pthread_mutex_lock(&ch->lock);
    ch->stopping = 1;
    pthread_cond_broadcast(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    wake_waiters(ch, INT_MAX);
    pthread_rwlock_wrlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps; e++)
        endpoint_free(ch->eps[e]);
    while (ch->retired != NULL) {
        endpoint *ep = ch->retired;
        ch->retired = ep->next;
        endpoint_free(ep);
    }
    free(ch->eps);
    pthread_rwlock_unlock(&ch->eplock);
    pthread_rwlock_destroy(&ch->eplock);
    pthread_mutex_destroy(&ch->lock);
    pthread_cond_destroy(&ch->cond);
    free(ch);
}
