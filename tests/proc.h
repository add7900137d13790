/* Child processes for integration tests: spawn a real program, learn the port
 * it printed, signal it, reap it. Every child dies with the test process
 * (PR_SET_PDEATHSIG) and is killed at exit, so a failing test leaves nothing
 * running. */
#ifndef TCPOPS_TEST_PROC_H
#define TCPOPS_TEST_PROC_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct proc {
    pid_t pid;
    int out_fd;   /* the child's stdout, read end */
    int port;     /* from its "port=N" line, or -1 */
} proc;

/* Path of a program built into build/bin (TCPOPS_BIN_DIR, set by ctest). */
const char *proc_bin(const char *name, char *buf, size_t len);

/* Starts argv[0] with argv, stderr inherited. When want_port, waits up to
 * 10 s for a "port=N" line on its stdout. Returns 0 or -1. */
int proc_start(proc *p, char *const argv[], int want_port);

/* Like proc_start without a port, with the child's stderr appended to the
 * file at log_path (for tests that read what a program logged). */
int proc_start_logged(proc *p, char *const argv[], const char *log_path);

/* Sends sig. */
void proc_signal(const proc *p, int sig);

/* Waits up to timeout_ms for the child to exit. Returns its exit code,
 * 128+signal when killed, or -1 when it is still running (then it is left
 * alone). */
int proc_wait(proc *p, int timeout_ms);

/* The child's resident memory (VmRSS) in KiB, or -1. */
long proc_rss_kb(const proc *p);

/* SIGKILLs and reaps the child if it still runs. */
void proc_stop(proc *p);

/* SIGTERM (a tcpops master then stops its workers with it), and SIGKILL
 * when the child has not exited within timeout_ms. */
void proc_stop_gracefully(proc *p, int timeout_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int free_port(void);

/* Waits up to timeout_ms until 127.0.0.1:port accepts a connection.
 * Returns 0 or -1. */
int wait_port(int port, int timeout_ms);

/* Starts build/bin/NAME --listen 127.0.0.1:PORT --data-dir DIR [extra...]
 * (extra is NULL-terminated, may be NULL) and waits until the port accepts.
 * Returns 0 or -1 (the child is stopped then). */
int proc_start_service(proc *p, const char *name, int port, const char *dir,
                       const char *const *extra);

/* Runs argv to completion (at most timeout_ms, then SIGKILL), capturing
 * stdout and stderr (NUL-terminated, truncated to their sizes). Returns the
 * exit code, or -1 when it could not run or timed out. */
int proc_run(char *const argv[], char *out, size_t outlen, char *err, size_t errlen,
             int timeout_ms);

/* Runs build/bin/NAME FLAG VALUE ARGS... to completion with proc_run, where
 * ARGS are the NULL-terminated strings of rest (at most 12). cmd, when not
 * NULL, gets ARGS joined by spaces for messages. Returns the exit code or -1. */
int proc_run_tool(const char *name, const char *flag, const char *value, va_list rest,
                  char *out, size_t outlen, char *err, size_t errlen, int timeout_ms,
                  char *cmd, size_t cmdlen);

/* Polls the file at path (its first MiB) until it holds needle, for up to
 * timeout_ms. Returns 1 when it came, else 0. */
int proc_wait_file(const char *path, const char *needle, int timeout_ms);

/* Whether the test runs under CI (CI set, and not "", "false" or "0"):
 * there a test that cannot run fails instead of skipping. */
int proc_in_ci(void);

/* A new empty directory under TMPDIR; removed with rm_rf. */
int make_temp_dir(char *buf, size_t len);
void rm_rf(const char *dir);

/* A cmocka fixture: a new temporary directory and the path of a file in it
 * (not created). dir_fixture_setup(state, "people.db") fills *state;
 * dir_fixture_teardown removes the directory and frees the fixture. */
typedef struct dir_fixture {
    char dir[256];
    char path[512];
} dir_fixture;
int dir_fixture_setup(void **state, const char *file);
int dir_fixture_teardown(void **state);

/* The gateway and one worker of each service, started by the test itself
 * (proc_start_service, ...): a temporary directory for their data and a
 * free port each. */
typedef struct trio {
    char dir[256];
    proc people, pets, gw;
    int people_port, pets_port, gw_port;
} trio;

/* Makes the directory and picks the ports; starts nothing. Returns 0, or
 * -1 when the directory cannot be made. */
int trio_init(trio *t);

/* Stops what runs, the gateway first, and removes the directory. */
void trio_fini(trio *t);

#endif
