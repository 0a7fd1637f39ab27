/* PUBLISH from a client: QoS 2 duplicates, the ACL (opts.auth), routing
 * through the topic map (opts.route), producing (opts.produce) into the
 * in-flight ring; PUBREL; and the acks a client sends (PUBACK, PUBREC,
 * PUBCOMP), which answer server-sent PUBLISHes and are matched in
 * outbound.c. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

#define ACL_CACHE_TOPIC_MAX 256

/* ---- the Kafka topics rendered so far (kafka.max_topics): librdkafka keeps
 * an object per topic for the process's life, so neither does this forget */

typedef struct {
    hmap_node_t node;
    uint8_t len; /* a legal name has at most 249 bytes */
    char name[];
} ktopic_t;

static uint64_t ktopic_hash(const hmap_node_t *n) {
    const ktopic_t *t = HMAP_ENTRY(n, ktopic_t, node);
    return m2k_hash_keyed(t->name, t->len);
}

void ktopics_init(session_mgr_t *m) {
    hmap_init(&m->ktopics, ktopic_hash, 0);
}

static void ktopic_free(hmap_node_t *n, void *ud) {
    (void)ud;
    free(HMAP_ENTRY(n, ktopic_t, node));
}

void ktopics_free(session_mgr_t *m) {
    hmap_each(&m->ktopics, ktopic_free, NULL);
    hmap_free(&m->ktopics);
}

/* Whether the (legal) name is known or fits under kafka.max_topics (0: no bound). */
static bool ktopic_admit(session_mgr_t *m, const char *name, size_t len) {
    uint64_t h = m2k_hash_keyed(name, len); /* names a client chooses */
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, &m->ktopics, h) {
        const ktopic_t *t = HMAP_ENTRY(n, ktopic_t, node);
        if (t->len == len && memcmp(t->name, name, len) == 0)
            return true;
    }
    uint32_t max = m->cfg->kafka_max_topics;
    if ((max && m->ktopics.n >= max) || len > UINT8_MAX)
        return false;
    ktopic_t *t = malloc(sizeof(*t) + len);
    if (!t)
        return false;
    t->len = (uint8_t)len;
    memcpy(t->name, name, len);
    if (hmap_insert(&m->ktopics, &t->node, h) != 0) {
        free(t);
        return false;
    }
    m->st.kafka_topics = m->ktopics.n;
    return true;
}

/* The refusal for kafka.max_topics: MQTT 5 tells it apart (0x97, a quota,
 * not a bad name) by this pointer. */
static const char topic_limit_why[] = "a new topic past kafka.max_topics distinct Kafka topics";

/* A message a rule maps whose Kafka topic is refused: counted, never routed
 * elsewhere (the unmapped policy is for messages no rule maps). */
static int route_refuse(session_mgr_t *m, int kind, const char *ktopic, const char **out,
                        const char **why, const char *reason) {
    m->st.messages_refused[kind]++;
    *out = ktopic;
    *why = reason;
    return ROUTE_REFUSE;
}

int session_route(session_conn_t *c, const msg_t *msg, const char **ktopic, const char **key,
                  size_t *key_len, const char **why) {
    session_mgr_t *m = c->mgr;
    topic_map_ctx_t ctx = {
        .client_id = c->s->client_id,
        .client_id_len = c->s->client_id_len,
        .username = c->has_username ? c->username : NULL,
        .username_len = c->has_username ? c->username_len : 0,
        .property = msg->props ? session5_user_property : NULL,
        .props = msg->props,
    };
    topic_map_result_t res = {0};
    int r =
        m->o.route(m->o.route_ud, msg->topic, msg->topic_len, &ctx, m->scratch, SCRATCH_SIZE, &res);
    switch (r) {
    case TOPIC_MAP_MATCHED:
        if (!ktopic_admit(m, res.kafka_topic, res.kafka_topic_len))
            return route_refuse(m, SESSION_REFUSED_TOPIC_LIMIT, res.kafka_topic, ktopic, why,
                                topic_limit_why);
        *ktopic = res.kafka_topic;
        *key = res.key;
        *key_len = res.key_len;
        return ROUTE_OK;
    case TOPIC_MAP_UNMAPPED:
        *why = res.regex_skipped ? "no rule matches (regex rules skipped: the topic is longer "
                                   "than mqtt.max_regex_topic_length)"
                                 : "no rule matches";
        break;
    case TOPIC_MAP_ERR_RESERVED:
        return route_refuse(m, SESSION_REFUSED_RESERVED_TOPIC, res.kafka_topic, ktopic, why,
                            topic_map_refusal(r));
    case TOPIC_MAP_ERR_NO_ROOM:
        return route_refuse(m, SESSION_REFUSED_ILLEGAL_TOPIC, NULL, ktopic, why,
                            topic_map_refusal(r));
    default:
        return route_refuse(m, SESSION_REFUSED_ILLEGAL_TOPIC, res.kafka_topic, ktopic, why,
                            topic_map_refusal(r));
    }
    switch (m->cfg->unmapped) {
    case UNMAPPED_TOPIC:
        if (m->cfg->unmapped_topic) {
            *ktopic = m->cfg->unmapped_topic;
            *key = msg->topic;
            *key_len = msg->topic_len;
            m->st.unmapped_routed++;
            return ROUTE_OK;
        }
        return ROUTE_CLOSE;
    case UNMAPPED_DROP:
        return ROUTE_DROP;
    case UNMAPPED_DISCONNECT:
    default:
        return ROUTE_CLOSE;
    }
}

/* MQTT 5: a message's expiry interval as an mqtt.message_expiry header value
 * (decimal seconds, as the downlink reads it) into buf; 0 without one. */
static size_t expiry_header(const msg_t *msg, char buf[static 11]) {
    if (!msg->props || !MQTT5_HAS(msg->props, MQTT5_PROP_MESSAGE_EXPIRY))
        return 0;
    return (size_t)snprintf(buf, 11, "%" PRIu32, msg->props->message_expiry);
}

int session_produce(session_conn_t *c, const msg_t *msg, const char *ktopic, const char *key,
                    size_t key_len, uint64_t opaque) {
    session_mgr_t *m = c->mgr;
    static const char *const qos_str[] = {"0", "1", "2"};
    kafka_header_t hs[6], *h = hs;
    char *names = NULL, expiry[11];
    size_t nh = 0, extra = 0, name_bytes = 0;
    if (m->cfg->headers && msg->props &&
        (extra = session5_headers(msg->props, NULL, NULL, &name_bytes)) > 0) {
        /* Ours (6 at most) first, then what the properties add. */
        h = malloc((6 + extra) * sizeof(*h) + name_bytes);
        if (!h)
            return KAFKA_ERR_PRODUCE;
        names = (char *)(h + 6 + extra);
    }
    if (m->cfg->headers) {
        h[nh++] = (kafka_header_t){"mqtt.topic", msg->topic, msg->topic_len};
        h[nh++] = (kafka_header_t){"mqtt.client_id", c->s->client_id, c->s->client_id_len};
        h[nh++] = (kafka_header_t){"mqtt.qos", qos_str[msg->qos <= 2 ? msg->qos : 0], 1};
        if (msg->retain)
            h[nh++] = (kafka_header_t){"mqtt.retain", "1", 1};
        if (c->has_username)
            h[nh++] = (kafka_header_t){"mqtt.username", c->username, c->username_len};
        size_t elen = expiry_header(msg, expiry);
        if (elen)
            h[nh++] = (kafka_header_t){"mqtt.message_expiry", expiry, elen};
        if (extra)
            nh += session5_headers(msg->props, h + nh, names, NULL);
    }
    kafka_record_t rec = {
        .topic = ktopic,
        .key = key,
        .key_len = key_len,
        .value = msg->payload,
        .value_len = msg->payload_len,
        .headers = nh ? h : NULL,
        .n_headers = nh,
        .timestamp_ms = m->wall_ms,
    };
    int rc = m->o.produce(m->o.produce_ud, &rec, opaque);
    if (h != hs)
        free(h);
    if (rc == KAFKA_OK)
        m->st.published++;
    else if (rc == KAFKA_ERR_QUEUE_FULL)
        m->st.queue_full++;
    return rc;
}

/* A PUBLISH with RETAIN 1 also goes to the retained topic: key = MQTT topic,
 * value = payload (none: a tombstone, which deletes), mqtt.qos header and,
 * with an expiry, mqtt.message_expiry (whatever `headers` says: the store
 * drops it once expired). */
int session_produce_copy(session_conn_t *c, const msg_t *msg, uint64_t opaque) {
    session_mgr_t *m = c->mgr;
    static const char *const qos_str[] = {"0", "1", "2"};
    char expiry[11];
    kafka_header_t h[2] = {{"mqtt.qos", qos_str[msg->qos <= 2 ? msg->qos : 0], 1},
                           {"mqtt.message_expiry", expiry, expiry_header(msg, expiry)}};
    kafka_record_t rec = {.topic = m->cfg->retained.topic,
                          .key = msg->topic,
                          .key_len = msg->topic_len,
                          .value = msg->payload_len ? msg->payload : NULL,
                          .value_len = msg->payload_len,
                          .headers = h,
                          .n_headers = h[1].len ? 2 : 1,
                          .timestamp_ms = m->wall_ms};
    int rc = m->o.produce(m->o.produce_ud, &rec, opaque);
    if (rc == KAFKA_ERR_QUEUE_FULL)
        m->st.queue_full++;
    return rc;
}

void session_produce_copy_best_effort(session_conn_t *c, const msg_t *msg) {
    session_mgr_t *m = c->mgr;
    if (session_produce_copy(c, msg, SESSION_OPAQUE_RETAINED) == KAFKA_OK)
        return;
    m->st.retained_lost++;
    char idb[LOG_ID_MAX], tb[128];
    log_client_ratelimited(&m->rl->delivery, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                           c->remote, "retained copy of a message on topic '%s' not produced",
                           session_log_str(tb, sizeof(tb), msg->topic, msg->topic_len));
}

/* The copy of the QoS 1/2 message of entry e (seq its sequence number): its
 * report is awaited beside the mapped record's. FEED_RETRY when the producer
 * queue or the spool is full: the entry owes it, and the PUBLISH is fed
 * again for the copy alone (publish_owed_copy), so the mapped record is never
 * produced twice. A refused copy fails the message (e->reason): answered as a
 * failed delivery once the mapped record's report is in. */
static int publish_copy(session_conn_t *c, const msg_t *msg, inflight_t *e, uint32_t seq) {
    session_mgr_t *m = c->mgr;
    int rc = session_produce_copy(c, msg, SESSION_OPAQUE_COPY(c->s->id, seq));
    e->copy = 1;
    e->owed = rc == KAFKA_ERR_QUEUE_FULL || rc == KAFKA_ERR_SPOOL_FULL;
    if (e->owed) {
        inflight_block(c);
        return FEED_RETRY;
    }
    if (rc != KAFKA_OK) {
        char idb[LOG_ID_MAX], tb[LOG_ID_MAX];
        log_client_ratelimited(&m->rl->delivery, LOG_ERROR, session_log_id(c, idb, sizeof(idb)),
                               c->remote,
                               "the producer refused the retained copy of a message on topic "
                               "'%s' (%s): the message fails",
                               session_log_str(tb, sizeof(tb), msg->topic, msg->topic_len),
                               rc == KAFKA_ERR_FATAL ? "fatal producer error" : "produce error");
        e->copy = 0;
        e->reason = MQTT5_RC_UNSPECIFIED;
    }
    return FEED_OK;
}

/* The message of a PUBLISH (its topic alias resolved). */
static msg_t publish_msg(const session_conn_t *c, const mqtt_publish_t *p) {
    return (msg_t){(const char *)p->topic.ptr,
                   p->topic.len,
                   p->payload.ptr,
                   p->payload.len,
                   p->qos,
                   p->retain,
                   c->p5 ? &c->p5->props : NULL};
}

/* The PUBLISH fed again after publish_copy's FEED_RETRY (the ring's last
 * entry owes its copy: nothing else of this connection was read since). */
static int publish_owed_copy(session_conn_t *c, const mqtt_publish_t *p) {
    session_mgr_t *m = c->mgr;
    session_t *s = c->s;
    inflight_t *e = ring_at(s, s->ring_count - 1);
    assert(e->packet_id == p->packet_id);
    int r = FEED_OK;
    if (!e->reason) { /* else the mapped record failed: the copy would be a lie */
        msg_t msg = publish_msg(c, p);
        r = publish_copy(c, &msg, e, s->next_seq - 1);
        if (r == FEED_RETRY)
            return r;
        if (e->copy) {
            inflight_check_window(c);
            return FEED_OK;
        }
    }
    e->owed = 0;
    e->copy = 0;
    if (e->mapped_in)
        inflight_settle(m, s, s->id, e);
    return c->state == CONN_CLOSED ? FEED_CLOSED : FEED_OK;
}

/* The ACL decision for a PUBLISH, with a one-topic cache per connection. */
static bool publish_allowed(session_conn_t *c, const mqtt_publish_t *p) {
    const session_auth_ops_t *a = &c->mgr->o.auth;
    const char *topic = (const char *)p->topic.ptr;
    size_t len = p->topic.len;
    uint32_t gen = a->acl_generation(a->ud);
    if (!gen)
        return true;
    acl_cache_t *acl = c->caches ? c->caches->acl : NULL;
    if (acl && acl->gen == gen && acl->len == len && memcmp(acl->topic, topic, len) == 0)
        return acl->ok;
    bool ok =
        a->can_publish(a->ud, c->has_username ? c->username : NULL, c->s->client_id, topic, len);
    /* Cached only for short topics: the cache must not double a big packet. */
    if (len <= ACL_CACHE_TOPIC_MAX) {
        session_caches_t *x = session_conn_caches(c);
        if (x && !x->acl)
            x->acl = malloc(sizeof(*x->acl) + ACL_CACHE_TOPIC_MAX);
        if (x && x->acl) {
            memcpy(x->acl->topic, topic, len);
            x->acl->len = (uint16_t)len;
            x->acl->gen = gen;
            x->acl->ok = ok;
        }
    }
    return ok;
}

/* A QoS 2 PUBLISH whose id is still in flight or awaits PUBREL: the same
 * message again, not a new one. */
static bool qos2_known(session_t *s, uint16_t pid) {
    if (pubrel_has(s, pid))
        return true;
    for (uint32_t i = 0; i < s->ring_count; i++) {
        inflight_t *e = ring_at(s, i);
        if (e->qos == 2 && e->packet_id == pid && e->state != IF_FAILED)
            return true;
    }
    return false;
}

/* MQTT 5: CONNACK's receive maximum is max_inflight; a client with that
 * many QoS 1/2 messages unacknowledged (QoS 2 until PUBCOMP) that sends
 * another gets DISCONNECT 0x93 [MQTT-3.3.4-9]. Such a client is read on at
 * the limit; a message that finds the ring full waits (reading paused). */
static int receive_window(session_conn_t *c, const mqtt_publish_t *p, uint32_t max) {
    session_t *s = c->s;
    uint32_t unacked = s->ring_qos1 + s->ring_qos2 - s->ring_again + s->pubrel_count;
    uint32_t rmax = max < 65535 ? max : 65535;
    if (p->qos && unacked >= rmax && !(p->qos == 2 && qos2_known(s, p->packet_id))) {
        session_violation(c, SESSION_ERR_RECEIVE_MAXIMUM,
                          "%u QoS 1/2 messages unacknowledged, receive maximum %u exceeded "
                          "[MQTT-3.3.4-9]",
                          unacked, rmax);
        return FEED_CLOSED;
    }
    if (s->ring_count >= max) {
        inflight_pause(c);
        return FEED_RETRY;
    }
    return FEED_OK;
}

int session_on_publish(session_conn_t *c, const mqtt_packet_t *pkt) {
    const mqtt_publish_t *p = &pkt->u.publish;
    mqtt_publish_t aliased;
    session_mgr_t *m = c->mgr;
    session_t *s = c->s;
    char idb[LOG_ID_MAX], tb[LOG_ID_MAX];
    uint32_t max = max_inflight(m);
    if (!c->refeed)
        m->st.messages_received[p->qos <= 2 ? p->qos : 0]++;

    /* An empty topic always comes with an alias (the codec saw to it). */
    if (c->p5 && MQTT5_HAS(&c->p5->props, MQTT5_PROP_TOPIC_ALIAS)) {
        aliased = *p;
        if (session5_topic_alias(c, &aliased) != FEED_OK)
            return FEED_CLOSED;
        p = &aliased;
    }

    if (s->ring_count && ring_at(s, s->ring_count - 1)->owed)
        return publish_owed_copy(c, p);
    if (c->p5) {
        int r = receive_window(c, p, max);
        if (r != FEED_OK)
            return r;
    }
    uint64_t hash = 0; /* QoS 2 kept across restarts: what the id acknowledges */
    if (p->qos == 2 && !s->clean && m->qos2_keyed)
        hash = session_mgr_qos2_hash(m, p->topic.ptr, p->topic.len, p->payload.ptr, p->payload.len);
    if (p->qos == 2) {
        int at = pubrel_index(s, p->packet_id);
        if (at >= 0 && at < s->pubrel_restored && (!p->dup || s->pubrel[at].hash != hash)) {
            /* An id from before a restart that the client released and
             * reuses (the release may not have reached the state file): a
             * new message says so with DUP 0, or, resent after a crash cut
             * it off, with another topic or payload. */
            pubrel_remove(s, p->packet_id);
            qos2_changed(m, s);
            at = -1;
        }
        if (at >= 0) {
            m->st.qos2_duplicates++;
            if (ring_push_again(c, p->packet_id) != 0)
                goto oom;
            inflight_check_window(c);
            return FEED_OK;
        }
        for (uint32_t i = 0; i < s->ring_count; i++) {
            inflight_t *e = ring_at(s, i);
            if (e->qos == 2 && e->packet_id == p->packet_id && e->state != IF_FAILED) {
                /* Still in flight: the report answers this connection, once. */
                e->ack_gen = c->gen;
                m->st.qos2_duplicates++;
                return FEED_OK;
            }
        }
        if (s->pubrel_count + s->ring_qos2 >= max) {
            session_violation(c, SESSION_ERR_QOS2_WINDOW_FULL,
                              "%u QoS 2 messages await PUBREL or delivery (max_inflight %u)",
                              s->pubrel_count + s->ring_qos2, max);
            return FEED_CLOSED;
        }
    }
    /* MQTT 5: a payload that says it is UTF-8 and is not: PUBACK/PUBREC
     * 0x99 [MQTT-3.3.2-4]; QoS 0 has no answer: dropped. */
    if (c->p5 && c->p5->props.payload_format == 1 &&
        mqtt_utf8_check(p->payload.ptr, p->payload.len) != 0) {
        log_client_ratelimited(
            &m->rl->drop, LOG_WARN, session_log_id(c, idb, sizeof(idb)), c->remote,
            "payload on topic '%s' is not UTF-8 as its payload format "
            "indicator says: refused (0x99)",
            session_log_str(tb, sizeof(tb), (const char *)p->topic.ptr, p->topic.len));
        if (p->qos > 0 &&
            ring_push_reason(c, p->qos, p->packet_id, MQTT5_RC_PAYLOAD_FORMAT_INVALID) != 0)
            goto oom;
        inflight_check_window(c);
        return FEED_OK;
    }
    if (m->o.auth.acl_generation && !publish_allowed(c, p)) {
        m->st.acl_denied++;
        session_log_str(tb, sizeof(tb), (const char *)p->topic.ptr, p->topic.len);
        if (c->p5 && p->qos > 0) { /* MQTT 5 has a negative ack: 0x87 */
            log_client_ratelimited(&m->rl->acl, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                                   c->remote,
                                   "the ACL does not allow publishing on topic '%s': refused "
                                   "(0x87)",
                                   tb);
            if (ring_push_reason(c, p->qos, p->packet_id, MQTT5_RC_NOT_AUTHORIZED) != 0)
                goto oom;
            inflight_check_window(c);
            return FEED_OK;
        }
        if (m->cfg->auth.acl_deny == ACL_DENY_DISCONNECT) {
            session5_send_disconnect(c, MQTT5_RC_NOT_AUTHORIZED);
            /* MQTT 3.1.1 has no negative acknowledgement: closing is the
             * only way a QoS 1/2 sender learns it was refused. */
            session_end(c, &m->rl->acl, LOG_WARN, true, true,
                        "the ACL does not allow publishing on topic '%s' (auth.acl_deny: "
                        "disconnect)",
                        tb);
            return FEED_CLOSED;
        }
        log_client_ratelimited(&m->rl->acl, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                               c->remote,
                               "the ACL does not allow publishing on topic '%s': dropped "
                               "(auth.acl_deny: drop)",
                               tb);
        if (p->qos > 0) {
            if (ring_push_done(c, p->qos, p->packet_id) != 0)
                goto oom;
            inflight_check_window(c);
        }
        return FEED_OK;
    }

    if (ring_reserve(m, s) != 0)
        goto oom;

    msg_t msg = publish_msg(c, p);
    const char *ktopic, *key, *why = "";
    size_t key_len;
    int r = session_route(c, &msg, &ktopic, &key, &key_len, &why);
    /* MQTT 5: 0x90, or 0x97 for kafka.max_topics (a bound backpressure
     * cannot absorb: waiting frees no topic). */
    uint8_t refusal =
        why == topic_limit_why ? MQTT5_RC_QUOTA_EXCEEDED : MQTT5_RC_TOPIC_NAME_INVALID;
    if ((r == ROUTE_CLOSE || r == ROUTE_REFUSE) && c->p5 && p->qos > 0) {
        if (r == ROUTE_CLOSE)
            m->st.unmapped_closed++;
        log_client_ratelimited(&m->rl->drop, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                               c->remote, "topic '%s'%s: %s: refused (0x%02x)",
                               session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len),
                               refusal == MQTT5_RC_QUOTA_EXCEEDED ? "" : " is not mapped", why,
                               refusal);
        if (ring_push_reason(c, p->qos, p->packet_id, refusal) != 0)
            goto oom;
        inflight_check_window(c);
        return FEED_OK;
    }
    if (r == ROUTE_REFUSE) {
        /* MQTT 3.1.1 has no negative acknowledgement: the close tells the
         * sender; an ack would lose the message. */
        char kb[TOPIC_MAP_KAFKA_TOPIC_MAX + 8], what[TOPIC_MAP_KAFKA_TOPIC_MAX + 64] = "";
        if (ktopic)
            snprintf(what, sizeof(what), "it renders the Kafka topic '%s', ",
                     session_log_str(kb, sizeof(kb), ktopic, strlen(ktopic)));
        session5_send_disconnect(c, refusal);
        session_end(c, &m->rl->route, LOG_WARN, true, true,
                    "refused a message on topic '%s': %s%s; not acknowledged",
                    session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len), what, why);
        return FEED_CLOSED;
    }
    if (r == ROUTE_CLOSE) {
        m->st.unmapped_closed++;
        session5_send_disconnect(c, MQTT5_RC_TOPIC_NAME_INVALID);
        session_end(c, NULL, LOG_WARN, true, true, "topic '%s' is not mapped: %s",
                    session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len), why);
        return FEED_CLOSED;
    }
    if (r == ROUTE_DROP) {
        m->st.unmapped_dropped++;
        log_client_ratelimited(&m->rl->drop, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                               c->remote, "dropped a message on topic '%s': %s",
                               session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len), why);
        if (p->qos > 0 && ring_push_done(c, p->qos, p->packet_id) != 0)
            goto oom;
        inflight_check_window(c);
        return FEED_OK;
    }

    int rc = session_produce(c, &msg, ktopic, key, key_len, SESSION_OPAQUE(s->id, s->next_seq));
    if (rc == KAFKA_ERR_SPOOL_FULL && p->qos == 0) {
        /* Nothing acked waits on it: QoS 0 does not pause the client. */
        m->st.qos0_dropped_spool_full++;
        log_client_ratelimited(&m->rl->spool_drop, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                               c->remote,
                               "dropped a QoS 0 message on topic '%s': the spool is full",
                               session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len));
        return FEED_OK;
    }
    if (rc == KAFKA_ERR_SPOOL_FULL && c->p5) {
        /* MQTT 5 has a negative ack for it: 0x97, and the client is read on
         * (3.1.1 waits unacknowledged, paused, below). Nothing is acked. */
        log_client_ratelimited(&m->rl->spool_drop, LOG_WARN, session_log_id(c, idb, sizeof(idb)),
                               c->remote,
                               "refused a QoS %u message on topic '%s': the spool is full (0x97)",
                               p->qos, session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len));
        if (ring_push_spool_full(c, p->qos, p->packet_id) != 0)
            goto oom;
        inflight_check_window(c);
        return FEED_OK;
    }
    if (rc == KAFKA_ERR_QUEUE_FULL || rc == KAFKA_ERR_SPOOL_FULL) {
        inflight_block(c);
        return FEED_RETRY;
    }
    if (rc != KAFKA_OK && c->p5 && p->qos > 0) { /* MQTT 5: a negative ack, 0x80 */
        log_client_ratelimited(&m->rl->delivery, LOG_ERROR, session_log_id(c, idb, sizeof(idb)),
                               c->remote,
                               "the producer refused a message on topic '%s' (%s): refused (0x80)",
                               session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len),
                               rc == KAFKA_ERR_FATAL ? "fatal producer error" : "produce error");
        if (ring_push_reason(c, p->qos, p->packet_id, MQTT5_RC_UNSPECIFIED) != 0)
            goto oom;
        inflight_check_window(c);
        return FEED_OK;
    }
    if (rc != KAFKA_OK) {
        session5_send_disconnect(c, MQTT5_RC_UNSPECIFIED);
        session_end(c, NULL, LOG_ERROR, true, true,
                    "the producer refused a message on topic '%s' (%s)",
                    session_log_str(tb, sizeof(tb), msg.topic, msg.topic_len),
                    rc == KAFKA_ERR_FATAL ? "fatal producer error" : "produce error");
        return FEED_CLOSED;
    }
    inflight_t *e = ring_at(s, s->ring_count);
    e->ack_gen = p->qos ? c->gen : 0;
    e->packet_id = p->packet_id;
    e->qos = p->qos;
    e->state = IF_PENDING;
    e->hash = hash;
    e->reason = 0;
    e->again = 0;
    e->spool_full = 0;
    e->durable = 0;
    e->produced = 1;
    e->copy = 0;
    e->owed = 0;
    e->mapped_in = 0;
    e->map_durable = 0;
    e->copy_durable = 0;
    e->recv_us = (uint32_t)m->mono_us;
    e->topic_len =
        (uint8_t)(msg.topic_len < INFLIGHT_TOPIC_MAX ? msg.topic_len : INFLIGHT_TOPIC_MAX);
    memcpy(e->topic, msg.topic, e->topic_len);
    s->ring_count++;
    s->ring_qos2 += p->qos == 2;
    s->ring_qos1 += p->qos == 1;
    s->next_seq++;
    s->ring_used = true;
    if (p->qos == 2)
        qos2_changed(m, s);
    if (msg.retain && m->cfg->retained.enabled) {
        /* QoS 0: nothing is acked, both records are best effort. */
        if (p->qos == 0)
            session_produce_copy_best_effort(c, &msg);
        else if (publish_copy(c, &msg, e, s->next_seq - 1) == FEED_RETRY)
            return FEED_RETRY;
    }
    inflight_check_window(c);
    return FEED_OK;
oom:
    session_end(c, NULL, LOG_ERROR, true, true, "out of memory for the in-flight window");
    return FEED_CLOSED;
}

int session_on_pubrel(session_conn_t *c, const mqtt_packet_t *pkt) {
    return qos2_pubrel(c, pkt->u.packet_id); /* store_qos2.c */
}

/* Where a downlink's outbound QoS state will match PUBACK/PUBREC/PUBCOMP. */
int session_on_client_ack(session_conn_t *c, const mqtt_packet_t *pkt) {
    return outbound_on_ack(c, pkt); /* the server's QoS 1/2 PUBLISH (outbound.c) */
}
