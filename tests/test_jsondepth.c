/* util_json_depth_ok: nesting counted without recursion, brackets inside
 * strings (escaped quotes included) not counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/jsondepth.h"

static int ok(const char *s, int max)
{
    return util_json_depth_ok(s, strlen(s), max);
}

static void test_depth_counted(void **state)
{
    (void)state;
    assert_true(ok("", 0));
    assert_true(ok("42", 0));
    assert_false(ok("{}", 0));
    assert_true(ok("{}", 1));
    assert_true(ok("{\"a\":[1,{\"b\":2}],\"c\":[]}", 3));
    assert_false(ok("{\"a\":[1,{\"b\":2}],\"c\":[]}", 2));
    /* siblings do not add up */
    assert_true(ok("[[],[],[],[],[]]", 2));
    /* unclosed nesting counts as it opens */
    assert_false(ok("[[[", 2));
    assert_true(ok("[[[", 3));
    /* stray closers never make room for more */
    assert_false(ok("]]]][[[", 2));
}

static void test_strings_do_not_count(void **state)
{
    (void)state;
    assert_true(ok("{\"[[[[{{{{\":\"]]]]\"}", 1));
    assert_true(ok("{\"a\\\"[[[[\":1}", 1));   /* an escaped quote does not end the string */
    assert_true(ok("{\"a\\\\\":[1]}", 2));     /* an escaped backslash does not escape the quote */
    assert_false(ok("{\"a\\\\\":[1]}", 1));
}

static void test_a_million_levels(void **state)
{
    (void)state;
    size_t n = 1000000;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, '[', n);
    assert_false(util_json_depth_ok(s, n, UTIL_JSON_MAX_DEPTH));
    memset(s, '{', n);
    assert_false(util_json_depth_ok(s, n, UTIL_JSON_MAX_DEPTH));
    assert_true(util_json_depth_ok(s, n, 1000000));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth_counted),
        cmocka_unit_test(test_strings_do_not_count),
        cmocka_unit_test(test_a_million_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
