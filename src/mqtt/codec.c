/* MQTT 3.1.1 and 3.1 codec. See include/mqtt/codec.h for the contract.
 *
 * Decoding is strict, as the standard's normative statements require of a
 * server: every reserved bit, every length and every string is checked, and
 * each malformed class gets its own error code. The body of a packet is only
 * looked at once all of it is in the buffer, so the result for a complete
 * packet never depends on how its bytes arrived. */
#include "mqtt/codec.h"

#include <string.h>

#include "codec_int.h"

/* ---- Errors and names -------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} err_table[] = {
    {"MQTT_OK", "success"},
    {"MQTT_ERR_REMAINING_LENGTH", "remaining length uses more than 4 bytes"},
    {"MQTT_ERR_LENGTH_NOT_MINIMAL", "remaining length is not in its shortest encoding"},
    {"MQTT_ERR_RESERVED_TYPE", "reserved packet type 0 or 15"},
    {"MQTT_ERR_FIXED_HEADER_FLAGS", "reserved fixed header flags are wrong for the packet type"},
    {"MQTT_ERR_PACKET_TOO_SHORT", "a field runs past the end of the packet"},
    {"MQTT_ERR_TRAILING_BYTES", "bytes left over after the last field of the packet"},
    {"MQTT_ERR_QOS_INVALID", "PUBLISH with QoS 3"},
    {"MQTT_ERR_DUP_ON_QOS0", "PUBLISH with QoS 0 and DUP set"},
    {"MQTT_ERR_PACKET_ID_ZERO", "packet identifier 0 where a non-zero one is required"},
    {"MQTT_ERR_PROTOCOL_NAME", "CONNECT protocol name is not \"MQTT\" or \"MQIsdp\""},
    {"MQTT_ERR_PROTOCOL_LEVEL",
     "CONNECT protocol level is not 4 (\"MQTT\", 3.1.1) or 3 (\"MQIsdp\", 3.1)"},
    {"MQTT_ERR_CONNECT_RESERVED", "CONNECT reserved flag bit is set"},
    {"MQTT_ERR_WILL_FLAGS", "will QoS or will retain set without the will flag"},
    {"MQTT_ERR_WILL_QOS", "will QoS 3"},
    {"MQTT_ERR_PASSWORD_NO_USERNAME", "password flag set without the username flag"},
    {"MQTT_ERR_UTF8_INVALID", "string is not well-formed UTF-8"},
    {"MQTT_ERR_UTF8_NUL", "string contains U+0000"},
    {"MQTT_ERR_UTF8_SURROGATE", "string encodes a surrogate code point (U+D800..U+DFFF)"},
    {"MQTT_ERR_TOPIC_EMPTY", "topic name is empty"},
    {"MQTT_ERR_TOPIC_WILDCARD", "topic name contains a wildcard (+ or #)"},
    {"MQTT_ERR_FILTER_INVALID", "topic filter is empty or has a misplaced wildcard"},
    {"MQTT_ERR_NO_FILTERS", "SUBSCRIBE or UNSUBSCRIBE without a topic filter"},
    {"MQTT_ERR_SUBSCRIBE_QOS", "SUBSCRIBE requested QoS above 2 or reserved option bits set"},
    {"MQTT_ERR_CONNACK_FLAGS",
     "CONNACK reserved acknowledge flags set, or session present with a refusal"},
    {"MQTT_ERR_PACKET_TOO_LARGE", "packet larger than the configured maximum"},
    {"MQTT_ERR_CONNACK_CODE", "CONNACK return code above 5"},
    {"MQTT_ERR_SUBACK_CODE", "SUBACK return code is not 0, 1, 2 or 0x80"},
    {"MQTT_ERR_STRING_TOO_LONG", "string longer than 65,535 bytes"},
    {"MQTT_ERR_UTF8_CONTROL",
     "string contains a control character (U+0001..U+001F, U+007F..U+009F)"},
    {"MQTT_ERR_UTF8_NONCHARACTER",
     "string contains a non-character (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)"},
    {"MQTT_ERR_VBI", "variable byte integer longer than 4 bytes or not in its shortest encoding"},
    {"MQTT_ERR_PROPERTY_UNKNOWN", "unknown property identifier"},
    {"MQTT_ERR_PROPERTY_NOT_ALLOWED", "property not allowed in this packet"},
    {"MQTT_ERR_PROPERTY_DUPLICATE", "property that may appear once given twice"},
    {"MQTT_ERR_PROPERTY_VALUE", "property value out of its range"},
    {"MQTT_ERR_REASON_CODE", "reason code not defined for this packet"},
    {"MQTT_ERR_SUBSCRIBE_OPTIONS",
     "subscription options with reserved bits, QoS 3 or retain handling 3"},
};

#define ERR_COUNT (sizeof(err_table) / sizeof(err_table[0]))

const char *mqtt_strerror(int err) {
    if (err > 0 || (size_t)-err >= ERR_COUNT)
        return "unknown MQTT codec error";
    return err_table[-err].text;
}

const char *mqtt_errname(int err) {
    if (err > 0 || (size_t)-err >= ERR_COUNT)
        return "MQTT_ERR_UNKNOWN";
    return err_table[-err].name;
}

static const char *const type_names[16] = {
    "RESERVED0", "CONNECT",  "CONNACK",    "PUBLISH",    "PUBACK",      "PUBREC",
    "PUBREL",    "PUBCOMP",  "SUBSCRIBE",  "SUBACK",     "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ",   "PINGRESP", "DISCONNECT", "RESERVED15",
};

const char *mqtt_type_name(int type) {
    if (type < 0 || type > 15)
        return "UNKNOWN";
    return type_names[type];
}

/* ---- UTF-8 and topic checks -------------------------------------------- */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define PLUSES (ONES * '+')
#define HASHES (ONES * '#')
/* Non-zero iff some byte of v is 0 (exact as a yes/no answer). */
#define HAS_ZERO(v) (((v)-ONES) & ~(v)&HIGHS)
/* Non-zero iff some byte of v is below n, n <= 128 (exact as a yes/no answer). */
#define HAS_LESS(v, n) (((v)-ONES * (n)) & ~(v)&HIGHS)
/* Non-zero iff some byte of v is 0x7F or above: a carry out of a byte comes
 * only from 0xFF, whose own high bit already answers. */
#define HAS_DEL_OR_HIGH(v) ((((v) + ONES) | (v)) & HIGHS)

/* What a string scan refuses besides ill-formed UTF-8 and U+0000. */
enum {
    SCAN_UTF8 = 0,
    SCAN_STRICT = 1, /* control characters and non-characters */
    SCAN_TOPIC = 3,  /* strict, and + or # */
};

static inline uint64_t load64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

/* A word that is plain ASCII without NUL. */
static inline uint64_t utf8_word_suspect(uint64_t w) {
    return (w & HIGHS) | HAS_ZERO(w);
}

/* A word that is printable ASCII (0x20..0x7E), and for a topic without a
 * wildcard: the common case for a PUBLISH topic. */
static inline uint64_t word_suspect(uint64_t w, int mode) {
    if (mode == SCAN_UTF8)
        return utf8_word_suspect(w);
    uint64_t x = HAS_DEL_OR_HIGH(w) | HAS_LESS(w, 0x20);
    if (mode == SCAN_TOPIC)
        x |= HAS_ZERO(w ^ PLUSES) | HAS_ZERO(w ^ HASHES);
    return x;
}

/* The strict checks of one valid multi-byte sequence of n bytes: C1 controls
 * (U+0080..U+009F, C2 80..C2 9F) and non-characters (U+FDD0..U+FDEF and
 * U+xFFFE/U+xFFFF of every plane, Unicode 15 section 23.7). */
static int strict_sequence(const uint8_t *s, int n) {
    if (n == 2)
        return s[0] == 0xC2 && s[1] <= 0x9F ? MQTT_ERR_UTF8_CONTROL : 0;
    uint32_t cp = n == 3 ? (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 |
                               (uint32_t)(s[2] & 0x3F)
                         : (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
                               (uint32_t)(s[2] & 0x3F) << 6 | (uint32_t)(s[3] & 0x3F);
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
        return MQTT_ERR_UTF8_NONCHARACTER;
    return 0;
}

/* Validates one multi-byte sequence starting at s[0] >= 0x80 (RFC 3629
 * table 3-7, which excludes overlongs, surrogates and code points above
 * U+10FFFF). Returns its length or a negative error. */
static int utf8_sequence(const uint8_t *s, size_t left) {
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0xC2) /* stray continuation byte or overlong 2-byte lead */
        return MQTT_ERR_UTF8_INVALID;
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return MQTT_ERR_UTF8_INVALID;
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return MQTT_ERR_UTF8_INVALID;
    for (size_t k = 2; k < n; k++)
        if ((s[k] & 0xC0) != 0x80)
            return MQTT_ERR_UTF8_INVALID;
    if (c == 0xED && s[1] >= 0xA0)
        return MQTT_ERR_UTF8_SURROGATE;
    return (int)n;
}

/* Byte by byte from `i`, reporting the first problem by position. */
static int utf8_check_slow(const uint8_t *s, size_t len, size_t i, int mode) {
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return MQTT_ERR_UTF8_NUL;
            if ((mode & SCAN_STRICT) && (c < 0x20 || c == 0x7F))
                return MQTT_ERR_UTF8_CONTROL;
            if (mode == SCAN_TOPIC && (c == '+' || c == '#'))
                return MQTT_ERR_TOPIC_WILDCARD;
            i++;
            continue;
        }
        int n = utf8_sequence(s + i, len - i);
        if (n < 0)
            return n;
        if (mode & SCAN_STRICT) {
            int rc = strict_sequence(s + i, n);
            if (rc < 0)
                return rc;
        }
        i += (size_t)n;
    }
    return 0;
}

/* Eight bytes at a time while the text is plain ASCII; the last word overlaps
 * the previous one rather than going byte by byte. Anything suspect goes to
 * the exact byte-wise check from the start of its word. */
static inline int string_scan(const uint8_t *s, size_t len, int mode) {
    size_t i = 0;
    if (len >= 8) {
        for (; i + 8 <= len; i += 8) {
            uint64_t w = load64(s + i);
            if (word_suspect(w, mode))
                return utf8_check_slow(s, len, i, mode);
        }
        if (i == len)
            return 0;
        uint64_t w = load64(s + len - 8);
        if (!word_suspect(w, mode))
            return 0;
    }
    return utf8_check_slow(s, len, i, mode);
}

int mqtt_utf8_check(const uint8_t *s, size_t len) {
    return string_scan(s, len, SCAN_UTF8);
}

int mqtt_text_check(const uint8_t *s, size_t len) {
    return string_scan(s, len, SCAN_STRICT);
}

int mqtt_topic_name_check(const uint8_t *s, size_t len) {
    if (len == 0)
        return MQTT_ERR_TOPIC_EMPTY;
    if (len > UINT16_MAX)
        return MQTT_ERR_STRING_TOO_LONG;
    return string_scan(s, len, SCAN_TOPIC);
}

int mqtt_topic_filter_check(const uint8_t *s, size_t len) {
    if (len == 0)
        return MQTT_ERR_FILTER_INVALID;
    if (len > UINT16_MAX)
        return MQTT_ERR_STRING_TOO_LONG;
    int rc = string_scan(s, len, SCAN_UTF8);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || s[i - 1] == '/';
        if (s[i] == '#') {
            if (!level_start || i + 1 != len)
                return MQTT_ERR_FILTER_INVALID;
        } else if (s[i] == '+') {
            if (!level_start || (i + 1 < len && s[i + 1] != '/'))
                return MQTT_ERR_FILTER_INVALID;
        }
    }
    return 0;
}

/* ---- Fixed header ------------------------------------------------------- */

/* Required low nibble per type; PUBLISH (3) is checked separately. */
const uint8_t codec_required_flags[16] = {
    [MQTT_PUBREL] = 2,
    [MQTT_SUBSCRIBE] = 2,
    [MQTT_UNSUBSCRIBE] = 2,
};

/* Remaining length of the fixed-size packets, -1 for variable ones: a wrong
 * length is refused from the header alone. */
static const int8_t fixed_length[16] = {
    -1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1,
};

int codec_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header_t *fh, bool v5) {
    if (len == 0)
        return 0;
    unsigned type = buf[0] >> 4, flags = buf[0] & 0x0F;
    if (type == 0 || (type == 15 && !v5))
        return MQTT_ERR_RESERVED_TYPE;
    if (type == MQTT_PUBLISH) {
        unsigned qos = (flags >> 1) & 3;
        if (qos == 3)
            return MQTT_ERR_QOS_INVALID;
        if (qos == 0 && (flags & 8))
            return MQTT_ERR_DUP_ON_QOS0;
    } else if (flags != codec_required_flags[type]) {
        return MQTT_ERR_FIXED_HEADER_FLAGS;
    }
    /* Plain shifts up to 21 bits: unlike the standard's sample decoder this
     * stays exact up to 268,435,455. */
    uint32_t rl = 0;
    size_t i = 1;
    for (;;) {
        if (i >= len)
            return 0;
        uint8_t b = buf[i];
        rl |= (uint32_t)(b & 0x7F) << (7 * (i - 1));
        if (!(b & 0x80)) {
            if (b == 0 && i > 1)
                return MQTT_ERR_LENGTH_NOT_MINIMAL;
            break;
        }
        if (i == 4)
            return MQTT_ERR_REMAINING_LENGTH;
        i++;
    }
    int want = fixed_length[type];
    if (v5 && type != MQTT_PINGREQ && type != MQTT_PINGRESP)
        want = -1;
    if (want >= 0 && rl != (uint32_t)want)
        return rl > (uint32_t)want ? MQTT_ERR_TRAILING_BYTES : MQTT_ERR_PACKET_TOO_SHORT;
    fh->type = (mqtt_type_t)type;
    fh->flags = (uint8_t)flags;
    fh->remaining_length = rl;
    fh->header_len = (uint8_t)(i + 1);
    return (int)(i + 1);
}

int mqtt_decode_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header_t *fh) {
    return codec_fixed_header(buf, len, fh, false);
}

/* ---- Body decoders ------------------------------------------------------ */

int codec_connect_flags(reader_t *r, mqtt_connect_t *c) {
    uint8_t f;
    int rc = read_u8(r, &f);
    if (rc < 0)
        return rc;
    if (f & 0x01) /* [MQTT-3.1.2-3] */
        return MQTT_ERR_CONNECT_RESERVED;
    c->clean_session = f & 0x02;
    c->will_flag = f & 0x04;
    c->will_qos = (f >> 3) & 3;
    c->will_retain = f & 0x20;
    c->has_password = f & 0x40;
    c->has_username = f & 0x80;
    if (!c->will_flag && (c->will_qos || c->will_retain)) /* [MQTT-3.1.2-11], [MQTT-3.1.2-13] */
        return MQTT_ERR_WILL_FLAGS;
    if (c->will_qos == 3) /* [MQTT-3.1.2-12] */
        return MQTT_ERR_WILL_QOS;
    return 0;
}

/* "MQIsdp" level 3 is MQTT 3.1, whose CONNECT has the 3.1.1 layout; a wrong
 * level with either name is MQTT_ERR_PROTOCOL_LEVEL, so the session answers
 * CONNACK 0x01 ("unacceptable protocol version"), which both understand. */
static int decode_connect(reader_t *r, mqtt_connect_t *c) {
    memset(c, 0, sizeof(*c));
    int rc = read_str(r, &c->protocol_name);
    if (rc < 0)
        return rc;
    bool v311 = str_is(&c->protocol_name, "MQTT");
    if (!v311 && !str_is(&c->protocol_name, "MQIsdp"))
        return MQTT_ERR_PROTOCOL_NAME;
    if ((rc = read_u8(r, &c->protocol_level)) < 0)
        return rc;
    if (c->protocol_level != (v311 ? MQTT_PROTOCOL_LEVEL_311 : MQTT_PROTOCOL_LEVEL_31))
        return MQTT_ERR_PROTOCOL_LEVEL;

    if ((rc = codec_connect_flags(r, c)) < 0)
        return rc;
    if (c->has_password && !c->has_username)
        return MQTT_ERR_PASSWORD_NO_USERNAME;
    if ((rc = read_u16(r, &c->keepalive)) < 0)
        return rc;

    /* A zero-length client id is the session's decision, not a codec error. */
    if ((rc = read_str(r, &c->client_id)) < 0 ||
        (rc = mqtt_utf8_check(c->client_id.ptr, c->client_id.len)) < 0)
        return rc;
    if (c->will_flag) {
        if ((rc = read_str(r, &c->will_topic)) < 0 ||
            (rc = mqtt_topic_name_check(c->will_topic.ptr, c->will_topic.len)) < 0 ||
            (rc = read_str(r, &c->will_payload)) < 0)
            return rc;
    }
    if (c->has_username) {
        if ((rc = read_str(r, &c->username)) < 0 ||
            (rc = mqtt_text_check(c->username.ptr, c->username.len)) < 0)
            return rc;
    }
    if (c->has_password && (rc = read_str(r, &c->password)) < 0)
        return rc;
    /* A field present without its flag shows up as leftover bytes. */
    return r->p == r->end ? 0 : MQTT_ERR_TRAILING_BYTES;
}

static int decode_connack(reader_t *r, mqtt_connack_t *a) {
    uint8_t flags = r->p[0], code = r->p[1]; /* length 2 checked from the header */
    a->session_present = flags & 1;
    a->return_code = code;
    if (flags & 0xFE)
        return MQTT_ERR_CONNACK_FLAGS;
    if (code > MQTT_CONNACK_NOT_AUTHORIZED)
        return MQTT_ERR_CONNACK_CODE;
    if (a->session_present && code != MQTT_CONNACK_ACCEPTED) /* [MQTT-3.2.2-4] */
        return MQTT_ERR_CONNACK_FLAGS;
    return 0;
}

static inline int decode_publish(reader_t *r, uint8_t flags, mqtt_publish_t *pub) {
    pub->dup = flags & 8;
    pub->qos = (flags >> 1) & 3;
    pub->retain = flags & 1;
    pub->packet_id = 0;
    int rc = read_str(r, &pub->topic);
    if (rc < 0)
        return rc;
    if ((rc = mqtt_topic_name_check(pub->topic.ptr, pub->topic.len)) < 0)
        return rc;
    if (pub->qos && (rc = read_packet_id(r, &pub->packet_id)) < 0)
        return rc;
    pub->payload.ptr = r->p;
    pub->payload.len = (size_t)(r->end - r->p);
    return 0;
}

static int decode_subscribe(reader_t *r, bool with_qos, mqtt_subscribe_t *s) {
    s->with_qos = with_qos;
    s->count = 0;
    int rc = read_packet_id(r, &s->packet_id);
    if (rc < 0)
        return rc;
    s->entries.ptr = r->p;
    s->entries.len = (size_t)(r->end - r->p);
    while (r->p < r->end) {
        mqtt_str_t f;
        if ((rc = read_str(r, &f)) < 0 || (rc = mqtt_topic_filter_check(f.ptr, f.len)) < 0)
            return rc;
        if (with_qos) {
            uint8_t q;
            if ((rc = read_u8(r, &q)) < 0)
                return rc;
            if (q > 2) /* also catches the reserved bits 7..2 */
                return MQTT_ERR_SUBSCRIBE_QOS;
        }
        s->count++;
    }
    return s->count ? 0 : MQTT_ERR_NO_FILTERS;
}

static int decode_suback(reader_t *r, mqtt_suback_t *s) {
    int rc = read_packet_id(r, &s->packet_id);
    if (rc < 0)
        return rc;
    if (r->p == r->end)
        return MQTT_ERR_PACKET_TOO_SHORT; /* at least one return code */
    s->return_codes.ptr = r->p;
    s->return_codes.len = (size_t)(r->end - r->p);
    for (; r->p < r->end; r->p++) {
        uint8_t c = *r->p;
        if (c > 2 && c != MQTT_SUBACK_FAILURE)
            return MQTT_ERR_SUBACK_CODE;
    }
    return 0;
}

ssize_t mqtt_decode(const uint8_t *buf, size_t len, size_t max_packet, mqtt_packet_t *pkt) {
    mqtt_fixed_header_t fh;
    int hl = mqtt_decode_fixed_header(buf, len, &fh);
    if (hl <= 0)
        return hl;
    size_t total = (size_t)hl + fh.remaining_length;
    if (max_packet && total > max_packet)
        return MQTT_ERR_PACKET_TOO_LARGE;
    if (len < total)
        return 0;
    pkt->type = fh.type;
    pkt->flags = fh.flags;
    reader_t r = {buf + hl, buf + total};
    int rc = 0;
    switch (fh.type) {
    case MQTT_PUBLISH:
        rc = decode_publish(&r, fh.flags, &pkt->u.publish);
        break;
    case MQTT_CONNECT:
        rc = decode_connect(&r, &pkt->u.connect);
        break;
    case MQTT_CONNACK:
        rc = decode_connack(&r, &pkt->u.connack);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        rc = read_packet_id(&r, &pkt->u.packet_id);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        rc = decode_subscribe(&r, fh.type == MQTT_SUBSCRIBE, &pkt->u.subscribe);
        break;
    case MQTT_SUBACK:
        rc = decode_suback(&r, &pkt->u.suback);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        break;
    }
    return rc < 0 ? rc : (ssize_t)total;
}

int mqtt_filter_next(const mqtt_subscribe_t *s, size_t *offset, mqtt_str_t *filter, uint8_t *qos) {
    size_t o = *offset, len = s->entries.len;
    const uint8_t *p = s->entries.ptr;
    if (o > len || len - o < 2)
        return 0;
    size_t n = (size_t)p[o] << 8 | p[o + 1];
    size_t need = 2 + n + (s->with_qos ? 1 : 0);
    if (len - o < need)
        return 0;
    filter->ptr = p + o + 2;
    filter->len = n;
    if (qos)
        *qos = s->with_qos ? p[o + 2 + n] : 0;
    *offset = o + need;
    return 1;
}

/* ---- Encoders ----------------------------------------------------------- */

size_t mqtt_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t rc) {
    if (cap >= 4) {
        buf[0] = MQTT_CONNACK << 4;
        buf[1] = 2;
        buf[2] = session_present ? 1 : 0;
        buf[3] = rc;
    }
    return 4;
}

size_t mqtt_encode_ack(uint8_t *buf, size_t cap, mqtt_type_t type, uint16_t packet_id) {
    if (type != MQTT_PUBACK && type != MQTT_PUBREC && type != MQTT_PUBREL && type != MQTT_PUBCOMP &&
        type != MQTT_UNSUBACK)
        return 0;
    if (cap >= 4) {
        buf[0] = (uint8_t)(type << 4 | codec_required_flags[type]);
        buf[1] = 2;
        put_u16(buf + 2, packet_id);
    }
    return 4;
}

size_t mqtt_encode_suback(uint8_t *buf, size_t cap, uint16_t packet_id, const uint8_t *codes,
                          size_t n) {
    if (n > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t rl = 2 + n, size = packet_size(rl);
    if (size && size <= cap)
        put_bytes(put_u16(put_header(buf, MQTT_SUBACK << 4, rl), packet_id), codes, n);
    return size;
}

size_t mqtt_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p) {
    return codec_encode_publish(buf, cap, p, NULL);
}

size_t mqtt_encode_empty(uint8_t *buf, size_t cap, mqtt_type_t type) {
    if (type != MQTT_PINGREQ && type != MQTT_PINGRESP && type != MQTT_DISCONNECT)
        return 0;
    if (cap >= 2) {
        buf[0] = (uint8_t)(type << 4);
        buf[1] = 0;
    }
    return 2;
}

/* protocol_name.ptr == NULL means "MQTT", protocol_level 0 means 4. */
size_t mqtt_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect_t *c) {
    return codec_encode_connect(buf, cap, c, NULL, NULL);
}

size_t mqtt_encode_subscribe(uint8_t *buf, size_t cap, uint16_t packet_id,
                             const mqtt_str_t *filters, const uint8_t *qos, size_t n) {
    size_t rl = 2;
    for (size_t i = 0; i < n; i++) {
        if (filters[i].len > UINT16_MAX)
            return 0;
        rl += 2 + filters[i].len + (qos ? 1 : 0);
        if (rl > MQTT_MAX_REMAINING_LENGTH)
            return 0;
    }
    size_t size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t b0 = qos ? (MQTT_SUBSCRIBE << 4 | 2) : (MQTT_UNSUBSCRIBE << 4 | 2);
    uint8_t *w = put_u16(put_header(buf, b0, rl), packet_id);
    for (size_t i = 0; i < n; i++) {
        w = put_str(w, &filters[i]);
        if (qos)
            *w++ = qos[i];
    }
    return size;
}

/* SUBSCRIBE/UNSUBSCRIBE from the raw entries the decoder validated. */
static size_t encode_subscribe_raw(uint8_t *buf, size_t cap, bool with_qos,
                                   const mqtt_subscribe_t *s) {
    if (s->entries.len > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t rl = 2 + s->entries.len, size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t b0 = with_qos ? (MQTT_SUBSCRIBE << 4 | 2) : (MQTT_UNSUBSCRIBE << 4 | 2);
    put_bytes(put_u16(put_header(buf, b0, rl), s->packet_id), s->entries.ptr, s->entries.len);
    return size;
}

size_t mqtt_encode(uint8_t *buf, size_t cap, const mqtt_packet_t *pkt) {
    switch (pkt->type) {
    case MQTT_CONNECT:
        return mqtt_encode_connect(buf, cap, &pkt->u.connect);
    case MQTT_CONNACK:
        return mqtt_encode_connack(buf, cap, pkt->u.connack.session_present,
                                   pkt->u.connack.return_code);
    case MQTT_PUBLISH:
        return mqtt_encode_publish(buf, cap, &pkt->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_UNSUBACK:
        return mqtt_encode_ack(buf, cap, pkt->type, pkt->u.packet_id);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return encode_subscribe_raw(buf, cap, pkt->type == MQTT_SUBSCRIBE, &pkt->u.subscribe);
    case MQTT_SUBACK:
        return mqtt_encode_suback(buf, cap, pkt->u.suback.packet_id, pkt->u.suback.return_codes.ptr,
                                  pkt->u.suback.return_codes.len);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
        return mqtt_encode_empty(buf, cap, pkt->type);
    }
    return 0;
}
