/* The supervisor's master process (`tcpops up`): starts the gateway and N
 * workers of each service, restarts any that exits (with backoff, forever),
 * scales and rolls apps on request from the control socket, replaces a
 * worker over its memory limit, and stops everything gracefully. Single
 * threaded: one poll loop over the children's output, the control socket,
 * a signalfd and timers. */
#ifndef TCPOPS_SUP_MASTER_H
#define TCPOPS_SUP_MASTER_H

#include "supervisor/config.h"

/* Runs the master over a copy of cfg until SIGTERM/SIGINT/SIGQUIT or
 * `tcpops down`, in the calling (main) thread; blocks the signals it takes.
 * Returns the exit code: 0 after a clean stop, 1 when it could not start. */
int sup_master_run(const sup_config *cfg);

#endif
