/* HTTPS on the gateway (--https-cert/--https-key), as curl sees it: the real
 * gateway and services on free ports, with certificates that
 * scripts/dev-certs.sh makes; then the same under `tcpops up`, where the
 * gateway serves on the socket the supervisor hands it (--listen-fd). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "proc.h"

#define CURL_TIMEOUT_MS 20000

typedef struct fixture {
    char dir[256];
    char ca[320], cert[320], key[320];           /* dir/certs: what the gateway serves */
    char other_ca[320], other_cert[320], other_key[320]; /* dir/other: another CA's */
    char log[320];                               /* the gateway's or the master's stderr */
    char curl[256];
    proc people, pets, gw, master;
    int people_port, pets_port, gw_port;
} fixture;

/* The full path of program name from PATH into buf, or -1. */
static int which(const char *name, char *buf, size_t len)
{
    const char *path = getenv("PATH");
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path != NULL ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, len, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return 0;
    }
    return -1;
}

/* scripts/dev-certs.sh DIR/sub: a CA, and a server certificate for
 * 127.0.0.1 signed by it. */
static void make_certs(fixture *fx, const char *sub)
{
    char script[512], dir[300], out[1024], err[4096];
    snprintf(script, sizeof(script), "%s/scripts/dev-certs.sh", TCPOPS_SOURCE_DIR);
    snprintf(dir, sizeof(dir), "%s/%s", fx->dir, sub);
    char *argv[] = {script, dir, NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 60000);
    if (code != 0)
        fail_msg("%s %s: expected exit 0, got %d: %s", script, dir, code, err);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    if (which("curl", fx->curl, sizeof(fx->curl)) < 0)
        fail_msg("curl not found in PATH (scripts/deps.sh installs it)");
    make_certs(fx, "certs");
    make_certs(fx, "other");
    snprintf(fx->ca, sizeof(fx->ca), "%s/certs/ca.crt", fx->dir);
    snprintf(fx->cert, sizeof(fx->cert), "%s/certs/server.crt", fx->dir);
    snprintf(fx->key, sizeof(fx->key), "%s/certs/server.key", fx->dir);
    snprintf(fx->other_ca, sizeof(fx->other_ca), "%s/other/ca.crt", fx->dir);
    snprintf(fx->other_cert, sizeof(fx->other_cert), "%s/other/server.crt", fx->dir);
    snprintf(fx->other_key, sizeof(fx->other_key), "%s/other/server.key", fx->dir);
    snprintf(fx->log, sizeof(fx->log), "%s/stderr.log", fx->dir);
    fx->people_port = free_port();
    fx->pets_port = free_port();
    fx->gw_port = free_port();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop_gracefully(&fx->master, 15000); /* the workers leave with the master */
    proc_stop(&fx->gw);
    proc_stop(&fx->people);
    proc_stop(&fx->pets);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* Runs curl -sS (no proxy, 10 s at most) with the NULL-terminated args of
 * ap; returns its exit code, stdout in out, stderr in err. */
static int vcurl(fixture *fx, char *out, size_t outlen, char *err, size_t errlen, va_list ap)
{
    char *argv[24];
    int n = 0;
    argv[n++] = fx->curl;
    argv[n++] = "-sS";
    argv[n++] = "--noproxy";
    argv[n++] = "*";
    argv[n++] = "--max-time";
    argv[n++] = "10";
    for (char *a; n < 23 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    argv[n] = NULL;
    return proc_run(argv, out, outlen, err, errlen, CURL_TIMEOUT_MS);
}

static int curl(fixture *fx, char *out, size_t outlen, char *err, size_t errlen, ...)
{
    va_list ap;
    va_start(ap, errlen);
    int code = vcurl(fx, out, outlen, err, errlen, ap);
    va_end(ap);
    return code;
}

static void url(const fixture *fx, const char *scheme, const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "%s://127.0.0.1:%d%s", scheme, fx->gw_port, path);
}

/* One HTTPS request (method, path) trusting ca, headers and body in out
 * (curl -D -). Checks the status line and, when want_body is not NULL, the
 * body; a Strict-Transport-Security header is a failure (HSTS is off). */
static void expect_https(fixture *fx, const char *method, const char *path, const char *ca,
                         const char *want_status, const char *want_body)
{
    char u[128], out[8192], err[4096];
    url(fx, "https", path, u, sizeof(u));
    int code = curl(fx, out, sizeof(out), err, sizeof(err), "--cacert", ca, "-D", "-", "-X",
                    method, u, NULL);
    if (code != 0)
        fail_msg("curl -X %s %s: expected exit 0, got %d: %s", method, u, code, err);
    if (strncmp(out, "HTTP/1.1 ", 9) != 0 || strncmp(out + 9, want_status, 3) != 0)
        fail_msg("%s %s: expected HTTP/1.1 %s, got %.80s", method, u, want_status, out);
    const char *body = strstr(out, "\r\n\r\n");
    if (want_body != NULL && (body == NULL || strcmp(body + 4, want_body) != 0))
        fail_msg("%s %s: expected body %s, got %s", method, u, want_body,
                 body != NULL ? body + 4 : "(no end of headers)");
    if (strcasestr(out, "strict-transport-security") != NULL)
        fail_msg("%s %s: expected no Strict-Transport-Security header, got %s", method, u, out);
}

/* Polls GET path over HTTPS (trusting ca) until it answers want_status,
 * for up to timeout_ms. */
static void wait_https(fixture *fx, const char *path, const char *ca, int want_status,
                       int timeout_ms)
{
    char u[128], out[256], err[1024] = "";
    url(fx, "https", path, u, sizeof(u));
    int64_t deadline = rpc_now_ms() + timeout_ms;
    int code = -1;
    while (rpc_now_ms() < deadline) {
        code = curl(fx, out, sizeof(out), err, sizeof(err), "--cacert", ca, "-o", "/dev/null",
                    "-w", "%{http_code}", u, NULL);
        if (code == 0 && atoi(out) == want_status)
            return;
        usleep(50 * 1000);
    }
    fail_msg("GET %s: expected %d within %d ms; last curl exit %d: %s", u, want_status,
             timeout_ms, code, err);
}

/* Starts people, pets and the gateway with --https-cert cert --https-key
 * key (the gateway's stderr in fx->log), and waits until it is ready. */
static void start_all(fixture *fx, const char *cert, const char *key)
{
    char bin[512], listen[64], people[64], pets[64];
    assert_int_equal(proc_start_service(&fx->people, "tcpops-people", fx->people_port, fx->dir,
                                        NULL), 0);
    assert_int_equal(proc_start_service(&fx->pets, "tcpops-pets", fx->pets_port, fx->dir, NULL),
                     0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", people, "--pets", pets, "--threads=16", "--https-cert",
                    (char *)cert, "--https-key", (char *)key, NULL};
    assert_int_equal(proc_start_logged(&fx->gw, argv, fx->log), 0);
    wait_https(fx, "/readyz", fx->ca, 200, 20000);
}

/* Plain HTTP to the HTTPS port gets no HTTP answer. */
static void expect_plain_refused(fixture *fx)
{
    char u[128], out[1024], err[1024];
    url(fx, "http", "/people", u, sizeof(u));
    int code = curl(fx, out, sizeof(out), err, sizeof(err), "-D", "-", u, NULL);
    if (code == 0 || strstr(out, "HTTP/") != NULL)
        fail_msg("GET %s: expected no HTTP answer on the HTTPS port, got exit %d: %s", u, code,
                 out);
}

/* Two requests on one connection (HTTP/1.1 keep-alive under TLS): GET
 * /people (answering people) and /people/pets?owner=bob. */
static void expect_keep_alive(fixture *fx, const char *people)
{
    char u1[128], u2[128], want[512], out[4096], err[16384];
    url(fx, "https", "/people", u1, sizeof(u1));
    url(fx, "https", "/people/pets?owner=bob", u2, sizeof(u2));
    snprintf(want, sizeof(want), "%s[\"bixa\",\"rex\"]", people);
    int code = curl(fx, out, sizeof(out), err, sizeof(err), "-v", "--cacert", fx->ca, u1, u2,
                    NULL);
    if (code != 0 || strcmp(out, want) != 0)
        fail_msg("curl %s %s: expected exit 0 and %s, got %d: %s", u1, u2, want, code, out);
    if (strstr(err, "Re-using existing connection") == NULL)
        fail_msg("curl %s %s: expected the second request on the first connection, got %s", u1,
                 u2, err);
}

static void test_https_serves_and_keeps_alive(void **state)
{
    fixture *fx = *state;
    start_all(fx, fx->cert, fx->key);
    expect_https(fx, "GET", "/people", fx->ca, "200", "[\"bob\",\"jane\"]");
    expect_https(fx, "POST", "/people?name=ann", fx->ca, "201", "{\"name\":\"ann\"}");
    expect_https(fx, "GET", "/people", fx->ca, "200", "[\"bob\",\"jane\",\"ann\"]");

    expect_keep_alive(fx, "[\"bob\",\"jane\",\"ann\"]");
    char u1[128], out[4096], err[16384];
    url(fx, "https", "/people", u1, sizeof(u1));
    int code;

    /* TLS 1.2 is accepted too (1.3 is what curl picks by itself). */
    code = curl(fx, out, sizeof(out), err, sizeof(err), "-v", "--tls-max", "1.2", "--cacert",
                fx->ca, u1, NULL);
    if (code != 0 || strstr(err, "SSL connection using TLSv1.2") == NULL)
        fail_msg("curl --tls-max 1.2 %s: expected a TLS 1.2 connection, got exit %d: %s", u1,
                 code, err);

    /* Another CA's client does not trust the gateway's certificate. */
    code = curl(fx, out, sizeof(out), err, sizeof(err), "--cacert", fx->other_ca, u1, NULL);
    if (code != 60)
        fail_msg("curl --cacert (another CA) %s: expected exit 60 (certificate not trusted), "
                 "got %d: %s", u1, code, err);

    /* Plain HTTP gets nothing, and the gateway goes on serving. */
    expect_plain_refused(fx);
    expect_https(fx, "GET", "/healthz", fx->ca, "200", "{\"status\":\"ok\"}");
}

/* Runs build/bin/name with the NULL-terminated args of ap; returns its exit
 * code and stderr. */
static int run_bin(const char *name, char *err, size_t errlen, ...)
{
    char bin[512], out[8192];
    char *argv[24];
    int n = 0;
    va_list ap;
    va_start(ap, errlen);
    argv[n++] = (char *)proc_bin(name, bin, sizeof(bin));
    for (char *a; n < 23 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, out, sizeof(out), err, errlen, 30000);
}

static void expect_exit(int code, const char *err, int want_code, const char *want,
                        const char *what)
{
    if (code != want_code || strstr(err, want) == NULL)
        fail_msg("%s: expected exit %d saying \"%s\", got %d: %s", what, want_code, want, code,
                 err);
}

/* A usage error: exit 2. */
static void expect_refused(int code, const char *err, const char *want, const char *what)
{
    expect_exit(code, err, 2, want, what);
}

/* A file that does not load (mounted late, being rotated) is a fault the
 * supervisor retries, not usage: exit 1. */
static void expect_fault(int code, const char *err, const char *want, const char *what)
{
    expect_exit(code, err, 1, want, what);
}

static void test_https_refuses_bad_flags(void **state)
{
    fixture *fx = *state;
    char err[8192], listen[64], missing[320];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->gw_port);
    snprintf(missing, sizeof(missing), "%s/certs/missing.crt", fx->dir);
    const char *both = "HTTPS needs both --https-cert and --https-key";
    int code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--https-cert",
                       fx->cert, NULL);
    expect_refused(code, err, both, "tcpops-gateway --https-cert alone");
    code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--https-key", fx->key,
                   NULL);
    expect_refused(code, err, both, "tcpops-gateway --https-key alone");
    code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--https-cert",
                   fx->cert, "--https-key", fx->other_key, NULL);
    expect_fault(code, err, "is not the key of --https-cert", "tcpops-gateway, a wrong key");
    code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--https-cert",
                   missing, "--https-key", fx->key, NULL);
    expect_fault(code, err, "No such file or directory", "tcpops-gateway, a missing cert");
    code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--https-cert",
                   fx->key, "--https-key", fx->key, NULL);
    expect_fault(code, err, "expected a PEM certificate", "tcpops-gateway, a key as cert");
    /* The RPC side's files: the gateway's and a service's. */
    code = run_bin("tcpops-gateway", err, sizeof(err), "--listen", listen, "--tls-cert", missing,
                   "--tls-key", fx->key, "--tls-ca", fx->ca, NULL);
    expect_fault(code, err, "missing.crt", "tcpops-gateway, a missing --tls-cert");
    code = run_bin("tcpops-people", err, sizeof(err), "--listen", listen, "--data-dir", fx->dir,
                   "--tls-cert", missing, "--tls-key", fx->key, "--tls-ca", fx->ca, NULL);
    expect_fault(code, err, "missing.crt", "tcpops-people, a missing --tls-cert");
    code = run_bin("tcpops-people", err, sizeof(err), "--listen", listen, "--data-dir", fx->dir,
                   "--tls-cert", fx->cert, NULL);
    expect_refused(code, err, "TLS needs all three", "tcpops-people, --tls-cert alone");

    /* tcpops up checks the pair itself and the files through the
     * gateway's flag check, before it starts anything. */
    char gw[64], people[64], pets[64];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    code = run_bin("tcpops", err, sizeof(err), "up", "--data-dir", fx->dir, "--gateway", gw,
                   "--people", people, "--pets", pets, "--https-cert", fx->cert, NULL);
    expect_refused(code, err, both, "tcpops up --https-cert alone");
    code = run_bin("tcpops", err, sizeof(err), "up", "--data-dir", fx->dir, "--gateway", gw,
                   "--people", people, "--pets", pets, "--https-cert", fx->cert, "--https-key",
                   fx->other_key, NULL);
    expect_refused(code, err, "is not the key of --https-cert", "tcpops up, a wrong key");
}

/* Copies src over dst the way a certificate is rotated: a new file
 * renamed into place. */
static void install(const char *src, const char *dst)
{
    char tmp[400], buf[16384];
    snprintf(tmp, sizeof(tmp), "%s.new", dst);
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    if (in == NULL || out == NULL)
        fail_msg("cannot copy %s to %s", src, tmp);
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

/* Polls the file at path until it holds needle, for up to timeout_ms. */
static void wait_log(const char *path, const char *needle, int timeout_ms)
{
    if (!proc_wait_file(path, needle, timeout_ms))
        fail_msg("%s: expected \"%s\" within %d ms", path, needle, timeout_ms);
}

static void test_https_sighup_rotates_the_certificate(void **state)
{
    fixture *fx = *state;
    char cert[320], key[320], u[128], out[1024], err[4096];
    snprintf(cert, sizeof(cert), "%s/live.crt", fx->dir);
    snprintf(key, sizeof(key), "%s/live.key", fx->dir);
    install(fx->cert, cert);
    install(fx->key, key);
    start_all(fx, cert, key);

    /* Another CA's certificate and key in place, then SIGHUP: new
     * connections get the new certificate. */
    install(fx->other_cert, cert);
    install(fx->other_key, key);
    proc_signal(&fx->gw, SIGHUP);
    wait_https(fx, "/healthz", fx->other_ca, 200, 10000);
    url(fx, "https", "/healthz", u, sizeof(u));
    int code = curl(fx, out, sizeof(out), err, sizeof(err), "--cacert", fx->ca, u, NULL);
    if (code != 60)
        fail_msg("curl --cacert (the first CA) %s after the reload: expected exit 60, got %d: "
                 "%s", u, code, err);

    /* A key that is not the certificate's: refused, the pair in use stays. */
    install(fx->key, key);
    proc_signal(&fx->gw, SIGHUP);
    wait_log(fx->log, "msg=\"https reload failed\"", 10000);
    expect_https(fx, "GET", "/healthz", fx->other_ca, "200", "{\"status\":\"ok\"}");
}

static void test_https_under_tcpops_up(void **state)
{
    fixture *fx = *state;
    char bin[512], gw[64], people[64], pets[64], err[4096];
    snprintf(gw, sizeof(gw), "127.0.0.1:%d", fx->gw_port);
    snprintf(people, sizeof(people), "127.0.0.1:%d", fx->people_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    char *argv[] = {(char *)proc_bin("tcpops", bin, sizeof(bin)), "up", "--data-dir", fx->dir,
                    "--gateway", gw, "--people", people, "--pets", pets, "--gateway-args",
                    "--threads=16", "--https-cert", fx->cert, "--https-key", fx->key, NULL};
    assert_int_equal(proc_start_logged(&fx->master, argv, fx->log), 0);
    wait_https(fx, "/readyz", fx->ca, 200, 30000);
    expect_https(fx, "GET", "/people", fx->ca, "200", "[\"bob\",\"jane\"]");
    expect_keep_alive(fx, "[\"bob\",\"jane\"]");
    expect_plain_refused(fx);

    /* The replacement gateway is handed the same socket and serves it
     * with TLS too. */
    int code = run_bin("tcpops", err, sizeof(err), "--data-dir", fx->dir, "restart", "gateway",
                       NULL);
    if (code != 0)
        fail_msg("tcpops restart gateway: expected exit 0, got %d: %s", code, err);
    expect_https(fx, "GET", "/people", fx->ca, "200", "[\"bob\",\"jane\"]");
    expect_keep_alive(fx, "[\"bob\",\"jane\"]");
    expect_plain_refused(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_https_serves_and_keeps_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_refuses_bad_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_sighup_rotates_the_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_https_under_tcpops_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
