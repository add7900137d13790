#include "util/flags.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The start of every environment name of this program's flags: "TCPOPS_",
 * and after util_flags_program("gateway") "TCPOPS_GATEWAY_". Written once
 * by main before threads, read only after. */
static char env_prefix[48] = "TCPOPS_";
static const char unscoped[] = "TCPOPS_";

/* prefix + the flag's name in capitals, '-' as '_'. */
static void env_name(const char *prefix, const char *flag, char *out, size_t len)
{
    size_t o = (size_t)snprintf(out, len, "%s", prefix);
    for (const char *p = flag; *p && o + 1 < len; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o < len ? o : len - 1] = '\0';
}

void util_flags_program(const char *name)
{
    if (name == NULL || *name == '\0') {
        snprintf(env_prefix, sizeof(env_prefix), "%s", unscoped);
        return;
    }
    char scoped[sizeof(env_prefix) - 1];
    env_name(unscoped, name, scoped, sizeof(scoped));
    snprintf(env_prefix, sizeof(env_prefix), "%s_", scoped);
}

static util_flag_type kind(const util_flag *f)
{
    return (util_flag_type)(f->type & 0xff);
}

/* Whether this program's names differ from the unscoped ones, and f reads
 * those too. */
static int reads_unscoped(const util_flag *f)
{
    return (f->type & UTIL_FLAG_SHARED) && strcmp(env_prefix, unscoped) != 0;
}

/* f's value in the environment, its own name first, then the unscoped one
 * of a shared flag; name gets the one it came from. NULL when neither. */
static const char *env_value(const util_flag *f, char *name, size_t len)
{
    env_name(env_prefix, f->name, name, len);
    const char *v = getenv(name);
    if (v == NULL && reads_unscoped(f)) {
        env_name(unscoped, f->name, name, len);
        v = getenv(name);
    }
    return v;
}

static int range_error(const char *s, long min, long max, util_unit unit, const char *what,
                       char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: \"%s\" is out of range: %ld to %ld%s", what, s, min, max,
             unit == UTIL_NUM_SIZE ? " bytes" : "");
    return -ERANGE;
}

int util_parse_num(const char *s, util_unit unit, long min, long max, long *out,
                   const char *what, char *err, size_t errlen)
{
    const char *p = s;
    int neg = *p == '-';
    unsigned long mag = 0; /* the magnitude, checked against LONG_MAX + 1 */
    int overflow = 0;
    if (neg)
        p++;
    /* ASCII digits whatever the locale says. */
    if (*p < '0' || *p > '9')
        goto syntax;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (mag > ((unsigned long)LONG_MAX + 1 - d) / 10)
            overflow = 1; /* keep going: the rest must still be well formed */
        else
            mag = mag * 10 + d;
    }
    unsigned long mult = 1;
    if (unit == UTIL_NUM_SIZE) {
        switch (*p) {
        case 'k': case 'K': mult = 1UL << 10, p++; break;
        case 'm': case 'M': mult = 1UL << 20, p++; break;
        case 'g': case 'G': mult = 1UL << 30, p++; break;
        default: break;
        }
        if (mult > 1 && *p == 'i')
            p++;
        if (*p == 'B' || *p == 'b')
            p++;
    }
    if (*p != '\0')
        goto syntax;
    if (overflow || __builtin_mul_overflow(mag, mult, &mag) ||
        mag > (unsigned long)LONG_MAX + (neg ? 1 : 0))
        return range_error(s, min, max, unit, what, err, errlen);
    long v = !neg ? (long)mag : mag == (unsigned long)LONG_MAX + 1 ? LONG_MIN : -(long)mag;
    if (v < min || v > max)
        return range_error(s, min, max, unit, what, err, errlen);
    *out = v;
    return 0;
syntax:
    if (unit == UTIL_NUM_SIZE)
        snprintf(err, errlen, "%s: \"%s\" is not a size in bytes like 4096, 512k, 64M or 1G",
                 what, s);
    else
        snprintf(err, errlen, "%s: \"%s\" is not a whole number (digits only, no unit)", what,
                 s);
    return -EINVAL;
}

static int set_value(const util_flag *f, const char *value, const char *source, char *err,
                     size_t errlen)
{
    switch (kind(f)) {
    case UTIL_FLAG_STR:
        *(const char **)f->dest = value;
        return 0;
    case UTIL_FLAG_CHOICE: {
        size_t vl = strlen(value);
        for (const char *p = f->arg;;) {
            const char *bar = strchr(p, '|');
            size_t wl = bar != NULL ? (size_t)(bar - p) : strlen(p);
            if (wl == vl && strncmp(p, value, vl) == 0) {
                *(const char **)f->dest = value;
                return 0;
            }
            if (bar == NULL)
                break;
            p = bar + 1;
        }
        snprintf(err, errlen, "%s: \"%s\" is not one of %s", source, value, f->arg);
        return -1;
    }
    case UTIL_FLAG_BOOL:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "yes") == 0) {
            *(int *)f->dest = 1;
            return 0;
        }
        if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 ||
            strcmp(value, "no") == 0) {
            *(int *)f->dest = 0;
            return 0;
        }
        snprintf(err, errlen, "%s: \"%s\" is not true or false", source, value);
        return -1;
    case UTIL_FLAG_INT:
    case UTIL_FLAG_SIZE:
        if (util_parse_num(value, kind(f) == UTIL_FLAG_SIZE ? UTIL_NUM_SIZE : UTIL_NUM_PLAIN,
                           f->min, f->max, (long *)f->dest, source, err, errlen) < 0)
            return -1;
        return 0;
    }
    return -1;
}

const char *util_version(void)
{
    return TCPOPS_VERSION;
}

/* Moves the k arguments at argv[from..] to argv[to..], and those that were
 * at argv[to..from) after them: both keep their order. */
static void move_before(char **argv, int to, int from, int k)
{
    for (int j = 0; j < k; j++) {
        char *a = argv[from + j];
        memmove(&argv[to + j + 1], &argv[to + j], (size_t)(from - to) * sizeof(*argv));
        argv[to + j] = a;
    }
}

/* A positional argument: no dash, "-" alone (stdin, by custom) or a
 * negative number (tcpops scale people -1 says what is wrong with it). */
static int positional(const char *a)
{
    return a[0] != '-' || a[1] == '\0' || (a[1] >= '0' && a[1] <= '9');
}

/* A flag of argv: the one of the table it names (NULL: none), whether as
 * --no-NAME, and its =VALUE (NULL: none). */
typedef struct given {
    const util_flag *f;
    int negated;
    const char *value;
} given;

static const util_flag *find(const util_flag *flags, size_t n, const char *name, size_t nl)
{
    for (size_t k = 0; k < n; k++)
        if (strlen(flags[k].name) == nl && strncmp(flags[k].name, name, nl) == 0)
            return &flags[k];
    return NULL;
}

/* Looks a ("--NAME[=VALUE]") up in flags. 0, or -1 with err filled for a
 * --no-NAME of a flag that is not a boolean, or that has a value. */
static int look_up(const util_flag *flags, size_t n, const char *a, given *g, char *err,
                   size_t errlen)
{
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nl = eq != NULL ? (size_t)(eq - name) : strlen(name);
    *g = (given){.f = find(flags, n, name, nl), .value = eq != NULL ? eq + 1 : NULL};
    if (g->f == NULL && nl > 3 && strncmp(name, "no-", 3) == 0) {
        g->f = find(flags, n, name + 3, nl - 3);
        g->negated = 1;
    }
    if (g->f == NULL || !g->negated)
        return 0;
    if (kind(g->f) != UTIL_FLAG_BOOL) {
        snprintf(err, errlen, "--no-%s: --%s is not a true/false flag (--%s %s)", g->f->name,
                 g->f->name, g->f->name, g->f->arg != NULL ? g->f->arg : "VALUE");
        return -1;
    }
    if (g->value != NULL) {
        snprintf(err, errlen, "--no-%s takes no value (--%s=%s is how to give one)",
                 g->f->name, g->f->name, g->value);
        return -1;
    }
    g->value = "0";
    return 0;
}

/* The parse of util_flags_parse and, with command set, of
 * util_flags_parse_command. argv[first..out) holds the flags taken so far,
 * argv[out..i) the positional arguments met between them. */
static int parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                 int command, char *err, size_t errlen)
{
    char name[96];
    for (size_t k = 0; k < n; k++) {
        const char *v = env_value(&flags[k], name, sizeof(name));
        if (v != NULL && set_value(&flags[k], v, name, err, errlen) < 0)
            return -1;
    }
    int out = first, i = first;
    while (i < argc) {
        const char *a = argv[i];
        /* After the command's name, what is not ours is the command's. */
        int after_cmd = command && i > out;
        if (positional(a)) {
            i++;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            if (!after_cmd) /* it ends the flags: it goes with them */
                move_before(argv, out++, i, 1);
            break;
        }
        if (strcmp(a, "--version") == 0) {
            /* As argp and every GNU program do: the line, then exit 0. */
            printf("%s %s\n", program_invocation_short_name, util_version());
            exit(0);
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (!after_cmd)
                return 0;
            i++;
            continue;
        }
        given g = {0};
        if (a[1] == '-' && look_up(flags, n, a, &g, err, errlen) < 0)
            return -1;
        if (g.f == NULL && after_cmd) {
            i++;
            continue;
        }
        if (g.f == NULL) {
            int nl = (int)strcspn(a, "=");
            snprintf(err, errlen, "unknown flag %.*s (see --help)", nl, a);
            return -1;
        }
        int take = 1;
        if (g.value == NULL && kind(g.f) == UTIL_FLAG_BOOL)
            g.value = "1";
        if (g.value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value (%s)", g.f->name, g.f->arg);
                return -1;
            }
            g.value = argv[i + 1];
            take = 2;
        }
        snprintf(name, sizeof(name), "--%s", g.f->name);
        if (set_value(g.f, g.value, name, err, errlen) < 0)
            return -1;
        move_before(argv, out, i, take);
        out += take;
        i += take;
    }
    const char *check = getenv("TCPOPS_CHECK_FLAGS");
    if (check != NULL && strcmp(check, "1") == 0) {
        if (out < argc) {
            snprintf(err, errlen, "unexpected argument \"%s\"", argv[out]);
            return -1;
        }
        return 0;
    }
    return out;
}

int util_flags_parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                     char *err, size_t errlen)
{
    return parse(flags, n, argc, argv, first, 0, err, errlen);
}

int util_flags_parse_command(const util_flag *flags, size_t n, int argc, char **argv, int first,
                             char *err, size_t errlen)
{
    return parse(flags, n, argc, argv, first, 1, err, errlen);
}

void util_flags_usage(FILE *out, const util_flag *flags, size_t n)
{
    char env[96], env2[96], left[96];
    for (size_t i = 0; i < n; i++) {
        const util_flag *f = &flags[i];
        snprintf(left, sizeof(left), "--%s%s%s%s", kind(f) == UTIL_FLAG_BOOL ? "[no-]" : "",
                 f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        fprintf(out, "  %-26s %s", left, f->help);
        switch (kind(f)) {
        case UTIL_FLAG_STR:
        case UTIL_FLAG_CHOICE:
            if (*(const char **)f->dest != NULL)
                fprintf(out, " (default %s)", *(const char **)f->dest);
            break;
        case UTIL_FLAG_INT:
            /* A value outside the range on entry means "not given": the
             * help then says what applies instead. */
            if (*(long *)f->dest < f->min || *(long *)f->dest > f->max)
                fprintf(out, " (%ld-%ld)", f->min, f->max);
            else
                fprintf(out, " (default %ld; %ld-%ld)", *(long *)f->dest, f->min, f->max);
            break;
        case UTIL_FLAG_SIZE:
            fprintf(out, " (default %ld; k/M/G allowed)", *(long *)f->dest);
            break;
        case UTIL_FLAG_BOOL:
            fprintf(out, " (default %s)", *(const int *)f->dest ? "true" : "false");
            break;
        }
        env_name(env_prefix, f->name, env, sizeof(env));
        env_name(unscoped, f->name, env2, sizeof(env2));
        fprintf(out, "\n  %-26s env %s%s%s\n", "", env, reads_unscoped(f) ? ", else " : "",
                reads_unscoped(f) ? env2 : "");
    }
}
