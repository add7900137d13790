/* What protobuf-c's unpack does not check. protobuf-c hands every string
 * field out as a NUL-terminated C string and copies the bytes as they came,
 * so a string carrying a NUL byte ("people.List\0junk", "nulA\0evil") would
 * silently become its prefix. rpc_pb_check walks the encoded message itself,
 * guided by the message descriptor, and finds such strings before anyone
 * reads the unpacked message. A pure function over a buffer; any thread. */
#ifndef TCPOPS_RPC_PBCHECK_H
#define TCPOPS_RPC_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Messages nested deeper than this inside one another are refused. */
#define RPC_PB_MAX_DEPTH 32

/* Checks buf[0..len), an encoded message of type desc (nested messages
 * included, unknown fields skipped): 0 when no string field holds a NUL
 * byte; -EINVAL when one does, with a sentence naming the field in why;
 * -EPROTO when the bytes are not a well-formed message (why filled too). */
int rpc_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                 char *why, size_t whylen);

#endif
