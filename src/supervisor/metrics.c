/* The supervisor's counters as Prometheus text, from the JSON the master
 * answers `ps` with (procs.c, worker_json). The label values are the
 * master's own words (app names, states), never a peer's. */
#include "supervisor/metrics.h"

#include <string.h>

#include "util/flags.h"

/* What a family reads from one worker: 1 and *v set, or 0 to leave the
 * worker out of it. */
typedef int (*worker_value)(const json_t *w, double *v);

/* A process that serves: running, or replaced and still draining. */
static int value_up(const json_t *w, double *v)
{
    const char *st = json_string_value(json_object_get(w, "state"));
    *v = json_is_integer(json_object_get(w, "pid")) && st != NULL &&
         (strcmp(st, "running") == 0 || strcmp(st, "replaced") == 0);
    return 1;
}

static int value_state(const json_t *w, double *v)
{
    *v = 1;
    return json_string_value(json_object_get(w, "state")) != NULL;
}

/* A number of w's JSON by key (null: no value). */
static int number(const json_t *w, const char *key, double scale, double *v)
{
    const json_t *x = json_object_get(w, key);
    if (!json_is_number(x))
        return 0;
    *v = json_number_value(x) * scale;
    return 1;
}

static int value_restarts(const json_t *w, double *v)
{
    return number(w, "restarts", 1, v);
}

static int value_rss(const json_t *w, double *v)
{
    return number(w, "rss_bytes", 1, v);
}

static int value_uptime(const json_t *w, double *v)
{
    return number(w, "uptime_ms", 1e-3, v);
}

static const struct {
    const char *name, *type, *help;
    worker_value value;
    int with_state; /* the state is a label */
} families[] = {
    {"tcpops_worker_up", "gauge",
     "1 while the worker's process serves (running, or replaced and draining), else 0.",
     value_up, 0},
    {"tcpops_worker_state", "gauge", "The worker's state as `tcpops ps` shows it, always 1.",
     value_state, 1},
    {"tcpops_worker_restarts_total", "counter",
     "Times the worker's process was started again after it exited.", value_restarts, 0},
    {"tcpops_worker_resident_memory_bytes", "gauge", "Resident memory of the worker's process.",
     value_rss, 0},
    {"tcpops_worker_uptime_seconds", "gauge", "Seconds since the worker's process started.",
     value_uptime, 0},
};

int sup_metrics_write(FILE *out, const json_t *ps)
{
    fprintf(out,
            "# HELP tcpops_supervisor_up 1 when the tcpops master answered, else 0.\n"
            "# TYPE tcpops_supervisor_up gauge\n"
            "tcpops_supervisor_up %d\n"
            "# HELP tcpops_build_info The program and its version (--version), always 1.\n"
            "# TYPE tcpops_build_info gauge\n"
            "tcpops_build_info{version=\"%s\",program=\"tcpops\"} 1\n",
            ps != NULL, util_version());
    const json_t *workers = json_object_get(ps, "workers");
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        int header = 0;
        size_t i;
        const json_t *w;
        json_array_foreach(workers, i, w) {
            double v;
            const char *app = json_string_value(json_object_get(w, "app"));
            const json_t *index = json_object_get(w, "worker");
            if (app == NULL || !json_is_integer(index) || !families[f].value(w, &v))
                continue;
            if (!header++)
                fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                        families[f].name, families[f].type);
            fprintf(out, "%s{app=\"%s\",worker=\"%lld\"", families[f].name, app,
                    (long long)json_integer_value(index));
            if (families[f].with_state)
                fprintf(out, ",state=\"%s\"", json_string_value(json_object_get(w, "state")));
            fprintf(out, "} %.15g\n", v);
        }
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
