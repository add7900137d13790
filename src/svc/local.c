/* A service's handlers in this process, without a server (svc.h's
 * svc_local_*): the shared state as svc_main has it, with one thread state.
 * Calls: runtime, members (the Status methods), text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/members.h"
#include "svc/runtime.h"
#include "svc/svc.h"
#include "svc/text.h"

struct svc_local {
    svc s;
    svc_thread t;
};

int svc_local_new(svc_local **out, const svc_desc *desc, const char *data_dir, const char *db,
                  char *err, size_t errlen)
{
    svc_local *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    svc_method extra[SVC_MEMBERS_NMETHODS];
    svc_rt_init(&l->s, desc, "local");
    svc_members_methods(&l->s, extra);
    l->t.s = &l->s;
    svc_store st;
    if (svc_store_parse(&st, db, data_dir, desc->name, err, errlen) < 0 ||
        svc_rt_prepare(&l->s, data_dir, &st, extra, SVC_MEMBERS_NMETHODS, err, errlen) < 0 ||
        svc_conn_open(&l->t.conn, &l->s.store, 0, "tcpops-local", err, errlen) < 0) {
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
    svc_conn_close(l->t.conn);
    svc_rt_fini(&l->s);
    free(l);
}

int svc_local_call(svc_local *l, const char *method, const uint8_t *body, size_t len,
                   rpc_reply *out)
{
    memset(out, 0, sizeof(*out));
    const svc_method *m = svc_rt_find(&l->s, method);
    if (m == NULL)
        return -ENOENT;
    rpc_call_ctx ctx = {.method = m->name, .trace_id = "", .thread_state = &l->t,
                        .user = &l->s};
    m->fn(&ctx, body, len, out);
    return 0;
}

char *svc_local_text(svc_local *l, const char *line, size_t len)
{
    return svc_text_line(&l->t, &l->s, line, len);
}
