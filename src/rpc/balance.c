/* Which connection takes a call: the ready one with the fewest calls
 * outstanding, primary endpoints before backups before ejected ones; and
 * outlier ejection, which sets aside an endpoint that keeps failing calls.
 * Reads connection state without their locks (atomics); takes ch->eplock
 * for reading to walk the endpoint list. */
#include "rpc/client.h"

#include <string.h>

#include "rpc/clock.h"

/* The tier a ready conn is in now: 0 primary, 1 backup, 2 its endpoint
 * ejected, 3 the conn suspect (silent while a call timed out: the peer may
 * be gone; picked after the endpoint a retry avoids, too). Never set aside
 * so far that nothing is left. */
static int tier(const conn *cn, int64_t now)
{
    if (atomic_load(&cn->suspect))
        return 3;
    if (now < atomic_load(&cn->ep->ejected_until))
        return 2;
    return atomic_load(&cn->ep->backup) ? 1 : 0;
}

conn *balance_pick(rpc_channel *ch, const endpoint *avoid, const char *only, int *full)
{
    /* best[tier], then the avoided endpoint as a last resort. */
    conn *best[4] = {NULL, NULL, NULL, NULL}, *fallback = NULL;
    int best_out[4] = {0, 0, 0, 0};
    int64_t now = rpc_now_ms();
    unsigned start = atomic_fetch_add_explicit(&ch->rr, 1, memory_order_relaxed);
    size_t pool = (size_t)ch->cfg.pool_size;

    *full = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    size_t total = ch->neps * pool;
    for (size_t k = 0; k < total; k++) {
        size_t i = (start + k) % total;
        conn *cn = &ch->eps[i / pool]->conns[i % pool];
        if (atomic_load(&cn->state) != CONN_READY ||
            (only != NULL && strcmp(cn->ep->addr, only) != 0))
            continue;
        int out = atomic_load(&cn->outstanding);
        if (out >= ch->cfg.max_inflight) {
            *full = 1;
            continue;
        }
        if (cn->ep == avoid) {
            if (fallback == NULL || out < atomic_load(&fallback->outstanding))
                fallback = cn;
            continue;
        }
        int b = tier(cn, now);
        if (best[b] == NULL || out < best_out[b]) {
            best[b] = cn;
            best_out[b] = out;
        }
    }
    /* The avoided endpoint (a retry's) comes before a suspect conn. */
    conn *chosen = best[3];
    chosen = fallback != NULL ? fallback : chosen;
    for (int b = 2; b >= 0; b--)
        chosen = best[b] != NULL ? best[b] : chosen;
    if (chosen != NULL)
        atomic_fetch_add(&chosen->ep->users, 1);
    pthread_rwlock_unlock(&ch->eplock);
    return chosen;
}

void balance_release(conn *cn)
{
    atomic_fetch_sub(&cn->ep->users, 1);
}

void balance_note(conn *cn, int failed)
{
    endpoint *ep = cn->ep;
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
    rpc_stats_add(cn->ch->cfg.stats, RPC_C_EJECTIONS, 1);
    client_emit(cn, RPC_EV_EJECTED, 0, ms, NULL);
}

/* get() of the channel's first conn where it is non-zero, or 0. Takes
 * ch->eplock for reading. */
static int first_set(rpc_channel *ch, int (*get)(conn *))
{
    int v = 0;
    pthread_rwlock_rdlock(&ch->eplock);
    for (size_t e = 0; e < ch->neps && v == 0; e++)
        for (int i = 0; i < ch->cfg.pool_size && v == 0; i++)
            v = get(&ch->eps[e]->conns[i]);
    pthread_rwlock_unlock(&ch->eplock);
    return v;
}

static int get_soon(conn *cn) { return atomic_load(&cn->soon); }
static int get_last_err(conn *cn) { return atomic_load(&cn->last_err); }

int balance_coming_up(rpc_channel *ch)
{
    return first_set(ch, get_soon);
}

int balance_last_error(rpc_channel *ch)
{
    return first_set(ch, get_last_err);
}
