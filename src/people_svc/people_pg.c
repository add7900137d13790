/* The people store on PostgreSQL (people_backends.h). Writes are single
 * statements that change nothing when they answer anything but OK (the
 * writer relies on it: writer.h), so a taken name is ON CONFLICT DO NOTHING
 * rather than an error that would end the group's transaction. */
#include "people_svc/people_backends.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpops.pb-c.h"

static const char SQL_LIST[] = "SELECT name FROM people WHERE id > $1 ORDER BY id LIMIT $2";
static const char SQL_ID_OF[] = "SELECT id FROM people WHERE name = $1";
static const char SQL_CREATE[] =
    "INSERT INTO people (name, created_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
/* One statement, one snapshot: no row means no such person, a NULL pet_id
 * a person without pets. */
static const char SQL_PET_IDS[] =
    "SELECT p.id, o.pet_id FROM people p LEFT JOIN ownership o ON o.person_id = p.id "
    "WHERE p.name = $1 ORDER BY o.pet_id";
/* The owner's row count tells NOT_FOUND; owning the pet already is fine. */
static const char SQL_ADD_PET[] =
    "WITH p AS (SELECT id FROM people WHERE name = $1), "
    "ins AS (INSERT INTO ownership (person_id, pet_id) SELECT id, $2::bigint FROM p "
    "ON CONFLICT DO NOTHING) SELECT count(*) FROM p";

int people_pg_list(svc_pg *pg, uint32_t limit, const char *after, char ***names, size_t *n,
                   char *err, size_t errlen)
{
    char after_id[24] = "0", lim[16];
    int st;
    if (after != NULL && after[0] != '\0') {
        const char *p[1] = {after};
        PGresult *r = svc_pg_run(pg, "list", SQL_ID_OF, 1, p, &st, err, errlen);
        if (r == NULL)
            return st;
        if (PQntuples(r) == 0) {
            PQclear(r);
            snprintf(err, errlen, "no person named \"%s\" to list after", after);
            return TCPOPS__STATUS__INVALID_ARGUMENT;
        }
        snprintf(after_id, sizeof(after_id), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    snprintf(lim, sizeof(lim), "%u", limit);
    const char *p[2] = {after_id, lim};
    PGresult *r = svc_pg_run(pg, "list", SQL_LIST, 2, p, &st, err, errlen);
    if (r == NULL)
        return st;
    size_t k = (size_t)PQntuples(r);
    char **out = calloc(k ? k : 1, sizeof(*out));
    for (size_t i = 0; out != NULL && i < k; i++) {
        if ((out[i] = strdup(PQgetvalue(r, (int)i, 0))) == NULL) {
            people_store_free_names(out, i);
            out = NULL;
        }
    }
    PQclear(r);
    if (out == NULL) {
        snprintf(err, errlen, "out of memory");
        return TCPOPS__STATUS__INTERNAL;
    }
    *names = out;
    *n = k;
    return TCPOPS__STATUS__OK;
}

int people_pg_create(svc_pg *pg, const char *name, char *err, size_t errlen)
{
    int st;
    PGresult *r = svc_pg_insert_named(pg, SQL_CREATE, name, &st, err, errlen);
    if (r == NULL)
        return st;
    int created = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!created) {
        snprintf(err, errlen, "a person named \"%s\" already exists", name);
        return TCPOPS__STATUS__ALREADY_EXISTS;
    }
    return TCPOPS__STATUS__OK;
}

int people_pg_pet_ids(svc_pg *pg, const char *owner, uint64_t **ids, size_t *n, char *err,
                      size_t errlen)
{
    int st;
    const char *p[1] = {owner};
    PGresult *r = svc_pg_run(pg, "pet ids", SQL_PET_IDS, 1, p, &st, err, errlen);
    if (r == NULL)
        return st;
    int rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        snprintf(err, errlen, "no person named \"%s\"", owner);
        return TCPOPS__STATUS__NOT_FOUND;
    }
    uint64_t *out = malloc((size_t)rows * sizeof(*out));
    size_t k = 0;
    for (int i = 0; out != NULL && i < rows; i++)
        if (!PQgetisnull(r, i, 1)) /* the person, without pets */
            out[k++] = strtoull(PQgetvalue(r, i, 1), NULL, 10);
    PQclear(r);
    if (out == NULL) {
        snprintf(err, errlen, "out of memory");
        return TCPOPS__STATUS__INTERNAL;
    }
    *ids = out;
    *n = k;
    return TCPOPS__STATUS__OK;
}

int people_pg_add_pet(svc_pg *pg, const char *owner, uint64_t pet_id, char *err,
                      size_t errlen)
{
    char id[24];
    int st;
    snprintf(id, sizeof(id), "%" PRIu64, pet_id);
    const char *p[2] = {owner, id};
    PGresult *r = svc_pg_run(pg, "add pet", SQL_ADD_PET, 2, p, &st, err, errlen);
    if (r == NULL)
        return st;
    int found = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    PQclear(r);
    if (!found) {
        snprintf(err, errlen, "no person named \"%s\"", owner);
        return TCPOPS__STATUS__NOT_FOUND;
    }
    return TCPOPS__STATUS__OK;
}
