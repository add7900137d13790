/* A tcpops-people with mutual TLS for the TLS tests. See tlsworld.h. */
#include "tlsworld.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "rpc/frame.h"
#include "tlspeer.h"

void tlsworld_init(tlsworld *w)
{
    memset(w, 0, sizeof(*w));
    w->people.pid = -1;
    assert_int_equal(make_temp_dir(w->dir, sizeof(w->dir)), 0);
    snprintf(w->live, sizeof(w->live), "%s/live", w->dir);
    snprintf(w->other, sizeof(w->other), "%s/other", w->dir);
    snprintf(w->log, sizeof(w->log), "%s/people.log", w->dir);
    if (tlspeer_certs(w->live, 1) < 0 || tlspeer_certs(w->other, 0) < 0)
        fail_msg("expected dev-certs.sh and openssl ca to make certificates in %s", w->dir);
}

void tlsworld_fini(tlsworld *w)
{
    if (w->people.pid > 0)
        proc_stop(&w->people);
    rm_rf(w->dir);
}

void tlsworld_start(tlsworld *w, const char *const *extra)
{
    char bin[512], listen[80], cert[400], key[400], ca[400];
    char *argv[32];
    int n = 0;
    if (w->port == 0)
        w->port = free_port();
    snprintf(w->addr, sizeof(w->addr), "127.0.0.1:%d", w->port);
    snprintf(listen, sizeof(listen), "--listen=%s", w->addr);
    snprintf(cert, sizeof(cert), "--tls-cert=%s/server.crt", w->live);
    snprintf(key, sizeof(key), "--tls-key=%s/server.key", w->live);
    snprintf(ca, sizeof(ca), "--tls-ca=%s/ca.crt", w->live);
    argv[n++] = (char *)proc_bin("tcpops-people", bin, sizeof(bin));
    argv[n++] = listen;
    argv[n++] = "--data-dir";
    argv[n++] = w->dir;
    argv[n++] = cert;
    argv[n++] = key;
    argv[n++] = ca;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    assert_int_equal(proc_start_logged(&w->people, argv, w->log), 0);
    /* The log line, not a probe: a plaintext connect would be a refused
     * handshake of its own. */
    int64_t deadline = rpc_now_ms() + 10000;
    for (;;) {
        FILE *f = fopen(w->log, "r");
        int seen = 0;
        if (f != NULL) {
            char line[1024];
            while (fgets(line, sizeof(line), f) != NULL)
                seen += strstr(line, "msg=listening") != NULL;
            fclose(f);
        }
        if (seen > w->starts) {
            w->starts = seen;
            return;
        }
        if (rpc_now_ms() > deadline)
            fail_msg("tcpops-people on %s: expected a \"listening\" line within 10 s", w->addr);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int tlsworld_cli(const char *addr, const char *dir, char *out, size_t outlen, char *err,
                 size_t errlen, ...)
{
    char bin[512], cert[400], key[400], ca[400];
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)proc_bin("tcpops-cli", bin, sizeof(bin));
    argv[n++] = "--addr";
    argv[n++] = (char *)addr;
    argv[n++] = "--timeout=5000";
    if (dir != NULL) {
        snprintf(cert, sizeof(cert), "--tls-cert=%s/client.crt", dir);
        snprintf(key, sizeof(key), "--tls-key=%s/client.key", dir);
        snprintf(ca, sizeof(ca), "--tls-ca=%s/ca.crt", dir);
        argv[n++] = cert;
        argv[n++] = key;
        argv[n++] = ca;
    }
    va_list ap;
    va_start(ap, errlen);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, out, outlen, err, errlen, 15000);
}

void tlsworld_status(const char *addr, const char *dir, char *out, size_t outlen)
{
    char err[2048];
    int rc = tlsworld_cli(addr, dir, out, outlen, err, sizeof(err), "status", NULL);
    if (rc != 0)
        fail_msg("tcpops-cli status on %s: expected exit 0, got %d (%s)", addr, rc, err);
}

long tlsworld_counter_in(const char *status, const char *name)
{
    char key[96];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(status, key);
    if (p == NULL)
        fail_msg("expected a counter \"%s\" in the status, got %s", name, status);
    return strtol(p + strlen(key), NULL, 10);
}

long tlsworld_counter(const char *addr, const char *dir, const char *name)
{
    char out[8192];
    tlsworld_status(addr, dir, out, sizeof(out));
    return tlsworld_counter_in(out, name);
}

int tlsworld_logged(const tlsworld *w, const char *needle)
{
    FILE *f = fopen(w->log, "r");
    char line[2048];
    int found = 0;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

int tlsworld_wait_log(const tlsworld *w, const char *needle, int timeout_ms)
{
    int64_t deadline = rpc_now_ms() + timeout_ms;
    while (!tlsworld_logged(w, needle)) {
        if (rpc_now_ms() > deadline)
            return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

size_t tlsworld_create_frame(uint8_t *buf, const char *name)
{
    uint8_t body[80];
    size_t n = strlen(name) < 64 ? strlen(name) : 64;
    body[0] = 0x0a; /* field 1 (name), length-delimited */
    body[1] = (uint8_t)n;
    memcpy(body + 2, name, n);
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = 1;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = "people.Create";
    f.body.data = body;
    f.body.len = n + 2;
    return rpc_frame_write(&f, buf);
}
