/* src/util/log.c: the logfmt line a program writes on stderr, how values
 * are quoted, long lines, and buffered mode (lines whole and in order once
 * flushed, from many threads, past the buffer's size). stderr is captured
 * in a memfd for each test and restored before any assertion. No sleeps. */
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/log.h"

/* ---- capturing stderr ---- */

static int saved_stderr = -1;
static int capture_fd = -1;

static void capture_begin(void)
{
    capture_fd = memfd_create("log", 0);
    assert_true(capture_fd >= 0);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_int_equal(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr and returns what was written to it (malloc'd). */
static char *capture_end(size_t *len)
{
    assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    close(saved_stderr);
    off_t n = lseek(capture_fd, 0, SEEK_END);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(pread(capture_fd, out, (size_t)n, 0), n);
    out[n] = '\0';
    close(capture_fd);
    if (len != NULL)
        *len = (size_t)n;
    return out;
}

static void expect_match(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int rc = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("expected a match for /%s/, got:\n%s", pattern, text);
}

/* ---- the line ---- */

static void test_line_format(void **state)
{
    (void)state;
    char pat[512];
    util_log_init("testapp");
    capture_begin();
    util_log(UTIL_WARN, "cannot connect", "service=%s retry_ms=%d", "people", 50);
    util_log(UTIL_INFO, "listening", NULL);
    util_log(UTIL_ERROR, "x", NULL);
    util_log(UTIL_DEBUG, "d", "a=1");
    util_log(42, "odd level", NULL);
    char *out = capture_end(NULL);
    snprintf(pat, sizeof(pat),
             "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
             "level=warn app=testapp pid=%d msg=\"cannot connect\" service=people "
             "retry_ms=50\n",
             (int)getpid());
    expect_match(out, pat);
    /* A bare message, and no trailing space without key=values. */
    expect_match(out, "\n[^\n]* level=info app=testapp pid=[0-9]+ msg=listening\n");
    expect_match(out, "\n[^\n]* level=error [^\n]* msg=x\n");
    expect_match(out, "\n[^\n]* level=debug [^\n]* msg=d a=1\n");
    /* A level out of range is logged as info, not dropped. */
    expect_match(out, "\n[^\n]* level=info [^\n]* msg=\"odd level\"\n$");
    free(out);
}

static void test_app_name_cut(void **state)
{
    (void)state;
    util_log_init("a-program-name-far-longer-than-thirty-one-bytes");
    capture_begin();
    util_log(UTIL_INFO, "m", NULL);
    char *out = capture_end(NULL);
    expect_match(out, " app=a-program-name-far-longer-than- pid=");
    free(out);
    util_log_init("testapp");
}

/* However long the values, one event is one line, cut to the 2 KiB line
 * buffer, and still ends in a newline. */
static void test_long_line(void **state)
{
    (void)state;
    char *big = malloc(5000);
    memset(big, 'v', 4999);
    big[4999] = '\0';
    size_t n = 0;
    capture_begin();
    util_log(UTIL_INFO, big, "k=%s", big);
    big[0] = ' '; /* a message that must be quoted keeps its closing quote when cut */
    util_log(UTIL_INFO, big, NULL);
    util_log(UTIL_INFO, "after", NULL);
    char *out = capture_end(&n);
    char *nl = strchr(out, '\n');
    assert_non_null(nl);
    size_t first = (size_t)(nl - out) + 1;
    if (first > 2048)
        fail_msg("one line of %zu bytes, expected at most 2048", first);
    expect_match(out, "^ts=[^\n]* msg=v+ k=v+\n");
    expect_match(nl + 1, "^ts=[^\n]* msg=\" v+\"\nts=[^\n]* msg=after\n$");
    free(out);
    free(big);
}

/* ---- quoting ---- */

static void expect_q(const char *in, const char *want)
{
    char buf[64];
    const char *got = util_logq(buf, sizeof(buf), in);
    if (got != buf || strcmp(buf, want) != 0)
        fail_msg("util_logq(\"%s\"): expected %s, got %s", in, want, buf);
}

static void test_quoting(void **state)
{
    (void)state;
    expect_q("plain", "plain");
    expect_q("a.b:c/d-e_f", "a.b:c/d-e_f");
    expect_q("", "\"\"");
    expect_q("two words", "\"two words\"");
    expect_q("k=v", "\"k=v\"");
    expect_q("say \"hi\"", "\"say \\\"hi\\\"\"");
    expect_q("back\\slash", "\"back\\\\slash\"");
    expect_q("line\nbreak", "\"line\\nbreak\"");
    expect_q("tab\there", "\"tab?here\"");
    expect_q("cr\rdel\x7f", "\"cr?del?\"");
    expect_q("z\xC3\xB6" "e", "\"z\xC3\xB6" "e\""); /* UTF-8 kept, quoted */
}

static void test_quoting_cut(void **state)
{
    (void)state;
    char buf[8];
    /* Cut values stay well-formed: a quoted one keeps its closing quote
     * and never ends inside an escape. */
    assert_string_equal(util_logq(buf, sizeof(buf), "a b c d e f"), "\"a b \"");
    assert_string_equal(util_logq(buf, sizeof(buf), "\"\"\"\"\"\""), "\"\\\"\\\"\"");
    assert_string_equal(util_logq(buf, sizeof(buf), "abcdefghijkl"), "abcdefg");
    assert_string_equal(util_logq(buf, 3, "a b"), "\"\"");
    assert_string_equal(util_logq(buf, 2, "a b"), "");
    buf[0] = 'x';
    util_logq(buf, 0, "a b"); /* no room: nothing written */
    assert_int_equal(buf[0], 'x');
}

/* ---- buffered mode (last: it cannot be turned off) ---- */

#define THREADS 4
#define LINES 6000 /* 4 x 6000 lines of ~200 bytes: over the 1 MiB buffer */

static void *logger(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[120];
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        util_log(UTIL_INFO, "tick", "t=%d i=%d pad=%s", t, i, pad);
    return NULL;
}

static void test_buffered(void **state)
{
    (void)state;
    capture_begin();
    util_log_buffered();
    util_log(UTIL_INFO, "first", NULL);
    util_log(UTIL_INFO, "second", NULL);
    util_log_flush();
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, logger, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    util_log(UTIL_INFO, "last", NULL);
    util_log_flush();
    size_t len = 0;
    char *out = capture_end(&len);

    expect_match(out, "^ts=[^\n]* msg=first\nts=[^\n]* msg=second\n");
    expect_match(out, "\nts=[^\n]* msg=last\n$");
    /* Every line whole, each thread's lines in the order it logged them. */
    int next[THREADS] = {0};
    int lines = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        lines++;
        if (strncmp(line, "ts=", 3) != 0)
            fail_msg("line %d does not start with ts=: %.80s", lines, line);
        const char *kv = strstr(line, " msg=tick t=");
        if (kv == NULL)
            continue;
        int t = -1, i = -1, used = 0;
        if (sscanf(kv, " msg=tick t=%d i=%d pad=%n", &t, &i, &used) != 2 || t < 0 ||
            t >= THREADS || strlen(kv + used) != 119)
            fail_msg("line %d is not whole: %.200s", lines, line);
        if (i != next[t])
            fail_msg("thread %d: expected line %d, got %d", t, next[t], i);
        next[t]++;
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(next[t], LINES);
    assert_int_equal(lines, THREADS * LINES + 3);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_app_name_cut),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_quoting_cut),
        cmocka_unit_test(test_buffered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
