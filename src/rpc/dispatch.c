/* Dispatch: what the server does with each decoded frame (PING, a request
 * for a method, the max_inflight cap, GOAWAY) and running a call on a worker
 * or, for a quick method when no job waits, on the I/O thread. Called by
 * srvloop.c; calls srvconn.c, the task queue and pbcheck. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "rpc/pbcheck.h"
#include "rpc/srv.h"

/* ---- running a call ---- */

/* Sends the answer rep to j's request, which ends the job (see
 * srv_job_end_locked). Returns whether to notice the I/O thread. */
static int answer(rpc_server *s, srv_job *j, const rpc_reply *rep)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = j->req->id;
    f.kind = TCPOPS__KIND__RESPONSE;
    f.status = rep->status;
    f.error = rep->status != TCPOPS__STATUS__OK ? (char *)rep->error : (char *)"";
    f.body.data = rep->body;
    f.body.len = rep->body_len;
    if (rpc_frame_size(&f) - RPC_FRAME_HEADER > s->cfg.max_frame) {
        f.status = TCPOPS__STATUS__RESOURCE_EXHAUSTED;
        f.error = (char *)"response larger than the maximum frame";
        f.body.data = NULL;
        f.body.len = 0;
    }
    srv_conn *c = j->c;
    pthread_mutex_lock(&c->lock);
    srv_send_locked(s, c, &f);
    int notify = srv_job_end_locked(c);
    pthread_mutex_unlock(&c->lock);
    return notify;
}

/* Runs a binary job and sends its answer. Returns whether to notice the I/O
 * thread. No lock held. */
static int run_binary(rpc_server *s, srv_job *j, void *state)
{
    rpc_frame *req = j->req;
    rpc_reply rep;
    memset(&rep, 0, sizeof(rep));

    int64_t t0 = s->cfg.on_call != NULL ? rpc_now_us() : 0;
    rpc_call_ctx ctx = {
        .method = req->method,
        .trace_id = req->trace_id != NULL ? req->trace_id : "",
        .id = req->id,
        .deadline_ms = j->deadline_ms,
        .thread_state = state,
        .user = s->cfg.user,
    };
    if (j->deadline_ms > 0 && rpc_now_ms() >= j->deadline_ms) {
        /* The caller has given up: do not spend a database call on it. */
        rpc_stats_add(s->cfg.stats, RPC_C_EXPIRED_SKIPPED, 1);
        rpc_reply_error(&rep, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                        "deadline passed before the call ran");
    } else {
        j->m->fn(&ctx, req->body.data, req->body.len, &rep);
    }
    rpc_stats_call(s->cfg.stats, req->method, rep.status);
    if (s->cfg.on_call != NULL)
        s->cfg.on_call(s->cfg.user, &ctx, rep.status, rep.error, rpc_now_us() - t0);
    int notify = answer(s, j, &rep);
    free(rep.body);
    return notify;
}

/* A binary job on a worker (rpc_task_fn). */
static void run_job(rpc_task *t, void *state)
{
    srv_job *j = (srv_job *)t;
    srv_job_done(j, run_binary(j->s, j, state));
}

/* ---- dispatch ---- */

void srv_protocol_error(rpc_server *s, srv_conn *c, uint64_t id, const char *why)
{
    rpc_stats_add(s->cfg.stats, RPC_C_PROTOCOL_ERRORS, 1);
    srv_send_status(s, c, id, TCPOPS__STATUS__INVALID_ARGUMENT, why);
    srv_cork(s, c, 0); /* what the batch answered, and why it ends, go out first */
    srv_conn_close(s, c);
}

void srv_send_goaway(rpc_server *s, srv_conn *c)
{
    if (c->goaway || c->mode == SRV_MODE_LINES)
        return;
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.kind = TCPOPS__KIND__GOAWAY;
    f.last_id = c->last_id;
    srv_send(s, c, &f);
    c->goaway = 1;
    c->goaway_at = rpc_now_ms();
    rpc_stats_add(s->cfg.stats, RPC_C_GOAWAYS, 1);
}

static const rpc_method *find_method(const rpc_server *s, const char *name)
{
    for (size_t i = 0; i < s->cfg.nmethods; i++)
        if (strcmp(s->methods[i].name, name) == 0)
            return &s->methods[i];
    return NULL;
}

/* Handles a frame that is no REQUEST: PING is answered, PONG and GOAWAY (the
 * client is leaving; its close follows) are dropped, any other kind is a
 * protocol error. Returns 0, or -1 when c was closed. Frees f. */
static int on_control(rpc_server *s, srv_conn *c, rpc_frame *f)
{
    uint64_t id = f->id;
    int kind = f->kind;
    rpc_frame_free(f);
    if (kind == TCPOPS__KIND__PING) {
        rpc_frame pong = TCPOPS__FRAME__INIT;
        pong.id = id;
        pong.kind = TCPOPS__KIND__PONG;
        srv_send(s, c, &pong);
    } else if (kind != TCPOPS__KIND__PONG && kind != TCPOPS__KIND__GOAWAY) {
        srv_protocol_error(s, c, id, "a server accepts only REQUEST, PING, PONG and GOAWAY");
        return -1;
    }
    return 0;
}

/* The method request f names, or NULL when f is answered here already (it
 * crossed our GOAWAY, does not check out, or names no method we have: then
 * f is freed and *rc is 0) or breaks the protocol (*rc -1: c was closed). */
static const rpc_method *request_method(rpc_server *s, srv_conn *c, rpc_frame *f,
                                        const uint8_t *payload, size_t len, int *rc)
{
    uint64_t id = f->id;
    char why[160];
    *rc = 0;
    if (id <= c->last_id) {
        rpc_frame_free(f);
        srv_protocol_error(s, c, id, "request id not above the previous one (ids must rise)");
        *rc = -1;
        return NULL;
    }
    if (c->goaway) {
        /* Crossed our GOAWAY: never run, so the client may send it elsewhere. */
        rpc_frame_free(f);
        srv_send_status(s, c, id, TCPOPS__STATUS__UNAVAILABLE, "server is going away");
        return NULL;
    }
    /* protobuf-c cut each string at its first NUL: "people.List\0junk"
     * must not run people.List. */
    int status = TCPOPS__STATUS__OK;
    const rpc_method *m = NULL;
    if (rpc_pb_check(&tcpops__frame__descriptor, payload, len, why, sizeof(why)) < 0) {
        status = TCPOPS__STATUS__INVALID_ARGUMENT;
        rpc_stats_call(s->cfg.stats, "invalid", status);
    } else if ((m = find_method(s, f->method)) == NULL) {
        status = TCPOPS__STATUS__UNIMPLEMENTED;
        snprintf(why, sizeof(why), "unknown method \"%.100s\"", f->method);
        rpc_stats_call(s->cfg.stats, "unknown", status);
    }
    if (m != NULL)
        return m;
    c->last_id = id;
    rpc_frame_free(f);
    srv_send_status(s, c, id, status, why);
    return NULL;
}

/* Whether c has no free in-flight slot. Past the cap the request waits (the
 * peer is not read meanwhile) rather than being refused: a client a frame
 * ahead of the answers it has read, or one that pipelines, loses nothing.
 * notify is set with the count seen, so the job that frees a slot tells the
 * I/O thread. Takes c->lock. */
static int at_cap(rpc_server *s, srv_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int full = c->inflight >= s->cfg.max_inflight;
    if (full)
        c->notify = 1;
    pthread_mutex_unlock(&c->lock);
    return full;
}

/* Runs request f of method m: here when it is quick and no job waits for a
 * worker (its answer goes out with the rest of the batch's, and the I/O
 * thread needs no notice of it), else on a worker. Takes f. */
static void dispatch(rpc_server *s, srv_conn *c, rpc_frame *f, const rpc_method *m)
{
    uint64_t id = f->id;
    srv_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        rpc_frame_free(f);
        srv_send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->task.fn = run_job;
    j->s = s;
    j->c = c;
    j->req = f;
    j->m = m;
    j->deadline_ms = f->deadline_ms > 0 ? rpc_now_ms() + f->deadline_ms : 0;
    srv_inflight_add(s, c, 1);
    if (m->quick && s->io_state_ok && rpc_taskq_idle(&s->tq)) {
        run_binary(s, j, s->io_state);
        srv_jobs_add(s, -1);
        srv_job_free(j);
        return;
    }
    if (srv_job_push(s, j) < 0) {
        srv_inflight_add(s, c, -1);
        rpc_stats_add(s->cfg.stats, RPC_C_INFLIGHT_LIMIT, 1);
        rpc_stats_call(s->cfg.stats, f->method, TCPOPS__STATUS__RESOURCE_EXHAUSTED);
        srv_job_free(j);
        srv_send_status(s, c, id, TCPOPS__STATUS__RESOURCE_EXHAUSTED, "server queue is full");
    }
}

int srv_on_frame(rpc_server *s, srv_conn *c, const uint8_t *payload, size_t len)
{
    rpc_frame *f = NULL;
    if (rpc_frame_unpack(payload, len, &f) < 0) {
        srv_protocol_error(s, c, 0, "frame does not decode");
        return -1;
    }
    if (f->kind != TCPOPS__KIND__REQUEST)
        return on_control(s, c, f);
    int rc = 0;
    const rpc_method *m = request_method(s, c, f, payload, len, &rc);
    if (m == NULL)
        return rc;
    if (at_cap(s, c)) {
        rpc_frame_free(f);
        c->at_cap = 1;
        return 1;
    }
    c->last_id = f->id;
    dispatch(s, c, f, m);
    return 0;
}
