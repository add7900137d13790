/* A channel built by hand for the client's unit tests (test_balance,
 * test_exchange): endpoints and conns in memory, no threads, no TCP. Conns
 * are set up with dialer_init; a test sets their state and counters, or
 * attaches one end of a socketpair. Events are recorded. */
#ifndef TCPOPS_TESTS_FAKECHAN_H
#define TCPOPS_TESTS_FAKECHAN_H

#include "rpc/client.h"

#define FAKE_EPS 3
#define FAKE_POOL 2

typedef struct fakechan {
    rpc_channel ch;
    endpoint ep[FAKE_EPS];
    endpoint *eps[FAKE_EPS];
    conn conns[FAKE_EPS][FAKE_POOL];
    rpc_stats *stats;
    rpc_event last;   /* the last event */
    int events;       /* events so far */
} fakechan;

/* neps endpoints ("ep0", "ep1", ...) of FAKE_POOL conns each, all DOWN,
 * max_inflight as given. Heap-allocated: free with fakechan_free. */
fakechan *fakechan_new(size_t neps, int max_inflight);
void fakechan_free(fakechan *f);

/* Sets a conn READY with `outstanding` calls. */
void fakechan_ready(fakechan *f, size_t e, int i, int outstanding);

#endif
