/* The man pages (man/PROGRAM.1.scd) and --help cannot drift apart: every
 * flag and environment variable a program's --help prints (and each of its
 * commands' --help) is in its page, and every flag and variable the page
 * documents as an option is one --help still prints. A failure names the
 * page, the flag and the --help it came from. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proc.h"

/* The --help runs whose flags a page must document: the program's
 * arguments before --help, NULL-terminated. */
typedef struct page {
    const char *program;
    const char *const runs[8][3];
} page;

static const page pages[] = {
    {"tcpops", {{NULL}, {"up"}, {"ps"}, {"scale"}, {"restart"}, {"down"}, {"metrics"}, {"logs"}}},
    {"tcpops-gateway", {{NULL}}},
    {"tcpops-people", {{NULL}}},
    {"tcpops-pets", {{NULL}}},
    {"tcpops-cli", {{NULL}, {"status"}, {"ping"}, {"people"}, {"pets"}}},
};
#define NRUNS 8

/* Whether c may continue a flag or variable name. */
static int name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* Whether text holds word whole (not as the start of a longer name). */
static int has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p != NULL; p = strstr(p + 1, word))
        if ((p == text || !name_char(p[-1])) && !name_char(p[n]))
            return 1;
    return 0;
}

/* Calls fn(word, arg) for each flag (--x, lower case: --FLAG is a
 * placeholder; --[no-]x is --x and --no-x) and TCPOPS_ variable in text. */
static void each_name(const char *text, void (*fn)(const char *, void *), void *arg)
{
    for (const char *p = text; *p != '\0'; p++) {
        /* --[no-]NAME, a true/false flag's two forms. */
        if (strncmp(p, "--[no-]", 7) == 0 && islower((unsigned char)p[7])) {
            char word[128];
            size_t n = 0;
            while (name_char(p[7 + n]) && n + 6 < sizeof(word))
                n++;
            snprintf(word, sizeof(word), "--%.*s", (int)n, p + 7);
            fn(word, arg);
            snprintf(word, sizeof(word), "--no-%.*s", (int)n, p + 7);
            fn(word, arg);
            p += 7 + n - 1;
            continue;
        }
        int flag = p[0] == '-' && p[1] == '-' &&
                   (islower((unsigned char)p[2]) || isdigit((unsigned char)p[2]));
        int env = strncmp(p, "TCPOPS_", 7) == 0;
        if ((!flag && !env) || (p > text && name_char(p[-1])))
            continue;
        char word[128];
        size_t n = 0;
        while (name_char(p[n]) && n + 1 < sizeof(word))
            n++;
        memcpy(word, p, n);
        word[n] = '\0';
        /* "--tls-*" and "TCPOPS_<FLAG>" name families, not one name. */
        if (word[n - 1] != '-' && word[n - 1] != '_')
            fn(word, arg);
        p += n - 1;
    }
}

static char *read_source(const char *program)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/man/%s.1.scd", TCPOPS_SOURCE_DIR, program);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("expected the man page source %s; it is missing", path);
    static char buf[256 * 1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* What a page's check collects: the --help texts, and what is missing. */
typedef struct check {
    const char *program, *from, *text;
    char names[16 * 1024];   /* every name the --help runs print, "\nNAME\n" */
    char missing[8192];
} check;

static void missing(check *c, const char *fmt, ...)
{
    size_t len = strlen(c->missing);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->missing + len, sizeof(c->missing) - len, fmt, ap);
    va_end(ap);
}

static void in_page(const char *word, void *arg)
{
    check *c = arg;
    if (!has_word(c->text, word))
        missing(c, "  man/%s.1.scd does not mention %s, which `%s --help` prints: add it "
                   "under OPTIONS (or ENVIRONMENT)\n", c->program, word, c->from);
}

static void add_name(const char *word, void *arg)
{
    check *c = arg;
    size_t len = strlen(c->names);
    snprintf(c->names + len, sizeof(c->names) - len, "%s%s\n", len ? "" : "\n", word);
}

static void in_help(const char *word, void *arg)
{
    check *c = arg;
    char line[160];
    snprintf(line, sizeof(line), "\n%s\n", word);
    if (strcmp(word, "--help") != 0 && strcmp(word, "--version") != 0 &&
        strstr(c->names, line) == NULL)
        missing(c, "  man/%s.1.scd documents %s, which no --help of %s prints any more: "
                   "rename or remove it\n", c->program, word, c->program);
}

static void test_every_flag_in_its_page(void **state)
{
    (void)state;
    char all[16384] = "";
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        check *c = calloc(1, sizeof(*c));
        char *src = read_source(pages[i].program);
        c->program = pages[i].program;
        c->text = src;
        for (int r = 0; r < NRUNS && (r == 0 || pages[i].runs[r][0] != NULL); r++) {
            char bin[512], out[32768], err[4096], from[128];
            char *argv[6] = {(char *)proc_bin(pages[i].program, bin, sizeof(bin))};
            int n = 1;
            snprintf(from, sizeof(from), "%s", pages[i].program);
            for (int k = 0; pages[i].runs[r][k] != NULL; k++) {
                argv[n++] = (char *)pages[i].runs[r][k];
                snprintf(from + strlen(from), sizeof(from) - strlen(from), " %s",
                         pages[i].runs[r][k]);
            }
            argv[n++] = "--help";
            argv[n] = NULL;
            int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
            if (code != 0)
                fail_msg("%s --help: expected exit 0, got %d: %s", from, code, err);
            c->from = from;
            each_name(out, in_page, c);
            each_name(out, add_name, c);
        }
        /* What the page documents as an option: its "*--flag*" headings and
         * "Environment: *TCPOPS_X*" lines. */
        for (const char *line = src; line != NULL && *line != '\0';) {
            const char *end = strchr(line, '\n');
            size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
            char one[512];
            snprintf(one, sizeof(one), "%.*s", (int)len, line);
            const char *env = strstr(one, "Environment: *TCPOPS_");
            if (strncmp(one, "*--", 3) == 0)
                each_name(one, in_help, c);
            else if (env != NULL)
                each_name(env, in_help, c);
            line = end != NULL ? end + 1 : NULL;
        }
        snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s", c->missing);
        free(src);
        free(c);
    }
    /* The list in full (cmocka cuts a long failure message short). */
    if (all[0] != '\0') {
        print_message("the man pages and --help disagree:\n%s", all);
        fail_msg("the man pages and --help disagree (the list is above)");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_flag_in_its_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
