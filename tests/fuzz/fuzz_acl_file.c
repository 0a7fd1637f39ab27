/* libFuzzer target for the ACL parser and matcher.
 *
 * Input: an ACL file, then optionally a 0x00 byte and "user\x01client\x01topic"
 * (an empty user field means no user name). Loading must not crash and must
 * fail with a "NAME:LINE:" message or succeed; a loaded ACL is asked about
 * the topic for both access kinds. acl_filter_matches is compared against a
 * reference that splits both strings into levels first. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "auth/acl.h"
#include "mqtt/codec.h"

#define MAXL 64

static size_t split(const char *s, size_t len, const char **lv, size_t *ll) {
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (n == MAXL)
                return MAXL + 1;
            lv[n] = s + start;
            ll[n++] = i - start;
            start = i + 1;
        }
    }
    return n;
}

/* Returns -1 when the input is out of the reference's range. */
static int ref_match(const char *f, size_t flen, const char *t, size_t tlen) {
    const char *fl[MAXL + 1], *tl[MAXL + 1];
    size_t fll[MAXL + 1], tll[MAXL + 1];
    size_t nf = split(f, flen, fl, fll), nt = split(t, tlen, tl, tll);
    if (nf > MAXL || nt > MAXL)
        return -1;
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return 0;
    for (size_t i = 0; i < nf; i++) {
        if (fll[i] == 1 && fl[i][0] == '#')
            return i <= nt; /* '#' also matches the parent */
        if (i >= nt)
            return 0;
        if (fll[i] == 1 && fl[i][0] == '+')
            continue;
        if (fll[i] != tll[i] || memcmp(fl[i], tl[i], tll[i]) != 0)
            return 0;
    }
    return nf == nt;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    const char *sep = memchr(buf, '\0', size);
    size_t flen = sep ? (size_t)(sep - buf) : size;
    char err[256];
    acl_t *acl = acl_load_string("f", buf, flen, err, sizeof(err));
    if (!acl)
        CHECK(strncmp(err, "f:", 2) == 0);
    if (!sep) {
        acl_free(acl);
        return 0;
    }
    /* user \x01 client \x01 topic */
    size_t rest = size - flen - 1;
    char *q = malloc(rest + 1);
    CHECK(q);
    memcpy(q, sep + 1, rest);
    q[rest] = '\0';
    char *c = strchr(q, '\x01');
    char *t = c ? strchr(c + 1, '\x01') : NULL;
    if (c && t) {
        *c++ = '\0';
        *t++ = '\0';
        size_t tlen = strlen(t);
        if (acl) {
            const char *user = q[0] ? q : NULL;
            bool r = acl_check(acl, user, c, t, tlen, ACL_READ);
            bool w = acl_can_publish(acl, user, c, t, tlen);
            (void)r;
            (void)w;
        }
        /* The client field as a filter against the topic. */
        size_t clen = strlen(c);
        if (tlen && mqtt_topic_name_check((const uint8_t *)t, tlen) == 0 &&
            mqtt_topic_filter_check((const uint8_t *)c, clen) == 0) {
            int want = ref_match(c, clen, t, tlen);
            if (want >= 0)
                CHECK(acl_filter_matches(c, clen, t, tlen) == (want == 1));
        }
    }
    free(q);
    acl_free(acl);
    return 0;
}
