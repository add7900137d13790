/* The backend of a test run (testdb.h). */
#include "testdb.h"

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

int testdb_new(char *url, size_t len)
{
    char sql[64], out[1024];
    if (!is_pg) {
        snprintf(url, len, "%s", "");
        return 0;
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE t_%d", ++ndb);
    if (pgserver_sql(&server, sql, out, sizeof(out)) < 0) {
        snprintf(url, len, "%s: %s", sql, out);
        return -1;
    }
    snprintf(url, len, "postgresql://tcpops@127.0.0.1:%d/t_%d", server.port, ndb);
    return 0;
}

int testdb_sql(const char *url, const char *sql, char *out, size_t len)
{
    pgserver p = server;
    snprintf(p.url, sizeof(p.url), "%s", url);
    return pgserver_sql(&p, sql, out, len);
}

const char *testdb_name(void)
{
    return is_pg ? "postgresql" : "sqlite";
}
