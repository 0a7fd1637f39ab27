/* MQTT session manager (see session.h): a connection's life from accept to
 * free, sending, closing, the tick. One manager per loop; every function runs
 * on the loop thread. The session store, the in-flight ring and the packet
 * handlers are in the files session_int.h lists. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

const char *session_error_name(int kind) {
    static const char *const names[] = {
        "first_packet_not_connect",
        "second_connect",
        "server_only_packet",
        "unexpected_ack",
        "unexpected_packet_type",
        "qos2_window_full",
        "subscribe_too_many_filters",
        "topic_alias_invalid",
        "auth_unexpected",
        "receive_maximum_exceeded",
        "topic_alias_unknown",
        "topic_alias_quota",
    };
    _Static_assert(sizeof(names) / sizeof(names[0]) ==
                       SESSION_ERR__COUNT - SESSION_ERR_CODEC_MAX - 1,
                   "a name for every session error kind");
    if (kind <= 0 || kind >= SESSION_ERR__COUNT)
        return NULL;
    return kind <= SESSION_ERR_CODEC_MAX ? mqtt_errname(-kind)
                                         : names[kind - SESSION_ERR_CODEC_MAX - 1];
}

void session_set_state(session_conn_t *c, conn_state_t to) {
    static const uint8_t next[] = {
        [CONN_NEW] = 1u << CONN_CONNECTED | 1u << CONN_CLOSED,
        [CONN_CONNECTED] = 1u << CONN_CLOSING | 1u << CONN_CLOSED,
        [CONN_CLOSING] = 1u << CONN_CLOSED,
        [CONN_CLOSED] = 0,
    };
    assert(next[c->state] & (1u << to));
    (void)next;
    c->state = (uint8_t)to;
}

/* ---- helpers ---------------------------------------------------------- */

const char *session_log_str(char *out, size_t cap, const char *p, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++)
        out[j++] = ((uint8_t)p[i] < 0x20 || p[i] == 0x7f) ? '?' : p[i];
    if (j < n && j + 4 >= cap) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
    return out;
}

const char *session_log_id(const session_conn_t *c, char *buf, size_t cap) {
    if (!c->s)
        return "-";
    return session_log_str(buf, cap, c->s->client_id, c->s->client_id_len);
}

char *session_dup(const void *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

void session_send(session_conn_t *c, const uint8_t *buf, size_t n) {
    if (c->state >= CONN_CLOSING)
        return;
    if (c->ops->send(c->ud, buf, n) == 0)
        c->mgr->st.packets_sent[buf[0] >> 4]++; /* one packet per call */
    else if (c->state == CONN_CONNECTED)
        session_set_state(c, CONN_CLOSING);
    /* else NEW: the only packet sent before CONNECT is accepted is a
     * refusing CONNACK, and the close follows it. */
}

void session_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid) {
    uint8_t b[4];
    size_t n = mqtt_encode_ack(b, sizeof(b), type, pid);
    assert(n == sizeof(b));
    session_send(c, b, n);
}

void session_send_connack(session_conn_t *c, bool present, uint8_t rc) {
    if (c->v5) { /* a refusal: the accepted CONNACK has properties (handle_connect.c) */
        session5_send_connack(c, false, session5_connack_reason(rc), NULL);
        return;
    }
    uint8_t b[4];
    size_t n = mqtt_encode_connack(b, sizeof(b), present, rc);
    assert(n == sizeof(b));
    session_send(c, b, n);
}

/* ---- closing ----------------------------------------------------------- */

static void session_end_v(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                          bool call_close, const char *fmt, va_list ap) {
    if (c->state == CONN_CLOSED)
        return;
    session_mgr_t *m = c->mgr;
    char reason[512], idb[LOG_ID_MAX];
    if (lvl <= log_get_level()) {
        vsnprintf(reason, sizeof(reason), fmt, ap);
        log_client_ratelimited(rl ? rl : &m->rl->closing, lvl, session_log_id(c, idb, sizeof(idb)),
                               c->remote, "closing: %s", reason);
    }
    bool was_connected = c->state != CONN_NEW;
    session_set_state(c, CONN_CLOSED);
    list_remove(&c->blocked);
    if (was_connected && will && c->will) {
        if (m->stopping)
            log_client(LOG_INFO, session_log_id(c, idb, sizeof(idb)), c->remote,
                       "will message not published: shutting down");
        else if (!will_defer(c))
            session_publish_will(c);
    }
    will_data_free(c->will);
    c->will = NULL;
    if (c->s) {
        session_t *s = c->s;
        c->s = NULL;
        inflight_abandon_owed(m, s);
        store_detach(m, s);
    }
    if (call_close)
        c->ops->close(c->ud);
}

void session_end(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                 bool call_close, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    session_end_v(c, rl, lvl, will, call_close, fmt, ap);
    va_end(ap);
}

/* The log line's text (fmt, ap), an MQTT 5 reason string; ap stays usable. */
static void why_v(char *out, size_t cap, const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    vsnprintf(out, cap, fmt, aq);
    va_end(aq);
}

/* Rate-limited: a misconfigured fleet reconnects in a loop. */
void session_refuse(session_conn_t *c, uint8_t rc, log_level_t lvl, const char *fmt, ...) {
    session_mgr_t *m = c->mgr;
    va_list ap;
    va_start(ap, fmt);
    if (c->v5) { /* the log line's text is the reason string */
        char why[512];
        why_v(why, sizeof(why), fmt, ap);
        session5_refuse_connack(c, rc >= 0x80 ? rc : session5_connack_reason(rc), why);
    } else {
        session_send_connack(c, false, rc);
    }
    /* an MQTT 5 reason code without a 3.1.1 equivalent is not counted here */
    assert(rc >= 0x80
               ? c->v5
               : rc > 0 && rc < sizeof(m->st.connack_refused) / sizeof(m->st.connack_refused[0]));
    if (rc < 0x80)
        m->st.connack_refused[rc]++;
    m->st.rejected++;
    session_end_v(c, &m->rl->refused, lvl, false, true, fmt, ap);
    va_end(ap);
}

void session_violation(session_conn_t *c, int kind, const char *fmt, ...) {
    session_mgr_t *m = c->mgr;
    if (kind < 0) /* a codec error */
        kind = -kind <= SESSION_ERR_CODEC_MAX ? -kind : SESSION_ERR_CODEC_MAX;
    assert(kind > 0 && kind < SESSION_ERR__COUNT);
    m->st.protocol_errors++;
    m->st.protocol_error_kinds[kind]++;
    if (c->state == CONN_NEW)
        m->st.refused_protocol_errors++;
    va_list ap;
    va_start(ap, fmt);
    if (c->v5) { /* the reason, and the log line's text, before the close [MQTT-4.13.1-1] */
        char why[512];
        why_v(why, sizeof(why), fmt, ap);
        session5_tell_violation(c, kind, why);
    }
    session_end_v(c, &m->rl->protocol, LOG_WARN, true, true, fmt, ap);
    va_end(ap);
}

/* ---- the manager --------------------------------------------------------- */

void session_limits_init(session_limits_t *l) {
    *l = (session_limits_t){
        .protocol = LOG_RATELIMIT_INIT("protocol errors", 10, 10000),
        .refused = LOG_RATELIMIT_INIT("refused connections", 10, 10000),
        .delivery = LOG_RATELIMIT_INIT("delivery failures", 10, 10000),
        .drop = LOG_RATELIMIT_INIT("unmapped messages dropped", 10, 10000),
        .acl = LOG_RATELIMIT_INIT("ACL denied publish", 10, 10000),
        .route = LOG_RATELIMIT_INIT("refused messages", 10, 10000),
        .spool_drop = LOG_RATELIMIT_INIT("QoS 0 dropped at a full spool", 10, 10000),
        .connected = LOG_RATELIMIT_INIT("connected", 100, 10000),
        .closing = LOG_RATELIMIT_INIT("closing", 100, 10000),
        .evict = LOG_RATELIMIT_INIT("discarded sessions", 10, 10000),
        .sub = LOG_RATELIMIT_INIT("refused subscriptions", 10, 10000),
    };
}

/* The bound on sessions kept from the configuration: this manager's share
 * of the process's (opts.workers). */
static void apply_bounds(session_mgr_t *m) {
    m->max_detached = m->o.max_detached_sessions
                          ? m->o.max_detached_sessions
                          : config_share(m->cfg->mqtt.max_persistent_sessions, m->o.workers);
}

session_mgr_t *session_mgr_new(const session_mgr_opts_t *opts) {
    session_mgr_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->o = *opts;
    m->cfg = opts->cfg;
    session_limits_init(&m->own_rl);
    m->rl = opts->limits ? opts->limits : &m->own_rl;
    apply_bounds(m);
    list_init(&m->conns);
    list_init(&m->blocked);
    list_init(&m->wills);
    store_init(m);
    ktopics_init(m);
    m->scratch = malloc(SCRATCH_SIZE);
    m->subs = dl_subs_new();
    if (!m->scratch || !m->subs) {
        dl_subs_free(m->subs);
        free(m->scratch);
        free(m);
        return NULL;
    }
    return m;
}

session_caches_t *session_conn_caches(session_conn_t *c) {
    if (!c->caches)
        c->caches = calloc(1, sizeof(*c->caches));
    return c->caches;
}

/* The last ACL decision and the MQTT 5 topic aliases a connection set. */
static void free_caches(session_conn_t *c) {
    session_caches_t *x = c->caches;
    if (!x)
        return;
    for (uint32_t i = 0; x->aliases && i < c->alias_max; i++)
        free(x->aliases[i].topic);
    free(x->aliases);
    free(x->acl);
    free(x);
    c->caches = NULL;
}

void session_mgr_free(session_mgr_t *m) {
    if (!m)
        return;
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &m->conns) {
        session_conn_t *c = LIST_ENTRY(it, session_conn_t, node);
        will_data_free(c->will);
        free(c->username);
        free_caches(c);
        if (c->s)
            c->s->conn = NULL;
        free(c);
    }
    store_free(m);
    ktopics_free(m);
    dl_subs_free(m->subs);
    free(m->matches.v);
    free(m->matches.ids);
    free(m->xids);
    free(m->scratch);
    free(m);
}

void session_mgr_set_stopping(session_mgr_t *m) {
    m->stopping = true;
}

void session_mgr_set_now(session_mgr_t *m, uint64_t mono_ms, int64_t wall_ms) {
    m->mono_ms = mono_ms;
    m->wall_ms = wall_ms;
}

void session_mgr_set_now_us(session_mgr_t *m, uint64_t mono_us) {
    m->mono_us = mono_us;
}

void session_mgr_set_config(session_mgr_t *m, const config_t *cfg) {
    m->cfg = cfg;
    m->o.cfg = cfg;
    /* A lower bound takes effect at the next detach (the oldest go first). */
    apply_bounds(m);
}

size_t session_mgr_paused_count(const session_mgr_t *m) {
    size_t n = 0;
    const list_t *it;
    for (it = m->conns.next; it != &m->conns; it = it->next) {
        const session_conn_t *c = LIST_ENTRY(it, const session_conn_t, node);
        n += c->state != CONN_CLOSED && (c->paused_inflight || c->paused_queue);
    }
    return n;
}

const session_stats_t *session_mgr_stats(const session_mgr_t *m) {
    return &m->st;
}

size_t session_mgr_conn_count(const session_mgr_t *m) {
    return m->n_conns;
}

size_t session_mgr_session_count(const session_mgr_t *m) {
    return m->by_id.n;
}

void session_mgr_tick(session_mgr_t *m) {
    const config_mqtt_t *mq = &m->cfg->mqtt;
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &m->conns) {
        session_conn_t *c = LIST_ENTRY(it, session_conn_t, node);
        if (c->state == CONN_NEW && m->mono_ms - c->rx_ms >= mq->connect_timeout_s * 1000ull) {
            m->st.connect_timeouts++;
            session_end(c, &m->rl->refused, LOG_WARN, false, true,
                        "no CONNECT within connect_timeout_s %u", mq->connect_timeout_s);
            continue;
        }
        if (c->state != CONN_CONNECTED)
            continue;
        if (c->paused_inflight || c->paused_queue) {
            /* Not reading is our choice, not the client's silence. */
            c->rx_ms = m->mono_ms;
        } else if (c->keepalive && m->mono_ms - c->rx_ms >= (uint64_t)c->keepalive * 1500u) {
            m->st.keepalive_timeouts++;
            session5_send_disconnect(c, MQTT5_RC_KEEP_ALIVE_TIMEOUT);
            session_end(c, NULL, LOG_WARN, true, true, "no packet within 1.5 x keepalive %u s",
                        c->keepalive);
            continue;
        }
        ring_release_idle(c->s);
    }
    wills_tick(m);
    /* Sessions kept without a connection: what expired in their queues. */
    LIST_FOREACH_SAFE(it, nx, &m->detached) {
        outbound_expire(m, LIST_ENTRY(it, session_t, detached));
    }
    store_expire(m);
    /* A full queue also drains when no report is ours to see: retry now and then. */
    inflight_wake_blocked(m);
}

/* ---- connections ---------------------------------------------------------- */

session_conn_t *session_conn_new(session_mgr_t *m, const session_conn_ops_t *ops, void *ud,
                                 const char *remote) {
    if (!remote)
        remote = "?";
    size_t rlen = strnlen(remote, 63);
    session_conn_t *c = calloc(1, FLEX_SIZE(session_conn_t, remote, rlen + 1));
    if (!c)
        return NULL;
    c->mgr = m;
    c->ops = ops;
    c->ud = ud;
    memcpy(c->remote, remote, rlen);
    c->rx_ms = m->mono_ms;
    list_init(&c->blocked);
    list_insert_head(&m->conns, &c->node);
    m->n_conns++;
    return c;
}

void session_conn_lost(session_conn_t *c, const char *reason) {
    session_end(c, NULL, LOG_INFO, true, false, "%s", reason);
}

void session_conn_close(session_conn_t *c, const char *reason) {
    session_end(c, NULL, LOG_WARN, true, true, "%s", reason);
}

bool session_conn_paused(const session_conn_t *c) {
    return c->paused_inflight || c->paused_queue;
}

uint32_t session_conn_inflight(const session_conn_t *c) {
    return c->s ? c->s->ring_count : 0;
}

const char *session_conn_remote(const session_conn_t *c) {
    return c->remote;
}

void *session_conn_ud(const session_conn_t *c) {
    return c->ud;
}

bool session_conn_has_identity(const session_conn_t *c) {
    return c->has_identity;
}

void *session_conn_data(const session_conn_t *c) {
    return c->data;
}

void session_conn_set_data(session_conn_t *c, void *data) {
    c->data = data;
}

bool session_conn_closed(const session_conn_t *c) {
    return c->state == CONN_CLOSED;
}

void session_conn_free(session_conn_t *c) {
    if (!c)
        return;
    session_end(c, NULL, LOG_INFO, true, false, "connection freed");
    list_remove(&c->node);
    c->mgr->n_conns--;
    free(c->username);
    free_caches(c);
    free(c);
}

void session_conn_forget(session_conn_t *c, const char *why) {
    session_end(c, NULL, LOG_DEBUG, false, false, "%s", why);
}

int session_conn_set_identity(session_conn_t *c, const char *user) {
    char *d = session_dup(user, strlen(user));
    if (!d)
        return -1;
    free(c->username);
    c->username = d;
    c->username_len = (uint16_t)strlen(d);
    c->has_identity = true;
    return 0;
}
