/* Group commit: one writer thread per process owns the write connection.
 * Handlers hand it a write and wait; it takes every write queued, runs them
 * in one transaction, commits, and only then answers each. Many concurrent
 * creates cost one commit, not one each, and threads of one process never
 * contend for the store's write lock.
 *
 * SQLite: BEGIN IMMEDIATE, each write in its own savepoint, so one that
 * fails does not undo the others. PostgreSQL: no savepoints (each would be
 * a round trip); a write that answers anything but OK must have changed
 * nothing (one statement, such as INSERT ... ON CONFLICT DO NOTHING), and
 * one that breaks the transaction is left out while the others run again.
 * When the connection is lost during COMMIT, every write of the group
 * answers UNAVAILABLE saying the outcome is unknown. */
#ifndef TCPOPS_SVC_WRITER_H
#define TCPOPS_SVC_WRITER_H

#include <stddef.h>

#include "svc/store.h"

typedef struct svc_writer svc_writer;

/* One write, run inside the group's transaction on the writer's thread.
 * Returns a Tcpops__Status; anything but OK rolls back this write alone and
 * err (errlen bytes) says why. */
typedef int (*svc_write_fn)(svc_conn *c, void *arg, char *err, size_t errlen);

/* Opens the write connection to st (PostgreSQL: connected when first used)
 * and starts the thread. 0, or a negative errno with err filled. */
int svc_writer_new(svc_writer **out, const svc_store *st, char *err, size_t errlen);

/* Runs the writes still queued, stops the thread, closes. NULL does nothing. */
void svc_writer_free(svc_writer *w);

/* Queues fn(arg) and waits until its transaction has committed (or failed).
 * Returns fn's status when the commit succeeded; STORAGE_FULL when the disk
 * (quota, file size limit) is full; UNAVAILABLE when the database stayed
 * locked past the busy timeout; INTERNAL on other failures. err is filled
 * for anything but OK. Any thread except the writer's. */
int svc_writer_run(svc_writer *w, svc_write_fn fn, void *arg, char *err, size_t errlen);

/* How the last transaction ended: OK, or the store's failure (STORAGE_FULL,
 * UNAVAILABLE, INTERNAL) with err (errlen bytes) saying why. A write's own
 * outcome (ALREADY_EXISTS, ...) is not a failure. Any thread. */
int svc_writer_health(svc_writer *w, char *err, size_t errlen);

/* Transactions committed so far (each may carry many writes). */
unsigned long svc_writer_commits(svc_writer *w);

#endif
