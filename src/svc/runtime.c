/* The shared state of a running service and the hooks the RPC server calls
 * (runtime.h), and the helpers handlers use (svc.h). */
#include "svc/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rpc/clock.h"
#include "rpc/pbcheck.h"
#include "util/log.h"

/* ---- helpers for handlers ---- */

svc_conn *svc_ctx_conn(const rpc_call_ctx *ctx)
{
    return ((svc_thread *)ctx->thread_state)->conn;
}

int svc_ctx_write(const rpc_call_ctx *ctx, svc_write_fn fn, void *arg, rpc_reply *out)
{
    svc *s = ctx->user;
    char err[sizeof(out->error)];
    int st = svc_writer_run(s->writer, fn, arg, err, sizeof(err));
    if (st != TCPOPS__STATUS__OK)
        rpc_reply_error(out, st, "%s", err);
    return st;
}

ProtobufCMessage *svc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *body,
                             size_t len, rpc_reply *out)
{
    char why[160];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, body);
    if (m == NULL) {
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT,
                        "request body does not decode as %s", desc->short_name);
    } else if (rpc_pb_check(desc, body, len, why, sizeof(why)) < 0) {
        /* Its strings were cut at a NUL: what the handler would see is not
         * what was sent. */
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "%s", why);
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    return m;
}

int svc_check_name(const char *what, const char *name, char norm[UTIL_NAME_MAX + 1],
                   rpc_reply *out)
{
    char why[128];
    if (util_name_normalize(name, strlen(name), norm, UTIL_NAME_MAX + 1, NULL, why,
                            sizeof(why)) < 0) {
        rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "%s: %s", what, why);
        return -EINVAL;
    }
    return 0;
}

/* ---- the shared state ---- */

void svc_rt_init(svc *s, const svc_desc *desc, const char *self)
{
    memset(s, 0, sizeof(*s));
    s->desc = desc;
    s->started_ms = rpc_now_ms();
    s->ready_fd = -1;
    snprintf(s->self, sizeof(s->self), "%s", self);
    pthread_mutex_init(&s->lock, NULL);
    rpc_cond_init(&s->cond);
}

/* mkdir of path alone (not its parents, as mkdir(1) without -p): 1 when
 * made, 0 when a directory is there already, or a negative errno. */
static int mkdir_one(const char *path)
{
    if (mkdir(path, 0755) == 0)
        return 1;
    if (errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int svc_data_dir_make(const char *data_dir, char *err, size_t errlen)
{
    int rc = mkdir_one(data_dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s%s", data_dir, strerror(-rc),
                 rc == -ENOENT ? " (its parent does not exist: create that first)" : "");
        return rc;
    }
    if (rc == 1)
        util_log(UTIL_INFO, "created data dir", "dir=%s", data_dir);
    return 0;
}

int svc_rt_prepare(svc *s, const char *data_dir, const svc_store *st,
                   const svc_method *extra, size_t nextra, char *err, size_t errlen)
{
    const svc_desc *desc = s->desc;
    s->store = *st;
    if (s->store.in_data_dir && svc_data_dir_make(data_dir, err, errlen) < 0)
        return -1;
    if (svc_store_prepare(&s->store, desc->name, desc->migrations, desc->nmigrations,
                          desc->pg_migrations, desc->pg_nmigrations, err, errlen) < 0 ||
        svc_writer_new(&s->writer, &s->store, err, errlen) < 0)
        return -1;
    s->nmethods = desc->nmethods + nextra;
    s->methods = calloc(s->nmethods, sizeof(*s->methods));
    if (s->methods == NULL || rpc_stats_new(&s->stats) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(s->methods, desc->methods, desc->nmethods * sizeof(*s->methods));
    memcpy(s->methods + desc->nmethods, extra, nextra * sizeof(*s->methods));
    return 0;
}

void svc_rt_fini(svc *s)
{
    svc_writer_free(s->writer);
    svc_store_fini(&s->store);
    rpc_stats_free(s->stats);
    free(s->methods);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

const svc_method *svc_rt_find(const svc *s, const char *name)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i].name, name) == 0)
            return &s->methods[i];
    return NULL;
}

/* ---- server hooks ---- */

int svc_rt_thread_init(void *user, void **state)
{
    svc *s = user;
    char err[512], app[64];
    svc_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->s = s;
    snprintf(app, sizeof(app), "tcpops-%s", s->desc->name);
    if (svc_conn_open(&t->conn, &s->store, 0, app, err, sizeof(err)) < 0) {
        char q[600];
        util_log(UTIL_ERROR, "cannot open database", "err=%s", util_logq(q, sizeof(q), err));
        free(t);
        return -EIO;
    }
    *state = t;
    return 0;
}

void svc_rt_thread_fini(void *user, void *state)
{
    svc_thread *t = state;
    (void)user;
    if (t != NULL) {
        svc_conn_close(t->conn);
        free(t);
    }
}


/* One line per call that did not succeed (and per call with --log-calls;
 * UNAVAILABLE at most once a second, saying how many went unlogged),
 * carrying the caller's trace id (the gateway's X-Request-Id) as
 * request_id=, the name the gateway's access line gives it, so a request
 * can be followed end to end. */
void svc_rt_on_call(void *user, const rpc_call_ctx *ctx, int status, const char *error,
                    int64_t duration_us)
{
    svc *s = user;
    int failed = status != TCPOPS__STATUS__OK && status != TCPOPS__STATUS__NOT_FOUND &&
                 status != TCPOPS__STATUS__ALREADY_EXISTS &&
                 status != TCPOPS__STATUS__INVALID_ARGUMENT;
    if (!failed && !s->log_calls)
        return;
    char q[300], t[160], more[48] = "";
    /* A database that is down fails every call alike: one line a second
     * says so, with how many calls it stands for. */
    if (status == TCPOPS__STATUS__UNAVAILABLE && !s->log_calls &&
        !util_log_due(&s->unavailable_log, more, sizeof(more)))
        return;
    util_log(failed ? UTIL_WARN : UTIL_INFO, "call",
             "method=%s status=%s dur_us=%lld request_id=%s%s%s%s", ctx->method,
             rpc_status_name(status), (long long)duration_us,
             util_logq(t, sizeof(t), ctx->trace_id[0] ? ctx->trace_id : "-"),
             status != TCPOPS__STATUS__OK ? " err=" : "",
             status != TCPOPS__STATUS__OK ? util_logq(q, sizeof(q), error) : "", more);
}
