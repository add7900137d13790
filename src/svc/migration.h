/* A numbered schema change, compiled in from db/NAME/BACKEND/NNN_name.sql by
 * cmake/embed_sql.cmake: each store applies them in order, each once. */
#ifndef TCPOPS_SVC_MIGRATION_H
#define TCPOPS_SVC_MIGRATION_H

#include <stddef.h>

typedef struct svc_migration {
    int version;        /* 1, 2, ...: applied in order, each once */
    const char *name;   /* "001_schema.sql" */
    const char *sql;
} svc_migration;

#endif
