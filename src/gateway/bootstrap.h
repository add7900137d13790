/* A service's bootstrap list as the gateway reads it (--people, --pets):
 * comma-separated HOST:PORT entries whose HOST may be a DNS name, resolved
 * into one endpoint per address record (the shape of a Kubernetes headless
 * Service). Pure logic over a resolver function the caller passes, so tests
 * inject their own answers; gw_resolve_system is the real one (getaddrinfo).
 *
 * IPv4 only: the RPC client connects to struct sockaddr_in addresses
 * (rpc_addr_parse), so names give their A records, AAAA records are not
 * asked for, and an IPv6 literal ("[::1]:5002") is refused when parsed.
 *
 * A gw_boot is not thread-safe: one thread resolves it at a time. */
#ifndef TCPOPS_GW_BOOTSTRAP_H
#define TCPOPS_GW_BOOTSTRAP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define GW_BOOT_MAX 16      /* entries in one list */
#define GW_BOOT_PER_NAME 32 /* addresses kept of one name's answer */
#define GW_BOOT_ADDRS 32    /* endpoints of one service after resolution */
#define GW_BOOT_ADDRLEN 24  /* "255.255.255.255:65535" and its NUL */

/* Resolves host into up to max IPv4 addresses. Returns how many (>= 0), or
 * -1 with a sentence in err (errlen bytes). May block (DNS). */
typedef int (*gw_resolve_fn)(void *user, const char *host, struct in_addr *out, size_t max,
                             char *err, size_t errlen);

/* What the last gw_boot_resolve changed for an entry (bits of news). */
enum {
    GW_BOOT_ANSWER = 1,    /* it resolved to another set of addresses (or the first) */
    GW_BOOT_FAILED = 2,    /* it failed, and not for the reason it failed before */
    GW_BOOT_RECOVERED = 4, /* it resolved again, to the addresses it had */
};

typedef struct gw_boot_entry {
    char host[256];                       /* as given; "" means 127.0.0.1 */
    uint16_t port;
    struct in_addr addr[GW_BOOT_PER_NAME];/* the last good answer, sorted */
    size_t naddr;
    char error[200];                      /* why the last resolution failed; "" when it did not */
    int news;                             /* GW_BOOT_* bits from the last gw_boot_resolve */
} gw_boot_entry;

typedef struct gw_boot {
    gw_boot_entry e[GW_BOOT_MAX];
    size_t n;
} gw_boot;

/* Parses list ("HOST:PORT[,HOST:PORT...]") into b, which it clears first.
 * what names the list in messages ("--people"). Refuses, with a sentence
 * in err: an empty list or entry, an entry without a port, a port that is
 * not 1-65535 in digits, an IPv6 literal, a host over 253 bytes, an entry
 * listed twice (host compared without case), more than GW_BOOT_MAX entries.
 * Returns 0 or -EINVAL. Resolves nothing. */
int gw_boot_parse(gw_boot *b, const char *what, const char *list, char *err, size_t errlen);

/* The system resolver: getaddrinfo(host, AF_INET, SOCK_STREAM); an IPv4
 * literal or "" (127.0.0.1) without a lookup. user is unused. */
int gw_resolve_system(void *user, const char *host, struct in_addr *out, size_t max,
                      char *err, size_t errlen);

/* Resolves every entry with fn. An entry that fails (or answers no
 * address) keeps its last good answer. Sets each entry's news. Returns 1
 * when some entry's answer changed, else 0. */
int gw_boot_resolve(gw_boot *b, gw_resolve_fn fn, void *user);

/* Every entry's addresses with its port as "a.b.c.d:port", sorted, without
 * duplicates (localhost:5002 and 127.0.0.1:5002 are one endpoint), at most
 * max (the lowest ones). Returns how many were written. */
size_t gw_boot_endpoints(const gw_boot *b, char (*out)[GW_BOOT_ADDRLEN], size_t max);

/* Between the endpoint sets old and cur (as gw_boot_endpoints makes them):
 * writes into added the ones only in cur and into gone the ones only in
 * old, joined by commas (each buffer len bytes, "" when none; cut short
 * when it does not fit). Returns 1 when the sets differ, else 0. */
int gw_boot_diff(char (*old)[GW_BOOT_ADDRLEN], size_t nold, char (*cur)[GW_BOOT_ADDRLEN],
                 size_t ncur, char *added, char *gone, size_t len);

#endif
