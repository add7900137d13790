/* protobuf <-> JSON through descriptors: shapes, round trips, refusals. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/pbjson.h"
#include "tcpops.pb-c.h"

static char *dump(const ProtobufCMessage *m)
{
    json_t *j = pbjson_from_message(m);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void test_message_to_json(void **state)
{
    (void)state;
    Tcpops__Pet a = TCPOPS__PET__INIT, b = TCPOPS__PET__INIT;
    a.id = 1;
    a.name = "bixa";
    b.id = 3;
    b.name = "r\"e\\x";
    Tcpops__Pet *pets[] = {&a, &b};
    uint64_t missing[] = {9};
    Tcpops__GetPetsByIdsResponse r = TCPOPS__GET_PETS_BY_IDS_RESPONSE__INIT;
    r.n_pets = 2;
    r.pets = pets;
    r.n_missing = 1;
    r.missing = missing;
    char *s = dump(&r.base);
    assert_string_equal(s, "{\"missing\":[9],\"pets\":[{\"id\":1,\"name\":\"bixa\"},"
                           "{\"id\":3,\"name\":\"r\\\"e\\\\x\"}]}");
    free(s);
}

/* A proto map (StatusResponse.counters) shows as a JSON object. */
static void test_map_as_object(void **state)
{
    (void)state;
    Tcpops__StatusResponse__CountersEntry a = TCPOPS__STATUS_RESPONSE__COUNTERS_ENTRY__INIT;
    Tcpops__StatusResponse__CountersEntry b = TCPOPS__STATUS_RESPONSE__COUNTERS_ENTRY__INIT;
    a.key = "idle_closed";
    a.value = 3;
    b.key = "oversize_frames";
    b.value = 0;
    Tcpops__StatusResponse__CountersEntry *entries[] = {&a, &b};
    Tcpops__StatusResponse r = TCPOPS__STATUS_RESPONSE__INIT;
    r.service = "people";
    r.n_counters = 2;
    r.counters = entries;
    char *s = dump(&r.base);
    assert_non_null(strstr(s, "\"counters\":{\"idle_closed\":3,\"oversize_frames\":0}"));
    free(s);
}

static void test_json_to_message_and_back(void **state)
{
    (void)state;
    json_error_t je;
    json_t *in = json_loads("{\"cmd\":\"people.List\",\"limit\":5,\"after\":\"bob\"}", 0, &je);
    ProtobufCMessage *m = NULL;
    char err[128];
    assert_int_equal(pbjson_to_message(&tcpops__list_people_request__descriptor, in, &m, err,
                                       sizeof(err)),
                     0);
    Tcpops__ListPeopleRequest *req = (Tcpops__ListPeopleRequest *)m;
    assert_int_equal(req->limit, 5);
    assert_string_equal(req->after, "bob");
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(in);

    in = json_loads("{\"ids\":[1,2,3]}", 0, &je);
    assert_int_equal(pbjson_to_message(&tcpops__get_pets_by_ids_request__descriptor, in, &m,
                                       err, sizeof(err)),
                     0);
    Tcpops__GetPetsByIdsRequest *g = (Tcpops__GetPetsByIdsRequest *)m;
    assert_int_equal(g->n_ids, 3);
    assert_int_equal(g->ids[2], 3);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(in);
}

static void test_refusals(void **state)
{
    (void)state;
    struct {
        const char *json;
        const ProtobufCMessageDescriptor *d;
        const char *want;
    } cases[] = {
        {"{\"nmae\":\"x\"}", &tcpops__create_person_request__descriptor, "unknown field"},
        {"{\"name\":5}", &tcpops__create_person_request__descriptor, "wrong type"},
        {"{\"limit\":-1}", &tcpops__list_people_request__descriptor, "out of range"},
        {"{\"limit\":4294967296}", &tcpops__list_people_request__descriptor, "out of range"},
        {"{\"ids\":[1,\"two\"]}", &tcpops__get_pets_by_ids_request__descriptor, "wrong type"},
        {"{\"ids\":7}", &tcpops__get_pets_by_ids_request__descriptor, "array"},
        {"[]", &tcpops__create_person_request__descriptor, "JSON object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t je;
        json_t *in = json_loads(cases[i].json, JSON_DECODE_ANY, &je);
        ProtobufCMessage *m = (ProtobufCMessage *)0x1;
        char err[128] = "";
        int rc = pbjson_to_message(cases[i].d, in, &m, err, sizeof(err));
        if (rc == 0 || strstr(err, cases[i].want) == NULL)
            fail_msg("%s: expected an error mentioning \"%s\", got rc %d \"%s\"", cases[i].json,
                     cases[i].want, rc, err);
        assert_ptr_equal(m, (ProtobufCMessage *)0x1);
        json_decref(in);
    }
}

/* A string with a NUL inside (a parser given JSON_ALLOW_NUL keeps it) would
 * be cut at the NUL as a C string: refused. */
static void test_nul_in_a_string(void **state)
{
    (void)state;
    json_error_t je;
    json_t *in = json_loads("{\"name\":\"nulA\\u0000evil\"}", JSON_ALLOW_NUL, &je);
    assert_non_null(in);
    ProtobufCMessage *m = NULL;
    char err[128] = "";
    assert_int_equal(pbjson_to_message(&tcpops__create_person_request__descriptor, in, &m, err,
                                       sizeof(err)),
                     -EINVAL);
    assert_null(m);
    assert_non_null(strstr(err, "NUL"));
    json_decref(in);
}

/* value nested n levels deep: {"a":{"a":...value...}} or [[...value...]] */
static json_t *nest(json_t *value, int n, int arrays)
{
    for (int i = 0; i < n; i++) {
        json_t *outer = arrays ? json_array() : json_object();
        if (arrays)
            json_array_append_new(outer, value);
        else
            json_object_set_new(outer, "a", value);
        value = outer;
    }
    return value;
}

/* 1,000 levels of JSON wherever a request or a nested message could take
 * them: an error answer each time (pbjson's recursion follows the message
 * types, not the JSON). */
static void test_deep_json_is_an_error(void **state)
{
    (void)state;
    struct {
        json_t *in;
        const ProtobufCMessageDescriptor *d;
        const char *want;
    } cases[] = {
        {nest(json_integer(1), 1000, 0), &tcpops__create_person_request__descriptor,
         "unknown field"},
        {json_pack("{s:o}", "name", nest(json_string("x"), 1000, 1)),
         &tcpops__create_person_request__descriptor, "wrong type"},
        {json_pack("{s:[o]}", "members", nest(json_string("x"), 1000, 0)),
         &tcpops__status_response__descriptor, "unknown field"},
        {json_pack("{s:[{s:o}]}", "pets", "id", nest(json_integer(1), 1000, 1)),
         &tcpops__get_pets_by_ids_response__descriptor, "wrong type"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(cases[i].in);
        ProtobufCMessage *m = NULL;
        char err[128] = "";
        int rc = pbjson_to_message(cases[i].d, cases[i].in, &m, err, sizeof(err));
        if (rc == 0 || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: expected an error mentioning \"%s\", got rc %d \"%s\"", i,
                     cases[i].want, rc, err);
        json_decref(cases[i].in);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_to_json),
        cmocka_unit_test(test_map_as_object),
        cmocka_unit_test(test_json_to_message_and_back),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_nul_in_a_string),
        cmocka_unit_test(test_deep_json_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
