/* Protected mode, with the real programs: tcpops-people, tcpops-gateway and
 * `tcpops up` told to listen on 0.0.0.0 without TLS refuse to start (exit 2
 * naming the flags to add); with --insecure a service starts and logs a
 * warning, with TLS it starts quietly. Text mode is served to loopback
 * peers only (plaintext and TLS alike) unless --text-mode=any, and to none
 * with --text-mode=off; a refusal is a line saying why, a log line and the
 * text_refused counter. A non-loopback peer is this machine itself, dialled
 * at one of its own non-loopback IPv4 addresses (the kernel then sends from
 * that address); a machine without one runs the test inside a network
 * namespace of its own (netns.h, needs root) with 198.18.0.2. With neither
 * the test is skipped (77), except under CI (CI=true), where it fails. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "netns.h"
#include "proc.h"
#include "rpc/clock.h"
#include "rpc/conn.h"
#include "rpc/sock.h"
#include "rpc/tls.h"
#include "util/protect.h"

/* The refusal every RPC program prints, after "--listen ADDR". */
#define NOT_LOOPBACK                                                                          \
    " is not a loopback address: add --tls-cert FILE --tls-key FILE --tls-ca FILE "           \
    "(scripts/dev-certs.sh makes test ones), or pass --insecure to serve plaintext to the "   \
    "network knowingly"
#define WARNING "level=warn app=people"
#define WARNING_MSG "msg=\"serving plaintext on a non-loopback address\""

static char ip[INET_ADDRSTRLEN]; /* this machine's non-loopback IPv4 address */
static netns_net net;           /* only when the test runs in a namespace */

typedef struct fixture {
    char dir[256], data[300], log[300], certs[300];
    char crt[3][340];           /* server.crt, server.key, ca.crt */
    char cli[3][340];           /* client.crt, client.key, ca.crt */
    int port;
    char any[32];               /* 0.0.0.0:port */
    proc p;
} fixture;

/* ---- where a non-loopback peer comes from ---- */

/* The first non-loopback IPv4 address of an interface that is up, or 0. */
static int find_address(void)
{
    struct ifaddrs *ifs = NULL;
    int found = 0;
    if (getifaddrs(&ifs) < 0)
        return 0;
    for (struct ifaddrs *i = ifs; i != NULL && !found; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
            !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a.s_addr) >> 24) == 127)
            continue;
        found = inet_ntop(AF_INET, &a, ip, sizeof(ip)) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

/* A namespace with lo and 198.18.0.2, entered by this thread: every server
 * the tests start runs there too (fork keeps the thread's namespace). */
static int enter_namespace(char *why, size_t len)
{
    if (!netns_available(why, len) || netns_setup(&net, "tcpopspr", why, len) < 0)
        return -1;
    const netns_host *h = netns_add_host(&net, "a", 2, why, len);
    if (h == NULL || netns_enter(h) < 0)
        return -1;
    snprintf(ip, sizeof(ip), "%s", h->ip);
    return 0;
}

/* ---- helpers ---- */

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    char out[2048], err[2048];
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    snprintf(fx->data, sizeof(fx->data), "%s/data", fx->dir);
    snprintf(fx->log, sizeof(fx->log), "%s/people.log", fx->dir);
    snprintf(fx->certs, sizeof(fx->certs), "%s/certs", fx->dir);
    char *argv[] = {TCPOPS_DEV_CERTS, fx->certs, ip, NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 30000) != 0)
        fail_msg("%s: expected exit 0; got: %s%s", TCPOPS_DEV_CERTS, out, err);
    const char *names[2][3] = {{"server.crt", "server.key", "ca.crt"},
                               {"client.crt", "client.key", "ca.crt"}};
    for (int i = 0; i < 3; i++) {
        snprintf(fx->crt[i], sizeof(fx->crt[i]), "%s/%s", fx->certs, names[0][i]);
        snprintf(fx->cli[i], sizeof(fx->cli[i]), "%s/%s", fx->certs, names[1][i]);
    }
    fx->port = free_port();
    snprintf(fx->any, sizeof(fx->any), "0.0.0.0:%d", fx->port);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop(&fx->p);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* argv for build/bin/prog and the NULL-terminated strings of ap (at most
 * 30); bin holds the path. */
static void prog_argv(char **argv, char *bin, size_t len, const char *prog, va_list ap)
{
    int n = 0;
    argv[n++] = (char *)proc_bin(prog, bin, len);
    for (char *a = va_arg(ap, char *); a != NULL && n < 31; a = va_arg(ap, char *))
        argv[n++] = a;
    argv[n] = NULL;
}

/* Starts build/bin/prog with args (NULL-terminated), its log in fx->log,
 * and waits until 127.0.0.1:port accepts. */
static void start(fixture *fx, const char *prog, ...)
{
    char bin[512], *argv[32];
    va_list ap;
    va_start(ap, prog);
    prog_argv(argv, bin, sizeof(bin), prog, ap);
    va_end(ap);
    assert_int_equal(proc_start_logged(&fx->p, argv, fx->log), 0);
    if (wait_port(fx->port, 10000) < 0)
        fail_msg("%s: expected it to serve on 127.0.0.1:%d within 10 s (log %s)", prog,
                 fx->port, fx->log);
}

/* Runs build/bin/prog with args to its end: its exit code, stderr in err. */
static int run(char *err, size_t errlen, const char *prog, ...)
{
    char bin[512], out[4096], *argv[32];
    va_list ap;
    va_start(ap, prog);
    prog_argv(argv, bin, sizeof(bin), prog, ap);
    va_end(ap);
    return proc_run(argv, out, sizeof(out), err, errlen, 10000);
}

/* The log so far (static buffer). */
static const char *log_text(const fixture *fx)
{
    static char text[65536];
    FILE *f = fopen(fx->log, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    text[n] = '\0';
    return text;
}

/* Waits (5 s at most) until the log holds want. */
static void expect_logged(const fixture *fx, const char *want)
{
    int64_t deadline = rpc_now_ms() + 5000;
    while (strstr(log_text(fx), want) == NULL) {
        if (rpc_now_ms() > deadline)
            fail_msg("expected the log to contain %s; got:\n%s", want, log_text(fx));
        usleep(20 * 1000);
    }
}

/* A connection to host:port, optionally TLS with the client certificate. */
static void dial(rpc_conn *c, const char *host, int port, rpc_tls *tls)
{
    struct sockaddr_in sa;
    char addr[64], err[RPC_ERRLEN];
    snprintf(addr, sizeof(addr), "%s:%d", host, port);
    assert_int_equal(rpc_addr_parse(addr, &sa, err), 0);
    int fd = rpc_sock_connect(&sa, 2000);
    if (fd < 0)
        fail_msg("connect to %s: expected a connection, got %d", addr, fd);
    rpc_conn_init(c, fd, 1 << 20, 0);
    if (tls != NULL) {
        assert_int_equal(rpc_conn_tls_start(c, tls, addr, NULL, err), 0);
        if (rpc_conn_handshake(c, rpc_now_ms() + 5000) < 0)
            fail_msg("TLS to %s: expected a handshake, got \"%s\"", addr,
                     rpc_conn_tls_error(c));
    }
}

/* Sends one text-mode line on a new connection to host:port and returns
 * the line answered ("" when the server closed without one). */
static const char *text_line(const char *host, int port, rpc_tls *tls, const char *line)
{
    static char got[8192];
    rpc_conn c;
    dial(&c, host, port, tls);
    int64_t deadline = rpc_now_ms() + 5000;
    assert_int_equal(rpc_conn_queue(&c, line, strlen(line)), 0);
    assert_int_equal(rpc_conn_flush_wait(&c, deadline), 0);
    got[0] = '\0';
    for (;;) {
        size_t used = rpc_buf_used(&c.rbuf);
        const char *nl = used > 0 ? memchr(rpc_buf_head(&c.rbuf), '\n', used) : NULL;
        if (nl != NULL) {
            snprintf(got, sizeof(got), "%.*s", (int)(nl - (char *)rpc_buf_head(&c.rbuf)),
                     (char *)rpc_buf_head(&c.rbuf));
            break;
        }
        struct pollfd pf = {.fd = c.fd, .events = POLLIN};
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0)
            fail_msg("%s:%d: expected an answer line within 5 s to %s", host, port, line);
        if (!rpc_conn_buffered(&c) && poll(&pf, 1, (int)left) <= 0)
            continue;
        int r = rpc_conn_fill(&c);
        if (r < 0 && r != -EAGAIN)
            break; /* closed without a line */
        if (r == 0)
            break;
    }
    rpc_conn_fini(&c);
    return got;
}

static void expect_line(const char *host, int port, rpc_tls *tls, const char *line,
                        const char *want)
{
    const char *got = text_line(host, port, tls, line);
    if (strstr(got, want) == NULL)
        fail_msg("text mode from %s%s: expected a line containing %s; got \"%s\"", host,
                 tls != NULL ? " over TLS" : "", want, got);
}

/* ---- the tests ---- */

/* Which addresses are loopback: 127.0.0.0/8, ::1 and localhost; not the
 * wildcard, another address, a name, a bare port (civetweb's "every
 * interface") or garbage. */
static void test_loopback_addresses(void **state)
{
    (void)state;
    const char *yes[] = {"127.0.0.1:5002", "127.1.2.3:0", "127.0.0.1", "[::1]:5002", "::1",
                         "localhost:5002"};
    const char *no[] = {"0.0.0.0:5002", "10.0.0.11:5002", "128.0.0.1:1", "[::]:5002", "::",
                        "5002", "h1:5002", ":5002", "", "127.0.0.1.5:1", "[::1:5002"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!util_is_loopback(yes[i]))
            fail_msg("%s: expected loopback, got not", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (util_is_loopback(no[i]))
            fail_msg("\"%s\": expected not loopback, got loopback", no[i]);
    char err[512];
    assert_int_equal(util_protect_check("--listen", "0.0.0.0:1", 1, 0, "X", err, sizeof(err)), 0);
    assert_int_equal(util_protect_check("--listen", "0.0.0.0:1", 0, 1, "X", err, sizeof(err)), 1);
    assert_int_equal(util_protect_check("--listen", "127.0.0.1:1", 0, 0, "X", err, sizeof(err)),
                     0);
}

/* Without TLS or --insecure a non-loopback address stops the service before
 * it binds anything, naming what to add: --listen and --member-listen. */
static void test_refused_without_tls(void **state)
{
    fixture *fx = *state;
    char err[4096], want[600], member[64];
    int code = run(err, sizeof(err), "tcpops-people", "--listen", fx->any, "--data-dir",
                   fx->data, NULL);
    snprintf(want, sizeof(want), "tcpops-people: --listen %s" NOT_LOOPBACK, fx->any);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("expected exit 2 and \"%s\"; got exit %d, stderr \"%s\"", want, code, err);

    snprintf(member, sizeof(member), "%s:0", ip);
    code = run(err, sizeof(err), "tcpops-pets", "--listen", "127.0.0.1:0", "--member-listen",
               member, "--data-dir", fx->data, NULL);
    snprintf(want, sizeof(want), "tcpops-pets: --member-listen %s" NOT_LOOPBACK, member);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("expected exit 2 and \"%s\"; got exit %d, stderr \"%s\"", want, code, err);
}

/* --insecure: it serves on every interface and says so in a warning; text
 * mode is for loopback peers only, binary calls are for everyone. */
static void test_insecure_warns_and_text_is_loopback_only(void **state)
{
    fixture *fx = *state;
    char err[4096], want[300], addr[64];
    start(fx, "tcpops-people", "--listen", fx->any, "--data-dir", fx->data, "--insecure", NULL);
    expect_logged(fx, WARNING);
    snprintf(want, sizeof(want), WARNING_MSG " flag=--listen addr=%s", fx->any);
    expect_logged(fx, want);
    expect_line("127.0.0.1", fx->port, NULL, "{\"cmd\":\"status\"}\n", "\"service\":\"people\"");

    expect_line(ip, fx->port, NULL, "{\"cmd\":\"status\"}\n",
                "{\"error\":\"text mode is served to loopback clients only\"}");
    snprintf(want, sizeof(want), "msg=\"text mode refused\" peer=%s:", ip);
    expect_logged(fx, want);
    expect_line("127.0.0.1", fx->port, NULL, "{\"cmd\":\"status\"}\n", "\"text_refused\":1");
    snprintf(addr, sizeof(addr), "%s:%d", ip, fx->port);
    int code = run(err, sizeof(err), "tcpops-cli", "--addr", addr, "status", NULL);
    if (code != 0)
        fail_msg("tcpops-cli status from %s: expected exit 0; got %d, stderr \"%s\"", ip, code,
                 err);
}

/* --text-mode=any serves text mode to every peer; off to none. */
static void test_text_mode_any_and_off(void **state)
{
    fixture *fx = *state;
    start(fx, "tcpops-people", "--listen", fx->any, "--data-dir", fx->data, "--insecure",
          "--text-mode=any", NULL);
    expect_line(ip, fx->port, NULL, "{\"cmd\":\"status\"}\n", "\"service\":\"people\"");
    proc_stop(&fx->p);

    fx->port = free_port();
    snprintf(fx->any, sizeof(fx->any), "0.0.0.0:%d", fx->port);
    start(fx, "tcpops-people", "--listen", fx->any, "--data-dir", fx->data, "--insecure",
          "--text-mode", "off", NULL);
    expect_line("127.0.0.1", fx->port, NULL, "{\"cmd\":\"status\"}\n",
                "{\"error\":\"text mode is off on this server\"}");
}

/* With TLS it starts on every interface without a warning; text mode over
 * TLS is still for loopback peers only. */
static void test_tls_starts(void **state)
{
    fixture *fx = *state;
    char err[RPC_ERRLEN];
    start(fx, "tcpops-people", "--listen", fx->any, "--data-dir", fx->data, "--tls-cert",
          fx->crt[0], "--tls-key", fx->crt[1], "--tls-ca", fx->crt[2], NULL);
    expect_logged(fx, "msg=listening");
    if (strstr(log_text(fx), WARNING_MSG) != NULL)
        fail_msg("with TLS: expected no plaintext warning; got:\n%s", log_text(fx));
    rpc_tls_files files = {fx->cli[0], fx->cli[1], fx->cli[2]};
    rpc_tls *tls = NULL;
    if (rpc_tls_new(&tls, RPC_TLS_CLIENT, &files, err) < 0)
        fail_msg("client credentials: %s", err);
    expect_line("127.0.0.1", fx->port, tls, "{\"cmd\":\"status\"}\n", "\"service\":\"people\"");
    expect_line(ip, fx->port, tls, "{\"cmd\":\"status\"}\n",
                "{\"error\":\"text mode is served to loopback clients only\"}");
    rpc_tls_free(tls);
}

/* The gateway's HTTP side and `tcpops up` refuse the same way; the gateway
 * starts with --insecure (warning) or HTTPS (none). */
static void test_gateway_and_up_refuse(void **state)
{
    fixture *fx = *state;
    char err[4096], want[600], gw[32], people[32], pets[32];
    int code = run(err, sizeof(err), "tcpops-gateway", "--listen", fx->any, NULL);
    snprintf(want, sizeof(want), "tcpops-gateway: --listen %s is not a loopback address: add "
             "--https-cert FILE --https-key FILE, or pass --insecure", fx->any);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("expected exit 2 and \"%s\"; got exit %d, stderr \"%s\"", want, code, err);
    /* civetweb's own list syntax would open more than protected mode saw:
     * a second port on every interface, a bare port, an "s" suffix. */
    const char *lists[] = {"127.0.0.1:5001,5002", "5002", "127.0.0.1:5001s"};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        code = run(err, sizeof(err), "tcpops-gateway", "--listen", lists[i], NULL);
        snprintf(want, sizeof(want), "--listen: expected one HOST:PORT, got \"%s\"", lists[i]);
        if (code != 2 || strstr(err, want) == NULL)
            fail_msg("expected exit 2 and \"%s\"; got exit %d, stderr \"%s\"", want, code, err);
    }

    snprintf(gw, sizeof(gw), "127.0.0.1:%d", free_port());
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", free_port());
    snprintf(people, sizeof(people), "0.0.0.0:%d", fx->port);
    code = run(err, sizeof(err), "tcpops", "up", "--data-dir", fx->data, "--gateway", gw,
               "--people", people, "--pets", pets, NULL);
    snprintf(want, sizeof(want), "tcpops up: people listen %s" NOT_LOOPBACK, people);
    if (code != 2 || strstr(err, want) == NULL)
        fail_msg("expected exit 2 and \"%s\"; got exit %d, stderr \"%s\"", want, code, err);

    /* --insecure: the gateway starts, with the warning. */
    snprintf(fx->log, sizeof(fx->log), "%s/gateway.log", fx->dir);
    start(fx, "tcpops-gateway", "--listen", fx->any, "--insecure", NULL);
    snprintf(want, sizeof(want), "level=warn app=gateway");
    expect_logged(fx, want);
    snprintf(want, sizeof(want), WARNING_MSG " flag=--listen addr=%s", fx->any);
    expect_logged(fx, want);
    proc_stop(&fx->p);

    /* HTTPS: it starts on every interface without a warning. */
    snprintf(fx->log, sizeof(fx->log), "%s/gateway-https.log", fx->dir);
    fx->port = free_port();
    snprintf(fx->any, sizeof(fx->any), "0.0.0.0:%d", fx->port);
    start(fx, "tcpops-gateway", "--listen", fx->any, "--https-cert", fx->crt[0], "--https-key",
          fx->crt[1], NULL);
    expect_logged(fx, "msg=listening");
    if (strstr(log_text(fx), WARNING_MSG) != NULL)
        fail_msg("with HTTPS: expected no plaintext warning; got:\n%s", log_text(fx));
}

int main(void)
{
    char why[512] = "";
    if (!find_address() && enter_namespace(why, sizeof(why)) < 0) {
        int in_ci = proc_in_ci();
        printf("test_protect: %s: no non-loopback IPv4 address here, and no namespace: %s\n",
               in_ci ? "cannot run under CI" : "skipped", why);
        return in_ci ? 1 : 77;
    }
    printf("test_protect: the non-loopback peer is %s%s\n", ip,
           net.nhosts > 0 ? " (in a namespace of its own)" : "");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_addresses),
        cmocka_unit_test_setup_teardown(test_refused_without_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_warns_and_text_is_loopback_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_mode_any_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_and_up_refuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
