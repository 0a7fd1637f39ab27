/* MQTT 5.0 codec: the packets, around the properties of props.c. See
 * include/mqtt/codec5.h for the contract. Strict as the 3.1.1 codec: every
 * reserved bit, length, string, property and reason code is checked, and the
 * body is only looked at once all of it is in the buffer. */
#include <string.h>

#include "codec_int.h"
#include "mqtt/codec5.h"

/* ---- Decoders ---------------------------------------------------------- */

static int decode_connect(reader_t *r, mqtt5_packet_t *pkt) {
    mqtt5_connect_t *cc = &pkt->u.connect;
    mqtt_connect_t *c = &cc->c;
    memset(cc, 0, sizeof(*cc));
    int rc = read_str(r, &c->protocol_name);
    if (rc < 0)
        return rc;
    if (!str_is(&c->protocol_name, "MQTT")) /* [MQTT-3.1.2-1] */
        return MQTT_ERR_PROTOCOL_NAME;
    if ((rc = read_u8(r, &c->protocol_level)) < 0)
        return rc;
    if (c->protocol_level != MQTT_PROTOCOL_LEVEL_5) /* [MQTT-3.1.2-2]: CONNACK 0x84 */
        return MQTT_ERR_PROTOCOL_LEVEL;
    /* A password without a user name is allowed, unlike 3.1.1 [MQTT-3.1.2-19]. */
    if ((rc = codec_connect_flags(r, c)) < 0)
        return rc;
    if ((rc = read_u16(r, &c->keepalive)) < 0 ||
        (rc = codec5_props_decode(r, MQTT_CONNECT, &pkt->props)) < 0)
        return rc;
    if ((rc = read_str(r, &c->client_id)) < 0 ||
        (rc = mqtt_utf8_check(c->client_id.ptr, c->client_id.len)) < 0)
        return rc;
    if (c->will_flag) {
        if ((rc = codec5_props_decode(r, 0, &cc->will)) < 0 ||
            (rc = read_str(r, &c->will_topic)) < 0 ||
            (rc = mqtt_topic_name_check(c->will_topic.ptr, c->will_topic.len)) < 0 ||
            (rc = read_str(r, &c->will_payload)) < 0)
            return rc;
    }
    if (c->has_username && ((rc = read_str(r, &c->username)) < 0 ||
                            (rc = mqtt_text_check(c->username.ptr, c->username.len)) < 0))
        return rc;
    if (c->has_password && (rc = read_str(r, &c->password)) < 0)
        return rc;
    return 0;
}

static int decode_connack(reader_t *r, mqtt5_packet_t *pkt) {
    uint8_t flags;
    int rc;
    if ((rc = read_u8(r, &flags)) < 0 || (rc = read_u8(r, &pkt->reason)) < 0)
        return rc;
    pkt->u.session_present = flags & 1;
    pkt->has_reason = true;
    if (flags & 0xFE) /* [MQTT-3.2.2-1] */
        return MQTT_ERR_CONNACK_FLAGS;
    if (!mqtt5_reason_valid(MQTT_CONNACK, pkt->reason))
        return MQTT_ERR_REASON_CODE;
    if (pkt->u.session_present && pkt->reason) /* [MQTT-3.2.2-6] */
        return MQTT_ERR_CONNACK_FLAGS;
    pkt->has_props = true;
    return codec5_props_decode(r, MQTT_CONNACK, &pkt->props);
}

static int decode_publish(reader_t *r, mqtt5_packet_t *pkt) {
    mqtt_publish_t *pub = &pkt->u.publish;
    pub->dup = pkt->flags & 8;
    pub->qos = (pkt->flags >> 1) & 3;
    pub->retain = pkt->flags & 1;
    pub->packet_id = 0;
    int rc = read_str(r, &pub->topic);
    if (rc < 0)
        return rc;
    if (pub->topic.len && (rc = mqtt_topic_name_check(pub->topic.ptr, pub->topic.len)) < 0)
        return rc;
    if (pub->qos && (rc = read_packet_id(r, &pub->packet_id)) < 0)
        return rc;
    if ((rc = codec5_props_decode(r, MQTT_PUBLISH, &pkt->props)) < 0)
        return rc;
    /* An empty topic names the topic alias's [MQTT-3.3.2-8]. */
    if (!pub->topic.len && !MQTT5_HAS(&pkt->props, MQTT5_PROP_TOPIC_ALIAS))
        return MQTT_ERR_TOPIC_EMPTY;
    pub->payload.ptr = r->p;
    pub->payload.len = (size_t)(r->end - r->p);
    r->p = r->end;
    return 0;
}

/* The reason code and the properties, each optional at the end of a packet:
 * PUBACK..PUBCOMP [MQTT-3.4.2-1], DISCONNECT, AUTH. */
static int decode_reason_tail(reader_t *r, mqtt5_packet_t *pkt) {
    if (r->p == r->end)
        return 0;
    int rc = read_u8(r, &pkt->reason);
    if (rc < 0)
        return rc;
    pkt->has_reason = true;
    if (!mqtt5_reason_valid(pkt->type, pkt->reason))
        return MQTT_ERR_REASON_CODE;
    if (r->p == r->end)
        return 0;
    pkt->has_props = true;
    return codec5_props_decode(r, pkt->type, &pkt->props);
}

static int decode_subscribe(reader_t *r, mqtt5_packet_t *pkt) {
    mqtt_subscribe_t *s = &pkt->u.subscribe;
    s->with_qos = pkt->type == MQTT_SUBSCRIBE;
    s->count = 0;
    int rc;
    if ((rc = read_packet_id(r, &s->packet_id)) < 0 ||
        (rc = codec5_props_decode(r, pkt->type, &pkt->props)) < 0)
        return rc;
    s->entries.ptr = r->p;
    s->entries.len = (size_t)(r->end - r->p);
    while (r->p < r->end) {
        mqtt_str_t f;
        if ((rc = read_str(r, &f)) < 0 || (rc = mqtt_topic_filter_check(f.ptr, f.len)) < 0)
            return rc;
        if (s->with_qos) {
            uint8_t o;
            if ((rc = read_u8(r, &o)) < 0)
                return rc;
            /* [MQTT-3.8.3-4] no local on a shared subscription is the
             * session's; reserved bits [MQTT-3.8.3-5], QoS 3, retain handling 3. */
            if ((o & 0xC0) || MQTT5_SUB_QOS(o) == 3 || MQTT5_SUB_RETAIN_HANDLING(o) == 3)
                return MQTT_ERR_SUBSCRIBE_OPTIONS;
        }
        s->count++;
    }
    return s->count ? 0 : MQTT_ERR_NO_FILTERS; /* [MQTT-3.8.3-2], [MQTT-3.10.3-2] */
}

static int decode_suback(reader_t *r, mqtt5_packet_t *pkt) {
    mqtt_suback_t *s = &pkt->u.suback;
    int rc;
    if ((rc = read_packet_id(r, &s->packet_id)) < 0 ||
        (rc = codec5_props_decode(r, pkt->type, &pkt->props)) < 0)
        return rc;
    if (r->p == r->end)
        return MQTT_ERR_PACKET_TOO_SHORT; /* one reason code per filter, at least one */
    s->return_codes.ptr = r->p;
    s->return_codes.len = (size_t)(r->end - r->p);
    for (; r->p < r->end; r->p++)
        if (!mqtt5_reason_valid(pkt->type, *r->p))
            return MQTT_ERR_REASON_CODE;
    return 0;
}

ssize_t mqtt5_decode(const uint8_t *buf, size_t len, size_t max_packet, mqtt5_packet_t *pkt) {
    mqtt_fixed_header_t fh;
    int hl = codec_fixed_header(buf, len, &fh, true);
    if (hl <= 0)
        return hl;
    size_t total = (size_t)hl + fh.remaining_length;
    if (max_packet && total > max_packet)
        return MQTT_ERR_PACKET_TOO_LARGE;
    if (len < total)
        return 0;
    pkt->type = (uint8_t)fh.type;
    pkt->flags = fh.flags;
    pkt->reason = 0;
    pkt->has_reason = pkt->has_props = false;
    memset(&pkt->props, 0, sizeof(pkt->props));
    reader_t r = {buf + hl, buf + total};
    int rc = 0;
    switch (pkt->type) {
    case MQTT_CONNECT:
        rc = decode_connect(&r, pkt);
        break;
    case MQTT_CONNACK:
        rc = decode_connack(&r, pkt);
        break;
    case MQTT_PUBLISH:
        rc = decode_publish(&r, pkt);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        if ((rc = read_packet_id(&r, &pkt->u.packet_id)) == 0)
            rc = decode_reason_tail(&r, pkt);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        rc = decode_subscribe(&r, pkt);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        rc = decode_suback(&r, pkt);
        break;
    case MQTT_DISCONNECT:
    case MQTT5_AUTH:
        rc = decode_reason_tail(&r, pkt);
        break;
    default: /* PINGREQ, PINGRESP: length 0, checked from the header */
        break;
    }
    if (rc == 0 && r.p != r.end)
        rc = MQTT_ERR_TRAILING_BYTES;
    return rc < 0 ? rc : (ssize_t)total;
}

/* ---- Encoders ---------------------------------------------------------- */

static size_t vbi_size(size_t v) {
    return mqtt5_vbi_encode(NULL, 0, (uint32_t)v);
}

/* Properties with their length: `*pn` gets the property bytes. SIZE_MAX when
 * they cannot be encoded. */
static size_t props_total(const mqtt5_props_t *p, size_t *pn) {
    *pn = codec5_props_size(p);
    return *pn == SIZE_MAX ? SIZE_MAX : vbi_size(*pn) + *pn;
}

size_t mqtt5_encode_connack(uint8_t *buf, size_t cap, bool session_present, uint8_t reason,
                            const mqtt5_props_t *props) {
    size_t pn, pt = props_total(props, &pn);
    if (pt == SIZE_MAX)
        return 0;
    size_t rl = 2 + pt, size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t *w = put_header(buf, MQTT_CONNACK << 4, rl);
    *w++ = session_present ? 1 : 0;
    *w++ = reason;
    codec5_props_put(w, props, pn);
    return size;
}

/* The packet id (when id_len 2), then the reason code and the properties in
 * the shortest form allowed, or longer when has_reason / has_props ask. */
static size_t encode_tail(uint8_t *buf, size_t cap, uint8_t b0, size_t id_len, uint16_t id,
                          uint8_t reason, const mqtt5_props_t *props, bool has_reason,
                          bool has_props) {
    size_t pn, pt = props_total(props, &pn);
    if (pt == SIZE_MAX)
        return 0;
    bool with_props = has_props || pn > 0;
    bool with_reason = with_props || has_reason || reason != 0;
    size_t rl = id_len + (with_reason ? 1 : 0) + (with_props ? pt : 0);
    size_t size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t *w = put_header(buf, b0, rl);
    if (id_len)
        w = put_u16(w, id);
    if (with_reason)
        *w++ = reason;
    if (with_props)
        codec5_props_put(w, props, pn);
    return size;
}

size_t mqtt5_encode_ack(uint8_t *buf, size_t cap, mqtt_type_t type, uint16_t packet_id,
                        uint8_t reason, const mqtt5_props_t *props) {
    if (type != MQTT_PUBACK && type != MQTT_PUBREC && type != MQTT_PUBREL && type != MQTT_PUBCOMP)
        return 0;
    return encode_tail(buf, cap, (uint8_t)(type << 4 | codec_required_flags[type]), 2, packet_id,
                       reason, props, false, false);
}

size_t mqtt5_encode_reason(uint8_t *buf, size_t cap, int type, uint8_t reason,
                           const mqtt5_props_t *props) {
    if (type != MQTT_DISCONNECT && type != MQTT5_AUTH)
        return 0;
    return encode_tail(buf, cap, (uint8_t)(type << 4), 0, 0, reason, props, false, false);
}

size_t mqtt5_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p,
                            const mqtt5_props_t *props) {
    static const mqtt5_props_t none = {0};
    return codec_encode_publish(buf, cap, p, props ? props : &none);
}

size_t codec_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p,
                            const mqtt5_props_t *props) {
    size_t pn = 0, pt = props ? props_total(props, &pn) : 0;
    if (pt == SIZE_MAX || p->qos > 2 || p->topic.len > UINT16_MAX ||
        p->payload.len > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t rl = 2 + p->topic.len + (p->qos ? 2 : 0) + pt + p->payload.len;
    size_t size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t b0 =
        (uint8_t)(MQTT_PUBLISH << 4 | (p->dup ? 8 : 0) | p->qos << 1 | (p->retain ? 1 : 0));
    uint8_t *w = put_str(put_header(buf, b0, rl), &p->topic);
    if (p->qos)
        w = put_u16(w, p->packet_id);
    if (props)
        w = codec5_props_put(w, props, pn);
    put_bytes(w, p->payload.ptr, p->payload.len);
    return size;
}

size_t codec_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect_t *c,
                            const mqtt5_props_t *props, const mqtt5_props_t *will) {
    static const uint8_t mqtt_name[] = "MQTT";
    mqtt_str_t name = c->protocol_name;
    if (!name.ptr) {
        name.ptr = mqtt_name;
        name.len = 4;
    }
    bool v5 = props != NULL;
    size_t pn = 0, pt = 0, wn = 0, wt = 0;
    if (v5) {
        pt = props_total(props, &pn);
        if (c->will_flag)
            wt = props_total(will, &wn);
    }
    if (pt == SIZE_MAX || wt == SIZE_MAX)
        return 0;
    const mqtt_str_t *strs[] = {&name,        &c->client_id, &c->will_topic, &c->will_payload,
                                &c->username, &c->password};
    bool present[] = {true, true, c->will_flag, c->will_flag, c->has_username, c->has_password};
    size_t rl = 4 + pt + wt; /* level, flags, keepalive, properties */
    for (size_t i = 0; i < 6; i++) {
        if (!present[i])
            continue;
        if (strs[i]->len > UINT16_MAX)
            return 0;
        rl += 2 + strs[i]->len;
    }
    size_t size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t *w = put_str(put_header(buf, MQTT_CONNECT << 4, rl), &name);
    *w++ = c->protocol_level ? c->protocol_level
                             : (v5 ? MQTT_PROTOCOL_LEVEL_5 : MQTT_PROTOCOL_LEVEL_311);
    *w++ = (uint8_t)((c->has_username ? 0x80 : 0) | (c->has_password ? 0x40 : 0) |
                     (c->will_retain ? 0x20 : 0) | (c->will_qos & 3) << 3 |
                     (c->will_flag ? 0x04 : 0) | (c->clean_session ? 0x02 : 0));
    w = put_u16(w, c->keepalive);
    if (v5)
        w = codec5_props_put(w, props, pn);
    for (size_t i = 1; i < 6; i++) {
        if (i == 2 && v5 && c->will_flag)
            w = codec5_props_put(w, will, wn);
        if (present[i])
            w = put_str(w, strs[i]);
    }
    return size;
}

/* SUBSCRIBE, UNSUBSCRIBE (entries), SUBACK, UNSUBACK (codes): packet id,
 * properties, then the raw list. */
static size_t encode_list(uint8_t *buf, size_t cap, uint8_t b0, uint16_t id,
                          const mqtt5_props_t *props, const mqtt_str_t *list) {
    size_t pn, pt = props_total(props, &pn);
    if (pt == SIZE_MAX || list->len > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t rl = 2 + pt + list->len, size = packet_size(rl);
    if (!size || size > cap)
        return size;
    uint8_t *w = codec5_props_put(put_u16(put_header(buf, b0, rl), id), props, pn);
    put_bytes(w, list->ptr, list->len);
    return size;
}

size_t mqtt5_encode(uint8_t *buf, size_t cap, const mqtt5_packet_t *pkt) {
    switch (pkt->type) {
    case MQTT_CONNECT:
        return codec_encode_connect(buf, cap, &pkt->u.connect.c, &pkt->props, &pkt->u.connect.will);
    case MQTT_CONNACK:
        return mqtt5_encode_connack(buf, cap, pkt->u.session_present, pkt->reason, &pkt->props);
    case MQTT_PUBLISH:
        return mqtt5_encode_publish(buf, cap, &pkt->u.publish, &pkt->props);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return encode_tail(buf, cap, (uint8_t)(pkt->type << 4 | codec_required_flags[pkt->type]), 2,
                           pkt->u.packet_id, pkt->reason, &pkt->props, pkt->has_reason,
                           pkt->has_props);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return encode_list(buf, cap, (uint8_t)(pkt->type << 4 | 2), pkt->u.subscribe.packet_id,
                           &pkt->props, &pkt->u.subscribe.entries);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return encode_list(buf, cap, (uint8_t)(pkt->type << 4), pkt->u.suback.packet_id,
                           &pkt->props, &pkt->u.suback.return_codes);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return mqtt_encode_empty(buf, cap, (mqtt_type_t)pkt->type);
    case MQTT_DISCONNECT:
    case MQTT5_AUTH:
        return encode_tail(buf, cap, (uint8_t)(pkt->type << 4), 0, 0, pkt->reason, &pkt->props,
                           pkt->has_reason, pkt->has_props);
    }
    return 0;
}
