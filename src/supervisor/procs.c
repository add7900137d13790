/* Restart rule: an exit is restarted after policy.restart's backoff (the
 * first delay after a healthy run is its initial step); an exit before the
 * worker had been up healthy_ms counts as a quick failure, and
 * crashloop_after of them in a row show as crash-looping. An exit 2 before
 * the worker was ready is a usage error (a flag or setting it refuses):
 * starting it again would fail the same way, so it is not restarted but
 * failed, with its last line as the reason, until asked (systemd's
 * RestartPreventExitStatus). Readiness comes from the child itself: the
 * line it writes on its --ready-fd pipe once it serves (util/ready.h). One
 * that will not say it (the pipe closed without the line, a line that is
 * not one, or none within policy.ready_timeout_ms) is stopped, and its exit
 * is a failed start like any other: restarted with backoff. */
#include "supervisor/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "util/log.h"
#include "util/spawn.h"

static const char *const state_names[] = {"starting", "running", "stopping", "backoff",
                                          "failed"};

static const sup_app *app_of(const sup_procs *p, const sup_worker *w)
{
    return &p->cfg->apps[w->app];
}

const char *sup_worker_name(const sup_procs *p, const sup_worker *w, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%d", app_of(p, w)->name, w->index);
    return buf;
}

void sup_procs_init(sup_procs *p, sup_config *cfg, sup_forget_fn forget, void *arg)
{
    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    p->forget = forget;
    p->forget_arg = arg;
}

void sup_procs_fini(sup_procs *p)
{
    while (p->nw > 0)
        sup_procs_remove(p, p->w[0]);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Starts the process of w. 0, or -1 (then w waits to retry). */
static int spawn(sup_procs *p, sup_worker *w)
{
    const sup_app *a = app_of(p, w);
    sup_argv av;
    char err[256], q[300];
    int ready[2] = {-1, -1};
    if (pipe2(ready, O_CLOEXEC) < 0) {
        snprintf(err, sizeof(err), "ready pipe: %s", strerror(errno));
    } else if (sup_app_argv(p->cfg, w->app, &av, err, sizeof(err)) == 0 &&
               sup_argv_ready(&av, ready[1], err, sizeof(err)) == 0) {
        err[0] = '\0';
    }
    if (err[0] != '\0') {
        util_log(UTIL_ERROR, "cannot start", "worker=%s.%d err=%s", a->name, w->index,
                 util_logq(q, sizeof(q), err));
        close_fd(&ready[0]);
        close_fd(&ready[1]);
        return -1;
    }
    /* If the master dies, its workers drain and leave too. */
    util_spawn_cfg sc = {.deathsig = SIGTERM, .stderr_to_pipe = 1,
                         .pass_fd = {w->app == SUP_GATEWAY ? p->cfg->http_fd : -1, ready[1]}};
    int out = -1;
    pid_t pid = util_spawn(av.argv, &sc, &out, NULL);
    /* Only the child holds the write end now: its exit is our end of file. */
    close_fd(&ready[1]);
    if (pid < 0) {
        close_fd(&ready[0]);
        return -1;
    }
    fcntl(out, F_SETFL, O_NONBLOCK);
    fcntl(ready[0], F_SETFL, O_NONBLOCK);
    close_fd(&w->ready_fd);
    w->pid = pid;
    w->out_fd = out;
    w->ready_fd = ready[0];
    w->ready_len = 0;
    w->ready_eof_ms = 0;
    w->state = SUP_W_STARTING;
    w->started_ms = rpc_now_ms();
    w->ready_ms = 0;
    w->linelen = 0;
    w->advertised[0] = '\0';
    w->last[0] = '\0';
    rpc_backoff_up(&w->bo, w->started_ms);
    util_log(UTIL_INFO, "started", "worker=%s.%d worker_pid=%d", a->name, w->index, (int)pid);
    return 0;
}

sup_worker *sup_procs_add(sup_procs *p, int app, int index)
{
    if (p->nw >= SUP_MAX_PROCS)
        return NULL;
    sup_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->app = app;
    w->index = index;
    w->out_fd = -1;
    w->ready_fd = -1;
    w->last_exit = -1;
    rpc_backoff_init(&w->bo, &p->cfg->policy.restart, NULL, NULL);
    rpc_backoff_next(&w->bo); /* the first start is at once */
    p->w[p->nw++] = w;
    if (spawn(p, w) < 0) {
        w->state = SUP_W_BACKOFF;
        w->next_start_ms = rpc_now_ms() + p->cfg->policy.retry_spawn_ms;
    }
    return w;
}

void sup_procs_remove(sup_procs *p, sup_worker *w)
{
    for (int i = 0; i < p->nw; i++) {
        if (p->w[i] == w) {
            p->w[i] = p->w[--p->nw];
            break;
        }
    }
    if (p->forget != NULL)
        p->forget(p->forget_arg, w);
    close_fd(&w->out_fd);
    close_fd(&w->ready_fd);
    free(w);
}

sup_worker *sup_procs_find(sup_procs *p, int app, int index, int retiring)
{
    for (int i = 0; i < p->nw; i++)
        if (p->w[i]->app == app && p->w[i]->index == index && p->w[i]->retire == retiring)
            return p->w[i];
    return NULL;
}

void sup_procs_stop(sup_worker *w)
{
    w->retire = 1;
    if (w->pid > 0 && w->state != SUP_W_STOPPING) {
        kill(w->pid, SIGTERM);
        w->state = SUP_W_STOPPING;
        w->stop_ms = rpc_now_ms();
    }
}

/* One complete line of w's output: written to our log as one of ours with
 * worker=APP.N in it (util_log_relay). */
static void on_line(const sup_procs *p, sup_worker *w)
{
    char name[48];
    w->line[w->linelen] = '\0';
    util_log_relay(w->line, w->linelen, "worker", sup_worker_name(p, w, name, sizeof(name)));
    w->linelen = 0;
}

void sup_procs_pump(sup_procs *p, sup_worker *w)
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
            if (buf[i] == '\n' && w->linelen > 0) /* kept for a failure's reason */
                snprintf(w->last, sizeof(w->last), "%.*s", (int)w->linelen, w->line);
            if (buf[i] == '\n')
                on_line(p, w);
            else if (w->linelen < sizeof(w->line) - 1)
                w->line[w->linelen++] = buf[i];
            /* else: an over-long line is cut */
        }
    }
}

static void tell(sup_procs *p, const sup_worker *w, sup_event ev)
{
    if (p->event != NULL)
        p->event(p->forget_arg, w, ev);
}

/* A starting worker that will not say "ready": SIGTERM (SIGKILL follows
 * after the drain time: sup_procs_kill_overdue); its exit is restarted as a
 * failed start, and ps shows why until one of its starts is ready. */
static void not_ready(sup_procs *p, sup_worker *w, const char *why)
{
    char q[sizeof(w->reason) + 64];
    siginfo_t si = {0};
    if (w->state != SUP_W_STARTING || w->pid <= 0)
        return;
    /* Exited already (its pipe's end came with its exit): the exit, reaped
     * next, says more than this would. */
    if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0)
        return;
    snprintf(w->reason, sizeof(w->reason), "not ready: %s", why);
    util_log(UTIL_ERROR, "not ready", "worker=%s.%d worker_pid=%d action=stop reason=%s",
             app_of(p, w)->name, w->index, (int)w->pid, util_logq(q, sizeof(q), w->reason));
    kill(w->pid, SIGTERM);
    w->state = SUP_W_STOPPING;
    w->stop_ms = rpc_now_ms();
}

void sup_procs_ready(sup_procs *p, sup_worker *w)
{
    char buf[UTIL_READY_LINE_MAX];
    for (;;) {
        ssize_t r = read(w->ready_fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) { /* end of file without the line: never ready */
            close_fd(&w->ready_fd);
            /* Most often it is exiting (its descriptors close before it
             * can be reaped): sup_procs_restart_due stops it only if it
             * is still there a moment later. */
            if (w->state == SUP_W_STARTING)
                w->ready_eof_ms = rpc_now_ms();
            return;
        }
        char *nl = memchr(buf, '\n', (size_t)r);
        size_t take = (size_t)(nl != NULL ? nl - buf : r);
        if (take > sizeof(w->ready_line) - w->ready_len)
            take = sizeof(w->ready_line) - w->ready_len; /* an over-long line is cut */
        memcpy(w->ready_line + w->ready_len, buf, take);
        w->ready_len += take;
        if (nl == NULL)
            continue;
        close_fd(&w->ready_fd); /* one line is all it says */
        if (w->state != SUP_W_STARTING)
            return;
        if (!util_ready_parse(w->ready_line, w->ready_len, w->advertised,
                              sizeof(w->advertised))) {
            char why[sizeof(w->ready_line) + 64];
            snprintf(why, sizeof(why), "its ready pipe said \"%.*s\", not a \"ready\" line",
                     (int)w->ready_len, w->ready_line);
            not_ready(p, w, why);
            return;
        }
        w->state = SUP_W_RUNNING;
        w->ready_ms = rpc_now_ms();
        w->reason[0] = '\0';
        tell(p, w, SUP_EV_READY);
        return;
    }
}

/* Exit 2 before ready: w is failed, and stays so until sup_procs_retry. */
static void fail(sup_procs *p, sup_worker *w, int code)
{
    char q[sizeof(w->reason) + 64];
    snprintf(w->reason, sizeof(w->reason), "exit %d before ready: %s", code,
             w->last[0] != '\0' ? w->last : "(it printed nothing)");
    w->state = SUP_W_FAILED;
    util_log(UTIL_ERROR, "failed", "worker=%s.%d exit=%d restart=no reason=%s",
             app_of(p, w)->name, w->index, code, util_logq(q, sizeof(q), w->reason));
    tell(p, w, SUP_EV_FAILED);
}

int sup_procs_retry(sup_procs *p, sup_worker *w)
{
    if (w->state != SUP_W_FAILED)
        return 0;
    util_log(UTIL_INFO, "retrying", "worker=%s.%d after=failed", app_of(p, w)->name,
             w->index);
    rpc_backoff_init(&w->bo, &p->cfg->policy.restart, NULL, NULL);
    rpc_backoff_next(&w->bo); /* at once, as a first start */
    w->quick_failures = 0;
    w->reason[0] = '\0'; /* asked again: the old reason may no longer hold */
    if (spawn(p, w) < 0) {
        w->state = SUP_W_BACKOFF;
        w->next_start_ms = rpc_now_ms() + p->cfg->policy.retry_spawn_ms;
        return -1;
    }
    return 0;
}

static void on_exit_status(sup_procs *p, sup_worker *w, int status)
{
    const sup_app *a = app_of(p, w);
    const sup_policy *pol = &p->cfg->policy;
    int64_t now = rpc_now_ms();
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (w->out_fd >= 0)
        sup_procs_pump(p, w);
    if (w->linelen > 0) /* its last words may lack a newline */
        snprintf(w->last, sizeof(w->last), "%.*s", (int)w->linelen, w->line);
    w->pid = 0; /* reaped: its pid may be another process's now */
    if (w->ready_fd >= 0) /* a line written just before it exited counts */
        sup_procs_ready(p, w);
    w->last_exit = code;
    close_fd(&w->out_fd);
    close_fd(&w->ready_fd);
    if (w->retire || p->stopping) {
        util_log(UTIL_INFO, "stopped", "worker=%s.%d exit=%d", a->name, w->index, code);
        tell(p, w, SUP_EV_STOPPED);
        sup_procs_remove(p, w);
        return;
    }
    if (code == SUP_EXIT_USAGE && w->ready_ms == 0) {
        fail(p, w, code);
        return;
    }
    rpc_backoff_down(&w->bo, now);
    int healthy = w->ready_ms != 0 && now - w->started_ms >= pol->healthy_ms;
    w->quick_failures = healthy ? 0 : w->quick_failures + 1;
    int64_t delay = rpc_backoff_next(&w->bo);
    if (delay == 0)
        delay = rpc_backoff_next(&w->bo); /* after a reset: the initial step */
    w->restarts++;
    w->state = SUP_W_BACKOFF;
    w->next_start_ms = now + delay;
    int looping = w->quick_failures >= (unsigned)pol->crashloop_after;
    util_log(looping ? UTIL_ERROR : UTIL_WARN, "exited",
             "worker=%s.%d exit=%d restart_in_ms=%lld restarts=%u%s", a->name, w->index, code,
             (long long)delay, w->restarts, looping ? " crash_looping=true" : "");
}

void sup_procs_reap(sup_procs *p)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < p->nw; i++) {
            if (p->w[i]->pid == pid) {
                on_exit_status(p, p->w[i], status);
                break;
            }
        }
    }
}

void sup_procs_restart_due(sup_procs *p)
{
    int64_t now = rpc_now_ms();
    char why[64];
    for (int i = 0; i < p->nw; i++) {
        sup_worker *w = p->w[i];
        if (w->state == SUP_W_STARTING && !w->retire && w->ready_eof_ms != 0 &&
            now - w->ready_eof_ms > SUP_READY_EOF_GRACE_MS) {
            not_ready(p, w, "its ready pipe closed without a \"ready\" line");
        } else if (w->state == SUP_W_STARTING && !w->retire &&
                   now - w->started_ms > p->cfg->policy.ready_timeout_ms) {
            snprintf(why, sizeof(why), "no \"ready\" within %ld ms",
                     p->cfg->policy.ready_timeout_ms);
            not_ready(p, w, why);
        }
        if (w->state == SUP_W_BACKOFF && !w->retire && now >= w->next_start_ms &&
            spawn(p, w) < 0)
            w->next_start_ms = now + p->cfg->policy.retry_spawn_ms;
    }
}

void sup_procs_kill_overdue(sup_procs *p)
{
    int64_t now = rpc_now_ms();
    int64_t kill_after = p->cfg->drain_ms + p->cfg->policy.kill_grace_ms;
    for (int i = 0; i < p->nw; i++) {
        sup_worker *w = p->w[i];
        if (w->pid > 0 && w->state == SUP_W_STOPPING && now - w->stop_ms > kill_after) {
            util_log(UTIL_WARN, "killing", "worker=%s.%d worker_pid=%d after_ms=%lld",
                     app_of(p, w)->name, w->index, (int)w->pid, (long long)(now - w->stop_ms));
            kill(w->pid, SIGKILL);
            w->stop_ms = now; /* once */
        }
    }
}

void sup_procs_reconcile(sup_procs *p)
{
    if (p->stopping)
        return;
    for (int a = 0; a < SUP_NAPPS; a++) {
        int n = p->cfg->apps[a].run ? p->cfg->apps[a].workers : 0;
        for (int i = 0; i < p->nw; i++) {
            sup_worker *w = p->w[i];
            if (w->app == a && !w->retire && w->index > n) {
                util_log(UTIL_INFO, "scaling down", "worker=%s.%d", p->cfg->apps[a].name,
                         w->index);
                if (w->pid > 0)
                    sup_procs_stop(w);
                else
                    w->retire = 1, w->state = SUP_W_STOPPING; /* waiting to restart: drop */
            }
        }
        for (int i = p->nw - 1; i >= 0; i--)
            if (p->w[i]->retire && p->w[i]->pid == 0)
                sup_procs_remove(p, p->w[i]);
        for (int idx = 1; idx <= n; idx++)
            if (sup_procs_find(p, a, idx, 0) == NULL)
                sup_procs_add(p, a, idx);
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

void sup_procs_check_memory(sup_procs *p, sup_over_fn over, void *arg)
{
    int64_t now = rpc_now_ms();
    if (now - p->last_memory_ms < p->cfg->policy.memory_check_ms)
        return;
    p->last_memory_ms = now;
    for (int i = 0; i < p->nw; i++) {
        sup_worker *w = p->w[i];
        w->rss = w->pid > 0 ? rss_of(w->pid) : 0;
        const sup_app *a = app_of(p, w);
        if (a->max_memory > 0 && w->state == SUP_W_RUNNING && !w->retire &&
            w->rss > a->max_memory)
            over(arg, w);
    }
}

const char *sup_procs_state_name(const sup_procs *p, const sup_worker *w)
{
    if (w->state == SUP_W_BACKOFF &&
        w->quick_failures >= (unsigned)p->cfg->policy.crashloop_after)
        return "crash-looping";
    if (w->retire && w->state != SUP_W_STOPPING)
        return "replaced";
    return state_names[w->state];
}

/* s as a JSON string; a worker's line cut inside a UTF-8 sequence (or not
 * UTF-8 at all) has its other bytes shown as '?'. */
static json_t *text_json(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char ascii[512];
    size_t i = 0;
    for (; s[i] != '\0' && i < sizeof(ascii) - 1; i++)
        ascii[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    ascii[i] = '\0';
    return json_string(ascii);
}

static json_t *worker_json(const sup_procs *p, const sup_worker *w, const char *db,
                           int64_t now)
{
    /* null, not 0 or -1, for what there is none of: no process now, no
     * exit yet. */
    int up = w->pid > 0;
    json_t *o = json_pack("{s:s,s:i,s:o,s:s,s:o,s:i,s:o,s:o}", "app", app_of(p, w)->name,
                          "worker", w->index, "pid", up ? json_integer(w->pid) : json_null(),
                          "state", sup_procs_state_name(p, w), "uptime_ms",
                          up ? json_integer(now - w->started_ms) : json_null(), "restarts",
                          (int)w->restarts, "rss_bytes",
                          up && w->rss > 0 ? json_integer(w->rss) : json_null(), "last_exit",
                          w->last_exit >= 0 ? json_integer(w->last_exit) : json_null());
    json_object_set_new(o, "reason", w->reason[0] != '\0' ? text_json(w->reason) : json_null());
    if (w->app != SUP_GATEWAY) {
        json_object_set_new(o, "db", db != NULL ? json_string(db) : json_null());
        json_object_set_new(o, "advertised",
                            w->advertised[0] ? json_string(w->advertised) : json_null());
    }
    return o;
}

json_t *sup_procs_json(const sup_procs *p)
{
    json_t *arr = json_array();
    int64_t now = rpc_now_ms();
    for (int a = 0; a < SUP_NAPPS; a++) {
        char db[SUP_DB_MAX + 64], err[1200];
        int known = a != SUP_GATEWAY &&
                    sup_app_store(p->cfg, a, db, sizeof(db), err, sizeof(err)) == 0;
        for (int i = 0; i < p->nw; i++)
            if (p->w[i]->app == a)
                json_array_append_new(arr, worker_json(p, p->w[i], known ? db : NULL, now));
    }
    return json_pack("{s:b,s:o}", "ok", 1, "workers", arr);
}
