/* The gateway's status page (GET /) in a real browser: the whole system
 * under `tcpops up` on free ports, headless Chromium driven by chromedriver
 * over the W3C WebDriver protocol (JSON over HTTP). The page lists every
 * worker; one killed -9 leaves it (gone, or down) and its replacement comes
 * in under a new pid with a restart line; a screenshot of the page goes to
 * the build directory (status-page.png). Skipped where chromium or
 * chromedriver is missing (exit 77; under CI that fails). */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "proc.h"
#include "rpc/clock.h"

#define CHROMIUM "/usr/bin/chromium"
#define CHROMEDRIVER "/usr/bin/chromedriver"
#define SETSID "/usr/bin/setsid"
#define ENV "/usr/bin/env"

/* Generous: Chromium starting on a busy machine, and a page polling once a
 * second. Each wait ends as soon as what it waits for is there. */
#define WAIT_MS 45000

typedef struct fixture {
    char dir[256];
    char log[300];          /* tcpops up's stderr */
    char driver_log[300];   /* chromedriver --log-path */
    proc master, driver;
    int gw_port, people_port, pets_port, driver_port;
    char session[128];      /* the WebDriver session, "" when none */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->log, sizeof(fx->log), "%s/master.log", fx->dir);
    snprintf(fx->driver_log, sizeof(fx->driver_log), "%s/chromedriver.log", fx->dir);
    fx->gw_port = free_port();
    fx->people_port = free_port();
    fx->pets_port = free_port();
    fx->driver_port = free_port();
    *state = fx;
    return 0;
}

/* ---- WebDriver ---- */

/* One WebDriver command: METHOD /session/ID/PATH (PATH alone without a
 * session), with body as JSON (consumed; NULL sends none). Returns the
 * answer's "value" (the caller json_decref's it), or NULL with err filled
 * (WebDriver's error and message, or what went wrong on the way). */
static json_t *wd_try(fixture *fx, const char *method, const char *path, json_t *body,
                      int timeout_ms, char *err, size_t errlen)
{
    char url[512];
    if (fx->session[0] != '\0')
        snprintf(url, sizeof(url), "/session/%s%s", fx->session, path);
    else
        snprintf(url, sizeof(url), "%s", path);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    http_conn c = {.fd = -1, .port = fx->driver_port};
    http_resp r;
    int rc = http_do(&c, method, url, "Content-Type: application/json; charset=utf-8\r\n", text,
                     text != NULL ? strlen(text) : 0, &r, timeout_ms);
    http_close(&c);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "%s %s: no answer from chromedriver (refused, closed, or none "
                 "within %d ms)", method, url, timeout_ms);
        return NULL;
    }
    json_error_t je;
    json_t *doc = json_loads(r.body, 0, &je);
    json_t *value = json_incref(json_object_get(doc, "value"));
    json_decref(doc);
    if (r.status != 200 || value == NULL) {
        const char *e = json_string_value(json_object_get(value, "error"));
        const char *m = json_string_value(json_object_get(value, "message"));
        snprintf(err, errlen, "%s %s: expected 200 with a value, got %d %s: %.600s", method, url,
                 r.status, e != NULL ? e : "", m != NULL ? m : r.body);
        json_decref(value);
        value = NULL;
    }
    http_resp_free(&r);
    return value;
}

/* wd_try that fails the test on an error. */
static json_t *wd(fixture *fx, const char *method, const char *path, json_t *body)
{
    char err[2048];
    json_t *v = wd_try(fx, method, path, body, 60000, err, sizeof(err));
    if (v == NULL)
        fail_msg("WebDriver: %s (chromedriver's log: %s)", err, fx->driver_log);
    return v;
}

/* The process group of pid (from /proc/PID/stat), or -1. */
static int pgid_of(int pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'. */
    const char *p = strrchr(buf, ')');
    int ppid, pgrp;
    char st;
    if (p == NULL || sscanf(p + 1, " %c %d %d", &st, &ppid, &pgrp) != 3)
        return -1;
    if (state != NULL)
        *state = st;
    return pgrp;
}

/* Whether process pid is a Chromium program (its binary under
 * /usr/lib/chromium/) whose command line names dir. */
static int chromium_of(int pid, const char *dir)
{
    char path[64], exe[256], cmd[8192];
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    if (strncmp(exe, "/usr/lib/chromium/", 18) != 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t len = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        cmd[i] = cmd[i] == '\0' ? ' ' : cmd[i];
    cmd[len] = '\0';
    return strstr(cmd, dir) != NULL;
}

/* Processes the browser left alive: chromedriver's group, and Chromium's
 * crash handlers, which start sessions of their own but keep their
 * database in the test's HOME (start_driver). Zombies are not counted:
 * they hold nothing but their pid until reaped. The first few pids go into
 * list. */
static int browser_alive(fixture *fx, int pgid, char *list, size_t len)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    size_t used = 0;
    list[0] = '\0';
    while (d != NULL && (e = readdir(d)) != NULL) {
        int pid = atoi(e->d_name);
        char st = 0;
        int group = pid > 0 ? pgid_of(pid, &st) : -1;
        if (group < 0 || st == 'Z' || (group != pgid && !chromium_of(pid, fx->dir)))
            continue;
        n++;
        if (used + 16 < len)
            used += (size_t)snprintf(list + used, len - used, " %d", pid);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/* Starts chromedriver on its port in a process group of its own (env and
 * setsid exec it in place: the child is no group leader), so that teardown
 * can reach every Chromium process it starts; HOME and the XDG directories
 * in the test's directory, so that Chromium writes nothing outside it. */
static void start_driver(fixture *fx)
{
    char port[32], logp[320], home[300], config[320], cache[320];
    snprintf(port, sizeof(port), "--port=%d", fx->driver_port);
    snprintf(logp, sizeof(logp), "--log-path=%s", fx->driver_log);
    snprintf(home, sizeof(home), "HOME=%s", fx->dir);
    snprintf(config, sizeof(config), "XDG_CONFIG_HOME=%s/config", fx->dir);
    snprintf(cache, sizeof(cache), "XDG_CACHE_HOME=%s/cache", fx->dir);
    char *argv[] = {ENV, home, config, cache, SETSID, CHROMEDRIVER, port, logp, NULL};
    assert_int_equal(proc_start(&fx->driver, argv, 0), 0);
    if (wait_port(fx->driver_port, WAIT_MS) < 0)
        fail_msg("chromedriver: expected it to listen on %d within %d ms (log: %s)",
                 fx->driver_port, WAIT_MS, fx->driver_log);
    int pgid = pgid_of(fx->driver.pid, NULL);
    if (pgid != fx->driver.pid)
        fail_msg("chromedriver (pid %d): expected a process group of its own, got %d",
                 fx->driver.pid, pgid);
}

/* A headless Chromium session; its profile in the test's directory. */
static void start_session(fixture *fx)
{
    char profile[320];
    snprintf(profile, sizeof(profile), "--user-data-dir=%s/chromium", fx->dir);
    json_t *caps = json_pack(
        "{s:{s:{s:s,s:{s:s,s:[s,s,s,s,s,s,s]}}}}", "capabilities", "alwaysMatch",
        "browserName", "chrome", "goog:chromeOptions", "binary", CHROMIUM, "args",
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1300", "--no-first-run", profile);
    json_t *v = wd(fx, "POST", "/session", caps);
    const char *id = json_string_value(json_object_get(v, "sessionId"));
    if (id == NULL || strlen(id) >= sizeof(fx->session))
        fail_msg("POST /session: expected a sessionId, got %s",
                 json_dumps(v, JSON_COMPACT));
    snprintf(fx->session, sizeof(fx->session), "%s", id);
    json_decref(v);
}

/* Ends the session (Chromium quits) and chromedriver; then makes sure that
 * no process of the browser outlives the test. 0, or -1 when one did (it
 * is killed, and named). */
static int stop_browser(fixture *fx)
{
    char err[2048], left[256];
    if (fx->session[0] != '\0') {
        json_t *v = wd_try(fx, "DELETE", "", NULL, 30000, err, sizeof(err));
        if (v == NULL)
            print_message("deleting the WebDriver session: %s\n", err);
        json_decref(v);
        fx->session[0] = '\0';
    }
    if (fx->driver.pid <= 0)
        return 0;
    int pgid = fx->driver.pid;
    /* Chromium's last processes leave a moment after the session. */
    int64_t deadline = rpc_now_ms() + 10000;
    while (browser_alive(fx, pgid, left, sizeof(left)) > 1 && rpc_now_ms() < deadline)
        usleep(50 * 1000);
    proc_stop_gracefully(&fx->driver, 5000);
    int survivors = browser_alive(fx, pgid, left, sizeof(left));
    if (survivors > 0) {
        print_message("the browser: %d processes outlived chromedriver:%s; killing them\n",
                      survivors, left);
        kill(-pgid, SIGKILL);
        for (char *p = left; *p != '\0';) {
            long pid = strtol(p, &p, 10);
            if (pid > 0)
                kill((pid_t)pid, SIGKILL);
        }
        deadline = rpc_now_ms() + 10000;
        while (browser_alive(fx, pgid, left, sizeof(left)) > 0 && rpc_now_ms() < deadline)
            usleep(50 * 1000);
    }
    return survivors > 0 ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int rc = stop_browser(fx);
    proc_stop_gracefully(&fx->master, 15000); /* the workers leave with the master */
    rm_rf(fx->dir);
    free(fx);
    return rc;
}

/* ---- the system ---- */

static void up(fixture *fx)
{
    char bin[512], gw[64], people[64], pets[64];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "up", "--data-dir", fx->dir,
                    "--gateway", gw, "--people", people, "--pets", pets,
                    "--workers", "people=2,pets=1",
                    "--gateway-args", "--access-log=false --threads=32", NULL};
    assert_int_equal(proc_start_logged(&fx->master, argv, fx->log), 0);
    int64_t deadline = rpc_now_ms() + WAIT_MS;
    int status = 0;
    while (rpc_now_ms() < deadline) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", "/readyz", NULL, NULL, &r) == 0) {
            status = r.status;
            http_resp_free(&r);
            if (status == 200)
                return;
        }
        usleep(50 * 1000);
    }
    fail_msg("tcpops up: expected /readyz 200 within %d ms, last %d (log in %s)", WAIT_MS,
             status, fx->log);
}

/* The pids of app's running workers from `tcpops ps --json`; returns how
 * many (at most max), -1 when ps failed. */
static int running_pids(fixture *fx, const char *app, int *pids, int max)
{
    char bin[512], out[16384], err[2048];
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "--data-dir", fx->dir, "ps",
                    "--json", NULL};
    int n = 0;
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 30000);
    if (code != 0) {
        print_message("tcpops ps --json: exit %d: %s\n", code, err);
        return -1;
    }
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je), *w;
    size_t i;
    json_array_foreach(json_object_get(doc, "workers"), i, w) {
        const char *a = json_string_value(json_object_get(w, "app"));
        const char *st = json_string_value(json_object_get(w, "state"));
        json_t *pid = json_object_get(w, "pid");
        if (a != NULL && strcmp(a, app) == 0 && st != NULL && strcmp(st, "running") == 0 &&
            json_is_integer(pid) && n < max)
            pids[n++] = (int)json_integer_value(pid);
    }
    json_decref(doc);
    return n;
}

/* Waits until app has n running workers (the pids into pids), or fails. */
static void wait_running(fixture *fx, const char *app, int *pids, int n, int not_pid)
{
    int got = 0;
    int64_t deadline = rpc_now_ms() + WAIT_MS;
    while (rpc_now_ms() < deadline) {
        got = running_pids(fx, app, pids, n);
        if (got == n && pids[0] != not_pid)
            return;
        usleep(50 * 1000);
    }
    fail_msg("tcpops ps: expected %d running %s workers%s, saw %d", n, app,
             not_pid > 0 ? " (a new pid)" : "", got);
}

/* ---- the page ---- */

/* What the page shows, a line each: "polls N" (times it has refreshed),
 * "member SERVICE PID STATE" per worker row as its cells read, and
 * "event KIND SERVICE PID [NEWPID]" per line under Recent restarts. */
static const char PAGE_STATE_JS[] =
    "var out = ['polls ' + (document.body.dataset.polls || '0')];"
    "document.querySelectorAll('tr.member').forEach(function (r) {"
    "  var card = r.closest('.card');"
    "  out.push(['member', card.querySelector('h3 .name').textContent,"
    "            r.cells[1].textContent, r.cells[2].firstChild.textContent].join(' '));"
    "});"
    "document.querySelectorAll('li.event').forEach(function (e) {"
    "  var d = e.dataset;"
    "  out.push(['event', d.kind, d.service].concat(d.kind === 'restart'"
    "           ? [d.oldPid, d.newPid] : [d.pid]).join(' '));"
    "});"
    "return '\\n' + out.join('\\n') + '\\n';";

static void page_state(fixture *fx, char *buf, size_t len)
{
    json_t *v = wd(fx, "POST", "/execute/sync",
                   json_pack("{s:s,s:[]}", "script", PAGE_STATE_JS, "args"));
    const char *s = json_string_value(v);
    snprintf(buf, len, "%s", s != NULL ? s : "");
    json_decref(v);
}

/* Whether the page state holds line want; a want that ends with a space is
 * the start of a line. */
static int shows(const char *st, const char *want)
{
    char needle[160];
    size_t n = strlen(want);
    snprintf(needle, sizeof(needle), "\n%s%s", want, n > 0 && want[n - 1] == ' ' ? "" : "\n");
    return strstr(st, needle) != NULL;
}

/* A little traffic, so the page has rates and latencies to draw: bounded,
 * one call per wait step. */
static void traffic(fixture *fx)
{
    static const char *const paths[] = {"/people/pets?owner=bob", "/people", "/people?limit=1"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", paths[i], NULL, NULL, &r) == 0)
            http_resp_free(&r);
    }
}

/* Waits until the page shows every line of want and none of unwanted
 * (both NULL-terminated, may be NULL); st gets what it showed last. */
static void wait_page(fixture *fx, const char *const *want, const char *const *unwanted,
                      const char *what, char *st, size_t len)
{
    int64_t deadline = rpc_now_ms() + WAIT_MS;
    for (;;) {
        page_state(fx, st, len);
        int ok = 1;
        for (size_t i = 0; ok && want != NULL && want[i] != NULL; i++)
            ok = shows(st, want[i]);
        for (size_t i = 0; ok && unwanted != NULL && unwanted[i] != NULL; i++)
            ok = !shows(st, unwanted[i]);
        if (ok)
            return;
        if (rpc_now_ms() >= deadline)
            fail_msg("the page: expected %s within %d ms; it showed:%s(no member rows at all: "
                     "did its script run? the gateway's log is in %s)",
                     what, WAIT_MS, st, fx->log);
        traffic(fx);
        usleep(100 * 1000);
    }
}

static long polls(const char *st)
{
    const char *p = strstr(st, "\npolls ");
    return p != NULL ? atol(p + 7) : 0;
}

/* WebDriver's screenshot (base64 PNG) of the page, written to path. */
static void screenshot(fixture *fx, const char *path)
{
    json_t *v = wd(fx, "GET", "/screenshot", NULL);
    const char *b64 = json_string_value(v);
    size_t n = b64 != NULL ? strlen(b64) : 0;
    unsigned char *png = malloc(n / 4 * 3 + 4);
    assert_non_null(png);
    int len = n > 0 && n % 4 == 0 ? EVP_DecodeBlock(png, (const unsigned char *)b64, (int)n) : -1;
    /* EVP_DecodeBlock counts the bytes the padding stands for. */
    for (size_t i = n; len > 0 && i > 0 && b64[i - 1] == '='; i--)
        len--;
    if (len < 8 || memcmp(png, "\x89PNG\r\n\x1a\n", 8) != 0)
        fail_msg("GET /screenshot: expected a base64 PNG, got %zu characters: %.60s", n,
                 b64 != NULL ? b64 : "(not a string)");
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(png, 1, (size_t)len, f) != (size_t)len || fclose(f) != 0)
        fail_msg("%s: cannot write the screenshot: %s", path, strerror(errno));
    print_message("status page screenshot: %s (%d bytes)\n", path, len);
    free(png);
    json_decref(v);
}

static void test_status_page(void **state)
{
    fixture *fx = *state;
    char st[16384], url[64], people_up[2][64], pets_up[64], new_up[64], old_row[64];
    char restart[96];
    int people[2], pets[1], fresh[1];

    up(fx);
    wait_running(fx, "people", people, 2, 0);
    wait_running(fx, "pets", pets, 1, 0);
    start_driver(fx);
    start_session(fx);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", fx->gw_port);
    json_decref(wd(fx, "POST", "/url", json_pack("{s:s}", "url", url)));
    json_t *title = wd(fx, "GET", "/title", NULL);
    if (!json_is_string(title) || strcmp(json_string_value(title), "tcpops status") != 0)
        fail_msg("GET %s: expected the title \"tcpops status\", got %s", url,
                 json_is_string(title) ? json_string_value(title) : "(none)");
    json_decref(title);

    for (int i = 0; i < 2; i++)
        snprintf(people_up[i], sizeof(people_up[i]), "member people %d up", people[i]);
    snprintf(pets_up, sizeof(pets_up), "member pets %d up", pets[0]);
    wait_page(fx, (const char *const[]){people_up[0], people_up[1], pets_up, NULL}, NULL,
              "every worker up (people and pets)", st, sizeof(st));

    /* kill -9 the only pets worker: the page shows it down or gone, then
     * the supervisor's new worker up in its place. */
    if (kill(pets[0], SIGKILL) != 0)
        fail_msg("kill -9 %d (pets): %s", pets[0], strerror(errno));
    wait_page(fx, NULL, (const char *const[]){pets_up, NULL},
              "the killed pets worker no longer up", st, sizeof(st));
    snprintf(old_row, sizeof(old_row), "member pets %d ", pets[0]);
    print_message("after kill -9 %d, the page showed it %s\n", pets[0],
                  shows(st, old_row) ? "down" : "gone");

    wait_running(fx, "pets", fresh, 1, pets[0]);
    snprintf(new_up, sizeof(new_up), "member pets %d up", fresh[0]);
    snprintf(restart, sizeof(restart), "event restart pets %d %d", pets[0], fresh[0]);
    wait_page(fx, (const char *const[]){new_up, restart, people_up[0], people_up[1], NULL},
              (const char *const[]){old_row, NULL},
              "the new pets worker up, the killed one gone, a restart line", st, sizeof(st));

    /* A few more refreshes for the charts, then the picture. */
    long from = polls(st);
    int64_t deadline = rpc_now_ms() + WAIT_MS;
    while (polls(st) < from + 5 && rpc_now_ms() < deadline) {
        traffic(fx);
        usleep(100 * 1000);
        page_state(fx, st, sizeof(st));
    }
    if (polls(st) < from + 5)
        fail_msg("the page: expected 5 more refreshes within %d ms, saw %ld", WAIT_MS,
                 polls(st) - from);
    screenshot(fx, TCPOPS_BUILD_DIR "/status-page.png");
}

/* Where the browser can run at all. */
static int browser_available(char *why, size_t len)
{
    const char *need[] = {CHROMIUM, CHROMEDRIVER, SETSID, ENV};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (access(need[i], X_OK) != 0) {
            snprintf(why, len, "%s: %s (scripts/deps.sh installs chromium and chromium-driver)",
                     need[i], strerror(errno));
            return 0;
        }
    return 1;
}

int main(void)
{
    char why[300];
    if (!browser_available(why, sizeof(why))) {
        /* CI must run it: there a missing browser fails. */
        int in_ci = proc_in_ci();
        printf("test_statuspage: %s: %s\n", in_ci ? "cannot run under CI" : "skipped", why);
        return in_ci ? 1 : 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_page, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
