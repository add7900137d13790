/* rpc_taskq: a queue of tasks and the worker threads that run them, after
 * nng's src/core/taskq.c. Each worker has its own state from thread_init
 * (a database connection, say), handed to every task it runs and to
 * thread_fini when it stops. The queue lock is dropped before a task runs,
 * so a task may push more tasks.
 *
 *   any thread --rpc_taskq_push--> queue --> worker: task->fn(task, state)
 *
 * Threads: every function but init/start/stop/fini is safe from any thread
 * and takes the queue's lock (q->lock), a leaf lock: nothing else is taken
 * while it is held, and no task runs under it. */
#ifndef TCPOPS_RPC_TASKQ_H
#define TCPOPS_RPC_TASKQ_H

#include <pthread.h>

typedef struct rpc_task rpc_task;

/* What a task does, on a worker, with that worker's thread_init state. The
 * task is the caller's (embed it in a larger record); the queue forgets it
 * before fn runs, so fn may free it. */
typedef void (*rpc_task_fn)(rpc_task *t, void *state);

struct rpc_task {
    rpc_task *next;    /* the queue's */
    rpc_task_fn fn;
};

typedef struct rpc_taskq_cfg {
    int threads;       /* workers, > 0 */
    int queue_max;     /* tasks waiting for a worker, > 0 */
    /* Optional per worker: thread_init returns 0 or a negative errno (which
     * stops rpc_taskq_start); thread_fini runs as the worker stops. */
    int (*thread_init)(void *user, void **state);
    void (*thread_fini)(void *user, void *state);
    void *user;
} rpc_taskq_cfg;

typedef struct rpc_taskq {
    rpc_taskq_cfg cfg;
    pthread_mutex_t lock;      /* guards the queue and stopping */
    pthread_cond_t cond;       /* a task came, or stopping */
    rpc_task *head, *tail;
    int len;
    int stopping;
    pthread_t *threads;
    int nthreads;              /* started */
} rpc_taskq;

/* Copies cfg; starts no thread. Allocates nothing. */
void rpc_taskq_init(rpc_taskq *q, const rpc_taskq_cfg *cfg);

/* Starts the workers one at a time, each running thread_init before the next
 * starts. Returns 0, or the first failure (a negative errno; the workers
 * already started keep running until rpc_taskq_stop). */
int rpc_taskq_start(rpc_taskq *q);

/* Queues t for a worker. Returns 0, or -EAGAIN when queue_max tasks already
 * wait (the caller keeps t). */
int rpc_taskq_push(rpc_taskq *q, rpc_task *t);

/* Whether no task waits for a worker (some may be running). */
int rpc_taskq_idle(rpc_taskq *q);

/* Tells the workers to stop once the queue is empty (what waits still runs)
 * and joins each for at most join_ms. Returns how many were abandoned (a
 * task that never returns: such a worker is detached and may still touch
 * the queue, so do not rpc_taskq_fini then); then tasks may be left queued:
 * take them with rpc_taskq_take_all. Not from a worker. */
int rpc_taskq_stop(rpc_taskq *q, int join_ms);

/* Takes every queued task out, oldest first, linked by ->next; the caller
 * disposes of them. */
rpc_task *rpc_taskq_take_all(rpc_taskq *q);

/* Frees the queue's thread list and lock. After rpc_taskq_stop returned 0,
 * or when rpc_taskq_start was never called. */
void rpc_taskq_fini(rpc_taskq *q);

#endif
