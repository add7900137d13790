/* util_spawn: a real /bin/sh child, its output through the pipe, its exit
 * status, stderr's three destinations, pass_fd, and a program that cannot
 * run. Every wait is for the child's end (EOF, waitpid), never a sleep. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/spawn.h"

/* Reads fd to its end into buf (NUL-terminated) and closes it. */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || got + (size_t)r == cap - 1) {
            got += r > 0 ? (size_t)r : 0;
            break;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
}

static int wait_status(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    return status;
}

/* Runs sh -c script with cfg; out gets its stdout pipe's text and *status
 * its wait status. */
static void run_sh(const char *script, const util_spawn_cfg *cfg, char *out, size_t cap,
                   int *status)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    int fd = -1;
    pid_t pid = util_spawn(argv, cfg, &fd, NULL);
    if (pid < 0)
        fail_msg("util_spawn(sh -c '%s'): expected a pid, got -1 (%s)", script, strerror(errno));
    read_all(fd, out, cap);
    *status = wait_status(pid);
}

static void expect_exit(int status, int code, const char *what)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        fail_msg("%s: expected exit %d, got %s %d", what, code,
                 WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

static void expect_text(const char *got, const char *want, const char *what)
{
    if (strcmp(got, want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", what, want, got);
}

/* Runs sh -c script with cfg and checks its stdout and exit code. */
static void expect_sh(const char *script, const util_spawn_cfg *cfg, const char *want_out,
                      int want_code)
{
    char out[256];
    int status;
    run_sh(script, cfg, out, sizeof(out), &status);
    expect_text(out, want_out, script);
    expect_exit(status, want_code, script);
}

static void test_stdout_and_exit_status(void **state)
{
    (void)state;
    util_spawn_cfg cfg = {.deathsig = SIGKILL};
    expect_sh("echo hello; echo world", &cfg, "hello\nworld\n", 0);
    expect_sh("exit 7", &cfg, "", 7);
}

static void test_stdin_is_dev_null(void **state)
{
    (void)state;
    util_spawn_cfg cfg = {.deathsig = SIGKILL};
    /* cat ends at once: its stdin is empty, not the test's terminal. */
    expect_sh("cat; echo end", &cfg, "end\n", 0);
}

static void test_no_signal_blocked_in_child(void **state)
{
    (void)state;
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old); /* as the master blocks it for its signalfd */
    util_spawn_cfg cfg = {.deathsig = SIGKILL};
    char out[256];
    int status;
    run_sh("kill -TERM $$; echo survived", &cfg, out, sizeof(out), &status);
    sigprocmask(SIG_SETMASK, &old, NULL);
    expect_text(out, "", "stdout after SIGTERM");
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGTERM)
        fail_msg("expected the child killed by SIGTERM, got status 0x%x", status);
}

static void test_stderr_to_pipe(void **state)
{
    (void)state;
    util_spawn_cfg cfg = {.deathsig = SIGKILL, .stderr_to_pipe = 1};
    expect_sh("echo out; echo err >&2", &cfg, "out\nerr\n", 0);
}

static void test_stderr_pipe_of_its_own(void **state)
{
    (void)state;
    /* With err asked for, cfg's stderr choices do not apply. */
    util_spawn_cfg cfg = {.deathsig = SIGKILL, .stderr_to_pipe = 1};
    char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    int out = -1, err = -1;
    pid_t pid = util_spawn(argv, &cfg, &out, &err);
    assert_true(pid > 0);
    assert_true((fcntl(out, F_GETFD) & FD_CLOEXEC) != 0);
    assert_true((fcntl(err, F_GETFD) & FD_CLOEXEC) != 0);
    char obuf[256], ebuf[256];
    read_all(out, obuf, sizeof(obuf));
    read_all(err, ebuf, sizeof(ebuf));
    expect_text(obuf, "out\n", "stdout");
    expect_text(ebuf, "err\n", "stderr");
    expect_exit(wait_status(pid), 3, "exit 3");
}

static void test_stderr_appended_to_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tcpops-test-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "before\n", 7), 7);
    close(fd);
    util_spawn_cfg cfg = {.deathsig = SIGKILL, .stderr_path = path};
    char text[256];
    expect_sh("echo out; echo err >&2", &cfg, "out\n", 0);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    read_all(fd, text, sizeof(text));
    unlink(path);
    expect_text(text, "before\nerr\n", "the stderr file");
}

static void test_pass_fd(void **state)
{
    (void)state;
    int p[2], q[2], other[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(pipe2(q, O_CLOEXEC), 0);
    assert_int_equal(pipe2(other, O_CLOEXEC), 0);
    char script[160];
    /* Each passed descriptor is open in the child under its own number;
     * any other close-on-exec one is not. */
    snprintf(script, sizeof(script),
             "echo passed >&%d; echo second >&%d; if [ -e /proc/self/fd/%d ]; then echo "
             "leaked; fi",
             p[1], q[1], other[1]);
    util_spawn_cfg cfg = {.deathsig = SIGKILL, .pass_fd = {p[1], q[1]}};
    char passed[256];
    expect_sh(script, &cfg, "", 0);
    /* The parent's copies stay close-on-exec. */
    assert_true((fcntl(p[1], F_GETFD) & FD_CLOEXEC) != 0);
    assert_true((fcntl(q[1], F_GETFD) & FD_CLOEXEC) != 0);
    close(p[1]);
    close(q[1]);
    read_all(p[0], passed, sizeof(passed));
    expect_text(passed, "passed\n", "what the child wrote to the first passed fd");
    read_all(q[0], passed, sizeof(passed));
    expect_text(passed, "second\n", "what the child wrote to the second passed fd");
    close(other[0]);
    close(other[1]);
}

static void test_cannot_exec(void **state)
{
    (void)state;
    char *argv[] = {"/nonexistent/tcpops-no-such-program", NULL};
    util_spawn_cfg cfg = {.deathsig = SIGKILL};
    int out = -1, err = -1;
    pid_t pid = util_spawn(argv, &cfg, &out, &err);
    assert_true(pid > 0);
    char obuf[256], ebuf[512];
    read_all(out, obuf, sizeof(obuf));
    read_all(err, ebuf, sizeof(ebuf));
    expect_text(obuf, "", "stdout");
    expect_text(ebuf,
                "cannot run /nonexistent/tcpops-no-such-program: No such file or directory\n",
                "stderr");
    expect_exit(wait_status(pid), 127, "a program that cannot run");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdout_and_exit_status),
        cmocka_unit_test(test_stdin_is_dev_null),
        cmocka_unit_test(test_no_signal_blocked_in_child),
        cmocka_unit_test(test_stderr_to_pipe),
        cmocka_unit_test(test_stderr_pipe_of_its_own),
        cmocka_unit_test(test_stderr_appended_to_file),
        cmocka_unit_test(test_pass_fd),
        cmocka_unit_test(test_cannot_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
