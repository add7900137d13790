/* The people store (people_store.h): checks what both backends share, then
 * hands the call to the connection's backend (people_sqlite.c,
 * people_pg.c). */
#include "people_svc/people_backends.h"

#include <stdio.h>
#include <stdlib.h>

#include "tcpops.pb-c.h"

void people_store_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int people_store_list(svc_conn *c, uint32_t limit, const char *after, char ***names,
                      size_t *n, char *err, size_t errlen)
{
    if (limit == 0)
        limit = PEOPLE_LIST_DEFAULT;
    if (limit > PEOPLE_LIST_MAX) {
        snprintf(err, errlen, "limit %u is over the maximum of %d", limit, PEOPLE_LIST_MAX);
        return TCPOPS__STATUS__INVALID_ARGUMENT;
    }
    return c->backend == SVC_POSTGRES
               ? people_pg_list(c->pg, limit, after, names, n, err, errlen)
               : people_sqlite_list(c->sqlite, limit, after, names, n, err, errlen);
}

int people_store_create(svc_conn *c, const char *name, char *err, size_t errlen)
{
    return c->backend == SVC_POSTGRES ? people_pg_create(c->pg, name, err, errlen)
                                      : people_sqlite_create(c->sqlite, name, err, errlen);
}

int people_store_pet_ids(svc_conn *c, const char *owner, uint64_t **ids, size_t *n, char *err,
                         size_t errlen)
{
    return c->backend == SVC_POSTGRES
               ? people_pg_pet_ids(c->pg, owner, ids, n, err, errlen)
               : people_sqlite_pet_ids(c->sqlite, owner, ids, n, err, errlen);
}

int people_store_add_pet(svc_conn *c, const char *owner, uint64_t pet_id, char *err,
                         size_t errlen)
{
    if (pet_id == 0 || pet_id > INT64_MAX) {
        snprintf(err, errlen, "pet id must be from 1 to %lld", (long long)INT64_MAX);
        return TCPOPS__STATUS__INVALID_ARGUMENT;
    }
    return c->backend == SVC_POSTGRES
               ? people_pg_add_pet(c->pg, owner, pet_id, err, errlen)
               : people_sqlite_add_pet(c->sqlite, owner, pet_id, err, errlen);
}
