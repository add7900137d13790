/* tcpops-people and tcpops-pets as real processes, driven through tcpops-cli,
 * text mode and raw frames: every method's output and exit code, every
 * invalid input, and hostile peers that must not cost a good client a call.
 * The same tests run on SQLite (test_services) and on PostgreSQL
 * (test_services_pg: `test_services postgresql`, a fresh database per test
 * that both services share; see testdb.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/channel.h"
#include "rpc/clock.h"
#include "tcpops.pb-c.h"
#include "proc.h"
#include "testsvc.h"
#include "rawpeer.h"
#include "testdb.h"

typedef struct fixture {
    char dir[256];
    char url[320];            /* PostgreSQL: the test's own database */
    const char *db[3];        /* "--db", url; on SQLite NULL (ends a list of flags) */
    proc people, pets;
    int people_port, pets_port;
    char people_addr[64], pets_addr[64];
} fixture;

/* A fresh store on the run's backend (testdb.h) and fx->db to pass it. */
static void new_store(fixture *fx)
{
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    if (testdb_new(fx->url, sizeof(fx->url)) < 0)
        fail_msg("expected a fresh %s database, got \"%s\"", testdb_name(), fx->url);
    fx->db[0] = testdb_is_pg() ? "--db" : NULL;
    fx->db[1] = fx->url;
    fx->db[2] = NULL;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    new_store(fx);
    fx->people_port = free_port();
    fx->pets_port = free_port();
    snprintf(fx->people_addr, sizeof(fx->people_addr), "127.0.0.1:%d", fx->people_port);
    snprintf(fx->pets_addr, sizeof(fx->pets_addr), "127.0.0.1:%d", fx->pets_port);
    assert_int_equal(proc_start_service(&fx->people, "tcpops-people", fx->people_port, fx->dir,
                                        fx->db),
                     0);
    assert_int_equal(
        proc_start_service(&fx->pets, "tcpops-pets", fx->pets_port, fx->dir, fx->db), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    proc_stop(&fx->people);
    proc_stop(&fx->pets);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* Runs tcpops-cli --addr ADDR ARGS... and checks its exit code, and that its
 * stdout equals want_out (when not NULL) and its stderr contains want_err
 * (when not NULL). */
static void cli(const char *addr, int want_code, const char *want_out, const char *want_err, ...)
{
    char out[8192], err[8192], cmd[512];
    va_list ap;
    va_start(ap, want_err);
    int code = proc_run_tool("tcpops-cli", "--addr", addr, ap, out, sizeof(out), err, sizeof(err),
                             10000, cmd, sizeof(cmd));
    va_end(ap);
    if (code != want_code)
        fail_msg("tcpops-cli %s: expected exit %d, got %d (stdout \"%s\", stderr \"%s\")", cmd,
                 want_code, code, out, err);
    if (want_out != NULL) {
        size_t l = strlen(out);
        if (l > 0 && out[l - 1] == '\n')
            out[l - 1] = '\0';
        if (strcmp(out, want_out) != 0)
            fail_msg("tcpops-cli %s: expected stdout %s, got %s", cmd, want_out, out);
    }
    if (want_err != NULL && strstr(err, want_err) == NULL)
        fail_msg("tcpops-cli %s: expected stderr to mention \"%s\", got \"%s\"", cmd, want_err,
                 err);
}

static void test_every_method_through_the_cli(void **state)
{
    fixture *fx = *state;
    const char *P = fx->people_addr, *Q = fx->pets_addr;
    cli(P, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
    cli(P, 0, "{\"name\":\"ann\"}", NULL, "people", "create", "ann", NULL);
    cli(P, 1, "", "ALREADY_EXISTS", "people", "create", "ann", NULL);
    cli(P, 0, "{\"names\":[\"bob\",\"jane\",\"ann\"]}", NULL, "people", "list", NULL);
    cli(P, 0, "{\"names\":[\"jane\"]}", NULL, "people", "list", "--limit", "1", "--after", "bob",
        NULL);
    cli(P, 0, "{\"ids\":[1,3]}", NULL, "people", "pets", "bob", NULL);
    cli(P, 0, "{\"ids\":[]}", NULL, "people", "pets", "jane", NULL);
    cli(P, 1, "", "NOT_FOUND", "people", "pets", "nobody", NULL);
    cli(Q, 0, "{\"pets\":[{\"id\":3,\"name\":\"rex\"},{\"id\":1,\"name\":\"bixa\"}],\"missing\":[9]}",
        NULL, "pets", "get", "3", "9", "1", NULL);
    cli(Q, 0, "{\"id\":4}", NULL, "pets", "create", "tom", NULL);
    cli(P, 0, "{}", NULL, "people", "add-pet", "jane", "4", NULL);
    cli(P, 0, "{\"ids\":[4]}", NULL, "people", "pets", "jane", NULL);
    cli(P, 1, "", "NOT_FOUND", "people", "add-pet", "nobody", "4", NULL);
    cli(P, 0, NULL, NULL, "status", NULL);
    cli(P, 0, NULL, NULL, "ping", NULL);
    cli(Q, 0, NULL, NULL, "status", NULL);
}

static void test_invalid_inputs_change_nothing(void **state)
{
    fixture *fx = *state;
    const char *P = fx->people_addr, *Q = fx->pets_addr;
    char n65[66];
    memset(n65, 'x', 65);
    n65[65] = '\0';
    cli(P, 1, "", "INVALID_ARGUMENT", "people", "create", "", NULL);
    cli(P, 1, "", "65 bytes", "people", "create", n65, NULL);
    cli(P, 1, "", "control character", "people", "create", "a\tb", NULL);
    cli(P, 1, "", "UTF-8", "people", "create", "\xff\xfe", NULL);
    cli(P, 1, "", "INVALID_ARGUMENT", "people", "pets", "\x01", NULL);
    cli(P, 1, "", "INVALID_ARGUMENT", "people", "add-pet", "bob", "0", NULL);
    cli(P, 1, "", "INVALID_ARGUMENT", "people", "list", "--after", "nobody", NULL);
    cli(Q, 1, "", "INVALID_ARGUMENT", "pets", "create", n65, NULL);
    cli(Q, 1, "", "INVALID_ARGUMENT", "pets", "create", "", NULL);
    /* Usage errors never reach the service. */
    cli(P, 2, "", "people create takes one NAME", "people", "create", NULL);
    cli(P, 2, "", "not a pet id", "pets", "get", "abc", NULL);
    cli(P, 2, "", "unknown command", "frobnicate", NULL);
    cli(P, 2, "", "1000", "people", "list", "--limit", "5000", NULL);
    /* Nothing changed. */
    cli(P, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
    cli(Q, 0, "{\"pets\":[],\"missing\":[4]}", NULL, "pets", "get", "4", NULL);
}

/* Calls method on addr over a channel with body exactly as given; returns the
 * status and fills err with the error text. */
/* A channel named name to addr alone, taking frames up to max_frame (0: the
 * default). */
static rpc_channel *channel_to(const char *name, const char *addr, size_t max_frame)
{
    char cerr[RPC_ERRLEN];
    rpc_channel_cfg cfg;
    rpc_channel_cfg_default(&cfg);
    if (max_frame > 0)
        cfg.max_frame = max_frame;
    /* Each call's own deadline applies, up to the 30 s the 5 MiB answer may
     * take on a loaded machine (the default caps deadlines at 10 s). */
    cfg.max_deadline_ms = 30000;
    rpc_channel *ch = testsvc_channel(name, addr, &cfg, cerr);
    if (ch == NULL)
        fail_msg("expected a channel to %s, got \"%s\"", addr, cerr);
    return ch;
}

static int call_body(const char *addr, const char *method, const void *body, size_t len,
                     char *err, size_t errlen)
{
    rpc_channel *ch = channel_to("raw", addr, 0);
    rpc_call c = {.method = method, .body = body, .body_len = len, .deadline_ms = 5000};
    int st = rpc_channel_call(ch, &c);
    snprintf(err, errlen, "%s", c.error);
    rpc_call_fini(&c);
    rpc_channel_free(ch);
    return st;
}

/* protobuf-c hands strings out cut at their first NUL: "nulA\0evil" must not
 * create "nulA", nor "bob\0x" read bob's pets. Every string field of every
 * request is refused with INVALID_ARGUMENT, and nothing changes. */
static void test_nul_in_request_strings_is_invalid(void **state)
{
    fixture *fx = *state;
    static const struct {
        int people;
        const char *method;
        const char *body;
        size_t len;
    } bad[] = {
        {1, "people.Create", "\x0a\x09" "nulA\0evil", 11},       /* name */
        {1, "people.Create", "\x0a\x04" "nulB\x0a\x02" "x\0", 10}, /* name, a second time */
        {1, "people.PetIds", "\x0a\x05" "bob\0x", 7},            /* owner */
        {1, "people.AddPet", "\x0a\x05" "jane\0\x10\x01", 9},   /* owner */
        {1, "people.List", "\x12\x05" "bob\0x", 7},              /* after */
        {0, "pets.Create", "\x0a\x04" "rex\0", 6},               /* name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256];
        int st = call_body(bad[i].people ? fx->people_addr : fx->pets_addr, bad[i].method,
                           bad[i].body, bad[i].len, err, sizeof(err));
        if (st != TCPOPS__STATUS__INVALID_ARGUMENT || strstr(err, "NUL") == NULL)
            fail_msg("%s with a NUL in a string (case %zu): expected INVALID_ARGUMENT saying "
                     "NUL, got %s \"%s\"",
                     bad[i].method, i, rpc_status_name(st), err);
    }
    const char *P = fx->people_addr, *Q = fx->pets_addr;
    cli(P, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
    cli(P, 0, "{\"ids\":[]}", NULL, "people", "pets", "jane", NULL);
    cli(Q, 0, "{\"pets\":[],\"missing\":[4]}", NULL, "pets", "get", "4", NULL);
}

/* A name's identity is its NFC form: precomposed "é" and "e" + U+0301 are
 * one person, found by either spelling and stored once. Invisible, bidi and
 * separator characters are INVALID_ARGUMENT, and nothing is created. */
static void test_name_identity(void **state)
{
    fixture *fx = *state;
    const char *P = fx->people_addr, *Q = fx->pets_addr;
    cli(P, 0, "{\"name\":\"\xC3\xA9\"}", NULL, "people", "create", "\xC3\xA9", NULL);
    cli(P, 1, "", "ALREADY_EXISTS", "people", "create", "e\xCC\x81", NULL);
    /* The answer carries the stored (NFC) form. */
    cli(P, 0, "{\"name\":\"Zo\xC3\xAB\"}", NULL, "people", "create", "Zoe\xCC\x88", NULL);
    cli(P, 1, "", "ALREADY_EXISTS", "people", "create", "Zo\xC3\xAB", NULL);
    /* Either spelling finds the person. */
    cli(P, 0, "{}", NULL, "people", "add-pet", "e\xCC\x81", "2", NULL);
    cli(P, 0, "{\"ids\":[2]}", NULL, "people", "pets", "\xC3\xA9", NULL);
    cli(P, 0, "{\"names\":[\"Zo\xC3\xAB\"]}", NULL, "people", "list", "--after",
        "e\xCC\x81", NULL);
    cli(Q, 0, "{\"id\":4}", NULL, "pets", "create", "Re\xCC\x81x", NULL);
    cli(Q, 0, "{\"pets\":[{\"id\":4,\"name\":\"R\xC3\xA9x\"}],\"missing\":[]}", NULL, "pets",
        "get", "4", NULL);

    static const char *const bad[] = {
        "a\xE2\x80\x8B" "b", /* U+200B zero-width space */
        "a\xE2\x80\xAE" "b", /* U+202E right-to-left override */
        "\xEF\xBB\xBF" "ab", /* U+FEFF zero-width no-break space */
        "a\xE2\x80\xA8" "b", /* U+2028 line separator */
        "a\xC2\xA0" "b",      /* U+00A0 no-break space */
        " ab",                /* a space at either end */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cli(P, 1, "", "INVALID_ARGUMENT", "people", "create", bad[i], NULL);
        cli(Q, 1, "", "INVALID_ARGUMENT", "pets", "create", bad[i], NULL);
    }
    cli(P, 0, "{\"names\":[\"bob\",\"jane\",\"\xC3\xA9\",\"Zo\xC3\xAB\"]}", NULL, "people",
        "list", NULL);
    cli(Q, 0, "{\"pets\":[],\"missing\":[5]}", NULL, "pets", "get", "5", NULL);
}

/* --data-dir makes the directory itself, never its missing parents (a
 * mistyped path fails instead of growing a tree), and says so either way. */
static void test_data_dir_parent_must_exist(void **state)
{
    fixture *fx = *state;
    char bin[512], dir[400], out[1024], err[4096];
    snprintf(dir, sizeof(dir), "%s/missing/var", fx->dir);
    char *const argv[] = {(char *)proc_bin("tcpops-people", bin, sizeof(bin)), "--listen",
                          "127.0.0.1:0", "--data-dir", dir, NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 5000);
    if (code == 0 || strstr(err, "its parent does not exist") == NULL)
        fail_msg("--data-dir %s: expected a non-zero exit saying \"its parent does not "
                 "exist\"; got exit %d, stderr \"%s\"", dir, code, err);
    snprintf(dir, sizeof(dir), "%s/missing", fx->dir);
    struct stat st;
    if (stat(dir, &st) == 0)
        fail_msg("expected %s not to be created, but it exists", dir);
}

static void test_unreachable_is_exit_3(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    cli(addr, 3, "", "cannot reach", "people", "list", NULL);
    cli(addr, 3, "", "cannot reach", "ping", NULL);
}

/* ---- text mode ---- */

static int raw_connect(int port)
{
    struct sockaddr_in sa;
    char err[RPC_ERRLEN], addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(rpc_addr_parse(addr, &sa, err), 0);
    int fd = rpc_sock_connect(&sa, 1000);
    assert_true(fd >= 0);
    return fd;
}

/* Reads one line (without its newline) within 5 s. */
static void read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    int64_t deadline = rpc_now_ms() + 5000;
    while (n + 1 < len) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            break;
        if (recv(fd, buf + n, 1, 0) != 1)
            break;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
}

static void say(int fd, const char *line, const char *want_substring)
{
    char got[4096];
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, line, strlen(line), rpc_now_ms() + 2000, &w), 0);
    read_line(fd, got, sizeof(got));
    if (strstr(got, want_substring) == NULL)
        fail_msg("text mode %.80s%s: expected a line containing %s, got \"%s\"", line,
                 strlen(line) > 80 ? "..." : "", want_substring, got);
}

static void test_text_mode(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx->people_port);
    say(fd, "{\"cmd\":\"status\"}\n", "\"service\":\"people\"");
    close(fd);

    fd = raw_connect(fx->people_port);
    say(fd, "{\"cmd\":\"people.List\"}\n", "{\"names\":[\"bob\",\"jane\"]}");
    say(fd, "{\"cmd\":\"people.Create\",\"name\":\"ann\"}\n", "{\"name\":\"ann\"}");
    say(fd, "{\"cmd\":\"people.Create\",\"name\":\"ann\"}\n", "\"code\":\"ALREADY_EXISTS\"");
    say(fd, "this is not json\n", "\"code\":\"INVALID_ARGUMENT\"");
    say(fd, "{\"name\":\"no cmd\"}\n", "missing \\\"cmd\\\"");
    say(fd, "{\"cmd\":\"people.Explode\"}\n", "\"code\":\"UNIMPLEMENTED\"");
    say(fd, "{\"cmd\":\"people.Create\",\"nmae\":\"typo\"}\n", "unknown field");
    say(fd, "{\"cmd\":\"people.PetIds\",\"owner\":\"bob\"}\n", "{\"ids\":[1,3]}");
    /* still the same connection, still answering */
    say(fd, "{\"cmd\":\"people.List\",\"limit\":2,\"after\":\"jane\"}\n", "{\"names\":[\"ann\"]}");
    close(fd);

    fd = raw_connect(fx->pets_port);
    say(fd, "{\"cmd\":\"pets.GetByIds\",\"ids\":[2]}\n", "\"name\":\"kitty\"");
    say(fd, "{\"cmd\":\"ping\"}\n", "\"pong\":true");
    close(fd);
}

/* A text line longer than --max-frame (1 MiB by default) with no newline:
 * the service says why in its own JSON error line, then closes. Exactly one
 * byte too many, so it has read everything when it closes (no reset). */
static void test_text_line_too_long_is_told_then_closed(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx->people_port);
    size_t n = ((size_t)1 << 20) + 1;
    char *line = malloc(n);
    assert_non_null(line);
    memset(line, 'x', n);
    line[0] = '{';
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, line, n, rpc_now_ms() + 10000, &w), 0);
    free(line);
    char got[256] = {0};
    ssize_t r = rawpeer_read_until_closed(fd, got, sizeof(got), 10000);
    close(fd);
    const char *want = "{\"error\":\"line too long\"}\n";
    if (r < 0 || strcmp(got, want) != 0)
        fail_msg("a line past --max-frame: expected \"%s\" then the close, got \"%s\" (%s)",
                 want, got, r < 0 ? "still open" : "closed");
}

/* ---- a service's connections: half-close, pipelining, the limit ---- */

/* printf '...' | nc -q1: lines with a people.Create among them, then
 * SHUT_WR. Every line is answered, in order, and only then does the service
 * close; the create is committed and the caller heard so. */
static void test_text_half_close_answers_every_line(void **state)
{
    fixture *fx = *state;
    int fd = raw_connect(fx->people_port);
    const char *lines = "{\"cmd\":\"people.List\"}\n"
                        "{\"cmd\":\"people.Create\",\"name\":\"halfy\"}\n"
                        "{\"cmd\":\"ping\"}\n"
                        "{\"cmd\":\"people.PetIds\",\"owner\":\"bob\"}\n";
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, lines, strlen(lines), rpc_now_ms() + 2000, &w), 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    char got[4096];
    ssize_t n = rawpeer_read_until_closed(fd, got, sizeof(got), 5000);
    close(fd);
    const char *want = "{\"names\":[\"bob\",\"jane\"]}\n{\"name\":\"halfy\"}\n{\"pong\":true}\n"
                       "{\"ids\":[1,3]}\n";
    if (n < 0)
        fail_msg("text mode after SHUT_WR: expected every answer then the end; got \"%s\" "
                 "and the connection stayed open",
                 got);
    if (strcmp(got, want) != 0)
        fail_msg("text mode after SHUT_WR: expected \"%s\", got \"%s\"", want, got);
    cli(fx->people_addr, 0, "{\"names\":[\"bob\",\"jane\",\"halfy\"]}", NULL, "people", "list",
        NULL);
}

/* A binary client that sends its requests and half-closes: creates (on the
 * workers) and lists (on the I/O thread) are all answered, then the end. */
static void test_binary_half_close_answers_every_call(void **state)
{
    fixture *fx = *state;
    enum { N = 16 };
    int fd = raw_connect(fx->people_port);
    for (int i = 0; i < N; i++) {
        rpc_frame f = TCPOPS__FRAME__INIT;
        Tcpops__CreatePersonRequest req = TCPOPS__CREATE_PERSON_REQUEST__INIT;
        char name[16];
        uint8_t body[64], buf[256];
        f.id = (uint64_t)i + 1;
        f.kind = TCPOPS__KIND__REQUEST;
        f.method = i % 2 == 0 ? "people.Create" : "people.List";
        if (i % 2 == 0) {
            snprintf(name, sizeof(name), "hc%d", i);
            req.name = name;
            f.body.len = tcpops__create_person_request__pack(&req, body);
            f.body.data = body;
        }
        assert_true(rpc_frame_size(&f) <= sizeof(buf));
        size_t len = rpc_frame_write(&f, buf), w = 0;
        assert_int_equal(rpc_sock_write_all(fd, buf, len, rpc_now_ms() + 2000, &w), 0);
    }
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    int seen[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        rpc_frame *f = rawpeer_read_frame(fd, 1 << 20, 5000);
        if (f == NULL)
            fail_msg("binary after SHUT_WR: expected %d answers, the connection ended after %d",
                     N, i);
        if (f->kind != TCPOPS__KIND__RESPONSE || f->id < 1 || f->id > N || seen[f->id]++)
            fail_msg("binary after SHUT_WR: expected one RESPONSE per id 1-%d, got kind %d id "
                     "%llu",
                     N, f->kind, (unsigned long long)f->id);
        if (f->status != TCPOPS__STATUS__OK)
            fail_msg("binary after SHUT_WR: call %llu expected OK, got %s (%s)",
                     (unsigned long long)f->id, rpc_status_name(f->status), f->error);
        rpc_frame_free(f);
    }
    if (!rawpeer_closed(fd, 5000))
        fail_msg("binary after SHUT_WR: expected the service to close after the last answer");
    close(fd);
    fd = raw_connect(fx->people_port);
    char got[4096];
    const char *list = "{\"cmd\":\"people.List\"}\n";
    size_t w = 0;
    assert_int_equal(rpc_sock_write_all(fd, list, strlen(list), rpc_now_ms() + 2000, &w), 0);
    read_line(fd, got, sizeof(got));
    close(fd);
    for (int i = 0; i < N; i += 2) {
        char want[32];
        snprintf(want, sizeof(want), "\"hc%d\"", i);
        if (strstr(got, want) == NULL)
            fail_msg("binary after SHUT_WR: expected %s created, people.List says %s", want, got);
    }
}

/* Line i of the 80,000: every 100th a real people.List, the others an
 * unknown command that the error echoes. Keeps the first answer that is not
 * what it should be. */
static int check_80000(void *arg, int i, const char *line, size_t len)
{
    char *got = arg, want[64];
    if (i % 100 == 0)
        snprintf(want, sizeof(want), "{\"names\":[\"bob\"]}");
    else
        snprintf(want, sizeof(want), "unknown command \\\"n%d\\\"", i);
    if (memmem(line, len, want, strlen(want)) != NULL)
        return 0;
    snprintf(got, 200, "answer %d expected to contain %s, got %.*s", i, want,
             (int)(len < 100 ? len : 100), line);
    return 1;
}

/* 80,000 pipelined lines, far more than the service reads ahead: it stops
 * reading while lines wait, and answers every one, in order, on a
 * connection that stays open. Each line names itself (an unknown command
 * is echoed in its error), and every 100th is a real people.List. */
static void test_text_80000_pipelined_lines(void **state)
{
    fixture *fx = *state;
    enum { N = 80000 };
    size_t cap = (size_t)N * 40, len = 0;
    char *lines = malloc(cap);
    assert_non_null(lines);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(lines + len, cap - len,
                                i % 100 == 0 ? "{\"cmd\":\"people.List\",\"limit\":1}\n"
                                             : "{\"cmd\":\"n%d\"}\n",
                                i);
    int fd = raw_connect(fx->people_port);
    rawpeer_writer w;
    assert_int_equal(rawpeer_writer_start(&w, fd, lines, len, 120000), 0);
    char got[200] = "";
    int answered = rawpeer_read_lines(fd, N, 0, 120000, check_80000, got);
    int wrc = rawpeer_writer_join(&w);
    free(lines);
    if (answered < N)
        fail_msg("80,000 lines: expected every line answered in order, got %d answers (%s)",
                 answered, got[0] ? got : "then the connection ended or went silent");
    assert_int_equal(wrc, 0);
    say(fd, "{\"cmd\":\"ping\"}\n", "\"pong\":true"); /* still open */
    close(fd);
}

/* At --max-conns a new client gets in: the connection idle longest is
 * closed for it, the others are left alone, and the service counts it. */
static void test_conn_limit_evicts_longest_idle(void **state)
{
    fixture *fx = *state;
    proc p = {0};
    int port = free_port();
    const char *const extra[] = {"--max-conns", "4", fx->db[0], fx->db[1], NULL};
    assert_int_equal(proc_start_service(&p, "tcpops-people", port, fx->dir, extra), 0);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = raw_connect(port);
        say(fds[i], "{\"cmd\":\"ping\"}\n", "\"pong\":true");
    }
    int late = raw_connect(port);
    say(late, "{\"cmd\":\"status\"}\n", "\"connections_evicted\":1");
    if (!rawpeer_closed(fds[0], 5000))
        fail_msg("at --max-conns 4: expected the longest-idle connection closed for a new one");
    for (int i = 1; i < 4; i++)
        say(fds[i], "{\"cmd\":\"ping\"}\n", "\"pong\":true");
    say(late, "{\"cmd\":\"status\"}\n", "\"connections_refused\":0");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    close(late);
    proc_stop(&p);
}

/* A malloc'd text-mode line: head, open repeated n times, close repeated n
 * times, tail, newline. */
static char *nested_line(const char *head, const char *open, const char *close_, int n,
                         const char *tail)
{
    size_t cap = strlen(head) + (strlen(open) + strlen(close_)) * (size_t)n + strlen(tail) + 2;
    char *line = malloc(cap), *p = line;
    assert_non_null(line);
    p += sprintf(p, "%s", head);
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", open);
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", close_);
    sprintf(p, "%s\n", tail);
    return line;
}

/* Text mode runs on a server worker thread, whose stack is RLIMIT_STACK's
 * size, and jansson recurses once per level of nesting (up to 2048). On a
 * worker with a 128 KiB stack, deep nesting is an error answer, never a
 * crash; the limit leaves every real command alone. */
static void test_text_mode_deep_nesting(void **state)
{
    fixture *fx = *state;
#ifdef __SANITIZE_ADDRESS__ /* sanitizer frames are larger: normal work needs more */
    const char *sh = "ulimit -s 512 && exec \"$0\" \"$@\"";
#else
    const char *sh = "ulimit -s 128 && exec \"$0\" \"$@\"";
#endif
    char bin[512], listen[64];
    proc p = {0};
    int port = free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char *const argv[] = {"/bin/sh", "-c", (char *)sh,
                          (char *)proc_bin("tcpops-people", bin, sizeof(bin)), "--listen", listen,
                          "--data-dir", fx->dir, (char *)fx->db[0], (char *)fx->db[1], NULL};
    assert_int_equal(proc_start(&p, argv, 0), 0);
    assert_int_equal(wait_port(port, 10000), 0);

    char *lines[] = {
        /* A text-mode line starts with '{'; a '[' would be a binary frame. */
        nested_line("{\"cmd\":\"people.List\",\"after\":", "{\"a\":", "}", 2000, "}"),
        nested_line("{\"x\":", "[", "]", 2000, "}"),
        nested_line("{\"cmd\":\"people.List\",\"x\":", "[", "", 1000, ""),
        nested_line("", "{\"a\":", "", 1000, ""),
        nested_line("{\"cmd\":\"people.List\",\"x\":", "[", "]", 33, "}"),
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        int fd = raw_connect(port);
        say(fd, lines[i], "nested more than 32 levels");
        close(fd);
        free(lines[i]);
    }
    /* Brackets inside strings are not nesting; 32 levels still parse. */
    int fd = raw_connect(port);
    char *deep32 = nested_line("{\"cmd\":\"people.List\",\"x\":", "[", "]", 31, "}");
    say(fd, deep32, "unknown field \\\"x\\\"");
    free(deep32);
    say(fd, "{\"cmd\":\"people.Create\",\"name\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}\n",
        "{\"name\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}");
    say(fd, "{\"cmd\":\"people.List\"}\n", "\"bob\"");
    close(fd);
    if (proc_wait(&p, 0) != -1)
        fail_msg("expected tcpops-people with a 128 KiB stack to survive deep nesting; it exited");
    proc_stop(&p);
}

/* ---- who may share a port ---- */

/* Runs build/bin/NAME --listen 127.0.0.1:PORT --data-dir DIR, expecting it to
 * refuse to start: exit 1 within 5 s with "address in use" and hint (when
 * not NULL) on stderr. */
static void expect_refused(const char *name, int port, const char *dir, const char *hint,
                           const char *what)
{
    char bin[512], listen[64], out[1024], err[4096];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char *const argv[] = {(char *)proc_bin(name, bin, sizeof(bin)), "--listen", listen,
                          "--data-dir", (char *)dir, NULL};
    int code = proc_run(argv, out, sizeof(out), err, sizeof(err), 5000);
    if (code != 1 || strstr(err, "address in use") == NULL ||
        (hint != NULL && strstr(err, hint) == NULL))
        fail_msg("%s: expected %s to exit 1 with \"address in use\"%s%s on stderr; got exit %d "
                 "(-1: still running after 5 s), stderr \"%s\"",
                 what, name, hint ? " and " : "", hint ? hint : "", code, err);
}

/* The pid of the worker that answers a text-mode status on a new
 * connection to port. */
static long status_pid(int port)
{
    char got[4096];
    int fd = raw_connect(port);
    size_t w = 0;
    const char *line = "{\"cmd\":\"status\"}\n";
    assert_int_equal(rpc_sock_write_all(fd, line, strlen(line), rpc_now_ms() + 2000, &w), 0);
    read_line(fd, got, sizeof(got));
    close(fd);
    const char *p = strstr(got, "\"pid\":");
    if (p == NULL)
        fail_msg("status on port %d: expected a pid, got \"%s\"", port, got);
    return strtol(p + 6, NULL, 10);
}

/* Waits until connections to port reach both pids (SO_REUSEPORT spreads
 * them by a hash of the client's port). */
static void expect_both_serve(int port, long a, long b)
{
    int seen_a = 0, seen_b = 0;
    for (int i = 0; i < 200 && !(seen_a && seen_b); i++) {
        long pid = status_pid(port);
        seen_a |= pid == a;
        seen_b |= pid == b;
    }
    if (!(seen_a && seen_b))
        fail_msg("expected workers %ld and %ld both to answer on port %d; %s did not in 200 "
                 "connections",
                 a, b, port, seen_a ? "the second" : "the first");
}

/* SO_REUSEPORT lets any process of this user bind beside a worker: only
 * workers of the same service and the same store may share a port. Another
 * --data-dir, or another service, is refused with "address in use"; the same
 * store joins (scale-up, rolling restart), and the claim passes on with
 * whichever worker stays. */
static void test_port_shared_only_by_the_same_service_and_store(void **state)
{
    fixture *fx = *state;
    char other[300], same[300];
    snprintf(other, sizeof(other), "%s/other", fx->dir);
    snprintf(same, sizeof(same), "%s/./", fx->dir); /* the same store, spelt differently */
    int port = free_port();
    proc a = {0}, b = {0};
    assert_int_equal(proc_start_service(&a, "tcpops-people", port, fx->dir, NULL), 0);

    expect_refused("tcpops-people", port, other, "--data-dir", "people with another store");
    expect_refused("tcpops-pets", port, fx->dir, NULL, "pets on people's port");
    /* Nothing of the refused store was created. */
    char db[400];
    snprintf(db, sizeof(db), "%s/people.db", other);
    if (access(db, F_OK) == 0)
        fail_msg("expected the refused worker to leave %s alone; it created it", db);

    /* The same store joins and serves beside the first. */
    assert_int_equal(proc_start_service(&b, "tcpops-people", port, same, NULL), 0);
    expect_both_serve(port, a.pid, b.pid);

    /* The first leaves (a rolling restart's old worker): the claim stays
     * with the second. */
    proc_signal(&a, SIGTERM);
    assert_int_equal(proc_wait(&a, 10000), 0);
    expect_refused("tcpops-people", port, other, NULL, "another store after the first left");
    assert_int_equal(status_pid(port), b.pid);

    /* Once nobody serves the port, another store may have it. */
    proc_signal(&b, SIGTERM);
    assert_int_equal(proc_wait(&b, 10000), 0);
    assert_int_equal(proc_start_service(&a, "tcpops-people", port, other, NULL), 0);
    assert_int_equal(status_pid(port), a.pid);
    proc_stop(&a);
}

/* A port held by a program that is not a tcpops worker (no SO_REUSEPORT):
 * "address in use" with a hint, exit 1. */
static void test_port_held_by_another_program(void **state)
{
    fixture *fx = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    int port = rpc_sock_port(fd);
    expect_refused("tcpops-people", port, fx->dir, "not a tcpops-people worker",
                   "a port another program listens on");
    close(fd);
}

/* ---- hostile frames (RELIABILITY.md scenario 6) ---- */

typedef struct good_client {
    rpc_channel *ch;
    _Atomic int stop;
    int ok, failed;
    char problem[320];
} good_client;

static void *good_loop(void *arg)
{
    good_client *g = arg;
    /* people.List with an empty request: the names must be exactly the seed. */
    while (!atomic_load(&g->stop)) {
        rpc_call c = {.method = "people.List", .deadline_ms = 2000};
        int st = rpc_channel_call(g->ch, &c);
        /* field 1 (names) "bob", field 1 "jane" */
        static const uint8_t want[] = {0x0a, 3, 'b', 'o', 'b', 0x0a, 4, 'j', 'a', 'n', 'e'};
        if (st == 0 && c.resp_len == sizeof(want) && memcmp(c.resp, want, sizeof(want)) == 0)
            g->ok++;
        else if (g->failed++ == 0)
            snprintf(g->problem, sizeof(g->problem), "%s: %s", rpc_status_name(st), c.error);
        rpc_call_fini(&c);
    }
    return NULL;
}

static void send_and_expect_close(int port, const void *bytes, size_t n, const char *what)
{
    int fd = raw_connect(port);
    size_t w = 0;
    rpc_sock_write_all(fd, bytes, n, rpc_now_ms() + 2000, &w);
    char buf[4096];
    int64_t deadline = rpc_now_ms() + 5000;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - rpc_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            fail_msg("%s: expected the service to close the connection; it stayed open", what);
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            break;
    }
    close(fd);
}

static void test_hostile_frames_cost_a_good_client_nothing(void **state)
{
    fixture *fx = *state;
    good_client g = {0};
    g.ch = channel_to("people", fx->people_addr, 0);
    pthread_t th;
    pthread_create(&th, NULL, good_loop, &g);

    int port = fx->people_port;
    uint8_t big[8];
    rpc_frame_put_len(big, 0xFFFFFFFFu);
    send_and_expect_close(port, big, 4, "length 0xFFFFFFFF");
    rpc_frame_put_len(big, (1u << 20) + 1);
    send_and_expect_close(port, big, 4, "length max+1");
    send_and_expect_close(port, "\x00\x00\x00\x00", 4, "length 0");
    send_and_expect_close(port, "\x00\x00\x00\x05\xff\xff\xff\xff\xff", 9, "garbage protobuf");
    send_and_expect_close(port, "\x00\x00\x00\x02\x10\x63", 6, "unknown kind 99");
    send_and_expect_close(port, "\x00\x00\x00\x04\x08\x01\x10\x02", 8, "RESPONSE to a server");
    /* id 1 twice: a duplicate in-flight id */
    send_and_expect_close(port,
                          "\x00\x00\x00\x0f\x08\x01\x10\x01\x1a\x09svc.Status"
                          "\x00\x00\x00\x0f\x08\x01\x10\x01\x1a\x09svc.Status",
                          38, "duplicate id");
    srand(7);
    for (int round = 0; round < 20; round++) {
        uint8_t noise[256];
        for (size_t i = 0; i < sizeof(noise); i++)
            noise[i] = (uint8_t)rand();
        /* A valid length, so the bytes reach the protobuf decoder. */
        rpc_frame_put_len(noise, sizeof(noise) - 4);
        send_and_expect_close(port, noise, sizeof(noise), "random protobuf");
    }
    /* An unknown method is an answer, not a disconnect. */
    rpc_call c = {.method = "people.Nope", .deadline_ms = 2000};
    assert_int_equal(rpc_channel_call(g.ch, &c), TCPOPS__STATUS__UNIMPLEMENTED);
    rpc_call_fini(&c);

    usleep(200 * 1000);
    atomic_store(&g.stop, 1);
    pthread_join(th, NULL);
    rpc_channel_free(g.ch);
    if (g.failed != 0)
        fail_msg("good client: %d of %d calls failed; first: %s", g.failed, g.ok + g.failed,
                 g.problem);
    assert_true(g.ok > 0);
    /* The service is still running and answers. */
    assert_int_equal(proc_wait(&fx->people, 0), -1);
    cli(fx->people_addr, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
}

/* 50 peers each start a 1 MiB frame and stall after 256 KiB: memory grows by
 * what they sent (nothing is allocated for what they only claim), they are
 * cut off at the partial-frame timeout, and the memory comes back. */
static void test_stalled_frames_memory_bounded(void **state)
{
    fixture *fx = *state;
    /* A second people worker with a short partial-frame timeout. */
    proc p = {0};
    int port = free_port();
    const char *const extra[] = {"--partial-timeout-ms", "1000", fx->db[0], fx->db[1], NULL};
    assert_int_equal(proc_start_service(&p, "tcpops-people", port, fx->dir, extra), 0);
    long base = proc_rss_kb(&p);
    enum { PEERS = 50, SENT = 256 * 1024 };
    int fds[PEERS];
    uint8_t *chunk = calloc(1, SENT);
    rpc_frame_put_len(chunk, 1u << 20);
    for (int i = 0; i < PEERS; i++) {
        fds[i] = raw_connect(port);
        size_t w = 0;
        rpc_sock_write_all(fds[i], chunk, SENT, rpc_now_ms() + 2000, &w);
    }
    free(chunk);
    usleep(300 * 1000);
    long during = proc_rss_kb(&p);
    int closed = 0;
    for (int i = 0; i < PEERS; i++) {
        char buf[256];
        struct pollfd pf = {.fd = fds[i], .events = POLLIN};
        int64_t deadline = rpc_now_ms() + 10000;
        while (rpc_now_ms() < deadline && poll(&pf, 1, 100) >= 0) {
            ssize_t r = pf.revents ? recv(fds[i], buf, sizeof(buf), 0) : 1;
            if (r == 0 || (r < 0 && errno == ECONNRESET)) {
                closed++;
                break;
            }
        }
        close(fds[i]);
    }
    usleep(200 * 1000);
    long after = proc_rss_kb(&p);
    print_message("RSS: %ld KiB idle, %ld KiB with 50 stalled 1 MiB frames, %ld KiB after\n",
                  base, during, after);
    assert_int_equal(closed, PEERS);
#ifndef __SANITIZE_ADDRESS__ /* ASan's shadow and quarantine make RSS say little */
    /* What was sent (12.5 MiB) plus buffer doubling, never the 50 MiB claimed. */
    if (during - base > 40 * 1024)
        fail_msg("expected memory bounded by what was sent; grew by %ld KiB", during - base);
    if (after - base > 16 * 1024)
        fail_msg("expected memory back after the peers were cut off; still %ld KiB above",
                 after - base);
#endif
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    cli(addr, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
    proc_stop(&p);
}

/* ---- answers as large as --max-frame allows ---- */

/* give_bob_pets on SQLite: the file under dir. */
static void give_bob_pets_sqlite(const char *dir, int n)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof(path), "%s/people.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        fail_msg("expected to open %s, got \"%s\"", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO ownership (person_id, pet_id) "
                                        "SELECT id, ?1 FROM people WHERE name = 'bob'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, ((int64_t)1 << 62) + i);
        if (sqlite3_step(st) != SQLITE_DONE)
            fail_msg("expected pet %d of bob to be stored, got \"%s\"", i, sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Gives bob n more pets straight in fx's store (one transaction), with ids
 * of nine varint bytes each, so that bob's PetIds answer is about 9n bytes. */
static void give_bob_pets(const fixture *fx, int n)
{
    char sql[256], out[1024];
    if (!testdb_is_pg()) {
        give_bob_pets_sqlite(fx->dir, n);
        return;
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO ownership (person_id, pet_id) SELECT p.id, (1::bigint << 62) + g "
             "FROM people p, generate_series(0, %d) g WHERE p.name = 'bob'", n - 1);
    if (testdb_sql(fx->url, sql, out, sizeof(out)) < 0)
        fail_msg("expected bob's %d pets stored, got \"%s\"", n, out);
}

/* A service started with --max-frame 8M sends an answer of 5 MiB, over the
 * 4 MiB the write buffer held by default before it followed --max-frame:
 * the answer arrives whole instead of the connection being cut. */
static void test_answer_larger_than_4mib_under_max_frame_8m(void **state)
{
    (void)state;
    fixture fx = {0};
    char addr[64];
    proc p;
    const int extra_pets = 600000; /* 9 bytes each: ~5.4 MB */
    new_store(&fx);
    const char *const big[] = {"--max-frame", "8M", fx.db[0], fx.db[1], NULL};
    int port = free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(proc_start_service(&p, "tcpops-people", port, fx.dir, big), 0);
    /* The seed is in place (on PostgreSQL: the first use migrates). */
    cli(addr, 0, "{\"names\":[\"bob\",\"jane\"]}", NULL, "people", "list", NULL);
    give_bob_pets(&fx, extra_pets);

    rpc_channel *ch = channel_to("big", addr, 8u << 20);
    Tcpops__PetIdsRequest req = TCPOPS__PET_IDS_REQUEST__INIT;
    req.owner = (char *)"bob";
    uint8_t body[64];
    size_t len = tcpops__pet_ids_request__pack(&req, body);
    rpc_call c = {.method = "people.PetIds", .body = body, .body_len = len,
                  .deadline_ms = 30000};
    int st = rpc_channel_call(ch, &c);
    if (st != TCPOPS__STATUS__OK)
        fail_msg("expected bob's %d pet ids under --max-frame 8M, got status %d (\"%s\")",
                 extra_pets + 2, st, c.error);
    if (c.resp_len <= (4u << 20))
        fail_msg("expected an answer over 4 MiB, got %zu bytes", c.resp_len);
    Tcpops__PetIdsResponse *resp = tcpops__pet_ids_response__unpack(NULL, c.resp_len, c.resp);
    assert_non_null(resp);
    if (resp->n_ids != (size_t)extra_pets + 2)
        fail_msg("expected %d pet ids, got %zu", extra_pets + 2, resp->n_ids);
    tcpops__pet_ids_response__free_unpacked(resp, NULL);
    rpc_call_fini(&c);
    rpc_channel_free(ch);
    proc_stop(&p);
    rm_rf(fx.dir);
}

/* Runs sql on dir/people.db (SQLite). */
static void people_sql(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/people.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        fail_msg("expected to open %s, got \"%s\"", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* A worker says "ready" on --ready-fd only after a heartbeat put it in the
 * member list (where the gateway finds it): while its beats fail (a
 * trigger refuses them) the pipe stays silent; once they succeed, the line
 * comes. */
static void test_ready_only_after_a_beat_that_succeeds(void **state)
{
    fixture *fx = *state;
    people_sql(fx->dir, "CREATE TRIGGER test_no_beats BEFORE INSERT ON members "
                        "BEGIN SELECT RAISE(ABORT, 'no beats in this test'); END");
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(fcntl(p[1], F_SETFD, 0), 0); /* the child's */
    char bin[512], fd[16], log[320];
    snprintf(fd, sizeof(fd), "%d", p[1]);
    snprintf(log, sizeof(log), "%s/second.log", fx->dir);
    char *argv[] = {(char *)proc_bin("tcpops-people", bin, sizeof(bin)), "--listen",
                    fx->people_addr, "--data-dir", fx->dir, "--ready-fd", fd, NULL};
    proc second = {0};
    assert_int_equal(proc_start_logged(&second, argv, log), 0);
    close(p[1]);
    if (!proc_wait_file(log, "heartbeat failed", 10000))
        fail_msg("expected the second worker to log \"heartbeat failed\" (see %s)", log);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    if (poll(&pf, 1, 0) != 0)
        fail_msg("expected no ready line while its heartbeats fail; the pipe has %#x",
                 pf.revents);

    people_sql(fx->dir, "DROP TRIGGER test_no_beats");
    char line[128] = "";
    if (poll(&pf, 1, 10000) == 1) {
        ssize_t n = read(p[0], line, sizeof(line) - 1);
        line[n > 0 ? n : 0] = '\0';
    }
    if (strncmp(line, "ready member=127.0.0.1:", 23) != 0)
        fail_msg("expected \"ready member=127.0.0.1:PORT\" once a beat succeeded, got \"%s\"",
                 line);
    close(p[0]);
    proc_stop(&second);
}

static void test_sigterm_exits_0(void **state)
{
    fixture *fx = *state;
    proc_signal(&fx->people, SIGTERM);
    proc_signal(&fx->pets, SIGTERM);
    assert_int_equal(proc_wait(&fx->people, 10000), 0);
    assert_int_equal(proc_wait(&fx->pets, 10000), 0);
}

int main(int argc, char **argv)
{
    int rc = testdb_init(argc, argv);
    if (rc != 0)
        return rc;
    /* The service's behaviour: the same on either backend. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_method_through_the_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_inputs_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_request_strings_is_invalid, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_line_too_long_is_told_then_closed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_half_close_answers_every_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binary_half_close_answers_every_call, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_text_80000_pipelined_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_limit_evicts_longest_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_mode_deep_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_frames_cost_a_good_client_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_frames_memory_bounded, setup, teardown),
        cmocka_unit_test(test_answer_larger_than_4mib_under_max_frame_8m),
        cmocka_unit_test_setup_teardown(test_sigterm_exits_0, setup, teardown),
    };
    /* SQLite only: the port lock's identity is the database file's path;
     * the next two touch no store (an unreachable address, a port another
     * program holds), so one run says all they can; the data directory
     * holds only SQLite's file; a trigger on SQLite's members table stands
     * for a store that refuses heartbeats. */
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test_setup_teardown(test_port_shared_only_by_the_same_service_and_store,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_is_exit_3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_held_by_another_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_dir_parent_must_exist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_only_after_a_beat_that_succeeds, setup,
                                        teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    /* tcpops-cli's deadline (2 s by default) is when to give up, not a speed
     * this test asserts: on a loaded machine a write's round trips to
     * PostgreSQL can take longer. */
    setenv("TCPOPS_CLI_TIMEOUT", "10000", 1);
    /* TCPOPS_TEST_FILTER=test_text* runs some scenarios (e.g. to repeat them). */
    if (getenv("TCPOPS_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TCPOPS_TEST_FILTER"));
    rc = cmocka_run_group_tests_name(testdb_name(), tests, NULL, NULL);
    if (!testdb_is_pg())
        rc += cmocka_run_group_tests_name("sqlite only", sqlite_only, NULL, NULL);
    return rc != 0; /* a count of failures could be mistaken for PGSERVER_SKIP */
}
