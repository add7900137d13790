/* Long command-line flags the getopt_long way, with an environment
 * fallback: --data-dir DIR, --data-dir=DIR, or TCPOPS_PEOPLE_DATA_DIR=DIR.
 *   - Flags and the other arguments may come in any order: the parse moves
 *     the others (the positional arguments) after the flags, keeping their
 *     order, as GNU getopt permutes argv. "--" ends the flags: what follows
 *     is positional even when it starts with a dash.
 *   - A boolean --NAME has a --no-NAME that turns it off, and takes
 *     --NAME=true|false too.
 *   - The environment name is TCPOPS_<PROGRAM>_<FLAG> (util_flags_program),
 *     so that one shell or unit can hold a value for each program: tcpops
 *     up's workers inherit its environment. A flag marked UTIL_FLAG_SHARED
 *     means the same to every program, and reads TCPOPS_<FLAG> when the
 *     program's own name is not set. The command line wins over both.
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
    UTIL_FLAG_BOOL, /* dest: int *; --name sets 1, --no-name 0; env "1"/"true"/"0"... */
    UTIL_FLAG_CHOICE, /* dest: const char **; one of the words of arg ("normal|full") */
} util_flag_type;

/* Or'd into a flag's type ({"tls-cert", UTIL_FLAG_STR | UTIL_FLAG_SHARED,
 * ...}): one value of this flag means the same to every program, so the
 * unscoped TCPOPS_<FLAG> applies after TCPOPS_<PROGRAM>_<FLAG>. Shared are
 *   --tls-cert, --tls-key, --tls-ca: a host's one TLS identity, which every
 *     program here serves and dials with (tcpops up hands the same three
 *     to all; scripts/dev-certs.sh makes the server certificate a client
 *     one too);
 *   --drain-ms: how long in-flight work may take at a stop, which tcpops
 *     up's own --drain-ms (TCPOPS_DRAIN_MS) waits for before SIGKILL, so
 *     its workers should drain as long;
 *   --data-dir: the directory of the SQLite files, DIR/people.db and
 *     DIR/pets.db, the one tcpops up hands its workers.
 *   --log-level, --log-format (util/log.h): how a host logs.
 * Not shared are limits and sizes (--threads: 4096 for the gateway, 256
 * for a service), addresses, --db (sqlite:PATH would be one file for two
 * services) and --insecure (each program's plaintext is its own choice). */
#define UTIL_FLAG_SHARED 0x100

typedef struct util_flag {
    const char *name;   /* "data-dir" */
    util_flag_type type; /* with UTIL_FLAG_SHARED or'd in, maybe */
    void *dest;         /* holds the default on entry */
    const char *arg;    /* "DIR", for help */
    const char *help;
    long min, max;      /* UTIL_FLAG_INT/SIZE bounds (inclusive) */
} util_flag;

/* The version --version prints: "0.7.0 (git 0ad52a5)" when built from git. */
const char *util_version(void);

/* Names the program in the environment names of its flags: "gateway"
 * makes --threads read TCPOPS_GATEWAY_THREADS. Without it (tcpops itself)
 * or with NULL, the names are TCPOPS_<FLAG>. Call once from main, before
 * threads and before parsing. */
void util_flags_program(const char *name);

/* Applies the environment values (see the top), then the flags of
 * argv[first..], wherever they come among the other arguments; argv[0..
 * first) is left alone. Permutes argv[first..]: the flags (and a "--") come
 * first, then the positional arguments in their order. Returns the index of
 * the first positional one (argc when none); 0 when -h or --help was given;
 * -1 with a sentence in err for an unknown flag or a bad value.
 * --version prints "PROGRAM VERSION" on stdout and exits 0.
 * With TCPOPS_CHECK_FLAGS=1 in the environment it returns 0 (as for --help)
 * once every flag has parsed: the supervisor checks a worker's arguments by
 * running the worker that way, which then prints its usage and exits 0, or
 * says what is wrong and exits 2, without starting anything. A positional
 * argument is an error then. */
int util_flags_parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                     char *err, size_t errlen);

/* For a program whose first positional argument names a command that may
 * have flags of its own (tcpops-cli people list --limit N): as
 * util_flags_parse, but after the command's name only the program's own
 * flags are taken (tcpops-cli status --addr A); anything else there (a
 * flag not in flags, -h, --help, and "--" with all that follows) stays
 * among the positional arguments, in its order, for the command's own
 * parse. Before the command an unknown flag is an error and -h or --help
 * returns 0. Returns the index of the command (argc when none), 0 or -1. */
int util_flags_parse_command(const util_flag *flags, size_t n, int argc, char **argv, int first,
                             char *err, size_t errlen);

/* Parses s as a number of unit within [min, max] into *out. Returns 0;
 * -EINVAL when s is not such a number (wrong characters, a suffix the unit
 * does not take); -ERANGE when it overflows or lies outside [min, max]. On
 * failure err gets a sentence naming s and what was expected (what, e.g.
 * "--drain-ms", starts it) and *out is untouched. */
int util_parse_num(const char *s, util_unit unit, long min, long max, long *out,
                   const char *what, char *err, size_t errlen);

/* Prints the flags ("--[no-]NAME" for a boolean), their environment names
 * and defaults (a boolean's as true or false). */
void util_flags_usage(FILE *out, const util_flag *flags, size_t n);

#endif
