/* util/ready: the line a program writes on its --ready-fd pipe once it
 * serves, and how the supervisor reads it. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/ready.h"

/* What notify wrote on a pipe, and that it closed its end. */
static void notify_into(const char *member, char *got, size_t cap)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(util_ready_notify(p[1], member), 0);
    assert_int_equal(fcntl(p[1], F_GETFD), -1); /* closed: the reader sees EOF */
    ssize_t n = read(p[0], got, cap - 1);
    got[n > 0 ? n : 0] = '\0';
    char more;
    assert_int_equal(read(p[0], &more, 1), 0);
    close(p[0]);
}

static void test_notify(void **state)
{
    (void)state;
    char got[UTIL_READY_LINE_MAX + 1];
    notify_into(NULL, got, sizeof(got));
    assert_string_equal(got, "ready\n");
    notify_into("127.0.0.1:40123", got, sizeof(got));
    assert_string_equal(got, "ready member=127.0.0.1:40123\n");
    /* Not given: nothing written, nothing closed. */
    assert_int_equal(util_ready_notify(-1, NULL), 0);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int ready;
        const char *member;
    } cases[] = {
        {"ready", 1, ""},
        {"ready member=10.0.0.5:40123", 1, "10.0.0.5:40123"},
        {"ready member=10.0.0.5:40123 later=1", 1, "10.0.0.5:40123"},
        {"ready later=1", 1, ""},
        {"readyx", 0, ""},
        {"read", 0, ""},
        {"", 0, ""},
        {"msg=listening member=1.2.3.4:5", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char member[64] = "left over";
        int ready = util_ready_parse(cases[i].line, strlen(cases[i].line), member,
                                     sizeof(member));
        if (ready != cases[i].ready || strcmp(member, cases[i].member) != 0)
            fail_msg("\"%s\": expected ready=%d member \"%s\", got ready=%d member \"%s\"",
                     cases[i].line, cases[i].ready, cases[i].member, ready, member);
    }
    /* A member longer than the room is cut, never overrun. */
    char small[8];
    assert_int_equal(util_ready_parse("ready member=127.0.0.1:1", 24, small, sizeof(small)), 1);
    assert_string_equal(small, "127.0.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
