#include "name.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

/* Decodes one code point at s (n bytes left). Returns its length, or 0 when
 * the bytes are not valid UTF-8. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, min = 0x80, *cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, min = 0x800, *cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, *cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return len;
}

int util_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

int util_name_check(const char *s, size_t len, char *why, size_t whylen)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len == 0) {
        snprintf(why, whylen, "name is empty");
        return -EINVAL;
    }
    if (len > UTIL_NAME_MAX) {
        snprintf(why, whylen, "name is %zu bytes; the maximum is %d", len, UTIL_NAME_MAX);
        return -EINVAL;
    }
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0) {
            snprintf(why, whylen, "name is not valid UTF-8 (byte %zu)", i);
            return -EINVAL;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            snprintf(why, whylen, "name contains a control character (U+%04X at byte %zu)",
                     (unsigned)cp, i);
            return -EINVAL;
        }
        i += n;
    }
    return 0;
}
