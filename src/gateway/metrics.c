#include "gateway/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { M_GET, M_POST, M_OTHER, M_COUNT };

static const int codes[] = {200, 201, 400, 404, 405, 409, 413, 500, 501, 503, 504, 507};
#define NCODES (sizeof(codes) / sizeof(codes[0]))
#define CODE_OTHER NCODES

/* Upper bounds in microseconds; the last bucket is +Inf. */
static const int64_t bounds_us[] = {250,   500,    1000,   2500,   5000,    10000,  25000,
                                    50000, 100000, 250000, 500000, 1000000, 2500000};
#define NBUCKETS (sizeof(bounds_us) / sizeof(bounds_us[0]))

struct gw_metrics {
    _Atomic uint64_t requests[GW_R_COUNT][M_COUNT][NCODES + 1];
    _Atomic uint64_t buckets[GW_R_COUNT][NBUCKETS + 1];
    _Atomic uint64_t sum_us[GW_R_COUNT];
};

static const char *const route_names[GW_R_COUNT] = {
    "/people", "/people/pets", "/status", "/healthz", "/readyz", "/metrics", "/", "other",
};
static const char *const method_names[M_COUNT] = {"GET", "POST", "other"};

int gw_metrics_new(gw_metrics **out)
{
    gw_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    *out = m;
    return 0;
}

void gw_metrics_free(gw_metrics *m)
{
    free(m);
}

static int method_index(const char *method)
{
    if (strcmp(method, "GET") == 0)
        return M_GET;
    if (strcmp(method, "POST") == 0)
        return M_POST;
    return M_OTHER;
}

static size_t code_index(int status)
{
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i] == status)
            return i;
    return CODE_OTHER;
}

void gw_metrics_request(gw_metrics *m, gw_route route, const char *method, int status,
                        int64_t duration_us)
{
    atomic_fetch_add_explicit(&m->requests[route][method_index(method)][code_index(status)], 1,
                              memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKETS && duration_us > bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&m->buckets[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us[route], (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
}

uint64_t gw_metrics_requests(const gw_metrics *cm, gw_route route, const char *method,
                             int status)
{
    gw_metrics *m = (gw_metrics *)cm;
    uint64_t n = 0;
    int mi = method_index(method);
    for (size_t c = 0; c <= NCODES; c++)
        if (status == 0 || c == code_index(status))
            n += atomic_load_explicit(&m->requests[route][mi][c], memory_order_relaxed);
    return n;
}

int gw_buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        size_t room = *cap - *len;
        va_start(ap, fmt);
        int n = vsnprintf(*buf != NULL ? *buf + *len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -EINVAL;
        if ((size_t)n < room) {
            *len += (size_t)n;
            return 0;
        }
        size_t ncap = *cap ? *cap * 2 : 4096;
        while (ncap - *len <= (size_t)n)
            ncap *= 2;
        char *p = realloc(*buf, ncap);
        if (p == NULL)
            return -ENOMEM;
        *buf = p;
        *cap = ncap;
    }
}

int gw_metrics_render(const gw_metrics *cm, char **buf, size_t *len, size_t *cap)
{
    gw_metrics *m = (gw_metrics *)cm;
    int rc = gw_buf_printf(buf, len, cap,
                           "# HELP tcpops_http_requests_total HTTP requests answered.\n"
                           "# TYPE tcpops_http_requests_total counter\n");
    for (int r = 0; r < GW_R_COUNT && rc == 0; r++)
        for (int mi = 0; mi < M_COUNT && rc == 0; mi++)
            for (size_t c = 0; c <= NCODES && rc == 0; c++) {
                uint64_t v = atomic_load_explicit(&m->requests[r][mi][c], memory_order_relaxed);
                if (v == 0)
                    continue;
                char code[8];
                if (c == CODE_OTHER)
                    snprintf(code, sizeof(code), "other");
                else
                    snprintf(code, sizeof(code), "%d", codes[c]);
                rc = gw_buf_printf(buf, len, cap,
                                   "tcpops_http_requests_total{route=\"%s\",method=\"%s\","
                                   "code=\"%s\"} %llu\n",
                                   route_names[r], method_names[mi], code,
                                   (unsigned long long)v);
            }
    if (rc == 0)
        rc = gw_buf_printf(buf, len, cap,
                           "# HELP tcpops_http_request_duration_seconds Time to answer.\n"
                           "# TYPE tcpops_http_request_duration_seconds histogram\n");
    for (int r = 0; r < GW_R_COUNT && rc == 0; r++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= NBUCKETS && rc == 0; b++) {
            cum += atomic_load_explicit(&m->buckets[r][b], memory_order_relaxed);
            char le[32];
            if (b == NBUCKETS)
                snprintf(le, sizeof(le), "+Inf");
            else
                snprintf(le, sizeof(le), "%g", (double)bounds_us[b] / 1e6);
            rc = gw_buf_printf(buf, len, cap,
                               "tcpops_http_request_duration_seconds_bucket{route=\"%s\","
                               "le=\"%s\"} %llu\n",
                               route_names[r], le, (unsigned long long)cum);
        }
        if (rc == 0)
            rc = gw_buf_printf(
                buf, len, cap,
                "tcpops_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                "tcpops_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                route_names[r],
                (double)atomic_load_explicit(&m->sum_us[r], memory_order_relaxed) / 1e6,
                route_names[r], (unsigned long long)cum);
    }
    return rc;
}
