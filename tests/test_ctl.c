/* The control protocol over a unix socket in a temp dir: the client
 * (sup_ctl_request, sup_master_alive, sup_ctl_print_ps) against the master's
 * server (sup_ctlserver): one JSON line each way, answers owed for later,
 * clients that leave, and what `tcpops` prints. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/clock.h"
#include "supervisor/ctl.h"
#include "supervisor/ctlserver.h"

typedef struct fake_master {
    sup_ctlserver srv;
    char dir[64];
    char last_line[SUP_CTL_LINE_MAX];
    int requests;
    int owed_fd;          /* a request with "cmd":"later" is answered on the next pump */
    int steps_fd;         /* "cmd":"steps": two progress lines, then the answer */
    int big_fd;           /* "cmd":"big": BIG_LINES progress lines, then a BIG_ANSWER answer */
    int gone_fd;          /* the last client reported gone, -1 none */
    volatile int stop;
} fake_master;

/* Answers {"ok":true,"cmd":CMD}; "later" is owed, "silent" never answered;
 * "steps" is owed and told in steps (with progress when asked, as the
 * master does). */
static int on_request(void *arg, int fd, const char *line)
{
    fake_master *m = arg;
    snprintf(m->last_line, sizeof(m->last_line), "%s", line);
    m->requests++;
    json_t *req = json_loads(line, 0, NULL);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    int owed = 0;
    if (json_is_true(json_object_get(req, "progress")))
        sup_ctlserver_want_progress(&m->srv, fd);
    if (cmd != NULL && strcmp(cmd, "steps") == 0) {
        m->steps_fd = fd;
        owed = 1;
    } else if (cmd != NULL && strcmp(cmd, "big") == 0) {
        m->big_fd = fd;
        owed = 1;
    } else if (cmd != NULL && strcmp(cmd, "later") == 0) {
        m->owed_fd = fd;
        owed = 1;
    } else if (cmd != NULL && strcmp(cmd, "silent") == 0) {
        owed = 1;
    } else {
        sup_ctlserver_answer(&m->srv, fd, json_pack("{s:b,s:s?}", "ok", 1, "cmd", cmd));
    }
    json_decref(req);
    return owed;
}

static void on_gone(void *arg, int fd)
{
    fake_master *m = arg;
    m->gone_fd = fd;
}

/* More than a unix socket's buffer holds, so that it fills. */
#define BIG_LINES 1000
#define BIG_ANSWER (512 * 1024)

/* The "big" command's progress and answer ({"ok":true,"text":"xxx..."}). */
static void tell_big(fake_master *m)
{
    char line[64];
    for (int i = 1; i <= BIG_LINES; i++) {
        snprintf(line, sizeof(line), "people.%d: replaced by pid %d", i, 1000 + i);
        sup_ctlserver_progress(&m->srv, m->big_fd, line);
    }
    char *text = malloc(BIG_ANSWER + 1);
    assert_non_null(text);
    memset(text, 'x', BIG_ANSWER);
    text[BIG_ANSWER] = '\0';
    sup_ctlserver_answer(&m->srv, m->big_fd, json_pack("{s:b,s:s}", "ok", 1, "text", text));
    free(text);
    m->big_fd = -1;
}

/* One turn of the master's loop for the control socket. */
static void pump(fake_master *m, int timeout_ms)
{
    struct pollfd pf[SUP_CTL_NPOLL];
    sup_ctlserver_pollfds(&m->srv, pf);
    poll(pf, SUP_CTL_NPOLL, timeout_ms);
    sup_ctlserver_on_poll(&m->srv, pf);
    if (m->owed_fd >= 0) {
        sup_ctlserver_answer(&m->srv, m->owed_fd, json_pack("{s:b,s:s}", "ok", 1, "cmd",
                                                              "later"));
        m->owed_fd = -1;
    }
    if (m->steps_fd >= 0) {
        sup_ctlserver_progress(&m->srv, m->steps_fd,
                               "people.1: replaced by pid 11 (ready in 5 ms)");
        sup_ctlserver_progress(&m->srv, m->steps_fd,
                               "people.2: replaced by pid 12 (ready in 6 ms)");
        sup_ctlserver_answer(&m->srv, m->steps_fd,
                             json_pack("{s:b,s:s,s:i}", "ok", 1, "app", "people", "restarted", 2));
        m->steps_fd = -1;
    }
    if (m->big_fd >= 0)
        tell_big(m);
}

static void *serve(void *arg)
{
    fake_master *m = arg;
    while (!m->stop)
        pump(m, 20);
    return NULL;
}

static int setup(void **state)
{
    fake_master *m = calloc(1, sizeof(*m));
    char err[256];
    snprintf(m->dir, sizeof(m->dir), "/tmp/tcpops-test-ctl-XXXXXX");
    if (mkdtemp(m->dir) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    m->owed_fd = -1;
    m->steps_fd = -1;
    m->big_fd = -1;
    m->gone_fd = -1;
    sup_ctlserver_init(&m->srv, on_request, on_gone, m);
    if (sup_ctlserver_open(&m->srv, m->dir, err, sizeof(err)) < 0)
        fail_msg("expected the control socket to open, got \"%s\"", err);
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    fake_master *m = *state;
    sup_ctlserver_close(&m->srv);
    rmdir(m->dir);
    free(m);
    return 0;
}

/* A raw client: connected, with line sent (as is). */
static int raw_client(const fake_master *m, const char *line)
{
    struct sockaddr_un sa;
    char path[SUP_CTL_PATH_MAX];
    assert_int_equal(sup_ctl_addr(m->dir, &sa, path, sizeof(path)), 0);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    size_t n = strlen(line);
    assert_int_equal(send(fd, line, n, MSG_NOSIGNAL), (ssize_t)n);
    return fd;
}

/* Everything the server sent until it closed. */
static void read_to_end(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = recv(fd, buf + got, cap - 1 - got, 0)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fd);
}

static void test_socket_path_and_alive(void **state)
{
    fake_master *m = *state;
    char path[SUP_CTL_PATH_MAX], want[SUP_CTL_PATH_MAX];
    sup_socket_path(m->dir, path, sizeof(path));
    snprintf(want, sizeof(want), "%s/tcpops.sock", m->dir);
    assert_string_equal(path, want);
    assert_int_equal(sup_master_alive(m->dir), 1);
    sup_ctlserver_close(&m->srv);
    assert_int_equal(access(path, F_OK), -1); /* the socket file goes with it */
    assert_int_equal(sup_master_alive(m->dir), 0);
}

typedef struct heard {
    char lines[4][128];
    int n;
} heard;

static void hear(void *arg, const char *text)
{
    heard *h = arg;
    if (h->n < 4)
        snprintf(h->lines[h->n], sizeof(h->lines[0]), "%s", text);
    h->n++;
}

/* Sends first (its progress lines to h, when not NULL) and then second to
 * m, served on a thread meanwhile; fails the test unless both are answered. */
static void two_requests(fake_master *m, json_t *first, heard *h, json_t *second, json_t **a1,
                         json_t **a2)
{
    pthread_t t;
    char err[512] = "";
    assert_int_equal(pthread_create(&t, NULL, serve, m), 0);
    *a1 = sup_ctl_request_progress(m->dir, first, 5000, h != NULL ? hear : NULL, h, err,
                                   sizeof(err));
    *a2 = sup_ctl_request(m->dir, second, 5000, err, sizeof(err));
    m->stop = 1;
    pthread_join(t, NULL);
    if (*a1 == NULL || *a2 == NULL)
        fail_msg("expected two answers, got the error \"%s\"", err);
}

static void test_request_and_answer(void **state)
{
    fake_master *m = *state;
    json_t *ans, *later;
    two_requests(m, json_pack("{s:s,s:s}", "cmd", "ps", "app", "pets"), NULL,
                 json_pack("{s:s}", "cmd", "later"), &ans, &later);
    assert_string_equal(m->last_line, "{\"cmd\":\"later\"}");
    assert_true(json_is_true(json_object_get(ans, "ok")));
    assert_string_equal(json_string_value(json_object_get(ans, "cmd")), "ps");
    assert_string_equal(json_string_value(json_object_get(later, "cmd")), "later");
    json_decref(ans);
    json_decref(later);
}

static void test_master_that_does_not_answer(void **state)
{
    fake_master *m = *state;
    pthread_t t;
    char err[512];
    assert_int_equal(pthread_create(&t, NULL, serve, m), 0);
    json_t *ans = sup_ctl_request(m->dir, json_pack("{s:s}", "cmd", "silent"), 50, err,
                                  sizeof(err));
    m->stop = 1;
    pthread_join(t, NULL);
    assert_null(ans);
    assert_string_equal(err, "the master did not answer within 50 ms");
}

static void test_no_master(void **state)
{
    fake_master *m = *state;
    char err[512], want[512];
    sup_ctlserver_close(&m->srv);
    json_t *ans = sup_ctl_request(m->dir, json_pack("{s:s}", "cmd", "ps"), 1000, err,
                                  sizeof(err));
    assert_null(ans);
    snprintf(want, sizeof(want),
             "no tcpops master on %s/tcpops.sock (No such file or directory); start one with "
             "`tcpops up`", m->dir);
    assert_string_equal(err, want);
}

static void test_line_in_pieces(void **state)
{
    fake_master *m = *state;
    char buf[256];
    int fd = raw_client(m, "{\"cmd\":");
    pump(m, 1000); /* accepted */
    pump(m, 1000); /* half a line: nothing to do yet */
    assert_int_equal(m->requests, 0);
    assert_int_equal(send(fd, "\"down\"}\n", 8, MSG_NOSIGNAL), 8);
    pump(m, 1000);
    assert_int_equal(m->requests, 1);
    assert_string_equal(m->last_line, "{\"cmd\":\"down\"}");
    read_to_end(fd, buf, sizeof(buf));
    assert_string_equal(buf, "{\"ok\":true,\"cmd\":\"down\"}\n");
}

static void test_request_too_long(void **state)
{
    fake_master *m = *state;
    /* As much as the server holds, and no newline. */
    char line[SUP_CTL_LINE_MAX], buf[256];
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    int fd = raw_client(m, line);
    pump(m, 1000); /* accepted */
    for (int i = 0; i < 100 && m->srv.clients[0].fd >= 0; i++)
        pump(m, 1000); /* reads until the buffer is full */
    read_to_end(fd, buf, sizeof(buf));
    assert_string_equal(buf, "{\"ok\":false,\"error\":\"request too long\"}\n");
    assert_int_equal(m->requests, 0);
}

static void test_client_leaves_while_owed(void **state)
{
    fake_master *m = *state;
    int fd = raw_client(m, "{\"cmd\":\"silent\"}\n");
    pump(m, 1000); /* accepted */
    pump(m, 1000); /* read: the answer is owed */
    assert_int_equal(m->requests, 1);
    int server_fd = m->srv.clients[0].fd;
    assert_int_equal(m->srv.clients[0].waiting, 1);
    assert_int_equal(m->gone_fd, -1);
    close(fd);
    pump(m, 1000);
    if (m->gone_fd != server_fd)
        fail_msg("expected client fd %d reported gone, got %d", server_fd, m->gone_fd);
    assert_int_equal(m->srv.clients[0].fd, -1); /* out of the poll set */
}

static void test_second_master_refused(void **state)
{
    fake_master *m = *state;
    sup_ctlserver other;
    char err[512], want[512];
    sup_ctlserver_init(&other, on_request, on_gone, m);
    assert_int_equal(sup_ctlserver_open(&other, m->dir, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "a tcpops master already runs on %s", m->dir);
    assert_string_equal(err, want);
    /* A socket file left by a master that died is replaced. */
    int fd = m->srv.listen_fd;
    m->srv.listen_fd = -1; /* forgotten without unlink, as a crash leaves it */
    close(fd);
    assert_int_equal(sup_ctlserver_open(&other, m->dir, err, sizeof(err)), 0);
    assert_int_equal(sup_master_alive(m->dir), 1);
    sup_ctlserver_close(&other);
}

static void test_path_too_long(void **state)
{
    (void)state;
    sup_ctlserver s;
    char dir[200], err[512];
    memset(dir, 'd', sizeof(dir) - 1);
    dir[sizeof(dir) - 1] = '\0';
    sup_ctlserver_init(&s, on_request, on_gone, NULL);
    assert_int_equal(sup_ctlserver_open(&s, dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "control socket path too long: dddd"));
    json_t *ans = sup_ctl_request(dir, json_pack("{s:s}", "cmd", "ps"), 1000, err, sizeof(err));
    assert_null(ans);
    assert_non_null(strstr(err, "control socket path too long: dddd"));
    assert_int_equal(sup_master_alive(dir), 0);
}

static void test_error_answer(void **state)
{
    (void)state;
    json_t *e = sup_ctl_error("unknown app \"%s\" (people, pets)", "fish");
    char *s = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"error\":\"unknown app \\\"fish\\\" (people, pets)\",\"ok\":false}");
    free(s);
    json_decref(e);
}

/* What fn prints on stdout. */
static void capture_stdout(void (*fn)(const char *, json_t *), const char *cmd, json_t *ans,
                           char *text, size_t cap)
{
    char path[] = "/tmp/tcpops-test-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    fn(cmd, ans);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, text, cap - 1);
    close(fd);
    unlink(path);
    text[n > 0 ? n : 0] = '\0';
}

static void print_ps_cmd(const char *cmd, json_t *ans)
{
    (void)cmd;
    sup_ctl_print_ps(ans);
}

/* sup_ctl_print_ps prints want for the ps answer in JSON. */
static void expect_ps(const char *answer, const char *want)
{
    char text[2048];
    json_t *ans = json_loads(answer, 0, NULL);
    assert_non_null(ans);
    capture_stdout(print_ps_cmd, "ps", ans, text, sizeof(text));
    json_decref(ans);
    assert_string_equal(text, want);
}

static void test_print_ps(void **state)
{
    (void)state;
    expect_ps(
        "{\"ok\":true,\"workers\":["
        "{\"app\":\"gateway\",\"worker\":1,\"pid\":4242,\"state\":\"running\","
        "\"uptime_ms\":1500,\"restarts\":0,\"rss_bytes\":67108864,\"last_exit\":null},"
        "{\"app\":\"people\",\"worker\":2,\"pid\":null,\"state\":\"crash-looping\","
        "\"uptime_ms\":null,\"restarts\":7,\"rss_bytes\":null,\"last_exit\":1,"
        "\"db\":\"postgresql://tcpops:***@db1/tcpops\",\"advertised\":null},"
        "{\"app\":\"pets\",\"worker\":1,\"pid\":77,\"state\":\"running\","
        "\"uptime_ms\":3725000,\"restarts\":1,\"rss_bytes\":2048,\"last_exit\":137,"
        "\"db\":\"sqlite:/srv/var/pets.db\",\"advertised\":\"10.0.0.5:40123\"},"
        "{\"app\":\"pets\",\"worker\":2,\"pid\":78,\"state\":\"running\","
        "\"uptime_ms\":3725000,\"restarts\":0,\"rss_bytes\":2048,\"last_exit\":null,"
        "\"db\":\"sqlite:/srv/var/pets.db\",\"advertised\":\"10.0.0.5:40124\"}]}",
        "APP      WORKER PID      STATE          UPTIME    RESTARTS MEMORY   LAST EXIT "
        "ADVERTISED\n"
        "gateway  1      4242     running        1.5s      0        64.0M    -         -\n"
        "people   2      -        crash-looping  -         7        -        1         -\n"
        "pets     1      77       running        1h2m      1        2K       137       "
        "10.0.0.5:40123\n"
        "pets     2      78       running        1h2m      0        2K       -         "
        "10.0.0.5:40124\n"
        /* Each service's store once, below, not as an "APP ..." row. */
        "database of people: postgresql://tcpops:***@db1/tcpops\n"
        "database of pets: sqlite:/srv/var/pets.db\n");
}

/* A client that asks for progress hears each line before its answer; one
 * that does not (as every client before progress existed) gets the answer
 * alone. */
static void test_progress_then_answer(void **state)
{
    fake_master *m = *state;
    heard h = {.n = 0};
    json_t *ans, *plain;
    two_requests(m, json_pack("{s:s}", "cmd", "steps"), &h, json_pack("{s:s}", "cmd", "steps"),
                 &ans, &plain);
    assert_string_equal(m->last_line, "{\"cmd\":\"steps\"}"); /* asked for none */
    if (h.n != 2)
        fail_msg("expected 2 progress lines, heard %d", h.n);
    assert_string_equal(h.lines[0], "people.1: replaced by pid 11 (ready in 5 ms)");
    assert_string_equal(h.lines[1], "people.2: replaced by pid 12 (ready in 6 ms)");
    assert_int_equal(json_integer_value(json_object_get(ans, "restarted")), 2);
    assert_true(json_equal(ans, plain));
    json_decref(ans);
    json_decref(plain);
}

/* On the wire: the progress lines, then the answer, one JSON line each. */
static void test_progress_on_the_wire(void **state)
{
    fake_master *m = *state;
    char buf[1024];
    int fd = raw_client(m, "{\"cmd\":\"steps\",\"progress\":true}\n");
    pump(m, 1000); /* accepted */
    pump(m, 1000); /* read, told */
    read_to_end(fd, buf, sizeof(buf));
    assert_string_equal(buf, "{\"progress\":\"people.1: replaced by pid 11 (ready in 5 ms)\"}\n"
                             "{\"progress\":\"people.2: replaced by pid 12 (ready in 6 ms)\"}\n"
                             "{\"ok\":true,\"app\":\"people\",\"restarted\":2}\n");
}

/* A client that reads slowly (nothing until its socket's buffer is full,
 * then a little per turn of the loop) still gets every progress line and
 * the whole answer: what its socket does not take waits for it. */
static void test_slow_reader_gets_the_whole_answer(void **state)
{
    fake_master *m = *state;
    int fd = raw_client(m, "{\"cmd\":\"big\",\"progress\":true}\n");
    pump(m, 1000); /* accepted */
    pump(m, 1000); /* read, told: more than the socket holds */
    size_t cap = BIG_ANSWER + BIG_LINES * 64 + 4096, got = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int eof = 0;
    for (int64_t deadline = rpc_now_ms() + 20000; !eof && rpc_now_ms() < deadline;) {
        pump(m, 10);
        ssize_t r = recv(fd, buf + got, cap - 1 - got < 4096 ? cap - 1 - got : 4096,
                         MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
        eof = r == 0 || got == cap - 1;
    }
    close(fd);
    buf[got] = '\0';
    if (!eof)
        fail_msg("expected the server to close after the answer; got %zu bytes", got);
    char *line = buf, *nl;
    int progress = 0;
    json_t *ans = NULL;
    for (; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        if (j == NULL)
            fail_msg("expected JSON lines only, got \"%.80s\" (line %d)", line, progress + 1);
        if (json_object_get(j, "progress") != NULL && ans == NULL)
            progress++;
        else
            ans = json_incref(j);
        json_decref(j);
    }
    const char *text = json_string_value(json_object_get(ans, "text"));
    if (progress != BIG_LINES || text == NULL || strlen(text) != BIG_ANSWER || *line != '\0')
        fail_msg("expected %d progress lines then an answer of %d x's; got %d lines, an answer "
                 "of %zu, %zu bytes after it", BIG_LINES, BIG_ANSWER, progress,
                 text != NULL ? strlen(text) : 0, strlen(line));
    json_decref(ans);
    free(buf);
}

/* A client that reads nothing while its answer waits is dropped after
 * send_timeout_ms (here lowered), and its descriptor freed. */
static void test_client_that_never_reads_is_dropped(void **state)
{
    fake_master *m = *state;
    m->srv.send_timeout_ms = 100;
    int fd = raw_client(m, "{\"cmd\":\"big\"}\n");
    pump(m, 1000); /* accepted */
    pump(m, 1000); /* read, answered in part */
    int open = 1;
    for (int64_t deadline = rpc_now_ms() + 10000; open && rpc_now_ms() < deadline;) {
        pump(m, 20);
        open = 0;
        for (int i = 0; i < SUP_CTL_MAX_CLIENTS; i++)
            open |= m->srv.clients[i].fd >= 0;
    }
    if (open)
        fail_msg("expected a client that reads nothing to be dropped after %d ms", 100);
    close(fd);
}

static void test_print_done(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"scale", "{\"ok\":true,\"app\":\"people\",\"workers\":3,\"was\":2}",
         "people: 3 workers (was 2)\n"},
        {"scale", "{\"ok\":true,\"app\":\"pets\",\"workers\":1,\"was\":4}",
         "pets: 1 worker (was 4)\n"},
        {"restart", "{\"ok\":true,\"app\":\"gateway\",\"restarted\":1}",
         "gateway: restarted 1 worker\n"},
        {"restart", "{\"ok\":true,\"app\":\"people\",\"restarted\":3}",
         "people: restarted 3 workers\n"},
        {"down", "{\"ok\":true,\"stopped\":5}", "stopped 5 workers\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        json_t *ans = json_loads(cases[i][1], 0, NULL);
        assert_non_null(ans);
        capture_stdout(sup_ctl_print_done, cases[i][0], ans, text, sizeof(text));
        json_decref(ans);
        if (strcmp(text, cases[i][2]) != 0)
            fail_msg("%s %s: expected \"%s\", printed \"%s\"", cases[i][0], cases[i][1],
                     cases[i][2], text);
    }
}

/* A failed worker: its state in the table, its reason on a line below. */
static void test_print_ps_failed(void **state)
{
    (void)state;
    expect_ps(
        "{\"ok\":true,\"workers\":["
        "{\"app\":\"pets\",\"worker\":2,\"pid\":null,\"state\":\"failed\",\"uptime_ms\":null,"
        "\"restarts\":0,\"rss_bytes\":null,\"last_exit\":2,\"reason\":\"exit 2 before ready: "
        "tcpops-pets: --threads: \\\"999999\\\" is out of range: 0 to 256\",\"db\":null,"
        "\"advertised\":null}]}",
        "APP      WORKER PID      STATE          UPTIME    RESTARTS MEMORY   LAST EXIT "
        "ADVERTISED\n"
        "pets     2      -        failed         -         0        -        2         -\n"
        "failed pets.2: exit 2 before ready: tcpops-pets: --threads: \"999999\" is out of "
        "range: 0 to 256\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_socket_path_and_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_and_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_that_does_not_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_leaves_while_owed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_master_refused, setup, teardown),
        cmocka_unit_test(test_path_too_long),
        cmocka_unit_test(test_error_answer),
        cmocka_unit_test(test_print_ps),
        cmocka_unit_test_setup_teardown(test_progress_then_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_on_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_gets_the_whole_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_that_never_reads_is_dropped, setup,
                                        teardown),
        cmocka_unit_test(test_print_done),
        cmocka_unit_test(test_print_ps_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
