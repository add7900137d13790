/* Discovery: svc.Status of every bootstrap endpoint, and the union of the
 * members they list. See sources.h. */
#include "gateway/sources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "tcpops.pb-c.h"

#define MAX_ANSWER 64 /* members kept of one endpoint's answer */

typedef struct source {
    char addr[GW_BOOT_ADDRLEN];
    rpc_channel *ch;
    char members[MAX_ANSWER][GW_MEMBER_ADDRLEN]; /* its last answer */
    size_t n;
    int64_t answered_ms; /* when it last answered; 0: never */
} source;

struct gw_sources {
    rpc_channel_cfg base;
    int grace_ms;
    source *src[GW_BOOT_ADDRS];
    size_t n;
};

int gw_sources_new(gw_sources **out, const rpc_channel_cfg *base, int grace_ms)
{
    gw_sources *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->base = *base;
    s->base.pool_size = 1;
    s->base.spin_us = 0;
    s->base.stats = NULL;
    s->base.on_event = NULL;
    s->grace_ms = grace_ms;
    *out = s;
    return 0;
}

static void source_free(source *src)
{
    rpc_channel_free(src->ch);
    free(src);
}

void gw_sources_free(gw_sources *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        source_free(s->src[i]);
    free(s);
}

static source *find(source *const *list, size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] != NULL && strcmp(list[i]->addr, addr) == 0)
            return list[i];
    return NULL;
}

/* A source for addr with its channel connecting, or NULL with err filled. */
static source *source_new(const gw_sources *s, const char *addr, char *err)
{
    source *src = calloc(1, sizeof(*src));
    if (src == NULL) {
        snprintf(err, RPC_ERRLEN, "out of memory");
        return NULL;
    }
    snprintf(src->addr, sizeof(src->addr), "%s", addr);
    const char *one[1] = {src->addr};
    rpc_channel_cfg cfg = s->base;
    cfg.endpoints = one;
    cfg.nendpoints = 1;
    if (rpc_channel_new(&src->ch, &cfg, err) < 0) {
        free(src);
        return NULL;
    }
    return src;
}

int gw_sources_set(gw_sources *s, char (*addrs)[GW_BOOT_ADDRLEN], size_t n, char *err)
{
    source *next[GW_BOOT_ADDRS] = {NULL};
    size_t nn = 0;
    for (size_t i = 0; i < n && nn < GW_BOOT_ADDRS; i++) {
        source *src = find(s->src, s->n, addrs[i]);
        if (src == NULL && find(next, nn, addrs[i]) != NULL)
            continue; /* listed twice */
        if (src == NULL && (src = source_new(s, addrs[i], err)) == NULL) {
            for (size_t k = 0; k < nn; k++)
                if (find(s->src, s->n, next[k]->addr) == NULL)
                    source_free(next[k]); /* made here: the old set stays */
            return -EINVAL;
        }
        next[nn++] = src;
    }
    for (size_t i = 0; i < s->n; i++)
        if (find(next, nn, s->src[i]->addr) == NULL)
            source_free(s->src[i]);
    memcpy(s->src, next, sizeof(next));
    s->n = nn;
    return 0;
}

/* Asks src for svc.Status; on an answer, keeps its members and tells note. */
static void ask(source *src, int deadline_ms, gw_writes_fn note, void *user)
{
    rpc_call c = {.method = "svc.Status", .deadline_ms = deadline_ms, .idempotent = 1};
    if (rpc_channel_call(src->ch, &c) == TCPOPS__STATUS__OK) {
        Tcpops__StatusResponse *st = tcpops__status_response__unpack(NULL, c.resp_len, c.resp);
        if (st != NULL) {
            if (note != NULL)
                note(user, st->write_status, st->write_error != NULL ? st->write_error : "");
            src->n = 0;
            for (size_t i = 0; i < st->n_members && src->n < MAX_ANSWER; i++)
                snprintf(src->members[src->n++], GW_MEMBER_ADDRLEN, "%s",
                         st->members[i]->address);
            src->answered_ms = rpc_now_ms();
            tcpops__status_response__free_unpacked(st, NULL);
        }
    }
    rpc_call_fini(&c);
}

static int listed(char (*list)[GW_MEMBER_ADDRLEN], size_t n, const char *a)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], a) == 0)
            return 1;
    return 0;
}

int gw_sources_poll(gw_sources *s, int deadline_ms, char (*out)[GW_MEMBER_ADDRLEN], size_t max,
                    gw_writes_fn note, void *user)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        ask(s->src[i], deadline_ms, note, user);
    int64_t now = rpc_now_ms();
    for (size_t i = 0; i < s->n; i++) {
        const source *src = s->src[i];
        if (src->answered_ms == 0 || now - src->answered_ms > s->grace_ms)
            continue;
        for (size_t k = 0; k < src->n && n < max; k++)
            if (!listed(out, n, src->members[k]))
                snprintf(out[n++], GW_MEMBER_ADDRLEN, "%s", src->members[k]);
    }
    return n > 0 ? (int)n : -1;
}
