/* A backend service as the gateway sees it: the bootstrap addresses it was
 * given (names resolved into one endpoint per A record, again every
 * resolve_ms and soon after every connection is lost), the live members
 * learnt from them (svc.Status of each), and a channel with a pool per
 * member. Membership is refreshed every second and at once when a
 * connection is lost or sent GOAWAY, so new workers get calls within a second
 * or two and departing ones drain; so do bootstrap endpoints that leave DNS.
 * DNS is asked on a thread of its own, never on a request's. Thread-safe. */
#ifndef TCPOPS_GW_BACKEND_H
#define TCPOPS_GW_BACKEND_H

#include <jansson.h>
#include <stddef.h>

#include "gateway/bootstrap.h"
#include "rpc/channel.h"

typedef struct gw_backend gw_backend;

typedef struct gw_backend_cfg {
    const char *name;        /* "people" */
    const char *bootstrap;   /* "host:port[,host:port...]", see gw_boot_parse */
    int pool_size;           /* connections per member; 0: the channel's default */
    int refresh_ms;          /* membership refresh period, 1000 */
    int resolve_ms;          /* names resolved again this often, 5000 */
    gw_resolve_fn resolve;   /* NULL: gw_resolve_system (getaddrinfo) */
    void *resolve_user;
    size_t max_frame;        /* largest frame accepted from the service */
    int max_inflight;        /* calls in flight per connection */
    int max_waiting;         /* calls that may wait for a slot when all are full */
    int spin_us;             /* see rpc_channel_cfg.spin_us */
    rpc_tls *tls;            /* client credentials for every connection (data and
                              * discovery); NULL: plaintext */
} gw_backend_cfg;

/* Resolves the bootstrap names once (a name that does not resolve yet is
 * retried, not an error) and starts connecting in the background. 0, or a
 * negative errno with err filled (bad address list: see gw_boot_parse). */
int gw_backend_new(gw_backend **out, const gw_backend_cfg *cfg, char *err, size_t errlen);

/* Stops the refresher and the connections. NULL does nothing. */
void gw_backend_free(gw_backend *b);

const char *gw_backend_name(const gw_backend *b);

/* Calls through the member channel (see rpc_channel_call). */
int gw_backend_call(gw_backend *b, rpc_call *call);

/* Whether the service can serve now: a connection is up and an answer (or
 * PONG) came within the last second, or a svc.Status call answers within
 * min(deadline_ms, 1 s). 1 ready; 0 not, with a sentence naming the service
 * in why. Blocks up to that deadline. */
int gw_backend_check_ready(gw_backend *b, int deadline_ms, char *why, size_t len);

/* How the service's writes go, as of its last Status answer or failed call:
 * OK, or STORAGE_FULL (disk full), INTERNAL, UNAVAILABLE with error (len
 * bytes; may be NULL) saying why. */
int gw_backend_writes(gw_backend *b, char *error, size_t len);

/* A JSON object describing the backend for /status: bootstrap (as given),
 * resolved (the endpoints it names now), members,
 * each endpoint's connections, calls waiting for a slot, the answer of a
 * svc.Status call made now with deadline_ms (state "up" with latency_ms, or
 * "down" with the error), and "writes": "ok" or "failing" (with write_code
 * and write_error). Sets *up. Caller json_decref's. */
json_t *gw_backend_status(gw_backend *b, int deadline_ms, int *up);

/* Appends the RPC metrics of every backend in bs, family by family, in
 * Prometheus text format (see gw_buf_printf). 0 or -ENOMEM. */
int gw_backends_metrics(gw_backend *const *bs, size_t nb, char **buf, size_t *len,
                        size_t *cap);

/* Asks every member of every backend in bs for svc.Status (on its own
 * pooled connection, up to 8 at once) and appends what they answered in
 * Prometheus text format: tcpops_service_member_up{service,member} for each
 * (0: no answer within deadline_ms), tcpops_service_scrape_errors_total per
 * service, and the answers' counters labelled service, member and pid
 * (tcpops_service_calls_total, ..._uptime_seconds, and each server counter
 * as tcpops_service_NAME(_total)). Returns within deadline_ms plus the time
 * to render, however many members are stuck: 0 or -ENOMEM. Any thread. */
int gw_backends_scrape(gw_backend *const *bs, size_t nb, int deadline_ms, char **buf,
                       size_t *len, size_t *cap);

#endif
