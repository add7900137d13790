#include "rpc/taskq.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

void rpc_taskq_init(rpc_taskq *q, const rpc_taskq_cfg *cfg)
{
    q->cfg = *cfg;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->head = q->tail = NULL;
    q->len = 0;
    q->stopping = 0;
    q->threads = NULL;
    q->nthreads = 0;
}

int rpc_taskq_push(rpc_taskq *q, rpc_task *t)
{
    pthread_mutex_lock(&q->lock);
    if (q->len >= q->cfg.queue_max) {
        pthread_mutex_unlock(&q->lock);
        return -EAGAIN;
    }
    t->next = NULL;
    if (q->tail != NULL)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
    q->len++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

/* Waits for the next task; NULL once stopping and nothing is left. */
static rpc_task *pop(rpc_taskq *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->head == NULL && !q->stopping)
        pthread_cond_wait(&q->cond, &q->lock);
    rpc_task *t = q->head;
    if (t != NULL) {
        q->head = t->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->len--;
    }
    pthread_mutex_unlock(&q->lock);
    return t;
}

int rpc_taskq_idle(rpc_taskq *q)
{
    pthread_mutex_lock(&q->lock);
    int idle = q->len == 0;
    pthread_mutex_unlock(&q->lock);
    return idle;
}

/* What a starting worker reports back to rpc_taskq_start. */
typedef struct start_arg {
    rpc_taskq *q;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int rc;
} start_arg;

static void *worker_main(void *arg)
{
    start_arg *sa = arg;
    rpc_taskq *q = sa->q;
    void *state = NULL;
    int rc = q->cfg.thread_init != NULL ? q->cfg.thread_init(q->cfg.user, &state) : 0;

    pthread_mutex_lock(&sa->lock);
    sa->rc = rc;
    sa->done = 1;
    pthread_cond_signal(&sa->cond);
    pthread_mutex_unlock(&sa->lock); /* sa is gone from here on */
    if (rc < 0)
        return NULL;
    rpc_task *t;
    while ((t = pop(q)) != NULL)
        t->fn(t, state); /* no lock held */
    if (q->cfg.thread_fini != NULL)
        q->cfg.thread_fini(q->cfg.user, state);
    return NULL;
}

/* Starts one worker and waits for its thread_init. 0 or a negative errno. */
static int start_one(rpc_taskq *q, pthread_t *th)
{
    start_arg sa = {.q = q};
    pthread_mutex_init(&sa.lock, NULL);
    pthread_cond_init(&sa.cond, NULL);
    int rc = -pthread_create(th, NULL, worker_main, &sa);
    if (rc == 0) {
        pthread_mutex_lock(&sa.lock);
        while (!sa.done)
            pthread_cond_wait(&sa.cond, &sa.lock);
        pthread_mutex_unlock(&sa.lock);
        rc = sa.rc;
        if (rc < 0)
            pthread_join(*th, NULL);
    }
    pthread_mutex_destroy(&sa.lock);
    pthread_cond_destroy(&sa.cond);
    return rc;
}

int rpc_taskq_start(rpc_taskq *q)
{
    q->threads = calloc((size_t)q->cfg.threads, sizeof(pthread_t));
    if (q->threads == NULL)
        return -ENOMEM;
    for (int i = 0; i < q->cfg.threads; i++) {
        int rc = start_one(q, &q->threads[q->nthreads]);
        if (rc < 0)
            return rc;
        q->nthreads++;
    }
    return 0;
}

int rpc_taskq_stop(rpc_taskq *q, int join_ms)
{
    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    int abandoned = 0;
    for (int i = 0; i < q->nthreads; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += join_ms / 1000;
        ts.tv_nsec += (long)(join_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(q->threads[i], NULL, &ts) != 0) {
            pthread_detach(q->threads[i]);
            abandoned++;
        }
    }
    q->nthreads = 0;
    return abandoned;
}

rpc_task *rpc_taskq_take_all(rpc_taskq *q)
{
    pthread_mutex_lock(&q->lock);
    rpc_task *list = q->head;
    q->head = q->tail = NULL;
    q->len = 0;
    pthread_mutex_unlock(&q->lock);
    return list;
}

void rpc_taskq_fini(rpc_taskq *q)
{
    free(q->threads);
    q->threads = NULL;
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}
