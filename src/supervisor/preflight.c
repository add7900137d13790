#include "supervisor/preflight.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "rpc/tls.h"
#include "util/protect.h"
#include "util/spawn.h"

/* Which apps listen at all: a service scaled to 0 workers binds nothing
 * (its address is still what the gateway dials, so it must parse). An app
 * that does not run here binds nothing either, and its address is not
 * ours to parse: it is the gateway's bootstrap list (the gateway checks it). */
static int listens(const sup_config *c, int a)
{
    return c->apps[a].run && (a == SUP_GATEWAY || c->apps[a].workers > 0);
}

static int check_addresses(const sup_config *c, char *err, size_t errlen)
{
    struct sockaddr_in sa[SUP_NAPPS];
    char why[RPC_ERRLEN];
    for (int a = 0; a < SUP_NAPPS; a++) {
        const sup_app *app = &c->apps[a];
        if (!app->run)
            continue;
        if (rpc_addr_parse(app->listen, &sa[a], why) < 0) {
            snprintf(err, errlen, "%s listen: %s", app->name, why);
            return -1;
        }
        if (sa[a].sin_port == 0) {
            snprintf(err, errlen, "%s listen \"%s\": needs a fixed port (workers share it and "
                     "the gateway dials it)", app->name, app->listen);
            return -1;
        }
        for (int b = 0; b < a; b++) {
            if (c->apps[b].run && sa[b].sin_port == sa[a].sin_port) {
                snprintf(err, errlen, "%s and %s both listen on port %u", c->apps[b].name,
                         app->name, (unsigned)ntohs(sa[a].sin_port));
                return -1;
            }
        }
    }
    for (int a = 0; a < SUP_NAPPS; a++) {
        if (!listens(c, a))
            continue;
        /* SO_REUSEADDR so that connections of an earlier run still in
         * TIME_WAIT do not count; a listener does. */
        int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            return -1;
        }
        int rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (rc == 0)
            rc = bind(fd, (struct sockaddr *)&sa[a], sizeof(sa[a]));
        int e = errno;
        close(fd);
        if (rc < 0) {
            snprintf(err, errlen, "%s cannot listen on %s: %s%s", c->apps[a].name,
                     c->apps[a].listen, strerror(e),
                     e == EADDRINUSE ? " (another program, or another tcpops, holds the port;"
                                       " `ss -ltnp` shows which)"
                                     : "");
            return -1;
        }
    }
    return 0;
}

/* Runs argv with TCPOPS_CHECK_FLAGS=1 and waits for it. 0 when it exited 0;
 * else -1 with why filled from the first line of its stderr. */
static int run_check(char *const argv[], char *why, size_t whylen)
{
    util_spawn_cfg sc = {.deathsig = SIGKILL};
    int out = -1, errfd = -1, rc = -1, status = 0;
    char text[2048];
    size_t got = 0;
    setenv("TCPOPS_CHECK_FLAGS", "1", 1);
    pid_t pid = util_spawn(argv, &sc, &out, &errfd);
    unsetenv("TCPOPS_CHECK_FLAGS");
    if (pid < 0) {
        snprintf(why, whylen, "cannot run %s: %s", argv[0], strerror(errno));
        return -1;
    }
    /* Read both pipes to their end so a chatty child never blocks. */
    int64_t deadline = rpc_now_ms() + SUP_CHECK_TIMEOUT_MS;
    struct pollfd pf[2] = {{.fd = out, .events = POLLIN}, {.fd = errfd, .events = POLLIN}};
    while ((pf[0].fd >= 0 || pf[1].fd >= 0) && rpc_now_ms() < deadline) {
        if (poll(pf, 2, (int)(deadline - rpc_now_ms())) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || pf[i].revents == 0)
                continue;
            char sink[4096];
            char *dst = i == 1 && got < sizeof(text) - 1 ? text + got : sink;
            size_t cap = i == 1 && got < sizeof(text) - 1 ? sizeof(text) - 1 - got : sizeof(sink);
            ssize_t r = read(pf[i].fd, dst, cap);
            if (r > 0 && dst != sink)
                got += (size_t)r;
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
                close(pf[i].fd);
                pf[i].fd = -1;
            }
        }
    }
    int finished = pf[0].fd < 0 && pf[1].fd < 0;
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    if (!finished)
        kill(pid, SIGKILL); /* it did not stop after parsing: it must not serve */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    text[got] = '\0';
    if (!finished) {
        snprintf(why, whylen, "%s did not exit after checking its flags", argv[0]);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = 0;
    } else {
        char *nl = strchr(text, '\n');
        if (nl != NULL)
            *nl = '\0';
        snprintf(why, whylen, "%.400s", text[0] ? text : "its flags do not parse");
    }
    return rc;
}

/* A service's --db must be one it accepts (its own parser, through
 * sup_app_store), and two services never share one SQLite file (each
 * numbers its migrations in the file's one user_version); --advertise is a
 * HOST alone, since every worker adds its own member port. */
static int check_stores(const sup_config *c, char *err, size_t errlen)
{
    char db[SUP_NAPPS][SUP_DB_MAX + 64];
    for (int a = 0; a < SUP_NAPPS; a++) {
        db[a][0] = '\0';
        if (a == SUP_GATEWAY || !c->apps[a].run)
            continue;
        if (sup_app_store(c, a, db[a], sizeof(db[a]), err, errlen) < 0)
            return -1;
        for (int b = 0; b < a; b++) {
            if (strncmp(db[a], "sqlite:", 7) == 0 && strcmp(db[a], db[b]) == 0) {
                snprintf(err, errlen, "%s and %s would share the SQLite file %s: give each its "
                         "own ([%s] db and [%s] db in the config file)", c->apps[b].name,
                         c->apps[a].name, db[a] + 7, c->apps[b].name, c->apps[a].name);
                return -1;
            }
        }
        const char *adv = sup_app_advertise(c, a);
        if (strpbrk(adv, ": \t\n,") != NULL) {
            snprintf(err, errlen, "%s advertise \"%s\": expected a HOST alone (each worker "
                     "advertises HOST plus its own member port)", c->apps[a].name, adv);
            return -1;
        }
    }
    return 0;
}

static int check_args(const sup_config *c, char *err, size_t errlen)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        sup_argv av;
        char why[512];
        if (!c->apps[a].run)
            continue;
        if (sup_app_argv(c, a, &av, err, errlen) < 0)
            return -1;
        if (run_check(av.argv, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s args \"%.200s\": %s", c->apps[a].name, c->apps[a].args, why);
            return -1;
        }
    }
    return 0;
}

/* The TLS files: all three or none, and readable as credentials (the
 * programs would read the same files; a worker's flag check does not). */
static int check_tls(const sup_config *c, char *err, size_t errlen)
{
    rpc_tls_files f = {c->tls_cert[0] ? c->tls_cert : NULL, c->tls_key[0] ? c->tls_key : NULL,
                       c->tls_ca[0] ? c->tls_ca : NULL};
    char why[RPC_ERRLEN];
    rpc_tls *t = NULL;
    int given = rpc_tls_files_check(&f, why);
    if (given == 1 && rpc_tls_new(&t, RPC_TLS_SERVER, &f, why) == 0)
        rpc_tls_free(t);
    else if (given != 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    return 0;
}

/* Protected mode (util/protect.h) for each address an app binds here: the
 * workers would refuse to start (exit 2, over and over), so up refuses
 * first, naming its own flags. */
static int check_protected(const sup_config *c, char *err, size_t errlen)
{
    for (int a = 0; a < SUP_NAPPS; a++) {
        char what[64];
        if (!listens(c, a))
            continue;
        snprintf(what, sizeof(what), "%s listen", c->apps[a].name);
        int secure = a == SUP_GATEWAY ? c->apps[a].https_cert[0] != '\0'
                                      : c->tls_cert[0] != '\0';
        const char *add = a == SUP_GATEWAY ? UTIL_PROTECT_HTTPS_FLAGS : UTIL_PROTECT_TLS_FLAGS;
        if (util_protect_check(what, c->apps[a].listen, secure, c->insecure, add, err,
                               errlen) < 0)
            return -1;
    }
    return 0;
}

int sup_preflight(const sup_config *c, char *err, size_t errlen)
{
    if (check_addresses(c, err, errlen) < 0 || check_tls(c, err, errlen) < 0 ||
        check_protected(c, err, errlen) < 0 || check_stores(c, err, errlen) < 0 ||
        check_args(c, err, errlen) < 0)
        return -1;
    return 0;
}

int sup_http_listen(sup_config *c, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    char why[RPC_ERRLEN];
    const sup_app *gw = &c->apps[SUP_GATEWAY];
    if (!gw->run)
        return 0;
    if (rpc_addr_parse(gw->listen, &sa, why) < 0) {
        snprintf(err, errlen, "gateway listen: %s", why);
        return -1;
    }
    /* The backlog civetweb would use (listen_backlog). */
    int fd = rpc_sock_listen(&sa, 0, 1024, why);
    if (fd < 0) {
        snprintf(err, errlen, "gateway cannot listen on %s: %s", gw->listen, why);
        return -1;
    }
    c->http_fd = fd;
    return 0;
}
