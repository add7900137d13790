/* `tcpops metrics`' text from a ps answer made by hand: every family, a
 * worker with no process left out of what it has none of, a rolling
 * restart's two processes of one worker as one series each (what
 * node_exporter's textfile collector requires; promtool does not check it),
 * and no master. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "supervisor/metrics.h"
#include "util/flags.h"

/* sup_metrics_write(ps) as a string (malloc'd). */
static char *text_of(const json_t *ps)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(sup_metrics_write(f, ps), 0);
    fclose(f);
    return buf;
}

/* The text of a ps answer given as JSON (malloc'd). */
static char *text_of_json(const char *json)
{
    json_error_t je;
    json_t *ps = json_loads(json, 0, &je);
    if (ps == NULL)
        fail_msg("the test's ps JSON: %s", je.text);
    char *t = text_of(ps);
    json_decref(ps);
    return t;
}

static void expect_line(const char *text, const char *line, int want)
{
    if ((strstr(text, line) != NULL) != want)
        fail_msg("expected the line %s %s in:\n%s", line, want ? "" : "to be absent", text);
}

/* Fails when two samples of text have one name and label set. */
static void expect_unique(const char *text)
{
    const char *line = text;
    while (*line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t n = eol != NULL ? (size_t)(eol - line) : strlen(line);
        const char *space = memchr(line, ' ', n);
        if (line[0] != '#' && space != NULL) {
            /* The series (up to its value) seen again at a line's start. */
            size_t key = (size_t)(space - line) + 1;
            for (const char *p = eol; p != NULL && p[1] != '\0'; p = strchr(p + 1, '\n'))
                if (strncmp(p + 1, line, key) == 0)
                    fail_msg("expected each series once, got %.*s twice in:\n%s", (int)key - 1,
                             line, text);
        }
        line += n + (eol != NULL);
    }
}

static void test_workers(void **state)
{
    (void)state;
    char *t = text_of_json(
        "{\"ok\":true,\"workers\":["
        "{\"app\":\"people\",\"worker\":1,\"pid\":41,\"state\":\"running\",\"uptime_ms\":2500,"
        "\"restarts\":0,\"rss_bytes\":8388608,\"last_exit\":null},"
        "{\"app\":\"people\",\"worker\":2,\"pid\":null,\"state\":\"crash-looping\","
        "\"uptime_ms\":null,\"restarts\":7,\"rss_bytes\":null,\"last_exit\":1},"
        "{\"app\":\"pets\",\"worker\":1,\"pid\":43,\"state\":\"replaced\",\"uptime_ms\":10,"
        "\"restarts\":1,\"rss_bytes\":null,\"last_exit\":137}]}");
    char build[200];
    snprintf(build, sizeof(build), "tcpops_build_info{version=\"%s\",program=\"tcpops\"} 1\n",
             util_version());
    expect_line(t, build, 1);
    expect_line(t, "tcpops_supervisor_up 1\n", 1);
    expect_line(t, "# TYPE tcpops_worker_up gauge\n", 1);
    expect_line(t, "tcpops_worker_up{app=\"people\",worker=\"1\"} 1\n", 1);
    expect_line(t, "tcpops_worker_up{app=\"people\",worker=\"2\"} 0\n", 1);
    expect_line(t, "tcpops_worker_up{app=\"pets\",worker=\"1\"} 1\n", 1);
    expect_line(t, "tcpops_worker_state{app=\"people\",worker=\"2\",state=\"crash-looping\"} 1\n",
                1);
    expect_line(t, "# TYPE tcpops_worker_restarts_total counter\n", 1);
    expect_line(t, "tcpops_worker_restarts_total{app=\"people\",worker=\"2\"} 7\n", 1);
    expect_line(t,
                "tcpops_worker_resident_memory_bytes{app=\"people\",worker=\"1\",pid=\"41\"} "
                "8388608\n",
                1);
    expect_line(t, "tcpops_worker_resident_memory_bytes{app=\"people\",worker=\"2\"", 0);
    expect_line(t, "tcpops_worker_uptime_seconds{app=\"people\",worker=\"1\",pid=\"41\"} 2.5\n",
                1);
    expect_line(t, "tcpops_worker_uptime_seconds{app=\"people\",worker=\"2\"}", 0);
    expect_unique(t);
    free(t);
}

/* A rolling restart of pets.1: the old process drains as "replaced" while
 * its replacement starts, both rows {app="pets",worker="1"}; pets.2 rolled
 * with both in one state. One sample per series: the worker's up, state
 * and restarts once (the largest, so restarts_total does not drop while
 * the roll runs), each process's memory and uptime by pid. */
static void test_rolling_restart(void **state)
{
    (void)state;
    char *t = text_of_json(
        "{\"ok\":true,\"workers\":["
        "{\"app\":\"pets\",\"worker\":1,\"pid\":50,\"state\":\"replaced\",\"uptime_ms\":9000,"
        "\"restarts\":3,\"rss_bytes\":4096,\"last_exit\":null},"
        "{\"app\":\"pets\",\"worker\":1,\"pid\":51,\"state\":\"starting\",\"uptime_ms\":200,"
        "\"restarts\":0,\"rss_bytes\":1024,\"last_exit\":null},"
        "{\"app\":\"pets\",\"worker\":2,\"pid\":60,\"state\":\"running\",\"uptime_ms\":1000,"
        "\"restarts\":0,\"rss_bytes\":2048,\"last_exit\":null},"
        "{\"app\":\"pets\",\"worker\":2,\"pid\":61,\"state\":\"running\",\"uptime_ms\":100,"
        "\"restarts\":0,\"rss_bytes\":null,\"last_exit\":null}]}");
    expect_unique(t);
    static const struct {
        const char *line;
        int want;
    } lines[] = {
        {"tcpops_worker_up{app=\"pets\",worker=\"1\"} 1\n", 1},
        {"tcpops_worker_state{app=\"pets\",worker=\"1\",state=\"replaced\"} 1\n", 1},
        {"tcpops_worker_state{app=\"pets\",worker=\"1\",state=\"starting\"} 1\n", 1},
        {"tcpops_worker_state{app=\"pets\",worker=\"2\",state=\"running\"} 2\n", 1},
        {"tcpops_worker_restarts_total{app=\"pets\",worker=\"1\"} 3\n", 1},
        {"tcpops_worker_resident_memory_bytes{app=\"pets\",worker=\"1\",pid=\"50\"} 4096\n", 1},
        {"tcpops_worker_resident_memory_bytes{app=\"pets\",worker=\"1\",pid=\"51\"} 1024\n", 1},
        {"tcpops_worker_resident_memory_bytes{app=\"pets\",worker=\"2\",pid=\"61\"}", 0},
        {"tcpops_worker_uptime_seconds{app=\"pets\",worker=\"1\",pid=\"50\"} 9\n", 1},
        {"tcpops_worker_uptime_seconds{app=\"pets\",worker=\"1\",pid=\"51\"} 0.2\n", 1},
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        expect_line(t, lines[i].line, lines[i].want);
    free(t);
}

static void test_no_master(void **state)
{
    (void)state;
    char *t = text_of(NULL);
    expect_line(t, "tcpops_supervisor_up 0\n", 1);
    expect_line(t, "tcpops_worker", 0);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_rolling_restart),
        cmocka_unit_test(test_no_master),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
