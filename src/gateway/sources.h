/* Where a gateway backend learns its members: every bootstrap endpoint (the
 * resolved --people/--pets list) is asked svc.Status on a discovery channel
 * of its own (one connection), and the members are the union of what they
 * answered. With one member list per database (PostgreSQL: every host's
 * workers) each answer is the whole list; with one per host (SQLite) the
 * union reaches every host the bootstrap list names.
 *
 * An endpoint that stops answering keeps its last answer for grace_ms, so
 * one slow Status under load does not drain live members; one that leaves
 * the list takes its answer with it. Not thread-safe: the backend's
 * refresher thread is its only user. */
#ifndef TCPOPS_GW_SOURCES_H
#define TCPOPS_GW_SOURCES_H

#include <stddef.h>

#include "gateway/bootstrap.h"
#include "rpc/channel.h"

#define GW_MEMBER_ADDRLEN 64

typedef struct gw_sources gw_sources;

/* Told what each Status answer says of the service's writes. */
typedef void (*gw_writes_fn)(void *user, int status, const char *error);

/* No sources yet; each one's channel is made from *base (its endpoints,
 * pool size, stats and events replaced). 0 or -ENOMEM. */
int gw_sources_new(gw_sources **out, const rpc_channel_cfg *base, int grace_ms);

/* Closes every discovery channel. NULL does nothing. */
void gw_sources_free(gw_sources *s);

/* Makes addrs[0..n) the endpoints asked: those already asked keep their
 * channel and answer, new ones start connecting, the others are closed
 * (nothing else calls on them). 0, or a negative errno with err filled
 * (RPC_ERRLEN) and the old set kept. */
int gw_sources_set(gw_sources *s, char (*addrs)[GW_BOOT_ADDRLEN], size_t n, char *err);

/* Asks every endpoint for svc.Status, one after another, each within
 * deadline_ms, passing each answer's write state to note (may be NULL).
 * Writes into out (at most max, without repeats) the members of every
 * endpoint that answered within the last grace_ms. Returns how many, or -1
 * when none did or their answers list no member (keep what you have). */
int gw_sources_poll(gw_sources *s, int deadline_ms, char (*out)[GW_MEMBER_ADDRLEN], size_t max,
                    gw_writes_fn note, void *user);

#endif
