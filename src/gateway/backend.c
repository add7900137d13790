#include "gateway/backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "util/log.h"
#include "gateway/metrics.h"
#include "gateway/sources.h"
#include "tcpops.pb-c.h"

#define MAX_MEMBERS 64
#define READY_FRESH_MS 1000 /* an answer this recent makes a service ready */
#define READY_PROBE_MS 1000 /* else a svc.Status call must answer within this */
#define STATUS_DEADLINE_MS 1000 /* a membership refresh's svc.Status call */
#define REFRESH_MS 1000      /* membership refresh period unless cfg says */
#define RESOLVE_MS 5000      /* names resolved again this often unless cfg says */
#define LOST_RESOLVE_MS 500  /* with every connection lost, resolve at most this often */
#define ANSWER_GRACE_MS 3000 /* a bootstrap endpoint's members outlive its silence this long */
#define SCRAPE_THREADS 8     /* members a /metrics scrape asks at once */

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

const char *gw_backend_name(const gw_backend *b)
{
    return b->name;
}

/* Records how the service's writes go: from a Status answer (which says how
 * its last write transaction ended) or from a call that failed for a full
 * disk. Takes b->lock. */
static void note_writes(gw_backend *b, int status, const char *error)
{
    pthread_mutex_lock(&b->lock);
    b->write_status = status;
    snprintf(b->write_error, sizeof(b->write_error), "%s", status != 0 ? error : "");
    pthread_mutex_unlock(&b->lock);
}

/* rpc_channel_call on the data channel, counted for /metrics: in flight
 * while it runs, then its time in its method's histogram (its status is
 * counted by the channel's stats). For the calls HTTP requests make;
 * the control plane's svc.Status (readiness, /status, the /metrics scrape)
 * goes through control_call. Any thread, no lock. */
static int timed_call(gw_backend *b, rpc_call *call)
{
    atomic_fetch_add_explicit(&b->inflight, 1, memory_order_relaxed);
    int64_t t0 = rpc_now_us();
    int st = rpc_channel_call(b->data, call);
    gw_hist_observe(&b->latency[gw_rpc_method_index(call->method)], rpc_now_us() - t0);
    atomic_fetch_sub_explicit(&b->inflight, 1, memory_order_relaxed);
    return st;
}

/* rpc_channel_call for the control plane's svc.Status: counted in
 * tcpops_rpc_calls_total{method="svc.Status"} by the channel's stats, but
 * kept out of tcpops_rpc_duration_seconds and tcpops_rpc_in_flight, which
 * tell how the data calls fare (a stuck member's 500 ms scrape timeouts are
 * no data call's latency). Any thread, no lock. */
static int control_call(gw_backend *b, rpc_call *call)
{
    return rpc_channel_call(b->data, call);
}

int gw_backend_call(gw_backend *b, rpc_call *call)
{
    int st = timed_call(b, call);
    if (st == TCPOPS__STATUS__STORAGE_FULL)
        note_writes(b, st, call->error); /* at once; the next Status clears it */
    return st;
}

int gw_backend_writes(gw_backend *b, char *error, size_t len)
{
    pthread_mutex_lock(&b->lock);
    int st = b->write_status;
    if (error != NULL && len > 0)
        snprintf(error, len, "%s", b->write_error);
    pthread_mutex_unlock(&b->lock);
    return st;
}

/* Notes what a svc.Status answer says of the service's writes. */
static void note_status(gw_backend *b, const Tcpops__StatusResponse *st)
{
    note_writes(b, st->write_status, st->write_error != NULL ? st->write_error : "");
}

/* gw_writes_fn for the discovery answers. */
static void note_source(void *user, int status, const char *error)
{
    note_writes(user, status, error);
}

int gw_backend_check_ready(gw_backend *b, int deadline_ms, char *why, size_t len)
{
    if (rpc_channel_ready(b->data) == 0) {
        snprintf(why, len, "no healthy connection to %s", b->name);
        return 0;
    }
    /* Connections up prove nothing (a stopped worker's kernel still holds
     * them): an answer must have come lately, or come now. */
    int64_t last = rpc_channel_last_answer_ms(b->data);
    if (last != 0 && rpc_now_ms() - last <= READY_FRESH_MS)
        return 1;
    int dl = deadline_ms < READY_PROBE_MS ? deadline_ms : READY_PROBE_MS;
    rpc_call c = {.method = "svc.Status", .deadline_ms = dl > 0 ? dl : 1, .idempotent = 1};
    int st = control_call(b, &c);
    if (st == TCPOPS__STATUS__OK) {
        Tcpops__StatusResponse *r = tcpops__status_response__unpack(NULL, c.resp_len, c.resp);
        if (r != NULL) {
            note_status(b, r);
            tcpops__status_response__free_unpacked(r, NULL);
        }
    } else if (st == TCPOPS__STATUS__DEADLINE_EXCEEDED) {
        snprintf(why, len, "%s did not answer within %d ms", b->name, dl);
    } else {
        snprintf(why, len, "%s: %s: %s", b->name, rpc_status_name(st), c.error);
    }
    rpc_call_fini(&c);
    return st == TCPOPS__STATUS__OK;
}

/* Channel events, on a connection thread: log them, and refresh membership
 * when something went away. Must not block for long. */
static void on_event(void *user, const rpc_event *ev)
{
    gw_backend *b = user;
    char q[300];
    switch (ev->type) {
    case RPC_EV_CONNECTED:
        util_log(UTIL_INFO, "connected", "service=%s endpoint=%s conn=%d", ev->service,
                 ev->endpoint, ev->conn);
        return;
    case RPC_EV_CONNECT_FAILED:
        /* One line per outage, not one per attempt. */
        if (ev->attempt == 1)
            util_log(UTIL_WARN, "cannot connect", "service=%s endpoint=%s err=%s retry_ms=%lld",
                     ev->service, ev->endpoint,
                     util_logq(q, sizeof(q), *ev->why ? ev->why : strerror(-ev->err)),
                     (long long)ev->delay_ms);
        return;
    case RPC_EV_DISCONNECTED:
        util_log(UTIL_WARN, "disconnected", "service=%s endpoint=%s conn=%d err=%s",
                 ev->service, ev->endpoint, ev->conn,
                 util_logq(q, sizeof(q), ev->err ? strerror(-ev->err) : "drained"));
        break;
    case RPC_EV_GOAWAY:
        util_log(UTIL_INFO, "goaway", "service=%s endpoint=%s conn=%d", ev->service,
                 ev->endpoint, ev->conn);
        break;
    case RPC_EV_EJECTED:
        util_log(UTIL_WARN, "ejected", "service=%s endpoint=%s for_ms=%lld", ev->service,
                 ev->endpoint, (long long)ev->delay_ms);
        return;
    }
    pthread_mutex_lock(&b->lock);
    b->kick = 1;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static int same_set(char a[][GW_MEMBER_ADDRLEN], size_t na, char b[][GW_MEMBER_ADDRLEN],
                    size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++) {
        int found = 0;
        for (size_t k = 0; k < nb && !found; k++)
            found = strcmp(a[i], b[k]) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

/* Gives the data channel its members as primaries (the bootstrap endpoints
 * when none are known) and the bootstrap endpoints as backups, which take
 * calls while no member has a connection up. Endpoints that leave drain.
 * Refresher thread only. 0 or -1 (logged). */
static int apply(gw_backend *b, char (*members)[GW_MEMBER_ADDRLEN], size_t nm,
                 char (*eps)[GW_BOOT_ADDRLEN], size_t neps)
{
    const char *prim[MAX_MEMBERS + GW_BOOT_ADDRS], *backup[GW_BOOT_ADDRS];
    size_t np = 0;
    for (size_t i = 0; i < nm; i++)
        prim[np++] = members[i];
    for (size_t i = 0; i < neps; i++) {
        backup[i] = eps[i];
        if (nm == 0)
            prim[np++] = eps[i];
    }
    char err[RPC_ERRLEN], q[300];
    if (rpc_channel_set_members(b->data, prim, np, backup, nm > 0 ? neps : 0, err) < 0) {
        util_log(UTIL_WARN, "membership update failed", "service=%s err=%s", b->name,
                 util_logq(q, sizeof(q), err));
        return -1;
    }
    return 0;
}

/* Takes in a new resolved set (the discovery channels follow it), asks for
 * the members, and updates the data channel when either changed. Returns
 * 0, or -1 when the members could not be learnt (retry soon). Refresher
 * thread only. */
static int refresh(gw_backend *b)
{
    char eps[GW_BOOT_ADDRS][GW_BOOT_ADDRLEN], err[RPC_ERRLEN], q[300];
    char fresh[MAX_MEMBERS][GW_MEMBER_ADDRLEN]; /* 4 KiB; one refresher thread */
    pthread_mutex_lock(&b->lock);
    unsigned gen = b->eps_gen;
    size_t neps = b->neps;
    memcpy(eps, b->eps, sizeof(eps[0]) * neps);
    pthread_mutex_unlock(&b->lock);
    int new_eps = gen != b->applied;
    if (new_eps && gw_sources_set(b->sources, eps, neps, err) < 0) {
        util_log(UTIL_WARN, "discovery update failed", "service=%s err=%s", b->name,
                 util_logq(q, sizeof(q), err));
        return -1;
    }
    int got = gw_sources_poll(b->sources, STATUS_DEADLINE_MS, fresh, MAX_MEMBERS, note_source, b);
    pthread_mutex_lock(&b->lock);
    int same = got >= 0 && same_set(fresh, (size_t)got, b->members, b->nmembers);
    size_t n = got >= 0 ? (size_t)got : b->nmembers;
    if (got < 0) /* keep what we have: the members we know, or the bootstrap */
        memcpy(fresh, b->members, sizeof(fresh[0]) * n);
    pthread_mutex_unlock(&b->lock);
    if (!new_eps && (got < 0 || same))
        return got < 0 ? -1 : 0;
    if (apply(b, fresh, n, eps, neps) < 0)
        return -1;
    b->applied = gen;
    pthread_mutex_lock(&b->lock);
    memcpy(b->members, fresh, sizeof(fresh[0]) * n);
    b->nmembers = n;
    pthread_mutex_unlock(&b->lock);
    if (got >= 0 && !same)
        util_log(UTIL_INFO, "members", "service=%s count=%zu", b->name, n);
    return got < 0 ? -1 : 0;
}

/* Asks the resolver for an early look: every connection is lost, and DNS
 * may name other hosts by now. */
static void resolve_soon(gw_backend *b)
{
    pthread_mutex_lock(&b->lock);
    b->resolve_now = 1;
    pthread_cond_signal(&b->rcond);
    pthread_mutex_unlock(&b->lock);
}

static void *refresher_main(void *arg)
{
    gw_backend *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        b->kick = 0;
        pthread_mutex_unlock(&b->lock);
        if (rpc_channel_ready(b->data) == 0)
            resolve_soon(b);
        int failed = refresh(b) < 0;
        pthread_mutex_lock(&b->lock);
        struct timespec ts;
        /* While the service cannot be asked, ask again soon. */
        int wait_ms = failed && b->refresh_ms > 200 ? 200 : b->refresh_ms;
        rpc_ms_to_timespec(rpc_now_ms() + wait_ms, &ts);
        while (!b->stopping && !b->kick &&
               pthread_cond_timedwait(&b->cond, &b->lock, &ts) == 0)
            ;
        if (b->kick && !b->stopping) {
            /* Let the departing worker leave the member list first. */
            pthread_mutex_unlock(&b->lock);
            struct timespec pause = {0, 50 * 1000000L};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&b->lock);
        }
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Logs what the last resolution changed: one line per change of a name's
 * answer or of the reason it fails, never one per attempt. */
static void log_news(const gw_backend *b)
{
    char q[300];
    for (size_t i = 0; i < b->boot.n; i++) {
        const gw_boot_entry *e = &b->boot.e[i];
        if (e->news & GW_BOOT_FAILED)
            util_log(UTIL_WARN, "cannot resolve", "service=%s name=%s:%u err=%s kept=%zu",
                     b->name, e->host, (unsigned)e->port, util_logq(q, sizeof(q), e->error),
                     e->naddr);
        if (e->news & (GW_BOOT_ANSWER | GW_BOOT_RECOVERED))
            util_log(UTIL_INFO, e->news & GW_BOOT_ANSWER ? "resolved" : "resolves again",
                     "service=%s name=%s:%u addresses=%zu", b->name, e->host, (unsigned)e->port,
                     e->naddr);
    }
}

/* Resolves every name once (blocking: DNS) and publishes a changed
 * endpoint set for the refresher. Resolver thread (and gw_backend_new). */
static void resolve_once(gw_backend *b)
{
    char eps[GW_BOOT_ADDRS][GW_BOOT_ADDRLEN], added[512], gone[512];
    int changed = gw_boot_resolve(&b->boot, b->resolve, b->resolve_user);
    log_news(b);
    if (!changed)
        return;
    size_t n = gw_boot_endpoints(&b->boot, eps, GW_BOOT_ADDRS);
    pthread_mutex_lock(&b->lock);
    changed = gw_boot_diff(b->eps, b->neps, eps, n, added, gone, sizeof(added));
    if (changed) {
        memcpy(b->eps, eps, sizeof(eps[0]) * n);
        b->neps = n;
        b->eps_gen++;
        b->kick = 1;
        pthread_cond_signal(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    if (changed)
        util_log(UTIL_INFO, "bootstrap endpoints", "service=%s count=%zu added=%s drained=%s",
                 b->name, n, added[0] ? added : "-", gone[0] ? gone : "-");
}

/* Resolves again every resolve_ms, and at most every LOST_RESOLVE_MS while
 * the refresher asks for it (resolve_now). */
static void *resolver_main(void *arg)
{
    gw_backend *b = arg;
    int64_t last = rpc_now_ms(); /* gw_backend_new resolved just now */
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        int every = b->resolve_now && LOST_RESOLVE_MS < b->resolve_ms ? LOST_RESOLVE_MS
                                                                      : b->resolve_ms;
        if (rpc_now_ms() < last + every) {
            struct timespec ts;
            rpc_ms_to_timespec(last + every, &ts);
            pthread_cond_timedwait(&b->rcond, &b->lock, &ts);
            continue;
        }
        b->resolve_now = 0;
        pthread_mutex_unlock(&b->lock);
        last = rpc_now_ms();
        resolve_once(b);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Stops the threads and frees what gw_backend_new made. */
static void release(gw_backend *b)
{
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_signal(&b->cond);
    pthread_cond_signal(&b->rcond);
    pthread_mutex_unlock(&b->lock);
    if (b->threads > 0)
        pthread_join(b->refresher, NULL);
    if (b->threads > 1)
        pthread_join(b->resolver, NULL);
    gw_sources_free(b->sources);
    rpc_channel_free(b->data);
    rpc_stats_free(b->stats);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    pthread_cond_destroy(&b->rcond);
    free(b);
}

/* The data channel's settings from cfg. */
static void channel_cfg(gw_backend *b, const gw_backend_cfg *cfg, rpc_channel_cfg *ccfg)
{
    rpc_channel_cfg_default(ccfg);
    ccfg->name = b->name;
    if (cfg->pool_size > 0)
        ccfg->pool_size = cfg->pool_size;
    ccfg->max_frame = cfg->max_frame;
    ccfg->max_inflight = cfg->max_inflight;
    ccfg->max_waiting = cfg->max_waiting;
    ccfg->spin_us = cfg->spin_us;
    ccfg->stats = b->stats;
    ccfg->tls = cfg->tls;
    ccfg->on_event = on_event;
    ccfg->event_user = b;
}

int gw_backend_new(gw_backend **out, const gw_backend_cfg *cfg, char *err, size_t errlen)
{
    char rerr[RPC_ERRLEN], what[40];
    gw_backend *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(b->name, sizeof(b->name), "%s", cfg->name);
    snprintf(what, sizeof(what), "--%s", cfg->name);
    b->refresh_ms = cfg->refresh_ms > 0 ? cfg->refresh_ms : REFRESH_MS;
    b->resolve_ms = cfg->resolve_ms > 0 ? cfg->resolve_ms : RESOLVE_MS;
    b->resolve = cfg->resolve != NULL ? cfg->resolve : gw_resolve_system;
    b->resolve_user = cfg->resolve_user;
    pthread_mutex_init(&b->lock, NULL);
    rpc_cond_init(&b->cond);
    rpc_cond_init(&b->rcond);
    if (gw_boot_parse(&b->boot, what, cfg->bootstrap, err, errlen) < 0)
        goto fail;
    /* Resolved here, before any request, so calls find the endpoints from
     * the first one on; a name that does not resolve yet is retried. */
    resolve_once(b);
    b->applied = b->eps_gen;
    if (rpc_stats_new(&b->stats) < 0)
        goto nomem;
    rpc_channel_cfg ccfg;
    channel_cfg(b, cfg, &ccfg);
    const char *eps[GW_BOOT_ADDRS];
    for (size_t i = 0; i < b->neps; i++)
        eps[i] = b->eps[i];
    ccfg.endpoints = eps;
    ccfg.nendpoints = b->neps;
    if (gw_sources_new(&b->sources, &ccfg, ANSWER_GRACE_MS) < 0)
        goto nomem;
    if (rpc_channel_new(&b->data, &ccfg, rerr) < 0 ||
        gw_sources_set(b->sources, b->eps, b->neps, rerr) < 0) {
        snprintf(err, errlen, "%s: %s", what, rerr);
        goto fail;
    }
    if (pthread_create(&b->refresher, NULL, refresher_main, b) != 0)
        goto nomem;
    b->threads = 1;
    if (pthread_create(&b->resolver, NULL, resolver_main, b) != 0)
        goto nomem;
    b->threads = 2;
    *out = b;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    release(b);
    return -EINVAL;
}

void gw_backend_free(gw_backend *b)
{
    if (b != NULL)
        release(b);
}

/* /status's bootstrap (as given), resolved and endpoints (with their
 * connections) of b, into o. Takes b->lock, then (not nested) the channel's. */
static void add_endpoints(gw_backend *b, json_t *o)
{
    json_t *boot = json_array();
    /* host and port never change after gw_backend_new; the answers do. */
    for (size_t i = 0; i < b->boot.n; i++)
        json_array_append_new(boot, json_sprintf("%s:%u", b->boot.e[i].host,
                                                 (unsigned)b->boot.e[i].port));
    json_object_set_new(o, "bootstrap", boot);
    json_t *resolved = json_array();
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->neps; i++)
        json_array_append_new(resolved, json_string(b->eps[i]));
    pthread_mutex_unlock(&b->lock);
    json_object_set_new(o, "resolved", resolved);

    enum { MAX_EPS = MAX_MEMBERS + GW_BOOT_ADDRS };
    rpc_endpoint_info *info = calloc(MAX_EPS, sizeof(*info));
    size_t n = info != NULL ? rpc_channel_endpoints(b->data, info, MAX_EPS) : 0;
    json_t *eps = json_array();
    int ready = 0;
    for (size_t i = 0; i < n && i < MAX_EPS; i++) {
        json_t *e = json_pack("{s:s,s:s,s:i,s:i,s:i}", "address", info[i].addr, "role",
                              info[i].backup ? "bootstrap" : "member", "connections",
                              info[i].conns, "ready", info[i].ready, "in_flight",
                              info[i].outstanding);
        json_object_set_new(e, "calls", json_integer((json_int_t)info[i].calls));
        if (info[i].last_err != 0)
            json_object_set_new(e, "last_error",
                                json_string(info[i].last_err == -EPROTONOSUPPORT
                                                ? "not a tcpops service"
                                                : strerror(-info[i].last_err)));
        if (info[i].ejected)
            json_object_set_new(e, "ejected", json_true());
        json_array_append_new(eps, e);
        ready += info[i].ready;
    }
    free(info);
    json_object_set_new(o, "endpoints", eps);
    json_object_set_new(o, "connections_ready", json_integer(ready));
}

json_t *gw_backend_status(gw_backend *b, int deadline_ms, int *up)
{
    json_t *o = json_object();
    add_endpoints(b, o);
    json_object_set_new(o, "calls_waiting", json_integer(rpc_channel_waiting(b->data)));

    int64_t t0 = rpc_now_us();
    rpc_call c = {.method = "svc.Status", .deadline_ms = deadline_ms, .idempotent = 1};
    int st = control_call(b, &c);
    double ms = (double)(rpc_now_us() - t0) / 1000.0;
    *up = st == TCPOPS__STATUS__OK;
    json_object_set_new(o, "state", json_string(*up ? "up" : "down"));
    if (*up) {
        json_object_set_new(o, "latency_ms", json_real(ms));
        Tcpops__StatusResponse *r = tcpops__status_response__unpack(NULL, c.resp_len, c.resp);
        if (r != NULL) {
            note_status(b, r);
            json_t *members = json_array();
            for (size_t i = 0; i < r->n_members; i++)
                json_array_append_new(members,
                                      json_pack("{s:s,s:i,s:I}", "address",
                                                r->members[i]->address, "pid",
                                                (int)r->members[i]->pid, "heartbeat_ms",
                                                (json_int_t)r->members[i]->heartbeat_ms));
            json_object_set_new(o, "members", members);
            tcpops__status_response__free_unpacked(r, NULL);
        }
    } else {
        json_object_set_new(o, "error", json_string(c.error));
        json_object_set_new(o, "code", json_string(rpc_status_name(st)));
    }
    rpc_call_fini(&c);
    char werr[256];
    int ws = gw_backend_writes(b, werr, sizeof(werr));
    json_object_set_new(o, "writes", json_string(ws == TCPOPS__STATUS__OK ? "ok" : "failing"));
    if (ws != TCPOPS__STATUS__OK) {
        json_object_set_new(o, "write_code", json_string(rpc_status_name(ws)));
        json_object_set_new(o, "write_error", json_string(werr));
    }
    return o;
}

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
            if (control_call(j->b, &c) == TCPOPS__STATUS__OK)
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
