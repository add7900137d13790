/* Long command-line flags with an environment fallback: --data-dir DIR,
 * --data-dir=DIR, or TCPOPS_DATA_DIR=DIR; the command line wins. Parsing
 * stops at the first argument that is not a flag (a subcommand).
 *
 * Every number a tcpops program reads (flags, INI settings, command
 * arguments) goes through util_parse_num: decimal digits only (a leading
 * '-' where the range allows it), no spaces, no '+', no hex, checked for
 * overflow and against the range of the value. Units:
 *   UTIL_NUM_PLAIN  counts, and durations whose unit is in the flag's name
 *                   (--drain-ms 5000, --spin-us 80): no suffix at all;
 *   UTIL_NUM_SIZE   bytes: an optional k, M or G (x1024; either case), then
 *                   an optional "i" and "B" ("512k", "64M", "64MiB", "1G"). */
#ifndef TCPOPS_UTIL_FLAGS_H
#define TCPOPS_UTIL_FLAGS_H

#include <stddef.h>
#include <stdio.h>

/* How long a program stopping gracefully waits for what is in flight unless
 * told otherwise: --drain-ms of the services, the gateway and tcpops up. */
#define UTIL_DRAIN_MS_DEFAULT 5000

typedef enum util_unit {
    UTIL_NUM_PLAIN,
    UTIL_NUM_SIZE,
} util_unit;

typedef enum util_flag_type {
    UTIL_FLAG_STR,  /* dest: const char ** (points into argv or environ) */
    UTIL_FLAG_INT,  /* dest: long *; UTIL_NUM_PLAIN: a count, or ms/us as named */
    UTIL_FLAG_SIZE, /* dest: long *; UTIL_NUM_SIZE: bytes, may end in k/M/G */
    UTIL_FLAG_BOOL, /* dest: int *; "--name" alone sets 1; env "1"/"true" */
    UTIL_FLAG_CHOICE, /* dest: const char **; one of the words of arg ("normal|full") */
} util_flag_type;

typedef struct util_flag {
    const char *name;   /* "data-dir" */
    util_flag_type type;
    void *dest;         /* holds the default on entry */
    const char *arg;    /* "DIR", for help */
    const char *help;
    long min, max;      /* UTIL_FLAG_INT/SIZE bounds (inclusive) */
} util_flag;

/* The version --version prints: "0.7.0 (git 0ad52a5)" when built from git. */
const char *util_version(void);

/* Applies TCPOPS_* environment values, then argv[first..]. Returns the index
 * of the first non-flag argument (argc when none); 0 when --help or -h was
 * given; -1 with a sentence in err for an unknown flag or a bad value.
 * --version prints "PROGRAM VERSION" on stdout and exits 0.
 * With TCPOPS_CHECK_FLAGS=1 in the environment it returns 0 (as for --help)
 * once every flag has parsed: the supervisor checks a worker's arguments by
 * running the worker that way, which then prints its usage and exits 0, or
 * says what is wrong and exits 2, without starting anything. */
int util_flags_parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                     char *err, size_t errlen);

/* Parses s as a number of unit within [min, max] into *out. Returns 0;
 * -EINVAL when s is not such a number (wrong characters, a suffix the unit
 * does not take); -ERANGE when it overflows or lies outside [min, max]. On
 * failure err gets a sentence naming s and what was expected (what, e.g.
 * "--drain-ms", starts it) and *out is untouched. */
int util_parse_num(const char *s, util_unit unit, long min, long max, long *out,
                   const char *what, char *err, size_t errlen);

/* Prints the flags, their environment names and defaults (a boolean's as
 * true or false: --NAME=false turns on-by-default off). */
void util_flags_usage(FILE *out, const util_flag *flags, size_t n);

#endif
