/* Membership: the heartbeat thread and svc.Status (members.h). */
#include "svc/members.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rpc/clock.h"
#include "util/log.h"
#include "util/ready.h"

static const char SQL_MEMBER_UPSERT[] =
    "INSERT INTO members(address, pid, heartbeat_ms) VALUES (?1, ?2, ?3) "
    "ON CONFLICT(address) DO UPDATE SET pid = excluded.pid, heartbeat_ms = excluded.heartbeat_ms";
static const char SQL_MEMBER_DELETE[] = "DELETE FROM members WHERE address = ?1";
static const char SQL_MEMBER_EXPIRE[] = "DELETE FROM members WHERE heartbeat_ms < ?1";
static const char SQL_MEMBER_LIVE[] =
    "SELECT address, pid, heartbeat_ms FROM members WHERE heartbeat_ms >= ?1 ORDER BY address";

/* PostgreSQL: one table for every service, times on the database's clock.
 * One statement per write (the writer pipelines them: pg.h): the beat, and
 * the rows of workers that died without leaving, gone after a while. */
static const char PG_MEMBER_BEAT[] =
    "WITH beat AS (INSERT INTO tcpops_members (service, address, pid, heartbeat) "
    "VALUES ($1, $2, $3, now()) ON CONFLICT (service, address) DO UPDATE "
    "SET pid = excluded.pid, heartbeat = excluded.heartbeat) "
    "DELETE FROM tcpops_members WHERE service = $1 AND address <> $2 "
    "AND heartbeat < now() - $4::bigint * interval '1 millisecond'";
static const char PG_MEMBER_DELETE[] =
    "DELETE FROM tcpops_members WHERE service = $1 AND address = $2";
static const char PG_MEMBER_LIVE[] =
    "SELECT address, pid, (extract(epoch FROM now() - heartbeat) * 1000)::bigint "
    "FROM tcpops_members WHERE service = $1 "
    "AND heartbeat >= now() - $2::bigint * interval '1 millisecond' ORDER BY address";

typedef struct member_write {
    svc *s;
    int leaving;
} member_write;

/* write_member on SQLite. */
static int write_member_sqlite(svc_db *db, member_write *mw, char *err, size_t errlen)
{
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

/* write_member on PostgreSQL. */
static int write_member_pg(svc_pg *pg, member_write *mw, char *err, size_t errlen)
{
    char pid[16], old[24];
    int st;
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    snprintf(old, sizeof(old), "%d", 10 * MEMBER_TTL_MS);
    const char *p[4] = {mw->s->desc->name, mw->s->self, pid, old};
    PQclear(svc_pg_run(pg, "membership", mw->leaving ? PG_MEMBER_DELETE : PG_MEMBER_BEAT,
                       mw->leaving ? 2 : 4, p, &st, err, errlen));
    return st;
}

/* A svc_write_fn: this worker's row written (or deleted), old rows expired. */
static int write_member(svc_conn *c, void *arg, char *err, size_t errlen)
{
    return c->backend == SVC_POSTGRES ? write_member_pg(c->pg, arg, err, errlen)
                                      : write_member_sqlite(c->sqlite, arg, err, errlen);
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
        /* Ready once in the member list, where the gateway finds it: not
         * before (a roll would stop the old worker while this one is
         * invisible). A store that stays down keeps it starting, and the
         * supervisor's ready timeout restarts it. */
        if (st == TCPOPS__STATUS__OK && s->ready_fd >= 0) {
            if (util_ready_notify(s->ready_fd, s->self) < 0)
                util_log(UTIL_WARN, "cannot tell the supervisor it is ready", "fd=%ld",
                         s->ready_fd);
            s->ready_fd = -1;
        }
        if (s->on_beat != NULL)
            s->on_beat(s->on_beat_arg);
        pthread_mutex_lock(&s->lock);
        struct timespec ts;
        rpc_ms_to_timespec(rpc_now_ms() + HEARTBEAT_MS, &ts);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int svc_members_start(svc *s)
{
    return -pthread_create(&s->heartbeat, NULL, heartbeat_main, s);
}

void svc_members_leave(svc *s)
{
    char err[256];
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->heartbeat, NULL);
    member_write mw = {.s = s, .leaving = 1};
    svc_writer_run(s->writer, write_member, &mw, err, sizeof(err));
}

/* ---- svc.Status ---- */

/* The members Status lists, growing as rows are read. */
typedef struct member_list {
    Tcpops__Member *m;
    size_t n, cap;
} member_list;

/* Appends a member with a copy of address. 0 or -ENOMEM. */
static int list_add(member_list *l, const char *address, uint32_t pid, uint64_t age_ms)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        Tcpops__Member *nm = realloc(l->m, cap * sizeof(*nm));
        if (nm == NULL)
            return -ENOMEM;
        l->m = nm;
        l->cap = cap;
    }
    Tcpops__Member m = TCPOPS__MEMBER__INIT;
    m.address = strdup(address);
    m.pid = pid;
    m.heartbeat_ms = age_ms;
    if (m.address == NULL)
        return -ENOMEM;
    l->m[l->n++] = m;
    return 0;
}

static void list_free(member_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->m[i].address);
    free(l->m);
}

/* read_live on SQLite. */
static int read_live_sqlite(svc_db *db, member_list *l, char *err, size_t errlen)
{
    int64_t now = rpc_wall_ms();
    sqlite3_stmt *st = svc_db_stmt(db, SQL_MEMBER_LIVE);
    if (st == NULL)
        return svc_db_fail(db, "membership", err, errlen);
    sqlite3_bind_int64(st, 1, now - MEMBER_TTL_MS);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t age = now - sqlite3_column_int64(st, 2);
        if (list_add(l, (const char *)sqlite3_column_text(st, 0),
                     (uint32_t)sqlite3_column_int64(st, 1), age > 0 ? (uint64_t)age : 0) < 0) {
            sqlite3_reset(st);
            snprintf(err, errlen, "out of memory");
            return TCPOPS__STATUS__INTERNAL;
        }
    }
    return rc == SQLITE_DONE ? TCPOPS__STATUS__OK : svc_db_fail(db, "membership", err, errlen);
}

/* read_live on PostgreSQL. */
static int read_live_pg(svc_pg *pg, const char *service, member_list *l, char *err,
                        size_t errlen)
{
    char ttl[16];
    int st;
    snprintf(ttl, sizeof(ttl), "%d", MEMBER_TTL_MS);
    const char *params[2] = {service, ttl};
    PGresult *r = svc_pg_run(pg, "membership", PG_MEMBER_LIVE, 2, params, &st, err, errlen);
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        long long age = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        if (list_add(l, PQgetvalue(r, i, 0), (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10),
                     age > 0 ? (uint64_t)age : 0) < 0) {
            snprintf(err, errlen, "out of memory");
            st = TCPOPS__STATUS__INTERNAL;
            break;
        }
    }
    PQclear(r);
    return st;
}

/* Reads the live members of s's service into l. A status, with err. */
static int read_live(svc *s, svc_conn *c, member_list *l, char *err, size_t errlen)
{
    return c->backend == SVC_POSTGRES ? read_live_pg(c->pg, s->desc->name, l, err, errlen)
                                      : read_live_sqlite(c->sqlite, l, err, errlen);
}

/* The worker answering is alive even when its heartbeat is not in the table
 * yet (it serves before its first one) or cannot be written (a full disk);
 * one that is stopping left the list on purpose. 0 or -ENOMEM. */
static int add_self(svc *s, member_list *l)
{
    pthread_mutex_lock(&s->lock);
    int listed = s->stopping;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < l->n && !listed; i++)
        listed = l->m[i].address != NULL && strcmp(l->m[i].address, s->self) == 0;
    return listed ? 0 : list_add(l, s->self, (uint32_t)getpid(), 0);
}

/* Packs the answer from the members and the counters into out. */
static void pack_status(svc *s, member_list *l, Tcpops__Member **ptrs, rpc_reply *out)
{
    Tcpops__StatusResponse resp = TCPOPS__STATUS_RESPONSE__INIT;
    Tcpops__StatusResponse__CountersEntry centries[RPC_C_COUNT];
    Tcpops__StatusResponse__CountersEntry *cptrs[RPC_C_COUNT];
    char write_error[256];
    for (size_t i = 0; i < l->n; i++)
        ptrs[i] = &l->m[i];
    resp.service = (char *)s->desc->name;
    resp.pid = (uint32_t)getpid();
    resp.address = s->self;
    resp.uptime_ms = (uint64_t)(rpc_now_ms() - s->started_ms);
    resp.n_members = l->n;
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
}

/* svc.Status: who this worker is and which workers of the service are live. */
static void status_handler(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                           rpc_reply *out)
{
    svc *s = ctx->user;
    member_list l = {0};
    Tcpops__Member **ptrs = NULL;
    char err[sizeof(out->error)];
    (void)body;
    (void)len;

    int st = read_live(s, svc_ctx_conn(ctx), &l, err, sizeof(err));
    if (st != TCPOPS__STATUS__OK)
        rpc_reply_error(out, st, "%s", err);
    else if (add_self(s, &l) < 0 || (ptrs = calloc(l.n ? l.n : 1, sizeof(*ptrs))) == NULL)
        rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "out of memory");
    else
        pack_status(s, &l, ptrs, out);
    list_free(&l);
    free(ptrs);
}

void svc_members_methods(svc *s, svc_method out[SVC_MEMBERS_NMETHODS])
{
    snprintf(s->status_name, sizeof(s->status_name), "%s.Status", s->desc->name);
    out[0] = (svc_method){"svc.Status", status_handler, &tcpops__status_request__descriptor,
                          &tcpops__status_response__descriptor, 0};
    out[1] = out[0];
    out[1].name = s->status_name;
}
