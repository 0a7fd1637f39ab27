/* Kafka -> MQTT delivery to the sessions (docs/architecture.md "The
 * downlink"): a message matched against the subscription trie goes to each
 * matching session at min(message QoS, granted QoS). A QoS 0 message to a
 * connected client with nothing queued is written at once; anything else
 * goes through the session's queue (mqtt.max_queued_messages), from which
 * QoS 1/2 messages enter the in-flight window (MQTT 5: the client's receive
 * maximum; 3.1.1: mqtt.max_inflight) with a packet id of the session's. The
 * ACL's read rules are checked as a message is written. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

/* The PUBLISH's fixed header, topic, packet id and (MQTT 5) property length,
 * for plen property bytes and a payload of len bytes sent after it; its size,
 * or 0 when the packet would be over max (0: the protocol's maximum). */
static size_t publish_head(uint8_t *b, bool v5, uint8_t flags, uint16_t pid, const char *topic,
                           size_t tlen, size_t plen, size_t len, uint32_t max) {
    uint8_t qos = (flags >> 1) & 3;
    uint8_t pl[4];
    size_t pn = v5 ? mqtt5_vbi_encode(pl, sizeof(pl), (uint32_t)plen) : 0;
    size_t rem = 2 + tlen + (qos ? 2 : 0) + pn + (v5 ? plen : 0) + len;
    if (rem > 268435455u || plen > 268435455u)
        return 0;
    size_t i = 0;
    b[i++] = (uint8_t)(MQTT_PUBLISH << 4 | flags);
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
    memcpy(b + i, pl, pn);
    return i + pn;
}

/* The user properties of a record's headers for MQTT 5 clients: every header
 * whose name does not start with "mqtt." and whose name and value are valid
 * UTF-8 strings of at most 65535 bytes (others are left out), in order. The
 * byte count; writes only when out is not NULL. */
static size_t user_props(uint8_t *out, const dl_header_t *h, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(h[i].name), vl = h[i].value ? h[i].value_len : 0;
        if ((nl >= 5 && memcmp(h[i].name, "mqtt.", 5) == 0) || nl > 65535 || vl > 65535 ||
            mqtt_utf8_check((const uint8_t *)h[i].name, nl) != 0 ||
            mqtt_utf8_check(h[i].value, vl) != 0)
            continue;
        if (out) {
            out[k] = MQTT5_PROP_USER_PROPERTY;
            out[k + 1] = (uint8_t)(nl >> 8);
            out[k + 2] = (uint8_t)nl;
            memcpy(out + k + 3, h[i].name, nl);
            out[k + 3 + nl] = (uint8_t)(vl >> 8);
            out[k + 4 + nl] = (uint8_t)vl;
            if (vl)
                memcpy(out + k + 5 + nl, h[i].value, vl);
        }
        k += 5 + nl + vl;
    }
    return k;
}

static bool read_allowed(session_conn_t *c, const char *topic, size_t len) {
    const session_auth_ops_t *a = &c->mgr->o.auth;
    if (!a->can_read || !a->acl_generation || !a->acl_generation(a->ud))
        return true;
    return a->can_read(a->ud, c->has_username ? c->username : NULL, c->s->client_id, topic, len);
}

/* After a send: a connection over its output bound is closed (its session
 * detached). Returns false when it was. */
static bool still_open(session_conn_t *c) {
    if (c->state != CONN_CLOSING)
        return c->state == CONN_CONNECTED;
    session_end(c, NULL, LOG_WARN, true, true, "output buffer limit reached");
    return false;
}

/* Writes one PUBLISH: the head from the scratch buffer, the MQTT 5
 * properties and the payload from the message itself (no copy into a
 * packet). 1 sent, 0 not sent (too large for the client: discarded as if sent
 * [MQTT-3.1.2-25]), -1 the connection closed. */
static int send_publish(session_conn_t *c, uint8_t flags, uint16_t pid, const char *topic,
                        size_t tlen, const uint8_t *x, size_t xlen, const uint8_t *props,
                        size_t plen, const void *payload, size_t len, uint64_t expires_ms) {
    session_mgr_t *m = c->mgr;
    uint8_t *h = (uint8_t *)m->scratch;
    if (!c->v5)
        plen = xlen = 0;
    /* MQTT 5: what is left of the message expiry interval, in whole
     * seconds rounded up [MQTT-3.3.2-6] (a resend past it: 0). */
    size_t elen = c->v5 && expires_ms ? 5 : 0;
    size_t hn = publish_head(h, c->v5, flags, pid, topic, tlen, elen + xlen + plen, len,
                             c->v5 ? c->max_out : 0);
    if (!hn) {
        m->st.delivery_too_large++;
        return 0;
    }
    if (elen) {
        uint64_t left = expires_ms > m->mono_ms ? (expires_ms - m->mono_ms + 999) / 1000 : 0;
        h[hn] = MQTT5_PROP_MESSAGE_EXPIRY;
        for (int i = 0; i < 4; i++)
            h[hn + 1 + (size_t)i] = (uint8_t)(left >> (24 - 8 * i));
    }
    session_send(c, h, hn + elen);
    if (xlen && c->state == CONN_CONNECTED && c->ops->send(c->ud, x, xlen) != 0)
        session_set_state(c, CONN_CLOSING);
    if (plen && c->state == CONN_CONNECTED && c->ops->send(c->ud, props, plen) != 0)
        session_set_state(c, CONN_CLOSING);
    if (len && c->state == CONN_CONNECTED && c->ops->send(c->ud, payload, len) != 0)
        session_set_state(c, CONN_CLOSING);
    return still_open(c) ? 1 : -1;
}

static int send_entry(session_conn_t *c, uint8_t flags, uint16_t pid, const dl_qentry_t *e) {
    const dl_msg_t *msg = e->msg;
    return send_publish(c, flags, pid, msg->topic, msg->topic_len, e->xprops, e->xlen, msg->props,
                        msg->props_len, msg->payload, msg->len, msg->expires_ms);
}

/* ---- the in-flight ring ---- */

/* What one queued or in-flight message counts (outbound_bytes). */
static size_t entry_bytes(const dl_msg_t *msg, size_t xlen) {
    return sizeof(dl_qentry_t) + sizeof(*msg) + msg->topic_len + 1 + msg->len + msg->props_len +
           msg->origin_len + xlen;
}

static size_t qentry_bytes(const dl_qentry_t *e) {
    return entry_bytes(e->msg, e->xlen);
}

static inline ob_flight_t *fl_at(outbound_t *ob, uint32_t i) {
    uint32_t j = ob->head + i;
    return &ob->fl[j >= ob->cap ? j - ob->cap : j];
}

static uint32_t window(const session_conn_t *c) {
    uint32_t w = max_inflight(c->mgr);
    return c->v5 && c->recv_max < w ? c->recv_max : w;
}

static int fl_find(outbound_t *ob, uint16_t pid) {
    for (uint32_t i = 0; i < ob->n; i++)
        if (fl_at(ob, i)->pid == pid)
            return (int)i;
    return -1;
}

/* Removes entry i: the ones before it move up one place, so acks in order
 * (the usual case) cost O(1) and the send order stays. */
static void fl_remove(outbound_t *ob, uint32_t i) {
    dl_qentry_t *e = fl_at(ob, i)->e;
    if (e)
        ob->bytes -= qentry_bytes(e);
    dl_qentry_free(e);
    for (; i > 0; i--)
        *fl_at(ob, i) = *fl_at(ob, i - 1);
    ob->head = ob->head + 1 == ob->cap ? 0 : ob->head + 1;
    ob->n--;
}

static int fl_push(outbound_t *ob, ob_flight_t f) {
    if (ob->n == ob->cap) {
        uint32_t ncap = ob->cap ? ob->cap * 2 : 8;
        ob_flight_t *nf = malloc(ncap * sizeof(*nf));
        if (!nf)
            return -1;
        for (uint32_t i = 0; i < ob->n; i++)
            nf[i] = *fl_at(ob, i);
        free(ob->fl);
        ob->fl = nf;
        ob->cap = ncap;
        ob->head = 0;
    }
    *fl_at(ob, ob->n++) = f;
    return 0;
}

/* The next packet id: after the last one, skipping 0 and any still in flight
 * (only possible once the ids wrapped around a message never acked). */
static uint16_t next_pid(outbound_t *ob) {
    uint16_t p = ob->last_pid;
    do {
        if (++p == 0)
            p = 1;
    } while (ob->n &&
             (uint16_t)(p - fl_at(ob, 0)->pid) <= (uint16_t)(ob->last_pid - fl_at(ob, 0)->pid) &&
             fl_find(ob, p) >= 0); /* the ids in flight lie between the oldest's and the last */
    return ob->last_pid = p;
}

/* ---- the queue into the window ---- */

/* Writes what the window and the order allow: the queue's head goes first,
 * a QoS 0 message included, so no message overtakes an older one. */
static void flush(session_conn_t *c) {
    session_mgr_t *m = c->mgr;
    outbound_t *ob = c->s->ob;
    uint32_t w = window(c);
    list_t *first;
    while (ob && c->state == CONN_CONNECTED && (first = list_first(&ob->q.all))) {
        dl_qentry_t *e = LIST_ENTRY(first, dl_qentry_t, all);
        if (e->qos && ob->n >= w)
            return;
        e = dl_queue_pop(&ob->q);
        const dl_msg_t *msg = e->msg;
        if (!e->qos) /* leaves the session now, written or not */
            ob->bytes -= qentry_bytes(e);
        bool expired = msg->expires_ms && m->mono_ms >= msg->expires_ms;
        if (expired || !read_allowed(c, msg->topic, msg->topic_len)) {
            if (expired) /* [MQTT-3.3.2-5] */
                m->qstats.expired++;
            else
                m->st.delivery_denied++;
            if (e->qos)
                ob->bytes -= qentry_bytes(e);
            dl_qentry_free(e);
            continue;
        }
        uint16_t pid = 0;
        if (e->qos && fl_push(ob, (ob_flight_t){e, pid = next_pid(ob),
                                                e->qos == 1 ? OB_PUBACK : OB_PUBREC}) != 0) {
            ob->bytes -= qentry_bytes(e);
            dl_qentry_free(e); /* out of memory: lost, as a full queue's refusal */
            m->qstats.refused_full++;
            continue;
        }
        uint8_t flags = (uint8_t)(e->qos << 1 | (msg->retain ? 1 : 0));
        uint8_t qos = e->qos;
        int r = send_entry(c, flags, pid, e);
        if (r > 0)
            m->st.deliveries[qos]++;
        if (!qos || r == 0) { /* done: QoS 0 written, or too large (as if acked) */
            if (qos)
                fl_remove(ob, ob->n - 1);
            else
                dl_qentry_free(e);
        }
        if (r < 0)
            return;
        ob = c->s ? c->s->ob : NULL;
    }
}

/* dl_queue_push with the byte count kept (a full queue may drop its oldest
 * QoS 0 message for this one). */
static int ob_push(session_mgr_t *m, outbound_t *ob, dl_msg_t *msg, uint8_t qos, const uint8_t *x,
                   size_t xlen) {
    size_t max = m->cfg->mqtt.max_queued_messages, dropped = 0;
    list_t *old = ob->q.n >= max ? list_first(&ob->q.qos0) : NULL;
    if (old)
        dropped = qentry_bytes(LIST_ENTRY(old, dl_qentry_t, q0));
    int rc = dl_queue_push(&ob->q, msg, qos, max);
    if (rc < 0)
        return rc;
    dl_qentry_t *e = LIST_ENTRY(ob->q.all.prev, dl_qentry_t, all); /* the one just queued */
    if (xlen && (e->xprops = malloc(xlen)) != NULL) {
        memcpy(e->xprops, x, xlen);
        e->xlen = (uint16_t)xlen;
    }
    ob->bytes += qentry_bytes(e) - (rc == 1 ? dropped : 0);
    if (msg->expires_ms && (!ob->next_expiry_ms || msg->expires_ms < ob->next_expiry_ms))
        ob->next_expiry_ms = msg->expires_ms;
    return rc;
}

static void expired_bytes(void *ud, const dl_qentry_t *e) {
    ((outbound_t *)ud)->bytes -= qentry_bytes(e);
}

void outbound_expire(session_mgr_t *m, session_t *s) {
    outbound_t *ob = s->ob;
    if (!ob || !ob->next_expiry_ms || m->mono_ms < ob->next_expiry_ms)
        return;
    size_t before = ob->q.n;
    ob->next_expiry_ms = dl_queue_drop_expired(&ob->q, m->mono_ms, expired_bytes, ob);
    if (ob->q.n != before)
        store_resize(m, s);
}

/* The subscription identifier properties of one delivery, in m->xids: every
 * one of the client's matching subscriptions' identifiers, as many as fit in
 * the 65,535 bytes a queue entry keeps (13,107 at least: more only with
 * mqtt.max_subscriptions_per_session above that). The length; 0 when there
 * is no room (out of memory: sent without them). */
static size_t sub_id_props(session_mgr_t *m, uint32_t ids) {
    size_t need = 0;
    for (uint32_t i = ids; i && need + 5 <= 65535; i = m->matches.ids[i - 1].next)
        need += 5;
    if (need > m->xids_cap) {
        uint8_t *b = realloc(m->xids, need);
        if (!b)
            return 0;
        m->xids = b;
        m->xids_cap = need;
    }
    size_t n = 0;
    for (uint32_t i = ids; i && n + 5 <= need; i = m->matches.ids[i - 1].next) {
        m->xids[n++] = MQTT5_PROP_SUBSCRIPTION_ID;
        n += mqtt5_vbi_encode(m->xids + n, 4, m->matches.ids[i - 1].id);
    }
    return n;
}

outbound_t *outbound_get(session_mgr_t *m, session_t *s) {
    if (!s->ob && (s->ob = calloc(1, sizeof(*s->ob))) != NULL)
        dl_queue_init(&s->ob->q, &m->qstats);
    return s->ob;
}

size_t outbound_bytes(const session_t *s) {
    const outbound_t *ob = s->ob;
    return ob ? sizeof(*ob) + (size_t)ob->cap * sizeof(ob_flight_t) + ob->bytes : 0;
}

void outbound_free(session_t *s) {
    outbound_t *ob = s->ob;
    if (!ob)
        return;
    while (ob->n)
        fl_remove(ob, 0);
    dl_queue_clear(&ob->q);
    free(ob->fl);
    free(ob);
    s->ob = NULL;
}

typedef struct {
    session_conn_t *c;
    uint8_t qos;
    uint8_t x[5]; /* the subscription identifier property, if any */
    size_t xlen;
} retained_ctx_t;

static void queue_retained(void *ud, const char *topic, size_t topic_len, const void *payload,
                           size_t len, uint8_t qos, int64_t expires_ms) {
    retained_ctx_t *x = ud;
    session_mgr_t *m = x->c->mgr;
    dl_msg_t *msg = dl_msg_new(topic, topic_len, payload, len, qos, true);
    if (msg && expires_ms) /* from the wall clock to the session's monotonic one */
        msg->expires_ms = m->mono_ms + (uint64_t)(expires_ms - m->wall_ms);
    if (msg && outbound_get(m, x->c->s))
        ob_push(m, x->c->s->ob, msg, qos < x->qos ? qos : x->qos, x->x, x->xlen);
    dl_msg_unref(msg);
}

void outbound_retained(session_conn_t *c, const char *filter, size_t len, uint8_t qos,
                       uint32_t sub_id) {
    dl_retained_t *r = c->mgr->o.retained;
    retained_ctx_t x = {c, qos, {MQTT5_PROP_SUBSCRIPTION_ID}, 0};
    if (sub_id)
        x.xlen = 1 + mqtt5_vbi_encode(x.x + 1, 4, sub_id);
    if (r && dl_retained_match_at(r, filter, len, c->mgr->wall_ms, queue_retained, &x) > 0)
        flush(c);
}

void outbound_resume(session_conn_t *c) {
    outbound_t *ob = c->s->ob;
    if (!ob)
        return;
    for (uint32_t i = 0; i < ob->n && c->state == CONN_CONNECTED; i++) {
        ob_flight_t *f = fl_at(ob, i);
        if (f->state == OB_PUBCOMP) {
            session5_send_ack(c, MQTT_PUBREL, f->pid, 0);
            if (!still_open(c))
                return;
            continue;
        }
        const dl_msg_t *msg = f->e->msg;
        uint8_t flags = (uint8_t)(0x08 | f->e->qos << 1 | (msg->retain ? 1 : 0)); /* DUP */
        if (send_entry(c, flags, f->pid, f->e) < 0)
            return;
    }
    flush(c);
}

int outbound_on_ack(session_conn_t *c, const mqtt_packet_t *pkt) {
    outbound_t *ob = c->s->ob;
    uint16_t pid = pkt->u.packet_id;
    int i = ob ? fl_find(ob, pid) : -1;
    ob_flight_t *f = i >= 0 ? fl_at(ob, (uint32_t)i) : NULL;
    uint8_t want = pkt->type == MQTT_PUBACK   ? OB_PUBACK
                   : pkt->type == MQTT_PUBREC ? OB_PUBREC
                                              : OB_PUBCOMP;
    /* A PUBREC again while PUBCOMP is awaited: its PUBREL was lost. */
    if (f && pkt->type == MQTT_PUBREC && f->state == OB_PUBCOMP) {
        session5_send_ack(c, MQTT_PUBREL, pid, 0);
        return still_open(c) ? FEED_OK : FEED_CLOSED;
    }
    if (!f || f->state != want) {
        session_violation(c, SESSION_ERR_UNEXPECTED_ACK,
                          "unexpected %s for id %u (no server PUBLISH awaits it)",
                          mqtt_type_name(pkt->type), pid);
        return FEED_CLOSED;
    }
    /* MQTT 5: a PUBREC with a reason code >= 0x80 ends the exchange. */
    if (pkt->type == MQTT_PUBREC && !(c->p5 && c->p5->reason >= 0x80)) {
        ob->bytes -= qentry_bytes(f->e);
        dl_qentry_free(f->e);
        f->e = NULL;
        f->state = OB_PUBCOMP;
        session5_send_ack(c, MQTT_PUBREL, pid, 0);
        if (!still_open(c))
            return FEED_CLOSED;
    } else {
        fl_remove(ob, (uint32_t)i);
    }
    flush(c);
    return c->state == CONN_CONNECTED ? FEED_OK : FEED_CLOSED;
}

/* What the uplink's headers say about a record that came from MQTT (the
 * round trip): its publisher's client id and its RETAIN flag. */
static void origin_of(const dl_header_t *h, size_t n, const char **cid, size_t *cid_len,
                      bool *retain, uint32_t *expiry_s) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(h[i].name, "mqtt.client_id") == 0 && h[i].value) {
            *cid = h[i].value;
            *cid_len = h[i].value_len;
        } else if (strcmp(h[i].name, "mqtt.retain") == 0) {
            *retain = h[i].value_len == 1 && ((const char *)h[i].value)[0] == '1';
        } else if (strcmp(h[i].name, "mqtt.message_expiry") == 0) {
            *expiry_s = dl_expiry_parse(h[i].value, h[i].value ? h[i].value_len : 0);
        }
    }
}

size_t session_mgr_deliver(session_mgr_t *m, const char *topic, size_t topic_len,
                           const void *payload, size_t len, uint8_t qos, const dl_header_t *headers,
                           size_t n_headers) {
    return session_mgr_deliver_at(m, topic, topic_len, payload, len, qos, headers, n_headers, -1);
}

/* One record as the delivery loop sees it: views (into the caller's record,
 * or into `shared`), and the message made once for every worker when there
 * is one (session_mgr_deliver_msg). */
typedef struct {
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t len;
    uint8_t qos;
    const uint8_t *props;
    size_t plen;
    const char *origin;
    size_t origin_len;
    bool published_retain;
    uint64_t expires_ms;
    dl_msg_t *shared; /* RETAIN 0's message (not changed here), or NULL: made when queued */
} dview_t;

static size_t deliver(session_mgr_t *m, const dview_t *v);

/* What is left of a record's message expiry at m's wall clock, in ms (<= 0:
 * past): it counts from the record's timestamp, its age in Kafka is time
 * waited. */
static int64_t expiry_left(const session_mgr_t *m, uint32_t expiry_s, int64_t timestamp_ms) {
    int64_t age = timestamp_ms >= 0 && m->wall_ms > timestamp_ms ? m->wall_ms - timestamp_ms : 0;
    return (int64_t)expiry_s * 1000 - age;
}

size_t session_mgr_deliver_at(session_mgr_t *m, const char *topic, size_t topic_len,
                              const void *payload, size_t len, uint8_t qos,
                              const dl_header_t *headers, size_t n_headers, int64_t timestamp_ms) {
    if (topic_len > 65535 || dl_subs_match(m->subs, topic, topic_len, &m->matches) != 0 ||
        !m->matches.n)
        return 0;
    dview_t v = {
        .topic = topic, .topic_len = topic_len, .payload = payload, .len = len, .qos = qos};
    uint32_t expiry_s = 0;
    origin_of(headers, n_headers, &v.origin, &v.origin_len, &v.published_retain, &expiry_s);
    /* One already past its expiry goes to nobody. */
    if (expiry_s) {
        int64_t left = expiry_left(m, expiry_s, timestamp_ms);
        if (left <= 0) {
            m->qstats.expired += m->matches.n;
            return 0;
        }
        v.expires_ms = m->mono_ms + (uint64_t)left;
    }
    /* MQTT 5 user properties from the headers, once per record. */
    size_t plen = n_headers ? user_props(NULL, headers, n_headers) : 0;
    uint8_t *props = plen ? malloc(plen) : NULL;
    if (props)
        user_props(props, headers, n_headers);
    else
        plen = 0;
    v.props = props;
    v.plen = plen;
    size_t n = deliver(m, &v);
    free(props);
    return n;
}

dl_msg_t *session_mgr_dl_msg(const session_mgr_t *m, const char *topic, size_t topic_len,
                             const void *payload, size_t len, uint8_t qos,
                             const dl_header_t *headers, size_t n_headers, int64_t timestamp_ms) {
    if (topic_len > 65535)
        return NULL;
    dl_msg_spec_t sp = {.topic = topic,
                        .topic_len = topic_len,
                        .payload = payload,
                        .len = len,
                        .qos = qos,
                        .props_len = n_headers ? user_props(NULL, headers, n_headers) : 0};
    uint32_t expiry_s = 0;
    origin_of(headers, n_headers, &sp.origin, &sp.origin_len, &sp.published_retain, &expiry_s);
    dl_msg_t *msg = dl_msg_make(&sp);
    if (!msg)
        return NULL;
    if (sp.props_len)
        user_props(msg->props, headers, n_headers);
    if (expiry_s) { /* 1: past on every loop's clock */
        int64_t left = expiry_left(m, expiry_s, timestamp_ms);
        msg->expires_ms = left > 0 ? m->mono_ms + (uint64_t)left : 1;
    }
    return msg;
}

size_t session_mgr_deliver_msg(session_mgr_t *m, dl_msg_t *msg) {
    if (dl_subs_match(m->subs, msg->topic, msg->topic_len, &m->matches) != 0 || !m->matches.n)
        return 0;
    if (msg->expires_ms && msg->expires_ms <= m->mono_ms) {
        m->qstats.expired += m->matches.n;
        return 0;
    }
    dview_t v = {.topic = msg->topic,
                 .topic_len = msg->topic_len,
                 .payload = msg->payload,
                 .len = msg->len,
                 .qos = msg->qos,
                 .props = msg->props,
                 .plen = msg->props_len,
                 .origin = msg->origin,
                 .origin_len = msg->origin_len,
                 .published_retain = msg->published_retain,
                 .expires_ms = msg->expires_ms,
                 .shared = msg};
    return deliver(m, &v);
}

/* To each session of m->matches (made by the caller). */
static size_t deliver(session_mgr_t *m, const dview_t *v) {
    const char *topic = v->topic, *origin = v->origin;
    size_t topic_len = v->topic_len, len = v->len, plen = v->plen, origin_len = v->origin_len;
    const void *payload = v->payload;
    const uint8_t *props = v->props;
    uint8_t qos = v->qos;
    bool published_retain = v->published_retain;
    uint64_t expires_ms = v->expires_ms;
    size_t n = 0;
    dl_msg_t *msg[2] = {NULL, NULL}; /* made once each (RETAIN 0, 1), when first queued */
    for (size_t i = 0; i < m->matches.n; i++) {
        const dl_match_t *x = &m->matches.v[i];
        session_t *s = store_find_id(m, (uint32_t)x->client);
        if (!s)
            continue;
        /* MQTT 5 no local: the publisher's own subscriptions with it do not count. */
        uint8_t sq = origin && origin_len == s->client_id_len &&
                             memcmp(origin, s->client_id, origin_len) == 0
                         ? x->qos_local
                         : x->qos;
        if (sq == DL_QOS_NONE)
            continue;
        bool retain = published_retain && x->rap; /* MQTT 5 retain as published */
        session_conn_t *c = s->conn && s->conn->state == CONN_CONNECTED ? s->conn : NULL;
        uint8_t q = sq < qos ? sq : qos;
        size_t xlen = x->ids ? sub_id_props(m, x->ids) : 0; /* MQTT 5 */
        const uint8_t *xb = m->xids;
        if (c && !q && (!s->ob || !s->ob->q.n)) { /* the fast path: written at once */
            if (!read_allowed(c, topic, topic_len)) {
                m->st.delivery_denied++;
            } else if (send_publish(c, retain, 0, topic, topic_len, xb, xlen, props, plen, payload,
                                    len, expires_ms) > 0) {
                m->st.deliveries[0]++;
                n++;
            }
            continue;
        }
        if (!c && s->clean)
            continue; /* a session ending with its connection */
        if (!msg[retain] && !retain && v->shared) {
            msg[0] = dl_msg_ref(v->shared);
        } else if (!msg[retain]) {
            if (!(msg[retain] =
                      dl_msg_new_props(topic, topic_len, props, plen, payload, len, qos, retain)))
                break;
            msg[retain]->expires_ms = expires_ms;
        }
        /* A session kept without a connection stays within
         * mqtt.max_session_bytes (this worker's share), with the others kept. */
        if (!c && list_linked(&s->detached) &&
            m->st.persistent_session_bytes - s->held + store_held(s) +
                    entry_bytes(msg[retain], xlen) + (s->ob ? 0 : sizeof(outbound_t)) >
                session_budget(m)) {
            m->st.delivery_session_bytes++;
            continue;
        }
        if (!outbound_get(m, s) || ob_push(m, s->ob, msg[retain], q, xb, xlen) < 0)
            continue; /* refused: counted in qstats (or out of memory) */
        n++;
        if (c)
            flush(c);
        else
            store_resize(m, s);
    }
    dl_msg_unref(msg[0]);
    dl_msg_unref(msg[1]);
    return n;
}

size_t session_mgr_subscription_count(const session_mgr_t *m) {
    return dl_subs_count(m->subs);
}

const dl_queue_stats_t *session_mgr_queue_stats(const session_mgr_t *m) {
    return &m->qstats;
}
