/* Who may share a listening port. SO_REUSEPORT lets any process of the same
 * user bind beside a listener: that is how a service's workers share its
 * port, and also how a second deployment (another --data-dir) or another
 * service would silently take half the connections and split the data.
 * Only workers of the same service and the same store may share a port.
 *
 * A lock file per port, in a per-user runtime directory, says who serves it:
 *
 *   /tmp/tcpops-UID/port-PORT.lock     "people sqlite:/abs/var/people.db\n"
 *     byte 0: write-locked for the moment of a check (a mutex)
 *     byte 1: read-locked by every serving worker for its whole life
 *
 * A newcomer takes byte 0, and while anyone read-locks byte 1 it may join
 * only with the identity the file records; when nobody does (the last
 * worker left or died) it writes its own. The locks are open file
 * description locks (F_OFD_SETLK): the kernel drops them when the process
 * dies, so a crash leaves nothing stale that counts. The last worker to
 * leave gracefully removes the file; a newcomer removes the files of ports
 * whose workers all died. */
#ifndef TCPOPS_SVC_PORTLOCK_H
#define TCPOPS_SVC_PORTLOCK_H

#include <stddef.h>

typedef struct svc_portlock svc_portlock;

/* Claims port for identity (one line: "SERVICE sqlite:/realpath/of.db")
 * before the caller binds it with SO_REUSEPORT. Returns 0 and *out, held
 * until svc_portlock_free; -EADDRINUSE when workers of another identity
 * serve the port (err says whose it is and what to do); another negative
 * errno when the runtime directory or lock file cannot be used (err says
 * why). *out untouched on failure. Blocking for at most a few seconds. */
int svc_portlock_new(svc_portlock **out, int port, const char *identity, char *err,
                     size_t errlen);

/* Gives the claim up (removing the file when no worker is left); NULL does
 * nothing. */
void svc_portlock_free(svc_portlock *l);

#endif
