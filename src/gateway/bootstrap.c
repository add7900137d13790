/* Bootstrap lists: parsing, resolution through a given resolver, and the
 * endpoint set they make. See bootstrap.h. */
#include "gateway/bootstrap.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define MAX_HOST 253 /* the longest DNS name */

/* Host names as DNS and /etc/hosts spell them (and IPv4 literals): letters,
 * digits, '-', '.', '_'. Anything else is a typo or an attempt at something
 * else, refused before it reaches the resolver. */
static int host_ok(const char *h)
{
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.' && *h != '_')
            return 0;
    return 1;
}

/* Parses one entry (len bytes at s) into e. 0, or -EINVAL with err filled. */
static int parse_entry(gw_boot_entry *e, const char *what, const char *s, size_t len, char *err,
                       size_t errlen)
{
    char text[MAX_HOST + 8]; /* HOST, ':', five digits, NUL */
    if (len >= sizeof(text)) {
        snprintf(err, errlen, "%s: \"%.40s...\": an entry is at most %zu bytes", what, s,
                 sizeof(text) - 1);
        return -EINVAL;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    const char *colon = strrchr(text, ':');
    if (text[0] == '[' || (colon != NULL && strchr(text, ':') != colon)) {
        snprintf(err, errlen, "%s: \"%s\": IPv6 addresses are not supported (the RPC client "
                 "speaks IPv4; names resolve to their A records)", what, text);
        return -EINVAL;
    }
    if (colon == NULL) {
        snprintf(err, errlen, "%s: \"%s\" is not HOST:PORT", what, text);
        return -EINVAL;
    }
    long port = 0;
    const char *p = colon + 1;
    for (; *p >= '0' && *p <= '9' && port <= 65535; p++)
        port = port * 10 + (*p - '0');
    if (p == colon + 1 || *p != '\0' || port < 1 || port > 65535) {
        snprintf(err, errlen, "%s: \"%s\": the port must be 1-65535", what, text);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - text);
    if (hl > MAX_HOST) {
        snprintf(err, errlen, "%s: \"%.40s...\": the host is longer than %d bytes", what, text,
                 MAX_HOST);
        return -EINVAL;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->host, text, hl);
    e->host[hl] = '\0';
    if (!host_ok(e->host)) {
        snprintf(err, errlen, "%s: \"%s\": \"%s\" is not a host name or IPv4 address", what,
                 text, e->host);
        return -EINVAL;
    }
    e->port = (uint16_t)port;
    return 0;
}

int gw_boot_parse(gw_boot *b, const char *what, const char *list, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    if (list == NULL || list[0] == '\0') {
        snprintf(err, errlen, "%s: no address given", what);
        return -EINVAL;
    }
    for (const char *s = list;; s++) {
        size_t len = strcspn(s, ",");
        if (len == 0) {
            snprintf(err, errlen, "%s: \"%.200s\": an empty entry (two commas, or one at an "
                     "end)", what, list);
            return -EINVAL;
        }
        if (b->n == GW_BOOT_MAX) {
            snprintf(err, errlen, "%s: more than %d addresses", what, GW_BOOT_MAX);
            return -EINVAL;
        }
        gw_boot_entry *e = &b->e[b->n];
        if (parse_entry(e, what, s, len, err, errlen) < 0)
            return -EINVAL;
        for (size_t i = 0; i < b->n; i++) {
            if (b->e[i].port == e->port && strcasecmp(b->e[i].host, e->host) == 0) {
                snprintf(err, errlen, "%s: %s:%u is listed twice", what, e->host,
                         (unsigned)e->port);
                return -EINVAL;
            }
        }
        b->n++;
        s += len;
        if (*s == '\0')
            return 0;
    }
}

int gw_resolve_system(void *user, const char *host, struct in_addr *out, size_t max, char *err,
                      size_t errlen)
{
    (void)user;
    if (max == 0)
        return 0;
    if (host[0] == '\0') {
        out[0].s_addr = htonl(INADDR_LOOPBACK);
        return 1;
    }
    if (inet_pton(AF_INET, host, &out[0]) == 1)
        return 1;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n < max; ai = ai->ai_next)
        if (ai->ai_family == AF_INET)
            out[n++] = ((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return (int)n;
}

static int cmp_addr(const void *a, const void *b)
{
    uint32_t x = ntohl(((const struct in_addr *)a)->s_addr);
    uint32_t y = ntohl(((const struct in_addr *)b)->s_addr);
    return (x > y) - (x < y);
}

/* Sorts a[0..n) and drops repeats; returns the new count. */
static size_t sort_unique(struct in_addr *a, size_t n)
{
    qsort(a, n, sizeof(*a), cmp_addr);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || a[i].s_addr != a[k - 1].s_addr)
            a[k++] = a[i];
    return k;
}

/* Resolves e once. Returns 1 when its answer changed. */
static int resolve_entry(gw_boot_entry *e, gw_resolve_fn fn, void *user)
{
    struct in_addr got[GW_BOOT_PER_NAME];
    char why[sizeof(e->error)] = "";
    int n = fn(user, e->host, got, GW_BOOT_PER_NAME, why, sizeof(why));
    e->news = 0;
    if (n == 0)
        snprintf(why, sizeof(why), "no IPv4 address");
    if (n <= 0) {
        /* A resolver that fails keeps the last answer: DNS down must not
         * take live endpoints away. */
        if (strcmp(why, e->error) != 0)
            e->news = GW_BOOT_FAILED;
        snprintf(e->error, sizeof(e->error), "%s", why[0] ? why : "lookup failed");
        return 0;
    }
    size_t k = sort_unique(got, n > GW_BOOT_PER_NAME ? GW_BOOT_PER_NAME : (size_t)n);
    int changed = k != e->naddr || memcmp(got, e->addr, k * sizeof(got[0])) != 0;
    if (changed) {
        memcpy(e->addr, got, k * sizeof(got[0]));
        e->naddr = k;
        e->news = GW_BOOT_ANSWER;
    } else if (e->error[0] != '\0') {
        e->news = GW_BOOT_RECOVERED;
    }
    e->error[0] = '\0';
    return changed;
}

int gw_boot_resolve(gw_boot *b, gw_resolve_fn fn, void *user)
{
    int changed = 0;
    for (size_t i = 0; i < b->n; i++)
        changed |= resolve_entry(&b->e[i], fn, user);
    return changed;
}

typedef struct ep {
    uint32_t ip; /* host order, to sort numerically */
    uint16_t port;
} ep;

static int cmp_ep(const void *a, const void *b)
{
    const ep *x = a, *y = b;
    if (x->ip != y->ip)
        return (x->ip > y->ip) - (x->ip < y->ip);
    return (x->port > y->port) - (x->port < y->port);
}

size_t gw_boot_endpoints(const gw_boot *b, char (*out)[GW_BOOT_ADDRLEN], size_t max)
{
    ep all[GW_BOOT_MAX * GW_BOOT_PER_NAME];
    size_t n = 0, k = 0;
    for (size_t i = 0; i < b->n; i++)
        for (size_t j = 0; j < b->e[i].naddr; j++)
            all[n++] = (ep){ntohl(b->e[i].addr[j].s_addr), b->e[i].port};
    qsort(all, n, sizeof(all[0]), cmp_ep);
    for (size_t i = 0; i < n && k < max; i++) {
        if (i > 0 && cmp_ep(&all[i], &all[i - 1]) == 0)
            continue;
        struct in_addr a = {htonl(all[i].ip)};
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a, ip, sizeof(ip));
        snprintf(out[k++], GW_BOOT_ADDRLEN, "%s:%u", ip, (unsigned)all[i].port);
    }
    return k;
}

static int in_set(char (*set)[GW_BOOT_ADDRLEN], size_t n, const char *a)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(set[i], a) == 0)
            return 1;
    return 0;
}

/* Appends to buf (len bytes) the entries of a that are not in b. Returns how many. */
static int list_missing(char (*a)[GW_BOOT_ADDRLEN], size_t na, char (*b)[GW_BOOT_ADDRLEN],
                        size_t nb, char *buf, size_t len)
{
    int count = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < na; i++) {
        if (in_set(b, nb, a[i]))
            continue;
        int w = snprintf(buf + used, len - used, "%s%s", count > 0 ? "," : "", a[i]);
        count++;
        if (w < 0 || (size_t)w >= len - used)
            break; /* cut short: the count still says they differ */
        used += (size_t)w;
    }
    return count;
}

int gw_boot_diff(char (*old)[GW_BOOT_ADDRLEN], size_t nold, char (*cur)[GW_BOOT_ADDRLEN],
                 size_t ncur, char *added, char *gone, size_t len)
{
    int a = list_missing(cur, ncur, old, nold, added, len);
    int g = list_missing(old, nold, cur, ncur, gone, len);
    return a + g > 0;
}
