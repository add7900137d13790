/* HTTP plumbing over civetweb for the gateway: the per-request state, JSON
 * replies with the right headers, errors as {"error":"..."}, query
 * parameters and bodies read under a limit. Every function works on one
 * request from the civetweb thread that serves it. */
#ifndef TCPOPS_GW_HTTP_H
#define TCPOPS_GW_HTTP_H

#include <civetweb.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/input.h"
#include "gateway/metrics.h"

#define GW_REQUEST_ID_MAX 64

/* One HTTP request in flight; lives on the handler's stack. */
typedef struct gw_req {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    char id[GW_REQUEST_ID_MAX + 1];  /* X-Request-Id, accepted or made */
    int64_t start_us;
    int64_t deadline_ms;             /* for every RPC this request makes */
    int status;                      /* set by the reply functions */
    size_t bytes;                    /* body bytes sent */
    int close;                       /* the answer closes the connection */
    int body_done;                   /* the request body was read to its end */
    gw_metrics *metrics;             /* counts the answer (gw_req_count), or NULL */
    gw_route route;                  /* ... under this route */
    const char *method;              /* ... and method */
    int counted;                     /* the answer is counted */
} gw_req;

/* Fills r for conn: takes the client's X-Request-Id when it is 1-64 of
 * [A-Za-z0-9._:-], else makes a random one; starts the clock. */
void gw_req_init(gw_req *r, struct mg_connection *conn, int deadline_ms);

/* Has r's answer counted in m under route and method (see
 * gw_metrics_request) by the reply function that sends it, before its bytes
 * go out: a client that has its answer and then asks /metrics finds it
 * counted. The duration is up to that moment. */
void gw_req_count(gw_req *r, gw_metrics *m, gw_route route, const char *method);

/* Counts r as gw_req_count asked, with its status so far (0 when nothing
 * was sent), unless it is counted already: the reply functions call it as
 * they send, a handler at its end. */
void gw_req_finish(gw_req *r);

/* Makes the answer to r the last one on its connection: civetweb closes
 * it after the handler returns and the reply says Connection: close. For a
 * request whose framing cannot be trusted (what follows it on the
 * connection may be a second request smuggled in its body) or whose body
 * is left unread. Uses mg_disable_connection_keep_alive (civetweb >= 1.12),
 * which also stops civetweb from reading an unread body to its end. */
void gw_req_close(gw_req *r);

/* 1 when r declares a body (Content-Length over 0, or chunked). */
int gw_req_has_body(const gw_req *r);

/* gw_check_head on r's head as civetweb parsed it. */
int gw_req_check_head(const gw_req *r, size_t max_bytes, char *why, size_t whylen);

/* Sends status with body as JSON (body is consumed: json_decref'd).
 * extra_name/extra_value add one header (NULL for none). */
void gw_reply_json(gw_req *r, int status, json_t *body, const char *extra_name,
                   const char *extra_value);

/* Sends an already serialised body with the given content type. A reply to
 * a request with a body that was not read to its end closes the
 * connection (gw_req_close). */
void gw_reply_raw(gw_req *r, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_name, const char *extra_value);

/* gw_reply_raw with any number of extra headers: headers is a block of
 * "Name: value\r\n" lines (NULL or "" for none); the status line, the
 * headers and a body that fits go out in one write. */
void gw_reply_headers(gw_req *r, int status, const char *content_type, const char *headers,
                      const char *body, size_t len);

/* Sends {"error": message} with status; 503 adds Retry-After: 1 and 405 the
 * given Allow list (allow may be NULL otherwise). */
void gw_reply_error(gw_req *r, int status, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* gw_parse_query over r's query string (none: every parameter absent). */
int gw_req_query(const gw_req *r, gw_param *p, size_t np, char *why, size_t whylen);

/* Reads the request body into buf (cap bytes), first answering
 * "Expect: 100-continue" with 100 Continue when the body fits. Returns its
 * length (r->body_done is then set), -EMSGSIZE when it is larger than cap
 * (the body is then not read), -ETIMEDOUT when it ended short of its
 * Content-Length (the client stopped sending or went away), or -EIO for a
 * broken chunked body or a lost connection. */
long gw_read_body(gw_req *r, char *buf, size_t cap);

#endif
