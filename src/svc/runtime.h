/* The state one running service shares between its parts (private to
 * src/svc): the description, the method table (the service's, then the
 * runtime's own such as Status), the database path, the group-commit writer,
 * the counters and this worker's identity; plus the per-thread database
 * connection every handler reads with, and the hooks the RPC server calls
 * (thread_init, thread_fini, on_call).
 *
 * Below it: db, writer, rpc server/stats. Above it: members (heartbeat and
 * Status), fault (handler wrappers), text (the text-mode bridge), local (the
 * in-process harness) and svc.c (flags and main). */
#ifndef TCPOPS_SVC_RUNTIME_H
#define TCPOPS_SVC_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "svc/svc.h"
#include "util/log.h"

typedef struct svc {
    const svc_desc *desc;
    int log_calls;            /* log every call, not just the failed ones */
    svc_method *methods;      /* the service's, then the runtime's (Status) */
    size_t nmethods;
    svc_store store;          /* where the data lives (--db, --data-dir, --sync) */
    /* UNAVAILABLE calls (a database down) are logged once a second with
     * how many were not: svc_rt_on_call. */
    util_log_limit unavailable_log;
    char self[64];            /* this worker's own address */
    char status_name[64];     /* "people.Status" */
    int64_t started_ms;
    rpc_server *srv;
    rpc_stats *stats;
    rpc_tls *tls;             /* --tls-*: the server's credentials; NULL: plaintext */
    const char *tls_cert;     /* --tls-cert, for the log */
    util_log_limit tls_log;   /* refused handshakes: a line a second */
    util_log_limit text_log;  /* refused text mode: the same */
    svc_writer *writer;
    struct svc_fault *fault;  /* fault injection (fault.h); NULL when off */

    /* Run by the heartbeat thread after each beat, with no lock held (fault
     * injection's memory growth); NULL for none. */
    void (*on_beat)(void *arg);
    void *on_beat_arg;
    /* --ready-fd: told "ready member=SELF" by the heartbeat thread after its
     * first beat that succeeds (this worker listens and is in the member
     * list); -1 none. Only that thread touches it once it runs. */
    long ready_fd;
    pthread_t heartbeat;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;             /* under lock */
} svc;

/* What each worker thread (and the I/O thread) keeps: its read connection. */
typedef struct svc_thread {
    svc *s;
    svc_conn *conn;
} svc_thread;

/* Zeroes s and starts it for desc: its clock, lock and condition, and self
 * (this worker's address, "local" in process). Pair with svc_rt_fini. */
void svc_rt_init(svc *s, const svc_desc *desc, const char *self);

/* Takes the store st (svc_store_parse'd; SQLite's default file lives
 * under data_dir, which it creates), brings its schema up to date, starts
 * the writer and the counters, and builds the method table: desc's methods,
 * then the nextra of extra (copied). Returns 0, or -1 with err filled. What
 * it made is freed by svc_rt_fini, also after a failure. */
int svc_rt_prepare(svc *s, const char *data_dir, const svc_store *st,
                   const svc_method *extra, size_t nextra, char *err, size_t errlen);

/* Frees what svc_rt_init and svc_rt_prepare made (not s itself). No thread
 * may use s any more. */
void svc_rt_fini(svc *s);

/* The method called name in s's table, or NULL. The table is read-only once
 * prepared: any thread, no lock. */
const svc_method *svc_rt_find(const svc *s, const char *name);

/* Creates the data directory itself (mode 0755), not its parents: a
 * mistyped path fails rather than growing a tree somewhere; logs when it
 * made one. 0 (made or there already), or a negative errno with err
 * filled. */
int svc_data_dir_make(const char *data_dir, char *err, size_t errlen);

/* rpc_server_cfg hooks; user is the svc. thread_init opens the thread's read
 * connection (a malloc'd svc_thread in *state; 0, or -ENOMEM/-EIO after
 * logging why); thread_fini closes it. on_call logs the calls that failed
 * (all of them with log_calls) with their trace id as request_id=. Any
 * thread, no lock. */
int svc_rt_thread_init(void *user, void **state);
void svc_rt_thread_fini(void *user, void *state);
void svc_rt_on_call(void *user, const rpc_call_ctx *ctx, int status, const char *error,
                    int64_t duration_us);

#endif
