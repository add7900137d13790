/* The pets store on PostgreSQL (pets_backends.h). */
#include "pets_svc/pets_backends.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpops.pb-c.h"

/* Every id in one statement: one round trip, one snapshot. */
static const char SQL_GET[] = "SELECT id, name FROM pets WHERE id = ANY($1::bigint[])";
static const char SQL_CREATE[] =
    "INSERT INTO pets (name, created_ms) VALUES ($1, $2) RETURNING id";

int pets_pg_get_by_ids(svc_pg *pg, const uint64_t *ids, size_t n, char **names, char *err,
                       size_t errlen)
{
    /* "{1,2,3}": ids that cannot name a pet (0, above INT64_MAX) left out. */
    char *arr = malloc(n * 21 + 3);
    size_t len = 0;
    int st;
    if (arr == NULL) {
        snprintf(err, errlen, "out of memory");
        return TCPOPS__STATUS__INTERNAL;
    }
    arr[len++] = '{';
    for (size_t i = 0; i < n; i++)
        if (ids[i] != 0 && ids[i] <= INT64_MAX)
            len += (size_t)sprintf(arr + len, "%s%" PRIu64, arr[len - 1] == '{' ? "" : ",",
                                   ids[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    const char *p[1] = {arr};
    PGresult *r = svc_pg_run(pg, "get", SQL_GET, 1, p, &st, err, errlen);
    free(arr);
    if (r == NULL)
        return st;
    for (int row = 0; row < PQntuples(r); row++) {
        uint64_t id = strtoull(PQgetvalue(r, row, 0), NULL, 10);
        for (size_t i = 0; i < n; i++) {
            if (ids[i] == id && names[i] == NULL &&
                (names[i] = strdup(PQgetvalue(r, row, 1))) == NULL) {
                PQclear(r);
                pets_store_free_names(names, n);
                memset(names, 0, n * sizeof(*names));
                snprintf(err, errlen, "out of memory");
                return TCPOPS__STATUS__INTERNAL;
            }
        }
    }
    PQclear(r);
    return TCPOPS__STATUS__OK;
}

int pets_pg_create(svc_pg *pg, const char *name, uint64_t *id, char *err, size_t errlen)
{
    int st;
    PGresult *r = svc_pg_insert_named(pg, SQL_CREATE, name, &st, err, errlen);
    if (r == NULL)
        return st;
    *id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return TCPOPS__STATUS__OK;
}
