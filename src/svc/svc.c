/* svc_main: a worker process's flags, start-up and shutdown (svc.h). What it
 * starts lives beside it: runtime (the shared state and server hooks),
 * members (heartbeat, Status), text (the text-mode bridge), fault (fault
 * injection), portlock (who may share the port). */
#include "svc/svc.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/clock.h"
#include "svc/fault.h"
#include "svc/members.h"
#include "svc/portlock.h"
#include "svc/runtime.h"
#include "svc/text.h"
#include "util/flags.h"
#include "util/log.h"
#include "util/protect.h"
#include "util/ready.h"

/* Worker threads on PostgreSQL when --threads is 0: a thread waits for the
 * database most of its call, and group commit needs writers waiting. */
#define SVC_PG_THREADS 32

/* The smallest --max-write-buffer but 0 (which means room for four frames). */
#define MIN_WRITE_BUF 4096

/* The flags svc_main reads that are neither the svc's nor the server's
 * fields (the server's are longs here, for util_flags). */
typedef struct svc_opts {
    const char *listen, *member_listen, *data_dir, *sync, *db, *advertise;
    rpc_tls_files tls;
    long threads, db_conns, max_frame, max_conns, max_inflight, max_queue, max_write_buf;
    long partial_ms, idle_ms, drain_ms;
    long ready_fd;            /* --ready-fd: told once serving; -1 none */
    int insecure;             /* --insecure: plaintext on a non-loopback address */
    const char *text_mode;    /* --text-mode: loopback|any|off */
} svc_opts;

/* The identity of the store for the port claim: the service's name and
 * where its data lives (for SQLite the real path of the file, created
 * directory when it is the default one under data_dir). 0, or a
 * negative errno with err filled. */
static int store_identity(const svc_desc *desc, const svc_store *st, const char *data_dir,
                          char *out, size_t len, char *err, size_t errlen)
{
    char abs[PATH_MAX], where[PATH_MAX + 16];
    int rc;
    if (st->backend == SVC_POSTGRES) {
        svc_store_describe(st, where, sizeof(where));
    } else if (st->in_data_dir) {
        if ((rc = svc_data_dir_make(data_dir, err, errlen)) < 0)
            return rc;
        if (realpath(data_dir, abs) == NULL) {
            rc = -errno;
            snprintf(err, errlen, "data dir %s: %s", data_dir, strerror(errno));
            return rc;
        }
        snprintf(where, sizeof(where), "sqlite:%s/%s.db", abs, desc->name);
    } else {
        snprintf(where, sizeof(where), "sqlite:%s",
                 realpath(st->path, abs) != NULL ? abs : st->path);
    }
    snprintf(out, len, "%s %s", desc->name, where);
    return 0;
}

/* Claims the port of listen for this service and store (portlock.h). Port
 * 0 (any free port) is never shared and needs no claim. 0, or a negative
 * errno with err filled. */
static int claim_port(const char *listen, const char *identity, svc_portlock **out, char *err,
                      size_t errlen)
{
    struct sockaddr_in sa;
    char rerr[RPC_ERRLEN];
    int rc = rpc_addr_parse(listen, &sa, rerr);
    if (rc < 0) {
        snprintf(err, errlen, "%s", rerr);
        return rc;
    }
    if (ntohs(sa.sin_port) == 0)
        return 0;
    return svc_portlock_new(out, ntohs(sa.sin_port), identity, err, errlen);
}

/* This worker's address as other hosts reach it: --advertise HOST:PORT as
 * given, --advertise HOST with the member port, or the member listen
 * address itself. */
static void set_self(svc *s, const svc_opts *o, int member_port)
{
    const char *host = o->advertise != NULL && o->advertise[0] ? o->advertise : o->member_listen;
    const char *colon = strrchr(host, ':');
    if (host == o->advertise && colon != NULL) {
        snprintf(s->self, sizeof(s->self), "%s", host);
        return;
    }
    int hl = host == o->advertise ? (int)strlen(host)
             : colon != NULL      ? (int)(colon - host)
                                  : 0;
    snprintf(s->self, sizeof(s->self), "%.*s:%d", hl > 0 ? hl : 9,
             hl > 0 ? host : "127.0.0.1", member_port);
}

/* A refused TLS handshake (I/O thread). */
static void log_refused(void *user, const char *peer, const char *why)
{
    svc *s = user;
    char q[300], more[48];
    if (util_log_due(&s->tls_log, more, sizeof(more)))
        util_log(UTIL_WARN, "tls refused", "peer=%s err=%s%s", peer,
                 util_logq(q, sizeof(q), why), more);
}

/* A connection refused text mode by --text-mode (I/O thread). */
static void log_text_refused(void *user, const char *peer, const char *why)
{
    svc *s = user;
    char q[300], more[48];
    if (util_log_due(&s->text_log, more, sizeof(more)))
        util_log(UTIL_WARN, "text mode refused", "peer=%s err=%s hint=%s%s", peer,
                 util_logq(q, sizeof(q), why),
                 "\"--text-mode=any serves it to every client\"", more);
}

/* Whether the three TLS files are given (empty names are not). */
static int tls_given(const svc_opts *o)
{
    char err[RPC_ERRLEN];
    return rpc_tls_files_check(&o->tls, err) == 1;
}

/* Protected mode (util/protect.h) for both addresses the worker listens
 * on: 0, or -1 with err filled. A plaintext one on the network that
 * --insecure allows is logged as a warning. */
static int check_protected(const svc_opts *o, char *err, size_t errlen)
{
    const char *what[2] = {"--listen", "--member-listen"};
    const char *addr[2] = {o->listen, o->member_listen};
    for (int i = 0; i < 2; i++) {
        int rc = util_protect_check(what[i], addr[i], tls_given(o), o->insecure,
                                    UTIL_PROTECT_TLS_FLAGS, err, errlen);
        if (rc < 0)
            return -1;
        if (rc > 0)
            util_log(UTIL_WARN, "serving plaintext on a non-loopback address",
                     "flag=%s addr=%s why=\"--insecure: no TLS, anyone who reaches it may call "
                     "every method\"", what[i], addr[i]);
    }
    return 0;
}

/* The server's configuration from the flags, serving s's methods as rm. */
static void server_cfg(svc *s, const svc_opts *o, rpc_method *rm, rpc_server_cfg *cfg)
{
    rpc_server_cfg_default(cfg);
    cfg->listen = o->listen;
    cfg->reuseport = 1;
    cfg->threads = (int)o->threads;
    cfg->max_frame = (size_t)o->max_frame;
    cfg->max_conns = (int)o->max_conns;
    cfg->max_inflight = (int)o->max_inflight;
    cfg->queue_max = (int)o->max_queue;
    cfg->max_write_buf = (size_t)o->max_write_buf; /* 0: rpc_server_new's default */
    cfg->partial_timeout_ms = (int)o->partial_ms;
    cfg->idle_timeout_ms = (int)o->idle_ms;
    cfg->methods = rm;
    cfg->nmethods = s->nmethods;
    cfg->text = svc_text_line;
    cfg->text_error = svc_text_error;
    cfg->text_first_byte = SVC_TEXT_FIRST_BYTE;
    cfg->text_peers = strcmp(o->text_mode, "any") == 0   ? RPC_TEXT_ANY
                      : strcmp(o->text_mode, "off") == 0 ? RPC_TEXT_OFF
                                                         : RPC_TEXT_LOOPBACK;
    cfg->on_text_refused = log_text_refused;
    cfg->thread_init = svc_rt_thread_init;
    cfg->thread_fini = svc_rt_thread_fini;
    cfg->user = s;
    cfg->stats = s->stats;
    cfg->tls = s->tls;
    cfg->on_call = svc_rt_on_call;
}

/* SIGHUP: the certificate, key and CA are read again; on failure the ones
 * in use stay. */
static void reload_tls(void *user)
{
    svc *s = user;
    char err[RPC_ERRLEN], q[600];
    if (s->tls == NULL)
        return;
    if (rpc_tls_reload(s->tls, err) < 0)
        util_log(UTIL_ERROR, "tls reload failed", "err=%s", util_logq(q, sizeof(q), err));
    else
        util_log(UTIL_INFO, "tls reloaded", "cert=%s", s->tls_cert);
}

/* Logs why the server cannot listen on the shared address listen. */
static void log_listen_error(const svc *s, int rc, const char *listen, const char *rerr)
{
    char err[1024], q[1200];
    if (rc == -EADDRINUSE) {
        /* The claim was ours, so the holder is not a worker of this store. */
        snprintf(err, sizeof(err), "address in use: %s (by a program that is not a tcpops-%s "
                 "worker of this store); stop it or choose another --listen port", rerr,
                 s->desc->name);
        util_log(UTIL_ERROR, "cannot listen", "addr=%s err=%s", listen,
                 util_logq(q, sizeof(q), err));
    } else {
        util_log(UTIL_ERROR, "cannot listen", "err=%s", util_logq(q, sizeof(q), rerr));
    }
}

/* Binds the shared and the own port, learns self, starts the server and
 * the heartbeat. rm (s->nmethods) is what the server serves, with f's
 * wrappers. 0, or -1 after logging why. */
static int serve(svc *s, const svc_opts *o, rpc_method *rm, svc_fault *f)
{
    char rerr[RPC_ERRLEN], q[1200];
    rpc_server_cfg cfg;
    /* A quick read on SQLite is a local lookup; on PostgreSQL it is a round
     * trip that would hold the I/O thread, so worker threads run it. */
    int local = s->store.backend == SVC_SQLITE;
    for (size_t i = 0; i < s->nmethods; i++)
        rm[i] = (rpc_method){s->methods[i].name, s->methods[i].fn,
                             s->methods[i].quick && local};
    if (svc_fault_arm(f, s, rm, s->nmethods) < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=\"out of memory\"");
        return -1;
    }
    server_cfg(s, o, rm, &cfg);
    int rc = rpc_server_new(&s->srv, &cfg, rerr);
    if (rc < 0) {
        log_listen_error(s, rc, o->listen, rerr);
        return -1;
    }
    int own = rpc_server_listen(s->srv, o->member_listen, 0, rerr);
    if (own < 0) {
        util_log(UTIL_ERROR, "cannot listen", "err=%s", util_logq(q, sizeof(q), rerr));
        return -1;
    }
    set_self(s, o, rpc_server_port(s->srv, own));
    s->ready_fd = o->ready_fd; /* the heartbeat's first beat tells it */
    char where[4200];
    svc_store_describe(&s->store, where, sizeof(where));
    if (rpc_server_start(s->srv) < 0) {
        util_log(UTIL_ERROR, "cannot start worker threads", "db=%s",
                 util_logq(q, sizeof(q), where));
        return -1;
    }
    if (svc_members_start(s) < 0)
        return -1;
    util_log(UTIL_INFO, "listening", "addr=%s port=%d member=%s db=%s threads=%ld sync=%s",
             o->listen, rpc_server_port(s->srv, 0), s->self, util_logq(q, sizeof(q), where),
             o->threads, o->sync);
    return 0;
}

/* Waits for SIGTERM/SIGINT, leaves the member list first (so gateways stop
 * choosing this worker), then drains for at most drain_ms. */
static void run_until_stopped(svc *s, sigset_t *stopset, long drain_ms)
{
    int sig = util_wait_stop(stopset, reload_tls, s);
    util_log(UTIL_INFO, "draining", "signal=%s drain_ms=%ld", sig == SIGINT ? "INT" : "TERM",
             drain_ms);
    svc_members_leave(s);
    int drained = rpc_server_drain(s->srv, (int)drain_ms);
    util_log(drained == 0 ? UTIL_INFO : UTIL_WARN, "stopped",
             "drained=%s calls=%llu", drained == 0 ? "all" : "timeout",
             (unsigned long long)rpc_stats_calls(s->stats, NULL, TCPOPS__STATUS__OK));
}

int svc_main(const svc_desc *desc, int argc, char **argv)
{
    /* A reload asked while starting must not kill (SIGHUP's default):
     * util_block_stop_signals takes it over. */
    signal(SIGHUP, SIG_IGN);
    rpc_server_cfg def;
    rpc_server_cfg_default(&def);
    svc_opts o = {
        .listen = desc->default_listen, .member_listen = "127.0.0.1:0", .data_dir = "./var",
        .sync = "normal", .threads = 0, .db_conns = SVC_STORE_READ_CONNS,
        .max_frame = (long)def.max_frame,
        .max_conns = def.max_conns, .max_inflight = def.max_inflight,
        .max_queue = def.queue_max, .max_write_buf = (long)def.max_write_buf,
        .partial_ms = def.partial_timeout_ms, .idle_ms = def.idle_timeout_ms,
        .drain_ms = UTIL_DRAIN_MS_DEFAULT, .text_mode = "loopback", .ready_fd = -1,
    };
    svc s;
    svc_fault fault = {0};
    util_log_opts log = UTIL_LOG_OPTS_DEFAULT;
    svc_rt_init(&s, desc, "");
    const util_flag flags[] = {
        {"listen", UTIL_FLAG_STR, &o.listen, "HOST:PORT", "shared address of every worker", 0,
         0},
        {"member-listen", UTIL_FLAG_STR, &o.member_listen, "HOST:PORT",
         "this worker's own address (port 0 picks one)", 0, 0},
        {"ready-fd", UTIL_FLAG_INT, &o.ready_fd, "FD", UTIL_READY_FD_HELP, 3, 65535},
        {"data-dir", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &o.data_dir, "DIR",
         "where the SQLite database lives", 0, 0},
        {"db", UTIL_FLAG_STR, &o.db, "URL",
         "the store: sqlite: (DIR/NAME.db, the default), sqlite:PATH, or postgresql://... "
         "(libpq's URL; PG* variables apply)",
         0, 0},
        {"advertise", UTIL_FLAG_STR, &o.advertise, "HOST[:PORT]",
         "the address other hosts reach this worker at (default: the member address; "
         "HOST alone takes the member port)",
         0, 0},
        {"threads", UTIL_FLAG_INT, &o.threads, "N",
         "worker threads; 0: 4 on SQLite, 32 on PostgreSQL (there they mostly wait, and "
         "the writes of waiting threads share one commit)",
         0, 256},
        {"db-conns", UTIL_FLAG_INT, &o.db_conns, "N",
         "PostgreSQL: connections the worker threads share for reads (plus one for writes)",
         1, 1000},
        {"sync", UTIL_FLAG_CHOICE, &o.sync, "normal|full",
         "normal survives kill -9; full also survives power loss", 0, 0},
        {"max-frame", UTIL_FLAG_SIZE, &o.max_frame, "BYTES", "largest frame accepted", 64,
         16L * 1024 * 1024 - 1},
        {"max-conns", UTIL_FLAG_INT, &o.max_conns, "N",
         "connections served at once (then the longest-idle one makes room)", 1, 65536},
        {"max-inflight", UTIL_FLAG_INT, &o.max_inflight, "N",
         "calls in flight per connection (more wait: the peer is not read)", 1, 65536},
        {"max-queue", UTIL_FLAG_INT, &o.max_queue, "N",
         "calls waiting for a worker thread (more: RESOURCE_EXHAUSTED)", 1, 1 << 20},
        {"max-write-buffer", UTIL_FLAG_SIZE, &o.max_write_buf, "BYTES",
         "answers queued for a peer that does not read, before it is cut off; 0: room for "
         "four frames of --max-frame",
         0, 1L << 30},
        {"partial-timeout-ms", UTIL_FLAG_INT, &o.partial_ms, "MS",
         "a started frame must complete, and unread answers move, within this", 10,
         3600000},
        {"idle-timeout-ms", UTIL_FLAG_INT, &o.idle_ms, "MS",
         "close a connection silent this long", 100, 86400000},
        {"drain-ms", UTIL_FLAG_INT | UTIL_FLAG_SHARED, &o.drain_ms, "MS",
         "on SIGTERM, how long calls in flight may take", 0, 600000},
        {"tls-cert", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &o.tls.cert, "FILE",
         "TLS: this worker's certificate (PEM); with --tls-key and --tls-ca every "
         "connection is mutual TLS 1.3 (scripts/dev-certs.sh makes test ones)",
         0, 0},
        {"tls-key", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &o.tls.key, "FILE",
         "TLS: the private key of --tls-cert", 0, 0},
        {"tls-ca", UTIL_FLAG_STR | UTIL_FLAG_SHARED, &o.tls.ca, "FILE",
         "TLS: the CA that signs every client's certificate (SIGHUP reads all three again)",
         0, 0},
        {"insecure", UTIL_FLAG_BOOL, &o.insecure, NULL,
         "serve plaintext on a non-loopback --listen or --member-listen (without it, such an "
         "address needs --tls-*)",
         0, 0},
        {"text-mode", UTIL_FLAG_CHOICE, &o.text_mode, "loopback|any|off",
         "who may speak text mode (newline JSON) on the RPC ports", 0, 0},
        {"log-calls", UTIL_FLAG_BOOL, &s.log_calls, NULL,
         "log every call with its request_id (failed calls are always logged)", 0, 0},
        {"delay-ms", UTIL_FLAG_INT, &fault.delay_ms, "MS",
         "fault injection: hold each call this long before running it", 0, 600000},
        {"delay-method", UTIL_FLAG_STR, &fault.delay_method, "METHOD",
         "fault injection: only delay this method (default: all)", 0, 0},
        {"fault-grow-mb", UTIL_FLAG_INT, &fault.grow_mb, "MB",
         "fault injection: allocate and keep this many MiB every second", 0, 1024},
        UTIL_LOG_FLAGS(&log),
    };
    const size_t nflags = sizeof(flags) / sizeof(flags[0]);
    char err[1024], q[1200];
    int rc = 1;
    rpc_method *rm = NULL;
    svc_portlock *plock = NULL;
    util_log_init(desc->name);
    util_flags_program(desc->name);

    int pos = util_flags_parse(flags, nflags, argc, argv, 1, err, sizeof(err));
    if (pos == 0) {
        printf("usage: tcpops-%s [FLAGS]\n\nThe %s service: RPC on --listen (shared by every "
               "worker), text mode for humans\n(echo '{\"cmd\":\"status\"}' | nc HOST PORT), "
               "data in DIR/%s.db.\n\n",
               desc->name, desc->name, desc->name);
        util_flags_usage(stdout, flags, nflags);
        rc = 0;
        goto out;
    }
    if (pos > 0 && o.max_write_buf > 0 && o.max_write_buf < MIN_WRITE_BUF) {
        snprintf(err, sizeof(err), "--max-write-buffer: expected 0 or at least %d, got %ld",
                 MIN_WRITE_BUF, o.max_write_buf);
        pos = -1;
    }
    svc_store store;
    if (pos > 0 && pos == argc &&
        svc_store_parse(&store, o.db, o.data_dir, desc->name, err, sizeof(err)) < 0)
        pos = -1;
    if (pos > 0 && pos == argc && o.advertise != NULL &&
        (strlen(o.advertise) >= sizeof(s.self) - 8 || strpbrk(o.advertise, " \t\n") != NULL)) {
        snprintf(err, sizeof(err), "--advertise: expected HOST or HOST:PORT, got \"%s\"",
                 o.advertise);
        pos = -1;
    }
    if (pos > 0 && pos == argc &&
        (rpc_tls_files_check(&o.tls, err) < 0 || check_protected(&o, err, sizeof(err)) < 0))
        pos = -1;
    if (pos < 0 || pos < argc) {
        if (pos > 0)
            snprintf(err, sizeof(err), "unexpected argument \"%s\" (see --help)", argv[pos]);
        fprintf(stderr, "tcpops-%s: %s\n", desc->name, err);
        rc = 2;
        goto out;
    }

    util_log_configure(&log);
    if (tls_given(&o)) {
        char terr[RPC_ERRLEN];
        /* A file that does not load (mounted late, being rotated) is a
         * fault to retry, not usage: exit 1, and the supervisor restarts. */
        if (rpc_tls_new(&s.tls, RPC_TLS_SERVER, &o.tls, terr) < 0) {
            util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), terr));
            goto out;
        }
        rpc_tls_on_refused(s.tls, log_refused, &s);
        s.tls_cert = o.tls.cert;
    }

    /* A write past the file size limit (RLIMIT_FSIZE) must fail with EFBIG,
     * a full disk like any other (STORAGE_FULL), not kill the worker. */
    signal(SIGXFSZ, SIG_IGN);
    /* Block the stop signals in every thread; main waits for them below. */
    sigset_t stopset;
    util_block_stop_signals(&stopset);

    /* Claim the shared port for this service and store before the store is
     * touched or the port bound (see portlock.h). */
    char identity[PATH_MAX + 4200];
    if (store_identity(desc, &store, o.data_dir, identity, sizeof(identity), err,
                       sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), err));
        goto out;
    }
    if (claim_port(o.listen, identity, &plock, err, sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot listen", "addr=%s err=%s", o.listen,
                 util_logq(q, sizeof(q), err));
        goto out;
    }
    if (o.threads == 0)
        o.threads = store.backend == SVC_POSTGRES ? SVC_PG_THREADS : def.threads;
    store.sync_full = strcmp(o.sync, "full") == 0;
    store.read_conns = (int)o.db_conns;
    svc_method status[SVC_MEMBERS_NMETHODS];
    svc_members_methods(&s, status);
    if (svc_rt_prepare(&s, o.data_dir, &store, status, SVC_MEMBERS_NMETHODS, err,
                       sizeof(err)) < 0) {
        util_log(UTIL_ERROR, "cannot start", "err=%s", util_logq(q, sizeof(q), err));
        goto out;
    }
    rm = calloc(s.nmethods, sizeof(*rm));
    if (rm == NULL || serve(&s, &o, rm, &fault) < 0)
        goto out;
    run_until_stopped(&s, &stopset, o.drain_ms);
    rc = 0;
out:
    rpc_server_free(s.srv);
    rpc_tls_free(s.tls);
    svc_portlock_free(plock);
    svc_rt_fini(&s);
    svc_fault_fini(&fault);
    free(rm);
    return rc;
}
