/* Cluster membership (private to src/svc): each worker writes its own row
 * (address, pid, heartbeat) into the members table every HEARTBEAT_MS from a
 * heartbeat thread, deletes it when it leaves, and expires the rows of
 * workers that died without leaving. svc.Status (and NAME.Status) answers
 * who this worker is, which workers of the service are live (a heartbeat
 * within MEMBER_TTL_MS) and this worker's counters.
 *
 * Calls: runtime (the shared state), the writer and db. */
#ifndef TCPOPS_SVC_MEMBERS_H
#define TCPOPS_SVC_MEMBERS_H

#include "svc/runtime.h"

#define HEARTBEAT_MS 1000
#define MEMBER_TTL_MS 3000 /* a member silent this long is gone */

/* How many methods svc_members_methods fills. */
#define SVC_MEMBERS_NMETHODS 2

/* Fills out with the Status method under its two names, "svc.Status" and
 * "NAME.Status" (that name lives in s->status_name). s->desc must be set. */
void svc_members_methods(svc *s, svc_method out[SVC_MEMBERS_NMETHODS]);

/* Starts the heartbeat thread (it beats at once, then every HEARTBEAT_MS,
 * running s->on_beat after each beat; after the first, it tells
 * s->ready_fd, util/ready.h). 0 or a negative errno. */
int svc_members_start(svc *s);

/* Stops the heartbeat thread and deletes this worker's row, so gateways stop
 * choosing it. Once, after svc_members_start succeeded; takes s->lock. */
void svc_members_leave(svc *s);

#endif
