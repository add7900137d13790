/* Names (people, pets) and their identity. A name is 1-64 bytes of valid
 * UTF-8, both as sent and in its NFC form, with no control (Cc), format
 * (Cf: zero-width and bidi characters, U+FEFF), line or paragraph separator
 * (Zl, Zp) characters, no space but U+0020, and no space at either end. Two
 * names are the same name when their NFC forms are equal byte for byte:
 * precomposed "é" and "e" + U+0301 are one name; case matters ("Ann" and
 * "ann" are two). Unicode data from libunistring. Pure functions, any
 * thread. */
#ifndef TCPOPS_UTIL_NAME_H
#define TCPOPS_UTIL_NAME_H

#include <stddef.h>

#define UTIL_NAME_MAX 64

/* Checks s[0..len) as a name and writes its NFC form, NUL-terminated, to
 * out (outcap bytes; UTIL_NAME_MAX + 1 always suffice; out may be s) and
 * its length to *outlen (may be NULL). Returns 0, or -EINVAL with the
 * reason in why (at least 96 bytes) and out untouched. This form is what
 * a service stores and compares. */
int util_name_normalize(const char *s, size_t len, char *out, size_t outcap, size_t *outlen,
                        char *why, size_t whylen);

/* 0 when s[0..len) is an acceptable name (util_name_normalize would take
 * it); else -EINVAL with the reason in why (at least 96 bytes). */
int util_name_check(const char *s, size_t len, char *why, size_t whylen);

#endif
