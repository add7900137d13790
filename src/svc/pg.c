/* The PostgreSQL connection (pg.h). */
#include "svc/pg.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/backoff.h"
#include "rpc/clock.h"
#include "rpc/waiter.h"
#include "tcpops.pb-c.h"

#define CACHE 32

struct svc_pg {
    /* A pool (svc_pg_pool_new): svc_pg_run queues its statement; a thread
     * that finds a member free leads it, sending every statement queued in
     * one pipeline (read_batch), until its own has run. */
    svc_pg **members;
    int nmembers, nfree;
    svc_pg **free_list;
    pthread_mutex_t pool_lock;
    struct read_req *head, *tail; /* under pool_lock */

    PGconn *h;                /* NULL until connected */
    char url[4096];
    char app[64];
    svc_pg_schema *schema;
    rpc_backoff backoff;
    int64_t next_try_ms;      /* no connection attempt before this */
    char last_error[256];     /* why the last attempt failed */
    int in_txn;               /* between begin and commit/rollback */
    int lost_in_txn;          /* the connection broke inside the transaction */
    struct {
        const char *sql;
        char name[8];
    } cache[CACHE];
    int ncache;
    int nprepared;            /* cache entries the server is known to hold */

    /* A pipeline (svc_pg_pipeline_*): statements queued, then results read
     * in the same order. expect[] lists what each result answers: a cache
     * index for a statement's preparation, EXPECT_QUERY for a statement. */
    int mode;                 /* MODE_SYNC, MODE_SEND, MODE_RECV */
    int *expect;
    size_t nexpect, cap_expect, next_expect;
    int aborted;              /* a statement of the pipeline failed */
    int nhead;                /* statements pipeline_begin queued (BEGIN, lock) */
};

enum { MODE_SYNC, MODE_SEND, MODE_RECV };

/* One read waiting in a pool: on its caller's stack until done. */
typedef struct read_req {
    struct read_req *next;
    const char *what, *sql;
    int n;
    const char *const *params;
    PGresult *result;
    int status;
    char *err;
    size_t errlen;
    svc_pg *lead;             /* the member handed to it to lead, or NULL */
    _Atomic uint32_t state;   /* REQ_QUEUED, then REQ_LEAD or REQ_DONE */
} read_req;

enum { REQ_QUEUED, REQ_LEAD, REQ_DONE };
#define BATCH_MAX 64
#define EXPECT_QUERY (-1)

int svc_pg_sqlstate_status(const char *s)
{
    if (s == NULL)
        return TCPOPS__STATUS__UNAVAILABLE;
    if (strcmp(s, "23505") == 0)
        return TCPOPS__STATUS__ALREADY_EXISTS;
    if (strcmp(s, "53100") == 0)
        return TCPOPS__STATUS__STORAGE_FULL;
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0 || strcmp(s, "53300") == 0 || strcmp(s, "40001") == 0 ||
        strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0 || strcmp(s, "25P03") == 0)
        return TCPOPS__STATUS__UNAVAILABLE;
    return TCPOPS__STATUS__INTERNAL;
}

int svc_pg_new(svc_pg **out, const char *url, const char *app, svc_pg_schema *schema)
{
    svc_pg *pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return -ENOMEM;
    snprintf(pg->url, sizeof(pg->url), "%s", url);
    snprintf(pg->app, sizeof(pg->app), "%s", app);
    pg->schema = schema;
    rpc_backoff_cfg cfg;
    rpc_backoff_cfg_default(&cfg);
    cfg.cap_ms = SVC_PG_BACKOFF_CAP_MS;
    rpc_backoff_init(&pg->backoff, &cfg, NULL, NULL);
    *out = pg;
    return 0;
}

static void disconnect(svc_pg *pg)
{
    if (pg->h != NULL) {
        PQfinish(pg->h);
        pg->h = NULL;
        rpc_backoff_down(&pg->backoff, rpc_now_ms());
    }
    pg->ncache = pg->nprepared = 0; /* prepared statements die with their connection */
    pg->mode = MODE_SYNC;
    pg->nexpect = pg->next_expect = 0;
}

int svc_pg_pool_new(svc_pg **out, const char *url, const char *app, svc_pg_schema *schema,
                    int n)
{
    svc_pg *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return -ENOMEM;
    pool->members = calloc((size_t)n, sizeof(*pool->members));
    pool->free_list = calloc((size_t)n, sizeof(*pool->free_list));
    pthread_mutex_init(&pool->pool_lock, NULL);
    *out = pool;
    if (pool->members == NULL || pool->free_list == NULL)
        return -ENOMEM; /* the caller frees it */
    for (int i = 0; i < n; i++) {
        if (svc_pg_new(&pool->members[i], url, app, schema) < 0)
            return -ENOMEM;
        pool->free_list[pool->nfree++] = pool->members[pool->nmembers++];
    }
    return 0;
}

void svc_pg_free(svc_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->members != NULL || pg->free_list != NULL) {
        for (int i = 0; i < pg->nmembers; i++)
            svc_pg_free(pg->members[i]);
        free(pg->members);
        free(pg->free_list);
        pthread_mutex_destroy(&pg->pool_lock);
        free(pg);
        return;
    }
    disconnect(pg);
    free(pg->expect);
    free(pg);
}

/* The first line of libpq's message for the connection. */
static const char *conn_error(PGconn *h, char *buf, size_t len)
{
    const char *m = h != NULL ? PQerrorMessage(h) : "out of memory";
    snprintf(buf, len, "%.*s", (int)strcspn(m, "\n"), m);
    return buf;
}

/* The first line of a failed result's message, and its status. */
static int result_error(svc_pg *pg, PGresult *r, const char *what, char *err, size_t errlen)
{
    char why[256];
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *m = r != NULL ? PQresultErrorMessage(r) : "";
    if (m[0] == '\0')
        m = PQerrorMessage(pg->h);
    snprintf(why, sizeof(why), "%.*s", (int)strcspn(m, "\n"), m);
    int st = svc_pg_sqlstate_status(state);
    if (PQstatus(pg->h) != CONNECTION_OK) {
        st = TCPOPS__STATUS__UNAVAILABLE;
        if (pg->in_txn)
            pg->lost_in_txn = 1;
        disconnect(pg);
        snprintf(err, errlen, "%s: database connection lost: %s", what, why);
    } else {
        snprintf(err, errlen, "%s: %s", what, why);
    }
    return st;
}

/* NOTICEs ("relation already exists, skipping") are not the operator's
 * business; errors arrive with their results. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int svc_pg_ready(svc_pg *pg, char *err, size_t errlen)
{
    if (pg->h != NULL)
        return TCPOPS__STATUS__OK;
    int64_t now = rpc_now_ms();
    if (now < pg->next_try_ms) {
        snprintf(err, errlen, "database unavailable: %s", pg->last_error);
        return TCPOPS__STATUS__UNAVAILABLE;
    }
    /* Later keywords win: the URL's own settings override these. The
     * server side gets the same bounds (SVC_PG_SERVER_OPTIONS): a session
     * whose client vanished must not keep its locks for the kernel's two
     * hours of keepalive. */
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", "options",
                          "application_name", "dbname", NULL};
    const char *vals[] = {SVC_PG_CONNECT_TIMEOUT_S, "1", "1", "3", SVC_PG_USER_TIMEOUT_MS,
                          SVC_PG_SERVER_OPTIONS, pg->app, pg->url, NULL};
    PGconn *h = PQconnectdbParams(keys, vals, 1);
    char why[256];
    if (h != NULL)
        PQsetNoticeProcessor(h, ignore_notice, NULL);
    if (h == NULL || PQstatus(h) != CONNECTION_OK)
        conn_error(h, why, sizeof(why));
    else if (svc_pg_schema_apply(pg->schema, h, why, sizeof(why)) == 0) {
        pg->h = h;
        pg->ncache = pg->nprepared = 0;
        rpc_backoff_up(&pg->backoff, now);
        return TCPOPS__STATUS__OK;
    }
    PQfinish(h);
    snprintf(pg->last_error, sizeof(pg->last_error), "%s", why);
    pg->next_try_ms = rpc_now_ms() + rpc_backoff_next(&pg->backoff);
    snprintf(err, errlen, "database unavailable: %s", why);
    return TCPOPS__STATUS__UNAVAILABLE;
}

/* Notes that the pipeline's next result answers what (a cache index or
 * EXPECT_QUERY). 0 or -1 (out of memory). */
static int expect(svc_pg *pg, int what)
{
    if (pg->nexpect == pg->cap_expect) {
        size_t cap = pg->cap_expect ? pg->cap_expect * 2 : 64;
        int *e = realloc(pg->expect, cap * sizeof(*e));
        if (e == NULL)
            return -1;
        pg->expect = e;
        pg->cap_expect = cap;
    }
    pg->expect[pg->nexpect++] = what;
    return 0;
}

/* The name sql is prepared under on this connection, preparing it first.
 * NULL with *status and err filled when it does not prepare. */
static const char *prepared(svc_pg *pg, const char *what, const char *sql, int *status,
                            char *err, size_t errlen)
{
    for (int i = 0; i < pg->ncache; i++)
        if (pg->cache[i].sql == sql)
            return pg->cache[i].name;
    if (pg->ncache == CACHE) {
        snprintf(err, errlen, "%s: more than %d statements", what, CACHE);
        *status = TCPOPS__STATUS__INTERNAL;
        return NULL;
    }
    int i = pg->ncache;
    snprintf(pg->cache[i].name, sizeof(pg->cache[i].name), "s%d", i);
    if (pg->mode == MODE_SEND) {
        /* Prepared in the pipeline; its result is read before the
         * statement's (a failure aborts the pipeline: see pipeline_end). */
        if (!PQsendPrepare(pg->h, pg->cache[i].name, sql, 0, NULL) || expect(pg, i) < 0) {
            *status = result_error(pg, NULL, what, err, errlen);
            return NULL;
        }
    } else {
        PGresult *r = PQprepare(pg->h, pg->cache[i].name, sql, 0, NULL);
        if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
            *status = result_error(pg, r, what, err, errlen);
            PQclear(r);
            return NULL;
        }
        PQclear(r);
        pg->nprepared = i + 1;
    }
    pg->cache[i].sql = sql;
    pg->ncache++;
    return pg->cache[i].name;
}

/* The next result of the pipeline and the NULL that ends it. */
static PGresult *next_result(svc_pg *pg)
{
    PGresult *r = PQgetResult(pg->h);
    if (r != NULL) {
        PGresult *end = PQgetResult(pg->h);
        PQclear(end); /* NULL: one result per statement */
    }
    pg->next_expect++;
    return r;
}

/* In a pipeline's reading half: the result of the next statement queued
 * (after its preparation's, when it was prepared in the pipeline). */
static PGresult *recv_result(svc_pg *pg, const char *what, int *status, char *err,
                             size_t errlen)
{
    PGresult *r = NULL;
    ExecStatusType rs = PGRES_FATAL_ERROR;
    while (pg->h != NULL && pg->next_expect < pg->nexpect) {
        int what_for = pg->expect[pg->next_expect];
        r = next_result(pg);
        rs = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (what_for == EXPECT_QUERY || (rs != PGRES_COMMAND_OK && rs != PGRES_PIPELINE_ABORTED))
            break;
        if (rs == PGRES_COMMAND_OK && what_for >= pg->nprepared)
            pg->nprepared = what_for + 1; /* the server holds it now */
        PQclear(r);
        r = NULL;
    }
    if (r != NULL && (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK)) {
        *status = TCPOPS__STATUS__OK;
        return r;
    }
    pg->aborted = 1;
    if (rs == PGRES_PIPELINE_ABORTED) {
        /* An earlier statement failed; this one did not run. */
        *status = TCPOPS__STATUS__UNAVAILABLE;
        snprintf(err, errlen, "%s: not run: an earlier write of its group failed", what);
    } else {
        *status = result_error(pg, r, what, err, errlen);
    }
    PQclear(r);
    return NULL;
}

/* svc_pg_run, once. */
static PGresult *run_once(svc_pg *pg, const char *what, const char *sql, int n,
                          const char *const *params, int *status, char *err, size_t errlen)
{
    if (pg->h == NULL) {
        if (pg->in_txn) {
            *status = TCPOPS__STATUS__UNAVAILABLE;
            snprintf(err, errlen, "%s: database connection lost in the transaction", what);
            return NULL;
        }
        char why[300];
        if ((*status = svc_pg_ready(pg, why, sizeof(why))) != TCPOPS__STATUS__OK) {
            snprintf(err, errlen, "%s: %s", what, why);
            return NULL;
        }
    }
    if (pg->mode == MODE_RECV)
        return recv_result(pg, what, status, err, errlen);
    const char *name = prepared(pg, what, sql, status, err, errlen);
    if (name == NULL)
        return NULL;
    if (pg->mode == MODE_SEND) {
        if (!PQsendQueryPrepared(pg->h, name, n, params, NULL, NULL, 0) ||
            expect(pg, EXPECT_QUERY) < 0) {
            *status = result_error(pg, NULL, what, err, errlen);
            return NULL;
        }
        *status = SVC_PG_QUEUED;
        return NULL;
    }
    PGresult *r = PQexecPrepared(pg->h, name, n, params, NULL, NULL, 0);
    ExecStatusType rs = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
        *status = TCPOPS__STATUS__OK;
        return r;
    }
    *status = result_error(pg, r, what, err, errlen);
    PQclear(r);
    return NULL;
}

static PGresult *single_run(svc_pg *pg, const char *what, const char *sql, int n,
                           const char *const *params, int *status, char *err, size_t errlen);

/* Runs the reads of batch (nb of them) on pg: in one pipeline when there
 * are several (one write, one read of the answers, for the client and the
 * server alike). Reads that did not run (one before them failed, or the
 * connection was lost) run again one by one: a read is safe to repeat. */
static void read_batch(svc_pg *pg, read_req **batch, int nb)
{
    int queued = 0;
    if (nb > 1 && svc_pg_connected(pg) && PQenterPipelineMode(pg->h)) {
        pg->nexpect = pg->next_expect = 0;
        pg->aborted = 0;
        pg->mode = MODE_SEND;
        for (; queued < nb && pg->mode == MODE_SEND; queued++) {
            read_req *q = batch[queued];
            PQclear(run_once(pg, q->what, q->sql, q->n, q->params, &q->status, q->err,
                             q->errlen));
            if (q->status != SVC_PG_QUEUED)
                break;
        }
        if (pg->mode == MODE_SEND && PQpipelineSync(pg->h))
            pg->mode = MODE_RECV;
        for (int i = 0; i < queued && pg->mode == MODE_RECV; i++) {
            read_req *q = batch[i];
            q->result = recv_result(pg, q->what, &q->status, q->err, q->errlen);
        }
        if (pg->mode != MODE_SYNC)
            svc_pg_pipeline_end(pg);
    }
    for (int i = 0; i < nb; i++) {
        read_req *q = batch[i];
        if (q->result == NULL)
            q->result = single_run(pg, q->what, q->sql, q->n, q->params, &q->status, q->err,
                                   q->errlen);
    }
}

/* Leads member m: runs me and up to BATCH_MAX - 1 queued reads in one
 * batch, wakes their callers, then hands m to the first read still queued
 * (which leads it next) or frees it. Each queued read is taken off the
 * queue under pool_lock by exactly one leader. Called and returns with
 * pool_lock held; drops it while the database works. */
static void lead(svc_pg *pool, svc_pg *m, read_req *me)
{
    read_req *batch[BATCH_MAX];
    int nb = 0;
    batch[nb++] = me;
    while (pool->head != NULL && nb < BATCH_MAX) {
        batch[nb++] = pool->head;
        pool->head = pool->head->next;
    }
    if (pool->head == NULL)
        pool->tail = NULL;
    pthread_mutex_unlock(&pool->pool_lock);
    read_batch(m, batch, nb);
    for (int i = 1; i < nb; i++) {
        _Atomic uint32_t *word = &batch[i]->state;
        /* Its caller may return at once, and its read_req (on its stack)
         * be gone before the wake: a wake on a dead address is at worst a
         * spurious wake of whoever waits there next, which waiters allow. */
        atomic_store(word, REQ_DONE);
        rpc_waiter_wake(word, 1);
    }
    pthread_mutex_lock(&pool->pool_lock);
    read_req *next = pool->head;
    if (next == NULL) {
        pool->free_list[pool->nfree++] = m;
        return;
    }
    pool->head = next->next;
    if (pool->head == NULL)
        pool->tail = NULL;
    next->lead = m;
    atomic_store(&next->state, REQ_LEAD);
    rpc_waiter_wake(&next->state, 1);
}

/* svc_pg_run on a pool: lead a free member, or queue and wait to be run
 * (or to be handed a member to lead). */
static PGresult *pool_run(svc_pg *pool, const char *what, const char *sql, int n,
                          const char *const *params, int *status, char *err, size_t errlen)
{
    read_req me = {.what = what, .sql = sql, .n = n, .params = params, .err = err,
                   .errlen = errlen};
    atomic_init(&me.state, REQ_QUEUED);
    pthread_mutex_lock(&pool->pool_lock);
    if (pool->nfree > 0) {
        lead(pool, pool->free_list[--pool->nfree], &me);
        pthread_mutex_unlock(&pool->pool_lock);
    } else {
        if (pool->tail != NULL)
            pool->tail->next = &me;
        else
            pool->head = &me;
        pool->tail = &me;
        pthread_mutex_unlock(&pool->pool_lock);
        uint32_t st;
        while ((st = atomic_load(&me.state)) == REQ_QUEUED)
            rpc_waiter_wait(&me.state, REQ_QUEUED, 0);
        if (st == REQ_LEAD) {
            pthread_mutex_lock(&pool->pool_lock);
            lead(pool, me.lead, &me);
            pthread_mutex_unlock(&pool->pool_lock);
        }
    }
    *status = me.status;
    return me.result;
}

PGresult *svc_pg_run(svc_pg *pg, const char *what, const char *sql, int n,
                     const char *const *params, int *status, char *err, size_t errlen)
{
    if (pg->members != NULL)
        return pool_run(pg, what, sql, n, params, status, err, errlen);
    return single_run(pg, what, sql, n, params, status, err, errlen);
}

/* svc_pg_run on one connection. */
static PGresult *single_run(svc_pg *pg, const char *what, const char *sql, int n,
                           const char *const *params, int *status, char *err, size_t errlen)
{
    int had = pg->h != NULL && pg->mode == MODE_SYNC;
    PGresult *r = run_once(pg, what, sql, n, params, status, err, errlen);
    /* A connection found dead (the server restarted while it was idle) is
     * replaced at once: outside a transaction nothing ran, so running the
     * statement again on the new one is safe. */
    if (r == NULL && had && pg->h == NULL && !pg->in_txn && !pg->lost_in_txn) {
        pg->next_try_ms = 0;
        r = run_once(pg, what, sql, n, params, status, err, errlen);
    }
    return r;
}

PGresult *svc_pg_insert_named(svc_pg *pg, const char *sql, const char *name, int *status,
                              char *err, size_t errlen)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)rpc_wall_ms());
    const char *p[2] = {name, now};
    return svc_pg_run(pg, "create", sql, 2, p, status, err, errlen);
}

int svc_pg_begin(svc_pg *pg, char *err, size_t errlen)
{
    static const char SQL_BEGIN[] = "BEGIN";
    int st;
    pg->lost_in_txn = 0;
    PQclear(svc_pg_run(pg, "begin", SQL_BEGIN, 0, NULL, &st, err, errlen));
    pg->in_txn = st == TCPOPS__STATUS__OK;
    return st;
}

int svc_pg_commit(svc_pg *pg, char *err, size_t errlen)
{
    static const char SQL_COMMIT[] = "COMMIT";
    int st;
    char why[300];
    if (pg->lost_in_txn) {
        pg->in_txn = 0;
        snprintf(err, errlen, "not committed: the database connection was lost");
        return TCPOPS__STATUS__UNAVAILABLE;
    }
    PGresult *r = svc_pg_run(pg, "commit", SQL_COMMIT, 0, NULL, &st, why, sizeof(why));
    if (r != NULL && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        /* COMMIT of a failed transaction answers ROLLBACK, without an error. */
        st = TCPOPS__STATUS__INTERNAL;
        snprintf(why, sizeof(why), "commit: the transaction was rolled back");
    }
    PQclear(r);
    if (st != TCPOPS__STATUS__OK && pg->lost_in_txn)
        snprintf(err, errlen, "the outcome is unknown: the database connection was lost "
                 "during COMMIT (%s)", why);
    else if (st != TCPOPS__STATUS__OK)
        snprintf(err, errlen, "%s", why);
    pg->in_txn = 0;
    return st;
}

void svc_pg_rollback(svc_pg *pg)
{
    static const char SQL_ROLLBACK[] = "ROLLBACK";
    int st;
    char why[300];
    if (pg->h != NULL)
        PQclear(svc_pg_run(pg, "rollback", SQL_ROLLBACK, 0, NULL, &st, why, sizeof(why)));
    pg->in_txn = 0;
    pg->lost_in_txn = 0;
}

int svc_pg_connected(const svc_pg *pg)
{
    return pg->h != NULL;
}

int svc_pg_txn_failed(svc_pg *pg)
{
    return pg->lost_in_txn || pg->aborted ||
           (pg->h != NULL && PQtransactionStatus(pg->h) == PQTRANS_INERROR);
}

int svc_pg_pipeline_begin(svc_pg *pg, const char *lock, char *err, size_t errlen)
{
    static const char SQL_BEGIN[] = "BEGIN";
    static const char SQL_LOCK[] = "SELECT pg_advisory_xact_lock(hashtext($1))";
    int st = pg->h != NULL ? TCPOPS__STATUS__OK : svc_pg_ready(pg, err, errlen);
    if (st != TCPOPS__STATUS__OK)
        return st;
    pg->nexpect = pg->next_expect = 0;
    pg->aborted = pg->lost_in_txn = 0;
    if (!PQenterPipelineMode(pg->h)) {
        snprintf(err, errlen, "begin: cannot enter pipeline mode: %s",
                 PQerrorMessage(pg->h));
        return TCPOPS__STATUS__INTERNAL;
    }
    pg->mode = MODE_SEND;
    run_once(pg, "begin", SQL_BEGIN, 0, NULL, &st, err, errlen);
    pg->nhead = 1;
    if (st == SVC_PG_QUEUED && lock != NULL) {
        const char *p[1] = {lock};
        run_once(pg, "begin", SQL_LOCK, 1, p, &st, err, errlen);
        pg->nhead = 2;
    }
    if (st != SVC_PG_QUEUED)
        return st;
    pg->in_txn = 1;
    return TCPOPS__STATUS__OK;
}

int svc_pg_pipeline_flush(svc_pg *pg, char *err, size_t errlen)
{
    int st;
    if (pg->h == NULL || !PQpipelineSync(pg->h))
        return result_error(pg, NULL, "begin", err, errlen);
    pg->mode = MODE_RECV;
    st = TCPOPS__STATUS__OK;
    for (int i = 0; i < pg->nhead && st == TCPOPS__STATUS__OK; i++)
        PQclear(recv_result(pg, "begin", &st, err, errlen)); /* BEGIN's, the lock's */
    return st;
}

void svc_pg_pipeline_end(svc_pg *pg)
{
    if (pg->h == NULL)
        return; /* disconnect() left pipeline mode */
    /* Ended before pipeline_flush (a write refused before it queued
     * anything): without a sync the loop below would wait forever for a
     * PIPELINE_SYNC the server never sends. */
    if (pg->mode == MODE_SEND && PQpipelineSync(pg->h))
        pg->mode = MODE_RECV;
    if (pg->mode == MODE_SEND) {
        if (pg->in_txn)
            pg->lost_in_txn = 1;
        disconnect(pg);
        return;
    }
    while (pg->next_expect < pg->nexpect) {
        int what_for = pg->expect[pg->next_expect];
        PGresult *skipped = next_result(pg);
        if (skipped != NULL && PQresultStatus(skipped) == PGRES_COMMAND_OK &&
            what_for >= pg->nprepared)
            pg->nprepared = what_for + 1;
        PQclear(skipped);
    }
    PGresult *r;
    while ((r = PQgetResult(pg->h)) != NULL && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        PQclear(r);
    PQclear(r);
    if (r == NULL || !PQexitPipelineMode(pg->h)) {
        if (pg->in_txn)
            pg->lost_in_txn = 1;
        disconnect(pg); /* out of step with the server: start again */
        return;
    }
    pg->mode = MODE_SYNC;
    /* The preparations the pipeline sent run in order and the first failure
     * aborts the rest: the server holds exactly the first nprepared. */
    pg->ncache = pg->nprepared;
}
