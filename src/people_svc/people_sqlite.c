/* The people store on SQLite (people_backends.h). */
#include "people_svc/people_backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcpops.pb-c.h"

static const char SQL_LIST[] =
    "SELECT name FROM people WHERE id > ?1 ORDER BY id LIMIT ?2";
static const char SQL_ID_OF[] = "SELECT id FROM people WHERE name = ?1";
static const char SQL_CREATE[] = "INSERT INTO people (name, created_ms) VALUES (?1, ?2)";
/* One statement (one read transaction, one snapshot): no row means no such
 * person, a NULL pet_id a person without pets. */
static const char SQL_PET_IDS[] =
    "SELECT p.id, o.pet_id FROM people p LEFT JOIN ownership o ON o.person_id = p.id "
    "WHERE p.name = ?1 ORDER BY o.pet_id";
static const char SQL_ADD_PET[] =
    "INSERT OR IGNORE INTO ownership (person_id, pet_id) VALUES (?1, ?2)";

/* The id of the person named name: 1 found, 0 not, -1 database error. */
static int id_of(svc_db *db, const char *name, int64_t *id)
{
    sqlite3_stmt *st = svc_db_stmt(db, SQL_ID_OF);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int people_sqlite_list(svc_db *db, uint32_t limit, const char *after, char ***names,
                      size_t *n, char *err, size_t errlen)
{
    int64_t after_id = 0;
    if (after != NULL && after[0] != '\0') {
        int found = id_of(db, after, &after_id);
        if (found < 0)
            return svc_db_fail(db, "list", err, errlen);
        if (found == 0) {
            snprintf(err, errlen, "no person named \"%s\" to list after", after);
            return TCPOPS__STATUS__INVALID_ARGUMENT;
        }
    }
    sqlite3_stmt *st = svc_db_stmt(db, SQL_LIST);
    if (st == NULL)
        return svc_db_fail(db, "list", err, errlen);
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int64(st, 2, limit);
    char **out = calloc(limit, sizeof(*out));
    size_t k = 0;
    int rc;
    if (out == NULL) {
        snprintf(err, errlen, "out of memory");
        return TCPOPS__STATUS__INTERNAL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && k < limit) {
        out[k] = strdup((const char *)sqlite3_column_text(st, 0));
        if (out[k] == NULL)
            break;
        k++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        people_store_free_names(out, k);
        return svc_db_fail(db, "list", err, errlen);
    }
    *names = out;
    *n = k;
    return TCPOPS__STATUS__OK;
}

int people_sqlite_create(svc_db *db, const char *name, char *err, size_t errlen)
{
    int rc = svc_db_insert_named(db, SQL_CREATE, name);
    if (rc == SQLITE_DONE)
        return TCPOPS__STATUS__OK;
    if (rc == SQLITE_CONSTRAINT) {
        snprintf(err, errlen, "a person named \"%s\" already exists", name);
        return TCPOPS__STATUS__ALREADY_EXISTS;
    }
    return svc_db_fail(db, "create", err, errlen);
}

int people_sqlite_pet_ids(svc_db *db, const char *owner, uint64_t **ids, size_t *n, char *err,
                         size_t errlen)
{
    sqlite3_stmt *st = svc_db_stmt(db, SQL_PET_IDS);
    if (st == NULL)
        return svc_db_fail(db, "pet ids", err, errlen);
    sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
    uint64_t *out = NULL;
    size_t k = 0, cap = 0;
    int rc, found = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        found = 1;
        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            continue; /* the person, without pets */
        if (k == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *g = realloc(out, cap * sizeof(*g));
            if (g == NULL) {
                free(out);
                sqlite3_reset(st);
                snprintf(err, errlen, "out of memory");
                return TCPOPS__STATUS__INTERNAL;
            }
            out = g;
        }
        out[k++] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(out);
        return svc_db_fail(db, "pet ids", err, errlen);
    }
    if (!found) {
        snprintf(err, errlen, "no person named \"%s\"", owner);
        return TCPOPS__STATUS__NOT_FOUND;
    }
    *ids = out;
    *n = k;
    return TCPOPS__STATUS__OK;
}

int people_sqlite_add_pet(svc_db *db, const char *owner, uint64_t pet_id, char *err,
                         size_t errlen)
{
    int64_t pid;
    int found = id_of(db, owner, &pid);
    if (found < 0)
        return svc_db_fail(db, "add pet", err, errlen);
    if (found == 0) {
        snprintf(err, errlen, "no person named \"%s\"", owner);
        return TCPOPS__STATUS__NOT_FOUND;
    }
    sqlite3_stmt *st = svc_db_stmt(db, SQL_ADD_PET);
    if (st == NULL)
        return svc_db_fail(db, "add pet", err, errlen);
    sqlite3_bind_int64(st, 1, pid);
    sqlite3_bind_int64(st, 2, (int64_t)pet_id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? TCPOPS__STATUS__OK : svc_db_fail(db, "add pet", err, errlen);
}
