/* The gateway's bootstrap lists (src/gateway/bootstrap.c): parsing, what a
 * changing or failing resolver does to the endpoint set; and a gw_backend
 * whose resolver the test answers (no real DNS), in front of a real RPC
 * server: endpoints that leave DNS drain their calls, new ones take calls,
 * and losing every connection makes it resolve again at once. */
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/backend.h"
#include "gateway/bootstrap.h"
#include "rpc/clock.h"
#include "tcpops.pb-c.h"
#include "testsvc.h"

/* ---- a resolver the test answers ---- */

#define FAKE_NAMES 4

typedef struct fake_dns {
    pthread_mutex_t lock;
    char name[FAKE_NAMES][64];
    char answer[FAKE_NAMES][128]; /* "a.b.c.d,a.b.c.d", or "!why" to fail with why */
    int asked[FAKE_NAMES];
} fake_dns;

static void fake_set(fake_dns *d, const char *name, const char *answer)
{
    pthread_mutex_lock(&d->lock);
    int i = 0;
    while (i < FAKE_NAMES - 1 && d->name[i][0] != '\0' && strcmp(d->name[i], name) != 0)
        i++;
    snprintf(d->name[i], sizeof(d->name[i]), "%s", name);
    snprintf(d->answer[i], sizeof(d->answer[i]), "%s", answer);
    pthread_mutex_unlock(&d->lock);
}

static int fake_asked(fake_dns *d, const char *name)
{
    pthread_mutex_lock(&d->lock);
    int n = 0;
    for (int i = 0; i < FAKE_NAMES; i++)
        if (strcmp(d->name[i], name) == 0)
            n = d->asked[i];
    pthread_mutex_unlock(&d->lock);
    return n;
}

static int fake_resolve(void *user, const char *host, struct in_addr *out, size_t max, char *err,
                        size_t errlen)
{
    fake_dns *d = user;
    char answer[128] = "!no such name";
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < FAKE_NAMES; i++) {
        if (strcmp(d->name[i], host) == 0) {
            snprintf(answer, sizeof(answer), "%s", d->answer[i]);
            d->asked[i]++;
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (answer[0] == '!') {
        snprintf(err, errlen, "%s", answer + 1);
        return -1;
    }
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(answer, ",", &save); tok != NULL && (size_t)n < max;
         tok = strtok_r(NULL, ",", &save))
        if (inet_pton(AF_INET, tok, &out[n]) == 1)
            n++;
    return n;
}

/* The endpoint set of b now, joined by commas. */
static const char *endpoints(const gw_boot *b, char *buf, size_t len)
{
    char eps[GW_BOOT_ADDRS][GW_BOOT_ADDRLEN];
    size_t n = gw_boot_endpoints(b, eps, GW_BOOT_ADDRS);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", eps[i]);
    return buf;
}

/* ---- parsing ---- */

static void test_parse_lists(void **state)
{
    (void)state;
    gw_boot b;
    char err[512];
    assert_int_equal(gw_boot_parse(&b, "--people", "localhost:5002,10.1.2.3:6000,"
                                   "people.default.svc.cluster.local:5002,:5004", err,
                                   sizeof(err)), 0);
    assert_int_equal(b.n, 4);
    assert_string_equal(b.e[0].host, "localhost");
    assert_int_equal(b.e[0].port, 5002);
    assert_string_equal(b.e[1].host, "10.1.2.3");
    assert_int_equal(b.e[1].port, 6000);
    assert_string_equal(b.e[2].host, "people.default.svc.cluster.local");
    assert_string_equal(b.e[3].host, ""); /* 127.0.0.1, as everywhere in tcpops */
    assert_int_equal(b.e[3].port, 5004);
    /* The same host on two ports is two entries. */
    assert_int_equal(gw_boot_parse(&b, "--pets", "a:1,a:2,a:65535", err, sizeof(err)), 0);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.e[2].port, 65535);
}

static void test_parse_refuses_with_the_reason(void **state)
{
    (void)state;
    char long_host[300];
    memset(long_host, 'a', 254);
    strcpy(long_host + 254, ":1");
    char many[256] = "";
    for (int i = 0; i <= GW_BOOT_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh%d:1", i ? "," : "", i);
    const struct {
        const char *list, *why;
    } bad[] = {
        {"", "--people: no address given"},
        {"a:1,,b:2", "an empty entry"},
        {"a:1,", "an empty entry"},
        {",a:1", "an empty entry"},
        {"a", "\"a\" is not HOST:PORT"},
        {"a:", "the port must be 1-65535"},
        {"a:0", "the port must be 1-65535"},
        {"a:65536", "the port must be 1-65535"},
        {"a:99999999999999999999", "the port must be 1-65535"},
        {"a:+5", "the port must be 1-65535"},
        {"a: 5", "the port must be 1-65535"},
        {"a:5x", "the port must be 1-65535"},
        {"[::1]:5002", "IPv6 addresses are not supported"},
        {"::1:5002", "IPv6 addresses are not supported"},
        {"a b:1", "is not a host name or IPv4 address"},
        {"a/b:1", "is not a host name or IPv4 address"},
        {long_host, "longer than 253 bytes"},
        {"a:1,b:2,A:1", "--people: A:1 is listed twice"},
        {"x.test:7,x.test:7", "x.test:7 is listed twice"},
        {many, "more than 16 addresses"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_boot b;
        char err[512] = "";
        int rc = gw_boot_parse(&b, "--people", bad[i].list, err, sizeof(err));
        if (rc == 0 || strstr(err, bad[i].why) == NULL)
            fail_msg("\"%.60s\": expected refused with \"%s\", got rc %d \"%s\"", bad[i].list,
                     bad[i].why, rc, err);
    }
}

/* ---- resolution ---- */

static void test_names_become_sorted_unique_endpoints(void **state)
{
    (void)state;
    fake_dns d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    fake_set(&d, "localhost", "127.0.0.1");
    fake_set(&d, "127.0.0.1", "127.0.0.1");
    fake_set(&d, "svc.test", "10.0.0.9,10.0.0.2,10.0.0.10,10.0.0.2");
    gw_boot b;
    char err[512], buf[512];
    assert_int_equal(gw_boot_parse(&b, "--people", "svc.test:5002,localhost:5002,127.0.0.1:5002,"
                                   "127.0.0.1:6000", err, sizeof(err)), 0);
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 1);
    /* Numeric order, a repeated record and localhost = 127.0.0.1 counted once. */
    assert_string_equal(endpoints(&b, buf, sizeof(buf)), "10.0.0.2:5002,10.0.0.9:5002,"
                        "10.0.0.10:5002,127.0.0.1:5002,127.0.0.1:6000");
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.e[i].news, GW_BOOT_ANSWER);
    /* The same answer in another order is no change. */
    fake_set(&d, "svc.test", "10.0.0.10,10.0.0.2,10.0.0.9");
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 0);
    for (size_t i = 0; i < b.n; i++)
        assert_int_equal(b.e[i].news, 0);
    /* The real resolver answers a literal (and "") without a lookup. */
    struct in_addr a[2];
    assert_int_equal(gw_resolve_system(NULL, "192.0.2.7", a, 2, err, sizeof(err)), 1);
    assert_int_equal(ntohl(a[0].s_addr), 0xC0000207u);
    assert_int_equal(gw_resolve_system(NULL, "", a, 2, err, sizeof(err)), 1);
    assert_int_equal(ntohl(a[0].s_addr), 0x7F000001u);
}

static void test_failure_keeps_the_last_answer_news_once(void **state)
{
    (void)state;
    fake_dns d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    gw_boot b;
    char err[512], buf[512];
    assert_int_equal(gw_boot_parse(&b, "--pets", "pets.test:5003", err, sizeof(err)), 0);
    /* Not resolvable at start: no endpoint, one failure to tell. */
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 0);
    assert_int_equal(b.e[0].news, GW_BOOT_FAILED);
    assert_string_equal(b.e[0].error, "no such name");
    assert_string_equal(endpoints(&b, buf, sizeof(buf)), "");
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 0);
    assert_int_equal(b.e[0].news, 0); /* the same failure again: nothing new */

    fake_set(&d, "pets.test", "10.0.0.1,10.0.0.2");
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 1);
    assert_int_equal(b.e[0].news, GW_BOOT_ANSWER);
    assert_string_equal(b.e[0].error, "");

    const char *fails[] = {"!Temporary failure in name resolution",
                           "!Temporary failure in name resolution", "", "!Name not known"};
    const int news[] = {GW_BOOT_FAILED, 0, GW_BOOT_FAILED, GW_BOOT_FAILED};
    for (int i = 0; i < 4; i++) {
        fake_set(&d, "pets.test", fails[i]);
        assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 0);
        if (b.e[0].news != news[i])
            fail_msg("failure %d (%s): expected news %d, got %d", i, fails[i], news[i],
                     b.e[0].news);
        assert_string_equal(endpoints(&b, buf, sizeof(buf)), "10.0.0.1:5003,10.0.0.2:5003");
    }
    assert_string_equal(b.e[0].error, "Name not known");
    fake_set(&d, "pets.test", "10.0.0.2,10.0.0.1");
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 0);
    assert_int_equal(b.e[0].news, GW_BOOT_RECOVERED);
    fake_set(&d, "pets.test", "10.0.0.3");
    assert_int_equal(gw_boot_resolve(&b, fake_resolve, &d), 1);
    assert_int_equal(b.e[0].news, GW_BOOT_ANSWER);
    assert_string_equal(endpoints(&b, buf, sizeof(buf)), "10.0.0.3:5003");
}

static void test_diff_names_added_and_drained(void **state)
{
    (void)state;
    char old[3][GW_BOOT_ADDRLEN] = {"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"};
    char cur[3][GW_BOOT_ADDRLEN] = {"10.0.0.2:1", "10.0.0.4:1", "10.0.0.5:1"};
    char added[64], gone[64];
    assert_int_equal(gw_boot_diff(old, 3, cur, 3, added, gone, sizeof(added)), 1);
    assert_string_equal(added, "10.0.0.4:1,10.0.0.5:1");
    assert_string_equal(gone, "10.0.0.1:1,10.0.0.3:1");
    assert_int_equal(gw_boot_diff(old, 3, old, 3, added, gone, sizeof(added)), 0);
    assert_string_equal(added, "");
    assert_string_equal(gone, "");
    assert_int_equal(gw_boot_diff(old, 0, cur, 1, added, gone, sizeof(added)), 1);
    assert_string_equal(added, "10.0.0.2:1");
}

/* ---- a backend following its resolver ---- */

typedef struct slow_call {
    gw_backend *b;
    const char *ms;
    atomic_int done;
    int status;
    char error[256];
} slow_call;

static void *run_slow(void *arg)
{
    slow_call *s = arg;
    rpc_call c = {.method = "test.Sleep", .body = (const uint8_t *)s->ms,
                  .body_len = strlen(s->ms), .deadline_ms = 10000};
    s->status = gw_backend_call(s->b, &c);
    snprintf(s->error, sizeof(s->error), "%s", c.error);
    rpc_call_fini(&c);
    atomic_store(&s->done, 1);
    return NULL;
}

/* Whether /status of b lists exactly want as resolved and addr among its
 * endpoints (or not). */
static int shows(gw_backend *b, const char *want, const char *addr, int listed)
{
    int up = 0;
    json_t *st = gw_backend_status(b, 50, &up);
    char got[512] = "";
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(st, "resolved"), i, v)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "",
                 json_string_value(v));
    int found = 0;
    json_array_foreach(json_object_get(st, "endpoints"), i, v)
        found |= strcmp(json_string_value(json_object_get(v, "address")), addr) == 0;
    json_decref(st);
    return strcmp(got, want) == 0 && found == listed;
}

/* Calls in flight on b's endpoints now, as /status shows them. */
static int in_flight(gw_backend *b)
{
    int up = 0, n = 0;
    json_t *st = gw_backend_status(b, 1, &up);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(st, "endpoints"), i, v)
        n += (int)json_integer_value(json_object_get(v, "in_flight"));
    json_decref(st);
    return n;
}

static void wait_shows(gw_backend *b, const char *want, const char *addr, int listed)
{
    for (int i = 0; i < 1000 && !shows(b, want, addr, listed); i++)
        usleep(10 * 1000);
    if (!shows(b, want, addr, listed))
        fail_msg("expected resolved [%s] with %s %s the endpoints within 10 s", want, addr,
                 listed ? "among" : "not among");
}

static int call_once(gw_backend *b)
{
    rpc_call c = {.method = "test.Echo", .body = (const uint8_t *)"x", .body_len = 1,
                  .deadline_ms = 2000};
    int st = gw_backend_call(b, &c);
    rpc_call_fini(&c);
    return st;
}

/* A backend named name for list whose names d answers. */
static gw_backend *new_backend(const char *name, const char *list, int resolve_ms, fake_dns *d)
{
    gw_backend *b = NULL;
    gw_backend_cfg cfg = {.name = name, .bootstrap = list, .pool_size = 1,
                          .max_inflight = 16, .max_waiting = 16, .resolve_ms = resolve_ms,
                          .resolve = fake_resolve, .resolve_user = d};
    char err[512];
    if (gw_backend_new(&b, &cfg, err, sizeof(err)) < 0)
        fail_msg("gw_backend_new: %s", err);
    return b;
}

/* Waits up to 5 s for a call through b to be answered. */
static void wait_call_ok(gw_backend *b)
{
    int st = TCPOPS__STATUS__UNAVAILABLE;
    for (int i = 0; i < 500 && (st = call_once(b)) != TCPOPS__STATUS__OK; i++)
        usleep(10 * 1000);
    if (st != TCPOPS__STATUS__OK)
        fail_msg("expected a call answered OK within 5 s, last status %d", st);
}

static void test_backend_drains_what_leaves_dns(void **state)
{
    (void)state;
    char addr[64], err[RPC_ERRLEN], list[64], gone[64];
    rpc_server *srv = testsvc_start(NULL, 0, 4, NULL, NULL, addr, sizeof(addr), err);
    assert_non_null(srv);
    const char *port = strrchr(addr, ':') + 1;
    fake_dns d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    fake_set(&d, "svc.test", "127.0.0.1");
    snprintf(list, sizeof(list), "svc.test:%s", port);
    /* 127.0.0.2 is loopback too, but nothing listens there: refused. */
    snprintf(gone, sizeof(gone), "127.0.0.2:%s", port);
    gw_backend *b = new_backend("people", list, 100, &d);
    assert_int_equal(call_once(b), TCPOPS__STATUS__OK);

    /* A call in flight when its endpoint leaves DNS finishes there. */
    slow_call s = {.b = b, .ms = "3000"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_slow, &s), 0);
    for (int i = 0; i < 1000 && in_flight(b) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(in_flight(b), 1);
    fake_set(&d, "svc.test", "127.0.0.2");
    wait_shows(b, gone, addr, 0);
    if (atomic_load(&s.done))
        fail_msg("the slow call ended before its endpoint left: nothing was drained");
    /* New calls no longer go there: the only endpoint now refuses. */
    assert_int_equal(call_once(b), TCPOPS__STATUS__UNAVAILABLE);
    pthread_join(t, NULL);
    if (s.status != TCPOPS__STATUS__OK)
        fail_msg("the call in flight: expected OK, got %d %s", s.status, s.error);

    /* Back in DNS: added, and it takes calls again. */
    fake_set(&d, "svc.test", "127.0.0.1");
    wait_shows(b, addr, gone, 0);
    wait_call_ok(b);
    gw_backend_free(b);
    rpc_server_free(srv);
}

static void test_backend_resolves_at_once_when_all_is_lost(void **state)
{
    (void)state;
    char addr[64], err[RPC_ERRLEN], list[64];
    rpc_server *srv = testsvc_start(NULL, 0, 2, NULL, NULL, addr, sizeof(addr), err);
    assert_non_null(srv);
    fake_dns d = {.lock = PTHREAD_MUTEX_INITIALIZER};
    fake_set(&d, "svc.test", "127.0.0.1");
    snprintf(list, sizeof(list), "svc.test:%s", strrchr(addr, ':') + 1);
    /* An hour between regular lookups: only the loss can cause another. */
    gw_backend *b = new_backend("pets", list, 3600000, &d);
    wait_call_ok(b);
    int before = fake_asked(&d, "svc.test");
    rpc_server_free(srv);
    for (int i = 0; i < 1000 && fake_asked(&d, "svc.test") == before; i++)
        usleep(10 * 1000);
    if (fake_asked(&d, "svc.test") == before)
        fail_msg("expected svc.test resolved again within 10 s of losing every connection");
    gw_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_lists),
        cmocka_unit_test(test_parse_refuses_with_the_reason),
        cmocka_unit_test(test_names_become_sorted_unique_endpoints),
        cmocka_unit_test(test_failure_keeps_the_last_answer_news_once),
        cmocka_unit_test(test_diff_names_added_and_drained),
        cmocka_unit_test(test_backend_drains_what_leaves_dns),
        cmocka_unit_test(test_backend_resolves_at_once_when_all_is_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
