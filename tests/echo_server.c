/* tcpops-test-echo: the test service of testsvc.c as a process, for tests
 * that kill -9 a server and for the echo benchmark.
 *   tcpops-test-echo [--listen HOST:PORT] [--threads N]
 *                    [--tls-cert FILE --tls-key FILE --tls-ca FILE]
 * With the --tls-* files every connection is mutual TLS (rpc/tls.h).
 * Prints "port=N" on stdout once listening; SIGTERM drains and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/server.h"
#include "testsvc.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    rpc_server_cfg cfg;
    rpc_server *srv = NULL;
    rpc_tls *tls = NULL;
    rpc_tls_files files = {0};
    char err[RPC_ERRLEN];
    int rc = 1;

    rpc_server_cfg_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.methods = testsvc_methods;
    cfg.nmethods = testsvc_nmethods;
    cfg.text = testsvc_text;
    cfg.text_first_byte = '{';
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--listen") == 0 && v != NULL) cfg.listen = v;
        else if (strcmp(argv[i], "--threads") == 0 && v != NULL) cfg.threads = atoi(v);
        else if (strcmp(argv[i], "--tls-cert") == 0 && v != NULL) files.cert = v;
        else if (strcmp(argv[i], "--tls-key") == 0 && v != NULL) files.key = v;
        else if (strcmp(argv[i], "--tls-ca") == 0 && v != NULL) files.ca = v;
        else {
            fprintf(stderr, "usage: %s [--listen HOST:PORT] [--threads N] "
                            "[--tls-cert FILE --tls-key FILE --tls-ca FILE]\n", argv[0]);
            return 2;
        }
        i++;
    }
    int given = rpc_tls_files_check(&files, err);
    if (given < 0 || (given == 1 && rpc_tls_new(&tls, RPC_TLS_SERVER, &files, err) < 0)) {
        fprintf(stderr, "tcpops-test-echo: %s\n", err);
        return 2;
    }
    cfg.tls = tls;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (rpc_server_new(&srv, &cfg, err) < 0) {
        fprintf(stderr, "tcpops-test-echo: %s\n", err);
        goto out;
    }
    if (rpc_server_start(srv) < 0) {
        fprintf(stderr, "tcpops-test-echo: cannot start threads\n");
        goto out;
    }
    printf("port=%d\n", rpc_server_port(srv, 0));
    fflush(stdout);
    while (!stop)
        pause();
    rc = rpc_server_drain(srv, 5000) == 0 ? 0 : 1;
out:
    rpc_server_free(srv);
    rpc_tls_free(tls);
    return rc;
}
