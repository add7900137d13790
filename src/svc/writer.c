#include "svc/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpops.pb-c.h"

#define MAX_GROUP 512

typedef struct op {
    struct op *next;
    svc_write_fn fn;
    void *arg;
    int status;
    char *err;
    size_t errlen;
    int final;         /* PostgreSQL: broke the transaction; not run again */
    int done;          /* under the writer's lock */
} op;

struct svc_writer {
    svc_conn *conn;
    char txn_lock[96];     /* PostgreSQL: the advisory lock of the service's groups */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work;   /* ops queued, or stopping */
    pthread_cond_t done;   /* some ops finished */
    op *head, *tail;
    int stopping;
    unsigned long commits;
    int health;            /* how the last group ended: see svc_writer_health */
    char health_err[256];
};

/* Whether status says the store failed (rather than the write's own
 * outcome, such as ALREADY_EXISTS). */
static int store_failure(int status)
{
    return status == TCPOPS__STATUS__STORAGE_FULL || status == TCPOPS__STATUS__INTERNAL ||
           status == TCPOPS__STATUS__UNAVAILABLE;
}

/* Fails every op of list that has not failed yet with status and why. */
static void fail_rest(op *list, int status, const char *why)
{
    for (op *o = list; o != NULL; o = o->next) {
        if (o->status == TCPOPS__STATUS__OK) {
            o->status = status;
            snprintf(o->err, o->errlen, "%s", why);
        }
    }
}

/* Runs one group on SQLite: everything in list, in one transaction, each
 * write in its own savepoint. Returns how the transaction ended (OK, or the
 * store's failure) and fills why. */
static int run_group_sqlite(svc_writer *w, op *list, char *why, size_t whylen)
{
    svc_db *db = w->conn->sqlite;
    sqlite3 *h = svc_db_handle(db);
    int health = TCPOPS__STATUS__OK;
    why[0] = '\0';
    for (op *o = list; o != NULL; o = o->next)
        o->status = TCPOPS__STATUS__OK;
    if (sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        health = svc_db_fail(db, "begin", why, whylen);
        fail_rest(list, health, why);
        return health;
    }
    for (op *o = list; o != NULL; o = o->next) {
        int saved = sqlite3_exec(h, "SAVEPOINT w", NULL, NULL, NULL) == SQLITE_OK;
        o->err[0] = '\0';
        o->status = saved ? o->fn(w->conn, o->arg, o->err, o->errlen)
                          : svc_db_fail(db, "savepoint", o->err, o->errlen);
        if (store_failure(o->status) && health == TCPOPS__STATUS__OK) {
            health = o->status;
            snprintf(why, whylen, "%s", o->err);
        }
        if (saved && o->status != TCPOPS__STATUS__OK)
            sqlite3_exec(h, "ROLLBACK TO w", NULL, NULL, NULL);
        if (saved)
            sqlite3_exec(h, "RELEASE w", NULL, NULL, NULL);
        if (sqlite3_get_autocommit(h)) {
            /* SQLite rolled the whole transaction back (a full disk can):
             * the writes before this one are gone too, and the ones after
             * must not run outside a transaction. */
            int st = store_failure(o->status) ? o->status : TCPOPS__STATUS__INTERNAL;
            char lost[256];
            snprintf(lost, sizeof(lost), "rolled back: %s",
                     o->err[0] ? o->err : "the transaction ended early");
            fail_rest(list, st, lost); /* the ones that succeeded, and the rest */
            if (health == TCPOPS__STATUS__OK) {
                health = st;
                snprintf(why, whylen, "%s", lost);
            }
            return health;
        }
    }
    if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        char what[256];
        int st = svc_db_fail(db, "commit failed", what, sizeof(what));
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        fail_rest(list, st, what);
        snprintf(why, whylen, "%.*s", (int)(whylen > 0 ? whylen - 1 : 0), what);
        return st;
    }
    w->commits++;
    return health;
}

/* Fails every write of list not final with UNAVAILABLE and why: the
 * connection was lost before COMMIT, so none of them was written. */
static int lost_group(op *list, const char *reason)
{
    char why[256]; /* reason may be one of the ops' own err */
    snprintf(why, sizeof(why), "%s", reason);
    for (op *o = list; o != NULL; o = o->next) {
        if (!o->final) {
            o->status = TCPOPS__STATUS__UNAVAILABLE;
            snprintf(o->err, o->errlen, "not written: %s", why);
        }
    }
    return TCPOPS__STATUS__UNAVAILABLE;
}

/* Runs the writes of list not yet final in one PostgreSQL transaction, as
 * one pipeline (pg.h). Returns OK when every one ran (each with its own
 * status) and the transaction is still good; -1 when one broke it (that
 * one is final now: run the rest again); or UNAVAILABLE when the
 * connection was lost (every write not final failed with it). */
static int try_group_pg(svc_writer *w, op *list, char *why, size_t whylen)
{
    svc_pg *pg = w->conn->pg;
    int st = svc_pg_pipeline_begin(pg, w->txn_lock, why, whylen);
    for (op *o = list; st == TCPOPS__STATUS__OK && o != NULL; o = o->next) {
        if (o->final)
            continue;
        o->err[0] = '\0';
        o->status = o->fn(w->conn, o->arg, o->err, o->errlen);
        if (o->status == SVC_PG_QUEUED)
            continue;
        if (!store_failure(o->status)) {
            o->final = 1; /* refused before it sent anything (pet id 0): its own answer */
            continue;
        }
        st = o->status; /* it could not even be queued */
        snprintf(why, whylen, "%.*s", (int)(whylen > 0 ? whylen - 1 : 0), o->err);
    }
    if (st == TCPOPS__STATUS__OK)
        st = svc_pg_pipeline_flush(pg, why, whylen);
    op *broke = NULL;
    for (op *o = list; st == TCPOPS__STATUS__OK && o != NULL; o = o->next) {
        if (o->final)
            continue;
        o->status = o->fn(w->conn, o->arg, o->err, o->errlen);
        if (broke == NULL && o->status != TCPOPS__STATUS__OK && svc_pg_txn_failed(pg))
            broke = o;
    }
    svc_pg_pipeline_end(pg);
    if (!svc_pg_connected(pg)) {
        svc_pg_rollback(pg);
        return lost_group(list, st != TCPOPS__STATUS__OK ? why
                                : broke != NULL          ? broke->err
                                                         : "the database connection was lost");
    }
    if (st != TCPOPS__STATUS__OK) {
        svc_pg_rollback(pg);
        for (op *o = list; o != NULL; o = o->next) {
            if (!o->final) {
                o->status = st;
                snprintf(o->err, o->errlen, "%s", why);
            }
        }
        return st;
    }
    if (broke != NULL) {
        broke->final = 1;
        svc_pg_rollback(pg);
        return -1;
    }
    return TCPOPS__STATUS__OK;
}

/* Runs one group on PostgreSQL: the writes in one transaction, without a
 * savepoint each (a round trip each). A write that answers anything but OK
 * has changed nothing (writer.h); one that broke the transaction is left
 * out and the others run again in a new one. */
static int run_group_pg(svc_writer *w, op *list, char *why, size_t whylen)
{
    int st;
    int had = svc_pg_connected(w->conn->pg);
    why[0] = '\0';
    for (op *o = list; o != NULL; o = o->next) {
        o->status = TCPOPS__STATUS__OK;
        o->final = 0;
    }
    /* A second try when the connection had died while idle (the database
     * restarted): nothing was written, and a new one may well work. Each
     * try answers every write not final. */
    for (int tries = had ? 2 : 1; tries > 0; tries--) {
        while ((st = try_group_pg(w, list, why, whylen)) == -1)
            ;
        if (st != TCPOPS__STATUS__UNAVAILABLE)
            break;
    }
    if (st != TCPOPS__STATUS__OK)
        return st;
    char what[300];
    st = svc_pg_commit(w->conn->pg, what, sizeof(what));
    if (st != TCPOPS__STATUS__OK) {
        /* Not even the writes' own answers hold (a 409 may have been for a
         * row of this very group): all of them fail with the commit. */
        for (op *o = list; o != NULL; o = o->next) {
            if (!o->final) {
                o->status = st;
                snprintf(o->err, o->errlen, "%s", what);
            }
        }
        snprintf(why, whylen, "%.*s", (int)(whylen > 0 ? whylen - 1 : 0), what);
        return st;
    }
    w->commits++;
    for (op *o = list; o != NULL; o = o->next)
        if (store_failure(o->status))
            return o->status;
    return TCPOPS__STATUS__OK;
}

static void *writer_main(void *arg)
{
    svc_writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->work, &w->lock);
        if (w->head == NULL)
            break;
        /* Take up to MAX_GROUP queued writes; later ones form the next group. */
        op *list = w->head, *last = list;
        for (int n = 1; n < MAX_GROUP && last->next != NULL; n++)
            last = last->next;
        w->head = last->next;
        if (w->head == NULL)
            w->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&w->lock);

        char why[256];
        int health = w->conn->backend == SVC_POSTGRES
                         ? run_group_pg(w, list, why, sizeof(why))
                         : run_group_sqlite(w, list, why, sizeof(why));

        pthread_mutex_lock(&w->lock);
        w->health = health;
        snprintf(w->health_err, sizeof(w->health_err), "%s", why);
        for (op *o = list; o != NULL;) {
            op *next = o->next; /* o belongs to its waiter once done is set */
            o->done = 1;
            o = next;
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int svc_writer_new(svc_writer **out, const svc_store *st, char *err, size_t errlen)
{
    svc_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(w->txn_lock, sizeof(w->txn_lock), "tcpops writes of %s", st->service);
    int rc = svc_conn_open(&w->conn, st, 1, "tcpops-writer", err, errlen);
    if (rc < 0) {
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->done, NULL);
    if ((rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        svc_conn_close(w->conn);
        free(w);
        return -rc;
    }
    *out = w;
    return 0;
}

void svc_writer_free(svc_writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    svc_conn_close(w->conn);
    free(w);
}

int svc_writer_run(svc_writer *w, svc_write_fn fn, void *arg, char *err, size_t errlen)
{
    op o = {.fn = fn, .arg = arg, .err = err, .errlen = errlen};
    err[0] = '\0';
    pthread_mutex_lock(&w->lock);
    if (w->tail != NULL)
        w->tail->next = &o;
    else
        w->head = &o;
    w->tail = &o;
    pthread_cond_signal(&w->work);
    while (!o.done)
        pthread_cond_wait(&w->done, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return o.status;
}

int svc_writer_health(svc_writer *w, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->lock);
    int st = w->health;
    snprintf(err, errlen, "%s", w->health_err);
    pthread_mutex_unlock(&w->lock);
    return st;
}

unsigned long svc_writer_commits(svc_writer *w)
{
    pthread_mutex_lock(&w->lock);
    unsigned long n = w->commits;
    pthread_mutex_unlock(&w->lock);
    return n;
}
