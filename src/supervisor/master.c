/*
 * The master's life:
 *
 *   reconcile: for each app, start the workers missing from 1..N and stop
 *              those above N (scale);
 *   a child exits: if it was meant to stop, forget it; else restart it after
 *              100 ms x 1.5^n (up to 15 s, reset after 30 s up) and call it
 *              crash-looping after 5 quick failures in a row;
 *   a roll (restart APP, or a worker over its memory limit): per worker,
 *              start the replacement, wait until it logs "listening", give
 *              the gateway's membership refresh time to see it, then SIGTERM
 *              the old one and wait for it to leave;
 *   shutdown:  SIGTERM the gateway, then the services; SIGKILL whatever is
 *              left after the drain time.
 *
 * Readiness is read from the child's own log: every tcpops program logs
 * msg=listening once it serves.
 */
#include "supervisor/master.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/backoff.h"
#include "rpc/clock.h"
#include "util/log.h"
#include "util/spawn.h"

#define MAX_PROCS 256
#define MAX_CLIENTS 32
#define CRASHLOOP_AFTER 5
#define HEALTHY_MS 30000
#define READY_TIMEOUT_MS 20000
/* Time for the gateway's membership refresh (every second) to see a new
 * worker before the one it replaces leaves. */
#define SETTLE_MS 1500

enum { W_STARTING, W_RUNNING, W_STOPPING, W_BACKOFF };

static const char *const state_names[] = {"starting", "running", "stopping", "backoff"};

typedef struct worker {
    int app;
    int index;                /* 1..N */
    pid_t pid;                /* 0 while waiting to restart */
    int out_fd;               /* the child's stdout+stderr */
    int state;
    int retire;               /* do not restart when it exits */
    int64_t started_ms, ready_ms, stop_ms, next_start_ms;
    unsigned restarts;        /* times restarted after exiting */
    unsigned quick_failures;  /* exits in a row before being healthy */
    int last_exit;            /* exit code, or 128 + signal; -1 none */
    long rss;                 /* bytes, refreshed every second */
    rpc_backoff bo;
    char line[2048];
    size_t linelen;
} worker;

typedef struct client {
    int fd;
    char buf[1024];
    size_t len;
    int waiting;              /* an answer is owed when an operation ends */
} client;

/* A rolling replacement of some workers of one app. */
typedef struct roll {
    int active;
    int queue[SUP_MAX_WORKERS]; /* worker indices still to replace */
    int nqueue;
    int phase;                /* 0 idle, 1 new starting, 2 settling, 3 old stopping */
    worker *old, *fresh;
    int64_t phase_ms;
    int client_fd;            /* who to answer at the end, -1 none */
    int failed;
    char why[128];
} roll;

typedef struct master {
    sup_config cfg;
    worker *w[MAX_PROCS];
    int nw;
    roll rolls[SUP_NAPPS];
    int scale_fd[SUP_NAPPS];  /* client waiting for a scale to settle, -1 none */
    int64_t scale_deadline[SUP_NAPPS];
    client clients[MAX_CLIENTS];
    int listen_fd;
    int sig_fd;
    char sock_path[1200];
    int shutting_down;        /* 1: gateway stopping, 2: services stopping */
    int64_t shutdown_ms;
    int down_fd;              /* `tcpops down` waiting for the end, -1 none */
    int64_t last_mem_ms;
} master;

void sup_socket_path(const char *data_dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/tcpops.sock", data_dir);
}

static sup_app *app_of(master *m, const worker *w)
{
    return &m->cfg.apps[w->app];
}

/* ---- answering control clients ---- */

static void send_json(int fd, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL */
    ssize_t w = send(fd, s, n + 1, MSG_NOSIGNAL);
    (void)w; /* a client that left does not need its answer */
    free(s);
}

static void client_close(master *m, int fd)
{
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (m->clients[i].fd == fd) {
            close(fd);
            m->clients[i].fd = -1;
            return;
        }
    }
}

static void answer(master *m, int fd, json_t *obj)
{
    if (fd < 0) {
        json_decref(obj);
        return;
    }
    send_json(fd, obj);
    client_close(m, fd);
}

static json_t *error_json(const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, arg);
    return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

/* ---- children ---- */

/* Starts the process of w. 0, or -1 (then w waits to retry). */
static int spawn(master *m, worker *w)
{
    sup_app *a = app_of(m, w);
    sup_argv av;
    char err[256], q[300];
    if (sup_app_argv(&m->cfg, w->app, &av, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot start", "app=%s err=%s", a->name,
                 util_logq(q, sizeof(q), err));
        return -1;
    }
    char **argv = av.argv;

    /* If the master dies, its workers drain and leave too. */
    util_spawn_cfg sc = {.deathsig = SIGTERM, .stderr_to_pipe = 1,
                         .pass_fd = w->app == SUP_GATEWAY ? m->cfg.http_fd : -1};
    int out = -1;
    pid_t pid = util_spawn(argv, &sc, &out, NULL);
    if (pid < 0)
        return -1;
    fcntl(out, F_SETFL, O_NONBLOCK);
    w->pid = pid;
    w->out_fd = out;
    w->state = W_STARTING;
    w->started_ms = rpc_now_ms();
    w->ready_ms = 0;
    w->linelen = 0;
    rpc_backoff_up(&w->bo, w->started_ms);
    util_log(UTIL_INFO, "started", "app=%s worker=%d pid=%d", a->name, w->index, (int)pid);
    return 0;
}

static worker *add_worker(master *m, int app, int index)
{
    if (m->nw >= MAX_PROCS)
        return NULL;
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    rpc_backoff_cfg bc = {.initial_ms = 100, .mult = 1.5, .cap_ms = 15000, .jitter = 0.1,
                          .reset_after_ms = HEALTHY_MS};
    w->app = app;
    w->index = index;
    w->out_fd = -1;
    w->last_exit = -1;
    rpc_backoff_init(&w->bo, &bc, NULL, NULL);
    rpc_backoff_next(&w->bo); /* the first start is at once */
    m->w[m->nw++] = w;
    if (spawn(m, w) < 0) {
        w->state = W_BACKOFF;
        w->next_start_ms = rpc_now_ms() + 1000;
    }
    return w;
}

static void remove_worker(master *m, worker *w)
{
    for (int i = 0; i < m->nw; i++) {
        if (m->w[i] == w) {
            m->w[i] = m->w[--m->nw];
            break;
        }
    }
    if (w->out_fd >= 0)
        close(w->out_fd);
    free(w);
}

/* Forgets w in any roll, and w itself. */
static void forget_worker(master *m, worker *w)
{
    for (int i = 0; i < SUP_NAPPS; i++) {
        if (m->rolls[i].fresh == w)
            m->rolls[i].fresh = NULL;
        if (m->rolls[i].old == w)
            m->rolls[i].old = NULL;
    }
    remove_worker(m, w);
}

static void stop_worker(worker *w)
{
    w->retire = 1;
    if (w->pid > 0 && w->state != W_STOPPING) {
        kill(w->pid, SIGTERM);
        w->state = W_STOPPING;
        w->stop_ms = rpc_now_ms();
    }
}

/* Prints the child's complete output lines, prefixed with who it is. */
static void pump_output(master *m, worker *w)
{
    char buf[4096];
    for (;;) {
        ssize_t r = read(w->out_fd, buf, sizeof(buf));
        if (r <= 0) {
            if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(w->out_fd);
                w->out_fd = -1;
            }
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            char c = buf[i];
            if (c != '\n' && w->linelen < sizeof(w->line) - 1) {
                w->line[w->linelen++] = c;
                continue;
            }
            if (c != '\n')
                continue; /* an over-long line is cut */
            w->line[w->linelen] = '\0';
            char out[2200];
            int n = snprintf(out, sizeof(out), "%s.%d | %s\n", app_of(m, w)->name, w->index,
                             w->line);
            ssize_t wr = write(STDERR_FILENO, out, (size_t)(n < (int)sizeof(out) ? n : (int)sizeof(out) - 1));
            (void)wr;
            if (w->state == W_STARTING && strstr(w->line, "msg=listening") != NULL) {
                w->state = W_RUNNING;
                w->ready_ms = rpc_now_ms();
            }
            w->linelen = 0;
        }
    }
}

static void on_exit_status(master *m, worker *w, int status)
{
    sup_app *a = app_of(m, w);
    int64_t now = rpc_now_ms();
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (w->out_fd >= 0)
        pump_output(m, w);
    w->last_exit = code;
    w->pid = 0;
    if (w->out_fd >= 0) {
        close(w->out_fd);
        w->out_fd = -1;
    }
    if (w->retire || m->shutting_down) {
        util_log(UTIL_INFO, "stopped", "app=%s worker=%d exit=%d", a->name, w->index, code);
        forget_worker(m, w);
        return;
    }
    rpc_backoff_down(&w->bo, now);
    int healthy = w->ready_ms != 0 && now - w->started_ms >= HEALTHY_MS;
    w->quick_failures = healthy ? 0 : w->quick_failures + 1;
    int64_t delay = rpc_backoff_next(&w->bo);
    if (delay == 0)
        delay = rpc_backoff_next(&w->bo); /* after a reset: the 100 ms step */
    w->restarts++;
    w->state = W_BACKOFF;
    w->next_start_ms = now + delay;
    util_log(w->quick_failures >= CRASHLOOP_AFTER ? UTIL_ERROR : UTIL_WARN, "exited",
             "app=%s worker=%d exit=%d restart_in_ms=%lld restarts=%u%s", a->name, w->index, code,
             (long long)delay, w->restarts,
             w->quick_failures >= CRASHLOOP_AFTER ? " crash_looping=true" : "");
}

static void reap(master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < m->nw; i++) {
            if (m->w[i]->pid == pid) {
                on_exit_status(m, m->w[i], status);
                break;
            }
        }
    }
}

/* ---- scale, rolls, memory ---- */

static worker *find(master *m, int app, int index, int retiring)
{
    for (int i = 0; i < m->nw; i++)
        if (m->w[i]->app == app && m->w[i]->index == index && m->w[i]->retire == retiring)
            return m->w[i];
    return NULL;
}

/* Starts the workers missing from 1..N and stops those above N. */
static void reconcile(master *m)
{
    if (m->shutting_down)
        return;
    for (int a = 0; a < SUP_NAPPS; a++) {
        int n = m->cfg.apps[a].workers;
        for (int i = 0; i < m->nw; i++) {
            worker *w = m->w[i];
            if (w->app == a && !w->retire && w->index > n) {
                util_log(UTIL_INFO, "scaling down", "app=%s worker=%d", m->cfg.apps[a].name,
                         w->index);
                if (w->pid > 0)
                    stop_worker(w);
                else
                    w->retire = 1, w->state = W_STOPPING; /* waiting to restart: just drop */
            }
        }
        for (int i = m->nw - 1; i >= 0; i--)
            if (m->w[i]->retire && m->w[i]->pid == 0)
                remove_worker(m, m->w[i]);
        for (int idx = 1; idx <= n; idx++)
            if (find(m, a, idx, 0) == NULL)
                add_worker(m, a, idx);
    }
}

static void restart_due(master *m)
{
    int64_t now = rpc_now_ms();
    for (int i = 0; i < m->nw; i++) {
        worker *w = m->w[i];
        if (w->state == W_BACKOFF && !w->retire && now >= w->next_start_ms && spawn(m, w) < 0)
            w->next_start_ms = now + 1000;
    }
}

static void start_roll(master *m, int app, const int *indices, int n, int client_fd)
{
    roll *r = &m->rolls[app];
    memset(r, 0, sizeof(*r));
    r->active = 1;
    r->client_fd = client_fd;
    for (int i = 0; i < n && i < SUP_MAX_WORKERS; i++)
        r->queue[r->nqueue++] = indices[i];
}

/* Advances the roll of app by what has happened. */
static void step_roll(master *m, int app)
{
    roll *r = &m->rolls[app];
    sup_app *a = &m->cfg.apps[app];
    int64_t now = rpc_now_ms();
    if (!r->active || m->shutting_down)
        return;
    switch (r->phase) {
    case 0:
        if (r->nqueue == 0) {
            r->active = 0;
            util_log(UTIL_INFO, "restart done", "app=%s", a->name);
            answer(m, r->client_fd, r->failed ? json_pack("{s:b,s:s}", "ok", 0, "error", r->why)
                                               : json_pack("{s:b,s:s}", "ok", 1, "app", a->name));
            return;
        }
        int idx = r->queue[0];
        memmove(r->queue, r->queue + 1, sizeof(int) * (size_t)--r->nqueue);
        r->old = find(m, app, idx, 0);
        if (r->old == NULL || r->old->pid == 0) {
            return; /* gone or restarting anyway: a fresh start is what a restart gives */
        }
        /* The old one steps aside in the table; the new one takes its number. */
        r->old->retire = 1;
        r->fresh = add_worker(m, app, idx);
        if (r->fresh == NULL) {
            r->old->retire = 0;
            r->failed = 1;
            snprintf(r->why, sizeof(r->why), "cannot start a replacement");
            r->nqueue = 0;
            return;
        }
        r->phase = 1;
        r->phase_ms = now;
        return;
    case 1:
        if (r->fresh == NULL || r->fresh->state == W_BACKOFF ||
            now - r->phase_ms > READY_TIMEOUT_MS) {
            /* The replacement did not come up: keep the old one. A
             * replacement waiting to restart has no process to stop: it
             * goes now (else it stays listed as "replaced" for ever). */
            if (r->fresh != NULL && r->fresh->pid > 0)
                stop_worker(r->fresh);
            else if (r->fresh != NULL)
                forget_worker(m, r->fresh);
            if (r->old != NULL)
                r->old->retire = 0;
            r->failed = 1;
            snprintf(r->why, sizeof(r->why), "worker %d's replacement did not become ready",
                     r->old != NULL ? r->old->index : 0);
            util_log(UTIL_ERROR, "restart failed", "app=%s why=\"%s\"", a->name, r->why);
            r->nqueue = 0;
            r->phase = 0;
            return;
        }
        if (r->fresh->state == W_RUNNING) {
            r->phase = 2;
            r->phase_ms = now;
        }
        return;
    case 2:
        if (now - r->phase_ms >= SETTLE_MS) {
            if (r->old != NULL)
                stop_worker(r->old);
            r->phase = 3;
            r->phase_ms = now;
        }
        return;
    case 3:
        if (r->old == NULL) { /* it exited and was forgotten */
            r->phase = 0;
            step_roll(m, app);
        }
        return;
    }
}

static long rss_of(pid_t pid)
{
    char path[64];
    long pages = 0, resident = 0;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void check_memory(master *m)
{
    int64_t now = rpc_now_ms();
    if (now - m->last_mem_ms < 1000)
        return;
    m->last_mem_ms = now;
    for (int i = 0; i < m->nw; i++) {
        worker *w = m->w[i];
        w->rss = w->pid > 0 ? rss_of(w->pid) : 0;
        sup_app *a = app_of(m, w);
        if (a->max_memory <= 0 || w->state != W_RUNNING || w->retire || m->rolls[w->app].active)
            continue;
        if (w->rss > a->max_memory) {
            util_log(UTIL_WARN, "memory limit", "app=%s worker=%d rss=%ld limit=%ld", a->name,
                     w->index, w->rss, a->max_memory);
            start_roll(m, w->app, &w->index, 1, -1);
        }
    }
}

/* Answers a scale request once the app has exactly N running workers. */
static void check_scale(master *m)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->scale_fd[a] < 0)
            continue;
        int running = 0, leaving = 0;
        for (int i = 0; i < m->nw; i++) {
            worker *w = m->w[i];
            if (w->app != a)
                continue;
            if (w->retire)
                leaving++;
            else if (w->state == W_RUNNING)
                running++;
        }
        int done = running == m->cfg.apps[a].workers && leaving == 0;
        if (done || rpc_now_ms() > m->scale_deadline[a]) {
            answer(m, m->scale_fd[a],
                   done ? json_pack("{s:b,s:s,s:i}", "ok", 1, "app", m->cfg.apps[a].name,
                                    "workers", running)
                        : json_pack("{s:b,s:s,s:i}", "ok", 0, "error",
                                    "scale did not settle in time", "running", running));
            m->scale_fd[a] = -1;
        }
    }
}

/* ---- control socket ---- */

static json_t *ps_json(master *m)
{
    json_t *arr = json_array();
    int64_t now = rpc_now_ms();
    for (int a = 0; a < SUP_NAPPS; a++) {
        for (int i = 0; i < m->nw; i++) {
            worker *w = m->w[i];
            if (w->app != a)
                continue;
            const char *state = state_names[w->state];
            if (w->state == W_BACKOFF && w->quick_failures >= CRASHLOOP_AFTER)
                state = "crash-looping";
            else if (w->retire && w->state != W_STOPPING)
                state = "replaced";
            json_array_append_new(
                arr, json_pack("{s:s,s:i,s:i,s:s,s:I,s:i,s:I,s:i}", "app", m->cfg.apps[a].name,
                               "worker", w->index, "pid", (int)w->pid, "state", state,
                               "uptime_ms", (json_int_t)(w->pid > 0 ? now - w->started_ms : 0),
                               "restarts", (int)w->restarts, "rss_bytes", (json_int_t)w->rss,
                               "last_exit", w->last_exit));
        }
    }
    return json_pack("{s:b,s:o}", "ok", 1, "workers", arr);
}

static void begin_shutdown(master *m);

static void handle_request(master *m, client *c, const char *line)
{
    json_error_t je;
    json_t *req = json_loads(line, 0, &je);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    const char *app = json_string_value(json_object_get(req, "app"));
    int a = app != NULL ? sup_app_index(app) : -1;
    if (cmd == NULL) {
        answer(m, c->fd, error_json("bad request: %s", req == NULL ? je.text : "no cmd"));
    } else if (strcmp(cmd, "ps") == 0) {
        answer(m, c->fd, ps_json(m));
    } else if (strcmp(cmd, "scale") == 0) {
        json_t *jn = json_object_get(req, "workers");
        json_int_t n = json_is_integer(jn) ? json_integer_value(jn) : -1;
        if (a < 0)
            answer(m, c->fd, error_json("unknown app \"%s\" (people, pets)", app ? app : ""));
        else if (a == SUP_GATEWAY)
            answer(m, c->fd, error_json("%s runs exactly one instance", "the gateway"));
        else if (n < 0 || n > SUP_MAX_WORKERS)
            answer(m, c->fd, error_json("workers must be 0-%s", "64"));
        else if (m->scale_fd[a] >= 0 || m->rolls[a].active)
            answer(m, c->fd, error_json("%s is busy with another scale or restart", app));
        else {
            util_log(UTIL_INFO, "scale", "app=%s from=%d to=%d", app, m->cfg.apps[a].workers,
                     (int)n);
            m->cfg.apps[a].workers = (int)n;
            m->scale_fd[a] = c->fd;
            m->scale_deadline[a] = rpc_now_ms() + READY_TIMEOUT_MS + m->cfg.drain_ms;
            c->waiting = 1;
            reconcile(m);
        }
    } else if (strcmp(cmd, "restart") == 0) {
        if (a < 0) {
            answer(m, c->fd, error_json("unknown app \"%s\" (gateway, people, pets)",
                                        app ? app : ""));
        } else if (m->rolls[a].active || m->scale_fd[a] >= 0) {
            answer(m, c->fd, error_json("%s is busy with another scale or restart", app));
        } else {
            int idx[SUP_MAX_WORKERS], n = 0;
            for (int i = 1; i <= m->cfg.apps[a].workers && n < SUP_MAX_WORKERS; i++)
                idx[n++] = i;
            util_log(UTIL_INFO, "restart", "app=%s workers=%d", app, n);
            start_roll(m, a, idx, n, c->fd);
            c->waiting = 1;
        }
    } else if (strcmp(cmd, "down") == 0) {
        m->down_fd = c->fd;
        c->waiting = 1;
        begin_shutdown(m);
    } else {
        answer(m, c->fd, error_json("unknown command \"%s\"", cmd));
    }
    json_decref(req);
}

/* A client hung up (or its socket failed). One owed an answer is forgotten
 * by whatever it waited for, which goes on without it: a poll on a closed
 * peer reports POLLHUP forever, so its fd must leave the poll set now. */
static void client_gone(master *m, client *c)
{
    const char *waited = NULL;
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->rolls[a].client_fd == c->fd)
            m->rolls[a].client_fd = -1, waited = "restart";
        if (m->scale_fd[a] == c->fd)
            m->scale_fd[a] = -1, waited = "scale";
    }
    if (m->down_fd == c->fd)
        m->down_fd = -1, waited = "down";
    if (waited != NULL)
        util_log(UTIL_INFO, "control client left", "waiting_for=%s", waited);
    client_close(m, c->fd);
}

static void on_client(master *m, client *c)
{
    if (c->waiting) {
        /* Not read while owed an answer: only a hang-up or error wakes it. */
        client_gone(m, c);
        return;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        client_gone(m, c);
        return;
    }
    c->len += (size_t)r;
    c->buf[c->len] = '\0';
    char *nl = strchr(c->buf, '\n');
    if (nl == NULL) {
        if (c->len == sizeof(c->buf) - 1)
            answer(m, c->fd, error_json("request too long%s", ""));
        return;
    }
    *nl = '\0';
    handle_request(m, c, c->buf);
}

static void on_accept(master *m)
{
    int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        if (m->clients[i].fd < 0) {
            m->clients[i] = (client){.fd = fd};
            return;
        }
    }
    close(fd); /* too many at once */
}

static int control_addr(const char *data_dir, struct sockaddr_un *sa, char *path, size_t len)
{
    sup_socket_path(data_dir, path, len);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -1;
    strcpy(sa->sun_path, path);
    return 0;
}

int sup_master_alive(const char *data_dir)
{
    struct sockaddr_un sa;
    char path[1200];
    if (control_addr(data_dir, &sa, path, sizeof(path)) < 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int alive = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return alive;
}

static int open_control(master *m, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (control_addr(m->cfg.data_dir, &sa, m->sock_path, sizeof(m->sock_path)) < 0) {
        snprintf(err, errlen, "control socket path too long: %s", m->sock_path);
        return -1;
    }
    /* A socket file left by a master that died is removed; a live one wins. */
    if (sup_master_alive(m->cfg.data_dir)) {
        snprintf(err, errlen, "a tcpops master already runs on %s", m->cfg.data_dir);
        return -1;
    }
    unlink(m->sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "control socket %s: %s", m->sock_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    m->listen_fd = fd;
    return 0;
}

/* ---- shutdown ---- */

static void begin_shutdown(master *m)
{
    if (m->shutting_down)
        return;
    util_log(UTIL_INFO, "shutting down", "workers=%d", m->nw);
    m->shutting_down = 1;
    /* Once the gateway has gone, the port refuses instead of queueing. */
    if (m->cfg.http_fd >= 0) {
        close(m->cfg.http_fd);
        m->cfg.http_fd = -1;
    }
    m->shutdown_ms = rpc_now_ms();
    /* The gateway first, so no request arrives for a service that left. */
    for (int i = 0; i < m->nw; i++)
        if (m->w[i]->app == SUP_GATEWAY)
            stop_worker(m->w[i]);
}

static void step_shutdown(master *m)
{
    int64_t now = rpc_now_ms();
    int gateway_left = 0;
    for (int i = 0; i < m->nw; i++)
        gateway_left |= m->w[i]->app == SUP_GATEWAY && m->w[i]->pid > 0;
    if (m->shutting_down == 1 && (!gateway_left || now - m->shutdown_ms > m->cfg.drain_ms + 1000)) {
        m->shutting_down = 2;
        m->shutdown_ms = now;
        for (int i = 0; i < m->nw; i++)
            stop_worker(m->w[i]);
    }
    /* Waiting to restart: nothing to stop. */
    for (int i = m->nw - 1; i >= 0; i--)
        if (m->w[i]->pid == 0)
            remove_worker(m, m->w[i]);
    for (int i = 0; i < m->nw; i++) {
        worker *w = m->w[i];
        if (w->pid > 0 && w->state == W_STOPPING && now - w->stop_ms > m->cfg.drain_ms + 1000) {
            util_log(UTIL_WARN, "killing", "app=%s worker=%d pid=%d after_ms=%lld",
                     app_of(m, w)->name, w->index, (int)w->pid, (long long)(now - w->stop_ms));
            kill(w->pid, SIGKILL);
            w->stop_ms = now; /* once */
        }
    }
}

/* After logrotate moved DIR/tcpops.log away: our stdout and stderr (and so
 * every worker's lines, which we copy there) go to a new file of that name. */
static void reopen_log(master *m)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/tcpops.log", m->cfg.data_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        util_log(UTIL_ERROR, "cannot reopen log", "signal=HUP file=%s err=\"%s\"", path,
                 strerror(errno));
        return;
    }
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    util_log(UTIL_INFO, "reopened log", "signal=HUP file=%s", path);
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "TERM";
    case SIGINT: return "INT";
    case SIGQUIT: return "QUIT";
    case SIGHUP: return "HUP";
    case SIGUSR1: return "USR1";
    case SIGUSR2: return "USR2";
    case SIGALRM: return "ALRM";
    default: return "other";
    }
}

static void on_signal(master *m, int sig)
{
    switch (sig) {
    case SIGCHLD:
        reap(m);
        return;
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
        util_log(UTIL_INFO, "signal", "signal=%s action=stop", sig_name(sig));
        begin_shutdown(m);
        return;
    case SIGHUP:
        if (m->cfg.detach)
            reopen_log(m);
        else
            util_log(UTIL_INFO, "signal", "signal=HUP action=ignore why=\"logging to stderr: "
                     "no log file to reopen\"");
        return;
    default:
        util_log(UTIL_INFO, "signal", "signal=%s action=ignore", sig_name(sig));
        return;
    }
}

int sup_master_run(const sup_config *cfg)
{
    master *m = calloc(1, sizeof(*m));
    char err[1400];
    int rc = 1;
    if (m == NULL)
        return 1;
    m->cfg = *cfg;
    m->listen_fd = -1;
    m->sig_fd = -1;
    m->down_fd = -1;
    for (int i = 0; i < MAX_CLIENTS; i++)
        m->clients[i].fd = -1;
    for (int a = 0; a < SUP_NAPPS; a++) {
        m->scale_fd[a] = -1;
        m->rolls[a].client_fd = -1;
    }
    if (mkdir(m->cfg.data_dir, 0755) < 0 && errno != EEXIST) {
        util_log(UTIL_ERROR, "cannot create data dir", "dir=%s err=\"%s\"", m->cfg.data_dir,
                 strerror(errno));
        goto out;
    }
    /* Every signal whose default would kill the master is taken before the
     * control socket exists, so that no exit leaves the socket file behind:
     * TERM, INT and QUIT stop gracefully; HUP reopens the log (or is
     * logged and ignored); USR1, USR2 and ALRM are logged and ignored. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    m->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->sig_fd < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=\"signalfd: %s\"", strerror(errno));
        goto out;
    }
    if (open_control(m, err, sizeof(err)) < 0) {
        char q[1500];
        util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), err));
        goto out;
    }

    util_log(UTIL_INFO, "up", "data_dir=%s gateway=%s people=%s/%d pets=%s/%d control=%s",
             m->cfg.data_dir, m->cfg.apps[SUP_GATEWAY].listen, m->cfg.apps[SUP_PEOPLE].listen,
             m->cfg.apps[SUP_PEOPLE].workers, m->cfg.apps[SUP_PETS].listen,
             m->cfg.apps[SUP_PETS].workers, m->sock_path);
    reconcile(m);

    while (!(m->shutting_down && m->nw == 0)) {
        struct pollfd pf[2 + MAX_CLIENTS + MAX_PROCS];
        worker *pw[MAX_PROCS];
        int n = 0;
        pf[n++] = (struct pollfd){.fd = m->sig_fd, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = m->listen_fd, .events = POLLIN};
        for (int i = 0; i < MAX_CLIENTS; i++) /* a client owed an answer is not read */
            pf[n++] = (struct pollfd){.fd = m->clients[i].fd,
                                      .events = m->clients[i].waiting ? 0 : POLLIN};
        int base = n;
        for (int i = 0; i < m->nw; i++) {
            pw[i] = m->w[i];
            pf[n++] = (struct pollfd){.fd = m->w[i]->out_fd, .events = POLLIN};
        }
        int nworkers = m->nw;
        poll(pf, (nfds_t)n, 100);

        for (int i = 0; i < nworkers; i++)
            if (pf[base + i].revents && pw[i]->out_fd >= 0)
                pump_output(m, pw[i]);
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            while (read(m->sig_fd, &si, sizeof(si)) == sizeof(si)) {
                on_signal(m, (int)si.ssi_signo);
            }
        }
        if (pf[1].revents)
            on_accept(m);
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (m->clients[i].fd >= 0 && pf[2 + i].revents && pf[2 + i].fd == m->clients[i].fd)
                on_client(m, &m->clients[i]);

        if (m->shutting_down) {
            step_shutdown(m);
            continue;
        }
        reap(m); /* in case a SIGCHLD raced with the poll */
        restart_due(m);
        for (int a = 0; a < SUP_NAPPS; a++)
            step_roll(m, a);
        check_memory(m);
        check_scale(m);
    }
    util_log(UTIL_INFO, "down", NULL);
    rc = 0;
out:
    /* Anyone still waiting gets an answer before the socket goes. */
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->rolls[a].active)
            answer(m, m->rolls[a].client_fd, error_json("interrupted by %s", "shutdown"));
        if (m->scale_fd[a] >= 0)
            answer(m, m->scale_fd[a], error_json("interrupted by %s", "shutdown"));
    }
    if (m->down_fd >= 0)
        answer(m, m->down_fd, json_pack("{s:b}", "ok", 1));
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (m->clients[i].fd >= 0)
            close(m->clients[i].fd);
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        unlink(m->sock_path);
    }
    if (m->sig_fd >= 0)
        close(m->sig_fd);
    if (m->cfg.http_fd >= 0)
        close(m->cfg.http_fd);
    while (m->nw > 0)
        remove_worker(m, m->w[0]);
    free(m);
    return rc;
}
