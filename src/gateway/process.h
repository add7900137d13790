/* The standard process_* metrics of a Prometheus client library, read from
 * /proc for the gateway's /metrics: CPU time, resident and virtual memory,
 * open and maximum file descriptors, start time. */
#ifndef TCPOPS_GW_PROCESS_H
#define TCPOPS_GW_PROCESS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

typedef struct gw_process_stat {
    double cpu_seconds;      /* user + system */
    uint64_t vsize_bytes;
    uint64_t rss_pages;
    uint64_t start_ticks;    /* clock ticks after boot */
} gw_process_stat;

/* Parses the text of /proc/PID/stat (len bytes; the command name may hold
 * spaces and parentheses: the fields are counted from its last ')').
 * ticks_per_s converts the CPU times. 0, or -EINVAL when it is not that. */
int gw_process_parse_stat(const char *text, size_t len, long ticks_per_s, gw_process_stat *out);

/* The boot time in seconds since the epoch from the text of /proc/stat
 * (its btime line), or -1 when it has none. Read line by line to the end
 * if need be: btime comes after a line per CPU and the intr line, which
 * pass any fixed buffer on a host with many cores. */
long long gw_process_boot_time(FILE *stat);

/* Appends this process's process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds and process_start_time_seconds
 * (gw_buf_printf's buffer). A value /proc does not give is left out, with
 * its family. 0 or -ENOMEM. Any thread; a few small reads of /proc. */
int gw_process_render(char **buf, size_t *len, size_t *cap);

#endif
