#include "flags.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void env_name(const char *flag, char *out, size_t len)
{
    size_t o = snprintf(out, len, "TCPOPS_");
    for (const char *p = flag; *p && o + 1 < len; p++)
        out[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[o] = '\0';
}

int util_parse_size(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024L * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024L * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'b' || *end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = v * mult;
    return 0;
}

static int set_value(const util_flag *f, const char *value, const char *source, char *err,
                     size_t errlen)
{
    switch (f->type) {
    case UTIL_FLAG_STR:
        *(const char **)f->dest = value;
        return 0;
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
    case UTIL_FLAG_INT: {
        long v;
        if (util_parse_size(value, &v) < 0 || v < f->min || v > f->max) {
            snprintf(err, errlen, "%s: \"%s\" must be a number from %ld to %ld", source,
                     value, f->min, f->max);
            return -1;
        }
        *(long *)f->dest = v;
        return 0;
    }
    }
    return -1;
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
        if (strncmp(a, "--", 2) != 0)
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 0;
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
            if (*(const char **)f->dest != NULL)
                fprintf(out, " (default %s)", *(const char **)f->dest);
            break;
        case UTIL_FLAG_INT:
            fprintf(out, " (default %ld)", *(long *)f->dest);
            break;
        case UTIL_FLAG_BOOL:
            break;
        }
        fprintf(out, "\n  %-26s env %s\n", "", env);
    }
}
