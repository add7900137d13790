#include "util/name.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

/* Why code point cp cannot be in a name, or NULL when it can. Normalisation
 * neither adds nor removes characters of these categories, so the input is
 * checked, and the byte offsets in messages are the sender's. */
static const char *refused(ucs4_t cp)
{
    if (uc_is_general_category(cp, UC_CATEGORY_Cc))
        return "a control character";
    if (uc_is_general_category(cp, UC_CATEGORY_Cf))
        return "an invisible format character";
    if (uc_is_general_category(cp, UC_CATEGORY_Zl) || uc_is_general_category(cp, UC_CATEGORY_Zp))
        return "a line or paragraph separator";
    if (cp != 0x20 && uc_is_general_category(cp, UC_CATEGORY_Zs))
        return "a space other than U+0020";
    return NULL;
}

int util_name_normalize(const char *s, size_t len, char *out, size_t outcap, size_t *outlen,
                        char *why, size_t whylen)
{
    const uint8_t *p = (const uint8_t *)s;
    /* NFC grows a string at most threefold. */
    uint8_t nfc[UTIL_NAME_MAX * 3 + 1];
    size_t n = sizeof(nfc);
    if (len == 0) {
        snprintf(why, whylen, "name is empty");
        return -EINVAL;
    }
    if (len > UTIL_NAME_MAX) {
        snprintf(why, whylen, "name is %zu bytes; the maximum is %d", len, UTIL_NAME_MAX);
        return -EINVAL;
    }
    const uint8_t *bad = u8_check(p, len);
    if (bad != NULL) {
        snprintf(why, whylen, "name is not valid UTF-8 (byte %zu)", (size_t)(bad - p));
        return -EINVAL;
    }
    for (size_t i = 0; i < len;) {
        ucs4_t cp;
        int k = u8_mbtouc(&cp, p + i, len - i);
        const char *what = refused(cp);
        if (what != NULL) {
            snprintf(why, whylen, "name contains %s (U+%04X at byte %zu)", what, (unsigned)cp,
                     i);
            return -EINVAL;
        }
        i += (size_t)k;
    }
    if (p[0] == ' ' || p[len - 1] == ' ') {
        snprintf(why, whylen, "name %s with a space", p[0] == ' ' ? "begins" : "ends");
        return -EINVAL;
    }
    uint8_t *r = u8_normalize(UNINORM_NFC, p, len, nfc, &n);
    if (r == NULL) {
        snprintf(why, whylen, "name cannot be normalised: %s", strerror(errno));
        return -EINVAL;
    }
    int spilled = r != nfc; /* not within 64 bytes, but costs nothing to handle */
    if (spilled)
        free(r);
    if (spilled || n > UTIL_NAME_MAX) {
        snprintf(why, whylen, "name is %zu bytes in NFC form; the maximum is %d", n,
                 UTIL_NAME_MAX);
        return -EINVAL;
    }
    if (n + 1 > outcap) {
        snprintf(why, whylen, "name is %zu bytes; only %zu fit here", n, outcap - 1);
        return -EINVAL;
    }
    memcpy(out, nfc, n);
    out[n] = '\0';
    if (outlen != NULL)
        *outlen = n;
    return 0;
}

int util_name_check(const char *s, size_t len, char *why, size_t whylen)
{
    char norm[UTIL_NAME_MAX + 1];
    return util_name_normalize(s, len, norm, sizeof(norm), NULL, why, whylen);
}
