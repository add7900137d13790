/* One call on one client connection: file it in the pending table and
 * queue its frame (under the conn's lock, ids in wire order) for whichever
 * caller sends next, so the frames of callers arriving together leave in
 * one write; then wait for its answer — reading the socket itself when the
 * read role is free, so the caller wakes straight from the socket, or
 * sleeping on its pending's word until a reader hands it the answer or the
 * role.
 *
 * Locks: cn->lock, released before dialer_flush (cn->wlock before
 * cn->lock). A waiting caller sleeps on its pending's word (rpc_waiter),
 * which is set without any lock. */
#include "rpc/client.h"

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "rpc/clock.h"
#include "rpc/waiter.h"

_Atomic int exchange_calls_in_process;

/* Takes p back out of cn's calls (deadline, or a send that failed). When
 * it was just made reader, the role goes on to the next call. Returns
 * whether p was still there: if not, whoever took it completes it. */
static int take_back(conn *cn, pending *p)
{
    pthread_mutex_lock(&cn->lock);
    rpc_pending *mine = rpc_conn_take(&cn->io, p->link.id);
    if (mine != NULL) {
        atomic_fetch_sub(&cn->outstanding, 1);
        if (atomic_fetch_and(&p->word, ~P_LEAD) & P_LEAD)
            dialer_leave_reading_locked(cn);
    }
    pthread_mutex_unlock(&cn->lock);
    if (mine != NULL)
        client_wake_waiters(cn->ch, 1);
    return mine != NULL;
}

/* Nobody reads this connection now: take in what it has, so a GOAWAY or a
 * close that came while it was idle is seen before a call goes out on it
 * rather than after. */
static void read_idle(conn *cn)
{
    pthread_mutex_lock(&cn->lock);
    int peek = !cn->reading && cn->broken == 0 && cn->io.fd >= 0;
    if (peek)
        cn->reading = 1;
    pthread_mutex_unlock(&cn->lock);
    if (peek)
        dialer_done_reading(cn, dialer_read(cn, 0));
}

int exchange_send(conn *cn, rpc_call *call, pending *p, int64_t deadline)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = (char *)call->method;
    f.trace_id = (char *)(call->trace_id != NULL ? call->trace_id : "");
    f.body.data = (uint8_t *)call->body;
    f.body.len = call->body_len;
    int64_t left = deadline - rpc_now_ms();
    f.deadline_ms = left > 0 ? (uint32_t)left : 1;

    read_idle(cn);
    pthread_mutex_lock(&cn->lock);
    if (atomic_load(&cn->state) != CONN_READY || cn->io.fd < 0 || cn->broken != 0 ||
        atomic_load(&cn->outstanding) >= cn->ch->cfg.max_inflight) {
        pthread_mutex_unlock(&cn->lock);
        return -EAGAIN;
    }
    /* The id and the place in the queue in one step: ids in wire order. */
    rpc_conn_put(&cn->io, &p->link);
    f.id = p->link.id;
    int rc = dialer_queue_locked(cn, &f);
    if (rc < 0) {
        rpc_conn_take(&cn->io, f.id);
        pthread_mutex_unlock(&cn->lock);
        /* A full queue: wait for its stuck sender (or send it ourselves),
         * so that the retry this -EAGAIN leads to does not spin. */
        if (rc == -EAGAIN)
            dialer_flush_wait(cn, deadline);
        return rc;
    }
    atomic_fetch_add(&cn->outstanding, 1);
    pthread_mutex_unlock(&cn->lock);
    if (!atomic_load(&cn->bursting))
        dialer_flush(cn, deadline);
    return 0;
}

/* Sleeps while p's word still reads w, marking it P_SLEEP first so that
 * whoever changes it knows to wake the caller; returns 0 at once if the
 * word moved meanwhile. As rpc_waiter_wait otherwise. */
static int sleep_on(pending *p, uint32_t w, int64_t until_ms)
{
    if (!(w & P_SLEEP)) {
        if (!atomic_compare_exchange_strong(&p->word, &w, w | P_SLEEP))
            return 0;
        w |= P_SLEEP;
    }
    return rpc_waiter_wait(&p->word, w, until_ms);
}

static int is_done(pending *p)
{
    return (atomic_load_explicit(&p->word, memory_order_acquire) & P_DONE) != 0;
}

/* Reads the connection as its reader until p is answered, the deadline
 * passes or the connection ends, then passes the role on. */
static void read_for(conn *cn, pending *p, int64_t deadline)
{
    int rc = 0;
    /* The only call in flight in the process: the machine has a core to
     * spare, so look for the answer for up to spin_us before sleeping in
     * poll (waking a sleeping CPU costs more than the wait, on a VM). */
    int spin_us = cn->ch->cfg.spin_us;
    int64_t spin_until =
        spin_us > 0 &&
                atomic_load_explicit(&exchange_calls_in_process, memory_order_relaxed) == 1
            ? rpc_now_us() + spin_us
            : 0;
    for (;;) {
        int64_t left = deadline - rpc_now_ms();
        if (is_done(p) || left <= 0 || rc < 0)
            break;
        int wait_ms = left < 100 ? (int)left : 100;
        rc = dialer_read(cn, spin_until != 0 && rpc_now_us() < spin_until ? 0 : wait_ms);
    }
    pthread_mutex_lock(&cn->lock);
    atomic_fetch_and(&p->word, ~P_LEAD);
    if (rc < 0)
        dialer_mark_broken_locked(cn, rc);
    dialer_leave_reading_locked(cn);
    pthread_mutex_unlock(&cn->lock);
}

int exchange_wait(conn *cn, pending *p, int64_t deadline)
{
    for (;;) {
        pthread_mutex_lock(&cn->lock);
        p->waiting = 1;
        uint32_t w = atomic_load(&p->word);
        if ((w & ~P_SLEEP) == 0 && !cn->reading && cn->broken == 0 && cn->io.fd >= 0) {
            cn->reading = 1;
            w = atomic_fetch_or(&p->word, P_LEAD) | P_LEAD;
        }
        pthread_mutex_unlock(&cn->lock);
        if ((w & P_LEAD) && !(w & P_DONE))
            read_for(cn, p, deadline);

        int timed_out = 0;
        while (((w = atomic_load_explicit(&p->word, memory_order_acquire)) & ~P_SLEEP) == 0 &&
               !timed_out)
            timed_out = sleep_on(p, w, deadline) == -ETIMEDOUT;
        if (w & P_DONE)
            return 1;
        if (timed_out || rpc_now_ms() >= deadline)
            break;
    }
    if (take_back(cn, p))
        return 0;
    /* Someone took it from the table to complete it: wait for that. */
    uint32_t w;
    while (!((w = atomic_load_explicit(&p->word, memory_order_acquire)) & P_DONE))
        sleep_on(p, w, 0);
    return 1;
}
