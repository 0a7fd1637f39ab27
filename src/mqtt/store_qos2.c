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

void session_mgr_qos2_durable(session_mgr_t *m, uint64_t opaque) {
    bool copy = opaque & SESSION_OPAQUE_COPY_BIT;
    uint32_t id = (uint32_t)(opaque >> 32) & INT32_MAX, seq = (uint32_t)opaque;
    session_t *s = id ? store_find_id(m, id) : NULL;
    uint32_t off = s ? seq - s->head_seq : 0;
    if (!s || off >= s->ring_count)
        return;
    inflight_t *e = ring_at(s, off);
    if (e->state != IF_PENDING || e->qos != 2 || e->durable)
        return;
    if (copy)
        e->copy_durable = 1;
    else
        e->map_durable = 1;
    /* RETAIN 1: durable once its retained copy is too (a copy's event comes
     * before its report, so one no longer awaited was durable). */
    if (e->map_durable && (e->copy_durable || !(e->copy || e->owed))) {
        e->durable = 1;
        qos2_changed(m, s);
    }
}

void session_mgr_qos2_set_key(session_mgr_t *m, const uint8_t key[16]) {
    memcpy(m->qos2_key, key, sizeof(m->qos2_key));
    m->qos2_keyed = true;
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

static void walk_one(hmap_node_t *n, void *ud) {
    walk_t *w = ud;
    session_t *s = HMAP_ENTRY(n, session_t, by_id);
    if (w->rc != 0 || s->clean || (s->pubrel_count == 0 && s->ring_qos2 == 0))
        return;
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

int session_mgr_qos2_each(session_mgr_t *m, session_qos2_each_fn each, void *ctx) {
    walk_t w = {each, ctx, NULL, 0, 0};
    hmap_each(&m->by_id, walk_one, &w);
    free(w.ids);
    return w.rc;
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
    /* Kept as any session without a connection: session expiry and the
     * bounds on detached sessions apply from now. */
    store_detach(m, s);
    return 0;
}
