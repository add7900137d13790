/* Where a service keeps its data, chosen by --db: a SQLite file under
 * --data-dir (the default, "sqlite:" or "sqlite:PATH") or a PostgreSQL
 * database ("postgresql://..." or "postgres://...", libpq's URL, PG*
 * environment variables honoured as libpq does). A svc_conn is one thread's
 * connection to it, tagged with its backend: a service's store functions
 * (people_store, pets_store) take one and run the SQL of that backend, so
 * handlers never know which one they run on. */
#ifndef TCPOPS_SVC_STORE_H
#define TCPOPS_SVC_STORE_H

#include <stddef.h>

#include "svc/db.h"
#include "svc/pg.h"

typedef enum svc_backend { SVC_SQLITE, SVC_POSTGRES } svc_backend;

typedef struct svc_store {
    svc_backend backend;
    char service[64];         /* whose data: "people" */
    char path[4096];          /* SQLite: the database file */
    int in_data_dir;          /* SQLite: path is the default, DATA_DIR/NAME.db */
    char url[4096];           /* PostgreSQL: the URL as given */
    int sync_full;            /* SQLite: synchronous=FULL */
    svc_pg_schema *schema;    /* PostgreSQL: the migrations, applied once */
    int read_conns;           /* PostgreSQL: connections shared for reads */
    svc_pg *readers;          /* PostgreSQL: that pool (svc_store_prepare) */
} svc_store;

#define SVC_STORE_READ_CONNS 4

typedef struct svc_conn {
    svc_backend backend;
    svc_db *sqlite;
    svc_pg *pg;
    int shared;               /* pg is the store's pool, not this conn's */
} svc_conn;

/* Fills st from --db (NULL or "" is SQLite), data_dir and the service's
 * name (SQLite: DATA_DIR/NAME.db). A URL of neither kind, or one libpq
 * cannot parse, is -EINVAL with the reason in err: a usage error. */
int svc_store_parse(svc_store *st, const char *db, const char *data_dir, const char *service,
                    char *err, size_t errlen);

/* A description for logs and `tcpops ps`: "sqlite:PATH", or the URL with
 * its password (user:PASSWORD@ or ?password=) replaced by "***". */
void svc_store_describe(const svc_store *st, char *out, size_t len);

/* Brings the store's schema up to date with the service's migrations for its
 * backend. SQLite: applies them now (0, or -1 with err filled); the
 * file's directory must exist. PostgreSQL: prepares them for the first
 * connection (a server that is down is not an error). */
int svc_store_prepare(svc_store *st, const char *service, const svc_migration *sqlite_m,
                      size_t sqlite_n, const svc_migration *pg_m, size_t pg_n, char *err,
                      size_t errlen);

/* Frees what svc_store_prepare made. */
void svc_store_fini(svc_store *st);

/* A connection to st; app names it (PostgreSQL's application_name).
 * SQLite opens the file now. PostgreSQL: own, a connection of its own (the
 * writer's), made when first used; otherwise the store's shared pool of
 * read_conns connections (many threads, few database connections). 0, or a
 * negative errno with err filled. */
int svc_conn_open(svc_conn **out, const svc_store *st, int own, const char *app, char *err,
                  size_t errlen);

/* Closes (NULL does nothing). */
void svc_conn_close(svc_conn *c);

#endif
