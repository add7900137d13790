#include "supervisor/roll.h"

#include <stdio.h>
#include <string.h>

#include "util/log.h"

void sup_roll_init(sup_roll *r)
{
    memset(r, 0, sizeof(*r));
    r->client_fd = -1;
}

void sup_roll_start(sup_roll *r, const int *indices, int n, int client_fd)
{
    sup_roll_note_fn note = r->note;
    void *note_arg = r->note_arg;
    memset(r, 0, sizeof(*r));
    r->note = note;
    r->note_arg = note_arg;
    r->active = 1;
    r->client_fd = client_fd;
    for (int i = 0; i < n && i < SUP_MAX_WORKERS; i++)
        r->queue[r->nqueue++] = indices[i];
}

void sup_roll_forget(sup_roll *r, const sup_worker *w)
{
    if (r->fresh == w)
        r->fresh = NULL;
    if (r->old == w)
        r->old = NULL;
}

/* Ends the roll early: no worker after this one is replaced. */
static void give_up(sup_roll *r, const char *why)
{
    r->failed = 1;
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->nqueue = 0;
}

/* SUP_ROLL_NEXT: starts the replacement of the next worker in the queue.
 * 1 when the queue is empty (the roll is over). */
static int next_worker(sup_roll *r, sup_procs *p, int app, int64_t now)
{
    if (r->nqueue == 0) {
        r->active = 0;
        util_log(UTIL_INFO, "restart done", "worker=%s.*", p->cfg->apps[app].name);
        return 1;
    }
    int idx = r->queue[0];
    memmove(r->queue, r->queue + 1, sizeof(int) * (size_t)--r->nqueue);
    r->index = idx;
    r->retried = 0;
    r->old = sup_procs_find(p, app, idx, 0);
    if (r->old != NULL && r->old->state == SUP_W_FAILED) {
        /* Nothing runs to keep serving meanwhile: it starts again in place. */
        r->fresh = r->old;
        r->old = NULL;
        r->retried = 1;
        sup_procs_retry(p, r->fresh);
        r->phase = SUP_ROLL_STARTING;
        r->phase_ms = now;
        return 0;
    }
    if (r->old == NULL || r->old->pid == 0)
        return 0; /* gone or restarting anyway: a fresh start is what a restart gives */
    /* The old one steps aside in the table; the new one takes its number. */
    r->old->retire = 1;
    r->fresh = sup_procs_add(p, app, idx);
    if (r->fresh == NULL) {
        r->old->retire = 0;
        give_up(r, "cannot start a replacement");
        return 0;
    }
    /* A replacement is no restart, and the count is the worker number's:
     * ps and tcpops_worker_restarts_total go on from it (a count that fell
     * to 0 would read as a counter reset). */
    r->fresh->restarts = r->old->restarts;
    r->phase = SUP_ROLL_STARTING;
    r->phase_ms = now;
    return 0;
}

/* SUP_ROLL_STARTING: the replacement did not come up, so the old one stays.
 * A replacement waiting to restart has no process to stop: it goes now (else
 * it stays listed as "replaced" for ever). A failed worker started again
 * stays as it now is (failed again, or waiting to restart). */
static void replacement_failed(sup_roll *r, sup_procs *p, int app)
{
    char why[sizeof(r->why)];
    const char *name = p->cfg->apps[app].name;
    const char *what = r->retried ? "" : "'s replacement";
    if (r->fresh != NULL && r->fresh->reason[0] != '\0')
        snprintf(why, sizeof(why), "%s.%d%s failed: %.400s", name, r->index, what,
                 r->fresh->reason);
    else
        snprintf(why, sizeof(why), "%s.%d%s did not become ready", name, r->index, what);
    if (!r->retried && r->fresh != NULL && r->fresh->pid > 0)
        sup_procs_stop(r->fresh);
    else if (!r->retried && r->fresh != NULL)
        sup_procs_remove(p, r->fresh);
    if (r->old != NULL)
        r->old->retire = 0;
    give_up(r, why);
    util_log(UTIL_ERROR, "restart failed", "worker=%s.* why=\"%s\"", p->cfg->apps[app].name,
             r->why);
    r->phase = SUP_ROLL_NEXT;
}

/* The worker r->index serves anew: counted, and told to r->note. */
static void worker_done(sup_roll *r, const sup_procs *p, int app)
{
    char line[160];
    r->done++;
    if (r->note == NULL)
        return;
    snprintf(line, sizeof(line), "%s.%d: %s pid %d (ready in %lld ms)",
             p->cfg->apps[app].name, r->index,
             r->retried ? "was failed, started again as" : "replaced by", (int)r->fresh_pid,
             (long long)r->ready_in_ms);
    r->note(r->note_arg, r, line);
}

int sup_roll_step(sup_roll *r, sup_procs *p, int app, int64_t now)
{
    const sup_policy *pol = &p->cfg->policy;
    if (!r->active || p->stopping)
        return 0;
    switch (r->phase) {
    case SUP_ROLL_NEXT:
        return next_worker(r, p, app, now);
    case SUP_ROLL_STARTING:
        /* Failed (a usage error), stopped for not saying ready (procs.c)
         * or waiting to restart: it will not come. */
        if (r->fresh == NULL || r->fresh->state == SUP_W_BACKOFF ||
            r->fresh->state == SUP_W_FAILED || r->fresh->state == SUP_W_STOPPING ||
            now - r->phase_ms > pol->ready_timeout_ms) {
            replacement_failed(r, p, app);
        } else if (r->fresh->state == SUP_W_RUNNING) {
            r->fresh_pid = r->fresh->pid;
            r->ready_in_ms = r->fresh->ready_ms - r->fresh->started_ms;
            r->phase = SUP_ROLL_SETTLING;
            r->phase_ms = now;
        }
        return 0;
    case SUP_ROLL_SETTLING:
        /* Nothing old to stop after a failed worker's start: no wait. */
        if (r->retried || now - r->phase_ms >= pol->settle_ms) {
            if (r->old != NULL)
                sup_procs_stop(r->old);
            r->phase = SUP_ROLL_STOPPING;
            r->phase_ms = now;
        }
        return 0;
    case SUP_ROLL_STOPPING:
        if (r->old == NULL) { /* it exited and was forgotten */
            worker_done(r, p, app);
            r->phase = SUP_ROLL_NEXT;
            return sup_roll_step(r, p, app, now);
        }
        return 0;
    }
    return 0;
}
