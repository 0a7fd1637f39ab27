/* Unit tests for the MQTT 3.1.1 encoders: exact bytes, the size returned
 * with too small a buffer (nothing written), invalid arguments and size
 * limits, encode/decode round trips, and the error names. The decoder's
 * tests are in test_mqtt_codec.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

#include "codec_guard.h"

/* ---- Encoders ----------------------------------------------------------- */

/* Encodes with cap one short (nothing written, size returned), then with
 * room, and compares with the expected bytes. */
#define CHECK_ENCODE(call_with_buf_cap, want)                                                      \
    do {                                                                                           \
        uint8_t buf[512];                                                                          \
        size_t cap;                                                                                \
        size_t wlen = sizeof(want) - 1;                                                            \
        memset(buf, 0xEE, sizeof(buf));                                                            \
        cap = wlen - 1;                                                                            \
        assert_int_equal((call_with_buf_cap), wlen);                                               \
        for (size_t k = 0; k < sizeof(buf); k++)                                                   \
            assert_int_equal(buf[k], 0xEE);                                                        \
        cap = sizeof(buf);                                                                         \
        assert_int_equal((call_with_buf_cap), wlen);                                               \
        assert_memory_equal(buf, want, wlen);                                                      \
        assert_int_equal(buf[wlen], 0xEE);                                                         \
    } while (0)

/* Total packet size for a remaining length (test oracle, written out). */
static size_t packet_total(size_t rl) {
    return 1 + (rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4) + rl;
}

static void test_encode_server_packets(void **state) {
    (void)state;
    CHECK_ENCODE(mqtt_encode_connack(buf, cap, false, MQTT_CONNACK_ACCEPTED), "\x20\x02\x00\x00");
    CHECK_ENCODE(mqtt_encode_connack(buf, cap, true, MQTT_CONNACK_ACCEPTED), "\x20\x02\x01\x00");
    CHECK_ENCODE(mqtt_encode_connack(buf, cap, false, MQTT_CONNACK_BAD_PROTOCOL),
                 "\x20\x02\x00\x01");
    CHECK_ENCODE(mqtt_encode_ack(buf, cap, MQTT_PUBACK, 0x1234), "\x40\x02\x12\x34");
    CHECK_ENCODE(mqtt_encode_ack(buf, cap, MQTT_PUBREC, 1), "\x50\x02\x00\x01");
    CHECK_ENCODE(mqtt_encode_ack(buf, cap, MQTT_PUBREL, 0xffff), "\x62\x02\xff\xff");
    CHECK_ENCODE(mqtt_encode_ack(buf, cap, MQTT_PUBCOMP, 0x0100), "\x70\x02\x01\x00");
    CHECK_ENCODE(mqtt_encode_ack(buf, cap, MQTT_UNSUBACK, 9), "\xb0\x02\x00\x09");
    static const uint8_t codes[] = {0, 1, 2, MQTT_SUBACK_FAILURE};
    CHECK_ENCODE(mqtt_encode_suback(buf, cap, 10, codes, 4), "\x90\x06\x00\x0a\x00\x01\x02\x80");
    CHECK_ENCODE(mqtt_encode_empty(buf, cap, MQTT_PINGRESP), "\xd0\x00");
    CHECK_ENCODE(mqtt_encode_empty(buf, cap, MQTT_PINGREQ), "\xc0\x00");
    CHECK_ENCODE(mqtt_encode_empty(buf, cap, MQTT_DISCONNECT), "\xe0\x00");

    mqtt_publish_t p = {.qos = 1, .retain = true, .packet_id = 0x1234};
    p.topic.ptr = (const uint8_t *)"t";
    p.topic.len = 1;
    CHECK_ENCODE(mqtt_encode_publish(buf, cap, &p), "\x33\x05\x00\x01t\x12\x34");
    p.qos = 0;
    p.retain = false;
    p.packet_id = 77; /* ignored for QoS 0 */
    p.payload.ptr = (const uint8_t *)"hi";
    p.payload.len = 2;
    CHECK_ENCODE(mqtt_encode_publish(buf, cap, &p), "\x30\x05\x00\x01thi");
    p.qos = 2;
    p.dup = true;
    p.packet_id = 1;
    CHECK_ENCODE(mqtt_encode_publish(buf, cap, &p), "\x3c\x07\x00\x01t\x00\x01hi");
}

static void test_encode_client_packets(void **state) {
    (void)state;
    mqtt_connect_t c = {.clean_session = true, .keepalive = 60};
    c.client_id.ptr = (const uint8_t *)"c1";
    c.client_id.len = 2;
    CHECK_ENCODE(mqtt_encode_connect(buf, cap, &c), "\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02"
                                                    "c1");
    mqtt_connect_t full = {
        .clean_session = true,
        .will_flag = true,
        .will_qos = 1,
        .will_retain = true,
        .has_username = true,
        .has_password = true,
        .keepalive = 10,
        .client_id = {(const uint8_t *)"cid", 3},
        .will_topic = {(const uint8_t *)"w/t", 3},
        .will_payload = {(const uint8_t *)"\x00\xff", 2},
        .username = {(const uint8_t *)"u", 1},
        .password = {(const uint8_t *)"\x00p", 2},
    };
    CHECK_ENCODE(mqtt_encode_connect(buf, cap, &full),
                 "\x10\x1f\x00\x04MQTT\x04\xee\x00\x0a\x00\x03"
                 "cid\x00\x03w/t\x00\x02\x00\xff\x00\x01u\x00\x02\x00p");
    /* An explicit protocol name and level are written as given. */
    mqtt_connect_t v31 = {.clean_session = true, .protocol_level = 3};
    v31.protocol_name.ptr = (const uint8_t *)"MQIsdp";
    v31.protocol_name.len = 6;
    CHECK_ENCODE(mqtt_encode_connect(buf, cap, &v31),
                 "\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x00\x00\x00");

    mqtt_str_t filters[] = {
        {(const uint8_t *)"a/+/c", 5}, {(const uint8_t *)"#", 1}, {(const uint8_t *)"x/#", 3}};
    uint8_t qos[] = {1, 0, 2};
    CHECK_ENCODE(mqtt_encode_subscribe(buf, cap, 10, filters, qos, 3),
                 "\x82\x14\x00\x0a\x00\x05"
                 "a/+/c\x01\x00\x01#\x00\x00\x03x/#\x02");
    CHECK_ENCODE(mqtt_encode_subscribe(buf, cap, 11, filters + 1, NULL, 2),
                 "\xa2\x0a\x00\x0b\x00\x01#\x00\x03x/#");
}

static void test_encode_invalid_arguments(void **state) {
    (void)state;
    uint8_t buf[16];
    assert_int_equal(mqtt_encode_ack(buf, sizeof(buf), MQTT_PUBLISH, 1), 0);
    assert_int_equal(mqtt_encode_ack(buf, sizeof(buf), MQTT_SUBACK, 1), 0);
    assert_int_equal(mqtt_encode_empty(buf, sizeof(buf), MQTT_CONNECT), 0);
    mqtt_publish_t p = {.qos = 3, .topic = {(const uint8_t *)"t", 1}};
    assert_int_equal(mqtt_encode_publish(buf, sizeof(buf), &p), 0);
    p.qos = 0;
    p.topic.len = 65536;
    assert_int_equal(mqtt_encode_publish(buf, sizeof(buf), &p), 0);
    mqtt_packet_t pkt = {.type = (mqtt_type_t)0};
    assert_int_equal(mqtt_encode(buf, sizeof(buf), &pkt), 0);
    mqtt_str_t f = {(const uint8_t *)"a", 65536};
    assert_int_equal(mqtt_encode_subscribe(buf, sizeof(buf), 1, &f, NULL, 1), 0);
    mqtt_connect_t c = {.client_id = {(const uint8_t *)"a", 65536}};
    assert_int_equal(mqtt_encode_connect(buf, sizeof(buf), &c), 0);
}

/* Sizes at and just over the protocol maximum: computed, never written. */
static void test_encode_size_limits(void **state) {
    (void)state;
    static const uint8_t one[1];
    const size_t max = MQTT_MAX_REMAINING_LENGTH;
    assert_int_equal(mqtt_encode_suback(NULL, 0, 1, one, max - 2), max + 5);
    assert_int_equal(mqtt_encode_suback(NULL, 0, 1, one, max - 1), 0);
    assert_int_equal(mqtt_encode_suback(NULL, 0, 1, one, max + 1), 0);

    /* 4096 filters of 65,535 bytes: 2 + 4096 * 65,537 > max; 4095 fit. */
    size_t n = 4096;
    mqtt_str_t *filters = calloc(n, sizeof(*filters));
    assert_non_null(filters);
    for (size_t i = 0; i < n; i++) {
        filters[i].ptr = one;
        filters[i].len = 65535;
    }
    static uint8_t qos[4096];
    assert_int_equal(mqtt_encode_subscribe(NULL, 0, 1, filters, qos, n), 0);
    assert_int_equal(mqtt_encode_subscribe(NULL, 0, 1, filters, NULL, n), 0);
    assert_int_equal(mqtt_encode_subscribe(NULL, 0, 1, filters, NULL, n - 1),
                     packet_total(2 + (n - 1) * 65537));
    free(filters);

    mqtt_packet_t pkt = {.type = MQTT_SUBSCRIBE};
    pkt.u.subscribe.packet_id = 1;
    pkt.u.subscribe.entries.ptr = one;
    pkt.u.subscribe.entries.len = max - 2;
    assert_int_equal(mqtt_encode(NULL, 0, &pkt), max + 5);
    pkt.u.subscribe.entries.len = max - 1;
    assert_int_equal(mqtt_encode(NULL, 0, &pkt), 0);
    pkt.u.subscribe.entries.len = max + 1;
    assert_int_equal(mqtt_encode(NULL, 0, &pkt), 0);
}

/* mqtt_filter_next stops at an entry that does not fit, even in a struct the
 * decoder did not make. */
static void test_filter_next_truncated(void **state) {
    (void)state;
    mqtt_subscribe_t s = {.with_qos = true, .count = 2};
    s.entries.ptr = (const uint8_t *)"\x00\x01"
                                     "a\x01\x00\x02"
                                     "b";
    s.entries.len = 7;
    size_t off = 0;
    mqtt_str_t f;
    uint8_t q;
    assert_int_equal(mqtt_filter_next(&s, &off, &f, &q), 1);
    ASSERT_STR(f, "a");
    assert_int_equal(q, 1);
    assert_int_equal(off, 4);
    assert_int_equal(mqtt_filter_next(&s, &off, &f, &q), 0); /* 'b' lacks its QoS byte */
    assert_int_equal(off, 4);
    s.entries.len = 5; /* half a length */
    assert_int_equal(mqtt_filter_next(&s, &off, &f, &q), 0);
    off = 100; /* past the end */
    assert_int_equal(mqtt_filter_next(&s, &off, &f, &q), 0);
}

/* Packets built with the encoders decode to the same fields. */
static void test_encode_decode_round_trip(void **state) {
    (void)state;
    uint8_t buf[512];
    mqtt_packet_t pkt;
    for (uint8_t qos = 0; qos <= 2; qos++) {
        for (int flags = 0; flags < 4; flags++) {
            mqtt_publish_t p = {.qos = qos, .retain = flags & 1, .dup = qos && (flags & 2)};
            p.packet_id = qos ? (uint16_t)(1000 + flags) : 0;
            p.topic.ptr = (const uint8_t *)"sensors/42/temperature";
            p.topic.len = 22;
            p.payload.ptr = (const uint8_t *)"{\"t\":21.5}";
            p.payload.len = 10;
            size_t n = mqtt_encode_publish(buf, sizeof(buf), &p);
            assert_int_equal(mqtt_decode(buf, n, 0, &pkt), (ssize_t)n);
            assert_int_equal(pkt.type, MQTT_PUBLISH);
            assert_int_equal(pkt.u.publish.qos, qos);
            assert_int_equal(pkt.u.publish.retain, p.retain);
            assert_int_equal(pkt.u.publish.dup, p.dup);
            assert_int_equal(pkt.u.publish.packet_id, p.packet_id);
            ASSERT_STR(pkt.u.publish.topic, "sensors/42/temperature");
            ASSERT_STR(pkt.u.publish.payload, "{\"t\":21.5}");
        }
    }
    static const mqtt_type_t acks[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP,
                                       MQTT_UNSUBACK};
    for (size_t i = 0; i < 5; i++) {
        size_t n = mqtt_encode_ack(buf, sizeof(buf), acks[i], 0xbeef);
        assert_int_equal(mqtt_decode(buf, n, 0, &pkt), 4);
        assert_int_equal(pkt.type, acks[i]);
        assert_int_equal(pkt.u.packet_id, 0xbeef);
    }
    for (uint8_t rc = 0; rc <= 5; rc++) {
        size_t n = mqtt_encode_connack(buf, sizeof(buf), rc == 0, rc);
        assert_int_equal(mqtt_decode(buf, n, 0, &pkt), 4);
        assert_int_equal(pkt.u.connack.return_code, rc);
        assert_int_equal(pkt.u.connack.session_present, rc == 0);
    }
    mqtt_connect_t c = {.will_flag = true, .will_qos = 2, .has_username = true, .keepalive = 7};
    c.client_id.ptr = (const uint8_t *)"id";
    c.client_id.len = 2;
    c.will_topic.ptr = (const uint8_t *)"w";
    c.will_topic.len = 1;
    c.username.ptr = (const uint8_t *)"user";
    c.username.len = 4;
    size_t n = mqtt_encode_connect(buf, sizeof(buf), &c);
    assert_int_equal(mqtt_decode(buf, n, 0, &pkt), (ssize_t)n);
    assert_int_equal(pkt.u.connect.will_qos, 2);
    assert_true(pkt.u.connect.will_flag);
    assert_false(pkt.u.connect.will_retain || pkt.u.connect.clean_session);
    assert_int_equal(pkt.u.connect.will_payload.len, 0);
    ASSERT_STR(pkt.u.connect.username, "user");
    assert_int_equal(pkt.u.connect.keepalive, 7);
}

/* ---- Names -------------------------------------------------------------- */

static void test_error_names(void **state) {
    (void)state;
    assert_string_equal(mqtt_errname(MQTT_ERR_PACKET_TOO_LARGE), "MQTT_ERR_PACKET_TOO_LARGE");
    assert_string_equal(mqtt_strerror(MQTT_ERR_PACKET_TOO_LARGE),
                        "packet larger than the configured maximum");
    assert_string_equal(mqtt_errname(MQTT_ERR_REMAINING_LENGTH), "MQTT_ERR_REMAINING_LENGTH");
    assert_string_equal(mqtt_errname(MQTT_ERR_STRING_TOO_LONG), "MQTT_ERR_STRING_TOO_LONG");
    assert_string_equal(mqtt_strerror(MQTT_ERR_UTF8_SURROGATE),
                        "string encodes a surrogate code point (U+D800..U+DFFF)");
    assert_string_equal(mqtt_errname(0), "MQTT_OK");
    assert_string_equal(mqtt_errname(-38), "MQTT_ERR_UNKNOWN");
    assert_string_equal(mqtt_errname(1), "MQTT_ERR_UNKNOWN");
    assert_string_equal(mqtt_strerror(-1000), "unknown MQTT codec error");
    /* Every code has its own name and text. */
    for (int a = -37; a <= -1; a++) {
        assert_true(strncmp(mqtt_errname(a), "MQTT_ERR_", 9) == 0);
        assert_string_not_equal(mqtt_errname(a), "MQTT_ERR_UNKNOWN");
        for (int b = a + 1; b <= -1; b++) {
            assert_string_not_equal(mqtt_errname(a), mqtt_errname(b));
            assert_string_not_equal(mqtt_strerror(a), mqtt_strerror(b));
        }
    }
    assert_string_equal(mqtt_type_name(MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(mqtt_type_name(MQTT_UNSUBACK), "UNSUBACK");
    assert_string_equal(mqtt_type_name(0), "RESERVED0");
    assert_string_equal(mqtt_type_name(16), "UNKNOWN");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_server_packets),
        cmocka_unit_test(test_encode_client_packets),
        cmocka_unit_test(test_encode_invalid_arguments),
        cmocka_unit_test(test_encode_size_limits),
        cmocka_unit_test(test_filter_next_truncated),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
