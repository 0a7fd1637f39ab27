/* Topic name and filter checks shared by the downlink modules. */
#include "downlink/downlink.h"

#include <string.h>

const char *dl_strerror(int rc) {
    switch (rc) {
    case 0:
        return "success";
    case DL_EINVAL:
        return "invalid topic name or filter";
    case DL_ENOMEM:
        return "out of memory";
    case DL_ENOENT:
        return "not found";
    case DL_EFULL:
        return "bound reached";
    default:
        return "unknown error";
    }
}

bool dl_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

static int check(const char *t, size_t len, bool filter, const char **why) {
    const char *w = NULL;
    if (len == 0)
        w = "empty";
    else if (len > 65535)
        w = "longer than 65535 bytes";
    else if (memchr(t, '\0', len))
        w = "contains NUL";
    else if (!dl_utf8_valid(t, len))
        w = "not valid UTF-8";
    for (size_t i = 0; !w && i < len; i++) {
        if (t[i] != '+' && t[i] != '#')
            continue;
        if (!filter)
            w = "contains a wildcard";
        else if ((i > 0 && t[i - 1] != '/') || (i + 1 < len && t[i + 1] != '/'))
            w = "a wildcard is not a whole level";
        else if (t[i] == '#' && i + 1 != len)
            w = "'#' is not the last level";
    }
    if (why)
        *why = w;
    return w ? DL_EINVAL : 0;
}

int dl_topic_check(const char *t, size_t len, const char **why) {
    return check(t, len, false, why);
}

int dl_filter_check(const char *f, size_t len, const char **why) {
    return check(f, len, true, why);
}

uint32_t dl_expiry_parse(const void *v, size_t len) {
    const char *s = v;
    uint64_t x = 0;
    if (!s || !len || len > 10)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    return x <= UINT32_MAX ? (uint32_t)x : 0;
}
