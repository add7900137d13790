/*
 * The HTTP API of DESIGN.md. Each route validates its input, makes its RPCs
 * with the request's deadline and X-Request-Id as trace id, and maps RPC
 * statuses to HTTP:
 *
 *   OK 200/201   INVALID_ARGUMENT 400   NOT_FOUND 404   ALREADY_EXISTS 409
 *   UNAVAILABLE, RESOURCE_EXHAUSTED 503 + Retry-After   DEADLINE_EXCEEDED 504
 *   STORAGE_FULL 507 (the service's disk is full; reads still work)
 *   anything else 500
 */
#include "gateway/routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "gateway/input.h"
#include "gateway/page.h"
#include "gateway/process.h"
#include "util/log.h"
#include "util/name.h"
#include "tcpops.pb-c.h"

#define SCRAPE_MS 500 /* /metrics: each member's svc.Status answers within this */
#define SCRAPE_CACHE_MS 1000 /* /metrics: the members' counters serve this long */

static const struct {
    const char *path;
    gw_route route;
} paths[] = {
    {"/people", GW_R_PEOPLE},   {"/people/pets", GW_R_PEOPLE_PETS}, {"/status", GW_R_STATUS},
    {"/healthz", GW_R_HEALTHZ}, {"/readyz", GW_R_READYZ},           {"/metrics", GW_R_METRICS},
    {"/", GW_R_PAGE},
};

static gw_route match(const char *path)
{
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (strcmp(paths[i].path, path) == 0)
            return paths[i].route;
    return GW_R_OTHER;
}

/* ---- RPC plumbing ---- */

/* Packs msg and calls method on b with r's trace id and remaining deadline.
 * The caller rpc_call_fini's *c. Returns the status. */
static int call(gw_backend *b, gw_req *r, const char *method, const ProtobufCMessage *msg,
                int idempotent, rpc_call *c)
{
    uint8_t stackbuf[512];
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *body = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    int64_t left = r->deadline_ms - rpc_now_ms();
    memset(c, 0, sizeof(*c));
    if (body == NULL) {
        c->status = TCPOPS__STATUS__INTERNAL;
        snprintf(c->error, sizeof(c->error), "out of memory");
        return c->status;
    }
    protobuf_c_message_pack(msg, body);
    c->method = method;
    c->body = body;
    c->body_len = n;
    c->trace_id = r->id;
    c->idempotent = idempotent;
    c->deadline_ms = left > 0 ? (int)left : 1;
    int st = gw_backend_call(b, c);
    c->body = NULL;
    if (body != stackbuf)
        free(body);
    return st;
}

/* Answers an RPC that did not succeed. */
static void reply_rpc_error(gw_req *r, gw_backend *b, const rpc_call *c)
{
    const char *svc = gw_backend_name(b);
    switch (c->status) {
    case TCPOPS__STATUS__INVALID_ARGUMENT:
        gw_reply_error(r, 400, NULL, "%s", c->error);
        break;
    case TCPOPS__STATUS__NOT_FOUND:
        gw_reply_error(r, 404, NULL, "%s", c->error);
        break;
    case TCPOPS__STATUS__ALREADY_EXISTS:
        gw_reply_error(r, 409, NULL, "%s", c->error);
        break;
    case TCPOPS__STATUS__DEADLINE_EXCEEDED:
        gw_reply_error(r, 504, NULL, "%s service did not answer in time", svc);
        break;
    case TCPOPS__STATUS__UNAVAILABLE:
    case TCPOPS__STATUS__RESOURCE_EXHAUSTED:
        gw_reply_error(r, 503, NULL, "%s service unavailable: %s", svc, c->error);
        break;
    case TCPOPS__STATUS__STORAGE_FULL:
        /* Not worth a retry soon: space must be freed first. */
        gw_reply_error(r, 507, NULL, "%s service cannot store it: its disk is full (%s)", svc,
                       c->error);
        break;
    default:
        gw_reply_error(r, 500, NULL, "%s service error %s: %s", svc, rpc_status_name(c->status),
                       c->error);
        break;
    }
}

/* Checks the value of name parameter p as a name and leaves its NFC form
 * (name.h) in p->buf, as the service will store and compare it. Returns 1
 * when present and valid, 0 when absent, -1 when it answered 400. */
static int query_name(gw_req *r, const gw_param *p)
{
    char why[128];
    if (p->len == -1)
        return 0;
    if (p->len == -2) {
        gw_reply_error(r, 400, NULL, "%s: longer than %d bytes", p->name, UTIL_NAME_MAX);
        return -1;
    }
    if (util_name_normalize(p->buf, (size_t)p->len, p->buf, p->cap, NULL, why,
                            sizeof(why)) < 0) {
        gw_reply_error(r, 400, NULL, "%s: %s", p->name, why);
        return -1;
    }
    return 1;
}

/* Parses r's query against the parameters p of its route; -1 when it
 * answered 400. */
static int query(gw_req *r, gw_param *p, size_t np)
{
    char why[256];
    if (gw_req_query(r, p, np, why, sizeof(why)) < 0) {
        gw_reply_error(r, 400, NULL, "%s", why);
        return -1;
    }
    return 0;
}

/* ---- routes ---- */

static void people_list(gw *g, gw_req *r)
{
    char num[8], after[UTIL_NAME_MAX + 1] = "";
    long limit = 0;
    gw_param p[2] = {{.name = "limit", .buf = num, .cap = sizeof(num)},
                     {.name = "after", .buf = after, .cap = sizeof(after)}};
    if (query(r, p, 2) < 0)
        return;
    if (p[0].len != -1 && (p[0].len < 0 || gw_parse_limit(num, (size_t)p[0].len, &limit) < 0)) {
        gw_reply_error(r, 400, NULL, "limit must be a whole number from 1 to 1000");
        return;
    }
    if (query_name(r, &p[1]) < 0)
        return;

    Tcpops__ListPeopleRequest req = TCPOPS__LIST_PEOPLE_REQUEST__INIT;
    req.limit = (uint32_t)limit;
    req.after = after;
    rpc_call c;
    if (call(g->people, r, "people.List", &req.base, 1, &c) != TCPOPS__STATUS__OK) {
        reply_rpc_error(r, g->people, &c);
        rpc_call_fini(&c);
        return;
    }
    Tcpops__ListPeopleResponse *resp = tcpops__list_people_response__unpack(NULL, c.resp_len,
                                                                            c.resp);
    if (resp == NULL) {
        gw_reply_error(r, 500, NULL, "people service answered bytes that do not decode");
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < resp->n_names; i++)
            json_array_append_new(arr, json_stringn(resp->names[i], strlen(resp->names[i])));
        gw_reply_json(r, 200, arr, NULL, NULL);
        tcpops__list_people_response__free_unpacked(resp, NULL);
    }
    rpc_call_fini(&c);
}

static void people_create(gw *g, gw_req *r)
{
    char name[UTIL_NAME_MAX + 1], body_name[UTIL_NAME_MAX + 2];
    char why[256];
    gw_param p = {.name = "name", .buf = name, .cap = sizeof(name)};
    if (query(r, &p, 1) < 0)
        return;
    int have = query_name(r, &p);
    if (have < 0)
        return;
    /* A body is read whenever there is one, even beside ?name=: a second
     * name that is ignored would be ambiguous. */
    if (have == 0 || gw_req_has_body(r)) {
        char *body = malloc(g->max_body);
        if (body == NULL) {
            gw_reply_error(r, 500, NULL, "out of memory");
            return;
        }
        long len = gw_read_body(r, body, g->max_body);
        int bad = len < 0 || gw_parse_create_body(body, (size_t)len, body_name,
                                                  sizeof(body_name), why, sizeof(why)) < 0;
        free(body);
        if (len == -EMSGSIZE)
            gw_reply_error(r, 413, NULL, "request body over %zu bytes", g->max_body);
        else if (len == -ETIMEDOUT)
            gw_reply_error(r, 408, NULL, "request body incomplete: fewer than its Content-Length "
                           "of %lld bytes arrived", r->ri->content_length);
        else if (len < 0)
            gw_reply_error(r, 400, NULL, "request body incomplete or malformed (the connection "
                           "ended, or a bad chunk)");
        else if (bad)
            gw_reply_error(r, 400, NULL, "%s", why);
        if (bad)
            return;
        if (have && strcmp(name, body_name) != 0) {
            gw_reply_error(r, 400, NULL, "two names: \"%s\" in the query and \"%s\" in the body",
                           name, body_name);
            return;
        }
        memcpy(name, body_name, strlen(body_name) + 1);
    }

    Tcpops__CreatePersonRequest req = TCPOPS__CREATE_PERSON_REQUEST__INIT;
    req.name = name;
    rpc_call c;
    if (call(g->people, r, "people.Create", &req.base, 0, &c) != TCPOPS__STATUS__OK)
        reply_rpc_error(r, g->people, &c);
    else
        gw_reply_json(r, 201, json_pack("{s:s}", "name", name), NULL, NULL);
    rpc_call_fini(&c);
}

static void people_pets(gw *g, gw_req *r)
{
    char owner[UTIL_NAME_MAX + 1];
    gw_param p = {.name = "owner", .buf = owner, .cap = sizeof(owner)};
    if (query(r, &p, 1) < 0)
        return;
    int have = query_name(r, &p);
    if (have < 0)
        return;
    if (have == 0) {
        gw_reply_error(r, 400, NULL, "missing owner: use /people/pets?owner=NAME");
        return;
    }
    Tcpops__PetIdsRequest preq = TCPOPS__PET_IDS_REQUEST__INIT;
    preq.owner = owner;
    rpc_call c;
    if (call(g->people, r, "people.PetIds", &preq.base, 1, &c) != TCPOPS__STATUS__OK) {
        reply_rpc_error(r, g->people, &c);
        rpc_call_fini(&c);
        return;
    }
    Tcpops__PetIdsResponse *ids = tcpops__pet_ids_response__unpack(NULL, c.resp_len, c.resp);
    rpc_call_fini(&c);
    if (ids == NULL) {
        gw_reply_error(r, 500, NULL, "people service answered bytes that do not decode");
        return;
    }
    if (ids->n_ids == 0) {
        tcpops__pet_ids_response__free_unpacked(ids, NULL);
        gw_reply_json(r, 200, json_array(), NULL, NULL);
        return;
    }
    Tcpops__GetPetsByIdsRequest greq = TCPOPS__GET_PETS_BY_IDS_REQUEST__INIT;
    greq.n_ids = ids->n_ids;
    greq.ids = ids->ids;
    int st = call(g->pets, r, "pets.GetByIds", &greq.base, 1, &c);
    tcpops__pet_ids_response__free_unpacked(ids, NULL);
    if (st != TCPOPS__STATUS__OK) {
        reply_rpc_error(r, g->pets, &c);
        rpc_call_fini(&c);
        return;
    }
    Tcpops__GetPetsByIdsResponse *pets =
        tcpops__get_pets_by_ids_response__unpack(NULL, c.resp_len, c.resp);
    rpc_call_fini(&c);
    if (pets == NULL) {
        gw_reply_error(r, 500, NULL, "pets service answered bytes that do not decode");
        return;
    }
    /* Pets come back in the order asked; an id the pets service no longer
     * knows is left out rather than invented. */
    json_t *arr = json_array();
    for (size_t i = 0; i < pets->n_pets; i++)
        json_array_append_new(arr, json_string(pets->pets[i]->name));
    tcpops__get_pets_by_ids_response__free_unpacked(pets, NULL);
    gw_reply_json(r, 200, arr, NULL, NULL);
}

typedef struct status_job {
    gw_backend *b;
    int deadline_ms;
    json_t *out;
    int up;
} status_job;

static void *status_thread(void *arg)
{
    status_job *j = arg;
    j->out = gw_backend_status(j->b, j->deadline_ms, &j->up);
    return NULL;
}

static void status(gw *g, gw_req *r)
{
    int64_t left = r->deadline_ms - rpc_now_ms();
    int dl = left > 1000 ? 1000 : (left > 0 ? (int)left : 1);
    status_job jobs[2] = {{.b = g->people, .deadline_ms = dl}, {.b = g->pets, .deadline_ms = dl}};
    pthread_t th;
    /* Both services are asked at once: pets on a helper thread. */
    int threaded = pthread_create(&th, NULL, status_thread, &jobs[1]) == 0;
    status_thread(&jobs[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        status_thread(&jobs[1]);
    int up = jobs[0].up && jobs[1].up;
    /* A service whose writes fail (a full disk) is up, and serves reads. */
    int writes_ok = 1;
    for (int i = 0; i < 2; i++)
        writes_ok &= gw_backend_writes(jobs[i].b, NULL, 0) == TCPOPS__STATUS__OK;
    json_t *services = json_object();
    for (int i = 0; i < 2; i++)
        json_object_set_new(services, gw_backend_name(jobs[i].b), jobs[i].out);
    json_t *body = json_pack("{s:s,s:{s:i,s:I},s:o}", "status",
                             up && writes_ok ? "ok" : "degraded",
                             "gateway", "pid", (int)getpid(), "uptime_ms",
                             (json_int_t)(rpc_now_ms() - g->started_ms), "services", services);
    if (up)
        gw_reply_json(r, 200, body, NULL, NULL);
    else
        gw_reply_json(r, 503, body, "Retry-After", "1");
}

static void readyz(gw *g, gw_req *r)
{
    if (atomic_load(&g->draining)) {
        gw_reply_error(r, 503, NULL, "not ready: shutting down");
        return;
    }
    gw_backend *bs[2] = {g->people, g->pets};
    char why[2][400];
    int ok[2];
    /* Ready: each service answered lately, or answers now (see
     * gw_backend_check_ready); the second asked on a helper thread would save
     * at most the probe's 1 s, and both are fresh under any traffic. */
    for (int i = 0; i < 2; i++) {
        int64_t left = r->deadline_ms - rpc_now_ms();
        why[i][0] = '\0';
        ok[i] = gw_backend_check_ready(bs[i], left > 0 ? (int)left : 1, why[i],
                                       sizeof(why[i]));
    }
    if (!ok[0] || !ok[1]) {
        gw_reply_error(r, 503, NULL, "not ready: %s%s%s", ok[0] ? "" : why[0],
                       !ok[0] && !ok[1] ? "; " : "", ok[1] ? "" : why[1]);
        return;
    }
    /* A full disk leaves a service ready (reads work); the detail says so. */
    json_t *body = json_pack("{s:s}", "status", "ready");
    for (int i = 0; i < 2; i++) {
        char werr[256];
        int ws = gw_backend_writes(bs[i], werr, sizeof(werr));
        if (ws == TCPOPS__STATUS__OK)
            continue;
        json_t *failing = json_object_get(body, "writes_failing");
        if (failing == NULL) {
            failing = json_object();
            json_object_set_new(body, "writes_failing", failing);
        }
        char detail[320];
        snprintf(detail, sizeof(detail), "%s: %s", rpc_status_name(ws), werr);
        json_object_set_new(failing, gw_backend_name(bs[i]), json_string(detail));
    }
    gw_reply_json(r, 200, body, NULL, NULL);
}

/* gw_fill_fn: the members' counters, asked of each now. */
static int scrape_members(void *user, int deadline_ms, char **buf, size_t *len, size_t *cap)
{
    gw *g = user;
    gw_backend *bs[2] = {g->people, g->pets};
    return gw_backends_scrape(bs, 2, deadline_ms, buf, len, cap);
}

static void metrics(gw *g, gw_req *r)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    gw_backend *bs[2] = {g->people, g->pets};
    /* Each member is asked for its counters within SCRAPE_MS (and the
     * request's deadline): one that does not answer shows as
     * tcpops_service_member_up 0, and the rest is served on time. /metrics
     * needs no credentials and the status page asks it every second per
     * open tab, so the members are asked by one request at a time, and
     * what they said serves every request for SCRAPE_CACHE_MS; the
     * gateway's own counters are read fresh for each. */
    int64_t left = r->deadline_ms - rpc_now_ms();
    int scrape_ms = left < SCRAPE_MS ? (left > 0 ? (int)left : 1) : SCRAPE_MS;
    int rc = gw_metrics_render(g->metrics, &buf, &len, &cap);
    if (rc == 0)
        rc = gw_metrics_render_levels(atomic_load(&g->inflight), atomic_load(&g->conns), &buf,
                                      &len, &cap);
    if (rc == 0)
        rc = gw_process_render(&buf, &len, &cap);
    if (rc == 0)
        rc = gw_backends_metrics(bs, 2, &buf, &len, &cap);
    if (rc == 0)
        rc = gw_metrics_render_shared(g->metrics, SCRAPE_CACHE_MS, scrape_ms, scrape_members, g,
                                      &buf, &len, &cap);
    if (rc < 0)
        gw_reply_error(r, 500, NULL, "out of memory");
    else
        gw_reply_raw(r, 200, "text/plain; version=0.0.4", buf, len, NULL, NULL);
    free(buf);
}

/* The status page: one self-contained HTML file that polls /status and
 * /metrics from the browser. Its CSP names the hashes of its own script and
 * style, so nothing injected into it could run; no-cache: a new gateway's
 * page is fetched again, not taken from the browser's cache. */
static void page(gw_req *r)
{
    char headers[1024];
    snprintf(headers, sizeof(headers),
             "Cache-Control: no-cache\r\nContent-Security-Policy: %s\r\n"
             "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
             gw_page_csp);
    gw_reply_headers(r, 200, "text/html; charset=utf-8", headers, gw_page_html,
                     gw_page_html_len);
}

const char *gw_route_allow(gw_route route)
{
    switch (route) {
    case GW_R_PEOPLE:
        return "GET, HEAD, POST";
    case GW_R_OTHER:
        return NULL;
    default:
        return "GET, HEAD";
    }
}

gw_route gw_route_of(const char *raw_path)
{
    char path[64], why[128];
    return gw_parse_path(raw_path, path, sizeof(path), why, sizeof(why)) < 0 ? GW_R_OTHER
                                                                            : match(path);
}

/* Answers r when its head breaks a rule the routes rely on; 1 if it did. */
static int refuse_head(gw *g, gw_req *r)
{
    char why[256];
    int st = gw_req_check_head(r, g->max_header, why, sizeof(why));
    if (st != 0) {
        /* Where this request ends is in doubt: nothing after it on this
         * connection is read. */
        gw_req_close(r);
        gw_reply_error(r, st, NULL, "%s", why);
        return 1;
    }
    const char *expect = mg_get_header(r->conn, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") != 0) {
        gw_reply_error(r, 417, NULL, "only \"Expect: 100-continue\" is supported");
        return 1;
    }
    return 0;
}

/* The access log: one line per request, named as logfmt tools expect
 * (remote, method, path with its query, status, bytes, dur_us, ua) and the
 * request_id every service logs for the calls it caused. */
static void access_line(const gw_req *r, const char *method, const char *raw, int64_t dur)
{
    char path[1024], qp[1100], qm[40], qr[80], qu[300], remote[64];
    const char *qs = r->ri->query_string;
    snprintf(path, sizeof(path), "%s%s%s", raw, qs != NULL ? "?" : "", qs != NULL ? qs : "");
    snprintf(remote, sizeof(remote), "%s:%d", r->ri->remote_addr, r->ri->remote_port);
    const char *ua = mg_get_header(r->conn, "User-Agent");
    util_log(UTIL_INFO, "request",
             "remote=%s method=%s path=%s status=%d bytes=%zu dur_us=%lld ua=%s request_id=%s",
             util_logq(qr, sizeof(qr), remote), util_logq(qm, sizeof(qm), method),
             util_logq(qp, sizeof(qp), path), r->status, r->bytes, (long long)dur,
             util_logq(qu, sizeof(qu), ua != NULL ? ua : ""), r->id);
}

int gw_handle(struct mg_connection *conn, void *cbdata)
{
    gw *g = cbdata;
    gw_req r;
    atomic_fetch_add(&g->inflight, 1);
    gw_req_init(&r, conn, g->deadline_ms);
    if (atomic_load(&g->draining))
        gw_req_close(&r); /* keep-alive clients move to the next gateway */
    const char *method = r.ri->request_method;
    /* The path as sent: civetweb's decoded local_uri would route
     * /people%2Fpets to /people/pets (decode_url is off, see gateway.c). */
    const char *raw = r.ri->local_uri_raw != NULL ? r.ri->local_uri_raw : "";
    char path[256], why[128];
    int plen = gw_parse_path(raw, path, sizeof(path), why, sizeof(why));
    gw_route route = plen >= 0 ? match(path) : GW_R_OTHER;
    gw_req_count(&r, g->metrics, route, method);
    /* HEAD is GET without the body (gw_reply_raw leaves it out). */
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;

    if (refuse_head(g, &r)) {
        /* answered */
    } else if (plen == -1) {
        gw_reply_error(&r, 400, NULL, "%s", why);
    } else if (route == GW_R_OTHER) {
        gw_reply_error(&r, 404, NULL, "no route %s", raw);
    } else if (!(get || (post && route == GW_R_PEOPLE))) {
        gw_reply_error(&r, 405, gw_route_allow(route), "%s is not allowed on %s", method, path);
    } else if (route == GW_R_PEOPLE) {
        if (get)
            people_list(g, &r);
        else
            people_create(g, &r);
    } else if (route == GW_R_PEOPLE_PETS) {
        people_pets(g, &r);
    } else if (query(&r, NULL, 0) == 0) {
        /* The routes that take no parameters refuse any. */
        if (route == GW_R_STATUS)
            status(g, &r);
        else if (route == GW_R_HEALTHZ)
            gw_reply_json(&r, 200, json_pack("{s:s}", "status", "ok"), NULL, NULL);
        else if (route == GW_R_READYZ)
            readyz(g, &r);
        else if (route == GW_R_PAGE)
            page(&r);
        else
            metrics(g, &r);
    }

    gw_req_finish(&r);
    int64_t dur = rpc_now_us() - r.start_us;
    if (g->access_log)
        access_line(&r, method, raw, dur);
    atomic_fetch_sub(&g->inflight, 1);
    return r.status;
}
