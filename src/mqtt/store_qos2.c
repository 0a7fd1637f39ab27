/* QoS 2 ids across a restart (session.h, session_mgr_qos2_*): what sessions
 * that outlive their connection hold between PUBLISH and PUBREL, read out
 * for the spool's state file and put back at start as detached sessions. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"
#include "util/hash.h"

uint64_t session_mgr_qos2_version(const session_mgr_t *m) {
    return m->qos2_version;
}

bool session_mgr_qos2_durable(session_mgr_t *m, uint64_t opaque) {
    bool copy = opaque & SESSION_OPAQUE_COPY_BIT;
    uint32_t id = (uint32_t)(opaque >> 32) & INT32_MAX, seq = (uint32_t)opaque;
    session_t *s = id ? store_find_id(m, id) : NULL;
    uint32_t off = s ? seq - s->head_seq : 0;
    if (!s || off >= s->ring_count)
        return false;
    inflight_t *e = ring_at(s, off);
    if (e->state != IF_PENDING || e->qos != 2)
        return false;
    if (!e->durable) {
        if (copy)
            e->copy_durable = 1;
        else
            e->map_durable = 1;
        /* RETAIN 1: durable once its retained copy is too (a copy's event
         * comes before its report, so one no longer awaited was durable). */
        if (e->map_durable && (e->copy_durable || !(e->copy || e->owed))) {
            e->durable = 1;
            qos2_changed(m, s);
        }
    }
    return !s->clean;
}

/* ---- PUBCOMP after the release is saved ------------------------------------ */

/* A PUBCOMP that waits for the state of `version` to be on disk. */
struct qos2_pubcomp {
    uint64_t version;
    uint32_t sid, gen;
    uint16_t pid;
};

int qos2_pubrel(session_conn_t *c, uint16_t pid) {
    session_mgr_t *m = c->mgr;
    session_t *s = c->s;
    if (pubrel_remove(s, pid))
        qos2_changed(m, s);
    /* Once the client has PUBCOMP it may reuse the id: the state file must
     * not hold it then, or a crash would take the new message's resend for
     * the old one. An unknown id waits too when anything is unsaved: it may
     * be a PUBREL again whose release is not on disk yet. */
    if (!m->qos2_keyed || s->clean || m->qos2_version == m->qos2_saved) {
        session_send_ack(c, MQTT_PUBCOMP, pid);
        return FEED_OK;
    }
    if (m->pubcomp_n == m->pubcomp_cap && m->pubcomp_head > 0) {
        memmove(m->pubcomp, m->pubcomp + m->pubcomp_head,
                (m->pubcomp_n - m->pubcomp_head) * sizeof(*m->pubcomp));
        m->pubcomp_n -= m->pubcomp_head;
        m->pubcomp_head = 0;
    }
    if (m->pubcomp_n == m->pubcomp_cap) {
        size_t cap = m->pubcomp_cap ? m->pubcomp_cap * 2 : 64;
        struct qos2_pubcomp *p =
            cap <= SESSION_QOS2_PUBCOMP_MAX ? realloc(m->pubcomp, cap * sizeof(*p)) : NULL;
        if (!p) {
            m->st.qos2_pubcomp_wait_full++;
            session_end(c, &m->rl->spool_drop, LOG_ERROR, true, true,
                        "%zu PUBCOMPs wait for the QoS 2 state to be saved; the client sends "
                        "PUBREL again",
                        m->pubcomp_n - m->pubcomp_head);
            return FEED_CLOSED;
        }
        m->pubcomp = p;
        m->pubcomp_cap = cap;
    }
    m->pubcomp[m->pubcomp_n++] = (struct qos2_pubcomp){m->qos2_version, s->id, c->gen, pid};
    return FEED_OK;
}

void session_mgr_qos2_saved(session_mgr_t *m, uint64_t version) {
    m->qos2_saved = version;
    while (m->pubcomp_head < m->pubcomp_n && m->pubcomp[m->pubcomp_head].version <= version) {
        const struct qos2_pubcomp *p = &m->pubcomp[m->pubcomp_head++];
        session_t *s = store_find_id(m, p->sid);
        /* Another connection's: the client sends PUBREL again on that one. */
        if (s && s->conn && s->conn->gen == p->gen && s->conn->state == CONN_CONNECTED)
            session_send_ack(s->conn, MQTT_PUBCOMP, p->pid);
    }
    if (m->pubcomp_head == m->pubcomp_n)
        m->pubcomp_head = m->pubcomp_n = 0;
}

size_t session_mgr_qos2_pubcomps_waiting(const session_mgr_t *m) {
    return m->pubcomp_n - m->pubcomp_head;
}

void session_mgr_qos2_save_failed(session_mgr_t *m) {
    m->st.qos2_save_failures++;
}

void qos2_free(session_mgr_t *m) {
    free(m->qos2_sids);
    m->qos2_sids = NULL;
    m->qos2_n = m->qos2_cap = 0;
    free(m->pubcomp);
    m->pubcomp = NULL;
    m->pubcomp_head = m->pubcomp_n = m->pubcomp_cap = 0;
}

void session_mgr_qos2_set_key(session_mgr_t *m, const uint8_t key[16]) {
    memcpy(m->qos2_key, key, sizeof(m->qos2_key));
    m->qos2_keyed = true;
    m->qos2_all = true; /* the first walk lists what is there */
}

void qos2_list(session_mgr_t *m, session_t *s) {
    if (m->qos2_n == m->qos2_cap) {
        size_t cap = m->qos2_cap ? m->qos2_cap * 2 : 64;
        uint32_t *v = realloc(m->qos2_sids, cap * sizeof(*v));
        if (!v) {
            m->qos2_all = true;
            return;
        }
        m->qos2_sids = v;
        m->qos2_cap = cap;
    }
    m->qos2_sids[m->qos2_n++] = s->id;
    s->qos2_listed = true;
}

/* The payload's hash keys the topic's: no pair of (topic, payload) splits
 * the same bytes differently into the same input. */
uint64_t session_mgr_qos2_hash(const session_mgr_t *m, const void *topic, size_t topic_len,
                               const void *payload, size_t payload_len) {
    uint8_t key[16];
    memcpy(key, m->qos2_key, sizeof(key));
    uint64_t h = m2k_siphash24(key, payload, payload_len);
    for (int i = 0; i < 8; i++)
        key[i] ^= (uint8_t)(h >> (8 * i));
    h = m2k_siphash24(key, topic, topic_len);
    return h ? h : 1;
}

typedef struct {
    session_qos2_each_fn each;
    void *ctx;
    session_qos2_id_t *ids;
    size_t cap;
    int rc;
} walk_t;

static bool holds_ids(const session_t *s) {
    return !s->clean && (s->pubrel_count || s->ring_qos2);
}

static void walk_session(walk_t *w, session_t *s) {
    size_t need = (size_t)s->pubrel_count + s->ring_qos2;
    if (need > w->cap) {
        session_qos2_id_t *ids = realloc(w->ids, need * sizeof(*ids));
        if (!ids) {
            w->rc = -1;
            return;
        }
        w->ids = ids;
        w->cap = need;
    }
    size_t k = s->pubrel_count;
    if (k)
        memcpy(w->ids, s->pubrel, k * sizeof(*w->ids));
    /* In flight: only what is durable (PUBREC follows this save). A pending
     * message not yet synced, a failed or a refused one is not the
     * client's to resend as a duplicate. */
    for (uint32_t i = 0; i < s->ring_count && k < need; i++) {
        const inflight_t *e = ring_at(s, i);
        if (e->qos == 2 && !e->again &&
            (e->state == IF_OK || (e->state == IF_PENDING && e->durable)))
            w->ids[k++] = (session_qos2_id_t){e->hash, e->packet_id};
    }
    if (k)
        w->each(w->ctx, s->client_id, s->client_id_len, w->ids, k);
}

typedef struct {
    walk_t w;
    session_mgr_t *m;
} walk_all_t;

/* Every session; with a key, the list is built anew on the way. */
static void walk_one(hmap_node_t *n, void *ud) {
    walk_all_t *a = ud;
    session_t *s = HMAP_ENTRY(n, session_t, by_id);
    s->qos2_listed = false;
    if (a->w.rc != 0 || !holds_ids(s))
        return;
    if (a->m->qos2_keyed)
        qos2_list(a->m, s);
    walk_session(&a->w, s);
}

/* With a key, only the listed sessions: those holding ids, and those that
 * changed since the last walk (dropped from the list when they hold none:
 * a session gone, or whose ids were all released). */
int session_mgr_qos2_each(session_mgr_t *m, session_qos2_each_fn each, void *ctx) {
    walk_all_t a = {{each, ctx, NULL, 0, 0}, m};
    if (!m->qos2_keyed || m->qos2_all) {
        m->qos2_all = false;
        m->qos2_n = 0;
        hmap_each(&m->by_id, walk_one, &a);
        if (a.w.rc != 0)
            m->qos2_all = true;
    } else {
        size_t kept = 0;
        for (size_t i = 0; i < m->qos2_n; i++) {
            session_t *s = store_find_id(m, m->qos2_sids[i]);
            if (!s)
                continue;
            if (!holds_ids(s)) {
                s->qos2_listed = false;
                continue;
            }
            m->qos2_sids[kept++] = s->id;
            if (a.w.rc == 0)
                walk_session(&a.w, s);
        }
        m->qos2_n = kept;
    }
    free(a.w.ids);
    return a.w.rc;
}

int session_mgr_qos2_restore(session_mgr_t *m, const char *cid, size_t len,
                             const session_qos2_id_t *ids, size_t n) {
    if (n == 0 || n > UINT16_MAX || store_find_cid(m, cid, len))
        return -1;
    session_t *s = store_create(m, cid, len, false);
    if (!s)
        return -1;
    s->pubrel = malloc(n * sizeof(*s->pubrel));
    if (!s->pubrel) {
        store_destroy(m, s);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!pubrel_has(s, ids[i].id))
            s->pubrel[s->pubrel_count++] = ids[i];
    s->pubrel_cap = (uint32_t)n;
    s->pubrel_restored = (uint16_t)s->pubrel_count;
    qos2_changed(m, s);
    /* Kept as any session without a connection: session expiry and the
     * bounds on detached sessions apply from now. */
    store_detach(m, s);
    return 0;
}
