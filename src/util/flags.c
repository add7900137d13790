#include "util/flags.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void env_name(const char *flag, char *out, size_t len)
{
    size_t o = snprintf(out, len, "TCPOPS_");
    for (const char *p = flag; *p && o + 1 < len; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
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
    switch (f->type) {
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
        if (util_parse_num(value, f->type == UTIL_FLAG_SIZE ? UTIL_NUM_SIZE : UTIL_NUM_PLAIN,
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

int util_flags_parse(const util_flag *flags, size_t n, int argc, char **argv, int first,
                     char *err, size_t errlen)
{
    char name[96];
    for (size_t i = 0; i < n; i++) {
        env_name(flags[i].name, name, sizeof(name));
        const char *v = getenv(name);
        if (v != NULL && set_value(&flags[i], v, name, err, errlen) < 0)
            return -1;
    }
    int i = first;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return i + 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 0; /* -h before the test below: it has one dash */
        if (strcmp(a, "--version") == 0) {
            /* As argp and every GNU program do: the line, then exit 0. */
            printf("%s %s\n", program_invocation_short_name, util_version());
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            break;
        const char *eq = strchr(a, '=');
        size_t nl = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        const util_flag *f = NULL;
        for (size_t k = 0; k < n; k++)
            if (strlen(flags[k].name) == nl && strncmp(flags[k].name, a + 2, nl) == 0)
                f = &flags[k];
        if (f == NULL) {
            snprintf(err, errlen, "unknown flag %.*s (see --help)", (int)(nl + 2), a);
            return -1;
        }
        const char *value = eq != NULL ? eq + 1 : NULL;
        if (value == NULL && f->type == UTIL_FLAG_BOOL)
            value = "1";
        if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value (%s)", f->name, f->arg);
                return -1;
            }
            value = argv[++i];
        }
        snprintf(name, sizeof(name), "--%s", f->name);
        if (set_value(f, value, name, err, errlen) < 0)
            return -1;
    }
    const char *check = getenv("TCPOPS_CHECK_FLAGS");
    if (check != NULL && strcmp(check, "1") == 0) {
        if (i < argc) {
            snprintf(err, errlen, "unexpected argument \"%s\"", argv[i]);
            return -1;
        }
        return 0;
    }
    return i;
}

void util_flags_usage(FILE *out, const util_flag *flags, size_t n)
{
    char env[96], left[96];
    for (size_t i = 0; i < n; i++) {
        const util_flag *f = &flags[i];
        env_name(f->name, env, sizeof(env));
        snprintf(left, sizeof(left), "--%s%s%s", f->name, f->arg ? " " : "",
                 f->arg ? f->arg : "");
        fprintf(out, "  %-26s %s", left, f->help);
        switch (f->type) {
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
        fprintf(out, "\n  %-26s env %s\n", "", env);
    }
}
