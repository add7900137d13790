/* Numbers and flags: util_parse_num's syntax, units, overflow and ranges,
 * and util_flags_parse applying them to flags and TCPOPS_* variables. */
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
    const char *name, *sync;
} opts;

static int parse(opts *o, char *err, size_t errlen, int argc, char **argv)
{
    *o = (opts){.deadline_ms = 2000, .max_body = 65536, .name = "x", .sync = "normal"};
    const util_flag flags[] = {
        {"deadline-ms", UTIL_FLAG_INT, &o->deadline_ms, "MS", "deadline", 1, 10000},
        {"max-body", UTIL_FLAG_SIZE, &o->max_body, "BYTES", "body limit", 1, 64L << 20},
        {"name", UTIL_FLAG_STR, &o->name, "NAME", "a name", 0, 0},
        {"sync", UTIL_FLAG_CHOICE, &o->sync, "normal|full", "durability", 0, 0},
    };
    return util_flags_parse(flags, 4, argc, argv, 1, err, errlen);
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
    char *stray[] = {"prog", "--name", "a", "b", NULL};
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
                          "env TCPOPS_COUNT", "how long (0-100)"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(text, want[i]) == NULL)
            fail_msg("usage: expected \"%s\" in:\n%s", want[i], text);
    if (strstr(text, "default -1") != NULL)
        fail_msg("usage: expected no \"default -1\" for a flag not given, in:\n%s", text);
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
        cmocka_unit_test(test_flags_check_mode),
        cmocka_unit_test(test_help_short_and_long),
        cmocka_unit_test(test_usage_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
