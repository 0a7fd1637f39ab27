/* libFuzzer target for the MQTT 5.0 decoder (codec5.c, props.c).
 *
 * As fuzz_mqtt_decode.c does for 3.1.1: the input is a stream of packets,
 * decoded whole with no size limit, whole with a small max_packet, and in
 * chunks through a buffer of that small size; all must agree. Every accepted
 * packet re-encodes to exactly its bytes and decodes again, and its
 * properties walk to exactly their length. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mqtt/codec5.h"

#define SMALL_MAX 512

static void check_props(const mqtt5_props_t *p) {
    size_t off = 0, users = 0;
    mqtt5_prop_t pr;
    while (mqtt5_prop_next(p, &off, &pr)) {
        CHECK(MQTT5_HAS(p, pr.id) && mqtt5_prop_name(pr.id) != NULL);
        users += pr.id == MQTT5_PROP_USER_PROPERTY;
    }
    CHECK(off == p->raw.len && users == p->n_user);
}

static void check_packet(const mqtt5_packet_t *pkt, const uint8_t *orig, size_t len) {
    check_props(&pkt->props);
    if (pkt->type == MQTT_CONNECT && pkt->u.connect.c.will_flag)
        check_props(&pkt->u.connect.will);
    if (pkt->type == MQTT_SUBSCRIBE || pkt->type == MQTT_UNSUBSCRIBE) {
        size_t o = 0, count = 0;
        mqtt_str_t f;
        uint8_t q;
        while (mqtt_filter_next(&pkt->u.subscribe, &o, &f, &q))
            count++;
        CHECK(count == pkt->u.subscribe.count && o == pkt->u.subscribe.entries.len);
    }
    size_t need = mqtt5_encode(NULL, 0, pkt);
    CHECK(need == len);
    uint8_t *w = malloc(need);
    CHECK(w != NULL);
    memset(w, 0xA5, need);
    CHECK(mqtt5_encode(w, need - 1, pkt) == need); /* too small: must not write */
    for (size_t i = 0; i < need; i++)
        CHECK(w[i] == 0xA5);
    CHECK(mqtt5_encode(w, need, pkt) == need);
    CHECK(memcmp(w, orig, len) == 0);
    mqtt5_packet_t again;
    CHECK(mqtt5_decode(w, need, 0, &again) == (ssize_t)need);
    CHECK(again.type == pkt->type && again.flags == pkt->flags && again.reason == pkt->reason);
    CHECK(again.props.present == pkt->props.present);
    free(w);
}

/* Returns the number of results written to rcs (the last one <= 0). */
static size_t decode_whole(const uint8_t *data, size_t size, size_t max, ssize_t *rcs, bool check) {
    size_t off = 0, n = 0;
    for (;;) {
        mqtt5_packet_t pkt;
        ssize_t rc = mqtt5_decode(data + off, size - off, max, &pkt);
        rcs[n++] = rc;
        if (rc <= 0) {
            CHECK(mqtt_errname((int)rc) != NULL);
            if (rc < 0)
                CHECK(mqtt5_err_reason((int)rc) >= 0x81);
            return n;
        }
        CHECK((size_t)rc <= size - off);
        if (max)
            CHECK((size_t)rc <= max);
        if (check)
            check_packet(&pkt, data + off, (size_t)rc);
        off += (size_t)rc;
    }
}

static void decode_chunked(const uint8_t *data, size_t size, const ssize_t *rcs, size_t n) {
    uint8_t buf[SMALL_MAX];
    fuzz_chunks_t feed = {.data = data, .size = size};
    size_t have = 0, i = 0;
    for (;;) {
        fuzz_chunk_next(&feed, buf, sizeof(buf), &have);
        for (;;) {
            mqtt5_packet_t pkt;
            ssize_t rc = mqtt5_decode(buf, have, sizeof(buf), &pkt);
            if (rc > 0) {
                CHECK(i < n && rcs[i] == rc);
                i++;
                memmove(buf, buf + rc, have - (size_t)rc);
                have -= (size_t)rc;
                continue;
            }
            if (rc < 0) {
                CHECK(i == n - 1 && rcs[i] == rc);
                return;
            }
            CHECK(have < sizeof(buf));
            if (feed.in == size) {
                CHECK(i == n - 1 && rcs[i] == 0);
                return;
            }
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cap = size / 2 + 2;
    ssize_t *all = malloc(cap * sizeof(*all)), *small = malloc(cap * sizeof(*small));
    CHECK(all && small);
    size_t nall = decode_whole(data, size, 0, all, true);
    size_t nsmall = decode_whole(data, size, SMALL_MAX, small, false);
    for (size_t i = 0; i < nsmall; i++) {
        if (small[i] == MQTT_ERR_PACKET_TOO_LARGE) {
            CHECK(i == nsmall - 1 && i < nall && (all[i] == 0 || all[i] > SMALL_MAX || all[i] < 0));
            break;
        }
        CHECK(i < nall && small[i] == all[i]);
        if (i == nsmall - 1)
            CHECK(nsmall == nall);
    }
    decode_chunked(data, size, small, nsmall);
    free(all);
    free(small);
    return 0;
}
