/* The master's child processes: the table of workers, starting one (with
 * its output piped back, and a pipe of its own, --ready-fd, on which it
 * says when it serves: util/ready.h), reaping one and deciding when it
 * restarts (with backoff, flagged crash-looping after quick failures in a
 * row; never after a usage error before it was ready: failed), copying its
 * output lines to our stderr, and reading its resident size. Single
 * threaded: called from the master's poll loop only; no locks. */
#ifndef TCPOPS_SUP_PROCS_H
#define TCPOPS_SUP_PROCS_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc/backoff.h"
#include "supervisor/config.h"
#include "util/ready.h"

#define SUP_MAX_PROCS 256

typedef enum sup_wstate {
    SUP_W_STARTING, /* spawned, has not said "ready" yet */
    SUP_W_RUNNING,  /* serving */
    SUP_W_STOPPING, /* sent SIGTERM (or dropped while waiting to restart) */
    SUP_W_BACKOFF,  /* exited; waits until next_start_ms to start again */
    SUP_W_FAILED,   /* exited 2 (a usage error) before ready: not restarted
                     * until asked (sup_procs_retry); reason says why */
} sup_wstate;

/* The exit code of every tcpops program for bad flags or configuration. */
#define SUP_EXIT_USAGE 2

typedef struct sup_worker {
    int app;
    int index;                /* 1..N */
    pid_t pid;                /* 0 while waiting to restart */
    int out_fd;               /* the child's stdout+stderr */
    int ready_fd;             /* its --ready-fd pipe, until the line or EOF */
    sup_wstate state;
    int retire;               /* do not restart when it exits */
    int64_t started_ms, ready_ms, stop_ms, next_start_ms;
    int64_t ready_eof_ms;     /* its ready pipe ended without the line; 0 not */
    unsigned restarts;        /* times restarted after exiting */
    unsigned quick_failures;  /* exits in a row before being healthy */
    int last_exit;            /* exit code, or 128 + signal; -1 none */
    long rss;                 /* bytes, refreshed every memory_check_ms */
    char advertised[64];      /* a service's member= from its ready line */
    rpc_backoff bo;
    char line[2048];
    size_t linelen;
    char last[256];           /* the last line it printed, cut short */
    char reason[400];         /* SUP_W_FAILED: "exit 2 before ready: LAST";
                               * or why its last start was stopped ("not
                               * ready: ..."), until a start is ready */
    char ready_line[UTIL_READY_LINE_MAX];
    size_t ready_len;
} sup_worker;

/* What happened to a worker, for whoever waits on its app (master.c). */
typedef enum sup_event {
    SUP_EV_READY,   /* said "ready" (ready_ms - started_ms: how long it took) */
    SUP_EV_STOPPED, /* exited as asked, and leaves the table next (last_exit) */
    SUP_EV_FAILED,  /* became SUP_W_FAILED (reason) */
} sup_event;

typedef void (*sup_event_fn)(void *arg, const sup_worker *w, sup_event ev);

/* Called just before a worker leaves the table (its memory is freed after). */
typedef void (*sup_forget_fn)(void *arg, const sup_worker *w);

typedef struct sup_procs {
    sup_config *cfg;          /* the apps, the policy and http_fd; not owned */
    sup_worker *w[SUP_MAX_PROCS];
    int nw;
    int stopping;             /* shutting down: exits are never restarted */
    int64_t last_memory_ms;
    sup_forget_fn forget;
    void *forget_arg;         /* also event's */
    sup_event_fn event;       /* NULL, or told each sup_event; set after init */
} sup_procs;

/* Starts an empty table over cfg (which must outlive p); forget (may be
 * NULL) hears of every worker that leaves the table. */
void sup_procs_init(sup_procs *p, sup_config *cfg, sup_forget_fn forget, void *arg);

/* Removes every worker left (their processes are not signalled). */
void sup_procs_fini(sup_procs *p);

/* Adds worker index of app and starts it; a start that fails is retried
 * after policy.retry_spawn_ms. Returns the worker (owned by p), or NULL when
 * the table is full or out of memory. */
sup_worker *sup_procs_add(sup_procs *p, int app, int index);

/* Removes w from the table (after telling forget) and frees it. */
void sup_procs_remove(sup_procs *p, sup_worker *w);

/* The worker index of app whose retire flag equals retiring, or NULL. */
sup_worker *sup_procs_find(sup_procs *p, int app, int index, int retiring);

/* Marks w not to be restarted and sends it SIGTERM (once). */
void sup_procs_stop(sup_worker *w);

/* w's name in every log line about it, "people.2" (worker=people.2): in
 * buf (len bytes), which is returned. */
const char *sup_worker_name(const sup_procs *p, const sup_worker *w, char *buf, size_t len);

/* Reads what w wrote and writes each complete line to our log as one of
 * ours with worker=APP.N added (util_log_relay: a line that is not a log
 * line becomes a warn line quoting it); the last one is kept for a
 * failure's reason. Closes w's pipe at its end. */
void sup_procs_pump(sup_procs *p, sup_worker *w);

/* Reads w's --ready-fd pipe: its "ready" line makes a starting worker
 * running (and a service's member= is the address it advertises). Closes
 * the pipe after the line or at its end. A starting worker whose line
 * does not parse will not serve: it is sent SIGTERM, with the reason kept
 * for ps, and its exit restarted as a failed start. One whose pipe ends
 * without the line is stopped so by sup_procs_restart_due if it has not
 * exited SUP_READY_EOF_GRACE_MS later. */
void sup_procs_ready(sup_procs *p, sup_worker *w);

/* Starts a failed worker afresh: its backoff and quick failures start
 * over (restarts is kept). 0, or -1 when the start itself failed (then it
 * waits to retry, as any start). Does nothing to a worker not failed. */
int sup_procs_retry(sup_procs *p, sup_worker *w);

/* Collects every child that exited: a retiring one (or any while stopping)
 * leaves the table; another waits to restart with backoff. */
void sup_procs_reap(sup_procs *p);

/* Starts the workers whose restart time has come, and stops (as
 * sup_procs_ready does) those starting for longer than
 * policy.ready_timeout_ms, or still there SUP_READY_EOF_GRACE_MS after
 * their ready pipe ended without the line. */
void sup_procs_restart_due(sup_procs *p);

/* SIGKILLs each worker still there drain_ms + policy.kill_grace_ms after
 * its SIGTERM (once per that time). */
void sup_procs_kill_overdue(sup_procs *p);

/* For each app, starts the workers missing from 1..workers (none for an
 * app that does not run on this host) and stops those above (a worker
 * waiting to restart is just dropped). */
void sup_procs_reconcile(sup_procs *p);

/* Called for a running, non-retiring worker over its app's max_memory. */
typedef void (*sup_over_fn)(void *arg, sup_worker *w);

/* Every policy.memory_check_ms: refreshes each worker's rss and calls over
 * for each one over its limit. */
void sup_procs_check_memory(sup_procs *p, sup_over_fn over, void *arg);

/* The state `tcpops ps` shows: "starting", "running", "stopping",
 * "backoff", "crash-looping", "failed" or "replaced". Static string. */
const char *sup_procs_state_name(const sup_procs *p, const sup_worker *w);

/* The `ps` answer: {"ok":true,"workers":[...]} by app, each with
 * "reason" (null unless failed or its last start was not ready); a service's workers carry "db"
 * (sup_app_store) and "advertised" (null until it serves). Caller owns
 * it. */
json_t *sup_procs_json(const sup_procs *p);

#endif
