/* The session store: sessions by client id (CONNECT) and by id (delivery
 * reports, see SESSION_OPAQUE), and the sessions kept without a connection
 * (clean session 0), oldest first, for expiry and for the bound on them. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

static uint64_t hash_id(const hmap_node_t *n) {
    return m2k_hash_u32(HMAP_ENTRY(n, session_t, by_id)->id);
}

static uint64_t hash_cid(const hmap_node_t *n) {
    const session_t *s = HMAP_ENTRY(n, session_t, by_cid);
    return m2k_hash_keyed(s->client_id, s->client_id_len);
}

void store_init(session_mgr_t *m) {
    hmap_init(&m->by_id, hash_id, 0);
    hmap_init(&m->by_cid, hash_cid, 0);
    /* Looked up only at CONNECT (by_id at every delivery report keeps 1):
     * two sessions a bucket halve this array, 8 bytes per 1-2 sessions
     * (idle memory, docs/performance.md). */
    hmap_set_load(&m->by_cid, 2);
    list_init(&m->detached);
}

static void free_session(hmap_node_t *n, void *ud) {
    session_t *s = HMAP_ENTRY(n, session_t, by_id);
    (void)ud;
    if (session_will(s)) /* the manager is freed: after shutdown published them */
        will_free(session_will(s));
    outbound_free(s);
    free(s->ring);
    free(s->pubrel);
    free(s);
}

void store_free(session_mgr_t *m) {
    qos2_free(m);
    hmap_each(&m->by_id, free_session, NULL);
    hmap_free(&m->by_id);
    hmap_free(&m->by_cid);
}

session_t *store_find_cid(const session_mgr_t *m, const char *cid, size_t len) {
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, &m->by_cid, m2k_hash_keyed(cid, len)) {
        session_t *s = HMAP_ENTRY(n, session_t, by_cid);
        if (s->client_id_len == len && memcmp(s->client_id, cid, len) == 0)
            return s;
    }
    return NULL;
}

session_t *store_create(session_mgr_t *m, const char *cid, size_t len, bool clean) {
    if (len > UINT16_MAX)
        return NULL;
    session_t *s = calloc(1, FLEX_SIZE(session_t, client_id, len + 1));
    if (!s)
        return NULL;
    memcpy(s->client_id, cid, len);
    s->client_id_len = (uint16_t)len;
    s->clean = clean;
    list_init(&s->detached);
    /* Ids are not reused while their session lives (0 is reserved for wills,
     * the top bit for SESSION_OPAQUE_COPY): after 2^31 - 1 sessions (25 days
     * at 1,000 new sessions a second) the counter wraps and skips the ids
     * still held, by a persistent session for example. A report for an id
     * released that long ago no longer exists (message.timeout.ms). */
    do {
        if (++m->next_session_id > INT32_MAX)
            m->next_session_id = 1;
    } while (store_find_id(m, m->next_session_id));
    s->id = m->next_session_id;
    if (hmap_insert(&m->by_id, &s->by_id, m2k_hash_u32(s->id)) != 0)
        goto fail;
    if (hmap_insert(&m->by_cid, &s->by_cid, m2k_hash_keyed(cid, len)) != 0) {
        hmap_remove(&m->by_id, &s->by_id, m2k_hash_u32(s->id));
        goto fail;
    }
    return s;
fail:
    free(s);
    return NULL;
}

/* What a session kept without a connection holds: the object with its
 * client id, its ring, its QoS 2 ids, a will waiting for its delay
 * (docs/security.md, "Memory") and its downlink messages. */
static size_t session_bytes(const session_t *s) {
    size_t n = sizeof(*s) + s->client_id_len + 1u + (size_t)s->ring_cap * sizeof(inflight_t) +
               (size_t)s->pubrel_cap * sizeof(*s->pubrel) +
               (session_will(s) ? will_bytes(session_will(s)) : 0) + outbound_bytes(s);
    return n < UINT32_MAX ? n : UINT32_MAX;
}

void store_attach(session_mgr_t *m, session_t *s) {
    will_cancel(m, s);
    if (list_linked(&s->detached)) {
        list_remove(&s->detached);
        m->n_detached--;
        m->n_detached_short -= session_expiry(s) != 0;
        m->st.persistent_sessions--;
        m->st.persistent_session_bytes -= s->held;
        s->held = 0;
    }
}

size_t store_held(const session_t *s) {
    return session_bytes(s);
}

int store_set_expiry(session_mgr_t *m, session_t *s, uint32_t expiry_s) {
    assert(!list_linked(&s->detached)); /* n_detached_short counts the detached */
    if (expiry_s == session_expiry(s))
        return 0;
    outbound_t *x = outbound_get(m, s);
    if (!x)
        return -1;
    x->expiry_s = expiry_s;
    return 0;
}

void store_resize(session_mgr_t *m, session_t *s) {
    if (!list_linked(&s->detached))
        return;
    m->st.persistent_session_bytes -= s->held;
    s->held = (uint32_t)session_bytes(s);
    m->st.persistent_session_bytes += s->held;
}

void store_destroy(session_mgr_t *m, session_t *s) {
    assert(!s->conn);
    /* The session ends before the will delay: the will goes now (3.1.3.2.2). */
    will_publish(m, s, "at the end of its session, before its will delay interval passed");
    if (s->pubrel_count || s->ring_qos2)
        qos2_changed(m, s);
    store_attach(m, s);
    hmap_remove(&m->by_id, &s->by_id, m2k_hash_u32(s->id));
    hmap_remove(&m->by_cid, &s->by_cid, m2k_hash_keyed(s->client_id, s->client_id_len));
    dl_subs_remove_client(m->subs, s->id); /* the subscriptions end with the session */
    outbound_free(s);
    free(s->ring);
    free(s->pubrel);
    free(s);
}

void store_detach(session_mgr_t *m, session_t *s) {
    s->conn = NULL;
    if (s->clean || m->cfg->mqtt.session_expiry_s == 0 || m->max_detached == 0) {
        store_destroy(m, s);
        return;
    }
    ring_shrink(s);
    uint64_t budget = session_budget(m), bytes = session_bytes(s);
    char idb[LOG_ID_MAX];
    while (m->n_detached >= m->max_detached && !list_empty(&m->detached)) {
        session_t *old = LIST_ENTRY(list_first(&m->detached), session_t, detached);
        log_client_ratelimited(
            &m->rl->evict, LOG_WARN,
            session_log_str(idb, sizeof(idb), old->client_id, old->client_id_len), NULL,
            "session limit: %zu sessions kept without a connection; discarding the "
            "oldest",
            m->n_detached);
        m->st.sessions_evicted++;
        store_destroy(m, old);
    }
    while (m->st.persistent_session_bytes + bytes > budget && !list_empty(&m->detached)) {
        session_t *old = LIST_ENTRY(list_first(&m->detached), session_t, detached);
        log_client_ratelimited(
            &m->rl->evict, LOG_WARN,
            session_log_str(idb, sizeof(idb), old->client_id, old->client_id_len), NULL,
            "session limit: %" PRIu64 " + %" PRIu64
            " bytes kept without a connection over mqtt.max_session_bytes %" PRIu64
            "; discarding the oldest",
            m->st.persistent_session_bytes, bytes, budget);
        m->st.sessions_evicted_bytes++;
        store_destroy(m, old);
    }
    if (bytes > budget) { /* alone over the budget (a large window in flight) */
        log_client_ratelimited(
            &m->rl->evict, LOG_WARN,
            session_log_str(idb, sizeof(idb), s->client_id, s->client_id_len), NULL,
            "session limit: %" PRIu64 " bytes over mqtt.max_session_bytes %" PRIu64 "; not kept",
            bytes, budget);
        m->st.sessions_evicted_bytes++;
        store_destroy(m, s);
        return;
    }
    s->detached_at = m->mono_ms;
    list_insert_tail(&m->detached, &s->detached);
    m->n_detached++;
    m->n_detached_short += session_expiry(s) != 0;
    m->st.persistent_sessions++;
    s->held = (uint32_t)session_bytes(s);
    m->st.persistent_session_bytes += s->held;
}

void store_expire(session_mgr_t *m) {
    uint32_t cfg_s = m->cfg->mqtt.session_expiry_s;
    list_t *it, *nx;
    /* Oldest first: while every detached session has session_expiry_s the
     * first one not due ends the walk; an MQTT 5 session with a shorter
     * interval of its own can be due behind it, so then all are looked at. */
    LIST_FOREACH_SAFE(it, nx, &m->detached) {
        session_t *s = LIST_ENTRY(it, session_t, detached);
        uint32_t e = session_expiry(s), expiry_s = e && e < cfg_s ? e : cfg_s;
        if (m->mono_ms - s->detached_at < (uint64_t)expiry_s * 1000u) {
            if (m->n_detached_short == 0)
                break;
            continue;
        }
        char idb[LOG_ID_MAX];
        log_client(LOG_INFO, session_log_str(idb, sizeof(idb), s->client_id, s->client_id_len),
                   NULL, "session expired after %u s without a connection", expiry_s);
        m->st.sessions_expired++;
        store_destroy(m, s);
    }
}

/* ---- read-only views (session.h) ---- */

size_t session_mgr_list_clients(const session_mgr_t *m, size_t offset,
                                bool (*each)(void *ctx, const session_client_info_t *), void *ctx) {
    size_t total = 0;
    bool more = true;
    /* New connections are inserted at the head: the tail is the oldest. */
    for (const list_t *n = m->conns.prev; n != &m->conns; n = n->prev) {
        const session_conn_t *c = LIST_ENTRY(n, session_conn_t, node);
        if (c->state != CONN_CONNECTED || !c->s)
            continue;
        if (more && total >= offset) {
            const char *user = c->has_username ? c->username : NULL;
            session_client_info_t info = {
                .client_id = c->s->client_id,
                .remote = c->remote,
                .username = user,
                .username_len = c->username_len,
                .protocol_level = c->level,
                .inflight = c->s->ring_count,
                .paused = c->paused_inflight || c->paused_queue,
                .ud = c->ud,
            };
            more = each(ctx, &info);
        }
        total++;
    }
    return total;
}

size_t session_mgr_list_detached(const session_mgr_t *m, size_t offset,
                                 bool (*each)(void *ctx, const session_detached_info_t *),
                                 void *ctx) {
    size_t total = 0;
    bool more = true;
    for (const list_t *n = m->detached.next; n != &m->detached; n = n->next) {
        const session_t *s = LIST_ENTRY(n, session_t, detached);
        if (more && total >= offset) {
            session_detached_info_t info = {s->client_id, s->detached_at, s->ring_count, s->held};
            more = each(ctx, &info);
        }
        total++;
    }
    return total;
}
