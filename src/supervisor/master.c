/*
 * The master's life:
 *
 *   reconcile: for each app, start the workers missing from 1..N and stop
 *              those above N (scale) -- procs.c;
 *   a worker that does not say it is ready (in time) is stopped, and its
 *              exit is restarted as any failed start -- procs.c;
 *   a child exits: if it was meant to stop, forget it; if it exited 2 (a
 *              usage error) before it was ready, it failed: no restart until
 *              a scale or restart asks; else restart it with backoff and
 *              call it crash-looping after quick failures in a row -- procs.c;
 *   a roll (restart APP, or a worker over its memory limit): per worker,
 *              start the replacement, wait until it is ready, let the
 *              gateway see it, then stop the old one -- roll.c;
 *   requests on the control socket (ps, scale, restart, down) -- read and
 *              answered by ctlserver.c, carried out here; the client of a
 *              long one is sent a progress line per worker as it is done;
 *   shutdown:  SIGTERM the gateway, then the services; SIGKILL whatever is
 *              left after the drain time.
 *
 * The timers and limits are cfg->policy (sup_config_default).
 */
#include "supervisor/master.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "supervisor/ctlserver.h"
#include "supervisor/procs.h"
#include "supervisor/roll.h"
#include "util/log.h"

typedef enum shutdown_phase {
    RUNNING,           /* serving */
    STOPPING_GATEWAY,  /* the gateway was sent SIGTERM */
    STOPPING_SERVICES, /* every worker was sent SIGTERM */
} shutdown_phase;

typedef struct master {
    sup_config cfg;
    sup_procs procs;
    sup_roll rolls[SUP_NAPPS];
    int scale_fd[SUP_NAPPS];  /* client waiting for a scale to settle, -1 none */
    int scale_was[SUP_NAPPS]; /* its workers before the scale */
    int64_t scale_deadline[SUP_NAPPS];
    sup_ctlserver ctl;
    int sig_fd;
    shutdown_phase shutting_down;
    int64_t shutdown_ms;
    int down_fd;              /* `tcpops down` waiting for the end, -1 none */
    int stopped;              /* workers stopped by the shutdown so far */
} master;

/* ---- rolls and scale ---- */

static void forget_in_rolls(void *arg, const sup_worker *w)
{
    master *m = arg;
    for (int a = 0; a < SUP_NAPPS; a++)
        sup_roll_forget(&m->rolls[a], w);
}

/* A roll finished one worker: its client hears of it. */
static void roll_note(void *arg, const sup_roll *r, const char *line)
{
    master *m = arg;
    sup_ctlserver_progress(&m->ctl, r->client_fd, line);
}

static void step_rolls(master *m)
{
    int64_t now = rpc_now_ms();
    for (int a = 0; a < SUP_NAPPS; a++) {
        sup_roll *r = &m->rolls[a];
        if (!sup_roll_step(r, &m->procs, a, now))
            continue;
        sup_ctlserver_answer(&m->ctl, r->client_fd,
                             r->failed ? json_pack("{s:b,s:s,s:i}", "ok", 0, "error", r->why,
                                                   "restarted", r->done)
                                       : json_pack("{s:b,s:s,s:i}", "ok", 1, "app",
                                                   m->cfg.apps[a].name, "restarted", r->done));
    }
}

/* What happened to w, told as a progress line to whoever waits on it: a
 * scale of its app (a worker ready or gone), or `tcpops down` (each worker
 * stopped). A roll tells its own (roll_note). */
static void on_event(void *arg, const sup_worker *w, sup_event ev)
{
    master *m = arg;
    char line[160], code[24] = "";
    const char *name = m->cfg.apps[w->app].name;
    if (ev == SUP_EV_STOPPED && m->shutting_down != RUNNING) {
        m->stopped++;
        if (w->last_exit != 0)
            snprintf(code, sizeof(code), " (exit %d)", w->last_exit);
        snprintf(line, sizeof(line), "%s.%d: stopped%s", name, w->index, code);
        sup_ctlserver_progress(&m->ctl, m->down_fd, line);
        return;
    }
    if (m->scale_fd[w->app] < 0)
        return;
    if (ev == SUP_EV_READY && !w->retire)
        snprintf(line, sizeof(line), "%s.%d: ready as pid %d (in %lld ms)", name, w->index,
                 (int)w->pid, (long long)(w->ready_ms - w->started_ms));
    else if (ev == SUP_EV_STOPPED && w->retire)
        snprintf(line, sizeof(line), "%s.%d: stopped", name, w->index);
    else
        return;
    sup_ctlserver_progress(&m->ctl, m->scale_fd[w->app], line);
}

static void over_memory(void *arg, sup_worker *w)
{
    master *m = arg;
    const sup_app *a = &m->cfg.apps[w->app];
    if (m->rolls[w->app].active)
        return;
    util_log(UTIL_WARN, "memory limit", "worker=%s.%d rss=%ld limit=%ld", a->name, w->index,
             w->rss, a->max_memory);
    sup_roll_start(&m->rolls[w->app], &w->index, 1, -1);
}

/* Answers a scale request once the app has exactly N running workers, or
 * at once when one of them failed (it will not come), or at the deadline. */
static void check_scale(master *m)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->scale_fd[a] < 0)
            continue;
        int running = 0, leaving = 0;
        const sup_worker *failed = NULL;
        for (int i = 0; i < m->procs.nw; i++) {
            const sup_worker *w = m->procs.w[i];
            if (w->app != a)
                continue;
            if (w->retire)
                leaving++;
            else if (w->state == SUP_W_RUNNING)
                running++;
            else if (w->state == SUP_W_FAILED && failed == NULL)
                failed = w;
        }
        const char *name = m->cfg.apps[a].name;
        int done = running == m->cfg.apps[a].workers && leaving == 0;
        json_t *ans = NULL;
        if (done) {
            ans = json_pack("{s:b,s:s,s:i,s:i}", "ok", 1, "app", name, "workers", running,
                            "was", m->scale_was[a]);
        } else if (failed != NULL) {
            char why[sizeof(failed->reason) + 64];
            snprintf(why, sizeof(why), "%s.%d failed: %s", name, failed->index,
                     failed->reason);
            ans = json_pack("{s:b,s:s,s:i}", "ok", 0, "error", why, "running", running);
        } else if (rpc_now_ms() > m->scale_deadline[a]) {
            ans = json_pack("{s:b,s:s,s:i}", "ok", 0, "error", "scale did not settle in time",
                            "running", running);
        }
        if (ans != NULL) {
            sup_ctlserver_answer(&m->ctl, m->scale_fd[a], ans);
            m->scale_fd[a] = -1;
        }
    }
}

/* ---- shutdown ---- */

static void begin_shutdown(master *m)
{
    if (m->shutting_down != RUNNING)
        return;
    util_log(UTIL_INFO, "shutting down", "workers=%d", m->procs.nw);
    m->shutting_down = STOPPING_GATEWAY;
    m->procs.stopping = 1;
    /* Once the gateway has gone, the port refuses instead of queueing. */
    if (m->cfg.http_fd >= 0) {
        close(m->cfg.http_fd);
        m->cfg.http_fd = -1;
    }
    m->shutdown_ms = rpc_now_ms();
    /* The gateway first, so no request arrives for a service that left. */
    for (int i = 0; i < m->procs.nw; i++)
        if (m->procs.w[i]->app == SUP_GATEWAY)
            sup_procs_stop(m->procs.w[i]);
}

static void step_shutdown(master *m)
{
    sup_procs *p = &m->procs;
    int64_t now = rpc_now_ms();
    int64_t kill_after = m->cfg.drain_ms + m->cfg.policy.kill_grace_ms;
    int gateway_left = 0;
    for (int i = 0; i < p->nw; i++)
        gateway_left |= p->w[i]->app == SUP_GATEWAY && p->w[i]->pid > 0;
    if (m->shutting_down == STOPPING_GATEWAY &&
        (!gateway_left || now - m->shutdown_ms > kill_after)) {
        m->shutting_down = STOPPING_SERVICES;
        m->shutdown_ms = now;
        for (int i = 0; i < p->nw; i++)
            sup_procs_stop(p->w[i]);
    }
    /* Waiting to restart: nothing to stop. */
    for (int i = p->nw - 1; i >= 0; i--)
        if (p->w[i]->pid == 0)
            sup_procs_remove(p, p->w[i]);
    sup_procs_kill_overdue(p);
}

/* ---- control requests ---- */

static int handle_scale(master *m, int fd, const char *app, int a, json_t *req)
{
    json_t *jn = json_object_get(req, "workers");
    json_int_t n = json_is_integer(jn) ? json_integer_value(jn) : -1;
    char max[16];
    snprintf(max, sizeof(max), "%d", SUP_MAX_WORKERS);
    if (a < 0) {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("unknown app \"%s\" (people, pets)",
                                                        app ? app : ""));
    } else if (a == SUP_GATEWAY) {
        sup_ctlserver_answer(&m->ctl, fd,
                             sup_ctl_error("%s runs exactly one instance", "the gateway"));
    } else if (!m->cfg.apps[a].run) {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("%s does not run on this host "
                                                        "(tcpops up --apps)", app));
    } else if (n < 0 || n > SUP_MAX_WORKERS) {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("workers must be 0-%s", max));
    } else if (m->scale_fd[a] >= 0 || m->rolls[a].active) {
        sup_ctlserver_answer(&m->ctl, fd,
                             sup_ctl_error("%s is busy with another scale or restart", app));
    } else {
        util_log(UTIL_INFO, "scale", "worker=%s.* from=%d to=%d", app, m->cfg.apps[a].workers,
                 (int)n);
        m->scale_was[a] = m->cfg.apps[a].workers;
        m->cfg.apps[a].workers = (int)n;
        m->scale_fd[a] = fd;
        m->scale_deadline[a] = rpc_now_ms() + m->cfg.policy.ready_timeout_ms + m->cfg.drain_ms;
        sup_procs_reconcile(&m->procs);
        /* Asked for N: a failed one among them gets a fresh start. */
        for (int i = 0; i < m->procs.nw; i++)
            if (m->procs.w[i]->app == a && !m->procs.w[i]->retire)
                sup_procs_retry(&m->procs, m->procs.w[i]);
        return 1;
    }
    return 0;
}

static int handle_restart(master *m, int fd, const char *app, int a)
{
    if (a < 0) {
        sup_ctlserver_answer(&m->ctl, fd,
                             sup_ctl_error("unknown app \"%s\" (gateway, people, pets)",
                                           app ? app : ""));
        return 0;
    }
    if (!m->cfg.apps[a].run) {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("%s does not run on this host "
                                                        "(tcpops up --apps)", app));
        return 0;
    }
    if (m->rolls[a].active || m->scale_fd[a] >= 0) {
        sup_ctlserver_answer(&m->ctl, fd,
                             sup_ctl_error("%s is busy with another scale or restart", app));
        return 0;
    }
    int idx[SUP_MAX_WORKERS], n = 0;
    for (int i = 1; i <= m->cfg.apps[a].workers && n < SUP_MAX_WORKERS; i++)
        idx[n++] = i;
    util_log(UTIL_INFO, "restart", "worker=%s.* workers=%d", app, n);
    sup_roll_start(&m->rolls[a], idx, n, fd);
    return 1;
}

/* One request line from client fd. 1 when its answer is owed for later. */
static int on_request(void *arg, int fd, const char *line)
{
    master *m = arg;
    json_error_t je;
    json_t *req = json_loads(line, 0, &je);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    const char *app = json_string_value(json_object_get(req, "app"));
    int a = app != NULL ? sup_app_index(app) : -1;
    int owed = 0;
    if (json_is_true(json_object_get(req, "progress")))
        sup_ctlserver_want_progress(&m->ctl, fd);
    if (cmd == NULL) {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("bad request: %s",
                                                        req == NULL ? je.text : "no cmd"));
    } else if (strcmp(cmd, "ps") == 0) {
        sup_ctlserver_answer(&m->ctl, fd, sup_procs_json(&m->procs));
    } else if (strcmp(cmd, "scale") == 0) {
        owed = handle_scale(m, fd, app, a, req);
    } else if (strcmp(cmd, "restart") == 0) {
        owed = handle_restart(m, fd, app, a);
    } else if (strcmp(cmd, "down") == 0) {
        m->down_fd = fd;
        owed = 1;
        begin_shutdown(m);
    } else {
        sup_ctlserver_answer(&m->ctl, fd, sup_ctl_error("unknown command \"%s\"", cmd));
    }
    json_decref(req);
    return owed;
}

/* Client fd left before its answer: whatever it waited for goes on. */
static void on_client_gone(void *arg, int fd)
{
    master *m = arg;
    const char *waited = NULL;
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->rolls[a].client_fd == fd)
            m->rolls[a].client_fd = -1, waited = "restart";
        if (m->scale_fd[a] == fd)
            m->scale_fd[a] = -1, waited = "scale";
    }
    if (m->down_fd == fd)
        m->down_fd = -1, waited = "down";
    if (waited != NULL)
        util_log(UTIL_INFO, "control client left", "waiting_for=%s", waited);
}

/* ---- signals ---- */

/* After logrotate moved DIR/tcpops.log away: our stdout and stderr (and so
 * every worker's lines, which we copy there) go to a new file of that name. */
static void reopen_log(master *m)
{
    char path[1100];
    int fd = sup_log_open(m->cfg.data_dir, path, sizeof(path));
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
        sup_procs_reap(&m->procs);
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

/* Every signal whose default would kill the master is taken before the
 * control socket exists, so that no exit leaves the socket file behind:
 * TERM, INT and QUIT stop gracefully; HUP reopens the log (or is logged and
 * ignored); USR1, USR2 and ALRM are logged and ignored. A signalfd, or -1. */
static int take_signals(void)
{
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT,
                               SIGHUP,  SIGUSR1, SIGUSR2, SIGALRM};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* ---- the loop ---- */

/* One poll over the signals, the control socket and the children's output,
 * then whatever is due. */
static void loop_once(master *m)
{
    enum { SIG = 0, CTL = 1, WORKERS = CTL + SUP_CTL_NPOLL };
    /* Two per worker: its output, then its ready pipe. */
    struct pollfd pf[WORKERS + 2 * SUP_MAX_PROCS];
    sup_worker *pw[SUP_MAX_PROCS];
    int nworkers = m->procs.nw;
    pf[SIG] = (struct pollfd){.fd = m->sig_fd, .events = POLLIN};
    sup_ctlserver_pollfds(&m->ctl, &pf[CTL]);
    for (int i = 0; i < nworkers; i++) {
        pw[i] = m->procs.w[i];
        pf[WORKERS + 2 * i] = (struct pollfd){.fd = pw[i]->out_fd, .events = POLLIN};
        pf[WORKERS + 2 * i + 1] = (struct pollfd){.fd = pw[i]->ready_fd, .events = POLLIN};
    }
    poll(pf, (nfds_t)(WORKERS + 2 * nworkers), SUP_TICK_MS);

    /* Output first: the lines a worker printed before it said ready. */
    for (int i = 0; i < nworkers; i++) {
        if (pf[WORKERS + 2 * i].revents && pw[i]->out_fd >= 0)
            sup_procs_pump(&m->procs, pw[i]);
        if (pf[WORKERS + 2 * i + 1].revents && pw[i]->ready_fd >= 0)
            sup_procs_ready(&m->procs, pw[i]);
    }
    if (pf[SIG].revents) {
        struct signalfd_siginfo si;
        while (read(m->sig_fd, &si, sizeof(si)) == sizeof(si))
            on_signal(m, (int)si.ssi_signo);
    }
    sup_ctlserver_on_poll(&m->ctl, &pf[CTL]);

    if (m->shutting_down != RUNNING) {
        step_shutdown(m);
        return;
    }
    sup_procs_reap(&m->procs); /* in case a SIGCHLD raced with the poll */
    sup_procs_restart_due(&m->procs);
    sup_procs_kill_overdue(&m->procs);
    step_rolls(m);
    sup_procs_check_memory(&m->procs, over_memory, m);
    check_scale(m);
}

/* Creates the data dir, takes the signals and opens the control socket.
 * 0, or -1 after logging why. */
static int start(master *m)
{
    char err[1400], q[1500];
    if (mkdir(m->cfg.data_dir, 0755) < 0 && errno != EEXIST) {
        util_log(UTIL_ERROR, "cannot create data dir", "dir=%s err=\"%s\"", m->cfg.data_dir,
                 strerror(errno));
        return -1;
    }
    m->sig_fd = take_signals();
    if (m->sig_fd < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=\"signalfd: %s\"", strerror(errno));
        return -1;
    }
    if (sup_ctlserver_open(&m->ctl, m->cfg.data_dir, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), err));
        return -1;
    }
    return 0;
}

/* One line: what runs here, where, how many, on which store. */
static void log_up(const master *m)
{
    char line[4096] = "", q[4200];
    size_t n = 0;
    for (int a = 0; a < SUP_NAPPS && n < sizeof(line); a++) {
        const sup_config *c = &m->cfg;
        const sup_app *app = &c->apps[a];
        if (!app->run)
            continue;
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s=%s/%d", n ? " " : "",
                              app->name, app->listen, app->workers);
        char db[SUP_DB_MAX + 64], err[1200];
        if (n < sizeof(line) && a != SUP_GATEWAY &&
            sup_app_store(c, a, db, sizeof(db), err, sizeof(err)) == 0)
            n += (size_t)snprintf(line + n, sizeof(line) - n, " %s_db=%s", app->name,
                                  util_logq(q, sizeof(q), db));
    }
    util_log(UTIL_INFO, "up", "data_dir=%s %s control=%s", m->cfg.data_dir, line, m->ctl.path);
}

/* Anyone still waiting gets an answer before the socket goes; then every
 * descriptor is closed. */
static void finish(master *m)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (m->rolls[a].active)
            sup_ctlserver_answer(&m->ctl, m->rolls[a].client_fd,
                                 sup_ctl_error("interrupted by %s", "shutdown"));
        if (m->scale_fd[a] >= 0)
            sup_ctlserver_answer(&m->ctl, m->scale_fd[a],
                                 sup_ctl_error("interrupted by %s", "shutdown"));
    }
    if (m->down_fd >= 0)
        sup_ctlserver_answer(&m->ctl, m->down_fd,
                             json_pack("{s:b,s:i}", "ok", 1, "stopped", m->stopped));
    sup_ctlserver_close(&m->ctl);
    if (m->sig_fd >= 0)
        close(m->sig_fd);
    if (m->cfg.http_fd >= 0)
        close(m->cfg.http_fd);
    sup_procs_fini(&m->procs);
}

int sup_master_run(const sup_config *cfg)
{
    master *m = calloc(1, sizeof(*m));
    int rc = 1;
    if (m == NULL)
        return 1;
    m->cfg = *cfg;
    m->sig_fd = -1;
    m->down_fd = -1;
    sup_procs_init(&m->procs, &m->cfg, forget_in_rolls, m);
    m->procs.event = on_event;
    sup_ctlserver_init(&m->ctl, on_request, on_client_gone, m);
    for (int a = 0; a < SUP_NAPPS; a++) {
        m->scale_fd[a] = -1;
        sup_roll_init(&m->rolls[a]);
        m->rolls[a].note = roll_note;
        m->rolls[a].note_arg = m;
    }
    if (start(m) < 0)
        goto out;
    log_up(m);
    sup_procs_reconcile(&m->procs);
    while (!(m->shutting_down != RUNNING && m->procs.nw == 0))
        loop_once(m);
    util_log(UTIL_INFO, "down", NULL);
    rc = 0;
out:
    finish(m);
    free(m);
    return rc;
}
