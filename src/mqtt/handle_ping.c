/* PINGREQ and DISCONNECT. */
#include "session_int.h"

int session_on_pingreq(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint8_t b[2];
    session_send(c, b, mqtt_encode_empty(b, sizeof(b), MQTT_PINGRESP));
    return FEED_OK;
}

/* Closes without the will [MQTT-3.14.4-3]. */
int session_on_disconnect(session_conn_t *c, const mqtt_packet_t *pkt) {
    session_end(c, NULL, LOG_INFO, false, true, "DISCONNECT received");
    return FEED_CLOSED;
}
