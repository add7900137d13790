/* tcpops-gateway against hostile and clumsy HTTP, over raw sockets, with
 * the real services behind it: deep JSON, request smuggling and framing
 * (RFC 9112 section 6), bodies cut short, Expect, odd request targets,
 * limits, and ambiguous names. Where a request could hide a second one in
 * its body, the test checks that the second one never ran: nobody of that
 * name exists afterwards. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "proc.h"

typedef struct fixture {
    char dir[256];
    proc people, pets, gw;
    int people_port, pets_port, gw_port;
} fixture;

static fixture fx;

static int group_setup(void **state)
{
    char bin[512], listen[64], people[64], pets[64];
    (void)state;
    if (make_temp_dir(fx.dir, sizeof(fx.dir)) < 0)
        return -1;
    fx.people_port = free_port();
    fx.pets_port = free_port();
    fx.gw_port = free_port();
    if (proc_start_service(&fx.people, "tcpops-people", fx.people_port, fx.dir, NULL) < 0 ||
        proc_start_service(&fx.pets, "tcpops-pets", fx.pets_port, fx.dir, NULL) < 0)
        return -1;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx.gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx.people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx.pets_port);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", people, "--pets", pets, "--access-log=false", "--threads=16",
                    /* a stalled body is given up on after 1 s */
                    "--request-timeout-ms=1000",
                    NULL};
    if (proc_start(&fx.gw, argv, 0) < 0 || wait_port(fx.gw_port, 10000) < 0)
        return -1;
    /* Ready: the people service answers through the gateway. */
    for (int i = 0; i < 500; i++) {
        http_resp r;
        int ok = http_once(fx.gw_port, "GET", "/people", NULL, NULL, &r) == 0 && r.status == 200;
        if (r.status != 0)
            http_resp_free(&r);
        if (ok)
            return 0;
        usleep(20 * 1000);
    }
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&fx.gw);
    proc_stop(&fx.people);
    proc_stop(&fx.pets);
    rm_rf(fx.dir);
    return 0;
}

/* Sends raw on a fresh connection and reads until the gateway closes it
 * (at most 5 s: well inside civetweb's 10 s request timeout, so a
 * connection held open is seen as such). The first response goes to
 * *resp; returns 1 when the gateway closed the connection. */
static int exchange(const char *raw, size_t len, http_resp *resp, int *nresponses)
{
    int fd = http_connect(fx.gw_port);
    if (fd < 0)
        fail_msg("cannot connect to the gateway on %d", fx.gw_port);
    char *buf = NULL;
    size_t n = 0;
    if (http_send(fd, raw, len) < 0)
        fail_msg("could not send the request");
    int closed = http_read_all(fd, &buf, &n, 5000);
    close(fd);
    long used = http_parse(buf, n, resp);
    if (used < 0)
        fail_msg("expected a response, got %zu bytes: %.300s", n, buf);
    int count = 1;
    for (size_t at = (size_t)used; at < n; count++) {
        http_resp more;
        long u = http_parse(buf + at, n - at, &more);
        if (u < 0)
            break;
        http_resp_free(&more);
        at += (size_t)u;
    }
    if (nresponses != NULL)
        *nresponses = count;
    free(buf);
    return closed;
}

/* raw must get want_status with a JSON error mentioning reason, and the
 * gateway must close the connection after it: nothing behind it runs. */
static void refused_and_closed(const char *what, const char *raw, size_t len, int want_status,
                               const char *reason)
{
    http_resp r;
    int nresp = 0;
    int closed = exchange(raw, len, &r, &nresp);
    if (r.status != want_status || strncmp(r.body, "{\"error\":\"", 10) != 0 ||
        (reason != NULL && strstr(r.body, reason) == NULL))
        fail_msg("%s: expected %d {\"error\":...%s...}, got %d %s", what, want_status,
                 reason != NULL ? reason : "", r.status, r.body);
    char v[64];
    if (!closed || http_header(&r, "Connection", v, sizeof(v)) == NULL || strcmp(v, "close") != 0)
        fail_msg("%s: expected Connection: close and the connection closed; it was %s, header %s",
                 what, closed ? "closed" : "left open",
                 http_header(&r, "Connection", v, sizeof(v)) ? v : "absent");
    if (nresp != 1)
        fail_msg("%s: expected one response, got %d", what, nresp);
    http_resp_free(&r);
}

/* Nobody named name exists (so a request hidden in a body never ran). */
static void nobody_named(const char *name)
{
    http_resp r;
    char quoted[128];
    assert_int_equal(http_once(fx.gw_port, "GET", "/people?limit=1000", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    snprintf(quoted, sizeof(quoted), "\"%s\"", name);
    if (strstr(r.body, quoted) != NULL)
        fail_msg("expected no person %s (smuggled request ran); people: %s", quoted, r.body);
    http_resp_free(&r);
}

static void expect_status(const char *method, const char *path, const char *headers,
                          const char *body, int want, const char *reason)
{
    http_resp r;
    if (http_once(fx.gw_port, method, path, headers, body, &r) < 0)
        fail_msg("%s %s: no answer", method, path);
    if (r.status != want || (reason != NULL && strstr(r.body, reason) == NULL))
        fail_msg("%s %s: expected %d ...%s..., got %d %s", method, path, want,
                 reason != NULL ? reason : "", r.status, r.body);
    http_resp_free(&r);
}

static void still_serving(void)
{
    assert_int_equal(proc_wait(&fx.gw, 0), -1);
    expect_status("GET", "/healthz", NULL, NULL, 200, "ok");
}

/* A request that, if it ran, would create a person named name. */
static int smuggled(char *buf, size_t cap, const char *name)
{
    return snprintf(buf, cap, "POST /people?name=%s HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 0\r\n\r\n", name);
}

/* ---- item 1: deep JSON ---- */

static void test_deep_json_is_400(void **state)
{
    (void)state;
    char *deep = malloc(8 * 1000 + 1);
    memset(deep, '[', 1000);
    deep[1000] = '\0';
    expect_status("POST", "/people", NULL, deep, 400, "nests deeper than 32");
    deep[0] = '\0';
    for (int i = 0; i < 1000; i++)
        strcat(deep, "{\"a\":");
    expect_status("POST", "/people", NULL, deep, 400, "nests deeper than 32");
    /* A string full of brackets is not nesting. */
    snprintf(deep, 8000, "{\"name\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x\"}");
    expect_status("POST", "/people", NULL, deep, 201, NULL);
    free(deep);
    still_serving();
}

/* ---- item 3: framing ---- */

static void test_more_fields_than_civetweb_keeps(void **state)
{
    (void)state;
    char smug[256], *req = malloc(64 * 1024);
    int sl = smuggled(smug, sizeof(smug), "smug64");
    /* 64 fields, then the Content-Length civetweb would drop. */
    int n = snprintf(req, 1024, "POST /people?name=front64 HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 63; i++)
        n += snprintf(req + n, 64, "X-Filler-%d: %d\r\n", i, i);
    n += snprintf(req + n, 1024, "Content-Length: %d\r\n\r\n%s", sl, smug);
    refused_and_closed("65 header fields", req, (size_t)n, 431, "more than 63 header fields");
    nobody_named("front64");
    nobody_named("smug64");
    /* 2,000 fields. */
    n = snprintf(req, 1024, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 2000; i++)
        n += snprintf(req + n, 64, "X-%d: v\r\n", i);
    n += snprintf(req + n, 8, "\r\n");
    refused_and_closed("2,000 header fields", req, (size_t)n, 431, "header fields");
    /* 63 fields are fine. */
    n = snprintf(req, 1024, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 62; i++)
        n += snprintf(req + n, 64, "X-%d: v\r\n", i);
    n += snprintf(req + n, 8, "\r\n");
    http_resp r;
    exchange(req, (size_t)n, &r, NULL);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    free(req);
    still_serving();
}

static void test_two_content_lengths(void **state)
{
    (void)state;
    char smug[256], req[1024];
    int sl = smuggled(smug, sizeof(smug), "smugcl");
    int n = snprintf(req, sizeof(req), "POST /people HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     "Content-Length: %d\r\n\r\n%s", sl, smug);
    refused_and_closed("two Content-Lengths", req, (size_t)n, 400, "Content-Length given 2 times");
    nobody_named("smugcl");
    n = snprintf(req, sizeof(req), "POST /people HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\n"
                 "{}%s", smug);
    refused_and_closed("Content-Length 2x", req, (size_t)n, 400, "whole number");
    nobody_named("smugcl");
}

static void test_content_length_with_chunked(void **state)
{
    (void)state;
    char smug[256], req[1024];
    int sl = smuggled(smug, sizeof(smug), "smugte");
    int n = snprintf(req, sizeof(req), "POST /healthz HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n0\r\n\r\n%s",
                     sl + 5, smug);
    refused_and_closed("Content-Length with chunked", req, (size_t)n, 400,
                       "both Content-Length and Transfer-Encoding");
    nobody_named("smugte");
    n = snprintf(req, sizeof(req), "POST /healthz HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s",
                 smug);
    refused_and_closed("Transfer-Encoding twice", req, (size_t)n, 400, "given 2 times");
    nobody_named("smugte");
}

static void test_space_before_colon(void **state)
{
    (void)state;
    char smug[256], req[1024];
    int sl = smuggled(smug, sizeof(smug), "smugsp");
    int n = snprintf(req, sizeof(req), "POST /healthz HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length : %d\r\n\r\n%s", sl, smug);
    refused_and_closed("Content-Length : N", req, (size_t)n, 400,
                       "space between header field name Content-Length and its colon");
    nobody_named("smugsp");
}

/* 16 bytes of a declared 30, then the client stalls (past the gateway's
 * --request-timeout-ms) or closes its side: nothing is created from the
 * part that came. */
static void short_body(const char *name, int half_close, int want_status, const char *reason)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "POST /people HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 30\r\n\r\n{\"name\":\"%s\"}", name);
    int fd = http_connect(fx.gw_port);
    assert_true(fd >= 0);
    assert_int_equal(http_send(fd, req, (size_t)n), 0);
    if (half_close)
        shutdown(fd, SHUT_WR);
    char *buf;
    size_t got;
    int closed = http_read_all(fd, &buf, &got, 15000);
    close(fd);
    http_resp r;
    if (http_parse(buf, got, &r) < 0 || r.status != want_status || !closed ||
        strstr(r.body, reason) == NULL)
        fail_msg("short body (%s): expected %d \"%s\" and a close, got %s: %.300s",
                 half_close ? "half-close" : "stall", want_status, reason,
                 closed ? "closed" : "open", buf);
    http_resp_free(&r);
    free(buf);
    nobody_named(name);
}

static void test_lines_civetweb_would_skip(void **state)
{
    (void)state;
    char smug[256], req[1024];
    int sl = smuggled(smug, sizeof(smug), "smugfold");
    /* civetweb stops at the folded line and ignores every line after it,
     * the Content-Length included, so the body would be the next request. */
    int n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"
                     " folded\r\nContent-Length: %d\r\n\r\n%s", sl, smug);
    refused_and_closed("obs-fold", req, (size_t)n, 400, "not a field");
    nobody_named("smugfold");
    n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\n:x\r\n"
                 "Content-Length: %d\r\n\r\n%s", sl, smug);
    refused_and_closed("line starting with ':'", req, (size_t)n, 400, "not a field");
    nobody_named("smugfold");
    n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nX-A: 1\r\n\r\n");
    refused_and_closed("no Host", req, (size_t)n, 400, "needs a Host");
}

static void test_body_shorter_than_its_length(void **state)
{
    (void)state;
    short_body("stall", 0, 408, "request body incomplete");
    short_body("halfc", 1, 400, "request body incomplete");
}

/* ---- item 13 ---- */

static void test_expect_100_continue(void **state)
{
    (void)state;
    static const char head[] = "POST /people HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                               "Content-Length: 16\r\n\r\n";
    int fd = http_connect(fx.gw_port);
    assert_true(fd >= 0);
    assert_int_equal(http_send(fd, head, sizeof(head) - 1), 0);
    char buf[4096];
    size_t n = 0;
    if (http_read_until(fd, buf, sizeof(buf), &n, "\r\n\r\n", 5000) < 0 ||
        strncmp(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        fail_msg("Expect: 100-continue: expected HTTP/1.1 100 Continue before the body, got %zu "
                 "bytes: %.200s", n, buf);
    assert_int_equal(http_send(fd, "{\"name\":\"expct\"}", 16), 0);
    if (http_read_until(fd, buf, sizeof(buf), &n, "{\"name\":\"expct\"}", 5000) < 0 ||
        strstr(buf, "HTTP/1.1 201") == NULL)
        fail_msg("Expect: 100-continue: expected 201 after the body, got %.300s", buf);
    close(fd);
    /* An expectation we cannot meet. */
    expect_status("POST", "/people?name=expfoo", "Expect: something-else\r\n", NULL, 417,
                  "100-continue");
    nobody_named("expfoo");
}

static void test_odd_request_targets(void **state)
{
    (void)state;
    char req[256];
    http_resp r;
    int n = snprintf(req, sizeof(req), "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(req, (size_t)n, &r, NULL);
    char v[64];
    if (r.status != 200 || http_header(&r, "Allow", v, sizeof(v)) == NULL ||
        strcmp(v, "GET, HEAD, POST") != 0)
        fail_msg("OPTIONS *: expected 200 with Allow: GET, HEAD, POST, got %d %s", r.status,
                 r.headers);
    http_resp_free(&r);
    n = snprintf(req, sizeof(req), "GET * HTTP/1.1\r\nHost: x\r\n\r\n");
    refused_and_closed("GET *", req, (size_t)n, 400, "OPTIONS only");
    n = snprintf(req, sizeof(req), "GET http://example.com/people HTTP/1.1\r\nHost: x\r\n\r\n");
    refused_and_closed("absolute-form for another host", req, (size_t)n, 421, "not served here");
    n = snprintf(req, sizeof(req), "GET http://127.0.0.1:%d/people/pets?owner=bob HTTP/1.1\r\n"
                 "Host: x\r\n\r\n", fx.gw_port);
    exchange(req, (size_t)n, &r, NULL);
    if (r.status != 200 || strcmp(r.body, "[\"bixa\",\"rex\"]") != 0)
        fail_msg("absolute-form for this server: expected 200 [\"bixa\",\"rex\"], got %d %s",
                 r.status, r.body);
    http_resp_free(&r);
    still_serving();
}

static void test_limits_and_methods(void **state)
{
    (void)state;
    /* A 100 KB URL. */
    char *req = malloc(128 * 1024);
    int n = snprintf(req, 64, "GET /people?after=");
    memset(req + n, 'a', 100 * 1024);
    n += 100 * 1024;
    n += snprintf(req + n, 64, " HTTP/1.1\r\nHost: x\r\n\r\n");
    refused_and_closed("100 KB URL", req, (size_t)n, 414, "request line over 16384 bytes");
    /* Header fields over --max-header-bytes. */
    n = snprintf(req, 64, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'b', 20 * 1024);
    n += 20 * 1024;
    n += snprintf(req + n, 64, "\r\n\r\n");
    refused_and_closed("20 KB header field", req, (size_t)n, 431, "request head over 16384");
    free(req);

    char r2[512];
    n = snprintf(r2, sizeof(r2), "TRACE /people HTTP/1.1\r\nHost: x\r\n\r\n");
    http_resp r;
    exchange(r2, (size_t)n, &r, NULL);
    char v[64];
    if (r.status != 405 || http_header(&r, "Allow", v, sizeof(v)) == NULL ||
        strcmp(v, "GET, HEAD, POST") != 0 || strstr(r.body, "TRACE is not allowed") == NULL)
        fail_msg("TRACE: expected 405 with Allow, got %d %s", r.status, r.body);
    http_resp_free(&r);
    n = snprintf(r2, sizeof(r2), "POST /people HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n");
    refused_and_closed("Content-Length: -5", r2, (size_t)n, 400,
                       "Content-Length must be a whole number of bytes");
    /* An absurd length with Connection: close: 413 and closed at once, not
     * after civetweb has waited for a body that is not coming. */
    n = snprintf(r2, sizeof(r2), "POST /people HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Content-Length: 99999999999\r\n\r\n{\"name\":\"absurd\"}");
    refused_and_closed("Content-Length: 99999999999", r2, (size_t)n, 413, "request body over");
    nobody_named("absurd");
    still_serving();
}

/* ---- item 14: ambiguous input ---- */

static void test_ambiguous_input(void **state)
{
    (void)state;
    expect_status("POST", "/people?name=amb1&name=amb2", NULL, NULL, 400, "name given twice");
    expect_status("POST", "/people?NAME=amb3", NULL, NULL, 400, "did you mean name");
    expect_status("POST", "/people?nom=amb3", NULL, NULL, 400, "unknown query parameter nom");
    expect_status("POST", "/people?name=amb4", NULL, "{\"name\":\"amb5\"}", 400, "two names");
    expect_status("POST", "/people?name=bad%zzpct", NULL, NULL, 400, "bad %-escape");
    expect_status("POST", "/people?name=amb6&x=%zz", NULL, NULL, 400, "unknown query parameter x");
    expect_status("GET", "/people%2Fpets?owner=bob", NULL, NULL, 400, "encodes a '/'");
    expect_status("GET", "/people%2fpets?owner=bob", NULL, NULL, 400, "encodes a '/'");
    expect_status("GET", "/people%zz", NULL, NULL, 400, "bad %-escape in the path");
    expect_status("GET", "/healthz?verbose=1", NULL, NULL, 400, "takes none");
    /* A JSON body that names twice is as ambiguous as a query that does. */
    expect_status("POST", "/people", NULL, "{\"name\":\"amb7\",\"name\":\"amb8\"}", 400,
                  "duplicate object key");
    for (int i = 1; i <= 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "amb%d", i);
        nobody_named(name);
    }
    nobody_named("bad");
    /* What is not ambiguous still works: the same name twice, escapes
     * of ordinary characters in the path. */
    expect_status("POST", "/people?name=same", NULL, "{\"name\":\"same\"}", 201, NULL);
    expect_status("GET", "/people/p%65ts?owner=bob", NULL, NULL, 200, "bixa");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deep_json_is_400),
        cmocka_unit_test(test_more_fields_than_civetweb_keeps),
        cmocka_unit_test(test_two_content_lengths),
        cmocka_unit_test(test_content_length_with_chunked),
        cmocka_unit_test(test_space_before_colon),
        cmocka_unit_test(test_lines_civetweb_would_skip),
        cmocka_unit_test(test_body_shorter_than_its_length),
        cmocka_unit_test(test_expect_100_continue),
        cmocka_unit_test(test_odd_request_targets),
        cmocka_unit_test(test_limits_and_methods),
        cmocka_unit_test(test_ambiguous_input),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
