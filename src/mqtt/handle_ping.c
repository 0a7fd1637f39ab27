/* PINGREQ and DISCONNECT. */
#include "session_int.h"

int session_on_pingreq(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint8_t b[2];
    session_send(c, b, mqtt_encode_empty(b, sizeof(b), MQTT_PINGRESP));
    return FEED_OK;
}

/* Closes without the will [MQTT-3.14.4-3], unless an MQTT 5 client asks for
 * it (reason 0x04). MQTT 5 may also change the session expiry interval, but
 * not from 0 [MQTT-3.14.2-2]. */
int session_on_disconnect(session_conn_t *c, const mqtt_packet_t *pkt) {
    (void)pkt;
    const mqtt5_packet_t *p5 = c->p5;
    if (!p5) {
        session_end(c, NULL, LOG_INFO, false, true, "DISCONNECT received");
        return FEED_CLOSED;
    }
    if (MQTT5_HAS(&p5->props, MQTT5_PROP_SESSION_EXPIRY)) {
        if (c->expiry_zero && p5->props.session_expiry) {
            session_violation(c, SESSION_ERR_UNEXPECTED_PACKET_TYPE,
                              "DISCONNECT sets a session expiry interval after 0 in CONNECT "
                              "[MQTT-3.14.2-2]");
            return FEED_CLOSED;
        }
        /* Changed from non-zero: 0 ends the session at this close, another
         * value is honoured as in CONNECT (capped at session_expiry_s). */
        uint32_t e = p5->props.session_expiry;
        c->s->clean = e == 0;
        if (store_set_expiry(c->mgr, c->s, e < c->mgr->cfg->mqtt.session_expiry_s ? e : 0) != 0)
            log_error("session expiry interval %u from DISCONNECT not kept: out of memory", e);
    }
    bool will = p5->reason == MQTT5_RC_DISCONNECT_WITH_WILL;
    session_end(c, NULL, LOG_INFO, will, true, "DISCONNECT received (reason 0x%02x%s)", p5->reason,
                will ? ": publish the will" : "");
    return FEED_CLOSED;
}
