/* A rolling restart of some workers of one app (`tcpops restart APP`, or a
 * worker over its memory limit): per worker, start the replacement under
 * the same number, wait until it says "ready", give the gateway's
 * membership refresh policy.settle_ms to see it, then SIGTERM the old one and
 * wait for it to leave. A failed worker (procs.h) has nothing to replace:
 * it is started afresh in its place, and waited for the same way. A
 * replacement that fails, or is not ready within policy.ready_timeout_ms,
 * ends the roll with its reason. Single threaded, driven by the master's
 * poll loop. */
#ifndef TCPOPS_SUP_ROLL_H
#define TCPOPS_SUP_ROLL_H

#include <stdint.h>

#include "supervisor/procs.h"

typedef enum sup_roll_phase {
    SUP_ROLL_NEXT,     /* take the next worker from the queue (or finish) */
    SUP_ROLL_STARTING, /* the replacement (or the failed worker again) is starting */
    SUP_ROLL_SETTLING, /* the replacement serves; the gateway has yet to see it */
    SUP_ROLL_STOPPING, /* the old worker was sent SIGTERM; waiting for it to go */
} sup_roll_phase;

typedef struct sup_roll sup_roll;

/* Told one line per worker a roll is done with. */
typedef void (*sup_roll_note_fn)(void *arg, const sup_roll *r, const char *line);

struct sup_roll {
    int active;
    int queue[SUP_MAX_WORKERS]; /* worker indices still to replace */
    int nqueue;
    sup_roll_phase phase;
    sup_worker *old, *fresh;    /* NULL once they left the table */
    int index;                  /* the worker number being replaced */
    int retried;                /* fresh is a failed worker started again: no old */
    pid_t fresh_pid;            /* fresh's process, and how long it took to */
    int64_t ready_in_ms;        /* be ready (for the note) */
    int64_t phase_ms;           /* when phase began */
    int client_fd;              /* who to answer at the end, -1 none */
    int done;                   /* workers replaced (or started again) so far */
    int failed;
    char why[512];              /* when failed: what to tell the client */
    /* Told one line per worker done ("people.1: replaced by pid 1234 (ready
     * in 180 ms)"); NULL: nobody. Kept by sup_roll_start. */
    sup_roll_note_fn note;
    void *note_arg;
};

/* An idle roll, answering nobody. */
void sup_roll_init(sup_roll *r);

/* Begins replacing the workers indices[0..n) (at most SUP_MAX_WORKERS), and
 * answers client_fd (-1: nobody) when done. r's note and note_arg stay. */
void sup_roll_start(sup_roll *r, const int *indices, int n, int client_fd);

/* Advances the roll of app by what has happened by now. Returns 1 when it
 * finished in this step (r->failed and r->why say how; r->client_fd is owed
 * an answer), else 0. */
int sup_roll_step(sup_roll *r, sup_procs *p, int app, int64_t now);

/* w is leaving the process table: the roll stops pointing at it. */
void sup_roll_forget(sup_roll *r, const sup_worker *w);

#endif
