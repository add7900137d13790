/* The gateway's input rules as pure functions, so they can be tested and
 * fuzzed without a connection: the request head as civetweb left it, the
 * path, the query string, query numbers and the POST /people body. */
#ifndef TCPOPS_GW_INPUT_H
#define TCPOPS_GW_INPUT_H

#include <civetweb.h>
#include <stddef.h>

/* A request head may carry at most this many fields: civetweb keeps
 * MG_MAX_HEADERS and drops the rest without a word, so a full table means
 * "maybe more were dropped" and is refused. */
#define GW_MAX_FIELDS (MG_MAX_HEADERS - 1)

/* Parses a ?limit= value of n bytes: a whole number from 1 to 1000, digits
 * only. 0 and *out, or -1. */
int gw_parse_limit(const char *s, size_t n, long *out);

/* Parses a POST /people body: a JSON object whose "name" is a string that is
 * a valid name, nested at most UTIL_JSON_MAX_DEPTH deep (civetweb's worker
 * threads have small stacks and jansson recurses once per level). 0 with the name in
 * its NFC form in name (cap >= 66 bytes), or -1 with a sentence for the 400
 * in why. */
int gw_parse_create_body(const char *body, size_t len, char *name, size_t cap, char *why,
                         size_t whylen);

/* A request head as civetweb 1.15's parse_http_request left it in its
 * buffer: every token NUL-terminated in place, so the ':' and any spaces
 * before it became NULs, while the spaces after it did not. */
typedef struct gw_head {
    const char *method;             /* the first byte of the head */
    const char *version;            /* after "HTTP/" */
    const struct mg_header *fields;
    int nfields;
} gw_head;

/* Checks the framing rules of RFC 9112 that civetweb does not: at most
 * GW_MAX_FIELDS fields and max_bytes for the whole head (431), the request
 * line alone at most max_bytes (414), every line a field (no obs-fold, no
 * line civetweb stopped at), no space between a field name and its colon,
 * one Host (required in HTTP/1.1), Content-Length once and all digits,
 * Transfer-Encoding at most once, never with Content-Length and never in
 * HTTP/1.0 (400),
 * "chunked" the only transfer coding (501). Returns 0, or the status with a sentence in why. A request
 * that fails must be answered with the connection closed: its framing
 * cannot be trusted, so nothing after it on the connection can be. */
int gw_check_head(const gw_head *h, size_t max_bytes, char *why, size_t whylen);

/* Decodes the request path raw (as sent, without the query) into out (cap
 * bytes, NUL-terminated). Returns its length, -1 with why for a bad
 * %-escape, an encoded '/' or NUL (400: a path that decodes to another
 * route is ambiguous), or -2 when longer than cap - 1 (no route is). */
int gw_parse_path(const char *raw, char *out, size_t cap, char *why, size_t whylen);

/* One query parameter a route takes. */
typedef struct gw_param {
    const char *name; /* in: matched exactly, case and all */
    char *buf;        /* in: where its decoded value goes, NUL-terminated */
    size_t cap;       /* in: size of buf */
    long len;         /* out: value length (may count NULs a client
                       * encoded), -1 absent, -2 longer than cap - 1 */
} gw_param;

/* Walks the whole query string qs (n bytes, not yet decoded; '&'
 * separates, '+' is a space) once, filling p[0..np). Returns 0, or -1 with
 * why for an unknown parameter (a known one in another case included), one
 * given twice, or a bad %-escape anywhere. */
int gw_parse_query(const char *qs, size_t n, gw_param *p, size_t np, char *why, size_t whylen);

#endif
