/* Long command-line flags with an environment fallback: --data-dir DIR,
 * --data-dir=DIR, or TCPOPS_DATA_DIR=DIR; the command line wins. Parsing
 * stops at the first argument that is not a flag (a subcommand). */
#ifndef TCPOPS_UTIL_FLAGS_H
#define TCPOPS_UTIL_FLAGS_H

#include <stddef.h>
#include <stdio.h>

typedef enum util_flag_type {
    UTIL_FLAG_STR,  /* dest: const char ** (points into argv or environ) */
    UTIL_FLAG_INT,  /* dest: long *; decimal, may end in k/m/g (x1024) */
    UTIL_FLAG_BOOL, /* dest: int *; "--name" alone sets 1; env "1"/"true" */
} util_flag_type;

typedef struct util_flag {
    const char *name;   /* "data-dir" */
    util_flag_type type;
    void *dest;         /* holds the default on entry */
    const char *arg;    /* "DIR", for help */
    const char *help;
    long min, max;      /* UTIL_FLAG_INT bounds (inclusive) */
} util_flag;

/* Applies TCPOPS_* environment values, then argv[first..]. Returns the index
 * of the first non-flag argument (argc when none); 0 when --help was given;
 * -1 with a sentence in err for an unknown flag or a bad value. */
int util_flags_parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                     char *err, size_t errlen);

/* Parses a decimal number that may end in k/m/g (x1024; "64M", "512k").
 * 0, or -1 when s is not such a number. */
int util_parse_size(const char *s, long *out);

/* Prints the flags, their environment names and defaults. */
void util_flags_usage(FILE *out, const util_flag *flags, size_t n);

#endif
