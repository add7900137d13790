/* A small blocking HTTP/1.1 client for the gateway tests, with keep-alive:
 * one connection can carry many requests, as curl or wrk would use it. */
#ifndef TCPOPS_TEST_HTTP_CLIENT_H
#define TCPOPS_TEST_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_conn {
    int fd;
    int port;
} http_conn;

typedef struct http_resp {
    int status;
    char headers[4096];   /* the raw header block */
    char *body;           /* NUL-terminated, malloc'd */
    size_t body_len;
} http_resp;

/* Sends one request on c (connecting first if needed) and reads the answer
 * within timeout_ms. extra_headers: "Name: value\r\n" lines or NULL.
 * Returns 0, or -1 on a transport failure (c is then closed). */
int http_do(http_conn *c, const char *method, const char *path, const char *extra_headers,
            const char *body, size_t body_len, http_resp *out, int timeout_ms);

/* One request on a fresh connection. */
int http_once(int port, const char *method, const char *path, const char *extra_headers,
              const char *body, http_resp *out);

void http_close(http_conn *c);
void http_resp_free(http_resp *r);

/* The value of header name (case-insensitive) into buf, or NULL. */
const char *http_header(const http_resp *r, const char *name, char *buf, size_t len);

/* Raw-socket helpers for requests http_do would not send. */

/* A connected TCP socket to 127.0.0.1:port, or -1. */
int http_connect(int port);

/* Sends all n bytes of p. 0, or -1. */
int http_send(int fd, const void *p, size_t n);

/* Reads until the peer closes the connection (or resets it) or timeout_ms
 * passes, into *out (malloc'd, NUL-terminated, *n bytes). Returns 1 when
 * the peer closed, 0 when the connection was still open at the deadline. */
int http_read_all(int fd, char **out, size_t *n, int timeout_ms);

/* Reads fd (a socket, or a pipe such as proc's out_fd) until buf (cap
 * bytes, NUL-terminated) holds the string want or timeout_ms passes. Returns 0 when it does, -1 otherwise. *n counts the
 * bytes in buf across calls. */
int http_read_until(int fd, char *buf, size_t cap, size_t *n, const char *want, int timeout_ms);

/* Parses the first response in buf[0..n) into out (its body by
 * Content-Length). Returns the bytes it took, or -1. */
long http_parse(const char *buf, size_t n, http_resp *out);

#endif
