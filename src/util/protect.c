/* Protected mode (protect.h): which addresses are loopback, and the refusal
 * that names what to add. */
#include "util/protect.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int util_is_loopback(const char *hostport)
{
    char host[64];
    const char *end;
    if (hostport == NULL)
        return 0;
    if (hostport[0] == '[') {
        hostport++;
        end = strchr(hostport, ']');
    } else {
        /* One colon: IPv4 or a name with a port; more: a bare IPv6 address. */
        end = strchr(hostport, ':');
        if (end != NULL && strchr(end + 1, ':') != NULL)
            end = NULL;
    }
    size_t n = end != NULL ? (size_t)(end - hostport) : strlen(hostport);
    if (n == 0 || n >= sizeof(host))
        return 0;
    memcpy(host, hostport, n);
    host[n] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    return strcmp(host, "localhost") == 0;
}

int util_protect_check(const char *what, const char *addr, int secure, int insecure,
                       const char *add, char *err, size_t errlen)
{
    if (secure || util_is_loopback(addr))
        return 0;
    if (insecure)
        return 1;
    snprintf(err, errlen, "%s %s is not a loopback address: add %s, or pass --insecure to "
             "serve plaintext to the network knowingly", what, addr, add);
    return -1;
}
