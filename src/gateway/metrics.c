#include "gateway/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "util/flags.h"

enum { M_GET, M_POST, M_OTHER, M_COUNT };

static const int codes[] = {200, 201, 400, 404, 405, 409, 413, 500, 501, 503, 504, 507};
#define NCODES (sizeof(codes) / sizeof(codes[0]))
#define CODE_OTHER NCODES

/* Upper bounds in microseconds; the last bucket is +Inf. From 50 us: one
 * RPC hop on loopback takes about that. */
static const int64_t bounds_us[GW_HIST_BUCKETS] = {
    50,    100,   250,    500,    1000,   2500,    5000,   10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

struct gw_metrics {
    _Atomic uint64_t requests[GW_R_COUNT][M_COUNT][NCODES + 1];
    gw_hist latency[GW_R_COUNT];

    /* gw_metrics_render_shared's text, made by one caller at a time. */
    pthread_mutex_t lock;  /* guards the fields below */
    pthread_cond_t made;   /* a fill ended (broadcast) */
    int filling;           /* a caller is making the text now */
    char *text;            /* the last text made, NULL: none yet */
    size_t text_len;
    int64_t text_ms;       /* rpc_now_ms when it was made */
};

/* What the gateway calls; see gw_rpc_method_index. */
static const char *const rpc_methods[GW_RPC_METHODS] = {
    "people.List", "people.Create", "people.PetIds", "pets.GetByIds", "other",
};

int gw_rpc_method_index(const char *method)
{
    for (int i = 0; i < GW_RPC_METHODS - 1; i++)
        if (method != NULL && strcmp(method, rpc_methods[i]) == 0)
            return i;
    return GW_RPC_METHODS - 1;
}

const char *gw_rpc_method_name(int index)
{
    return rpc_methods[index >= 0 && index < GW_RPC_METHODS ? index : GW_RPC_METHODS - 1];
}

char *gw_label_escape(char *out, size_t len, const char *value)
{
    size_t n = 0;
    for (const char *p = value; *p != '\0' && n + 3 <= len; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[n++] = '\\';
            out[n++] = *p == '\n' ? 'n' : *p;
        } else {
            out[n++] = *p;
        }
    }
    if (len > 0)
        out[n] = '\0';
    return out;
}

void gw_hist_observe(gw_hist *h, int64_t duration_us)
{
    size_t b = 0;
    while (b < GW_HIST_BUCKETS && duration_us > bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
}

uint64_t gw_hist_count(const gw_hist *ch)
{
    gw_hist *h = (gw_hist *)ch;
    uint64_t n = 0;
    for (size_t b = 0; b <= GW_HIST_BUCKETS; b++)
        n += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
    return n;
}

static const char *const route_names[GW_R_COUNT] = {
    "/people", "/people/pets", "/status", "/healthz", "/readyz", "/metrics", "/", "other",
};
static const char *const method_names[M_COUNT] = {"GET", "POST", "other"};

int gw_metrics_new(gw_metrics **out)
{
    gw_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    rpc_cond_init(&m->made);
    *out = m;
    return 0;
}

void gw_metrics_free(gw_metrics *m)
{
    if (m == NULL)
        return;
    pthread_cond_destroy(&m->made);
    pthread_mutex_destroy(&m->lock);
    free(m->text);
    free(m);
}

/* Appends the last text made (if any). Expects m->lock. */
static int append_text(const gw_metrics *m, char **buf, size_t *len, size_t *cap)
{
    if (m->text == NULL || m->text_len == 0)
        return 0;
    return gw_buf_printf(buf, len, cap, "%.*s", (int)m->text_len, m->text);
}

int gw_metrics_render_shared(gw_metrics *m, int max_age_ms, int deadline_ms, gw_fill_fn fill,
                             void *user, char **buf, size_t *len, size_t *cap)
{
    int64_t until = rpc_now_ms() + deadline_ms;
    struct timespec ts;
    rpc_ms_to_timespec(until, &ts);
    int rc = 0, make = 0;
    pthread_mutex_lock(&m->lock);
    /* Fresh enough: shared. Being made by another caller: its text is ours
     * too, unless our own deadline comes first (then the last one made). */
    while (m->text == NULL || rpc_now_ms() - m->text_ms >= max_age_ms) {
        int64_t left = until - rpc_now_ms();
        if (!m->filling && left > 0) {
            make = 1;
            break;
        }
        if (left <= 0 || pthread_cond_timedwait(&m->made, &m->lock, &ts) != 0)
            break;
    }
    if (make) {
        m->filling = 1;
        pthread_mutex_unlock(&m->lock);
        char *text = NULL;
        size_t tlen = 0, tcap = 0;
        rc = fill(user, (int)(until - rpc_now_ms() > 0 ? until - rpc_now_ms() : 1), &text,
                  &tlen, &tcap);
        pthread_mutex_lock(&m->lock);
        m->filling = 0;
        if (rc == 0) {
            free(m->text);
            m->text = text;
            m->text_len = tlen;
            m->text_ms = rpc_now_ms();
            text = NULL;
        }
        pthread_cond_broadcast(&m->made);
        free(text);
    }
    if (rc == 0)
        rc = append_text(m, buf, len, cap);
    pthread_mutex_unlock(&m->lock);
    return rc;
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
    gw_hist_observe(&m->latency[route], duration_us);
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
        char labels[64];
        snprintf(labels, sizeof(labels), "route=\"%s\"", route_names[r]);
        rc = gw_hist_render(&m->latency[r], "tcpops_http_request_duration_seconds", labels, buf,
                            len, cap);
    }
    return rc;
}

int gw_hist_render(const gw_hist *ch, const char *name, const char *labels, char **buf,
                   size_t *len, size_t *cap)
{
    gw_hist *h = (gw_hist *)ch;
    uint64_t cum = 0;
    int rc = 0;
    /* Read once, bucket by bucket: the count is the last cumulative bucket,
     * so a scrape never shows a count its buckets do not add up to. */
    for (size_t b = 0; b <= GW_HIST_BUCKETS && rc == 0; b++) {
        cum += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
        char le[32];
        if (b == GW_HIST_BUCKETS)
            snprintf(le, sizeof(le), "+Inf");
        else
            snprintf(le, sizeof(le), "%g", (double)bounds_us[b] / 1e6);
        rc = gw_buf_printf(buf, len, cap, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, le,
                           (unsigned long long)cum);
    }
    if (rc == 0)
        rc = gw_buf_printf(buf, len, cap, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                           (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6,
                           name, labels, (unsigned long long)cum);
    return rc;
}

int gw_metrics_render_levels(int inflight, int conns, char **buf, size_t *len, size_t *cap)
{
    return gw_buf_printf(buf, len, cap,
                         "# HELP tcpops_http_requests_in_flight HTTP requests being handled "
                         "now (this scrape among them).\n"
                         "# TYPE tcpops_http_requests_in_flight gauge\n"
                         "tcpops_http_requests_in_flight %d\n"
                         "# HELP tcpops_http_connections_open HTTP connections open now.\n"
                         "# TYPE tcpops_http_connections_open gauge\n"
                         "tcpops_http_connections_open %d\n"
                         "# HELP tcpops_build_info The program and its version (--version), "
                         "always 1.\n"
                         "# TYPE tcpops_build_info gauge\n"
                         "tcpops_build_info{version=\"%s\",program=\"tcpops-gateway\"} 1\n",
                         inflight, conns, util_version());
}
