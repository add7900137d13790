#include "gateway/input.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/jsondepth.h"
#include "util/name.h"

int gw_parse_limit(const char *s, size_t n, long *out)
{
    long v = 0;
    if (n == 0 || n > 4)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 1000)
        return -1;
    *out = v;
    return 0;
}

int gw_parse_create_body(const char *body, size_t len, char *name, size_t cap, char *why,
                         size_t whylen)
{
    char reason[128];
    if (len == 0) {
        snprintf(why, whylen, "missing name: use ?name=NAME or a JSON body {\"name\":...}");
        return -1;
    }
    /* Before jansson sees it: its parser recurses once per level. */
    if (!util_json_depth_ok(body, len, UTIL_JSON_MAX_DEPTH)) {
        snprintf(why, whylen, "body nests deeper than %d levels", UTIL_JSON_MAX_DEPTH);
        return -1;
    }
    json_error_t je;
    /* A key given twice would be taken by its last value: ambiguous, like
     * a repeated query parameter. */
    json_t *doc = json_loadb(body, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    json_t *jn = json_object_get(doc, "name");
    int rc = -1;
    if (doc == NULL) {
        snprintf(why, whylen, "body is not valid JSON: %.100s", je.text);
    } else if (!json_is_object(doc) || !json_is_string(jn)) {
        snprintf(why, whylen, "body must be a JSON object with a string \"name\"");
    } else if (util_name_normalize(json_string_value(jn), json_string_length(jn), name, cap,
                                   NULL, reason, sizeof(reason)) < 0) {
        snprintf(why, whylen, "name: %s", reason);
    } else {
        rc = 0; /* name holds its NFC form */
    }
    json_decref(doc);
    return rc;
}

/* ---- the request head ---- */

/* v without trailing spaces and tabs (civetweb keeps them): its length. */
static size_t trimmed_len(const char *v)
{
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n;
}

/* 1 when civetweb parsed every line of the head as a field. Its
 * parse_http_headers stops without a word at a line that starts with a
 * space (obs-fold), a ':', a byte over 126, or a lone CR or LF, and then
 * ignores every line after it, a Content-Length included: the smuggling
 * that RFC 9112 5.2 forbids. What it parsed has NULs where the line breaks
 * were (two for CRLF, one for LF); what it did not parse is untouched up to
 * the head's last byte, which it set to NUL. So: every line break between
 * the request line and the fields, and between fields, must be the same
 * one (no indented first field, no mixed endings), and right after the
 * last field's comes the end of the head. */
static int lines_ok(const gw_head *h)
{
    const char *prev_end = h->version + strlen(h->version);
    ptrdiff_t style = 0;
    for (int i = 0; i < h->nfields; i++) {
        ptrdiff_t gap = h->fields[i].name - prev_end;
        if (gap != 1 && gap != 2)
            return 0;
        if (style != 0 && gap != style)
            return 0;
        style = gap;
        prev_end = h->fields[i].value + strlen(h->fields[i].value);
    }
    if (h->nfields == 0)
        return 1; /* without fields HTTP/1.1 is refused (Host), and 1.0 closes */
    /* prev_end is the NUL of the last field's CR (CRLF) or LF. With LF
     * endings the next byte is the head's last; with CRLF ones the LF's NUL
     * follows, then the final "\r\0" (or "\0" after a bare LF). */
    if (style == 1)
        return prev_end[1] == '\0';
    /* (A last line that alone ends in a bare LF makes p the first byte after
     * the head: such a head is refused unless the body starts with CR NUL
     * or NUL. civetweb's buffer is twice the head limit, so p[1] is inside
     * it unless leading empty lines filled it.) */
    if (prev_end[1] != '\0')
        return 0;
    const char *p = prev_end + 2;
    return p[0] == '\0' || (p[0] == '\r' && p[1] == '\0');
}

int gw_check_head(const gw_head *h, size_t max_bytes, char *why, size_t whylen)
{
    if (h->nfields >= MG_MAX_HEADERS) {
        snprintf(why, whylen, "more than %d header fields", GW_MAX_FIELDS);
        return 431;
    }
    size_t line = (size_t)(h->version + strlen(h->version) - h->method);
    if (line > max_bytes) {
        snprintf(why, whylen, "request line over %zu bytes", max_bytes);
        return 414;
    }
    if (h->nfields > 0) {
        const char *last = h->fields[h->nfields - 1].value;
        if ((size_t)(last + strlen(last) - h->method) > max_bytes) {
            snprintf(why, whylen, "request head over %zu bytes", max_bytes);
            return 431;
        }
    }
    if (!lines_ok(h)) {
        snprintf(why, whylen, "a header line is not a field (folded, starting with ':' or a "
                 "byte outside ASCII, indented, or with mixed line endings)");
        return 400;
    }
    int ncl = 0, nte = 0, nhost = 0;
    const char *te = NULL;
    for (int i = 0; i < h->nfields; i++) {
        const char *name = h->fields[i].name;
        const char *value = h->fields[i].value;
        size_t nl = strlen(name);
        nhost += strcasecmp(name, "Host") == 0;
        /* The colon is the NUL at name[nl]; a second NUL right after it was
         * a space before the colon (the spaces after it stay spaces). */
        if (value > name + nl + 1 && name[nl + 1] == '\0') {
            snprintf(why, whylen, "space between header field name %.64s and its colon", name);
            return 400;
        }
        if (strcasecmp(name, "Content-Length") == 0) {
            size_t vl = trimmed_len(value);
            ncl++;
            int digits = vl > 0;
            for (size_t k = 0; k < vl && digits; k++)
                digits = value[k] >= '0' && value[k] <= '9';
            if (!digits) {
                snprintf(why, whylen, "Content-Length must be a whole number of bytes, not "
                         "\"%.32s\"", value);
                return 400;
            }
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            nte++;
            te = value;
        }
    }
    if (nhost > 1 || (nhost == 0 && strcmp(h->version, "1.1") == 0)) {
        snprintf(why, whylen, nhost ? "Host given %d times" : "an HTTP/1.1 request needs a Host "
                 "header field", nhost);
        return 400;
    }
    if (ncl > 1) {
        snprintf(why, whylen, "Content-Length given %d times", ncl);
        return 400;
    }
    if (nte > 1) {
        snprintf(why, whylen, "Transfer-Encoding given %d times", nte);
        return 400;
    }
    if (nte == 1 && ncl == 1) {
        snprintf(why, whylen, "both Content-Length and Transfer-Encoding");
        return 400;
    }
    /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
     * framing (a 1.0 intermediary may have passed it on unchunked). */
    if (nte == 1 && strcmp(h->version, "1.0") == 0) {
        snprintf(why, whylen, "Transfer-Encoding in an HTTP/1.0 request");
        return 400;
    }
    if (te != NULL && (trimmed_len(te) != 7 || strncasecmp(te, "chunked", 7) != 0)) {
        snprintf(why, whylen, "transfer coding \"%.32s\" is not supported (only chunked)", te);
        return 501;
    }
    return 0;
}

/* ---- path and query ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte the %-escape at s[i] stands for, or -1 when it is not one. */
static int escape_at(const char *s, size_t n, size_t i)
{
    if (i + 2 >= n)
        return -1;
    int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

int gw_parse_path(const char *raw, char *out, size_t cap, char *why, size_t whylen)
{
    size_t n = strlen(raw), o = 0;
    int too_long = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)raw[i];
        if (c == '%') {
            c = escape_at(raw, n, i);
            if (c < 0) {
                snprintf(why, whylen, "bad %%-escape in the path");
                return -1;
            }
            if (c == '/' || c == 0) {
                snprintf(why, whylen, "the path encodes %s", c == '/' ? "a '/' (%2F)"
                                                                       : "a NUL (%00)");
                return -1;
            }
            i += 2;
        }
        if (o + 1 < cap)
            out[o++] = (char)c;
        else
            too_long = 1;
    }
    if (cap > 0)
        out[o] = '\0';
    return too_long ? -2 : (int)o;
}

/* Decodes s[0..n) (form encoding: '+' is a space) into out (cap bytes,
 * NUL-terminated when cap > 0). Returns the decoded length, which may be
 * more than was stored, or -1 for a bad %-escape. */
static long form_decode(const char *s, size_t n, char *out, size_t cap)
{
    long len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if ((c = escape_at(s, n, i)) < 0)
                return -1;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if ((size_t)len + 1 < cap)
            out[len] = (char)c;
        len++;
    }
    if (cap > 0)
        out[(size_t)len < cap ? (size_t)len : cap - 1] = '\0';
    return len;
}

int gw_parse_query(const char *qs, size_t n, gw_param *p, size_t np, char *why, size_t whylen)
{
    for (size_t k = 0; k < np; k++)
        p[k].len = -1;
    size_t i = 0;
    while (i <= n) {
        const char *seg = qs + i;
        const char *amp = memchr(seg, '&', n - i);
        size_t sl = amp != NULL ? (size_t)(amp - seg) : n - i;
        i += sl + 1;
        if (sl == 0)
            continue; /* "a=1&&b=2", a trailing '&' */
        const char *eq = memchr(seg, '=', sl);
        size_t kl = eq != NULL ? (size_t)(eq - seg) : sl;
        char key[64];
        long kn = form_decode(seg, kl, key, sizeof(key));
        if (kn < 0) {
            snprintf(why, whylen, "bad %%-escape in the query parameter name %.*s",
                     (int)(kl > 32 ? 32 : kl), seg);
            return -1;
        }
        gw_param *hit = NULL, *other_case = NULL;
        for (size_t k = 0; k < np; k++) {
            if ((size_t)kn == strlen(p[k].name) && memcmp(key, p[k].name, (size_t)kn) == 0)
                hit = &p[k];
            else if ((size_t)kn == strlen(p[k].name) && strcasecmp(key, p[k].name) == 0)
                other_case = &p[k];
        }
        if (hit == NULL && other_case != NULL) {
            snprintf(why, whylen, "unknown query parameter %s (did you mean %s?)", key,
                     other_case->name);
            return -1;
        }
        if (hit == NULL) {
            snprintf(why, whylen, "unknown query parameter %.*s%s", (int)strnlen(key, 32), key,
                     np == 0 ? " (this route takes none)" : "");
            return -1;
        }
        if (hit->len != -1) {
            snprintf(why, whylen, "query parameter %s given twice", hit->name);
            return -1;
        }
        const char *val = eq != NULL ? eq + 1 : seg + sl;
        long vn = form_decode(val, (size_t)(seg + sl - val), hit->buf, hit->cap);
        if (vn < 0) {
            snprintf(why, whylen, "bad %%-escape in query parameter %s", hit->name);
            return -1;
        }
        hit->len = (size_t)vn + 1 > hit->cap ? -2 : vn;
    }
    return 0;
}
