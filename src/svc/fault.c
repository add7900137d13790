/* Fault injection as handler wrappers (fault.h). */
#include "svc/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/clock.h"

/* The handler in place of a delayed one: waits, then does what the server
 * does before a handler, since the wait happens after the server looked. */
static void delayed_call(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                         rpc_reply *out)
{
    svc *s = ctx->user;
    const svc_fault *f = s->fault;
    struct timespec ts = {f->delay_ms / 1000, (f->delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    if (ctx->deadline_ms > 0 && rpc_now_ms() >= ctx->deadline_ms) {
        /* The caller has given up: do not spend a database call on it. */
        rpc_stats_add(s->stats, RPC_C_EXPIRED_SKIPPED, 1);
        rpc_reply_error(out, TCPOPS__STATUS__DEADLINE_EXCEEDED,
                        "deadline passed before the call ran");
        return;
    }
    for (size_t i = 0; i < f->ninner; i++) {
        if (strcmp(f->inner[i].name, ctx->method) == 0) {
            f->inner[i].fn(ctx, body, len, out);
            return;
        }
    }
    rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "no handler for %s", ctx->method);
}

/* on_beat: allocates, touches and keeps grow_mb more MiB. */
static void grow(void *arg)
{
    svc_fault *f = arg;
    void **g = realloc(f->grown, (f->ngrown + 1) * sizeof(*g));
    void *block = g != NULL ? malloc((size_t)f->grow_mb << 20) : NULL;
    if (g != NULL)
        f->grown = g;
    if (block != NULL) {
        memset(block, 0xA5, (size_t)f->grow_mb << 20);
        f->grown[f->ngrown++] = block;
    }
}

int svc_fault_arm(svc_fault *f, svc *s, rpc_method *m, size_t n)
{
    s->fault = f;
    if (f->grow_mb > 0) {
        s->on_beat = grow;
        s->on_beat_arg = f;
    }
    if (f->delay_ms <= 0)
        return 0;
    f->inner = calloc(n ? n : 1, sizeof(*f->inner));
    if (f->inner == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (f->delay_method == NULL || strcmp(f->delay_method, m[i].name) == 0) {
            f->inner[f->ninner++] = m[i];
            m[i].fn = delayed_call;
        }
        m[i].quick = 0;
    }
    return 0;
}

void svc_fault_fini(svc_fault *f)
{
    for (size_t i = 0; i < f->ngrown; i++)
        free(f->grown[i]);
    free(f->grown);
    free(f->inner);
}
