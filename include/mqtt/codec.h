/* MQTT 3.1.1 codec (and MQTT 3.1, which differs only in its CONNECT protocol
 * name and level): decodes and encodes all 14 control packets.
 *
 * Pure: works on (buffer, length), does no I/O, never allocates, keeps no
 * globals. Decoded strings and payloads are views into the caller's buffer and
 * stay valid only as long as that buffer does.
 *
 * Decoders return the number of bytes consumed (> 0), 0 when more bytes are
 * needed, or a negative MQTT_ERR_* code. Encoders return the size the packet
 * needs; they write only when that size fits in `cap`, so a caller can retry
 * with a larger buffer. An encoder returns 0 (and writes nothing) for a packet
 * that cannot exist: an invalid type, QoS 3, a string over 65,535 bytes or a
 * remaining length over MQTT_MAX_REMAINING_LENGTH.
 *
 * Strings: well-formed UTF-8 (RFC 3629: no overlongs, nothing above U+10FFFF),
 * no U+0000, no surrogates. Topic names (PUBLISH, will) and user names also
 * refuse the control characters U+0001..U+001F and U+007F..U+009F and the
 * non-characters (U+FDD0..U+FDEF and the last two code points of every plane),
 * as Mosquitto does (the standard lets a server choose [MQTT-1.5.3-2]); the
 * client id is only checked as UTF-8 here, so the session can answer CONNACK
 * 0x02 for it (mqtt_text_check). A BOM is kept. When a string has several
 * problems, the first one by position is reported. */
#ifndef M2K_MQTT_CODEC_H
#define M2K_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MQTT_MAX_REMAINING_LENGTH 268435455u
#define MQTT_MAX_FIXED_HEADER 5
#define MQTT_PROTOCOL_LEVEL_31 3 /* with the protocol name "MQIsdp" */
#define MQTT_PROTOCOL_LEVEL_311 4
#define MQTT_31_MAX_CLIENT_ID 23 /* MQTT 3.1: a client id has 1 to 23 bytes */

typedef enum {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
} mqtt_type_t;

/* CONNACK return codes [MQTT-3.2.2-3]. */
enum {
    MQTT_CONNACK_ACCEPTED = 0,
    MQTT_CONNACK_BAD_PROTOCOL = 1,
    MQTT_CONNACK_ID_REJECTED = 2,
    MQTT_CONNACK_UNAVAILABLE = 3,
    MQTT_CONNACK_BAD_CREDENTIALS = 4,
    MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

#define MQTT_SUBACK_FAILURE 0x80

/* Error codes: each malformed class has its own, so a log line can say exactly
 * what was wrong. mqtt_strerror() gives the text, mqtt_errname() the name. */
typedef enum {
    MQTT_ERR_REMAINING_LENGTH = -1,      /* more than 4 length bytes */
    MQTT_ERR_LENGTH_NOT_MINIMAL = -2,    /* length not in its shortest encoding */
    MQTT_ERR_RESERVED_TYPE = -3,         /* packet type 0 or 15 */
    MQTT_ERR_FIXED_HEADER_FLAGS = -4,    /* reserved flag bits wrong for the type */
    MQTT_ERR_PACKET_TOO_SHORT = -5,      /* a field runs past the packet's end */
    MQTT_ERR_TRAILING_BYTES = -6,        /* bytes left over after the last field */
    MQTT_ERR_QOS_INVALID = -7,           /* PUBLISH QoS 3 */
    MQTT_ERR_DUP_ON_QOS0 = -8,           /* PUBLISH QoS 0 with DUP set */
    MQTT_ERR_PACKET_ID_ZERO = -9,        /* packet identifier 0 where one is required */
    MQTT_ERR_PROTOCOL_NAME = -10,        /* CONNECT protocol name not "MQTT" or "MQIsdp" */
    MQTT_ERR_PROTOCOL_LEVEL = -11,       /* level not 4 ("MQTT") or 3 ("MQIsdp"): CONNACK 0x01 */
    MQTT_ERR_CONNECT_RESERVED = -12,     /* CONNECT reserved flag bit 0 set */
    MQTT_ERR_WILL_FLAGS = -13,           /* will QoS/retain set without will flag */
    MQTT_ERR_WILL_QOS = -14,             /* will QoS 3 */
    MQTT_ERR_PASSWORD_NO_USERNAME = -15, /* password flag without username flag */
    MQTT_ERR_UTF8_INVALID = -16,         /* string is not well-formed UTF-8 */
    MQTT_ERR_UTF8_NUL = -17,             /* string contains U+0000 */
    MQTT_ERR_UTF8_SURROGATE = -18,       /* string encodes U+D800..U+DFFF */
    MQTT_ERR_TOPIC_EMPTY = -19,          /* PUBLISH topic name of length 0 */
    MQTT_ERR_TOPIC_WILDCARD = -20,       /* PUBLISH topic name contains + or # */
    MQTT_ERR_FILTER_INVALID = -21,       /* topic filter with a misplaced wildcard or empty */
    MQTT_ERR_NO_FILTERS = -22,           /* SUBSCRIBE/UNSUBSCRIBE without a filter */
    MQTT_ERR_SUBSCRIBE_QOS = -23,        /* requested QoS above 2 or reserved bits set */
    MQTT_ERR_CONNACK_FLAGS = -24,        /* CONNACK reserved acknowledge flags set */
    MQTT_ERR_PACKET_TOO_LARGE = -25,     /* over the caller's max_packet (mqtt_decode) */
    MQTT_ERR_CONNACK_CODE = -26,         /* CONNACK return code above 5 */
    MQTT_ERR_SUBACK_CODE = -27,          /* SUBACK return code not 0, 1, 2 or 0x80 */
    MQTT_ERR_STRING_TOO_LONG = -28,      /* topic over 65,535 bytes (the check helpers) */
    MQTT_ERR_UTF8_CONTROL = -29,         /* U+0001..U+001F or U+007F..U+009F (strict strings) */
    MQTT_ERR_UTF8_NONCHARACTER = -30,    /* U+FDD0..U+FDEF, U+xFFFE, U+xFFFF (strict strings) */
    /* MQTT 5.0 (codec5.h) */
    MQTT_ERR_VBI = -31,                  /* variable byte integer over 4 bytes or not minimal */
    MQTT_ERR_PROPERTY_UNKNOWN = -32,     /* property identifier not defined */
    MQTT_ERR_PROPERTY_NOT_ALLOWED = -33, /* property not allowed in the packet: 0x81 */
    MQTT_ERR_PROPERTY_DUPLICATE = -34,   /* single-use property given twice: 0x82 */
    MQTT_ERR_PROPERTY_VALUE = -35,       /* property value out of its range: 0x82 */
    MQTT_ERR_REASON_CODE = -36,          /* reason code not defined for the packet */
    MQTT_ERR_SUBSCRIBE_OPTIONS = -37,    /* reserved option bits, QoS 3 or retain handling 3 */
} mqtt_err_t;

const char *mqtt_strerror(int err);
const char *mqtt_errname(int err);
const char *mqtt_type_name(int type);

/* A view into the caller's buffer; not NUL-terminated. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} mqtt_str_t;

typedef struct {
    mqtt_type_t type;
    uint8_t flags;             /* low nibble of the first byte */
    uint32_t remaining_length; /* bytes after the fixed header */
    uint8_t header_len;        /* 2..5 */
} mqtt_fixed_header_t;

typedef struct {
    mqtt_str_t protocol_name;
    uint8_t protocol_level;
    bool clean_session;
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    bool has_username;
    bool has_password;
    uint16_t keepalive;
    mqtt_str_t client_id;
    mqtt_str_t will_topic;
    mqtt_str_t will_payload; /* binary, not checked as UTF-8 */
    mqtt_str_t username;
    mqtt_str_t password; /* binary */
} mqtt_connect_t;

typedef struct {
    bool session_present;
    uint8_t return_code;
} mqtt_connack_t;

typedef struct {
    bool dup;
    uint8_t qos;
    bool retain;
    uint16_t packet_id; /* 0 for QoS 0 */
    mqtt_str_t topic;
    mqtt_str_t payload;
} mqtt_publish_t;

/* SUBSCRIBE and UNSUBSCRIBE: the decoder has validated every entry; walk them
 * with mqtt_filter_next(). */
typedef struct {
    uint16_t packet_id;
    uint32_t count;     /* number of filters, >= 1 */
    mqtt_str_t entries; /* the raw payload: filter (and QoS byte for SUBSCRIBE) */
    bool with_qos;      /* true for SUBSCRIBE */
} mqtt_subscribe_t;

typedef struct {
    uint16_t packet_id;
    mqtt_str_t return_codes;
} mqtt_suback_t;

typedef struct {
    mqtt_type_t type;
    uint8_t flags;
    union {
        mqtt_connect_t connect;
        mqtt_connack_t connack;
        mqtt_publish_t publish;
        uint16_t packet_id;         /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
        mqtt_subscribe_t subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
        mqtt_suback_t suback;
    } u; /* nothing for PINGREQ, PINGRESP, DISCONNECT */
} mqtt_packet_t;

/* Decodes the fixed header only: type, flags (checked against the type's
 * reserved bits, PUBLISH QoS 3 and DUP on QoS 0) and remaining length. Needs
 * at most 5 bytes, so a caller can refuse an oversized packet before buffering
 * its body. Packets of fixed size (CONNACK, the acks, UNSUBACK: 2; PINGREQ,
 * PINGRESP, DISCONNECT: 0) with another remaining length are refused here
 * already (MQTT_ERR_TRAILING_BYTES / MQTT_ERR_PACKET_TOO_SHORT). Returns the
 * header length (2..5), 0 for more bytes, or a negative error. */
int mqtt_decode_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header_t *fh);

/* Decodes one whole packet from the start of buf. Returns bytes consumed, 0 if
 * the packet is not complete yet, or a negative error. `max_packet` bounds the
 * total packet size (0 = the protocol maximum); a larger packet gives
 * MQTT_ERR_PACKET_TOO_LARGE as soon as its fixed header is readable. The body
 * is only examined once complete, so a prefix of a packet gives 0 or the same
 * error its fixed header gives.
 * CONNECT: the protocol name is checked before the level. For
 * MQTT_ERR_PROTOCOL_NAME and MQTT_ERR_PROTOCOL_LEVEL, pkt->type and
 * pkt->u.connect.protocol_name are filled in, and for the level error also
 * pkt->u.connect.protocol_level. "MQTT" with level 4 is MQTT 3.1.1 and
 * "MQIsdp" with level 3 is MQTT 3.1; either name with another level gives
 * MQTT_ERR_PROTOCOL_LEVEL (the session answers CONNACK 0x01, which 3.1
 * clients understand too); any other name gives MQTT_ERR_PROTOCOL_NAME (close
 * without CONNACK). A client id of any length is accepted (the session
 * decides). The will topic is checked as a topic name (no wildcards, not
 * empty, strict), the user name as a strict string. */
ssize_t mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, mqtt_packet_t *pkt);

/* Walks the entries of a decoded SUBSCRIBE/UNSUBSCRIBE: `*offset` starts at 0.
 * Returns 1 with the next filter (and its requested QoS for SUBSCRIBE), or 0
 * at the end. */
int mqtt_filter_next(const mqtt_subscribe_t *s, size_t *offset, mqtt_str_t *filter, uint8_t *qos);

/* Validation helpers, also used outside the decoder (topic map, config). */
int mqtt_utf8_check(const uint8_t *s, size_t len); /* 0 or MQTT_ERR_UTF8_* */
/* mqtt_utf8_check plus no control characters and no non-characters. */
int mqtt_text_check(const uint8_t *s, size_t len); /* 0 or MQTT_ERR_UTF8_* */
/* Not empty, at most 65,535 bytes, strict (as mqtt_text_check), no + or #. */
int mqtt_topic_name_check(const uint8_t *s, size_t len);   /* 0 or an error */
int mqtt_topic_filter_check(const uint8_t *s, size_t len); /* 0 or an error */

/* Encoders. Each returns the packet's size; writes only if it fits in cap. */
size_t mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t rc);
/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: type and packet id. */
size_t mqtt_encode_ack(uint8_t *buf, size_t cap, mqtt_type_t type, uint16_t packet_id);
size_t mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                          size_t n);
size_t mqtt_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p);
/* PINGREQ, PINGRESP, DISCONNECT. */
size_t mqtt_encode_empty(uint8_t *buf, size_t cap, mqtt_type_t type);
/* Client-side packets, for tests, the fuzzer's re-encoding and bench tools.
 * CONNECT: protocol_name.ptr == NULL writes "MQTT", protocol_level 0 writes
 * 4; the flags byte comes from the booleans and will_qos. */
size_t mqtt_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect_t *c);
/* SUBSCRIBE (qos != NULL) or UNSUBSCRIBE (qos == NULL) from n filters. */
size_t mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id,
                             const mqtt_str_t *filters, const uint8_t *qos, size_t n);
/* Any decoded packet back to bytes (used for round trips). */
size_t mqtt_encode(uint8_t *buf, size_t cap, const mqtt_packet_t *pkt);

#endif
