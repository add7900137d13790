/* libFuzzer target: the gateway's request input rules. The input is a first
 * line and the rest. The first line goes through the query parser (checked
 * against civetweb's mg_get_var where both apply), the path parser, name
 * validation and the limit parser; the rest through the JSON nesting scan
 * and the POST /people parser, and, split into lines laid out the way
 * civetweb 1.15 leaves a parsed head, through the head checks. An accepted
 * name is always a valid one; an accepted head has one framing. */
#include <civetweb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/input.h"
#include "util/jsondepth.h"
#include "util/name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when some parameter name in qs[0..n) is written with '%' or '+', where
 * mg_get_var (which compares names as sent) and our parser (which decodes
 * them) differ by design. */
static int encoded_names(const char *qs, size_t n)
{
    int in_name = 1;
    for (size_t i = 0; i < n; i++) {
        if (qs[i] == '&')
            in_name = 1;
        else if (qs[i] == '=')
            in_name = 0;
        else if (in_name && (qs[i] == '%' || qs[i] == '+'))
            return 1;
    }
    return 0;
}

static void query_rules(const char *qs, size_t qlen)
{
    char bufs[4][66], why[256];
    gw_param p[4] = {{.name = "name", .buf = bufs[0], .cap = 65},
                     {.name = "owner", .buf = bufs[1], .cap = 65},
                     {.name = "after", .buf = bufs[2], .cap = 65},
                     {.name = "limit", .buf = bufs[3], .cap = 8}};
    if (gw_parse_query(qs, qlen, p, 4, why, sizeof(why)) < 0)
        return;
    for (size_t i = 0; i < 4; i++) {
        if (p[i].len == -1 || p[i].len == -2)
            continue;
        if (p[i].len < 0 || (size_t)p[i].len >= p[i].cap || bufs[i][p[i].len] != '\0')
            abort();
        long limit;
        if (i == 3 && gw_parse_limit(bufs[i], (size_t)p[i].len, &limit) == 0 &&
            (limit < 1 || limit > 1000))
            abort();
        util_name_check(bufs[i], (size_t)p[i].len, why, sizeof(why));
        /* Accepted: the parameter is there once, in this case, with valid
         * escapes, so civetweb's own lookup finds the same value. */
        char theirs[66];
        if (p[i].len > 0 && !encoded_names(qs, qlen)) {
            int n = mg_get_var(qs, qlen, p[i].name, theirs, sizeof(theirs));
            if (n != p[i].len || memcmp(theirs, bufs[i], (size_t)n) != 0)
                abort();
        }
    }
}

/* Lays the lines of text out as civetweb leaves a parsed head and checks
 * it. Lines without a colon end the fields, as in civetweb. */
static void head_rules(const char *text, size_t n)
{
    size_t cap = 64 + 3 * n;
    char *buf = malloc(cap);
    struct mg_header f[MG_MAX_HEADERS];
    int nf = 0;
    if (buf == NULL)
        return;
    char *p = buf;
    /* CRLF line endings: the request line's CR and LF are NULs. */
    memcpy(p, "POST\0/people\0HTTP/1.1\0\0", 23);
    gw_head h = {.method = buf, .version = buf + 18, .fields = f};
    p += 23;
    const char *line = text, *end = text + n;
    while (line < end && nf < MG_MAX_HEADERS) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl != NULL ? nl : end;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon == NULL || colon == line || memchr(line, '\0', (size_t)(le - line)) != NULL)
            break;
        const char *ne = colon;
        while (ne > line && ne[-1] == ' ')
            ne--;
        if (ne == line)
            break;
        f[nf].name = p;
        memcpy(p, line, (size_t)(ne - line));
        p += ne - line;
        for (const char *q = ne; q <= colon; q++)
            *p++ = '\0';
        const char *v = colon + 1;
        while (v < le && *v == ' ')
            *p++ = *v++;
        f[nf].value = p;
        memcpy(p, v, (size_t)(le - v));
        p += le - v;
        *p++ = '\0';
        *p++ = '\0';
        nf++;
        line = le + 1;
    }
    /* What civetweb did not parse stays as sent, then the head's end. A
     * head with a NUL in it never gets this far in civetweb. */
    if (line < end && memchr(line, '\0', (size_t)(end - line)) != NULL) {
        free(buf);
        return;
    }
    if (line < end) {
        memcpy(p, line, (size_t)(end - line));
        p += end - line;
    } else {
        *p++ = '\r';
    }
    *p = '\0';
    h.nfields = nf;
    char why[256];
    int st = gw_check_head(&h, 4096, why, sizeof(why));
    if (st != 0 && st != 400 && st != 414 && st != 431 && st != 501)
        abort();
    if (st == 0) {
        int ncl = 0, nte = 0, nhost = 0;
        for (int i = 0; i < nf; i++) {
            ncl += strcasecmp(f[i].name, "Content-Length") == 0;
            nte += strcasecmp(f[i].name, "Transfer-Encoding") == 0;
            nhost += strcasecmp(f[i].name, "Host") == 0;
        }
        if (nf >= MG_MAX_HEADERS || ncl > 1 || nte > 1 || (ncl && nte) || nhost != 1)
            abort();
        /* Every line was a field: nothing but the end was left unparsed. */
        if (line < end && !(end - line == 1 && *line == '\r'))
            abort();
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - in) : size;
    char *qs = malloc(qlen + 1);
    if (qs == NULL)
        return 0;
    memcpy(qs, in, qlen);
    qs[qlen] = '\0';

    query_rules(qs, qlen);
    char path[64], why[256];
    int pn = gw_parse_path(qs, path, sizeof(path), why, sizeof(why));
    /* No NUL and no '/' comes out of an escape. */
    if (pn >= 0 && (strlen(path) != (size_t)pn ||
                    (strchr(qs, '/') == NULL && memchr(path, '/', (size_t)pn) != NULL)))
        abort();
    if (nl != NULL) {
        char name[66];
        const char *body = nl + 1;
        size_t blen = size - qlen - 1;
        util_json_depth_ok(body, blen, UTIL_JSON_MAX_DEPTH);
        if (gw_parse_create_body(body, blen, name, sizeof(name), why, sizeof(why)) == 0 &&
            util_name_check(name, strlen(name), why, sizeof(why)) != 0)
            abort();
        head_rules(body, blen);
    }
    free(qs);
    return 0;
}
