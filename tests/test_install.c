/* `cmake --install` (what `make install PREFIX=...` runs) into a temporary
 * prefix: every file lands where README's "Install" says, the unit's
 * ExecStart names the installed tcpops (and passes systemd-analyze verify
 * through test_deploy.sh), DESTDIR stages without changing that, and the
 * installed tcpops serves with the build directory nowhere on PATH, running
 * the programs beside it. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "http_client.h"
#include "proc.h"

static const char *const programs[] = {"tcpops", "tcpops-gateway", "tcpops-people",
                                       "tcpops-pets", "tcpops-cli"};
#define NPROGRAMS (sizeof(programs) / sizeof(programs[0]))

typedef struct fixture {
    char dir[256];
    char prefix[300];
    char data[300];
    char log[300];
    char *saved_path;
    proc master;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->prefix, sizeof(fx->prefix), "%s/prefix", fx->dir);
    snprintf(fx->data, sizeof(fx->data), "%s/var", fx->dir);
    snprintf(fx->log, sizeof(fx->log), "%s/master.log", fx->dir);
    const char *path = getenv("PATH");
    fx->saved_path = strdup(path != NULL ? path : "/usr/bin:/bin");
    fx->master.pid = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->master.pid > 0)
        proc_stop_gracefully(&fx->master, 15000); /* the workers leave with it */
    setenv("PATH", fx->saved_path, 1);
    unsetenv("DESTDIR");
    free(fx->saved_path);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* cmake --install BUILD --prefix prefix; fails the test unless it exits 0. */
static void install_into(const char *prefix)
{
    char out[16384], err[4096];
    char *argv[] = {TCPOPS_CMAKE, "--install", TCPOPS_BUILD_DIR, "--prefix", (char *)prefix,
                    NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 120000);
    if (code != 0)
        fail_msg("cmake --install %s --prefix %s: expected exit 0, got %d: %s%s",
                 TCPOPS_BUILD_DIR, prefix, code, out, err);
}

/* Fails unless root/rel exists (and is executable, when exec). */
static void expect_file(const char *root, const char *rel, int exec)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (access(path, exec ? X_OK : R_OK) != 0)
        fail_msg("expected %s to be installed%s; it is not there", path,
                 exec ? " (executable)" : "");
}

/* Fails unless the unit at root/lib/systemd/system/tcpops.service starts
 * bindir/tcpops. */
static void expect_unit_runs(const char *root, const char *bindir)
{
    char path[PATH_MAX], want[PATH_MAX + 64], line[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/lib/systemd/system/tcpops.service", root);
    snprintf(want, sizeof(want), "ExecStart=%s/tcpops up --config /etc/tcpops/tcpops.ini\n",
             bindir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("expected the unit at %s; it is not there", path);
    int found = 0;
    char seen[PATH_MAX + 64] = "(no ExecStart line)";
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "ExecStart=", 10) == 0)
            snprintf(seen, sizeof(seen), "%s", line);
        found |= strcmp(line, want) == 0;
    }
    fclose(f);
    if (!found)
        fail_msg("%s: expected \"%s\", got \"%s\"", path, want, seen);
}

static void test_install_puts_every_file_in_place(void **state)
{
    fixture *fx = *state;
    char rel[512], bindir[PATH_MAX - 16];
    install_into(fx->prefix);
    for (size_t i = 0; i < NPROGRAMS; i++) {
        snprintf(rel, sizeof(rel), "bin/%s", programs[i]);
        expect_file(fx->prefix, rel, 1);
#ifdef TCPOPS_HAVE_MAN
        snprintf(rel, sizeof(rel), "share/man/man1/%s.1", programs[i]);
        expect_file(fx->prefix, rel, 0);
#endif
    }
#ifndef TCPOPS_HAVE_MAN
    print_message("scdoc was not found at configure time: man pages not checked\n");
#endif
    expect_file(fx->prefix, "share/bash-completion/completions/tcpops", 0);
    expect_file(fx->prefix, "share/bash-completion/completions/tcpops-cli", 0);
    expect_file(fx->prefix, "share/doc/tcpops/examples/tcpops.ini", 0);
    expect_file(fx->prefix, "share/doc/tcpops/LICENSE", 0);
    expect_file(fx->prefix, "share/doc/tcpops/openapi.yaml", 0);
    snprintf(bindir, sizeof(bindir), "%s/bin", fx->prefix);
    expect_unit_runs(fx->prefix, bindir);

    /* The installed unit through systemd-analyze verify (test_deploy.sh
     * skips, exit 77, without it). */
    char unit[PATH_MAX], tcpops[PATH_MAX], out[8192], err[4096];
    snprintf(unit, sizeof(unit), "%s/lib/systemd/system/tcpops.service", fx->prefix);
    snprintf(tcpops, sizeof(tcpops), "%s/tcpops", bindir);
    char *verify[] = {"/bin/sh", TCPOPS_SOURCE_DIR "/tests/test_deploy.sh", unit, tcpops, NULL};
    int code = proc_run(verify, out, sizeof(out), err, sizeof(err), 60000);
    if (code == 77)
        print_message("%s", out);
    else if (code != 0)
        fail_msg("test_deploy.sh on the installed unit: expected exit 0, got %d: %s%s", code,
                 out, err);

    /* DESTDIR stages the same tree under it; the unit still names the
     * prefix the files will have once copied out. */
    char stage[300];
    snprintf(stage, sizeof(stage), "%s/stage", fx->dir);
    setenv("DESTDIR", stage, 1);
    install_into("/usr");
    unsetenv("DESTDIR");
    expect_file(stage, "usr/bin/tcpops", 1);
    snprintf(rel, sizeof(rel), "%s/usr", stage);
    expect_unit_runs(rel, "/usr/bin");
}

/* The pids of every worker `tcpops ps --json` lists; returns how many. */
static int worker_pids(const char *tcpops, const char *data, int *pids, int max)
{
    char out[16384], err[4096];
    char *argv[] = {(char *)tcpops, "--data-dir", (char *)data, "ps", "--json", NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 30000);
    if (code != 0)
        fail_msg("tcpops ps --json: expected exit 0, got %d: %s", code, err);
    json_error_t jerr;
    json_t *ps = json_loads(out, 0, &jerr);
    if (ps == NULL)
        fail_msg("tcpops ps --json: expected JSON, got \"%.200s\" (%s)", out, jerr.text);
    json_t *workers = json_object_get(ps, "workers"), *w;
    size_t i;
    int n = 0;
    json_array_foreach(workers, i, w) {
        json_t *pid = json_object_get(w, "pid");
        if (n < max && json_is_integer(pid))
            pids[n++] = (int)json_integer_value(pid);
    }
    json_decref(ps);
    return n;
}

static void test_installed_tcpops_serves_without_the_build_dir(void **state)
{
    fixture *fx = *state;
    char tcpops[PATH_MAX], out[1024], err[4096], want[128];
    install_into(fx->prefix);
    snprintf(tcpops, sizeof(tcpops), "%s/bin/tcpops", fx->prefix);

    char *version[] = {tcpops, "--version", NULL};
    int code = proc_run(version, out, sizeof(out), err, sizeof(err), 10000);
    snprintf(want, sizeof(want), "tcpops %s", TCPOPS_PROJECT_VERSION);
    if (code != 0 || strncmp(out, want, strlen(want)) != 0)
        fail_msg("%s --version: expected exit 0 and \"%s...\", got %d \"%s\"", tcpops, want,
                 code, out);

    /* Nothing of the build on PATH: the programs must come from the prefix. */
    setenv("PATH", "/usr/bin:/bin", 1);
    int gw = free_port(), people = free_port(), pets = free_port();
    char gwa[64], pa[64], pe[64];
    snprintf(gwa, sizeof(gwa), "127.0.0.1:%d", gw);
    snprintf(pa, sizeof(pa), "127.0.0.1:%d", people);
    snprintf(pe, sizeof(pe), "127.0.0.1:%d", pets);
    char *up[] = {tcpops, "up", "--data-dir", fx->data, "--gateway", gwa, "--people", pa,
                  "--pets", pe, "--gateway-args", "--access-log=false --threads=16", NULL};
    assert_int_equal(proc_start_logged(&fx->master, up, fx->log), 0);
    int ready = 0;
    for (int i = 0; i < 1000 && !ready; i++) {
        http_resp r;
        if (http_once(gw, "GET", "/readyz", NULL, NULL, &r) == 0) {
            ready = r.status == 200;
            http_resp_free(&r);
        }
        if (!ready) {
            if (proc_wait(&fx->master, 0) >= 0)
                fail_msg("installed tcpops up exited before the gateway was ready "
                         "(log in %s)", fx->log);
            usleep(20 * 1000);
        }
    }
    if (!ready)
        fail_msg("installed tcpops up: the gateway was not ready within 20 s (log in %s)",
                 fx->log);
    http_resp r;
    assert_int_equal(http_once(gw, "GET", "/healthz", NULL, NULL, &r), 0);
    if (r.status != 200)
        fail_msg("GET /healthz: expected 200, got %d %s", r.status, r.body);
    http_resp_free(&r);
    assert_int_equal(http_once(gw, "GET", "/people", NULL, NULL, &r), 0);
    if (r.status != 200)
        fail_msg("GET /people: expected 200, got %d %s", r.status, r.body);
    http_resp_free(&r);

    /* Every worker runs a program of the prefix. */
    int pids[16];
    int n = worker_pids(tcpops, fx->data, pids, 16);
    if (n != 3)
        fail_msg("tcpops ps --json: expected 3 workers (gateway, people, pets), got %d", n);
    for (int i = 0; i < n; i++) {
        char link[64], exe[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/%d/exe", pids[i]);
        ssize_t len = readlink(link, exe, sizeof(exe) - 1);
        exe[len > 0 ? len : 0] = '\0';
        if (strncmp(exe, fx->prefix, strlen(fx->prefix)) != 0)
            fail_msg("worker pid %d: expected a program under %s, runs \"%s\"", pids[i],
                     fx->prefix, exe);
    }

    char *down[] = {tcpops, "--data-dir", fx->data, "down", NULL};
    code = proc_run(down, out, sizeof(out), err, sizeof(err), 60000);
    if (code != 0)
        fail_msg("tcpops down: expected exit 0, got %d: %s", code, err);
    code = proc_wait(&fx->master, 30000);
    if (code != 0)
        fail_msg("installed tcpops up: expected exit 0 after down, got %d (log in %s)", code,
                 fx->log);
    fx->master.pid = -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_install_puts_every_file_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_installed_tcpops_serves_without_the_build_dir,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
