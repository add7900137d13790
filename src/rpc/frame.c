#include "rpc/frame.h"

#include <errno.h>

void rpc_frame_put_len(uint8_t h[RPC_FRAME_HEADER], uint32_t len)
{
    h[0] = (uint8_t)(len >> 24);
    h[1] = (uint8_t)(len >> 16);
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
}

uint32_t rpc_frame_get_len(const uint8_t h[RPC_FRAME_HEADER])
{
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
           (uint32_t)h[2] << 8 | (uint32_t)h[3];
}

int rpc_frame_decode(const uint8_t *buf, size_t len, size_t max,
                     const uint8_t **payload, size_t *payload_len)
{
    if (len < RPC_FRAME_HEADER)
        return 0;
    uint32_t n = rpc_frame_get_len(buf);
    if (n > max || n > (uint32_t)INT32_MAX - RPC_FRAME_HEADER)
        return -EMSGSIZE;
    if (len - RPC_FRAME_HEADER < n)
        return 0;
    *payload = buf + RPC_FRAME_HEADER;
    *payload_len = n;
    return (int)(n + RPC_FRAME_HEADER);
}

int rpc_frame_unpack(const uint8_t *payload, size_t len, rpc_frame **out)
{
    rpc_frame *f = tcpops__frame__unpack(NULL, len, payload);
    if (f == NULL)
        return -EPROTO;
    switch (f->kind) {
    case TCPOPS__KIND__REQUEST:
        if (f->method == NULL || f->method[0] == '\0')
            goto bad;
        break;
    case TCPOPS__KIND__RESPONSE:
    case TCPOPS__KIND__PING:
    case TCPOPS__KIND__PONG:
    case TCPOPS__KIND__GOAWAY:
        break;
    default:
        goto bad;
    }
    *out = f;
    return 0;
bad:
    tcpops__frame__free_unpacked(f, NULL);
    return -EPROTO;
}

void rpc_frame_free(rpc_frame *f)
{
    if (f != NULL)
        tcpops__frame__free_unpacked(f, NULL);
}

size_t rpc_frame_size(const rpc_frame *f)
{
    return RPC_FRAME_HEADER + tcpops__frame__get_packed_size(f);
}

size_t rpc_frame_write(const rpc_frame *f, uint8_t *out)
{
    size_t n = tcpops__frame__pack(f, out + RPC_FRAME_HEADER);
    rpc_frame_put_len(out, (uint32_t)n);
    return n + RPC_FRAME_HEADER;
}

const char *rpc_status_name(int status)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tcpops__status__descriptor, status);
    return v != NULL ? v->name : "UNKNOWN";
}
