#include "supervisor/logs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/logfmt.h"

#define BLOCK 65536

int sup_logs_wanted(const char *line, size_t len, const char *app)
{
    util_kv kv[UTIL_LOGFMT_MAX_PAIRS];
    char buf[8192];
    if (app == NULL)
        return 1;
    int n = util_logfmt_parse(line, len, kv, UTIL_LOGFMT_MAX_PAIRS, buf, sizeof(buf));
    int w = n > 0 ? util_logfmt_find(kv, n, "worker") : -1;
    size_t al = strlen(app);
    return w >= 0 && kv[w].vlen > al + 1 && memcmp(kv[w].val, app, al) == 0 &&
           kv[w].val[al] == '.';
}

/* Where the last n wanted lines of [0, end) start; end is just past a
 * newline (or 0). Reads backwards a block at a time, keeping the part of a
 * line the block cut. */
static off_t tail_start(int fd, off_t end, long n, const char *app)
{
    char *mem = NULL; /* holds [pos, t) of the file */
    off_t pos = end, t = end, start = end;
    long found = 0;
    while (found < n && t > 0) {
        /* The line that ends at t (its newline at t - 1) starts after the
         * newline before it, if that is in memory. */
        char *nl = NULL;
        for (off_t k = t - 2; k >= pos; k--) {
            if (mem[k - pos] == '\n') {
                nl = mem + (k - pos);
                break;
            }
        }
        if (nl == NULL && pos > 0) {
            size_t b = (size_t)(pos < BLOCK ? pos : BLOCK);
            char *more = malloc(b + (size_t)(t - pos));
            if (more == NULL)
                break;
            if (pread(fd, more, b, pos - (off_t)b) != (ssize_t)b) {
                free(more);
                break;
            }
            if (t > pos)
                memcpy(more + b, mem, (size_t)(t - pos));
            free(mem);
            mem = more;
            pos -= (off_t)b;
            continue;
        }
        off_t s = nl != NULL ? pos + (nl - mem) + 1 : 0;
        if (sup_logs_wanted(mem + (s - pos), (size_t)(t - 1 - s), app)) {
            found++;
            start = s;
        }
        t = s;
    }
    free(mem);
    return start;
}

/* Complete lines of the file, read from a descriptor, printed when wanted;
 * a last line without its newline waits for the rest. */
typedef struct reader {
    int fd;
    off_t off;       /* next byte to read */
    char *part;      /* a line begun, not ended */
    size_t npart, cap;
} reader;

static void put_line(const char *line, size_t len, const char *app, FILE *out)
{
    if (sup_logs_wanted(line, len, app)) {
        fwrite(line, 1, len, out);
        fputc('\n', out);
    }
}

/* Reads and prints what fd holds past r->off, up to stop (-1: its end). */
static void drain(reader *r, off_t stop, const char *app, FILE *out)
{
    char buf[BLOCK];
    for (;;) {
        size_t want = sizeof(buf);
        if (stop >= 0 && stop - r->off < (off_t)want)
            want = (size_t)(stop - r->off);
        if (want == 0)
            break;
        ssize_t got = pread(r->fd, buf, want, r->off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        r->off += got;
        for (ssize_t i = 0, s = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (i == got - 1) { /* the rest waits for its newline */
                    size_t add = (size_t)(got - s);
                    if (r->npart + add > r->cap) {
                        size_t cap = (r->npart + add) * 2;
                        char *p = realloc(r->part, cap);
                        if (p == NULL)
                            break;
                        r->part = p;
                        r->cap = cap;
                    }
                    memcpy(r->part + r->npart, buf + s, add);
                    r->npart += add;
                }
                continue;
            }
            if (r->npart > 0) {
                size_t add = (size_t)(i - s);
                char *p = realloc(r->part, r->npart + add + 1);
                if (p != NULL) {
                    memcpy(p + r->npart, buf + s, add);
                    put_line(p, r->npart + add, app, out);
                    r->part = p;
                    r->cap = r->npart + add + 1;
                }
                r->npart = 0;
            } else {
                put_line(buf + s, (size_t)(i - s), app, out);
            }
            s = i + 1;
        }
    }
    fflush(out);
}

/* -f: new lines as they come. A file replaced under its name (renamed away
 * by logrotate, a new one opened by the master on SIGHUP) is read to its
 * end, then the new one from its start; a file cut shorter than what was
 * read (copytruncate) is read again from its start. */
static void follow(reader *r, const char *path, const char *app, FILE *out)
{
    struct timespec tick = {0, SUP_LOGS_POLL_MS * 1000000L};
    for (;;) {
        drain(r, -1, app, out);
        struct stat now, cur;
        if (fstat(r->fd, &cur) == 0 && cur.st_size < r->off) {
            r->off = 0;
            r->npart = 0;
            continue;
        }
        if (stat(path, &now) == 0 && (now.st_ino != cur.st_ino || now.st_dev != cur.st_dev)) {
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                drain(r, -1, app, out); /* what came to the old file meanwhile */
                close(r->fd);
                r->fd = fd;
                r->off = 0;
                r->npart = 0;
                continue;
            }
        }
        nanosleep(&tick, NULL);
    }
}

int sup_logs_run(const char *path, const char *app, long n, int follow_on, FILE *out)
{
    reader r = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    struct stat st;
    if (r.fd < 0 || fstat(r.fd, &st) < 0) {
        fprintf(stderr, "tcpops logs: cannot read %s: %s (`tcpops up --detach` writes it; "
                "in the foreground the log is up's stderr)\n",
                path, strerror(errno));
        if (r.fd >= 0)
            close(r.fd);
        return 1;
    }
    /* Up to the last newline: a line still being written comes with -f. */
    off_t end = st.st_size;
    char c;
    while (end > 0 && pread(r.fd, &c, 1, end - 1) == 1 && c != '\n')
        end--;
    r.off = n > 0 ? tail_start(r.fd, end, n, app) : end;
    drain(&r, end, app, out);
    if (follow_on)
        follow(&r, path, app, out);
    close(r.fd);
    free(r.part);
    return 0;
}
