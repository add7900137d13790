#include "supervisor/ctlserver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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

void sup_ctlserver_close(sup_ctlserver *s)
{
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
        if (s->clients[i].fd >= 0)
            close(s->clients[i].fd);
        s->clients[i].fd = -1;
    }
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

void sup_ctlserver_progress(sup_ctlserver *s, int fd, const char *text)
{
    sup_ctlclient *c = client_of(s, fd);
    if (c == NULL || !c->progress)
        return;
    json_t *o = json_pack("{s:s}", "progress", text);
    char *line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (line == NULL)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* replaces the NUL */
    ssize_t w = send(fd, line, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(line);
    if (w != (ssize_t)(n + 1)) {
        /* Its buffer is full: it reads too slowly for progress. The rest
         * of a cut line would come out of order, so the line is ended
         * before the answer (the client skips a line it cannot read). */
        c->progress = 0;
        c->cut = w > 0;
    }
}

static void client_close(sup_ctlserver *s, int fd)
{
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) {
        if (s->clients[i].fd == fd) {
            close(fd);
            s->clients[i].fd = -1;
            return;
        }
    }
}

void sup_ctlserver_answer(sup_ctlserver *s, int fd, json_t *obj)
{
    if (fd < 0) {
        json_decref(obj);
        return;
    }
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text != NULL) {
        size_t n = strlen(text);
        text[n] = '\n'; /* replaces the NUL */
        sup_ctlclient *c = client_of(s, fd);
        if (c != NULL && c->cut) {
            ssize_t nl = send(fd, "\n", 1, MSG_NOSIGNAL);
            (void)nl;
        }
        ssize_t w = send(fd, text, n + 1, MSG_NOSIGNAL);
        (void)w; /* a client that left does not need its answer */
        free(text);
    }
    client_close(s, fd);
}

/* A client hung up (or its socket failed). One owed an answer is forgotten
 * by whatever it waited for, which goes on without it: a poll on a closed
 * peer reports POLLHUP forever, so its fd must leave the poll set now. */
static void client_gone(sup_ctlserver *s, sup_ctlclient *c)
{
    if (s->on_gone != NULL)
        s->on_gone(s->arg, c->fd);
    client_close(s, c->fd);
}

static void on_client(sup_ctlserver *s, sup_ctlclient *c)
{
    if (c->waiting) {
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
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++) /* a client owed an answer is not read */
        pf[1 + i] = (struct pollfd){.fd = s->clients[i].fd,
                                    .events = s->clients[i].waiting ? 0 : POLLIN};
}

void sup_ctlserver_on_poll(sup_ctlserver *s, const struct pollfd *pf)
{
    if (pf[0].revents)
        on_accept(s);
    for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++)
        if (s->clients[i].fd >= 0 && pf[1 + i].revents && pf[1 + i].fd == s->clients[i].fd)
            on_client(s, &s->clients[i]);
}
