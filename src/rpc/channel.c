/*
 * RPC client channel: endpoint choice, retries, the wait queue and
 * membership changes. The connections themselves live in dialer.c and
 * exchange.c, the choice between them in balance.c (see rpc/client.h).
 *
 * The path of one call:
 *
 *   caller thread                                  conn thread (dialer.c)
 *   -------------                                  ----------------------
 *   rpc_channel_call                               conn_main
 *    find_conn                                      rpc_sock_connect, backoff
 *     balance_pick (least outstanding,              conn_up: READY,
 *      primary > backup > ejected)                   wake the queue
 *     none ready, one coming up? wait_for_change    serve, every 100 ms:
 *     every conn full? join the wait queue           keepalive PING
 *      (max_waiting, else RESOURCE_EXHAUSTED),       nobody reads? dialer_read
 *      sleep on ch->free_seq, pick again              (GOAWAY, close, PONG)
 *    exchange_send                                  lost (a reader saw the
 *     lock: rpc_conn_put (id), queue frame           end, or keepalive):
 *     dialer_flush: one send --> socket ---+         teardown: detach pending,
 *    exchange_wait                         |          fail each as lost
 *     read role free? read_for:            v
 *      dialer_read: poll, rpc_conn_fill,  server
 *      rpc_conn_read_frame, answers to     |
 *      their callers (on_response) <-------+
 *      until ours; pass the role on
 *     else sleep on p->word (rpc_waiter)
 *      until answered, made reader, deadline
 *    outcome: answer, or retry elsewhere
 *     (unsent: any call; lost: idempotent once)
 *
 * One thread at a time holds a connection's read role (conn->reading): most
 * often a caller waiting for its own answer, which then wakes straight from
 * the socket instead of from a reader thread. Answers for other callers it
 * reads are handed over; GOAWAY and errors are handled by whoever reads them.
 *
 * Lock order: conn->wlock (the sender: every queued frame in one write,
 * in id order) before conn->lock (state, pending table, send queue, read
 * role). ch->lock (ch->cond: a conn changed state, stop) and ch->eplock
 * (the endpoint list) are never held while taking any other lock; eplock
 * held for writing joins conn threads, which never take it. A waiting
 * caller sleeps on its pending's word (answered, or made reader), which is
 * set without any lock.
 *
 * The wait queue is a count (ch->waiting) and a waiter word (ch->free_seq).
 * A caller counts itself in, reads the word, then picks; whoever frees room
 * lowers outstanding, then bumps the word and wakes one sleeper if anyone is
 * counted in. Either the pick sees the freed room or the word has moved and
 * the sleep returns at once: no wake is lost, and nothing polls.
 */
#include "rpc/channel.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/client.h"
#include "rpc/clock.h"
#include "rpc/waiter.h"

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

/* Fills what cfg leaves unset (zero or below) from rpc_channel_cfg_default. */
static void apply_defaults(rpc_channel_cfg *cfg)
{
    rpc_channel_cfg d;
    rpc_channel_cfg_default(&d);
    if (cfg->pool_size <= 0)
        cfg->pool_size = d.pool_size;
    if (cfg->max_inflight <= 0)
        cfg->max_inflight = d.max_inflight;
    if (cfg->max_waiting < 0)
        cfg->max_waiting = 0;
    if (cfg->max_frame == 0)
        cfg->max_frame = d.max_frame;
    if (cfg->connect_timeout_ms <= 0)
        cfg->connect_timeout_ms = d.connect_timeout_ms;
    if (cfg->deadline_ms <= 0)
        cfg->deadline_ms = d.deadline_ms;
    if (cfg->max_deadline_ms <= 0)
        cfg->max_deadline_ms = d.max_deadline_ms;
    if (cfg->keepalive_idle_ms <= 0)
        cfg->keepalive_idle_ms = d.keepalive_idle_ms;
    if (cfg->keepalive_timeout_ms <= 0)
        cfg->keepalive_timeout_ms = d.keepalive_timeout_ms;
    if (cfg->backoff.initial_ms <= 0)
        cfg->backoff = d.backoff;
}

/* ---- calls ---- */

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

/* Waits until a conn changes state or until_ms. */
static void wait_for_change(rpc_channel *ch, int64_t until_ms)
{
    struct timespec ts;
    rpc_ms_to_timespec(until_ms, &ts);
    pthread_mutex_lock(&ch->lock);
    if (!ch->stopping)
        pthread_cond_timedwait(&ch->cond, &ch->lock, &ts);
    pthread_mutex_unlock(&ch->lock);
}

/* Picks a conn, waiting while none is ready but one is coming up (a
 * connection attempt without backoff). *full: one was ready but full. */
static conn *pick_ready(rpc_channel *ch, const endpoint *avoid, const char *only,
                        int64_t deadline, int *full)
{
    conn *cn = balance_pick(ch, avoid, only, full);
    while (cn == NULL && !*full && !client_stopping(ch) && rpc_now_ms() < deadline) {
        if (!balance_coming_up(ch)) {
            /* A conn turns READY before it clears `soon`: one more look
             * catches a connection that came up since the pick above. */
            return balance_pick(ch, avoid, only, full);
        }
        int64_t until = rpc_now_ms() + ch->cfg.connect_timeout_ms;
        wait_for_change(ch, until < deadline ? until : deadline);
        cn = balance_pick(ch, avoid, only, full);
    }
    return cn;
}

/* Why no conn took the call: fills its error. */
static void no_conn(rpc_channel *ch, rpc_call *call, int full, int64_t deadline)
{
    if (rpc_now_ms() >= deadline) {
        set_error(call, TCPOPS__STATUS__DEADLINE_EXCEEDED, "%s: deadline passed waiting for %s",
                  ch->name, full ? "a free call slot" : "a connection");
    } else if (full) {
        set_error(call, TCPOPS__STATUS__UNAVAILABLE, "%s: channel stopping", ch->name);
    } else {
        /* A call for one endpoint (call->to) not connected yet is no
         * sign the channel sheds load: not counted. */
        if (call->to == NULL)
            rpc_stats_add(ch->cfg.stats, RPC_C_FAIL_FAST, 1);
        int e = balance_last_error(ch);
        call->err = e;
        set_error(call, TCPOPS__STATUS__UNAVAILABLE, "%s: no healthy connection%s%s%s",
                  ch->name, e != 0 ? " (last attempt: " : "", e != 0 ? strerror(-e) : "",
                  e != 0 ? ")" : "");
    }
}

/* One look for a conn to send on. Returns it (holding a use of its
 * endpoint, and out of the wait queue); or NULL with *again set when the
 * call should look again (it joined the wait queue, or slept in it); or
 * NULL with the call's error set when the call ends here. *queued: the
 * call is counted in ch->waiting. */
static conn *find_conn(rpc_channel *ch, rpc_call *call, const endpoint *avoid,
                       int64_t deadline, int *queued, int *again)
{
    int full = 0;
    *again = 0;
    uint32_t seq = atomic_load(&ch->free_seq); /* before the pick: see the top */
    conn *cn = pick_ready(ch, avoid, call->to, deadline, &full);
    if (cn != NULL) {
        if (*queued) {
            /* Out of the queue before sending: counted there, it would
             * refuse a caller while it is itself in flight. */
            atomic_fetch_sub(&ch->waiting, 1);
            *queued = 0;
        }
        return cn;
    }
    if (full && !client_stopping(ch) && rpc_now_ms() < deadline) {
        *again = 1;
        if (*queued) {
            rpc_waiter_wait(&ch->free_seq, seq, deadline);
            return NULL;
        }
        if (atomic_fetch_add(&ch->waiting, 1) < ch->cfg.max_waiting) {
            *queued = 1;
            return NULL; /* counted in: pick again before sleeping */
        }
        atomic_fetch_sub(&ch->waiting, 1);
        *again = 0;
        rpc_stats_add(ch->cfg.stats, RPC_C_INFLIGHT_LIMIT, 1);
        set_error(call, TCPOPS__STATUS__RESOURCE_EXHAUSTED,
                  "%s: every connection has its maximum of calls in flight and %d "
                  "calls already wait", ch->name, ch->cfg.max_waiting);
        return NULL;
    }
    no_conn(ch, call, full, deadline);
    return NULL;
}

/* Sends call on cn and waits for how it ends (in p). Returns 0 when the
 * deadline passed first, 1 otherwise. */
static int attempt(rpc_channel *ch, conn *cn, rpc_call *call, pending *p, int64_t deadline)
{
    if (call->attempts > 0)
        rpc_stats_add(ch->cfg.stats, RPC_C_RETRIES, 1);
    int rc = exchange_send(cn, call, p, deadline);
    if (rc == -EAGAIN) {
        p->how = END_UNSENT; /* e.g. an idle GOAWAY or close, read just now */
        return 1;
    }
    if (rc == -ENOMEM) {
        p->how = END_NONE;
        set_error(call, TCPOPS__STATUS__INTERNAL, "%s: out of memory", ch->name);
        return 1;
    }
    call->attempts++;
    return exchange_wait(cn, p, deadline);
}

/* The call ends without an answer after p (unsent or lost). */
static void fail_attempt(rpc_channel *ch, rpc_call *call, const pending *p, int64_t deadline)
{
    call->err = p->how == END_LOST ? p->err : 0;
    if (p->err == -EPROTONOSUPPORT)
        set_error(call, TCPOPS__STATUS__UNAVAILABLE,
                  "%s (%s): not a tcpops service (its answer is not a frame)", ch->name,
                  call->endpoint);
    else
        set_error(call, TCPOPS__STATUS__UNAVAILABLE,
                  p->how == END_LOST ? "%s (%s): connection lost during the call"
                                     : "%s (%s): could not send the call",
                  ch->name, call->endpoint);
    if (p->how == END_LOST && rpc_now_ms() >= deadline)
        call->status = TCPOPS__STATUS__DEADLINE_EXCEEDED;
}

/* After an attempt on cn: records its outcome, gives cn back, and fills the
 * call when it ends here. Returns 1 when the call should be sent again
 * (elsewhere: *avoid is set to cn's endpoint), 0 when it is over. */
static int after_attempt(rpc_channel *ch, conn *cn, rpc_call *call, const pending *p, int done,
                         int64_t deadline, const endpoint **avoid, int *read_retried)
{
    snprintf(call->endpoint, sizeof(call->endpoint), "%s", cn->ep->addr);
    /* A call for one endpoint (a scrape of that member) says nothing of how
     * it serves the calls spread over all: it neither ejects it nor clears
     * its failures. */
    if (call->to == NULL && (!done || p->how == END_ANSWER || p->how == END_LOST))
        balance_note(cn, !done || p->how == END_LOST);
    /* Timed out while the connection was silent for a keepalive timeout:
     * the peer may have vanished without a reset (a partition). Pick others
     * first, and let its thread PING it now (within 100 ms) rather than
     * after keepalive_idle_ms. */
    if (!done && rpc_now_ms() - atomic_load(&cn->last_rx) >= ch->cfg.keepalive_timeout_ms)
        atomic_store(&cn->suspect, 1);
    if (done && p->how == END_ANSWER)
        atomic_fetch_add_explicit(&cn->answered, 1, memory_order_relaxed);
    const endpoint *used = cn->ep;
    balance_release(cn); /* from here used is only compared, never used */
    if (!done) {
        set_error(call, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                  "%s (%s): deadline passed waiting for the answer", ch->name, call->endpoint);
        return 0;
    }
    if (p->how == END_ANSWER) {
        rpc_frame *a = p->answer;
        call->answer = (struct rpc_answer *)a;
        call->status = a->status;
        snprintf(call->error, sizeof(call->error), "%s", a->error != NULL ? a->error : "");
        call->resp = a->body.data;
        call->resp_len = a->body.len;
        return 0;
    }
    if (p->how == END_NONE)
        return 0;
    *avoid = used;
    if (p->how == END_UNSENT && rpc_now_ms() < deadline)
        return 1; /* never reached the server: safe for any call */
    if (p->how == END_LOST && call->idempotent && !*read_retried && rpc_now_ms() < deadline) {
        *read_retried = 1;
        return 1;
    }
    fail_attempt(ch, call, p, deadline);
    return 0;
}

int rpc_channel_call(rpc_channel *ch, rpc_call *call)
{
    atomic_fetch_add_explicit(&exchange_calls_in_process, 1, memory_order_relaxed);
    int dl = call->deadline_ms > 0 ? call->deadline_ms : ch->cfg.deadline_ms;
    if (dl > ch->cfg.max_deadline_ms)
        dl = ch->cfg.max_deadline_ms;
    int64_t deadline = rpc_now_ms() + dl;
    const endpoint *avoid = NULL;
    int read_retried = 0;
    int queued = 0; /* counted in ch->waiting */

    set_error(call, TCPOPS__STATUS__UNAVAILABLE, "%s: no connection took the call", ch->name);
    call->resp = NULL;
    call->resp_len = 0;
    call->endpoint[0] = '\0';
    call->attempts = 0;
    call->err = 0;
    call->answer = NULL;

    /* Ends by an answer, an error, MAX_ATTEMPTS sends, or the deadline:
     * every pick that sends nothing takes its conn out of the picking (it
     * is no longer ready, or is full), so picks cannot repeat forever; a
     * call that finds every conn full waits for one until its deadline. */
    while (call->attempts < MAX_ATTEMPTS) {
        int again = 0;
        conn *cn = find_conn(ch, call, avoid, deadline, &queued, &again);
        if (cn == NULL && again)
            continue;
        if (cn == NULL)
            break;
        pending p = {.how = END_NONE};
        int done = attempt(ch, cn, call, &p, deadline);
        if (!after_attempt(ch, cn, call, &p, done, deadline, &avoid, &read_retried))
            break;
    }
    if (queued) {
        /* Left the queue without a conn: a wake meant for it goes on. */
        atomic_fetch_sub(&ch->waiting, 1);
        client_wake_waiters(ch, 1);
    }
    rpc_stats_call(ch->cfg.stats, call->method, call->status);
    atomic_fetch_sub_explicit(&exchange_calls_in_process, 1, memory_order_relaxed);
    return call->status;
}

void rpc_call_fini(rpc_call *call)
{
    rpc_frame_free((rpc_frame *)call->answer);
    call->answer = NULL;
    call->resp = NULL;
    call->resp_len = 0;
}

/* ---- state ---- */

int rpc_channel_ready(rpc_channel *ch)
{
    int n = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps; e++)
        for (int i = 0; i < ch->cfg.pool_size; i++)
            n += atomic_load(&ch->eps[e]->conns[i].state) == CONN_READY;
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
            int64_t t = atomic_load(&ch->eps[e]->conns[i].last_frame);
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
            conn *cn = &ep->conns[i];
            info->ready += atomic_load(&cn->state) == CONN_READY;
            info->outstanding += atomic_load(&cn->outstanding);
            info->calls += atomic_load_explicit(&cn->answered, memory_order_relaxed);
            if (info->last_err == 0)
                info->last_err = atomic_load(&cn->last_err);
        }
        info->ejected = rpc_now_ms() < atomic_load(&ep->ejected_until);
    }
    pthread_rwlock_unlock(&ch->eplock);
    return n;
}

/* ---- life cycle and membership ---- */

/* A new endpoint with its conns, threads not started. NULL with err filled. */
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
    ep->conns = calloc((size_t)ch->cfg.pool_size, sizeof(conn));
    if (ep->conns == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        free(ep);
        return NULL;
    }
    for (int i = 0; i < ch->cfg.pool_size; i++)
        dialer_init(&ep->conns[i], ch, ep, i);
    return ep;
}

static int endpoint_start(endpoint *ep, char *err)
{
    for (int i = 0; i < ep->conns[0].ch->cfg.pool_size; i++) {
        int rc = dialer_start(&ep->conns[i]);
        if (rc < 0) {
            snprintf(err, RPC_ERRLEN, "pthread_create: %s", strerror(-rc));
            return rc;
        }
        ep->started++;
    }
    return 0;
}

/* Joins the threads (they must be ending) and frees ep. */
static void endpoint_free(endpoint *ep)
{
    for (int i = 0; i < ep->started; i++)
        pthread_join(ep->conns[i].thread, NULL);
    int n = ep->conns[0].ch->cfg.pool_size;
    for (int i = 0; i < n; i++)
        dialer_fini(&ep->conns[i]);
    free(ep->conns);
    free(ep);
}

/* Takes ep off duty: it drains its calls and stops, and is freed once
 * nothing uses it (reap_retired). Caller holds eplock for writing. */
static void retire(rpc_channel *ch, endpoint *ep)
{
    atomic_store(&ep->removed, 1);
    ep->next = ch->retired;
    ch->retired = ep;
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

static int listed(endpoint *const *list, size_t n, const endpoint *ep)
{
    for (size_t k = 0; k < n; k++)
        if (list[k] == ep)
            return 1;
    return 0;
}

/* The endpoint for addr among the current ones or those of next so far
 * (an address listed twice), or NULL. Caller holds eplock. */
static endpoint *find_endpoint(rpc_channel *ch, endpoint *const *next, size_t nn,
                               const char *addr)
{
    for (size_t e = 0; e < ch->neps; e++)
        if (ch->eps[e] != NULL && strcmp(ch->eps[e]->addr, addr) == 0)
            return ch->eps[e];
    for (size_t k = 0; k < nn; k++)
        if (strcmp(next[k]->addr, addr) == 0)
            return next[k];
    return NULL;
}

/* Builds the next list from addrs (the first np primary): endpoints kept,
 * new ones made and started. Returns how many, or a negative errno with err
 * filled after retiring what this call made (the old list stays). Caller
 * holds eplock for writing. */
static long build_list(rpc_channel *ch, const char *const *addrs, size_t n, size_t np,
                       endpoint **next, char *err)
{
    size_t nn = 0;
    for (size_t i = 0; i < n; i++) {
        endpoint *ep = find_endpoint(ch, next, nn, addrs[i]);
        if (ep != NULL) {
            if (!listed(next, nn, ep)) {
                atomic_store(&ep->backup, i >= np);
                next[nn++] = ep;
            }
            continue; /* listed as primary and backup: primary wins */
        }
        int rc = 0;
        ep = endpoint_new(ch, addrs[i], err);
        if (ep == NULL || (rc = endpoint_start(ep, err)) < 0) {
            if (ep != NULL)
                retire(ch, ep);
            for (size_t k = 0; k < nn; k++)
                if (!listed(ch->eps, ch->neps, next[k]))
                    retire(ch, next[k]); /* keep what was there; drop what is new */
            return rc < 0 ? rc : -EINVAL;
        }
        atomic_store(&ep->backup, i >= np);
        next[nn++] = ep;
    }
    return (long)nn;
}

int rpc_channel_set_endpoints(rpc_channel *ch, const char *const *addrs, size_t n, char *err)
{
    return rpc_channel_set_members(ch, addrs, n, NULL, 0, err);
}

int rpc_channel_set_members(rpc_channel *ch, const char *const *primary, size_t np,
                            const char *const *backup, size_t nb, char *err)
{
    size_t n = np + nb;
    /* An empty list is allowed (a gateway whose names do not resolve yet):
     * every endpoint drains and calls fail fast until one comes. */
    const char **addrs = calloc(n > 0 ? n : 1, sizeof(*addrs));
    endpoint **next = calloc(n > 0 ? n : 1, sizeof(*next));
    if (addrs == NULL || next == NULL) {
        free(addrs);
        free(next);
        snprintf(err, RPC_ERRLEN, "out of memory");
        return -ENOMEM;
    }
    if (np > 0)
        memcpy(addrs, primary, np * sizeof(*addrs));
    if (nb > 0)
        memcpy(addrs + np, backup, nb * sizeof(*addrs));
    pthread_rwlock_wrlock(&ch->eplock);
    long nn = build_list(ch, addrs, n, np, next, err);
    free(addrs);
    if (nn < 0) {
        free(next);
        pthread_rwlock_unlock(&ch->eplock);
        client_notify(ch);
        return (int)nn;
    }
    /* The rest leave: they drain their calls and stop. */
    for (size_t e = 0; e < ch->neps; e++)
        if (!listed(next, (size_t)nn, ch->eps[e]))
            retire(ch, ch->eps[e]);
    free(ch->eps);
    ch->eps = next;
    ch->neps = (size_t)nn;
    reap_retired(ch);
    pthread_rwlock_unlock(&ch->eplock);
    client_notify(ch); /* removed conns sleeping in backoff end now */
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
    apply_defaults(&ch->cfg);
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
    client_wake_waiters(ch, INT_MAX);
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
