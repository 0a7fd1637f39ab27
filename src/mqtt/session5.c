/* What MQTT 5.0 adds to the session: decoding a level 5 packet into the view
 * the shared handlers take, the v5 forms of CONNACK, the acks and
 * DISCONNECT, the reason code before a close, AUTH, and the Kafka headers a
 * PUBLISH's properties become. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

ssize_t session5_decode(session_conn_t *c, const uint8_t *buf, size_t len, size_t max,
                        mqtt_packet_t *pkt, mqtt5_packet_t *p5) {
    (void)c;
    ssize_t n = mqtt5_decode(buf, len, max, p5);
    pkt->type = (mqtt_type_t)p5->type;
    pkt->flags = p5->flags;
    if (n <= 0)
        return n;
    switch (p5->type) {
    case MQTT_CONNECT:
        pkt->u.connect = p5->u.connect.c;
        break;
    case MQTT_PUBLISH:
        pkt->u.publish = p5->u.publish;
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        pkt->u.packet_id = p5->u.packet_id;
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        pkt->u.subscribe = p5->u.subscribe;
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        pkt->u.suback = p5->u.suback;
        break;
    default:
        break;
    }
    return n;
}

uint8_t session5_connack_reason(uint8_t rc) {
    static const uint8_t map[] = {
        [MQTT_CONNACK_ACCEPTED] = MQTT5_RC_SUCCESS,
        [MQTT_CONNACK_BAD_PROTOCOL] = MQTT5_RC_UNSUPPORTED_VERSION,
        [MQTT_CONNACK_ID_REJECTED] = MQTT5_RC_CLIENT_ID_INVALID,
        [MQTT_CONNACK_UNAVAILABLE] = MQTT5_RC_SERVER_UNAVAILABLE,
        [MQTT_CONNACK_BAD_CREDENTIALS] = MQTT5_RC_BAD_USER_OR_PASSWORD,
        [MQTT_CONNACK_NOT_AUTHORIZED] = MQTT5_RC_NOT_AUTHORIZED,
    };
    return rc < sizeof(map) ? map[rc] : rc;
}

/* Sends a v5 packet unless it is larger than the client's maximum packet
 * size [MQTT-3.1.2-24]: then it goes without its properties, which only
 * carry what may be dropped (reason strings, user properties). */
static void send_bounded(session_conn_t *c, uint8_t *b, size_t cap, size_t n, size_t bare) {
    if (c->max_out && n > c->max_out)
        n = bare;
    if (n && n <= cap)
        session_send(c, b, n);
}

void session5_send_connack(session_conn_t *c, bool present, uint8_t reason,
                           const mqtt5_props_t *props) {
    uint8_t b[512];
    size_t n = mqtt5_encode_connack(b, sizeof(b), present, reason, props);
    if (n > sizeof(b) || (c->max_out && n > c->max_out))
        n = mqtt5_encode_connack(b, sizeof(b), present, reason, NULL);
    session_send(c, b, n);
}

void session5_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t reason) {
    uint8_t b[8];
    size_t n = mqtt5_encode_ack(b, sizeof(b), type, pid, reason, NULL);
    send_bounded(c, b, sizeof(b), n, n);
}

void session5_send_disconnect(session_conn_t *c, uint8_t reason) {
    if (!c->v5 || c->state != CONN_CONNECTED)
        return;
    uint8_t b[4];
    size_t n = mqtt5_encode_reason(b, sizeof(b), MQTT_DISCONNECT, reason, NULL);
    send_bounded(c, b, sizeof(b), n, n);
}

void session5_tell_violation(session_conn_t *c, int kind) {
    uint8_t reason = MQTT5_RC_PROTOCOL_ERROR;
    if (kind <= SESSION_ERR_CODEC_MAX)
        reason = mqtt5_err_reason(-kind);
    else if (kind == SESSION_ERR_TOPIC_ALIAS_INVALID)
        reason = MQTT5_RC_TOPIC_ALIAS_INVALID;
    else if (kind == SESSION_ERR_RECEIVE_MAXIMUM)
        reason = MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED;
    if (c->state == CONN_NEW)
        session5_send_connack(c, false, reason, NULL);
    else
        session5_send_disconnect(c, reason);
}

/* Enhanced authentication is not offered (a CONNECT naming a method gets
 * CONNACK 0x8C), so an AUTH packet is a protocol error [MQTT-4.12.0-6]. */
int session5_on_auth(session_conn_t *c, const mqtt_packet_t *pkt) {
    (void)pkt;
    session_violation(c, SESSION_ERR_AUTH_UNEXPECTED,
                      "AUTH without an authentication method in CONNECT [MQTT-4.12.0-6]");
    return FEED_CLOSED;
}

int session5_topic_alias(session_conn_t *c, mqtt_publish_t *p) {
    uint16_t a = c->p5->props.topic_alias;
    if (a == 0 || a > c->alias_max) {
        if (c->alias_max)
            session_violation(c, SESSION_ERR_TOPIC_ALIAS_INVALID,
                              "topic alias %u outside 1..%u [MQTT-3.3.2-10]", a, c->alias_max);
        else
            session_violation(c, SESSION_ERR_TOPIC_ALIAS_INVALID,
                              "topic alias %u, but the topic alias maximum is 0 [MQTT-3.3.2-10]",
                              a);
        return FEED_CLOSED;
    }
    if (!c->aliases && !(c->aliases = calloc(c->alias_max, sizeof(*c->aliases)))) {
        session_end(c, NULL, LOG_ERROR, true, true, "out of memory for topic aliases");
        return FEED_CLOSED;
    }
    struct alias *e = &c->aliases[a - 1];
    if (p->topic.len == 0) {
        if (!e->topic) {
            session_violation(c, SESSION_ERR_TOPIC_ALIAS_UNKNOWN,
                              "empty topic with topic alias %u, which was never set "
                              "[MQTT-3.3.2-12]",
                              a);
            return FEED_CLOSED;
        }
        p->topic = (mqtt_str_t){(const uint8_t *)e->topic, e->len};
        return FEED_OK;
    }
    char *t = session_dup(p->topic.ptr, p->topic.len);
    if (!t) {
        session_end(c, NULL, LOG_ERROR, true, true, "out of memory for topic aliases");
        return FEED_CLOSED;
    }
    free(e->topic);
    e->topic = t;
    e->len = (uint16_t)p->topic.len;
    return FEED_OK;
}

bool session5_user_property(const void *props, const char *name, size_t name_len, const char **val,
                            size_t *val_len) {
    const mqtt5_props_t *p = props;
    size_t off = 0;
    mqtt5_prop_t pr;
    while (p->n_user && mqtt5_prop_next(p, &off, &pr)) {
        if (pr.id == MQTT5_PROP_USER_PROPERTY && pr.str.len == name_len &&
            memcmp(pr.str.ptr, name, name_len) == 0) {
            *val = (const char *)pr.value.ptr;
            *val_len = pr.value.len;
            return true;
        }
    }
    return false;
}

size_t session5_headers(const mqtt5_props_t *p, kafka_header_t *h, char *names,
                        size_t *name_bytes) {
    static const struct {
        uint8_t id;
        const char *name;
    } named[] = {
        {MQTT5_PROP_CONTENT_TYPE, "mqtt.content_type"},
        {MQTT5_PROP_RESPONSE_TOPIC, "mqtt.response_topic"},
        {MQTT5_PROP_CORRELATION_DATA, "mqtt.correlation_data"},
    };
    const mqtt_str_t *vals[] = {&p->content_type, &p->response_topic, &p->correlation_data};
    size_t n = 0;
    for (size_t i = 0; i < 3; i++) {
        if (!MQTT5_HAS(p, named[i].id))
            continue;
        if (h)
            h[n] = (kafka_header_t){named[i].name, vals[i]->ptr, vals[i]->len};
        n++;
    }
    size_t used = 0;
    size_t off = 0;
    mqtt5_prop_t pr;
    while (p->n_user && mqtt5_prop_next(p, &off, &pr)) {
        if (pr.id != MQTT5_PROP_USER_PROPERTY)
            continue;
        /* Names and values unchanged, in order, duplicates kept; a name is
         * copied to be NUL-terminated (UTF-8 without U+0000: no cut). */
        if (h) {
            memcpy(names + used, pr.str.ptr, pr.str.len);
            names[used + pr.str.len] = '\0';
            h[n] = (kafka_header_t){names + used, pr.value.ptr, pr.value.len};
        }
        used += pr.str.len + 1;
        n++;
    }
    if (name_bytes)
        *name_bytes = used;
    return n;
}
