/* The reconnect curve, with an injected random source and clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rpc/backoff.h"

static double fixed(void *user)
{
    return *(double *)user;
}

static void test_first_attempt_is_immediate(void **state)
{
    (void)state;
    rpc_backoff_cfg cfg;
    rpc_backoff b;
    double r = 0.5;
    rpc_backoff_cfg_default(&cfg);
    rpc_backoff_init(&b, &cfg, fixed, &r);
    assert_int_equal(rpc_backoff_next(&b), 0);
}

/* With jitter at its midpoint the curve is 50 * 1.6^(n-1), capped at 2000. */
static void test_curve_without_jitter(void **state)
{
    (void)state;
    rpc_backoff_cfg cfg;
    rpc_backoff b;
    double r = 0.5;
    rpc_backoff_cfg_default(&cfg);
    rpc_backoff_init(&b, &cfg, fixed, &r);
    int64_t want[] = {0, 50, 80, 128, 204, 327, 524, 838, 1342, 2000, 2000, 2000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int64_t got = rpc_backoff_next(&b);
        if (got != want[i])
            fail_msg("attempt %zu: expected %lld ms, got %lld", i, (long long)want[i],
                     (long long)got);
    }
}

/* The cap is applied first, then the jitter: at the cap, delays spread over
 * [1600, 2400) instead of piling up on 2000. */
static void test_cap_then_jitter(void **state)
{
    (void)state;
    rpc_backoff_cfg cfg;
    rpc_backoff b;
    double r;
    rpc_backoff_cfg_default(&cfg);
    rpc_backoff_init(&b, &cfg, fixed, &r);
    b.failures = 30;
    r = 0.0;
    assert_int_equal(rpc_backoff_next(&b), 1600);
    r = 0.999999;
    assert_in_range(rpc_backoff_next(&b), 2399, 2400);
    r = 0.5;
    assert_int_equal(rpc_backoff_next(&b), 2000);
    /* Below the cap the same proportions hold. */
    b.failures = 1;
    r = 0.0;
    assert_int_equal(rpc_backoff_next(&b), 40);
}

/* With the real generator, delays stay inside the jittered envelope and do
 * not all coincide. */
static void test_real_jitter_spreads(void **state)
{
    (void)state;
    rpc_backoff_cfg cfg;
    rpc_backoff_cfg_default(&cfg);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 200; i++) {
        rpc_backoff b;
        rpc_backoff_init(&b, &cfg, NULL, NULL);
        b.failures = 20;
        int64_t d = rpc_backoff_next(&b);
        assert_in_range(d, 1600, 2400);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo > 200);
}

/* A connection healthy for a second resets the curve; a shorter one does not. */
static void test_reset_after_healthy_second(void **state)
{
    (void)state;
    rpc_backoff_cfg cfg;
    rpc_backoff b;
    double r = 0.5;
    rpc_backoff_cfg_default(&cfg);
    rpc_backoff_init(&b, &cfg, fixed, &r);
    for (int i = 0; i < 10; i++)
        rpc_backoff_next(&b);
    rpc_backoff_up(&b, 10000);
    rpc_backoff_down(&b, 10999); /* 999 ms: not healthy long enough */
    assert_int_equal(rpc_backoff_next(&b), 2000);
    rpc_backoff_up(&b, 20000);
    rpc_backoff_down(&b, 21000); /* 1000 ms: reset */
    assert_int_equal(rpc_backoff_next(&b), 0);
    assert_int_equal(rpc_backoff_next(&b), 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_attempt_is_immediate),
        cmocka_unit_test(test_curve_without_jitter),
        cmocka_unit_test(test_cap_then_jitter),
        cmocka_unit_test(test_real_jitter_spreads),
        cmocka_unit_test(test_reset_after_healthy_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
