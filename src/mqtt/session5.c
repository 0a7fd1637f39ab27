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

/* A reason string (property 0x1F) for the client: `why` cut to REASON_MAX
 * bytes on a character boundary; NULL (none) when there is no text or it is
 * not valid UTF-8. */
#define REASON_MAX 160
static const mqtt5_props_t *reason_props(mqtt5_props_t *p, const char *why) {
    if (!why)
        return NULL;
    size_t n = strlen(why);
    if (n > REASON_MAX)
        for (n = REASON_MAX; n && ((uint8_t)why[n] & 0xc0) == 0x80;)
            n--;
    if (n == 0 || mqtt_utf8_check((const uint8_t *)why, n) != 0)
        return NULL;
    *p = (mqtt5_props_t){.present = 1ull << MQTT5_PROP_REASON_STRING,
                         .reason_string = {(const uint8_t *)why, n}};
    return p;
}

/* What a reason code says to the client (acks and DISCONNECTs whose cause a
 * log line tells the operator in more detail). */
static const char *reason_text(uint8_t rc) {
    switch (rc) {
    case MQTT5_RC_UNSPECIFIED:
        return "Kafka did not take the message";
    case MQTT5_RC_NOT_AUTHORIZED:
        return "the ACL does not allow publishing on this topic";
    case MQTT5_RC_TOPIC_NAME_INVALID:
        return "no rule maps this topic to a legal Kafka topic";
    case MQTT5_RC_PAYLOAD_FORMAT_INVALID:
        return "the payload is not UTF-8 as its payload format indicator says";
    case MQTT5_RC_QUOTA_EXCEEDED:
        return "a new Kafka topic past kafka.max_topics";
    case MQTT5_RC_SESSION_TAKEN_OVER:
        return "a new connection with this client id took the session over";
    case MQTT5_RC_KEEP_ALIVE_TIMEOUT:
        return "no packet within 1.5 x keep alive";
    case MQTT5_RC_SERVER_SHUTTING_DOWN:
        return "the server is shutting down";
    case MQTT5_RC_SERVER_BUSY: /* session_conn_goodbye: the input budget */
        return "the server holds too many bytes of partly received packets";
    default:
        return NULL;
    }
}

/* Sends a v5 packet encoded by `enc` with the reason string, or without it
 * when that would make it larger than the client's maximum packet size
 * [MQTT-3.2.2-19] [MQTT-3.4.2-2] [MQTT-3.5.2-2] [MQTT-3.14.2-3]; nothing when
 * even the bare packet is too large [MQTT-3.1.2-25]. */
typedef size_t (*enc_fn)(uint8_t *b, size_t cap, const mqtt5_props_t *props, const void *arg);
static void send_reason(session_conn_t *c, enc_fn enc, const void *arg, const char *why) {
    uint8_t b[REASON_MAX + 16];
    mqtt5_props_t rp;
    const mqtt5_props_t *props = reason_props(&rp, why);
    size_t n = enc(b, sizeof(b), props, arg);
    if (props && (n > sizeof(b) || (c->max_out && n > c->max_out)))
        n = enc(b, sizeof(b), NULL, arg);
    if (n && n <= sizeof(b) && (!c->max_out || n <= c->max_out))
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

static size_t enc_connack(uint8_t *b, size_t cap, const mqtt5_props_t *props, const void *arg) {
    return mqtt5_encode_connack(b, cap, false, *(const uint8_t *)arg, props);
}

void session5_refuse_connack(session_conn_t *c, uint8_t reason, const char *why) {
    send_reason(c, enc_connack, &reason, why);
}

struct ack_arg {
    mqtt_type_t type;
    uint16_t pid;
    uint8_t reason;
};

static size_t enc_ack(uint8_t *b, size_t cap, const mqtt5_props_t *props, const void *arg) {
    const struct ack_arg *a = arg;
    return mqtt5_encode_ack(b, cap, a->type, a->pid, a->reason, props);
}

void session5_send_ack_why(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t reason,
                           const char *why) {
    struct ack_arg a = {type, pid, reason};
    /* Only CONNACK and DISCONNECT carry one when the client asked for no
     * problem information [MQTT-3.1.2-29]. */
    send_reason(c, enc_ack, &a,
                reason >= 0x80 && c->problem_info ? (why ? why : reason_text(reason)) : NULL);
}

void session5_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t reason) {
    session5_send_ack_why(c, type, pid, reason, NULL);
}

static size_t enc_disconnect(uint8_t *b, size_t cap, const mqtt5_props_t *props, const void *arg) {
    return mqtt5_encode_reason(b, cap, MQTT_DISCONNECT, *(const uint8_t *)arg, props);
}

void session5_disconnect_why(session_conn_t *c, uint8_t reason, const char *why) {
    if (!c->v5 || c->state != CONN_CONNECTED)
        return;
    send_reason(c, enc_disconnect, &reason, why);
}

mqtt5_props_t *session5_props_dup(const mqtt5_props_t *p) {
    mqtt5_props_t *d = malloc(sizeof(*d) + p->raw.len);
    if (!d)
        return NULL;
    *d = *p;
    uint8_t *raw = (uint8_t *)(d + 1);
    if (p->raw.len)
        memcpy(raw, p->raw.ptr, p->raw.len);
    d->raw.ptr = raw;
    d->user = NULL; /* encoding only; decoded user properties are walked in raw */
    /* The string properties are views into raw: the same offsets in the copy. */
    mqtt_str_t *views[] = {&d->content_type,       &d->response_topic,   &d->correlation_data,
                           &d->assigned_client_id, &d->auth_method,      &d->auth_data,
                           &d->response_info,      &d->server_reference, &d->reason_string};
    uintptr_t lo = (uintptr_t)p->raw.ptr, hi = lo + p->raw.len;
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        uintptr_t v = (uintptr_t)views[i]->ptr;
        if (views[i]->ptr && p->raw.ptr && v >= lo && v <= hi)
            views[i]->ptr = raw + (v - lo);
        else
            *views[i] = (mqtt_str_t){0};
    }
    return d;
}

void session5_send_disconnect(session_conn_t *c, uint8_t reason) {
    session5_disconnect_why(c, reason, reason_text(reason));
}

void session_conn_goodbye(session_conn_t *c, bool busy) {
    session5_send_disconnect(c, busy ? MQTT5_RC_SERVER_BUSY : MQTT5_RC_SERVER_SHUTTING_DOWN);
}

void session5_tell_violation(session_conn_t *c, int kind, const char *why) {
    uint8_t reason = MQTT5_RC_PROTOCOL_ERROR;
    if (kind <= SESSION_ERR_CODEC_MAX)
        reason = mqtt5_err_reason(-kind);
    else if (kind == SESSION_ERR_TOPIC_ALIAS_INVALID)
        reason = MQTT5_RC_TOPIC_ALIAS_INVALID;
    else if (kind == SESSION_ERR_RECEIVE_MAXIMUM)
        reason = MQTT5_RC_RECEIVE_MAXIMUM_EXCEEDED;
    else if (kind == SESSION_ERR_TOPIC_ALIAS_QUOTA)
        reason = MQTT5_RC_QUOTA_EXCEEDED;
    if (c->state == CONN_NEW)
        session5_refuse_connack(c, reason, why);
    else
        session5_disconnect_why(c, reason, why);
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
    session_caches_t *x = session_conn_caches(c);
    if (!x || (!x->aliases && !(x->aliases = calloc(c->alias_max, sizeof(*x->aliases))))) {
        session_end(c, NULL, LOG_ERROR, true, true, "out of memory for topic aliases");
        return FEED_CLOSED;
    }
    struct alias *e = &x->aliases[a - 1];
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
    /* The topics are the client's choice: their bytes are bounded. */
    uint32_t bytes = x->alias_bytes - e->len + (uint32_t)p->topic.len;
    uint32_t cap = c->mgr->cfg->mqtt.max_topic_alias_bytes;
    if (bytes > cap) {
        session_violation(c, SESSION_ERR_TOPIC_ALIAS_QUOTA,
                          "topic alias %u would hold %u bytes of topics, over "
                          "mqtt.max_topic_alias_bytes %u",
                          a, bytes, cap);
        return FEED_CLOSED;
    }
    char *t = session_dup(p->topic.ptr, p->topic.len);
    if (!t) {
        session_end(c, NULL, LOG_ERROR, true, true, "out of memory for topic aliases");
        return FEED_CLOSED;
    }
    free(e->topic);
    e->topic = t;
    e->len = (uint16_t)p->topic.len;
    x->alias_bytes = bytes;
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
