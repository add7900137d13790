/* `tcpops metrics`: the master's `ps` answer as Prometheus text, for
 * node_exporter's textfile collector (README, "Metrics"). */
#ifndef TCPOPS_SUP_METRICS_H
#define TCPOPS_SUP_METRICS_H

#include <jansson.h>
#include <stdio.h>

/* Writes to out tcpops_supervisor_up (1 when ps is an answer, 0 when ps is
 * NULL: no master answered), tcpops_build_info{version,program="tcpops"}
 * and, from ps's "workers" (the JSON of `tcpops ps --json`), labelled app
 * and worker: tcpops_worker_up, tcpops_worker_state{state} and
 * tcpops_worker_restarts_total once per worker (a rolling restart's two
 * processes of one worker merged), tcpops_worker_resident_memory_bytes and
 * tcpops_worker_uptime_seconds per process (labelled pid too); a value that
 * is null (no process now) is left out. Returns 0, or -1 when out failed. */
int sup_metrics_write(FILE *out, const json_t *ps);

#endif
