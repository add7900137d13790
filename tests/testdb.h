/* The backend a test executable runs its store and service tests against,
 * so the same test functions prove the same answers on both: SQLite (the
 * default) or PostgreSQL (argument "postgresql"; ctest registers each such
 * executable twice, NAME and NAME_pg). On PostgreSQL one pgserver serves the
 * whole run and every test gets a fresh database of its own. */
#ifndef TCPOPS_TEST_TESTDB_H
#define TCPOPS_TEST_TESTDB_H

#include <stddef.h>

#include "pgserver.h"

/* Picks the backend from argv and, for PostgreSQL, starts the server.
 * Returns 0 to run the tests, or the exit code to leave with at once:
 * PGSERVER_SKIP (with the reason printed) when PostgreSQL is not installed,
 * 1 when an argument is unknown or the server does not start. */
int testdb_init(int argc, char **argv);

/* Whether this run is against PostgreSQL. */
int testdb_is_pg(void);

/* The run's server (PostgreSQL only; NULL on SQLite). */
pgserver *testdb_server(void);

/* A fresh, empty database for one test: on PostgreSQL its URL
 * (CREATE DATABASE t_N), on SQLite "" (the test's own --data-dir is fresh).
 * 0, or -1 with the reason in url. */
int testdb_new(char *url, size_t len);

/* Runs one SQL command (or several: one string, one transaction) against
 * the database at url (one testdb_new made); rows in out as pgserver_sql
 * gives them (psql -A -t). 0, or -1 with the error in out. */
int testdb_sql(const char *url, const char *sql, char *out, size_t len);

/* The name of the backend, for messages: "sqlite" or "postgresql". */
const char *testdb_name(void);

#endif
