/* rpc_buf: growth under a cap, consumption, reclaiming space. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/buf.h"

static void test_append_consume(void **state)
{
    (void)state;
    rpc_buf b;
    rpc_buf_init(&b);
    assert_int_equal(rpc_buf_append(&b, "hello", 5, 100), 0);
    assert_int_equal(rpc_buf_used(&b), 5);
    rpc_buf_consume(&b, 2);
    assert_memory_equal(rpc_buf_head(&b), "llo", 3);
    rpc_buf_consume(&b, 3);
    assert_int_equal(rpc_buf_used(&b), 0);
    assert_int_equal(b.off, 0);
    rpc_buf_fini(&b);
}

/* The cap counts bytes held, not bytes ever appended. */
static void test_cap_counts_held_bytes(void **state)
{
    (void)state;
    rpc_buf b;
    rpc_buf_init(&b);
    char chunk[40];
    memset(chunk, 'x', sizeof(chunk));
    assert_int_equal(rpc_buf_append(&b, chunk, 40, 100), 0);
    assert_int_equal(rpc_buf_append(&b, chunk, 40, 100), 0);
    assert_int_equal(rpc_buf_append(&b, chunk, 40, 100), -EMSGSIZE);
    assert_int_equal(rpc_buf_used(&b), 80);
    rpc_buf_consume(&b, 50);
    assert_int_equal(rpc_buf_append(&b, chunk, 40, 100), 0);
    assert_int_equal(rpc_buf_used(&b), 70);
    assert_true(b.cap <= 100);
    rpc_buf_fini(&b);
}

static void test_reserve_refuses_huge(void **state)
{
    (void)state;
    rpc_buf b;
    rpc_buf_init(&b);
    assert_int_equal(rpc_buf_reserve(&b, SIZE_MAX, 1 << 20), -EMSGSIZE);
    assert_null(b.data);
    rpc_buf_fini(&b);
}

static void test_shrink_only_when_empty(void **state)
{
    (void)state;
    rpc_buf b;
    rpc_buf_init(&b);
    assert_int_equal(rpc_buf_reserve(&b, 100000, 1 << 20), 0);
    b.len = 10;
    rpc_buf_shrink(&b, 4096);
    assert_non_null(b.data);
    rpc_buf_consume(&b, 10);
    rpc_buf_shrink(&b, 4096);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    rpc_buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume),
        cmocka_unit_test(test_cap_counts_held_bytes),
        cmocka_unit_test(test_reserve_refuses_huge),
        cmocka_unit_test(test_shrink_only_when_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
