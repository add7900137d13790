#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void http_close(http_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void http_resp_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

static int connect_port(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads into buf[*n..cap) once, waiting until deadline. >0 bytes, 0 EOF, -1. */
static ssize_t read_some(int fd, char *buf, size_t cap, size_t *n, long long deadline)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    long long left = deadline - now_ms();
    if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
        return -1;
    ssize_t r = read(fd, buf + *n, cap - *n); /* a socket or a pipe (a program's output) */
    if (r > 0)
        *n += (size_t)r;
    return r < 0 ? -1 : r;
}

const char *http_header(const http_resp *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; (p = strstr(p, "\r\n")) != NULL;) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e != NULL ? (size_t)(e - v) : strlen(v);
            snprintf(buf, len, "%.*s", (int)vl, v);
            return buf;
        }
    }
    return NULL;
}

int http_do(http_conn *c, const char *method, const char *path, const char *extra_headers,
            const char *body, size_t body_len, http_resp *out, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    memset(out, 0, sizeof(*out));
    if (c->fd < 0 && (c->fd = connect_port(c->port)) < 0)
        return -1;
    static const char fmt[] = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n";
    const char *extra = extra_headers != NULL ? extra_headers : "";
    int hn = snprintf(NULL, 0, fmt, method, path, extra, body_len);
    char *head = hn > 0 ? malloc((size_t)hn + 1) : NULL;
    if (head == NULL)
        goto fail;
    snprintf(head, (size_t)hn + 1, fmt, method, path, extra, body_len);
    int sent = send_all(c->fd, head, (size_t)hn);
    free(head);
    if (sent < 0 || (body_len > 0 && send_all(c->fd, body, body_len) < 0))
        goto fail;

    size_t cap = 8192, n = 0;
    char *buf = malloc(cap + 1);
    char *end = NULL;
    while ((end = memmem(buf, n, "\r\n\r\n", 4)) == NULL) {
        if (n == cap || read_some(c->fd, buf, cap, &n, deadline) <= 0) {
            free(buf);
            goto fail;
        }
    }
    size_t hlen = (size_t)(end - buf) + 4;
    snprintf(out->headers, sizeof(out->headers), "%.*s", (int)hlen, buf);
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        goto fail;
    }
    char v[64];
    long clen = http_header(out, "Content-Length", v, sizeof(v)) != NULL ? atol(v) : -1;
    if (strcmp(method, "HEAD") == 0)
        clen = 0; /* the length of the body GET would have had; none follows */
    int closing = http_header(out, "Connection", v, sizeof(v)) != NULL &&
                  strcasecmp(v, "close") == 0;
    for (;;) {
        size_t have = n - hlen;
        if (clen >= 0 && have >= (size_t)clen)
            break;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = read_some(c->fd, buf, cap, &n, deadline);
        if (r == 0 && clen < 0)
            break; /* body until EOF */
        if (r <= 0) {
            free(buf);
            goto fail;
        }
    }
    out->body_len = clen >= 0 ? (size_t)clen : n - hlen;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, buf + hlen, out->body_len);
    out->body[out->body_len] = '\0';
    free(buf);
    if (closing || clen < 0)
        http_close(c);
    return 0;
fail:
    http_close(c);
    return -1;
}

int http_once(int port, const char *method, const char *path, const char *extra_headers,
              const char *body, http_resp *out)
{
    http_conn c = {.fd = -1, .port = port};
    int rc = http_do(&c, method, path, extra_headers, body, body != NULL ? strlen(body) : 0, out,
                     10000);
    http_close(&c);
    return rc;
}

int http_connect(int port)
{
    return connect_port(port);
}

int http_send(int fd, const void *p, size_t n)
{
    return send_all(fd, p, n);
}

int http_read_all(int fd, char **out, size_t *n, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t cap = 8192;
    int closed = 0;
    *n = 0;
    *out = malloc(cap + 1);
    for (;;) {
        if (*n == cap) {
            cap *= 2;
            *out = realloc(*out, cap + 1);
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        ssize_t r = recv(fd, *out + *n, cap - *n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            closed = 1; /* EOF, or a reset after the answer */
            break;
        }
        *n += (size_t)r;
    }
    (*out)[*n] = '\0';
    return closed;
}

int http_read_until(int fd, char *buf, size_t cap, size_t *n, const char *want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    buf[*n] = '\0';
    while (strstr(buf, want) == NULL) {
        if (*n + 1 >= cap || read_some(fd, buf, cap - 1, n, deadline) <= 0)
            return -1;
        buf[*n] = '\0';
    }
    return 0;
}

long http_parse(const char *buf, size_t n, http_resp *out)
{
    memset(out, 0, sizeof(*out));
    const char *end = memmem(buf, n, "\r\n\r\n", 4);
    if (end == NULL)
        return -1;
    size_t hlen = (size_t)(end - buf) + 4;
    snprintf(out->headers, sizeof(out->headers), "%.*s", (int)hlen, buf);
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
        return -1;
    char v[64];
    long clen = http_header(out, "Content-Length", v, sizeof(v)) != NULL ? atol(v) : 0;
    if (clen < 0 || hlen + (size_t)clen > n)
        return -1;
    out->body_len = (size_t)clen;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, buf + hlen, out->body_len);
    out->body[out->body_len] = '\0';
    return (long)(hlen + (size_t)clen);
}
