#include "writer.h"

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
    int done;          /* under the writer's lock */
} op;

struct svc_writer {
    svc_db *db;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work;   /* ops queued, or stopping */
    pthread_cond_t done;   /* some ops finished */
    op *head, *tail;
    int stopping;
    unsigned long commits;
};

/* Runs one group: everything in list, in one transaction. */
static void run_group(svc_writer *w, op *list)
{
    char why[256];
    sqlite3 *h = svc_db_handle(w->db);
    int rc = sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
        for (op *o = list; o != NULL; o = o->next) {
            o->status = busy ? TCPOPS__STATUS__UNAVAILABLE : TCPOPS__STATUS__INTERNAL;
            snprintf(o->err, o->errlen, "database %s: %s", busy ? "busy" : "error",
                     sqlite3_errmsg(h));
        }
        return;
    }
    for (op *o = list; o != NULL; o = o->next) {
        sqlite3_exec(h, "SAVEPOINT w", NULL, NULL, NULL);
        o->err[0] = '\0';
        o->status = o->fn(w->db, o->arg, o->err, o->errlen);
        if (o->status != TCPOPS__STATUS__OK)
            sqlite3_exec(h, "ROLLBACK TO w", NULL, NULL, NULL);
        sqlite3_exec(h, "RELEASE w", NULL, NULL, NULL);
    }
    rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(why, sizeof(why), "commit failed: %s", sqlite3_errmsg(h));
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
        for (op *o = list; o != NULL; o = o->next) {
            if (o->status == TCPOPS__STATUS__OK) {
                o->status = rc == SQLITE_BUSY ? TCPOPS__STATUS__UNAVAILABLE
                                              : TCPOPS__STATUS__INTERNAL;
                snprintf(o->err, o->errlen, "%s", why);
            }
        }
        return;
    }
    w->commits++;
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

        run_group(w, list);

        pthread_mutex_lock(&w->lock);
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

int svc_writer_new(svc_writer **out, const char *path, int sync_full, char *err,
                   size_t errlen)
{
    svc_writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = svc_db_open(&w->db, path, sync_full, err, errlen);
    if (rc < 0) {
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->done, NULL);
    if ((rc = pthread_create(&w->thread, NULL, writer_main, w)) != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        svc_db_close(w->db);
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
    svc_db_close(w->db);
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

unsigned long svc_writer_commits(svc_writer *w)
{
    pthread_mutex_lock(&w->lock);
    unsigned long n = w->commits;
    pthread_mutex_unlock(&w->lock);
    return n;
}
