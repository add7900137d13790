/* Mutual TLS on a real tcpops-people, as its users see it: clients without a
 * certificate, with one from another CA, with an expired one, or speaking
 * plaintext are refused, counted and logged while a good client goes on;
 * certificates rotate on SIGHUP (and a bad file keeps the old ones); and a
 * gateway's pool resumes its sessions after the service restarts. The
 * hostile TLS peers are test_tls_hostile's. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "rpc/sock.h"
#include "http_client.h"
#include "rawpeer.h"
#include "tlspeer.h"
#include "tlsworld.h"

static int setup(void **state)
{
    tlsworld *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    tlsworld_init(w);
    tlsworld_start(w, NULL);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    tlsworld *w = *state;
    tlsworld_fini(w);
    free(w);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* "peer=127.0.0.1:PORT" of fd's own end, as the server logs it. */
static void peer_of(int fd, char *buf, size_t len)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(buf, len, "peer=127.0.0.1:%d ", ntohs(sa.sin_port));
}

/* A TLS client with ctx tries to create name: the server must end the
 * connection. peer gets its address as the log would name it. */
static void refused_tls(tlsworld *w, SSL_CTX *ctx, const char *name, char *peer, size_t plen,
                        const char *what)
{
    SSL *ssl = NULL;
    int ok = 0;
    int fd = tlspeer_connect(ctx, w->port, &ssl, &ok, 5000);
    if (fd < 0)
        fail_msg("%s: expected a TCP connection to %s", what, w->addr);
    peer_of(fd, peer, plen);
    if (ok) {
        /* TLS 1.3: the client is done before the server has checked its
         * certificate, so it may send a request at once. */
        uint8_t frame[256];
        size_t n = tlsworld_create_frame(frame, name);
        tlspeer_write(ssl, frame, n, 2000);
    }
    if (!tlspeer_ended(ssl, 5000))
        fail_msg("%s: expected the server to end the connection, it stayed open", what);
    SSL_free(ssl);
    close(fd);
}

/* A client speaking plaintext frames to the TLS port asks to create name. */
static void refused_plain(tlsworld *w, const char *name, char *peer, size_t plen)
{
    struct sockaddr_in sa;
    char err[RPC_ERRLEN];
    assert_int_equal(rpc_addr_parse(w->addr, &sa, err), 0);
    int fd = rpc_sock_connect(&sa, 5000);
    assert_true(fd >= 0);
    peer_of(fd, peer, plen);
    uint8_t frame[256];
    size_t n = tlsworld_create_frame(frame, name), wr = 0;
    rpc_sock_write_all(fd, frame, n, rpc_now_ms() + 2000, &wr);
    if (!rawpeer_closed(fd, 5000))
        fail_msg("plaintext frames: expected the server to close the connection");
    close(fd);
}

/* The good client: creates name through tcpops-cli with live's client.crt. */
static void good_create(tlsworld *w, const char *name)
{
    char out[4096], err[4096], want[128];
    int rc = tlsworld_cli(w->addr, w->live, out, sizeof(out), err, sizeof(err), "people",
                          "create", name, NULL);
    snprintf(want, sizeof(want), "{\"name\":\"%s\"}\n", name);
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("good client beside refused ones: expected exit 0 and %s, got %d, \"%s\" (%s)",
                 want, rc, out, err);
}

/* Nothing of the refused clients reached people.Create; each of the good
 * client's rounds did. */
static void expect_only_good_people(tlsworld *w, int rounds)
{
    char out[8192], err[4096];
    assert_int_equal(tlsworld_cli(w->addr, w->live, out, sizeof(out), err, sizeof(err),
                                  "people", "list", "--limit", "1000", NULL),
                     0);
    const char *intruders[] = {"nocert", "foreign", "expired", "plain"};
    for (size_t i = 0; i < 4; i++)
        if (strstr(out, intruders[i]) != NULL)
            fail_msg("expected no %s* person (a refused client's), got %s", intruders[i], out);
    for (int r = 0; r < 2 * rounds; r++) {
        char name[40];
        snprintf(name, sizeof(name), "\"good%d%c\"", r / 2, "ab"[r % 2]);
        if (strstr(out, name) == NULL)
            fail_msg("expected %s among the people, got %s", name, out);
    }
}

static void test_refused_clients_count_log_and_reach_nothing(void **state)
{
    tlsworld *w = *state;
    char other_cert[400], other_key[400], ca[400];
    snprintf(other_cert, sizeof(other_cert), "%s/client.crt", w->other);
    snprintf(other_key, sizeof(other_key), "%s/client.key", w->other);
    snprintf(ca, sizeof(ca), "%s/ca.crt", w->live);
    /* Each trusts the server's CA: only what it shows differs. */
    SSL_CTX *nocert = tlspeer_ctx_dir(0, w->live, NULL);
    SSL_CTX *expired = tlspeer_ctx_dir(0, w->live, "expired");
    SSL_CTX *foreign = tlspeer_ctx(0, ca, other_cert, other_key);
    assert_true(nocert != NULL && expired != NULL && foreign != NULL);

    long refused0 = tlsworld_counter(w->addr, w->live, "tls_refused");
    enum { ROUNDS = 3, KINDS = 4 };
    char peers[ROUNDS * KINDS][64];
    for (int r = 0; r < ROUNDS; r++) {
        char name[32];
        snprintf(name, sizeof(name), "expired%d", r);
        refused_tls(w, expired, name, peers[r * KINDS + 2], 64, "an expired certificate");
        snprintf(name, sizeof(name), "good%da", r);
        good_create(w, name);
        snprintf(name, sizeof(name), "foreign%d", r);
        refused_tls(w, foreign, name, peers[r * KINDS + 1], 64, "another CA's certificate");
        snprintf(name, sizeof(name), "nocert%d", r);
        refused_tls(w, nocert, name, peers[r * KINDS], 64, "no certificate");
        snprintf(name, sizeof(name), "good%db", r);
        good_create(w, name);
        snprintf(name, sizeof(name), "plain%d", r);
        refused_plain(w, name, peers[r * KINDS + 3], 64);
    }
    long refused = tlsworld_counter(w->addr, w->live, "tls_refused") - refused0;
    if (refused != ROUNDS * KINDS)
        fail_msg("tls_refused: expected to rise by %d, rose by %ld", ROUNDS * KINDS, refused);

    /* Logged with the peer's address (at most a line a second). */
    if (tlsworld_wait_log(w, "msg=\"tls refused\"", 5000) < 0)
        fail_msg("expected a msg=\"tls refused\" line in the log");
    int named = 0;
    for (int i = 0; i < ROUNDS * KINDS; i++)
        named += tlsworld_logged(w, peers[i]);
    if (named < 1)
        fail_msg("expected a \"tls refused\" line naming a refused peer (first %s)", peers[0]);
    /* The first refusal since the start is always logged: the expired one. */
    if (!tlsworld_logged(w, "err=\"certificate: certificate has expired\""))
        fail_msg("expected the log to say the expired certificate was refused as expired");

    expect_only_good_people(w, ROUNDS);
    SSL_CTX_free(nocert);
    SSL_CTX_free(expired);
    SSL_CTX_free(foreign);
}

/* ---- rotation ---- */

static void copy_certs(const char *from, const char *to)
{
    const char *files[] = {"ca.crt", "server.crt", "server.key", "client.crt", "client.key"};
    for (size_t i = 0; i < 5; i++) {
        char a[400], b[400], out[256], err[1024];
        snprintf(a, sizeof(a), "%s/%s", from, files[i]);
        snprintf(b, sizeof(b), "%s/%s", to, files[i]);
        char *argv[] = {"/bin/cp", a, b, NULL};
        assert_int_equal(proc_run(argv, out, sizeof(out), err, sizeof(err), 5000), 0);
    }
}

/* Waits for the n-th line holding needle in w's log. */
static void wait_log_count(tlsworld *w, const char *needle, int n)
{
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        FILE *f = fopen(w->log, "r");
        char line[2048];
        int seen = 0;
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            seen += strstr(line, needle) != NULL;
        if (f != NULL)
            fclose(f);
        if (seen >= n)
            return;
        if (rpc_now_ms() > deadline)
            fail_msg("expected %d log lines with %s within 10 s, got %d", n, needle, seen);
        sleep_ms(20);
    }
}

static void expect_cli(tlsworld *w, const char *dir, int want, const char *what)
{
    char out[4096], err[4096];
    int rc = tlsworld_cli(w->addr, dir, out, sizeof(out), err, sizeof(err), "people", "list",
                          NULL);
    if (rc != want)
        fail_msg("%s: expected tcpops-cli to exit %d, got %d (%s%s)", what, want, rc, out, err);
}

static void test_sighup_rotates_and_a_bad_file_keeps_the_old(void **state)
{
    tlsworld *w = *state;
    char old[320], fresh[320];
    snprintf(old, sizeof(old), "%s/old", w->dir);
    snprintf(fresh, sizeof(fresh), "%s/fresh", w->dir);
    if (tlspeer_certs(fresh, 0) < 0)
        fail_msg("expected dev-certs.sh to make a new CA in %s", fresh);
    char out[256], err[1024];
    char *cp[] = {"/bin/cp", "-r", w->live, old, NULL};
    assert_int_equal(proc_run(cp, out, sizeof(out), err, sizeof(err), 5000), 0);

    expect_cli(w, w->live, 0, "before the rotation");
    copy_certs(fresh, w->live); /* a new CA too: nothing of the old one is trusted */
    proc_signal(&w->people, SIGHUP);
    wait_log_count(w, "msg=\"tls reloaded\"", 1);
    expect_cli(w, fresh, 0, "a client of the new CA after SIGHUP");
    expect_cli(w, old, 3, "a client of the old CA after SIGHUP");
    /* One that trusts the new server but shows the old client certificate:
     * the server is the one that refuses it. */
    char mixed[320];
    snprintf(mixed, sizeof(mixed), "%s/mixed", w->dir);
    char *mk[] = {"/bin/cp", "-r", old, mixed, NULL};
    assert_int_equal(proc_run(mk, out, sizeof(out), err, sizeof(err), 5000), 0);
    char from[400], to[400];
    snprintf(from, sizeof(from), "%s/ca.crt", fresh);
    snprintf(to, sizeof(to), "%s/ca.crt", mixed);
    char *cpca[] = {"/bin/cp", from, to, NULL};
    assert_int_equal(proc_run(cpca, out, sizeof(out), err, sizeof(err), 5000), 0);
    long refused0 = tlsworld_counter(w->addr, fresh, "tls_refused");
    expect_cli(w, mixed, 3, "the old CA's client certificate after SIGHUP");
    long refused = tlsworld_counter(w->addr, fresh, "tls_refused") - refused0;
    if (refused != 1)
        fail_msg("the old CA's client certificate: expected tls_refused to rise by 1, got %ld",
                 refused);

    /* A certificate file that is garbage: the reload fails and the
     * credentials in use stay. */
    char crt[400];
    snprintf(crt, sizeof(crt), "%s/server.crt", w->live);
    FILE *f = fopen(crt, "w");
    assert_non_null(f);
    fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    proc_signal(&w->people, SIGHUP);
    wait_log_count(w, "msg=\"tls reload failed\"", 1);
    expect_cli(w, fresh, 0, "a client of the new CA after a failed reload");
    expect_cli(w, old, 3, "a client of the old CA after a failed reload");
    assert_int_equal(proc_wait(&w->people, 0), -1); /* still running */
}

/* ---- resumption ---- */

/* The value of the metric line starting with name in the gateway's /metrics. */
static long metric(int port, const char *name)
{
    http_resp r = {0};
    long v = -1;
    if (http_once(port, "GET", "/metrics", NULL, NULL, &r) == 0 && r.status == 200) {
        const char *p = strstr(r.body, name);
        if (p != NULL)
            v = strtol(p + strlen(name), NULL, 10);
    }
    http_resp_free(&r);
    return v;
}

typedef struct gw_world {
    proc pets, gw;
    int pets_port, gw_port;
    char pets_addr[64];
} gw_world;

static void start_gateway(tlsworld *w, gw_world *g)
{
    char bin[512], listen[64], people[80], pets[80], cert[400], key[400], ca[400];
    snprintf(cert, sizeof(cert), "--tls-cert=%s/server.crt", w->live);
    snprintf(key, sizeof(key), "--tls-key=%s/server.key", w->live);
    snprintf(ca, sizeof(ca), "--tls-ca=%s/ca.crt", w->live);
    g->pets_port = free_port();
    snprintf(g->pets_addr, sizeof(g->pets_addr), "127.0.0.1:%d", g->pets_port);
    const char *const pets_extra[] = {cert, key, ca, NULL};
    assert_int_equal(proc_start_service(&g->pets, "tcpops-pets", g->pets_port, w->dir,
                                        pets_extra),
                     0);
    snprintf(cert, sizeof(cert), "--tls-cert=%s/client.crt", w->live);
    snprintf(key, sizeof(key), "--tls-key=%s/client.key", w->live);
    g->gw_port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", g->gw_port);
    snprintf(people, sizeof(people), "--people=%s", w->addr);
    snprintf(pets, sizeof(pets), "--pets=%s", g->pets_addr);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    people, pets, "--pool=16", "--access-log=false", "--threads=16", cert, key,
                    ca, NULL};
    assert_int_equal(proc_start(&g->gw, argv, 0), 0);
    assert_int_equal(wait_port(g->gw_port, 10000), 0);
}

/* Waits until GET path answers 200 on the gateway. */
static void wait_ok(int port, const char *path)
{
    int64_t deadline = rpc_now_ms() + 20000;
    for (;;) {
        http_resp r = {0};
        int st = http_once(port, "GET", path, NULL, NULL, &r) == 0 ? r.status : -1;
        http_resp_free(&r);
        if (st == 200)
            return;
        if (rpc_now_ms() > deadline)
            fail_msg("gateway GET %s: expected 200 within 20 s, last %d", path, st);
        sleep_ms(50);
    }
}

static void test_restart_resumes_the_gateways_sessions(void **state)
{
    tlsworld *w = *state;
    gw_world g = {0};
    start_gateway(w, &g);
    wait_ok(g.gw_port, "/people");
    const char *rname = "tcpops_rpc_tls_resumed_total{service=\"people\"} ";
    long resumed0 = metric(g.gw_port, rname);

    proc_signal(&w->people, SIGTERM);
    if (proc_wait(&w->people, 15000) != 0)
        fail_msg("people: expected exit 0 on SIGTERM");
    tlsworld_start(w, NULL); /* the same port and key */

    /* The pool reconnects (to the shared port and the new member port);
     * the service counts a handshake when it has read the client's last
     * message, a moment after the gateway. Each status call is a full
     * handshake of its own (tcpops-cli keeps no tickets). */
    char status[8192];
    long resumed = 0, calls = 0;
    int64_t deadline = rpc_now_ms() + 20000;
    do {
        if (calls > 0)
            sleep_ms(50);
        tlsworld_status(w->addr, w->live, status, sizeof(status));
        calls++;
        resumed = tlsworld_counter_in(status, "tls_resumed");
    } while (resumed < 16 && rpc_now_ms() < deadline);
    long full = tlsworld_counter_in(status, "tls_handshakes") - calls;
    wait_ok(g.gw_port, "/people");
    long gw_resumed = metric(g.gw_port, rname) - resumed0;
    print_message("after the restart: people took %ld resumed and %ld full handshakes from the "
                  "gateway; the gateway counts %ld resumed\n", resumed, full, gw_resumed);
    proc_stop(&g.gw);
    proc_stop(&g.pets);
    if (resumed <= 0 || gw_resumed <= 0)
        fail_msg("expected resumed sessions after the restart, got people %ld, gateway %ld",
                 resumed, gw_resumed);
    /* A reconnect storm is mostly resumptions. */
    if (resumed < 16 || full >= resumed)
        fail_msg("expected the pool of 16 to reconnect mostly by resumption, got %ld resumed "
                 "and %ld full handshakes", resumed, full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_clients_count_log_and_reach_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sighup_rotates_and_a_bad_file_keeps_the_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_the_gateways_sessions, setup,
                                        teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
