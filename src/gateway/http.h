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
} gw_req;

/* Fills r for conn: takes the client's X-Request-Id when it is 1-64 of
 * [A-Za-z0-9._:-], else makes a random one; starts the clock. */
void gw_req_init(gw_req *r, struct mg_connection *conn, int deadline_ms);

/* Sends status with body as JSON (body is consumed: json_decref'd).
 * extra_name/extra_value add one header (NULL for none). */
void gw_reply_json(gw_req *r, int status, json_t *body, const char *extra_name,
                   const char *extra_value);

/* Sends an already serialised body with the given content type. */
void gw_reply_raw(gw_req *r, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_name, const char *extra_value);

/* Sends {"error": message} with status; 503 adds Retry-After: 1 and 405 the
 * given Allow list (allow may be NULL otherwise). */
void gw_reply_error(gw_req *r, int status, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The URL-decoded query parameter name into buf (cap bytes). Returns its
 * length (which may include NUL bytes a client encoded), -1 when absent, -2
 * when longer than cap - 1. */
int gw_query(const gw_req *r, const char *name, char *buf, size_t cap);

/* Reads the request body into buf (cap bytes). Returns
 * its length, or -EMSGSIZE when it is larger than cap (the body is then not
 * read), or -EIO when the client went away. */
long gw_read_body(gw_req *r, char *buf, size_t cap);

#endif
