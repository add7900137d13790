#include "util/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char app_name[32] = "tcpops";

/* Buffered mode: lines wait in `pending` until the flusher thread swaps it
 * for the other buffer and writes it, so loggers never wait for a write.
 * write_lock (taken before buf_lock) keeps the writes in order. */
#define LOG_BUF (1024 * 1024)
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static char *pending;     /* LOG_BUF bytes when buffered, else NULL */
static size_t npending;
static char *spare;       /* under write_lock: the buffer being written */
static int pid;           /* getpid() is a system call; this process's is fixed */

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* nowhere to log to: drop, never block the program */
        p += w;
        n -= (size_t)w;
    }
}

void util_log_flush(void)
{
    pthread_mutex_lock(&write_lock);
    pthread_mutex_lock(&buf_lock);
    char *full = pending;
    size_t n = npending;
    if (full != NULL) {
        pending = spare;
        npending = 0;
        spare = full;
    }
    pthread_mutex_unlock(&buf_lock);
    if (full != NULL)
        write_all(full, n);
    pthread_mutex_unlock(&write_lock);
}

static void *flusher(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        util_log_flush();
    }
    return NULL;
}

void util_block_stop_signals(sigset_t *stopset)
{
    sigemptyset(stopset);
    sigaddset(stopset, SIGTERM);
    sigaddset(stopset, SIGINT);
    sigaddset(stopset, SIGHUP);
    pthread_sigmask(SIG_BLOCK, stopset, NULL);
    /* Blocked now, so its default (or an ignore set while starting) no
     * longer applies: a SIGHUP waits for util_wait_stop. An ignored one
     * would be dropped. */
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
}

int util_log_due(util_log_limit *l, char *more, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t last = atomic_load(&l->logged_ms);
    if ((last != 0 && now - last < 1000) ||
        !atomic_compare_exchange_strong(&l->logged_ms, &last, now)) {
        atomic_fetch_add(&l->quiet, 1);
        return 0;
    }
    uint64_t n = atomic_exchange(&l->quiet, 0);
    more[0] = '\0';
    if (n > 0)
        snprintf(more, len, " unlogged_before=%llu", (unsigned long long)n);
    return 1;
}

int util_wait_stop(sigset_t *stopset, void (*on_hup)(void *user), void *user)
{
    for (;;) {
        int sig = 0;
        if (sigwait(stopset, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        if (on_hup != NULL)
            on_hup(user);
    }
}

void util_log_buffered(void)
{
    pthread_t th;
    char *a = malloc(LOG_BUF), *b = malloc(LOG_BUF);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return;
    }
    spare = b;
    pthread_mutex_lock(&buf_lock);
    pending = a;
    pthread_mutex_unlock(&buf_lock);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the program's threads */
    if (pthread_create(&th, NULL, flusher, NULL) == 0)
        pthread_detach(th);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atexit(util_log_flush);
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void util_log_init(const char *app)
{
    snprintf(app_name, sizeof(app_name), "%s", app);
    pid = (int)getpid();
}

const char *util_logq(char *buf, size_t len, const char *s)
{
    int bare = s[0] != '\0';
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p >= 0x7f)
            bare = 0;
    if (bare) {
        snprintf(buf, len, "%s", s);
        return buf;
    }
    size_t o = 0;
    if (len < 3) {
        if (len > 0)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (const char *p = s; *p && o + 3 < len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c < ' ' || c == 0x7f) {
            buf[o++] = '?';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void util_log(int level, const char *msg, const char *kvfmt, ...)
{
    char line[2048];
    char q[512];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s app=%s pid=%d msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000),
                     level_names[level < 0 || level > UTIL_ERROR ? UTIL_INFO : level], app_name,
                     pid != 0 ? pid : (int)getpid(), util_logq(q, sizeof(q), msg));
    if (n < 0)
        return;
    if ((size_t)n < sizeof(line) - 2 && kvfmt != NULL && kvfmt[0] != '\0') {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, kvfmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, kvfmt, ap);
        va_end(ap);
        if (m > 0)
            n += m < (int)(sizeof(line) - (size_t)n - 1) ? m : (int)(sizeof(line) - (size_t)n - 2);
    }
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&buf_lock);
    while (pending != NULL && npending + (size_t)n > LOG_BUF) {
        /* Full before the flusher came by: write it now (in order). */
        pthread_mutex_unlock(&buf_lock);
        util_log_flush();
        pthread_mutex_lock(&buf_lock);
    }
    if (pending == NULL) {
        pthread_mutex_unlock(&buf_lock);
        write_all(line, (size_t)n);
        return;
    }
    memcpy(pending + npending, line, (size_t)n);
    npending += (size_t)n;
    pthread_mutex_unlock(&buf_lock);
}
