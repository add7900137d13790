/* A TCP proxy between a service and PostgreSQL, for fault tests: a thread in
 * the test process listens on a free 127.0.0.1 port and forwards each
 * connection's bytes both ways to the server, reading the frontend protocol
 * just enough (type byte + int32 length) to see transactions. Armed with a
 * marker (a person's name), it cuts the connection whose transaction bound
 * that marker as a statement parameter at that transaction's COMMIT: either
 * before the COMMIT reaches the server (nothing committed) or after the
 * server answered it (committed, but the client never hears so). Both leave
 * the client not knowing the outcome, which is the fault under test.
 *
 * PGPROXY_LOG=1 in the environment prints every client message it sees
 * (type, statement text, parameters) on stderr. */
#ifndef TCPOPS_TEST_PGPROXY_H
#define TCPOPS_TEST_PGPROXY_H

typedef struct pgproxy pgproxy;

typedef enum pgproxy_cut {
    PGPROXY_CUT_BEFORE,   /* close both sides instead of forwarding the COMMIT */
    PGPROXY_CUT_AFTER,    /* forward it, swallow the server's answer, then close */
} pgproxy_cut;

/* Listens on a free 127.0.0.1 port, forwarding to 127.0.0.1:upstream_port.
 * 0, or -1 with errno set. */
int pgproxy_start(pgproxy **out, int upstream_port);

/* The port clients connect to. */
int pgproxy_port(const pgproxy *px);

/* Cuts the next transaction that binds marker as a parameter, at its
 * COMMIT, the way how says; then disarms itself. Any thread. */
void pgproxy_arm(pgproxy *px, const char *marker, pgproxy_cut how);

/* Connections cut so far (counted before the sockets close). Any thread. */
int pgproxy_cuts(pgproxy *px);

/* Stops the threads and closes every connection (NULL does nothing). */
void pgproxy_free(pgproxy *px);

#endif
