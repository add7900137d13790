/* A real PostgreSQL server for tests: initdb into a new temporary directory,
 * then postgres on a free 127.0.0.1 port (and a Unix socket in that
 * directory), trust authentication for the user "tcpops", fsync on,
 * synchronous_commit on. PostgreSQL refuses to run as root, so as root the
 * server runs as the "postgres" user (runuser); otherwise as the caller.
 * Binaries come from `pg_config --bindir` or /usr/lib/postgresql/N/bin.
 * Every server is stopped and its directory removed at exit, also when a
 * test fails (atexit), and the postmaster dies with the test process. */
#ifndef TCPOPS_TEST_PGSERVER_H
#define TCPOPS_TEST_PGSERVER_H

#include <stddef.h>
#include <sys/types.h>

/* ctest counts a test that exits with this code as skipped (SKIP_RETURN_CODE). */
#define PGSERVER_SKIP 77

typedef struct pgserver {
    char dir[256];      /* the temporary directory: data/, the socket, log */
    char bindir[256];
    int port;
    char url[320];      /* postgresql://tcpops@127.0.0.1:PORT/tcpops */
    int running;
    char netns[64];     /* the network namespace it runs in, or "" */
    char listen[64];    /* its TCP address there (listen_addresses), "" = 127.0.0.1 */
} pgserver;

/* Whether PostgreSQL's server programs are installed; when not, why in
 * why (for the skip message). */
int pgserver_available(char *why, size_t len);

/* initdb and start, waiting until it accepts connections; creates the
 * database "tcpops". 0, or -1 with err filled. */
int pgserver_start(pgserver *pg, char *err, size_t errlen);

/* Like pgserver_start, with the server in network namespace netns (its
 * programs, pg_ctl and psql run under `ip netns exec NETNS`) listening on
 * address listen there instead of 127.0.0.1; url then names that address,
 * and pg_hba trusts 198.18.0.0/15, the test network of netns.h. Either may
 * be NULL (as pgserver_start). 0, or -1 with err filled. */
int pgserver_start_in(pgserver *pg, const char *netns, const char *listen, char *err,
                      size_t errlen);

/* pg_ctl stop -m fast (waits) / start again on the same port (waits until
 * it accepts) / restart -m fast. 0 or -1 with err. */
int pgserver_stop(pgserver *pg, char *err, size_t errlen);
int pgserver_resume(pgserver *pg, char *err, size_t errlen);
int pgserver_restart(pgserver *pg, char *err, size_t errlen);

/* Runs one SQL command with psql against the database; its output (rows
 * unaligned, tuples only) in out. 0, or -1 with psql's error in out. */
int pgserver_sql(const pgserver *pg, const char *sql, char *out, size_t outlen);

/* Stops the server (if running) and removes its directory. */
void pgserver_destroy(pgserver *pg);

#endif
