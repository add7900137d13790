/* The backend of a test run (testdb.h). */
#include "testdb.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

static pgserver server;
static int is_pg;
static int ndb;

int testdb_init(int argc, char **argv)
{
    char why[512];
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "postgresql") != 0 &&
                     strcmp(argv[1], "sqlite") != 0)) {
        fprintf(stderr, "usage: %s [sqlite|postgresql]\n", argv[0]);
        return 1;
    }
    is_pg = argc == 2 && strcmp(argv[1], "postgresql") == 0;
    if (!is_pg)
        return 0;
    if (!pgserver_available(why, sizeof(why))) {
        printf("skipped: %s\n", why);
        return PGSERVER_SKIP;
    }
    if (pgserver_start(&server, why, sizeof(why)) < 0) {
        fprintf(stderr, "cannot start PostgreSQL for the tests: %s\n", why);
        return 1;
    }
    return 0;
}

int testdb_is_pg(void)
{
    return is_pg;
}

pgserver *testdb_server(void)
{
    return is_pg ? &server : NULL;
}

/* Runs sql on the database at url through libpq (psql, a Perl wrapper on
 * Debian, costs a second a call on a loaded machine): rows as psql -A -t
 * prints them (fields joined by '|', one row a line) into out. 0, or -1
 * with the error in out. */
static int run_sql(const char *url, const char *sql, char *out, size_t len)
{
    PGconn *h = PQconnectdb(url);
    PGresult *r = PQstatus(h) == CONNECTION_OK ? PQexec(h, sql) : NULL;
    ExecStatusType rs = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    size_t used = 0;
    int rc = rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK ? 0 : -1;
    out[0] = '\0';
    if (rc < 0)
        snprintf(out, len, "%s", r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(h));
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        for (int f = 0; f < PQnfields(r) && used < len; f++)
            used += (size_t)snprintf(out + used, len - used, "%s%s", PQgetvalue(r, i, f),
                                     f + 1 < PQnfields(r) ? "|" : "\n");
    PQclear(r);
    PQfinish(h);
    return rc;
}

int testdb_new(char *url, size_t len)
{
    char sql[64], out[1024];
    if (!is_pg) {
        snprintf(url, len, "%s", "");
        return 0;
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE t_%d", ++ndb);
    if (run_sql(server.url, sql, out, sizeof(out)) < 0) {
        snprintf(url, len, "%s: %s", sql, out);
        return -1;
    }
    snprintf(url, len, "postgresql://tcpops@127.0.0.1:%d/t_%d", server.port, ndb);
    return 0;
}

int testdb_sql(const char *url, const char *sql, char *out, size_t len)
{
    return run_sql(url, sql, out, len);
}

const char *testdb_name(void)
{
    return is_pg ? "postgresql" : "sqlite";
}
