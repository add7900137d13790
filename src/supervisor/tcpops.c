/* tcpops: the supervisor. `tcpops up` runs the whole system and keeps it
 * running; the other commands talk to that master. */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervisor/config.h"
#include "supervisor/ctl.h"
#include "supervisor/logs.h"
#include "util/flags.h"
#include "util/log.h"
#include "supervisor/master.h"
#include "supervisor/metrics.h"
#include "supervisor/preflight.h"

static const char usage[] =
    "usage: tcpops [--data-dir DIR] COMMAND\n"
    "\n"
    "  up [FLAGS]          start the gateway and every service's workers (or only the\n"
    "                      --apps of this host), keep them running (restart with\n"
    "                      backoff), serve the commands below\n"
    "  ps [--json]         every worker: app, number, pid, state, uptime, restarts,\n"
    "                      memory, advertised address; each service's database; why\n"
    "                      a worker failed\n"
    "  scale APP N         run N workers of people or pets (waits until they serve);\n"
    "                      a failed worker among them is started again\n"
    "  restart APP         rolling restart: a new worker serves before an old one leaves;\n"
    "                      a failed worker is started again\n"
    "  down                stop everything gracefully\n"
    "  metrics             ps as Prometheus text (node_exporter's textfile collector)\n"
    "  logs [APP] [-f] [-n N]  the last N (20) lines of DIR/tcpops.log (written by\n"
    "                      up --detach), only APP's workers' when named; -f follows\n"
    "\n"
    "scale, restart and down print a line per worker as it is done, then what was done;\n"
    "with --json, only the master's JSON answer. A worker that exits 2 (bad flags or\n"
    "settings) before it serves is not restarted: ps shows it failed, with its last line.\n"
    "\n"
    "--data-dir (env TCPOPS_DATA_DIR, default " SUP_DEFAULT_DATA_DIR
    ") holds the databases and the\n"
    "control socket. `tcpops up --help` lists the flags of up.\n";

/* One progress line from the master ("people.1: replaced by pid 1234
 * (ready in 180 ms)"), printed as it comes. */
static void print_progress(void *arg, const char *text)
{
    (void)arg;
    printf("%s\n", text);
    fflush(stdout);
}

/* Sends req (consumed) for cmd to the master and prints its answer: with
 * json, the answer alone, as it came (no progress lines: one JSON document
 * for a script); else ps's table, or the progress lines as they come and
 * then one line saying what was done. An error goes to stderr. Returns the
 * exit code: 0, 1 (the master refused or failed) or 3 (no master). */
static int ctl(const char *data_dir, const char *cmd, json_t *req, int timeout_ms, int json)
{
    char err[512];
    int progress = !json && strcmp(cmd, "ps") != 0;
    json_t *ans = sup_ctl_request_progress(data_dir, req, timeout_ms,
                                           progress ? print_progress : NULL, NULL, err,
                                           sizeof(err));
    if (ans == NULL) {
        fprintf(stderr, "tcpops: %s\n", err);
        return 3;
    }
    int ok = json_is_true(json_object_get(ans, "ok"));
    if (!ok) {
        fprintf(stderr, "tcpops: %s\n", json_string_value(json_object_get(ans, "error")));
    } else if (json) {
        char *s = json_dumps(ans, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else if (strcmp(cmd, "ps") == 0) {
        sup_ctl_print_ps(ans);
    } else {
        sup_ctl_print_done(cmd, ans);
    }
    json_decref(ans);
    return ok ? 0 : 1;
}

/* What `tcpops up` was told on its command line; NULL or -1: not given. */
typedef struct up_args {
    const char *config, *data_dir, *workers, *memory, *apps, *db, *advertise;
    const char *tls[3];           /* --tls-cert, --tls-key, --tls-ca */
    int insecure;
    const char *addrs[SUP_NAPPS]; /* --gateway, --people, --pets */
    const char *args[SUP_NAPPS];  /* --gateway-args, ... */
    const char *https_cert, *https_key;
    long drain_ms;
    util_log_opts log;            /* --log-level, --log-format */
} up_args;

/* Parses up's flags into u (and --detach into cfg). Returns -1 to go on, or
 * the exit code (0 after --help, 2 after a bad flag). */
static int parse_up(sup_config *cfg, up_args *u, int argc, char **argv, int first)
{
    char help[SUP_NAPPS][200], drain_help[160], err[1024];
    static const char *const what[SUP_NAPPS] = {"gateway HTTP", "people", "pets"};
    for (int a = 0; a < SUP_NAPPS; a++)
        snprintf(help[a], sizeof(help[a]), "%s address (%s:%d)%s", what[a], SUP_DEFAULT_HOST,
                 SUP_DEFAULT_PORT + a,
                 a == SUP_GATEWAY ? ""
                                  : ": where its workers listen (0.0.0.0: every interface); "
                                    "on a host without it (--apps), the gateway's list");
    snprintf(drain_help, sizeof(drain_help),
             "stop: SIGKILL after this plus %ld s (default: the config file's drain_ms, "
             "else %ld)",
             SUP_KILL_GRACE_MS / 1000, (long)SUP_DEFAULT_DRAIN_MS);
    *u = (up_args){.drain_ms = -1, .log = UTIL_LOG_OPTS_DEFAULT};
    const util_flag flags[] = {
        {"config", UTIL_FLAG_STR, &u->config, "FILE", "INI file (see README); flags override it",
         0, 0},
        {"apps", UTIL_FLAG_STR, &u->apps, "APP,...",
         "the apps to run on this host (default gateway,people,pets)", 0, 0},
        {"db", UTIL_FLAG_STR, &u->db, "URL",
         "people's and pets' store: sqlite: (DIR/NAME.db, the default), sqlite:PATH or "
         "postgresql://...",
         0, 0},
        {"advertise", UTIL_FLAG_STR, &u->advertise, "HOST",
         "how other hosts reach the services here (each worker adds its member port); "
         "needed with 0.0.0.0",
         0, 0},
        {"tls-cert", UTIL_FLAG_STR, &u->tls[0], "FILE",
         "TLS: the certificate every program here serves and dials with (PEM); with "
         "--tls-key and --tls-ca every RPC connection is mutual TLS 1.3",
         0, 0},
        {"tls-key", UTIL_FLAG_STR, &u->tls[1], "FILE", "TLS: the private key of --tls-cert", 0,
         0},
        {"tls-ca", UTIL_FLAG_STR, &u->tls[2], "FILE", "TLS: the CA that signs every peer", 0,
         0},
        {"insecure", UTIL_FLAG_BOOL, &u->insecure, NULL,
         "let the programs serve plaintext on non-loopback addresses (protected mode off)", 0,
         0},
        {"data-dir", UTIL_FLAG_STR, &u->data_dir, "DIR", "databases and control socket", 0, 0},
        {"workers", UTIL_FLAG_STR, &u->workers, "APP=N,...",
         "workers per service (people=4,pets=2)", 0, 0},
        {"max-memory", UTIL_FLAG_STR, &u->memory, "APP=SIZE,...",
         "replace a worker above this resident size (people=256M)", 0, 0},
        {"gateway", UTIL_FLAG_STR, &u->addrs[SUP_GATEWAY], "HOST:PORT", help[SUP_GATEWAY], 0, 0},
        {"people", UTIL_FLAG_STR, &u->addrs[SUP_PEOPLE], "HOST:PORT[,..]", help[SUP_PEOPLE], 0,
         0},
        {"pets", UTIL_FLAG_STR, &u->addrs[SUP_PETS], "HOST:PORT[,..]", help[SUP_PETS], 0, 0},
        {"gateway-args", UTIL_FLAG_STR, &u->args[SUP_GATEWAY], "ARGS",
         "extra flags for the gateway", 0, 0},
        {"https-cert", UTIL_FLAG_STR, &u->https_cert, "FILE",
         "the gateway serves HTTPS only, with this PEM certificate and --https-key ([gateway] "
         "https_cert, https_key)",
         0, 0},
        {"https-key", UTIL_FLAG_STR, &u->https_key, "FILE",
         "the PEM private key of --https-cert", 0, 0},
        {"people-args", UTIL_FLAG_STR, &u->args[SUP_PEOPLE], "ARGS",
         "extra flags for people workers", 0, 0},
        {"pets-args", UTIL_FLAG_STR, &u->args[SUP_PETS], "ARGS", "extra flags for pets workers",
         0, 0},
        {"drain-ms", UTIL_FLAG_INT, &u->drain_ms, "MS", drain_help, 0, SUP_DRAIN_MS_MAX},
        {"detach", UTIL_FLAG_BOOL, &cfg->detach, NULL,
         "run in the background, logging to DIR/tcpops.log (`tcpops logs` reads it)", 0, 0},
        UTIL_LOG_FLAGS(&u->log),
    };
    const size_t nflags = sizeof(flags) / sizeof(flags[0]);
    int pos = util_flags_parse(flags, nflags, argc, argv, first, err, sizeof(err));
    if (pos == 0) {
        printf("usage: tcpops up [FLAGS]\n\n");
        util_flags_usage(stdout, flags, nflags);
        return 0;
    }
    if (pos < 0 || pos < argc) {
        fprintf(stderr, "tcpops up: %s\n", pos < 0 ? err : "unexpected argument");
        return 2;
    }
    /* Ours, and the workers' level: their lines come through us. */
    util_log_configure(&u->log);
    snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", util_log_level_name());
    return -1;
}

/* The config file, then the flags, over cfg's defaults. 0, or -1 with err. */
static int apply_up(sup_config *cfg, const up_args *u, char *err, size_t errlen)
{
    if (u->config != NULL && sup_config_load(cfg, u->config, err, errlen) < 0)
        return -1;
    if (u->data_dir != NULL)
        snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", u->data_dir);
    if (u->drain_ms >= 0)
        cfg->drain_ms = u->drain_ms;
    if ((u->apps != NULL && sup_config_apps(cfg, u->apps, "--apps", err, errlen) < 0) ||
        (u->db != NULL && sup_config_set_all(cfg, "db", u->db, err, errlen) < 0) ||
        (u->advertise != NULL &&
         sup_config_set_all(cfg, "advertise", u->advertise, err, errlen) < 0))
        return -1;
    static const char *const tls_keys[3] = {"tls_cert", "tls_key", "tls_ca"};
    for (int i = 0; i < 3; i++)
        if (u->tls[i] != NULL && sup_config_set_all(cfg, tls_keys[i], u->tls[i], err, errlen) < 0)
            return -1;
    if (u->insecure)
        cfg->insecure = 1;
    if ((u->workers != NULL && sup_config_pairs(cfg, u->workers, "workers", err, errlen) < 0) ||
        (u->memory != NULL && sup_config_pairs(cfg, u->memory, "max-memory", err, errlen) < 0))
        return -1;
    for (int a = 0; a < SUP_NAPPS; a++) {
        if ((u->addrs[a] != NULL &&
             sup_app_set(&cfg->apps[a], "listen", u->addrs[a], err, errlen) < 0) ||
            (u->args[a] != NULL && sup_app_set(&cfg->apps[a], "args", u->args[a], err, errlen) < 0))
            return -1;
    }
    sup_app *gw = &cfg->apps[SUP_GATEWAY];
    if ((u->https_cert != NULL && sup_app_set(gw, "https_cert", u->https_cert, err, errlen) < 0) ||
        (u->https_key != NULL && sup_app_set(gw, "https_key", u->https_key, err, errlen) < 0))
        return -1;
    if ((gw->https_cert[0] == '\0') != (gw->https_key[0] == '\0')) {
        snprintf(err, errlen, "HTTPS needs both --https-cert and --https-key ([gateway] "
                 "https_cert and https_key)");
        return -1;
    }
    return 0;
}

/* Everything that can be checked before starting is; then the gateway's
 * port is bound here, once, and each gateway serves on it: a new one
 * accepts while the old one drains (rolling restart). 0, or -1 with err. */
static int check_up(sup_config *cfg, char *err, size_t errlen)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        char bin[PATH_MAX];
        if (!cfg->apps[a].run)
            continue;
        if (sup_app_path(cfg, a, bin, sizeof(bin)) < 0) {
            snprintf(err, errlen, "%s is missing: not beside tcpops (%s) nor on PATH; "
                     "build it with `make`", cfg->apps[a].binary, cfg->bin_dir);
            return -1;
        }
    }
    if (sup_master_alive(cfg->data_dir)) {
        snprintf(err, errlen, "a tcpops master already runs on %s", cfg->data_dir);
        return -1;
    }
    if (sup_preflight(cfg, err, errlen) < 0 || sup_http_listen(cfg, err, errlen) < 0)
        return -1;
    return 0;
}

/* Forks into the background with stdout and stderr on DIR/tcpops.log.
 * Returns -1 in the child (which goes on), else the parent's exit code. */
static int detach(const sup_config *cfg)
{
    mkdir(cfg->data_dir, 0755);
    char logpath[1100];
    int logfd = sup_log_open(cfg->data_dir, logpath, sizeof(logpath));
    if (logfd < 0) {
        fprintf(stderr, "tcpops up: cannot open %s\n", logpath);
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid > 0) {
        printf("tcpops: running in the background (pid %d); logs in %s; stop with "
               "`tcpops down`\n",
               (int)pid, logpath);
        return 0;
    }
    setsid();
    util_log_init("tcpops"); /* log lines carry the master's pid, not the parent's */
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    return -1;
}

static int up(sup_config *cfg, int argc, char **argv, int first)
{
    up_args u;
    char err[PATH_MAX + 256]; /* room for a program's path and a sentence */
    int rc = parse_up(cfg, &u, argc, argv, first);
    if (rc >= 0)
        return rc;
    if (apply_up(cfg, &u, err, sizeof(err)) < 0 || check_up(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "tcpops up: %s\n", err);
        return 2;
    }
    if (cfg->detach && (rc = detach(cfg)) >= 0)
        return rc;
    return sup_master_run(cfg);
}

/* What follows a command other than up: its words, and the flags every
 * such command takes wherever they come (--data-dir DIR, --json, -h). */
typedef struct cmd_args {
    const char *data_dir;
    int json, help;
    int follow;              /* logs -f, --follow */
    const char *lines;       /* logs -n N, --lines N */
    const char *pos[2];
    int npos;
} cmd_args;

/* When argv[*k] is --data-dir DIR or --data-dir=DIR: sets *dir, moves *k
 * past it and returns 1; else 0. Before the command and after it alike. */
static int data_dir_arg(int argc, char **argv, int *k, const char **dir)
{
    if (strcmp(argv[*k], "--data-dir") == 0 && *k + 1 < argc) {
        *dir = argv[*k + 1];
        *k += 2;
        return 1;
    }
    if (strncmp(argv[*k], "--data-dir=", 11) == 0) {
        *dir = argv[*k] + 11;
        *k += 1;
        return 1;
    }
    return 0;
}

/* Fills ca from argv[from..]; after "--" every word is positional. 0, or
 * -1 after saying what is wrong. */
static int command_args(int argc, char **argv, int from, cmd_args *ca)
{
    int flags = 1;
    for (int k = from; k < argc;) {
        if (flags && data_dir_arg(argc, argv, &k, &ca->data_dir))
            continue;
        const char *a = argv[k++];
        if (flags && strcmp(a, "--") == 0) {
            flags = 0;
        } else if (flags && (strcmp(a, "-n") == 0 || strcmp(a, "--lines") == 0) && k < argc) {
            ca->lines = argv[k++];
        } else if (flags && strncmp(a, "--lines=", 8) == 0) {
            ca->lines = a + 8;
        } else if (flags && (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0)) {
            ca->follow = 1;
        } else if (flags && strcmp(a, "--json") == 0) {
            ca->json = 1;
        } else if (flags && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            ca->help = 1;
        } else if (flags && a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1])) {
            /* (-1 is a number: scale says what is wrong with it) */
            fprintf(stderr, "tcpops: unknown flag %s (see tcpops --help)\n", a);
            return -1;
        } else if (ca->npos < 2) {
            ca->pos[ca->npos++] = a;
        } else {
            fprintf(stderr, "tcpops: unexpected argument \"%s\" (see tcpops --help)\n", a);
            return -1;
        }
    }
    return 0;
}

/* tcpops logs [APP] [-f] [-n N]. The exit code. */
static int logs(const char *data_dir, const cmd_args *ca)
{
    long n = SUP_LOGS_DEFAULT_LINES;
    char err[256], path[1100];
    const char *app = ca->npos > 0 ? ca->pos[0] : NULL;
    if (ca->npos > 1 || ca->json) {
        fprintf(stderr, "usage: tcpops logs [APP] [-f] [-n N]\n");
        return 2;
    }
    if (app != NULL && sup_app_index(app) < 0) {
        fprintf(stderr, "tcpops logs: unknown app \"%s\" (gateway, people, pets)\n", app);
        return 2;
    }
    if (ca->lines != NULL && util_parse_num(ca->lines, UTIL_NUM_PLAIN, 0, SUP_LOGS_MAX_LINES,
                                            &n, "tcpops logs: -n", err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    snprintf(path, sizeof(path), "%s/tcpops.log", data_dir);
    return sup_logs_run(path, app, n, ca->follow, stdout);
}

/* COMMAND --help: its usage on stdout, and 0; -1 for a command not known. */
static int command_help(const char *cmd)
{
    static const char *const help[][2] = {
        {"ps", "usage: tcpops ps [--json] [--data-dir DIR]"},
        {"scale", "usage: tcpops scale APP N [--json] [--data-dir DIR]   (APP is people or "
                  "pets)"},
        {"restart", "usage: tcpops restart APP [--json] [--data-dir DIR]   (gateway, people "
                    "or pets)"},
        {"down", "usage: tcpops down [--json] [--data-dir DIR]"},
        {"metrics", "usage: tcpops metrics [--data-dir DIR]   (ps as Prometheus text; "
                    "exit 3 with tcpops_supervisor_up 0 when no master answers)"},
        {"logs", "usage: tcpops logs [APP] [-f|--follow] [-n|--lines N] [--data-dir DIR]\n"
                 "  the last N (default 20) lines of DIR/tcpops.log, which `tcpops up --detach`\n"
                 "  writes; APP (gateway, people, pets): only the lines with worker=APP.*;\n"
                 "  -f: then every new line, across logrotate's rename or copytruncate"},
    };
    for (size_t k = 0; k < sizeof(help) / sizeof(help[0]); k++) {
        if (strcmp(cmd, help[k][0]) == 0) {
            puts(help[k][1]);
            return 0;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    sup_config cfg;
    sup_config_default(&cfg);
    util_log_init("tcpops");
    const char *data_dir = getenv("TCPOPS_DATA_DIR");
    int i = 1;
    /* The global --data-dir may come before the command. */
    while (i < argc && (strncmp(argv[i], "--", 2) == 0 || strcmp(argv[i], "-h") == 0)) {
        if (data_dir_arg(argc, argv, &i, &data_dir)) {
            continue;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("tcpops %s\n", util_version());
            return 0;
        } else {
            fprintf(stderr, "tcpops: unknown flag %s\n%s", argv[i], usage);
            return 2;
        }
    }
    if (data_dir != NULL)
        snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", data_dir);
    /* up's flags read TCPOPS_DATA_DIR again: a --data-dir before the
     * command must win over it there too. */
    if (data_dir != NULL && data_dir != getenv("TCPOPS_DATA_DIR"))
        setenv("TCPOPS_DATA_DIR", data_dir, 1);
    if (i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "up") == 0)
        return up(&cfg, argc, argv, i + 1);
    /* The other commands take their flags anywhere after their name. */
    cmd_args ca = {.data_dir = NULL};
    if (command_args(argc, argv, i + 1, &ca) < 0)
        return 2;
    if (ca.data_dir != NULL)
        snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", ca.data_dir);
    const char *a1 = ca.npos > 0 ? ca.pos[0] : NULL;
    const char *a2 = ca.npos > 1 ? ca.pos[1] : NULL;
    int nargs = ca.npos;
    if (ca.help && command_help(cmd) == 0)
        return 0;
    if (strcmp(cmd, "ps") == 0) {
        int as_json = ca.json;
        if (nargs > 0) {
            fprintf(stderr, "usage: tcpops ps [--json]\n");
            return 2;
        }
        return ctl(cfg.data_dir, cmd, json_pack("{s:s}", "cmd", "ps"), SUP_CTL_PS_TIMEOUT_MS,
                   as_json);
    }
    if (strcmp(cmd, "scale") == 0) {
        long n = 0;
        char err[256];
        if (nargs != 2) {
            fprintf(stderr, "usage: tcpops scale APP N   (APP is people or pets)\n");
            return 2;
        }
        if (util_parse_num(a2, UTIL_NUM_PLAIN, 0, SUP_MAX_WORKERS, &n, "tcpops scale: N", err,
                           sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        return ctl(cfg.data_dir, cmd,
                   json_pack("{s:s,s:s,s:i}", "cmd", "scale", "app", a1, "workers", (int)n),
                   SUP_CTL_SCALE_TIMEOUT_MS, ca.json);
    }
    if (strcmp(cmd, "restart") == 0) {
        if (nargs != 1) {
            fprintf(stderr, "usage: tcpops restart APP   (gateway, people or pets)\n");
            return 2;
        }
        return ctl(cfg.data_dir, cmd, json_pack("{s:s,s:s}", "cmd", "restart", "app", a1),
                   SUP_CTL_RESTART_TIMEOUT_MS, ca.json);
    }
    if (strcmp(cmd, "logs") == 0)
        return logs(cfg.data_dir, &ca);
    if (strcmp(cmd, "down") == 0) {
        if (nargs != 0) {
            fprintf(stderr, "usage: tcpops down\n");
            return 2;
        }
        return ctl(cfg.data_dir, cmd, json_pack("{s:s}", "cmd", "down"), SUP_CTL_DOWN_TIMEOUT_MS,
                   ca.json);
    }
    if (strcmp(cmd, "metrics") == 0) {
        if (nargs != 0 || ca.json) {
            fprintf(stderr, "usage: tcpops metrics [--data-dir DIR]\n");
            return 2;
        }
        /* With no master it still prints (tcpops_supervisor_up 0), so a
         * textfile collector's file says so instead of going stale. */
        char err[512];
        json_t *ans = sup_ctl_request(cfg.data_dir, json_pack("{s:s}", "cmd", "ps"),
                                      SUP_CTL_PS_TIMEOUT_MS, err, sizeof(err));
        int ok = json_is_true(json_object_get(ans, "ok"));
        if (ans == NULL || !ok)
            fprintf(stderr, "tcpops: %s\n",
                    ans == NULL ? err : json_string_value(json_object_get(ans, "error")));
        int rc = sup_metrics_write(stdout, ans) < 0 ? 1 : ans == NULL ? 3 : !ok;
        json_decref(ans);
        return rc;
    }
    fprintf(stderr, "tcpops: unknown command \"%s\"\n%s", cmd, usage);
    return 2;
}
