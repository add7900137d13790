/* The backends' part of GET /metrics: the gateway's own RPC series
 * (gw_backends_metrics) and the members' Status counters, asked of each
 * member at scrape time (gw_backends_scrape). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "gateway/backend_int.h"
#include "tcpops.pb-c.h"

#define SCRAPE_THREADS 8 /* members a /metrics scrape asks at once */

typedef struct render {
    const char *service;
    char **buf;
    size_t *len, *cap;
    int rc;
} render;

static void render_call(void *user, const char *method, const char *status, uint64_t n)
{
    render *r = user;
    if (r->rc == 0)
        r->rc = gw_buf_printf(r->buf, r->len, r->cap,
                              "tcpops_rpc_calls_total{service=\"%s\",method=\"%s\","
                              "status=\"%s\"} %llu\n",
                              r->service, method, status, (unsigned long long)n);
}

/* Family name of type (gauge, counter) with one sample per backend:
 * value(b). */
static int per_service(gw_backend *const *bs, size_t nb, const char *name, const char *type,
                       const char *help, long long (*value)(gw_backend *b), char **buf,
                       size_t *len, size_t *cap)
{
    int rc = gw_buf_printf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                           type);
    for (size_t i = 0; i < nb && rc == 0; i++)
        rc = gw_buf_printf(buf, len, cap, "%s{service=\"%s\"} %lld\n", name, bs[i]->name,
                           value(bs[i]));
    return rc;
}

static long long in_flight(gw_backend *b)
{
    return atomic_load(&b->inflight);
}

static long long writes_failing(gw_backend *b)
{
    return gw_backend_writes(b, NULL, 0) != TCPOPS__STATUS__OK;
}

static long long scrape_errors(gw_backend *b)
{
    return (long long)atomic_load(&b->scrape_errors);
}

static long long members(gw_backend *b)
{
    pthread_mutex_lock(&b->lock);
    size_t n = b->nmembers;
    pthread_mutex_unlock(&b->lock);
    return (long long)n;
}

int gw_backends_metrics(gw_backend *const *bs, size_t nb, char **buf, size_t *len, size_t *cap)
{
    /* The client-side counters; each exported as tcpops_rpc_NAME(_total). */
    static const rpc_counter counters[] = {
        RPC_C_CONNS_OPEN, RPC_C_CONNECTS,    RPC_C_RECONNECTS,      RPC_C_CONNECT_FAILURES,
        RPC_C_CONNS_LOST, RPC_C_LATE_ANSWERS, RPC_C_GOAWAYS,         RPC_C_RETRIES,
        RPC_C_FAIL_FAST,  RPC_C_INFLIGHT_LIMIT, RPC_C_PROTOCOL_ERRORS, RPC_C_OVERSIZE_FRAMES,
        RPC_C_EJECTIONS,  RPC_C_TLS_HANDSHAKES, RPC_C_TLS_RESUMED,
    };
    int rc = gw_buf_printf(buf, len, cap,
                           "# HELP tcpops_rpc_calls_total RPC calls by service, method, status.\n"
                           "# TYPE tcpops_rpc_calls_total counter\n");
    for (size_t i = 0; i < nb && rc == 0; i++) {
        render r = {.service = bs[i]->name, .buf = buf, .len = len, .cap = cap};
        rpc_stats_foreach_call(bs[i]->stats, render_call, &r);
        rc = r.rc;
    }
    if (rc == 0)
        rc = gw_buf_printf(buf, len, cap,
                           "# HELP tcpops_rpc_duration_seconds Time from an RPC's start to its "
                           "answer or failure, retries included, by service and method.\n"
                           "# TYPE tcpops_rpc_duration_seconds histogram\n");
    for (size_t i = 0; i < nb && rc == 0; i++)
        for (int m = 0; m < GW_RPC_METHODS && rc == 0; m++) {
            char labels[96];
            if (gw_hist_count(&bs[i]->latency[m]) == 0)
                continue; /* a method this service never had called */
            snprintf(labels, sizeof(labels), "service=\"%s\",method=\"%s\"", bs[i]->name,
                     gw_rpc_method_name(m));
            rc = gw_hist_render(&bs[i]->latency[m], "tcpops_rpc_duration_seconds", labels, buf,
                                len, cap);
        }
    if (rc == 0)
        rc = per_service(bs, nb, "tcpops_rpc_in_flight", "gauge", "RPC calls under way now.",
                         in_flight, buf, len, cap);
    for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]) && rc == 0; k++) {
        rpc_counter c = counters[k];
        int gauge = c == RPC_C_CONNS_OPEN; /* the one level; the rest only grow */
        char name[96];
        snprintf(name, sizeof(name), "tcpops_rpc_%s%s", rpc_counter_name(c), gauge ? "" : "_total");
        rc = gw_buf_printf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", name,
                           rpc_counter_help(c), name, gauge ? "gauge" : "counter");
        for (size_t i = 0; i < nb && rc == 0; i++)
            rc = gw_buf_printf(buf, len, cap, "%s{service=\"%s\"} %lld\n", name, bs[i]->name,
                               (long long)rpc_stats_get(bs[i]->stats, c));
    }
    if (rc == 0)
        rc = per_service(bs, nb, "tcpops_service_writes_failing", "gauge",
                         "1 while a service's last write failed (a full disk: STORAGE_FULL).",
                         writes_failing, buf, len, cap);
    if (rc == 0)
        rc = per_service(bs, nb, "tcpops_rpc_members", "gauge",
                         "Live workers known per service.", members, buf, len, cap);
    return rc;
}

/* ---- the members' own counters (gw_backends_scrape) ---- */

typedef struct scrape_job {
    gw_backend *b;
    char member[GW_MEMBER_ADDRLEN];
    Tcpops__StatusResponse *resp; /* its answer; NULL: none in time */
} scrape_job;

typedef struct scrape {
    scrape_job *jobs;
    size_t n;
    _Atomic size_t next;
    int64_t until_ms;             /* the scrape's end: no call outlives it */
} scrape;

/* Asks members for svc.Status, job after job, until none is left. Runs on
 * the scraping thread and on SCRAPE_THREADS - 1 helpers. */
static void *scrape_main(void *arg)
{
    scrape *s = arg;
    size_t i;
    while ((i = atomic_fetch_add(&s->next, 1)) < s->n) {
        scrape_job *j = &s->jobs[i];
        int64_t left = s->until_ms - rpc_now_ms();
        if (left > 0) {
            rpc_call c = {.method = "svc.Status", .deadline_ms = (int)left, .idempotent = 1,
                          .to = j->member};
            if (gw_backend_control_call(j->b, &c) == TCPOPS__STATUS__OK)
                j->resp = tcpops__status_response__unpack(NULL, c.resp_len, c.resp);
            rpc_call_fini(&c);
        }
        if (j->resp == NULL)
            atomic_fetch_add_explicit(&j->b->scrape_errors, 1, memory_order_relaxed);
    }
    return NULL;
}

/* One job per member of each backend (at most max). */
static size_t scrape_jobs(gw_backend *const *bs, size_t nb, scrape_job *jobs, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < nb; i++) {
        pthread_mutex_lock(&bs[i]->lock);
        for (size_t k = 0; k < bs[i]->nmembers && n < max; k++, n++) {
            jobs[n].b = bs[i];
            memcpy(jobs[n].member, bs[i]->members[k], sizeof(jobs[n].member));
        }
        pthread_mutex_unlock(&bs[i]->lock);
    }
    return n;
}

/* The labels of a job's samples: service, member and (answered) pid. */
static void job_labels(const scrape_job *j, int with_pid, char *out, size_t len)
{
    char member[2 * GW_MEMBER_ADDRLEN];
    gw_label_escape(member, sizeof(member), j->member);
    if (with_pid && j->resp != NULL)
        snprintf(out, len, "service=\"%s\",member=\"%s\",pid=\"%u\"", j->b->name, member,
                 (unsigned)j->resp->pid);
    else
        snprintf(out, len, "service=\"%s\",member=\"%s\"", j->b->name, member);
}

/* A counter of a Status answer by name, or -1 when it has none such. */
static long long answer_counter(const Tcpops__StatusResponse *r, const char *name)
{
    for (size_t i = 0; i < r->n_counters; i++)
        if (r->counters[i]->key != NULL && strcmp(r->counters[i]->key, name) == 0)
            return (long long)r->counters[i]->value;
    return -1;
}

/* Family name (HELP, TYPE) with one sample per answering member: value()
 * of its answer, a sample left out where value() is below 0. The header
 * is written only with a first sample. */
static int render_family(const scrape *s, const char *name, const char *type, const char *help,
                         long long (*value)(const Tcpops__StatusResponse *, const void *),
                         const void *arg, char **buf, size_t *len, size_t *cap)
{
    int rc = 0, header = 0;
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        const scrape_job *j = &s->jobs[i];
        long long v = j->resp != NULL ? value(j->resp, arg) : -1;
        if (v < 0)
            continue;
        char labels[256];
        job_labels(j, 1, labels, sizeof(labels));
        if (!header++)
            rc = gw_buf_printf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                               type);
        if (rc == 0)
            rc = gw_buf_printf(buf, len, cap, "%s{%s} %lld\n", name, labels, v);
    }
    return rc;
}

static long long value_calls(const Tcpops__StatusResponse *r, const void *arg)
{
    (void)arg;
    return (long long)r->calls;
}

static long long value_uptime(const Tcpops__StatusResponse *r, const void *arg)
{
    (void)arg;
    return (long long)(r->uptime_ms / 1000);
}

static long long value_counter(const Tcpops__StatusResponse *r, const void *arg)
{
    return answer_counter(r, rpc_counter_name(*(const rpc_counter *)arg));
}

/* What the scrape found: member_up for every member, the scrape errors per
 * service, then each counter family. */
static int render_scrape(const scrape *s, gw_backend *const *bs, size_t nb, char **buf,
                         size_t *len, size_t *cap)
{
    /* The server-side counters of a Status answer; the client-side ones
     * are the gateway's own tcpops_rpc_NAME. */
    static const rpc_counter counters[] = {
        RPC_C_CONNS_OPEN,      RPC_C_CONNS_LOST,       RPC_C_GOAWAYS,
        RPC_C_PROTOCOL_ERRORS, RPC_C_OVERSIZE_FRAMES,  RPC_C_CONNS_REFUSED,
        RPC_C_CONNS_EVICTED,   RPC_C_EXPIRED_SKIPPED,  RPC_C_INFLIGHT_LIMIT,
        RPC_C_WRITE_BUF_FULL,  RPC_C_PARTIAL_TIMEOUT,  RPC_C_IDLE_CLOSED,
        RPC_C_TLS_HANDSHAKES,  RPC_C_TLS_RESUMED,      RPC_C_TLS_REFUSED,
        RPC_C_TEXT_REFUSED,
    };
    int rc = gw_buf_printf(buf, len, cap,
                           "# HELP tcpops_service_member_up 1 when the member answered this "
                           "scrape's svc.Status in time, else 0 (its counters are left out).\n"
                           "# TYPE tcpops_service_member_up gauge\n");
    for (size_t i = 0; i < s->n && rc == 0; i++) {
        char labels[256];
        job_labels(&s->jobs[i], 0, labels, sizeof(labels));
        rc = gw_buf_printf(buf, len, cap, "tcpops_service_member_up{%s} %d\n", labels,
                           s->jobs[i].resp != NULL);
    }
    if (rc == 0)
        rc = per_service(bs, nb, "tcpops_service_scrape_errors_total", "counter",
                         "Members that did not answer a scrape's svc.Status in time.",
                         scrape_errors, buf, len, cap);
    if (rc == 0)
        rc = render_family(s, "tcpops_service_uptime_seconds", "gauge",
                           "Seconds since the member started.", value_uptime, NULL, buf, len,
                           cap);
    if (rc == 0)
        rc = render_family(s, "tcpops_service_calls_total", "counter",
                           "Calls the member answered, every method and status.", value_calls,
                           NULL, buf, len, cap);
    for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]) && rc == 0; k++) {
        int gauge = counters[k] == RPC_C_CONNS_OPEN;
        char name[96];
        snprintf(name, sizeof(name), "tcpops_service_%s%s", rpc_counter_name(counters[k]),
                 gauge ? "" : "_total");
        rc = render_family(s, name, gauge ? "gauge" : "counter", rpc_counter_help(counters[k]),
                           value_counter, &counters[k], buf, len, cap);
    }
    return rc;
}

int gw_backends_scrape(gw_backend *const *bs, size_t nb, int deadline_ms, char **buf,
                       size_t *len, size_t *cap)
{
    scrape s = {.until_ms = rpc_now_ms() + deadline_ms};
    pthread_t th[SCRAPE_THREADS - 1];
    size_t started = 0;
    s.jobs = calloc(nb * MAX_MEMBERS + 1, sizeof(*s.jobs));
    if (s.jobs == NULL)
        return -ENOMEM;
    s.n = scrape_jobs(bs, nb, s.jobs, nb * MAX_MEMBERS);
    /* All at once (up to SCRAPE_THREADS): one member that never answers
     * costs the scrape deadline_ms, not deadline_ms per member after it. */
    while (started + 1 < SCRAPE_THREADS && started + 1 < s.n &&
           pthread_create(&th[started], NULL, scrape_main, &s) == 0)
        started++;
    scrape_main(&s);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    int rc = render_scrape(&s, bs, nb, buf, len, cap);
    for (size_t i = 0; i < s.n; i++)
        if (s.jobs[i].resp != NULL)
            tcpops__status_response__free_unpacked(s.jobs[i].resp, NULL);
    free(s.jobs);
    return rc;
}
