/* src/util/log.c and logfmt.c: the logfmt line a program writes on stderr,
 * how values are quoted, long lines, --log-level and --log-format (JSON
 * lines that parse, typed as promised), reading a logfmt line back, the
 * supervisor's relay of a worker's line, buffered mode (lines whole and in
 * order once flushed, from many threads, past the buffer's size) and what a
 * crash writes. stderr is captured in a memfd for each test and restored
 * before any assertion. No sleeps. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/log.h"
#include "util/logfmt.h"

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
    util_log_configure(&(util_log_opts){.level = "debug"});
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
    util_log_configure(&(util_log_opts){.level = "info"});
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

/* ---- --log-level, --log-format ---- */

static void test_levels(void **state)
{
    (void)state;
    util_log_configure(&(util_log_opts){.level = "warn"});
    assert_string_equal(util_log_level_name(), "warn");
    capture_begin();
    util_log(UTIL_DEBUG, "d", NULL);
    util_log(UTIL_INFO, "i", NULL);
    util_log(UTIL_WARN, "w", NULL);
    util_log(UTIL_ERROR, "e", NULL);
    char *out = capture_end(NULL);
    expect_match(out, "^ts=[^\n]* level=warn [^\n]* msg=w\nts=[^\n]* level=error [^\n]* msg=e\n$");
    free(out);
    /* A word the flag would refuse changes nothing. */
    util_log_configure(&(util_log_opts){.level = "loud", .format = "xml"});
    assert_string_equal(util_log_level_name(), "warn");
    assert_string_equal(util_log_format_name(), "logfmt");
    util_log_configure(&(util_log_opts){.level = "info"});
}

/* The flags every program puts in its table: the words they take, and the
 * environment fallback. */
static void test_flags(void **state)
{
    (void)state;
    util_log_opts o = UTIL_LOG_OPTS_DEFAULT;
    const util_flag flags[] = {UTIL_LOG_FLAGS(&o)};
    char err[256];
    char *ok[] = {"prog", "--log-level", "debug", "--log-format=json", NULL};
    assert_int_equal(util_flags_parse(flags, 2, 4, ok, 1, err, sizeof(err)), 4);
    assert_string_equal(o.level, "debug");
    assert_string_equal(o.format, "json");
    char *bad[] = {"prog", "--log-level", "verbose", NULL};
    assert_int_equal(util_flags_parse(flags, 2, 3, bad, 1, err, sizeof(err)), -1);
    if (strstr(err, "debug|info|warn|error") == NULL)
        fail_msg("expected the error to list the levels, got: %s", err);
}

/* Each line of out parsed as a JSON object; fails on any that is not. */
static json_t *json_lines(const char *out)
{
    json_t *arr = json_array();
    for (const char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(o))
            fail_msg("expected a JSON object per line, got (%s): %.*s", je.text,
                     (int)(nl - line), line);
        json_array_append_new(arr, o);
    }
    return arr;
}

static void test_json_format(void **state)
{
    (void)state;
    util_log_init("testapp");
    util_log_configure(&(util_log_opts){.format = "json"});
    capture_begin();
    util_log(UTIL_WARN, "cannot connect", "service=%s retry_ms=%d code=\"42\" ratio=0.5 "
             "v=1.2.3 neg=-7 lead=007",
             "people", 50);
    util_log(UTIL_INFO, "odd \"bytes\"\t\x01 \xff\xfe", "path=\"a\\\\b\" u=z\xC3\xB6");
    util_log(UTIL_INFO, "not logfmt", "dir=%s", "/tmp/with space");
    char *out = capture_end(NULL);
    util_log_configure(&(util_log_opts){.format = "logfmt"});
    json_t *lines = json_lines(out);
    assert_int_equal(json_array_size(lines), 3);

    json_t *a = json_array_get(lines, 0);
    const char *order[] = {"ts", "level", "app", "pid", "msg", "service", "retry_ms"};
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(a, k, v) {
        if (i < 7 && strcmp(k, order[i]) != 0)
            fail_msg("key %zu: expected %s, got %s", i, order[i], k);
        i++;
    }
    assert_string_equal(json_string_value(json_object_get(a, "level")), "warn");
    assert_int_equal(json_integer_value(json_object_get(a, "pid")), (json_int_t)getpid());
    assert_int_equal(json_integer_value(json_object_get(a, "retry_ms")), 50);
    assert_true(json_is_real(json_object_get(a, "ratio")));
    assert_int_equal(json_integer_value(json_object_get(a, "neg")), -7);
    /* Quoted in logfmt, or not a JSON number: a string. */
    assert_string_equal(json_string_value(json_object_get(a, "code")), "42");
    assert_string_equal(json_string_value(json_object_get(a, "v")), "1.2.3");
    assert_string_equal(json_string_value(json_object_get(a, "lead")), "007");
    assert_string_equal(json_string_value(json_object_get(a, "msg")), "cannot connect");

    json_t *b = json_array_get(lines, 1);
    /* util_logq turned the control characters into '?'; the bytes that are
     * not UTF-8 are U+FFFD, so the line is still JSON. */
    assert_string_equal(json_string_value(json_object_get(b, "msg")),
                        "odd \"bytes\"?? \xEF\xBF\xBD\xEF\xBF\xBD");
    assert_string_equal(json_string_value(json_object_get(b, "path")), "a\\b");
    assert_string_equal(json_string_value(json_object_get(b, "u")), "z\xC3\xB6");

    /* A caller's format that is not logfmt is kept whole, as "kv". */
    json_t *c = json_array_get(lines, 2);
    assert_string_equal(json_string_value(json_object_get(c, "kv")), "dir=/tmp/with space");
    assert_string_equal(json_string_value(json_object_get(c, "msg")), "not logfmt");
    json_decref(lines);
    free(out);
}

/* ---- logfmt as data ---- */

static int parse(const char *line, util_kv *kv, char *buf, size_t buflen)
{
    return util_logfmt_parse(line, strlen(line), kv, UTIL_LOGFMT_MAX_PAIRS, buf, buflen);
}

static void expect_pair(const util_kv *kv, int n, const char *key, const char *val, int quoted)
{
    int i = util_logfmt_find(kv, n, key);
    if (i < 0)
        fail_msg("expected a pair %s=, found none", key);
    if (kv[i].vlen != strlen(val) || memcmp(kv[i].val, val, kv[i].vlen) != 0 ||
        kv[i].quoted != quoted)
        fail_msg("%s: expected \"%s\" (quoted %d), got \"%.*s\" (quoted %d)", key, val, quoted,
                 (int)kv[i].vlen, kv[i].val, kv[i].quoted);
}

static void test_logfmt_parse(void **state)
{
    (void)state;
    util_kv kv[UTIL_LOGFMT_MAX_PAIRS];
    char buf[512];
    int n = parse("ts=1 level=info msg=\"a \\\"b\\\" c\\nd\\\\\" empty= q=\"\" x.y-z_1=a=b",
                  kv, buf, sizeof(buf));
    assert_int_equal(n, 6);
    expect_pair(kv, n, "ts", "1", 0);
    expect_pair(kv, n, "msg", "a \"b\" c\nd\\", 1);
    expect_pair(kv, n, "empty", "", 0);
    expect_pair(kv, n, "q", "", 1);
    expect_pair(kv, n, "x.y-z_1", "a=b", 0);
    assert_int_equal(util_logfmt_find(kv, n, "nope"), -1);
    /* Spaces between pairs and at the end, a CR at the end. */
    assert_int_equal(parse("a=1   b=2  \r", kv, buf, sizeof(buf)), 2);

    /* Not logfmt. */
    const char *bad[] = {
        "",
        "   ",
        "==1234==ERROR: AddressSanitizer: heap-buffer-overflow",
        "    #0 0x4f5 in main /src/x.c:12",
        "a=1 word b=2",
        "=1",
        "k=\"open",
        "k=\"a\"b",
        "k\xC3\xB6=1",
        "{\"not\":\"closed\"",
        "[1,2]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], kv, buf, sizeof(buf)) >= 0)
            fail_msg("expected \"%s\" not to parse as logfmt", bad[i]);
    /* A decode buffer too small, too many pairs. */
    assert_int_equal(parse("m=\"0123456789\"", kv, buf, 4), -1);
    char many[UTIL_LOGFMT_MAX_PAIRS * 5 + 8] = "";
    for (int i = 0; i <= UTIL_LOGFMT_MAX_PAIRS; i++)
        strcat(many, "k=1 ");
    assert_int_equal(parse(many, kv, buf, sizeof(buf)), -1);

    /* A JSON object, one level: strings quoted, numbers bare, the nested
     * as JSON text, in the order they came. */
    n = parse("{\"ts\":\"t\",\"pid\":42,\"ok\":true,\"r\":1.5,\"o\":{\"a\":[1]},\"s\":\"42\"}",
              kv, buf, sizeof(buf));
    assert_int_equal(n, 6);
    assert_int_equal(util_logfmt_find(kv, n, "ts"), 0);
    expect_pair(kv, n, "pid", "42", 0);
    expect_pair(kv, n, "ok", "true", 0);
    expect_pair(kv, n, "r", "1.5", 0);
    expect_pair(kv, n, "o", "{\"a\":[1]}", 1);
    expect_pair(kv, n, "s", "42", 1);
}

static void test_logfmt_render(void **state)
{
    (void)state;
    util_kv kv[UTIL_LOGFMT_MAX_PAIRS], back[UTIL_LOGFMT_MAX_PAIRS];
    char buf[512], buf2[512], out[512];
    const char *line = "a=1 msg=\"x \\\"y\\\" z\\n\\t\" e=\"\" k=v=w";
    int n = parse(line, kv, buf, sizeof(buf));
    assert_int_equal(n, 4);
    size_t len = util_logfmt_render(out, sizeof(out), kv, n);
    /* Canonical: a value with '=' is quoted (a strict parser wants it). */
    assert_string_equal(out, "a=1 msg=\"x \\\"y\\\" z\\n\\t\" e=\"\" k=\"v=w\"");
    assert_int_equal(len, strlen(out));
    /* What it wrote reads back the same. */
    assert_int_equal(parse(out, back, buf2, sizeof(buf2)), n);
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof(want), "%.*s", (int)kv[i].vlen, kv[i].val);
        assert_int_equal(util_logfmt_find(back, n, want[0] == '1' ? "a" : "zz"),
                         want[0] == '1' ? 0 : -1);
        assert_int_equal(back[i].klen, kv[i].klen);
        assert_memory_equal(back[i].key, kv[i].key, kv[i].klen);
        assert_int_equal(back[i].vlen, kv[i].vlen);
        assert_memory_equal(back[i].val, kv[i].val, kv[i].vlen);
    }
    /* Cut at a pair: never half a pair. */
    len = util_logfmt_render(out, 12, kv, n);
    assert_string_equal(out, "a=1");
    /* JSON cut at a pair, always closed. */
    len = util_logfmt_json(out, 20, kv, n);
    assert_string_equal(out, "{\"a\":1}");
    len = util_logfmt_json(out, 3, kv, n);
    assert_string_equal(out, "{}");
}

/* ---- the supervisor's relay ---- */

static void test_relay(void **state)
{
    (void)state;
    util_log_init("tcpops");
    capture_begin();
    const char *child = "ts=2026-11-28T00:00:00.000Z level=info app=people pid=42 "
                        "msg=listening member=127.0.0.1:4000";
    util_log_relay(child, strlen(child), "worker", "people.1");
    /* A key of that name is replaced, not doubled. */
    const char *dup = "ts=t level=warn app=gateway pid=7 msg=x worker=9 y=\"a b\"";
    util_log_relay(dup, strlen(dup), "worker", "gateway.1");
    /* Not one of our lines: ours, warn, the text quoted. */
    const char *asan = "==42==ERROR: AddressSanitizer: SEGV on unknown address \"x\"";
    util_log_relay(asan, strlen(asan), "worker", "pets.2");
    const char *bare = "a=1 b=2"; /* logfmt, but no ts= first: not a log line of ours */
    util_log_relay(bare, strlen(bare), "worker", "pets.2");
    char *out = capture_end(NULL);
    expect_match(out, "^ts=2026-11-28T00:00:00.000Z level=info app=people worker=people.1 "
                      "pid=42 msg=listening member=127.0.0.1:4000\n");
    expect_match(out, "\nts=t level=warn app=gateway worker=gateway.1 pid=7 msg=x y=\"a b\"\n");
    expect_match(out, "\nts=[^ ]+ level=warn app=tcpops pid=[0-9]+ msg=\"==42==ERROR: "
                      "AddressSanitizer: SEGV on unknown address \\\\\"x\\\\\"\" "
                      "worker=pets.2\n");
    expect_match(out, "\nts=[^ ]+ level=warn app=tcpops pid=[0-9]+ msg=\"a=1 b=2\" "
                      "worker=pets.2\n$");
    free(out);

    /* In JSON, from a logfmt line and from a JSON one alike; a raw line
     * too, whatever the level. */
    util_log_configure(&(util_log_opts){.level = "error", .format = "json"});
    capture_begin();
    util_log_relay(child, strlen(child), "worker", "people.1");
    const char *js = "{\"ts\":\"t\",\"level\":\"info\",\"app\":\"pets\",\"pid\":9,\"msg\":\"m\"}";
    util_log_relay(js, strlen(js), "worker", "pets.1");
    util_log_relay(asan, strlen(asan), "worker", "pets.2");
    out = capture_end(NULL);
    util_log_configure(&(util_log_opts){.level = "info", .format = "logfmt"});
    json_t *lines = json_lines(out);
    assert_int_equal(json_array_size(lines), 3);
    json_t *a = json_array_get(lines, 0);
    assert_string_equal(json_string_value(json_object_get(a, "worker")), "people.1");
    assert_int_equal(json_integer_value(json_object_get(a, "pid")), 42);
    assert_string_equal(json_string_value(json_object_get(a, "member")), "127.0.0.1:4000");
    json_t *b = json_array_get(lines, 1);
    assert_string_equal(json_string_value(json_object_get(b, "worker")), "pets.1");
    assert_string_equal(json_string_value(json_object_get(b, "app")), "pets");
    json_t *c = json_array_get(lines, 2);
    assert_string_equal(json_string_value(json_object_get(c, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(c, "msg")), asan);
    json_decref(lines);
    free(out);
    util_log_init("testapp");
}

/* ---- a crash ---- */

static void crash_segv(void)
{
    /* Not NULL: UBSan would stop a store to NULL itself, before the CPU. */
    volatile uintptr_t nowhere = 64;
    *(volatile int *)nowhere = 1;
}

static void crash_abort(void)
{
    abort();
}

/* A child in buffered mode logs lines and crashes at once: every line is
 * in its stderr, and it died of the crash (or, under ASan, which handles
 * SIGSEGV itself, exited with its report). */
static void expect_crash_flushes(void (*crash)(void), int sig)
{
    int fd = memfd_create("crash", 0);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* As in a program: cmocka's own handlers would catch the crash. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}); /* no core file */
        dup2(fd, STDERR_FILENO);
        util_log_buffered();
        for (int i = 0; i < 100; i++)
            util_log(UTIL_INFO, "before crash", "i=%d", i);
        crash();
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, out, (size_t)n, 0), n);
    close(fd);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == sig) &&
        !(WIFEXITED(status) && WEXITSTATUS(status) != 0))
        fail_msg("expected the child to die of signal %d, got status 0x%x", sig, status);
    int next = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        const char *kv = strstr(line, "msg=\"before crash\" i=");
        if (kv != NULL && atoi(kv + 21) == next)
            next++;
    }
    if (next != 100)
        fail_msg("expected 100 lines logged before signal %d, in order; got %d:\n%.2000s",
                 sig, next, out);
    free(out);
}

static void test_crash_flushes(void **state)
{
    (void)state;
    expect_crash_flushes(crash_segv, SIGSEGV);
    expect_crash_flushes(crash_abort, SIGABRT);
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
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_json_format),
        cmocka_unit_test(test_logfmt_parse),
        cmocka_unit_test(test_logfmt_render),
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_crash_flushes),
        cmocka_unit_test(test_buffered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
