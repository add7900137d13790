/* process_* metrics from /proc/self, with the names and meanings of the
 * Prometheus client libraries (the Go client's procfs collector), so the
 * usual dashboards and alerts work on the gateway unchanged. */
#include "gateway/process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gateway/metrics.h"

int gw_process_parse_stat(const char *text, size_t len, long ticks_per_s, gw_process_stat *out)
{
    /* After "pid (comm) ": state is field 3; utime 14, stime 15,
     * starttime 22, vsize 23, rss 24. */
    const char *close = NULL;
    for (size_t i = 0; i < len; i++)
        if (text[i] == ')')
            close = text + i;
    if (close == NULL || ticks_per_s <= 0)
        return -EINVAL;
    unsigned long long v[25] = {0};
    int field = 3;
    const char *p = close + 1, *end = text + len;
    while (field <= 24 && p < end) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        char *stop = NULL;
        if (field != 3) {
            char num[24];
            size_t n = 0;
            while (p + n < end && p[n] != ' ' && n < sizeof(num) - 1)
                n++;
            memcpy(num, p, n);
            num[n] = '\0';
            v[field] = strtoull(num, &stop, 10);
            if (stop == num)
                return -EINVAL;
        }
        while (p < end && *p != ' ')
            p++;
        field++;
    }
    if (field <= 24)
        return -EINVAL;
    out->cpu_seconds = (double)(v[14] + v[15]) / (double)ticks_per_s;
    out->start_ticks = v[22];
    out->vsize_bytes = v[23];
    out->rss_pages = v[24];
    return 0;
}

/* Reads a small file whole into buf (NUL-terminated). Its length, or -1. */
static long read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && ((r = read(fd, buf + n, cap - 1 - n)) > 0 || (r < 0 && errno == EINTR)))
        if (r > 0)
            n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    return (long)n;
}

long long gw_process_boot_time(FILE *stat)
{
    char *line = NULL;
    size_t cap = 0;
    long long btime = -1;
    while (btime < 0 && getline(&line, &cap, stat) > 0)
        if (strncmp(line, "btime ", 6) == 0)
            btime = atoll(line + 6);
    free(line);
    return btime;
}

/* The boot time of /proc/stat, or -1. */
static long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -1;
    long long btime = gw_process_boot_time(f);
    fclose(f);
    return btime;
}

/* Descriptors open now (the one reading /proc/self/fd not counted), or -1. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* One gauge or counter family of one sample. */
static int one(char **buf, size_t *len, size_t *cap, const char *name, const char *type,
               const char *help, const char *fmt, double v)
{
    int rc = gw_buf_printf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name,
                           type, name);
    if (rc == 0)
        rc = gw_buf_printf(buf, len, cap, fmt, v);
    return rc;
}

int gw_process_render(char **buf, size_t *len, size_t *cap)
{
    char text[1024];
    gw_process_stat st;
    int rc = 0;
    long ticks = sysconf(_SC_CLK_TCK);
    long n = read_small("/proc/self/stat", text, sizeof(text));
    if (n > 0 && gw_process_parse_stat(text, (size_t)n, ticks, &st) == 0) {
        long long btime = boot_time();
        rc = one(buf, len, cap, "process_cpu_seconds_total", "counter",
                 "Total user and system CPU time spent in seconds.", "%.2f\n", st.cpu_seconds);
        if (rc == 0)
            rc = one(buf, len, cap, "process_resident_memory_bytes", "gauge",
                     "Resident memory size in bytes.", "%.0f\n",
                     (double)st.rss_pages * (double)sysconf(_SC_PAGESIZE));
        if (rc == 0)
            rc = one(buf, len, cap, "process_virtual_memory_bytes", "gauge",
                     "Virtual memory size in bytes.", "%.0f\n", (double)st.vsize_bytes);
        if (rc == 0 && btime > 0)
            rc = one(buf, len, cap, "process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.", "%.2f\n",
                     (double)btime + (double)st.start_ticks / (double)ticks);
    }
    long fds = open_fds();
    if (rc == 0 && fds >= 0)
        rc = one(buf, len, cap, "process_open_fds", "gauge", "Number of open file descriptors.",
                 "%.0f\n", (double)fds);
    struct rlimit rl;
    if (rc == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        rc = one(buf, len, cap, "process_max_fds", "gauge",
                 "Maximum number of open file descriptors.", "%.0f\n", (double)rl.rlim_cur);
    return rc;
}
