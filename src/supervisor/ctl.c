#include "supervisor/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/clock.h"

void sup_socket_path(const char *data_dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/tcpops.sock", data_dir);
}

int sup_ctl_addr(const char *data_dir, struct sockaddr_un *sa, char *path, size_t len)
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
    char path[SUP_CTL_PATH_MAX];
    if (sup_ctl_addr(data_dir, &sa, path, sizeof(path)) < 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int alive = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return alive;
}

/* The largest answer read (a `ps` of every worker there can be fits). */
#define ANSWER_MAX (1 << 20)

/* The complete lines in buf[0..*got): progress to on_progress, the answer
 * (the line with "ok") returned; what follows the last newline is kept at
 * the front of buf. NULL while no answer came. */
static json_t *take_lines(char *buf, size_t *got, sup_ctl_progress_fn on_progress, void *arg)
{
    size_t start = 0;
    json_t *answer = NULL;
    char *nl;
    while (answer == NULL && (nl = memchr(buf + start, '\n', *got - start)) != NULL) {
        *nl = '\0';
        json_t *j = json_loads(buf + start, 0, NULL);
        start = (size_t)(nl - buf) + 1;
        const char *text = json_string_value(json_object_get(j, "progress"));
        if (json_object_get(j, "ok") != NULL) {
            answer = j;
            continue;
        }
        /* Else a progress line, or one the master cut short: skipped. */
        if (text != NULL && on_progress != NULL)
            on_progress(arg, text);
        json_decref(j);
    }
    memmove(buf, buf + start, *got - start);
    *got -= start;
    return answer;
}

json_t *sup_ctl_request_progress(const char *data_dir, json_t *req, int timeout_ms,
                                 sup_ctl_progress_fn on_progress, void *arg, char *err,
                                 size_t errlen)
{
    struct sockaddr_un sa;
    char path[SUP_CTL_PATH_MAX];
    json_t *answer = NULL;
    int fd = -1;
    if (on_progress != NULL)
        json_object_set_new(req, "progress", json_true());
    char *line = json_dumps(req, JSON_COMPACT);
    char *buf = malloc(ANSWER_MAX);
    json_decref(req);
    if (sup_ctl_addr(data_dir, &sa, path, sizeof(path)) < 0 || line == NULL || buf == NULL) {
        snprintf(err, errlen, buf == NULL || line == NULL ? "out of memory"
                                                          : "control socket path too long: %s",
                 path);
        goto out;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errlen, "no tcpops master on %s (%s); start one with `tcpops up`", path,
                 strerror(errno));
        goto out;
    }
    size_t n = strlen(line);
    line[n] = '\n';
    if (send(fd, line, n + 1, MSG_NOSIGNAL) != (ssize_t)(n + 1)) {
        snprintf(err, errlen, "cannot send to %s: %s", path, strerror(errno));
        goto out;
    }
    size_t got = 0;
    int64_t deadline = rpc_now_ms() + timeout_ms;
    while (answer == NULL) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
            snprintf(err, errlen, "the master did not answer within %d ms", timeout_ms);
            goto out;
        }
        ssize_t r = recv(fd, buf + got, ANSWER_MAX - 1 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        int end = r <= 0, tail = end && got > 0;
        if (r > 0)
            got += (size_t)r;
        if (tail)
            buf[got++] = '\n'; /* at the end, a last line without its newline counts */
        answer = take_lines(buf, &got, on_progress, arg);
        if (answer == NULL && end) {
            snprintf(err, errlen, "%s", tail ? "unreadable answer from the master"
                                             : "the master closed the connection without "
                                               "an answer");
            goto out;
        }
        if (answer == NULL && got == ANSWER_MAX - 1) {
            snprintf(err, errlen, "the master's answer is longer than %d bytes", ANSWER_MAX);
            goto out;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(line);
    free(buf);
    return answer;
}

json_t *sup_ctl_request(const char *data_dir, json_t *req, int timeout_ms, char *err,
                        size_t errlen)
{
    return sup_ctl_request_progress(data_dir, req, timeout_ms, NULL, NULL, err, errlen);
}

static void human_bytes(long long b, char *out, size_t len)
{
    if (b >= 1 << 30)
        snprintf(out, len, "%.1fG", (double)b / (1 << 30));
    else if (b >= 1 << 20)
        snprintf(out, len, "%.1fM", (double)b / (1 << 20));
    else if (b > 0)
        snprintf(out, len, "%lldK", b / 1024);
    else
        snprintf(out, len, "-");
}

static void human_ms(long long ms, char *out, size_t len)
{
    if (ms <= 0)
        snprintf(out, len, "-");
    else if (ms < 60000)
        snprintf(out, len, "%.1fs", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(out, len, "%lldm%llds", ms / 60000, (ms / 1000) % 60);
    else
        snprintf(out, len, "%lldh%lldm", ms / 3600000, (ms / 60000) % 60);
}

/* Each service's store, once, under the table: a URL is too wide for a column. */
static void print_stores(json_t *workers)
{
    char seen[8][16];
    int nseen = 0;
    size_t i;
    json_t *w;
    json_array_foreach(workers, i, w) {
        const char *app = json_string_value(json_object_get(w, "app"));
        const char *db = json_string_value(json_object_get(w, "db"));
        int dup = 0;
        for (int k = 0; k < nseen; k++)
            dup |= strcmp(seen[k], app) == 0;
        if (db == NULL || dup || nseen == 8)
            continue;
        snprintf(seen[nseen++], sizeof(seen[0]), "%s", app);
        /* Not "APP ...": `awk '$1=="pets"'` picks worker rows. */
        printf("database of %s: %s\n", app, db);
    }
}

void sup_ctl_print_ps(json_t *answer)
{
    json_t *workers = json_object_get(answer, "workers");
    size_t i;
    json_t *w;
    printf("%-8s %-6s %-8s %-14s %-9s %-8s %-8s %-9s %s\n", "APP", "WORKER", "PID", "STATE",
           "UPTIME", "RESTARTS", "MEMORY", "LAST EXIT", "ADVERTISED");
    json_array_foreach(workers, i, w) {
        char up[32], mem[32], last[24];
        human_ms(json_integer_value(json_object_get(w, "uptime_ms")), up, sizeof(up));
        human_bytes(json_integer_value(json_object_get(w, "rss_bytes")), mem, sizeof(mem));
        json_t *le = json_object_get(w, "last_exit"), *pid = json_object_get(w, "pid");
        if (!json_is_integer(le))
            snprintf(last, sizeof(last), "-");
        else
            snprintf(last, sizeof(last), "%lld", (long long)json_integer_value(le));
        char pids[24] = "-";
        if (json_is_integer(pid))
            snprintf(pids, sizeof(pids), "%lld", (long long)json_integer_value(pid));
        const char *adv = json_string_value(json_object_get(w, "advertised"));
        printf("%-8s %-6lld %-8s %-14s %-9s %-8lld %-8s %-9s %s\n",
               json_string_value(json_object_get(w, "app")),
               (long long)json_integer_value(json_object_get(w, "worker")), pids,
               json_string_value(json_object_get(w, "state")), up,
               (long long)json_integer_value(json_object_get(w, "restarts")), mem, last,
               adv != NULL ? adv : "-");
    }
    print_stores(workers);
    /* Why a worker is failed, or why its last start was stopped: too long
     * for a column too. */
    json_array_foreach(workers, i, w) {
        const char *reason = json_string_value(json_object_get(w, "reason"));
        if (reason != NULL)
            printf("%s %s.%lld: %s\n", json_string_value(json_object_get(w, "state")),
                   json_string_value(json_object_get(w, "app")),
                   (long long)json_integer_value(json_object_get(w, "worker")), reason);
    }
}

/* "1 worker", "3 workers". */
static const char *workers_word(long long n)
{
    return n == 1 ? "worker" : "workers";
}

void sup_ctl_print_done(const char *cmd, json_t *answer)
{
    const char *app = json_string_value(json_object_get(answer, "app"));
    if (strcmp(cmd, "scale") == 0) {
        long long n = json_integer_value(json_object_get(answer, "workers"));
        printf("%s: %lld %s (was %lld)\n", app, n, workers_word(n),
               (long long)json_integer_value(json_object_get(answer, "was")));
    } else if (strcmp(cmd, "restart") == 0) {
        long long n = json_integer_value(json_object_get(answer, "restarted"));
        printf("%s: restarted %lld %s\n", app, n, workers_word(n));
    } else if (strcmp(cmd, "down") == 0) {
        long long n = json_integer_value(json_object_get(answer, "stopped"));
        printf("stopped %lld %s\n", n, workers_word(n));
    }
}
