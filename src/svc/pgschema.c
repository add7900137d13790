/* The schema of a PostgreSQL store (pg.h's svc_pg_schema): the migrations
 * one process applies on its first connection, in one transaction under
 * pg_advisory_xact_lock, with each component's version in tcpops_schema. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/pg.h"

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
            const char *m2 = PQerrorMessage(h);
            snprintf(err, errlen, "recording %s version %d: %.*s", component, m[i].version,
                     (int)strcspn(m2, "\n"), m2);
            return -1;
        }
    }
    return 0;
}

/* Brings the schema up to date once per process, in one transaction under
 * the advisory lock. 0, or -1 with err. */
int svc_pg_schema_apply(svc_pg_schema *sc, PGconn *h, char *err, size_t errlen)
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

