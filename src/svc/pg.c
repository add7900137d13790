/* The PostgreSQL connection (pg.h). */
#include "svc/pg.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/backoff.h"
#include "rpc/clock.h"
#include "tcpops.pb-c.h"

#define CACHE 32
/* pg_advisory_xact_lock's key for schema changes: "tcpops" in ASCII. */
#define SCHEMA_LOCK_KEY "127978127929459"

struct svc_pg_schema {
    pthread_mutex_t lock;
    int applied;              /* under lock: every component is up to date */
    struct {
        const char *name;
        const svc_migration *m;
        size_t n;
    } comp[2];
};

struct svc_pg {
    /* A pool (svc_pg_pool_new): svc_pg_run borrows one of members. */
    svc_pg **members;
    int nmembers, nfree;
    svc_pg **free_list;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;

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
};

enum { MODE_SYNC, MODE_SEND, MODE_RECV };
#define EXPECT_QUERY (-1)

int svc_pg_check_url(const char *url, char *err, size_t errlen)
{
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &why);
    if (opts == NULL) {
        size_t n = why != NULL ? strcspn(why, "\n") : 0;
        snprintf(err, errlen, "%.*s", (int)n, why != NULL ? why : "out of memory");
        PQfreemem(why);
        return -EINVAL;
    }
    PQconninfoFree(opts);
    return 0;
}

int svc_pg_schema_new(svc_pg_schema **out, const char *service, const svc_migration *m,
                      size_t n)
{
    svc_pg_schema *sc = calloc(1, sizeof(*sc));
    if (sc == NULL)
        return -ENOMEM;
    pthread_mutex_init(&sc->lock, NULL);
    sc->comp[0].name = "svc";
    sc->comp[0].m = svc_postgresql_migrations;
    sc->comp[0].n = svc_postgresql_nmigrations;
    sc->comp[1].name = service;
    sc->comp[1].m = m;
    sc->comp[1].n = n;
    *out = sc;
    return 0;
}

void svc_pg_schema_free(svc_pg_schema *sc)
{
    if (sc == NULL)
        return;
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

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
        strcmp(s, "40P01") == 0)
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
    rpc_cond_init(&pool->pool_cond);
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

/* A member of pool to run on, waiting for one to be free. */
static svc_pg *borrow(svc_pg *pool)
{
    pthread_mutex_lock(&pool->pool_lock);
    while (pool->nfree == 0)
        pthread_cond_wait(&pool->pool_cond, &pool->pool_lock);
    svc_pg *pg = pool->free_list[--pool->nfree];
    pthread_mutex_unlock(&pool->pool_lock);
    return pg;
}

static void give_back(svc_pg *pool, svc_pg *pg)
{
    pthread_mutex_lock(&pool->pool_lock);
    pool->free_list[pool->nfree++] = pg;
    pthread_cond_signal(&pool->pool_cond);
    pthread_mutex_unlock(&pool->pool_lock);
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
        pthread_cond_destroy(&pg->pool_cond);
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

/* Runs sql (several statements, no parameters) on h. 0, or -1 with err. */
static int exec_simple(PGconn *h, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(h, sql);
    int ok = r != NULL && (PQresultStatus(r) == PGRES_COMMAND_OK ||
                           PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok) {
        const char *m = r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(h);
        snprintf(err, errlen, "%.*s", (int)strcspn(m, "\n"), m);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* The version recorded for component, or -1 with err. */
static long schema_version(PGconn *h, const char *component, char *err, size_t errlen)
{
    const char *params[1] = {component};
    PGresult *r = PQexecParams(h, "SELECT version FROM tcpops_schema WHERE component = $1", 1,
                               NULL, params, NULL, NULL, 0);
    long v = -1;
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK)
        v = PQntuples(r) > 0 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    else
        snprintf(err, errlen, "%.*s", (int)strcspn(PQerrorMessage(h), "\n"), PQerrorMessage(h));
    PQclear(r);
    return v;
}

/* Applies component's migrations above its recorded version. 0 or -1. */
static int apply(PGconn *h, const char *component, const svc_migration *m, size_t n, char *err,
                 size_t errlen)
{
    long have = schema_version(h, component, err, errlen);
    if (have < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= have)
            continue;
        char why[160], ver[16];
        if (exec_simple(h, m[i].sql, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "migration %s/%s: %s", component, m[i].name, why);
            return -1;
        }
        snprintf(ver, sizeof(ver), "%d", m[i].version);
        const char *params[2] = {component, ver};
        PGresult *r = PQexecParams(h,
                                   "INSERT INTO tcpops_schema (component, version) "
                                   "VALUES ($1, $2) ON CONFLICT (component) "
                                   "DO UPDATE SET version = excluded.version",
                                   2, NULL, params, NULL, NULL, 0);
        int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            snprintf(err, errlen, "recording %s version %d: %s", component, m[i].version,
                     conn_error(h, why, sizeof(why)));
            return -1;
        }
    }
    return 0;
}

/* Brings the schema up to date once per process, in one transaction under
 * the advisory lock. 0, or -1 with err. */
static int migrate(svc_pg_schema *sc, PGconn *h, char *err, size_t errlen)
{
    pthread_mutex_lock(&sc->lock);
    int rc = 0;
    if (!sc->applied) {
        rc = exec_simple(h,
                         "BEGIN; SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
                         "CREATE TABLE IF NOT EXISTS tcpops_schema ("
                         "component text PRIMARY KEY, version integer NOT NULL)",
                         err, errlen);
        for (size_t i = 0; rc == 0 && i < 2; i++)
            rc = apply(h, sc->comp[i].name, sc->comp[i].m, sc->comp[i].n, err, errlen);
        if (rc == 0)
            rc = exec_simple(h, "COMMIT", err, errlen);
        else
            exec_simple(h, "ROLLBACK", (char[64]){0}, 64);
        sc->applied = rc == 0;
    }
    pthread_mutex_unlock(&sc->lock);
    return rc;
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
    /* Later keywords win: the URL's own settings override these. */
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", "application_name",
                          "dbname", NULL};
    const char *vals[] = {SVC_PG_CONNECT_TIMEOUT_S, "1", "1", "3", SVC_PG_USER_TIMEOUT_MS,
                          pg->app, pg->url, NULL};
    PGconn *h = PQconnectdbParams(keys, vals, 1);
    char why[256];
    if (h != NULL)
        PQsetNoticeProcessor(h, ignore_notice, NULL);
    if (h == NULL || PQstatus(h) != CONNECTION_OK)
        conn_error(h, why, sizeof(why));
    else if (migrate(pg->schema, h, why, sizeof(why)) == 0) {
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
        int is_query = pg->expect[pg->next_expect] == EXPECT_QUERY;
        r = next_result(pg);
        rs = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (is_query || (rs != PGRES_COMMAND_OK && rs != PGRES_PIPELINE_ABORTED))
            break;
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

PGresult *svc_pg_run(svc_pg *pg, const char *what, const char *sql, int n,
                     const char *const *params, int *status, char *err, size_t errlen)
{
    if (pg->members != NULL) {
        svc_pg *m = borrow(pg);
        PGresult *r = svc_pg_run(m, what, sql, n, params, status, err, errlen);
        give_back(pg, m);
        return r;
    }
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
    PQclear(svc_pg_run(pg, "commit", SQL_COMMIT, 0, NULL, &st, why, sizeof(why)));
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

int svc_pg_pipeline_begin(svc_pg *pg, char *err, size_t errlen)
{
    static const char SQL_BEGIN[] = "BEGIN";
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
    PQclear(recv_result(pg, "begin", &st, err, errlen)); /* BEGIN's */
    return st;
}

void svc_pg_pipeline_end(svc_pg *pg)
{
    if (pg->h == NULL)
        return; /* disconnect() left pipeline mode */
    while (pg->next_expect < pg->nexpect)
        PQclear(next_result(pg));
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
    /* Statements prepared after a failure in the pipeline were not. */
    if (pg->aborted)
        pg->ncache = pg->nprepared;
    else
        pg->nprepared = pg->ncache;
}
