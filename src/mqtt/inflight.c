/* The in-flight window. Each session keeps a FIFO ring of the PUBLISHes it has
 * taken and not yet answered, QoS 0 included so QoS 0 is paced like the rest.
 * A delivery report completes its entry (found by the session id and the
 * sequence number packed into the opaque); completed entries are popped from
 * the head only, so acks leave in the order the PUBLISHes arrived. Answers
 * that need no Kafka round trip (QoS 2 duplicate, dropped message) also go
 * through the ring so they cannot overtake earlier acks. Also here: the QoS 2
 * ids awaiting PUBREL, and backpressure (a full window, a full producer
 * queue). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

int ring_grow(session_mgr_t *m, session_t *s) {
    uint32_t max = max_inflight(m);
    uint32_t cap = s->ring_cap ? s->ring_cap * 2 : 8;
    if (cap > max)
        cap = max;
    if (cap <= s->ring_cap)
        return -1;
    inflight_t *r = malloc((size_t)cap * sizeof(*r));
    if (!r)
        return -1;
    for (uint32_t i = 0; i < s->ring_count; i++)
        r[i] = *ring_at(s, i);
    free(s->ring);
    s->ring = r;
    s->ring_cap = cap;
    s->ring_head = 0;
    return 0;
}

void ring_release_idle(session_t *s) {
    if (s->ring && s->ring_count == 0 && !s->ring_used) {
        free(s->ring);
        s->ring = NULL;
        s->ring_cap = s->ring_head = 0;
    }
    s->ring_used = false;
}

void ring_shrink(session_t *s) {
    if (s->ring_count == 0) {
        free(s->ring);
        s->ring = NULL;
        s->ring_cap = s->ring_head = 0;
    } else if (s->ring_cap > s->ring_count) {
        inflight_t *r = malloc((size_t)s->ring_count * sizeof(*r));
        if (r) { /* else it keeps its size, counted as such */
            for (uint32_t i = 0; i < s->ring_count; i++)
                r[i] = *ring_at(s, i);
            free(s->ring);
            s->ring = r;
            s->ring_cap = s->ring_count;
            s->ring_head = 0;
        }
    }
    if (s->pubrel_count == 0) {
        free(s->pubrel);
        s->pubrel = NULL;
        s->pubrel_cap = 0;
    } else if (s->pubrel_cap > s->pubrel_count) {
        session_qos2_id_t *p = realloc(s->pubrel, s->pubrel_count * sizeof(*p));
        if (p) {
            s->pubrel = p;
            s->pubrel_cap = s->pubrel_count;
        }
    }
}

int pubrel_index(const session_t *s, uint16_t pid) {
    for (uint32_t i = 0; i < s->pubrel_count; i++)
        if (s->pubrel[i].id == pid)
            return (int)i;
    return -1;
}

bool pubrel_has(const session_t *s, uint16_t pid) {
    return pubrel_index(s, pid) >= 0;
}

bool pubrel_remove(session_t *s, uint16_t pid) {
    int at = pubrel_index(s, pid);
    if (at < 0)
        return false;
    uint32_t i = (uint32_t)at;
    if (i < s->pubrel_restored) { /* the restored ids stay a prefix */
        s->pubrel[i] = s->pubrel[--s->pubrel_restored];
        i = s->pubrel_restored;
    }
    s->pubrel[i] = s->pubrel[--s->pubrel_count];
    return true;
}

static void pubrel_add(session_t *s, uint16_t pid, uint64_t hash) {
    if (pubrel_has(s, pid))
        return;
    if (s->pubrel_count == s->pubrel_cap) {
        uint32_t cap = s->pubrel_cap ? s->pubrel_cap * 2 : 8;
        session_qos2_id_t *p = realloc(s->pubrel, cap * sizeof(*p));
        if (!p) {
            /* The admission bound keeps this rare; without the id a resend
             * would be produced twice, which is what QoS 1 would give. */
            log_error("session %" PRIu32 ": out of memory recording QoS 2 id %u", s->id, pid);
            return;
        }
        s->pubrel = p;
        s->pubrel_cap = cap;
    }
    s->pubrel[s->pubrel_count++] = (session_qos2_id_t){hash, pid};
}

void ring_pop_completed(session_mgr_t *m, session_t *s) {
    while (s->ring_count) {
        inflight_t *e = ring_at(s, 0);
        if (e->state == IF_PENDING)
            break;
        if (e->state == IF_OK && e->qos == 2)
            pubrel_add(s, e->packet_id, e->hash);
        else if (e->qos == 2)
            qos2_changed(m, s);
        if ((e->state == IF_OK || e->state == IF_NACK) && e->ack_gen && s->conn &&
            e->ack_gen == s->conn_gen) {
            mqtt_type_t t = e->qos == 2 ? MQTT_PUBREC : MQTT_PUBACK;
            if (e->reason)
                session5_send_ack_why(s->conn, t, e->packet_id, e->reason,
                                      e->spool_full ? SESSION_SPOOL_FULL_WHY : NULL);
            else
                session_send_ack(s->conn, t, e->packet_id);
            if (m->o.ack_latency)
                m->o.ack_latency(m->o.ack_latency_ud, (uint32_t)m->mono_us - e->recv_us);
        }
        if (e->qos == 2)
            s->ring_qos2--;
        else if (e->qos == 1)
            s->ring_qos1--;
        s->ring_again -= e->again;
        if (++s->ring_head == s->ring_cap)
            s->ring_head = 0;
        s->ring_count--;
        s->head_seq++;
    }
    if (!s->conn && list_linked(&s->detached)) {
        /* A kept session's last report: nothing in flight, no ring. */
        if (s->ring_count == 0 && s->ring) {
            free(s->ring);
            s->ring = NULL;
            s->ring_cap = s->ring_head = 0;
        }
        store_resize(m, s);
    }
}

static int ring_push(session_conn_t *c, uint8_t qos, uint16_t pid, uint8_t reason, bool again,
                     bool spool_full);

int ring_push_done(session_conn_t *c, uint8_t qos, uint16_t pid) {
    return ring_push(c, qos, pid, 0, false, false);
}

int ring_push_reason(session_conn_t *c, uint8_t qos, uint16_t pid, uint8_t reason) {
    return ring_push(c, qos, pid, reason, false, false);
}

int ring_push_spool_full(session_conn_t *c, uint8_t qos, uint16_t pid) {
    return ring_push(c, qos, pid, MQTT5_RC_QUOTA_EXCEEDED, false, true);
}

int ring_push_again(session_conn_t *c, uint16_t pid) {
    return ring_push(c, 2, pid, 0, true, false);
}

static int ring_push(session_conn_t *c, uint8_t qos, uint16_t pid, uint8_t reason, bool again,
                     bool spool_full) {
    session_t *s = c->s;
    if (ring_reserve(c->mgr, s) != 0)
        return -1;
    inflight_t *e = ring_at(s, s->ring_count);
    memset(e, 0, sizeof(*e));
    e->ack_gen = c->gen;
    e->packet_id = pid;
    e->qos = qos & 3;
    e->state = reason >= 0x80 ? IF_NACK : IF_OK;
    e->reason = reason;
    e->again = again;
    e->spool_full = spool_full;
    s->ring_again += again;
    if (qos == 2)
        qos2_changed(c->mgr, s);
    e->recv_us = (uint32_t)c->mgr->mono_us;
    s->ring_count++;
    s->ring_qos2 += qos == 2;
    s->ring_qos1 += qos == 1;
    s->next_seq++;
    s->ring_used = true;
    ring_pop_completed(c->mgr, s);
    return 0;
}

/* ---- backpressure ---------------------------------------------------------- */

void inflight_pause(session_conn_t *c) {
    c->paused_inflight = true;
    if (log_get_level() >= LOG_DEBUG) {
        char idb[LOG_ID_MAX];
        log_client(LOG_DEBUG, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "%u messages in flight, pausing reads", c->s->ring_count);
    }
    if (!c->paused_queue)
        c->ops->pause(c->ud);
}

/* Resumes reading once the window has drained to its low-water mark, so a
 * busy client does not stop and start on every report. */
static void maybe_resume(session_conn_t *c) {
    uint32_t max = max_inflight(c->mgr);
    uint32_t low = max - 1 - max / 4;
    if (c->state != CONN_CLOSED && c->paused_inflight && c->s && c->s->ring_count <= low) {
        c->paused_inflight = false;
        if (!c->paused_queue)
            c->ops->resume(c->ud);
    }
}

void inflight_block(session_conn_t *c) {
    if (!list_linked(&c->blocked)) {
        char idb[LOG_ID_MAX];
        log_client(LOG_DEBUG, session_log_id(c, idb, sizeof(idb)), c->remote,
                   "producer queue full, pausing until reports drain");
        list_insert_head(&c->mgr->blocked, &c->blocked);
    }
    if (!c->paused_queue) {
        c->paused_queue = true;
        if (!c->paused_inflight)
            c->ops->pause(c->ud);
    }
}

void inflight_wake_blocked(session_mgr_t *m) {
    list_t *n;
    while ((n = list_first(&m->blocked)) != NULL) {
        session_conn_t *c = LIST_ENTRY(n, session_conn_t, blocked);
        list_remove(n);
        c->paused_queue = false;
        if (!c->paused_inflight)
            c->ops->resume(c->ud);
    }
}

/* ---- delivery reports -------------------------------------------------------- */

void session_on_delivery(session_mgr_t *m, uint64_t opaque, int err, const char *errstr) {
    bool copy = opaque & SESSION_OPAQUE_COPY_BIT;
    uint32_t id = (uint32_t)(opaque >> 32) & INT32_MAX, seq = (uint32_t)opaque;
    if (err == 0)
        m->st.delivered++;
    else
        m->st.delivery_failed++;
    if (id == 0) {
        bool retained = opaque == SESSION_OPAQUE_RETAINED;
        if (err && retained)
            m->st.retained_lost++;
        if (err)
            log_ratelimited(&m->rl->delivery, LOG_ERROR, "%s not delivered to Kafka: %s",
                            retained ? "retained copy of a message" : "will message",
                            errstr ? errstr : "?");
        inflight_wake_blocked(m);
        return;
    }
    session_t *s = store_find_id(m, id);
    uint32_t off = s ? seq - s->head_seq : 0;
    inflight_t *e = s && off < s->ring_count ? ring_at(s, off) : NULL;
    if (!e || e->state != IF_PENDING || (copy ? !e->copy || e->owed : e->mapped_in)) {
        if (err)
            log_ratelimited(&m->rl->delivery, LOG_WARN,
                            "delivery failed for a message of a session that is gone: %s",
                            errstr ? errstr : "?");
        else
            log_debug("delivery report for a session that is gone (opaque %" PRIx64 ")", opaque);
        inflight_wake_blocked(m);
        return;
    }
    if (err) {
        char idb[LOG_ID_MAX], tb[LOG_ID_MAX];
        log_client_ratelimited(&m->rl->delivery, LOG_ERROR,
                               session_log_str(idb, sizeof(idb), s->client_id, s->client_id_len),
                               s->conn ? s->conn->remote : NULL,
                               "Kafka did not take %sa QoS %u message on topic '%s%s': %s",
                               copy ? "the retained copy of " : "", e->qos,
                               session_log_str(tb, sizeof(tb), e->topic, e->topic_len),
                               e->topic_len == INFLIGHT_TOPIC_MAX ? "..." : "",
                               errstr ? errstr : "?");
        e->reason = MQTT5_RC_UNSPECIFIED;
    }
    if (copy)
        e->copy = 0;
    else
        e->mapped_in = 1;
    if (e->copy || !e->mapped_in) { /* the other report is still to come */
        inflight_wake_blocked(m);
        return;
    }
    inflight_settle(m, s, id, e);
}

void inflight_settle(session_mgr_t *m, session_t *s, uint32_t id, inflight_t *e) {
    session_conn_t *c = s->conn;
    bool close_conn = false;
    if (!e->reason) {
        e->state = IF_OK;
    } else {
        e->state = IF_FAILED;
        /* The client resends what it got no ack for once it reconnects. An
         * MQTT 5 client is told instead: PUBACK/PUBREC 0x80, and it decides. */
        close_conn = c && e->ack_gen && e->ack_gen == s->conn_gen;
        if (close_conn && c->v5) {
            close_conn = false;
            e->state = IF_NACK;
            e->reason = MQTT5_RC_UNSPECIFIED;
        }
    }
    if (close_conn) {
        /* Close before popping: no later ack may overtake the missing one. */
        session_end(c, NULL, LOG_WARN, true, true,
                    "Kafka did not confirm a message; the client must resend it");
        s = store_find_id(m, id); /* a clean session is gone with its connection */
        if (s)
            ring_pop_completed(m, s);
        inflight_wake_blocked(m);
        return;
    }
    ring_pop_completed(m, s);
    if (c) {
        if (c->state == CONN_CLOSING)
            session_end(c, NULL, LOG_WARN, true, true, "output buffer limit reached");
        else
            maybe_resume(c);
    }
    inflight_wake_blocked(m);
}

void inflight_abandon_owed(session_mgr_t *m, session_t *s) {
    inflight_t *e = s->ring_count ? ring_at(s, s->ring_count - 1) : NULL;
    if (!e || e->state != IF_PENDING || !e->owed)
        return;
    e->owed = 0;
    e->copy = 0;
    e->reason = MQTT5_RC_UNSPECIFIED;
    if (e->mapped_in) { /* no ack can reach the connection that is closing */
        e->state = IF_FAILED;
        ring_pop_completed(m, s);
    }
}
