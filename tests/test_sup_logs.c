/* The logs an operator ships, end to end: `tcpops up --detach` writes
 * DIR/tcpops.log where every line parses as logfmt (or, with --log-format
 * json, as a JSON object) with no key twice and worker=APP.N on every
 * worker's line; the request id has one name from the gateway to the
 * service; `tcpops logs` shows the last lines, one app's, and follows the
 * file across logrotate's rename (SIGHUP reopens it) and a truncation; and
 * a gateway that crashes loses none of the lines it buffered. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "proc.h"
#include "rpc/clock.h"
#include "util/logfmt.h"

typedef struct fixture {
    char dir[256];
    char log[300];
    pid_t master;       /* the detached master, 0 before up */
    int gw_port, people_port, pets_port;
    proc follower;      /* a `tcpops logs -f`, pid 0 when none */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->log, sizeof(fx->log), "%s/tcpops.log", fx->dir);
    fx->gw_port = free_port();
    fx->people_port = free_port();
    fx->pets_port = free_port();
    *state = fx;
    return 0;
}

/* Runs `tcpops --data-dir DIR ARGS...` to completion; its exit code, and
 * its stdout in out. */
static int tcpops(fixture *fx, char *out, size_t outlen, ...)
{
    char err[4096], cmd[512];
    va_list ap;
    va_start(ap, outlen);
    int code = proc_run_tool("tcpops", "--data-dir", fx->dir, ap, out, outlen, err, sizeof(err),
                             60000, cmd, sizeof(cmd));
    va_end(ap);
    if (code != 0)
        print_message("tcpops %s: exit %d: %s\n", cmd, code, err);
    return code;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    char out[256];
    if (fx->follower.pid > 0)
        proc_stop(&fx->follower);
    if (fx->master > 0) {
        tcpops(fx, out, sizeof(out), "down", NULL);
        /* down answers once the workers left; the master exits after. */
        int64_t deadline = rpc_now_ms() + 15000;
        while (kill(fx->master, 0) == 0 && rpc_now_ms() < deadline)
            usleep(10 * 1000);
        if (kill(fx->master, 0) == 0)
            kill(fx->master, SIGKILL);
    }
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* `tcpops up --detach` on the fixture's ports with the extra flags given
 * (NULL-terminated), then waits until the gateway is ready. */
static void up(fixture *fx, ...)
{
    char bin[512], gw[64], people[64], pets[64], out[1024], err[4096];
    char *argv[24];
    int n = 0;
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    argv[n++] = (char *)proc_bin("tcpops", bin, sizeof(bin));
    argv[n++] = "up";
    argv[n++] = "--detach";
    argv[n++] = "--data-dir";
    argv[n++] = fx->dir;
    argv[n++] = "--gateway";
    argv[n++] = gw;
    argv[n++] = "--people";
    argv[n++] = people;
    argv[n++] = "--pets";
    argv[n++] = pets;
    va_list ap;
    va_start(ap, fx);
    for (char *a; n < 23 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 30000);
    const char *pid = strstr(out, "(pid ");
    if (code != 0 || pid == NULL)
        fail_msg("tcpops up --detach: expected exit 0 and its pid, got %d: %s %s", code, out,
                 err);
    fx->master = (pid_t)atoi(pid + 5);
    for (int64_t deadline = rpc_now_ms() + 20000; rpc_now_ms() < deadline;) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", "/readyz", NULL, NULL, &r) == 0) {
            int ok = r.status == 200;
            http_resp_free(&r);
            if (ok)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("tcpops up: the gateway was not ready within 20 s (log in %s)", fx->log);
}

/* The whole file at path (malloc'd, NUL-terminated), "" when missing. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = NULL;
    size_t n = 0;
    if (f == NULL)
        return strdup("");
    s = malloc(1);
    for (char buf[65536];;) {
        size_t r = fread(buf, 1, sizeof(buf), f);
        if (r == 0)
            break;
        s = realloc(s, n + r + 1);
        memcpy(s + n, buf, r);
        n += r;
    }
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Waits up to timeout_ms for a line of the log holding every one of the
 * NULL-terminated strings; 1 when one came. */
static int wait_log(fixture *fx, int timeout_ms, ...)
{
    for (int64_t deadline = rpc_now_ms() + timeout_ms;;) {
        char *all = slurp(fx->log);
        int found = 0;
        for (char *line = all, *nl; !found && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
            *nl = '\0';
            va_list ap;
            va_start(ap, timeout_ms);
            found = 1;
            for (const char *s; found && (s = va_arg(ap, const char *)) != NULL;)
                found = strstr(line, s) != NULL;
            va_end(ap);
        }
        free(all);
        if (found)
            return 1;
        if (rpc_now_ms() > deadline)
            return 0;
        usleep(10 * 1000);
    }
}

static void get(fixture *fx, const char *path, const char *headers, int want)
{
    http_resp r;
    assert_int_equal(http_once(fx->gw_port, "GET", path, headers, NULL, &r), 0);
    if (r.status != want)
        fail_msg("GET %s: expected %d, got %d", path, want, r.status);
    http_resp_free(&r);
}

/* The value of key in a parsed line, as a string in buf ("" when absent). */
static const char *value(const util_kv *kv, int n, const char *key, char *buf, size_t len)
{
    int i = util_logfmt_find(kv, n, key);
    snprintf(buf, len, "%.*s", i >= 0 ? (int)kv[i].vlen : 0, i >= 0 ? kv[i].val : "");
    return buf;
}

/* Every line of the log parses (logfmt or JSON as asked), starts with ts,
 * has level and msg, no key twice; a worker's own lines (app= not tcpops)
 * carry worker=APP.N. Returns how many lines were worker lines. */
static int check_lines(fixture *fx, int json)
{
    char *all = slurp(fx->log);
    int lines = 0, relayed = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        util_kv kv[UTIL_LOGFMT_MAX_PAIRS];
        char buf[8192], app[64], worker[64];
        *nl = '\0';
        lines++;
        if (json && line[0] != '{')
            fail_msg("line %d: expected a JSON object, got: %s", lines, line);
        int n = util_logfmt_parse(line, strlen(line), kv, UTIL_LOGFMT_MAX_PAIRS, buf,
                                  sizeof(buf));
        if (n < 0 || util_logfmt_find(kv, n, "ts") != 0 ||
            util_logfmt_find(kv, n, "level") < 0 || util_logfmt_find(kv, n, "msg") < 0)
            fail_msg("line %d: expected a log line (ts=, level=, msg=), got: %s", lines, line);
        for (int i = 0; i < n; i++)
            for (int k = i + 1; k < n; k++)
                if (kv[i].klen == kv[k].klen && memcmp(kv[i].key, kv[k].key, kv[i].klen) == 0)
                    fail_msg("line %d: key %.*s twice: %s", lines, (int)kv[i].klen, kv[i].key,
                             line);
        value(kv, n, "app", app, sizeof(app));
        value(kv, n, "worker", worker, sizeof(worker));
        if (strcmp(app, "tcpops") != 0) {
            char want[80];
            snprintf(want, sizeof(want), "%s.", app);
            if (strncmp(worker, want, strlen(want)) != 0)
                fail_msg("line %d: expected worker=%sN on a line of %s, got: %s", lines, want,
                         app, line);
            relayed++;
        }
    }
    free(all);
    return relayed;
}

/* ---- the lines ---- */

static void test_relayed_lines_are_logfmt(void **state)
{
    fixture *fx = *state;
    up(fx, "--gateway-args", "--threads=8", "--people-args", "--log-calls", NULL);
    get(fx, "/people/pets?owner=nobody", "X-Request-Id: trace-42\r\nUser-Agent: t est/1\r\n",
        404);
    /* The same id, by the same name, on the gateway's access line and on
     * the service's line for the call it caused. */
    if (!wait_log(fx, 10000, "app=gateway", "msg=request", "request_id=trace-42", NULL))
        fail_msg("expected the gateway's access line with request_id=trace-42 in %s", fx->log);
    if (!wait_log(fx, 10000, "app=people", "msg=call", "request_id=trace-42", NULL))
        fail_msg("expected people's call line with request_id=trace-42 in %s", fx->log);
    assert_true(wait_log(fx, 1, "msg=request", "remote=127.0.0.1:", "method=GET",
                         "path=\"/people/pets?owner=nobody\"", "status=404", "bytes=",
                         "dur_us=", "ua=\"t est/1\"", "worker=gateway.1", NULL));
    /* The master's own lines name a worker as worker=APP.N too. */
    assert_true(wait_log(fx, 1, "app=tcpops", "msg=started", "worker=people.1", NULL));
    if (check_lines(fx, 0) < 3)
        fail_msg("expected lines from the workers in %s", fx->log);
}

static void test_json_lines(void **state)
{
    fixture *fx = *state;
    up(fx, "--log-format", "json", "--gateway-args", "--threads=8", NULL);
    get(fx, "/healthz", "X-Request-Id: j-1\r\n", 200);
    assert_true(wait_log(fx, 10000, "\"msg\":\"request\"", "\"request_id\":\"j-1\"",
                         "\"status\":200", "\"worker\":\"gateway.1\"", NULL));
    check_lines(fx, 1);
    /* tcpops logs reads them as well. */
    char out[8192];
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "gateway", "-n", "1", NULL), 0);
    if (strstr(out, "\"worker\":\"gateway.1\"") == NULL)
        fail_msg("tcpops logs gateway -n 1: expected the gateway's last JSON line, got: %s",
                 out);
}

/* ---- tcpops logs ---- */

/* The last n lines of the file, or of the lines with worker=app. */
static void last_lines(fixture *fx, const char *app, int n, char *out, size_t len)
{
    char *all = slurp(fx->log);
    char *lines[4096];
    int k = 0;
    for (char *line = all, *nl; k < 4096 && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char want[64];
        snprintf(want, sizeof(want), " worker=%s.", app != NULL ? app : "");
        nl[0] = '\0';
        if (app == NULL || strstr(line, want) != NULL)
            lines[k++] = line;
        nl[0] = '\n';
    }
    out[0] = '\0';
    for (int i = k > n ? k - n : 0; i < k; i++) {
        size_t l = (size_t)(strchr(lines[i], '\n') - lines[i]) + 1;
        strncat(out, lines[i], l < len - strlen(out) - 1 ? l : len - strlen(out) - 1);
    }
    free(all);
}

static off_t log_size(fixture *fx)
{
    struct stat st;
    return stat(fx->log, &st) == 0 ? st.st_size : -1;
}

/* Runs `tcpops logs ARGS...` (NULL-terminated, at most 4) and expects what
 * last_lines(app, n) reads from the file; the workers may log meanwhile,
 * so a run during which the file grew is done again. */
static void expect_logs(fixture *fx, const char *app, int n, ...)
{
    static char out[65536], want[65536];
    const char *a[4] = {NULL};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < 4 && (a[i] = va_arg(ap, const char *)) != NULL; i++)
        ;
    va_end(ap);
    for (int64_t deadline = rpc_now_ms() + 10000;;) {
        off_t before = log_size(fx);
        assert_int_equal(tcpops(fx, out, sizeof(out), "logs", a[0], a[1], a[2], a[3], NULL), 0);
        last_lines(fx, app, n, want, sizeof(want));
        if (log_size(fx) != before && rpc_now_ms() < deadline)
            continue;
        if (strcmp(out, want) != 0)
            fail_msg("tcpops logs %s %s %s: expected the file's last %d lines%s%s:\n%s\ngot:\n%s",
                     a[0] ? a[0] : "", a[1] ? a[1] : "", a[2] ? a[2] : "", n,
                     app ? " of " : "", app ? app : "", want, out);
        return;
    }
}

static void test_logs_command(void **state)
{
    fixture *fx = *state;
    up(fx, "--workers", "people=2", NULL);
    char out[1024];
    get(fx, "/healthz", NULL, 200);
    expect_logs(fx, NULL, 3, "-n", "3", NULL);
    expect_logs(fx, "people", 4, "people", "--lines=4", NULL);
    expect_logs(fx, NULL, 20, NULL); /* the default */
    expect_logs(fx, "pets", 100000, "-n", "100000", "pets", NULL); /* all there are */
    expect_logs(fx, NULL, 0, "-n", "0", NULL);
    /* Wrong words are usage errors. */
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "cats", NULL), 2);
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "-n", "x", NULL), 2);
    assert_int_equal(tcpops(fx, out, sizeof(out), "logs", "people", "pets", NULL), 2);
}

/* Reads the follower's output until it holds want; fails after 10 s. */
static void follower_shows(fixture *fx, char *buf, size_t cap, size_t *n, const char *want)
{
    if (http_read_until(fx->follower.out_fd, buf, cap, n, want, 10000) < 0)
        fail_msg("tcpops logs -f: expected a line with %s, got so far:\n%s", want, buf);
}

/* -f across logrotate without copytruncate (rename, then SIGHUP: the master
 * reopens DIR/tcpops.log) and with it (the file cut to 0). */
static void test_follow_rotation_and_truncation(void **state)
{
    fixture *fx = *state;
    up(fx, "--gateway-args", "--threads=8", NULL);
    char bin[512], dir_flag[300];
    snprintf(dir_flag, sizeof(dir_flag), "--data-dir=%s", fx->dir);
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "logs", "gateway", "-f",
                    "-n", "0", dir_flag, NULL};
    assert_int_equal(proc_start(&fx->follower, argv, 0), 0);
    static char seen[1 << 20];
    size_t n = 0;
    seen[0] = '\0';
    /* New lines come; -n 0 showed none of the old ones. A request made
     * before the follower found the end of the file would not show: ask
     * again until one does. */
    int live = 0;
    for (int i = 0; i < 50 && !live; i++) {
        char hdr[64];
        snprintf(hdr, sizeof(hdr), "X-Request-Id: before-rotate-%d\r\n", i);
        get(fx, "/healthz", hdr, 200);
        live = http_read_until(fx->follower.out_fd, seen, sizeof(seen), &n,
                               "request_id=before-rotate-", 200) == 0;
    }
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=before-rotate-");
    assert_null(strstr(seen, "msg=listening"));
    assert_null(strstr(seen, "app=tcpops")); /* only the gateway's */

    /* logrotate: rename, then HUP. */
    char rotated[400];
    snprintf(rotated, sizeof(rotated), "%s.1", fx->log);
    assert_int_equal(rename(fx->log, rotated), 0);
    assert_int_equal(kill(fx->master, SIGHUP), 0);
    if (!wait_log(fx, 10000, "msg=\"reopened log\"", NULL))
        fail_msg("expected the master to reopen %s after SIGHUP", fx->log);
    get(fx, "/healthz", "X-Request-Id: after-rotate\r\n", 200);
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=after-rotate");
    /* The new file has the new line, the old one kept what it had. */
    assert_true(wait_log(fx, 10000, "request_id=after-rotate", NULL));
    char *old = slurp(rotated);
    assert_non_null(strstr(old, "request_id=before-rotate"));
    assert_null(strstr(old, "request_id=after-rotate"));
    free(old);

    /* copytruncate: the file cut to nothing, then written again. */
    assert_int_equal(truncate(fx->log, 0), 0);
    get(fx, "/healthz", "X-Request-Id: after-truncate\r\n", 200);
    follower_shows(fx, seen, sizeof(seen), &n, "request_id=after-truncate");
}

/* ---- a crash ---- */

/* The gateway buffers its lines (50 ms); killed by SIGSEGV right after its
 * answers, it still writes every access line before it dies of it. */
static void test_crash_loses_no_line(void **state)
{
    fixture *fx = *state;
    char bin[512], listen[64], logpath[400];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->gw_port);
    snprintf(logpath, sizeof(logpath), "%s/gateway.log", fx->dir);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--threads", "4", NULL};
    proc gw;
    assert_int_equal(proc_start_logged(&gw, argv, logpath), 0);
    assert_int_equal(wait_port(fx->gw_port, 10000), 0);
    http_conn c = {.fd = -1, .port = fx->gw_port};
    enum { REQUESTS = 50 };
    /* On one keep-alive connection: civetweb reads a request once the
     * handler of the one before has returned, access line logged, so the
     * answer to the last (uncounted) one says every counted line is in. */
    for (int i = 0; i <= REQUESTS; i++) {
        char hdr[64];
        http_resp r;
        snprintf(hdr, sizeof(hdr), "X-Request-Id: crash-%d\r\n", i);
        assert_int_equal(http_do(&c, "GET", "/healthz", hdr, NULL, 0, &r, 5000), 0);
        http_resp_free(&r);
    }
    proc_signal(&gw, SIGSEGV);
    http_close(&c);
    int code = proc_wait(&gw, 10000);
    if (code != 128 + SIGSEGV && code != 1) /* 1: ASan reports the signal and exits */
        fail_msg("expected the gateway to die of SIGSEGV (exit 139), got %d", code);
    char *all = slurp(logpath);
    int found = 0;
    for (int i = 0; i < REQUESTS; i++) {
        char want[64];
        snprintf(want, sizeof(want), "request_id=crash-%d\n", i);
        found += strstr(all, want) != NULL;
    }
    if (found != REQUESTS)
        fail_msg("expected all %d access lines logged before the crash, found %d:\n%s",
                 REQUESTS, found, all);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relayed_lines_are_logfmt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_rotation_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_loses_no_line, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
