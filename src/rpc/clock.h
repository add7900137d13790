/* Monotonic time in milliseconds: deadlines, backoff and ages all use it. */
#ifndef TCPOPS_RPC_CLOCK_H
#define TCPOPS_RPC_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC. Thread-safe. */
int64_t rpc_now_ms(void);

/* Milliseconds since the epoch (CLOCK_REALTIME): timestamps other processes
 * compare, such as membership heartbeats. Thread-safe. */
int64_t rpc_wall_ms(void);

/* Microseconds on CLOCK_MONOTONIC, for latency figures. Thread-safe. */
int64_t rpc_now_us(void);

/* Fills *ts with the CLOCK_MONOTONIC instant at_ms (as rpc_now_ms counts),
 * for pthread_cond_timedwait on a condition built with rpc_cond_init. */
void rpc_ms_to_timespec(int64_t at_ms, struct timespec *ts);

/* Initialises a condition variable that waits on CLOCK_MONOTONIC, so that
 * timed waits use rpc_ms_to_timespec instants. */
void rpc_cond_init(pthread_cond_t *c);

#endif
