/* HTTPS on the gateway's listener: the TLS context civetweb serves with, the
 * certificate and key it shows, and their rotation on SIGHUP.
 *
 * Debian's civetweb 1.15 loads libssl.so and libcrypto.so itself, at run
 * time (dlopen of the unversioned names that libssl-dev installs), and
 * looks up the OpenSSL 1.1 function names in them. OpenSSL 3 dropped one
 * of those, SSL_get_peer_certificate (now a macro), so on Debian 12 that
 * lookup fails and civetweb cannot do TLS at all (upstream:
 * https://github.com/civetweb/civetweb/issues/1334). The gateway program
 * works around it (see https.c and src/gateway/CMakeLists.txt): it names
 * itself libssl.so (DT_SONAME), so that civetweb's dlopen("libssl.so")
 * finds the gateway, whose own libssl.so.3 then answers every name, and
 * SSL_get_peer_certificate is defined here. Both sides use the one copy of
 * OpenSSL the gateway links, and the context is made here and handed to
 * civetweb through its external_ssl_ctx callback: civetweb then neither
 * configures nor frees it, and its ssl_* options (ssl_certificate,
 * ssl_protocol_version, ssl_cipher_list) do not apply.
 * That context has no certificate of its own: each handshake takes the
 * current one (a callback of OpenSSL's, under a short lock), so a reload
 * swaps the certificate for new connections while open ones keep theirs.
 *
 * TLS 1.2 and 1.3; on 1.2 only forward-secret AEAD suites; no
 * renegotiation, no client certificates, no HSTS (the gateway never sends
 * Strict-Transport-Security). */
#ifndef TCPOPS_GW_HTTPS_H
#define TCPOPS_GW_HTTPS_H

#include <stddef.h>

typedef struct gw_https gw_https;

/* Whether this civetweb can serve HTTPS: built with TLS (mg_check_feature)
 * and able to load libssl.so and libcrypto.so now. Initialises civetweb
 * (mg_init_library with TLS) either way; the caller's mg_exit_library
 * undoes it. 0, or -1 with a sentence in err. */
int gw_https_init_library(char *err, size_t errlen);

/* Reads the certificate (PEM, its chain after it) and its private key.
 * 0, or -1 with a sentence in err naming the file at fault (unreadable,
 * not PEM, a key that is not the certificate's); *out untouched then. */
int gw_https_new(gw_https **out, const char *cert, const char *key, char *err, size_t errlen);

/* NULL does nothing. After mg_stop: civetweb no longer uses the context. */
void gw_https_free(gw_https *h);

/* Reads both files again; new handshakes show what was read. On failure
 * (-1, err filled) the certificate in use stays. Any thread. */
int gw_https_reload(gw_https *h, char *err, size_t errlen);

/* civetweb's external_ssl_ctx callback for a server whose user_data is
 * the gw_https: at start (*ssl_ctx NULL) it hands over the context; at
 * stop it keeps it (gw_https_free frees it). Returns 1 (the context is
 * ours). */
int gw_https_civetweb_ctx(void **ssl_ctx, gw_https *h);

#endif
