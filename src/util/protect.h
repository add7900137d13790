/* Protected mode: a program that serves plaintext only to its own machine
 * unless told otherwise. An address that is not loopback (127.0.0.0/8, ::1,
 * localhost; 0.0.0.0 is every interface, so not loopback) faces a network,
 * and a program may listen there only with its encryption configured (TLS
 * for RPC, HTTPS for the gateway) or with --insecure given knowingly. The
 * services, the gateway and `tcpops up` share these words. */
#ifndef TCPOPS_UTIL_PROTECT_H
#define TCPOPS_UTIL_PROTECT_H

#include <stddef.h>

/* What the RPC programs tell the user to add (services, tcpops up). */
#define UTIL_PROTECT_TLS_FLAGS \
    "--tls-cert FILE --tls-key FILE --tls-ca FILE (scripts/dev-certs.sh makes test ones)"

/* What the gateway tells the user to add for its HTTP --listen. */
#define UTIL_PROTECT_HTTPS_FLAGS "--https-cert FILE --https-key FILE"

/* Whether hostport ("HOST:PORT", "[V6]:PORT" or a bare HOST) names a
 * loopback address: an IPv4 address in 127.0.0.0/8, ::1, or localhost.
 * Anything else (0.0.0.0, another address, a name, garbage) is not. */
int util_is_loopback(const char *hostport);

/* The protected-mode rule for one listening address: what (e.g. "--listen")
 * names it in err, secure tells whether encryption is configured, add is
 * what to add when it is not (UTIL_PROTECT_TLS_FLAGS). Returns 0 when addr
 * is loopback or secure; 1 when it is neither but insecure is set (the
 * caller logs a warning); -1 with a sentence in err naming the flags to add
 * or --insecure. */
int util_protect_check(const char *what, const char *addr, int secure, int insecure,
                       const char *add, char *err, size_t errlen);

#endif
