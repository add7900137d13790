/* Numbers and flags: util_parse_num's syntax, units, overflow and ranges,
 * and util_flags_parse applying them to flags and TCPOPS_* variables:
 * flags anywhere among the other arguments, "--", --no-NAME, environment
 * names per program, and a command's flags after its name. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/flags.h"

/* Parses s and returns the outcome; *v keeps 777 unless it parsed. */
static int num(const char *s, util_unit unit, long min, long max, long *v)
{
    char err[256];
    *v = 777;
    int rc = util_parse_num(s, unit, min, max, v, "--x", err, sizeof(err));
    if (rc < 0) {
        assert_non_null(strstr(err, "--x: \""));
        assert_non_null(strstr(err, s));
    }
    return rc;
}

static void expect_num(const char *s, util_unit unit, long min, long max, long want)
{
    long v;
    int rc = num(s, unit, min, max, &v);
    if (rc != 0 || v != want)
        fail_msg("\"%s\": expected %ld, got rc %d value %ld", s, want, rc, v);
}

static void expect_rc(const char *s, util_unit unit, long min, long max, int want)
{
    long v;
    int rc = num(s, unit, min, max, &v);
    if (rc != want)
        fail_msg("\"%s\": expected rc %d, got %d (value %ld)", s, want, rc, v);
    assert_int_equal(v, 777); /* untouched on failure */
}

static void test_plain_numbers(void **state)
{
    (void)state;
    expect_num("0", UTIL_NUM_PLAIN, 0, 10, 0);
    expect_num("5120", UTIL_NUM_PLAIN, 0, 10000, 5120);
    expect_num("007", UTIL_NUM_PLAIN, 0, 10, 7);
    expect_num("-5", UTIL_NUM_PLAIN, -10, 10, -5);
    expect_num("9223372036854775807", UTIL_NUM_PLAIN, 0, LONG_MAX, LONG_MAX);
    expect_num("-9223372036854775808", UTIL_NUM_PLAIN, LONG_MIN, 0, LONG_MIN);
    /* Not numbers at all. */
    const char *bad[] = {"", "-", "banana", " 5", "5 ", "+5", "0x10", "5.0", "1e3", "5k",
                         "5M", "5ms", "5s", "--5", "5-", "٣"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_rc(bad[i], UTIL_NUM_PLAIN, -100, 100000, -EINVAL);
}

static void test_plain_ranges_and_overflow(void **state)
{
    (void)state;
    /* `tcpops scale people 4294967298` used to be cast to int: 2. */
    expect_rc("4294967298", UTIL_NUM_PLAIN, 0, 64, -ERANGE);
    expect_rc("65", UTIL_NUM_PLAIN, 0, 64, -ERANGE);
    expect_rc("-5000", UTIL_NUM_PLAIN, 0, 600000, -ERANGE);
    expect_rc("9223372036854775808", UTIL_NUM_PLAIN, 0, LONG_MAX, -ERANGE);
    expect_rc("-9223372036854775809", UTIL_NUM_PLAIN, LONG_MIN, 0, -ERANGE);
    expect_rc("99999999999999999999999999", UTIL_NUM_PLAIN, 0, LONG_MAX, -ERANGE);
    /* Malformed wins over too long: the message says what is wrong. */
    expect_rc("99999999999999999999999999x", UTIL_NUM_PLAIN, 0, LONG_MAX, -EINVAL);
}

static void test_sizes(void **state)
{
    (void)state;
    expect_num("4096", UTIL_NUM_SIZE, 0, LONG_MAX, 4096);
    expect_num("512k", UTIL_NUM_SIZE, 0, LONG_MAX, 512L << 10);
    expect_num("512K", UTIL_NUM_SIZE, 0, LONG_MAX, 512L << 10);
    expect_num("64M", UTIL_NUM_SIZE, 0, LONG_MAX, 64L << 20);
    expect_num("64m", UTIL_NUM_SIZE, 0, LONG_MAX, 64L << 20);
    expect_num("64MiB", UTIL_NUM_SIZE, 0, LONG_MAX, 64L << 20);
    expect_num("64MB", UTIL_NUM_SIZE, 0, LONG_MAX, 64L << 20);
    expect_num("1G", UTIL_NUM_SIZE, 0, LONG_MAX, 1L << 30);
    expect_num("100B", UTIL_NUM_SIZE, 0, LONG_MAX, 100);
    expect_num("8589934591G", UTIL_NUM_SIZE, 0, LONG_MAX, 8589934591L << 30);
    /* The multiplied value overflows: once taken as 5120. */
    expect_rc("18014398509481989k", UTIL_NUM_SIZE, 0, LONG_MAX, -ERANGE);
    expect_rc("8589934592G", UTIL_NUM_SIZE, 0, LONG_MAX, -ERANGE);
    expect_rc("65M", UTIL_NUM_SIZE, 64, 64L << 20, -ERANGE);
    expect_rc("-1k", UTIL_NUM_SIZE, 0, LONG_MAX, -ERANGE);
    const char *bad[] = {"", "k", "M", "64T", "64 M", "64MM", "64kiB ", "64iB", "64Mx",
                         "1.5G", "banana"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_rc(bad[i], UTIL_NUM_SIZE, 0, LONG_MAX, -EINVAL);
}

/* ---- flags ---- */

typedef struct opts {
    long deadline_ms, max_body;
    const char *name, *sync, *cert;
    int loud;
} opts;

#define NFLAGS 6

/* The flags of o with their defaults; *o is reset to those. */
static void table(opts *o, util_flag flags[NFLAGS])
{
    *o = (opts){.deadline_ms = 2000, .max_body = 65536, .name = "x", .sync = "normal",
                .cert = "default.crt", .loud = 1};
    const util_flag t[NFLAGS] = {
        {"deadline-ms", UTIL_FLAG_INT, &o->deadline_ms, "MS", "deadline", 1, 10000},
        {"max-body", UTIL_FLAG_SIZE, &o->max_body, "BYTES", "body limit", 1, 64L << 20},
        {"name", UTIL_FLAG_STR, &o->name, "NAME", "a name", 0, 0},
        {"sync", UTIL_FLAG_CHOICE, &o->sync, "normal|full", "durability", 0, 0},
        {"tls-cert", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &o->cert, "FILE", "certificate", 0, 0},
        {"loud", UTIL_FLAG_BOOL, &o->loud, NULL, "log more", 0, 0},
    };
    memcpy(flags, t, sizeof(t));
}

static int parse(opts *o, char *err, size_t errlen, int argc, char **argv)
{
    util_flag flags[NFLAGS];
    table(o, flags);
    return util_flags_parse(flags, NFLAGS, argc, argv, 1, err, errlen);
}

static int parse_command(opts *o, char *err, size_t errlen, int argc, char **argv)
{
    util_flag flags[NFLAGS];
    table(o, flags);
    return util_flags_parse_command(flags, NFLAGS, argc, argv, 1, err, errlen);
}

/* argv[from..argc) joined by spaces, to compare with what a test expects. */
static const char *joined(char **argv, int from, int argc)
{
    static char buf[512];
    size_t o = 0;
    buf[0] = '\0';
    for (int i = from; i < argc && o < sizeof(buf); i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i > from ? " " : "", argv[i]);
    return buf;
}

static void expect_args(char **argv, int from, int argc, const char *want)
{
    const char *got = joined(argv, from, argc);
    if (strcmp(got, want) != 0)
        fail_msg("argv[%d..]: expected \"%s\", got \"%s\"", from, want, got);
}

static void test_flags_units(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *ok[] = {"prog", "--deadline-ms", "5000", "--max-body=64M", "sub", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 5, ok), 4);
    assert_int_equal(o.deadline_ms, 5000);
    assert_int_equal(o.max_body, 64L << 20);

    /* No size suffix on milliseconds, however it would overflow. */
    char *k[] = {"prog", "--deadline-ms", "18014398509481989k", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, k), -1);
    assert_non_null(strstr(err, "--deadline-ms: \"18014398509481989k\" is not a whole number"));
    assert_int_equal(o.deadline_ms, 2000);
    char *k2[] = {"prog", "--deadline-ms=5k", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, k2), -1);
    char *big[] = {"prog", "--max-body", "65M", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, big), -1);
    assert_non_null(strstr(err, "out of range: 1 to 67108864 bytes"));
    char *neg[] = {"prog", "--deadline-ms", "-5", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, neg), -1);
    assert_non_null(strstr(err, "out of range: 1 to 10000"));
}

static void test_flags_choice(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *full[] = {"prog", "--sync", "full", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, full), 3);
    assert_string_equal(o.sync, "full");
    const char *bad[] = {"banana", "", "norma", "normal|full", "fulll", "|"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"prog", "--sync", (char *)bad[i], NULL};
        assert_int_equal(parse(&o, err, sizeof(err), 3, argv), -1);
        assert_non_null(strstr(err, "is not one of normal|full"));
    }
}

static void test_flags_environment(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *none[] = {"prog", NULL};
    setenv("TCPOPS_DEADLINE_MS", "1k", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), -1);
    assert_non_null(strstr(err, "TCPOPS_DEADLINE_MS: \"1k\""));
    setenv("TCPOPS_DEADLINE_MS", "300", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_int_equal(o.deadline_ms, 300);
    char *over[] = {"prog", "--deadline-ms", "400", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, over), 3);
    assert_int_equal(o.deadline_ms, 400); /* the command line wins */
    unsetenv("TCPOPS_DEADLINE_MS");
}

/* Flags after, between and before the other arguments all parse, and those
 * come back after the flags in their order (GNU getopt's permutation). */
static void test_flags_anywhere(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *argv[] = {"prog", "a", "--deadline-ms", "5", "b", "--name=n", "c", "--loud", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 8, argv), 5);
    assert_int_equal(o.deadline_ms, 5);
    assert_string_equal(o.name, "n");
    expect_args(argv, 1, 8, "--deadline-ms 5 --name=n --loud a b c");
    /* "-" and negative numbers are arguments, not flags. */
    char *dash[] = {"prog", "-", "--name", "m", "-5", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 5, dash), 3);
    expect_args(dash, 3, 5, "- -5");
    /* argv before first is not looked at. */
    char *sub[] = {"prog", "--nope", "sub", "--name", "s", "x", NULL};
    util_flag flags[NFLAGS];
    table(&o, flags);
    assert_int_equal(util_flags_parse(flags, NFLAGS, 6, sub, 2, err, sizeof(err)), 4);
    assert_string_equal(o.name, "s");
    expect_args(sub, 0, 6, "prog --nope --name s sub x");
}

/* "--" ends the flags: what follows is an argument, whatever it looks like. */
static void test_double_dash_ends_flags(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *argv[] = {"prog", "a", "--name", "x", "--", "--deadline-ms", "7", "--", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 8, argv), 4);
    assert_string_equal(o.name, "x");
    assert_int_equal(o.deadline_ms, 2000);
    expect_args(argv, 4, 8, "a --deadline-ms 7 --");
    char *only[] = {"prog", "--", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, only), 2);
}

/* --no-NAME turns a boolean off; it is an error for any other flag. */
static void test_no_flag(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *off[] = {"prog", "--no-loud", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, off), 2);
    assert_int_equal(o.loud, 0);
    char *on_again[] = {"prog", "--no-loud", "--loud", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, on_again), 3);
    assert_int_equal(o.loud, 1);
    char *eq[] = {"prog", "--loud=false", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, eq), 2);
    assert_int_equal(o.loud, 0);
    const struct {
        const char *arg, *why;
    } bad[] = {
        {"--no-deadline-ms", "--no-deadline-ms: --deadline-ms is not a true/false flag"},
        {"--no-loud=true", "--no-loud takes no value"},
        {"--no-nope", "unknown flag --no-nope"},
        {"--no-", "unknown flag --no-"},
        {"--nope=1", "unknown flag --nope (see --help)"},
        {"-x", "unknown flag -x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"prog", (char *)bad[i].arg, NULL};
        int rc = parse(&o, err, sizeof(err), 2, argv);
        if (rc != -1 || strstr(err, bad[i].why) == NULL)
            fail_msg("%s: expected -1 saying \"%s\", got %d \"%s\"", bad[i].arg, bad[i].why,
                     rc, err);
    }
}

/* The environment: TCPOPS_<PROGRAM>_<FLAG>, and for a shared flag then
 * TCPOPS_<FLAG>; the command line over both. */
static void test_environment_per_program(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *none[] = {"prog", NULL};
    util_flags_program("gateway");
    /* Another program's value, or the unscoped one of a flag that is not
     * shared, is not this program's. */
    setenv("TCPOPS_DEADLINE_MS", "9999999", 1);
    setenv("TCPOPS_PEOPLE_DEADLINE_MS", "9999999", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_int_equal(o.deadline_ms, 2000);
    setenv("TCPOPS_GATEWAY_DEADLINE_MS", "300", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_int_equal(o.deadline_ms, 300);
    setenv("TCPOPS_GATEWAY_LOUD", "0", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_int_equal(o.loud, 0);
    char *loud[] = {"prog", "--loud", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, loud), 2);
    assert_int_equal(o.loud, 1);
    setenv("TCPOPS_GATEWAY_DEADLINE_MS", "1k", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), -1);
    assert_non_null(strstr(err, "TCPOPS_GATEWAY_DEADLINE_MS: \"1k\""));

    /* A shared flag: default < TCPOPS_<FLAG> < the program's < the flag. */
    unsetenv("TCPOPS_GATEWAY_DEADLINE_MS");
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_string_equal(o.cert, "default.crt");
    setenv("TCPOPS_TLS_CERT", "host.crt", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_string_equal(o.cert, "host.crt");
    setenv("TCPOPS_GATEWAY_TLS_CERT", "gateway.crt", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_string_equal(o.cert, "gateway.crt");
    char *given[] = {"prog", "--tls-cert", "flag.crt", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, given), 3);
    assert_string_equal(o.cert, "flag.crt");

    /* Without a program (tcpops itself) the names are TCPOPS_<FLAG>. */
    util_flags_program(NULL);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), -1);
    assert_non_null(strstr(err, "TCPOPS_DEADLINE_MS: \"9999999\" is out of range"));
    setenv("TCPOPS_DEADLINE_MS", "400", 1);
    assert_int_equal(parse(&o, err, sizeof(err), 1, none), 1);
    assert_int_equal(o.deadline_ms, 400);
    assert_string_equal(o.cert, "host.crt");
    const char *vars[] = {"TCPOPS_DEADLINE_MS", "TCPOPS_PEOPLE_DEADLINE_MS", "TCPOPS_GATEWAY_LOUD",
                          "TCPOPS_TLS_CERT", "TCPOPS_GATEWAY_TLS_CERT"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

/* A program with commands: its flags before the command and after it; a
 * flag it does not know after the command, -h, and "--" with what follows
 * are left for the command, in their order. */
static void test_flags_around_a_command(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *argv[] = {"prog", "--name", "a", "people", "list", "--limit", "5", "--loud",
                    "--deadline-ms=9", "-h", "--", "--name", "z", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 13, argv), 5);
    assert_string_equal(o.name, "a");
    assert_int_equal(o.loud, 1);
    assert_int_equal(o.deadline_ms, 9);
    expect_args(argv, 5, 13, "people list --limit 5 -h -- --name z");
    /* The program's own --no-NAME after the command, too. */
    char *no[] = {"prog", "status", "--no-loud", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 3, no), 2);
    assert_int_equal(o.loud, 0);
    expect_args(no, 2, 3, "status");
    /* Before the command: only the program's flags, and help. */
    char *before[] = {"prog", "--limit", "5", "people", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 4, before), -1);
    assert_non_null(strstr(err, "unknown flag --limit"));
    char *help[] = {"prog", "--help", "people", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 3, help), 0);
    char *bad[] = {"prog", "people", "--deadline-ms", "soon", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 4, bad), -1);
    assert_non_null(strstr(err, "--deadline-ms: \"soon\""));
    char *empty[] = {"prog", "--loud", NULL};
    assert_int_equal(parse_command(&o, err, sizeof(err), 2, empty), 2);
}

/* TCPOPS_CHECK_FLAGS=1: parse everything, start nothing (0, as --help). */
static void test_flags_check_mode(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    setenv("TCPOPS_CHECK_FLAGS", "1", 1);
    char *ok[] = {"prog", "--deadline-ms", "5", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, ok), 0);
    char *bad[] = {"prog", "--deadline-ms", "5s", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 3, bad), -1);
    char *unknown[] = {"prog", "--nope", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, unknown), -1);
    assert_non_null(strstr(err, "unknown flag --nope"));
    char *stray[] = {"prog", "b", "--name", "a", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 4, stray), -1);
    assert_non_null(strstr(err, "unexpected argument \"b\""));
    unsetenv("TCPOPS_CHECK_FLAGS");
}

/* -h and --help ask for the usage (0), wherever they come among flags. */
static void test_help_short_and_long(void **state)
{
    (void)state;
    opts o;
    char err[256] = "";
    char *shrt[] = {"prog", "-h", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 2, shrt), 0);
    char *lng[] = {"prog", "--deadline-ms", "5", "--help", NULL};
    assert_int_equal(parse(&o, err, sizeof(err), 4, lng), 0);
}

/* --help shows each flag's default as it is on entry, booleans included;
 * a number outside its range on entry is "not given": no default shown. */
static void test_usage_defaults(void **state)
{
    (void)state;
    long n = 7, unset = -1;
    int on = 1, off = 0;
    const char *s = "x:1";
    const util_flag f[] = {
        {"count", UTIL_FLAG_INT, &n, "N", "how many", 1, 9},
        {"loud", UTIL_FLAG_BOOL, &on, NULL, "log more", 0, 0},
        {"quiet", UTIL_FLAG_BOOL, &off, NULL, "log less", 0, 0},
        {"addr", UTIL_FLAG_STR, &s, "A", "where", 0, 0},
        {"wait-ms", UTIL_FLAG_INT, &unset, "MS", "how long", 0, 100},
    };
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    util_flags_usage(out, f, 5);
    fclose(out);
    const char *want[] = {"how many (default 7; 1-9)", "log more (default true)",
                          "log less (default false)", "where (default x:1)",
                          "env TCPOPS_COUNT", "how long (0-100)", "--[no-]loud"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(text, want[i]) == NULL)
            fail_msg("usage: expected \"%s\" in:\n%s", want[i], text);
    if (strstr(text, "default -1") != NULL)
        fail_msg("usage: expected no \"default -1\" for a flag not given, in:\n%s", text);
    free(text);
}

/* --help names the variables a flag reads, in the order they count. */
static void test_usage_environment_names(void **state)
{
    (void)state;
    opts o;
    util_flag f[NFLAGS];
    table(&o, f);
    char *text = NULL;
    size_t len = 0;
    util_flags_program("people");
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    util_flags_usage(out, f, NFLAGS);
    fclose(out);
    util_flags_program(NULL);
    const char *want[] = {"env TCPOPS_PEOPLE_DEADLINE_MS\n",
                          "env TCPOPS_PEOPLE_TLS_CERT, else TCPOPS_TLS_CERT\n",
                          "--[no-]loud ", "env TCPOPS_PEOPLE_LOUD\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(text, want[i]) == NULL)
            fail_msg("usage: expected \"%s\" in:\n%s", want[i], text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_numbers),
        cmocka_unit_test(test_plain_ranges_and_overflow),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_flags_units),
        cmocka_unit_test(test_flags_choice),
        cmocka_unit_test(test_flags_environment),
        cmocka_unit_test(test_flags_anywhere),
        cmocka_unit_test(test_double_dash_ends_flags),
        cmocka_unit_test(test_no_flag),
        cmocka_unit_test(test_environment_per_program),
        cmocka_unit_test(test_flags_around_a_command),
        cmocka_unit_test(test_flags_check_mode),
        cmocka_unit_test(test_help_short_and_long),
        cmocka_unit_test(test_usage_defaults),
        cmocka_unit_test(test_usage_environment_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
