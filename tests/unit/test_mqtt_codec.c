/* Unit tests for the MQTT 3.1.1 (and 3.1) decoder: vectors for every packet
 * type and every malformed class, every prefix, re-encoding, the fixed header,
 * all of it with the input ending right at a PROT_NONE guard page. Strings and
 * topics are in test_mqtt_codec_strings.c, the encoders in
 * test_mqtt_codec_encode.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mqtt/codec.h"

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    mqtt_type_t type;
} valid_t;

typedef struct {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    int err;
} malformed_t;

#include "codec_guard.h"

/* Decodes a copy placed before the guard page. */
static ssize_t decode_guarded(const uint8_t *bytes, size_t len, size_t max, mqtt_packet_t *pkt) {
    return mqtt_decode(guard_place(bytes, len), len, max, pkt);
}

/* ---- Vectors ------------------------------------------------------------ */

static const valid_t valid[] = {
    {"connect_min",
     B("\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02"
       "c1"),
     MQTT_CONNECT},
    {"connect_empty_client_id", B("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"), MQTT_CONNECT},
    {"connect_full",
     B("\x10\x1f\x00\x04MQTT\x04\xee\x00\x0a\x00\x03"
       "cid\x00\x03w/t\x00\x02\x00\xff\x00\x01u\x00\x02\x00p"),
     MQTT_CONNECT},
    {"connect_username_only", B("\x10\x10\x00\x04MQTT\x04\x80\x00\x00\x00\x01x\x00\x01u"),
     MQTT_CONNECT},
    /* MQTT 3.1: "MQIsdp" level 3, the 3.1.1 layout after it. */
    {"connect_mqisdp",
     B("\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02"
       "c1"),
     MQTT_CONNECT},
    /* Control characters in a client id are the session's to refuse (CONNACK 0x02). */
    {"connect_client_id_control", B("\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\x01\x7f"),
     MQTT_CONNECT},
    {"connack_session_present", B("\x20\x02\x01\x00"), MQTT_CONNACK},
    {"connack_refused", B("\x20\x02\x00\x05"), MQTT_CONNACK},
    {"publish_qos0",
     B("\x30\x0a\x00\x03"
       "a/bhello"),
     MQTT_PUBLISH},
    {"publish_qos0_empty_payload", B("\x30\x03\x00\x01x"), MQTT_PUBLISH},
    {"publish_qos1_retain", B("\x33\x05\x00\x01t\x12\x34"), MQTT_PUBLISH},
    {"publish_qos2_dup_utf8",
     B("\x3c\x10\x00\x0a"
       "caf\xc3\xa9/\xf0\x9f\x98\x80\x00\x01\x00\xff"),
     MQTT_PUBLISH},
    {"publish_bom_topic", B("\x30\x05\x00\x03\xef\xbb\xbf"), MQTT_PUBLISH},
    {"puback", B("\x40\x02\x00\x01"), MQTT_PUBACK},
    {"pubrec", B("\x50\x02\xff\xff"), MQTT_PUBREC},
    {"pubrel", B("\x62\x02\x12\x34"), MQTT_PUBREL},
    {"pubcomp", B("\x70\x02\x00\x07"), MQTT_PUBCOMP},
    {"subscribe",
     B("\x82\x14\x00\x0a\x00\x05"
       "a/+/c\x01\x00\x01#\x00\x00\x03x/#\x02"),
     MQTT_SUBSCRIBE},
    {"suback", B("\x90\x06\x00\x0a\x01\x00\x02\x80"), MQTT_SUBACK},
    {"unsubscribe",
     B("\xa2\x0a\x00\x0b\x00\x01+\x00\x03"
       "a/b"),
     MQTT_UNSUBSCRIBE},
    {"unsuback", B("\xb0\x02\x00\x0b"), MQTT_UNSUBACK},
    {"pingreq", B("\xc0\x00"), MQTT_PINGREQ},
    {"pingresp", B("\xd0\x00"), MQTT_PINGRESP},
    {"disconnect", B("\xe0\x00"), MQTT_DISCONNECT},
};

#define NVALID (sizeof(valid) / sizeof(valid[0]))

/* CONNECT with the given protocol name/level/flags prefix. */
#define CONNECT_HDR "\x00\x04MQTT\x04"

static const malformed_t malformed[] = {
    /* Fixed header */
    {"type0", B("\x00\x00"), MQTT_ERR_RESERVED_TYPE},
    {"type15", B("\xf0\x00"), MQTT_ERR_RESERVED_TYPE},
    {"connect_flags", B("\x11\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"connack_flags", B("\x22\x02\x00\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"puback_flags", B("\x41\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pubrec_flags", B("\x52\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pubrel_flags_0000", B("\x60\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pubrel_flags_0011", B("\x63\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pubcomp_flags", B("\x78\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"subscribe_flags",
     B("\x80\x06\x00\x01\x00\x01"
       "a\x00"),
     MQTT_ERR_FIXED_HEADER_FLAGS},
    {"suback_flags", B("\x92\x03\x00\x01\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"unsubscribe_flags",
     B("\xa0\x05\x00\x01\x00\x01"
       "a"),
     MQTT_ERR_FIXED_HEADER_FLAGS},
    {"unsuback_flags", B("\xb2\x02\x00\x01"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pingreq_flags", B("\xc8\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"pingresp_flags", B("\xd1\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"disconnect_flags", B("\xe4\x00"), MQTT_ERR_FIXED_HEADER_FLAGS},
    {"publish_qos3", B("\x36\x03\x00\x01t"), MQTT_ERR_QOS_INVALID},
    {"publish_dup_qos0", B("\x38\x03\x00\x01t"), MQTT_ERR_DUP_ON_QOS0},
    {"length_5_bytes", B("\x30\xff\xff\xff\xff\x01"), MQTT_ERR_REMAINING_LENGTH},
    {"length_80_00", B("\x30\x80\x00"), MQTT_ERR_LENGTH_NOT_MINIMAL},
    {"length_80_80_00", B("\x30\x80\x80\x00"), MQTT_ERR_LENGTH_NOT_MINIMAL},
    {"length_ff_80_80_00", B("\x30\xff\x80\x80\x00"), MQTT_ERR_LENGTH_NOT_MINIMAL},
    {"pingreq_length_80_00", B("\xc0\x80\x00"), MQTT_ERR_LENGTH_NOT_MINIMAL},
    /* Fixed-size packets with the wrong remaining length */
    {"puback_long", B("\x40\x03\x00\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    {"puback_short", B("\x40\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connack_short", B("\x20\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"unsuback_long", B("\xb0\x03\x00\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    {"pingreq_long", B("\xc0\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    {"pingresp_long", B("\xd0\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    {"disconnect_long", B("\xe0\x01\x00"), MQTT_ERR_TRAILING_BYTES},
    /* Packet identifier 0 */
    {"publish_qos1_id0", B("\x32\x05\x00\x01t\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"publish_qos2_id0", B("\x34\x05\x00\x01t\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"puback_id0", B("\x40\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"pubrec_id0", B("\x50\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"pubrel_id0", B("\x62\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"pubcomp_id0", B("\x70\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"subscribe_id0",
     B("\x82\x06\x00\x00\x00\x01"
       "a\x00"),
     MQTT_ERR_PACKET_ID_ZERO},
    {"suback_id0", B("\x90\x03\x00\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    {"unsubscribe_id0",
     B("\xa2\x05\x00\x00\x00\x01"
       "a"),
     MQTT_ERR_PACKET_ID_ZERO},
    {"unsuback_id0", B("\xb0\x02\x00\x00"), MQTT_ERR_PACKET_ID_ZERO},
    /* PUBLISH fields */
    {"publish_no_topic_length", B("\x30\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"publish_topic_past_end",
     B("\x30\x03\x00\x05"
       "a"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"publish_qos1_no_id", B("\x32\x03\x00\x01t"), MQTT_ERR_PACKET_TOO_SHORT},
    {"publish_qos1_half_id", B("\x32\x04\x00\x01t\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"publish_topic_empty", B("\x30\x04\x00\x00hi"), MQTT_ERR_TOPIC_EMPTY},
    {"publish_topic_control",
     B("\x30\x05\x00\x03"
       "a\x1b/"),
     MQTT_ERR_UTF8_CONTROL},
    {"publish_topic_del",
     B("\x30\x05\x00\x03"
       "a/\x7f"),
     MQTT_ERR_UTF8_CONTROL},
    {"publish_topic_c1_control",
     B("\x30\x05\x00\x03"
       "a\xc2\x9f"),
     MQTT_ERR_UTF8_CONTROL},
    {"publish_topic_noncharacter", B("\x30\x06\x00\x04\xf4\x8f\xbf\xbe"),
     MQTT_ERR_UTF8_NONCHARACTER},
    {"publish_topic_plus",
     B("\x30\x05\x00\x03"
       "a/+"),
     MQTT_ERR_TOPIC_WILDCARD},
    {"publish_topic_hash",
     B("\x30\x05\x00\x03"
       "a/#"),
     MQTT_ERR_TOPIC_WILDCARD},
    {"publish_topic_hash_long", B("\x30\x16\x00\x14sensors/1234/temp#xx"), MQTT_ERR_TOPIC_WILDCARD},
    {"publish_topic_nul",
     B("\x30\x05\x00\x03"
       "a\x00"
       "b"),
     MQTT_ERR_UTF8_NUL},
    {"publish_topic_nul_long", B("\x30\x15\x00\x13sensors/1/temperat\x00"), MQTT_ERR_UTF8_NUL},
    {"utf8_overlong_2", B("\x30\x04\x00\x02\xc0\xaf"), MQTT_ERR_UTF8_INVALID},
    {"utf8_overlong_nul", B("\x30\x04\x00\x02\xc0\x80"), MQTT_ERR_UTF8_INVALID},
    {"utf8_overlong_3", B("\x30\x05\x00\x03\xe0\x80\xaf"), MQTT_ERR_UTF8_INVALID},
    {"utf8_overlong_4", B("\x30\x06\x00\x04\xf0\x80\x80\xaf"), MQTT_ERR_UTF8_INVALID},
    {"utf8_above_10ffff", B("\x30\x06\x00\x04\xf4\x90\x80\x80"), MQTT_ERR_UTF8_INVALID},
    {"utf8_lead_f5", B("\x30\x06\x00\x04\xf5\x80\x80\x80"), MQTT_ERR_UTF8_INVALID},
    {"utf8_lead_ff", B("\x30\x03\x00\x01\xff"), MQTT_ERR_UTF8_INVALID},
    {"utf8_truncated_2",
     B("\x30\x04\x00\x02"
       "a\xc3"),
     MQTT_ERR_UTF8_INVALID},
    {"utf8_truncated_3", B("\x30\x04\x00\x02\xe2\x82"), MQTT_ERR_UTF8_INVALID},
    {"utf8_truncated_4_then_ascii",
     B("\x30\x06\x00\x04\xf0\x9f\x98"
       "a"),
     MQTT_ERR_UTF8_INVALID},
    {"utf8_stray_continuation",
     B("\x30\x04\x00\x02"
       "a\x80"),
     MQTT_ERR_UTF8_INVALID},
    {"utf8_surrogate_low", B("\x30\x05\x00\x03\xed\xa0\x80"), MQTT_ERR_UTF8_SURROGATE},
    {"utf8_surrogate_high", B("\x30\x05\x00\x03\xed\xbf\xbf"), MQTT_ERR_UTF8_SURROGATE},
    {"utf8_invalid_after_fast_path",
     B("\x30\x0c\x00\x0a"
       "abcdefgh\xc3\x28"),
     MQTT_ERR_UTF8_INVALID},
    /* CONNECT */
    {"connect_no_name", B("\x10\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_name_past_end", B("\x10\x03\x00\x04M"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_no_level", B("\x10\x06\x00\x04MQTT"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_no_flags", B("\x10\x07" CONNECT_HDR), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_no_keepalive", B("\x10\x09" CONNECT_HDR "\x02\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_no_client_id", B("\x10\x0a" CONNECT_HDR "\x02\x00\x3c"), MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_name_mqtx", B("\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_NAME},
    {"connect_name_lowercase", B("\x10\x0c\x00\x04mqtt\x04\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_NAME},
    {"connect_name_before_level", B("\x10\x0c\x00\x04MQTX\x03\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_NAME},
    {"connect_level3", B("\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00"), MQTT_ERR_PROTOCOL_LEVEL},
    {"connect_level5", B("\x10\x0c\x00\x04MQTT\x05\x02\x00\x3c\x00\x00"), MQTT_ERR_PROTOCOL_LEVEL},
    {"connect_mqisdp_level4", B("\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_LEVEL},
    {"connect_mqisdp_level5", B("\x10\x0e\x00\x06MQIsdp\x05\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_LEVEL},
    {"connect_name_mqisd", B("\x10\x0d\x00\x05MQIsd\x03\x02\x00\x3c\x00\x00"),
     MQTT_ERR_PROTOCOL_NAME},
    {"connect_reserved_flag", B("\x10\x0c" CONNECT_HDR "\x03\x00\x3c\x00\x00"),
     MQTT_ERR_CONNECT_RESERVED},
    {"connect_will_qos_without_will", B("\x10\x0c" CONNECT_HDR "\x0a\x00\x3c\x00\x00"),
     MQTT_ERR_WILL_FLAGS},
    {"connect_will_retain_without_will", B("\x10\x0c" CONNECT_HDR "\x22\x00\x3c\x00\x00"),
     MQTT_ERR_WILL_FLAGS},
    {"connect_will_qos3", B("\x10\x12" CONNECT_HDR "\x1e\x00\x3c\x00\x00\x00\x01t\x00\x01m"),
     MQTT_ERR_WILL_QOS},
    {"connect_password_without_username", B("\x10\x0f" CONNECT_HDR "\x42\x00\x3c\x00\x00\x00\x01p"),
     MQTT_ERR_PASSWORD_NO_USERNAME},
    {"connect_username_flag_no_field", B("\x10\x0c" CONNECT_HDR "\x82\x00\x3c\x00\x00"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_password_flag_no_field", B("\x10\x0f" CONNECT_HDR "\xc2\x00\x3c\x00\x00\x00\x01u"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_will_flag_no_fields", B("\x10\x0c" CONNECT_HDR "\x06\x00\x3c\x00\x00"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_will_flag_no_message", B("\x10\x0f" CONNECT_HDR "\x06\x00\x3c\x00\x00\x00\x01t"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"connect_username_without_flag", B("\x10\x0f" CONNECT_HDR "\x02\x00\x3c\x00\x00\x00\x01u"),
     MQTT_ERR_TRAILING_BYTES},
    {"connect_trailing_byte", B("\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x00\x00"),
     MQTT_ERR_TRAILING_BYTES},
    {"connect_client_id_utf8", B("\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x01\xff"),
     MQTT_ERR_UTF8_INVALID},
    {"connect_client_id_nul", B("\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x01\x00"),
     MQTT_ERR_UTF8_NUL},
    {"connect_username_surrogate",
     B("\x10\x11" CONNECT_HDR "\x82\x00\x3c\x00\x00\x00\x03\xed\xb0\x80"), MQTT_ERR_UTF8_SURROGATE},
    {"connect_will_topic_wildcard",
     B("\x10\x11" CONNECT_HDR "\x06\x00\x3c\x00\x00\x00\x01#\x00\x00"), MQTT_ERR_TOPIC_WILDCARD},
    {"connect_will_topic_empty", B("\x10\x10" CONNECT_HDR "\x06\x00\x3c\x00\x00\x00\x00\x00\x00"),
     MQTT_ERR_TOPIC_EMPTY},
    /* Strict strings (issue 13, as Mosquitto): the user name and the will topic. */
    {"connect_username_control", B("\x10\x0f" CONNECT_HDR "\x82\x00\x3c\x00\x00\x00\x01\x1f"),
     MQTT_ERR_UTF8_CONTROL},
    {"connect_username_c1_control",
     B("\x10\x10" CONNECT_HDR "\x82\x00\x3c\x00\x00\x00\x02\xc2\x85"), MQTT_ERR_UTF8_CONTROL},
    {"connect_username_noncharacter",
     B("\x10\x11" CONNECT_HDR "\x82\x00\x3c\x00\x00\x00\x03\xef\xbf\xbe"),
     MQTT_ERR_UTF8_NONCHARACTER},
    {"connect_will_topic_control",
     B("\x10\x13" CONNECT_HDR "\x06\x00\x3c\x00\x00\x00\x03w/\x0a\x00\x00"), MQTT_ERR_UTF8_CONTROL},
    {"connect_will_topic_noncharacter",
     B("\x10\x13" CONNECT_HDR "\x06\x00\x3c\x00\x00\x00\x03\xef\xb7\x90\x00\x00"),
     MQTT_ERR_UTF8_NONCHARACTER},
    {"mqisdp_username_control", B("\x10\x11\x00\x06MQIsdp\x03\x82\x00\x3c\x00\x00\x00\x01\x7f"),
     MQTT_ERR_UTF8_CONTROL},
    /* CONNACK */
    {"connack_reserved_flags", B("\x20\x02\x02\x00"), MQTT_ERR_CONNACK_FLAGS},
    {"connack_session_present_refused", B("\x20\x02\x01\x02"), MQTT_ERR_CONNACK_FLAGS},
    {"connack_code6", B("\x20\x02\x00\x06"), MQTT_ERR_CONNACK_CODE},
    /* SUBSCRIBE / UNSUBSCRIBE / SUBACK */
    {"subscribe_no_filters", B("\x82\x02\x00\x01"), MQTT_ERR_NO_FILTERS},
    {"subscribe_no_id", B("\x82\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"subscribe_qos3",
     B("\x82\x06\x00\x01\x00\x01"
       "a\x03"),
     MQTT_ERR_SUBSCRIBE_QOS},
    {"subscribe_reserved_bits",
     B("\x82\x06\x00\x01\x00\x01"
       "a\x04"),
     MQTT_ERR_SUBSCRIBE_QOS},
    {"subscribe_reserved_bit7",
     B("\x82\x06\x00\x01\x00\x01"
       "a\x81"),
     MQTT_ERR_SUBSCRIBE_QOS},
    {"subscribe_no_qos_byte",
     B("\x82\x05\x00\x01\x00\x01"
       "a"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"subscribe_second_missing_qos",
     B("\x82\x09\x00\x01\x00\x01"
       "a\x00\x00\x01"
       "b"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"subscribe_filter_past_end",
     B("\x82\x05\x00\x01\x00\x05"
       "a"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"subscribe_filter_half_length", B("\x82\x03\x00\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"subscribe_filter_empty", B("\x82\x05\x00\x01\x00\x00\x00"), MQTT_ERR_FILTER_INVALID},
    {"subscribe_hash_not_last",
     B("\x82\x0a\x00\x01\x00\x05"
       "a/#/b\x00"),
     MQTT_ERR_FILTER_INVALID},
    {"subscribe_hash_not_alone",
     B("\x82\x07\x00\x01\x00\x02"
       "a#\x00"),
     MQTT_ERR_FILTER_INVALID},
    {"subscribe_plus_not_alone",
     B("\x82\x09\x00\x01\x00\x04"
       "a/+b\x00"),
     MQTT_ERR_FILTER_INVALID},
    {"subscribe_plus_after_char",
     B("\x82\x09\x00\x01\x00\x04"
       "a+/b\x00"),
     MQTT_ERR_FILTER_INVALID},
    {"subscribe_filter_utf8", B("\x82\x06\x00\x01\x00\x01\xc0\x00"), MQTT_ERR_UTF8_INVALID},
    {"unsubscribe_no_filters", B("\xa2\x02\x00\x01"), MQTT_ERR_NO_FILTERS},
    {"unsubscribe_filter_empty", B("\xa2\x04\x00\x01\x00\x00"), MQTT_ERR_FILTER_INVALID},
    {"unsubscribe_bad_filter", B("\xa2\x06\x00\x01\x00\x02##"), MQTT_ERR_FILTER_INVALID},
    {"unsubscribe_filter_past_end",
     B("\xa2\x05\x00\x01\x00\x02"
       "a"),
     MQTT_ERR_PACKET_TOO_SHORT},
    {"unsubscribe_filter_nul", B("\xa2\x05\x00\x01\x00\x01\x00"), MQTT_ERR_UTF8_NUL},
    {"suback_no_codes", B("\x90\x02\x00\x01"), MQTT_ERR_PACKET_TOO_SHORT},
    {"suback_no_id", B("\x90\x01\x00"), MQTT_ERR_PACKET_TOO_SHORT},
    {"suback_code3", B("\x90\x04\x00\x01\x00\x03"), MQTT_ERR_SUBACK_CODE},
    {"suback_code81", B("\x90\x03\x00\x01\x81"), MQTT_ERR_SUBACK_CODE},
};

#define NMALFORMED (sizeof(malformed) / sizeof(malformed[0]))

/* ---- Generic vector tests ----------------------------------------------- */

static void test_valid_vectors_decode(void **state) {
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        const valid_t *v = &valid[i];
        mqtt_packet_t pkt;
        ssize_t rc = decode_guarded(v->bytes, v->len, 0, &pkt);
        if (rc != (ssize_t)v->len)
            fail_msg("%s: got %zd (%s)", v->name, rc, mqtt_errname((int)rc));
        assert_int_equal(pkt.type, v->type);
        assert_int_equal(pkt.flags, v->bytes[0] & 0x0F);
        /* The limit is inclusive. */
        assert_int_equal(decode_guarded(v->bytes, v->len, v->len, &pkt), (ssize_t)v->len);
        assert_int_equal(decode_guarded(v->bytes, v->len, v->len - 1, &pkt),
                         MQTT_ERR_PACKET_TOO_LARGE);
    }
}

static void test_valid_vectors_prefixes(void **state) {
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        const valid_t *v = &valid[i];
        for (size_t n = 0; n < v->len; n++) {
            mqtt_packet_t pkt;
            ssize_t rc = decode_guarded(v->bytes, n, 0, &pkt);
            if (rc != 0)
                fail_msg("%s: prefix %zu gave %zd (%s)", v->name, n, rc, mqtt_errname((int)rc));
        }
    }
}

static void test_valid_vectors_followed_by_more(void **state) {
    (void)state;
    /* A packet followed by the start of the next consumes exactly itself. */
    for (size_t i = 0; i < NVALID; i++) {
        const valid_t *v = &valid[i];
        uint8_t buf[256];
        memcpy(buf, v->bytes, v->len);
        memcpy(buf + v->len, "\x30\x7f", 2);
        mqtt_packet_t pkt;
        assert_int_equal(decode_guarded(buf, v->len + 2, 0, &pkt), (ssize_t)v->len);
        assert_int_equal(decode_guarded(buf + v->len, 2, 0, &pkt), 0);
    }
}

static void test_valid_vectors_reencode(void **state) {
    (void)state;
    for (size_t i = 0; i < NVALID; i++) {
        const valid_t *v = &valid[i];
        mqtt_packet_t pkt, again;
        assert_int_equal(decode_guarded(v->bytes, v->len, 0, &pkt), (ssize_t)v->len);
        uint8_t out[256];
        memset(out, 0xEE, sizeof(out));
        /* Too small by one: the size comes back, nothing is written. */
        assert_int_equal(mqtt_encode(out, v->len - 1, &pkt), v->len);
        for (size_t k = 0; k < sizeof(out); k++)
            assert_int_equal(out[k], 0xEE);
        assert_int_equal(mqtt_encode(out, sizeof(out), &pkt), v->len);
        if (memcmp(out, v->bytes, v->len) != 0)
            fail_msg("%s: re-encoding differs", v->name);
        assert_int_equal(out[v->len], 0xEE);
        /* And the re-encoded bytes decode to the same packet again. */
        assert_int_equal(mqtt_decode(out, v->len, 0, &again), (ssize_t)v->len);
        uint8_t out2[256];
        assert_int_equal(mqtt_encode(out2, sizeof(out2), &again), v->len);
        assert_memory_equal(out2, v->bytes, v->len);
    }
}

static void test_malformed_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < NMALFORMED; i++) {
        const malformed_t *m = &malformed[i];
        mqtt_packet_t pkt;
        ssize_t rc = decode_guarded(m->bytes, m->len, 0, &pkt);
        if (rc != m->err)
            fail_msg("%s: expected %s, got %zd (%s)", m->name, mqtt_errname(m->err), rc,
                     mqtt_errname((int)rc));
    }
}

/* A prefix of a malformed packet either needs more bytes or already shows
 * the same error (when the fixed header alone proves it). */
static void test_malformed_vectors_prefixes(void **state) {
    (void)state;
    for (size_t i = 0; i < NMALFORMED; i++) {
        const malformed_t *m = &malformed[i];
        for (size_t n = 0; n < m->len; n++) {
            mqtt_packet_t pkt;
            ssize_t rc = decode_guarded(m->bytes, n, 0, &pkt);
            if (rc != 0 && rc != m->err)
                fail_msg("%s: prefix %zu gave %zd (%s)", m->name, n, rc, mqtt_errname((int)rc));
        }
    }
}

/* ---- Per-type field checks ---------------------------------------------- */

static const valid_t *find_valid(const char *name) {
    for (size_t i = 0; i < NVALID; i++)
        if (strcmp(valid[i].name, name) == 0)
            return &valid[i];
    fail_msg("no vector %s", name);
    return NULL;
}

static void decode_named(const char *name, mqtt_packet_t *pkt) {
    const valid_t *v = find_valid(name);
    assert_int_equal(decode_guarded(v->bytes, v->len, 0, pkt), (ssize_t)v->len);
}

static void test_connect_fields(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    decode_named("connect_min", &pkt);
    const mqtt_connect_t *c = &pkt.u.connect;
    ASSERT_STR(c->protocol_name, "MQTT");
    assert_int_equal(c->protocol_level, 4);
    assert_true(c->clean_session);
    assert_false(c->will_flag || c->will_retain || c->has_username || c->has_password);
    assert_int_equal(c->will_qos, 0);
    assert_int_equal(c->keepalive, 60);
    ASSERT_STR(c->client_id, "c1");
    assert_int_equal(c->username.len, 0);

    decode_named("connect_empty_client_id", &pkt);
    assert_int_equal(pkt.u.connect.client_id.len, 0);

    decode_named("connect_full", &pkt);
    assert_true(c->clean_session);
    assert_true(c->will_flag && c->will_retain && c->has_username && c->has_password);
    assert_int_equal(c->will_qos, 1);
    assert_int_equal(c->keepalive, 10);
    ASSERT_STR(c->client_id, "cid");
    ASSERT_STR(c->will_topic, "w/t");
    ASSERT_STR(c->will_payload, "\x00\xff");
    ASSERT_STR(c->username, "u");
    ASSERT_STR(c->password, "\x00p");

    decode_named("connect_username_only", &pkt);
    assert_false(c->clean_session);
    assert_true(c->has_username);
    assert_false(c->has_password);
    assert_int_equal(c->keepalive, 0);
    ASSERT_STR(c->username, "u");
}

static void test_connect_protocol_level_reported(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    memset(&pkt, 0, sizeof(pkt));
    assert_int_equal(decode_guarded(B("\x10\x0c\x00\x04MQTT\x03\x02\x00\x3c\x00\x00"), 0, &pkt),
                     MQTT_ERR_PROTOCOL_LEVEL);
    assert_int_equal(pkt.type, MQTT_CONNECT);
    assert_int_equal(pkt.u.connect.protocol_level, 3);
    ASSERT_STR(pkt.u.connect.protocol_name, "MQTT");

    /* MQTT 3.1 ("MQIsdp" level 3) decodes; the client id length is the
     * session's (1..23 in 3.1). */
    assert_int_equal(decode_guarded(B("\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00"), 0, &pkt),
                     16);
    assert_int_equal(pkt.u.connect.protocol_level, MQTT_PROTOCOL_LEVEL_31);
    ASSERT_STR(pkt.u.connect.protocol_name, "MQIsdp");
    assert_true(pkt.u.connect.clean_session);
    assert_int_equal(pkt.u.connect.keepalive, 60);

    /* "MQIsdp" with level 4 is neither 3.1 nor 3.1.1. */
    assert_int_equal(decode_guarded(B("\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x00"), 0, &pkt),
                     MQTT_ERR_PROTOCOL_LEVEL);
    assert_int_equal(pkt.u.connect.protocol_level, 4);

    /* Another name: the name is reported, the level is not looked at. */
    assert_int_equal(decode_guarded(B("\x10\x0c\x00\x04MQTX\x03\x02\x00\x3c\x00\x00"), 0, &pkt),
                     MQTT_ERR_PROTOCOL_NAME);
    assert_int_equal(pkt.type, MQTT_CONNECT);
    ASSERT_STR(pkt.u.connect.protocol_name, "MQTX");

    /* The level is judged before anything after it. */
    assert_int_equal(decode_guarded(B("\x10\x07\x00\x04MQTT\x05"), 0, &pkt),
                     MQTT_ERR_PROTOCOL_LEVEL);
    assert_int_equal(pkt.u.connect.protocol_level, 5);
}

static void test_connack_fields(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    decode_named("connack_session_present", &pkt);
    assert_true(pkt.u.connack.session_present);
    assert_int_equal(pkt.u.connack.return_code, 0);
    decode_named("connack_refused", &pkt);
    assert_false(pkt.u.connack.session_present);
    assert_int_equal(pkt.u.connack.return_code, MQTT_CONNACK_NOT_AUTHORIZED);
}

static void test_publish_fields(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    const mqtt_publish_t *p = &pkt.u.publish;
    decode_named("publish_qos0", &pkt);
    assert_false(p->dup || p->retain);
    assert_int_equal(p->qos, 0);
    assert_int_equal(p->packet_id, 0);
    ASSERT_STR(p->topic, "a/b");
    ASSERT_STR(p->payload, "hello");

    decode_named("publish_qos0_empty_payload", &pkt);
    ASSERT_STR(p->topic, "x");
    assert_int_equal(p->payload.len, 0);

    decode_named("publish_qos1_retain", &pkt);
    assert_true(p->retain);
    assert_false(p->dup);
    assert_int_equal(p->qos, 1);
    assert_int_equal(p->packet_id, 0x1234);
    assert_int_equal(p->payload.len, 0);

    decode_named("publish_qos2_dup_utf8", &pkt);
    assert_true(p->dup);
    assert_false(p->retain);
    assert_int_equal(p->qos, 2);
    assert_int_equal(p->packet_id, 1);
    ASSERT_STR(p->topic, "caf\xc3\xa9/\xf0\x9f\x98\x80");
    ASSERT_STR(p->payload, "\x00\xff");

    /* A BOM is kept, not stripped [MQTT-1.5.3-3]. */
    decode_named("publish_bom_topic", &pkt);
    ASSERT_STR(p->topic, "\xef\xbb\xbf");
}

static void test_ack_fields(void **state) {
    (void)state;
    static const struct {
        const char *name;
        uint16_t id;
    } acks[] = {
        {"puback", 1}, {"pubrec", 0xffff}, {"pubrel", 0x1234}, {"pubcomp", 7}, {"unsuback", 0x0b}};
    for (size_t i = 0; i < sizeof(acks) / sizeof(acks[0]); i++) {
        mqtt_packet_t pkt;
        decode_named(acks[i].name, &pkt);
        assert_int_equal(pkt.u.packet_id, acks[i].id);
    }
}

static void test_subscribe_fields(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    decode_named("subscribe", &pkt);
    const mqtt_subscribe_t *s = &pkt.u.subscribe;
    assert_int_equal(s->packet_id, 10);
    assert_int_equal(s->count, 3);
    assert_true(s->with_qos);
    size_t off = 0;
    mqtt_str_t f;
    uint8_t q = 0xff;
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 1);
    ASSERT_STR(f, "a/+/c");
    assert_int_equal(q, 1);
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 1);
    ASSERT_STR(f, "#");
    assert_int_equal(q, 0);
    assert_int_equal(mqtt_filter_next(s, &off, &f, NULL), 1);
    ASSERT_STR(f, "x/#");
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 0);
    assert_int_equal(off, s->entries.len);

    decode_named("unsubscribe", &pkt);
    assert_int_equal(s->packet_id, 11);
    assert_int_equal(s->count, 2);
    assert_false(s->with_qos);
    off = 0;
    q = 0xff;
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 1);
    ASSERT_STR(f, "+");
    assert_int_equal(q, 0);
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 1);
    ASSERT_STR(f, "a/b");
    assert_int_equal(mqtt_filter_next(s, &off, &f, &q), 0);
}

static void test_suback_fields(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    decode_named("suback", &pkt);
    assert_int_equal(pkt.u.suback.packet_id, 10);
    ASSERT_STR(pkt.u.suback.return_codes, "\x01\x00\x02\x80");
}

/* ---- Fixed header and remaining length --------------------------------- */

#define FH(lit, fh) mqtt_decode_fixed_header(guard_place(B(lit)), sizeof(lit) - 1, (fh))

static void test_remaining_length_boundaries(void **state) {
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        uint32_t value;
    } cases[] = {
        {"\x30\x00", 2, 0},
        {"\x30\x7f", 2, 127},
        {"\x30\x80\x01", 3, 128},
        {"\x30\xff\x7f", 3, 16383},
        {"\x30\x80\x80\x01", 4, 16384},
        {"\x30\xff\xff\x7f", 4, 2097151},
        {"\x30\x80\x80\x80\x01", 5, 2097152},
        {"\x30\xff\xff\xff\x7f", 5, 268435455},
        {"\x30\xc1\x84\x3d", 4, 0x41 | 0x04 << 7 | 0x3d << 14},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *b = guard_place((const uint8_t *)cases[i].bytes, cases[i].len);
        mqtt_fixed_header_t fh;
        assert_int_equal(mqtt_decode_fixed_header(b, cases[i].len, &fh), (int)cases[i].len);
        assert_int_equal(fh.type, MQTT_PUBLISH);
        assert_int_equal(fh.flags, 0);
        assert_int_equal(fh.remaining_length, cases[i].value);
        assert_int_equal(fh.header_len, cases[i].len);
        for (size_t n = 0; n < cases[i].len; n++) {
            b = guard_place((const uint8_t *)cases[i].bytes, n);
            assert_int_equal(mqtt_decode_fixed_header(b, n, &fh), 0);
        }
    }
    mqtt_fixed_header_t fh;
    assert_int_equal(FH("\x30\xff\xff\xff\x80", &fh), MQTT_ERR_REMAINING_LENGTH);
    assert_int_equal(FH("\x30\xff\xff\xff", &fh), 0);
    assert_int_equal(FH("\x62\x02", &fh), 2);
    assert_int_equal(fh.type, MQTT_PUBREL);
    assert_int_equal(fh.flags, 2);
    assert_int_equal(FH("\x3d\x05", &fh), 2);
    assert_int_equal(fh.flags, 0x0d);
}

/* PUBLISH packets whose remaining length sits on each encoding boundary,
 * encoded and decoded for real. */
static void test_publish_length_boundaries(void **state) {
    (void)state;
    static const uint32_t rls[] = {127, 128, 16383, 16384, 2097151, 2097152};
    static const size_t hls[] = {2, 3, 3, 4, 4, 5};
    size_t maxlen = 2097152 + 5;
    uint8_t *payload = malloc(maxlen), *buf = malloc(maxlen);
    assert_non_null(payload);
    assert_non_null(buf);
    memset(payload, 'p', maxlen);
    for (size_t i = 0; i < sizeof(rls) / sizeof(rls[0]); i++) {
        mqtt_publish_t p = {.qos = 0, .topic = {(const uint8_t *)"t", 1}};
        p.payload.ptr = payload;
        p.payload.len = rls[i] - 3;
        size_t size = mqtt_encode_publish(buf, maxlen, &p);
        assert_int_equal(size, hls[i] + rls[i]);
        mqtt_fixed_header_t fh;
        assert_int_equal(mqtt_decode_fixed_header(buf, size, &fh), (int)hls[i]);
        assert_int_equal(fh.remaining_length, rls[i]);
        mqtt_packet_t pkt;
        assert_int_equal(mqtt_decode(buf, size, 0, &pkt), (ssize_t)size);
        assert_int_equal(pkt.u.publish.payload.len, rls[i] - 3);
        assert_ptr_equal(pkt.u.publish.payload.ptr, buf + hls[i] + 3);
        assert_int_equal(mqtt_decode(buf, size - 1, 0, &pkt), 0);
        assert_int_equal(mqtt_decode(buf, size, size - 1, &pkt), MQTT_ERR_PACKET_TOO_LARGE);
    }
    free(payload);
    free(buf);

    /* The protocol maximum: the size is computed, nothing is written. */
    mqtt_publish_t p = {.topic = {(const uint8_t *)"t", 1}};
    p.payload.ptr = (const uint8_t *)"";
    p.payload.len = MQTT_MAX_REMAINING_LENGTH - 3;
    assert_int_equal(mqtt_encode_publish(NULL, 0, &p), MQTT_MAX_REMAINING_LENGTH + 5);
    p.payload.len++;
    assert_int_equal(mqtt_encode_publish(NULL, 0, &p), 0);
}

static void test_max_packet_from_header(void **state) {
    (void)state;
    mqtt_packet_t pkt;
    /* 3 header bytes announce 131 bytes in all: refused before the body. */
    assert_int_equal(decode_guarded(B("\x30\x80\x01"), 130, &pkt), MQTT_ERR_PACKET_TOO_LARGE);
    assert_int_equal(decode_guarded(B("\x30\x80\x01"), 131, &pkt), 0);
    assert_int_equal(decode_guarded(B("\x30\x80\x01"), 0, &pkt), 0);
    assert_int_equal(decode_guarded(B("\x30\xff\xff\xff\x7f"), 1 << 20, &pkt),
                     MQTT_ERR_PACKET_TOO_LARGE);
    assert_int_equal(decode_guarded(B("\x30\xff\xff\xff\x7f"), 0, &pkt), 0);
    /* Before the length is complete there is nothing to judge. */
    assert_int_equal(decode_guarded(B("\x30\xff\xff"), 10, &pkt), 0);
    /* Header errors take precedence over the size. */
    assert_int_equal(decode_guarded(B("\x36\xff\xff\xff\x7f"), 10, &pkt), MQTT_ERR_QOS_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors_decode),
        cmocka_unit_test(test_valid_vectors_prefixes),
        cmocka_unit_test(test_valid_vectors_followed_by_more),
        cmocka_unit_test(test_valid_vectors_reencode),
        cmocka_unit_test(test_malformed_vectors),
        cmocka_unit_test(test_malformed_vectors_prefixes),
        cmocka_unit_test(test_connect_fields),
        cmocka_unit_test(test_connect_protocol_level_reported),
        cmocka_unit_test(test_connack_fields),
        cmocka_unit_test(test_publish_fields),
        cmocka_unit_test(test_ack_fields),
        cmocka_unit_test(test_subscribe_fields),
        cmocka_unit_test(test_suback_fields),
        cmocka_unit_test(test_remaining_length_boundaries),
        cmocka_unit_test(test_publish_length_boundaries),
        cmocka_unit_test(test_max_packet_from_header),
    };
    return cmocka_run_group_tests(tests, setup_guard, teardown_guard);
}
