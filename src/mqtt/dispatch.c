/* From bytes to handlers: session_feed decodes whole packets and dispatches
 * each through a table indexed by packet type (the shape of librdkafka's
 * rdkafka_mock_handlers.c), whose row names the handler and the protocol
 * levels it serves as a bitmask (3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0). The codec
 * accepts levels 3 ("MQIsdp") and 4 ("MQTT"); MQTT 3.1 is 3.1.1 apart from its
 * CONNECT, so every row serves both. A level 5 CONNECT (the 3.1.1 codec's
 * level error) is decoded again by the v5 codec, and so is everything after
 * it on that connection (session5.c); the handlers see the 3.1.1 view and
 * c->p5, and AUTH (type 15) has a row of its own. */
#include <inttypes.h>

#include "session_int.h"

#define LEVEL(n) (1u << (n))
#define V311 (LEVEL(MQTT_PROTOCOL_LEVEL_31) | LEVEL(MQTT_PROTOCOL_LEVEL_311))
#define ALL (V311 | LEVEL(MQTT_PROTOCOL_LEVEL_5))

static int on_server_only(session_conn_t *c, const mqtt_packet_t *pkt) {
    session_violation(c, SESSION_ERR_SERVER_ONLY_PACKET, "%s is a server-only packet",
                      mqtt_type_name(pkt->type));
    return FEED_CLOSED;
}

static const struct {
    session_handler_fn handle;
    uint8_t levels;
} handlers[16] = {
    [MQTT_CONNECT] = {session_on_connect, ALL},
    [MQTT_CONNACK] = {on_server_only, ALL},
    [MQTT_PUBLISH] = {session_on_publish, ALL},
    [MQTT_PUBACK] = {session_on_client_ack, ALL},
    [MQTT_PUBREC] = {session_on_client_ack, ALL},
    [MQTT_PUBREL] = {session_on_pubrel, ALL},
    [MQTT_PUBCOMP] = {session_on_client_ack, ALL},
    [MQTT_SUBSCRIBE] = {session_on_subscribe, ALL},
    [MQTT_SUBACK] = {on_server_only, ALL},
    [MQTT_UNSUBSCRIBE] = {session_on_unsubscribe, ALL},
    [MQTT_UNSUBACK] = {on_server_only, ALL},
    [MQTT_PINGREQ] = {session_on_pingreq, ALL},
    [MQTT_PINGRESP] = {on_server_only, ALL},
    [MQTT_DISCONNECT] = {session_on_disconnect, ALL},
    [MQTT5_AUTH] = {session5_on_auth, LEVEL(MQTT_PROTOCOL_LEVEL_5)},
};

static void refuse_level(session_conn_t *c, const mqtt_connect_t *p) {
    if (p->protocol_name.len == 6) /* "MQIsdp": the codec let no other name through */
        session_refuse(c, MQTT_CONNACK_BAD_PROTOCOL, LOG_WARN,
                       "unsupported protocol level %u for \"MQIsdp\" (only 3, MQTT 3.1) "
                       "[MQTT-3.1.2-2]",
                       p->protocol_level);
    else
        session_refuse(c, MQTT_CONNACK_BAD_PROTOCOL, LOG_WARN,
                       "unsupported protocol level %u (only 4, MQTT 3.1.1) [MQTT-3.1.2-2]",
                       p->protocol_level);
}

static int dispatch(session_conn_t *c, const mqtt_packet_t *pkt) {
    unsigned type = pkt->type & 15;
    c->mgr->st.packets_received[type]++;
    if (c->state == CONN_NEW && type != MQTT_CONNECT) {
        session_violation(c, SESSION_ERR_FIRST_PACKET_NOT_CONNECT,
                          "first packet is %s, not CONNECT [MQTT-3.1.0-1]",
                          mqtt_type_name(pkt->type));
        return FEED_CLOSED;
    }
    if (c->state != CONN_NEW && type == MQTT_CONNECT) {
        session_violation(c, SESSION_ERR_SECOND_CONNECT, "second CONNECT [MQTT-3.1.0-2]");
        return FEED_CLOSED;
    }
    /* A CONNECT asks for its level; later packets have the accepted one. */
    unsigned level = type == MQTT_CONNECT ? pkt->u.connect.protocol_level : c->level;
    if (level < 8 && (handlers[type].levels & LEVEL(level)))
        return handlers[type].handle(c, pkt);
    if (type == MQTT_CONNECT)
        refuse_level(c, &pkt->u.connect);
    else
        session_violation(c, SESSION_ERR_UNEXPECTED_PACKET_TYPE, "unexpected packet type %d",
                          (int)pkt->type);
    return FEED_CLOSED;
}

/* The largest CONNECT the caps allow, whole packet: fixed header (5),
 * variable header (12 with 3.1's "MQIsdp"), then each string with its
 * 2-byte length, the password up to MQTT's 65535. A first packet announcing
 * more is refused from its fixed header, before it is buffered. */
static size_t connect_max(const config_mqtt_t *mq) {
    return 5 + 12 + (2 + (size_t)mq->max_client_id_length) +
           (2 + (size_t)mq->max_will_topic_length) + (2 + (size_t)mq->max_will_payload) +
           (2 + (size_t)mq->max_username_length) + (2 + 65535);
}

/* A packet the codec refused: closed with one log line. */
static void decode_error(session_conn_t *c, const uint8_t *buf, size_t len, int err,
                         const mqtt_packet_t *pkt) {
    mqtt_fixed_header_t fh;
    const config_mqtt_t *mq = &c->mgr->cfg->mqtt;
    if (err == MQTT_ERR_PROTOCOL_LEVEL && c->state == CONN_NEW) {
        refuse_level(c, &pkt->u.connect);
    } else if (err == MQTT_ERR_PACKET_TOO_LARGE && c->state == CONN_NEW &&
               mqtt_decode_fixed_header(buf, len, &fh) > 0 &&
               (uint64_t)fh.header_len + fh.remaining_length <= mq->max_packet_size) {
        /* Over connect_max only: the first packet cannot be a valid CONNECT. */
        if (fh.type == MQTT_CONNECT) {
            c->mgr->st.refused_too_long++;
            session_end(c, &c->mgr->rl->refused, LOG_WARN, false, true,
                        "CONNECT refused: %" PRIu64 " bytes announced, over the %zu a CONNECT "
                        "within mqtt.max_client_id_length, max_username_length, "
                        "max_will_topic_length and max_will_payload can have",
                        (uint64_t)fh.header_len + fh.remaining_length, connect_max(mq));
        } else {
            session_violation(c, SESSION_ERR_FIRST_PACKET_NOT_CONNECT,
                              "first packet is %s, not CONNECT [MQTT-3.1.0-1]",
                              mqtt_type_name(fh.type));
        }
    } else if (err == MQTT_ERR_PACKET_TOO_LARGE && mqtt_decode_fixed_header(buf, len, &fh) > 0)
        session_violation(c, err, "%s %s packet of %" PRIu64 " bytes is over max_packet_size %u",
                          mqtt_errname(err), mqtt_type_name(fh.type),
                          (uint64_t)fh.header_len + fh.remaining_length,
                          c->mgr->cfg->mqtt.max_packet_size);
    else
        session_violation(c, err, "%s: %s", mqtt_errname(err), mqtt_strerror(err));
}

ssize_t session_feed(session_conn_t *c, const uint8_t *buf, size_t len) {
    session_mgr_t *m = c->mgr;
    size_t off = 0;
    if (c->state == CONN_CLOSED)
        return -1;
    while (off < len && !c->paused_inflight && !c->paused_queue) {
        mqtt_packet_t pkt;
        size_t max = m->cfg->mqtt.max_packet_size;
        if (c->state == CONN_NEW && connect_max(&m->cfg->mqtt) < max)
            max = connect_max(&m->cfg->mqtt);
        mqtt5_packet_t p5;
        ssize_t n;
        if (c->v5) {
            n = session5_decode(c, buf + off, len - off, max, &pkt, &p5);
        } else {
            n = mqtt_decode(buf + off, len - off, max, &pkt);
            if (n == MQTT_ERR_PROTOCOL_LEVEL && c->state == CONN_NEW &&
                pkt.u.connect.protocol_level == MQTT_PROTOCOL_LEVEL_5 &&
                pkt.u.connect.protocol_name.len == 4) { /* "MQTT" */
                c->v5 = true;
                n = session5_decode(c, buf + off, len - off, max, &pkt, &p5);
            }
        }
        if (n == 0)
            break;
        if (n < 0) {
            decode_error(c, buf + off, len - off, (int)n, &pkt);
            return -1;
        }
        c->rx_ms = m->mono_ms;
        c->p5 = c->v5 ? &p5 : NULL;
        int r = dispatch(c, &pkt);
        c->p5 = NULL;
        c->refeed = r == FEED_RETRY;
        if (r == FEED_RETRY)
            break;
        if (r == FEED_CLOSED || c->state == CONN_CLOSED)
            return -1;
        if (c->state == CONN_CLOSING) {
            session_end(c, NULL, LOG_WARN, true, true, "output buffer limit reached");
            return -1;
        }
        off += (size_t)n;
    }
    return (ssize_t)off;
}
