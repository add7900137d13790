/* `tcpops metrics`' text from a ps answer made by hand: every family, a
 * worker with no process left out of what it has none of, and no master. */
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

static void expect_line(const char *text, const char *line, int want)
{
    if ((strstr(text, line) != NULL) != want)
        fail_msg("expected the line %s %s in:\n%s", line, want ? "" : "to be absent", text);
}

static void test_workers(void **state)
{
    (void)state;
    json_error_t je;
    json_t *ps = json_loads(
        "{\"ok\":true,\"workers\":["
        "{\"app\":\"people\",\"worker\":1,\"pid\":41,\"state\":\"running\",\"uptime_ms\":2500,"
        "\"restarts\":0,\"rss_bytes\":8388608,\"last_exit\":null},"
        "{\"app\":\"people\",\"worker\":2,\"pid\":null,\"state\":\"crash-looping\","
        "\"uptime_ms\":null,\"restarts\":7,\"rss_bytes\":null,\"last_exit\":1},"
        "{\"app\":\"pets\",\"worker\":1,\"pid\":43,\"state\":\"replaced\",\"uptime_ms\":10,"
        "\"restarts\":1,\"rss_bytes\":null,\"last_exit\":137}]}",
        0, &je);
    assert_non_null(ps);
    char *t = text_of(ps);
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
    expect_line(t, "tcpops_worker_resident_memory_bytes{app=\"people\",worker=\"1\"} 8388608\n",
                1);
    expect_line(t, "tcpops_worker_resident_memory_bytes{app=\"people\",worker=\"2\"}", 0);
    expect_line(t, "tcpops_worker_uptime_seconds{app=\"people\",worker=\"1\"} 2.5\n", 1);
    expect_line(t, "tcpops_worker_uptime_seconds{app=\"people\",worker=\"2\"}", 0);
    free(t);
    json_decref(ps);
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
        cmocka_unit_test(test_no_master),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
