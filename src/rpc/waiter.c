#include "rpc/waiter.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "rpc/clock.h"

int rpc_waiter_wait(_Atomic uint32_t *word, uint32_t expect, int64_t until_ms)
{
    struct timespec rel, *t = NULL;
    if (until_ms > 0) {
        int64_t left = until_ms - rpc_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        rel.tv_sec = left / 1000;
        rel.tv_nsec = (left % 1000) * 1000000L;
        t = &rel;
    }
    /* A private futex: the word is never shared between processes. EAGAIN
     * (the word moved before we slept) and EINTR are wake-ups like any
     * other. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expect, t, NULL, 0);
    return r < 0 && errno == ETIMEDOUT ? -ETIMEDOUT : 0;
}

void rpc_waiter_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
