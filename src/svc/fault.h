/* Fault injection for drills and tests (private to src/svc), kept out of the
 * RPC core: --delay-ms/--delay-method wrap the chosen methods' handlers in
 * one that first waits, and --fault-grow-mb allocates (and keeps) memory on
 * every heartbeat, a leak the supervisor's memory limit must catch.
 *
 * Calls: runtime (the shared state, reached from a handler's ctx->user),
 * rpc server/stats. */
#ifndef TCPOPS_SVC_FAULT_H
#define TCPOPS_SVC_FAULT_H

#include <stddef.h>

#include "rpc/server.h"
#include "svc/runtime.h"

typedef struct svc_fault {
    /* set from the flags */
    long delay_ms;             /* 0: no delay */
    const char *delay_method;  /* NULL: delay every method */
    long grow_mb;              /* 0: no growth */
    /* private */
    rpc_method *inner;         /* the wrapped methods as they were */
    size_t ninner;
    void **grown;              /* what growth allocated, freed by fini */
    size_t ngrown;
} svc_fault;

/* Arms f on s before the server starts: the methods of m (n, the table
 * handed to rpc_server_new) that delay_method names (all with NULL) run,
 * over the wire, on a worker after waiting delay_ms, then, as the server
 * would, answer DEADLINE_EXCEEDED without running when the caller's deadline
 * passed meanwhile; while a delay is set no method is quick, so none runs on
 * the I/O thread. grow_mb > 0 sets s->on_beat to grow. Text mode and
 * svc_local call s->methods, which stay as they are. f must outlive the
 * server. Returns 0 or -ENOMEM. */
int svc_fault_arm(svc_fault *f, svc *s, rpc_method *m, size_t n);

/* Frees what f allocated (the wrapped table, the grown memory). */
void svc_fault_fini(svc_fault *f);

#endif
