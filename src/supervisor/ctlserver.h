/* The master's side of the control socket (DIR/tcpops.sock; the client is
 * ctl.c): accepts clients, reads one request line from each, hands it to the
 * master, and sends the one JSON answer, after which the client is closed.
 * An answer may be owed for a while (a scale, restart or down): such a
 * client is not read, and its hang-up is reported so that whatever waits to
 * answer it forgets it. A client whose request asked for it ("progress":
 * true) is sent progress lines, {"progress":"TEXT"}, before its answer; one
 * that did not ask gets the answer alone, as before. What a client is sent
 * waits in its own buffer (at most SUP_CTL_OUT_MAX bytes) and goes out as
 * its socket takes it, the answer whole before the client is closed; a
 * client that takes nothing for send_timeout_ms is dropped. Single
 * threaded: the master's poll loop. */
#ifndef TCPOPS_SUP_CTLSERVER_H
#define TCPOPS_SUP_CTLSERVER_H

#include <jansson.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "supervisor/ctl.h"

#define SUP_CTL_MAX_CLIENTS 32
#define SUP_CTL_LINE_MAX 1024   /* a request line, newline included */
/* Bytes waiting for one client: progress past half of it is dropped, the
 * rest is room for the answer. */
#define SUP_CTL_OUT_MAX (1 << 20)
#define SUP_CTL_SEND_TIMEOUT_MS 10000 /* a client that reads nothing this long is dropped */
#define SUP_CTL_CLOSE_FLUSH_MS 2000 /* closing: what waits to be sent gets this long */

/* The request line of client fd (NUL-terminated, newline stripped). Returns
 * 1 when the answer is owed for later (the master sends it with
 * sup_ctlserver_answer), 0 when it answered already. */
typedef int (*sup_ctl_request_fn)(void *arg, int fd, const char *line);

/* Client fd hung up (or its socket failed) before its answer; fd is closed
 * after this returns. */
typedef void (*sup_ctl_gone_fn)(void *arg, int fd);

typedef struct sup_ctlclient {
    int fd;
    char buf[SUP_CTL_LINE_MAX];
    size_t len;
    int waiting;              /* an answer is owed when an operation ends */
    int progress;             /* it asked for progress lines */
    int closing;              /* answered: closed once out is sent */
    char *out;                /* what it has yet to be sent: out[outoff..outlen) */
    size_t outoff, outlen;
    int64_t sent_ms;          /* when out last moved (or began to wait) */
} sup_ctlclient;

typedef struct sup_ctlserver {
    int listen_fd;
    char path[SUP_CTL_PATH_MAX];
    sup_ctlclient clients[SUP_CTL_MAX_CLIENTS];
    sup_ctl_request_fn on_request;
    sup_ctl_gone_fn on_gone;
    void *arg;
    int64_t send_timeout_ms;  /* SUP_CTL_SEND_TIMEOUT_MS; a test may lower it */
} sup_ctlserver;

/* Number of pollfds sup_ctlserver_pollfds fills. */
#define SUP_CTL_NPOLL (1 + SUP_CTL_MAX_CLIENTS)

/* A server with no socket yet; the callbacks get arg. */
void sup_ctlserver_init(sup_ctlserver *s, sup_ctl_request_fn on_request,
                        sup_ctl_gone_fn on_gone, void *arg);

/* Listens on data_dir's control socket. A socket file left by a master that
 * died is replaced; a live master makes it fail. 0, or -1 with err filled. */
int sup_ctlserver_open(sup_ctlserver *s, const char *data_dir, char *err, size_t errlen);

/* Gives what waits to be sent up to SUP_CTL_CLOSE_FLUSH_MS to go out, then
 * closes every client and the socket, and removes the socket file. */
void sup_ctlserver_close(sup_ctlserver *s);

/* Fills pf[0..SUP_CTL_NPOLL) with what to wait for (a client owed an
 * answer is only watched for a hang-up, and for room to send what waits). */
void sup_ctlserver_pollfds(const sup_ctlserver *s, struct pollfd *pf);

/* Handles what poll reported in pf (as filled by sup_ctlserver_pollfds):
 * accepts, reads request lines, sends what waits, reports hang-ups and
 * drops a client that took nothing for send_timeout_ms. */
void sup_ctlserver_on_poll(sup_ctlserver *s, const struct pollfd *pf);

/* Sends obj (consumed) and a newline to client fd and closes it once all
 * of it went out (or the client fails or stalls). fd < 0: nobody to
 * answer, obj is just freed. */
void sup_ctlserver_answer(sup_ctlserver *s, int fd, json_t *obj);

/* Client fd asked for progress lines (its request said "progress":true). */
void sup_ctlserver_want_progress(sup_ctlserver *s, int fd);

/* Sends {"progress":text} and a newline to client fd when it asked for
 * progress (else, or fd < 0, nothing). Never blocks: a client so far behind
 * that the line would pass half of SUP_CTL_OUT_MAX gets no more progress,
 * only its answer. */
void sup_ctlserver_progress(sup_ctlserver *s, int fd, const char *text);

/* {"ok":false,"error":fmt with arg}. Caller owns it. */
json_t *sup_ctl_error(const char *fmt, const char *arg);

#endif
