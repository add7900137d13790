#include "util/ready.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int util_ready_notify(long fd, const char *member)
{
    char line[UTIL_READY_LINE_MAX];
    int rc = 0;
    if (fd < 0)
        return 0;
    int n = snprintf(line, sizeof(line), "ready%s%s\n", member != NULL ? " member=" : "",
                     member != NULL ? member : "");
    if (n < 0 || n >= (int)sizeof(line)) {
        close((int)fd);
        return -EMSGSIZE;
    }
    /* A pipe takes a line this short whole (PIPE_BUF); EINTR is retried. */
    ssize_t w;
    while ((w = write((int)fd, line, (size_t)n)) < 0 && errno == EINTR)
        ;
    if (w != n)
        rc = w < 0 ? -errno : -EIO;
    close((int)fd);
    return rc;
}

int util_ready_parse(const char *buf, size_t len, char *member, size_t cap)
{
    static const char word[] = "ready", key[] = " member=";
    const size_t wl = sizeof(word) - 1, kl = sizeof(key) - 1;
    if (cap > 0)
        member[0] = '\0';
    if (len < wl || memcmp(buf, word, wl) != 0 || (len > wl && buf[wl] != ' '))
        return 0;
    if (len > wl + kl && memcmp(buf + wl, key, kl) == 0 && cap > 0) {
        size_t ml = len - wl - kl;
        snprintf(member, cap, "%.*s", (int)ml, buf + wl + kl);
        member[strcspn(member, " ")] = '\0'; /* an address has no spaces */
    }
    return 1;
}
