#include "gateway/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The port of a listening TCP socket, or -1 for anything else. */
static int listening_port(int fd)
{
    int acc = 0;
    socklen_t al = sizeof(acc);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc)
        return -1;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sin_family != AF_INET)
        return -1;
    return ntohs(sa.sin_port);
}

/* Puts fd in place of slot, then wakes civetweb's accept loop if it sleeps
 * in poll on the socket slot held before: shutdown of that old listener
 * makes the poll return, and the loop polls slot again, now fd. The old
 * listener must be one no other process holds (never the shared one). */
static int swap_in(int slot, int fd, int wake, char *err, size_t errlen)
{
    int old = wake ? dup(slot) : -1;
    if (wake && old < 0) {
        snprintf(err, errlen, "dup: %s", strerror(errno));
        return -1;
    }
    if (dup2(fd, slot) < 0) {
        snprintf(err, errlen, "dup2: %s", strerror(errno));
        if (old >= 0)
            close(old);
        return -1;
    }
    if (old >= 0) {
        shutdown(old, SHUT_RDWR);
        close(old);
    }
    return 0;
}

int gw_listener_adopt(struct mg_context *ctx, int shared_fd, int *slot, char *err,
                      size_t errlen)
{
    struct mg_server_port ports[2];
    int n = mg_get_server_ports(ctx, 2, ports);
    if (n != 1) {
        snprintf(err, errlen, "expected civetweb to listen on one port, it has %d", n);
        return -1;
    }
    if (listening_port(shared_fd) < 0) {
        snprintf(err, errlen, "descriptor %d is not a listening TCP socket", shared_fd);
        return -1;
    }
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
                                                                         : 65536;
    int found = -1;
    for (int fd = 3; fd < max && found < 0; fd++)
        if (fd != shared_fd && listening_port(fd) == ports[0].port)
            found = fd;
    if (found < 0) {
        snprintf(err, errlen, "civetweb's listening socket (port %d) was not found",
                 ports[0].port);
        return -1;
    }
    if (swap_in(found, shared_fd, 1, err, errlen) < 0)
        return -1;
    close(shared_fd);
    *slot = found;
    return 0;
}

int gw_listener_release(int slot, char *err, size_t errlen)
{
    /* A listener on an ephemeral port nobody knows: civetweb's poll on it
     * sleeps, and a late accept (woken by the shared socket just before the
     * swap) finds nothing and gets EAGAIN instead of blocking mg_stop. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int quiet = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (quiet < 0 || bind(quiet, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(quiet, 1) < 0) {
        snprintf(err, errlen, "quiet listener: %s", strerror(errno));
        if (quiet >= 0)
            close(quiet);
        return -1;
    }
    /* No wake-up: the old socket is the shared one, and shutting it down
     * would stop it for everyone. A poll still sleeping on it returns when
     * a connection comes (then accept on the quiet one says EAGAIN) or at
     * civetweb's poll quantum. */
    int rc = swap_in(slot, quiet, 0, err, errlen);
    close(quiet);
    return rc;
}
