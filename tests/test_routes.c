/* src/gateway/routes.c: which path is which route and what it allows, and
 * gw_handle in this process (civetweb on a free port) in front of two small
 * fake services on free ports: how each route checks its input, what it
 * asks the services and how their statuses become HTTP statuses. The real
 * programs are tested end to end by test_gateway. No sleeps. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "gateway/page.h"
#include "gateway/routes.h"
#include "http_client.h"
#include "rpc/clock.h"
#include "rpc/server.h"
#include "tcpops.pb-c.h"
#include "testsvc.h"

/* ---- paths and methods, no server ---- */

static void expect_route(const char *raw, gw_route want)
{
    gw_route got = gw_route_of(raw);
    if (got != want)
        fail_msg("path \"%.80s\": expected route %d, got %d", raw, want, got);
}

static void test_route_of(void **state)
{
    (void)state;
    expect_route("/people", GW_R_PEOPLE);
    expect_route("/people/pets", GW_R_PEOPLE_PETS);
    expect_route("/status", GW_R_STATUS);
    expect_route("/healthz", GW_R_HEALTHZ);
    expect_route("/readyz", GW_R_READYZ);
    expect_route("/metrics", GW_R_METRICS);
    expect_route("/", GW_R_PAGE);
    expect_route("/p%65ople", GW_R_PEOPLE); /* decoded before matching */
    expect_route("/people%2Fpets", GW_R_OTHER); /* an encoded '/' is no separator */
    expect_route("/people/", GW_R_OTHER);
    expect_route("/People", GW_R_OTHER);
    expect_route("people", GW_R_OTHER);
    expect_route("/people%zz", GW_R_OTHER);
    expect_route("", GW_R_OTHER);
    char longp[300];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    expect_route(longp, GW_R_OTHER);
}

static void test_route_allow(void **state)
{
    (void)state;
    assert_string_equal(gw_route_allow(GW_R_PEOPLE), "GET, HEAD, POST");
    for (int r = GW_R_PEOPLE_PETS; r < GW_R_OTHER; r++)
        assert_string_equal(gw_route_allow((gw_route)r), "GET, HEAD");
    assert_null(gw_route_allow(GW_R_OTHER));
}

/* ---- two fake services ---- */

/* Packs resp as the answer and frees the request it answers. */
static void answer(rpc_reply *out, const ProtobufCMessage *resp, void *req)
{
    rpc_reply_pack(out, resp);
    protobuf_c_message_free_unpacked(req, NULL);
}

/* people.List answers the names "limit=N" and "after=X" it was asked with. */
static void people_list(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                        rpc_reply *out)
{
    (void)ctx;
    Tcpops__ListPeopleRequest *req = tcpops__list_people_request__unpack(NULL, len, body);
    if (req == NULL) {
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "undecodable");
        return;
    }
    char a[80], b[120];
    snprintf(a, sizeof(a), "limit=%u", req->limit);
    snprintf(b, sizeof(b), "after=%s", req->after);
    char *names[2] = {a, b};
    Tcpops__ListPeopleResponse resp = TCPOPS__LIST_PEOPLE_RESPONSE__INIT;
    resp.n_names = 2;
    resp.names = names;
    answer(out, &resp.base, req);
}

/* people.Create: "taken" exists, "full" meets a full disk, "odd" fails
 * otherwise, anything else is created. */
static void people_create(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                          rpc_reply *out)
{
    (void)ctx;
    Tcpops__CreatePersonRequest *req = tcpops__create_person_request__unpack(NULL, len, body);
    if (req == NULL)
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "undecodable");
    else if (strcmp(req->name, "taken") == 0)
        rpc_reply_error(out, TCPOPS__STATUS__ALREADY_EXISTS, "taken exists");
    else if (strcmp(req->name, "full") == 0)
        rpc_reply_error(out, TCPOPS__STATUS__STORAGE_FULL, "disk full");
    else if (strcmp(req->name, "odd") == 0)
        rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "odd failure");
    tcpops__create_person_request__free_unpacked(req, NULL);
}

/* people.PetIds: ann has pets 2 and 1, bob none, anyone else is unknown. */
static void people_pet_ids(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                           rpc_reply *out)
{
    (void)ctx;
    Tcpops__PetIdsRequest *req = tcpops__pet_ids_request__unpack(NULL, len, body);
    uint64_t ids[2] = {2, 1};
    Tcpops__PetIdsResponse resp = TCPOPS__PET_IDS_RESPONSE__INIT;
    if (req != NULL && strcmp(req->owner, "ann") == 0) {
        resp.n_ids = 2;
        resp.ids = ids;
    }
    if (req != NULL && (strcmp(req->owner, "ann") == 0 || strcmp(req->owner, "bob") == 0))
        rpc_reply_pack(out, &resp.base);
    else
        rpc_reply_error(out, TCPOPS__STATUS__NOT_FOUND, "no such person");
    tcpops__pet_ids_request__free_unpacked(req, NULL);
}

/* pets.GetByIds: pet N is named "petN", in the order asked. */
static void pets_get(const rpc_call_ctx *ctx, const uint8_t *body, size_t len, rpc_reply *out)
{
    (void)ctx;
    Tcpops__GetPetsByIdsRequest *req = tcpops__get_pets_by_ids_request__unpack(NULL, len, body);
    if (req == NULL || req->n_ids > 8) {
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "undecodable");
        tcpops__get_pets_by_ids_request__free_unpacked(req, NULL);
        return;
    }
    Tcpops__Pet pets[8], *ptrs[8];
    char names[8][24];
    for (size_t i = 0; i < req->n_ids; i++) {
        tcpops__pet__init(&pets[i]);
        pets[i].id = req->ids[i];
        snprintf(names[i], sizeof(names[i]), "pet%llu", (unsigned long long)req->ids[i]);
        pets[i].name = names[i];
        ptrs[i] = &pets[i];
    }
    Tcpops__GetPetsByIdsResponse resp = TCPOPS__GET_PETS_BY_IDS_RESPONSE__INIT;
    resp.n_pets = req->n_ids;
    resp.pets = ptrs;
    answer(out, &resp.base, req);
}

/* svc.Status: the service is its only member (ctx->user is its address). */
static void svc_status(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                       rpc_reply *out)
{
    (void)body;
    (void)len;
    Tcpops__Member me = TCPOPS__MEMBER__INIT, *members[1] = {&me};
    me.address = ctx->user;
    Tcpops__StatusResponse resp = TCPOPS__STATUS_RESPONSE__INIT;
    resp.address = ctx->user;
    resp.n_members = 1;
    resp.members = members;
    rpc_reply_pack(out, &resp.base);
}

static const rpc_method people_methods[] = {
    {"people.List", people_list, 1},
    {"people.Create", people_create, 1},
    {"people.PetIds", people_pet_ids, 1},
    {"svc.Status", svc_status, 1},
};
static const rpc_method pets_methods[] = {
    {"pets.GetByIds", pets_get, 1},
    {"svc.Status", svc_status, 1},
};

/* ---- the gateway in this process ---- */

typedef struct fixture {
    rpc_server *svc[2];
    char addr[2][64];
    gw g;
    struct mg_context *ctx;
    int port;
} fixture;

static rpc_server *start_service(const rpc_method *m, size_t n, char *addr, size_t addrlen)
{
    char err[RPC_ERRLEN];
    /* The service's address is its user: svc.Status names it as a member. */
    rpc_server *s = testsvc_start(m, n, 2, addr, NULL, addr, addrlen, err);
    if (s == NULL)
        fail_msg("fake service: %s", err);
    return s;
}

static int begin_request(struct mg_connection *conn)
{
    return gw_handle(conn, mg_get_request_info(conn)->user_data);
}

static void start_backends(fixture *fx)
{
    char err[256];
    fx->svc[0] = start_service(people_methods, 4, fx->addr[0], sizeof(fx->addr[0]));
    fx->svc[1] = start_service(pets_methods, 2, fx->addr[1], sizeof(fx->addr[1]));
    gw_backend_cfg pc = {.name = "people", .bootstrap = fx->addr[0], .pool_size = 1,
                         .max_frame = 1 << 20, .max_inflight = 16, .max_waiting = 16};
    gw_backend_cfg tc = pc;
    tc.name = "pets";
    tc.bootstrap = fx->addr[1];
    if (gw_backend_new(&fx->g.people, &pc, err, sizeof(err)) < 0 ||
        gw_backend_new(&fx->g.pets, &tc, err, sizeof(err)) < 0)
        fail_msg("backends: %s", err);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    start_backends(fx);
    assert_int_equal(gw_metrics_new(&fx->g.metrics), 0);
    fx->g.deadline_ms = 5000;
    fx->g.max_body = 256;
    fx->g.max_header = 16 * 1024;
    fx->g.started_ms = rpc_now_ms();
    const char *options[] = {"listening_ports", "127.0.0.1:0", "num_threads", "4",
                             "enable_keep_alive", "yes", "decode_url", "no",
                             "max_request_size", "65536", NULL, NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = begin_request;
    struct mg_init_data init = {.callbacks = &cb, .user_data = &fx->g,
                                .configuration_options = options};
    char mgerr[256] = "";
    struct mg_error_data ed = {.text = mgerr, .text_buffer_size = sizeof(mgerr)};
    mg_init_library(0);
    fx->ctx = mg_start2(&init, &ed);
    if (fx->ctx == NULL)
        fail_msg("civetweb: %s", mgerr);
    struct mg_server_port ports[1];
    assert_int_equal(mg_get_server_ports(fx->ctx, 1, ports), 1);
    fx->port = ports[0].port;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    mg_stop(fx->ctx);
    gw_backend_free(fx->g.pets);
    gw_backend_free(fx->g.people);
    gw_metrics_free(fx->g.metrics);
    for (int i = 0; i < 2; i++)
        rpc_server_free(fx->svc[i]);
    mg_exit_library();
    free(fx);
    return 0;
}

/* Header list for expect_http: name, value, name, value, ..., NULL. */
#define HDRS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Fails unless r carries each header of want (see HDRS) with that value. */
static void expect_headers(const http_resp *r, const char *what, const char *const *want)
{
    char buf[128];
    for (size_t i = 0; want != NULL && want[i] != NULL; i += 2) {
        const char *v = http_header(r, want[i], buf, sizeof(buf));
        if (v == NULL || strcmp(v, want[i + 1]) != 0)
            fail_msg("%s: header %s: expected \"%s\", got \"%s\"", what, want[i],
                     want[i + 1], v ? v : "(none)");
    }
}

/* One request on a fresh connection; fails unless the status is want, the
 * body holds has (when not NULL) and the headers in hdrs are there (may be
 * NULL). Returns the length of the body. */
static size_t expect_http(fixture *fx, const char *method, const char *path,
                          const char *headers, const char *body, int want, const char *has,
                          const char *const *hdrs)
{
    http_resp r;
    char what[160];
    memset(&r, 0, sizeof(r));
    snprintf(what, sizeof(what), "%s %s", method, path);
    if (http_once(fx->port, method, path, headers, body, &r) < 0)
        fail_msg("%s: no answer", what);
    if (r.status != want || (has != NULL && (r.body == NULL || strstr(r.body, has) == NULL)))
        fail_msg("%s: expected %d with %s, got %d %s", what, want, has ? has : "", r.status,
                 r.body ? r.body : "");
    expect_headers(&r, what, hdrs);
    size_t n = r.body_len;
    http_resp_free(&r);
    return n;
}

static void test_healthz(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "GET", "/healthz", "X-Request-Id: t-1\r\n", NULL, 200,
                "{\"status\":\"ok\"}",
                HDRS("Content-Type", "application/json", "X-Request-Id", "t-1"));
    /* HEAD: no body, and the length GET would send. */
    size_t n = expect_http(fx, "HEAD", "/healthz", NULL, NULL, 200, NULL,
                           HDRS("Content-Length", "15"));
    assert_int_equal(n, 0);
}

static void test_no_route_and_methods(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "GET", "/nope", NULL, NULL, 404, "no route /nope", NULL);
    expect_http(fx, "GET", "/people/", NULL, NULL, 404, "no route /people/", NULL);
    expect_http(fx, "GET", "/people%2Fpets", NULL, NULL, 400, "encodes a '/'", NULL);
    expect_http(fx, "DELETE", "/people", NULL, NULL, 405, "DELETE is not allowed on /people",
                HDRS("Allow", "GET, HEAD, POST"));
    expect_http(fx, "POST", "/status", NULL, NULL, 405, "POST is not allowed on /status",
                HDRS("Allow", "GET, HEAD"));
    expect_http(fx, "GET", "/healthz", "Expect: nonsense\r\n", NULL, 417, "100-continue", NULL);
}

/* The CSP source that allows html's one inline TAG element (script,
 * style) by its SHA-256: "TAG-src 'sha256-BASE64'". */
static void csp_hash(const char *html, const char *tag, char *out, size_t len)
{
    char open[16], close[16];
    unsigned char md[EVP_MAX_MD_SIZE], b64[4 * EVP_MAX_MD_SIZE / 3 + 4];
    unsigned int mdlen = 0;
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(html, open), *b = strstr(html, close);
    if (a == NULL || b == NULL || b < a)
        fail_msg("GET /: expected one <%s> element, found none", tag);
    a += strlen(open);
    assert_int_equal(EVP_Digest(a, (size_t)(b - a), md, &mdlen, EVP_sha256(), NULL), 1);
    EVP_EncodeBlock(b64, md, (int)mdlen);
    snprintf(out, len, "%s-src 'sha256-%s'", tag, (const char *)b64);
}

/* GET / is the status page compiled into the gateway, with headers that
 * keep it from being sniffed, cached, framed or made to run anything but
 * its own script and style: the CSP names their hashes, checked here from
 * the page as served. HEAD too; other methods 405 as on every route. */
static void test_status_page(void **state)
{
    fixture *fx = *state;
    http_resp r;
    char csp[1024], want[128], len[32];
    memset(&r, 0, sizeof(r));
    if (http_once(fx->port, "GET", "/", NULL, NULL, &r) < 0)
        fail_msg("GET /: no answer");
    if (r.status != 200 || strstr(r.body, "<title>tcpops status</title>") == NULL)
        fail_msg("GET /: expected 200 with the status page, got %d %.200s", r.status, r.body);
    assert_int_equal(r.body_len, gw_page_html_len);
    expect_headers(&r, "GET /", HDRS("Content-Type", "text/html; charset=utf-8",
                                     "Cache-Control", "no-cache",
                                     "X-Content-Type-Options", "nosniff"));
    if (http_header(&r, "Content-Security-Policy", csp, sizeof(csp)) == NULL ||
        strncmp(csp, "default-src 'self'; ", 20) != 0)
        fail_msg("GET /: expected a Content-Security-Policy starting default-src 'self', got "
                 "\"%s\"", http_header(&r, "Content-Security-Policy", csp, sizeof(csp)) ? csp : "");
    static const char *const tags[] = {"script", "style"};
    for (size_t i = 0; i < 2; i++) {
        csp_hash(r.body, tags[i], want, sizeof(want));
        if (strstr(csp, want) == NULL)
            fail_msg("GET /: expected the CSP to allow the page's own %s by its hash, %s; got "
                     "\"%s\"", tags[i], want, csp);
    }
    if (strstr(csp, "unsafe-inline") != NULL || strstr(csp, "unsafe-eval") != NULL)
        fail_msg("GET /: expected no unsafe-* in the CSP, got \"%s\"", csp);
    http_resp_free(&r);

    snprintf(len, sizeof(len), "%zu", gw_page_html_len);
    size_t n = expect_http(fx, "HEAD", "/", NULL, NULL, 200, NULL,
                           HDRS("Content-Length", len, "Content-Type", "text/html; charset=utf-8"));
    assert_int_equal(n, 0);
    expect_http(fx, "POST", "/", NULL, "x", 405, "POST is not allowed on /",
                HDRS("Allow", "GET, HEAD"));
    expect_http(fx, "DELETE", "/", NULL, NULL, 405, "DELETE is not allowed on /",
                HDRS("Allow", "GET, HEAD"));
    expect_http(fx, "GET", "/index.html", NULL, NULL, 404, "no route /index.html", NULL);
}

static void test_query_rules(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "GET", "/healthz?x=1", NULL, NULL, 400,
                "unknown query parameter x (this route takes none)", NULL);
    expect_http(fx, "GET", "/metrics?verbose", NULL, NULL, 400, "unknown query parameter",
                NULL);
    expect_http(fx, "GET", "/people?limit=0", NULL, NULL, 400,
                "limit must be a whole number from 1 to 1000", NULL);
    expect_http(fx, "GET", "/people?limit=1001", NULL, NULL, 400, "from 1 to 1000", NULL);
    expect_http(fx, "GET", "/people?limit=12345678", NULL, NULL, 400, "from 1 to 1000", NULL);
    expect_http(fx, "GET", "/people?sort=name", NULL, NULL, 400,
                "unknown query parameter sort", NULL);
    expect_http(fx, "GET", "/people/pets", NULL, NULL, 400,
                "missing owner: use /people/pets?owner=NAME", NULL);
    expect_http(fx, "GET", "/people/pets?owner=", NULL, NULL, 400, "owner: ", NULL);
}

static void test_people_list(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "GET", "/people", NULL, NULL, 200, "[\"limit=0\",\"after=\"]", NULL);
    /* The name in after= travels in its NFC form: e + combining acute is é. */
    expect_http(fx, "GET", "/people?limit=5&after=Jos%65%CC%81", NULL, NULL, 200,
                "[\"limit=5\",\"after=Jos\xC3\xA9\"]", NULL);
}

static void test_people_create(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "POST", "/people?name=zoe", NULL, NULL, 201, "{\"name\":\"zoe\"}", NULL);
    expect_http(fx, "POST", "/people", NULL, "{\"name\":\"amy\"}", 201, "{\"name\":\"amy\"}",
                NULL);
    expect_http(fx, "POST", "/people?name=amy", NULL, "{\"name\":\"amy\"}", 201, NULL, NULL);
    expect_http(fx, "POST", "/people?name=a", NULL, "{\"name\":\"b\"}", 400,
                "two names: \\\"a\\\" in the query and \\\"b\\\" in the body", NULL);
    expect_http(fx, "POST", "/people", NULL, NULL, 400, "missing name", NULL);
    expect_http(fx, "POST", "/people", NULL, "{\"name\":", 400, "body is not valid JSON",
                NULL);
    expect_http(fx, "POST", "/people", NULL, "[1]", 400, "a string \\\"name\\\"", NULL);
    char big[400];
    snprintf(big, sizeof(big), "{\"name\":\"%0300d\"}", 0);
    /* The body is left unread: the connection closes. */
    expect_http(fx, "POST", "/people", NULL, big, 413, "request body over 256 bytes",
                HDRS("Connection", "close"));
    /* The service's statuses, as HTTP. */
    expect_http(fx, "POST", "/people?name=taken", NULL, NULL, 409, "taken exists", NULL);
    expect_http(fx, "POST", "/people?name=full", NULL, NULL, 507,
                "people service cannot store it: its disk is full (disk full)", NULL);
    expect_http(fx, "POST", "/people?name=odd", NULL, NULL, 500,
                "people service error INTERNAL: odd failure", NULL);
}

static void test_people_pets(void **state)
{
    fixture *fx = *state;
    expect_http(fx, "GET", "/people/pets?owner=ann", NULL, NULL, 200, "[\"pet2\",\"pet1\"]",
                NULL);
    expect_http(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 200, "[]", NULL);
    expect_http(fx, "GET", "/people/pets?owner=cy", NULL, NULL, 404, "no such person", NULL);
}

/* Requests are counted once answered: the next request on the same
 * connection runs after the counting, so /metrics shows the ones before. */
static void test_metrics_count_requests(void **state)
{
    fixture *fx = *state;
    http_conn c = {.fd = -1, .port = fx->port};
    http_resp r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(http_do(&c, "GET", "/readyz", NULL, NULL, 0, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http_do(&c, "GET", "/metrics", NULL, NULL, 0, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    expect_headers(&r, "GET /metrics", HDRS("Content-Type", "text/plain; version=0.0.4"));
    const char *want = "tcpops_http_requests_total{route=\"/readyz\",method=\"GET\","
                       "code=\"200\"} ";
    if (strstr(r.body, want) == NULL)
        fail_msg("/metrics: expected a line starting %s in:\n%s", want, r.body);
    http_resp_free(&r);
    http_close(&c);
}

/* Last, as it leaves the gateway draining. */
static void test_readyz_draining(void **state)
{
    fixture *fx = *state;
    /* Ready and up (test_people_create's full disk may still show in
     * writes_failing and "degraded" until the next svc.Status). */
    expect_http(fx, "GET", "/readyz", NULL, NULL, 200, "{\"status\":\"ready\"", NULL);
    expect_http(fx, "GET", "/status", NULL, NULL, 200, "\"services\":{", NULL);
    atomic_store(&fx->g.draining, 1);
    expect_http(fx, "GET", "/readyz", NULL, NULL, 503, "not ready: shutting down",
                HDRS("Retry-After", "1", "Connection", "close"));
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_route_of),
        cmocka_unit_test(test_route_allow),
    };
    const struct CMUnitTest served[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_no_route_and_methods),
        cmocka_unit_test(test_status_page),
        cmocka_unit_test(test_query_rules),
        cmocka_unit_test(test_people_list),
        cmocka_unit_test(test_people_create),
        cmocka_unit_test(test_people_pets),
        cmocka_unit_test(test_metrics_count_requests),
        cmocka_unit_test(test_readyz_draining),
    };
    int failed = cmocka_run_group_tests(pure, NULL, NULL);
    return failed + cmocka_run_group_tests(served, setup, teardown);
}
