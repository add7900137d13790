/* Reconnect backoff: the first attempt at once, then
 * min(initial * mult^(n-1), cap) * random(1 - jitter, 1 + jitter), the cap
 * applied before the jitter so that many clients do not converge on it.
 * A connection that stayed healthy for reset_after_ms resets the curve, so a
 * long outage leaves no long delay behind it. Time and randomness are
 * injected, so the curve is testable without sleeping. Not thread-safe: each
 * connection owns one. */
#ifndef TCPOPS_RPC_BACKOFF_H
#define TCPOPS_RPC_BACKOFF_H

#include <stdint.h>

typedef struct rpc_backoff_cfg {
    int64_t initial_ms;     /* 50 */
    double mult;            /* 1.6 */
    int64_t cap_ms;         /* 2000 */
    double jitter;          /* 0.2: +-20% */
    int64_t reset_after_ms; /* 1000 */
} rpc_backoff_cfg;

/* Returns a uniform value in [0, 1). */
typedef double (*rpc_rand_fn)(void *user);

typedef struct rpc_backoff {
    rpc_backoff_cfg cfg;
    rpc_rand_fn rand;
    void *rand_user;
    unsigned failures;   /* attempts since the last reset */
    int64_t up_since_ms; /* when the current connection came up; -1 if down */
} rpc_backoff;

/* The RELIABILITY.md defaults. */
void rpc_backoff_cfg_default(rpc_backoff_cfg *cfg);

/* rand NULL uses a thread-local xorshift seeded from the clock and pid. */
void rpc_backoff_init(rpc_backoff *b, const rpc_backoff_cfg *cfg,
                      rpc_rand_fn rand, void *rand_user);

/* Delay in ms before the next connection attempt, and counts that attempt. */
int64_t rpc_backoff_next(rpc_backoff *b);

/* A connection came up at now_ms. */
void rpc_backoff_up(rpc_backoff *b, int64_t now_ms);

/* The connection went down at now_ms: resets the curve if it had been up for
 * at least reset_after_ms. */
void rpc_backoff_down(rpc_backoff *b, int64_t now_ms);

/* Uniform [0, 1) from a generator each thread has its own of (xorshift,
 * seeded on first use); any thread, no lock. Usable as an rpc_rand_fn. */
double rpc_rand01(void *unused);

#endif
