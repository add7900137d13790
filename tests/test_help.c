/* Every program answers -h and --help the same way: its usage on stdout,
 * nothing on stderr, exit 0; and --version with "PROGRAM VERSION" (what
 * users' fingers expect of any command). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_program_helps),
        cmocka_unit_test(test_every_program_has_a_version),
        cmocka_unit_test(test_tcpops_flags_after_the_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
