/* protobuf-c messages to and from jansson JSON objects, driven by the message
 * descriptors, so every method's request and response has a JSON form for
 * text mode and tcpops-cli without code per message. Field names are the
 * .proto names; uint64 travels as a JSON integer; enums as their names.
 * Pure functions, any thread. */
#ifndef TCPOPS_UTIL_PBJSON_H
#define TCPOPS_UTIL_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* A new JSON object for msg (caller json_decref's it), or NULL on ENOMEM. */
json_t *pbjson_from_message(const ProtobufCMessage *msg);

/* Builds a message of type desc from obj; keys not in the message (except
 * "cmd", text mode's command word, which is skipped at every level), wrong
 * types, out-of-range numbers and strings holding a NUL byte are errors. The
 * recursion follows the message types (nested messages), never the depth of
 * obj, so deep JSON cannot deepen it. Returns 0 and *out (free with
 * protobuf_c_message_free_unpacked(*out, NULL)), or -EINVAL with err filled. */
int pbjson_to_message(const ProtobufCMessageDescriptor *desc, json_t *obj,
                      ProtobufCMessage **out, char *err, size_t errlen);

#endif
