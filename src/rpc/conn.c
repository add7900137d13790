#include "rpc/conn.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "rpc/sock.h"

size_t rpc_conn_write_buf_default(size_t max_frame)
{
    return 4 * (max_frame + RPC_FRAME_HEADER);
}

void rpc_conn_init(rpc_conn *c, int fd, size_t max_frame, size_t max_write_buf)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->max_frame = max_frame;
    c->max_write_buf =
        max_write_buf > 0 ? max_write_buf : rpc_conn_write_buf_default(max_frame);
    rpc_buf_init(&c->rbuf);
    rpc_buf_init(&c->wbuf);
    c->last_rx = rpc_now_ms();
}

void rpc_conn_close(rpc_conn *c)
{
    rpc_tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    rpc_buf_fini(&c->rbuf);
    rpc_buf_fini(&c->wbuf);
    c->corked = 0;
}

void rpc_conn_fini(rpc_conn *c)
{
    rpc_conn_close(c);
}

void rpc_conn_attach(rpc_conn *c, int fd)
{
    c->fd = fd;
    c->frames_in = 0;
    c->next_id = 0;
    c->last_rx = rpc_now_ms();
    c->wprogress = 0;
}

/* ---- TLS ---- */

int rpc_conn_tls_start(rpc_conn *c, rpc_tls *t, const char *peer, rpc_stats *stats,
                       char *err)
{
    rpc_tls_conn_free(c->tls);
    c->tls = NULL;
    return rpc_tls_conn_new(&c->tls, t, c->fd, peer, stats, err);
}

int rpc_conn_handshake(rpc_conn *c, int64_t deadline_ms)
{
    if (c->tls == NULL)
        return 0;
    for (;;) {
        int rc = rpc_tls_conn_confirm(c->tls);
        if (rc == 1)
            return 0;
        if (rc != -EAGAIN)
            return rc;
        int64_t left = deadline_ms - rpc_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = c->fd,
                            .events = rpc_tls_conn_wants_write(c->tls) ? POLLOUT : POLLIN};
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR)
            return -errno;
    }
}

const char *rpc_conn_tls_error(const rpc_conn *c)
{
    return c->tls != NULL ? rpc_tls_conn_error(c->tls) : "";
}

int rpc_conn_buffered(const rpc_conn *c)
{
    return c->tls != NULL && rpc_tls_conn_buffered(c->tls);
}

int rpc_conn_partial(const rpc_conn *c)
{
    return c->tls != NULL && rpc_tls_conn_partial(c->tls);
}

int rpc_conn_wants_write(const rpc_conn *c)
{
    return rpc_conn_unsent(c) > 0 || (c->tls != NULL && rpc_tls_conn_wants_write(c->tls));
}

/* ---- reader ---- */

size_t rpc_conn_rbuf_limit(const rpc_conn *c)
{
    return c->max_frame + RPC_FRAME_HEADER + RPC_CONN_READ_CHUNK;
}

int rpc_conn_fill(rpc_conn *c)
{
    int rc = rpc_buf_reserve(&c->rbuf, RPC_CONN_READ_CHUNK, rpc_conn_rbuf_limit(c));
    if (rc < 0)
        return rc;
    if (c->tls != NULL) {
        int r = rpc_tls_conn_read(c->tls, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len);
        if (r > 0) {
            c->rbuf.len += (size_t)r;
            c->last_rx = rpc_now_ms();
        }
        return r;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len, 0);
        if (r > 0) {
            c->rbuf.len += (size_t)r;
            c->last_rx = rpc_now_ms();
            return (int)r;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int rpc_conn_next(const rpc_conn *c, const uint8_t **payload, size_t *len)
{
    return rpc_frame_decode(rpc_buf_head(&c->rbuf), rpc_buf_used(&c->rbuf), c->max_frame,
                            payload, len);
}

void rpc_conn_consume(rpc_conn *c, size_t n)
{
    rpc_buf_consume(&c->rbuf, n);
    c->frames_in++;
    if (rpc_buf_used(&c->rbuf) == 0)
        rpc_buf_shrink(&c->rbuf, 2 * RPC_CONN_READ_CHUNK);
}

int rpc_conn_foreign(const rpc_conn *c, int rc)
{
    if (c->frames_in != 0)
        return 0;
    return rc != -EMSGSIZE || rpc_frame_get_len(rpc_buf_head(&c->rbuf)) >= RPC_CONN_FOREIGN_LEN;
}

int rpc_conn_read_frame(rpc_conn *c, rpc_frame **out)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    int n = rpc_conn_next(c, &payload, &plen);
    if (n == 0)
        return 0;
    if (n > 0 && rpc_frame_unpack(payload, plen, out) == 0) {
        rpc_conn_consume(c, (size_t)n);
        return 1;
    }
    if (n > 0)
        n = -EPROTO;
    return rpc_conn_foreign(c, n) ? -EPROTONOSUPPORT : n;
}

int rpc_conn_recv_frame(rpc_conn *c, rpc_frame **out, int64_t deadline_ms)
{
    for (;;) {
        int rc = rpc_conn_read_frame(c, out);
        if (rc != 0)
            return rc;
        int64_t left = deadline_ms - rpc_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        if (!rpc_conn_buffered(c)) {
            struct pollfd pf = {.fd = c->fd,
                                .events = c->tls != NULL && rpc_tls_conn_wants_write(c->tls)
                                              ? POLLOUT
                                              : POLLIN};
            int n = poll(&pf, 1, (int)left);
            if (n < 0 && errno != EINTR)
                return -errno;
            if (n <= 0)
                continue;
        }
        rc = rpc_conn_fill(c);
        if (rc == 0)
            return -ECONNRESET;
        if (rc < 0 && rc != -EAGAIN)
            return rc;
    }
}

/* ---- writer ---- */

/* wbuf went from empty to holding bytes: the no-progress clock starts. */
static void filling(rpc_conn *c, size_t before)
{
    if (before == 0)
        c->wprogress = rpc_now_ms();
}

int rpc_conn_queue(rpc_conn *c, const void *p, size_t n)
{
    size_t before = rpc_conn_unsent(c);
    int rc = rpc_buf_append(&c->wbuf, p, n, c->max_write_buf);
    if (rc == -EMSGSIZE)
        return -ENOBUFS;
    if (rc == 0)
        filling(c, before);
    return rc;
}

int rpc_conn_send(rpc_conn *c, const rpc_frame *f)
{
    size_t n = rpc_frame_size(f);
    size_t before = rpc_conn_unsent(c);
    int rc = rpc_buf_reserve(&c->wbuf, n, c->max_write_buf);
    if (rc < 0)
        return rc == -EMSGSIZE ? -ENOBUFS : rc;
    c->wbuf.len += rpc_frame_write(f, c->wbuf.data + c->wbuf.len);
    filling(c, before);
    return c->corked ? 0 : rpc_conn_flush(c);
}

/* rpc_conn_flush through TLS. */
static int flush_tls(rpc_conn *c)
{
    while (rpc_conn_unsent(c) > 0) {
        int w = rpc_tls_conn_write(c->tls, rpc_buf_head(&c->wbuf), rpc_conn_unsent(c));
        if (w < 0)
            return w;
        if (w == 0)
            return 0; /* the socket is full: the rest waits */
        rpc_buf_consume(&c->wbuf, (size_t)w);
        c->wprogress = rpc_now_ms();
    }
    rpc_buf_shrink(&c->wbuf, 65536);
    return 0;
}

int rpc_conn_flush(rpc_conn *c)
{
    if (c->tls != NULL)
        return flush_tls(c);
    while (rpc_conn_unsent(c) > 0) {
        ssize_t w = send(c->fd, rpc_buf_head(&c->wbuf), rpc_conn_unsent(c), MSG_NOSIGNAL);
        if (w > 0) {
            rpc_buf_consume(&c->wbuf, (size_t)w);
            c->wprogress = rpc_now_ms();
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return w < 0 ? -errno : -ECONNRESET;
    }
    rpc_buf_shrink(&c->wbuf, 65536);
    return 0;
}

/* rpc_conn_flush_wait through TLS: flush, then wait for room. */
static int flush_wait_tls(rpc_conn *c, int64_t deadline_ms)
{
    for (;;) {
        int rc = flush_tls(c);
        if (rc < 0 || rpc_conn_unsent(c) == 0)
            return rc;
        int64_t left = deadline_ms > 0 ? deadline_ms - rpc_now_ms() : -1;
        if (deadline_ms > 0 && left <= 0)
            return -ETIMEDOUT;
        /* SSL_write may wait for a read (only ever inside a handshake). */
        struct pollfd pf = {.fd = c->fd,
                            .events = rpc_tls_conn_wants_write(c->tls) ? POLLOUT : POLLIN | POLLOUT};
        if (poll(&pf, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR)
            return -errno;
    }
}

int rpc_conn_flush_wait(rpc_conn *c, int64_t deadline_ms)
{
    if (c->tls != NULL)
        return flush_wait_tls(c, deadline_ms);
    size_t written = 0;
    int rc = rpc_sock_write_all(c->fd, rpc_buf_head(&c->wbuf), rpc_conn_unsent(c), deadline_ms,
                                &written);
    rpc_buf_consume(&c->wbuf, written);
    if (written > 0)
        c->wprogress = rpc_now_ms();
    if (rpc_conn_unsent(c) == 0)
        rpc_buf_shrink(&c->wbuf, 65536);
    return rc;
}

int rpc_conn_cork(rpc_conn *c, int on)
{
    c->corked = on;
    return on ? 0 : rpc_conn_flush(c);
}

/* ---- pending table ---- */

void rpc_conn_put(rpc_conn *c, rpc_pending *p)
{
    p->id = ++c->next_id;
    rpc_pending **b = &c->table[p->id & (RPC_CONN_TABLE - 1)];
    p->next = *b;
    *b = p;
    p->newer = NULL;
    p->older = c->newest;
    if (c->newest != NULL)
        c->newest->newer = p;
    else
        c->oldest = p;
    c->newest = p;
}

static void unlink_call(rpc_conn *c, rpc_pending *p)
{
    if (p->older != NULL)
        p->older->newer = p->newer;
    else
        c->oldest = p->newer;
    if (p->newer != NULL)
        p->newer->older = p->older;
    else
        c->newest = p->older;
    p->older = p->newer = NULL;
}

rpc_pending *rpc_conn_take(rpc_conn *c, uint64_t id)
{
    for (rpc_pending **pp = &c->table[id & (RPC_CONN_TABLE - 1)]; *pp != NULL;
         pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            rpc_pending *p = *pp;
            *pp = p->next;
            unlink_call(c, p);
            return p;
        }
    }
    return NULL;
}

rpc_pending *rpc_conn_detach(rpc_conn *c, uint64_t above)
{
    rpc_pending *list = NULL;
    /* Newest first, so the list comes out oldest first. */
    for (rpc_pending *p = c->newest; p != NULL;) {
        rpc_pending *older = p->older;
        if (p->id > above) {
            rpc_conn_take(c, p->id);
            p->next = list;
            list = p;
        }
        p = older;
    }
    return list;
}
