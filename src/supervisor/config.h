/* The supervisor's configuration: which apps it runs, on which addresses,
 * how many workers each, their memory limits and extra arguments. Read from
 * an INI file (inih) and then overridden by flags. */
#ifndef TCPOPS_SUP_CONFIG_H
#define TCPOPS_SUP_CONFIG_H

#include <limits.h>
#include <stddef.h>

enum { SUP_GATEWAY, SUP_PEOPLE, SUP_PETS, SUP_NAPPS };

#define SUP_MAX_WORKERS 64
#define SUP_DRAIN_MS_MAX 600000L         /* drain_ms, --drain-ms: 0 to 10 minutes */
#define SUP_MAX_MEMORY (1L << 40)        /* max_memory: 0 (no limit) to 1 TiB */

typedef struct sup_app {
    const char *name;        /* "gateway", "people", "pets" */
    const char *binary;      /* "tcpops-gateway", ... */
    char listen[64];
    int workers;             /* the gateway always runs one */
    long max_memory;         /* bytes of resident memory; 0: no limit */
    char args[512];          /* extra arguments, separated by spaces */
} sup_app;

typedef struct sup_config {
    char data_dir[1024];
    char bin_dir[PATH_MAX];   /* where the tcpops-* programs are */
    sup_app apps[SUP_NAPPS];
    long drain_ms;           /* SIGTERM, then SIGKILL after drain_ms + 1 s */
    int detach;
    int http_fd;             /* the gateway's listening socket, bound once by
                              * tcpops up and passed to every gateway; -1 none */
} sup_config;

/* The defaults: ports 5001-5003, one worker each, data in ./var, programs
 * beside the running tcpops binary. */
void sup_config_default(sup_config *c);

/* Reads an INI file ([tcpops] data_dir, drain_ms; [gateway|people|pets]
 * listen, workers, max_memory, args). Numbers are parsed and ranged as the
 * flags of the same name are (util_parse_num). 0, or -1 with err filled. */
int sup_config_load(sup_config *c, const char *path, char *err, size_t errlen);

/* Applies "people=4,pets=2" (what: "workers") or "people=64M,gateway=1G"
 * (what: "max-memory"). 0, or -1 with err filled. */
int sup_config_pairs(sup_config *c, const char *spec, const char *what, char *err,
                     size_t errlen);

/* Sets a's "listen" or "args" to value. 0, or -1 with err filled when it
 * does not fit (never cut short). */
int sup_app_set(sup_app *a, const char *key, const char *value, char *err, size_t errlen);

/* The command line of a worker of app: the program, its --listen (and the
 * gateway's --people/--pets and, when c->http_fd is set, --listen-fd; or a
 * service's --data-dir), then the app's args split at spaces and tabs. */
#define SUP_MAX_ARGV 64
typedef struct sup_argv {
    char *argv[SUP_MAX_ARGV + 1]; /* NULL-terminated; points into buf and c */
    char buf[PATH_MAX + 1024];
    char fd[16];
} sup_argv;

/* Fills out for app. 0, or -1 with err filled when args has more words than
 * fit. out points into c: c must outlive out. */
int sup_app_argv(const sup_config *c, int app, sup_argv *out, char *err, size_t errlen);

/* The app named name, or -1. */
int sup_app_index(const char *name);

#endif
