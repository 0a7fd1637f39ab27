/* libFuzzer target for the MQTT decoder.
 *
 * The input is a stream of packets. It is decoded three ways and all must
 * agree: whole with no size limit, whole with a small max_packet, and fed in
 * chunks (sizes taken from the input's own bytes, so a run is reproducible)
 * through a fixed buffer of that small size. Every accepted packet must
 * re-encode to exactly its input bytes and decode again to the same packet.
 * The string checks are compared against a naive reference UTF-8 decoder. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mqtt/codec.h"

#define SMALL_MAX 512

typedef struct {
    ssize_t rc;    /* bytes consumed, 0 (incomplete or end) or an error */
    uint8_t level; /* protocol level for MQTT_ERR_PROTOCOL_LEVEL */
} event_t;

/* strict: control characters and non-characters refused too. */
static int ref_utf8(const uint8_t *s, size_t n, bool strict, bool topic) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], min;
        size_t len;
        if (c < 0x80) {
            if (c == 0)
                return MQTT_ERR_UTF8_NUL;
            if (strict && (c < 0x20 || c == 0x7F))
                return MQTT_ERR_UTF8_CONTROL;
            if (topic && (c == '+' || c == '#'))
                return MQTT_ERR_TOPIC_WILDCARD;
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, c &= 0x07, min = 0x10000;
        } else {
            return MQTT_ERR_UTF8_INVALID;
        }
        if (n - i < len)
            return MQTT_ERR_UTF8_INVALID;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return MQTT_ERR_UTF8_INVALID;
            c = c << 6 | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF)
            return MQTT_ERR_UTF8_INVALID;
        if (c >= 0xD800 && c <= 0xDFFF)
            return MQTT_ERR_UTF8_SURROGATE;
        if (strict && c >= 0x80 && c <= 0x9F)
            return MQTT_ERR_UTF8_CONTROL;
        if (strict && ((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFF) >= 0xFFFE))
            return MQTT_ERR_UTF8_NONCHARACTER;
        i += len;
    }
    return 0;
}

/* Re-encodes pkt, which was decoded from `orig`, and checks the round trip. */
static void check_reencode(const mqtt_packet_t *pkt, const uint8_t *orig, size_t len) {
    static uint8_t out[SMALL_MAX > 65536 ? SMALL_MAX : 65536];
    uint8_t *big = NULL, *w = out;
    size_t need = mqtt_encode(NULL, 0, pkt);
    CHECK(need == len);
    if (need > sizeof(out)) {
        big = malloc(need);
        CHECK(big != NULL);
        w = big;
    }
    memset(w, 0xA5, need);
    CHECK(mqtt_encode(w, need - 1, pkt) == need); /* too small: must not write */
    for (size_t i = 0; i < need; i++)
        CHECK(w[i] == 0xA5);
    CHECK(mqtt_encode(w, need, pkt) == need);
    CHECK(memcmp(w, orig, len) == 0);
    mqtt_packet_t again;
    CHECK(mqtt_decode(w, need, 0, &again) == (ssize_t)need);
    CHECK(again.type == pkt->type && again.flags == pkt->flags);
    uint8_t *w2 = malloc(need);
    CHECK(w2 != NULL);
    CHECK(mqtt_encode(w2, need, &again) == need);
    CHECK(memcmp(w2, orig, len) == 0);
    free(w2);
    free(big);
}

static size_t decode_whole(const uint8_t *data, size_t size, size_t max, event_t *ev,
                           bool reencode) {
    size_t off = 0, n = 0;
    for (;;) {
        mqtt_packet_t pkt;
        ssize_t rc = mqtt_decode(data + off, size - off, max, &pkt);
        ev[n].rc = rc;
        ev[n].level = rc == MQTT_ERR_PROTOCOL_LEVEL ? pkt.u.connect.protocol_level : 0;
        n++;
        if (rc <= 0) {
            /* The fixed header decoder agrees with the full decoder. */
            mqtt_fixed_header_t fh;
            int hl = mqtt_decode_fixed_header(data + off, size - off, &fh);
            if (hl <= 0)
                CHECK(hl == rc);
            CHECK(mqtt_strerror((int)rc) != NULL && mqtt_errname((int)rc) != NULL);
            return n;
        }
        CHECK((size_t)rc <= size - off);
        if (max)
            CHECK((size_t)rc <= max);
        if (pkt.type == MQTT_SUBSCRIBE || pkt.type == MQTT_UNSUBSCRIBE) {
            size_t o = 0, count = 0;
            mqtt_str_t f;
            uint8_t q;
            while (mqtt_filter_next(&pkt.u.subscribe, &o, &f, &q)) {
                CHECK(mqtt_topic_filter_check(f.ptr, f.len) == 0);
                CHECK(q <= 2);
                count++;
            }
            CHECK(count == pkt.u.subscribe.count && o == pkt.u.subscribe.entries.len);
        }
        if (reencode)
            check_reencode(&pkt, data + off, (size_t)rc);
        off += (size_t)rc;
    }
}

static void decode_chunked(const uint8_t *data, size_t size, const event_t *ev, size_t nev) {
    uint8_t buf[SMALL_MAX];
    fuzz_chunks_t feed = {.data = data, .size = size};
    size_t have = 0, i = 0;
    for (;;) {
        fuzz_chunk_next(&feed, buf, sizeof(buf), &have);
        for (;;) {
            mqtt_packet_t pkt;
            ssize_t rc = mqtt_decode(buf, have, sizeof(buf), &pkt);
            if (rc > 0) {
                CHECK(i < nev && ev[i].rc == rc);
                i++;
                memmove(buf, buf + rc, have - (size_t)rc);
                have -= (size_t)rc;
                continue;
            }
            if (rc < 0) {
                CHECK(i == nev - 1 && ev[i].rc == rc);
                if (rc == MQTT_ERR_PROTOCOL_LEVEL)
                    CHECK(ev[i].level == pkt.u.connect.protocol_level);
                return;
            }
            /* A complete packet of at most sizeof(buf) bytes must decode. */
            CHECK(have < sizeof(buf));
            if (feed.in == size) {
                CHECK(i == nev - 1 && ev[i].rc == 0);
                return;
            }
            break;
        }
    }
}

static void check_strings(const uint8_t *data, size_t size) {
    size_t n = size > 70000 ? 70000 : size;
    int u = mqtt_utf8_check(data, n);
    CHECK(u == ref_utf8(data, n, false, false));
    CHECK(mqtt_text_check(data, n) == ref_utf8(data, n, true, false));
    int t = mqtt_topic_name_check(data, n);
    if (n == 0)
        CHECK(t == MQTT_ERR_TOPIC_EMPTY);
    else if (n > 65535)
        CHECK(t == MQTT_ERR_STRING_TOO_LONG);
    else
        CHECK(t == ref_utf8(data, n, true, true));
    int f = mqtt_topic_filter_check(data, n);
    if (u < 0 && n > 0 && n <= 65535)
        CHECK(f == u);
    if (f == 0)
        CHECK(u == 0 && n > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cap = size / 2 + 2; /* a packet is at least 2 bytes */
    event_t *all = malloc(cap * sizeof(*all)), *small = malloc(cap * sizeof(*small));
    CHECK(all && small);
    size_t nall = decode_whole(data, size, 0, all, true);
    size_t nsmall = decode_whole(data, size, SMALL_MAX, small, false);
    /* The limit changes nothing before the first packet it refuses. */
    for (size_t i = 0; i < nsmall; i++) {
        if (small[i].rc == MQTT_ERR_PACKET_TOO_LARGE) {
            CHECK(i == nsmall - 1 && i < nall &&
                  (all[i].rc == 0 || all[i].rc > SMALL_MAX || all[i].rc < 0));
            break;
        }
        CHECK(i < nall && small[i].rc == all[i].rc && small[i].level == all[i].level);
        if (i == nsmall - 1)
            CHECK(nsmall == nall);
    }
    decode_chunked(data, size, small, nsmall);
    check_strings(data, size);
    free(all);
    free(small);
    return 0;
}
