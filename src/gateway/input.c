#include "input.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "name.h"

int gw_parse_limit(const char *s, size_t n, long *out)
{
    long v = 0;
    if (n == 0 || n > 4)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 1000)
        return -1;
    *out = v;
    return 0;
}

int gw_parse_create_body(const char *body, size_t len, char *name, size_t cap, char *why,
                         size_t whylen)
{
    char reason[128];
    if (len == 0) {
        snprintf(why, whylen, "missing name: use ?name=NAME or a JSON body {\"name\":...}");
        return -1;
    }
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_ALLOW_NUL, &je);
    json_t *jn = json_object_get(doc, "name");
    int rc = -1;
    if (doc == NULL) {
        snprintf(why, whylen, "body is not valid JSON");
    } else if (!json_is_object(doc) || !json_is_string(jn)) {
        snprintf(why, whylen, "body must be a JSON object with a string \"name\"");
    } else if (util_name_check(json_string_value(jn), json_string_length(jn), reason,
                               sizeof(reason)) < 0) {
        snprintf(why, whylen, "name: %s", reason);
    } else if (json_string_length(jn) + 1 > cap) {
        snprintf(why, whylen, "name too long");
    } else {
        memcpy(name, json_string_value(jn), json_string_length(jn) + 1);
        rc = 0;
    }
    json_decref(doc);
    return rc;
}
