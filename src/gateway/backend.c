#include "gateway/backend.h"
#include "gateway/backend_int.h"

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

#define READY_FRESH_MS 1000 /* an answer this recent makes a service ready */
#define READY_PROBE_MS 1000 /* else a svc.Status call must answer within this */
#define STATUS_DEADLINE_MS 1000 /* a membership refresh's svc.Status call */
#define REFRESH_MS 1000      /* membership refresh period unless cfg says */
#define RESOLVE_MS 5000      /* names resolved again this often unless cfg says */
#define LOST_RESOLVE_MS 500  /* with every connection lost, resolve at most this often */
#define ANSWER_GRACE_MS 3000 /* a bootstrap endpoint's members outlive its silence this long */

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
 * goes through gw_backend_control_call. Any thread, no lock. */
static int timed_call(gw_backend *b, rpc_call *call)
{
    atomic_fetch_add_explicit(&b->inflight, 1, memory_order_relaxed);
    int64_t t0 = rpc_now_us();
    int st = rpc_channel_call(b->data, call);
    gw_hist_observe(&b->latency[gw_rpc_method_index(call->method)], rpc_now_us() - t0);
    atomic_fetch_sub_explicit(&b->inflight, 1, memory_order_relaxed);
    return st;
}

int gw_backend_control_call(gw_backend *b, rpc_call *call)
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
    int st = gw_backend_control_call(b, &c);
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
    int st = gw_backend_control_call(b, &c);
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
