/* rpc_evloop over a socketpair and its own eventfd: events come back with
 * the pointer they were registered with, a wake-up from any thread ends a
 * wait and is not an event, and the tick is due once per period. No sleeps:
 * a wait either has events ready or is woken. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/evloop.h"
#include "rpc/sock.h"

static void open_loop(rpc_evloop *l, int tick_ms)
{
    char err[RPC_ERRLEN];
    if (rpc_evloop_init(l, tick_ms, err) < 0)
        fail_msg("rpc_evloop_init: expected 0, got an error: %s", err);
}

static void test_events_carry_the_pointer(void **state)
{
    (void)state;
    rpc_evloop l;
    int sv[2], marker = 0, woke = -1;
    struct epoll_event evs[4];
    open_loop(&l, 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(rpc_evloop_add(&l, sv[0], EPOLLIN, &marker), 0);

    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 0); /* nothing yet */
    assert_int_equal(woke, 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 1);
    assert_ptr_equal(evs[0].data.ptr, &marker);
    assert_true(evs[0].events & EPOLLIN);
    assert_int_equal(woke, 0);

    /* Interest changed to writing: the socket has room. */
    assert_int_equal(rpc_evloop_mod(&l, sv[0], EPOLLOUT, &marker), 0);
    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 1);
    assert_true(evs[0].events & EPOLLOUT);
    assert_false(evs[0].events & EPOLLIN);

    rpc_evloop_del(&l, sv[0]);
    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 0);
    close(sv[0]);
    close(sv[1]);
    rpc_evloop_fini(&l);
}

static void test_wakeups_fold_and_are_no_event(void **state)
{
    (void)state;
    rpc_evloop l;
    int woke = -1;
    struct epoll_event evs[4];
    open_loop(&l, 0);
    rpc_evloop_wake(&l);
    rpc_evloop_wake(&l);
    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 0);
    assert_int_equal(woke, 1);
    /* Both wake-ups were consumed by that one wait. */
    assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 0);
    assert_int_equal(woke, 0);
    rpc_evloop_fini(&l);
}

static void *waker(void *arg)
{
    rpc_evloop_wake(arg);
    return NULL;
}

static void test_wake_from_another_thread_ends_a_wait(void **state)
{
    (void)state;
    rpc_evloop l;
    int woke = 0;
    struct epoll_event evs[4];
    pthread_t th;
    open_loop(&l, 60000); /* a wait that only a wake-up ends in time */
    assert_int_equal(pthread_create(&th, NULL, waker, &l), 0);
    while (!woke)
        assert_int_equal(rpc_evloop_wait(&l, evs, 4, &woke), 0);
    pthread_join(th, NULL);
    rpc_evloop_fini(&l);
}

static void test_tick_once_per_period(void **state)
{
    (void)state;
    rpc_evloop l;
    open_loop(&l, 200);
    int64_t t0 = l.last_tick;
    assert_int_equal(rpc_evloop_tick(&l, t0 + 199, 0), 0);
    assert_int_equal(rpc_evloop_tick(&l, t0 + 200, 0), 1);
    assert_int_equal(rpc_evloop_tick(&l, t0 + 300, 0), 0); /* counts from t0+200 */
    assert_int_equal(rpc_evloop_tick(&l, t0 + 300, 1), 1); /* forced */
    assert_int_equal(rpc_evloop_tick(&l, t0 + 499, 0), 0);
    assert_int_equal(rpc_evloop_tick(&l, t0 + 500, 0), 1);
    rpc_evloop_fini(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_carry_the_pointer),
        cmocka_unit_test(test_wakeups_fold_and_are_no_event),
        cmocka_unit_test(test_wake_from_another_thread_ends_a_wait),
        cmocka_unit_test(test_tick_once_per_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
