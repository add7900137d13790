/* The supervisor's configuration (config.h): defaults, the INI file, the
 * flag lists, and each worker's command line. */
#include "supervisor/config.h"

#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svc/store.h"
#include "util/flags.h"

static const char *const names[SUP_NAPPS] = {"gateway", "people", "pets"};
static const char *const binaries[SUP_NAPPS] = {"tcpops-gateway", "tcpops-people",
                                                "tcpops-pets"};

int sup_app_index(const char *name)
{
    for (int i = 0; i < SUP_NAPPS; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

void sup_config_default(sup_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->data_dir, sizeof(c->data_dir), "%s", SUP_DEFAULT_DATA_DIR);
    c->drain_ms = SUP_DEFAULT_DRAIN_MS;
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->http_fd = -1;
    c->policy = (sup_policy){
        .restart = {.initial_ms = SUP_RESTART_FIRST_MS, .mult = SUP_RESTART_MULT,
                    .cap_ms = SUP_RESTART_CAP_MS, .jitter = SUP_RESTART_JITTER,
                    .reset_after_ms = SUP_HEALTHY_MS},
        .crashloop_after = SUP_CRASHLOOP_AFTER,
        .healthy_ms = SUP_HEALTHY_MS,
        .ready_timeout_ms = SUP_READY_TIMEOUT_MS,
        .settle_ms = SUP_SETTLE_MS,
        .kill_grace_ms = SUP_KILL_GRACE_MS,
        .retry_spawn_ms = SUP_RETRY_SPAWN_MS,
        .memory_check_ms = SUP_MEMORY_CHECK_MS,
    };
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL)
            *slash = '\0';
        snprintf(c->bin_dir, sizeof(c->bin_dir), "%s", self);
    } else {
        snprintf(c->bin_dir, sizeof(c->bin_dir), ".");
    }
    for (int i = 0; i < SUP_NAPPS; i++) {
        c->apps[i].name = names[i];
        c->apps[i].binary = binaries[i];
        snprintf(c->apps[i].listen, sizeof(c->apps[i].listen), "%s:%d", SUP_DEFAULT_HOST,
                 SUP_DEFAULT_PORT + i);
        c->apps[i].workers = 1;
        c->apps[i].run = 1;
    }
}

int sup_config_apps(sup_config *c, const char *list, const char *what, char *err,
                    size_t errlen)
{
    char buf[256];
    int run[SUP_NAPPS] = {0}, any = 0;
    if (strlen(list) >= sizeof(buf)) {
        snprintf(err, errlen, "%s: longer than %zu bytes", what, sizeof(buf) - 1);
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok != NULL;
         tok = strtok_r(NULL, ", \t", &save)) {
        int a = sup_app_index(tok);
        if (a < 0) {
            snprintf(err, errlen, "%s: unknown app \"%s\" (gateway, people, pets)", what, tok);
            return -1;
        }
        run[a] = any = 1;
    }
    if (!any) {
        snprintf(err, errlen, "%s: no app named (gateway, people, pets)", what);
        return -1;
    }
    for (int a = 0; a < SUP_NAPPS; a++)
        c->apps[a].run = run[a];
    return 0;
}

int sup_log_open(const char *data_dir, char *path, size_t len)
{
    snprintf(path, len, "%s/tcpops.log", data_dir);
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* What the gateway dials for service app: its listen address, with a
 * wildcard host (bound on every interface here) dialled on loopback. */
static const char *dial_addr(const sup_app *a, char *buf, size_t len)
{
    static const char any[] = "0.0.0.0:";
    if (!a->run || strncmp(a->listen, any, sizeof(any) - 1) != 0)
        return a->listen;
    snprintf(buf, len, "127.0.0.1:%s", a->listen + sizeof(any) - 1);
    return buf;
}

/* A service's own (member) port listens on the host of its shared one. */
static const char *member_addr(const sup_app *a, char *buf, size_t len)
{
    const char *colon = strrchr(a->listen, ':');
    int hl = colon != NULL ? (int)(colon - a->listen) : 0;
    snprintf(buf, len, "%.*s:0", hl, a->listen);
    return buf;
}

/* The flags tcpops gives a worker of app before its args; n so far. */
static int fixed_args(const sup_config *c, int app, sup_argv *out, int n)
{
    const sup_app *a = &c->apps[app];
    out->argv[n++] = "--listen";
    out->argv[n++] = (char *)a->listen;
    out->argv[n++] = "--log-level";
    out->argv[n++] = (char *)c->log_level;
    out->argv[n++] = "--log-format";
    out->argv[n++] = "logfmt";
    if (c->tls_cert[0] != '\0') {
        out->argv[n++] = "--tls-cert";
        out->argv[n++] = (char *)c->tls_cert;
        out->argv[n++] = "--tls-key";
        out->argv[n++] = (char *)c->tls_key;
        out->argv[n++] = "--tls-ca";
        out->argv[n++] = (char *)c->tls_ca;
    }
    if (c->insecure)
        out->argv[n++] = "--insecure";
    if (app == SUP_GATEWAY) {
        out->argv[n++] = "--people";
        out->argv[n++] = (char *)dial_addr(&c->apps[SUP_PEOPLE], out->dial[0],
                                           sizeof(out->dial[0]));
        out->argv[n++] = "--pets";
        out->argv[n++] = (char *)dial_addr(&c->apps[SUP_PETS], out->dial[1],
                                           sizeof(out->dial[1]));
        if (a->https_cert[0] != '\0') {
            out->argv[n++] = "--https-cert";
            out->argv[n++] = (char *)a->https_cert;
        }
        if (a->https_key[0] != '\0') {
            out->argv[n++] = "--https-key";
            out->argv[n++] = (char *)a->https_key;
        }
        if (c->http_fd >= 0) {
            snprintf(out->fd, sizeof(out->fd), "%d", c->http_fd);
            out->argv[n++] = "--listen-fd";
            out->argv[n++] = out->fd;
        }
        return n;
    }
    out->argv[n++] = "--member-listen";
    out->argv[n++] = (char *)member_addr(a, out->member, sizeof(out->member));
    out->argv[n++] = "--data-dir";
    out->argv[n++] = (char *)c->data_dir;
    const char *db = sup_app_db(c, app), *adv = sup_app_advertise(c, app);
    if (db[0] != '\0') {
        out->argv[n++] = "--db";
        out->argv[n++] = (char *)db;
    }
    if (adv[0] != '\0') {
        out->argv[n++] = "--advertise";
        out->argv[n++] = (char *)adv;
    }
    return n;
}

/* Whether dir/name is a program this user may run; path gets dir/name. */
static int runnable(const char *dir, size_t dirlen, const char *name, char *path,
                    size_t len)
{
    int n = snprintf(path, len, "%.*s/%s", (int)dirlen, dir, name);
    return n > 0 && (size_t)n < len && access(path, X_OK) == 0;
}

int sup_app_path(const sup_config *c, int app, char *path, size_t len)
{
    const char *name = c->apps[app].binary;
    /* Beside tcpops first: a build directory or an install prefix keeps its
     * programs together, and a stray older copy on PATH must not win. */
    if (runnable(c->bin_dir, strlen(c->bin_dir), name, path, len))
        return 0;
    const char *dirs = getenv("PATH");
    for (const char *d = dirs; d != NULL && *d != '\0';) {
        const char *colon = strchr(d, ':');
        size_t dlen = colon != NULL ? (size_t)(colon - d) : strlen(d);
        /* An empty entry is the current directory (execvp's rule). */
        if (dlen == 0 ? runnable(".", 1, name, path, len) : runnable(d, dlen, name, path, len))
            return 0;
        d = colon != NULL ? colon + 1 : NULL;
    }
    snprintf(path, len, "%s/%s", c->bin_dir, name);
    return -1;
}

int sup_app_argv(const sup_config *c, int app, sup_argv *out, char *err, size_t errlen)
{
    const sup_app *a = &c->apps[app];
    int n = 0;
    char *p = out->buf, *end = out->buf + sizeof(out->buf);
    char path[PATH_MAX];
    (void)sup_app_path(c, app, path, sizeof(path));
    p += snprintf(p, (size_t)(end - p), "%s", path) + 1;
    out->argv[n++] = out->buf;
    n = fixed_args(c, app, out, n);
    int fixed = n;
    /* buf has room for args: it is larger than the program's path + args. */
    char *extra = p;
    snprintf(extra, (size_t)(end - extra), "%s", a->args);
    /* Room is kept for sup_argv_ready's words: args that fit here but not
     * with them would fail every start, not this check. */
    const int max = SUP_MAX_ARGV - SUP_READY_ARGV;
    for (char *save = NULL, *tok = strtok_r(extra, " \t", &save); tok != NULL;
         tok = strtok_r(NULL, " \t", &save)) {
        if (n >= max) {
            snprintf(err, errlen, "%s args: more than %d words", a->name, max - fixed);
            return -1;
        }
        out->argv[n++] = tok;
    }
    out->argv[n] = NULL;
    return 0;
}

int sup_argv_ready(sup_argv *out, int fd, char *err, size_t errlen)
{
    int n = 0;
    while (out->argv[n] != NULL)
        n++;
    if (n + SUP_READY_ARGV > SUP_MAX_ARGV) {
        snprintf(err, errlen, "%s: more than %d words with --ready-fd", out->argv[0],
                 SUP_MAX_ARGV);
        return -1;
    }
    /* argv[1..n], its NULL included, moves two places on. */
    memmove(&out->argv[3], &out->argv[1], sizeof(out->argv[0]) * (size_t)n);
    snprintf(out->ready, sizeof(out->ready), "%d", fd);
    out->argv[1] = "--ready-fd";
    out->argv[2] = out->ready;
    return 0;
}

typedef struct load_ctx {
    sup_config *c;
    char *err;
    size_t errlen;
} load_ctx;

static int set_workers(sup_app *a, const char *v, const char *what, char *err, size_t errlen)
{
    long n;
    int gateway = strcmp(a->name, "gateway") == 0;
    if (util_parse_num(v, UTIL_NUM_PLAIN, gateway ? 1 : 0, gateway ? 1 : SUP_MAX_WORKERS, &n,
                       what, err, errlen) < 0) {
        if (gateway)
            snprintf(err, errlen, "%s: \"%s\": the gateway runs exactly 1", what, v);
        return -1;
    }
    a->workers = (int)n;
    return 0;
}

static int set_memory(sup_app *a, const char *v, const char *what, char *err, size_t errlen)
{
    return util_parse_num(v, UTIL_NUM_SIZE, 0, SUP_MAX_MEMORY, &a->max_memory, what, err,
                          errlen) < 0 ? -1 : 0;
}

/* The string setting key of a (or, with a NULL, of c), and its size. */
static char *setting(sup_config *c, sup_app *a, const char *key, size_t *cap)
{
    if (a != NULL && strcmp(key, "listen") == 0)
        return *cap = sizeof(a->listen), a->listen;
    if (a != NULL && strcmp(key, "args") == 0)
        return *cap = sizeof(a->args), a->args;
    if (strcmp(key, "db") == 0)
        return *cap = SUP_DB_MAX, a != NULL ? a->db : c->db;
    if (strcmp(key, "advertise") == 0)
        return *cap = SUP_ADVERTISE_MAX, a != NULL ? a->advertise : c->advertise;
    if (a != NULL && strcmp(key, "https_cert") == 0)
        return *cap = sizeof(a->https_cert), a->https_cert;
    if (a != NULL && strcmp(key, "https_key") == 0)
        return *cap = sizeof(a->https_key), a->https_key;
    if (a == NULL && strncmp(key, "tls_", 4) == 0) {
        *cap = SUP_PATH_MAX;
        return strcmp(key, "tls_cert") == 0  ? c->tls_cert
               : strcmp(key, "tls_key") == 0 ? c->tls_key
               : strcmp(key, "tls_ca") == 0  ? c->tls_ca
                                             : NULL;
    }
    return NULL;
}

/* Copies value into dst (cap bytes), or refuses it whole: what names the
 * setting in err. */
static int set_string(char *dst, size_t cap, const char *what, const char *value, char *err,
                      size_t errlen)
{
    if (strlen(value) >= cap) {
        snprintf(err, errlen, "%s: longer than %zu bytes", what, cap - 1);
        return -1;
    }
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

int sup_app_set(sup_app *a, const char *key, const char *value, char *err, size_t errlen)
{
    size_t cap = 0;
    char *dst = setting(NULL, a, key, &cap);
    if (dst == NULL) {
        snprintf(err, errlen, "%s: no setting %s", a->name, key);
        return -1;
    }
    char what[64];
    snprintf(what, sizeof(what), "%s %s", a->name, key);
    return set_string(dst, cap, what, value, err, errlen);
}

int sup_config_set_all(sup_config *c, const char *key, const char *value, char *err,
                       size_t errlen)
{
    size_t cap = 0;
    char *dst = setting(c, NULL, key, &cap);
    char what[32];
    snprintf(what, sizeof(what), "--%s", key);
    for (char *u = strchr(what, '_'); u != NULL; u = strchr(u, '_'))
        *u = '-'; /* the flag of tls_cert is --tls-cert */
    if (dst == NULL) {
        snprintf(err, errlen, "no setting %s", key);
        return -1;
    }
    if (set_string(dst, cap, what, value, err, errlen) < 0)
        return -1;
    for (int a = 0; a < SUP_NAPPS; a++) {
        char *own = setting(c, &c->apps[a], key, &cap);
        if (own != NULL)
            own[0] = '\0';
    }
    return 0;
}

const char *sup_app_db(const sup_config *c, int app)
{
    if (app == SUP_GATEWAY)
        return "";
    return c->apps[app].db[0] != '\0' ? c->apps[app].db : c->db;
}

const char *sup_app_advertise(const sup_config *c, int app)
{
    if (app == SUP_GATEWAY)
        return "";
    return c->apps[app].advertise[0] != '\0' ? c->apps[app].advertise : c->advertise;
}

/* path made absolute: its directory resolved (realpath) when it exists,
 * else joined to the working directory, as the worker would open it. out
 * holds two paths (ABS_PATH_MAX). */
#define ABS_PATH_MAX (2 * PATH_MAX + 2)
static void abs_path(const char *path, char *out, size_t len)
{
    char dir[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path) : 1,
             slash != NULL ? (slash == path ? "/" : path) : ".");
    if (realpath(dir, real) != NULL)
        snprintf(out, len, "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", base);
    else if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL)
        snprintf(out, len, "%s/%s", cwd, path);
    else
        snprintf(out, len, "%s", path);
}

int sup_app_store(const sup_config *c, int app, char *out, size_t len, char *err,
                  size_t errlen)
{
    svc_store *st = malloc(sizeof(*st)); /* 8 KiB: not on the master's stack */
    char why[1024];
    if (st == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = svc_store_parse(st, sup_app_db(c, app), c->data_dir, c->apps[app].name, why,
                             sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", c->apps[app].name, why);
    } else if (st->backend == SVC_SQLITE) {
        char path[ABS_PATH_MAX];
        abs_path(st->path, path, sizeof(path));
        snprintf(out, len, "sqlite:%s", path);
    } else {
        svc_store_describe(st, out, len);
    }
    free(st);
    return rc < 0 ? -1 : 0;
}

/* value as a boolean (1/true/yes, 0/false/no) into *dst: 1, or 0 with err
 * filled (inih's "stop"). */
static int set_bool(int *dst, const char *value, const char *what, char *err, size_t errlen)
{
    int yes = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0;
    if (!yes && strcmp(value, "0") != 0 && strcmp(value, "false") != 0 &&
        strcmp(value, "no") != 0) {
        snprintf(err, errlen, "%s: \"%s\" is not true or false", what, value);
        return 0;
    }
    *dst = yes;
    return 1;
}

static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    load_ctx *l = user;
    if (strcmp(section, "tcpops") == 0) {
        if (strcmp(key, "data_dir") == 0) {
            snprintf(l->c->data_dir, sizeof(l->c->data_dir), "%s", value);
            return 1;
        }
        if (strcmp(key, "drain_ms") == 0)
            return util_parse_num(value, UTIL_NUM_PLAIN, 0, SUP_DRAIN_MS_MAX, &l->c->drain_ms,
                                  "[tcpops] drain_ms", l->err, l->errlen) == 0;
        if (strcmp(key, "ready_timeout_ms") == 0)
            return util_parse_num(value, UTIL_NUM_PLAIN, SUP_READY_TIMEOUT_MS_MIN,
                                  SUP_READY_TIMEOUT_MS_MAX, &l->c->policy.ready_timeout_ms,
                                  "[tcpops] ready_timeout_ms", l->err, l->errlen) == 0;
        if (strcmp(key, "apps") == 0)
            return sup_config_apps(l->c, value, "[tcpops] apps", l->err, l->errlen) == 0;
        if (strcmp(key, "insecure") == 0)
            return set_bool(&l->c->insecure, value, "[tcpops] insecure", l->err, l->errlen);
        size_t cap = 0;
        char *dst = setting(l->c, NULL, key, &cap);
        char what[64];
        snprintf(what, sizeof(what), "[tcpops] %s", key);
        if (dst != NULL)
            return set_string(dst, cap, what, value, l->err, l->errlen) == 0;
    }
    int a = sup_app_index(section);
    if (a >= 0) {
        sup_app *app = &l->c->apps[a];
        int service_only = strcmp(key, "db") == 0 || strcmp(key, "advertise") == 0;
        int gateway_only = strcmp(key, "https_cert") == 0 || strcmp(key, "https_key") == 0;
        if (strcmp(key, "listen") == 0 || (service_only && a != SUP_GATEWAY) ||
            (gateway_only && a == SUP_GATEWAY))
            return sup_app_set(app, key, value, l->err, l->errlen) == 0;
        char what[64];
        snprintf(what, sizeof(what), "[%s] %s", app->name, key);
        if (strcmp(key, "workers") == 0)
            return set_workers(app, value, what, l->err, l->errlen) == 0;
        if (strcmp(key, "max_memory") == 0)
            return set_memory(app, value, what, l->err, l->errlen) == 0;
        if (strcmp(key, "args") == 0)
            return sup_app_set(app, "args", value, l->err, l->errlen) == 0;
    }
    snprintf(l->err, l->errlen, "unknown setting [%s] %s", section, key);
    return 0;
}

int sup_config_load(sup_config *c, const char *path, char *err, size_t errlen)
{
    load_ctx l = {.c = c, .err = err, .errlen = errlen};
    err[0] = '\0';
    int rc = ini_parse(path, on_ini, &l);
    if (rc == -1) {
        snprintf(err, errlen, "cannot open config file %s", path);
        return -1;
    }
    if (rc != 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "%s line %d: %s", path, rc, why[0] ? why : "syntax error");
        return -1;
    }
    return 0;
}

int sup_config_pairs(sup_config *c, const char *spec, const char *what, char *err,
                     size_t errlen)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "--%s: \"%s\" is not APP=VALUE", what, tok);
            return -1;
        }
        *eq = '\0';
        int a = sup_app_index(tok);
        if (a < 0) {
            snprintf(err, errlen, "--%s: unknown app \"%s\" (gateway, people, pets)", what, tok);
            return -1;
        }
        char where[64];
        snprintf(where, sizeof(where), "--%s %s", what, tok);
        int rc = strcmp(what, "workers") == 0
                     ? set_workers(&c->apps[a], eq + 1, where, err, errlen)
                     : set_memory(&c->apps[a], eq + 1, where, err, errlen);
        if (rc < 0)
            return -1;
    }
    return 0;
}
