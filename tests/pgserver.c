/* A real PostgreSQL server for tests (pgserver.h). */
#include "pgserver.h"

#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

#define MAX_SERVERS 8
#define CMD_MS 60000

static pgserver *live[MAX_SERVERS];

/* The path of program prog found in PATH or the system directories (the
 * spawner does not search PATH); prog itself when none has it. */
static const char *which(const char *prog, char *buf, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
             path != NULL ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, len, "%s/%s", d, prog);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    snprintf(buf, len, "%s", prog);
    return buf;
}

/* The directory of PostgreSQL's server programs into out. 0 or -1. */
static int find_bindir(char *out, size_t len)
{
    char prog[512], o[512], e[512];
    char *argv[] = {(char *)which("pg_config", prog, sizeof(prog)), "--bindir", NULL};
    if (proc_run(argv, o, sizeof(o), e, sizeof(e), 10000) == 0) {
        o[strcspn(o, "\n")] = '\0';
        snprintf(out, len, "%.*s", (int)(len - 1), o);
        char initdb[600];
        snprintf(initdb, sizeof(initdb), "%s/initdb", out);
        if (access(initdb, X_OK) == 0)
            return 0;
    }
    /* Debian: /usr/lib/postgresql/N/bin, the newest N. */
    DIR *d = opendir("/usr/lib/postgresql");
    int best = -1;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        int v = atoi(de->d_name);
        char initdb[300];
        snprintf(initdb, sizeof(initdb), "/usr/lib/postgresql/%d/bin/initdb", v);
        if (v > best && access(initdb, X_OK) == 0)
            best = v;
    }
    if (d != NULL)
        closedir(d);
    if (best < 0)
        return -1;
    snprintf(out, len, "/usr/lib/postgresql/%d/bin", best);
    return 0;
}

int pgserver_available(char *why, size_t len)
{
    char bindir[256];
    if (find_bindir(bindir, sizeof(bindir)) < 0) {
        snprintf(why, len, "PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
                 "run scripts/deps.sh");
        return 0;
    }
    if (geteuid() == 0 && getpwnam("postgres") == NULL) {
        snprintf(why, len, "running as root and there is no \"postgres\" user to run "
                 "PostgreSQL as");
        return 0;
    }
    return 1;
}

/* Puts `ip netns exec NS` into argv when pg runs in a namespace; how many
 * arguments that took. */
static int in_netns(const pgserver *pg, char **argv, char *ip, size_t iplen)
{
    if (pg->netns[0] == '\0')
        return 0;
    argv[0] = (char *)which("ip", ip, iplen);
    argv[1] = "netns";
    argv[2] = "exec";
    argv[3] = (char *)pg->netns;
    return 4;
}

/* Runs bindir/prog with args (NULL-terminated, at most 12) as the server's
 * user. Its output in out. The exit code, or -1. */
static int run_pg(const pgserver *pg, const char *prog, char *out, size_t outlen,
                  const char *const *args)
{
    char path[400], err[2048], runuser[512], ip[512];
    char *argv[24];
    int n = 0;
    snprintf(path, sizeof(path), "%s/%s", pg->bindir, prog);
    n = in_netns(pg, argv, ip, sizeof(ip));
    if (geteuid() == 0) {
        argv[n++] = (char *)which("runuser", runuser, sizeof(runuser));
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    argv[n++] = path;
    for (int i = 0; args[i] != NULL && n < 23; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    int rc = proc_run(argv, out, outlen, err, sizeof(err), CMD_MS);
    if (rc != 0) {
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%s", err);
    }
    return rc;
}

static int pg_ctl(pgserver *pg, const char *action, char *err, size_t errlen)
{
    char data[300], log[300], opts[400], out[4096];
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    snprintf(log, sizeof(log), "%s/log", pg->dir);
    snprintf(opts, sizeof(opts), "-p %d -k %s -c listen_addresses=%s", pg->port, pg->dir,
             pg->listen[0] ? pg->listen : "127.0.0.1");
    const char *stop[] = {"stop", "-D", data, "-m", "fast", "-w", NULL};
    const char *start[] = {action, "-D", data, "-o", opts, "-l", log, "-w", "-t", "60",
                           "-m", "fast", NULL};
    if (strcmp(action, "start") == 0)
        start[10] = NULL; /* -m is for stop and restart only */
    int rc = run_pg(pg, "pg_ctl", out, sizeof(out), strcmp(action, "stop") == 0 ? stop : start);
    if (rc != 0) {
        snprintf(err, errlen, "pg_ctl %s: exit %d: %s", action, rc, out);
        return -1;
    }
    pg->running = strcmp(action, "stop") != 0;
    return 0;
}

static void stop_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (live[i] != NULL)
            pgserver_destroy(live[i]);
}

/* Lets the test network of netns.h in: pg_hba trusts 198.18.0.0/15. */
static int trust_test_net(const pgserver *pg, char *err, size_t errlen)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/data/pg_hba.conf", pg->dir);
    FILE *f = fopen(path, "a");
    if (f == NULL || fputs("host all all 198.18.0.0/15 trust\n", f) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int pgserver_start(pgserver *pg, char *err, size_t errlen)
{
    return pgserver_start_in(pg, NULL, NULL, err, errlen);
}

int pgserver_start_in(pgserver *pg, const char *netns, const char *listen, char *err,
                      size_t errlen)
{
    static int registered;
    char out[4096];
    memset(pg, 0, sizeof(*pg));
    snprintf(pg->netns, sizeof(pg->netns), "%s", netns != NULL ? netns : "");
    snprintf(pg->listen, sizeof(pg->listen), "%s", listen != NULL ? listen : "");
    if (find_bindir(pg->bindir, sizeof(pg->bindir)) < 0) {
        snprintf(err, errlen, "PostgreSQL's server programs are not installed");
        return -1;
    }
    if (make_temp_dir(pg->dir, sizeof(pg->dir)) < 0) {
        snprintf(err, errlen, "cannot make a temporary directory: %s", strerror(errno));
        return -1;
    }
    struct passwd *pw = geteuid() == 0 ? getpwnam("postgres") : NULL;
    if (pw != NULL && chown(pg->dir, pw->pw_uid, pw->pw_gid) < 0) {
        snprintf(err, errlen, "chown %s: %s", pg->dir, strerror(errno));
        rm_rf(pg->dir);
        return -1;
    }
    if (!registered) {
        atexit(stop_all);
        registered = 1;
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (live[i] == NULL) {
            live[i] = pg;
            break;
        }
    }
    char data[300];
    snprintf(data, sizeof(data), "%s/data", pg->dir);
    const char *initdb[] = {"-D", data, "-A", "trust", "-U", "tcpops", "-E", "UTF8",
                            "--locale=C", "--no-sync", NULL};
    if (run_pg(pg, "initdb", out, sizeof(out), initdb) != 0) {
        snprintf(err, errlen, "initdb: %s", out);
        return -1;
    }
    if (pg->listen[0] && trust_test_net(pg, err, errlen) < 0)
        return -1;
    pg->port = free_port();
    if (pg_ctl(pg, "start", err, errlen) < 0)
        return -1;
    const char *host = pg->listen[0] ? pg->listen : "127.0.0.1";
    snprintf(pg->url, sizeof(pg->url), "postgresql://tcpops@%s:%d/postgres", host, pg->port);
    if (pgserver_sql(pg, "CREATE DATABASE tcpops", out, sizeof(out)) < 0) {
        snprintf(err, errlen, "CREATE DATABASE: %s", out);
        return -1;
    }
    snprintf(pg->url, sizeof(pg->url), "postgresql://tcpops@%s:%d/tcpops", host, pg->port);
    return 0;
}

int pgserver_stop(pgserver *pg, char *err, size_t errlen)
{
    return pg_ctl(pg, "stop", err, errlen);
}

int pgserver_resume(pgserver *pg, char *err, size_t errlen)
{
    return pg_ctl(pg, "start", err, errlen);
}

int pgserver_restart(pgserver *pg, char *err, size_t errlen)
{
    return pg_ctl(pg, "restart", err, errlen);
}

int pgserver_sql(const pgserver *pg, const char *sql, char *out, size_t outlen)
{
    char psql[512], ip[512];
    char *argv[20];
    int n = in_netns(pg, argv, ip, sizeof(ip));
    const char *args[] = {which("psql", psql, sizeof(psql)), "-X", "-q", "-A", "-t", "-v",
                          "ON_ERROR_STOP=1", "-d", pg->url, "-c", sql, NULL};
    for (int i = 0; args[i] != NULL; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char err[2048];
    int rc = proc_run(argv, out, outlen, err, sizeof(err), CMD_MS);
    if (rc != 0) {
        snprintf(out, outlen, "psql exit %d: %s", rc, err);
        return -1;
    }
    return 0;
}

void pgserver_destroy(pgserver *pg)
{
    char err[512];
    if (pg->dir[0] == '\0')
        return;
    if (pg->running)
        pg_ctl(pg, "stop", err, sizeof(err));
    rm_rf(pg->dir);
    pg->dir[0] = '\0';
    for (int i = 0; i < MAX_SERVERS; i++)
        if (live[i] == pg)
            live[i] = NULL;
}
