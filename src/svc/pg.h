/* A PostgreSQL connection as the services use it (libpq). It connects when
 * first used and again after it breaks, at most once per backoff delay
 * (rpc/backoff, capped at SVC_PG_BACKOFF_CAP_MS so a database that comes
 * back is used within a second); the first connection of a process brings
 * the schema up to date (svc_pg_schema); statements are prepared once per
 * connection, keyed by their SQL text, then executed with text parameters.
 * A server that cannot be reached is UNAVAILABLE, never fatal. Keepalives
 * and tcp_user_timeout bound how long a vanished server can hold a call.
 * One svc_pg belongs to one thread at a time, except a pool
 * (svc_pg_pool_new), which any thread may run reads on. */
#ifndef TCPOPS_SVC_PG_H
#define TCPOPS_SVC_PG_H

#include <libpq-fe.h>
#include <stddef.h>

#include "svc/migration.h"

#define SVC_PG_BACKOFF_CAP_MS 500
#define SVC_PG_CONNECT_TIMEOUT_S "5"
#define SVC_PG_USER_TIMEOUT_MS "3000"
/* The server side of every session: a transaction left idle (its client
 * gone) ends after 5 s, a lock is waited for at most 5 s, and the server's
 * own keepalives and tcp_user_timeout find a vanished client in seconds. */
#define SVC_PG_SERVER_OPTIONS                                                   \
    "-c idle_in_transaction_session_timeout=5000 -c lock_timeout=5000 "         \
    "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 "                   \
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=3000"

typedef struct svc_pg svc_pg;
typedef struct svc_pg_schema svc_pg_schema;

/* The runtime's own migrations (db/svc/postgresql: the members table). */
extern const svc_migration svc_postgresql_migrations[];
extern const size_t svc_postgresql_nmigrations;

/* 0 when url is a connection string libpq accepts ("postgresql://..."),
 * else -EINVAL with libpq's reason in err. Never connects. */
int svc_pg_check_url(const char *url, char *err, size_t errlen);

/* What one process applies once, on its first connection: the runtime's
 * migrations (component "svc"), then service's m[0..n). Each component's
 * version is recorded in tcpops_schema; all of it runs in one transaction
 * under pg_advisory_xact_lock, so workers starting at once on many hosts
 * apply each migration exactly once. Shared by every svc_pg of a process. */
int svc_pg_schema_new(svc_pg_schema **out, const char *service, const svc_migration *m,
                      size_t n);
void svc_pg_schema_free(svc_pg_schema *sc);

/* Applies sc on the new connection h unless this process already has: for
 * svc_pg_ready. 0, or -1 with err filled. */
int svc_pg_schema_apply(svc_pg_schema *sc, PGconn *h, char *err, size_t errlen);

/* A connection to url (not made yet); app names it in pg_stat_activity.
 * 0 or -ENOMEM. */
int svc_pg_new(svc_pg **out, const char *url, const char *app, svc_pg_schema *schema);

/* A pool of n connections to url for reads by many threads: svc_pg_run on
 * it runs on a connection no other thread is using, waiting for one when
 * all are busy (a thread only waits for the database either way). Only
 * svc_pg_run works on a pool. 0 or -ENOMEM (svc_pg_free *out then). */
int svc_pg_pool_new(svc_pg **out, const char *url, const char *app, svc_pg_schema *schema,
                    int n);

/* Closes (a pool: every connection). NULL does nothing. */
void svc_pg_free(svc_pg *pg);

/* Connects (and migrates) when not connected and the backoff allows.
 * Returns OK, or UNAVAILABLE with the reason in err. */
int svc_pg_ready(svc_pg *pg, char *err, size_t errlen);

/* Runs the prepared statement for sql (a string literal: its address is the
 * cache key) with n text parameters ($1..$n, NULL for SQL NULL), connecting
 * first when needed outside a transaction. Returns the result (PQclear it)
 * and *status OK; or NULL, *status the failure (svc_pg_sqlstate_status;
 * UNAVAILABLE when the connection is lost) and err saying what failed. */
PGresult *svc_pg_run(svc_pg *pg, const char *what, const char *sql, int n,
                     const char *const *params, int *status, char *err, size_t errlen);

/* svc_pg_run("create", sql) with $1 = name and $2 = the wall clock in ms:
 * the INSERT of a named row (as svc_db_insert_named on SQLite). */
PGresult *svc_pg_insert_named(svc_pg *pg, const char *sql, const char *name, int *status,
                              char *err, size_t errlen);

/* A pipeline: the group-commit writer's statements sent together, their
 * results read together (one round trip for the group, not one per write).
 * pipeline_begin connects when needed and queues BEGIN and, when lock is
 * not NULL, pg_advisory_xact_lock(hashtext(lock)), so the groups of every
 * worker on every host that name the same lock commit one at a time (the
 * ids they take then follow commit order, as on SQLite, and a page of a
 * list never skips a row committed later with a smaller id); then each write
 * runs twice: first svc_pg_run only queues its statement and answers
 * SVC_PG_QUEUED (return it as is), then, after pipeline_flush sent them
 * all and read BEGIN's result, svc_pg_run answers that statement's result.
 * So a write issues exactly one statement and decides nothing before its
 * result. A statement that fails aborts the rest of the pipeline (they
 * answer UNAVAILABLE, "not run") and svc_pg_txn_failed turns true;
 * pipeline_end reads what is left and leaves pipeline mode (the
 * transaction stays open: commit or rollback it). */
#define SVC_PG_QUEUED (-1)

int svc_pg_pipeline_begin(svc_pg *pg, const char *lock, char *err, size_t errlen);
int svc_pg_pipeline_flush(svc_pg *pg, char *err, size_t errlen);
void svc_pg_pipeline_end(svc_pg *pg);

/* The transaction of the group-commit writer: begin connects when needed;
 * commit says, when the connection is lost during COMMIT, that the outcome
 * is unknown. Each returns OK or the failure with err filled. rollback
 * forgets a failed transaction (also after the connection was lost). */
int svc_pg_begin(svc_pg *pg, char *err, size_t errlen);
int svc_pg_commit(svc_pg *pg, char *err, size_t errlen);
void svc_pg_rollback(svc_pg *pg);

/* Whether a connection is up (it may still turn out dead when used). */
int svc_pg_connected(const svc_pg *pg);

/* Whether the current transaction failed (later statements would be
 * refused until rollback). */
int svc_pg_txn_failed(svc_pg *pg);

/* The status for a SQLSTATE: 23505 (unique violation) ALREADY_EXISTS;
 * 53100 (disk full) STORAGE_FULL; connection exceptions (08...),
 * shutdown and start-up (57P01-57P03), too many connections (53300),
 * serialization failures and deadlocks (40001, 40P01), a lock not granted
 * in lock_timeout (55P03) and a transaction ended for idling (25P03)
 * UNAVAILABLE; anything
 * else INTERNAL. NULL (no SQLSTATE: the connection broke) is UNAVAILABLE. */
int svc_pg_sqlstate_status(const char *sqlstate);

#endif
