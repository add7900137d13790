#include "testsvc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void echo(const rpc_call_ctx *ctx, const uint8_t *body, size_t len, rpc_reply *out)
{
    (void)ctx;
    out->body = malloc(len ? len : 1);
    if (out->body == NULL) {
        rpc_reply_error(out, TCPOPS__STATUS__INTERNAL, "out of memory");
        return;
    }
    memcpy(out->body, body, len);
    out->body_len = len;
}

static void sleep_then_echo(const rpc_call_ctx *ctx, const uint8_t *body, size_t len,
                            rpc_reply *out)
{
    char ms[32];
    size_t n = len < sizeof(ms) - 1 ? len : sizeof(ms) - 1;
    memcpy(ms, body, n);
    ms[n] = '\0';
    long v = strtol(ms, NULL, 10);
    struct timespec ts = {.tv_sec = v / 1000, .tv_nsec = (v % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    echo(ctx, body, len, out);
}

static void fail(const rpc_call_ctx *ctx, const uint8_t *body, size_t len, rpc_reply *out)
{
    (void)ctx;
    rpc_reply_error(out, TCPOPS__STATUS__INVALID_ARGUMENT, "%.*s", (int)len,
                    (const char *)body);
}

const rpc_method testsvc_methods[] = {
    {"test.Echo", echo, .quick = 1},
    {"test.Sleep", sleep_then_echo, 0},
    {"test.Fail", fail, .quick = 1},
};
const size_t testsvc_nmethods = sizeof(testsvc_methods) / sizeof(testsvc_methods[0]);

char *testsvc_text(void *thread_state, void *user, const char *line, size_t len)
{
    (void)thread_state;
    (void)user;
    char *out = malloc(len + 8);
    if (out != NULL)
        snprintf(out, len + 8, "echo: %.*s", (int)len, line);
    return out;
}

rpc_server *testsvc_start(const rpc_method *m, size_t n, int threads, void *user,
                          rpc_stats *stats, char *addr, size_t len, char *err)
{
    rpc_server_cfg cfg;
    rpc_server *srv = NULL;
    rpc_server_cfg_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.threads = threads;
    cfg.methods = m != NULL ? m : testsvc_methods;
    cfg.nmethods = m != NULL ? n : testsvc_nmethods;
    cfg.user = user;
    cfg.stats = stats;
    if (rpc_server_new(&srv, &cfg, err) < 0)
        return NULL;
    if (rpc_server_start(srv) < 0) {
        snprintf(err, RPC_ERRLEN, "server did not start");
        rpc_server_free(srv);
        return NULL;
    }
    snprintf(addr, len, "127.0.0.1:%d", rpc_server_port(srv, 0));
    return srv;
}

char *testsvc_text_error(void *user, const char *why)
{
    (void)user;
    size_t n = strlen(why) + 8;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "error: %s", why);
    return out;
}

rpc_channel *testsvc_channel(const char *name, const char *addr, const rpc_channel_cfg *base,
                             char *err)
{
    rpc_channel_cfg cfg;
    const char *eps[] = {addr};
    if (base != NULL)
        cfg = *base;
    else
        rpc_channel_cfg_default(&cfg);
    cfg.name = name;
    cfg.endpoints = eps;
    cfg.nendpoints = 1;
    rpc_channel *ch = NULL;
    return rpc_channel_new(&ch, &cfg, err) < 0 ? NULL : ch;
}
