/* The pets store's two implementations (private to src/pets_svc):
 * pets_store.c picks one by the connection's backend. Each function is the
 * pets_store_* of the same name (pets_store.h); get_by_ids receives names
 * zeroed and n already checked. */
#ifndef TCPOPS_PETS_BACKENDS_H
#define TCPOPS_PETS_BACKENDS_H

#include "pets_svc/pets_store.h"

int pets_sqlite_get_by_ids(svc_db *db, const uint64_t *ids, size_t n, char **names, char *err,
                           size_t errlen);
int pets_sqlite_create(svc_db *db, const char *name, uint64_t *id, char *err, size_t errlen);

int pets_pg_get_by_ids(svc_pg *pg, const uint64_t *ids, size_t n, char **names, char *err,
                       size_t errlen);
int pets_pg_create(svc_pg *pg, const char *name, uint64_t *id, char *err, size_t errlen);

#endif
