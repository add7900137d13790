/* tcpops-gateway: the HTTP API (civetweb) in front of the people and pets
 * services. It never exits because a service is missing: it connects in the
 * background, answers 503 + Retry-After for what it cannot reach, and heals
 * when the service appears. SIGTERM stops accepting, finishes the requests in
 * flight and exits 0. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "rpc/frame.h"
#include "rpc/sock.h"
#include "util/flags.h"
#include "gateway/bootstrap.h"
#include "gateway/https.h"
#include "gateway/listener.h"
#include "util/log.h"
#include "util/protect.h"
#include "util/ready.h"
#include "gateway/routes.h"

/* While draining on a shared socket: how long keep-alive clients get to
 * send one more request (answered with Connection: close) and move to the
 * next gateway. */
#define HANDOVER_MS 2000

/* Every request goes to gw_handle from the first one on: a handler set with
 * mg_set_request_handler after mg_start would leave a moment in which
 * civetweb answers 404 by itself. */
static int begin_request(struct mg_connection *conn)
{
    return gw_handle(conn, mg_get_request_info(conn)->user_data);
}

/* civetweb's per-thread request buffer (max_request_size, allocated once
 * per worker; the pages a request does not reach are never touched): larger
 * than our limit, so a head over --max-header-bytes still gets parsed and
 * then a 414/431 with a reason rather than civetweb's bare "Malformed". */
static size_t request_buffer(size_t max_header)
{
    return max_header * 2 > 128 * 1024 ? max_header * 2 : 128 * 1024;
}

/* A connection's user data: counted marks one conn_opened counted in
 * g->conns, answered_by_http_error one (also counted) whose last request
 * http_error answered. NULL: never opened (its TLS handshake failed). */
static int counted;
static int answered_by_http_error;

/* The methods civetweb 1.15 parses (http_methods[] in civetweb.c); any
 * other method makes it refuse the request line with a 400. */
static int civetweb_knows(const char *m)
{
    static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS",
                                        "CONNECT", "PATCH", "PROPFIND", "MKCOL", "LOCK",
                                        "UNLOCK", "PROPPATCH", "REPORT"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(known[i], m) == 0)
            return 1;
    return 0;
}

/* An RFC 9110 token: what a method name is made of. */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return 0;
    return 1;
}

/* Errors civetweb finds before a handler runs (a malformed or unfinished
 * request head, one over its buffer, a method it does not know, a bad
 * Content-Length): answered as JSON like every other error, with our own
 * rules' status and reason where they apply, and counted. civetweb closes
 * the connection after each of them. */
static int http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    gw *g = mg_get_request_info(conn)->user_data;
    gw_req r;
    char why[256];
    const char *allow = NULL;
    gw_req_init(&r, conn, g->deadline_ms);
    gw_req_count(&r, g->metrics, GW_R_OTHER, "other");
    gw_req_close(&r);
    mg_set_user_connection_data(conn, &answered_by_http_error);
    const char *method = r.ri->request_method;
    /* civetweb reads the fields only after it has accepted the method. */
    int st = method != NULL && civetweb_knows(method)
                 ? gw_req_check_head(&r, g->max_header, why, sizeof(why)) : 0;
    if (st == 0 && status == 400 && method != NULL && is_token(method) &&
        !civetweb_knows(method) && r.ri->request_uri != NULL) {
        /* TRACE and the like: a well-formed method no route takes. */
        char target[200];
        snprintf(target, sizeof(target), "%s", r.ri->request_uri);
        target[strcspn(target, "?")] = '\0';
        gw_route route = gw_route_of(target);
        st = route == GW_R_OTHER ? 404 : 405;
        allow = gw_route_allow(route);
        if (route == GW_R_OTHER)
            snprintf(why, sizeof(why), "no route %s", target);
        else
            snprintf(why, sizeof(why), "%s is not allowed on %s", method, target);
    } else if (st == 0 && status == 400 && method == NULL) {
        /* civetweb's "Malformed message": it could not find the end of the
         * head. */
        st = 400;
        snprintf(why, sizeof(why), "request head malformed (control characters), not finished "
                 "in time, or over %zu bytes", request_buffer(g->max_header));
    } else if (st == 0) {
        st = status;
        snprintf(why, sizeof(why), "%s", errmsg != NULL && errmsg[0]
                                         ? errmsg : mg_get_response_code_text(conn, status));
    }
    gw_reply_error(&r, st, allow, "%s", why);
    return 0;
}

/* civetweb 1.15 parses "OPTIONS *" and an absolute-form target that names
 * another host or port (GET http://example.com/people), then closes the
 * connection without a word (process_new_connection: "TODO: Deal with
 * '*'", "TODO: handle non-local request"). It calls no handler for them,
 * so they are answered here, on the way out, while the socket is still
 * open: the request was parsed, no local path was found, and http_error did
 * not answer it. */
static void answer_unrouted(const struct mg_connection *cconn, const struct mg_request_info *ri)
{
    if (ri->request_method == NULL || ri->request_uri == NULL || ri->local_uri != NULL ||
        mg_get_user_connection_data(cconn) == &answered_by_http_error)
        return;
    /* The callback's connection is const, but its socket is still ours to
     * write the answer to. */
    struct mg_connection *conn = (struct mg_connection *)(uintptr_t)cconn;
    gw *g = ri->user_data;
    gw_req r;
    gw_req_init(&r, conn, g->deadline_ms);
    gw_req_count(&r, g->metrics, GW_R_OTHER, "other");
    r.close = 1;
    int st;
    if (strcmp(ri->request_uri, "*") == 0 && strcmp(ri->request_method, "OPTIONS") == 0) {
        st = 200;
        gw_reply_json(&r, st, json_pack("{s:s}", "allow", "GET, HEAD, POST"), "Allow",
                      "GET, HEAD, POST");
    } else if (strcmp(ri->request_uri, "*") == 0) {
        st = 400;
        gw_reply_error(&r, st, NULL, "request target * is for OPTIONS only");
    } else {
        st = 421;
        gw_reply_error(&r, st, NULL, "%.200s is not served here: send the path (GET /people)",
                       ri->request_uri);
    }
}

/* Every connection's last callback with its socket open. One whose TLS
 * handshake failed was never opened (conn_opened): civetweb reuses a
 * worker's connection record, so its request info may still be the last
 * client's, and must not be answered (in plaintext, to someone else). The
 * mark is cleared here, so the next connection on this thread starts
 * without one. */
static void connection_close(const struct mg_connection *cconn)
{
    if (mg_get_user_connection_data(cconn) == NULL)
        return;
    const struct mg_request_info *ri = mg_get_request_info(cconn);
    if (ri != NULL)
        answer_unrouted(cconn, ri);
    gw *g = mg_get_user_data(mg_get_context(cconn));
    atomic_fetch_sub(&g->conns, 1);
    mg_set_user_connection_data(cconn, NULL);
}

/* Counts the connection in (connection_close counts it out): civetweb
 * calls this only once the TLS handshake succeeded, but the close
 * callbacks for every connection. */
static int conn_opened(const struct mg_connection *conn, void **conn_data)
{
    gw *g = mg_get_user_data(mg_get_context(conn));
    atomic_fetch_add(&g->conns, 1);
    *conn_data = &counted;
    return 0;
}

/* civetweb's complaints (a failed TLS handshake, each one: scanners, plain
 * HTTP to the HTTPS port) as at most one line a second, with how many it
 * stands for and the peer of the one logged. */
static int log_civetweb(const struct mg_connection *conn, const char *message)
{
    static util_log_limit limit;
    char q[600], more[48];
    if (!util_log_due(&limit, more, sizeof(more)))
        return 1;
    const struct mg_request_info *ri = conn != NULL ? mg_get_request_info(conn) : NULL;
    util_log(UTIL_WARN, "http", "peer=%s detail=%s%s",
             ri != NULL && ri->remote_addr[0] ? ri->remote_addr : "-",
             util_logq(q, sizeof(q), message), more);
    return 1; /* handled: civetweb prints nothing itself */
}

/* What SIGHUP reads again: the RPC client's certificate, key and CA, and
 * the HTTPS certificate and key (each NULL when not configured). New
 * connections use what was read; on failure what is in use stays. */
typedef struct reloadable {
    rpc_tls *tls;
    gw_https *https;
} reloadable;

static void reload(void *user)
{
    reloadable *r = user;
    char err[RPC_ERRLEN], q[600];
    if (r->tls != NULL && rpc_tls_reload(r->tls, err) < 0)
        util_log(UTIL_ERROR, "tls reload failed", "err=%s", util_logq(q, sizeof(q), err));
    else if (r->tls != NULL)
        util_log(UTIL_INFO, "tls reloaded", NULL);
    if (r->https != NULL && gw_https_reload(r->https, err, sizeof(err)) < 0)
        util_log(UTIL_ERROR, "https reload failed", "err=%s", util_logq(q, sizeof(q), err));
    else if (r->https != NULL)
        util_log(UTIL_INFO, "https reloaded", NULL);
}

/* civetweb's external_ssl_ctx callback: the context is the gateway's. */
static int external_ssl_ctx(void **ssl_ctx, void *user_data)
{
    gw *g = user_data;
    return gw_https_civetweb_ctx(ssl_ctx, g->https);
}

/* --https-cert and --https-key, both or neither; with them, a civetweb that
 * can do TLS and files that load. Initialises civetweb (mg_init_library)
 * in every case. 0 (*out stays NULL without HTTPS), or -1 with err. */
static int https_setup(const char *cert, const char *key, gw_https **out, char *err,
                       size_t errlen)
{
    int given = (cert != NULL && *cert) + (key != NULL && *key);
    if (given == 1) {
        mg_init_library(0);
        snprintf(err, errlen, "HTTPS needs both --https-cert and --https-key (%s missing)",
                 cert != NULL && *cert ? "--https-key" : "--https-cert");
        return -EINVAL;
    }
    if (given == 0) {
        mg_init_library(0);
        return 0;
    }
    if (gw_https_init_library(err, errlen) < 0 || gw_https_new(out, cert, key, err, errlen) < 0)
        return -EIO;
    return 0;
}

/* --people and --pets as lists (gw_boot_parse), checked with the other
 * flags: a bad list is a usage error, so that gw_backend_new failing later
 * is a fault. 0, or -1 with err filled. */
static int check_bootstrap(const char *people, const char *pets, char *err, size_t errlen)
{
    static gw_boot b; /* large; main's thread only */
    if (gw_boot_parse(&b, "--people", people, err, errlen) < 0 ||
        gw_boot_parse(&b, "--pets", pets, err, errlen) < 0)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    /* A reload asked while starting must not kill (SIGHUP's default):
     * util_block_stop_signals takes it over. */
    signal(SIGHUP, SIG_IGN);
    const char *listen = "127.0.0.1:5001";
    const char *people = "127.0.0.1:5002";
    const char *pets = "127.0.0.1:5003";
    /* The RPC side's defaults and limits are the channel's own. */
    rpc_channel_cfg cd;
    rpc_channel_cfg_default(&cd);
    long threads = 1024, pool = cd.pool_size, deadline_ms = cd.deadline_ms;
    long keepalive_ms = 10000, drain_ms = UTIL_DRAIN_MS_DEFAULT, request_timeout_ms = 10000;
    long max_body = 64 * 1024, max_header = 16 * 1024, max_frame = (long)cd.max_frame;
    long max_inflight = cd.max_inflight, max_waiting = cd.max_waiting;
    long resolve_ms = 5000; /* gw_backend's RESOLVE_MS */
    long spin_us = 80, listen_fd = -1; /* spin: the gateway's own choice, see --spin-us */
    long ready_fd = -1;
    int access_log = 1, insecure = 0;
    util_log_opts log = UTIL_LOG_OPTS_DEFAULT;
    rpc_tls_files tls_files = {0};
    rpc_tls *tls = NULL;
    const char *https_cert = NULL, *https_key = NULL;
    gw g;
    memset(&g, 0, sizeof(g));
    const util_flag flags[] = {
        {"listen", UTIL_FLAG_STR, &listen, "HOST:PORT", "HTTP address", 0, 0},
        {"listen-fd", UTIL_FLAG_INT, &listen_fd, "FD",
         "serve on this inherited listening socket (from tcpops) instead of binding --listen",
         0, 65535},
        {"ready-fd", UTIL_FLAG_INT, &ready_fd, "FD", UTIL_READY_FD_HELP, 3, 65535},
        {"people", UTIL_FLAG_STR, &people, "HOST:PORT[,...]",
         "people service bootstrap addresses: HOST an IPv4 address or a DNS name, each of its "
         "A records an endpoint asked for the live workers (no IPv6)", 0, 0},
        {"pets", UTIL_FLAG_STR, &pets, "HOST:PORT[,...]",
         "pets service bootstrap addresses (as --people)", 0, 0},
        {"resolve-ms", UTIL_FLAG_INT, &resolve_ms, "MS",
         "resolve the bootstrap names again this often (and soon after every connection to a "
         "service is lost); endpoints that leave DNS drain", 100, 3600000},
        {"threads", UTIL_FLAG_INT, &threads, "N", "HTTP worker threads (one per open connection)",
         2, 4096},
        {"pool", UTIL_FLAG_INT, &pool, "N", "RPC connections per service worker", 1, 64},
        {"deadline-ms", UTIL_FLAG_INT, &deadline_ms, "MS",
         "time budget of one HTTP request (504 past it)", 1, cd.max_deadline_ms},
        {"keepalive-ms", UTIL_FLAG_INT, &keepalive_ms, "MS",
         "how long an idle HTTP keep-alive connection stays open", 0, 600000},
        {"request-timeout-ms", UTIL_FLAG_INT, &request_timeout_ms, "MS",
         "how long a request's head or body may stall before 400/408", 100, 600000},
        {"access-log", UTIL_FLAG_BOOL, &access_log, NULL, "one log line per request", 0, 0},
        {"drain-ms", UTIL_FLAG_INT | UTIL_FLAG_SHARED, &drain_ms, "MS",
         "on SIGTERM, how long requests in flight may take", 0, 600000},
        {"max-body", UTIL_FLAG_SIZE, &max_body, "BYTES", "request body limit (413 past it)", 1,
         64L << 20},
        {"max-header-bytes", UTIL_FLAG_SIZE, &max_header, "BYTES",
         "request line and headers limit", 1024, 1L << 20},
        {"max-frame", UTIL_FLAG_SIZE, &max_frame, "BYTES", "largest RPC frame accepted",
         RPC_FRAME_MAX_LOWEST, RPC_FRAME_MAX_HIGHEST},
        {"max-inflight", UTIL_FLAG_INT, &max_inflight, "N",
         "RPC calls in flight per connection (more wait for a free one)", 1, 65536},
        {"max-waiting", UTIL_FLAG_INT, &max_waiting, "N",
         "RPC calls per service that may wait for a free slot (more: 503)", 0, 1 << 20},
        {"tls-cert", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &tls_files.cert, "FILE",
         "TLS: the client certificate (PEM) the gateway shows the services; with --tls-key "
         "and --tls-ca every RPC connection is mutual TLS 1.3",
         0, 0},
        {"tls-key", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &tls_files.key, "FILE",
         "TLS: the private key of --tls-cert", 0, 0},
        {"tls-ca", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &tls_files.ca, "FILE",
         "TLS: the CA that signs the services' certificates (SIGHUP reads all three again)", 0,
         0},
        {"https-cert", UTIL_FLAG_STR, &https_cert, "FILE",
         "HTTPS: serve --listen over TLS 1.2/1.3 only, with this PEM certificate (its chain "
         "may follow it) and --https-key; SIGHUP reads both again (or `tcpops restart "
         "gateway`)",
         0, 0},
        {"https-key", UTIL_FLAG_STR, &https_key, "FILE",
         "HTTPS: the PEM private key of --https-cert", 0, 0},
        {"insecure", UTIL_FLAG_BOOL, &insecure, NULL,
         "serve plain HTTP on a non-loopback --listen (without it, such an address needs "
         "HTTPS)",
         0, 0},
        {"spin-us", UTIL_FLAG_INT, &spin_us, "US",
         "when one RPC call is all that is in flight, look for its answer this long before "
         "sleeping (lower latency on an idle machine; 0 = never)",
         0, 1000},
        UTIL_LOG_FLAGS(&log),
    };
    const size_t nflags = sizeof(flags) / sizeof(flags[0]);
    char err[512], q[600];
    util_log_init("gateway");
    util_flags_program("gateway");

    int pos = util_flags_parse(flags, nflags, argc, argv, 1, err, sizeof(err));
    /* tcpops up's preflight (TCPOPS_CHECK_FLAGS=1: the parse returns 0, as
     * for --help) also loads the files named, so that a wrong key stops
     * `tcpops up` before anything starts. */
    const char *check = getenv("TCPOPS_CHECK_FLAGS");
    int checking = pos == 0 && check != NULL && strcmp(check, "1") == 0;
    if (pos == 0 && !checking) {
        printf("usage: tcpops-gateway [FLAGS]\n\nThe HTTP API of tcpops: GET/POST /people, GET "
               "/people/pets?owner=NAME,\nGET /status, /healthz, /readyz, /metrics.\n\n");
        util_flags_usage(stdout, flags, nflags);
        return 0;
    }
    if (pos < 0 || (!checking && pos < argc)) {
        if (pos > 0)
            snprintf(err, sizeof(err), "unexpected argument \"%s\" (see --help)", argv[pos]);
        fprintf(stderr, "tcpops-gateway: %s\n", err);
        return 2;
    }
    util_log_configure(&log);
    int given = rpc_tls_files_check(&tls_files, err);
    if (given < 0 || check_bootstrap(people, pets, err, sizeof(err)) < 0) {
        fprintf(stderr, "tcpops-gateway: %s\n", err);
        return 2;
    }
    /* A file that does not load (mounted late, being rotated) is a fault
     * to retry, not usage: exit 1, and the supervisor restarts it. */
    if (given == 1 && rpc_tls_new(&tls, RPC_TLS_CLIENT, &tls_files, err) < 0) {
        fprintf(stderr, "tcpops-gateway: %s\n", err);
        return 1;
    }
    gw_https *https = NULL;
    /* The exit code when not 0: 2 for usage, 1 for an HTTPS file that does
     * not load. */
    int hs = https_setup(https_cert, https_key, &https, err, sizeof(err));
    int bad = hs == 0 ? 0 : hs == -EINVAL ? 2 : 1;
    /* One HOST:PORT: civetweb would take a list, a bare port (every
     * interface) or a suffix, none of which protected mode judges. */
    struct sockaddr_in la;
    char lerr[RPC_ERRLEN];
    if (!bad && listen_fd < 0 && rpc_addr_parse(listen, &la, lerr) < 0) {
        snprintf(err, sizeof(err), "--listen: expected one HOST:PORT, got \"%.200s\"", listen);
        bad = 2;
    }
    /* Protected mode: a non-loopback --listen needs HTTPS or --insecure. */
    int exposed = bad ? 0
                      : util_protect_check("--listen", listen, https != NULL, insecure,
                                           UTIL_PROTECT_HTTPS_FLAGS, err, sizeof(err));
    if (exposed < 0)
        bad = 2;
    if (bad)
        fprintf(stderr, "tcpops-gateway: %s\n", err);
    if (bad || checking) {
        rpc_tls_free(tls);
        gw_https_free(https);
        mg_exit_library();
        return bad;
    }
    /* HTTPS configured: the listener serves TLS only (protected mode asks
     * for this, or --insecure, on a non-loopback --listen). */
    const int https_on = https != NULL;
    g.https = https;
    if (exposed > 0)
        util_log(UTIL_WARN, "serving plaintext on a non-loopback address",
                 "flag=--listen addr=%s why=\"--insecure: plain HTTP to the network\"", listen);
    /* The access log writes one line per request: batch the writes. */
    util_log_buffered();
    g.deadline_ms = (int)deadline_ms;
    g.access_log = access_log;
    g.max_body = (size_t)max_body;
    g.max_header = (size_t)max_header;
    g.started_ms = rpc_now_ms();

    sigset_t stopset;
    util_block_stop_signals(&stopset);

    int rc = 1;
    struct mg_context *ctx = NULL;
    gw_backend_cfg pc = {.name = "people", .bootstrap = people, .pool_size = (int)pool,
                         .resolve_ms = (int)resolve_ms,
                         .max_frame = (size_t)max_frame, .max_inflight = (int)max_inflight,
                         .max_waiting = (int)max_waiting,
                         .spin_us = (int)spin_us, .tls = tls};
    gw_backend_cfg tc = pc;
    tc.name = "pets";
    tc.bootstrap = pets;
    if (gw_metrics_new(&g.metrics) < 0 ||
        gw_backend_new(&g.people, &pc, err, sizeof(err)) < 0 ||
        gw_backend_new(&g.pets, &tc, err, sizeof(err)) < 0) {
        /* The lists parsed above: what is left is a fault (memory, threads). */
        fprintf(stderr, "tcpops-gateway: %s\n", err);
        goto out;
    }

    char nthreads[24], ka[24], hdr[24], rt[24];
    snprintf(nthreads, sizeof(nthreads), "%ld", threads);
    snprintf(ka, sizeof(ka), "%ld", keepalive_ms);
    snprintf(rt, sizeof(rt), "%ld", request_timeout_ms);
    snprintf(hdr, sizeof(hdr), "%zu", request_buffer((size_t)max_header));
    /* With a socket from the supervisor, civetweb's own listener is a
     * placeholder that gw_listener_adopt replaces. An "s" after the port
     * makes it a TLS port, the placeholder too: civetweb marks the
     * listener (not the descriptor) as TLS, and so the adopted socket. */
    char ports[1024];
    snprintf(ports, sizeof(ports), "%s%s", listen_fd >= 0 ? "127.0.0.1:0" : listen,
             https_on ? "s" : "");
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", nthreads,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", ka,
        "request_timeout_ms", rt,
        "tcp_nodelay", "1",
        "listen_backlog", "1024",
        "max_request_size", hdr,
        /* We route on the path as sent (local_uri_raw), decoding it
         * ourselves: /people%2Fpets must not become /people/pets. */
        "decode_url", "no",
        /* An absolute-form target (GET http://HOST:PORT/people) names this
         * server by its port; any host name is accepted, as in Host. */
        "enable_auth_domain_check", "no",
        NULL, NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.log_message = log_civetweb;
    cb.begin_request = begin_request;
    cb.http_error = http_error;
    cb.connection_close = connection_close;
    cb.init_connection = conn_opened;
    if (https_on)
        cb.external_ssl_ctx = external_ssl_ctx;
    struct mg_init_data init = {.callbacks = &cb, .user_data = &g, .configuration_options = options};
    char mgerr[256] = "";
    struct mg_error_data ed = {.text = mgerr, .text_buffer_size = sizeof(mgerr)};
    ctx = mg_start2(&init, &ed);
    if (ctx == NULL) {
        util_log(UTIL_ERROR, "cannot start HTTP server", "listen=%s err=%s", listen,
                 util_logq(q, sizeof(q), mgerr));
        goto out;
    }
    int slot = -1;
    if (listen_fd >= 0 && gw_listener_adopt(ctx, (int)listen_fd, &slot, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot serve on the inherited socket", "fd=%ld err=%s", listen_fd,
                 util_logq(q, sizeof(q), err));
        goto out;
    }
    util_log(UTIL_INFO, "listening", "addr=%s scheme=%s people=%s pets=%s threads=%ld "
             "deadline_ms=%ld", listen, https_on ? "https" : "http", people, pets, threads,
             deadline_ms);
    /* Only now: the supervisor lets the old gateway go once this one serves. */
    if (util_ready_notify(ready_fd, NULL) < 0)
        util_log(UTIL_WARN, "cannot tell the supervisor it is ready", "fd=%ld", ready_fd);

    reloadable hup = {.tls = tls, .https = https};
    int sig = util_wait_stop(&stopset, reload, &hup);
    atomic_store(&g.draining, 1);
    util_log(UTIL_INFO, "draining", "signal=%s drain_ms=%ld", sig == SIGINT ? "INT" : "TERM",
             drain_ms);
    /* On a shared socket, the next gateway takes the new connections, and
     * each answer from now on says Connection: close, so that keep-alive
     * clients move over between requests instead of seeing their
     * connection cut by mg_stop. */
    if (slot >= 0 && gw_listener_release(slot, err, sizeof(err)) < 0)
        util_log(UTIL_WARN, "still accepting while draining", "err=%s",
                 util_logq(q, sizeof(q), err));
    /* civetweb's mg_stop drops answers not yet written, so the requests in
     * flight are waited for first (readyz already says 503), and, on a
     * shared socket, for up to HANDOVER_MS the connections still open: a
     * client that sends within that time gets its answer and moves; one
     * idle longer is closed by mg_stop. */
    int64_t now = rpc_now_ms(), until = now + drain_ms;
    int64_t handover = now + (drain_ms < HANDOVER_MS ? drain_ms : HANDOVER_MS);
    while ((atomic_load(&g.inflight) > 0 ||
            (slot >= 0 && atomic_load(&g.conns) > 0 && rpc_now_ms() < handover)) &&
           rpc_now_ms() < until) {
        struct timespec tick = {0, 5 * 1000000L};
        nanosleep(&tick, NULL);
    }
    mg_stop(ctx);
    ctx = NULL;
    util_log(UTIL_INFO, "stopped", "requests=%llu",
             (unsigned long long)(gw_metrics_requests(g.metrics, GW_R_PEOPLE, "GET", 0) +
                                  gw_metrics_requests(g.metrics, GW_R_PEOPLE, "POST", 0) +
                                  gw_metrics_requests(g.metrics, GW_R_PEOPLE_PETS, "GET", 0)));
    rc = 0;
out:
    if (ctx != NULL)
        mg_stop(ctx);
    gw_backend_free(g.pets);
    gw_backend_free(g.people);
    gw_metrics_free(g.metrics);
    rpc_tls_free(tls);
    gw_https_free(https); /* after mg_stop: civetweb no longer uses it */
    mg_exit_library();
    return rc;
}
