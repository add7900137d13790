/* rpc_evloop: the mechanics of one I/O thread's loop. An epoll set, an
 * eventfd that any thread writes to wake the loop, and a tick for periodic
 * work. It knows nothing of what the descriptors are: each registration
 * carries the caller's pointer, handed back with its events.
 *
 *   owner thread: rpc_evloop_wait -> events (+ woke) -> handle -> tick?
 *   any thread:   rpc_evloop_wake
 *
 * Threads: rpc_evloop_wake is safe from any thread; add/mod/del are epoll
 * calls (thread-safe in the kernel); wait and tick belong to the loop's one
 * thread. The module takes no lock. */
#ifndef TCPOPS_RPC_EVLOOP_H
#define TCPOPS_RPC_EVLOOP_H

#include <stdint.h>
#include <sys/epoll.h>

typedef struct rpc_evloop {
    int epfd;        /* -1 when none */
    int wakefd;      /* eventfd; -1 when none */
    int tick_ms;     /* wait at most this long; the period of rpc_evloop_tick */
    int64_t last_tick;
} rpc_evloop;

/* Opens the epoll set and the wake eventfd; tick_ms is the period of
 * rpc_evloop_tick and the longest rpc_evloop_wait sleeps (0: it looks and
 * returns at once). Returns 0, or a
 * negative errno with a sentence in err (RPC_ERRLEN); then rpc_evloop_fini
 * still frees what was opened. */
int rpc_evloop_init(rpc_evloop *l, int tick_ms, char *err);

/* Closes both descriptors. The registered descriptors are the caller's. */
void rpc_evloop_fini(rpc_evloop *l);

/* Registers fd for events (EPOLLIN, ...), handing back ptr with them.
 * Returns 0 or a negative errno. */
int rpc_evloop_add(rpc_evloop *l, int fd, uint32_t events, void *ptr);

/* Changes the events fd is registered for. Returns 0 or a negative errno. */
int rpc_evloop_mod(rpc_evloop *l, int fd, uint32_t events, void *ptr);

/* Unregisters fd (before it is closed or shut down). */
void rpc_evloop_del(rpc_evloop *l, int fd);

/* Wakes the loop: its rpc_evloop_wait returns with *woke set. Any thread;
 * wake-ups before the loop looks fold into one. */
void rpc_evloop_wake(rpc_evloop *l);

/* Waits up to tick_ms for events and fills evs[0..max) with those of the
 * registered descriptors (the wake-up is not among them: it sets *woke to 1,
 * else 0, and is consumed). Returns the number of events (0 on timeout or
 * EINTR). The loop's thread only. */
int rpc_evloop_wait(rpc_evloop *l, struct epoll_event *evs, int max, int *woke);

/* Whether periodic work is due at now (rpc_now_ms clock): force, or tick_ms
 * passed since the last tick. When it returns 1 the next tick counts from
 * now. The loop's thread only. */
int rpc_evloop_tick(rpc_evloop *l, int64_t now, int force);

#endif
