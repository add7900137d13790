/* The gateway's HTTP metrics: requests by route, method and status code, and
 * a latency histogram per route, counted lock-free from any thread and
 * rendered in the Prometheus text format together with each backend's RPC
 * counters. */
#ifndef TCPOPS_GW_METRICS_H
#define TCPOPS_GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum gw_route {
    GW_R_PEOPLE, GW_R_PEOPLE_PETS, GW_R_STATUS, GW_R_HEALTHZ, GW_R_READYZ, GW_R_METRICS,
    GW_R_PAGE, GW_R_OTHER, GW_R_COUNT
} gw_route;

typedef struct gw_metrics gw_metrics;

int gw_metrics_new(gw_metrics **out);
void gw_metrics_free(gw_metrics *m);

/* Counts one request, with how long it took. Any thread. The gateway counts
 * a request as its answer is sent, not after (gw_req_count). */
void gw_metrics_request(gw_metrics *m, gw_route route, const char *method, int status,
                        int64_t duration_us);

/* Requests counted so far for route/method/status (status 0 = any). */
uint64_t gw_metrics_requests(const gw_metrics *m, gw_route route, const char *method,
                             int status);

/* Appends the HTTP metrics in Prometheus text format to a growable buffer:
 * *buf (malloc'd, may be NULL) with *len bytes used and *cap allocated.
 * Returns 0 or -ENOMEM. */
int gw_metrics_render(const gw_metrics *m, char **buf, size_t *len, size_t *cap);

/* printf into the same kind of growable buffer. 0 or -ENOMEM. */
int gw_buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
