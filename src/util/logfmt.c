#include "util/logfmt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* Room in a caller's buffer, handed out front to back. */
typedef struct arena {
    char *p;
    size_t left;
} arena;

static char *take(arena *a, size_t n)
{
    if (n > a->left)
        return NULL;
    char *p = a->p;
    a->p += n;
    a->left -= n;
    return p;
}

/* A JSON value as text: a string's own bytes, a number or true/false/null
 * as written, anything nested as compact JSON. */
static int json_value(json_t *v, util_kv *kv, arena *a)
{
    char tmp[64];
    const char *s = tmp;
    size_t n;
    char *dumped = NULL;
    kv->quoted = 0;
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
        kv->quoted = 1;
    } else if (json_is_integer(v)) {
        n = (size_t)snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        n = (size_t)snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
    } else if (json_is_true(v) || json_is_false(v) || json_is_null(v)) {
        s = json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null";
        n = strlen(s);
    } else {
        dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dumped == NULL)
            return -1;
        s = dumped;
        n = strlen(s);
        kv->quoted = 1;
    }
    char *to = take(a, n);
    if (to != NULL)
        memcpy(to, s, n);
    free(dumped);
    kv->val = to;
    kv->vlen = n;
    return to != NULL || n == 0 ? 0 : -1;
}

static int parse_json(const char *line, size_t len, util_kv *kv, int max, arena *a)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    int n = 0;
    const char *k;
    json_t *v;
    if (!json_is_object(o))
        goto bad;
    /* jansson keeps an object's keys in the order they came. */
    json_object_foreach(o, k, v) {
        size_t kl = strlen(k);
        char *kc = take(a, kl);
        if (n == max || kl == 0 || kc == NULL)
            goto bad;
        memcpy(kc, k, kl);
        kv[n].key = kc;
        kv[n].klen = kl;
        if (json_value(v, &kv[n], a) < 0)
            goto bad;
        n++;
    }
    json_decref(o);
    return n > 0 ? n : -1;
bad:
    json_decref(o);
    return -1;
}

int util_logfmt_parse(const char *line, size_t len, util_kv *kv, int max, char *buf,
                      size_t buflen)
{
    arena a = {buf, buflen};
    size_t i = 0;
    int n = 0;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len > 0 && line[0] == '{')
        return parse_json(line, len, kv, max, &a);
    for (;;) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        if (n == max)
            return -1;
        size_t k = i;
        while (i < len && key_char(line[i]))
            i++;
        if (i == k || i == len || line[i] != '=')
            return -1;
        kv[n].key = line + k;
        kv[n].klen = i - k;
        i++; /* '=' */
        if (i < len && line[i] == '"') {
            char *to = a.p;
            size_t o = 0;
            for (i++; i < len && line[i] != '"'; i++) {
                char c = line[i];
                if (c == '\\' && i + 1 < len) {
                    c = line[++i];
                    c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
                }
                if (o == a.left)
                    return -1;
                to[o++] = c;
            }
            if (i == len)
                return -1; /* no closing quote */
            i++;
            if (i < len && line[i] != ' ')
                return -1; /* k="a"b */
            take(&a, o);
            kv[n].val = to;
            kv[n].vlen = o;
            kv[n].quoted = 1;
        } else {
            size_t v = i;
            while (i < len && line[i] != ' ')
                i++;
            kv[n].val = line + v;
            kv[n].vlen = i - v;
            kv[n].quoted = 0;
        }
        n++;
    }
    return n > 0 ? n : -1;
}

int util_logfmt_find(const util_kv *kv, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < n; i++)
        if (kv[i].klen == kl && memcmp(kv[i].key, key, kl) == 0)
            return i;
    return -1;
}

/* ---- writing ---- */

/* An output buffer that remembers whether anything failed to fit; a pair
 * is written whole or rolled back to its start. */
typedef struct out {
    char *p;
    size_t len, o;
    int full;
} out;

static void put(out *w, const char *s, size_t n)
{
    if (w->full || n > w->len - w->o) {
        w->full = 1;
        return;
    }
    memcpy(w->p + w->o, s, n);
    w->o += n;
}

static void putc1(out *w, char c)
{
    put(w, &c, 1);
}

static int bare_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
            return 0;
    }
    return 1;
}

static void put_logfmt_value(out *w, const char *s, size_t n)
{
    if (bare_ok(s, n)) {
        put(w, s, n);
        return;
    }
    putc1(w, '"');
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '"': put(w, "\\\"", 2); break;
        case '\\': put(w, "\\\\", 2); break;
        case '\n': put(w, "\\n", 2); break;
        case '\t': put(w, "\\t", 2); break;
        case '\r': put(w, "\\r", 2); break;
        default: putc1(w, (unsigned char)c < ' ' || c == 0x7f ? '?' : c);
        }
    }
    putc1(w, '"');
}

size_t util_logfmt_render(char *buf, size_t len, const util_kv *kv, int n)
{
    out w = {buf, len - 1, 0, 0};
    for (int i = 0; i < n; i++) {
        size_t mark = w.o;
        if (i > 0)
            putc1(&w, ' ');
        put(&w, kv[i].key, kv[i].klen);
        putc1(&w, '=');
        put_logfmt_value(&w, kv[i].val, kv[i].vlen);
        if (w.full) {
            w.o = mark;
            break;
        }
    }
    buf[w.o] = '\0';
    return w.o;
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t k;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        k = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        k = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        k = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* overlong, surrogate or past U+10FFFF */
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return k;
}

static void put_json_string(out *w, const char *s, size_t n)
{
    putc1(w, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0) {
            put(w, "\\ufffd", 6); /* a byte that is not UTF-8 */
            i++;
            continue;
        }
        if (c == '"' || c == '\\') {
            putc1(w, '\\');
            putc1(w, (char)c);
        } else if (c == '\n') {
            put(w, "\\n", 2);
        } else if (c == '\t') {
            put(w, "\\t", 2);
        } else if (c == '\r') {
            put(w, "\\r", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", c);
            put(w, e, 6);
        } else {
            put(w, s + i, k);
        }
        i += k;
    }
    putc1(w, '"');
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i == n;
}

size_t util_logfmt_json(char *buf, size_t len, const util_kv *kv, int n)
{
    out w = {buf, len - 2, 0, 0}; /* room kept for "}" and the NUL */
    putc1(&w, '{');
    for (int i = 0; i < n; i++) {
        size_t mark = w.o;
        if (i > 0)
            putc1(&w, ',');
        put_json_string(&w, kv[i].key, kv[i].klen);
        putc1(&w, ':');
        if (!kv[i].quoted && json_number(kv[i].val, kv[i].vlen))
            put(&w, kv[i].val, kv[i].vlen);
        else
            put_json_string(&w, kv[i].val, kv[i].vlen);
        if (w.full) {
            w.o = mark;
            break;
        }
    }
    buf[w.o++] = '}';
    buf[w.o] = '\0';
    return w.o;
}
