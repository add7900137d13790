/* The people store: the same answers on SQLite and PostgreSQL, over one
 * thread's svc_conn (store.h), with bound parameters only. Every function
 * returns a Tcpops__Status (OK, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS;
 * the store's failures STORAGE_FULL, UNAVAILABLE, INTERNAL) and, when not
 * OK, a sentence in err. Names are validated by the caller. Writes expect to
 * run inside the caller's transaction (the group-commit writer provides
 * it) and change nothing when they answer anything but OK. */
#ifndef TCPOPS_PEOPLE_STORE_H
#define TCPOPS_PEOPLE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "svc/store.h"

#define PEOPLE_LIST_DEFAULT 100
#define PEOPLE_LIST_MAX 1000

extern const svc_migration people_sqlite_migrations[];
extern const size_t people_sqlite_nmigrations;
extern const svc_migration people_postgresql_migrations[];
extern const size_t people_postgresql_nmigrations;

/* Names oldest first: at most limit (0 = the default), after the person named
 * after (NULL or "" = from the start). *names is a malloc'd array of malloc'd
 * strings; free with people_store_free_names. */
int people_store_list(svc_conn *c, uint32_t limit, const char *after, char ***names,
                      size_t *n, char *err, size_t errlen);

void people_store_free_names(char **names, size_t n);

/* Adds a person; ALREADY_EXISTS when the name is taken. */
int people_store_create(svc_conn *c, const char *name, char *err, size_t errlen);

/* The ids of the pets owner owns, ascending; NOT_FOUND for an unknown owner.
 * *ids is malloc'd (free it). */
int people_store_pet_ids(svc_conn *c, const char *owner, uint64_t **ids, size_t *n, char *err,
                         size_t errlen);

/* Records that owner owns pet_id (already owning it is fine); NOT_FOUND for an
 * unknown owner, INVALID_ARGUMENT for pet id 0. */
int people_store_add_pet(svc_conn *c, const char *owner, uint64_t pet_id, char *err,
                         size_t errlen);

#endif
