/* rpc_taskq: tasks run on the workers with each worker's own state, a task
 * may queue another (no lock is held while it runs), the queue's cap, a
 * failing thread_init, stopping with tasks queued, and a worker stuck in a
 * task. Tasks that must wait are held at a gate the test opens; no sleeps. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/taskq.h"

/* What the workers and tasks of one test share. */
typedef struct world {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int inits, finis, fail_init_at; /* thread_init number fail_init_at fails */
    int ran;
    int gate_open, at_gate;
    rpc_taskq *q;
} world;

typedef struct job {
    rpc_task task;
    world *w;
    int gated;            /* wait at the gate before counting */
    int spawn;            /* push one more (ungated) task from inside */
    int heap;             /* malloc'd: run frees it */
    void *state_seen;
} job;

static int w_init(void *user, void **state)
{
    world *w = user;
    pthread_mutex_lock(&w->lock);
    int n = ++w->inits;
    pthread_mutex_unlock(&w->lock);
    if (n == w->fail_init_at)
        return -EIO;
    int *st = malloc(sizeof(int));
    *st = n;
    *state = st;
    return 0;
}

static void w_fini(void *user, void *state)
{
    world *w = user;
    free(state);
    pthread_mutex_lock(&w->lock);
    w->finis++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void run(rpc_task *t, void *state)
{
    job *j = (job *)t;
    world *w = j->w;
    j->state_seen = state;
    pthread_mutex_lock(&w->lock);
    if (j->gated) {
        w->at_gate++;
        pthread_cond_broadcast(&w->cond);
        while (!w->gate_open)
            pthread_cond_wait(&w->cond, &w->lock);
    }
    w->ran++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (j->spawn) {
        job *k = calloc(1, sizeof(*k));
        k->task.fn = run;
        k->w = w;
        k->heap = 1;
        assert_int_equal(rpc_taskq_push(w->q, &k->task), 0);
    }
    if (j->heap)
        free(j);
}

static void world_init(world *w, rpc_taskq *q, int threads, int queue_max)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->q = q;
    rpc_taskq_cfg cfg = {.threads = threads, .queue_max = queue_max,
                         .thread_init = w_init, .thread_fini = w_fini, .user = w};
    rpc_taskq_init(q, &cfg);
}

/* Waits until *field reaches want. */
static void wait_for(world *w, const int *field, int want)
{
    pthread_mutex_lock(&w->lock);
    while (*field < want)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void open_gate(world *w)
{
    pthread_mutex_lock(&w->lock);
    w->gate_open = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* One worker, held in a gated task (busy) so that what is pushed next waits
 * in the queue. */
static void start_held(world *w, rpc_taskq *q, int queue_max, job *busy)
{
    world_init(w, q, 1, queue_max);
    *busy = (job){.task.fn = run, .w = w, .gated = 1};
    assert_int_equal(rpc_taskq_start(q), 0);
    assert_true(rpc_taskq_idle(q));
    assert_int_equal(rpc_taskq_push(q, &busy->task), 0);
    wait_for(w, &w->at_gate, 1); /* the one worker holds it: the queue is empty */
}

/* Pushes n ungated tasks, each expected to fit. */
static void push_plain(world *w, rpc_taskq *q, job *jobs, int n)
{
    for (int i = 0; i < n; i++) {
        jobs[i] = (job){.task.fn = run, .w = w};
        assert_int_equal(rpc_taskq_push(q, &jobs[i].task), 0);
    }
}

static void test_tasks_run_with_their_worker_state(void **state)
{
    (void)state;
    rpc_taskq q;
    world w;
    job jobs[16] = {0};
    world_init(&w, &q, 3, 64);
    assert_int_equal(rpc_taskq_start(&q), 0);
    assert_int_equal(w.inits, 3);
    for (int i = 0; i < 16; i++) {
        jobs[i].task.fn = run;
        jobs[i].w = &w;
        jobs[i].spawn = i == 0;
        assert_int_equal(rpc_taskq_push(&q, &jobs[i].task), 0);
    }
    wait_for(&w, &w.ran, 17); /* and the one the first task queued */
    for (int i = 0; i < 16; i++) {
        int n = *(int *)jobs[i].state_seen;
        if (n < 1 || n > 3)
            fail_msg("task %d: expected the state of worker 1..3, got %d", i, n);
    }
    assert_int_equal(rpc_taskq_stop(&q, 10000), 0);
    assert_int_equal(w.finis, 3);
    assert_null(rpc_taskq_take_all(&q));
    rpc_taskq_fini(&q);
}

static void test_queue_cap_and_idle(void **state)
{
    (void)state;
    rpc_taskq q;
    world w;
    job busy, waiting[3];
    start_held(&w, &q, 2, &busy);
    push_plain(&w, &q, waiting, 2);
    assert_false(rpc_taskq_idle(&q));
    waiting[2] = (job){.task.fn = run, .w = &w};
    int rc = rpc_taskq_push(&q, &waiting[2].task);
    if (rc != -EAGAIN)
        fail_msg("third task past queue_max 2: expected -EAGAIN, got %d", rc);
    open_gate(&w);
    wait_for(&w, &w.ran, 3);
    assert_true(rpc_taskq_idle(&q));
    assert_int_equal(rpc_taskq_stop(&q, 10000), 0);
    rpc_taskq_fini(&q);
}

static void test_failed_thread_init_stops_start(void **state)
{
    (void)state;
    rpc_taskq q;
    world w;
    world_init(&w, &q, 3, 8);
    w.fail_init_at = 2;
    int rc = rpc_taskq_start(&q);
    if (rc != -EIO)
        fail_msg("second thread_init failing: expected -EIO, got %d", rc);
    assert_int_equal(q.nthreads, 1);
    assert_int_equal(rpc_taskq_stop(&q, 10000), 0);
    assert_int_equal(w.finis, 1); /* the worker that started, not the failed one */
    rpc_taskq_fini(&q);
}

static void test_stop_runs_what_is_queued(void **state)
{
    (void)state;
    rpc_taskq q;
    world w;
    job busy, queued[4];
    start_held(&w, &q, 8, &busy);
    push_plain(&w, &q, queued, 4);
    open_gate(&w);
    assert_int_equal(rpc_taskq_stop(&q, 10000), 0);
    assert_int_equal(w.ran, 5);
    assert_null(rpc_taskq_take_all(&q));
    rpc_taskq_fini(&q);
}

static void test_stuck_worker_is_abandoned(void **state)
{
    (void)state;
    /* The detached worker outlives the call: the queue and world stay. */
    static rpc_taskq q;
    static world w;
    static job stuck, left;
    start_held(&w, &q, 8, &stuck);
    push_plain(&w, &q, &left, 1);
    int abandoned = rpc_taskq_stop(&q, 0);
    if (abandoned != 1)
        fail_msg("a worker held in its task: expected 1 abandoned, got %d", abandoned);
    /* Tasks still queued are the caller's. */
    rpc_task *t = rpc_taskq_take_all(&q);
    assert_ptr_equal(t, &left.task);
    assert_null(t->next);
    open_gate(&w);
    wait_for(&w, &w.finis, 1); /* it ends on its own once let go */
    assert_int_equal(w.ran, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tasks_run_with_their_worker_state),
        cmocka_unit_test(test_queue_cap_and_idle),
        cmocka_unit_test(test_failed_thread_init_stops_start),
        cmocka_unit_test(test_stop_runs_what_is_queued),
        cmocka_unit_test(test_stuck_worker_is_abandoned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
