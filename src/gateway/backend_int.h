/* What backend.c and backend_metrics.c share of a gw_backend: the struct
 * itself and the call the control plane makes. Nothing else includes it. */
#ifndef TCPOPS_GW_BACKEND_INT_H
#define TCPOPS_GW_BACKEND_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "gateway/backend.h"
#include "gateway/metrics.h"
#include "gateway/sources.h"

#define MAX_MEMBERS 64

struct gw_backend {
    char name[32];
    int refresh_ms;
    int resolve_ms;
    gw_resolve_fn resolve;
    void *resolve_user;
    gw_boot boot;              /* the list and its answers: the resolver thread's */

    rpc_stats *stats;          /* the member channel's calls and connections */
    rpc_channel *data;         /* a pool per member, and per bootstrap endpoint as backup */
    gw_sources *sources;       /* asked for members: the refresher thread's */
    unsigned applied;          /* eps_gen the channels have: the refresher's */

    pthread_t refresher, resolver;
    int threads;               /* how many of the two were started */
    pthread_mutex_t lock;      /* guards the fields below */
    pthread_cond_t cond;       /* wakes the refresher */
    pthread_cond_t rcond;      /* wakes the resolver */
    int stopping;
    int kick;                  /* refresh now: a connection was lost or GOAWAY'd */
    int resolve_now;           /* every connection is lost: resolve again soon */
    char eps[GW_BOOT_ADDRS][GW_BOOT_ADDRLEN]; /* the resolved bootstrap endpoints */
    size_t neps;
    unsigned eps_gen;          /* bumped when eps changes */
    char members[MAX_MEMBERS][GW_MEMBER_ADDRLEN];
    size_t nmembers;           /* 0: using the bootstrap endpoints */
    int write_status;          /* the service's last write: OK, STORAGE_FULL, ... */
    char write_error[256];     /* why, when not OK */

    /* /metrics: lock-free, counted around every call on the data channel. */
    gw_hist latency[GW_RPC_METHODS]; /* by method (gw_rpc_method_index) */
    _Atomic int inflight;            /* calls under way now */
    _Atomic uint64_t scrape_errors;  /* members that did not answer a scrape */
};

/* rpc_channel_call for the control plane's svc.Status: counted in
 * tcpops_rpc_calls_total{method="svc.Status"} by the channel's stats, but
 * kept out of tcpops_rpc_duration_seconds and tcpops_rpc_in_flight, which
 * tell how the data calls fare (a stuck member's 500 ms scrape timeouts are
 * no data call's latency). Any thread, no lock. */
int gw_backend_control_call(gw_backend *b, rpc_call *call);

#endif
