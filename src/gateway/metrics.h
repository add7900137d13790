/* The gateway's HTTP metrics: requests by route, method and status code, and
 * a latency histogram per route, counted lock-free from any thread and
 * rendered in the Prometheus text format together with each backend's RPC
 * counters. The histogram (gw_hist) is the one every latency uses: routes
 * here, RPC methods in backend.c. */
#ifndef TCPOPS_GW_METRICS_H
#define TCPOPS_GW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Bucket upper bounds, 50 us to 2.5 s, then +Inf. */
#define GW_HIST_BUCKETS 15

/* A latency histogram: a count per bucket and the sum, each an atomic, so
 * observing is lock-free from any thread. Zeroed memory is an empty one. */
typedef struct gw_hist {
    _Atomic uint64_t buckets[GW_HIST_BUCKETS + 1];
    _Atomic uint64_t sum_us;
} gw_hist;

/* Counts one duration. Any thread. */
void gw_hist_observe(gw_hist *h, int64_t duration_us);

/* Durations counted so far. */
uint64_t gw_hist_count(const gw_hist *h);

/* Appends h as the samples of histogram family name (NAME_bucket with le,
 * NAME_sum in seconds, NAME_count), each with labels first (`route="/people"`,
 * no braces). The family's HELP and TYPE are the caller's. 0 or -ENOMEM. */
int gw_hist_render(const gw_hist *h, const char *name, const char *labels, char **buf,
                   size_t *len, size_t *cap);

/* The RPC methods HTTP requests make the gateway call, each with its own
 * latency histogram per service (backend.c); any other counts as "other".
 * svc.Status, the control plane's, is timed by none
 * (gw_backend_control_call). */
#define GW_RPC_METHODS 5
int gw_rpc_method_index(const char *method);
const char *gw_rpc_method_name(int index);

/* value as a Prometheus label value into out (len bytes): backslash, double
 * quote and newline escaped, cut short rather than overflow. For text a
 * peer sent (a member's address). Returns out. */
char *gw_label_escape(char *out, size_t len, const char *value);

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

/* Appends the gateway's levels now: tcpops_http_requests_in_flight
 * (inflight), tcpops_http_connections_open (conns), and
 * tcpops_build_info{version,program="tcpops-gateway"} 1 with util_version().
 * 0 or -ENOMEM. */
int gw_metrics_render_levels(int inflight, int conns, char **buf, size_t *len, size_t *cap);

/* Makes text into a growable buffer within deadline_ms. 0 or -ENOMEM. */
typedef int (*gw_fill_fn)(void *user, int deadline_ms, char **buf, size_t *len, size_t *cap);

/* Appends the text fill(user) makes, shared between callers: fill runs in
 * one caller at a time, and its text serves every caller for max_age_ms
 * after it was made. A caller that comes while another fills waits for
 * that text, up to its own deadline_ms; past it, it takes the last text
 * made (none before the first). So a costly text (the members' counters,
 * asked over RPC) is made at most once per max_age_ms, however many ask.
 * Any thread; takes m's lock, never across fill. 0 or -ENOMEM. */
int gw_metrics_render_shared(gw_metrics *m, int max_age_ms, int deadline_ms, gw_fill_fn fill,
                             void *user, char **buf, size_t *len, size_t *cap);

/* printf into the same kind of growable buffer. 0 or -ENOMEM. */
int gw_buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
