/* The supervisor's counters as Prometheus text, from the JSON the master
 * answers `ps` with (procs.c, worker_json). The label values are the
 * master's own words (app names, states), never a peer's. */
#include "supervisor/metrics.h"

#include <string.h>

#include "util/flags.h"

/* What a family reads from one row of ps (a process, or a worker waiting
 * for one): 1 and *v set, or 0 to leave the row out of it. */
typedef int (*worker_value)(const json_t *w, double *v);

/* How a family's rows become samples. During a rolling restart the retiring
 * process ("replaced", draining) and its replacement are two rows with the
 * same {app,worker}; one sample per label set is what Prometheus (and
 * node_exporter's textfile collector, which rejects the file otherwise)
 * takes. */
typedef enum {
    PER_PROCESS, /* labelled pid as well: a process's own memory and uptime */
    SLOT_MAX,    /* one per {app,worker}, the largest of its rows */
    SLOT_COUNT,  /* one per {app,worker,state}: how many of its rows are in it */
} row_merge;

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

/* up, state and restarts are the worker's (its number's), so a series
 * lives on across restarts and rolls: restarts_total without a pid stays
 * one counter for rate(); the largest of the two rows keeps it from
 * dropping while a roll runs. Memory and uptime are a process's, so each
 * process of a roll is its own series, told apart by pid (sum by
 * (app,worker) for the worker's). */
static const struct {
    const char *name, *type, *help;
    worker_value value;
    row_merge merge;
} families[] = {
    {"tcpops_worker_up", "gauge",
     "1 while a process of the worker serves (running, or replaced and draining), else 0.",
     value_up, SLOT_MAX},
    {"tcpops_worker_state", "gauge",
     "The worker's processes by state as `tcpops ps` shows it (1; 2 only while a rolling "
     "restart has two in one state).",
     value_state, SLOT_COUNT},
    {"tcpops_worker_restarts_total", "counter",
     "Times the worker's process was started again after it exited.", value_restarts,
     SLOT_MAX},
    {"tcpops_worker_resident_memory_bytes", "gauge",
     "Resident memory of a process of the worker, by pid.", value_rss, PER_PROCESS},
    {"tcpops_worker_uptime_seconds", "gauge",
     "Seconds since a process of the worker started, by pid.", value_uptime, PER_PROCESS},
};

/* The row's labels of a family merged by how; 0 when the row has none. */
static int row_key(const json_t *w, row_merge how, const char **app, long long *index,
                   const char **state, long long *pid)
{
    const json_t *jx = json_object_get(w, "worker"), *jp = json_object_get(w, "pid");
    *app = json_string_value(json_object_get(w, "app"));
    *state = json_string_value(json_object_get(w, "state"));
    *index = json_integer_value(jx);
    *pid = json_integer_value(jp);
    return *app != NULL && json_is_integer(jx) && (how != SLOT_COUNT || *state != NULL) &&
           (how != PER_PROCESS || json_is_integer(jp));
}

/* Whether rows a and b fall in one sample of a family merged by how. */
static int same_sample(const json_t *a, const json_t *b, row_merge how)
{
    const char *app[2], *state[2];
    long long index[2], pid[2];
    if (!row_key(a, how, &app[0], &index[0], &state[0], &pid[0]) ||
        !row_key(b, how, &app[1], &index[1], &state[1], &pid[1]))
        return 0;
    return strcmp(app[0], app[1]) == 0 && index[0] == index[1] &&
           (how != SLOT_COUNT || strcmp(state[0], state[1]) == 0) &&
           (how != PER_PROCESS || pid[0] == pid[1]);
}

/* Family f's sample of row i of workers and the rows after it that share
 * its labels, into *v; 0 when row i has none to give or an earlier row
 * already gave the sample (the first row with a value gives it). */
static int merged_value(size_t f, const json_t *workers, size_t i, double *v)
{
    row_merge how = families[f].merge;
    const json_t *w = json_array_get(workers, i);
    double x;
    if (!families[f].value(w, v))
        return 0;
    for (size_t k = 0; k < i; k++)
        if (same_sample(json_array_get(workers, k), w, how) &&
            families[f].value(json_array_get(workers, k), &x))
            return 0;
    for (size_t k = i + 1; k < json_array_size(workers); k++) {
        const json_t *o = json_array_get(workers, k);
        if (!same_sample(o, w, how) || !families[f].value(o, &x))
            continue;
        if (how == SLOT_COUNT)
            *v += x;
        else if (x > *v)
            *v = x;
    }
    return 1;
}

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
            const char *app, *st;
            long long index, pid;
            if (!row_key(w, families[f].merge, &app, &index, &st, &pid) ||
                !merged_value(f, workers, i, &v))
                continue;
            if (!header++)
                fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
                        families[f].name, families[f].type);
            fprintf(out, "%s{app=\"%s\",worker=\"%lld\"", families[f].name, app, index);
            if (families[f].merge == SLOT_COUNT)
                fprintf(out, ",state=\"%s\"", st);
            if (families[f].merge == PER_PROCESS)
                fprintf(out, ",pid=\"%lld\"", pid);
            fprintf(out, "} %.15g\n", v);
        }
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
