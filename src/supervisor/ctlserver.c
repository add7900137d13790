#include "supervisor/ctlserver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "supervisor/ctl.h"

void sup_ctlserver_init(sup_ctlserver *s, sup_ctl_request_fn on_request,
                        sup_ctl_gone_fn on_gone, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->listen_fd = -1;
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++)
        s->clients[i].fd = -1;
    s->on_request = on_request;
    s->on_gone = on_gone;
    s->arg = arg;
    s->send_timeout_ms = SUP_CTL_SEND_TIMEOUT_MS;
}

int sup_ctlserver_open(sup_ctlserver *s, const char *data_dir, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    if (sup_ctl_addr(data_dir, &sa, s->path, sizeof(s->path)) < 0) {
        snprintf(err, errlen, "control socket path too long: %s", s->path);
        return -1;
    }
    /* A socket file left by a master that died is removed; a live one wins. */
    if (sup_master_alive(data_dir)) {
        snprintf(err, errlen, "a tcpops master already runs on %s", data_dir);
        return -1;
    }
    unlink(s->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "control socket %s: %s", s->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    s->listen_fd = fd;
    return 0;
}

/* Closes c's socket and frees what it had yet to be sent. */
static void client_close(sup_ctlclient *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    *c = (sup_ctlclient){.fd = -1};
}

static int flush(sup_ctlclient *c);

/* The master is leaving: what waits (the answer to `down` last) gets up to
 * budget_ms to go out. */
static void flush_all(sup_ctlserver *s, int64_t budget_ms)
{
    int64_t deadline = rpc_now_ms() + budget_ms;
    for (;;) {
        struct pollfd pf[SUP_CTL_MAX_CLIENTS];
        sup_ctlclient *pc[SUP_CTL_MAX_CLIENTS];
        int n = 0;
        for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
            sup_ctlclient *c = &s->clients[i];
            if (c->fd >= 0 && c->outoff < c->outlen) {
                pf[n] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
                pc[n++] = c;
            }
        }
        int64_t left = deadline - rpc_now_ms();
        if (n == 0 || left <= 0 || (poll(pf, (nfds_t)n, (int)left) < 0 && errno != EINTR))
            return;
        for (int j = 0; j < n; j++)
            if (pf[j].revents != 0 && (flush(pc[j]) < 0 || (pf[j].revents & (POLLERR | POLLHUP))))
                client_close(pc[j]);
    }
}

void sup_ctlserver_close(sup_ctlserver *s)
{
    flush_all(s, SUP_CTL_CLOSE_FLUSH_MS);
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++)
        client_close(&s->clients[i]);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        unlink(s->path);
        s->listen_fd = -1;
    }
}

json_t *sup_ctl_error(const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, arg);
    return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

static sup_ctlclient *client_of(sup_ctlserver *s, int fd)
{
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS && fd >= 0; i++)
        if (s->clients[i].fd == fd)
            return &s->clients[i];
    return NULL;
}

void sup_ctlserver_want_progress(sup_ctlserver *s, int fd)
{
    sup_ctlclient *c = client_of(s, fd);
    if (c != NULL)
        c->progress = 1;
}

/* Appends n bytes to what c is to be sent. 0, or -1 (nothing appended)
 * when that would make more than max bytes wait or memory ran out. */
static int queue(sup_ctlclient *c, const char *p, size_t n, size_t max)
{
    if (c->outoff == c->outlen) { /* nothing waited: the clock starts now */
        c->outoff = c->outlen = 0;
        c->sent_ms = rpc_now_ms();
    }
    if (c->outlen - c->outoff + n > max)
        return -1;
    if (c->outoff > 0) { /* what was sent makes room */
        memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
        c->outlen -= c->outoff;
        c->outoff = 0;
    }
    char *grown = realloc(c->out, c->outlen + n);
    if (grown == NULL)
        return -1;
    memcpy(grown + c->outlen, p, n);
    c->out = grown;
    c->outlen += n;
    return 0;
}

/* Sends what waits for c as far as its socket takes it; an answered client
 * is closed once all of it went out. -1 when the socket failed (the client
 * left: its hang-up comes to poll), else 0. */
static int flush(sup_ctlclient *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w <= 0)
            return -1;
        c->outoff += (size_t)w;
        c->sent_ms = rpc_now_ms();
    }
    if (c->closing)
        client_close(c);
    return 0;
}

/* obj as one JSON line (NUL-terminated after the newline), or NULL. */
static char *json_line(json_t *obj, size_t *len)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (line == NULL) {
        free(text);
        return NULL;
    }
    memcpy(line + n, "\n", 2);
    *len = n + 1;
    return line;
}

void sup_ctlserver_progress(sup_ctlserver *s, int fd, const char *text)
{
    sup_ctlclient *c = client_of(s, fd);
    size_t n = 0;
    if (c == NULL || !c->progress)
        return;
    char *line = json_line(json_pack("{s:s}", "progress", text), &n);
    /* Too far behind: it reads too slowly for progress, and gets only its
     * answer (the other half of the room is the answer's). Whole lines are
     * queued, so none is ever cut. */
    if (line == NULL || queue(c, line, n, SUP_CTL_OUT_MAX / 2) < 0)
        c->progress = 0;
    else
        (void)flush(c); /* a failed socket's hang-up comes to poll */
    free(line);
}

void sup_ctlserver_answer(sup_ctlserver *s, int fd, json_t *obj)
{
    sup_ctlclient *c = client_of(s, fd);
    size_t n = 0;
    char *line = json_line(obj, &n);
    if (c == NULL) { /* nobody to answer (fd < 0) */
        free(line);
        return;
    }
    c->waiting = 0;
    c->closing = 1;
    /* A client that left does not need its answer; one that cannot have it
     * whole (out of memory) is closed rather than sent a cut line. */
    if (line == NULL || queue(c, line, n, SUP_CTL_OUT_MAX) < 0 || flush(c) < 0)
        client_close(c);
    free(line);
}

/* A client hung up (or its socket failed). One owed an answer is forgotten
 * by whatever it waited for, which goes on without it: a poll on a closed
 * peer reports POLLHUP forever, so its fd must leave the poll set now. */
static void client_gone(sup_ctlserver *s, sup_ctlclient *c)
{
    if (s->on_gone != NULL && !c->closing)
        s->on_gone(s->arg, c->fd);
    client_close(c);
}

static void on_client(sup_ctlserver *s, sup_ctlclient *c, short revents)
{
    if ((revents & POLLOUT) && flush(c) < 0) {
        client_gone(s, c);
        return;
    }
    if (c->fd < 0 || (revents & ~POLLOUT) == 0)
        return; /* all sent and closed, or only room to send */
    if (c->waiting || c->closing) {
        /* Not read while owed an answer: only a hang-up or error wakes it. */
        client_gone(s, c);
        return;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        client_gone(s, c);
        return;
    }
    c->len += (size_t)r;
    c->buf[c->len] = '\0';
    char *nl = strchr(c->buf, '\n');
    if (nl == NULL) {
        if (c->len == sizeof(c->buf) - 1)
            sup_ctlserver_answer(s, c->fd, sup_ctl_error("request too long%s", ""));
        return;
    }
    *nl = '\0';
    int fd = c->fd;
    if (s->on_request(s->arg, fd, c->buf) && c->fd == fd)
        c->waiting = 1;
}

static void on_accept(sup_ctlserver *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
        if (s->clients[i].fd < 0) {
            s->clients[i] = (sup_ctlclient){.fd = fd};
            return;
        }
    }
    close(fd); /* too many at once */
}

void sup_ctlserver_pollfds(const sup_ctlserver *s, struct pollfd *pf)
{
    pf[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
        const sup_ctlclient *c = &s->clients[i];
        /* A client owed an answer (or answered) is not read. */
        short ev = c->waiting || c->closing ? 0 : POLLIN;
        if (c->outoff < c->outlen)
            ev |= POLLOUT;
        pf[1 + i] = (struct pollfd){.fd = c->fd, .events = ev};
    }
}

void sup_ctlserver_on_poll(sup_ctlserver *s, const struct pollfd *pf)
{
    int64_t now = rpc_now_ms();
    if (pf[0].revents)
        on_accept(s);
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
        sup_ctlclient *c = &s->clients[i];
        if (c->fd >= 0 && pf[1 + i].revents && pf[1 + i].fd == c->fd)
            on_client(s, c, pf[1 + i].revents);
        /* It has not read for that long: it is not coming back for it. */
        if (c->fd >= 0 && c->outoff < c->outlen && now - c->sent_ms > s->send_timeout_ms)
            client_gone(s, c);
    }
}
