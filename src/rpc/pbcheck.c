#include "rpc/pbcheck.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Reads a varint at buf[*off..len). 0, or -1 when it is cut off or longer
 * than ten bytes. */
static int varint(const uint8_t *buf, size_t len, size_t *off, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*off >= len)
            return -1;
        uint8_t b = buf[(*off)++];
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 int depth, char *why, size_t whylen)
{
    size_t off = 0;
    if (depth > RPC_PB_MAX_DEPTH) {
        snprintf(why, whylen, "messages nested more than %d deep", RPC_PB_MAX_DEPTH);
        return -EINVAL;
    }
    while (off < len) {
        uint64_t key, n;
        if (varint(buf, len, &off, &key) < 0)
            goto bad;
        switch (key & 7) {
        case 0: /* varint */
            if (varint(buf, len, &off, &n) < 0)
                goto bad;
            continue;
        case 1: /* 64-bit */
            if (len - off < 8)
                goto bad;
            off += 8;
            continue;
        case 5: /* 32-bit */
            if (len - off < 4)
                goto bad;
            off += 4;
            continue;
        case 2: /* length-delimited: strings, bytes, messages, packed */
            break;
        default: /* groups: protobuf-c does not take them either */
            goto bad;
        }
        if (varint(buf, len, &off, &n) < 0 || n > len - off)
            goto bad;
        const uint8_t *p = buf + off;
        off += (size_t)n;
        uint64_t num = key >> 3;
        const ProtobufCFieldDescriptor *f =
            num <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned)num)
                              : NULL;
        if (f == NULL)
            continue; /* unknown field: kept as bytes, never read as a string */
        if (f->type == PROTOBUF_C_TYPE_STRING && memchr(p, '\0', (size_t)n) != NULL) {
            snprintf(why, whylen, "field \"%s\" of %s contains a NUL byte", f->name,
                     desc->short_name);
            return -EINVAL;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int rc = check(f->descriptor, p, (size_t)n, depth + 1, why, whylen);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
bad:
    snprintf(why, whylen, "%s does not decode", desc->short_name);
    return -EPROTO;
}

int rpc_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 char *why, size_t whylen)
{
    return check(desc, buf, len, 0, why, whylen);
}
