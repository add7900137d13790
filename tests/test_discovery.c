/* Gateway discovery with the real programs on free ports: a --people list
 * naming two people workers that keep separate stores (so each one's
 * svc.Status lists only itself), one by the name localhost; both carry
 * calls, and one that leaves is drained without a failed GET. Also: a bad
 * list is exit 2 with the reason, from the flag or the environment. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_client.h"
#include "proc.h"

typedef struct fixture {
    char dir[3][256];
    proc people[2], pets, gw;
    int people_port[2], pets_port, gw_port;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    for (int i = 0; i < 3; i++)
        assert_int_equal(make_temp_dir(fx->dir[i], sizeof(fx->dir[i])), 0);
    fx->people_port[0] = free_port();
    fx->people_port[1] = free_port();
    fx->pets_port = free_port();
    fx->gw_port = free_port();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop(&fx->gw);
    proc_stop(&fx->people[0]);
    proc_stop(&fx->people[1]);
    proc_stop(&fx->pets);
    for (int i = 0; i < 3; i++)
        rm_rf(fx->dir[i]);
    free(fx);
    return 0;
}

static void start_gateway(fixture *fx, const char *people)
{
    char bin[512], listen[64], pets[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", fx->gw_port);
    snprintf(pets, sizeof(pets), "127.0.0.1:%d", fx->pets_port);
    char *argv[] = {(char *)proc_bin("tcpops-gateway", bin, sizeof(bin)), "--listen", listen,
                    "--people", (char *)people, "--pets", pets, "--resolve-ms", "500",
                    "--access-log=false", "--threads=16", NULL};
    assert_int_equal(proc_start(&fx->gw, argv, 0), 0);
    assert_int_equal(wait_port(fx->gw_port, 10000), 0);
}

/* Waits until /metrics says the gateway knows n people members. */
static void wait_members(fixture *fx, int n)
{
    char want[80];
    snprintf(want, sizeof(want), "tcpops_rpc_members{service=\"people\"} %d\n", n);
    int ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        http_resp r;
        if (http_once(fx->gw_port, "GET", "/metrics", NULL, NULL, &r) == 0) {
            ok = strstr(r.body, want) != NULL;
            http_resp_free(&r);
        }
        if (!ok)
            usleep(10 * 1000);
    }
    if (!ok)
        fail_msg("expected the gateway to know %d people members within 10 s", n);
}

/* The calls a worker's own svc.Status counts, asked at its port. */
static long worker_calls(int port)
{
    char bin[512], addr[64], out[8192], err[1024];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    char *argv[] = {(char *)proc_bin("tcpops-cli", bin, sizeof(bin)), "--addr", addr, "status",
                    NULL};
    if (proc_run(argv, out, sizeof(out), err, sizeof(err), 5000) != 0)
        fail_msg("tcpops-cli --addr %s status: %s", addr, err);
    const char *calls = strstr(out, "\"calls\":");
    if (calls == NULL)
        fail_msg("tcpops-cli --addr %s status: no calls in %s", addr, out);
    return atol(calls + 8);
}

/* GETs on one keep-alive connection until stop; counts answers and failures. */
typedef struct loader {
    int port;
    atomic_int stop;
    atomic_int done;
    atomic_int failed;
    int last_status;
    char last_body[256];
} loader;

static void *load(void *arg)
{
    loader *l = arg;
    http_conn c = {.fd = -1, .port = l->port};
    while (!atomic_load(&l->stop)) {
        http_resp r;
        int rc = http_do(&c, "GET", "/people/pets?owner=bob", NULL, NULL, 0, &r, 5000);
        if (rc < 0 || r.status != 200 || strcmp(r.body, "[\"bixa\",\"rex\"]") != 0) {
            l->last_status = rc < 0 ? -1 : r.status;
            snprintf(l->last_body, sizeof(l->last_body), "%s", rc < 0 ? "(no answer)" : r.body);
            atomic_fetch_add(&l->failed, 1);
        }
        if (rc == 0)
            http_resp_free(&r);
        atomic_fetch_add(&l->done, 1);
    }
    http_close(&c);
    return NULL;
}

static void wait_done(loader *l, size_t n, int at_least)
{
    for (int i = 0; i < 2000; i++) {
        int all = 1;
        for (size_t k = 0; k < n; k++)
            all &= atomic_load(&l[k].done) >= at_least;
        if (all)
            return;
        usleep(10 * 1000);
    }
    fail_msg("expected %d GETs from each client within 20 s", at_least);
}

/* Two people workers with stores of their own, pets, and a gateway with
 * --people localhost:P1,127.0.0.1:P2 that knows both as members. */
static void start_all(fixture *fx)
{
    for (int i = 0; i < 2; i++)
        assert_int_equal(proc_start_service(&fx->people[i], "tcpops-people", fx->people_port[i],
                                            fx->dir[i], NULL), 0);
    assert_int_equal(proc_start_service(&fx->pets, "tcpops-pets", fx->pets_port, fx->dir[2],
                                        NULL), 0);
    char people[128];
    snprintf(people, sizeof(people), "localhost:%d,127.0.0.1:%d", fx->people_port[0],
             fx->people_port[1]);
    start_gateway(fx, people);
    /* Each worker lists only itself: two members means both were asked. */
    wait_members(fx, 2);
}

static void start_load(fixture *fx, loader *l, pthread_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        memset(&l[i], 0, sizeof(l[i]));
        l[i].port = fx->gw_port;
        assert_int_equal(pthread_create(&t[i], NULL, load, &l[i]), 0);
    }
}

/* Stops the clients; each must have had every GET answered 200. */
static void stop_load(loader *l, pthread_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_store(&l[i].stop, 1);
        pthread_join(t[i], NULL);
    }
    for (int i = 0; i < n; i++)
        if (atomic_load(&l[i].failed) != 0)
            fail_msg("client %d: expected 0 failed GETs of %d, got %d (last: %d %s)", i,
                     atomic_load(&l[i].done), atomic_load(&l[i].failed), l[i].last_status,
                     l[i].last_body);
}

static void test_list_of_two_both_serve_one_drains(void **state)
{
    fixture *fx = *state;
    start_all(fx);
    long before[2] = {worker_calls(fx->people_port[0]), worker_calls(fx->people_port[1])};
    loader l[2];
    pthread_t t[2];
    start_load(fx, l, t, 2);
    wait_done(l, 2, 100);
    for (int i = 0; i < 2; i++) {
        long served = worker_calls(fx->people_port[i]) - before[i];
        if (served < 20)
            fail_msg("expected people worker %d (port %d) to serve 20+ of 200 GETs' calls, got %ld",
                     i, fx->people_port[i], served);
    }

    /* The first leaves (SIGTERM: GOAWAY, drain, exit 0) under load. */
    int base = atomic_load(&l[0].done);
    proc_signal(&fx->people[0], SIGTERM);
    int code = proc_wait(&fx->people[0], 15000);
    if (code != 0)
        fail_msg("the leaving worker: expected exit 0, got %d", code);
    wait_done(l, 2, base + 100);
    wait_members(fx, 1);
    wait_done(l, 2, atomic_load(&l[0].done) + 20);
    stop_load(l, t, 2);
}

/* A worker killed outright (its host gone): its member stays listed for the
 * grace of its silent bootstrap endpoint, yet no GET fails and the other
 * worker takes them all. */
static void test_one_killed_no_get_fails(void **state)
{
    fixture *fx = *state;
    start_all(fx);
    loader l[2];
    pthread_t t[2];
    start_load(fx, l, t, 2);
    wait_done(l, 2, 50);
    int base = atomic_load(&l[0].done);
    proc_signal(&fx->people[1], SIGKILL);
    assert_int_equal(proc_wait(&fx->people[1], 10000), 128 + SIGKILL);
    wait_done(l, 2, base + 50);
    wait_members(fx, 1);
    wait_done(l, 2, atomic_load(&l[0].done) + 20);
    stop_load(l, t, 2);
}

static void test_bad_lists_exit_2_with_the_reason(void **state)
{
    (void)state;
    char bin[512], out[4096], err[4096];
    const char *gw = proc_bin("tcpops-gateway", bin, sizeof(bin));
    const struct {
        const char *flag, *list, *why;
    } bad[] = {
        {"--people", "localhost:5002,localhost:5002", "--people: localhost:5002 is listed twice"},
        {"--pets", "127.0.0.1:5003,", "--pets: \"127.0.0.1:5003,\": an empty entry"},
        {"--people", "people.test:http", "the port must be 1-65535"},
        {"--pets", "[::1]:5003", "IPv6 addresses are not supported"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {(char *)gw, "--listen", "127.0.0.1:0", (char *)bad[i].flag,
                        (char *)bad[i].list, NULL};
        int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
        if (code != 2 || strstr(err, bad[i].why) == NULL)
            fail_msg("%s %s: expected exit 2 saying \"%s\", got %d: %s", bad[i].flag,
                     bad[i].list, bad[i].why, code, err);
    }
    /* The environment is read as the flag is. */
    setenv("TCPOPS_GATEWAY_PEOPLE", "a:1,,b:2", 1);
    char *argv[] = {(char *)gw, "--listen", "127.0.0.1:0", NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 10000);
    unsetenv("TCPOPS_GATEWAY_PEOPLE");
    if (code != 2 || strstr(err, "--people: \"a:1,,b:2\": an empty entry") == NULL)
        fail_msg("TCPOPS_GATEWAY_PEOPLE=a:1,,b:2: expected exit 2 naming the empty entry, "
                 "got %d: %s", code, err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_of_two_both_serve_one_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_killed_no_get_fails, setup, teardown),
        cmocka_unit_test(test_bad_lists_exit_2_with_the_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
