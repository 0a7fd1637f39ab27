/* SUBSCRIBE and UNSUBSCRIBE: the session's subscriptions in the manager's
 * trie (downlink/subs.h), keyed by session id, so a persistent session keeps
 * them across connections and store_destroy() removes them. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

/* The filter an ACL sees: "$share/GROUP/filter" is checked as its filter.
 * NULL for a malformed share name (dl_subs_add refuses it the same way). */
static const char *acl_filter(const char *f, size_t len, size_t *out_len) {
    static const char pre[] = "$share/";
    size_t n = sizeof(pre) - 1;
    if (len < n || memcmp(f, pre, n) != 0) {
        *out_len = len;
        return f;
    }
    const char *slash = memchr(f + n, '/', len - n);
    if (!slash || slash == f + n || slash + 1 == f + len)
        return NULL;
    *out_len = len - (size_t)(slash + 1 - f);
    return slash + 1;
}

/* One filter: the granted QoS, or the refusal's code (3.1.1 0x80; MQTT 5
 * 0x87 not authorized, 0x8F invalid). */
static uint8_t subscribe_one(session_conn_t *c, const char *f, size_t len, uint8_t qos,
                             uint8_t opts, uint32_t sub_id, bool *is_new) {
    session_mgr_t *m = c->mgr;
    const session_auth_ops_t *a = &m->o.auth;
    char fb[128], idb[LOG_ID_MAX];
    size_t alen;
    const char *af = acl_filter(f, len, &alen);
    if (af && a->acl_generation && a->acl_generation(a->ud) && a->can_subscribe &&
        !a->can_subscribe(a->ud, c->has_username ? c->username : NULL, c->s->client_id, af, alen)) {
        m->st.subscribe_denied++;
        log_ratelimited(&m->rl->sub, LOG_WARN, "client %s: SUBSCRIBE to '%s' refused by the ACL",
                        session_log_id(c, idb, sizeof(idb)),
                        session_log_str(fb, sizeof(fb), f, len));
        return c->v5 ? MQTT5_RC_NOT_AUTHORIZED : MQTT_SUBACK_FAILURE;
    }
    session_t *s = c->s;
    /* A filter longer than the bytes bound cannot be held: refused before
     * the trie is touched. Another new filter past the session's bounds is
     * taken back out (one held, subscribed to again, only gets its options
     * replaced). */
    outbound_t *x = outbound_get(m, s); /* holds the session's subscription counts */
    if (!x) {
        log_client(LOG_ERROR, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "SUBSCRIBE refused: out of memory");
        return c->v5 ? MQTT5_RC_UNSPECIFIED : MQTT_SUBACK_FAILURE;
    }
    bool too_long = len > m->cfg->mqtt.max_subscription_bytes_per_session;
    int rc = !af        ? DL_EINVAL
             : too_long ? 0
                        : dl_subs_add_opts(m->subs, s->id, f, len, qos, opts, sub_id);
    if (rc == 0 && (x->n_subs >= m->cfg->mqtt.max_subscriptions_per_session ||
                    x->sub_bytes + len > m->cfg->mqtt.max_subscription_bytes_per_session)) {
        if (!too_long)
            dl_subs_remove(m->subs, s->id, f, len);
        m->st.subscribe_quota++;
        log_ratelimited(&m->rl->sub, LOG_WARN,
                        "client %s: SUBSCRIBE to '%s' refused: the session holds %u subscriptions "
                        "of %u bytes (mqtt.max_subscriptions_per_session %u, "
                        "mqtt.max_subscription_bytes_per_session %u)",
                        session_log_id(c, idb, sizeof(idb)),
                        session_log_str(fb, sizeof(fb), f, len), (unsigned)x->n_subs,
                        (unsigned)x->sub_bytes,
                        (unsigned)m->cfg->mqtt.max_subscriptions_per_session,
                        (unsigned)m->cfg->mqtt.max_subscription_bytes_per_session);
        return c->v5 ? MQTT5_RC_QUOTA_EXCEEDED : MQTT_SUBACK_FAILURE;
    }
    *is_new = rc == 0;
    if (rc == 0) {
        x->n_subs++;
        x->sub_bytes += (uint32_t)len;
    }
    if (rc >= 0)
        return qos;
    if (rc == DL_EINVAL)
        m->st.subscribe_invalid++;
    log_ratelimited(&m->rl->sub, LOG_WARN, "client %s: SUBSCRIBE to '%s' refused: %s",
                    session_log_id(c, idb, sizeof(idb)), session_log_str(fb, sizeof(fb), f, len),
                    rc == DL_EINVAL ? "invalid shared subscription" : dl_strerror(rc));
    if (!c->v5)
        return MQTT_SUBACK_FAILURE;
    return rc == DL_EINVAL ? MQTT5_RC_TOPIC_FILTER_INVALID : MQTT5_RC_UNSPECIFIED;
}

/* The reason codes of one SUBSCRIBE or UNSUBSCRIBE go into the scratch
 * buffer, the answer after them. */
static uint8_t *codes_for(session_conn_t *c, const mqtt_packet_t *pkt, const char *what) {
    if (pkt->u.subscribe.count > SCRATCH_SIZE / 2) {
        session_violation(c, SESSION_ERR_SUBSCRIBE_TOO_MANY_FILTERS, "%s with %u filters", what,
                          pkt->u.subscribe.count);
        return NULL;
    }
    return (uint8_t *)c->mgr->scratch;
}

static void send_codes(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t *codes,
                       uint32_t n) {
    uint8_t *out = codes + n;
    size_t len, cap = SCRATCH_SIZE - n;
    if (c->v5) {
        mqtt5_packet_t a = {.type = (uint8_t)type};
        a.u.suback = (mqtt_suback_t){pid, {codes, n}};
        len = mqtt5_encode(out, cap, &a);
    } else if (type == MQTT_SUBACK) {
        len = mqtt_encode_suback(out, cap, pid, codes, n);
    } else {
        len = mqtt_encode_ack(out, cap, MQTT_UNSUBACK, pid);
    }
    if (len <= cap)
        session_send(c, out, len);
}

int session_on_subscribe(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint8_t *codes = codes_for(c, pkt, "SUBSCRIBE");
    if (!codes)
        return FEED_CLOSED;
    /* MQTT 5: the subscription identifier, kept with each of its filters. */
    uint32_t sub_id = c->p5 && MQTT5_HAS(&c->p5->props, MQTT5_PROP_SUBSCRIPTION_ID)
                          ? c->p5->props.subscription_id
                          : 0;
    size_t off = 0;
    uint32_t i = 0, n_new = 0;
    mqtt_str_t f;
    uint8_t o;
    while (mqtt_filter_next(&pkt->u.subscribe, &off, &f, &o) == 1) {
        uint8_t qos = c->v5 ? MQTT5_SUB_QOS(o) : o;
        uint8_t opts =
            !c->v5
                ? 0
                : (uint8_t)((o & MQTT5_SUB_NO_LOCAL ? DL_SUB_NO_LOCAL : 0) |
                            (o & MQTT5_SUB_RETAIN_AS_PUBLISHED ? DL_SUB_RETAIN_AS_PUBLISHED : 0));
        bool is_new = false;
        codes[i++] = subscribe_one(c, (const char *)f.ptr, f.len, qos, opts, sub_id, &is_new);
        /* the "new" mark, for MQTT 5 retain handling 1, in a bit the
         * granted QoS does not use (masked before the SUBACK) */
        if (is_new) {
            codes[i - 1] |= 0x40;
            n_new++;
        }
    }
    uint8_t *granted = c->mgr->o.retained ? malloc(i) : NULL;
    if (granted) /* sending reuses the scratch buffer */
        memcpy(granted, codes, i);
    for (uint32_t j = 0; n_new && j < i; j++)
        codes[j] &= (uint8_t)~0x40;
    send_codes(c, MQTT_SUBACK, pkt->u.subscribe.packet_id, codes, i);
    if (!granted)
        return FEED_OK; /* no retained store (or out of memory: none this time) */
    /* After the SUBACK: each granted filter's retained messages, not for a
     * shared subscription [MQTT-4.8.2]; MQTT 5 retain handling 1: only for
     * a new subscription, 2: never. */
    off = 0;
    for (uint32_t j = 0; j < i && mqtt_filter_next(&pkt->u.subscribe, &off, &f, &o) == 1; j++) {
        uint8_t rh = c->v5 ? MQTT5_SUB_RETAIN_HANDLING(o) : 0;
        uint8_t code = granted[j] & (uint8_t)~0x40;
        if (code <= 2 && !(f.len >= 7 && memcmp(f.ptr, "$share/", 7) == 0) &&
            (rh == 0 || (rh == 1 && (granted[j] & 0x40))) && c->state == CONN_CONNECTED)
            outbound_retained(c, (const char *)f.ptr, f.len, code, sub_id);
    }
    free(granted);
    return FEED_OK;
}

int session_on_unsubscribe(session_conn_t *c, const mqtt_packet_t *pkt) {
    uint8_t *codes = codes_for(c, pkt, "UNSUBSCRIBE");
    if (!codes)
        return FEED_CLOSED;
    size_t off = 0;
    uint32_t i = 0;
    mqtt_str_t f;
    while (mqtt_filter_next(&pkt->u.subscribe, &off, &f, NULL) == 1) {
        int rc = dl_subs_remove(c->mgr->subs, c->s->id, (const char *)f.ptr, f.len);
        if (rc == 0) { /* held, so counted in c->s->ob */
            c->s->ob->n_subs--;
            c->s->ob->sub_bytes -= (uint32_t)f.len;
        }
        /* MQTT 5: 0x11 "no subscription existed" */
        codes[i++] = rc == 0 ? 0x00 : 0x11;
    }
    send_codes(c, MQTT_UNSUBACK, pkt->u.subscribe.packet_id, codes, i);
    return FEED_OK;
}
