/* Choosing and opening the store (store.h). */
#include "svc/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int svc_store_parse(svc_store *st, const char *db, const char *data_dir, const char *service,
                    char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->service, sizeof(st->service), "%s", service);
    if (db == NULL || db[0] == '\0' || strcmp(db, "sqlite:") == 0) {
        st->backend = SVC_SQLITE;
        st->in_data_dir = 1;
        snprintf(st->path, sizeof(st->path), "%s/%s.db", data_dir, service);
        return 0;
    }
    if (has_prefix(db, "sqlite:")) {
        st->backend = SVC_SQLITE;
        snprintf(st->path, sizeof(st->path), "%s", db + strlen("sqlite:"));
        return 0;
    }
    if (has_prefix(db, "postgresql://") || has_prefix(db, "postgres://")) {
        if (strlen(db) >= sizeof(st->url)) {
            snprintf(err, errlen, "--db: the URL is longer than %zu bytes", sizeof(st->url) - 1);
            return -EINVAL;
        }
        char why[512];
        if (svc_pg_check_url(db, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "--db: not a PostgreSQL URL libpq accepts: %s", why);
            return -EINVAL;
        }
        st->backend = SVC_POSTGRES;
        snprintf(st->url, sizeof(st->url), "%s", db);
        return 0;
    }
    snprintf(err, errlen, "--db: expected sqlite:, sqlite:PATH, postgresql://... or "
             "postgres://..., got \"%s\"", db);
    return -EINVAL;
}

/* Replaces the value of every "password=" query parameter in s (a URL of
 * len bytes at most) with "***": libpq takes the password there too. */
static void hide_query_password(char *s, size_t len)
{
    for (char *p = strchr(s, '?'); p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, "password=", 9) != 0)
            continue;
        char *v = p + 10;
        size_t vlen = strcspn(v, "&"), rest = strlen(v + vlen);
        if ((size_t)(v - s) + 3 + rest + 1 > len) { /* no room: cut the rest */
            snprintf(v, len - (size_t)(v - s), "***");
            return;
        }
        memmove(v + 3, v + vlen, rest + 1);
        memcpy(v, "***", 3);
    }
}

void svc_store_describe(const svc_store *st, char *out, size_t len)
{
    if (st->backend == SVC_SQLITE) {
        snprintf(out, len, "sqlite:%s", st->path);
        return;
    }
    /* postgresql://user:secret@host/db: hide what lies between the first
     * ':' after the scheme and the '@'. */
    const char *rest = strstr(st->url, "://") + 3;
    const char *at = strchr(rest, '@');
    const char *colon = strchr(rest, ':');
    if (at != NULL && colon != NULL && colon < at)
        snprintf(out, len, "%.*s***%s", (int)(colon + 1 - st->url), st->url, at);
    else
        snprintf(out, len, "%s", st->url);
    hide_query_password(out, len);
}

int svc_store_prepare(svc_store *st, const char *service, const svc_migration *sqlite_m,
                      size_t sqlite_n, const svc_migration *pg_m, size_t pg_n, char *err,
                      size_t errlen)
{
    if (st->backend == SVC_POSTGRES) {
        char app[64];
        snprintf(app, sizeof(app), "tcpops-%s", service);
        if (svc_pg_schema_new(&st->schema, service, pg_m, pg_n) < 0 ||
            svc_pg_pool_new(&st->readers, st->url, app, st->schema,
                            st->read_conns > 0 ? st->read_conns : SVC_STORE_READ_CONNS) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    svc_db *db = NULL;
    int rc = svc_db_open(&db, st->path, st->sync_full, err, errlen) < 0 ||
                     svc_db_migrate(db, sqlite_m, sqlite_n, err, errlen) < 0
                 ? -1
                 : 0;
    svc_db_close(db);
    return rc;
}

void svc_store_fini(svc_store *st)
{
    svc_pg_free(st->readers);
    svc_pg_schema_free(st->schema);
    st->readers = NULL;
    st->schema = NULL;
}

int svc_conn_open(svc_conn **out, const svc_store *st, int own, const char *app, char *err,
                  size_t errlen)
{
    svc_conn *c = calloc(1, sizeof(*c));
    int rc;
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->backend = st->backend;
    if (st->backend == SVC_SQLITE) {
        rc = svc_db_open(&c->sqlite, st->path, st->sync_full, err, errlen);
    } else if (!own) {
        c->pg = st->readers;
        c->shared = 1;
        rc = 0;
    } else if ((rc = svc_pg_new(&c->pg, st->url, app, st->schema)) < 0) {
        snprintf(err, errlen, "out of memory");
    }
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void svc_conn_close(svc_conn *c)
{
    if (c == NULL)
        return;
    svc_db_close(c->sqlite);
    if (!c->shared)
        svc_pg_free(c->pg);
    free(c);
}
