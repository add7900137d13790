/* Hosts on one machine for tests: network namespaces joined by veth pairs on
 * a bridge that lives in a namespace of its own, so nothing touches the root
 * namespace's interfaces, addresses or routes. Each host gets lo up and one
 * address from 198.18.0.0/24 (the benchmarking range) on its eth0; there is
 * no default route, so nothing leaves the bridge.
 *
 *   NS-br:  br0 --+-- vdb ====== eth0 NS-db  198.18.0.1
 *                 +-- va  ====== eth0 NS-a   198.18.0.2
 *                 +-- ...
 *
 * Namespace names are PREFIX PID "-" ROLE (e.g. tcpopsmh4242-a), so runs
 * side by side do not collide and the leftovers of a run that died (its pid
 * gone) can be told from a live run's. Everything made here (namespaces, the
 * processes still inside them, /etc/netns/NAME) is removed by netns_destroy,
 * which netns_setup registers with atexit. Needs root and iproute2's `ip`. */
#ifndef TCPOPS_TEST_NETNS_H
#define TCPOPS_TEST_NETNS_H

#include <stddef.h>

#define NETNS_MAX_HOSTS 8

typedef struct netns_host {
    char ns[64];    /* the namespace's name */
    char veth[16];  /* the bridge's end of its link, in the bridge namespace */
    char ip[16];    /* its address, 198.18.0.N */
} netns_host;

typedef struct netns_net {
    char prefix[48];    /* PREFIX PID, the start of every name */
    char bridge[64];    /* the bridge's namespace */
    netns_host hosts[NETNS_MAX_HOSTS];
    int nhosts;
} netns_net;

/* Whether namespaces can be made here: root, `ip` installed, and a probe
 * namespace can be added and deleted. When not, why in why. */
int netns_available(char *why, size_t len);

/* The path of `ip`. */
const char *netns_ip(void);

/* Removes what runs of this program (names starting with prefix, e.g.
 * "tcpopsmh") left behind when they died: namespaces whose pid no longer
 * runs, the processes still inside them, their /etc/netns directories. */
void netns_sweep(const char *prefix);

/* Makes the bridge namespace for a run named prefix + our pid, after
 * sweeping, and registers netns_destroy with atexit. 0, or -1 with err. */
int netns_setup(netns_net *net, const char *prefix, char *err, size_t errlen);

/* Adds host role (e.g. "a") at 198.18.0.last, linked to the bridge. Returns
 * the host (owned by net), or NULL with err filled. */
const netns_host *netns_add_host(netns_net *net, const char *role, int last, char *err,
                                 size_t errlen);

/* Sets the host's link up or down at the bridge: down, its packets vanish
 * (no RST, no ICMP), as when a cable is pulled. 0, or -1 with err. */
int netns_link(const netns_net *net, const netns_host *h, int up, char *err, size_t errlen);

/* Writes /etc/netns/NS/hosts, which `ip netns exec NS` bind-mounts over
 * /etc/hosts for the programs it starts. The first write creates it; later
 * ones rewrite the same file in place (same inode), so programs already
 * running see the new text. 0, or -1 with err. */
int netns_write_hosts(const netns_host *h, const char *text, char *err, size_t errlen);

/* Moves the calling thread into the host's namespace (setns): its new
 * sockets and the threads it creates from then on live there. 0 or -1. */
int netns_enter(const netns_host *h);

/* Runs `ip ARGS...` (NULL-terminated); its error output in err. 0, or -1. */
int netns_ip_run(char *err, size_t errlen, ...);

/* Kills every process left in net's namespaces, deletes them and their
 * /etc/netns directories. Safe to call twice. */
void netns_destroy(void);

#endif
