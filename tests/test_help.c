/* Every program answers -h and --help the same way: its usage on stdout,
 * nothing on stderr, exit 0; and --version with "PROGRAM VERSION" (what
 * users' fingers expect of any command). Flags come before or after the
 * command (tcpops-cli status --addr A, against a real service), and each
 * program reads its own environment names (TCPOPS_PEOPLE_THREADS). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proc.h"

static void test_every_program_helps(void **state)
{
    (void)state;
    static const char *const progs[] = {"tcpops", "tcpops-gateway", "tcpops-people",
                                        "tcpops-pets", "tcpops-cli"};
    static const char *const asks[] = {"-h", "--help"};
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
        for (size_t k = 0; k < 2; k++) {
            char bin[512], out[8192], err[1024];
            char *argv[] = {(char *)proc_bin(progs[i], bin, sizeof(bin)), (char *)asks[k],
                            NULL};
            int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
            if (code != 0 || strncmp(out, "usage: ", 7) != 0 || err[0] != '\0')
                fail_msg("%s %s: expected exit 0 and \"usage: ...\" on stdout, nothing on "
                         "stderr; got exit %d, stdout \"%.60s\", stderr \"%.200s\"",
                         progs[i], asks[k], code, out, err);
        }
    }
}

static void test_every_program_has_a_version(void **state)
{
    (void)state;
    static const char *const progs[] = {"tcpops", "tcpops-gateway", "tcpops-people",
                                        "tcpops-pets", "tcpops-cli"};
    char first[256] = "";
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
        char bin[512], out[1024], err[1024], want[64];
        char *argv[] = {(char *)proc_bin(progs[i], bin, sizeof(bin)), "--version", NULL};
        int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
        snprintf(want, sizeof(want), "%s %s", progs[i], TCPOPS_PROJECT_VERSION);
        if (code != 0 || strncmp(out, want, strlen(want)) != 0 || err[0] != '\0')
            fail_msg("%s --version: expected exit 0 and \"%s...\" on stdout; got exit %d, "
                     "stdout \"%.100s\", stderr \"%.200s\"",
                     progs[i], want, code, out, err);
        /* One build, one version: the same after the program's name. */
        const char *v = out + strlen(progs[i]);
        if (first[0] == '\0')
            snprintf(first, sizeof(first), "%s", v);
        else if (strcmp(first, v) != 0)
            fail_msg("%s --version: expected \"%s\" as the others, got \"%s\"", progs[i],
                     first, v);
    }
}

/* tcpops's commands take their flags after their name too: `tcpops ps
 * --data-dir X` is `tcpops --data-dir X ps` (here: no master there, exit 3
 * saying so, both ways), and `tcpops ps -h` is ps's usage. */
static void test_tcpops_flags_after_the_command(void **state)
{
    (void)state;
    char bin[512], out[2][1024], err[2][1024];
    const char *dir = "/nonexistent/tcpops-test-help";
    proc_bin("tcpops", bin, sizeof(bin));
    char *before[] = {bin, "--data-dir", (char *)dir, "ps", NULL};
    char *after[] = {bin, "ps", "--data-dir", (char *)dir, NULL};
    int c0 = proc_run(before, out[0], sizeof(out[0]), err[0], sizeof(err[0]), 10000);
    int c1 = proc_run(after, out[1], sizeof(out[1]), err[1], sizeof(err[1]), 10000);
    if (c0 != 3 || c1 != 3 || strcmp(err[0], err[1]) != 0 || strstr(err[1], dir) == NULL)
        fail_msg("tcpops ps --data-dir %s: expected exit 3 and the same message as tcpops "
                 "--data-dir %s ps (%d \"%s\"), got %d \"%s\"",
                 dir, dir, c0, err[0], c1, err[1]);
    char *help[] = {bin, "ps", "-h", NULL};
    int c2 = proc_run(help, out[0], sizeof(out[0]), err[0], sizeof(err[0]), 10000);
    if (c2 != 0 || strncmp(out[0], "usage: tcpops ps", 16) != 0)
        fail_msg("tcpops ps -h: expected exit 0 and ps's usage, got %d \"%s\"", c2, out[0]);
    /* After "--" a word that looks like a flag is the command's argument:
     * restart asks the master (none: exit 3) instead of refusing it (2). */
    char *dashes[] = {bin, "restart", "--data-dir", (char *)dir, "--", "--odd", NULL};
    int c3 = proc_run(dashes, out[0], sizeof(out[0]), err[0], sizeof(err[0]), 10000);
    if (c3 != 3 || strstr(err[0], dir) == NULL)
        fail_msg("tcpops restart --data-dir %s -- --odd: expected exit 3 (no master there), "
                 "got %d \"%s\"", dir, c3, err[0]);
}

/* Runs build/bin/prog with the NULL-terminated arguments that follow (at
 * most 14); returns its exit code, its output in out and err, and the
 * arguments joined in cmd for messages. */
static int run(char *out, size_t outlen, char *err, size_t errlen, char *cmd, size_t cmdlen,
               const char *prog, ...)
{
    char bin[512];
    char *argv[16];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)proc_bin(prog, bin, sizeof(bin));
    snprintf(cmd, cmdlen, "%s", prog);
    va_start(ap, prog);
    for (char *a; n < 15 && (a = va_arg(ap, char *)) != NULL;) {
        argv[n++] = a;
        snprintf(cmd + strlen(cmd), cmdlen - strlen(cmd), " %s", a);
    }
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, out, outlen, err, errlen, 10000);
}

/* Each program's --help names its environment variables: its own, and the
 * unscoped one after it for a flag every program shares. */
static void test_help_names_each_programs_environment(void **state)
{
    (void)state;
    static const char *const want[][3] = {
        {"tcpops-gateway", "--[no-]access-log ", "env TCPOPS_GATEWAY_THREADS\n"},
        {"tcpops-gateway", "env TCPOPS_GATEWAY_TLS_CA, else TCPOPS_TLS_CA\n", NULL},
        {"tcpops-people", "env TCPOPS_PEOPLE_THREADS\n", "--[no-]insecure "},
        {"tcpops-people", "env TCPOPS_PEOPLE_DRAIN_MS, else TCPOPS_DRAIN_MS\n", NULL},
        {"tcpops-pets", "env TCPOPS_PETS_DATA_DIR, else TCPOPS_DATA_DIR\n", NULL},
        {"tcpops-cli", "env TCPOPS_CLI_TIMEOUT\n", NULL},
        {"tcpops", "env TCPOPS_DRAIN_MS\n", "--[no-]detach "},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char out[16384], err[1024], cmd[128];
        int up = strcmp(want[i][0], "tcpops") == 0;
        int code = up ? run(out, sizeof(out), err, sizeof(err), cmd, sizeof(cmd), want[i][0],
                            "up", "--help", NULL)
                      : run(out, sizeof(out), err, sizeof(err), cmd, sizeof(cmd), want[i][0],
                            "--help", NULL);
        for (int k = 1; k < 3; k++)
            if (want[i][k] != NULL && (code != 0 || strstr(out, want[i][k]) == NULL))
                fail_msg("%s: expected exit 0 and \"%s\" in its help; got exit %d:\n%s", cmd,
                         want[i][k], code, out);
    }
}

/* One environment for every program (tcpops up's workers inherit its own):
 * a value reaches the program it names, and TCPOPS_THREADS, the gateway's
 * until now, no longer stops people and pets, whose limit is lower. The
 * programs run with TCPOPS_CHECK_FLAGS=1: they parse and exit. */
static void test_environment_is_per_program(void **state)
{
    (void)state;
    static const struct {
        const char *vars[2][2]; /* name, value */
        int gateway, people, pets; /* exit codes */
        const char *why;           /* in stderr when the code is 2 */
    } cases[] = {
        {{{"TCPOPS_THREADS", "2000"}}, 0, 0, 0, NULL},
        {{{"TCPOPS_PEOPLE_THREADS", "2000"}}, 0, 2, 0,
         "TCPOPS_PEOPLE_THREADS: \"2000\" is out of range: 0 to 256"},
        {{{"TCPOPS_GATEWAY_THREADS", "5000"}}, 2, 0, 0, "TCPOPS_GATEWAY_THREADS: \"5000\""},
        /* Shared: the unscoped name reaches all, the program's own wins. */
        {{{"TCPOPS_DRAIN_MS", "soon"}}, 2, 2, 2, "TCPOPS_DRAIN_MS: \"soon\""},
        {{{"TCPOPS_DRAIN_MS", "soon"}, {"TCPOPS_PETS_DRAIN_MS", "100"}}, 2, 2, 0,
         "TCPOPS_DRAIN_MS: \"soon\""},
    };
    static const char *const progs[] = {"tcpops-gateway", "tcpops-people", "tcpops-pets"};
    setenv("TCPOPS_CHECK_FLAGS", "1", 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const int want[] = {cases[i].gateway, cases[i].people, cases[i].pets};
        for (int v = 0; v < 2 && cases[i].vars[v][0] != NULL; v++)
            setenv(cases[i].vars[v][0], cases[i].vars[v][1], 1);
        for (int p = 0; p < 3; p++) {
            char out[16384], err[1024], cmd[128];
            int code = run(out, sizeof(out), err, sizeof(err), cmd, sizeof(cmd), progs[p], NULL);
            if (code != want[p] || (code == 2 && strstr(err, cases[i].why) == NULL))
                fail_msg("%s=%s %s%s: expected exit %d%s%s, got %d: %s", cases[i].vars[0][0],
                         cases[i].vars[0][1], cases[i].vars[1][0] ? "(and more) " : "", cmd,
                         want[p], want[p] == 2 ? " saying " : "",
                         want[p] == 2 ? cases[i].why : "", code, err);
        }
        for (int v = 0; v < 2 && cases[i].vars[v][0] != NULL; v++)
            unsetenv(cases[i].vars[v][0]);
    }
    unsetenv("TCPOPS_CHECK_FLAGS");
}

/* ---- tcpops-cli against a real tcpops-people ---- */

typedef struct cli_fixture {
    char dir[256], addr[64];
    proc people;
} cli_fixture;

static int cli_setup(void **state)
{
    cli_fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    int port = free_port();
    snprintf(fx->addr, sizeof(fx->addr), "127.0.0.1:%d", port);
    *state = fx;
    assert_int_equal(proc_start_service(&fx->people, "tcpops-people", port, fx->dir, NULL), 0);
    return 0;
}

static int cli_teardown(void **state)
{
    cli_fixture *fx = *state;
    proc_stop(&fx->people);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* Checks a run's exit code, that its stdout starts with out (when not
 * NULL) and its stderr contains err (when not NULL). */
static void expect(int code, const char *got_out, const char *got_err, const char *cmd,
                   int want_code, const char *want_out, const char *want_err)
{
    if (code != want_code || (want_out != NULL && strncmp(got_out, want_out, strlen(want_out))) ||
        (want_err != NULL && strstr(got_err, want_err) == NULL))
        fail_msg("%s: expected exit %d, stdout \"%s...\", stderr with \"%s\"; got exit %d, "
                 "stdout \"%.200s\", stderr \"%.300s\"",
                 cmd, want_code, want_out ? want_out : "", want_err ? want_err : "", code,
                 got_out, got_err);
}

/* The cli's flags work after the command as before it; a command's own
 * (people list --limit) after its name; "--" ends them all. */
static void test_cli_flags_before_and_after_the_command(void **state)
{
    cli_fixture *fx = *state;
    const char *a = fx->addr;
    char out[8192], err[8192], cmd[512];
#define CLI(...) \
    run(out, sizeof(out), err, sizeof(err), cmd, sizeof(cmd), "tcpops-cli", __VA_ARGS__)
    int code = CLI("--addr", a, "status", NULL);
    expect(code, out, err, cmd, 0, "{\"service\":\"people\"", NULL);
    code = CLI("status", "--addr", a, NULL);
    expect(code, out, err, cmd, 0, "{\"service\":\"people\"", NULL);
    code = CLI("people", "create", "ann", "--addr", a, NULL);
    expect(code, out, err, cmd, 0, "{\"name\":\"ann\"}", NULL);
    code = CLI("people", "pets", "ann", "--timeout", "5000", "--addr", a, NULL);
    expect(code, out, err, cmd, 0, "{\"ids\":[]}", NULL);
    code = CLI("people", "create", "--addr", a, "--", "--flagish", NULL);
    expect(code, out, err, cmd, 0, "{\"name\":\"--flagish\"}", NULL);
    code = CLI("--addr", a, "people", "list", "--limit=1", NULL);
    expect(code, out, err, cmd, 0, "{\"names\":[\"", NULL);
    if (strchr(out, ',') != NULL)
        fail_msg("%s: expected one name, got %s", cmd, out);
    /* A flag's value may look like a flag. */
    code = CLI("people", "list", "--addr", a, "--limit", "1", "--after", "--flagish", NULL);
    expect(code, out, err, cmd, 0, "{\"names\":[", NULL);
    /* A flag no one here takes is still an error that names it. */
    code = CLI("status", "--limit", "1", "--addr", a, NULL);
    expect(code, out, err, cmd, 2, "", "unknown flag --limit");
    code = CLI("people", "list", "--nope", "--addr", a, NULL);
    expect(code, out, err, cmd, 2, "", "unknown flag --nope");
    code = CLI("--limit", "1", "people", "list", NULL);
    expect(code, out, err, cmd, 2, "", "unknown flag --limit");
    code = CLI("status", "--no-addr", NULL);
    expect(code, out, err, cmd, 2, "", "--no-addr: --addr is not a true/false flag");
    code = CLI("people", "list", "--help", "--addr", a, NULL);
    expect(code, out, err, cmd, 0, "usage: tcpops-cli [--addr HOST:PORT] people list", NULL);
    /* Its environment is TCPOPS_CLI_*: the gateway's name is not its. */
    setenv("TCPOPS_CLI_ADDR", a, 1);
    setenv("TCPOPS_TIMEOUT", "0", 1);
    code = CLI("status", NULL);
    expect(code, out, err, cmd, 0, "{\"service\":\"people\"", NULL);
    setenv("TCPOPS_CLI_TIMEOUT", "0", 1);
    code = CLI("status", NULL);
    expect(code, out, err, cmd, 2, "", "TCPOPS_CLI_TIMEOUT: \"0\" is out of range");
    unsetenv("TCPOPS_CLI_ADDR");
    unsetenv("TCPOPS_TIMEOUT");
    unsetenv("TCPOPS_CLI_TIMEOUT");
#undef CLI
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_program_helps),
        cmocka_unit_test(test_every_program_has_a_version),
        cmocka_unit_test(test_tcpops_flags_after_the_command),
        cmocka_unit_test(test_help_names_each_programs_environment),
        cmocka_unit_test(test_environment_is_per_program),
        cmocka_unit_test_setup_teardown(test_cli_flags_before_and_after_the_command, cli_setup,
                                        cli_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
