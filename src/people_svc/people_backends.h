/* The people store's two implementations (private to src/people_svc):
 * people_store.c picks one by the connection's backend. Each function is
 * the people_store_* of the same name (people_store.h). */
#ifndef TCPOPS_PEOPLE_BACKENDS_H
#define TCPOPS_PEOPLE_BACKENDS_H

#include "people_svc/people_store.h"

int people_sqlite_list(svc_db *db, uint32_t limit, const char *after, char ***names,
                       size_t *n, char *err, size_t errlen);
int people_sqlite_create(svc_db *db, const char *name, char *err, size_t errlen);
int people_sqlite_pet_ids(svc_db *db, const char *owner, uint64_t **ids, size_t *n,
                          char *err, size_t errlen);
int people_sqlite_add_pet(svc_db *db, const char *owner, uint64_t pet_id, char *err,
                          size_t errlen);

int people_pg_list(svc_pg *pg, uint32_t limit, const char *after, char ***names, size_t *n,
                   char *err, size_t errlen);
int people_pg_create(svc_pg *pg, const char *name, char *err, size_t errlen);
int people_pg_pet_ids(svc_pg *pg, const char *owner, uint64_t **ids, size_t *n, char *err,
                      size_t errlen);
int people_pg_add_pet(svc_pg *pg, const char *owner, uint64_t pet_id, char *err,
                      size_t errlen);

#endif
