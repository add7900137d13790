/* Starting a program as a child process whose stdout (and, when asked,
 * stderr) is a pipe back to us. Used by the supervisor for its workers and
 * by the tests for the programs they run. */
#ifndef TCPOPS_UTIL_SPAWN_H
#define TCPOPS_UTIL_SPAWN_H

#include <sys/types.h>

#define UTIL_SPAWN_PASS_MAX 2

typedef struct util_spawn_cfg {
    int deathsig;            /* the child gets this signal when we die */
    int stderr_to_pipe;      /* stderr joins stdout in the pipe */
    const char *stderr_path; /* else, when set: stderr appended to this file */
    /* Each > 2: this descriptor stays open in the child (by its number),
     * close-on-exec or not; 0 or -1: none (the gateway gets its listening
     * socket and its --ready-fd pipe). */
    int pass_fd[UTIL_SPAWN_PASS_MAX];
} util_spawn_cfg;

/* Forks and runs argv[0] (a path) with argv, stdin from /dev/null and no
 * signal blocked. *out gets the read end of its stdout pipe; with err set,
 * *err gets the read end of a pipe of its own for stderr (cfg's stderr
 * choices then do not apply). Both are close-on-exec. Returns the child's
 * pid, or -1 with errno set. A child that cannot exec says so on its stderr
 * and exits 127. */
pid_t util_spawn(char *const argv[], const util_spawn_cfg *cfg, int *out, int *err);

#endif
