#include "fakechan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"

static void record(void *user, const rpc_event *ev)
{
    fakechan *f = user;
    f->last = *ev;
    f->events++;
}

fakechan *fakechan_new(size_t neps, int max_inflight)
{
    fakechan *f = calloc(1, sizeof(*f));
    if (f == NULL || neps > FAKE_EPS || rpc_stats_new(&f->stats) < 0)
        abort();
    rpc_channel *ch = &f->ch;
    rpc_channel_cfg_default(&ch->cfg);
    snprintf(ch->name, sizeof(ch->name), "fake");
    ch->cfg.name = ch->name;
    ch->cfg.pool_size = FAKE_POOL;
    ch->cfg.max_inflight = max_inflight;
    ch->cfg.stats = f->stats;
    ch->cfg.on_event = record;
    ch->cfg.event_user = f;
    pthread_rwlock_init(&ch->eplock, NULL);
    pthread_mutex_init(&ch->lock, NULL);
    rpc_cond_init(&ch->cond);
    for (size_t e = 0; e < neps; e++) {
        endpoint *ep = &f->ep[e];
        snprintf(ep->addr, sizeof(ep->addr), "ep%zu", e);
        ep->conns = f->conns[e];
        for (int i = 0; i < FAKE_POOL; i++)
            dialer_init(&ep->conns[i], ch, ep, i);
        f->eps[e] = ep;
    }
    ch->eps = f->eps;
    ch->neps = neps;
    return f;
}

void fakechan_free(fakechan *f)
{
    for (size_t e = 0; e < f->ch.neps; e++)
        for (int i = 0; i < FAKE_POOL; i++)
            dialer_fini(&f->conns[e][i]);
    pthread_rwlock_destroy(&f->ch.eplock);
    pthread_mutex_destroy(&f->ch.lock);
    pthread_cond_destroy(&f->ch.cond);
    rpc_stats_free(f->stats);
    free(f);
}

void fakechan_ready(fakechan *f, size_t e, int i, int outstanding)
{
    atomic_store(&f->conns[e][i].state, CONN_READY);
    atomic_store(&f->conns[e][i].outstanding, outstanding);
}
