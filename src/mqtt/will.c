/* MQTT 5's will delay interval (3.1.3.2.2): a will whose connection ended
 * without DISCONNECT waits in its kept session until the delay passes
 * (published), the client comes back to the session (dropped,
 * [MQTT-3.1.3-9]) or the session ends first (published then). While it
 * waits the will is held by a closed stand-in connection that carries what
 * routing and the record need (the will, the user name, the address), so it
 * is published by the code that publishes an immediate one. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

session_will_t *will_new(const mqtt_connect_t *p, const mqtt5_props_t *wp) {
    size_t tlen = p->will_topic.len, plen = p->will_payload.len;
    session_will_t *w = malloc(sizeof(*w) + tlen + 1 + plen + 1);
    if (!w)
        return NULL;
    memcpy(w->topic, p->will_topic.ptr, tlen);
    w->topic[tlen] = '\0';
    w->payload = (uint8_t *)w->topic + tlen + 1;
    if (plen)
        memcpy(w->payload, p->will_payload.ptr, plen);
    w->payload[plen] = '\0';
    w->topic_len = (uint16_t)tlen;
    w->payload_len = (uint16_t)plen;
    w->qos = p->will_qos;
    w->retain = p->will_retain;
    w->delay = wp ? wp->will_delay : 0;
    w->props = NULL;
    if (wp && !(w->props = session5_props_dup(wp))) {
        free(w);
        return NULL;
    }
    return w;
}

void will_data_free(session_will_t *w) {
    if (w)
        free(w->props);
    free(w);
}

void will_free(session_conn_t *w) {
    will_data_free(w->will);
    free(w->username);
    free(w);
}

size_t will_bytes(const session_conn_t *w) {
    const session_will_t *d = w->will;
    return sizeof(*w) + strlen(w->remote) + 1 + sizeof(*d) + d->topic_len + 1u + d->payload_len +
           1u + (d->props ? sizeof(*d->props) + d->props->raw.len : 0) +
           (w->has_username ? w->username_len + 1u : 0);
}

bool will_defer(session_conn_t *c) {
    session_mgr_t *m = c->mgr;
    session_t *s = c->s;
    /* A session that ends with its connection ends before any delay. */
    if (!c->will->delay || !s || s->clean || m->wills_now || m->cfg->mqtt.session_expiry_s == 0 ||
        m->max_detached == 0)
        return false;
    assert(!session_will(s));
    size_t rlen = strlen(c->remote);
    session_conn_t *w = calloc(1, FLEX_SIZE(session_conn_t, remote, rlen + 1));
    char *user = c->has_username ? session_dup(c->username, c->username_len) : NULL;
    outbound_t *x = outbound_get(m, s); /* holds the waiting will */
    if (!x || !w || (c->has_username && !user)) {
        free(w);
        free(user);
        return false; /* published now rather than lost */
    }
    w->mgr = m;
    w->state = CONN_CLOSED;
    w->level = c->level;
    w->v5 = c->v5;
    memcpy(w->remote, c->remote, rlen);
    w->will = c->will;
    c->will = NULL;
    w->username = user;
    w->username_len = c->username_len;
    w->has_username = c->has_username;
    w->rx_ms = m->mono_ms + (uint64_t)w->will->delay * 1000u; /* when it is due */
    w->s = s;
    x->will = w;
    list_insert_tail(&m->wills, &w->node);
    m->st.wills_delayed++;
    return true;
}

/* Takes the session's pending will off the list (it keeps w->s for the
 * publish); the caller frees it. */
static session_conn_t *will_take(session_mgr_t *m, session_t *s) {
    session_conn_t *w = s->ob->will;
    s->ob->will = NULL;
    list_remove(&w->node);
    m->st.wills_delayed--;
    return w;
}

void will_publish(session_mgr_t *m, session_t *s, const char *when) {
    if (!session_will(s))
        return;
    session_conn_t *w = will_take(m, s);
    char idb[LOG_ID_MAX];
    log_client(LOG_INFO, session_log_str(idb, sizeof(idb), s->client_id, s->client_id_len),
               w->remote, "publishing the will message %s", when);
    session_publish_will(w);
    will_free(w);
    store_resize(m, s);
}

void will_cancel(session_mgr_t *m, session_t *s) {
    if (!session_will(s))
        return;
    session_conn_t *w = will_take(m, s);
    char idb[LOG_ID_MAX];
    log_client(LOG_INFO, session_log_str(idb, sizeof(idb), s->client_id, s->client_id_len),
               w->remote,
               "will message not published: the client came back to its session within the "
               "will delay interval of %u s [MQTT-3.1.3-9]",
               w->will->delay);
    will_free(w);
}

void wills_tick(session_mgr_t *m) {
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &m->wills) {
        session_conn_t *w = LIST_ENTRY(it, session_conn_t, node);
        if (m->mono_ms < w->rx_ms)
            continue;
        char when[64];
        snprintf(when, sizeof(when), "after its will delay interval of %u s", w->will->delay);
        will_publish(m, w->s, when);
    }
}

void session_mgr_publish_delayed_wills(session_mgr_t *m) {
    m->wills_now = true;
    while (!list_empty(&m->wills)) {
        session_conn_t *w = LIST_ENTRY(list_first(&m->wills), session_conn_t, node);
        will_publish(m, w->s,
                     "at shutdown, before its will delay interval passed (sessions "
                     "end with the process)");
    }
}
