/* A service for tests and benchmarks of src/rpc: test.Echo answers its body,
 * test.Sleep sleeps for the milliseconds its body names (as text) and then
 * answers it, test.Fail answers INVALID_ARGUMENT with the body as the error. */
#ifndef TCPOPS_TESTSVC_H
#define TCPOPS_TESTSVC_H

#include <stddef.h>

#include "rpc/server.h"

extern const rpc_method testsvc_methods[];
extern const size_t testsvc_nmethods;

/* Text mode for tests: answers "echo: LINE". */
char *testsvc_text(void *thread_state, void *user, const char *line, size_t len);

#endif
