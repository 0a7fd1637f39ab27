/* CONNECT: the client id rules, authentication (opts.auth), takeover of a
 * connected id [MQTT-3.1.4-2], session present; and the will, published when
 * a connection ends without DISCONNECT. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "session_int.h"

/* Password, anonymous policy and the will's ACL; on refusal sends the CONNACK
 * (held by the throttle delay), logs without the password, closes, and
 * returns -1. */
static int authorize_connect(session_conn_t *c, const mqtt_connect_t *p, const char *cid,
                             size_t cid_len) {
    session_mgr_t *m = c->mgr;
    const session_auth_ops_t *a = &m->o.auth;
    char idb[LOG_ID_MAX], ub[LOG_ID_MAX], tb[LOG_ID_MAX] = "";
    uint32_t delay = 0;
    const char *identity = c->has_identity ? c->username : NULL;
    const char *user = identity ? identity : (const char *)p->username.ptr;
    size_t ulen = identity ? strlen(identity) : p->username.len;
    bool has_user = identity || p->has_username;
    int rc = a->connect(a->ud, c->remote, identity, has_user, user, ulen, p->has_password,
                        p->password.ptr, p->password.len, m->mono_ms, &delay);
    const char *why = NULL;
    if (rc == MQTT_CONNACK_BAD_CREDENTIALS) {
        m->st.auth_bad_credentials++;
        m->st.auth_failures++;
        why = "bad user name or password";
    } else if (rc != MQTT_CONNACK_ACCEPTED) {
        m->st.auth_not_authorized++;
        m->st.auth_failures++;
        why = "anonymous clients are not allowed (auth.allow_anonymous: false)";
    } else if (p->will_flag && a->acl_generation && a->acl_generation(a->ud)) {
        /* The user name is NUL-terminated for the ACL: copy it. */
        char *u = has_user ? session_dup(user, ulen) : NULL;
        char *id = session_dup(cid, cid_len);
        bool ok = id && (!has_user || u) &&
                  a->can_publish(a->ud, u, id, (const char *)p->will_topic.ptr, p->will_topic.len);
        free(u);
        free(id);
        if (!ok) {
            rc = MQTT_CONNACK_NOT_AUTHORIZED;
            m->st.auth_not_authorized++;
            m->st.acl_denied++;
            session_log_str(tb, sizeof(tb), (const char *)p->will_topic.ptr, p->will_topic.len);
            why = "the ACL does not allow publishing on the will topic";
        }
    }
    if (delay && c->ops->hold)
        c->ops->hold(c->ud, delay);
    if (rc == MQTT_CONNACK_ACCEPTED)
        return 0;
    /* Rate-limited: a guesser or a misconfigured fleet must not flood the log. */
    session_refuse(c, (uint8_t)rc, LOG_WARN,
                   "connection refused (CONNACK %d): client id '%s', user '%s': %s%s%s%s%s", rc,
                   session_log_str(idb, sizeof(idb), cid, cid_len),
                   has_user ? session_log_str(ub, sizeof(ub), user, ulen) : "(none)", why,
                   tb[0] ? " '" : "", tb, tb[0] ? "'" : "",
                   delay ? "; answer delayed after recent failures from this address" : "");
    return -1;
}

/* A CONNECT string over its cap: MQTT 3.1.1 has no CONNACK code for it, so
 * the connection is closed unanswered (logged rate-limited, counted); MQTT 5
 * gets CONNACK 0x97.
 * Returns true when it closed. */
static bool refuse_too_long(session_conn_t *c, bool present, size_t len, uint32_t cap,
                            const char *what, const char *setting) {
    if (!present || len <= cap)
        return false;
    session_mgr_t *m = c->mgr;
    m->st.refused_too_long++;
    if (c->v5) /* MQTT 5 has a code for a bound: CONNACK 0x97, quota exceeded */
        session_refuse(c, MQTT5_RC_QUOTA_EXCEEDED, LOG_WARN,
                       "CONNECT refused: %s of %zu bytes above %s %u", what, len, setting, cap);
    else
        session_end(c, &m->rl->refused, LOG_WARN, false, true,
                    "CONNECT refused: %s of %zu bytes above %s %u", what, len, setting, cap);
    return true;
}

/* MQTT 5: a will whose payload format indicator says UTF-8 and whose
 * payload is not gets CONNACK 0x99 (3.1.3.2.3), as a PUBLISH gets PUBACK
 * 0x99. Returns true when it refused. */
static bool will_format_invalid(session_conn_t *c, const mqtt_connect_t *p,
                                const mqtt5_props_t *wp) {
    if (wp->payload_format != 1 || mqtt_utf8_check(p->will_payload.ptr, p->will_payload.len) == 0)
        return false;
    char idb[LOG_ID_MAX];
    session_refuse(
        c, MQTT5_RC_PAYLOAD_FORMAT_INVALID, LOG_WARN,
        "will message of client id '%s' is not UTF-8 as its payload format indicator "
        "says (CONNACK 0x99)",
        session_log_str(idb, sizeof(idb), (const char *)p->client_id.ptr, p->client_id.len));
    return true;
}

/* The CONNACK properties of an accepted MQTT 5 CONNECT (3.2.2.3). */
static void connack5(session_conn_t *c, bool present, uint32_t expiry, bool keepalive_lowered,
                     const char *assigned) {
    const config_mqtt_t *mq = &c->mgr->cfg->mqtt;
    mqtt5_props_t a = {0};
    uint32_t mi = max_inflight(c->mgr);
    a.present = 1ull << MQTT5_PROP_RECEIVE_MAXIMUM | 1ull << MQTT5_PROP_RETAIN_AVAILABLE |
                1ull << MQTT5_PROP_WILDCARD_AVAILABLE |
                1ull << MQTT5_PROP_SUBSCRIPTION_ID_AVAILABLE | 1ull << MQTT5_PROP_SHARED_AVAILABLE;
    a.receive_maximum = (uint16_t)(mi < 65535 ? mi : 65535);
    a.retain_available = 1; /* a retained PUBLISH is taken (mqtt.retain header) */
    /* SUBSCRIBE: wildcards, $share/GROUP/filter and identifiers. */
    a.wildcard_available = 1;
    a.subscription_id_available = 1;
    a.shared_available = 1;
    if (mq->max_packet_size) {
        a.present |= 1ull << MQTT5_PROP_MAXIMUM_PACKET_SIZE;
        a.maximum_packet_size = mq->max_packet_size;
    }
    if (expiry > mq->session_expiry_s) { /* the server's value wins [MQTT-3.2.2-?] */
        a.present |= 1ull << MQTT5_PROP_SESSION_EXPIRY;
        a.session_expiry = mq->session_expiry_s;
    }
    if (keepalive_lowered) {
        a.present |= 1ull << MQTT5_PROP_SERVER_KEEP_ALIVE;
        a.server_keep_alive = c->keepalive;
    }
    if (c->alias_max) {
        a.present |= 1ull << MQTT5_PROP_TOPIC_ALIAS_MAXIMUM;
        a.topic_alias_maximum = c->alias_max;
    }
    if (assigned) {
        a.present |= 1ull << MQTT5_PROP_ASSIGNED_CLIENT_ID;
        a.assigned_client_id = (mqtt_str_t){(const uint8_t *)assigned, strlen(assigned)};
    }
    session5_send_connack(c, present, MQTT5_RC_SUCCESS, &a);
}

int session_on_connect(session_conn_t *c, const mqtt_packet_t *pkt) {
    const mqtt_connect_t *p = &pkt->u.connect;
    session_mgr_t *m = c->mgr;
    const config_mqtt_t *mq = &m->cfg->mqtt;
    char idb[LOG_ID_MAX];
    const char *cid = (const char *)p->client_id.ptr;
    size_t cid_len = p->client_id.len;
    char gen[48]; /* "m2k-auto-" and 32 hex digits */
    const mqtt5_props_t *cp = c->p5 ? &c->p5->props : NULL;
    uint16_t keepalive = p->keepalive;
    bool keepalive_lowered = false, assigned = false;

    if (cp) { /* before any answer: a refusing CONNACK respects them too */
        c->max_out = MQTT5_HAS(cp, MQTT5_PROP_MAXIMUM_PACKET_SIZE) ? cp->maximum_packet_size : 0;
        c->problem_info =
            !MQTT5_HAS(cp, MQTT5_PROP_REQUEST_PROBLEM_INFO) || cp->request_problem_info;
    }
    if (cp && MQTT5_HAS(cp, MQTT5_PROP_AUTH_METHOD)) {
        session_refuse(c, MQTT5_RC_BAD_AUTH_METHOD, LOG_WARN,
                       "authentication method '%s' not supported (enhanced authentication)",
                       session_log_str(idb, sizeof(idb), (const char *)cp->auth_method.ptr,
                                       cp->auth_method.len));
        return FEED_CLOSED;
    }
    /* MQTT 5 can tell the client a lower keep alive [MQTT-3.2.2-21] where
     * 3.1.1 refuses it; 0 (none) stays 0, as in 3.1.1. */
    if (cp && mq->max_keepalive_s && keepalive > mq->max_keepalive_s) {
        keepalive = (uint16_t)mq->max_keepalive_s;
        keepalive_lowered = true;
    }
    if (mq->max_keepalive_s && keepalive > mq->max_keepalive_s) {
        session_refuse(c, MQTT_CONNACK_ID_REJECTED, LOG_WARN,
                       "keepalive %u s above max_keepalive_s %u", p->keepalive,
                       mq->max_keepalive_s);
        return FEED_CLOSED;
    }
    bool v31 = p->protocol_level == MQTT_PROTOCOL_LEVEL_31;
    if (v31 && (cid_len == 0 || cid_len > MQTT_31_MAX_CLIENT_ID)) {
        session_refuse(c, MQTT_CONNACK_ID_REJECTED, LOG_WARN,
                       "client id of %zu bytes: MQTT 3.1 allows 1 to 23", cid_len);
        return FEED_CLOSED;
    }
    /* Before authentication and the takeover: these strings live as long as
     * the connection (the client id as long as its session), so their caps
     * bound the memory one client holds (docs/security.md). */
    if (cid_len > mq->max_client_id_length) {
        session_refuse(c, MQTT_CONNACK_ID_REJECTED, LOG_WARN,
                       "client id of %zu bytes above mqtt.max_client_id_length %u", cid_len,
                       mq->max_client_id_length);
        return FEED_CLOSED;
    }
    /* The codec let these through as UTF-8: a client id with a control
     * character or a non-character is refused as an identifier (CONNACK 0x02),
     * as Mosquitto does. */
    int bad = mqtt_text_check(p->client_id.ptr, cid_len);
    if (bad < 0) {
        session_refuse(c, MQTT_CONNACK_ID_REJECTED, LOG_WARN, "client id '%s' refused: %s",
                       session_log_str(idb, sizeof(idb), cid, cid_len), mqtt_strerror(bad));
        return FEED_CLOSED;
    }
    if (refuse_too_long(c, p->has_username, p->username.len, mq->max_username_length, "user name",
                        "mqtt.max_username_length") ||
        refuse_too_long(c, p->will_flag, p->will_topic.len, mq->max_will_topic_length, "will topic",
                        "mqtt.max_will_topic_length") ||
        refuse_too_long(c, p->will_flag, p->will_payload.len, mq->max_will_payload, "will message",
                        "mqtt.max_will_payload"))
        return FEED_CLOSED;
    const mqtt5_props_t *wp = c->p5 && p->will_flag ? &c->p5->u.connect.will : NULL;
    if (wp && (refuse_too_long(c, true, wp->raw.len, mq->max_will_payload, "will properties",
                               "mqtt.max_will_payload") ||
               will_format_invalid(c, p, wp)))
        return FEED_CLOSED;
    if (cid_len == 0) {
        if (!p->clean_session) {
            session_refuse(c, MQTT_CONNACK_ID_REJECTED, LOG_WARN,
                           "empty client id with clean session 0 [MQTT-3.1.3-8]");
            return FEED_CLOSED;
        }
        /* Random, not a counter: a guessable id would let another client
         * take this session over (CONNECT with the same id). */
        do {
            uint8_t r[16];
            if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
                session_refuse(c, MQTT_CONNACK_UNAVAILABLE, LOG_ERROR,
                               "no random bytes for a client id: %s", strerror(errno));
                return FEED_CLOSED;
            }
            int n = snprintf(gen, sizeof(gen), "m2k-auto-");
            for (size_t i = 0; i < sizeof(r); i++)
                n += snprintf(gen + n, sizeof(gen) - (size_t)n, "%02x", r[i]);
        } while (store_find_cid(m, gen, strlen(gen)) ||
                 (m->o.owns_client_id && !m->o.owns_client_id(m->o.owns_ud, gen, strlen(gen))));
        cid = gen;
        cid_len = strlen(gen);
        assigned = true;
    }
    /* MQTT 5: the session expiry interval says whether the session outlives
     * the connection (0, the default: it ends with it) [MQTT-3.1.2-23]; clean
     * start only whether an old one is discarded. */
    uint32_t expiry = cp ? cp->session_expiry : 0;
    bool ends = cp ? expiry == 0 : p->clean_session;

    /* Decided before the takeover below: a client that fails to log in must
     * not disconnect the session it names. */
    if (m->o.auth.connect && authorize_connect(c, p, cid, cid_len) != 0)
        return FEED_CLOSED;

    session_t *s = store_find_cid(m, cid, cid_len);
    if (s && s->conn) {
        m->st.takeovers++;
        session5_send_disconnect(s->conn, MQTT5_RC_SESSION_TAKEN_OVER);
        session_end(s->conn, NULL, LOG_INFO, true, true, "taken over by a new connection from %s",
                    c->remote);
        s = store_find_cid(m, cid, cid_len); /* a clean session is gone now */
    }
    bool present = false;
    if (s && (p->clean_session || s->clean)) {
        store_destroy(m, s);
        s = NULL;
    }
    if (s) {
        store_attach(m, s);
        present = true;
    } else {
        s = store_create(m, cid, cid_len, ends);
        if (!s) {
            session_refuse(c, MQTT_CONNACK_UNAVAILABLE, LOG_ERROR,
                           "out of memory creating a session");
            return FEED_CLOSED;
        }
    }
    if (p->will_flag)
        c->will = will_new(p, wp);
    if (c->has_identity) { /* set before the CONNECT: it is the user name */
        c->has_username = true;
    } else if (p->has_username) {
        c->username = session_dup((const char *)p->username.ptr, p->username.len);
        c->username_len = (uint16_t)p->username.len;
        c->has_username = c->username != NULL;
    }
    s->conn = c;
    c->s = s;
    /* A shorter interval than ours is honoured; a longer one is capped, and
     * CONNACK says so (connack5). */
    bool no_expiry = store_set_expiry(m, s, expiry < mq->session_expiry_s ? expiry : 0) != 0;
    if (no_expiry || (p->will_flag && !c->will) ||
        ((p->has_username || c->has_identity) && !c->has_username)) {
        session_refuse(c, MQTT_CONNACK_UNAVAILABLE, LOG_ERROR, "out of memory in CONNECT");
        return FEED_CLOSED;
    }
    if (++s->conn_gen == 0)
        s->conn_gen = 1;
    s->clean = ends;
    c->gen = s->conn_gen;
    /* Keepalive 0 would let a silent connection stay forever: it gets
     * max_keepalive_s when that is below MQTT's 65535 (an MQTT 5 client is
     * told, server keep alive). */
    c->keepalive =
        keepalive || mq->max_keepalive_s >= 65535 ? keepalive : (uint16_t)mq->max_keepalive_s;
    keepalive_lowered = keepalive_lowered || (cp && c->keepalive != keepalive);
    c->level = p->protocol_level;
    session_set_state(c, CONN_CONNECTED);
    if (cp) {
        c->expiry_zero = expiry == 0;
        c->alias_max = (uint16_t)mq->topic_alias_maximum;
        c->recv_max = MQTT5_HAS(cp, MQTT5_PROP_RECEIVE_MAXIMUM) ? cp->receive_maximum : 65535;
        connack5(c, present, expiry, keepalive_lowered, assigned ? gen : NULL);
        m->st.connects++;
        log_client_ratelimited(
            &m->rl->connected, LOG_INFO, session_log_id(c, idb, sizeof(idb)), c->remote,
            "connected (MQTT 5, clean start %d, session expiry %" PRIu32
            " s, keepalive %u s, session present %d)",
            p->clean_session, expiry < mq->session_expiry_s ? expiry : mq->session_expiry_s,
            c->keepalive, present);
        inflight_check_window(c);
        outbound_resume(c);
        return FEED_OK;
    }
    /* MQTT 3.1's CONNACK has no session present flag: its byte is reserved. */
    session_send_connack(c, present && !v31, MQTT_CONNACK_ACCEPTED);
    m->st.connects++;
    log_client_ratelimited(
        &m->rl->connected, LOG_INFO, session_log_id(c, idb, sizeof(idb)), c->remote,
        "connected (%sclean session %d, keepalive %u s%s, session present %d)",
        v31 ? "MQTT 3.1, " : "", p->clean_session, c->keepalive,
        c->keepalive != p->keepalive ? " (asked 0: max_keepalive_s)" : "", present && !v31);
    inflight_check_window(c);
    outbound_resume(c);
    return FEED_OK;
}

void session_publish_will(session_conn_t *c) {
    session_mgr_t *m = c->mgr;
    char idb[LOG_ID_MAX];
    const session_will_t *w = c->will;
    msg_t msg = {w->topic, w->topic_len, w->payload, w->payload_len, w->qos, w->retain, w->props};
    const char *ktopic, *key, *why = "";
    size_t key_len;
    /* The ACL in force now, not the one checked at CONNECT: a reload may have
     * revoked the right since. */
    const session_auth_ops_t *a = &m->o.auth;
    if (a->acl_generation && a->acl_generation(a->ud) &&
        !a->can_publish(a->ud, c->has_username ? c->username : NULL, c->s->client_id, w->topic,
                        w->topic_len)) {
        char tb[LOG_ID_MAX];
        m->st.wills_lost++;
        log_client(LOG_WARN, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "will message not published: the ACL in force does not allow publishing "
                   "on topic '%s'",
                   session_log_str(tb, sizeof(tb), w->topic, w->topic_len));
        return;
    }
    int r = session_route(c, &msg, &ktopic, &key, &key_len, &why);
    if (r == ROUTE_REFUSE) {
        char kb[TOPIC_MAP_KAFKA_TOPIC_MAX + 8];
        m->st.wills_lost++;
        log_client(LOG_WARN, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "will message not published: %s%s%s%s",
                   ktopic ? "its topic renders the Kafka topic '" : "",
                   ktopic ? session_log_str(kb, sizeof(kb), ktopic, strlen(ktopic)) : "",
                   ktopic ? "', " : "", why);
        return;
    }
    if (r != ROUTE_OK) {
        m->st.wills_lost++;
        log_client(LOG_WARN, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "will message not published: %s (unmapped policy)", why);
        return;
    }
    int rc = session_produce(c, &msg, ktopic, key, key_len, SESSION_OPAQUE_WILL);
    if (rc != KAFKA_OK) {
        m->st.wills_lost++;
        log_client(LOG_ERROR, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "will message lost: producer refused it (%s)",
                   rc == KAFKA_ERR_QUEUE_FULL   ? "queue full"
                   : rc == KAFKA_ERR_SPOOL_FULL ? "spool full"
                                                : "produce error");
        return;
    }
    m->st.wills_published++;
    /* A will with RETAIN 1 updates the retained store too; nobody waits for
     * either report (a will has no ack), so its copy is best effort, as a QoS
     * 0 PUBLISH's: a lost one is counted in st.retained_lost. */
    if (msg.retain && m->cfg->retained.enabled)
        session_produce_copy_best_effort(c, &msg);
}
