/* balance: which conn takes a call (least outstanding; primary, backup,
 * ejected, avoided, suspect in that order; full ones skipped) and outlier ejection,
 * on a channel built in memory. No threads, no TCP, no sleeps. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fakechan.h"
#include "rpc/clock.h"

/* Picks, checks the endpoint and conn chosen, and gives the use back. */
static void expect_pick(fakechan *f, const endpoint *avoid, size_t e, int i)
{
    int full = -1;
    conn *cn = balance_pick(&f->ch, avoid, NULL, &full);
    assert_non_null(cn);
    assert_string_equal(cn->ep->addr, f->ep[e].addr);
    assert_int_equal(cn->index, i);
    assert_int_equal(atomic_load(&cn->ep->users), 1);
    balance_release(cn);
    assert_int_equal(atomic_load(&cn->ep->users), 0);
}

static void expect_none(fakechan *f, int want_full)
{
    int full = -1;
    assert_null(balance_pick(&f->ch, NULL, NULL, &full));
    assert_int_equal(full, want_full);
}

static void test_least_outstanding(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    expect_none(f, 0); /* nothing ready */
    fakechan_ready(f, 0, 0, 3);
    fakechan_ready(f, 0, 1, 1);
    fakechan_ready(f, 1, 0, 2);
    /* (1, 1) stays DOWN: never picked, though it has no calls */
    for (int k = 0; k < 4; k++)
        expect_pick(f, NULL, 0, 1);
    fakechan_free(f);
}

static void test_full_conns_are_skipped(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(1, 2);
    fakechan_ready(f, 0, 0, 2);
    fakechan_ready(f, 0, 1, 2);
    expect_none(f, 1);
    atomic_store(&f->conns[0][1].outstanding, 1);
    expect_pick(f, NULL, 0, 1);
    fakechan_free(f);
}

static void test_avoided_endpoint_is_last(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    fakechan_ready(f, 0, 0, 0);
    fakechan_ready(f, 1, 0, 5);
    expect_pick(f, &f->ep[0], 1, 0);
    atomic_store(&f->conns[1][0].state, CONN_DRAINING);
    expect_pick(f, &f->ep[0], 0, 0); /* nothing else: back to the avoided one */
    fakechan_free(f);
}

/* A call given an endpoint (rpc_call.to) goes there, however busy, and
 * nowhere else: a member asked for its own answer. */
static void test_only_the_endpoint_asked(void **state)
{
    (void)state;
    int full = -1;
    fakechan *f = fakechan_new(2, 8);
    fakechan_ready(f, 0, 0, 0);
    fakechan_ready(f, 1, 0, 5);
    conn *cn = balance_pick(&f->ch, NULL, "ep1", &full);
    assert_non_null(cn);
    assert_string_equal(cn->ep->addr, "ep1");
    balance_release(cn);
    atomic_store(&f->conns[1][0].state, CONN_DRAINING);
    assert_null(balance_pick(&f->ch, NULL, "ep1", &full));
    assert_int_equal(full, 0);
    assert_null(balance_pick(&f->ch, NULL, "ep9", &full));
    fakechan_free(f);
}

static void test_backup_only_without_primary(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    atomic_store(&f->ep[0].backup, 1);
    fakechan_ready(f, 0, 0, 0);
    fakechan_ready(f, 1, 0, 7);
    expect_pick(f, NULL, 1, 0);
    atomic_store(&f->conns[1][0].state, CONN_DOWN);
    expect_pick(f, NULL, 0, 0);
    fakechan_free(f);
}

/* A conn whose peer went silent while a call timed out is picked after
 * every other, even an ejected or avoided endpoint's, and again once bytes
 * arrive. */
static void test_suspect_conn_is_last(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    fakechan_ready(f, 0, 0, 0);
    fakechan_ready(f, 1, 0, 6);
    atomic_store(&f->conns[0][0].suspect, 1);
    expect_pick(f, NULL, 1, 0);
    atomic_store(&f->ep[1].ejected_until, rpc_now_ms() + 60000);
    expect_pick(f, NULL, 1, 0); /* ejected, yet before the suspect */
    expect_pick(f, &f->ep[1], 1, 0); /* avoided by a retry, yet before the suspect */
    atomic_store(&f->conns[1][0].state, CONN_DOWN);
    expect_pick(f, &f->ep[1], 0, 0); /* nothing else: the suspect */
    atomic_store(&f->conns[0][0].suspect, 0);
    atomic_store(&f->conns[1][0].state, CONN_READY);
    atomic_store(&f->ep[1].ejected_until, 0);
    expect_pick(f, NULL, 0, 0); /* fewest outstanding again */
    fakechan_free(f);
}

/* Fails n calls on cn's endpoint. */
static void fail_calls(conn *cn, int n)
{
    for (int k = 0; k < n; k++)
        balance_note(cn, 1);
}

static void test_ejection(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    conn *bad = &f->conns[0][0];
    fakechan_ready(f, 0, 0, 0);
    fakechan_ready(f, 1, 0, 6);

    /* An answer in between clears the count. */
    fail_calls(bad, EJECT_AFTER - 1);
    balance_note(bad, 0);
    fail_calls(bad, EJECT_AFTER - 1);
    assert_int_equal(f->events, 0);
    expect_pick(f, NULL, 0, 0);

    fail_calls(bad, 1);
    assert_int_equal(f->events, 1);
    assert_int_equal(f->last.type, RPC_EV_EJECTED);
    assert_string_equal(f->last.endpoint, "ep0");
    assert_int_equal(f->last.delay_ms, EJECT_BASE_MS);
    assert_int_equal(rpc_stats_get(f->stats, RPC_C_EJECTIONS), 1);
    assert_true(atomic_load(&f->ep[0].ejected_until) > rpc_now_ms());
    expect_pick(f, NULL, 1, 0); /* busier, but not ejected */

    /* Ejected is still better than nothing. */
    atomic_store(&f->conns[1][0].state, CONN_DOWN);
    expect_pick(f, NULL, 0, 0);

    /* Each ejection lasts longer, up to the cap. */
    fail_calls(bad, EJECT_AFTER);
    assert_int_equal(f->last.delay_ms, 2 * EJECT_BASE_MS);
    for (int k = 0; k < EJECT_MAX_MS / EJECT_BASE_MS; k++)
        fail_calls(bad, EJECT_AFTER);
    assert_int_equal(f->last.delay_ms, EJECT_MAX_MS);
    fakechan_free(f);
}

static void test_coming_up_and_last_error(void **state)
{
    (void)state;
    fakechan *f = fakechan_new(2, 8);
    assert_true(balance_coming_up(&f->ch)); /* first attempts are immediate */
    for (size_t e = 0; e < 2; e++)
        for (int i = 0; i < FAKE_POOL; i++)
            atomic_store(&f->conns[e][i].soon, 0);
    assert_false(balance_coming_up(&f->ch));
    atomic_store(&f->conns[1][1].soon, 1);
    assert_true(balance_coming_up(&f->ch));

    assert_int_equal(balance_last_error(&f->ch), 0);
    atomic_store(&f->conns[1][0].last_err, -ECONNREFUSED);
    assert_int_equal(balance_last_error(&f->ch), -ECONNREFUSED);
    fakechan_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least_outstanding),
        cmocka_unit_test(test_full_conns_are_skipped),
        cmocka_unit_test(test_avoided_endpoint_is_last),
        cmocka_unit_test(test_only_the_endpoint_asked),
        cmocka_unit_test(test_backup_only_without_primary),
        cmocka_unit_test(test_suspect_conn_is_last),
        cmocka_unit_test(test_ejection),
        cmocka_unit_test(test_coming_up_and_last_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
