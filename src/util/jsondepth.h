/* A nesting limit for JSON, checked before a recursive parser sees the
 * bytes. jansson recurses once per array or object level (about 100 bytes
 * of stack each, more under sanitizers) up to its own limit of 2048, which
 * a thread with a small stack does not survive; our messages nest at most
 * three levels. Pure function, any thread. */
#ifndef TCPOPS_UTIL_JSONDEPTH_H
#define TCPOPS_UTIL_JSONDEPTH_H

#include <stddef.h>

/* The nesting every tcpops JSON input may have: far above what any message
 * needs, far below what a 64 KiB thread stack holds. */
#define UTIL_JSON_MAX_DEPTH 32

/* 1 when no array or object in buf[0..len) lies more than max levels deep
 * (a top-level object is level 1; brackets inside strings do not count);
 * 0 otherwise. Scans without recursion and does not otherwise validate the
 * JSON: the parser still does that. */
int util_json_depth_ok(const char *buf, size_t len, int max);

#endif
