/* The pets store (pets_store.h): checks what both backends share, then
 * hands the call to the connection's backend (pets_sqlite.c, pets_pg.c). */
#include "pets_svc/pets_backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpops.pb-c.h"

void pets_store_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

int pets_store_get_by_ids(svc_conn *c, const uint64_t *ids, size_t n, char **names, char *err,
                          size_t errlen)
{
    if (n > PETS_GET_MAX) {
        snprintf(err, errlen, "%zu ids asked; the maximum is %d", n, PETS_GET_MAX);
        return TCPOPS__STATUS__INVALID_ARGUMENT;
    }
    memset(names, 0, n * sizeof(*names));
    return c->backend == SVC_POSTGRES
               ? pets_pg_get_by_ids(c->pg, ids, n, names, err, errlen)
               : pets_sqlite_get_by_ids(c->sqlite, ids, n, names, err, errlen);
}

int pets_store_create(svc_conn *c, const char *name, uint64_t *id, char *err, size_t errlen)
{
    return c->backend == SVC_POSTGRES ? pets_pg_create(c->pg, name, id, err, errlen)
                                      : pets_sqlite_create(c->sqlite, name, id, err, errlen);
}
