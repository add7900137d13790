#include "util/pbjson.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return 4;
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

/* Whether f holds the entries of a proto map: a repeated message of exactly a
 * string "key" and a "value" (how protoc-c lowers map<string, V>). */
static int is_map_entry(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *d = f->descriptor;
    return f->type == PROTOBUF_C_TYPE_MESSAGE && d != NULL && d->n_fields == 2 &&
           strcmp(d->fields[0].name, "key") == 0 && d->fields[0].type == PROTOBUF_C_TYPE_STRING &&
           strcmp(d->fields[1].name, "value") == 0;
}

static json_t *value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        return json_integer((json_int_t)*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        return v != NULL ? json_string(v->name) : json_integer(*(const int *)p);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        /* jansson refuses invalid UTF-8; such a string is shown by its bytes. */
        json_t *j = json_stringn(s != NULL ? s : "", s != NULL ? strlen(s) : 0);
        return j != NULL ? j : json_string("\xEF\xBF\xBD");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        json_t *j = json_stringn((const char *)b->data, b->len);
        return j != NULL ? j : json_null();
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(const ProtobufCMessage *const *)p;
        return m != NULL ? pbjson_from_message(m) : json_null();
    }
    }
    return json_null();
}

json_t *pbjson_from_message(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *obj = json_object();
    if (obj == NULL)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg;
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED && is_map_entry(f)) {
            /* A proto map travels as key/value entries: show it as an object. */
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            const ProtobufCMessageDescriptor *ed = f->descriptor;
            v = json_object();
            for (size_t k = 0; v != NULL && k < n; k++) {
                const char *eb = (const char *)arr[k];
                const char *key = *(char *const *)(eb + ed->fields[0].offset);
                json_object_set_new(v, key != NULL ? key : "",
                                    value_to_json(&ed->fields[1], eb + ed->fields[1].offset));
            }
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            v = json_array();
            for (size_t k = 0; v != NULL && k < n; k++)
                json_array_append_new(v, value_to_json(f, arr + k * elem_size(f->type)));
        } else {
            v = value_to_json(f, base + f->offset);
        }
        if (v == NULL || json_object_set_new(obj, f->name, v) < 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* Fills err for field f and returns -EINVAL. */
static int bad_field(const ProtobufCFieldDescriptor *f, const char *what, char *err,
                     size_t errlen)
{
    snprintf(err, errlen, "field \"%s\" %s", f->name, what);
    return -EINVAL;
}

/* An integer field (every type elem_size makes 4 or 8 bytes, bar float,
 * double and enum) from j, checked against the field's range. */
static int json_to_int(const ProtobufCFieldDescriptor *f, json_t *j, void *p, char *err,
                       size_t errlen)
{
    if (!json_is_integer(j))
        return bad_field(f, "has the wrong type", err, errlen);
    json_int_t v = json_integer_value(j);
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        if (v < INT32_MIN || v > INT32_MAX)
            return bad_field(f, "is out of range", err, errlen);
        *(int32_t *)p = (int32_t)v;
        return 0;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        if (v < 0 || v > (json_int_t)UINT32_MAX)
            return bad_field(f, "is out of range", err, errlen);
        *(uint32_t *)p = (uint32_t)v;
        return 0;
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
        if (v < 0)
            return bad_field(f, "is out of range", err, errlen);
        *(uint64_t *)p = (uint64_t)v;
        return 0;
    default:
        *(int64_t *)p = (int64_t)v;
        return 0;
    }
}

/* A string or bytes field from j: a malloc'd copy the message owns. */
static int json_to_text(const ProtobufCFieldDescriptor *f, json_t *j, void *p, char *err,
                        size_t errlen)
{
    if (!json_is_string(j))
        return bad_field(f, "has the wrong type", err, errlen);
    size_t n = json_string_length(j);
    if (f->type == PROTOBUF_C_TYPE_STRING && strlen(json_string_value(j)) != n)
        /* (JSON_ALLOW_NUL) a C string would end at the NUL */
        return bad_field(f, "contains a NUL byte", err, errlen);
    char *s = malloc(n + 1);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(s, json_string_value(j), n + 1);
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        *(char **)p = s;
    } else {
        ProtobufCBinaryData *b = p;
        b->len = n;
        b->data = (uint8_t *)s;
    }
    return 0;
}

static int json_to_value(const ProtobufCFieldDescriptor *f, json_t *j, void *p, char *err,
                         size_t errlen)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES:
        return json_to_text(f, j, p, err, errlen);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            break;
        *(protobuf_c_boolean *)p = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_FLOAT: case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(j))
            break;
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)json_number_value(j);
        else
            *(double *)p = json_number_value(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v = NULL;
        if (json_is_string(j))
            v = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor,
                                                             json_string_value(j));
        else if (json_is_integer(j))
            v = protobuf_c_enum_descriptor_get_value(f->descriptor, (int)json_integer_value(j));
        if (v == NULL)
            break;
        *(int *)p = v->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *m = NULL;
        if (pbjson_to_message(f->descriptor, j, &m, err, errlen) < 0)
            return -EINVAL;
        *(ProtobufCMessage **)p = m;
        return 0;
    }
    default:
        return json_to_int(f, j, p, err, errlen);
    }
    return bad_field(f, "has the wrong type", err, errlen);
}

int pbjson_to_message(const ProtobufCMessageDescriptor *desc, json_t *obj,
                      ProtobufCMessage **out, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "expected a JSON object for %s", desc->short_name);
        return -EINVAL;
    }
    ProtobufCMessage *msg = calloc(1, desc->sizeof_message);
    if (msg == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    desc->message_init(msg);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(desc, key);
        if (f == NULL) {
            if (strcmp(key, "cmd") == 0)
                continue; /* text mode's command word travels beside the fields */
            snprintf(err, errlen, "unknown field \"%s\"", key);
            goto fail;
        }
        char *base = (char *)msg;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(val)) {
                snprintf(err, errlen, "field \"%s\" must be an array", f->name);
                goto fail;
            }
            size_t n = json_array_size(val);
            size_t es = elem_size(f->type);
            char *arr = calloc(n ? n : 1, es);
            if (arr == NULL) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            /* Count as filled only what parsed, so a failure frees correctly. */
            *(char **)(base + f->offset) = arr;
            size_t *count = (size_t *)(base + f->quantifier_offset);
            for (size_t k = 0; k < n; k++) {
                if (json_to_value(f, json_array_get(val, k), arr + k * es, err, errlen) < 0)
                    goto fail;
                (*count)++;
            }
        } else if (json_to_value(f, val, base + f->offset, err, errlen) < 0) {
            goto fail;
        }
    }
    *out = msg;
    return 0;
fail:
    protobuf_c_message_free_unpacked(msg, NULL);
    return -EINVAL;
}
