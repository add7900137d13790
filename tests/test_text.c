/* svc/text.c, the text-mode bridge, and the runtime's own Status method, on
 * the people service in process (svc_local) over a temporary database
 * (SQLite, or PostgreSQL when run as `test_text postgresql`: testdb.h):
 * every answer is the exact line a client reads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "people_svc/people.h"
#include "proc.h"
#include "svc/svc.h"
#include "svc/text.h"
#include "tcpops.pb-c.h"
#include "testdb.h"

typedef struct fixture {
    char dir[256];
    char url[320];      /* PostgreSQL: the test's own database (testdb.h) */
    svc_local *l;
} fixture;

static int setup(void **state)
{
    char err[256];
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(make_temp_dir(fx->dir, sizeof(fx->dir)), 0);
    if (testdb_new(fx->url, sizeof(fx->url)) < 0)
        fail_msg("expected a fresh %s database, got \"%s\"", testdb_name(), fx->url);
    if (svc_local_new(&fx->l, people_service(), fx->dir, testdb_is_pg() ? fx->url : NULL, err,
                      sizeof(err)) != 0)
        fail_msg("expected the people service in process on %s, got \"%s\"", testdb_name(),
                 err);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    svc_local_free(fx->l);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

/* Sends line and expects exactly want back. */
static void say(svc_local *l, const char *line, const char *want)
{
    char *got = svc_local_text(l, line, strlen(line));
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: expected %s, got %s", line, want, got);
    free(got);
}

static void test_lines_answer_exactly(void **state)
{
    fixture *fx = *state;
    svc_local *l = fx->l;
    say(l, "{\"cmd\":\"ping\"}", "{\"pong\":true}");
    say(l, "{\"cmd\":\"people.List\"}", "{\"names\":[\"bob\",\"jane\"]}");
    say(l, "{\"cmd\":\"people.Create\",\"name\":\"ann\"}", "{\"name\":\"ann\"}");
    say(l, "{\"cmd\":\"people.Create\",\"name\":\"ann\"}",
        "{\"error\":\"a person named \\\"ann\\\" already exists\",\"code\":\"ALREADY_EXISTS\"}");
    say(l, "{\"cmd\":\"nope\"}",
        "{\"error\":\"unknown command \\\"nope\\\" (try {\\\"cmd\\\":\\\"help\\\"})\","
        "\"code\":\"UNIMPLEMENTED\"}");
    say(l, "{}", "{\"error\":\"missing \\\"cmd\\\" (try {\\\"cmd\\\":\\\"help\\\"})\","
                 "\"code\":\"INVALID_ARGUMENT\"}");
    say(l, "[1]", "{\"error\":\"expected a JSON object\",\"code\":\"INVALID_ARGUMENT\"}");
    say(l, "{\"cmd\":\"people.List\",\"limit\":\"x\"}",
        "{\"error\":\"people.List: field \\\"limit\\\" has the wrong type\",\"code\":\"INVALID_ARGUMENT\"}");
}

static void test_help_lists_every_command(void **state)
{
    fixture *fx = *state;
    char *got = svc_local_text(fx->l, "{\"cmd\":\"help\"}", 14);
    assert_non_null(got);
    const char *want[] = {"\"status\"", "\"ping\"", "\"people.List\"", "\"svc.Status\"",
                          "\"people.Status\""};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (strstr(got, want[i]) == NULL)
            fail_msg("help: expected %s among the commands, got %s", want[i], got);
    free(got);
}

/* The line the server sends before it closes a text connection. */
static void test_close_line(void **state)
{
    (void)state;
    char *got = svc_text_error(NULL, "line too long");
    assert_non_null(got);
    assert_string_equal(got, "{\"error\":\"line too long\"}");
    free(got);
    assert_int_equal(SVC_TEXT_FIRST_BYTE, '{');
}

/* Status answers this worker even before its first heartbeat, under both
 * names, in text mode and as a call. */
static void test_status_lists_self(void **state)
{
    fixture *fx = *state;
    rpc_reply rep;
    assert_int_equal(svc_local_call(fx->l, "people.Status", NULL, 0, &rep), 0);
    assert_int_equal(rep.status, TCPOPS__STATUS__OK);
    Tcpops__StatusResponse *r = tcpops__status_response__unpack(NULL, rep.body_len, rep.body);
    assert_non_null(r);
    assert_string_equal(r->service, "people");
    assert_string_equal(r->address, "local");
    assert_int_equal(r->n_members, 1);
    assert_string_equal(r->members[0]->address, "local");
    assert_int_equal(r->n_counters, RPC_C_COUNT);
    assert_int_equal(r->write_status, TCPOPS__STATUS__OK);
    tcpops__status_response__free_unpacked(r, NULL);
    free(rep.body);

    char *got = svc_local_text(fx->l, "{\"cmd\":\"status\"}", 16);
    assert_non_null(got);
    if (strstr(got, "\"service\":\"people\"") == NULL ||
        strstr(got, "\"members\":[{\"address\":\"local\"") == NULL)
        fail_msg("status: expected service people and member local, got %s", got);
    free(got);
    assert_int_equal(svc_local_call(fx->l, "people.Nope", NULL, 0, &rep), -ENOENT);
}

int main(int argc, char **argv)
{
    int rc = testdb_init(argc, argv);
    if (rc != 0)
        return rc;
    /* The same answers on either backend (test_text, test_text_pg). */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines_answer_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_lists_every_command, setup, teardown),
        cmocka_unit_test(test_close_line),
        cmocka_unit_test_setup_teardown(test_status_lists_self, setup, teardown),
    };
    return cmocka_run_group_tests_name(testdb_name(), tests, NULL, NULL) != 0;
}
