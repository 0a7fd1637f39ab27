/* SUBSCRIBE and UNSUBSCRIBE. The bridge has no subscriptions yet (Kafka ->
 * MQTT delivery will add them here): every filter is refused (0x80), and
 * UNSUBSCRIBE is acknowledged. */
#include <string.h>

#include "session_int.h"

int session_on_subscribe(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint32_t n = pkt->u.subscribe.count;
    uint8_t *codes = (uint8_t *)c->mgr->scratch;
    if (n > SCRATCH_SIZE / 2) {
        session_violation(c, SESSION_ERR_SUBSCRIBE_TOO_MANY_FILTERS, "SUBSCRIBE with %u filters",
                          n);
        return FEED_CLOSED;
    }
    memset(codes, MQTT_SUBACK_FAILURE, n); /* 0x80: "unspecified error" in MQTT 5 too */
    uint8_t *out = codes + n;
    size_t len;
    if (c->v5) {
        mqtt5_packet_t a = {.type = MQTT_SUBACK};
        a.u.suback = (mqtt_suback_t){pkt->u.subscribe.packet_id, {codes, n}};
        len = mqtt5_encode(out, SCRATCH_SIZE - n, &a);
    } else {
        len = mqtt_encode_suback(out, SCRATCH_SIZE - n, pkt->u.subscribe.packet_id, codes, n);
    }
    if (len <= SCRATCH_SIZE - n)
        session_send(c, out, len);
    return FEED_OK;
}

int session_on_unsubscribe(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint32_t n = pkt->u.subscribe.count;
    if (!c->v5) {
        session_send_ack(c, MQTT_UNSUBACK, pkt->u.subscribe.packet_id);
        return FEED_OK;
    }
    /* MQTT 5: a reason code per filter, 0x11 "no subscription existed". */
    uint8_t *codes = (uint8_t *)c->mgr->scratch;
    if (n > SCRATCH_SIZE / 2) {
        session_violation(c, SESSION_ERR_SUBSCRIBE_TOO_MANY_FILTERS, "UNSUBSCRIBE with %u filters",
                          n);
        return FEED_CLOSED;
    }
    memset(codes, 0x11, n);
    mqtt5_packet_t a = {.type = MQTT_UNSUBACK};
    a.u.suback = (mqtt_suback_t){pkt->u.subscribe.packet_id, {codes, n}};
    size_t len = mqtt5_encode(codes + n, SCRATCH_SIZE - n, &a);
    if (len <= SCRATCH_SIZE - n)
        session_send(c, codes + n, len);
    return FEED_OK;
}
