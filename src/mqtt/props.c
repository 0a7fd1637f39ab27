/* MQTT 5.0 properties (2.2.2), variable byte integers (1.5.5) and reason
 * codes (2.4): one table row per property says its type, which packets may
 * carry it and whether it may repeat; decoding and encoding both follow it. */
#include <stddef.h>
#include <stdint.h>

#include "codec_int.h"
#include "mqtt/codec5.h"

/* ---- Variable byte integers -------------------------------------------- */

int mqtt5_vbi_decode(const uint8_t *buf, size_t len, uint32_t *value) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len)
            return 0;
        uint8_t b = buf[i];
        v |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (b == 0 && i > 0) /* [MQTT-1.5.5-1] the minimum number of bytes */
                return MQTT_ERR_VBI;
            *value = v;
            return (int)i + 1;
        }
    }
    return MQTT_ERR_VBI;
}

static size_t vbi_len(uint32_t v) {
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

size_t mqtt5_vbi_encode(uint8_t *buf, size_t cap, uint32_t v) {
    if (v > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t n = vbi_len(v);
    if (n <= cap) {
        size_t i = 0;
        do {
            uint8_t b = v & 0x7F;
            v >>= 7;
            buf[i++] = (uint8_t)(b | (v ? 0x80 : 0));
        } while (v);
    }
    return n;
}

/* Inside a packet: a VBI cut by the packet's end is a short packet. */
static int read_vbi(reader_t *r, uint32_t *v) {
    int n = mqtt5_vbi_decode(r->p, (size_t)(r->end - r->p), v);
    if (n == 0)
        return MQTT_ERR_PACKET_TOO_SHORT;
    if (n < 0)
        return n;
    r->p += n;
    return 0;
}

/* ---- The property table ------------------------------------------------ */

enum { T_BYTE, T_U16, T_U32, T_VBI, T_UTF8, T_TOPIC, T_BIN, T_PAIR };

#define P(t) (1u << (t))
#define WILL P(0) /* the will properties of a CONNECT */
#define ACKS (P(MQTT_PUBACK) | P(MQTT_PUBREC) | P(MQTT_PUBREL) | P(MQTT_PUBCOMP))
#define F(field) offsetof(mqtt5_props_t, field)

typedef struct {
    uint8_t type;
    bool bool01;      /* a byte that is 0 or 1 */
    bool nonzero;     /* 0 is a protocol error */
    uint32_t allowed; /* packets that may carry it */
    uint32_t repeat;  /* packets where it may repeat */
    uint16_t off;     /* its field in mqtt5_props_t */
    const char *name;
} prop_def_t;

static const prop_def_t props[0x2B] = {
    [0x01] = {T_BYTE, true, false, P(MQTT_PUBLISH) | WILL, 0, F(payload_format),
              "payload format indicator"},
    [0x02] = {T_U32, false, false, P(MQTT_PUBLISH) | WILL, 0, F(message_expiry),
              "message expiry interval"},
    [0x03] = {T_UTF8, false, false, P(MQTT_PUBLISH) | WILL, 0, F(content_type), "content type"},
    [0x08] = {T_TOPIC, false, false, P(MQTT_PUBLISH) | WILL, 0, F(response_topic),
              "response topic"},
    [0x09] = {T_BIN, false, false, P(MQTT_PUBLISH) | WILL, 0, F(correlation_data),
              "correlation data"},
    [0x0B] = {T_VBI, false, true, P(MQTT_PUBLISH) | P(MQTT_SUBSCRIBE), P(MQTT_PUBLISH),
              F(subscription_id), "subscription identifier"},
    [0x11] = {T_U32, false, false, P(MQTT_CONNECT) | P(MQTT_CONNACK) | P(MQTT_DISCONNECT), 0,
              F(session_expiry), "session expiry interval"},
    [0x12] = {T_UTF8, false, false, P(MQTT_CONNACK), 0, F(assigned_client_id),
              "assigned client identifier"},
    [0x13] = {T_U16, false, false, P(MQTT_CONNACK), 0, F(server_keep_alive), "server keep alive"},
    [0x15] = {T_UTF8, false, false, P(MQTT_CONNECT) | P(MQTT_CONNACK) | P(MQTT5_AUTH), 0,
              F(auth_method), "authentication method"},
    [0x16] = {T_BIN, false, false, P(MQTT_CONNECT) | P(MQTT_CONNACK) | P(MQTT5_AUTH), 0,
              F(auth_data), "authentication data"},
    [0x17] = {T_BYTE, true, false, P(MQTT_CONNECT), 0, F(request_problem_info),
              "request problem information"},
    [0x18] = {T_U32, false, false, WILL, 0, F(will_delay), "will delay interval"},
    [0x19] = {T_BYTE, true, false, P(MQTT_CONNECT), 0, F(request_response_info),
              "request response information"},
    [0x1A] = {T_UTF8, false, false, P(MQTT_CONNACK), 0, F(response_info), "response information"},
    [0x1C] = {T_UTF8, false, false, P(MQTT_CONNACK) | P(MQTT_DISCONNECT), 0, F(server_reference),
              "server reference"},
    [0x1F] = {T_UTF8, false, false,
              P(MQTT_CONNACK) | ACKS | P(MQTT_SUBACK) | P(MQTT_UNSUBACK) | P(MQTT_DISCONNECT) |
                  P(MQTT5_AUTH),
              0, F(reason_string), "reason string"},
    [0x21] = {T_U16, false, true, P(MQTT_CONNECT) | P(MQTT_CONNACK), 0, F(receive_maximum),
              "receive maximum"},
    [0x22] = {T_U16, false, false, P(MQTT_CONNECT) | P(MQTT_CONNACK), 0, F(topic_alias_maximum),
              "topic alias maximum"},
    [0x23] = {T_U16, false, false, P(MQTT_PUBLISH), 0, F(topic_alias), "topic alias"},
    [0x24] = {T_BYTE, true, false, P(MQTT_CONNACK), 0, F(maximum_qos), "maximum QoS"},
    [0x25] = {T_BYTE, true, false, P(MQTT_CONNACK), 0, F(retain_available), "retain available"},
    [0x26] = {T_PAIR, false, false,
              P(MQTT_CONNECT) | P(MQTT_CONNACK) | P(MQTT_PUBLISH) | WILL | ACKS |
                  P(MQTT_SUBSCRIBE) | P(MQTT_SUBACK) | P(MQTT_UNSUBSCRIBE) | P(MQTT_UNSUBACK) |
                  P(MQTT_DISCONNECT) | P(MQTT5_AUTH),
              UINT32_MAX, 0, "user property"},
    [0x27] = {T_U32, false, true, P(MQTT_CONNECT) | P(MQTT_CONNACK), 0, F(maximum_packet_size),
              "maximum packet size"},
    [0x28] = {T_BYTE, true, false, P(MQTT_CONNACK), 0, F(wildcard_available),
              "wildcard subscription available"},
    [0x29] = {T_BYTE, true, false, P(MQTT_CONNACK), 0, F(subscription_id_available),
              "subscription identifier available"},
    [0x2A] = {T_BYTE, true, false, P(MQTT_CONNACK), 0, F(shared_available),
              "shared subscription available"},
};

#define NPROPS (sizeof(props) / sizeof(props[0]))

const char *mqtt5_prop_name(int id) {
    return id > 0 && (size_t)id < NPROPS ? props[id].name : NULL;
}

/* Reads one property's value (its identifier already read); `check`: the
 * strings too (not needed again for properties already decoded). */
static int read_value(reader_t *r, const prop_def_t *d, mqtt5_prop_t *out, bool check) {
    int rc = 0;
    uint8_t b;
    uint16_t u16;
    switch (d->type) {
    case T_BYTE:
        if ((rc = read_u8(r, &b)) == 0)
            out->num = b;
        break;
    case T_U16:
        if ((rc = read_u16(r, &u16)) == 0)
            out->num = u16;
        break;
    case T_U32:
        if (r->end - r->p < 4)
            return MQTT_ERR_PACKET_TOO_SHORT;
        out->num =
            (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
        r->p += 4;
        break;
    case T_VBI:
        rc = read_vbi(r, &out->num);
        break;
    case T_UTF8:
        if ((rc = read_str(r, &out->str)) == 0 && check)
            rc = mqtt_utf8_check(out->str.ptr, out->str.len);
        break;
    case T_TOPIC:
        if ((rc = read_str(r, &out->str)) == 0 && check)
            rc = mqtt_topic_name_check(out->str.ptr, out->str.len);
        break;
    case T_BIN:
        rc = read_str(r, &out->str);
        break;
    case T_PAIR:
        if ((rc = read_str(r, &out->str)) == 0 &&
            (!check || (rc = mqtt_utf8_check(out->str.ptr, out->str.len)) == 0) &&
            (rc = read_str(r, &out->value)) == 0 && check)
            rc = mqtt_utf8_check(out->value.ptr, out->value.len);
        break;
    }
    return rc;
}

static void store(mqtt5_props_t *p, const prop_def_t *d, const mqtt5_prop_t *v) {
    char *f = (char *)p + d->off;
    switch (d->type) {
    case T_BYTE:
        *(uint8_t *)f = (uint8_t)v->num;
        break;
    case T_U16:
        *(uint16_t *)f = (uint16_t)v->num;
        break;
    case T_U32:
    case T_VBI:
        *(uint32_t *)f = v->num;
        break;
    default:
        *(mqtt_str_t *)f = v->str;
        break;
    }
}

int codec5_props_decode(reader_t *r, unsigned where, mqtt5_props_t *p) {
    uint32_t n; /* p is zeroed by the caller */
    int rc = read_vbi(r, &n);
    if (rc < 0)
        return rc;
    if ((size_t)(r->end - r->p) < n)
        return MQTT_ERR_PACKET_TOO_SHORT;
    reader_t pr = {r->p, r->p + n};
    p->raw.ptr = r->p;
    p->raw.len = n;
    r->p += n;
    while (pr.p < pr.end) {
        uint32_t id;
        if ((rc = read_vbi(&pr, &id)) < 0)
            return rc;
        if (id >= NPROPS || !props[id].name)
            return MQTT_ERR_PROPERTY_UNKNOWN;
        const prop_def_t *d = &props[id];
        if (!(d->allowed & P(where)))
            return MQTT_ERR_PROPERTY_NOT_ALLOWED;
        mqtt5_prop_t v = {.id = (uint8_t)id};
        if ((rc = read_value(&pr, d, &v, true)) < 0)
            return rc;
        bool again = MQTT5_HAS(p, id);
        if (again && !(d->repeat & P(where)))
            return MQTT_ERR_PROPERTY_DUPLICATE;
        if ((d->bool01 && v.num > 1) || (d->nonzero && v.num == 0))
            return MQTT_ERR_PROPERTY_VALUE;
        p->present |= 1ull << id;
        if (id == MQTT5_PROP_USER_PROPERTY)
            p->n_user++;
        else if (id == MQTT5_PROP_SUBSCRIPTION_ID)
            p->n_subscription_id++;
        if (!again && d->off)
            store(p, d, &v);
    }
    return 0;
}

int mqtt5_prop_next(const mqtt5_props_t *p, size_t *offset, mqtt5_prop_t *out) {
    if (!p->raw.ptr || *offset >= p->raw.len)
        return 0;
    reader_t r = {p->raw.ptr + *offset, p->raw.ptr + p->raw.len};
    uint32_t id;
    if (read_vbi(&r, &id) < 0 || id >= NPROPS || !props[id].name)
        return 0;
    memset(out, 0, sizeof(*out));
    out->id = (uint8_t)id;
    if (read_value(&r, &props[id], out, false) < 0)
        return 0;
    *offset = (size_t)(r.p - p->raw.ptr);
    return 1;
}

/* ---- Encoding ---------------------------------------------------------- */

static const uint32_t int_size[] = {[T_BYTE] = 1, [T_U16] = 2, [T_U32] = 4};

static uint32_t field_num(const mqtt5_props_t *p, const prop_def_t *d) {
    const char *f = (const char *)p + d->off;
    switch (d->type) {
    case T_BYTE:
        return *(const uint8_t *)f;
    case T_U16:
        return *(const uint16_t *)f;
    default:
        return *(const uint32_t *)f;
    }
}

/* The property bytes (without their length) of p, or SIZE_MAX when they
 * cannot be encoded (a string over 65,535 bytes, a VBI over 2^28 - 1). */
size_t codec5_props_size(const mqtt5_props_t *p) {
    if (!p)
        return 0;
    if (p->raw.ptr)
        return p->raw.len;
    size_t n = 0;
    for (size_t id = 1; id < NPROPS; id++) {
        const prop_def_t *d = &props[id];
        if (!d->name || id == MQTT5_PROP_USER_PROPERTY || !MQTT5_HAS(p, id))
            continue;
        n += 1;
        if (d->type == T_VBI) {
            if (field_num(p, d) > MQTT_MAX_REMAINING_LENGTH)
                return SIZE_MAX;
            n += vbi_len(field_num(p, d));
        } else if (d->type <= T_U32) {
            n += int_size[d->type];
        } else {
            const mqtt_str_t *s = (const mqtt_str_t *)((const char *)p + d->off);
            if (s->len > UINT16_MAX)
                return SIZE_MAX;
            n += 2 + s->len;
        }
    }
    for (uint32_t i = 0; i < 2 * p->n_user; i++) {
        if (p->user[i].len > UINT16_MAX)
            return SIZE_MAX;
        n += (i % 2 ? 2 : 3) + p->user[i].len;
    }
    return n > MQTT_MAX_REMAINING_LENGTH ? SIZE_MAX : n;
}

/* Writes the property length and the n property bytes of p. */
uint8_t *codec5_props_put(uint8_t *w, const mqtt5_props_t *p, size_t n) {
    w += mqtt5_vbi_encode(w, 4, (uint32_t)n);
    if (!p || n == 0)
        return w;
    if (p->raw.ptr)
        return put_bytes(w, p->raw.ptr, p->raw.len);
    for (size_t id = 1; id < NPROPS; id++) {
        const prop_def_t *d = &props[id];
        if (!d->name || id == MQTT5_PROP_USER_PROPERTY || !MQTT5_HAS(p, id))
            continue;
        *w++ = (uint8_t)id;
        uint32_t v = d->type <= T_VBI ? field_num(p, d) : 0;
        switch (d->type) {
        case T_BYTE:
            *w++ = (uint8_t)v;
            break;
        case T_U16:
            w = put_u16(w, (uint16_t)v);
            break;
        case T_U32:
            w = put_u16(put_u16(w, (uint16_t)(v >> 16)), (uint16_t)v);
            break;
        case T_VBI:
            w += mqtt5_vbi_encode(w, 4, v);
            break;
        default:
            w = put_str(w, (const mqtt_str_t *)((const char *)p + d->off));
            break;
        }
    }
    for (uint32_t i = 0; i < p->n_user; i++) {
        *w++ = MQTT5_PROP_USER_PROPERTY;
        w = put_str(put_str(w, &p->user[2 * i]), &p->user[2 * i + 1]);
    }
    return w;
}

/* ---- Reason codes ------------------------------------------------------ */

static const uint8_t rc_connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                     0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                     0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                        0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                        0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

int mqtt5_reason_valid(int type, uint8_t rc) {
    const uint8_t *set;
    size_t n;
#define SET(a) (set = (a), n = sizeof(a))
    switch (type) {
    case MQTT_CONNACK:
        SET(rc_connack);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
        SET(rc_puback);
        break;
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        SET(rc_pubrel);
        break;
    case MQTT_SUBACK:
        SET(rc_suback);
        break;
    case MQTT_UNSUBACK:
        SET(rc_unsuback);
        break;
    case MQTT_DISCONNECT:
        SET(rc_disconnect);
        break;
    case MQTT5_AUTH:
        SET(rc_auth);
        break;
    default:
        return 0;
    }
#undef SET
    for (size_t i = 0; i < n; i++)
        if (set[i] == rc)
            return 1;
    return 0;
}

uint8_t mqtt5_err_reason(int err) {
    switch (err) {
    case MQTT_ERR_PACKET_TOO_LARGE:
        return MQTT5_RC_PACKET_TOO_LARGE;
    case MQTT_ERR_PROPERTY_DUPLICATE:
    case MQTT_ERR_PROPERTY_VALUE:
        return MQTT5_RC_PROTOCOL_ERROR;
    default:
        return MQTT5_RC_MALFORMED;
    }
}
