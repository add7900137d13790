#include "rawpeer.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "rpc/clock.h"
#include "rpc/sock.h"

/* Waits for fd to be readable until deadline. 1 readable, 0 not in time. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, (int)left);
        if (r > 0)
            return 1;
        if (r == 0 || errno != EINTR)
            return 0;
    }
}

size_t rawpeer_read_n(int fd, void *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    int64_t deadline = rpc_now_ms() + timeout_ms;
    while (got < n && wait_readable(fd, deadline)) {
        ssize_t r = recv(fd, (uint8_t *)buf + got, n - got, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

rpc_frame *rawpeer_read_frame(int fd, size_t max, int timeout_ms)
{
    int64_t deadline = rpc_now_ms() + timeout_ms;
    uint8_t h[RPC_FRAME_HEADER];
    if (rawpeer_read_n(fd, h, sizeof(h), timeout_ms) != sizeof(h))
        return NULL;
    uint32_t n = rpc_frame_get_len(h);
    if (n > max)
        return NULL;
    uint8_t *p = malloc(n ? n : 1);
    rpc_frame *f = NULL;
    int64_t left = deadline - rpc_now_ms();
    if (p != NULL && rawpeer_read_n(fd, p, n, left > 0 ? (int)left : 0) == n &&
        rpc_frame_unpack(p, n, &f) < 0)
        f = NULL;
    free(p);
    return f;
}

ssize_t rawpeer_read_until_closed(int fd, char *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    int64_t deadline = rpc_now_ms() + timeout_ms;
    buf[0] = '\0';
    while (wait_readable(fd, deadline)) {
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return (ssize_t)got;
        if (r < 0)
            continue;
        size_t take = (size_t)r < len - 1 - got ? (size_t)r : len - 1 - got;
        memcpy(buf + got, tmp, take);
        got += take;
        buf[got] = '\0';
    }
    return -1;
}

int rawpeer_closed(int fd, int timeout_ms)
{
    char buf[4096];
    int64_t deadline = rpc_now_ms() + timeout_ms;
    while (wait_readable(fd, deadline)) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    rawpeer_writer *w = arg;
    size_t done = 0;
    w->rc = rpc_sock_write_all(w->fd, w->p, w->n, rpc_now_ms() + w->timeout_ms, &done);
    return NULL;
}

int rawpeer_writer_start(rawpeer_writer *w, int fd, const void *p, size_t n, int timeout_ms)
{
    *w = (rawpeer_writer){.fd = fd, .p = p, .n = n, .timeout_ms = timeout_ms};
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    return rc == 0 ? 0 : -rc;
}

int rawpeer_writer_join(rawpeer_writer *w)
{
    pthread_join(w->thread, NULL);
    return w->rc;
}

size_t rawpeer_read_some(int fd, char *buf, size_t cap, size_t *have, int64_t deadline,
                         int slow)
{
    int64_t soon = rpc_now_ms() + 5000;
    if (!wait_readable(fd, soon < deadline ? soon : deadline))
        return 0;
    size_t room = cap - *have;
    if (slow && room > 8192)
        room = 8192;
    ssize_t r = recv(fd, buf + *have, room, 0);
    if (r <= 0)
        return 0;
    *have += (size_t)r;
    if (slow) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return (size_t)r;
}

int rawpeer_read_lines(int fd, int n, int slow, int timeout_ms, rawpeer_line_fn check,
                       void *arg)
{
    enum { CAP = 65536 };
    char *buf = malloc(CAP);
    size_t have = 0;
    int count = 0, stop = 0;
    int64_t deadline = rpc_now_ms() + timeout_ms;
    while (buf != NULL && !stop && count < n &&
           rawpeer_read_some(fd, buf, CAP, &have, deadline, slow) > 0) {
        char *p = buf, *nl;
        while (!stop && count < n && (nl = memchr(p, '\n', have - (size_t)(p - buf))) != NULL) {
            stop = check(arg, count, p, (size_t)(nl - p));
            if (!stop)
                count++;
            p = nl + 1;
        }
        have -= (size_t)(p - buf);
        memmove(buf, p, have);
        if (have == CAP)
            break; /* a line longer than the buffer */
    }
    free(buf);
    return count;
}
