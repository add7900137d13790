/* tcpops-bench-bare: the fastest civetweb server we know how to build: it
 * answers every request with a fixed JSON body, status line, headers and
 * body in one mg_write (one send, one packet), and nothing else. It is the
 * ceiling of the HTTP layer on this machine: the gateway's figures are read
 * against it. Its headers are the gateway's (Content-Type, Content-Length,
 * X-Request-Id), so both put the same bytes on the wire.
 *   tcpops-bench-bare --listen HOST:PORT [--threads N]
 *
 * An earlier version answered with mg_response_header_start/add/send and a
 * separate mg_write for the body: two sends per answer, half the speed of
 * this one, and slower than the gateway itself (see bench/RESULTS.md). */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int answer(struct mg_connection *conn, void *cbdata)
{
    static const char response[] = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: 14\r\n"
                                   "X-Request-Id: 0123456789abcdef\r\n"
                                   "\r\n"
                                   "[\"bixa\",\"rex\"]";
    (void)cbdata;
    mg_write(conn, response, sizeof(response) - 1);
    return 200;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080";
    const char *threads = "128";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0)
            listen = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = argv[i + 1];
    }
    const char *options[] = {
        "listening_ports", listen, "num_threads", threads, "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "10000", "tcp_nodelay", "1", "listen_backlog", "1024",
        NULL, NULL,
    };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    mg_init_library(0);
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    struct mg_context *ctx = mg_start(&cb, NULL, options);
    if (ctx == NULL) {
        fprintf(stderr, "tcpops-bench-bare: cannot listen on %s\n", listen);
        return 1;
    }
    mg_set_request_handler(ctx, "/", answer, NULL);
    int sig;
    sigwait(&set, &sig);
    mg_stop(ctx);
    mg_exit_library();
    return 0;
}
