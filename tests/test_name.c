/* Name validation: 1-64 bytes of valid UTF-8, no control characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "name.h"

static int ok(const char *s, size_t n)
{
    char why[128];
    return util_name_check(s, n, why, sizeof(why)) == 0;
}

static void test_accepts(void **state)
{
    (void)state;
    char max[64];
    memset(max, 'a', sizeof(max));
    assert_true(ok("bob", 3));
    assert_true(ok("a", 1));
    assert_true(ok(max, 64));
    assert_true(ok("O'Brien \"the\" \\ one", 19));
    assert_true(ok("Zoë", strlen("Zoë")));
    assert_true(ok("\xF0\x9F\x90\xB6 dog", 8));         /* emoji, 4 bytes */
    assert_true(ok("\xEF\xBF\xBD", 3));                 /* U+FFFD */
    assert_true(ok("\xF4\x8F\xBF\xBF", 4));             /* U+10FFFF */
}

static void test_rejects(void **state)
{
    (void)state;
    char big[65];
    memset(big, 'a', sizeof(big));
    struct {
        const char *s;
        size_t n;
        const char *what;
    } bad[] = {
        {"", 0, "empty"},
        {big, 65, "65 bytes"},
        {"a\x01" "b", 3, "C0 control"},
        {"a\nb", 3, "newline"},
        {"a\x7f", 2, "DEL"},
        {"a\xC2\x85", 3, "C1 control U+0085"},
        {"\xC3", 1, "truncated sequence"},
        {"\xC0\xAF", 2, "overlong slash"},
        {"\xE0\x80\xAF", 3, "overlong 3-byte"},
        {"\xED\xA0\x80", 3, "surrogate"},
        {"\xF4\x90\x80\x80", 4, "above U+10FFFF"},
        {"\xFF", 1, "byte 0xFF"},
        {"\x80", 1, "lone continuation"},
        {"a\0b", 3, "NUL inside"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ok(bad[i].s, bad[i].n))
            fail_msg("expected \"%s\" to be rejected; it was accepted", bad[i].what);
}

static void test_reason_is_specific(void **state)
{
    (void)state;
    char why[128];
    char big[65];
    memset(big, 'a', sizeof(big));
    util_name_check(big, 65, why, sizeof(why));
    assert_non_null(strstr(why, "65 bytes"));
    util_name_check("\xFF", 1, why, sizeof(why));
    assert_non_null(strstr(why, "UTF-8"));
    util_name_check("a\tb", 3, why, sizeof(why));
    assert_non_null(strstr(why, "U+0009"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_reason_is_specific),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
