/* tcpops-gateway with the real services, all as child processes on free
 * ports: every route and error, start orders, missing and restarted
 * services, deadlines, head-of-line blocking, membership. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "rpc/clock.h"

#include "http_client.h"
#include "proc.h"

typedef struct fixture {
    trio t;
    proc people2; /* a second people worker, for the tests that need one */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(trio_init(&fx->t), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    trio_fini(&fx->t);
    proc_stop(&fx->people2);
    free(fx);
    return 0;
}

static void start_people(fixture *fx, proc *p, const char *const *extra)
{
    assert_int_equal(proc_start_service(p, "tcpops-people", fx->t.people_port, fx->t.dir, extra), 0);
}

static void start_pets(fixture *fx)
{
    assert_int_equal(proc_start_service(&fx->t.pets, "tcpops-pets", fx->t.pets_port, fx->t.dir, NULL),
                     0);
}

/* Starts the gateway; extra flags may follow (NULL-terminated). */
static void start_gateway(fixture *fx, const char *const *extra)
{
    char bin[512], listen[64], people[64], pets[64];
    char *argv[24];
    int n = 0;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->t.gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->t.people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->t.pets_port);
    argv[n++] = (char *)proc_bin("tcpops-gateway", bin, sizeof(bin));
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--people";
    argv[n++] = people;
    argv[n++] = "--pets";
    argv[n++] = pets;
    argv[n++] = "--access-log=false";
    /* civetweb starts every thread up front: the default 1024 is more than
     * these 64 clients need, and tests run side by side. */
    argv[n++] = "--threads=128";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    assert_int_equal(proc_start(&fx->t.gw, argv, 0), 0);
    assert_int_equal(wait_port(fx->t.gw_port, 10000), 0);
}

static void start_all(fixture *fx)
{
    start_people(fx, &fx->t.people, NULL);
    start_pets(fx);
    start_gateway(fx, NULL);
}

/* One request; checks status and, when want_body is not NULL, the body. */
static void expect(fixture *fx, const char *method, const char *path, const char *headers,
                   const char *body, int want_status, const char *want_body)
{
    http_resp r;
    if (http_once(fx->t.gw_port, method, path, headers, body, &r) < 0)
        fail_msg("%s %s: no answer from the gateway", method, path);
    if (r.status != want_status || (want_body != NULL && strcmp(r.body, want_body) != 0))
        fail_msg("%s %s: expected %d %s, got %d %s", method, path, want_status,
                 want_body != NULL ? want_body : "(any body)", r.status, r.body);
    char ct[128];
    if (http_header(&r, "Content-Type", ct, sizeof(ct)) == NULL ||
        (strcmp(path, "/metrics") != 0 && strcmp(ct, "application/json") != 0))
        fail_msg("%s %s: expected Content-Type application/json, got %s", method, path,
                 http_header(&r, "Content-Type", ct, sizeof(ct)) ? ct : "none");
    if (r.status >= 400 && strncmp(r.body, "{\"error\":\"", 10) != 0 &&
        strcmp(path, "/status") != 0)
        fail_msg("%s %s: expected a JSON error body, got %s", method, path, r.body);
    http_resp_free(&r);
}

/* The value of one Prometheus sample line, or 0 when absent. */
static long long metric(int port, const char *sample)
{
    http_resp r;
    long long v = 0;
    if (http_once(port, "GET", "/metrics", NULL, NULL, &r) == 0) {
        const char *p = strstr(r.body, sample);
        if (p != NULL)
            v = atoll(p + strlen(sample) + 1);
        http_resp_free(&r);
    }
    return v;
}

/* Polls path until it answers want_status (at most ~10 s). */
static void eventually(fixture *fx, const char *path, int want_status, const char *want_body)
{
    http_resp r = {0};
    for (int i = 0; i < 500; i++) {
        if (http_once(fx->t.gw_port, "GET", path, NULL, NULL, &r) == 0) {
            int ok = r.status == want_status &&
                     (want_body == NULL || strcmp(r.body, want_body) == 0);
            http_resp_free(&r);
            if (ok)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("GET %s: expected %d within 10 s; last answer %d", path, want_status, r.status);
}

static void test_routes_and_errors(void **state)
{
    fixture *fx = *state;
    start_all(fx);
    eventually(fx, "/readyz", 200, "{\"status\":\"ready\"}");

    expect(fx, "GET", "/people", NULL, NULL, 200, "[\"bob\",\"jane\"]");
    expect(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 200, "[\"bixa\",\"rex\"]");
    expect(fx, "GET", "/people/pets?owner=jane", NULL, NULL, 200, "[]");
    expect(fx, "POST", "/people?name=ann", NULL, NULL, 201, "{\"name\":\"ann\"}");
    expect(fx, "POST", "/people?name=ann", NULL, NULL, 409, NULL);
    /* Quotes, backslashes, emoji and é in a JSON body, escaped right back. */
    expect(fx, "POST", "/people", "Content-Type: application/json\r\n",
           "{\"name\":\"O\\\"Brien \\\\ \xF0\x9F\x90\xB6 \\u00e9\"}", 201,
           "{\"name\":\"O\\\"Brien \\\\ \xF0\x9F\x90\xB6 \xC3\xA9\"}");
    expect(fx, "POST", "/people?name=z%C3%B6e", NULL, NULL, 201, "{\"name\":\"z\xC3\xB6" "e\"}");
    expect(fx, "GET", "/people", NULL, NULL, 200,
           "[\"bob\",\"jane\",\"ann\",\"O\\\"Brien \\\\ \xF0\x9F\x90\xB6 \xC3\xA9\",\"z\xC3\xB6" "e\"]");
    expect(fx, "GET", "/people?limit=2&after=jane", NULL, NULL, 200,
           "[\"ann\",\"O\\\"Brien \\\\ \xF0\x9F\x90\xB6 \xC3\xA9\"]");

    /* Bad input: 400/404/405/413, and nothing changes. */
    char long_name[128] = "/people?name=";
    memset(long_name + strlen(long_name), 'x', 65);
    expect(fx, "POST", long_name, NULL, NULL, 400, NULL);
    expect(fx, "POST", "/people?name=%FF%FE", NULL, NULL, 400, NULL);
    expect(fx, "POST", "/people?name=a%01b", NULL, NULL, 400, NULL);
    expect(fx, "POST", "/people?name=", NULL, NULL, 400, NULL);
    expect(fx, "POST", "/people", NULL, "{\"name\":\"\xff\"}", 400, NULL);
    expect(fx, "POST", "/people", NULL, "{\"nom\":\"x\"}", 400, NULL);
    expect(fx, "POST", "/people", NULL, "not json", 400, NULL);
    expect(fx, "POST", "/people", NULL, NULL, 400, NULL);
    char *big = malloc(70 * 1024);
    memset(big, ' ', 70 * 1024 - 1);
    big[70 * 1024 - 1] = '\0';
    memcpy(big, "{\"name\":\"big\"}", 14);
    expect(fx, "POST", "/people", NULL, big, 413, NULL);
    free(big);
    /* Headers over --max-header-bytes (16 KiB): 431, as JSON. */
    char *hdr = malloc(20 * 1024);
    strcpy(hdr, "X-Big: ");
    memset(hdr + 7, 'a', 20 * 1024 - 12);
    strcpy(hdr + 20 * 1024 - 5, "\r\n");
    {
        http_resp huge;
        assert_int_equal(http_once(fx->t.gw_port, "GET", "/healthz", hdr, NULL, &huge), 0);
        if (huge.status != 431 || strncmp(huge.body, "{\"error\":", 9) != 0)
            fail_msg("oversize headers: expected 431 JSON, got %d %s", huge.status, huge.body);
        http_resp_free(&huge);
        expect(fx, "GET", "/healthz", NULL, NULL, 200, "{\"status\":\"ok\"}");
    }
    free(hdr);
    expect(fx, "GET", "/people?limit=0", NULL, NULL, 400, NULL);
    expect(fx, "GET", "/people?limit=1001", NULL, NULL, 400, NULL);
    expect(fx, "GET", "/people?limit=3x", NULL, NULL, 400, NULL);
    expect(fx, "GET", "/people?after=nobody", NULL, NULL, 400, NULL);
    expect(fx, "GET", "/people/pets", NULL, NULL, 400,
           "{\"error\":\"missing owner: use /people/pets?owner=NAME\"}");
    expect(fx, "GET", "/people/pets?owner=nobody", NULL, NULL, 404,
           "{\"error\":\"no person named \\\"nobody\\\"\"}");
    expect(fx, "GET", "/nowhere", NULL, NULL, 404, "{\"error\":\"no route /nowhere\"}");
    expect(fx, "GET", "/people", NULL, NULL, 200,
           "[\"bob\",\"jane\",\"ann\",\"O\\\"Brien \\\\ \xF0\x9F\x90\xB6 \xC3\xA9\",\"z\xC3\xB6" "e\"]");

    http_resp r;
    assert_int_equal(http_once(fx->t.gw_port, "DELETE", "/people", NULL, NULL, &r), 0);
    char v[128];
    assert_int_equal(r.status, 405);
    assert_non_null(http_header(&r, "Allow", v, sizeof(v)));
    assert_string_equal(v, "GET, HEAD, POST");
    http_resp_free(&r);
    assert_int_equal(http_once(fx->t.gw_port, "POST", "/status", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(http_header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
    http_resp_free(&r);
    /* HEAD: the headers of GET, no body. */
    assert_int_equal(http_once(fx->t.gw_port, "HEAD", "/healthz", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(http_header(&r, "Content-Length", v, sizeof(v)), "15");
    http_resp_free(&r);

    /* X-Request-Id: taken from the client, else made. */
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/healthz", "X-Request-Id: trace-42\r\n", NULL,
                               &r), 0);
    assert_string_equal(http_header(&r, "X-Request-Id", v, sizeof(v)), "trace-42");
    http_resp_free(&r);
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/healthz", "X-Request-Id: bad id!\r\n", NULL,
                               &r), 0);
    assert_non_null(http_header(&r, "X-Request-Id", v, sizeof(v)));
    assert_int_equal(strlen(v), 16);
    http_resp_free(&r);

    expect(fx, "GET", "/healthz", NULL, NULL, 200, "{\"status\":\"ok\"}");
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/status", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    assert_non_null(strstr(r.body, "\"people\":{"));
    assert_non_null(strstr(r.body, "\"state\":\"up\""));
    http_resp_free(&r);
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "tcpops_http_requests_total{route=\"/people\",method=\"POST\","
                                   "code=\"201\"} 3\n"));
    assert_non_null(strstr(r.body, "tcpops_http_requests_total{route=\"/people\",method=\"POST\","
                                   "code=\"413\"} 1\n"));
    assert_non_null(strstr(r.body, "tcpops_rpc_calls_total{service=\"people\",method=\"people."
                                   "Create\",status=\"OK\"} 3\n"));
    http_resp_free(&r);
    /* An answer the client has is counted: /metrics asked right after it
     * shows it, whichever gateway thread serves /metrics. */
    const char *healthz = "tcpops_http_requests_total{route=\"/healthz\",method=\"GET\","
                          "code=\"200\"}";
    long long healthz0 = metric(fx->t.gw_port, healthz);
    for (int i = 1; i <= 100; i++) {
        expect(fx, "GET", "/healthz", NULL, NULL, 200, "{\"status\":\"ok\"}");
        long long got = metric(fx->t.gw_port, healthz);
        if (got != healthz0 + i)
            fail_msg("/metrics right after %d more /healthz answers: expected %s %lld, got %lld",
                     i, healthz, healthz0 + i, got);
    }
    /* Membership is learned in the background, after the first connection
     * made /readyz 200: wait for it rather than race it. */
    int member = 0;
    for (int i = 0; i < 500 && !member; i++) {
        assert_int_equal(http_once(fx->t.gw_port, "GET", "/metrics", NULL, NULL, &r), 0);
        member = strstr(r.body, "tcpops_rpc_members{service=\"people\"} 1\n") != NULL;
        http_resp_free(&r);
        if (!member)
            usleep(20 * 1000);
    }
    if (!member)
        fail_msg("expected tcpops_rpc_members{service=\"people\"} 1 within 10 s");

    /* SIGTERM: exit 0. */
    proc_signal(&fx->t.gw, SIGTERM);
    assert_int_equal(proc_wait(&fx->t.gw, 15000), 0);
}

/* ---- start orders (RELIABILITY.md scenario 1) ---- */

typedef struct prober {
    int port;
    _Atomic int stop;
    int replies, ok, unavailable, bad, health_bad;
    char problem[512];
} prober;

/* Probes /people/pets?owner=bob and /healthz while processes come up: every
 * answer must be 200 with the right body, or 503 with Retry-After and a JSON
 * error; /healthz is 200 whenever the gateway answers. */
/* A name's identity is its NFC form, at the gateway as in the service:
 * "e" + U+0301 is the "é" created before (409), either spelling finds it, and
 * the 201 shows the stored form. Invisible and separator characters are 400. */
static void test_name_identity_over_http(void **state)
{
    fixture *fx = *state;
    start_all(fx);
    eventually(fx, "/readyz", 200, "{\"status\":\"ready\"}");
    expect(fx, "POST", "/people?name=Am%C3%A9lie", NULL, NULL, 201,
           "{\"name\":\"Am\xC3\xA9lie\"}");
    expect(fx, "POST", "/people?name=Ame%CC%81lie", NULL, NULL, 409, NULL);
    expect(fx, "POST", "/people", NULL, "{\"name\":\"Ame\\u0301lie\"}", 409, NULL);
    expect(fx, "POST", "/people", NULL, "{\"name\":\"Zoe\\u0308\"}", 201,
           "{\"name\":\"Zo\xC3\xAB\"}");
    expect(fx, "GET", "/people/pets?owner=Ame%CC%81lie", NULL, NULL, 200, "[]");
    expect(fx, "GET", "/people?after=Ame%CC%81lie", NULL, NULL, 200, "[\"Zo\xC3\xAB\"]");
    static const char *const invisible[] = {"a%E2%80%8Bb", "a%E2%80%AEb", "%EF%BB%BFab",
                                            "a%E2%80%A8b", "a%C2%A0b",    "%20ab"};
    for (size_t i = 0; i < sizeof(invisible) / sizeof(invisible[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/people?name=%s", invisible[i]);
        expect(fx, "POST", path, NULL, NULL, 400, NULL);
    }
    expect(fx, "POST", "/people", NULL, "{\"name\":\"a\\u200bb\"}", 400, NULL);
    expect(fx, "GET", "/people", NULL, NULL, 200,
           "[\"bob\",\"jane\",\"Am\xC3\xA9lie\",\"Zo\xC3\xAB\"]");
}

static void *probe(void *arg)
{
    prober *p = arg;
    while (!atomic_load(&p->stop)) {
        http_resp r;
        if (http_once(p->port, "GET", "/people/pets?owner=bob", NULL, NULL, &r) == 0) {
            char v[32];
            p->replies++;
            if (r.status == 200 && strcmp(r.body, "[\"bixa\",\"rex\"]") == 0) {
                p->ok++;
            } else if (r.status == 503 && http_header(&r, "Retry-After", v, sizeof(v)) &&
                       strncmp(r.body, "{\"error\":", 9) == 0) {
                p->unavailable++;
            } else if (p->bad++ == 0) {
                snprintf(p->problem, sizeof(p->problem), "got %d %.400s", r.status, r.body);
            }
            http_resp_free(&r);
            if (http_once(p->port, "GET", "/healthz", NULL, NULL, &r) == 0) {
                if (r.status != 200)
                    p->health_bad++;
                http_resp_free(&r);
            }
        }
        usleep(5000);
    }
    return NULL;
}

static void test_every_start_order(void **state)
{
    fixture *fx = *state;
    static const char *const orders[6][3] = {
        {"gateway", "people", "pets"}, {"gateway", "pets", "people"},
        {"people", "gateway", "pets"}, {"people", "pets", "gateway"},
        {"pets", "gateway", "people"}, {"pets", "people", "gateway"},
    };
    for (int o = 0; o < 6; o++) {
        prober p = {.port = fx->t.gw_port};
        pthread_t th;
        pthread_create(&th, NULL, probe, &p);
        for (int k = 0; k < 3; k++) {
            if (strcmp(orders[o][k], "gateway") == 0)
                start_gateway(fx, NULL);
            else if (strcmp(orders[o][k], "people") == 0)
                start_people(fx, &fx->t.people, NULL);
            else
                start_pets(fx);
            usleep(200 * 1000); /* a moment apart */
        }
        eventually(fx, "/people/pets?owner=bob", 200, "[\"bixa\",\"rex\"]");
        /* Once all are up, every request succeeds. */
        for (int i = 0; i < 50; i++)
            expect(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 200, "[\"bixa\",\"rex\"]");
        atomic_store(&p.stop, 1);
        pthread_join(th, NULL);
        /* No process exited on its own. */
        assert_int_equal(proc_wait(&fx->t.gw, 0), -1);
        assert_int_equal(proc_wait(&fx->t.people, 0), -1);
        assert_int_equal(proc_wait(&fx->t.pets, 0), -1);
        if (p.bad != 0 || p.health_bad != 0)
            fail_msg("order %s, %s, %s: %d bad answers (%s), %d /healthz not 200", orders[o][0],
                     orders[o][1], orders[o][2], p.bad, p.problem, p.health_bad);
        print_message("order %s, %s, %s: %d answers, %d ok, %d 503\n", orders[o][0],
                      orders[o][1], orders[o][2], p.replies, p.ok, p.unavailable);
        proc_stop(&fx->t.gw);
        proc_stop(&fx->t.people);
        proc_stop(&fx->t.pets);
    }
}

/* A service missing at start: the gateway serves what it can and heals. */
static void test_missing_service_then_restarts(void **state)
{
    fixture *fx = *state;
    start_people(fx, &fx->t.people, NULL);
    start_gateway(fx, NULL);
    eventually(fx, "/people", 200, "[\"bob\",\"jane\"]");
    expect(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 503, NULL);
    expect(fx, "GET", "/people/pets?owner=jane", NULL, NULL, 200, "[]"); /* no pets call needed */
    expect(fx, "GET", "/readyz", NULL, NULL, 503, NULL);
    http_resp r;
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/status", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"pets\":{"));
    assert_non_null(strstr(r.body, "\"state\":\"down\""));
    http_resp_free(&r);

    start_pets(fx);
    eventually(fx, "/people/pets?owner=bob", 200, "[\"bixa\",\"rex\"]");
    expect(fx, "GET", "/readyz", NULL, NULL, 200, NULL);
    expect(fx, "GET", "/status", NULL, NULL, 200, NULL);

    /* Both services die and come back on the same ports: the gateway heals. */
    proc_stop(&fx->t.people);
    proc_stop(&fx->t.pets);
    expect(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 503, NULL);
    expect(fx, "GET", "/healthz", NULL, NULL, 200, NULL);
    start_people(fx, &fx->t.people, NULL);
    start_pets(fx);
    eventually(fx, "/people/pets?owner=bob", 200, "[\"bixa\",\"rex\"]");
    assert_int_equal(proc_wait(&fx->t.gw, 0), -1);
}

/* ---- deadlines and head-of-line blocking (scenarios 9, 10) ---- */

typedef struct slow_req {
    int port;
    int status;
    _Atomic int done;
} slow_req;

static void *slow_list(void *arg)
{
    slow_req *s = arg;
    http_resp r;
    s->status = http_once(s->port, "GET", "/people", NULL, NULL, &r) == 0 ? r.status : -1;
    http_resp_free(&r);
    atomic_store(&s->done, 1);
    return NULL;
}

/* The calls the gateway has in flight to people now, as /status shows them
 * (each endpoint's "in_flight"), or -1 when /status does not say. */
static int people_in_flight(fixture *fx)
{
    http_resp r;
    int n = -1;
    if (http_once(fx->t.gw_port, "GET", "/status", NULL, NULL, &r) < 0)
        return -1;
    json_t *st = json_loads(r.body, 0, NULL);
    json_t *eps = json_object_get(json_object_get(json_object_get(st, "services"), "people"),
                                  "endpoints");
    size_t i;
    json_t *ep;
    if (json_is_array(eps))
        n = 0;
    json_array_foreach(eps, i, ep) {
        n += (int)json_integer_value(json_object_get(ep, "in_flight"));
    }
    json_decref(st);
    http_resp_free(&r);
    return n;
}

static void test_deadline_and_no_head_of_line_blocking(void **state)
{
    fixture *fx = *state;
    /* people.List takes 6 s on the service; everything else is fast. */
    const char *const slow[] = {"--delay-ms", "6000", "--delay-method", "people.List", NULL};
    const char *const patient[] = {"--deadline-ms", "10000", NULL};
    start_people(fx, &fx->t.people, slow);
    start_pets(fx);
    start_gateway(fx, patient); /* 10 s deadline: the slow call makes it */
    eventually(fx, "/people/pets?owner=bob", 200, NULL);

    slow_req s = {.port = fx->t.gw_port};
    pthread_t th;
    pthread_create(&th, NULL, slow_list, &s);
    /* The fast calls start once the gateway has the slow one in flight
     * (nothing else is); giving up after 10 s. */
    int in_flight = -1;
    for (int64_t until = rpc_now_ms() + 10000; rpc_now_ms() < until && !atomic_load(&s.done);) {
        in_flight = people_in_flight(fx);
        if (in_flight == 1)
            break;
        usleep(10 * 1000);
    }
    if (in_flight != 1) {
        pthread_join(th, NULL);
        fail_msg("GET /people (6 s on the service): expected /status to show 1 call in flight "
                 "to people, got %d (slow call answered %d)", in_flight, s.status);
    }
    /* Fast calls on one HTTP connection until 1000 are answered or the slow
     * one is: behind the slow call (head-of-line blocking), the first would wait
     * for its answer. Every fast answer must be right; at least one (on an
     * idle machine, all 1000) must come while the slow call is in flight. */
    http_conn c = {.fd = -1, .port = fx->t.gw_port};
    int sent = 0, ok = 0, during = 0;
    char problem[512] = "";
    while (sent < 1000 && !atomic_load(&s.done)) {
        http_resp r;
        sent++;
        if (http_do(&c, "GET", "/people/pets?owner=bob", NULL, NULL, 0, &r, 10000) < 0) {
            snprintf(problem, sizeof(problem), "fast call %d: no answer", sent);
            continue;
        }
        if (r.status == 200 && strcmp(r.body, "[\"bixa\",\"rex\"]") == 0)
            ok++;
        else
            snprintf(problem, sizeof(problem), "fast call %d: got %d %.400s", sent, r.status,
                     r.body);
        during += !atomic_load(&s.done);
        http_resp_free(&r);
    }
    http_close(&c);
    pthread_join(th, NULL);
    if (ok != sent)
        fail_msg("expected every fast call answered 200 [\"bixa\",\"rex\"]; %d of %d were (%s)",
                 ok, sent, problem);
    if (during == 0)
        fail_msg("expected fast calls answered while the slow GET /people was in flight; none "
                 "was (%d sent)", sent);
    print_message("%d fast calls answered while the slow one was in flight\n", during);
    assert_int_equal(s.status, 200);

    /* A gateway with a 300 ms budget answers 504 for the slow call, and the
     * late answer is dropped and counted. */
    proc_stop(&fx->t.gw);
    const char *const tight[] = {"--deadline-ms", "300", NULL};
    start_gateway(fx, tight);
    eventually(fx, "/people/pets?owner=bob", 200, NULL);
    /* Counted from here, and at least: a fast call of eventually's that
     * missed 300 ms on a busy machine has a late answer too. */
    const char *late = "tcpops_rpc_late_answers_total{service=\"people\"}";
    long long late0 = metric(fx->t.gw_port, late);
    expect(fx, "GET", "/people", NULL, NULL, 504,
           "{\"error\":\"people service did not answer in time\"}");
    /* Its answer comes 6 s after the call; giving up after 20 s. */
    long long counted = late0;
    for (int64_t until = rpc_now_ms() + 20000; rpc_now_ms() < until && counted <= late0;) {
        counted = metric(fx->t.gw_port, late);
        if (counted <= late0)
            usleep(10 * 1000);
    }
    if (counted <= late0)
        fail_msg("expected the late people.List answer counted: %s %lld within 20 s, got %lld",
                 late, late0 + 1, counted);
    /* Fast calls still work (polled: one of them may miss 300 ms on a busy
     * machine, which is not what this checks). */
    eventually(fx, "/people/pets?owner=bob", 200, "[\"bixa\",\"rex\"]");
}

/* ---- two workers behind one port (membership) ---- */

static void test_two_workers_both_serve(void **state)
{
    fixture *fx = *state;
    start_people(fx, &fx->t.people, NULL);
    start_people(fx, &fx->people2, NULL); /* same port, same file */
    start_pets(fx);
    start_gateway(fx, NULL);
    /* Wait until the gateway knows both members. */
    int both = 0;
    for (int i = 0; i < 500 && !both; i++) {
        http_resp r;
        if (http_once(fx->t.gw_port, "GET", "/metrics", NULL, NULL, &r) == 0)
            both = strstr(r.body, "tcpops_rpc_members{service=\"people\"} 2\n") != NULL;
        http_resp_free(&r);
        if (!both)
            usleep(20 * 1000);
    }
    assert_true(both);
    http_conn c = {.fd = -1, .port = fx->t.gw_port};
    for (int i = 0; i < 400; i++) {
        http_resp r;
        assert_int_equal(http_do(&c, "GET", "/people/pets?owner=bob", NULL, NULL, 0, &r, 5000), 0);
        assert_int_equal(r.status, 200);
        http_resp_free(&r);
    }
    http_close(&c);
    /* Each worker's own Status counts the calls it served. */
    http_resp st;
    assert_int_equal(http_once(fx->t.gw_port, "GET", "/status", NULL, NULL, &st), 0);
    int served = 0, nseen = 0;
    char bin[512], seen[8][64];
    for (const char *p = st.body; (p = strstr(p, "{\"address\":\"")) != NULL; p++) {
        char addr[64];
        int dup = 0;
        /* Members are {"address":...,"pid":...}; endpoints carry a "role". */
        int end = 0;
        if (sscanf(p, "{\"address\":\"%63[^\"]\",\"pid\"%n", addr, &end) != 1 || end == 0)
            continue;
        for (int k = 0; k < nseen; k++)
            dup |= strcmp(seen[k], addr) == 0;
        if (dup || nseen == 8)
            continue; /* listed as an endpoint and as a member */
        snprintf(seen[nseen++], sizeof(seen[0]), "%s", addr);
        char *argv[] = {(char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr,
                        "status", NULL};
        char out[4096], err[1024];
        if (proc_run(argv, out, sizeof(out), err, sizeof(err), 5000) != 0)
            continue;
        const char *calls = strstr(out, "\"calls\":");
        if (strstr(out, "\"service\":\"people\"") && calls != NULL && atol(calls + 8) >= 50)
            served++;
    }
    http_resp_free(&st);
    if (served != 2)
        fail_msg("expected both people workers to have served calls; %d had", served);
}

/* ---- correct under concurrency (scenario 11) ---- */

#define OWNERS 8
#define CLIENTS 64
#define PER_CLIENT 320

static char owner_pets[OWNERS][256]; /* the JSON each owner's pets must be */

static void cli_ok(fixture *fx, int port, char *out, size_t outlen, ...)
{
    char addr[64], err[1024], cmd[256];
    va_list ap;
    (void)fx;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    va_start(ap, outlen);
    int code = proc_run_tool("tcpops-cli", "--addr", addr, ap, out, outlen, err, sizeof(err),
                             10000, cmd, sizeof(cmd));
    va_end(ap);
    if (code != 0)
        fail_msg("tcpops-cli %s: exit %d: %s", cmd, code, err);
}

typedef struct client {
    int port, index;
    int creates, lists, pets, wrong, failed;
    char problem[1024];
} client;

static void *run_client(void *arg)
{
    client *c = arg;
    http_conn conn = {.fd = -1, .port = c->port};
    for (int i = 0; i < PER_CLIENT; i++) {
        char path[128], want[300];
        const char *method = "GET";
        int want_status = 200;
        int kind = i % 4;
        if (kind == 0) {
            method = "POST";
            want_status = 201;
            snprintf(path, sizeof(path), "/people?name=c%d-%d", c->index, i);
            snprintf(want, sizeof(want), "{\"name\":\"c%d-%d\"}", c->index, i);
        } else if (kind == 1) {
            snprintf(path, sizeof(path), "/people?limit=2");
            snprintf(want, sizeof(want), "[\"bob\",\"jane\"]");
        } else {
            int o = (c->index + i) % OWNERS;
            snprintf(path, sizeof(path), "/people/pets?owner=o%d", o);
            snprintf(want, sizeof(want), "%s", owner_pets[o]);
        }
        http_resp r;
        if (http_do(&conn, method, path, NULL, NULL, 0, &r, 10000) < 0) {
            if (c->failed++ == 0)
                snprintf(c->problem, sizeof(c->problem), "%s %s: no answer", method, path);
            continue;
        }
        if (r.status != want_status || strcmp(r.body, want) != 0) {
            if (c->wrong++ == 0)
                snprintf(c->problem, sizeof(c->problem), "%s %s: expected %d %s, got %d %.200s",
                         method, path, want_status, want, r.status, r.body);
        } else if (kind == 0) {
            c->creates++;
        } else if (kind == 1) {
            c->lists++;
        } else {
            c->pets++;
        }
        http_resp_free(&r);
    }
    http_close(&conn);
    return NULL;
}

static void test_correct_under_concurrency(void **state)
{
    fixture *fx = *state;
    start_all(fx);
    eventually(fx, "/readyz", 200, NULL);
    /* Owners o0..o7; owner k owns k+1 pets of its own. */
    for (int o = 0; o < OWNERS; o++) {
        char name[16], out[256];
        snprintf(name, sizeof(name), "o%d", o);
        cli_ok(fx, fx->t.people_port, out, sizeof(out), "people", "create", name, NULL);
        strcpy(owner_pets[o], "[");
        for (int k = 0; k <= o; k++) {
            char pet[32];
            snprintf(pet, sizeof(pet), "pet-%d-%d", o, k);
            cli_ok(fx, fx->t.pets_port, out, sizeof(out), "pets", "create", pet, NULL);
            char id[24];
            assert_int_equal(sscanf(out, "{\"id\":%23[0-9]}", id), 1);
            cli_ok(fx, fx->t.people_port, out, sizeof(out), "people", "add-pet", name, id, NULL);
            snprintf(owner_pets[o] + strlen(owner_pets[o]), 40, "%s\"%s\"", k ? "," : "", pet);
        }
        strcat(owner_pets[o], "]");
    }
    const char *pets_200 = "tcpops_http_requests_total{route=\"/people/pets\",method=\"GET\","
                           "code=\"200\"}";
    const char *people_get = "tcpops_http_requests_total{route=\"/people\",method=\"GET\","
                             "code=\"200\"}";
    const char *people_post = "tcpops_http_requests_total{route=\"/people\",method=\"POST\","
                              "code=\"201\"}";
    long long pets0 = metric(fx->t.gw_port, pets_200);
    long long get0 = metric(fx->t.gw_port, people_get);
    long long post0 = metric(fx->t.gw_port, people_post);

    pthread_t th[CLIENTS];
    client c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (client){.port = fx->t.gw_port, .index = i};
        pthread_create(&th[i], NULL, run_client, &c[i]);
    }
    int creates = 0, lists = 0, pets = 0, wrong = 0, failed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        creates += c[i].creates;
        lists += c[i].lists;
        pets += c[i].pets;
        wrong += c[i].wrong;
        failed += c[i].failed;
        if (c[i].problem[0])
            print_message("client %d: %s\n", i, c[i].problem);
    }
    if (wrong != 0 || failed != 0)
        fail_msg("%d requests: expected every answer right; %d wrong, %d unanswered",
                 CLIENTS * PER_CLIENT, wrong, failed);
    assert_int_equal(creates + lists + pets, CLIENTS * PER_CLIENT);
    /* The gateway counted exactly what the clients saw. */
    const char *samples[3] = {pets_200, people_get, people_post};
    long long before[3] = {pets0, get0, post0}, seen[3] = {pets, lists, creates};
    for (int k = 0; k < 3; k++) {
        long long counted = metric(fx->t.gw_port, samples[k]) - before[k];
        if (counted != seen[k])
            fail_msg("%s: expected %lld more (the answers the clients got), got %lld more",
                     samples[k], seen[k], counted);
    }
}

/* ---- a burst bigger than the pool, from a cold start ---- */

#define BURST_CLIENTS 64
#define BURST_EACH 25

typedef struct burst_client {
    int port;
    int ok, bad, failed;
    char problem[512];
} burst_client;

static void *burst(void *arg)
{
    burst_client *b = arg;
    http_conn conn = {.fd = -1, .port = b->port};
    for (int i = 0; i < BURST_EACH; i++) {
        http_resp r;
        if (http_do(&conn, "GET", "/people/pets?owner=bob", NULL, NULL, 0, &r, 10000) < 0) {
            if (b->failed++ == 0)
                snprintf(b->problem, sizeof(b->problem), "request %d: no answer", i);
            continue;
        }
        if (r.status == 200 && strcmp(r.body, "[\"bixa\",\"rex\"]") == 0)
            b->ok++;
        else if (b->bad++ == 0)
            snprintf(b->problem, sizeof(b->problem), "request %d: got %d %.400s", i, r.status,
                     r.body);
        http_resp_free(&r);
    }
    http_close(&conn);
    return NULL;
}

/* 64 clients at once on a gateway whose pool takes 2 calls per connection,
 * the moment it listens: calls wait for a slot instead of being refused, so
 * every request is a 200. */
static void test_burst_waits_for_pool_slots(void **state)
{
    fixture *fx = *state;
    const char *const tiny[] = {"--pool", "1", "--max-inflight", "2", NULL};
    start_people(fx, &fx->t.people, NULL);
    start_pets(fx);
    start_gateway(fx, tiny);

    pthread_t th[BURST_CLIENTS];
    burst_client b[BURST_CLIENTS];
    for (int i = 0; i < BURST_CLIENTS; i++) {
        b[i] = (burst_client){.port = fx->t.gw_port};
        pthread_create(&th[i], NULL, burst, &b[i]);
    }
    int ok = 0, bad = 0, failed = 0;
    for (int i = 0; i < BURST_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        ok += b[i].ok;
        bad += b[i].bad;
        failed += b[i].failed;
        if (b[i].problem[0] && bad + failed <= 5)
            print_message("client %d: %s\n", i, b[i].problem);
    }
    if (ok != BURST_CLIENTS * BURST_EACH)
        fail_msg("expected %d answers 200; got %d 200, %d other, %d unanswered",
                 BURST_CLIENTS * BURST_EACH, ok, bad, failed);
    assert_int_equal(metric(fx->t.gw_port, "tcpops_rpc_inflight_limit_total{service=\"people\"}"),
                     0);
}

/* ---- readiness means answers, not connections ---- */

/* Polls /readyz until it answers want (at most within_ms); returns the last
 * status and copies its body into body. */
static int readyz_until(fixture *fx, int want, int within_ms, char *body, size_t len)
{
    int64_t until = rpc_now_ms() + within_ms;
    int got = -1;
    body[0] = '\0';
    do {
        http_resp r;
        if (http_once(fx->t.gw_port, "GET", "/readyz", NULL, NULL, &r) == 0) {
            got = r.status;
            snprintf(body, len, "%s", r.body);
            http_resp_free(&r);
            if (got == want)
                break;
        }
        usleep(20 * 1000);
    } while (rpc_now_ms() < until);
    return got;
}

/* The keepalive would take 5 s + 2 s to notice; readiness must be faster. */
#define READY_WITHIN_MS 5000

static void test_readyz_follows_answers_not_connections(void **state)
{
    fixture *fx = *state;
    char body[1024];
    start_all(fx);
    eventually(fx, "/readyz", 200, "{\"status\":\"ready\"}");
    expect(fx, "GET", "/people", NULL, NULL, 200, NULL);

    /* The only people worker stops: its connections stay up, nothing answers. */
    proc_signal(&fx->t.people, SIGSTOP);
    int st = readyz_until(fx, 503, READY_WITHIN_MS, body, sizeof(body));
    if (st != 503 || strstr(body, "people") == NULL) {
        proc_signal(&fx->t.people, SIGCONT);
        fail_msg("people stopped: expected /readyz 503 naming people within %d ms, got %d %s",
                 READY_WITHIN_MS, st, body);
    }
    expect(fx, "GET", "/people", NULL, NULL, 504, NULL); /* nothing can be served */
    proc_signal(&fx->t.people, SIGCONT);
    st = readyz_until(fx, 200, 10000, body, sizeof(body));
    if (st != 200)
        fail_msg("people continued: expected /readyz 200, got %d %s", st, body);

    /* Something listens on the people port and never answers. */
    proc_stop(&fx->t.gw);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 64), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
    int real_port = fx->t.people_port;
    fx->t.people_port = ntohs(sa.sin_port);
    start_gateway(fx, NULL);
    fx->t.people_port = real_port;
    st = readyz_until(fx, 503, READY_WITHIN_MS, body, sizeof(body));
    close(lfd);
    if (st != 503 || strstr(body, "people") == NULL)
        fail_msg("a silent listener as people: expected /readyz 503 naming people within %d "
                 "ms, got %d %s", READY_WITHIN_MS, st, body);
}

/* ---- a full disk: 507, counted, shown; reads work ---- */

static void set_file_limit(const proc *p, rlim_t bytes)
{
    struct rlimit rl = {.rlim_cur = bytes, .rlim_max = RLIM_INFINITY};
    if (prlimit(p->pid, RLIMIT_FSIZE, &rl, NULL) != 0)
        fail_msg("prlimit(RLIMIT_FSIZE) on pid %d failed", (int)p->pid);
}

/* Polls /status until its body holds want (at most 10 s). */
static void status_until(fixture *fx, const char *want)
{
    http_resp r = {0};
    char last[2048] = "";
    for (int64_t until = rpc_now_ms() + 10000; rpc_now_ms() < until;) {
        if (http_once(fx->t.gw_port, "GET", "/status", NULL, NULL, &r) == 0) {
            int ok = strstr(r.body, want) != NULL;
            snprintf(last, sizeof(last), "%d %s", r.status, r.body);
            http_resp_free(&r);
            if (ok)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("GET /status: expected %s within 10 s; last answer %s", want, last);
}

static void test_disk_full_is_507_and_reads_work(void **state)
{
    fixture *fx = *state;
    char body[1024];
    start_all(fx);
    eventually(fx, "/readyz", 200, "{\"status\":\"ready\"}");
    expect(fx, "POST", "/people?name=before", NULL, NULL, 201, NULL);

    /* No write of the people worker may reach past 4 KiB into a file: its
     * WAL already does, so every write transaction fails with EFBIG, as
     * on a full disk (no root needed). */
    set_file_limit(&fx->t.people, 4096);
    http_resp r;
    assert_int_equal(http_once(fx->t.gw_port, "POST", "/people?name=full", NULL, NULL, &r), 0);
    const char *want = "{\"error\":\"people service cannot store it: its disk is full";
    if (r.status != 507 || strncmp(r.body, want, strlen(want)) != 0)
        fail_msg("POST with the disk full: expected 507 %s...\"}, got %d %s", want, r.status,
                 r.body);
    http_resp_free(&r);

    /* Reads keep working; nothing was half-created. */
    expect(fx, "GET", "/people", NULL, NULL, 200, "[\"bob\",\"jane\",\"before\"]");
    expect(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 200, "[\"bixa\",\"rex\"]");
    /* Shown in /status (the heartbeat fails too) and /readyz, and counted. */
    status_until(fx, "\"status\":\"degraded\"");
    status_until(fx, "\"writes\":\"failing\",\"write_code\":\"STORAGE_FULL\"");
    assert_int_equal(readyz_until(fx, 200, 5000, body, sizeof(body)), 200);
    if (strstr(body, "\"writes_failing\":{\"people\":\"STORAGE_FULL: ") == NULL)
        fail_msg("/readyz with people's disk full: expected writes_failing naming people, "
                 "got %s", body);
    assert_int_equal(metric(fx->t.gw_port, "tcpops_service_writes_failing{service=\"people\"}"),
                     1);
    assert_int_equal(metric(fx->t.gw_port, "tcpops_rpc_calls_total{service=\"people\",method="
                                         "\"people.Create\",status=\"STORAGE_FULL\"}"),
                     1);
    assert_int_equal(metric(fx->t.gw_port, "tcpops_http_requests_total{route=\"/people\","
                                         "method=\"POST\",code=\"507\"}"),
                     1);

    /* Space again: writes work, and the state clears. */
    set_file_limit(&fx->t.people, RLIM_INFINITY);
    expect(fx, "POST", "/people?name=after", NULL, NULL, 201, "{\"name\":\"after\"}");
    status_until(fx, "\"status\":\"ok\"");
    expect(fx, "GET", "/people", NULL, NULL, 200, "[\"bob\",\"jane\",\"before\",\"after\"]");
    expect(fx, "GET", "/readyz", NULL, NULL, 200, "{\"status\":\"ready\"}");
    assert_int_equal(metric(fx->t.gw_port, "tcpops_service_writes_failing{service=\"people\"}"),
                     0);
}

/* ---- tcpops-cli pointed at the HTTP port ---- */

static void test_cli_at_http_port_says_not_tcpops(void **state)
{
    fixture *fx = *state;
    start_gateway(fx, NULL); /* no services needed: the CLI talks to the HTTP port */
    char addr[64], bin[512], want[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx->t.gw_port);
    snprintf(want, sizeof(want), "tcpops-cli: not a tcpops service at %s\n", addr);
    static const char *const cmds[][3] = {
        {"status", NULL, NULL}, {"people", "list", NULL}, {"ping", NULL, NULL}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char *argv[8] = {(char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr};
        int n = 3;
        for (int k = 0; k < 3 && cmds[i][k] != NULL; k++)
            argv[n++] = (char *)cmds[i][k];
        argv[n] = NULL;
        char out[1024], err[1024];
        int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
        if (code != 3 || strcmp(err, want) != 0)
            fail_msg("tcpops-cli --addr %s %s: expected exit 3 and \"%s\", got exit %d and "
                     "\"%s\"", addr, cmds[i][0], want, code, err);
    }
    /* The gateway is unharmed. */
    expect(fx, "GET", "/healthz", NULL, NULL, 200, "{\"status\":\"ok\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_identity_over_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_start_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_service_then_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_and_no_head_of_line_blocking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_workers_both_serve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_correct_under_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_waits_for_pool_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_at_http_port_says_not_tcpops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_follows_answers_not_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_is_507_and_reads_work, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
