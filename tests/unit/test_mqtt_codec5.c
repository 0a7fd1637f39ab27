/* Unit tests for the MQTT 5.0 codec (codec5.c, props.c): vectors for all 15
 * packet types, one error code per malformed class, every prefix, round
 * trips, encoders, all with the input ending at a PROT_NONE guard page.
 * Statement ids are the OASIS MQTT Version 5.0 ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec5.h"

#include "codec_guard.h"

static ssize_t decode5(const uint8_t *bytes, size_t len, size_t max, mqtt5_packet_t *pkt) {
    return mqtt5_decode(guard_place(bytes, len), len, max, pkt);
}

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    int type;
} valid_t;

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    int err;
} malformed_t;

#define CONNECT5 "\x00\x04MQTT\x05"

static const valid_t valid[] = {
    {"connect_min",
     B("\x10\x0f" CONNECT5 "\x02\x00\x3c\x00\x00\x02"
       "c1"),
     MQTT_CONNECT},
    {"connect_full",
     B("\x10\x61" CONNECT5 "\xee\x00\x0a"
       "\x1b\x11\x00\x00\x00\x3c\x21\x00\x0a\x27\x00\x00\x10\x00\x22\x00\x05\x17\x01\x19\x00"
       "\x26\x00\x01k\x00\x01v"
       "\x00\x03"
       "cid"
       "\x25\x18\x00\x00\x00\x05\x01\x01\x02\x00\x00\x00\x78\x03\x00\x04text\x08\x00\x03r/t"
       "\x09\x00\x02\x00\xff\x26\x00\x01"
       "a\x00\x01"
       "b"
       "\x00\x03w/t\x00\x02\x00\xff\x00\x01u\x00\x02\x00p"),
     MQTT_CONNECT},
    /* A password without a user name is allowed in 5.0 [MQTT-3.1.2-19]. */
    {"connect_password_only",
     B("\x10\x11" CONNECT5 "\x42\x00\x3c\x00\x00\x01"
       "a\x00\x01p"),
     MQTT_CONNECT},
    {"connack_min", B("\x20\x03\x00\x00\x00"), MQTT_CONNACK},
    {"connack_unsupported_version", B("\x20\x03\x00\x84\x00"), MQTT_CONNACK},
    {"connack_props",
     B("\x20\x1f\x01\x00\x1c\x21\x00\x04\x25\x01\x27\x00\x00\x04\x00\x22\x00\x0a\x12\x00\x03"
       "abc\x28\x00\x29\x00\x2a\x00\x13\x00\x3c"),
     MQTT_CONNACK},
    {"publish_qos0",
     B("\x30\x0b\x00\x03"
       "a/b\x00hello"),
     MQTT_PUBLISH},
    {"publish_two_user_properties",
     B("\x32\x23\x00\x03t/a\x00\x07\x1a\x26\x00\x01x\x00\x01"
       "1\x26\x00\x01x\x00\x01"
       "2\x03\x00\x04json\x23\x00\x02\x01\x01p"),
     MQTT_PUBLISH},
    /* An empty topic with a topic alias [MQTT-3.3.2-8]. */
    {"publish_alias_only", B("\x34\x09\x00\x00\x00\x09\x03\x23\x00\x02z"), MQTT_PUBLISH},
    /* The subscription identifier repeats in PUBLISH [MQTT-3.3.4-4]. */
    {"publish_subscription_ids", B("\x30\x09\x00\x01t\x05\x0b\x01\x0b\x80\x01"), MQTT_PUBLISH},
    {"puback_short", B("\x40\x02\x00\x01"), MQTT_PUBACK},
    {"puback_reason", B("\x40\x03\x00\x01\x10"), MQTT_PUBACK},
    {"puback_reason_string",
     B("\x40\x08\x00\x01\x80\x04\x1f\x00\x01"
       "e"),
     MQTT_PUBACK},
    {"puback_empty_props", B("\x40\x04\x00\x01\x00\x00"), MQTT_PUBACK},
    {"pubrec_quota", B("\x50\x03\x00\x02\x97"), MQTT_PUBREC},
    {"pubrel_not_found", B("\x62\x03\x00\x03\x92"), MQTT_PUBREL},
    {"pubcomp", B("\x70\x02\x00\x04"), MQTT_PUBCOMP},
    {"subscribe_options",
     B("\x82\x16\x00\x0a\x09\x0b\x05\x26\x00\x01k\x00\x01v\x00\x03"
       "a/+\x1d\x00\x01#\x00"),
     MQTT_SUBSCRIBE},
    {"suback", B("\x90\x08\x00\x0a\x00\x00\x01\x02\x80\xa2"), MQTT_SUBACK},
    {"unsubscribe",
     B("\xa2\x08\x00\x0b\x00\x00\x03"
       "a/b"),
     MQTT_UNSUBSCRIBE},
    {"unsuback", B("\xb0\x05\x00\x0b\x00\x00\x11"), MQTT_UNSUBACK},
    {"pingreq", B("\xc0\x00"), MQTT_PINGREQ},
    {"pingresp", B("\xd0\x00"), MQTT_PINGRESP},
    {"disconnect_short", B("\xe0\x00"), MQTT_DISCONNECT},
    {"disconnect_with_will", B("\xe0\x01\x04"), MQTT_DISCONNECT},
    {"disconnect_props",
     B("\xe0\x0c\x8b\x0a\x11\x00\x00\x00\x00\x1f\x00\x02"
       "by"),
     MQTT_DISCONNECT},
    {"auth_short", B("\xf0\x00"), MQTT5_AUTH},
    {"auth_continue", B("\xf0\x0f\x18\x0d\x15\x00\x05SCRAM\x16\x00\x02\x00\x01"), MQTT5_AUTH},
};

#define NVALID (sizeof(valid) / sizeof(valid[0]))

static const malformed_t malformed[] = {
    /* Variable byte integers [MQTT-1.5.5-1] */
    {"props_length_5_bytes", B("\x30\x08\x00\x01t\xff\xff\xff\xff\x01"), MQTT_ERR_VBI},
    {"props_length_not_minimal", B("\x30\x05\x00\x01t\x80\x00"), MQTT_ERR_VBI},
    {"props_length_past_end", B("\x30\x04\x00\x01t\x05"), MQTT_ERR_PACKET_TOO_SHORT},
    {"props_value_past_end", B("\x30\x06\x00\x01t\x02\x02\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"props_length_missing", B("\x30\x03\x00\x01t"), MQTT_ERR_PACKET_TOO_SHORT},
    /* Property identifiers and where they may be (2.2.2.2): malformed, 0x81 */
    {"property_unknown_04", B("\x30\x05\x00\x01t\x01\x04"), MQTT_ERR_PROPERTY_UNKNOWN},
    {"property_unknown_00", B("\x30\x05\x00\x01t\x01\x00"), MQTT_ERR_PROPERTY_UNKNOWN},
    {"property_unknown_2b", B("\x30\x05\x00\x01t\x01\x2b"), MQTT_ERR_PROPERTY_UNKNOWN},
    {"topic_alias_in_puback", B("\x40\x07\x00\x01\x00\x03\x23\x00\x01"),
     MQTT_ERR_PROPERTY_NOT_ALLOWED},
    {"will_delay_in_connect", B("\x10\x12" CONNECT5 "\x02\x00\x3c\x05\x18\x00\x00\x00\x01\x00\x00"),
     MQTT_ERR_PROPERTY_NOT_ALLOWED},
    {"session_expiry_in_will",
     B("\x10\x18" CONNECT5 "\x06\x00\x3c\x00\x00\x00\x05\x11\x00\x00\x00\x01\x00\x01t\x00\x00"),
     MQTT_ERR_PROPERTY_NOT_ALLOWED},
    {"assigned_client_id_in_connect", B("\x10\x10" CONNECT5 "\x02\x00\x3c\x03\x12\x00\x00\x00\x00"),
     MQTT_ERR_PROPERTY_NOT_ALLOWED},
    /* A single-use property twice: protocol error, 0x82 */
    {"session_expiry_twice",
     B("\x10\x17" CONNECT5 "\x02\x00\x3c\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02\x00\x00"),
     MQTT_ERR_PROPERTY_DUPLICATE},
    {"topic_alias_twice", B("\x30\x0a\x00\x01t\x06\x23\x00\x01\x23\x00\x01"),
     MQTT_ERR_PROPERTY_DUPLICATE},
    {"subscription_id_twice_in_subscribe",
     B("\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01"
       "a\x00"),
     MQTT_ERR_PROPERTY_DUPLICATE},
    {"reason_string_twice", B("\x40\x0c\x00\x01\x80\x08\x1f\x00\x01x\x1f\x00\x01y"),
     MQTT_ERR_PROPERTY_DUPLICATE},
    /* Values out of range: protocol error */
    {"payload_format_2", B("\x30\x06\x00\x01t\x02\x01\x02"), MQTT_ERR_PROPERTY_VALUE},
    {"receive_maximum_0", B("\x10\x10" CONNECT5 "\x02\x00\x3c\x03\x21\x00\x00\x00\x00"),
     MQTT_ERR_PROPERTY_VALUE},
    {"maximum_packet_size_0", B("\x10\x12" CONNECT5 "\x02\x00\x3c\x05\x27\x00\x00\x00\x00\x00\x00"),
     MQTT_ERR_PROPERTY_VALUE},
    {"request_problem_info_2", B("\x10\x0f" CONNECT5 "\x02\x00\x3c\x02\x17\x02\x00\x00"),
     MQTT_ERR_PROPERTY_VALUE},
    {"subscription_id_0",
     B("\x82\x09\x00\x01\x02\x0b\x00\x00\x01"
       "a\x00"),
     MQTT_ERR_PROPERTY_VALUE},
    {"maximum_qos_2", B("\x20\x05\x00\x00\x02\x24\x02"), MQTT_ERR_PROPERTY_VALUE},
    /* Property strings */
    {"user_property_bad_utf8", B("\x30\x0b\x00\x01t\x07\x26\x00\x01\xff\x00\x01v"),
     MQTT_ERR_UTF8_INVALID},
    {"content_type_nul", B("\x30\x08\x00\x01t\x04\x03\x00\x01\x00"), MQTT_ERR_UTF8_NUL},
    {"response_topic_wildcard",
     B("\x30\x09\x00\x01t\x05\x08\x00\x02"
       "a#"),
     MQTT_ERR_TOPIC_WILDCARD},
    /* Reason codes not defined for the packet (2.4) */
    {"puback_reason_05", B("\x40\x03\x00\x01\x05"), MQTT_ERR_REASON_CODE},
    {"pubrel_reason_10", B("\x62\x03\x00\x01\x10"), MQTT_ERR_REASON_CODE},
    {"connack_reason_01", B("\x20\x03\x00\x01\x00"), MQTT_ERR_REASON_CODE},
    {"suback_reason_03", B("\x90\x04\x00\x01\x00\x03"), MQTT_ERR_REASON_CODE},
    {"unsuback_reason_01", B("\xb0\x04\x00\x01\x00\x01"), MQTT_ERR_REASON_CODE},
    {"disconnect_reason_01", B("\xe0\x01\x01"), MQTT_ERR_REASON_CODE},
    {"auth_reason_01", B("\xf0\x01\x01"), MQTT_ERR_REASON_CODE},
    /* Subscription options [MQTT-3.8.3-5] */
    {"subscribe_reserved_bits",
     B("\x82\x07\x00\x01\x00\x00\x01"
       "a\x40"),
     MQTT_ERR_SUBSCRIBE_OPTIONS},
    {"subscribe_retain_handling_3",
     B("\x82\x07\x00\x01\x00\x00\x01"
       "a\x30"),
     MQTT_ERR_SUBSCRIBE_OPTIONS},
    {"subscribe_qos3",
     B("\x82\x07\x00\x01\x00\x00\x01"
       "a\x03"),
     MQTT_ERR_SUBSCRIBE_OPTIONS},
    {"subscribe_no_filter", B("\x82\x03\x00\x01\x00"), MQTT_ERR_NO_FILTERS},
    {"unsubscribe_no_filter", B("\xa2\x03\x00\x01\x00"), MQTT_ERR_NO_FILTERS},
    /* Packets */
    {"publish_empty_topic_no_alias", B("\x30\x04\x00\x00\x00x"), MQTT_ERR_TOPIC_EMPTY},
    {"publish_topic_control", B("\x30\x05\x00\x02t\x01\x00"), MQTT_ERR_UTF8_CONTROL},
    {"connect_level4", B("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"), MQTT_ERR_PROTOCOL_LEVEL},
    {"connect_mqisdp", B("\x10\x0e\x00\x06MQIsdp\x05\x02\x00\x3c\x00\x00"), MQTT_ERR_PROTOCOL_NAME},
    {"connect_reserved_flag", B("\x10\x0d" CONNECT5 "\x03\x00\x3c\x00\x00\x00"),
     MQTT_ERR_CONNECT_RESERVED},
    {"connect_will_qos_no_will", B("\x10\x0d" CONNECT5 "\x0a\x00\x3c\x00\x00\x00"),
     MQTT_ERR_WILL_FLAGS},
    {"connect_username_control", B("\x10\x10" CONNECT5 "\x82\x00\x3c\x00\x00\x00\x00\x01\x1f"),
     MQTT_ERR_UTF8_CONTROL},
    {"connect_trailing", B("\x10\x0e" CONNECT5 "\x02\x00\x3c\x00\x00\x00\x00"),
     MQTT_ERR_TRAILING_BYTES},
    {"connack_session_present_refused", B("\x20\x03\x01\x80\x00"), MQTT_ERR_CONNACK_FLAGS},
    {"connack_reserved_flags", B("\x20\x03\x02\x00\x00"), MQTT_ERR_CONNACK_FLAGS},
    {"connack_no_props", B("\x20\x02\x00\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"auth_flags", B("\xf1\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pingreq_long", B("\xc0\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    {"puback_short", B("\x40\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"puback_id0", B("\x40\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"unsuback_no_codes", B("\xb0\x03\x00\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"disconnect_trailing", B("\xe0\x03\x00\x00\x00"), MQTT_ERR_TRAILING_BYTES},
    {"type0", B("\x00\x00"), MQTT_ERR_RESERVED_TYPE},
    {"publish_qos3", B("\x36\x04\x00\x01t\x00"), MQTT_ERR_QOS_INVALID},
};

#define NMALFORMED (sizeof(malformed) / sizeof(malformed[0]))

static void test_valid_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        mqtt5_packet_t pkt;
        ssize_t n = decode5(valid[i].bytes, valid[i].len, 0, &pkt);
        if (n != (ssize_t)valid[i].len)
            fail_msg("%s: decoded %zd of %zu bytes (%s)", valid[i].name, n, valid[i].len,
                     mqtt_errname((int)n));
        assert_int_equal(pkt.type, valid[i].type);
        /* Round trip: the same bytes back. */
        uint8_t out[256];
        size_t m = mqtt5_encode(out, sizeof(out), &pkt);
        if (m != valid[i].len || memcmp(out, valid[i].bytes, m) != 0)
            fail_msg("%s: re-encoded to %zu bytes", valid[i].name, m);
        /* Every prefix is incomplete, never an error or a read past it. */
        for (size_t k = 0; k < valid[i].len; k++)
            if (decode5(valid[i].bytes, k, 0, &pkt) != 0)
                fail_msg("%s: prefix of %zu bytes not incomplete", valid[i].name, k);
        /* Followed by more bytes: only the packet is consumed. */
        uint8_t two[512];
        memcpy(two, valid[i].bytes, valid[i].len);
        memcpy(two + valid[i].len, "\xc0\x00", 2);
        assert_int_equal(decode5(two, valid[i].len + 2, 0, &pkt), (ssize_t)valid[i].len);
    }
}

static void test_malformed_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < NMALFORMED; i++) {
        mqtt5_packet_t pkt;
        ssize_t n = decode5(malformed[i].bytes, malformed[i].len, 0, &pkt);
        if (n != malformed[i].err)
            fail_msg("%s: expected %s, got %zd (%s)", malformed[i].name,
                     mqtt_errname(malformed[i].err), n, mqtt_errname((int)n));
        /* A prefix gives 0 or the error the fixed header alone gives. */
        for (size_t k = 0; k < malformed[i].len; k++) {
            ssize_t p = decode5(malformed[i].bytes, k, 0, &pkt);
            if (p != 0 && p != malformed[i].err)
                fail_msg("%s: prefix %zu gave %zd", malformed[i].name, k, p);
        }
    }
}

static void test_connect_fields(void **state) {
    (void)state;
    mqtt5_packet_t pkt;
    assert_int_equal(decode5(valid[1].bytes, valid[1].len, 0, &pkt), 99);
    const mqtt_connect_t *c = &pkt.u.connect.c;
    assert_int_equal(c->protocol_level, 5);
    assert_true(c->clean_session && c->will_flag && c->will_retain);
    assert_int_equal(c->will_qos, 1);
    assert_int_equal(c->keepalive, 10);
    const mqtt5_props_t *p = &pkt.props;
    assert_int_equal(p->session_expiry, 60);
    assert_int_equal(p->receive_maximum, 10);
    assert_int_equal(p->maximum_packet_size, 4096);
    assert_int_equal(p->topic_alias_maximum, 5);
    assert_int_equal(p->request_problem_info, 1);
    assert_true(MQTT5_HAS(p, MQTT5_PROP_REQUEST_RESPONSE_INFO));
    assert_int_equal(p->request_response_info, 0);
    assert_false(MQTT5_HAS(p, MQTT5_PROP_AUTH_METHOD));
    assert_int_equal(p->n_user, 1);
    const mqtt5_props_t *w = &pkt.u.connect.will;
    assert_int_equal(w->will_delay, 5);
    assert_int_equal(w->payload_format, 1);
    assert_int_equal(w->message_expiry, 120);
    assert_memory_equal(w->content_type.ptr, "text", 4);
    assert_memory_equal(w->response_topic.ptr, "r/t", 3);
    assert_int_equal(w->correlation_data.len, 2);
    assert_memory_equal(w->correlation_data.ptr, "\x00\xff", 2);
    assert_int_equal(w->n_user, 1);
    assert_memory_equal(c->client_id.ptr, "cid", 3);
    assert_memory_equal(c->will_topic.ptr, "w/t", 3);
    assert_memory_equal(c->username.ptr, "u", 1);
    assert_memory_equal(c->password.ptr, "\x00p", 2);
}

/* User properties in order, duplicates kept [MQTT-3.3.2-18]. */
static void test_publish_user_properties_in_order(void **state) {
    (void)state;
    mqtt5_packet_t pkt;
    assert_int_equal(decode5(valid[7].bytes, valid[7].len, 0, &pkt), 37);
    assert_int_equal(pkt.u.publish.qos, 1);
    assert_int_equal(pkt.u.publish.packet_id, 7);
    assert_int_equal(pkt.u.publish.payload.len, 1);
    assert_int_equal(pkt.props.n_user, 2);
    assert_int_equal(pkt.props.topic_alias, 2);
    assert_int_equal(pkt.props.payload_format, 1);
    static const char *const want[][2] = {{"x", "1"}, {"x", "2"}};
    size_t off = 0, k = 0;
    mqtt5_prop_t pr;
    while (mqtt5_prop_next(&pkt.props, &off, &pr)) {
        if (pr.id != MQTT5_PROP_USER_PROPERTY)
            continue;
        assert_true(k < 2);
        assert_int_equal(pr.str.len, 1);
        assert_memory_equal(pr.str.ptr, want[k][0], 1);
        assert_memory_equal(pr.value.ptr, want[k][1], 1);
        k++;
    }
    assert_int_equal(k, 2);
    assert_int_equal(off, pkt.props.raw.len);
    /* Subscription identifiers: the first kept, all walked. */
    assert_int_equal(decode5(valid[9].bytes, valid[9].len, 0, &pkt), 11);
    assert_int_equal(pkt.props.n_subscription_id, 2);
    assert_int_equal(pkt.props.subscription_id, 1);
    off = 0;
    assert_int_equal(mqtt5_prop_next(&pkt.props, &off, &pr), 1);
    assert_int_equal(pr.num, 1);
    assert_int_equal(mqtt5_prop_next(&pkt.props, &off, &pr), 1);
    assert_int_equal(pr.num, 128);
    assert_int_equal(mqtt5_prop_next(&pkt.props, &off, &pr), 0);
}

static void test_subscribe_options(void **state) {
    (void)state;
    mqtt5_packet_t pkt;
    assert_int_equal(decode5(valid[17].bytes, valid[17].len, 0, &pkt), 24);
    assert_int_equal(pkt.props.subscription_id, 5);
    size_t off = 0;
    mqtt_str_t f;
    uint8_t o;
    assert_int_equal(mqtt_filter_next(&pkt.u.subscribe, &off, &f, &o), 1);
    assert_memory_equal(f.ptr, "a/+", 3);
    assert_int_equal(MQTT5_SUB_QOS(o), 1);
    assert_true(o & MQTT5_SUB_NO_LOCAL);
    assert_true(o & MQTT5_SUB_RETAIN_AS_PUBLISHED);
    assert_int_equal(MQTT5_SUB_RETAIN_HANDLING(o), 1);
    assert_int_equal(mqtt_filter_next(&pkt.u.subscribe, &off, &f, &o), 1);
    assert_int_equal(o, 0);
    assert_int_equal(mqtt_filter_next(&pkt.u.subscribe, &off, &f, &o), 0);
}

static void test_variable_byte_integers(void **state) {
    (void)state;
    static const struct {
        uint32_t v;
        const char *b;
        size_t n;
    } cases[] = {
        {0, "\x00", 1},
        {127, "\x7f", 1},
        {128, "\x80\x01", 2},
        {16383, "\xff\x7f", 2},
        {16384, "\x80\x80\x01", 3},
        {2097151, "\xff\xff\x7f", 3},
        {2097152, "\x80\x80\x80\x01", 4},
        {268435455, "\xff\xff\xff\x7f", 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[4];
        uint32_t v = 0;
        assert_int_equal(mqtt5_vbi_encode(b, sizeof(b), cases[i].v), cases[i].n);
        assert_memory_equal(b, cases[i].b, cases[i].n);
        const uint8_t *g = guard_place((const uint8_t *)cases[i].b, cases[i].n);
        assert_int_equal(mqtt5_vbi_decode(g, cases[i].n, &v), (int)cases[i].n);
        assert_int_equal(v, cases[i].v);
        for (size_t k = 0; k < cases[i].n; k++)
            assert_int_equal(mqtt5_vbi_decode(guard_place((const uint8_t *)cases[i].b, k), k, &v),
                             0);
    }
    uint32_t v;
    assert_int_equal(mqtt5_vbi_decode(B("\x80\x00"), &v), MQTT_ERR_VBI);
    assert_int_equal(mqtt5_vbi_decode(B("\xff\x80\x00"), &v), MQTT_ERR_VBI);
    assert_int_equal(mqtt5_vbi_decode(B("\xff\xff\xff\xff\x01"), &v), MQTT_ERR_VBI);
    assert_int_equal(mqtt5_vbi_encode(NULL, 0, 268435456), 0);
    assert_int_equal(mqtt5_vbi_encode(NULL, 0, 300), 2); /* size only */
}

#define CHECK_ENCODE(call, lit)                                                                    \
    do {                                                                                           \
        memset(buf, 0xAA, sizeof(buf));                                                            \
        size_t n_ = (call);                                                                        \
        assert_int_equal(n_, sizeof(lit) - 1);                                                     \
        assert_memory_equal(buf, lit, n_);                                                         \
    } while (0)

/* What the server sends: CONNACK with its properties, acks with reason
 * codes in their shortest form [MQTT-3.4.2-1], DISCONNECT, AUTH. */
static void test_encode_server_packets(void **state) {
    (void)state;
    uint8_t buf[256];
    size_t cap = sizeof(buf);
    mqtt5_props_t p = {0};
    CHECK_ENCODE(mqtt5_encode_connack(buf, cap, false, 0, NULL), "\x20\x03\x00\x00\x00");
    CHECK_ENCODE(mqtt5_encode_connack(buf, cap, false, MQTT5_RC_BAD_AUTH_METHOD, &p),
                 "\x20\x03\x00\x8c\x00");
    p.present = 1ull << MQTT5_PROP_RECEIVE_MAXIMUM | 1ull << MQTT5_PROP_RETAIN_AVAILABLE |
                1ull << MQTT5_PROP_MAXIMUM_PACKET_SIZE | 1ull << MQTT5_PROP_TOPIC_ALIAS_MAXIMUM |
                1ull << MQTT5_PROP_ASSIGNED_CLIENT_ID | 1ull << MQTT5_PROP_WILDCARD_AVAILABLE |
                1ull << MQTT5_PROP_SUBSCRIPTION_ID_AVAILABLE | 1ull << MQTT5_PROP_SHARED_AVAILABLE |
                1ull << MQTT5_PROP_SERVER_KEEP_ALIVE;
    p.receive_maximum = 1024;
    p.retain_available = 0;
    p.maximum_packet_size = 1000000;
    p.topic_alias_maximum = 10;
    p.assigned_client_id = (mqtt_str_t){(const uint8_t *)"abc", 3};
    p.server_keep_alive = 60;
    /* In identifier order. */
    CHECK_ENCODE(mqtt5_encode_connack(buf, cap, true, 0, &p),
                 "\x20\x1f\x01\x00\x1c\x12\x00\x03"
                 "abc\x13\x00\x3c\x21\x04\x00\x22\x00\x0a\x25\x00\x27\x00\x0f\x42\x40\x28\x00\x29"
                 "\x00\x2a\x00");
    /* The acks. */
    CHECK_ENCODE(mqtt5_encode_ack(buf, cap, MQTT_PUBACK, 7, 0, NULL), "\x40\x02\x00\x07");
    CHECK_ENCODE(mqtt5_encode_ack(buf, cap, MQTT_PUBACK, 7, MQTT5_RC_UNSPECIFIED, NULL),
                 "\x40\x03\x00\x07\x80");
    mqtt5_props_t rs = {.present = 1ull << MQTT5_PROP_REASON_STRING};
    rs.reason_string = (mqtt_str_t){(const uint8_t *)"no", 2};
    CHECK_ENCODE(mqtt5_encode_ack(buf, cap, MQTT_PUBREC, 8, MQTT5_RC_NOT_AUTHORIZED, &rs),
                 "\x50\x09\x00\x08\x87\x05\x1f\x00\x02no");
    CHECK_ENCODE(mqtt5_encode_ack(buf, cap, MQTT_PUBREL, 9, 0, NULL), "\x62\x02\x00\x09");
    CHECK_ENCODE(mqtt5_encode_ack(buf, cap, MQTT_PUBCOMP, 9, 0x92, NULL), "\x70\x03\x00\x09\x92");
    assert_int_equal(mqtt5_encode_ack(buf, cap, MQTT_SUBACK, 1, 0, NULL), 0);
    /* DISCONNECT and AUTH. */
    CHECK_ENCODE(mqtt5_encode_reason(buf, cap, MQTT_DISCONNECT, 0, NULL), "\xe0\x00");
    CHECK_ENCODE(mqtt5_encode_reason(buf, cap, MQTT_DISCONNECT, MQTT5_RC_SESSION_TAKEN_OVER, NULL),
                 "\xe0\x01\x8e");
    CHECK_ENCODE(mqtt5_encode_reason(buf, cap, MQTT_DISCONNECT, MQTT5_RC_TOPIC_ALIAS_INVALID, &rs),
                 "\xe0\x07\x94\x05\x1f\x00\x02no");
    CHECK_ENCODE(mqtt5_encode_reason(buf, cap, MQTT5_AUTH, 0, NULL), "\xf0\x00");
    assert_int_equal(mqtt5_encode_reason(buf, cap, MQTT_PUBACK, 0, NULL), 0);
    /* Too small a buffer: the size, nothing written. */
    memset(buf, 0xAA, sizeof(buf));
    assert_int_equal(mqtt5_encode_ack(buf, 3, MQTT_PUBACK, 7, MQTT5_RC_UNSPECIFIED, NULL), 5);
    assert_int_equal(buf[0], 0xAA);
}

static void test_encode_publish_user_properties(void **state) {
    (void)state;
    uint8_t buf[256];
    static const mqtt_str_t user[] = {{(const uint8_t *)"x", 1},
                                      {(const uint8_t *)"1", 1},
                                      {(const uint8_t *)"x", 1},
                                      {(const uint8_t *)"2", 1}};
    mqtt5_props_t p = {.user = user, .n_user = 2};
    mqtt_publish_t pub = {.qos = 1, .packet_id = 7};
    pub.topic = (mqtt_str_t){(const uint8_t *)"t/a", 3};
    pub.payload = (mqtt_str_t){(const uint8_t *)"p", 1};
    CHECK_ENCODE(mqtt5_encode_publish(buf, sizeof(buf), &pub, &p),
                 "\x32\x17\x00\x03t/a\x00\x07\x0e\x26\x00\x01x\x00\x01"
                 "1\x26\x00\x01x\x00\x01"
                 "2p");
    /* A string over 65,535 bytes cannot be encoded. */
    static uint8_t big[65536];
    mqtt_str_t huge[] = {{big, sizeof(big)}, {big, 1}};
    p.user = huge;
    p.n_user = 1;
    assert_int_equal(mqtt5_encode_publish(buf, sizeof(buf), &pub, &p), 0);
}

static void test_reason_codes(void **state) {
    (void)state;
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_PROPERTY_DUPLICATE), MQTT5_RC_PROTOCOL_ERROR);
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_PROPERTY_VALUE), MQTT5_RC_PROTOCOL_ERROR);
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_PROPERTY_NOT_ALLOWED), MQTT5_RC_MALFORMED);
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_PROPERTY_UNKNOWN), MQTT5_RC_MALFORMED);
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_VBI), MQTT5_RC_MALFORMED);
    assert_int_equal(mqtt5_err_reason(MQTT_ERR_PACKET_TOO_LARGE), MQTT5_RC_PACKET_TOO_LARGE);
    assert_true(mqtt5_reason_valid(MQTT_PUBACK, MQTT5_RC_PAYLOAD_FORMAT_INVALID));
    assert_true(mqtt5_reason_valid(MQTT_PUBREC, MQTT5_RC_TOPIC_NAME_INVALID));
    assert_false(mqtt5_reason_valid(MQTT_PUBREL, MQTT5_RC_UNSPECIFIED));
    assert_true(mqtt5_reason_valid(MQTT_DISCONNECT, MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED));
    assert_false(mqtt5_reason_valid(MQTT_CONNECT, 0));
    assert_string_equal(mqtt5_prop_name(MQTT5_PROP_TOPIC_ALIAS), "topic alias");
    assert_null(mqtt5_prop_name(0x04));
    assert_null(mqtt5_prop_name(0x2B));
    assert_string_equal(mqtt_errname(MQTT_ERR_PROPERTY_DUPLICATE), "MQTT_ERR_PROPERTY_DUPLICATE");
}

/* The size bound applies from the fixed header, as in 3.1.1. */
static void test_max_packet(void **state) {
    (void)state;
    mqtt5_packet_t pkt;
    assert_int_equal(decode5(valid[7].bytes, valid[7].len, 36, &pkt), MQTT_ERR_PACKET_TOO_LARGE);
    assert_int_equal(decode5(valid[7].bytes, 2, 36, &pkt), MQTT_ERR_PACKET_TOO_LARGE);
    assert_int_equal(decode5(valid[7].bytes, valid[7].len, 37, &pkt), 37);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors),
        cmocka_unit_test(test_malformed_vectors),
        cmocka_unit_test(test_connect_fields),
        cmocka_unit_test(test_publish_user_properties_in_order),
        cmocka_unit_test(test_subscribe_options),
        cmocka_unit_test(test_variable_byte_integers),
        cmocka_unit_test(test_encode_server_packets),
        cmocka_unit_test(test_encode_publish_user_properties),
        cmocka_unit_test(test_reason_codes),
        cmocka_unit_test(test_max_packet),
    };
    return cmocka_run_group_tests(tests, setup_guard, teardown_guard);
}
