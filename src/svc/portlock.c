#include "svc/portlock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rpc/clock.h"

#define MUTEX_WAIT_MS 5000 /* a check takes microseconds; this is a stuck holder */

struct svc_portlock {
    int fd;
    char path[PATH_MAX];
};

/* Locks (F_RDLCK/F_WRLCK) or unlocks (F_UNLCK) the one byte at off without
 * waiting. 0 or a negative errno (-EAGAIN when someone else holds it). */
static int lock_byte(int fd, short type, off_t off)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno == EACCES ? -EAGAIN : -errno;
}

/* 1 when no other open file holds any lock on byte off, 0 when one does,
 * or a negative errno. */
static int byte_free(int fd, off_t off)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK;
}

/* Takes byte 0 (the mutex), waiting up to MUTEX_WAIT_MS. */
static int mutex_lock(int fd)
{
    int64_t deadline = rpc_now_ms() + MUTEX_WAIT_MS;
    for (;;) {
        int rc = lock_byte(fd, F_WRLCK, 0);
        if (rc != -EAGAIN || rpc_now_ms() >= deadline)
            return rc == -EAGAIN ? -ETIMEDOUT : rc;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Removes the file at path when nobody serves its port (its workers were
 * killed): under the file's mutex, so a newcomer that opened it starts
 * again with a new file, as after a graceful last leave. Never waits. */
static void remove_if_stale(const char *path)
{
    struct stat a, b;
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    if (lock_byte(fd, F_WRLCK, 0) == 0 && fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
        a.st_ino == b.st_ino && a.st_dev == b.st_dev && byte_free(fd, 1) == 1)
        unlink(path);
    close(fd);
}

/* Files of ports whose workers all died stay behind; each newcomer clears
 * them, so they never pile up. */
static void sweep(const char *dir, const char *mine)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "port-", 5) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (strcmp(path, mine) != 0)
            remove_if_stale(path);
    }
    if (d != NULL)
        closedir(d);
}

/* Creates the runtime directory, or checks that the one there is a
 * directory of ours that nobody else can write to. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return rc;
    }
    if (lstat(dir, &st) < 0) {
        int rc = -errno;
        snprintf(err, errlen, "cannot use %s: %s", dir, strerror(errno));
        return rc;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022) != 0) {
        snprintf(err, errlen,
                 "%s is not a directory that only this user owns and writes; remove it", dir);
        return -EPERM;
    }
    return 0;
}

/* Reads the recorded identity (first line) into buf. */
static void read_identity(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int svc_portlock_new(svc_portlock **out, int port, const char *identity, char *err,
                     size_t errlen)
{
    char dir[64], holder[1024];
    int fd = -1, rc;
    svc_portlock *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(dir, sizeof(dir), "/tmp/tcpops-%u", (unsigned)getuid());
    if ((rc = make_dir(dir, err, errlen)) < 0)
        goto fail;
    snprintf(l->path, sizeof(l->path), "%s/port-%d.lock", dir, port);
    sweep(dir, l->path);
    /* The last worker to leave unlinks the file under the mutex: whoever
     * locked an unlinked file starts again with the new one. */
    for (;;) {
        struct stat a, b;
        fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot open %s: %s", l->path, strerror(errno));
            goto fail;
        }
        if ((rc = mutex_lock(fd)) < 0) {
            snprintf(err, errlen, "cannot lock %s: %s", l->path,
                     rc == -ETIMEDOUT ? "held for 5 s by a stuck process" : strerror(-rc));
            goto fail;
        }
        if (fstat(fd, &a) == 0 && stat(l->path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            break;
        close(fd);
        fd = -1;
    }
    rc = byte_free(fd, 1);
    if (rc == 0) {
        read_identity(fd, holder, sizeof(holder));
        if (strcmp(holder, identity) != 0) {
            snprintf(err, errlen,
                     "address in use: port %d is served by %s, and only workers of the same "
                     "service and store share a port (this is %s); stop those workers, or "
                     "give this one another --listen port or their --data-dir (lock: %s)",
                     port, holder[0] ? holder : "(unknown)", identity, l->path);
            rc = -EADDRINUSE;
            goto fail;
        }
    } else if (rc > 0) {
        size_t n = strlen(identity);
        if (ftruncate(fd, 0) < 0 || pwrite(fd, identity, n, 0) != (ssize_t)n ||
            pwrite(fd, "\n", 1, (off_t)n) != 1) {
            rc = -errno;
            snprintf(err, errlen, "cannot write %s: %s", l->path, strerror(errno));
            goto fail;
        }
    } else {
        snprintf(err, errlen, "cannot test %s: %s", l->path, strerror(-rc));
        goto fail;
    }
    if ((rc = lock_byte(fd, F_RDLCK, 1)) < 0) {
        snprintf(err, errlen, "cannot lock %s: %s", l->path, strerror(-rc));
        goto fail;
    }
    lock_byte(fd, F_UNLCK, 0);
    l->fd = fd;
    *out = l;
    return 0;
fail:
    if (fd >= 0)
        close(fd); /* drops every lock this open file held */
    free(l);
    return rc;
}

void svc_portlock_free(svc_portlock *l)
{
    if (l == NULL)
        return;
    if (mutex_lock(l->fd) == 0) {
        lock_byte(l->fd, F_UNLCK, 1);
        if (byte_free(l->fd, 1) == 1)
            unlink(l->path);
    }
    close(l->fd);
    free(l);
}
