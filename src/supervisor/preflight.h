/* What `tcpops up` checks before it starts anything, so that a mistake is
 * one clear error and exit 2 instead of a crash-looping worker. */
#ifndef TCPOPS_SUP_PREFLIGHT_H
#define TCPOPS_SUP_PREFLIGHT_H

#include <stddef.h>

#include "supervisor/config.h"

/* Checks the apps that run here (--apps): each listen address parses as
 * HOST:PORT with a fixed port, no two share a port, each port that will be
 * listened on can be bound now (by a plain bind, which fails against any
 * listener there, SO_REUSEPORT or not), each service's --db is one the
 * services accept and its --advertise a HOST without a port, the TLS
 * files are all three or none and load, protected mode (util/protect.h)
 * lets each address be listened on, and each
 * app's command line parses: its program is
 * run with TCPOPS_CHECK_FLAGS=1, which parses its flags as a worker would
 * and exits without serving. Returns 0, or -1 with a sentence in err.
 * Call from the main thread before any other thread exists (it sets an
 * environment variable for the children it runs). */
int sup_preflight(const sup_config *c, char *err, size_t errlen);

/* Binds the gateway's listen address (non-blocking, close-on-exec, no
 * SO_REUSEPORT) into c->http_fd; nothing when the gateway does not run
 * here. 0, or -1 with err filled. */
int sup_http_listen(sup_config *c, char *err, size_t errlen);

#endif
