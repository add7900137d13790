/* The supervisor's configuration: which apps it runs, on which addresses,
 * how many workers each, their memory limits and extra arguments. Read from
 * an INI file (inih) and then overridden by flags. */
#ifndef TCPOPS_SUP_CONFIG_H
#define TCPOPS_SUP_CONFIG_H

#include <limits.h>
#include <stddef.h>

enum { SUP_GATEWAY, SUP_PEOPLE, SUP_PETS, SUP_NAPPS };

#define SUP_MAX_WORKERS 64

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
} sup_config;

/* The defaults: ports 5001-5003, one worker each, data in ./var, programs
 * beside the running tcpops binary. */
void sup_config_default(sup_config *c);

/* Reads an INI file ([tcpops] data_dir, drain_ms; [gateway|people|pets]
 * listen, workers, max_memory, args). 0, or -1 with err filled. */
int sup_config_load(sup_config *c, const char *path, char *err, size_t errlen);

/* Applies "people=4,pets=2" (what: "workers") or "people=64M,gateway=1G"
 * (what: "max-memory"). 0, or -1 with err filled. */
int sup_config_pairs(sup_config *c, const char *spec, const char *what, char *err,
                     size_t errlen);

/* The app named name, or -1. */
int sup_app_index(const char *name);

#endif
