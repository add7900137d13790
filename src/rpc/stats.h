/* Counters that programs expose (the gateway's /metrics, a service's Status):
 * calls by method and status, plus connection and protocol events. Counting
 * is lock-free and safe from any thread; reading takes a consistent-enough
 * snapshot (each counter is read atomically, the set is not). */
#ifndef TCPOPS_RPC_STATS_H
#define TCPOPS_RPC_STATS_H

#include <stdint.h>

typedef enum rpc_counter {
    RPC_C_CONNECTS,         /* client: connections established */
    RPC_C_RECONNECTS,       /* client: of which after a previous one was lost */
    RPC_C_CONNECT_FAILURES, /* client: failed attempts */
    RPC_C_CONNS_OPEN,       /* gauge: connections open now */
    RPC_C_CONNS_LOST,       /* connections that ended with an error */
    RPC_C_LATE_ANSWERS,     /* client: answers for calls no longer waiting */
    RPC_C_GOAWAYS,          /* GOAWAY frames received (client) or sent (server) */
    RPC_C_RETRIES,          /* client: calls sent again on another connection */
    RPC_C_FAIL_FAST,        /* client: calls refused because nothing was healthy */
    RPC_C_PROTOCOL_ERRORS,  /* bad frames: oversize, undecodable, wrong kind */
    RPC_C_CONNS_REFUSED,    /* server: over the connection limit */
    RPC_C_EXPIRED_SKIPPED,  /* server: requests whose deadline passed in queue */
    RPC_C_WRITE_BUF_FULL,   /* server: closed a peer that does not read its answers */
    RPC_C_PARTIAL_TIMEOUT,  /* server: closed a peer that stalled inside a frame */
    RPC_C_IDLE_CLOSED,      /* server: closed a connection silent past the idle timeout */
    RPC_C_CONNS_EVICTED,    /* server: closed the longest-idle one to admit a new one */
    RPC_C_OVERSIZE_FRAMES,  /* frames refused by their length header */
    RPC_C_INFLIGHT_LIMIT,   /* calls refused for too many in flight */
    RPC_C_EJECTIONS,        /* client: endpoints set aside after failing in a row */
    RPC_C_TLS_HANDSHAKES,   /* TLS handshakes completed in full (certificates checked) */
    RPC_C_TLS_RESUMED,      /* TLS handshakes that resumed a session */
    RPC_C_TLS_REFUSED,      /* server: TLS handshakes refused (no or bad certificate,
                             * not TLS at all) */
    RPC_C_TEXT_REFUSED,     /* server: text-mode connections refused (a peer not on
                             * loopback, or text mode off: rpc_server_cfg.text_peers) */
    RPC_C_COUNT
} rpc_counter;

typedef struct rpc_stats rpc_stats;

/* Call statuses 0 .. RPC_STATS_STATUSES-1 are counted each on their own (every
 * Tcpops__Status is below it); any other value is counted in one more row,
 * RPC_STATS_STATUSES. */
#define RPC_STATS_STATUSES 32

/* A zeroed set of counters. 0 or -ENOMEM; *out untouched on failure. */
int rpc_stats_new(rpc_stats **out);

/* NULL does nothing. No other thread may use s any more. */
void rpc_stats_free(rpc_stats *s);

/* Adds delta to counter c. Any thread. s may be NULL (counts nothing). */
void rpc_stats_add(rpc_stats *s, rpc_counter c, int64_t delta);

/* Current value of counter c. Any thread. */
int64_t rpc_stats_get(const rpc_stats *s, rpc_counter c);

/* Counts one finished call of method with status (a Tcpops__Status). The
 * first 64 method names get their own row; later ones count as "other", as
 * do a NULL method and a name of 64 bytes or more. */
void rpc_stats_call(rpc_stats *s, const char *method, int status);

/* Calls fn once per (method, status) pair with a non-zero count, from the
 * calling thread, with no lock held. Statuses with no name are summed into
 * one "UNKNOWN" per method, so no pair comes twice. */
typedef void (*rpc_stats_call_fn)(void *user, const char *method,
                                  const char *status, uint64_t n);
void rpc_stats_foreach_call(const rpc_stats *s, rpc_stats_call_fn fn, void *user);

/* Total calls with status for method (NULL = every method). */
uint64_t rpc_stats_calls(const rpc_stats *s, const char *method, int status);

/* Metric-style name of a counter ("connects", "late_answers", ...). */
const char *rpc_counter_name(rpc_counter c);

/* One sentence saying what a counter counts (for metric HELP lines). */
const char *rpc_counter_help(rpc_counter c);

#endif
