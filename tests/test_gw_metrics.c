/* The gateway's metrics modules without a server: the histogram's
 * buckets and text, label escaping, the shared text (made by one caller,
 * served to all), and /proc/PID/stat parsing. */
#include <errno.h>
#include <pthread.h>
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

/* A fill that counts its runs and, while hold is set, waits for it to
 * clear once it has said it runs. */
typedef struct filler {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fills;
    int hold;
    int running;
} filler;

static int fill_counted(void *user, int deadline_ms, char **buf, size_t *len, size_t *cap)
{
    filler *f = user;
    (void)deadline_ms;
    pthread_mutex_lock(&f->lock);
    int n = ++f->fills;
    f->running = 1;
    pthread_cond_broadcast(&f->cond);
    while (f->hold)
        pthread_cond_wait(&f->cond, &f->lock);
    f->running = 0;
    pthread_mutex_unlock(&f->lock);
    return gw_buf_printf(buf, len, cap, "made %d\n", n);
}

typedef struct sharer {
    gw_metrics *m;
    filler *f;
    int max_age_ms;
    char *text;
} sharer;

static void *share(void *arg)
{
    sharer *s = arg;
    size_t len = 0, cap = 0;
    assert_int_equal(gw_metrics_render_shared(s->m, s->max_age_ms, 60000, fill_counted, s->f,
                                              &s->text, &len, &cap),
                     0);
    return NULL;
}

/* Many callers at once, the text fresh for a minute: one fill between
 * them, its text for each. */
static void test_shared_text_made_once(void **state)
{
    (void)state;
    enum { N = 16 };
    gw_metrics *m = NULL;
    filler f = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    sharer s[N];
    pthread_t th[N];
    assert_int_equal(gw_metrics_new(&m), 0);
    for (int i = 0; i < N; i++) {
        s[i] = (sharer){.m = m, .f = &f, .max_age_ms = 60000};
        assert_int_equal(pthread_create(&th[i], NULL, share, &s[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_non_null(s[i].text);
        assert_string_equal(s[i].text, "made 1\n");
        free(s[i].text);
    }
    if (f.fills != 1)
        fail_msg("%d callers at once: expected 1 fill, got %d", N, f.fills);
    gw_metrics_free(m);
}

/* While one caller fills, another whose deadline passes first takes the
 * last text made, stale as it is; and the first's text is then shared. */
static void test_shared_text_past_deadline(void **state)
{
    (void)state;
    gw_metrics *m = NULL;
    filler f = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(gw_metrics_new(&m), 0);
    assert_int_equal(gw_metrics_render_shared(m, 0, 1000, fill_counted, &f, &buf, &len, &cap),
                     0);
    assert_string_equal(buf, "made 1\n");

    f.hold = 1;
    sharer slow = {.m = m, .f = &f, .max_age_ms = 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, share, &slow), 0);
    pthread_mutex_lock(&f.lock);
    while (!f.running)
        pthread_cond_wait(&f.cond, &f.lock);
    pthread_mutex_unlock(&f.lock);
    len = 0;
    assert_int_equal(gw_metrics_render_shared(m, 0, 1, fill_counted, &f, &buf, &len, &cap), 0);
    assert_string_equal(buf, "made 1\n");

    pthread_mutex_lock(&f.lock);
    f.hold = 0;
    pthread_cond_broadcast(&f.cond);
    pthread_mutex_unlock(&f.lock);
    pthread_join(th, NULL);
    assert_string_equal(slow.text, "made 2\n");
    assert_int_equal(f.fills, 2);
    free(slow.text);
    free(buf);
    gw_metrics_free(m);
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
        cmocka_unit_test(test_shared_text_made_once),
        cmocka_unit_test(test_shared_text_past_deadline),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_boot_time),
        cmocka_unit_test(test_process_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
