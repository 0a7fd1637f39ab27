/* MQTT 5.0 codec: decodes and encodes all 15 control packets (AUTH included),
 * with their properties and reason codes (OASIS MQTT Version 5.0, 7 March
 * 2019; statement ids [MQTT-x.y.z-n]).
 *
 * The same contract as codec.h: pure, no I/O, no allocation, no globals;
 * decoded strings are views into the caller's buffer; decoders return bytes
 * consumed, 0 for more bytes, or a negative MQTT_ERR_* (codec.h, with
 * mqtt_strerror / mqtt_errname); encoders return the size needed and write
 * only when it fits in cap, 0 for a packet that cannot exist. The string
 * rules are codec.h's: topic names (PUBLISH, will, response topic) and user
 * names are strict; the client id and other UTF-8 properties are checked as
 * UTF-8 only.
 *
 * Properties (2.2.2): each identifier has a type and a set of packets that may
 * carry it. One not defined is MQTT_ERR_PROPERTY_UNKNOWN, one the packet may
 * not carry MQTT_ERR_PROPERTY_NOT_ALLOWED (both malformed, 0x81); a single-use
 * one given twice is MQTT_ERR_PROPERTY_DUPLICATE and a value out of its range
 * (a 0/1 byte above 1, receive maximum, maximum packet size or subscription
 * identifier 0) MQTT_ERR_PROPERTY_VALUE (both protocol errors, 0x82). User
 * properties repeat in every packet that has them, the subscription
 * identifier in PUBLISH. mqtt5_err_reason() gives the reason code a server
 * answers for an error. */
#ifndef M2K_MQTT_CODEC5_H
#define M2K_MQTT_CODEC5_H

#include "mqtt/codec.h"

#define MQTT_PROTOCOL_LEVEL_5 5
#define MQTT5_AUTH 15 /* packet type, MQTT 5.0 only */

/* Property identifiers (2.2.2.2). */
enum {
    MQTT5_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT5_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT5_PROP_CONTENT_TYPE = 0x03,
    MQTT5_PROP_RESPONSE_TOPIC = 0x08,
    MQTT5_PROP_CORRELATION_DATA = 0x09,
    MQTT5_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT5_PROP_SESSION_EXPIRY = 0x11,
    MQTT5_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT5_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT5_PROP_AUTH_METHOD = 0x15,
    MQTT5_PROP_AUTH_DATA = 0x16,
    MQTT5_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT5_PROP_WILL_DELAY = 0x18,
    MQTT5_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT5_PROP_RESPONSE_INFO = 0x1A,
    MQTT5_PROP_SERVER_REFERENCE = 0x1C,
    MQTT5_PROP_REASON_STRING = 0x1F,
    MQTT5_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT5_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT5_PROP_TOPIC_ALIAS = 0x23,
    MQTT5_PROP_MAXIMUM_QOS = 0x24,
    MQTT5_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT5_PROP_USER_PROPERTY = 0x26,
    MQTT5_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT5_PROP_WILDCARD_AVAILABLE = 0x28,
    MQTT5_PROP_SUBSCRIPTION_ID_AVAILABLE = 0x29,
    MQTT5_PROP_SHARED_AVAILABLE = 0x2A,
};

/* Reason codes (2.4) the server sends. */
enum {
    MQTT5_RC_SUCCESS = 0x00,
    MQTT5_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT5_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT5_RC_UNSPECIFIED = 0x80,
    MQTT5_RC_MALFORMED = 0x81,
    MQTT5_RC_PROTOCOL_ERROR = 0x82,
    MQTT5_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    MQTT5_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT5_RC_CLIENT_ID_INVALID = 0x85,
    MQTT5_RC_BAD_USER_OR_PASSWORD = 0x86,
    MQTT5_RC_NOT_AUTHORIZED = 0x87,
    MQTT5_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT5_RC_SERVER_BUSY = 0x89,
    MQTT5_RC_BANNED = 0x8A,
    MQTT5_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT5_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT5_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT5_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT5_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT5_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    MQTT5_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT5_RC_PACKET_TOO_LARGE = 0x95,
    MQTT5_RC_QUOTA_EXCEEDED = 0x97,
    MQTT5_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT5_RC_SHARED_NOT_SUPPORTED = 0x9E,
    MQTT5_RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1,
    MQTT5_RC_WILDCARDS_NOT_SUPPORTED = 0xA2,
};

/* The properties of one packet (or of a will). Decoding fills `raw` (the
 * property bytes, without their length), `present` (bit n set for property
 * n), the counts and the field of each property present; a repeated
 * subscription identifier keeps its first value here. Walk user properties
 * and repeated identifiers, in order, with mqtt5_prop_next(). To encode, zero
 * the struct, set `present` and the fields, and `user`/`n_user` for user
 * properties (name, value, name, value...); a non-NULL raw.ptr is written as
 * it is instead (round trips). */
typedef struct {
    uint64_t present;
    mqtt_str_t raw;
    const mqtt_str_t *user;
    uint32_t n_user;
    uint32_t n_subscription_id;
    uint8_t payload_format, request_problem_info, request_response_info, maximum_qos,
        retain_available, wildcard_available, subscription_id_available, shared_available;
    uint16_t server_keep_alive, receive_maximum, topic_alias_maximum, topic_alias;
    uint32_t message_expiry, subscription_id, session_expiry, will_delay, maximum_packet_size;
    mqtt_str_t content_type, response_topic, correlation_data, assigned_client_id, auth_method,
        auth_data, response_info, server_reference, reason_string;
} mqtt5_props_t;

#define MQTT5_HAS(props, id) (((props)->present >> (id)) & 1)

/* One property as mqtt5_prop_next() gives it: num for the integer types,
 * str for strings and binary data, str and value for a user property. */
typedef struct {
    uint8_t id;
    uint32_t num;
    mqtt_str_t str, value;
} mqtt5_prop_t;

typedef struct {
    mqtt_connect_t c; /* clean_session is clean start; protocol_level 5 */
    mqtt5_props_t will;
} mqtt5_connect_t;

typedef struct {
    uint8_t type; /* mqtt_type_t, or MQTT5_AUTH */
    uint8_t flags;
    uint8_t reason; /* CONNACK, PUBACK..PUBCOMP, DISCONNECT, AUTH */
    /* PUBACK..PUBCOMP, DISCONNECT, AUTH: the reason code and the property
     * length were on the wire (each may be omitted when 0); an encoder writes
     * them when set or needed. */
    bool has_reason, has_props;
    mqtt5_props_t props;
    union {
        mqtt5_connect_t connect;
        bool session_present;       /* CONNACK */
        mqtt_publish_t publish;     /* topic may be empty with a topic alias */
        uint16_t packet_id;         /* PUBACK, PUBREC, PUBREL, PUBCOMP */
        mqtt_subscribe_t subscribe; /* SUBSCRIBE (options byte as qos), UNSUBSCRIBE */
        mqtt_suback_t suback;       /* SUBACK, UNSUBACK: reason codes */
    } u;
} mqtt5_packet_t;

/* Subscription options (3.8.3.1). */
#define MQTT5_SUB_QOS(o) ((o)&3)
#define MQTT5_SUB_NO_LOCAL 0x04
#define MQTT5_SUB_RETAIN_AS_PUBLISHED 0x08
#define MQTT5_SUB_RETAIN_HANDLING(o) (((o) >> 4) & 3)

/* Decodes one whole MQTT 5.0 packet, as mqtt_decode does 3.1.1. A CONNECT
 * must say "MQTT" level 5 (another level: MQTT_ERR_PROTOCOL_LEVEL with
 * protocol_level filled in). */
ssize_t mqtt5_decode(const uint8_t *buf, size_t len, size_t max_packet, mqtt5_packet_t *pkt);

/* Walks validated properties (props->raw): `*offset` starts at 0. Returns 1
 * with the next one, 0 at the end. */
int mqtt5_prop_next(const mqtt5_props_t *props, size_t *offset, mqtt5_prop_t *out);

/* Variable byte integer (1.5.5): returns its length (1..4), 0 for more bytes
 * or MQTT_ERR_VBI. */
int mqtt5_vbi_decode(const uint8_t *buf, size_t len, uint32_t *value);
/* Writes v (< 2^28) and returns its length; writes only if it fits in cap. */
size_t mqtt5_vbi_encode(uint8_t *buf, size_t cap, uint32_t v);

/* The reason code a server sends for a decode error: 0x95 packet too large,
 * 0x82 protocol error (duplicate or out-of-range property), 0x81 malformed
 * otherwise. */
uint8_t mqtt5_err_reason(int err);
/* 1 if `rc` is a reason code defined for packet `type`, else 0. */
int mqtt5_reason_valid(int type, uint8_t rc);
const char *mqtt5_prop_name(int id); /* "payload format indicator", ... or NULL */

/* Encoders. */
size_t mqtt5_encode(uint8_t *buf, size_t cap, const mqtt5_packet_t *pkt);
size_t mqtt5_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t reason,
                            const mqtt5_props_t *props);
/* PUBACK, PUBREC, PUBREL, PUBCOMP in their shortest form; props may be NULL. */
size_t mqtt5_encode_ack(uint8_t *buf, size_t cap, mqtt_type_t type, uint16_t packet_id,
                        uint8_t reason, const mqtt5_props_t *props);
/* DISCONNECT (type MQTT_DISCONNECT) or AUTH (MQTT5_AUTH); props may be NULL. */
size_t mqtt5_encode_reason(uint8_t *buf, size_t cap, int type, uint8_t reason,
                           const mqtt5_props_t *props);
size_t mqtt5_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p,
                            const mqtt5_props_t *props);

#endif
