/* The pets store: the same answers on SQLite and PostgreSQL, over one
 * thread's svc_conn (store.h), with bound parameters only. Returns a
 * Tcpops__Status and, when not OK, a sentence in err. Names are validated by
 * the caller; writes run inside the caller's transaction and change nothing
 * when they answer anything but OK. */
#ifndef TCPOPS_PETS_STORE_H
#define TCPOPS_PETS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "svc/store.h"

#define PETS_GET_MAX 1000

extern const svc_migration pets_sqlite_migrations[];
extern const size_t pets_sqlite_nmigrations;
extern const svc_migration pets_postgresql_migrations[];
extern const size_t pets_postgresql_nmigrations;

/* Looks up n ids (at most PETS_GET_MAX), all from one snapshot. names[i]
 * gets a malloc'd name for ids[i], or NULL when no pet has that id. Free
 * with pets_store_free_names. */
int pets_store_get_by_ids(svc_conn *c, const uint64_t *ids, size_t n, char **names, char *err,
                          size_t errlen);

void pets_store_free_names(char **names, size_t n);

/* Adds a pet; *id gets its new id. */
int pets_store_create(svc_conn *c, const char *name, uint64_t *id, char *err, size_t errlen);

#endif
