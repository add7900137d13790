/* Events and wake-ups shared by the client's files (see rpc/client.h). */
#include "rpc/client.h"

#include <limits.h>

#include "rpc/waiter.h"

void client_emit(conn *cn, rpc_event_type type, int err, int64_t delay_ms, const char *why)
{
    rpc_channel *ch = cn->ch;
    if (ch->cfg.on_event == NULL)
        return;
    rpc_event ev = {
        .type = type,
        .service = ch->name,
        .endpoint = cn->ep->addr,
        .conn = cn->index,
        .err = err,
        .attempt = cn->failures_seen,
        .delay_ms = delay_ms,
        .why = why != NULL ? why : "",
    };
    ch->cfg.on_event(ch->cfg.event_user, &ev);
}

void client_wake_waiters(rpc_channel *ch, int n)
{
    if (atomic_load(&ch->waiting) == 0)
        return;
    atomic_fetch_add(&ch->free_seq, 1);
    rpc_waiter_wake(&ch->free_seq, n);
}

void client_notify(rpc_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    pthread_cond_broadcast(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    client_wake_waiters(ch, INT_MAX); /* the queue picks again: a conn may be up, or none left */
}

int client_stopping(rpc_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    int s = ch->stopping;
    pthread_mutex_unlock(&ch->lock);
    return s;
}
