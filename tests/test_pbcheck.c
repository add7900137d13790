/* rpc_pb_check: string fields holding a NUL byte, found in the encoded bytes
 * (protobuf-c's unpack would cut them there), at any depth; bytes fields and
 * unknown fields may hold anything. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/pbcheck.h"
#include "tcpops.pb-c.h"

static int check(const ProtobufCMessageDescriptor *d, const char *bytes, size_t n, char *why)
{
    return rpc_pb_check(d, (const uint8_t *)bytes, n, why, 160);
}

static void test_whole_strings_pass(void **state)
{
    (void)state;
    char why[160];
    /* CreatePersonRequest{name:"ann"} */
    assert_int_equal(check(&tcpops__create_person_request__descriptor, "\x0a\x03" "ann", 5, why),
                     0);
    /* Frame{id:1, kind:REQUEST, method:"a.B", body:"\0\0"}: bytes may hold NULs */
    assert_int_equal(check(&tcpops__frame__descriptor,
                           "\x08\x01\x10\x01\x1a\x03" "a.B\x42\x02\0\0", 13, why),
                     0);
    /* an unknown field 15 with a NUL inside is never read as a string */
    assert_int_equal(check(&tcpops__create_person_request__descriptor, "\x7a\x02" "a\0", 4, why),
                     0);
    /* fixed64, fixed32 and varint fields of unknown numbers are skipped */
    assert_int_equal(check(&tcpops__create_person_request__descriptor,
                           "\x79\1\2\3\4\5\6\7\x08\x7d\1\2\3\4\x78\x96\x01", 17, why),
                     0);
    assert_int_equal(check(&tcpops__create_person_request__descriptor, "", 0, why), 0);
}

static void test_nul_in_a_string_is_refused(void **state)
{
    (void)state;
    char why[160];
    assert_int_equal(
        check(&tcpops__create_person_request__descriptor, "\x0a\x09" "nulA\0evil", 11, why),
        -EINVAL);
    assert_non_null(strstr(why, "\"name\""));
    assert_non_null(strstr(why, "NUL"));
    /* the method of a Frame */
    assert_int_equal(check(&tcpops__frame__descriptor,
                           "\x08\x01\x10\x01\x1a\x05" "a.B\0x", 11, why),
                     -EINVAL);
    assert_non_null(strstr(why, "\"method\""));
    /* a NUL as the last byte, or the whole string */
    assert_int_equal(check(&tcpops__pet_ids_request__descriptor, "\x0a\x01\0", 3, why), -EINVAL);
    /* a field given twice: the last one counts, and each is checked */
    assert_int_equal(check(&tcpops__create_person_request__descriptor,
                           "\x0a\x01" "a\x0a\x02" "b\0", 7, why),
                     -EINVAL);
}

static void test_nested_strings_are_checked(void **state)
{
    (void)state;
    char why[160];
    /* StatusResponse{members:[{address:"h\0"}]} */
    assert_int_equal(check(&tcpops__status_response__descriptor,
                           "\x2a\x04\x0a\x02" "h\0", 6, why),
                     -EINVAL);
    assert_non_null(strstr(why, "\"address\""));
    /* StatusResponse{counters:{"k\0": 1}}: a map key */
    assert_int_equal(check(&tcpops__status_response__descriptor,
                           "\x42\x06\x0a\x02" "k\0\x10\x01", 8, why),
                     -EINVAL);
    assert_non_null(strstr(why, "\"key\""));
    /* GetPetsByIdsResponse{pets:[{id:1,name:"rex"}]} */
    assert_int_equal(check(&tcpops__get_pets_by_ids_response__descriptor,
                           "\x0a\x07\x08\x01\x12\x03" "rex", 9, why),
                     0);
}

static void test_malformed_bytes_are_protocol_errors(void **state)
{
    (void)state;
    char why[160];
    const struct {
        const char *b;
        size_t n;
        const char *what;
    } bad[] = {
        {"\x0a\x05" "ab", 4, "string longer than the buffer"},
        {"\x0a", 1, "length missing"},
        {"\x08", 1, "varint missing"},
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "varint of 11 bytes"},
        {"\x09\1\2\3", 4, "fixed64 cut off"},
        {"\x0d\1\2", 3, "fixed32 cut off"},
        {"\x0b\x0c", 2, "a group"},
        {"\x2a\x03\x0a\x05x", 5, "nested message longer than its field"},
        {"\x0a\xff\xff\xff\xff\x0f", 6, "length of 4 GiB"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = check(&tcpops__status_response__descriptor, bad[i].b, bad[i].n, why);
        if (rc != -EPROTO)
            fail_msg("%s: expected -EPROTO, got %d", bad[i].what, rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_strings_pass),
        cmocka_unit_test(test_nul_in_a_string_is_refused),
        cmocka_unit_test(test_nested_strings_are_checked),
        cmocka_unit_test(test_malformed_bytes_are_protocol_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
