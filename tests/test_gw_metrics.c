/* The gateway's metrics modules without a server: the histogram's
 * buckets and text, label escaping, and /proc/PID/stat parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/metrics.h"
#include "gateway/process.h"

static void expect_line(const char *text, const char *line)
{
    if (strstr(text, line) == NULL)
        fail_msg("expected the line %s in:\n%s", line, text);
}

static void test_hist_buckets_are_cumulative(void **state)
{
    (void)state;
    gw_hist h;
    memset(&h, 0, sizeof(h));
    gw_hist_observe(&h, 40);      /* <= 50 us */
    gw_hist_observe(&h, 50);      /* the bound itself is in its bucket */
    gw_hist_observe(&h, 300);     /* <= 500 us */
    gw_hist_observe(&h, 9000000); /* past 2.5 s: +Inf only */
    assert_int_equal(gw_hist_count(&h), 4);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(gw_hist_render(&h, "x_seconds", "a=\"b\"", &buf, &len, &cap), 0);
    expect_line(buf, "x_seconds_bucket{a=\"b\",le=\"5e-05\"} 2\n");
    expect_line(buf, "x_seconds_bucket{a=\"b\",le=\"0.00025\"} 2\n");
    expect_line(buf, "x_seconds_bucket{a=\"b\",le=\"0.0005\"} 3\n");
    expect_line(buf, "x_seconds_bucket{a=\"b\",le=\"2.5\"} 3\n");
    expect_line(buf, "x_seconds_bucket{a=\"b\",le=\"+Inf\"} 4\n");
    expect_line(buf, "x_seconds_sum{a=\"b\"} 9.000390\n");
    expect_line(buf, "x_seconds_count{a=\"b\"} 4\n");
    free(buf);
}

static void test_rpc_methods(void **state)
{
    (void)state;
    assert_string_equal(gw_rpc_method_name(gw_rpc_method_index("people.PetIds")),
                        "people.PetIds");
    assert_string_equal(gw_rpc_method_name(gw_rpc_method_index("svc.Status")), "other");
    assert_string_equal(gw_rpc_method_name(gw_rpc_method_index("people.Nope")), "other");
    assert_string_equal(gw_rpc_method_name(gw_rpc_method_index(NULL)), "other");
}

static void test_label_escape(void **state)
{
    (void)state;
    char out[16];
    assert_string_equal(gw_label_escape(out, sizeof(out), "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    /* cut short, never mid-escape, never past out */
    assert_string_equal(gw_label_escape(out, 6, "ab\"cd"), "ab\\\"");
    assert_string_equal(gw_label_escape(out, sizeof(out), "127.0.0.1:5002"), "127.0.0.1:5002");
}

static void test_proc_stat(void **state)
{
    (void)state;
    /* The command name may hold spaces and parentheses. */
    const char *stat = "4242 (tcp ops) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
                       "250 50 0 0 20 0 9 0 123456 1048576 300 18446744073709551615 1 1 0 0 "
                       "0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
    gw_process_stat st;
    assert_int_equal(gw_process_parse_stat(stat, strlen(stat), 100, &st), 0);
    assert_true(st.cpu_seconds > 2.99 && st.cpu_seconds < 3.01);
    assert_int_equal(st.start_ticks, 123456);
    assert_int_equal(st.vsize_bytes, 1048576);
    assert_int_equal(st.rss_pages, 300);
    const char *cut = "4242 (x) S 1 2 3";
    assert_int_equal(gw_process_parse_stat(cut, strlen(cut), 100, &st), -EINVAL);
    assert_int_equal(gw_process_parse_stat("no paren", 8, 100, &st), -EINVAL);
}

/* btime after 256 CPUs' lines and a long intr line (far past 8 KiB), as on
 * a host with many cores; none at all is -1. */
static void test_boot_time(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *w = open_memstream(&text, &len);
    assert_non_null(w);
    fprintf(w, "cpu  1 2 3 4 5 6 7 8 9 10\n");
    for (int i = 0; i < 256; i++)
        fprintf(w, "cpu%d 123456 0 234567 34567890 1234 0 5678 0 0 0\n", i);
    fprintf(w, "intr 123456789");
    for (int i = 0; i < 2000; i++)
        fprintf(w, " %d", i);
    fprintf(w, "\nctxt 987654321\nbtime 1764288000\nprocesses 4242\n");
    fclose(w);
    assert_true(len > 16384);
    FILE *r = fmemopen(text, len, "r");
    assert_non_null(r);
    assert_int_equal(gw_process_boot_time(r), 1764288000LL);
    fclose(r);
    r = fmemopen(text, 200, "r"); /* cut before btime */
    assert_non_null(r);
    assert_int_equal(gw_process_boot_time(r), -1);
    fclose(r);
    free(text);
}

static void test_process_render(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(gw_process_render(&buf, &len, &cap), 0);
    static const char *const names[] = {
        "\nprocess_cpu_seconds_total ",   "\nprocess_resident_memory_bytes ",
        "\nprocess_virtual_memory_bytes ", "\nprocess_start_time_seconds ",
        "\nprocess_open_fds ",            "\nprocess_max_fds ",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        expect_line(buf, names[i]);
    assert_true(atof(strstr(buf, "\nprocess_open_fds ") + 18) >= 1); /* stdout at least */
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets_are_cumulative),
        cmocka_unit_test(test_rpc_methods),
        cmocka_unit_test(test_label_escape),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_boot_time),
        cmocka_unit_test(test_process_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
