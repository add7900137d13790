#include "rpc/sock.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/clock.h"

int rpc_addr_parse(const char *hostport, struct sockaddr_in *out, char *err)
{
    const char *colon = hostport != NULL ? strrchr(hostport, ':') : NULL;
    char host[256];
    char *end = NULL;

    /* The address is quoted cut to 200 bytes, so the reason after it
     * always fits in RPC_ERRLEN. */
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host)) {
        snprintf(err, RPC_ERRLEN, "address \"%.200s\" is not HOST:PORT",
                 hostport != NULL ? hostport : "");
        return -EINVAL;
    }
    /* Digits only, as every number tcpops reads: strtol alone would take
     * leading spaces and a sign. */
    errno = 0;
    long port = isdigit((unsigned char)colon[1]) ? strtol(colon + 1, &end, 10) : -1;
    if (errno != 0 || port < 0 || *end != '\0' || port > 65535) {
        snprintf(err, RPC_ERRLEN, "address \"%.200s\": port must be 0-65535", hostport);
        return -EINVAL;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';

    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (host[0] == '\0') {
        out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return 0;
    }
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1)
        return 0;

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, RPC_ERRLEN, "address \"%.200s\": %s", hostport, gai_strerror(rc));
        return -EINVAL;
    }
    out->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

void rpc_addr_format(const struct sockaddr_in *sa, char *out, size_t len)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}

int rpc_sock_listen(const struct sockaddr_in *addr, int reuseport, int backlog,
                    char *err)
{
    int one = 1;
    int rc;
    char a[32];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    rpc_addr_format(addr, a, sizeof(a));
    if (fd < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "socket: %s", strerror(errno));
        return rc;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "setsockopt %s: %s", a, strerror(errno));
        goto fail;
    }
    if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "bind %s: %s", a, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        rc = -errno;
        snprintf(err, RPC_ERRLEN, "listen %s: %s", a, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int rpc_sock_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
        return -errno;
    return ntohs(sa.sin_port);
}

int rpc_sock_prepare(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

int rpc_sock_connect(const struct sockaddr_in *addr, int timeout_ms)
{
    int rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if ((rc = rpc_sock_prepare(fd)) < 0)
        goto fail;
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        rc = -errno;
        goto fail;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int64_t deadline = rpc_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            goto fail;
        }
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            break;
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            goto fail;
        }
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
        rc = -errno;
        goto fail;
    }
    if (soerr != 0) {
        rc = -soerr;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int rpc_sock_write_all(int fd, const void *p, size_t n, int64_t deadline_ms,
                       size_t *written)
{
    size_t off = 0;
    int rc = 0;

    while (off < n) {
        ssize_t w = send(fd, (const uint8_t *)p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = -errno;
            break;
        }
        int wait = -1;
        if (deadline_ms > 0) {
            int64_t left = deadline_ms - rpc_now_ms();
            if (left <= 0) {
                rc = -ETIMEDOUT;
                break;
            }
            wait = (int)left;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, wait) < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    if (written != NULL)
        *written = off;
    return rc;
}
