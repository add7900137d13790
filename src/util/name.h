/* Validation of names (people, pets): 1-64 bytes of valid UTF-8 with no
 * control characters. Pure functions, any thread. */
#ifndef TCPOPS_UTIL_NAME_H
#define TCPOPS_UTIL_NAME_H

#include <stddef.h>

#define UTIL_NAME_MAX 64

/* 1 when s[0..len) is valid UTF-8 (shortest form, no surrogates, at most
 * U+10FFFF), else 0. */
int util_utf8_valid(const char *s, size_t len);

/* 0 when s[0..len) is an acceptable name; else -EINVAL with the reason in
 * why (at least 96 bytes). */
int util_name_check(const char *s, size_t len, char *why, size_t whylen);

#endif
