/* The gateway's input rules (src/gateway/input.c) as pure functions: JSON
 * nesting, the request head as civetweb leaves it, paths, queries, ?limit=
 * and the POST /people body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/input.h"

/* ---- JSON nesting ---- */

static void nest(char *buf, int depth, const char *open, const char *inner, const char *close)
{
    buf[0] = '\0';
    for (int i = 0; i < depth; i++)
        strcat(buf, open);
    strcat(buf, inner);
    for (int i = 0; i < depth; i++)
        strcat(buf, close);
}

static void test_body_depth(void **state)
{
    (void)state;
    char *buf = malloc(16 * 1024);
    char name[66], why[256];
    nest(buf, 1000, "[", "", "]");
    assert_int_equal(gw_parse_create_body(buf, strlen(buf), name, sizeof(name), why,
                                          sizeof(why)), -1);
    assert_string_equal(why, "body nests deeper than 32 levels");
    const char *s = "{\"name\":\"ok\",\"x\":[[[[1]]]]}";
    assert_int_equal(gw_parse_create_body(s, strlen(s), name, sizeof(name), why, sizeof(why)),
                     0);
    assert_string_equal(name, "ok");
    free(buf);
}

/* A body that names twice (or repeats any key) is refused, not taken by
 * its last (or first) value, and the reason says so. */
static void test_body_repeated_key(void **state)
{
    (void)state;
    char name[66], why[256];
    const char *s = "{\"name\":\"a\",\"name\":\"b\"}";
    int rc = gw_parse_create_body(s, strlen(s), name, sizeof(name), why, sizeof(why));
    if (rc != -1 || strstr(why, "duplicate object key") == NULL)
        fail_msg("%s: expected -1 and a reason naming the duplicate key, got %d (%s)", s, rc,
                 rc == 0 ? name : why);
    s = "{\"name\":\"a\",\"x\":{\"k\":1,\"k\":2}}";
    rc = gw_parse_create_body(s, strlen(s), name, sizeof(name), why, sizeof(why));
    if (rc != -1 || strstr(why, "duplicate object key") == NULL)
        fail_msg("%s: expected -1 and a reason naming the duplicate key, got %d (%s)", s, rc,
                 rc == 0 ? name : why);
    s = "{\"name\":\"a\",\"x\":{\"name\":1}}"; /* the same key in two objects is fine */
    assert_int_equal(gw_parse_create_body(s, strlen(s), name, sizeof(name), why, sizeof(why)),
                     0);
    assert_string_equal(name, "a");
}

/* ---- the request head, laid out as civetweb 1.15 leaves it ---- */

typedef struct head {
    char buf[96 * 1024];
    struct mg_header f[MG_MAX_HEADERS];
    gw_head h;
} head;

/* "GET TARGET HTTP/1.1" then each of fields[] ("Name<sp>*:<ows>value",
 * at most MG_MAX_HEADERS of them, as civetweb keeps), NUL-terminated in
 * place the way parse_http_request does, with CRLF line endings (LF when
 * lf), indent NULs more after the request line (the spaces of an indented
 * first line, which civetweb eats), then rest as civetweb leaves what it
 * did not parse ("\r" for the end of a CRLF head, "" for LF) and the
 * head's last byte, NUL. */
static void build_ex(head *h, const char *target, const char *const *fields, int n, int lf,
                     int indent, const char *rest)
{
    char *p = h->buf;
    p += sprintf(p, "GET") + 1;
    p += sprintf(p, "%s", target) + 1;
    p += sprintf(p, "HTTP/1.1") + 1; /* the NUL is the CR (or LF) */
    h->h.method = h->buf;
    h->h.version = p - 1 - strlen("1.1");
    if (!lf)
        *p++ = '\0'; /* the LF of the request line */
    for (int i = 0; i < indent; i++)
        *p++ = '\0';
    for (int i = 0; i < n; i++) {
        const char *colon = strchr(fields[i], ':');
        const char *name_end = colon;
        while (name_end > fields[i] && name_end[-1] == ' ')
            name_end--;
        h->f[i].name = p;
        memcpy(p, fields[i], (size_t)(name_end - fields[i]));
        p += name_end - fields[i];
        for (const char *q = name_end; q <= colon; q++)
            *p++ = '\0'; /* spaces before the colon, and the colon */
        const char *v = colon + 1;
        while (*v == ' ')
            *p++ = *v++; /* skipped, not NUL'd */
        h->f[i].value = p;
        p += sprintf(p, "%s", v);
        *p++ = '\0'; /* CR, or LF */
        if (!lf)
            *p++ = '\0'; /* LF */
    }
    p += sprintf(p, "%s", rest != NULL ? rest : lf ? "" : "\r");
    *p = '\0';
    h->h.fields = h->f;
    h->h.nfields = n;
}

static void build(head *h, const char *target, const char *const *fields, int n)
{
    build_ex(h, target, fields, n, 0, 0, NULL);
}

static int check(head *h, char *why, size_t whylen)
{
    return gw_check_head(&h->h, 16384, why, whylen);
}

static void expect_head(const char *const *fields, int n, int want, const char *reason)
{
    head *h = calloc(1, sizeof(*h));
    char why[256] = "";
    build(h, "/people", fields, n);
    int st = check(h, why, sizeof(why));
    if (st != want || (reason != NULL && strstr(why, reason) == NULL))
        fail_msg("%s...: expected %d %s, got %d %s", n > 0 ? fields[0] : "(no fields)", want,
                 reason ? reason : "", st, why);
    free(h);
}

static void test_head_framing(void **state)
{
    (void)state;
    const char *ok[] = {"Host: x", "Content-Length: 5", "X-Empty:", "X-Spaces:    v"};
    expect_head(ok, 4, 0, NULL);
    expect_head(NULL, 0, 400, "an HTTP/1.1 request needs a Host header field");
    const char *two_hosts[] = {"Host: a", "host: b"};
    expect_head(two_hosts, 2, 400, "Host given 2 times");
    const char *trailing[] = {"Host: x", "Content-Length: 5  "};
    expect_head(trailing, 2, 0, NULL);
    const char *space[] = {"Host: x", "Content-Length : 5"};
    expect_head(space, 2, 400, "space between header field name Content-Length and its colon");
    const char *spaces[] = {"Host: x", "X-A   : 1"};
    expect_head(spaces, 2, 400, "X-A");
    const char *two_cl[] = {"Host: x", "Content-Length: 0", "Content-Length: 40"};
    expect_head(two_cl, 3, 400, "Content-Length given 2 times");
    const char *same_cl[] = {"Host: x", "content-length: 4", "Content-Length: 4"};
    expect_head(same_cl, 3, 400, "given 2 times");
    const char *neg[] = {"Host: x", "Content-Length: -5"};
    expect_head(neg, 2, 400, "whole number of bytes");
    const char *plus[] = {"Host: x", "Content-Length: +5"};
    expect_head(plus, 2, 400, "whole number");
    const char *list[] = {"Host: x", "Content-Length: 5, 5"};
    expect_head(list, 2, 400, "whole number");
    const char *empty[] = {"Host: x", "Content-Length:"};
    expect_head(empty, 2, 400, "whole number");
    const char *both[] = {"Host: x", "Transfer-Encoding: chunked", "Content-Length: 5"};
    expect_head(both, 3, 400, "both Content-Length and Transfer-Encoding");
    const char *two_te[] = {"Host: x", "Transfer-Encoding: chunked", "transfer-encoding: chunked"};
    expect_head(two_te, 3, 400, "Transfer-Encoding given 2 times");
    const char *gzip[] = {"Host: x", "Transfer-Encoding: gzip, chunked"};
    expect_head(gzip, 2, 501, "not supported");
    const char *identity[] = {"Host: x", "Transfer-Encoding: identity"};
    expect_head(identity, 2, 501, "not supported");
    const char *chunked[] = {"Host: x", "Transfer-Encoding: Chunked"};
    expect_head(chunked, 2, 0, NULL);

    /* HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 6.1). */
    head *h = calloc(1, sizeof(*h));
    char why[256] = "";
    build(h, "/people", chunked, 2);
    h->buf[h->h.version - h->buf + 2] = '0'; /* HTTP/1.1 -> HTTP/1.0 */
    int st = check(h, why, sizeof(why));
    if (st != 400 || strstr(why, "HTTP/1.0") == NULL)
        fail_msg("HTTP/1.0 with Transfer-Encoding: expected 400 naming HTTP/1.0, got %d %s", st,
                 why);
    const char *cl[] = {"Content-Length: 5"};
    build(h, "/people", cl, 1);
    h->buf[h->h.version - h->buf + 2] = '0';
    assert_int_equal(check(h, why, sizeof(why)), 0); /* 1.0 needs no Host */
    free(h);
}

static void expect_lines(const char *what, const char *const *fields, int n, int lf,
                         int indent, const char *rest, int want)
{
    head *h = calloc(1, sizeof(*h));
    char why[256] = "";
    build_ex(h, "/", fields, n, lf, indent, rest);
    int st = check(h, why, sizeof(why));
    if (st != want || (want == 400 && strstr(why, "not a field") == NULL))
        fail_msg("%s: expected %d, got %d %s", what, want, st, why);
    free(h);
}

static void test_head_lines(void **state)
{
    (void)state;
    const char *f[] = {"Host: x", "X-A: 1"};
    expect_lines("CRLF", f, 2, 0, 0, NULL, 0);
    expect_lines("LF", f, 2, 1, 0, NULL, 0);
    expect_lines("CRLF then a bare LF", f, 2, 0, 0, "", 0);
    /* Lines civetweb stops at, and every line after them ignored. */
    expect_lines("obs-fold", f, 2, 0, 0, " folded\r\nContent-Length: 5\r\n\r", 400);
    expect_lines("obs-fold, LF", f, 2, 1, 0, " folded\nContent-Length: 5\n", 400);
    expect_lines("line starting with ':'", f, 2, 0, 0, ":x\r\nContent-Length: 5\r\n\r", 400);
    expect_lines("line starting with 0x80", f, 2, 0, 0, "\x80X: 1\r\n\r", 400);
    expect_lines("LF, then CRLF before more lines", f, 2, 1, 0, "\r\nContent-Length: 5\n", 400);
    /* An indented first line (civetweb eats its spaces and parses it). */
    expect_lines("indented first field", f, 2, 0, 2, NULL, 400);
}

static void test_head_limits(void **state)
{
    (void)state;
    static char names[MG_MAX_HEADERS][32];
    const char *fields[MG_MAX_HEADERS];
    for (int i = 0; i < MG_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof(names[i]), i == 0 ? "Host: %d" : "X-%d: v", i);
        fields[i] = names[i];
    }
    expect_head(fields, GW_MAX_FIELDS, 0, NULL);
    /* A full table: civetweb may have dropped more. */
    expect_head(fields, MG_MAX_HEADERS, 431, "more than 63 header fields");

    head *h = calloc(1, sizeof(*h));
    char why[256], *target = malloc(20 * 1024);
    target[0] = '/';
    memset(target + 1, 'a', 20 * 1024 - 2);
    target[20 * 1024 - 1] = '\0';
    build(h, target, NULL, 0);
    assert_int_equal(check(h, why, sizeof(why)), 414);
    assert_string_equal(why, "request line over 16384 bytes");
    /* Exactly at the limit: "GET " + target + " HTTP/1.1" is 16384. */
    target[16384 - 13] = '\0';
    build(h, target, NULL, 0);
    assert_int_equal(check(h, why, sizeof(why)), 400); /* no Host, but not 414 */
    target[16384 - 13] = 'a'; /* one byte more */
    target[16384 - 12] = '\0';
    build(h, target, NULL, 0);
    assert_int_equal(check(h, why, sizeof(why)), 414);

    char *big = malloc(20 * 1024);
    strcpy(big, "X-Big: ");
    memset(big + 7, 'b', 17 * 1024);
    big[7 + 17 * 1024] = '\0';
    const char *one[] = {"Host: x", big};
    build(h, "/", one, 2);
    assert_int_equal(check(h, why, sizeof(why)), 431);
    assert_string_equal(why, "request head over 16384 bytes");
    free(big);
    free(target);
    free(h);
}

/* ---- path ---- */

static void expect_path(const char *raw, int want, const char *decoded, const char *reason)
{
    char out[64], why[128] = "";
    int n = gw_parse_path(raw, out, sizeof(out), why, sizeof(why));
    if (n != want || (want >= 0 && strcmp(out, decoded) != 0) ||
        (reason != NULL && strstr(why, reason) == NULL))
        fail_msg("path %s: expected %d %s%s, got %d %s%s", raw, want, decoded ? decoded : "",
                 reason ? reason : "", n, n >= 0 ? out : "", why);
}

static void test_path(void **state)
{
    (void)state;
    expect_path("/people", 7, "/people", NULL);
    expect_path("/people/p%65ts", 12, "/people/pets", NULL);
    expect_path("/people%2Fpets", -1, NULL, "encodes a '/'");
    expect_path("/people%2fpets", -1, NULL, "encodes a '/'");
    expect_path("/people%00", -1, NULL, "NUL");
    expect_path("/people%zz", -1, NULL, "bad %-escape");
    expect_path("/people%4", -1, NULL, "bad %-escape");
    expect_path("/people%", -1, NULL, "bad %-escape");
    expect_path("", 0, "", NULL);
    char long_path[200];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    expect_path(long_path, -2, NULL, NULL);
}

/* ---- query ---- */

typedef struct q {
    char name[65], limit[8];
    gw_param p[2];
} q;

static int parse(q *x, const char *qs, char *why, size_t whylen)
{
    memset(x, 0, sizeof(*x));
    x->p[0] = (gw_param){.name = "name", .buf = x->name, .cap = sizeof(x->name)};
    x->p[1] = (gw_param){.name = "limit", .buf = x->limit, .cap = sizeof(x->limit)};
    return gw_parse_query(qs, strlen(qs), x->p, 2, why, whylen);
}

static void expect_query_error(const char *qs, const char *reason)
{
    q x;
    char why[256] = "";
    if (parse(&x, qs, why, sizeof(why)) != -1 || strstr(why, reason) == NULL)
        fail_msg("?%s: expected a 400 saying %s, got \"%s\"", qs, reason, why);
}

static void test_query(void **state)
{
    (void)state;
    q x;
    char why[256];
    assert_int_equal(parse(&x, "", why, sizeof(why)), 0);
    assert_int_equal(x.p[0].len, -1);
    assert_int_equal(x.p[1].len, -1);
    assert_int_equal(parse(&x, "name=z%C3%B6e+x&limit=5&", why, sizeof(why)), 0);
    assert_int_equal(x.p[0].len, 6);
    assert_string_equal(x.name, "z\xC3\xB6" "e x");
    assert_int_equal(x.p[1].len, 1);
    assert_string_equal(x.limit, "5");
    assert_int_equal(parse(&x, "&&name=&", why, sizeof(why)), 0);
    assert_int_equal(x.p[0].len, 0);
    assert_int_equal(parse(&x, "name", why, sizeof(why)), 0);
    assert_int_equal(x.p[0].len, 0);
    assert_int_equal(parse(&x, "name=a%00b", why, sizeof(why)), 0);
    assert_int_equal(x.p[0].len, 3);
    assert_memory_equal(x.name, "a\0b", 3);
    assert_int_equal(parse(&x, "limit=123456789", why, sizeof(why)), 0);
    assert_int_equal(x.p[1].len, -2);
    assert_string_equal(x.limit, "1234567");
    /* %-encoded parameter names are names all the same. */
    assert_int_equal(parse(&x, "n%61me=bo", why, sizeof(why)), 0);
    assert_string_equal(x.name, "bo");

    expect_query_error("name=a&name=b", "query parameter name given twice");
    expect_query_error("name=a&n%61me=a", "given twice");
    expect_query_error("NAME=x", "unknown query parameter NAME (did you mean name?)");
    expect_query_error("Limit=1", "did you mean limit?");
    expect_query_error("owner=x", "unknown query parameter owner");
    expect_query_error("name=bad%zzpct", "bad %-escape in query parameter name");
    expect_query_error("name=bad%4", "bad %-escape");
    expect_query_error("name=ok&x%zz=1", "bad %-escape in the query parameter name");
    gw_param none[1];
    assert_int_equal(gw_parse_query("a=1", 3, none, 0, why, sizeof(why)), -1);
    assert_string_equal(why, "unknown query parameter a (this route takes none)");
    assert_int_equal(gw_parse_query("", 0, none, 0, why, sizeof(why)), 0);
}

/* ---- ?limit= and the POST /people body ---- */

static void expect_limit(const char *s, int want_rc, long want)
{
    long v = -7;
    int rc = gw_parse_limit(s, strlen(s), &v);
    if (rc != want_rc || (rc == 0 && v != want) || (rc != 0 && v != -7))
        fail_msg("limit \"%s\": expected %d (%ld), got %d (%ld)", s, want_rc, want, rc, v);
}

static void test_limit(void **state)
{
    (void)state;
    expect_limit("1", 0, 1);
    expect_limit("1000", 0, 1000);
    expect_limit("0042", 0, 42);
    expect_limit("0", -1, 0);
    expect_limit("1001", -1, 0);
    expect_limit("00001", -1, 0); /* more than 4 digits */
    expect_limit("", -1, 0);
    expect_limit("-1", -1, 0);
    expect_limit("+5", -1, 0);
    expect_limit(" 5", -1, 0);
    expect_limit("5x", -1, 0);
    long v = 0;
    assert_int_equal(gw_parse_limit("12", 1, &v), 0); /* only n bytes count */
    assert_int_equal(v, 1);
}

static void expect_body(const char *body, const char *want_name, const char *reason)
{
    char name[66] = "", why[256] = "";
    int rc = gw_parse_create_body(body, strlen(body), name, sizeof(name), why, sizeof(why));
    if (want_name != NULL && (rc != 0 || strcmp(name, want_name) != 0))
        fail_msg("body %s: expected name %s, got %d %s%s", body, want_name, rc, name, why);
    if (want_name == NULL && (rc != -1 || strstr(why, reason) == NULL))
        fail_msg("body %s: expected -1 saying %s, got %d %s", body, reason, rc, why);
}

static void test_body_rules(void **state)
{
    (void)state;
    expect_body("{\"name\":\"ann\"}", "ann", NULL);
    expect_body("{\"name\":\"Jose\u0301\"}", "Jos\xC3\xA9", NULL); /* NFC */
    expect_body("", NULL, "missing name: use ?name=NAME or a JSON body");
    expect_body("{\"name\":", NULL, "body is not valid JSON");
    expect_body("[\"ann\"]", NULL, "body must be a JSON object with a string \"name\"");
    expect_body("{}", NULL, "with a string \"name\"");
    expect_body("{\"name\":42}", NULL, "with a string \"name\"");
    expect_body("{\"name\":\"\"}", NULL, "name: ");
    expect_body("{\"name\":\"a\\u0000b\"}", NULL, "name: ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_depth),
        cmocka_unit_test(test_body_repeated_key),
        cmocka_unit_test(test_head_framing),
        cmocka_unit_test(test_head_lines),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_body_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
