#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/logfmt.h"

static char app_name[32] = "tcpops";
static int min_level = UTIL_INFO; /* set from main before threads */
static int format = UTIL_LOG_LOGFMT;

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

/* What the crash handler needs, readable without a lock: how far the write
 * of `spare` got, and whether a crash took over the writing. */
static _Atomic int crashing;
static _Atomic int spare_busy;           /* a flush is writing spare */
static _Atomic size_t spare_len, spare_done;

/* Writes n bytes; *done (may be NULL) follows the progress. Stops early
 * when a crash handler has taken over (it writes the rest). */
static void write_all(const char *p, size_t n, _Atomic size_t *done)
{
    size_t o = 0;
    while (o < n && !atomic_load(&crashing)) {
        ssize_t w = write(STDERR_FILENO, p + o, n - o);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to log to: drop, never block the program */
        o += (size_t)w;
        if (done != NULL)
            atomic_store(done, o);
    }
}

void util_log_flush(void)
{
    pthread_mutex_lock(&write_lock);
    pthread_mutex_lock(&buf_lock);
    char *full = pending;
    size_t n = npending;
    if (full != NULL) {
        /* In this order, for the crash handler that reads them unlocked. */
        __atomic_store_n(&npending, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&pending, spare, __ATOMIC_SEQ_CST);
        __atomic_store_n(&spare, full, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&buf_lock);
    if (full != NULL) {
        atomic_store(&spare_done, 0);
        atomic_store(&spare_len, n);
        atomic_store(&spare_busy, 1);
        write_all(full, n, &spare_done);
        atomic_store(&spare_busy, 0);
    }
    pthread_mutex_unlock(&write_lock);
}

/* ---- a crash ----
 *
 * The handler writes what the buffers hold with write() alone: no lock
 * (the crashing thread may hold buf_lock or write_lock), no allocation, no
 * stdio. The trade-offs of not locking: a line another thread is copying
 * in at that instant may be missing or cut, and a write the flusher had
 * under way when the crash came may show up twice (the handler cannot know
 * whether those bytes reached the file); no complete line logged before the
 * crash is lost. Then the previous action (the default, unless a sanitizer
 * installed its own) is put back and the signal raised again, so the
 * program dies as it would have: same signal, core dump, sanitizer report. */
static const int fatal_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static struct sigaction old_actions[sizeof(fatal_sigs) / sizeof(fatal_sigs[0])];

static void raw_write(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    if (atomic_exchange(&crashing, 1) == 0) {
        /* Oldest first: the rest of a flush under way, then what waits. */
        if (atomic_load(&spare_busy)) {
            size_t done = atomic_load(&spare_done), len = atomic_load(&spare_len);
            char *sp = __atomic_load_n(&spare, __ATOMIC_SEQ_CST);
            if (sp != NULL && done < len)
                raw_write(sp + done, len - done);
        }
        char *p = __atomic_load_n(&pending, __ATOMIC_SEQ_CST);
        size_t n = __atomic_load_n(&npending, __ATOMIC_SEQ_CST);
        if (p != NULL && n <= LOG_BUF)
            raw_write(p, n);
    }
    for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++)
        if (fatal_sigs[i] == sig)
            sigaction(sig, &old_actions[i], NULL);
    errno = saved;
    /* A fault of the CPU's happens again when the handler returns, now to
     * the previous action, with its true address; a sent signal or
     * abort() is raised again (blocked until this handler returns). */
    if (si != NULL && si->si_code > 0 && sig != SIGABRT)
        return;
    raise(sig);
}

static void catch_crashes(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); i++)
        sigaction(fatal_sigs[i], &sa, &old_actions[i]);
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
    catch_crashes();
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static const char *const format_names[] = {"logfmt", "json"};

void util_log_init(const char *app)
{
    snprintf(app_name, sizeof(app_name), "%s", app);
    pid = (int)getpid();
}

void util_log_configure(const util_log_opts *o)
{
    for (int l = UTIL_DEBUG; l <= UTIL_ERROR; l++)
        if (o->level != NULL && strcmp(o->level, level_names[l]) == 0)
            min_level = l;
    for (int f = UTIL_LOG_LOGFMT; f <= UTIL_LOG_JSON; f++)
        if (o->format != NULL && strcmp(o->format, format_names[f]) == 0)
            format = f;
}

const char *util_log_level_name(void)
{
    return level_names[min_level];
}

const char *util_log_format_name(void)
{
    return format_names[format];
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

/* Writes one whole line (newline included): into the buffer when
 * buffered, else straight to stderr. */
static void emit(const char *line, size_t n)
{
    pthread_mutex_lock(&buf_lock);
    while (pending != NULL && npending + n > LOG_BUF) {
        /* Full before the flusher came by: write it now (in order). */
        pthread_mutex_unlock(&buf_lock);
        util_log_flush();
        pthread_mutex_lock(&buf_lock);
    }
    if (pending == NULL) {
        pthread_mutex_unlock(&buf_lock);
        write_all(line, n, NULL);
        return;
    }
    memcpy(pending + npending, line, n);
    __atomic_store_n(&npending, npending + n, __ATOMIC_SEQ_CST); /* the crash handler reads it */
    pthread_mutex_unlock(&buf_lock);
}

/* Emits kv[0..n) in the format in force. */
static void emit_pairs(const util_kv *kv, int n)
{
    char out[8192];
    size_t len = format == UTIL_LOG_JSON ? util_logfmt_json(out, sizeof(out) - 1, kv, n)
                                         : util_logfmt_render(out, sizeof(out) - 1, kv, n);
    out[len++] = '\n';
    emit(out, len);
}

/* line (len bytes) as JSON: its first hlen bytes are ours (ts ... msg);
 * the rest is what the caller's format made, which should be logfmt too. A
 * rest that is not (an unquoted value with a space, say) is kept whole as
 * one string, "kv", so the line is still valid JSON. */
static void log_json(const char *line, size_t len, size_t hlen)
{
    util_kv kv[UTIL_LOGFMT_MAX_PAIRS];
    char buf[4096];
    int n = util_logfmt_parse(line, len, kv, UTIL_LOGFMT_MAX_PAIRS, buf, sizeof(buf));
    if (n < 0) {
        n = util_logfmt_parse(line, hlen, kv, UTIL_LOGFMT_MAX_PAIRS - 1, buf, sizeof(buf));
        if (n < 0)
            return; /* cannot happen: the header is ours */
        while (hlen < len && line[hlen] == ' ')
            hlen++;
        kv[n++] = (util_kv){.key = "kv", .klen = 2, .val = line + hlen, .vlen = len - hlen,
                            .quoted = 1};
    }
    emit_pairs(kv, n);
}

/* util_log, and for always also below --log-level. */
static void log_v(int level, int always, const char *msg, const char *kvfmt, va_list ap)
{
    char line[2048];
    char q[1024];
    struct timeval tv;
    struct tm tm;
    if (level < UTIL_DEBUG || level > UTIL_ERROR)
        level = UTIL_INFO;
    if (level < min_level && !always)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s app=%s pid=%d msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[level], app_name,
                     pid != 0 ? pid : (int)getpid(), util_logq(q, sizeof(q), msg));
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    size_t header = (size_t)n;
    if ((size_t)n < sizeof(line) - 2 && kvfmt != NULL && kvfmt[0] != '\0') {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, kvfmt, ap);
        if (m > 0)
            n += m < (int)(sizeof(line) - (size_t)n - 1) ? m : (int)(sizeof(line) - (size_t)n - 2);
    }
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n] = '\0';
    if (format == UTIL_LOG_JSON) {
        log_json(line, (size_t)n, header);
        return;
    }
    line[n++] = '\n';
    emit(line, (size_t)n);
}

void util_log(int level, const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    log_v(level, 0, msg, kvfmt, ap);
    va_end(ap);
}

/* A warn line whatever --log-level says. */
static void log_always(const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_always(const char *msg, const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    log_v(UTIL_WARN, 1, msg, kvfmt, ap);
    va_end(ap);
}

void util_log_relay(const char *line, size_t len, const char *key, const char *value)
{
    util_kv kv[UTIL_LOGFMT_MAX_PAIRS + 1];
    char buf[8192];
    int n = util_logfmt_parse(line, len, kv, UTIL_LOGFMT_MAX_PAIRS, buf, sizeof(buf));
    /* One of our lines starts with ts= and has a msg. */
    if (n < 0 || util_logfmt_find(kv, n, "ts") != 0 || util_logfmt_find(kv, n, "msg") < 0) {
        char text[2048], q[64];
        snprintf(text, sizeof(text), "%.*s", (int)(len < sizeof(text) ? len : sizeof(text) - 1),
                 line);
        log_always(text, "%s=%s", key, util_logq(q, sizeof(q), value));
        return;
    }
    int old = util_logfmt_find(kv, n, key);
    if (old >= 0)
        memmove(&kv[old], &kv[old + 1], (size_t)(n - old - 1) * sizeof(kv[0]));
    n -= old >= 0;
    int at = util_logfmt_find(kv, n, "app");
    at = at >= 0 ? at + 1 : 1; /* after app=, else after ts= */
    memmove(&kv[at + 1], &kv[at], (size_t)(n - at) * sizeof(kv[0]));
    kv[at] = (util_kv){.key = key, .klen = strlen(key), .val = value, .vlen = strlen(value)};
    emit_pairs(kv, n + 1);
}
