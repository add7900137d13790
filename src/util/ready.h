/* Readiness, told through a pipe rather than read from a log line: `tcpops
 * up` gives each program it starts the write end of a pipe as --ready-fd N;
 * the program writes one line, "ready" (a service adds " member=HOST:PORT",
 * the address it advertises), and closes it once it serves. The supervisor
 * reads the other end: the line means running; end of file without it
 * means the program never became ready. A program started by hand, without
 * --ready-fd, tells nobody. */
#ifndef TCPOPS_UTIL_READY_H
#define TCPOPS_UTIL_READY_H

#include <stddef.h>

/* Longest line, newline included, that either side handles. */
#define UTIL_READY_LINE_MAX 128

/* The --ready-fd flag's help text, the same in every program. */
#define UTIL_READY_FD_HELP                                                                  \
    "once serving, write \"ready\" and a newline to this inherited descriptor and close it " \
    "(tcpops up passes a pipe; none when not given)"

/* Writes "ready" (then a space and member, when member is not NULL) and a
 * newline to fd, then closes fd. fd < 0 (not given): does nothing and
 * returns 0. Returns 0, or a negative errno when the write failed (fd is
 * closed all the same). Call once, from the thread that saw the program
 * serve. */
int util_ready_notify(long fd, const char *member);

/* Reads the line in buf (len bytes, its newline removed) as a readiness
 * line: 1 when it is "ready" (with member, when it names one, copied to
 * member, cap bytes; else member is ""), else 0. */
int util_ready_parse(const char *buf, size_t len, char *member, size_t cap);

#endif
