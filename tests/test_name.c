/* Names: 1-64 bytes of valid UTF-8 with no control, format or separator
 * characters, and their identity: the NFC form. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/name.h"

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

/* The NFC form of s (n bytes), or fails. */
static const char *nfc(const char *s, size_t n, char *out)
{
    char why[128];
    if (util_name_normalize(s, n, out, UTIL_NAME_MAX + 1, NULL, why, sizeof(why)) < 0)
        fail_msg("expected \"%.*s\" to be a name; refused: %s", (int)n, s, why);
    return out;
}

static void test_nfc_is_the_identity(void **state)
{
    (void)state;
    char a[UTIL_NAME_MAX + 1], b[UTIL_NAME_MAX + 1];
    /* precomposed U+00E9 and e + U+0301 are one name */
    assert_string_equal(nfc("\xC3\xA9", 2, a), "\xC3\xA9");
    assert_string_equal(nfc("e\xCC\x81", 3, b), "\xC3\xA9");
    assert_string_equal(nfc("Zoe\xCC\x88", 5, a), "Zo\xC3\xAB");
    /* U+212B ANGSTROM SIGN and A + U+030A both become U+00C5 */
    assert_string_equal(nfc("\xE2\x84\xAB", 3, a), "\xC3\x85");
    assert_string_equal(nfc("A\xCC\x8A", 3, b), "\xC3\x85");
    /* Case is kept: Ann and ann are two names. */
    assert_string_equal(nfc("Ann", 3, a), "Ann");
    assert_string_equal(nfc("ann", 3, b), "ann");
    /* One space inside is fine; ASCII passes through unchanged. */
    assert_string_equal(nfc("Mary Ann", 8, a), "Mary Ann");
    /* In place, and the length comes back. */
    char buf[UTIL_NAME_MAX + 1] = "e\xCC\x81t\xC3\xA9";
    size_t n = 0;
    char why[128];
    assert_int_equal(util_name_normalize(buf, 6, buf, sizeof(buf), &n, why, sizeof(why)), 0);
    assert_int_equal(n, 5);
    assert_string_equal(buf, "\xC3\xA9t\xC3\xA9");
    /* 64 bytes of decomposed accents are 48 composed */
    char d[65] = "";
    for (int i = 0; i < 16; i++)
        strcat(d, "e\xCC\x81"), strcat(d, "a");
    assert_int_equal(util_name_normalize(d, 64, buf, sizeof(buf), &n, why, sizeof(why)), 0);
    assert_int_equal(n, 48);
    /* a name that does not fit the caller's buffer is refused, not cut */
    char small[4];
    assert_int_equal(util_name_normalize("abcd", 4, small, sizeof(small), NULL, why,
                                         sizeof(why)),
                     -EINVAL);
}

static void test_invisible_and_separator_characters_rejected(void **state)
{
    (void)state;
    struct {
        const char *s;
        const char *cp;
        const char *kind;
    } bad[] = {
        {"a\xE2\x80\x8B" "b", "U+200B", "format"},     /* zero-width space */
        {"a\xE2\x80\x8C" "b", "U+200C", "format"},     /* zero-width non-joiner */
        {"a\xE2\x80\x8D" "b", "U+200D", "format"},     /* zero-width joiner */
        {"a\xE2\x80\xAE" "b", "U+202E", "format"},     /* right-to-left override */
        {"\xEF\xBB\xBF" "ab", "U+FEFF", "format"},     /* BOM / zero-width no-break */
        {"a\xC2\xAD" "b", "U+00AD", "format"},          /* soft hyphen */
        {"a\xE2\x81\xA0" "b", "U+2060", "format"},     /* word joiner */
        {"a\xE2\x80\xA8" "b", "U+2028", "separator"},  /* line separator */
        {"a\xE2\x80\xA9" "b", "U+2029", "separator"},  /* paragraph separator */
        {"a\xC2\xA0" "b", "U+00A0", "space other"},     /* no-break space */
        {"a\xE3\x80\x80" "b", "U+3000", "space other"},/* ideographic space */
        {"a\xE2\x80\x80" "b", "U+2000", "space other"},/* en quad (NFC: U+2002) */
        {"a\xE2\x80\xAF" "b", "U+202F", "space other"},/* narrow no-break space */
        {"a\tb", "U+0009", "control"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char why[128] = "";
        int rc = util_name_check(bad[i].s, strlen(bad[i].s), why, sizeof(why));
        if (rc != -EINVAL || strstr(why, bad[i].cp) == NULL || strstr(why, bad[i].kind) == NULL)
            fail_msg("%s: expected a refusal naming %s as %s; got %d \"%s\"", bad[i].cp,
                     bad[i].cp, bad[i].kind, rc, why);
    }
    char why[128];
    assert_int_equal(util_name_check(" ann", 4, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "begins with a space"));
    assert_int_equal(util_name_check("ann ", 4, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "ends with a space"));
    assert_int_equal(util_name_check(" ", 1, why, sizeof(why)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_reason_is_specific),
        cmocka_unit_test(test_nfc_is_the_identity),
        cmocka_unit_test(test_invisible_and_separator_characters_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
