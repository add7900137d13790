#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/spawn.h"

#define MAX_CHILDREN 64

static pid_t children[MAX_CHILDREN];
static int registered;

static void kill_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void remember(pid_t pid, pid_t old)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == old) {
            children[i] = pid;
            return;
        }
    }
}

const char *proc_bin(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("TCPOPS_BIN_DIR");
    snprintf(buf, len, "%s/%s", dir != NULL ? dir : "build/bin", name);
    return buf;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *child_log; /* stderr of the next child, when set */

int proc_start_logged(proc *p, char *const argv[], const char *log_path)
{
    child_log = log_path;
    int rc = proc_start(p, argv, 0);
    child_log = NULL;
    return rc;
}

int proc_start(proc *p, char *const argv[], int want_port)
{
    if (!registered) {
        atexit(kill_all);
        registered = 1;
    }
    util_spawn_cfg sc = {.deathsig = SIGKILL, .stderr_path = child_log};
    int out = -1;
    pid_t pid = util_spawn(argv, &sc, &out, NULL);
    if (pid < 0)
        return -1;
    p->pid = pid;
    p->out_fd = out;
    p->port = -1;
    remember(pid, 0);
    if (!want_port)
        return 0;

    char line[128];
    size_t n = 0;
    int64_t deadline = now_ms() + 10000;
    while (n < sizeof(line) - 1) {
        int64_t left = deadline - now_ms();
        struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p->out_fd, line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n') {
            line[n] = '\0';
            if (sscanf(line, "port=%d", &p->port) == 1)
                return 0;
            n = 0;
            continue;
        }
        n++;
    }
    fprintf(stderr, "proc_start: %s printed no port=N line within 10 s\n", argv[0]);
    proc_stop(p);
    return -1;
}

void proc_signal(const proc *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
}

int proc_wait(proc *p, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int st = 0;
    if (p->pid <= 0)
        return -1;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid)
            break;
        if (r < 0 || now_ms() >= deadline)
            return -1;
        usleep(10000);
    }
    remember(0, p->pid);
    p->pid = 0;
    if (p->out_fd >= 0) {
        close(p->out_fd);
        p->out_fd = -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void proc_stop(proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        proc_wait(p, 10000);
    }
}

void proc_stop_gracefully(proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return;
    proc_signal(p, SIGTERM);
    if (proc_wait(p, timeout_ms) < 0)
        proc_stop(p);
}

/* Whether a TCP socket can bind (listening: 0) or connect (1) to
 * 127.0.0.1:port right now. */
static int loopback_ok(int port, int connecting)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int ok = (connecting ? connect(fd, (struct sockaddr *)&sa, sizeof(sa))
                         : bind(fd, (struct sockaddr *)&sa, sizeof(sa))) == 0;
    close(fd);
    return ok;
}

/* A loopback port nothing is bound to, below the kernel's ephemeral range
 * (32768 and up by default): a port from that range can be taken as the
 * source port of some connection before the program under test binds it. */
int free_port(void)
{
    static _Atomic unsigned seq;
    unsigned seed = (unsigned)getpid() * 7919u + atomic_fetch_add(&seq, 1) * 104729u;
    for (int tries = 0; tries < 200; tries++) {
        seed = seed * 1103515245u + 12345u;
        int port = 10000 + (int)((seed >> 8) % 22000u);
        int ok = loopback_ok(port, 0);
        if (ok != 0)
            return ok > 0 ? port : -1;
    }
    return -1;
}

int wait_port(int port, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int ok = loopback_ok(port, 1);
        if (ok != 0)
            return ok > 0 ? 0 : -1;
        usleep(10000);
    }
    return -1;
}

int proc_start_service(proc *p, const char *name, int port, const char *dir,
                       const char *const *extra)
{
    char bin[512], listen[64];
    char *argv[32];
    int n = 0;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    argv[n++] = (char *)proc_bin(name, bin, sizeof(bin));
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--data-dir";
    argv[n++] = (char *)dir;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    if (proc_start(p, argv, 0) < 0)
        return -1;
    if (wait_port(port, 10000) < 0) {
        fprintf(stderr, "proc_start_service: %s did not listen on %d within 10 s\n", name, port);
        proc_stop(p);
        return -1;
    }
    return 0;
}

/* Reads what fd has into buf[*n..len-1) without blocking past deadline. */
static void drain_fd(int fd, char *buf, size_t len, size_t *n, int *open_)
{
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof(tmp));
    if (r <= 0) {
        *open_ = 0;
        return;
    }
    size_t room = len - 1 - *n;
    size_t take = (size_t)r < room ? (size_t)r : room;
    memcpy(buf + *n, tmp, take);
    *n += take;
    buf[*n] = '\0';
}

int proc_run(char *const argv[], char *out, size_t outlen, char *err, size_t errlen,
             int timeout_ms)
{
    int o = -1, e = -1;
    out[0] = err[0] = '\0';
    util_spawn_cfg sc = {.deathsig = SIGKILL};
    pid_t pid = util_spawn(argv, &sc, &o, &e);
    if (pid < 0)
        return -1;
    size_t on = 0, en = 0;
    int oopen = 1, eopen = 1;
    int64_t deadline = now_ms() + timeout_ms;
    while ((oopen || eopen) && now_ms() < deadline) {
        struct pollfd pf[2] = {{.fd = oopen ? o : -1, .events = POLLIN},
                               {.fd = eopen ? e : -1, .events = POLLIN}};
        if (poll(pf, 2, 50) <= 0)
            continue;
        if (pf[0].revents)
            drain_fd(o, out, outlen, &on, &oopen);
        if (pf[1].revents)
            drain_fd(e, err, errlen, &en, &eopen);
    }
    close(o);
    close(e);
    int st = 0;
    if (oopen || eopen) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
    }
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int proc_run_tool(const char *name, const char *flag, const char *value, va_list rest,
                  char *out, size_t outlen, char *err, size_t errlen, int timeout_ms,
                  char *cmd, size_t cmdlen)
{
    char bin[512];
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)proc_bin(name, bin, sizeof(bin));
    argv[n++] = (char *)flag;
    argv[n++] = (char *)value;
    for (char *a; n < 15 && (a = va_arg(rest, char *)) != NULL;)
        argv[n++] = a;
    argv[n] = NULL;
    if (cmd != NULL && cmdlen > 0) {
        cmd[0] = '\0';
        for (int i = 3; i < n; i++)
            snprintf(cmd + strlen(cmd), cmdlen - strlen(cmd), "%s%s", i > 3 ? " " : "",
                     argv[i]);
    }
    return proc_run(argv, out, outlen, err, errlen, timeout_ms);
}

int proc_wait_file(const char *path, const char *needle, int timeout_ms)
{
    static char text[1 << 20];
    int64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        FILE *f = fopen(path, "r");
        size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        text[n] = '\0';
        if (strstr(text, needle) != NULL)
            return 1;
        usleep(20 * 1000);
    }
    return 0;
}

int proc_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci != NULL && ci[0] != '\0' && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0;
}

int make_temp_dir(char *buf, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, len, "%s/tcpops-test-XXXXXX", tmp != NULL ? tmp : "/tmp");
    return mkdtemp(buf) != NULL ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int dir_fixture_setup(void **state, const char *file)
{
    dir_fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || make_temp_dir(fx->dir, sizeof(fx->dir)) != 0) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/%s", fx->dir, file);
    *state = fx;
    return 0;
}

int dir_fixture_teardown(void **state)
{
    dir_fixture *fx = *state;
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

long proc_rss_kb(const proc *p)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

int trio_init(trio *t)
{
    if (make_temp_dir(t->dir, sizeof(t->dir)) != 0)
        return -1;
    t->people_port = free_port();
    t->pets_port = free_port();
    t->gw_port = free_port();
    return 0;
}

void trio_fini(trio *t)
{
    proc_stop(&t->gw);
    proc_stop(&t->people);
    proc_stop(&t->pets);
    rm_rf(t->dir);
}
