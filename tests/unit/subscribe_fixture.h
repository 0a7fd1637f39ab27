/* SUBSCRIBE and UNSUBSCRIBE packets for the downlink's session tests
 * (test_session_subscribe.c, test_session_sub_limits.c,
 * test_session_expiry.c). */
#ifndef M2K_TEST_SUBSCRIBE_FIXTURE_H
#define M2K_TEST_SUBSCRIBE_FIXTURE_H

#include "session5_fixture.h"

static inline pk_t sub_pk(uint16_t pid, const char *const *filters, const uint8_t *qos, size_t n,
                          bool v5) {
    pk_t b = {.n = 0};
    put_u16(&b, pid);
    if (v5)
        put_u8(&b, 0); /* no properties */
    for (size_t i = 0; i < n; i++) {
        put_str(&b, filters[i]);
        put_u8(&b, qos[i]);
    }
    return frame(0x82, &b);
}

static inline pk_t unsub_pk(uint16_t pid, const char *filter, bool v5) {
    pk_t b = {.n = 0};
    put_u16(&b, pid);
    if (v5)
        put_u8(&b, 0);
    put_str(&b, filter);
    return frame(0xa2, &b);
}

#endif
