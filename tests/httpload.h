/* A steady, paced HTTP load on a gateway that records every request: when
 * it started and ended, its status, and the name each POST created, so a
 * test can ask afterwards what happened in any window of time (failures
 * while a host was down, how long requests waited, which creates were
 * acknowledged). Each thread repeats GET /people/pets?owner=bob twice,
 * GET /people?limit=2, POST /people?name=PREFIX-T-I, one request every
 * pace_ms, on one keep-alive connection to 127.0.0.1:port in the namespace
 * of the thread that calls httpload_start. */
#ifndef TCPOPS_TEST_HTTPLOAD_H
#define TCPOPS_TEST_HTTPLOAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct httpload_req {
    int64_t start_ms, end_ms; /* rpc_now_ms() */
    int status;               /* the HTTP status; 0 when no answer came in timeout_ms */
    int ok;                   /* 2xx with the body expected */
    char post;                /* 1: a POST, 0: a GET */
    char name[23];            /* the POST's name */
} httpload_req;

typedef struct httpload_cfg {
    int port;          /* the gateway, 127.0.0.1:port */
    int threads;
    int pace_ms;       /* between one thread's requests */
    int timeout_ms;    /* a request with no answer by then counts as unanswered */
    const char *prefix; /* of created names */
} httpload_cfg;

typedef struct httpload httpload;

/* Starts cfg->threads threads. 0, or -1 (nothing started). */
int httpload_start(httpload **out, const httpload_cfg *cfg);

/* Copies every finished request so far into *out (malloc'd, free() it),
 * ordered by start. Returns how many. Safe while the load runs. */
size_t httpload_snapshot(httpload *l, httpload_req **out);

/* Stops and joins the threads; the records stay for httpload_snapshot. */
void httpload_stop(httpload *l);

/* Stops (httpload_stop), then frees everything. NULL does nothing. */
void httpload_free(httpload *l);

#endif
