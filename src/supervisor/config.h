/* The supervisor's configuration: which apps it runs on this host, on which
 * addresses, how many workers each, their store (--db) and advertised host,
 * memory limits and extra arguments. Read from an INI file (inih) and then
 * overridden by flags. */
#ifndef TCPOPS_SUP_CONFIG_H
#define TCPOPS_SUP_CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "rpc/backoff.h"
#include "util/flags.h"

enum { SUP_GATEWAY, SUP_PEOPLE, SUP_PETS, SUP_NAPPS };

#define SUP_MAX_WORKERS 64
#define SUP_LISTEN_MAX 512               /* listen: HOST:PORT, or a gateway's list */
#define SUP_DB_MAX 2048                  /* db: sqlite:PATH or a PostgreSQL URL */
#define SUP_PATH_MAX 1024                /* https_cert, https_key, tls_* */
/* advertise: a service keeps HOST:PORT in 63 bytes (svc runtime's self). */
#define SUP_ADVERTISE_MAX 56
#define SUP_DRAIN_MS_MAX 600000L         /* drain_ms, --drain-ms: 0 to 10 minutes */
#define SUP_MAX_MEMORY (1L << 40)        /* max_memory: 0 (no limit) to 1 TiB */

/* The supervisor's defaults, each written once; sup_config_default copies
 * them into a sup_config, and the help texts print them from here. */
#define SUP_DEFAULT_DATA_DIR "./var"
#define SUP_DEFAULT_HOST "127.0.0.1"
#define SUP_DEFAULT_PORT 5001            /* the gateway's; people +1, pets +2 */
#define SUP_DEFAULT_DRAIN_MS ((long)UTIL_DRAIN_MS_DEFAULT)
#define SUP_KILL_GRACE_MS 1000L          /* SIGKILL drain_ms + this after SIGTERM */
/* A worker that exited is restarted after FIRST x MULT^n, +- JITTER, at most
 * CAP; the curve starts over once it has been up SUP_HEALTHY_MS. */
#define SUP_RESTART_FIRST_MS 100
#define SUP_RESTART_MULT 1.5
#define SUP_RESTART_CAP_MS 15000
#define SUP_RESTART_JITTER 0.1
#define SUP_CRASHLOOP_AFTER 5            /* quick failures in a row: crash-looping */
#define SUP_HEALTHY_MS 30000L            /* up this long: an exit is not a quick failure */
#define SUP_READY_TIMEOUT_MS 20000L      /* a worker says "ready" within this */
#define SUP_READY_TIMEOUT_MS_MIN 100L    /* [tcpops] ready_timeout_ms: 100 ms to 10 minutes */
#define SUP_READY_TIMEOUT_MS_MAX 600000L
/* A worker whose ready pipe ended without the line is usually exiting; one
 * still there this long after is stopped. */
#define SUP_READY_EOF_GRACE_MS 1000L
/* Time for the gateway's membership refresh (every second) to see a new
 * worker before the one it replaces leaves. */
#define SUP_SETTLE_MS 1500L
#define SUP_RETRY_SPAWN_MS 1000L         /* a fork/exec that failed is retried after this */
#define SUP_MEMORY_CHECK_MS 1000L        /* how often resident sizes are read */
#define SUP_TICK_MS 100                  /* the master's poll timeout */
#define SUP_CHECK_TIMEOUT_MS 5000        /* preflight: a worker's flag check exits within */
/* How long `tcpops ps|scale|restart|down` wait for the master's answer. */
#define SUP_CTL_PS_TIMEOUT_MS 5000
#define SUP_CTL_SCALE_TIMEOUT_MS 120000
#define SUP_CTL_RESTART_TIMEOUT_MS 600000
#define SUP_CTL_DOWN_TIMEOUT_MS 120000

/* How the master treats its children: restart delays and the timers of a
 * rolling restart. */
typedef struct sup_policy {
    rpc_backoff_cfg restart;  /* delay before restarting a worker that exited */
    int crashloop_after;      /* SUP_CRASHLOOP_AFTER */
    long healthy_ms;          /* SUP_HEALTHY_MS */
    long ready_timeout_ms;    /* SUP_READY_TIMEOUT_MS, [tcpops] ready_timeout_ms */
    long settle_ms;           /* SUP_SETTLE_MS */
    long kill_grace_ms;       /* SUP_KILL_GRACE_MS */
    long retry_spawn_ms;      /* SUP_RETRY_SPAWN_MS */
    long memory_check_ms;     /* SUP_MEMORY_CHECK_MS */
} sup_policy;

typedef struct sup_app {
    const char *name;        /* "gateway", "people", "pets" */
    const char *binary;      /* "tcpops-gateway", ... */
    int run;                 /* runs on this host (--apps); default all */
    /* Where its workers here listen (HOST:PORT; a service's member port is
     * HOST:0) and what the gateway dials. For a service that does not run
     * here: the gateway's bootstrap list HOST:PORT[,HOST:PORT...], passed
     * to it unchanged. */
    char listen[SUP_LISTEN_MAX];
    int workers;             /* the gateway always runs one */
    long max_memory;         /* bytes of resident memory; 0: no limit */
    char args[512];          /* extra arguments, separated by spaces */
    char db[SUP_DB_MAX];     /* people, pets: [APP] db; "" = sup_config's */
    char advertise[SUP_ADVERTISE_MAX]; /* [APP] advertise; "" = sup_config's */
    /* The gateway's HTTPS files ([gateway] https_cert, https_key,
     * --https-cert, --https-key); "" = plain HTTP. */
    char https_cert[SUP_PATH_MAX];
    char https_key[SUP_PATH_MAX];
} sup_app;

typedef struct sup_config {
    char data_dir[1024];
    char bin_dir[PATH_MAX];   /* where the tcpops-* programs are looked for
                               * first (then $PATH: sup_app_path) */
    sup_app apps[SUP_NAPPS];
    char db[SUP_DB_MAX];     /* [tcpops] db, --db: every service's store; "" default */
    char advertise[SUP_ADVERTISE_MAX]; /* [tcpops] advertise, --advertise: HOST */
    /* [tcpops] tls_cert, tls_key, tls_ca (--tls-*): given to every program
     * here, "" = none. One certificate serves both ends where a host runs
     * the gateway beside services (scripts/dev-certs.sh's server.crt is
     * good for both). */
    char tls_cert[SUP_PATH_MAX], tls_key[SUP_PATH_MAX], tls_ca[SUP_PATH_MAX];
    int insecure;            /* [tcpops] insecure, --insecure: given to every program */
    /* --log-level, given to every program (their lines come to us as
     * logfmt, --log-format logfmt, and we write them in our own format). */
    char log_level[8];
    long drain_ms;           /* SIGTERM, then SIGKILL after drain_ms + 1 s */
    int detach;
    int http_fd;             /* the gateway's listening socket, bound once by
                              * tcpops up and passed to every gateway; -1 none */
    sup_policy policy;
} sup_config;

/* Fills c with the defaults above: ports SUP_DEFAULT_PORT and the two after
 * it, one worker each, data in SUP_DEFAULT_DATA_DIR, programs beside the
 * running tcpops binary (then on $PATH), and the restart policy. Both
 * `tcpops up` and the tests start from it. */
void sup_config_default(sup_config *c);

/* Reads an INI file ([tcpops] data_dir, drain_ms, ready_timeout_ms, apps,
 * db, advertise, tls_cert, tls_key, tls_ca, insecure;
 * [gateway|people|pets] listen, workers, max_memory, args; [people|pets]
 * db, advertise; [gateway] https_cert, https_key). Numbers are parsed and ranged as the flags of the same
 * name are (util_parse_num). 0, or -1 with err filled. */
int sup_config_load(sup_config *c, const char *path, char *err, size_t errlen);

/* Applies "people=4,pets=2" (what: "workers") or "people=64M,gateway=1G"
 * (what: "max-memory"). 0, or -1 with err filled. */
int sup_config_pairs(sup_config *c, const char *spec, const char *what, char *err,
                     size_t errlen);

/* Runs only the apps of list ("people,pets") on this host. what names the
 * setting in err ("--apps"). 0, or -1 with err filled for an unknown name
 * or an empty list (c unchanged then). */
int sup_config_apps(sup_config *c, const char *list, const char *what, char *err,
                    size_t errlen);

/* Sets a's "listen", "args", "db", "advertise", "https_cert" or
 * "https_key" to value. 0, or -1 with
 * err filled when it does not fit (never cut short). */
int sup_app_set(sup_app *a, const char *key, const char *value, char *err, size_t errlen);

/* Sets c's "db" or "advertise" for every service, overriding what an app's
 * own section said (a flag over the config file), or c's "tls_cert",
 * "tls_key" or "tls_ca". 0, or -1 with err filled
 * when it does not fit. */
int sup_config_set_all(sup_config *c, const char *key, const char *value, char *err,
                       size_t errlen);

/* What a service's workers get as --db and --advertise: the app's own
 * setting, else c's; "" when neither is set. Static storage of c. */
const char *sup_app_db(const sup_config *c, int app);
const char *sup_app_advertise(const sup_config *c, int app);

/* The store a service's workers use, as `tcpops ps` shows it: "sqlite:"
 * and the file's absolute path, or the PostgreSQL URL with its password
 * hidden (svc_store_describe). 0, or -1 with err filled when the services
 * would refuse the --db URL (the same parser, svc_store_parse). */
int sup_app_store(const sup_config *c, int app, char *out, size_t len, char *err,
                  size_t errlen);

/* The command line of a worker of app: the program, its --listen; the
 * gateway's --people/--pets (each service's listen, a wildcard host
 * 0.0.0.0 dialled as 127.0.0.1 when it runs here; else passed unchanged),
 * --https-cert and --https-key when set and, when c->http_fd is set,
 * --listen-fd; every app's --log-level (c's) and --log-format logfmt (what
 * the master reads); a service's --member-listen
 * (its listen host, port 0), --data-dir, and --db and --advertise when set;
 * every app's --tls-cert/--tls-key/--tls-ca and --insecure when set; then
 * the app's args split at spaces and tabs (which come last, so they
 * can override any of these). */
#define SUP_MAX_ARGV 64
#define SUP_READY_ARGV 2 /* the words sup_argv_ready adds: --ready-fd FD */
typedef struct sup_argv {
    char *argv[SUP_MAX_ARGV + 1]; /* NULL-terminated; points into buf, the
                                   * fields below and c */
    char buf[PATH_MAX + 1024];
    char fd[16];
    char dial[2][SUP_LISTEN_MAX]; /* the gateway's --people, --pets */
    char member[SUP_LISTEN_MAX];
    char ready[16];               /* sup_argv_ready's FD */
} sup_argv;

/* The program app runs: bin_dir/BINARY (beside the running tcpops) when it
 * is executable there, else the first executable BINARY in $PATH. path (len
 * bytes) gets it; 0 when found, -1 when neither has it (path then holds
 * bin_dir/BINARY, for the message). */
int sup_app_path(const sup_config *c, int app, char *path, size_t len);

/* Fills out for app, argv[0] from sup_app_path. 0, or -1 with err filled
 * when args has more words than fit with sup_argv_ready's after them (so
 * that `tcpops up` refuses them before it starts anything). out points
 * into c: c must outlive out. */
int sup_app_argv(const sup_config *c, int app, sup_argv *out, char *err, size_t errlen);

/* Puts --ready-fd FD right after the program in out (filled by
 * sup_app_argv), so that the app's args still come last. 0, or -1 with err
 * filled when the words do not fit. */
int sup_argv_ready(sup_argv *out, int fd, char *err, size_t errlen);

/* Opens DIR/tcpops.log (data_dir's) for appending, close-on-exec, creating
 * it; path (len bytes) gets its name. Returns the descriptor (caller closes
 * it), or -1 with errno set. */
int sup_log_open(const char *data_dir, char *path, size_t len);

/* The app named name, or -1. */
int sup_app_index(const char *name);

#endif
