/* A service for tests and benchmarks of src/rpc: test.Echo answers its body,
 * test.Sleep sleeps for the milliseconds its body names (as text) and then
 * answers it, test.Fail answers INVALID_ARGUMENT with the body as the error. */
#ifndef TCPOPS_TESTSVC_H
#define TCPOPS_TESTSVC_H

#include <stddef.h>

#include "rpc/channel.h"
#include "rpc/server.h"

extern const rpc_method testsvc_methods[];
extern const size_t testsvc_nmethods;

/* Text mode for tests: answers "echo: LINE". */
char *testsvc_text(void *thread_state, void *user, const char *line, size_t len);

/* Starts a server on a free 127.0.0.1 port serving methods m[0..n)
 * (testsvc_methods when m is NULL) with threads workers, user as its
 * cfg.user and stats (may be NULL), and writes "127.0.0.1:PORT" into addr
 * (len bytes). Returns it (rpc_server_free it), or NULL with err filled
 * (RPC_ERRLEN). */
rpc_server *testsvc_start(const rpc_method *m, size_t n, int threads, void *user,
                          rpc_stats *stats, char *addr, size_t len, char *err);

/* A channel named name to addr alone: cfg's other fields from *base (NULL:
 * rpc_channel_cfg_default). Returns it (rpc_channel_free it), or NULL with
 * err filled (RPC_ERRLEN). */
rpc_channel *testsvc_channel(const char *name, const char *addr, const rpc_channel_cfg *base,
                             char *err);

/* Line mode's farewell for tests: "error: WHY" (malloc'd). */
char *testsvc_text_error(void *user, const char *why);

#endif
