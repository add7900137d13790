/* The gateway's HTTP routes (DESIGN.md, HTTP API), served by civetweb. */
#ifndef TCPOPS_GW_ROUTES_H
#define TCPOPS_GW_ROUTES_H

#include <civetweb.h>
#include <stdatomic.h>
#include <stdint.h>

#include "gateway/backend.h"
#include "gateway/http.h"
#include "gateway/metrics.h"

/* What every request handler shares; read-only after start apart from the
 * atomics and the objects' own locks. */
typedef struct gw {
    gw_backend *people;
    gw_backend *pets;
    gw_metrics *metrics;
    int deadline_ms;       /* budget of one HTTP request, all its RPCs included */
    int access_log;        /* one logfmt line per request */
    size_t max_body;       /* request bodies over this get 413 */
    size_t max_header;     /* request line and header fields: 414/431 past it */
    int64_t started_ms;
    _Atomic int draining;  /* SIGTERM received: /readyz says 503 */
    _Atomic int inflight;  /* requests being handled now */
    _Atomic int conns;     /* HTTP connections open now */
    struct gw_https *https; /* the listener's TLS (https.h), NULL: plain HTTP */
} gw;

/* The Allow list of route (NULL for GW_R_OTHER). */
const char *gw_route_allow(gw_route route);

/* The route of a path as sent (still %-encoded), GW_R_OTHER when none. */
gw_route gw_route_of(const char *raw_path);

/* The civetweb request handler for every path (cbdata is the gw). Returns
 * the HTTP status sent. */
int gw_handle(struct mg_connection *conn, void *cbdata);

#endif
