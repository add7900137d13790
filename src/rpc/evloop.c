#include "rpc/evloop.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "rpc/sock.h"

int rpc_evloop_init(rpc_evloop *l, int tick_ms, char *err)
{
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->tick_ms = tick_ms;
    l->last_tick = rpc_now_ms();
    if (l->epfd < 0 || l->wakefd < 0) {
        int rc = -errno;
        snprintf(err, RPC_ERRLEN, "epoll/eventfd: %s", strerror(errno));
        return rc;
    }
    /* The loop itself stands for the wake-up: no caller's pointer is it. */
    int rc = rpc_evloop_add(l, l->wakefd, EPOLLIN, l);
    if (rc < 0)
        snprintf(err, RPC_ERRLEN, "epoll_ctl: %s", strerror(-rc));
    return rc;
}

void rpc_evloop_fini(rpc_evloop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    l->epfd = l->wakefd = -1;
}

int rpc_evloop_add(rpc_evloop *l, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int rpc_evloop_mod(rpc_evloop *l, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void rpc_evloop_del(rpc_evloop *l, int fd)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void rpc_evloop_wake(rpc_evloop *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->wakefd, &one, sizeof(one));
    (void)r; /* a full eventfd is already a pending wake-up */
}

int rpc_evloop_wait(rpc_evloop *l, struct epoll_event *evs, int max, int *woke)
{
    int n = epoll_wait(l->epfd, evs, max, l->tick_ms);
    int kept = 0;
    *woke = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == l) {
            uint64_t v;
            ssize_t r = read(l->wakefd, &v, sizeof(v));
            (void)r; /* EAGAIN: another read took it; the wake-up stands */
            *woke = 1;
            continue;
        }
        evs[kept++] = evs[i];
    }
    return kept;
}

int rpc_evloop_tick(rpc_evloop *l, int64_t now, int force)
{
    if (!force && now - l->last_tick < l->tick_ms)
        return 0;
    l->last_tick = now;
    return 1;
}
