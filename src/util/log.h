/* logfmt logging for the programs (never for src/rpc): one line per event on
 * stderr, written with a single write() so lines from threads do not mix:
 *   ts=2026-11-28T00:35:39.123Z level=info app=people pid=42 msg="listening" addr=...
 * Thread-safe. */
#ifndef TCPOPS_UTIL_LOG_H
#define TCPOPS_UTIL_LOG_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum { UTIL_DEBUG, UTIL_INFO, UTIL_WARN, UTIL_ERROR };

/* Names the program in every line. Call once from main before threads. */
void util_log_init(const char *app);

/* From now on lines are gathered in memory and written by a background
 * thread every 50 ms (or at once, by the logging thread, when the next line
 * would overflow the 1 MiB buffer), so a busy program spends one write per
 * batch instead of one per line. Call once from main before
 * threads; util_log_flush (also run at exit) writes what is waiting. */
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

/* Writes s as a logfmt value into buf: bare when safe, else quoted with
 * backslash escapes. Returns buf. */
const char *util_logq(char *buf, size_t len, const char *s);

#endif
