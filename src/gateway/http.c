#include "gateway/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/backoff.h"
#include "rpc/clock.h"

static int id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == ':';
}

void gw_req_init(gw_req *r, struct mg_connection *conn, int deadline_ms)
{
    memset(r, 0, sizeof(*r));
    r->conn = conn;
    r->ri = mg_get_request_info(conn);
    r->start_us = rpc_now_us();
    r->deadline_ms = rpc_now_ms() + deadline_ms;
    const char *given = mg_get_header(conn, "X-Request-Id");
    size_t n = given != NULL ? strlen(given) : 0;
    int ok = n > 0 && n <= GW_REQUEST_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = id_char_ok(given[i]);
    if (ok) {
        memcpy(r->id, given, n + 1);
    } else {
        uint32_t a = (uint32_t)(rpc_rand01(NULL) * 4294967296.0);
        uint32_t b = (uint32_t)(rpc_rand01(NULL) * 4294967296.0);
        snprintf(r->id, sizeof(r->id), "%08x%08x", a, b);
    }
}

void gw_req_close(gw_req *r)
{
    /* civetweb decides after the handler returns whether to read the next
     * request: this makes it close instead, and skips the read of an unread
     * body it would otherwise do first (for up to request_timeout_ms). */
    mg_disable_connection_keep_alive(r->conn);
    r->close = 1;
}

void gw_req_count(gw_req *r, gw_metrics *m, gw_route route, const char *method)
{
    r->metrics = m;
    r->route = route;
    r->method = method;
}

void gw_req_finish(gw_req *r)
{
    if (r->metrics != NULL && !r->counted) {
        r->counted = 1;
        gw_metrics_request(r->metrics, r->route, r->method, r->status,
                           rpc_now_us() - r->start_us);
    }
}

int gw_req_has_body(const gw_req *r)
{
    return r->ri->content_length > 0 || mg_get_header(r->conn, "Transfer-Encoding") != NULL;
}

int gw_req_check_head(const gw_req *r, size_t max_bytes, char *why, size_t whylen)
{
    const struct mg_request_info *ri = r->ri;
    if (ri->request_method == NULL || ri->http_version == NULL || ri->num_headers < 0)
        return 0; /* not parsed: civetweb has refused it already */
    gw_head h = {.method = ri->request_method, .version = ri->http_version,
                 .fields = ri->http_headers, .nfields = ri->num_headers};
    return gw_check_head(&h, max_bytes, why, whylen);
}

void gw_reply_headers(gw_req *r, int status, const char *content_type, const char *headers,
                      const char *body, size_t len)
{
    /* An unread body would be read and thrown away by civetweb before the
     * next request, however long it is: close instead. */
    if (!r->body_done && r->ri->request_method != NULL && gw_req_has_body(r))
        gw_req_close(r);
    /* Status line, headers and body in one write: one send, one packet. */
    char stackbuf[4096];
    int head = snprintf(stackbuf, sizeof(stackbuf),
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "X-Request-Id: %s\r\n%s%s\r\n",
                        status, mg_get_response_code_text(r->conn, status), content_type, len,
                        r->id, headers != NULL ? headers : "",
                        r->close ? "Connection: close\r\n" : "");
    /* request_method is NULL when civetweb could not parse the request. */
    const char *method = r->ri->request_method;
    int with_body = len > 0 && (method == NULL || strcmp(method, "HEAD") != 0);
    /* Counted before it is sent: counted after, a client could read the
     * answer and then /metrics (served by another thread) without it. */
    r->status = status;
    gw_req_finish(r);
    if (head > 0 && (size_t)head < sizeof(stackbuf) &&
        (!with_body || (size_t)head + len <= sizeof(stackbuf))) {
        if (with_body)
            memcpy(stackbuf + head, body, len);
        mg_write(r->conn, stackbuf, (size_t)head + (with_body ? len : 0));
    } else if (head > 0 && (size_t)head < sizeof(stackbuf)) {
        mg_write(r->conn, stackbuf, (size_t)head);
        if (with_body)
            mg_write(r->conn, body, len);
    }
    r->bytes = len;
}

void gw_reply_raw(gw_req *r, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_name, const char *extra_value)
{
    char extra[512] = "";
    if (extra_name != NULL)
        snprintf(extra, sizeof(extra), "%s: %s\r\n", extra_name, extra_value);
    gw_reply_headers(r, status, content_type, extra, body, len);
}

void gw_reply_json(gw_req *r, int status, json_t *body, const char *extra_name,
                   const char *extra_value)
{
    char *s = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(body);
    if (s == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        gw_reply_raw(r, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL);
        return;
    }
    gw_reply_raw(r, status, "application/json", s, strlen(s), extra_name, extra_value);
    free(s);
}

void gw_reply_error(gw_req *r, int status, const char *allow, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *text = json_string(msg);
    if (text == NULL) /* the message quoted bytes that are not UTF-8 */
        text = json_string("invalid input (not valid UTF-8)");
    json_t *body = json_object();
    json_object_set_new(body, "error", text);
    if (status == 503)
        gw_reply_json(r, status, body, "Retry-After", "1");
    else if (status == 405 && allow != NULL)
        gw_reply_json(r, status, body, "Allow", allow);
    else
        gw_reply_json(r, status, body, NULL, NULL);
}

int gw_req_query(const gw_req *r, gw_param *p, size_t np, char *why, size_t whylen)
{
    const char *qs = r->ri->query_string;
    return gw_parse_query(qs != NULL ? qs : "", qs != NULL ? strlen(qs) : 0, p, np, why, whylen);
}

/* Answers "Expect: 100-continue" (HTTP/1.1 only; a 1.0 client's is
 * ignored, RFC 9110 10.1.1) so the client sends its body now instead of
 * after its own timeout (curl waits 1 s). */
static void continue_if_expected(gw_req *r)
{
    const char *expect = mg_get_header(r->conn, "Expect");
    const char *v = r->ri->http_version;
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && v != NULL &&
        strcmp(v, "1.1") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        mg_write(r->conn, cont, sizeof(cont) - 1);
    }
}

long gw_read_body(gw_req *r, char *buf, size_t cap)
{
    long long declared = r->ri->content_length;
    if (declared > (long long)cap)
        return -EMSGSIZE;
    continue_if_expected(r);
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            /* Full: one more byte means the body is over the limit. */
            char extra;
            int n = mg_read(r->conn, &extra, 1);
            if (n > 0)
                return -EMSGSIZE;
            if (n < 0)
                return -EIO;
            break;
        }
        int n = mg_read(r->conn, buf + got, cap - got);
        if (n == 0)
            break;
        if (n < 0)
            return -EIO;
        got += (size_t)n;
    }
    /* mg_read also returns 0 when the client stalled past civetweb's
     * request timeout or went away: a body shorter than its Content-Length
     * is not the body the client meant. */
    if (declared >= 0 && (long long)got < declared)
        return -ETIMEDOUT;
    r->body_done = 1;
    return (long)got;
}
