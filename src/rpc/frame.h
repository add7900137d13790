/* Framing: a 4-byte big-endian length, then that many bytes of an encoded
 * tcpops.Frame. The decoder is a pure function over a buffer (no syscalls, no
 * allocation), so it can be fed one byte at a time. */
#ifndef TCPOPS_RPC_FRAME_H
#define TCPOPS_RPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "tcpops.pb-c.h"

#define RPC_FRAME_HEADER 4
#define RPC_FRAME_MAX_DEFAULT (1u << 20) /* 1 MiB */
/* The range a program's --max-frame may take: at least room for a small
 * frame, and below 16 MiB so that every length's first byte is 0x00 and
 * tells a binary peer from a text-mode one (docs/protocol.md). */
#define RPC_FRAME_MAX_LOWEST 64
#define RPC_FRAME_MAX_HIGHEST ((1L << 24) - 1)

typedef Tcpops__Frame rpc_frame;

/* Writes len into h as 4 big-endian bytes. */
void rpc_frame_put_len(uint8_t h[RPC_FRAME_HEADER], uint32_t len);

/* Reads 4 big-endian bytes. */
uint32_t rpc_frame_get_len(const uint8_t h[RPC_FRAME_HEADER]);

/* Looks at the bytes at buf[0..len) for one whole frame.
 * Returns the bytes the frame occupies (header + payload, > 0) and points
 * *payload / *payload_len at its protobuf bytes; 0 when more bytes are needed
 * (nothing is set); -EMSGSIZE when the header claims more than max bytes (the
 * connection cannot be resynchronised and must be closed). The length is
 * checked before anything else, so a caller that reserves only after a 0 never
 * allocates for an oversize claim. */
int rpc_frame_decode(const uint8_t *buf, size_t len, size_t max,
                     const uint8_t **payload, size_t *payload_len);

/* Unpacks payload into a Frame and checks what protobuf cannot: a known kind,
 * and a method on every REQUEST. Returns 0 and sets *out (free with
 * rpc_frame_free), or -EPROTO for bytes that are not a valid frame (*out
 * untouched). */
int rpc_frame_unpack(const uint8_t *payload, size_t len, rpc_frame **out);

/* Frees a frame from rpc_frame_unpack; NULL does nothing. */
void rpc_frame_free(rpc_frame *f);

/* Bytes rpc_frame_write will produce for f, header included. */
size_t rpc_frame_size(const rpc_frame *f);

/* Writes header + encoded f into out, which has rpc_frame_size(f) bytes.
 * Returns the bytes written. */
size_t rpc_frame_write(const rpc_frame *f, uint8_t *out);

/* Human name of a Tcpops__Status value ("OK", "NOT_FOUND", ...); "UNKNOWN"
 * for a value outside the enum. Static storage. */
const char *rpc_status_name(int status);

#endif
