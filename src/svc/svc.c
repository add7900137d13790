#include "svc/svc.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "util/flags.h"
#include "util/jsondepth.h"
#include "util/log.h"
#include "util/name.h"
#include "rpc/pbcheck.h"
#include "util/pbjson.h"
#include "svc/portlock.h"

#define HEARTBEAT_MS 1000
#define MEMBER_TTL_MS 3000 /* a member silent this long is gone */

typedef struct svc {
    const svc_desc *desc;
    int log_calls;            /* log every call, not just the failed ones */
    svc_method *methods;      /* the service's, then svc.Status and NAME.Status */
    size_t nmethods;
    char db_path[4096];
    int sync_full;
    char self[64];            /* this worker's own address */
    char status_name[64];     /* "people.Status" */
    int64_t started_ms;
    rpc_server *srv;
    rpc_stats *stats;
    svc_writer *writer;

    long grow_mb;             /* fault injection: MiB to allocate each second */
    void **grown;             /* what it allocated, freed at exit */
    size_t ngrown;
    pthread_t heartbeat;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stopping;             /* under lock */
} svc;

typedef struct svc_thread {
    svc *s;
    svc_db *db;
} svc_thread;

/* ---- helpers for handlers ---- */

svc_db *svc_ctx_db(const rpc_call_ctx *ctx)
{
    return ((svc_thread *)ctx->thread_state)->db;
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

/* ---- membership ---- */

static const char SQL_MEMBER_UPSERT[] =
    "INSERT INTO members(address, pid, heartbeat_ms) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(address) DO UPDATE SET pid = excluded.pid, heartbeat_ms = excluded.heartbeat_ms";
static const char SQL_MEMBER_DELETE[] = "DELETE FROM members WHERE address = ?1";
static const char SQL_MEMBER_EXPIRE[] = "DELETE FROM members WHERE heartbeat_ms < ?1";
static const char SQL_MEMBER_LIVE[] =
    "SELECT address, pid, heartbeat_ms FROM members WHERE heartbeat_ms >= ?1 ORDER BY address";

typedef struct member_write {
    svc *s;
    int leaving;
} member_write;

static int write_member(svc_db *db, void *arg, char *err, size_t errlen)
{
    member_write *mw = arg;
    int64_t now = rpc_wall_ms();
    sqlite3_stmt *st = svc_db_stmt(db, mw->leaving ? SQL_MEMBER_DELETE : SQL_MEMBER_UPSERT);
    if (st == NULL)
        goto fail;
    sqlite3_bind_text(st, 1, mw->s->self, -1, SQLITE_STATIC);
    if (!mw->leaving) {
        sqlite3_bind_int64(st, 2, getpid());
        sqlite3_bind_int64(st, 3, now);
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    /* Rows of workers that died without leaving: gone after a while. */
    st = svc_db_stmt(db, SQL_MEMBER_EXPIRE);
    if (st == NULL)
        goto fail;
    sqlite3_bind_int64(st, 1, now - 10 * MEMBER_TTL_MS);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    return TCPOPS__STATUS__OK;
fail:
    return svc_db_fail(db, "membership", err, errlen); /* a full disk: STORAGE_FULL */
}

static void *heartbeat_main(void *arg)
{
    svc *s = arg;
    member_write mw = {.s = s};
    char err[256];
    int failing = 0;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->lock);
        int st = svc_writer_run(s->writer, write_member, &mw, err, sizeof(err));
        if (st != TCPOPS__STATUS__OK && !failing) {
            char q[300];
            util_log(UTIL_WARN, "heartbeat failed", "err=%s", util_logq(q, sizeof(q), err));
        }
        failing = st != TCPOPS__STATUS__OK;
        if (s->grow_mb > 0) {
            /* Fault injection: a leak the supervisor's memory limit must catch. */
            void **g = realloc(s->grown, (s->ngrown + 1) * sizeof(*g));
            void *block = g != NULL ? malloc((size_t)s->grow_mb << 20) : NULL;
            if (g != NULL)
                s->grown = g;
            if (block != NULL) {
                memset(block, 0xA5, (size_t)s->grow_mb << 20);
                s->grown[s->ngrown++] = block;
            }
        }
        pthread_mutex_lock(&s->lock);
        struct timespec ts;
        rpc_ms_to_timespec(rpc_now_ms() + HEARTBEAT_MS, &ts);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* svc.Status: who this worker is and which workers of the service are live. */
static void status_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                           rpc_reply *out)
{
    svc *s = ctx->user;
    svc_db *db = svc_ctx_db(ctx);
    Tcpops__StatusResponse resp = TCPOPS__STATUS_RESPONSE__INIT;
    Tcpops__Member *members = NULL;
    Tcpops__Member **ptrs = NULL;
    Tcpops__StatusResponse__CountersEntry centries[RPC_C_COUNT];
    Tcpops__StatusResponse__CountersEntry *cptrs[RPC_C_COUNT];
    size_t n = 0, cap = 0;
    char write_error[256];
    (void)body;
    (void)len;

    int64_t now = rpc_wall_ms();
    sqlite3_stmt *st = svc_db_stmt(db, SQL_MEMBER_LIVE);
    if (st == NULL)
        goto dberr;
    sqlite3_bind_int64(st, 1, now - MEMBER_TTL_MS);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            Tcpops__Member *nm = realloc(members, cap * sizeof(*nm));
            if (nm == NULL)
                goto nomem;
            members = nm;
        }
        Tcpops__Member m = TCPOPS__MEMBER__INIT;
        m.address = strdup((const char *)sqlite3_column_text(st, 0));
        m.pid = (uint32_t)sqlite3_column_int64(st, 1);
        int64_t age = now - sqlite3_column_int64(st, 2);
        m.heartbeat_ms = age > 0 ? (uint64_t)age : 0;
        members[n++] = m;
    }
    if (rc != SQLITE_DONE)
        goto dberr;
    /* The worker answering is alive even when its heartbeat is not in the
     * table yet (it serves before its first one) or cannot be written (a
     * full disk); one that is stopping left the list on purpose. */
    pthread_mutex_lock(&s->lock);
    int listed = s->stopping;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n && !listed; i++)
        listed = members[i].address != NULL && strcmp(members[i].address, s->self) == 0;
    if (!listed) {
        Tcpops__Member *nm = realloc(members, (n + 1) * sizeof(*nm));
        if (nm == NULL)
            goto nomem;
        members = nm;
        Tcpops__Member m = TCPOPS__MEMBER__INIT;
        m.address = strdup(s->self);
        m.pid = (uint32_t)getpid();
        if (m.address == NULL)
            goto nomem;
        members[n++] = m;
    }
    ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (ptrs == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &members[i];

    resp.service = (char *)s->desc->name;
    resp.pid = (uint32_t)getpid();
    resp.address = s->self;
    resp.uptime_ms = (uint64_t)(rpc_now_ms() - s->started_ms);
    resp.n_members = n;
    resp.members = ptrs;
    resp.connections = (uint64_t)rpc_stats_get(s->stats, RPC_C_CONNS_OPEN);
    for (int code = 0; code <= RPC_STATS_STATUSES; code++)
        resp.calls += rpc_stats_calls(s->stats, NULL, code);
    /* Every server counter: limits hit, protocol errors, connections. */
    for (int c = 0; c < RPC_C_COUNT; c++) {
        tcpops__status_response__counters_entry__init(&centries[c]);
        centries[c].key = (char *)rpc_counter_name((rpc_counter)c);
        centries[c].value = rpc_stats_get(s->stats, (rpc_counter)c);
        cptrs[c] = &centries[c];
    }
    resp.n_counters = RPC_C_COUNT;
    resp.counters = cptrs;
    /* A failing heartbeat or create (a full disk) shows here, for /status. */
    resp.write_status = svc_writer_health(s->writer, write_error, sizeof(write_error));
    resp.write_error = write_error;
    rpc_reply_pack(out, &resp.base);
    goto out;
nomem:
    rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "out of memory");
    goto out;
dberr:
    rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "membership: %s",
                    sqlite3_errmsg(svc_db_handle(db)));
out:
    for (size_t i = 0; i < n; i++)
        free(members[i].address);
    free(members);
    free(ptrs);
}

/* ---- text mode: one JSON object per line ---- */

static char *text_reply(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

static char *text_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *text_error(const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_t *text = json_string(msg);
    if (text == NULL)
        text = json_string("(error text is not valid UTF-8)");
    json_object_set_new(o, "error", text);
    json_object_set_new(o, "code", json_string(code));
    return text_reply(o);
}

static const svc_method *find_method(const svc *s, const char *name)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i].name, name) == 0)
            return &s->methods[i];
    return NULL;
}

static char *text_line(void *thread_state, void *user, const char *line, size_t len)
{
    svc *s = user;
    json_error_t jerr;
    json_t *in = NULL;
    char *answer = NULL;
    ProtobufCMessage *req = NULL, *resp = NULL;
    uint8_t *body = NULL;
    rpc_reply rep;
    memset(&rep, 0, sizeof(rep));

    /* A server worker runs this, on a thread stack of RLIMIT_STACK's size;
     * jansson would recurse once per level, up to 2048 of them. */
    if (!util_json_depth_ok(line, len, UTIL_JSON_MAX_DEPTH)) {
        answer = text_error("INVALID_ARGUMENT", "JSON nested more than %d levels deep",
                            UTIL_JSON_MAX_DEPTH);
        goto out;
    }
    in = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (in == NULL || !json_is_object(in)) {
        answer = in == NULL ? text_error("INVALID_ARGUMENT", "invalid JSON: %s", jerr.text)
                            : text_error("INVALID_ARGUMENT", "expected a JSON object");
        goto out;
    }
    const char *cmd = json_string_value(json_object_get(in, "cmd"));
    if (cmd == NULL) {
        answer = text_error("INVALID_ARGUMENT", "missing \"cmd\" (try {\"cmd\":\"help\"})");
        goto out;
    }
    if (strcmp(cmd, "ping") == 0) {
        answer = text_reply(json_pack("{s:b}", "pong", 1));
        goto out;
    }
    if (strcmp(cmd, "help") == 0) {
        json_t *cmds = json_array();
        json_array_append_new(cmds, json_string("status"));
        json_array_append_new(cmds, json_string("ping"));
        for (size_t i = 0; i < s->nmethods; i++)
            json_array_append_new(cmds, json_string(s->methods[i].name));
        answer = text_reply(json_pack("{s:o}", "commands", cmds));
        goto out;
    }
    const svc_method *m = find_method(s, strcmp(cmd, "status") == 0 ? "svc.Status" : cmd);
    if (m == NULL) {
        answer = text_error("UNIMPLEMENTED", "unknown command \"%.100s\" (try {\"cmd\":\"help\"})",
                            cmd);
        goto out;
    }
    char why[256];
    if (pbjson_to_message(m->req, in, &req, why, sizeof(why)) < 0) {
        answer = text_error("INVALID_ARGUMENT", "%s: %s", m->name, why);
        goto out;
    }
    size_t n = protobuf_c_message_get_packed_size(req);
    body = malloc(n ? n : 1);
    if (body == NULL) {
        answer = text_error("INTERNAL", "out of memory");
        goto out;
    }
    protobuf_c_message_pack(req, body);
    rpc_call_ctx ctx = {.method = m->name, .trace_id = "", .thread_state = thread_state,
                        .user = s};
    m->fn(&ctx, body, n, &rep);
    rpc_stats_call(s->stats, m->name, rep.status);
    if (rep.status != TCPOPS__STATUS__OK) {
        answer = text_error(rpc_status_name(rep.status), "%s", rep.error);
        goto out;
    }
    resp = protobuf_c_message_unpack(m->resp, NULL, rep.body_len, rep.body);
    if (resp == NULL) {
        answer = text_error("INTERNAL", "%s answered bytes that do not decode", m->name);
        goto out;
    }
    answer = text_reply(pbjson_from_message(resp));
out:
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (req != NULL)
        protobuf_c_message_free_unpacked(req, NULL);
    free(rep.body);
    free(body);
    json_decref(in);
    return answer != NULL ? answer : strdup("{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}");
}

/* One line per call that did not succeed (and per call with --log-calls),
 * carrying the caller's trace id so a request can be followed end to end. */
static void on_call(void *user, const rpc_call_ctx *ctx, int status, const char *error,
                    int64_t duration_us)
{
    svc *s = user;
    int failed = status != TCPOPS__STATUS__OK && status != TCPOPS__STATUS__NOT_FOUND &&
                 status != TCPOPS__STATUS__ALREADY_EXISTS &&
                 status != TCPOPS__STATUS__INVALID_ARGUMENT;
    if (!failed && !s->log_calls)
        return;
    char q[300], t[160];
    util_log(failed ? UTIL_WARN : UTIL_INFO, "call",
             "method=%s status=%s dur_us=%lld trace_id=%s%s%s", ctx->method,
             rpc_status_name(status), (long long)duration_us,
             util_logq(t, sizeof(t), ctx->trace_id[0] ? ctx->trace_id : "-"),
             status != TCPOPS__STATUS__OK ? " err=" : "",
             status != TCPOPS__STATUS__OK ? util_logq(q, sizeof(q), error) : "");
}

/* ---- worker threads ---- */

static int thread_init(void *user, void **state)
{
    svc *s = user;
    char err[512];
    svc_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->s = s;
    if (svc_db_open(&t->db, s->db_path, s->sync_full, err, sizeof(err)) < 0) {
        char q[600];
        util_log(UTIL_ERROR, "cannot open database", "err=%s", util_logq(q, sizeof(q), err));
        free(t);
        return -EIO;
    }
    *state = t;
    return 0;
}

static void thread_fini(void *user, void *state)
{
    svc_thread *t = state;
    (void)user;
    if (t != NULL) {
        svc_db_close(t->db);
        free(t);
    }
}

/* ---- setting up ---- */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Creates the data dir, brings the database up to date, starts the writer
 * and builds the method table (the service's, then Status under two names).
 * s->sync_full must be set. 0, or -1 with err filled. */
static int svc_prepare(svc *s, const svc_desc *desc, const char *data_dir, char *err,
                       size_t errlen)
{
    int rc = mkdir_p(data_dir);
    s->desc = desc;
    if (rc < 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", data_dir, strerror(-rc));
        return -1;
    }
    snprintf(s->db_path, sizeof(s->db_path), "%s/%s.db", data_dir, desc->name);
    svc_db *mdb = NULL;
    if (svc_db_open(&mdb, s->db_path, s->sync_full, err, errlen) < 0 ||
        svc_db_migrate(mdb, desc->migrations, desc->nmigrations, err, errlen) < 0) {
        svc_db_close(mdb);
        return -1;
    }
    svc_db_close(mdb);
    if (svc_writer_new(&s->writer, s->db_path, s->sync_full, err, errlen) < 0)
        return -1;
    s->nmethods = desc->nmethods + 2;
    s->methods = calloc(s->nmethods, sizeof(*s->methods));
    if (s->methods == NULL || rpc_stats_new(&s->stats) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(s->status_name, sizeof(s->status_name), "%s.Status", desc->name);
    memcpy(s->methods, desc->methods, desc->nmethods * sizeof(*s->methods));
    s->methods[desc->nmethods] = (svc_method){"svc.Status", status_handler,
                                              &tcpops__status_request__descriptor,
                                              &tcpops__status_response__descriptor, 0};
    s->methods[desc->nmethods + 1] = s->methods[desc->nmethods];
    s->methods[desc->nmethods + 1].name = s->status_name;
    return 0;
}

/* Claims the port of listen for this service and store (portlock.h): the
 * identity is the service's name and the real path of its database. Port 0
 * (any free port) is never shared and needs no claim. 0, or a negative
 * errno with err filled. */
static int claim_port(const svc_desc *desc, const char *listen, const char *data_dir,
                      svc_portlock **out, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    char rerr[RPC_ERRLEN], abs[PATH_MAX], identity[PATH_MAX + 128];
    int rc = rpc_addr_parse(listen, &sa, rerr);
    if (rc < 0) {
        snprintf(err, errlen, "%s", rerr);
        return rc;
    }
    if (ntohs(sa.sin_port) == 0)
        return 0;
    if ((rc = mkdir_p(data_dir)) < 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", data_dir, strerror(-rc));
        return rc;
    }
    if (realpath(data_dir, abs) == NULL) {
        rc = -errno;
        snprintf(err, errlen, "data dir %s: %s", data_dir, strerror(errno));
        return rc;
    }
    snprintf(identity, sizeof(identity), "%s sqlite:%s/%s.db", desc->name, abs, desc->name);
    return svc_portlock_new(out, ntohs(sa.sin_port), identity, err, errlen);
}

/* ---- in process, without a server ---- */

struct svc_local {
    svc s;
    svc_thread t;
};

int svc_local_new(svc_local **out, const svc_desc *desc, const char *data_dir, char *err,
                  size_t errlen)
{
    svc_local *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->s.started_ms = rpc_now_ms();
    snprintf(l->s.self, sizeof(l->s.self), "local");
    pthread_mutex_init(&l->s.lock, NULL);
    rpc_cond_init(&l->s.cond);
    l->t.s = &l->s;
    if (svc_prepare(&l->s, desc, data_dir, err, errlen) < 0 ||
        svc_db_open(&l->t.db, l->s.db_path, 0, err, errlen) < 0) {
        svc_local_free(l);
        return -EIO;
    }
    *out = l;
    return 0;
}

void svc_local_free(svc_local *l)
{
    if (l == NULL)
        return;
    svc_db_close(l->t.db);
    svc_writer_free(l->s.writer);
    rpc_stats_free(l->s.stats);
    free(l->s.methods);
    pthread_mutex_destroy(&l->s.lock);
    pthread_cond_destroy(&l->s.cond);
    free(l);
}

int svc_local_call(svc_local *l, const char *method, const uint8_t *body, size_t len,
                   rpc_reply *out)
{
    memset(out, 0, sizeof(*out));
    const svc_method *m = find_method(&l->s, method);
    if (m == NULL)
        return -ENOENT;
    rpc_call_ctx ctx = {.method = m->name, .trace_id = "", .thread_state = &l->t,
                        .user = &l->s};
    m->fn(&ctx, body, len, out);
    return 0;
}

char *svc_local_text(svc_local *l, const char *line, size_t len)
{
    return text_line(&l->t, &l->s, line, len);
}

/* ---- main ---- */


int svc_main(const svc_desc *desc, int argc, char **argv)
{
    const char *listen = desc->default_listen;
    const char *member_listen = "127.0.0.1:0";
    const char *data_dir = "./var";
    const char *sync = "normal";
    long threads = 4, max_frame = RPC_FRAME_MAX_DEFAULT, max_conns = 1024, drain_ms = 5000;
    long max_inflight = 256, max_write_buf = 4L << 20, partial_ms = 10000, idle_ms = 60000;
    long max_queue = 4096;
    long delay_ms = 0;
    const char *delay_method = NULL;
    svc s;
    memset(&s, 0, sizeof(s));
    const util_flag flags[] = {
        {"listen", UTIL_FLAG_STR, &listen, "HOST:PORT", "shared address of every worker", 0, 0},
        {"member-listen", UTIL_FLAG_STR, &member_listen, "HOST:PORT",
         "this worker's own address (port 0 picks one)", 0, 0},
        {"data-dir", UTIL_FLAG_STR, &data_dir, "DIR", "where the SQLite database lives", 0, 0},
        {"threads", UTIL_FLAG_INT, &threads, "N", "worker threads", 1, 256},
        {"sync", UTIL_FLAG_CHOICE, &sync, "normal|full",
         "normal survives kill -9; full also survives power loss", 0, 0},
        {"max-frame", UTIL_FLAG_SIZE, &max_frame, "BYTES", "largest frame accepted", 64,
         16L * 1024 * 1024 - 1},
        {"max-conns", UTIL_FLAG_INT, &max_conns, "N",
         "connections served at once (then the longest-idle one makes room)", 1, 65536},
        {"max-inflight", UTIL_FLAG_INT, &max_inflight, "N",
         "calls in flight per connection (more wait: the peer is not read)", 1, 65536},
        {"max-queue", UTIL_FLAG_INT, &max_queue, "N",
         "calls waiting for a worker thread (more: RESOURCE_EXHAUSTED)", 1, 1 << 20},
        {"max-write-buffer", UTIL_FLAG_SIZE, &max_write_buf, "BYTES",
         "answers queued for a peer that does not read, before it is cut off", 4096,
         1L << 30},
        {"partial-timeout-ms", UTIL_FLAG_INT, &partial_ms, "MS",
         "a started frame must complete, and unread answers move, within this", 10,
         3600000},
        {"idle-timeout-ms", UTIL_FLAG_INT, &idle_ms, "MS",
         "close a connection silent this long", 100, 86400000},
        {"drain-ms", UTIL_FLAG_INT, &drain_ms, "MS",
         "on SIGTERM, how long calls in flight may take", 0, 600000},
        {"log-calls", UTIL_FLAG_BOOL, &s.log_calls, NULL,
         "log every call with its trace id (failed calls are always logged)", 0, 0},
        {"delay-ms", UTIL_FLAG_INT, &delay_ms, "MS",
         "fault injection: hold each call this long before running it", 0, 600000},
        {"delay-method", UTIL_FLAG_STR, &delay_method, "METHOD",
         "fault injection: only delay this method (default: all)", 0, 0},
        {"fault-grow-mb", UTIL_FLAG_INT, &s.grow_mb, "MB",
         "fault injection: allocate and keep this many MiB every second", 0, 1024},
    };
    const size_t nflags = sizeof(flags) / sizeof(flags[0]);
    char err[1024], q[1200];
    int rc = 1;
    rpc_method *rm = NULL;
    svc_portlock *plock = NULL;
    s.desc = desc;
    s.started_ms = rpc_now_ms();
    pthread_mutex_init(&s.lock, NULL);
    rpc_cond_init(&s.cond);
    util_log_init(desc->name);

    int pos = util_flags_parse(flags, nflags, argc, argv, 1, err, sizeof(err));
    if (pos == 0) {
        printf("usage: tcpops-%s [FLAGS]\n\nThe %s service: RPC on --listen (shared by every "
               "worker), text mode for humans\n(echo '{\"cmd\":\"status\"}' | nc HOST PORT), "
               "data in DIR/%s.db.\n\n",
               desc->name, desc->name, desc->name);
        util_flags_usage(stdout, flags, nflags);
        return 0;
    }
    if (pos < 0 || pos < argc) {
        fprintf(stderr, "tcpops-%s: %s\n", desc->name,
                pos < 0 ? err : "unexpected argument (see --help)");
        return 2;
    }
    s.sync_full = strcmp(sync, "full") == 0;

    /* A write past the file size limit (RLIMIT_FSIZE) must fail with EFBIG,
     * a full disk like any other (STORAGE_FULL), not kill the worker. */
    signal(SIGXFSZ, SIG_IGN);
    /* Block the stop signals in every thread; main waits for them below. */
    sigset_t stopset;
    util_block_stop_signals(&stopset);

    /* Claim the shared port for this service and store before the store is
     * touched or the port bound (see portlock.h). */
    if (claim_port(desc, listen, data_dir, &plock, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot listen", "addr=%s err=%s", listen,
                 util_logq(q, sizeof(q), err));
        goto out;
    }
    if (svc_prepare(&s, desc, data_dir, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), err));
        goto out;
    }
    rm = calloc(s.nmethods, sizeof(*rm));
    if (rm == NULL)
        goto out;
    for (size_t i = 0; i < s.nmethods; i++)
        rm[i] = (rpc_method){s.methods[i].name, s.methods[i].fn, s.methods[i].quick};

    rpc_server_cfg cfg;
    rpc_server_cfg_default(&cfg);
    cfg.listen = listen;
    cfg.reuseport = 1;
    cfg.threads = (int)threads;
    cfg.max_frame = (size_t)max_frame;
    cfg.max_conns = (int)max_conns;
    cfg.max_inflight = (int)max_inflight;
    cfg.queue_max = (int)max_queue;
    cfg.max_write_buf = (size_t)max_write_buf;
    cfg.partial_timeout_ms = (int)partial_ms;
    cfg.idle_timeout_ms = (int)idle_ms;
    cfg.methods = rm;
    cfg.nmethods = s.nmethods;
    cfg.text = text_line;
    cfg.thread_init = thread_init;
    cfg.thread_fini = thread_fini;
    cfg.user = &s;
    cfg.stats = s.stats;
    cfg.on_call = on_call;
    cfg.delay_ms = (int)delay_ms;
    cfg.delay_method = delay_method;
    char rerr[RPC_ERRLEN];
    int lrc = rpc_server_new(&s.srv, &cfg, rerr);
    if (lrc == -EADDRINUSE) {
        /* The claim was ours, so the holder is not a worker of this store. */
        snprintf(err, sizeof(err), "address in use: %s (by a program that is not a tcpops-%s "
                 "worker of this store); stop it or choose another --listen port", rerr,
                 desc->name);
        util_log(UTIL_ERROR, "cannot listen", "addr=%s err=%s", listen,
                 util_logq(q, sizeof(q), err));
        goto out;
    } else if (lrc < 0) {
        util_log(UTIL_ERROR, "cannot listen", "err=%s", util_logq(q, sizeof(q), rerr));
        goto out;
    }
    int own = rpc_server_listen(s.srv, member_listen, 0, rerr);
    if (own < 0) {
        util_log(UTIL_ERROR, "cannot listen", "err=%s", util_logq(q, sizeof(q), rerr));
        goto out;
    }
    {
        const char *colon = strrchr(member_listen, ':');
        int hl = colon != NULL ? (int)(colon - member_listen) : 0;
        snprintf(s.self, sizeof(s.self), "%.*s:%d", hl > 0 ? hl : 9,
                 hl > 0 ? member_listen : "127.0.0.1", rpc_server_port(s.srv, own));
    }
    if (rpc_server_start(s.srv) < 0) {
        util_log(UTIL_ERROR, "cannot start worker threads", "db=%s",
                 util_logq(q, sizeof(q), s.db_path));
        goto out;
    }
    if (pthread_create(&s.heartbeat, NULL, heartbeat_main, &s) != 0)
        goto out;
    util_log(UTIL_INFO, "listening", "addr=%s port=%d member=%s db=%s threads=%ld sync=%s",
             listen, rpc_server_port(s.srv, 0), s.self, util_logq(q, sizeof(q), s.db_path),
             threads, sync);

    int sig = 0;
    sigwait(&stopset, &sig);
    util_log(UTIL_INFO, "draining", "signal=%s drain_ms=%ld", sig == SIGINT ? "INT" : "TERM",
             drain_ms);

    pthread_mutex_lock(&s.lock);
    s.stopping = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.lock);
    pthread_join(s.heartbeat, NULL);
    /* Leave the member list first, so gateways stop choosing this worker. */
    member_write mw = {.s = &s, .leaving = 1};
    svc_writer_run(s.writer, write_member, &mw, err, sizeof(err));
    int drained = rpc_server_drain(s.srv, (int)drain_ms);
    util_log(drained == 0 ? UTIL_INFO : UTIL_WARN, "stopped",
             "drained=%s calls=%llu", drained == 0 ? "all" : "timeout",
             (unsigned long long)rpc_stats_calls(s.stats, NULL, TCPOPS__STATUS__OK));
    rc = 0;
out:
    rpc_server_free(s.srv);
    svc_portlock_free(plock);
    svc_writer_free(s.writer);
    rpc_stats_free(s.stats);
    free(rm);
    for (size_t i = 0; i < s.ngrown; i++)
        free(s.grown[i]);
    free(s.grown);
    free(s.methods);
    return rc;
}
