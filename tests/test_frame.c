/* The frame decoder and Frame unpacking: pure functions over buffers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/buf.h"
#include "rpc/frame.h"

#define MAX (1u << 20)

/* Encodes a REQUEST with the given id and method into a malloc'd buffer. */
static uint8_t *encode(uint64_t id, const char *method, const char *body, size_t *len)
{
    rpc_frame f = TCPOPS__FRAME__INIT;
    f.id = id;
    f.kind = TCPOPS__KIND__REQUEST;
    f.method = (char *)method;
    f.body.data = (uint8_t *)body;
    f.body.len = strlen(body);
    *len = rpc_frame_size(&f);
    uint8_t *p = malloc(*len);
    assert_non_null(p);
    assert_int_equal(rpc_frame_write(&f, p), *len);
    return p;
}

static void test_len_roundtrip_big_endian(void **state)
{
    (void)state;
    uint8_t h[4];
    rpc_frame_put_len(h, 0x01020304u);
    assert_int_equal(h[0], 1);
    assert_int_equal(h[1], 2);
    assert_int_equal(h[2], 3);
    assert_int_equal(h[3], 4);
    assert_int_equal(rpc_frame_get_len(h), 0x01020304u);
    rpc_frame_put_len(h, 0xFFFFFFFFu);
    assert_int_equal(rpc_frame_get_len(h), 0xFFFFFFFFu);
}

/* Feeding a stream of three frames one byte at a time yields exactly three
 * frames, each at the byte that completes it, with the right contents. */
static void test_decode_one_byte_at_a_time(void **state)
{
    (void)state;
    size_t l1, l2, l3;
    uint8_t *a = encode(1, "test.Echo", "alpha", &l1);
    uint8_t *b = encode(2, "test.Echo", "", &l2);
    uint8_t *c = encode(3, "people.List", "gamma-gamma", &l3);
    size_t total = l1 + l2 + l3;
    uint8_t *stream = malloc(total);
    memcpy(stream, a, l1);
    memcpy(stream + l1, b, l2);
    memcpy(stream + l1 + l2, c, l3);

    rpc_buf rb;
    rpc_buf_init(&rb);
    int frames = 0;
    const char *want_body[] = {"alpha", "", "gamma-gamma"};
    size_t ends[] = {l1, l1 + l2, total};
    for (size_t i = 0; i < total; i++) {
        assert_int_equal(rpc_buf_append(&rb, stream + i, 1, MAX), 0);
        const uint8_t *pl;
        size_t pn;
        int n = rpc_frame_decode(rpc_buf_head(&rb), rpc_buf_used(&rb), MAX, &pl, &pn);
        assert_true(n >= 0);
        if (n == 0)
            continue;
        assert_int_equal(i + 1, ends[frames]);
        rpc_frame *f = NULL;
        assert_int_equal(rpc_frame_unpack(pl, pn, &f), 0);
        assert_int_equal(f->id, (uint64_t)frames + 1);
        assert_int_equal(f->body.len, strlen(want_body[frames]));
        assert_memory_equal(f->body.data, want_body[frames], f->body.len);
        rpc_frame_free(f);
        rpc_buf_consume(&rb, (size_t)n);
        frames++;
    }
    assert_int_equal(frames, 3);
    assert_int_equal(rpc_buf_used(&rb), 0);
    rpc_buf_fini(&rb);
    free(stream);
    free(a);
    free(b);
    free(c);
}

/* Header-only buffers for each edge length: below the max it asks for more
 * bytes; above it refuses at once, having looked at four bytes only. */
static void test_decode_length_edges(void **state)
{
    (void)state;
    struct {
        uint32_t len;
        int want;
    } cases[] = {
        {0, 0}, {1, 0}, {MAX - 1, 0}, {MAX, 0}, {MAX + 1, -EMSGSIZE},
        {0x80000000u, -EMSGSIZE}, {0xFFFFFFFFu, -EMSGSIZE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[4];
        const uint8_t *pl = NULL;
        size_t pn = 0;
        rpc_frame_put_len(h, cases[i].len);
        int n = rpc_frame_decode(h, 3, MAX, &pl, &pn);
        assert_int_equal(n, 0); /* three bytes are never enough */
        n = rpc_frame_decode(h, 4, MAX, &pl, &pn);
        if (cases[i].len == 0) {
            /* A zero-length frame is complete with its header. */
            assert_int_equal(n, 4);
            assert_int_equal(pn, 0);
            continue;
        }
        if (n != cases[i].want)
            fail_msg("length %u: expected %d, got %d", cases[i].len, cases[i].want, n);
    }
}

/* A complete frame of exactly max bytes decodes; max + 1 does not. */
static void test_decode_exact_max(void **state)
{
    (void)state;
    uint8_t *buf = calloc(1, MAX + 4);
    const uint8_t *pl;
    size_t pn;
    rpc_frame_put_len(buf, MAX);
    assert_int_equal(rpc_frame_decode(buf, MAX + 4, MAX, &pl, &pn), (int)(MAX + 4));
    assert_int_equal(pn, MAX);
    assert_ptr_equal(pl, buf + 4);
    assert_int_equal(rpc_frame_decode(buf, MAX + 3, MAX, &pl, &pn), 0);
    rpc_frame_put_len(buf, MAX - 1);
    assert_int_equal(rpc_frame_decode(buf, MAX + 4, MAX, &pl, &pn), (int)(MAX + 3));
    free(buf);
}

/* A reader that reserves only after the decoder says "need more" never
 * allocates for a 0xFFFFFFFF claim: the buffer holds the four header bytes. */
static void test_oversize_claim_allocates_nothing(void **state)
{
    (void)state;
    rpc_buf rb;
    rpc_buf_init(&rb);
    uint8_t h[4];
    rpc_frame_put_len(h, 0xFFFFFFFFu);
    assert_int_equal(rpc_buf_append(&rb, h, 4, 64), 0);
    size_t cap = rb.cap;
    const uint8_t *pl;
    size_t pn;
    assert_int_equal(rpc_frame_decode(rpc_buf_head(&rb), rpc_buf_used(&rb), MAX, &pl, &pn),
                     -EMSGSIZE);
    assert_int_equal(rb.cap, cap);
    assert_true(cap <= 4096);
    rpc_buf_fini(&rb);
}

static void test_unpack_rejects_garbage(void **state)
{
    (void)state;
    rpc_frame *f = (rpc_frame *)0x1; /* must stay untouched on failure */
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34};
    assert_int_equal(rpc_frame_unpack(garbage, sizeof(garbage), &f), -EPROTO);
    assert_ptr_equal(f, (rpc_frame *)0x1);

    /* Field 2 (kind) with an unknown value 99. */
    const uint8_t bad_kind[] = {0x08, 0x01, 0x10, 99};
    assert_int_equal(rpc_frame_unpack(bad_kind, sizeof(bad_kind), &f), -EPROTO);

    /* A REQUEST without a method. */
    const uint8_t no_method[] = {0x08, 0x01, 0x10, 0x01};
    assert_int_equal(rpc_frame_unpack(no_method, sizeof(no_method), &f), -EPROTO);

    /* An empty payload is a frame of all defaults: kind 0 is not a kind. */
    assert_int_equal(rpc_frame_unpack(garbage, 0, &f), -EPROTO);

    /* A length-delimited field that claims more bytes than there are. */
    const uint8_t truncated[] = {0x1a, 0x7f, 'a'};
    assert_int_equal(rpc_frame_unpack(truncated, sizeof(truncated), &f), -EPROTO);
}

static void test_unpack_accepts_control_frames(void **state)
{
    (void)state;
    rpc_frame g = TCPOPS__FRAME__INIT;
    g.kind = TCPOPS__KIND__GOAWAY;
    g.last_id = 41;
    uint8_t buf[64];
    size_t n = rpc_frame_write(&g, buf);
    rpc_frame *f = NULL;
    assert_int_equal(rpc_frame_unpack(buf + 4, n - 4, &f), 0);
    assert_int_equal(f->kind, TCPOPS__KIND__GOAWAY);
    assert_int_equal(f->last_id, 41);
    rpc_frame_free(f);
    rpc_frame_free(NULL);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(rpc_status_name(TCPOPS__STATUS__OK), "OK");
    assert_string_equal(rpc_status_name(TCPOPS__STATUS__NOT_FOUND), "NOT_FOUND");
    assert_string_equal(rpc_status_name(TCPOPS__STATUS__UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(rpc_status_name(77), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_len_roundtrip_big_endian),
        cmocka_unit_test(test_decode_one_byte_at_a_time),
        cmocka_unit_test(test_decode_length_edges),
        cmocka_unit_test(test_decode_exact_max),
        cmocka_unit_test(test_oversize_claim_allocates_nothing),
        cmocka_unit_test(test_unpack_rejects_garbage),
        cmocka_unit_test(test_unpack_accepts_control_frames),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
