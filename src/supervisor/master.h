/* The supervisor's master process (`tcpops up`): starts the gateway and N
 * workers of each service, restarts any that exits (with backoff, forever),
 * scales and rolls apps on request from the control socket, replaces a
 * worker over its memory limit, and stops everything gracefully. Single
 * threaded: one poll loop over the children's output, the control socket,
 * a signalfd and timers. */
#ifndef TCPOPS_SUP_MASTER_H
#define TCPOPS_SUP_MASTER_H

#include "supervisor/config.h"

/* Path of the control socket for a data dir into buf. */
void sup_socket_path(const char *data_dir, char *buf, size_t len);

/* 1 when a master answers on data_dir's control socket, else 0 (none, or a
 * socket file left by one that died). */
int sup_master_alive(const char *data_dir);

/* Runs until SIGTERM/SIGINT or `tcpops down`. Returns the exit code. */
int sup_master_run(const sup_config *cfg);

#endif
