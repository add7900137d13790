/* tcpops-test-echo: the test service of testsvc.c as a process, for tests
 * that kill -9 a server and for the echo benchmark.
 *   tcpops-test-echo [--listen HOST:PORT] [--threads N]
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
    char err[RPC_ERRLEN];

    rpc_server_cfg_default(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.methods = testsvc_methods;
    cfg.nmethods = testsvc_nmethods;
    cfg.text = testsvc_text;
    cfg.text_first_byte = '{';
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            cfg.listen = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            cfg.threads = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--listen HOST:PORT] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (rpc_server_new(&srv, &cfg, err) < 0) {
        fprintf(stderr, "tcpops-test-echo: %s\n", err);
        return 1;
    }
    if (rpc_server_start(srv) < 0) {
        fprintf(stderr, "tcpops-test-echo: cannot start threads\n");
        rpc_server_free(srv);
        return 1;
    }
    printf("port=%d\n", rpc_server_port(srv, 0));
    fflush(stdout);
    while (!stop)
        pause();
    int rc = rpc_server_drain(srv, 5000);
    rpc_server_free(srv);
    return rc == 0 ? 0 : 1;
}
