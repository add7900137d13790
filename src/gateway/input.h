/* The gateway's input rules as pure functions, so they can be tested and
 * fuzzed without a connection: query numbers and the POST /people body. */
#ifndef TCPOPS_GW_INPUT_H
#define TCPOPS_GW_INPUT_H

#include <stddef.h>

/* Parses a ?limit= value of n bytes: a whole number from 1 to 1000, digits
 * only. 0 and *out, or -1. */
int gw_parse_limit(const char *s, size_t n, long *out);

/* Parses a POST /people body: a JSON object whose "name" is a string that is
 * a valid name. 0 with the name copied into name (cap >= 66 bytes), or -1
 * with a sentence for the 400 in why. */
int gw_parse_create_body(const char *body, size_t len, char *name, size_t cap, char *why,
                         size_t whylen);

#endif
