/* Kafka -> MQTT delivery to the sessions (docs/architecture.md "The
 * downlink"): one message matched against the subscription trie, one
 * server-sent PUBLISH per matching client, each checked against the ACL's
 * read rules. Every delivery is QoS 0 for now; the outbound QoS 1/2 state
 * (packet ids, the window, the queue of a session) is not built yet. */
#include <string.h>

#include "session_int.h"

/* The PUBLISH's fixed header, topic, packet id and (MQTT 5) empty property
 * length, for a payload of plen bytes sent after it; its size, or 0 when the
 * packet would be over max (0: the protocol's maximum). */
static size_t publish_head(uint8_t *b, bool v5, uint8_t qos, bool retain, uint16_t pid,
                           const char *topic, size_t tlen, size_t plen, uint32_t max) {
    size_t rem = 2 + tlen + (qos ? 2 : 0) + (v5 ? 1 : 0) + plen;
    if (rem > 268435455u)
        return 0;
    size_t i = 0;
    b[i++] = (uint8_t)(MQTT_PUBLISH << 4 | qos << 1 | (retain ? 1 : 0));
    i += mqtt5_vbi_encode(b + i, 4, (uint32_t)rem);
    if (max && i + rem > max)
        return 0;
    b[i++] = (uint8_t)(tlen >> 8);
    b[i++] = (uint8_t)tlen;
    memcpy(b + i, topic, tlen);
    i += tlen;
    if (qos) {
        b[i++] = (uint8_t)(pid >> 8);
        b[i++] = (uint8_t)pid;
    }
    if (v5)
        b[i++] = 0;
    return i;
}

static bool read_allowed(session_conn_t *c, const char *topic, size_t len) {
    const session_auth_ops_t *a = &c->mgr->o.auth;
    if (!a->can_read || !a->acl_generation || !a->acl_generation(a->ud))
        return true;
    return a->can_read(a->ud, c->has_username ? c->username : NULL, c->s->client_id, topic, len);
}

/* One QoS 0 PUBLISH to a connected client: the head from the scratch buffer,
 * the payload straight from the caller's view (no copy into a packet). */
static bool deliver_one(session_conn_t *c, const char *topic, size_t tlen, const void *payload,
                        size_t plen) {
    session_mgr_t *m = c->mgr;
    if (!read_allowed(c, topic, tlen)) {
        m->st.delivery_denied++;
        return false;
    }
    uint8_t *h = (uint8_t *)m->scratch;
    size_t hn = publish_head(h, c->v5, 0, false, 0, topic, tlen, plen, c->v5 ? c->max_out : 0);
    if (!hn) { /* too large for the client: discarded as if sent [MQTT-3.1.2-25] */
        m->st.delivery_too_large++;
        return false;
    }
    session_send(c, h, hn);
    if (plen && c->state == CONN_CONNECTED && c->ops->send(c->ud, payload, plen) != 0)
        session_set_state(c, CONN_CLOSING);
    if (c->state == CONN_CLOSING) {
        session_end(c, NULL, LOG_WARN, true, true, "output buffer limit reached");
        return false;
    }
    m->st.deliveries[0]++;
    return true;
}

size_t session_mgr_deliver(session_mgr_t *m, const char *topic, size_t topic_len,
                           const void *payload, size_t len, uint8_t qos) {
    (void)qos; /* min(qos, granted QoS) once outbound QoS 1/2 exists */
    if (topic_len > 65535 || dl_subs_match(m->subs, topic, topic_len, &m->matches) != 0)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < m->matches.n; i++) {
        session_t *s = store_find_id(m, (uint32_t)m->matches.v[i].client);
        if (s && s->conn && s->conn->state == CONN_CONNECTED &&
            deliver_one(s->conn, topic, topic_len, payload, len))
            n++;
    }
    return n;
}

size_t session_mgr_subscription_count(const session_mgr_t *m) {
    return dl_subs_count(m->subs);
}
