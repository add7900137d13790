/* `tcpops logs [APP] [-f] [-n N]`: the last lines of the master's log file
 * (DIR/tcpops.log, written by `tcpops up --detach`), all of them or one
 * app's, and with -f the lines that come after, across a rotation (the
 * file renamed and a new one opened by the master on SIGHUP) or a
 * truncation (copytruncate). */
#ifndef TCPOPS_SUP_LOGS_H
#define TCPOPS_SUP_LOGS_H

#include <stdio.h>

#define SUP_LOGS_DEFAULT_LINES 20
#define SUP_LOGS_MAX_LINES 1000000L
#define SUP_LOGS_POLL_MS 200     /* -f: how often the file is looked at */

/* Whether line (len bytes, no newline) belongs to app: its worker= (logfmt
 * or JSON) is app.N, or app.* for the master's lines about the whole app.
 * Every line belongs when app is NULL. */
int sup_logs_wanted(const char *line, size_t len, const char *app);

/* Prints to out the last n lines of path that belong to app (NULL: all),
 * then, with follow, every such line written after them, until killed.
 * Returns 0, or 1 after printing to stderr why the file cannot be read. */
int sup_logs_run(const char *path, const char *app, long n, int follow, FILE *out);

#endif
