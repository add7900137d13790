/* rpc_waiter: a sleep on a word ends when another thread changes the word
 * and wakes it, at once when the word already moved, or at the deadline.
 * Waits on events (a second thread), not on time. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "rpc/waiter.h"

static void test_word_already_moved_returns_at_once(void **state)
{
    (void)state;
    _Atomic uint32_t word = 1;
    /* Sleeps only while the word is 0: it is not, so no sleep at all,
     * however far the deadline. */
    assert_int_equal(rpc_waiter_wait(&word, 0, 0), 0);
}

static void test_deadline_passes(void **state)
{
    (void)state;
    _Atomic uint32_t word = 0;
    int64_t until = rpc_now_ms() + 20;
    int rc = 0;
    /* Wakes may be spurious: loop as every caller does. */
    while (rc == 0 && atomic_load(&word) == 0)
        rc = rpc_waiter_wait(&word, 0, until);
    if (rc != -ETIMEDOUT)
        fail_msg("expected -ETIMEDOUT once the deadline passed, got %d", rc);
    assert_true(rpc_now_ms() >= until);
    assert_int_equal(rpc_waiter_wait(&word, 0, until), -ETIMEDOUT);
}

typedef struct shared {
    _Atomic uint32_t word;
    _Atomic int asleep; /* the sleeper is about to sleep */
} shared;

static void *waker(void *arg)
{
    shared *sh = arg;
    while (atomic_load(&sh->asleep) == 0)
        ; /* until the sleeper has read the word */
    atomic_store(&sh->word, 1);
    rpc_waiter_wake(&sh->word, 1);
    return NULL;
}

/* A change made after the sleeper read the word is never lost: either the
 * sleep sees the word moved, or the wake ends it. No deadline: a lost wake
 * would hang here, and ctest's timeout would say so. */
static void test_wake_is_not_lost(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        shared sh = {0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, waker, &sh), 0);
        uint32_t w = atomic_load(&sh.word);
        atomic_store(&sh.asleep, 1);
        while (w == 0) {
            assert_int_equal(rpc_waiter_wait(&sh.word, w, 0), 0);
            w = atomic_load(&sh.word);
        }
        assert_int_equal(w, 1);
        pthread_join(t, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_word_already_moved_returns_at_once),
        cmocka_unit_test(test_deadline_passes),
        cmocka_unit_test(test_wake_is_not_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
