/* The world of test_multihost: hosts in network namespaces (netns.h) on one
 * machine. PostgreSQL in its own (db, 198.18.0.1); service hosts A (.2) and
 * B (.3) on database tcpops and C (.5) on database tcpops2, each running
 * people on :5002 and pets on :5003 with `tcpops up --apps people,pets`;
 * the gateway host (gw, .4) running `tcpops up --apps gateway` on
 * 127.0.0.1:5001 there, its service lists DNS names from its hosts file
 * (/etc/netns/NS/hosts). With TLS on (mh_world.tls) every RPC connection,
 * the test's own tcpops-cli calls too, is mutual TLS. Each host mounts a lock directory of its own over
 * /tmp/tcpops-UID, as separate machines have their own. The functions fail
 * the current cmocka test on errors; this file belongs to test_multihost
 * alone. */
#ifndef TCPOPS_TEST_MHWORLD_H
#define TCPOPS_TEST_MHWORLD_H

#include <stdint.h>

#include "netns.h"
#include "pgserver.h"
#include "proc.h"

#define MH_PEOPLE_PORT "5002" /* every host's own ports, as on real machines */
#define MH_PETS_PORT "5003"
#define MH_GW_PORT 5001
#define MH_DEADLINE_MS 2000   /* the gateway's --deadline-ms */
#define MH_RESOLVE_MS 1000    /* its --resolve-ms */
#define MH_GIVE_UP_MS 30000   /* "it happens at all" */

typedef struct mh_host {
    const netns_host *nh;
    char dir[256];      /* locks/, data/, logs */
    const char *db;     /* its --db URL */
    proc sup;           /* `tcpops up --apps ...` */
} mh_host;

typedef struct mh_world {
    netns_net net;
    pgserver pg;
    char url2[320];     /* host C's database */
    mh_host a, b, c, g;
    /* Set before mh_world_start: every RPC hop is mutual TLS (certificates
     * from scripts/dev-certs.sh for every host's address and the gateway's
     * names); else plaintext, which the services serve on their 198.18
     * addresses with --insecure (protected mode). */
    int tls;
    char certs[256];    /* dev-certs.sh's directory; "" without TLS */
} mh_world;

/* Builds and starts everything; the calling thread ends up in the gateway's
 * namespace, so 127.0.0.1:MH_GW_PORT is the gateway (and threads it starts
 * from then on are there too). Everything is removed at exit as well. */
void mh_world_start(mh_world *w);

/* Stops every process, PostgreSQL, and removes the namespaces and dirs. */
void mh_world_stop(mh_world *w);

/* A worker's Status asked from inside its host (port MH_PEOPLE_PORT or
 * MH_PETS_PORT on h's address): calls, pid, the member list as text. 0, or
 * -1 when it did not answer within 1 s. */
typedef struct mh_status {
    long long calls;
    long pid;
    char members[1024];
} mh_status;
int mh_status_of(const mh_host *h, const char *port, mh_status *st);

/* The pids of h's people and pets workers, from their Status. 0 or -1. */
int mh_worker_pids(const mh_host *h, long pids[2]);

/* Appends tcpops-cli's TLS flags (the client certificate) to argv at n
 * when TLS is on; returns the new n. */
int mh_cli_tls(char **argv, int n);

/* Starts h's services and waits until both answer there. */
void mh_host_start(mh_host *h);

/* kill -9 of every process of h (the supervisor, its workers), by pid. */
void mh_host_kill9(mh_host *h);

/* Waits until both of h's workers answer at least MH_CARRY_CALLS calls in
 * one MH_CARRY_WINDOW_MS window (the gateway's traffic; its Status calls
 * alone are about one a second): the ms from since, or -1 after
 * MH_GIVE_UP_MS. */
#define MH_CARRY_WINDOW_MS 500
#define MH_CARRY_CALLS 10
long mh_wait_carries(const mh_host *h, int64_t since);

/* Waits until people's Status on `asked` lists no worker of `gone`. 0, or
 * -1 after MH_GIVE_UP_MS. */
int mh_wait_unlisted(const mh_host *asked, const mh_host *gone);

/* Rewrites the gateway host's hosts file in place: people.mh.test and
 * pets.mh.test at ip1 (and ip2 unless NULL). */
void mh_point_names(const char *ip1, const char *ip2);

#endif
