/* A SQLite connection as the services use it: WAL, a busy timeout, the chosen
 * synchronous level, and a cache of prepared statements keyed by their SQL
 * text, so hot statements are prepared once and then bound, stepped, reset.
 * One svc_db belongs to one thread at a time (SQLite forbids sharing). */
#ifndef TCPOPS_SVC_DB_H
#define TCPOPS_SVC_DB_H

#include <sqlite3.h>
#include <stddef.h>

#include "svc/migration.h"

typedef struct svc_db svc_db;

#define SVC_BUSY_TIMEOUT_MS 5000

/* Opens (creating) the database at path. sync_full selects synchronous=FULL
 * (survives power loss) instead of NORMAL (survives a process crash).
 * Returns 0, or a negative errno with a sentence in err. */
int svc_db_open(svc_db **out, const char *path, int sync_full, char *err, size_t errlen);

/* Finalizes every cached statement and closes. NULL does nothing. */
void svc_db_close(svc_db *db);

sqlite3 *svc_db_handle(svc_db *db);

/* The prepared statement for sql (which must outlive db: a string literal),
 * reset with its bindings cleared, ready to bind. NULL when it does not
 * prepare (sqlite3_errmsg says why). Owned by db. */
sqlite3_stmt *svc_db_stmt(svc_db *db, const char *sql);

/* The status for the last error on db: STORAGE_FULL when the disk, a quota
 * or the file size limit is full (SQLITE_FULL, or an I/O error behind which
 * is ENOSPC, EDQUOT or EFBIG), UNAVAILABLE when the database stayed locked
 * past the busy timeout, INTERNAL for anything else. */
int svc_db_status(svc_db *db);

/* For store functions: fills err with what failed and SQLite's reason (and
 * the system's, for an I/O error), and returns svc_db_status(db). */
int svc_db_fail(svc_db *db, const char *what, char *err, size_t errlen);

/* Runs the cached INSERT sql with ?1 = name and ?2 = the wall clock in ms.
 * Returns SQLite's result code (SQLITE_DONE on success). */
int svc_db_insert_named(svc_db *db, const char *sql, const char *name);

/* Several reads on one snapshot: one read transaction, so one round of
 * WAL locking instead of one per statement. begin returns 0 or SQLite's
 * error code; end (always after a successful begin) ends it. */
int svc_db_begin_read(svc_db *db);
void svc_db_end_read(svc_db *db);

/* Runs statements without results. 0, or -EIO with err filled. */
int svc_db_exec(svc_db *db, const char *sql, char *err, size_t errlen);

/* Brings the schema up to the newest migration, inside one write transaction
 * so that several processes starting at once apply each exactly once
 * (PRAGMA user_version holds the version). 0, or -EIO with err filled. */
int svc_db_migrate(svc_db *db, const svc_migration *m, size_t n, char *err, size_t errlen);

#endif
