/* A tcpops-people with mutual TLS for the TLS tests: certificates made by
 * dev-certs.sh in a temp dir (the server's CA, an expired client of it, and
 * another CA), the service as a child process logging to a file, and
 * tcpops-cli with any of those credentials. */
#ifndef TCPOPS_TEST_TLSWORLD_H
#define TCPOPS_TEST_TLSWORLD_H

#include <stddef.h>
#include <stdint.h>

#include "proc.h"

typedef struct tlsworld {
    char dir[256];       /* the temp dir: data, log, certificates */
    char live[320];      /* the files the service is started with (dev-certs.sh, + expired) */
    char other[320];     /* another CA and its client */
    char log[320];       /* the service's stderr */
    proc people;
    int port;
    char addr[64];
    int starts;          /* "listening" lines seen so far */
} tlsworld;

/* Makes the temp dir and both sets of certificates. Fails the test if it
 * cannot. */
void tlsworld_init(tlsworld *w);

/* Stops the service (if running) and removes the temp dir. */
void tlsworld_fini(tlsworld *w);

/* Starts tcpops-people on w->port (picked on the first start) with w->live's
 * server credentials and extra flags (NULL-terminated, may be NULL), and
 * waits for its "listening" log line. Fails the test if it does not come. */
void tlsworld_start(tlsworld *w, const char *const *extra);

/* Runs tcpops-cli --addr addr with the client credentials in dir (NULL:
 * none) and the NULL-terminated args after fmt... Returns the exit code;
 * out/err get its output. */
int tlsworld_cli(const char *addr, const char *dir, char *out, size_t outlen, char *err,
                 size_t errlen, ...);

/* The service's `tcpops-cli status` output (with dir's credentials) into
 * out; fails the test when the call fails. */
void tlsworld_status(const char *addr, const char *dir, char *out, size_t outlen);

/* The counter name in a status output (fails the test when it has none). */
long tlsworld_counter_in(const char *status, const char *name);

/* The counter name of the service at addr, read with `tcpops-cli status`
 * using dir's credentials (fails the test when the call fails). */
long tlsworld_counter(const char *addr, const char *dir, const char *name);

/* Whether w's log holds needle (1) or not (0). */
int tlsworld_logged(const tlsworld *w, const char *needle);

/* Waits up to timeout_ms for w's log to hold needle. 0 or -1. */
int tlsworld_wait_log(const tlsworld *w, const char *needle, int timeout_ms);

/* A whole people.Create request frame for name (id 1) into buf (256
 * bytes). Returns its length. */
size_t tlsworld_create_frame(uint8_t *buf, const char *name);

#endif
