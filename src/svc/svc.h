/* The runtime every tcpops service shares: flags, logging, the database and
 * its migrations, the RPC server on the shared port plus the worker's own
 * port, cluster membership (each worker records itself and Status lists the
 * live ones), text mode (newline-delimited JSON) and graceful shutdown.
 * A service supplies its name, its migrations and its method table. */
#ifndef TCPOPS_SVC_SVC_H
#define TCPOPS_SVC_SVC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "svc/store.h"
#include "util/name.h"
#include "rpc/server.h"
#include "svc/writer.h"

typedef struct svc_method {
    const char *name;                          /* "people.List" */
    rpc_handler_fn fn;
    const ProtobufCMessageDescriptor *req;     /* its request message */
    const ProtobufCMessageDescriptor *resp;    /* its response message */
    int quick;                                 /* a bounded read: see rpc_method */
} svc_method;

typedef struct svc_desc {
    const char *name;                          /* "people": logs, people.db */
    const char *default_listen;                /* "127.0.0.1:5002" */
    const svc_migration *migrations;           /* SQLite's: db/NAME/sqlite */
    size_t nmigrations;
    const svc_migration *pg_migrations;        /* PostgreSQL's: db/NAME/postgresql */
    size_t pg_nmigrations;
    const svc_method *methods;
    size_t nmethods;
} svc_desc;

/* Runs the service until SIGTERM/SIGINT; returns the process exit code
 * (0 after a graceful stop, 1 when it cannot start, 2 on bad flags). */
int svc_main(const svc_desc *desc, int argc, char **argv);

/* For handlers: this worker thread's connection to the store, for reads. */
svc_conn *svc_ctx_conn(const rpc_call_ctx *ctx);

/* For handlers: runs fn(arg) in the process's group-commit writer and waits
 * until it is committed. Returns the status and, when not OK, fills out's
 * error (the caller still sets out's body on OK). */
int svc_ctx_write(const rpc_call_ctx *ctx, svc_write_fn fn, void *arg, rpc_reply *out);

/* For handlers: unpacks body as desc. Returns the message (free with
 * protobuf_c_message_free_unpacked(m, NULL)), or NULL with out set to
 * INVALID_ARGUMENT when it does not decode or a string field holds a NUL
 * byte (rpc_pb_check), so every string a handler sees is whole. */
ProtobufCMessage *svc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *body,
                             size_t len, rpc_reply *out);

/* For handlers: checks a name (name.h: UTF-8, 1-64 bytes, no control,
 * format or separator characters) and writes its NFC form, the name's
 * identity, to norm: what the service stores and compares. Sets out to
 * INVALID_ARGUMENT when it is not a name. Returns 0 or -EINVAL. */
int svc_check_name(const char *what, const char *name, char norm[UTIL_NAME_MAX + 1],
                   rpc_reply *out);

/* A service's handlers in this process, without a server: the database,
 * migrations and group-commit writer as svc_main has them, one "worker
 * thread" state. For fuzzing and tests. Not thread-safe. */
typedef struct svc_local svc_local;

/* db as --db (NULL: SQLite under data_dir). */
int svc_local_new(svc_local **out, const svc_desc *desc, const char *data_dir, const char *db,
                  char *err, size_t errlen);
void svc_local_free(svc_local *l);

/* Runs method on body as a worker would; out is what the handler answered
 * (free out->body). Returns 0, or -ENOENT for an unknown method. */
int svc_local_call(svc_local *l, const char *method, const uint8_t *body, size_t len,
                   rpc_reply *out);

/* One text-mode line in, one malloc'd reply line out (free it). */
char *svc_local_text(svc_local *l, const char *line, size_t len);

#endif
