/* The pets store on SQLite (pets_backends.h). */
#include "pets_svc/pets_backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcpops.pb-c.h"

static const char SQL_GET[] = "SELECT name FROM pets WHERE id = ?1";
static const char SQL_CREATE[] = "INSERT INTO pets (name, created_ms) VALUES (?1, ?2)";

int pets_sqlite_get_by_ids(svc_db *db, const uint64_t *ids, size_t n, char **names, char *err,
                           size_t errlen)
{
    sqlite3_stmt *st = svc_db_stmt(db, SQL_GET);
    if (st == NULL || (n > 1 && svc_db_begin_read(db) != 0))
        return svc_db_fail(db, "get", err, errlen);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == 0 || ids[i] > INT64_MAX)
            continue; /* no such pet */
        sqlite3_bind_int64(st, 1, (int64_t)ids[i]);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            names[i] = strdup((const char *)sqlite3_column_text(st, 0));
            if (names[i] == NULL)
                rc = SQLITE_NOMEM;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            int status = svc_db_fail(db, "get", err, errlen);
            pets_store_free_names(names, i + 1);
            if (n > 1)
                svc_db_end_read(db);
            return status;
        }
    }
    if (n > 1)
        svc_db_end_read(db);
    return TCPOPS__STATUS__OK;
}

int pets_sqlite_create(svc_db *db, const char *name, uint64_t *id, char *err, size_t errlen)
{
    if (svc_db_insert_named(db, SQL_CREATE, name) != SQLITE_DONE)
        return svc_db_fail(db, "create", err, errlen);
    *id = (uint64_t)sqlite3_last_insert_rowid(svc_db_handle(db));
    return TCPOPS__STATUS__OK;
}
