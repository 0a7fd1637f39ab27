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
    memset(codes, MQTT_SUBACK_FAILURE, n);
    uint8_t *out = codes + n;
    size_t len = mqtt_encode_suback(out, SCRATCH_SIZE - n, pkt->u.subscribe.packet_id, codes, n);
    if (len <= SCRATCH_SIZE - n)
        session_send(c, out, len);
    return FEED_OK;
}

int session_on_unsubscribe(session_conn_t *c, const mqtt_packet_t *pkt) {
    session_send_ack(c, MQTT_UNSUBACK, pkt->u.subscribe.packet_id);
    return FEED_OK;
}
