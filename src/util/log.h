/* logfmt logging for the programs (never for src/rpc): one line per event on
 * stderr, written with a single write() so lines from threads do not mix:
 *   ts=2026-11-28T00:35:39.123Z level=info app=people pid=42 msg="listening" addr=...
 * or, with --log-format json, the same keys as one JSON object a line
 * (util/logfmt.h says how values are typed). Lines below --log-level are
 * not written. Thread-safe. */
#ifndef TCPOPS_UTIL_LOG_H
#define TCPOPS_UTIL_LOG_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util/flags.h"

enum { UTIL_DEBUG, UTIL_INFO, UTIL_WARN, UTIL_ERROR };
enum { UTIL_LOG_LOGFMT, UTIL_LOG_JSON };

/* --log-level and --log-format, one definition for every program: put
 * UTIL_LOG_FLAGS(&opts) in the program's util_flag table (opts starts as
 * UTIL_LOG_OPTS_DEFAULT) and call util_log_configure(&opts) once the flags
 * have parsed. Shared flags (TCPOPS_LOG_LEVEL sets every program's). */
typedef struct util_log_opts {
    const char *level;  /* debug, info, warn or error */
    const char *format; /* logfmt or json */
} util_log_opts;
#define UTIL_LOG_OPTS_DEFAULT {.level = "info", .format = "logfmt"}
#define UTIL_LOG_FLAGS(o)                                                              \
    {"log-level", UTIL_FLAG_CHOICE | UTIL_FLAG_SHARED, &(o)->level,                    \
     "debug|info|warn|error", "log lines of this level and above", 0, 0},             \
    {"log-format", UTIL_FLAG_CHOICE | UTIL_FLAG_SHARED, &(o)->format, "logfmt|json",   \
     "logfmt: key=value lines; json: one object per line with the same keys", 0, 0}

/* Applies o (names the flags accepted; anything else leaves that setting
 * as it was). Call from main before threads. */
void util_log_configure(const util_log_opts *o);

/* The level and format in force, as their flag values ("info", "logfmt"):
 * what the supervisor hands its workers. Static strings. */
const char *util_log_level_name(void);
const char *util_log_format_name(void);

/* Names the program in every line. Call once from main before threads. */
void util_log_init(const char *app);

/* From now on lines are gathered in memory and written by a background
 * thread every 50 ms (or at once, by the logging thread, when the next line
 * would overflow the 1 MiB buffer), so a busy program spends one write per
 * batch instead of one per line. Call once from main before
 * threads; util_log_flush (also run at exit) writes what is waiting.
 * A crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) writes what is waiting
 * too, then dies of the same signal as it would have (log.c says what that
 * handler can and cannot promise). */
void util_log_buffered(void);

/* Writes every line waiting. Any thread. */
void util_log_flush(void);

/* For a program's main, before it starts threads: blocks SIGTERM, SIGINT
 * and SIGHUP (every thread inherits that, and main takes them with
 * util_wait_stop on *stopset) and ignores SIGPIPE (writes to a closed peer
 * fail with EPIPE instead). */
void util_block_stop_signals(sigset_t *stopset);

/* Waits for SIGTERM or SIGINT and returns it; each SIGHUP meanwhile calls
 * on_hup(user) (re-reading certificates, say) on the calling thread, or is
 * ignored when on_hup is NULL. */
int util_wait_stop(sigset_t *stopset, void (*on_hup)(void *user), void *user);

/* One kind of line logged at most once a second (a flood of refusals, a
 * database down failing every call): zero it, then ask util_log_due before
 * each line. Any thread. */
typedef struct util_log_limit {
    _Atomic int64_t logged_ms; /* monotonic ms of the last line; 0: none yet */
    _Atomic uint64_t quiet;    /* lines not logged since */
} util_log_limit;

/* Whether to log this line now. When yes, more (len bytes) gets
 * " unlogged_before=N" for the N lines dropped since the last one, or "";
 * when no, the line is counted among them. */
int util_log_due(util_log_limit *l, char *more, size_t len);

/* Logs msg with extra key=value pairs formatted by kvfmt (may be NULL). */
void util_log(int level, const char *msg, const char *kvfmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes another program's log line (len bytes, no newline) as one of ours,
 * with key=value added after its app= (replacing a key of that name): a
 * logfmt line or JSON object is rewritten in our --log-format; anything
 * else (a sanitizer's report, a library's raw stderr) becomes our own warn
 * line with the text as msg (written whatever --log-level says). Not
 * filtered by level (the writer did that).
 * Any thread. */
void util_log_relay(const char *line, size_t len, const char *key, const char *value);

/* Writes s as a logfmt value into buf: bare when safe, else quoted with
 * backslash escapes. Returns buf. */
const char *util_logq(char *buf, size_t len, const char *s);

#endif
