#include "supervisor/config.h"

#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    }
}

int sup_log_open(const char *data_dir, char *path, size_t len)
{
    snprintf(path, len, "%s/tcpops.log", data_dir);
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int sup_app_argv(const sup_config *c, int app, sup_argv *out, char *err, size_t errlen)
{
    const sup_app *a = &c->apps[app];
    int n = 0;
    char *p = out->buf, *end = out->buf + sizeof(out->buf);
    p += snprintf(p, (size_t)(end - p), "%s/%s", c->bin_dir, a->binary) + 1;
    out->argv[n++] = out->buf;
    out->argv[n++] = "--listen";
    out->argv[n++] = (char *)a->listen;
    if (app == SUP_GATEWAY) {
        out->argv[n++] = "--people";
        out->argv[n++] = (char *)c->apps[SUP_PEOPLE].listen;
        out->argv[n++] = "--pets";
        out->argv[n++] = (char *)c->apps[SUP_PETS].listen;
        if (c->http_fd >= 0) {
            snprintf(out->fd, sizeof(out->fd), "%d", c->http_fd);
            out->argv[n++] = "--listen-fd";
            out->argv[n++] = out->fd;
        }
    } else {
        out->argv[n++] = "--data-dir";
        out->argv[n++] = (char *)c->data_dir;
    }
    /* buf has room for args: it is larger than bin_dir + binary + args. */
    char *extra = p;
    snprintf(extra, (size_t)(end - extra), "%s", a->args);
    for (char *save = NULL, *tok = strtok_r(extra, " \t", &save); tok != NULL;
         tok = strtok_r(NULL, " \t", &save)) {
        if (n >= SUP_MAX_ARGV) {
            snprintf(err, errlen, "%s args: more than %d words", a->name, SUP_MAX_ARGV - 8);
            return -1;
        }
        out->argv[n++] = tok;
    }
    out->argv[n] = NULL;
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

int sup_app_set(sup_app *a, const char *key, const char *value, char *err, size_t errlen)
{
    int listen = strcmp(key, "listen") == 0;
    char *dst = listen ? a->listen : a->args;
    size_t cap = listen ? sizeof(a->listen) : sizeof(a->args);
    if (strlen(value) >= cap) {
        snprintf(err, errlen, "%s %s: longer than %zu bytes", a->name, key, cap - 1);
        return -1;
    }
    memcpy(dst, value, strlen(value) + 1);
    return 0;
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
    }
    int a = sup_app_index(section);
    if (a >= 0) {
        sup_app *app = &l->c->apps[a];
        if (strcmp(key, "listen") == 0)
            return sup_app_set(app, "listen", value, l->err, l->errlen) == 0;
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
