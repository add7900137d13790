#include "svc/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "tcpops.pb-c.h"

#define CACHE 32

struct svc_db {
    sqlite3 *h;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[CACHE];
    int ncache;
};

int svc_db_open(svc_db **out, const char *path, int sync_full, char *err, size_t errlen)
{
    svc_db *db = calloc(1, sizeof(*db));
    if (db == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &db->h,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "open %s: %s", path,
                 db->h != NULL ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(db->h, SVC_BUSY_TIMEOUT_MS);
    char pragmas[160];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;",
             sync_full ? "FULL" : "NORMAL");
    char why[256];
    if (svc_db_exec(db, pragmas, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    *out = db;
    return 0;
fail:
    svc_db_close(db);
    return -EIO;
}

void svc_db_close(svc_db *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < db->ncache; i++)
        sqlite3_finalize(db->cache[i].st);
    sqlite3_close(db->h);
    free(db);
}

sqlite3 *svc_db_handle(svc_db *db)
{
    return db->h;
}

sqlite3_stmt *svc_db_stmt(svc_db *db, const char *sql)
{
    for (int i = 0; i < db->ncache; i++) {
        if (db->cache[i].sql == sql) {
            sqlite3_stmt *st = db->cache[i].st;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return st;
        }
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        return NULL;
    if (db->ncache < CACHE) {
        db->cache[db->ncache].sql = sql;
        db->cache[db->ncache].st = st;
        db->ncache++;
    } else {
        /* Full: replace the oldest, it is re-prepared on its next use. */
        sqlite3_finalize(db->cache[0].st);
        memmove(&db->cache[0], &db->cache[1], sizeof(db->cache[0]) * (CACHE - 1));
        db->cache[CACHE - 1].sql = sql;
        db->cache[CACHE - 1].st = st;
    }
    return st;
}

static int is_full_errno(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/* The errno behind the last I/O error: the unix VFS keeps it per file (the
 * database's and the WAL's), which is more faithful than
 * sqlite3_system_errno (errno read after SQLite's own clean-up ran). A
 * full-disk errno wins; 0 when none is known. */
static int io_errno(svc_db *db)
{
    int e[3] = {0, 0, 0};
    sqlite3_file *journal = NULL;
    sqlite3_file_control(db->h, "main", SQLITE_FCNTL_LAST_ERRNO, &e[0]);
    if (sqlite3_file_control(db->h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &journal) ==
            SQLITE_OK &&
        journal != NULL && journal->pMethods != NULL)
        journal->pMethods->xFileControl(journal, SQLITE_FCNTL_LAST_ERRNO, &e[1]);
    e[2] = sqlite3_system_errno(db->h);
    for (int i = 0; i < 3; i++)
        if (is_full_errno(e[i]))
            return e[i];
    return e[1] != 0 ? e[1] : e[0] != 0 ? e[0] : e[2];
}

int svc_db_status(svc_db *db)
{
    int rc = sqlite3_extended_errcode(db->h);
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return TCPOPS__STATUS__STORAGE_FULL;
    case SQLITE_IOERR:
        /* A write past a quota's or RLIMIT_FSIZE's end is an I/O error to
         * SQLite (only ENOSPC is SQLITE_FULL): the errno tells. */
        return is_full_errno(io_errno(db)) ? TCPOPS__STATUS__STORAGE_FULL
                                           : TCPOPS__STATUS__INTERNAL;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TCPOPS__STATUS__UNAVAILABLE;
    default:
        return TCPOPS__STATUS__INTERNAL;
    }
}

int svc_db_fail(svc_db *db, const char *what, char *err, size_t errlen)
{
    char msg[200];
    int io = (sqlite3_extended_errcode(db->h) & 0xff) == SQLITE_IOERR;
    snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db->h));
    int status = svc_db_status(db); /* before io_errno's file controls */
    int e = io ? io_errno(db) : 0;
    if (e != 0)
        snprintf(err, errlen, "%s: %s (%s)", what, msg, strerror(e));
    else
        snprintf(err, errlen, "%s: %s", what, msg);
    return status;
}

int svc_db_insert_named(svc_db *db, const char *sql, const char *name)
{
    sqlite3_stmt *st = svc_db_stmt(db, sql);
    if (st == NULL)
        return sqlite3_errcode(db->h);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, rpc_wall_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";

int svc_db_begin_read(svc_db *db)
{
    sqlite3_stmt *st = svc_db_stmt(db, SQL_BEGIN);
    if (st == NULL)
        return sqlite3_errcode(db->h);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

void svc_db_end_read(svc_db *db)
{
    sqlite3_stmt *st = svc_db_stmt(db, SQL_COMMIT);
    if (st != NULL) {
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    if (!sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL); /* never left open */
}

int svc_db_exec(svc_db *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg != NULL ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int user_version(svc_db *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int svc_db_migrate(svc_db *db, const svc_migration *m, size_t n, char *err, size_t errlen)
{
    char why[256];
    if (svc_db_exec(db, "BEGIN IMMEDIATE", why, sizeof(why)) < 0) {
        snprintf(err, errlen, "migrate: begin: %s", why);
        return -EIO;
    }
    int have = user_version(db);
    if (have < 0) {
        snprintf(err, errlen, "migrate: cannot read user_version: %s", sqlite3_errmsg(db->h));
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version <= have)
            continue;
        if (svc_db_exec(db, m[i].sql, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "migration %s: %s", m[i].name, why);
            goto fail;
        }
        char set[64];
        snprintf(set, sizeof(set), "PRAGMA user_version=%d", m[i].version);
        if (svc_db_exec(db, set, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "migration %s: %s", m[i].name, why);
            goto fail;
        }
        have = m[i].version;
    }
    if (svc_db_exec(db, "COMMIT", why, sizeof(why)) < 0) {
        snprintf(err, errlen, "migrate: commit: %s", why);
        goto fail;
    }
    return 0;
fail:
    svc_db_exec(db, "ROLLBACK", why, sizeof(why));
    return -EIO;
}
