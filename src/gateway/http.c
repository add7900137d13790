#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"

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

void gw_reply_raw(gw_req *r, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_name, const char *extra_value)
{
    /* Status line, headers and body in one write: one send, one packet. */
    char stackbuf[4096];
    int head = snprintf(stackbuf, sizeof(stackbuf),
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "X-Request-Id: %s\r\n%s%s%s%s\r\n",
                        status, mg_get_response_code_text(r->conn, status), content_type, len,
                        r->id, extra_name != NULL ? extra_name : "",
                        extra_name != NULL ? ": " : "", extra_name != NULL ? extra_value : "",
                        extra_name != NULL ? "\r\n" : "");
    /* request_method is NULL when civetweb could not parse the request. */
    const char *method = r->ri->request_method;
    int with_body = len > 0 && (method == NULL || strcmp(method, "HEAD") != 0);
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
    r->status = status;
    r->bytes = len;
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

int gw_query(const gw_req *r, const char *name, char *buf, size_t cap)
{
    const char *qs = r->ri->query_string;
    if (qs == NULL)
        return -1;
    int n = mg_get_var(qs, strlen(qs), name, buf, cap);
    if (n == -1)
        return -1;
    if (n < 0)
        return -2;
    return n;
}

long gw_read_body(gw_req *r, char *buf, size_t cap)
{
    long long declared = r->ri->content_length;
    if (declared > (long long)cap)
        return -EMSGSIZE;
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            /* Full: one more byte means the body is over the limit. */
            char extra;
            int n = mg_read(r->conn, &extra, 1);
            if (n > 0)
                return -EMSGSIZE;
            return n == 0 ? (long)got : -EIO;
        }
        int n = mg_read(r->conn, buf + got, cap - got);
        if (n == 0)
            return (long)got;
        if (n < 0)
            return -EIO;
        got += (size_t)n;
    }
}
