#include "util/jsondepth.h"

int util_json_depth_ok(const char *buf, size_t len, int max)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (in_string) {
            if (ch == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (ch == '"')
                in_string = 0;
            continue;
        }
        switch (ch) {
        case '"':
            in_string = 1;
            break;
        case '[':
        case '{':
            if (++depth > max)
                return 0;
            break;
        case ']':
        case '}':
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
    }
    return 1;
}
