#include "rpc/backoff.h"

#include <math.h>
#include <stddef.h>
#include <unistd.h>

#include "rpc/clock.h"

void rpc_backoff_cfg_default(rpc_backoff_cfg *cfg)
{
    cfg->initial_ms = 50;
    cfg->mult = 1.6;
    cfg->cap_ms = 2000;
    cfg->jitter = 0.2;
    cfg->reset_after_ms = 1000;
}

void rpc_backoff_init(rpc_backoff *b, const rpc_backoff_cfg *cfg,
                      rpc_rand_fn rand, void *rand_user)
{
    b->cfg = *cfg;
    b->rand = rand != NULL ? rand : rpc_rand01;
    b->rand_user = rand_user;
    b->failures = 0;
    b->up_since_ms = -1;
}

int64_t rpc_backoff_next(rpc_backoff *b)
{
    unsigned n = b->failures++;
    if (n == 0)
        return 0;
    double base = (double)b->cfg.initial_ms * pow(b->cfg.mult, (double)(n - 1));
    if (base > (double)b->cfg.cap_ms)
        base = (double)b->cfg.cap_ms;
    double j = 1.0 + b->cfg.jitter * (2.0 * b->rand(b->rand_user) - 1.0);
    return (int64_t)(base * j);
}

void rpc_backoff_up(rpc_backoff *b, int64_t now_ms)
{
    b->up_since_ms = now_ms;
}

void rpc_backoff_down(rpc_backoff *b, int64_t now_ms)
{
    if (b->up_since_ms >= 0 && now_ms - b->up_since_ms >= b->cfg.reset_after_ms)
        b->failures = 0;
    b->up_since_ms = -1;
}

double rpc_rand01(void *unused)
{
    /* Per thread on purpose: many threads draw at once (every channel
     * connection thread for its backoff, every gateway worker for request
     * ids), and a shared state would need a lock or an atomic per draw.
     * Seeding with &s gives each thread its own sequence. */
    static _Thread_local uint64_t s;
    (void)unused;
    if (s == 0)
        s = (((uint64_t)rpc_now_us() << 16) ^ (uint64_t)getpid() ^
            (uint64_t)(uintptr_t)&s) | 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / 9007199254740992.0; /* 2^53 */
}
