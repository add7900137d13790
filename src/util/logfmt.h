/* logfmt lines as data: parsing one into key=value pairs, and writing pairs
 * back as a logfmt line or as a JSON object. Pure functions over buffers (no
 * I/O, no globals): the logger writes its lines through them, and the
 * supervisor reads its workers' lines with them to add worker= to each.
 *
 *   ts=2026-11-28T00:35:39.123Z level=info app=people pid=42 msg="listening"
 *   {"ts":"2026-11-28T00:35:39.123Z","level":"info","app":"people","pid":42,...}
 *
 * In JSON every value is a string except one written bare in logfmt that is
 * a JSON number (pid=42, dur_us=180): a quoted "42" stays a string. */
#ifndef TCPOPS_UTIL_LOGFMT_H
#define TCPOPS_UTIL_LOGFMT_H

#include <stddef.h>

/* The most pairs a line may have to be parsed. */
#define UTIL_LOGFMT_MAX_PAIRS 64

/* One key=value pair. key and val point into the parsed line or into the
 * caller's decode buffer; neither is NUL-terminated. */
typedef struct util_kv {
    const char *key;
    size_t klen;
    const char *val;
    size_t vlen;
    int quoted;  /* the value was written in quotes (so JSON keeps it a string) */
} util_kv;

/* Parses line (len bytes, no newline) as logfmt: pairs key=value separated
 * by spaces, keys of [A-Za-z0-9_.-], values bare (up to the next space) or
 * in double quotes with \" \\ \n \t \r escapes, which are decoded into buf.
 * A line that starts with '{' is read as a JSON object instead (one level:
 * a nested value becomes its compact JSON text). Returns the number of
 * pairs filled in kv (at most max), or -1 when the line is neither (a word
 * without '=', a key with other characters, an open quote, more than max
 * pairs, no pair at all, or buf too small). */
int util_logfmt_parse(const char *line, size_t len, util_kv *kv, int max, char *buf,
                      size_t buflen);

/* The index of the pair named key in kv[0..n), or -1. */
int util_logfmt_find(const util_kv *kv, int n, const char *key);

/* Writes kv[0..n) into out (len bytes) as one logfmt line, without a
 * newline, values quoted where a parser needs it (as util_logq does, but
 * whole: a tab is \t). A pair that does not fit is left out with all after
 * it; the line stays well formed. Returns its length (out NUL-terminated;
 * len must be at least 1). */
size_t util_logfmt_render(char *out, size_t len, const util_kv *kv, int n);

/* Writes kv[0..n) into out as one JSON object, without a newline: keys and
 * values as strings (control characters and invalid UTF-8 escaped, so the
 * object is always valid JSON), a bare value that is a JSON number as a
 * number. Pairs that do not fit are left out; the object is always closed.
 * Returns its length (out NUL-terminated; len must be at least 3). */
size_t util_logfmt_json(char *out, size_t len, const util_kv *kv, int n);

#endif
