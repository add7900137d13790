/* docs/openapi.yaml against the real gateway: a request for each path,
 * method and status the test can cause (with the real services behind
 * it), each answer documented there (its status for that path and method,
 * its Content-Type, its required headers) and matching the documented
 * schema; every example matches its schema, and one for an answer seen has
 * that answer's keys. The schema check is the subset the document uses:
 * $ref, type, properties, required, additionalProperties, items, enum,
 * minLength/maxLength, minimum/maximum. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <yaml.h>

#include "http_client.h"
#include "proc.h"

#define SPEC TCPOPS_SOURCE_DIR "/docs/openapi.yaml"

/* ---- YAML into jansson ---- */

/* A plain scalar as YAML 1.2's core schema reads it; any other a string. */
static json_t *scalar(const yaml_event_t *e)
{
    const char *v = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        char *end;
        if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
            return json_boolean(v[0] == 't');
        if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || n == 0)
            return json_null();
        long long i = strtoll(v, &end, 10);
        if (end != v && *end == '\0')
            return json_integer(i);
        double d = strtod(v, &end);
        if (end != v && *end == '\0' && isdigit((unsigned char)v[n - 1]))
            return json_real(d);
    }
    return json_stringn(v, n);
}

/* The node that begins with ev (consumed), or NULL with err filled. */
static json_t *node(yaml_parser_t *p, yaml_event_t *ev, char *err, size_t errlen)
{
    json_t *out = NULL;
    yaml_event_t next;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        out = scalar(ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        out = json_array();
        while (out != NULL && yaml_parser_parse(p, &next)) {
            if (next.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&next);
                break;
            }
            json_t *item = node(p, &next, err, errlen);
            if (item == NULL) {
                json_decref(out);
                out = NULL;
            } else {
                json_array_append_new(out, item);
            }
        }
        break;
    case YAML_MAPPING_START_EVENT:
        out = json_object();
        while (out != NULL && yaml_parser_parse(p, &next)) {
            if (next.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&next);
                break;
            }
            json_t *key = node(p, &next, err, errlen), *value = NULL;
            if (key != NULL && json_is_string(key) && yaml_parser_parse(p, &next))
                value = node(p, &next, err, errlen);
            if (value == NULL) {
                if (key != NULL && !json_is_string(key))
                    snprintf(err, errlen, "a mapping key that is not a string");
                json_decref(out);
                out = NULL;
            } else {
                json_object_set_new(out, json_string_value(key), value);
            }
            json_decref(key);
        }
        break;
    default:
        snprintf(err, errlen, "unexpected YAML event %d (anchors and aliases are not read)",
                 (int)ev->type);
        break;
    }
    if (out == NULL && err[0] == '\0')
        snprintf(err, errlen, "%s at line %zu", p->problem ? p->problem : "YAML error",
                 p->problem_mark.line + 1);
    yaml_event_delete(ev);
    return out;
}

static json_t *load_yaml(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("expected %s; cannot open it", path);
    yaml_parser_t p;
    yaml_event_t ev;
    json_t *doc = NULL;
    char err[256] = "";
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    /* STREAM-START, DOCUMENT-START, then the document's root node. */
    for (int i = 0; i < 2 && yaml_parser_parse(&p, &ev); i++)
        yaml_event_delete(&ev);
    if (yaml_parser_parse(&p, &ev))
        doc = node(&p, &ev, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "%s at line %zu", p.problem ? p.problem : "YAML error",
                 p.problem_mark.line + 1);
    yaml_parser_delete(&p);
    fclose(f);
    if (doc == NULL || !json_is_object(doc))
        fail_msg("%s: expected a YAML mapping, got: %s", path, err);
    return doc;
}

/* ---- the document ---- */

/* v, or what its "$ref": "#/a/b" points at (followed again). */
static json_t *deref(json_t *doc, json_t *v)
{
    for (int hops = 0; hops < 8; hops++) {
        const char *ref = json_string_value(json_object_get(v, "$ref"));
        if (ref == NULL)
            return v;
        if (strncmp(ref, "#/", 2) != 0)
            fail_msg("openapi.yaml: $ref %s: only local references are read", ref);
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", ref + 2);
        json_t *at = doc;
        for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok != NULL;
             tok = strtok_r(NULL, "/", &save))
            at = json_object_get(at, tok);
        if (at == NULL)
            fail_msg("openapi.yaml: $ref %s points at nothing", ref);
        v = at;
    }
    fail_msg("openapi.yaml: a $ref chain longer than 8");
    return NULL;
}

static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Whether v matches schema; else err (len bytes) says where and why. */
static int matches(json_t *doc, json_t *schema, json_t *v, const char *where, char *err,
                   size_t len)
{
    schema = deref(doc, schema);
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type != NULL) {
        const char *is = type_of(v);
        int ok = strcmp(type, is) == 0 || (strcmp(type, "number") == 0 && json_is_integer(v));
        if (!ok) {
            snprintf(err, len, "%s: expected %s, got %s", where, type, is);
            return 0;
        }
    }
    json_t *en = json_object_get(schema, "enum"), *e;
    size_t i;
    if (en != NULL) {
        int found = 0;
        json_array_foreach(en, i, e) found |= json_equal(e, v);
        if (!found) {
            char *s = json_dumps(v, JSON_ENCODE_ANY);
            snprintf(err, len, "%s: %s is not one of the enum", where, s);
            free(s);
            return 0;
        }
    }
    if (json_is_string(v)) {
        json_t *mn = json_object_get(schema, "minLength"), *mx = json_object_get(schema, "maxLength");
        size_t n = utf8_chars(json_string_value(v));
        if ((mn != NULL && (json_int_t)n < json_integer_value(mn)) ||
            (mx != NULL && (json_int_t)n > json_integer_value(mx))) {
            snprintf(err, len, "%s: \"%s\" is %zu characters, outside the schema's length", where,
                     json_string_value(v), n);
            return 0;
        }
    }
    if (json_is_number(v)) {
        json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
        double d = json_number_value(v);
        if ((mn != NULL && d < json_number_value(mn)) || (mx != NULL && d > json_number_value(mx))) {
            snprintf(err, len, "%s: %g is outside the schema's range", where, d);
            return 0;
        }
    }
    char sub[512];
    if (json_is_object(v)) {
        json_t *props = json_object_get(schema, "properties");
        json_t *more = json_object_get(schema, "additionalProperties");
        json_array_foreach(json_object_get(schema, "required"), i, e) {
            if (json_object_get(v, json_string_value(e)) == NULL) {
                snprintf(err, len, "%s: the required key \"%s\" is missing", where,
                         json_string_value(e));
                return 0;
            }
        }
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            json_t *ps = json_object_get(props, key);
            snprintf(sub, sizeof(sub), "%s.%s", where, key);
            if (ps == NULL && json_is_false(more)) {
                snprintf(err, len, "%s: a key the schema does not allow", sub);
                return 0;
            }
            if (ps == NULL && json_is_object(more))
                ps = more;
            if (ps != NULL && !matches(doc, ps, val, sub, err, len))
                return 0;
        }
    }
    if (json_is_array(v) && json_object_get(schema, "items") != NULL) {
        json_t *val;
        json_array_foreach(v, i, val) {
            snprintf(sub, sizeof(sub), "%s[%zu]", where, i);
            if (!matches(doc, json_object_get(schema, "items"), val, sub, err, len))
                return 0;
        }
    }
    return 1;
}

/* Every object holding both schema and example (media types, parameters):
 * the example matches the schema. Returns how many were checked. */
static int check_examples(json_t *doc, json_t *at, const char *where)
{
    int n = 0;
    char sub[512], err[1024];
    if (json_is_object(at)) {
        json_t *schema = json_object_get(at, "schema"), *ex = json_object_get(at, "example");
        if (schema != NULL && ex != NULL) {
            snprintf(sub, sizeof(sub), "%s.example", where);
            if (!matches(doc, schema, ex, sub, err, sizeof(err)))
                fail_msg("openapi.yaml: an example does not match its schema: %s", err);
            n++;
        }
        const char *key;
        json_t *v;
        json_object_foreach(at, key, v) {
            snprintf(sub, sizeof(sub), "%s.%s", where, key);
            n += check_examples(doc, v, sub);
        }
    } else if (json_is_array(at)) {
        size_t i;
        json_t *v;
        json_array_foreach(at, i, v) {
            snprintf(sub, sizeof(sub), "%s[%zu]", where, i);
            n += check_examples(doc, v, sub);
        }
    }
    return n;
}

/* ---- the gateway ---- */

typedef struct fixture {
    trio t;
    json_t *doc;
    json_t *seen;   /* "METHOD PATH" -> [statuses] */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(trio_init(&fx->t), 0);
    fx->doc = load_yaml(SPEC);
    fx->seen = json_object();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    trio_fini(&fx->t);
    json_decref(fx->doc);
    json_decref(fx->seen);
    free(fx);
    return 0;
}

/* The documented answer to method on path with status: the operation's,
 * else the path's x-other-methods (a method it does not take), else, for
 * a path not documented, x-unrouted's. NULL when there is none. */
static json_t *documented(fixture *fx, const char *method, const char *path, int status)
{
    char lower[16], code[8];
    size_t i;
    for (i = 0; method[i] != '\0' && i + 1 < sizeof(lower); i++)
        lower[i] = (char)tolower((unsigned char)method[i]);
    lower[i] = '\0';
    snprintf(code, sizeof(code), "%d", status);
    json_t *item = json_object_get(json_object_get(fx->doc, "paths"), path);
    json_t *where = json_object_get(fx->doc, "x-unrouted");
    if (item != NULL)
        where = json_object_get(item, lower) != NULL ? json_object_get(item, lower)
                                                     : json_object_get(item, "x-other-methods");
    json_t *r = json_object_get(json_object_get(where, "responses"), code);
    return r != NULL ? deref(fx->doc, r) : NULL;
}

/* Checks answer r to method on path against the document, and records it. */
static void check_answer(fixture *fx, const char *method, const char *path, http_resp *r)
{
    char what[300], ct[128], err[1024], hv[128];
    snprintf(what, sizeof(what), "%s %s %d", method, path, r->status);
    json_t *resp = documented(fx, method, path, r->status);
    if (resp == NULL)
        fail_msg("%s: this answer is not in docs/openapi.yaml (body %.300s)", what, r->body);
    /* Its Content-Type is one the document gives it. */
    json_t *content = json_object_get(resp, "content");
    const char *got = http_header(r, "Content-Type", ct, sizeof(ct));
    char media[128] = "";
    if (got != NULL)
        snprintf(media, sizeof(media), "%.*s", (int)strcspn(got, "; "), got);
    json_t *mt = json_object_get(content, media);
    if (mt == NULL)
        fail_msg("%s: Content-Type \"%s\" is not documented for this answer", what,
                 got != NULL ? got : "(none)");
    /* The headers it must carry. */
    const char *name;
    json_t *h;
    json_object_foreach(json_object_get(resp, "headers"), name, h) {
        if (json_is_true(json_object_get(deref(fx->doc, h), "required")) &&
            http_header(r, name, hv, sizeof(hv)) == NULL)
            fail_msg("%s: expected the documented header %s, it is missing", what, name);
    }
    /* The body against the schema; a JSON one parsed first. */
    json_t *body;
    json_error_t je;
    if (strcmp(media, "application/json") == 0) {
        body = json_loadb(r->body, r->body_len, 0, &je);
        if (body == NULL)
            fail_msg("%s: expected a JSON body, got \"%.200s\" (%s)", what, r->body, je.text);
    } else {
        body = json_stringn(r->body, r->body_len);
    }
    if (!matches(fx->doc, json_object_get(mt, "schema"), body, "body", err, sizeof(err)))
        fail_msg("%s: the body does not match the documented schema: %s; body %.400s", what,
                 err, r->body);
    /* Its example is of the same shape: same type, and for an object no
     * key at the top that the answer has not (it may have optional ones
     * the example leaves out). */
    json_t *ex = json_object_get(mt, "example");
    if (ex != NULL && json_typeof(ex) != json_typeof(body)) {
        char *s = json_dumps(ex, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("%s: the documented example %.200s is not the shape of the answer %.300s",
                 what, s, r->body);
    }
    if (ex != NULL && json_is_object(ex)) {
        const char *key;
        json_t *v;
        json_object_foreach(ex, key, v) {
            if (json_object_get(body, key) == NULL)
                fail_msg("%s: the documented example has \"%s\", the answer %.300s has not",
                         what, key, r->body);
        }
    }
    json_decref(body);
    char op[300];
    snprintf(op, sizeof(op), "%s %s", method, path);
    json_t *codes = json_object_get(fx->seen, op);
    if (codes == NULL) {
        codes = json_array();
        json_object_set_new(fx->seen, op, codes);
    }
    json_array_append_new(codes, json_integer(r->status));
}

/* One request (a fresh connection); checks the answer is want_status and
 * documented. extra: header lines or NULL. */
static void ask(fixture *fx, const char *method, const char *target, const char *extra,
                const char *body, int want_status)
{
    http_resp r;
    if (http_once(fx->t.gw_port, method, target, extra, body, &r) < 0)
        fail_msg("%s %s: no answer from the gateway", method, target);
    if (r.status != want_status)
        fail_msg("%s %s: expected %d, got %d %.300s", method, target, want_status, r.status,
                 r.body);
    char path[256];
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(target, "?"), target);
    check_answer(fx, method, path, &r);
    http_resp_free(&r);
}

/* A raw request (sent as it is, then read until the gateway closes or 5 s
 * pass), for heads http_do would not send; recorded as method on path. */
static void ask_raw(fixture *fx, const char *method, const char *path, const char *raw,
                    int want_status)
{
    int fd = http_connect(fx->t.gw_port);
    if (fd < 0 || http_send(fd, raw, strlen(raw)) < 0)
        fail_msg("%s %s (raw): could not send to the gateway", method, path);
    char *buf = NULL;
    size_t n = 0;
    http_read_all(fd, &buf, &n, 5000);
    close(fd);
    http_resp r = {0};
    if (http_parse(buf, n, &r) < 0)
        fail_msg("%s %s (raw): expected an HTTP answer, got \"%.200s\"", method, path,
                 buf != NULL ? buf : "");
    free(buf);
    if (r.status != want_status)
        fail_msg("%s %s (raw): expected %d, got %d %.300s", method, path, want_status,
                 r.status, r.body);
    check_answer(fx, method, path, &r);
    http_resp_free(&r);
}

/* Asks until the answer is want_status (at most 10 s), then checks it. */
static void ask_until(fixture *fx, const char *method, const char *target, int want_status)
{
    for (int i = 0; i < 500; i++) {
        http_resp r;
        if (http_once(fx->t.gw_port, method, target, NULL, NULL, &r) == 0) {
            int hit = r.status == want_status;
            http_resp_free(&r);
            if (hit)
                break;
        }
        usleep(20 * 1000);
    }
    ask(fx, method, target, NULL, NULL, want_status);
}

/* Asks GET path until its body holds want (at most 10 s), then checks the
 * answer. */
static void ask_until_body(fixture *fx, const char *path, const char *want)
{
    char last[4096] = "";
    for (int i = 0; i < 500; i++) {
        http_resp r;
        if (http_once(fx->t.gw_port, "GET", path, NULL, NULL, &r) == 0) {
            snprintf(last, sizeof(last), "%d %s", r.status, r.body);
            int hit = strstr(r.body, want) != NULL;
            if (hit)
                check_answer(fx, "GET", path, &r);
            http_resp_free(&r);
            if (hit)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("GET %s: expected an answer with %s within 10 s; the last was %.500s", path, want,
             last);
}

static void start_all(fixture *fx)
{
    /* pets.GetByIds outlasts the gateway's deadline (504); the rest is
     * answered at once. */
    const char *const slow[] = {"--delay-ms", "3000", "--delay-method", "pets.GetByIds", NULL};
    assert_int_equal(proc_start_service(&fx->t.people, "tcpops-people", fx->t.people_port, fx->t.dir,
                                        NULL), 0);
    assert_int_equal(proc_start_service(&fx->t.pets, "tcpops-pets", fx->t.pets_port, fx->t.dir, slow),
                     0);
    char bin[512], listen[64], people[64], pets[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->t.gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->t.people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->t.pets_port);
    /* A body that stalls is a 408 after 200 ms rather than 10 s. */
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", people, "--pets", pets, "--access-log=false", "--threads=16",
                    "--request-timeout-ms", "200", NULL};
    assert_int_equal(proc_start(&fx->t.gw, argv, 0), 0);
    assert_int_equal(wait_port(fx->t.gw_port, 10000), 0);
    ask_until(fx, "GET", "/readyz", 200);
}

static void test_every_answer_is_documented(void **state)
{
    fixture *fx = *state;
    int examples = check_examples(fx->doc, fx->doc, "openapi");
    if (examples < 10)
        fail_msg("openapi.yaml: expected an example beside most schemas, found %d", examples);
    start_all(fx);
    char raw[32768];

    ask(fx, "GET", "/", NULL, NULL, 200);
    ask(fx, "GET", "/?x=1", NULL, NULL, 400);
    ask(fx, "POST", "/", NULL, NULL, 405);
    ask(fx, "GET", "/people", NULL, NULL, 200);
    ask(fx, "GET", "/people?limit=1&after=bob", NULL, NULL, 200);
    ask(fx, "GET", "/people?limit=0", NULL, NULL, 400);
    ask(fx, "GET", "/people?NAME=x", NULL, NULL, 400);
    ask(fx, "POST", "/people?name=ann", NULL, NULL, 201);
    ask(fx, "POST", "/people?name=ann", NULL, NULL, 409);
    ask(fx, "POST", "/people", "Content-Type: application/json\r\n", "{\"name\":\"zo\xc3\xab\"}",
        201);
    ask(fx, "POST", "/people", NULL, "{\"name\":1}", 400);
    char *big = malloc(70 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'x', 70 * 1024);
    big[70 * 1024] = '\0';
    ask(fx, "POST", "/people", NULL, big, 413);
    free(big);
    /* 5 of 20 bytes, and the connection kept open: 408. */
    ask_raw(fx, "POST", "/people", "POST /people HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n"
            "\r\n{\"nam", 408);
    ask(fx, "DELETE", "/people", NULL, NULL, 405);
    ask(fx, "PUT", "/people/pets", NULL, NULL, 405);

    ask(fx, "GET", "/people/pets?owner=ann", NULL, NULL, 200);
    ask(fx, "GET", "/people/pets?owner=nobody", NULL, NULL, 404);
    ask(fx, "GET", "/people/pets", NULL, NULL, 400);
    ask(fx, "GET", "/people/pets?owner=bob", NULL, NULL, 504);

    ask(fx, "GET", "/status", NULL, NULL, 200);
    ask(fx, "GET", "/status?x=1", NULL, NULL, 400);
    ask(fx, "POST", "/status", NULL, NULL, 405);
    ask(fx, "GET", "/healthz", NULL, NULL, 200);
    ask(fx, "GET", "/healthz?x=1", NULL, NULL, 400);
    ask(fx, "GET", "/readyz", NULL, NULL, 200);
    ask(fx, "DELETE", "/readyz", NULL, NULL, 405);
    ask(fx, "GET", "/metrics", NULL, NULL, 200);
    ask(fx, "POST", "/metrics", NULL, NULL, 405);
    ask(fx, "GET", "/nope", NULL, NULL, 404);

    /* The head rules, on a documented path and on none. */
    ask(fx, "GET", "/people", "Expect: something\r\n", NULL, 417);
    ask_raw(fx, "POST", "/people", "POST /people HTTP/1.1\r\nHost: t\r\n"
            "Transfer-Encoding: gzip\r\n\r\n", 501);
    ask_raw(fx, "GET", "/healthz", "GET /healthz HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400);
    int n = snprintf(raw, sizeof(raw), "GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 70; i++)
        n += snprintf(raw + n, sizeof(raw) - (size_t)n, "X-F%d: 1\r\n", i);
    snprintf(raw + n, sizeof(raw) - (size_t)n, "\r\n");
    ask_raw(fx, "GET", "/healthz", raw, 431);
    n = snprintf(raw, sizeof(raw), "GET /people?after=");
    memset(raw + n, 'a', 17000);
    snprintf(raw + n + 17000, sizeof(raw) - (size_t)n - 17000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    ask_raw(fx, "GET", "/people", raw, 414);
    ask_raw(fx, "OPTIONS", "*", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 200);
    ask_raw(fx, "GET", "*", "GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    ask_raw(fx, "GET", "http://example.com/people",
            "GET http://example.com/people HTTP/1.1\r\nHost: t\r\n\r\n", 421);

    /* people's disk full (no write may grow a file past 4 KiB: its WAL
     * already does): 507, and /status and /readyz say so. */
    struct rlimit rl = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    if (prlimit(fx->t.people.pid, RLIMIT_FSIZE, &rl, NULL) != 0)
        fail_msg("prlimit(RLIMIT_FSIZE) on pid %d failed", (int)fx->t.people.pid);
    ask(fx, "POST", "/people?name=full", NULL, NULL, 507);
    ask_until_body(fx, "/status", "\"writes\":\"failing\"");
    ask_until_body(fx, "/readyz", "\"writes_failing\"");

    /* pets gone: 503 with Retry-After where it is needed. */
    proc_stop(&fx->t.pets);
    ask_until(fx, "GET", "/readyz", 503);
    ask_until(fx, "GET", "/status", 503);
    ask_until(fx, "GET", "/people/pets?owner=bob", 503);

    /* Every documented operation was asked. */
    const char *path, *m;
    json_t *item, *op;
    char key[300];
    json_object_foreach(json_object_get(fx->doc, "paths"), path, item) {
        json_object_foreach(item, m, op) {
            if (strncmp(m, "x-", 2) == 0)
                continue;
            char upper[16];
            size_t i;
            for (i = 0; m[i] != '\0' && i + 1 < sizeof(upper); i++)
                upper[i] = (char)toupper((unsigned char)m[i]);
            upper[i] = '\0';
            snprintf(key, sizeof(key), "%s %s", upper, path);
            if (json_object_get(fx->seen, key) == NULL)
                fail_msg("openapi.yaml documents %s, which this test never asked: add a request",
                         key);
        }
    }
    char *seen = json_dumps(fx->seen, JSON_COMPACT | JSON_SORT_KEYS);
    print_message("checked against openapi.yaml: %s; %d examples\n", seen, examples);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_answer_is_documented, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
