/* libFuzzer target: the gateway's request input rules. The input is a query
 * string, a newline, and a body; each parameter goes through URL decoding
 * (civetweb's mg_get_var), name validation and the limit parser, and the body
 * through the POST /people parser. An accepted name is always a valid one. */
#include <civetweb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "input.h"
#include "name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - in) : size;
    char *qs = malloc(qlen + 1);
    if (qs == NULL)
        return 0;
    memcpy(qs, in, qlen);
    qs[qlen] = '\0';

    static const char *const params[] = {"name", "owner", "after", "limit"};
    for (size_t i = 0; i < 4; i++) {
        char val[66], why[128];
        int n = mg_get_var(qs, qlen, params[i], val, sizeof(val));
        if (n < 0)
            continue;
        if ((size_t)n >= sizeof(val))
            abort();
        long limit;
        if (i == 3 && gw_parse_limit(val, (size_t)n, &limit) == 0 && (limit < 1 || limit > 1000))
            abort();
        util_name_check(val, (size_t)n, why, sizeof(why));
    }
    if (nl != NULL) {
        char name[66], why[256];
        size_t blen = size - qlen - 1;
        if (gw_parse_create_body(nl + 1, blen, name, sizeof(name), why, sizeof(why)) == 0 &&
            util_name_check(name, strlen(name), why, sizeof(why)) != 0)
            abort();
    }
    free(qs);
    return 0;
}
