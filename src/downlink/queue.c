/* A session's outbound queue (queue.h): two intrusive lists over the same
 * entries, every message oldest first and the QoS 0 ones oldest first, so
 * both the next message to send and the QoS 0 message to drop are O(1). */
#include "downlink/queue.h"

#include <stdlib.h>
#include <string.h>

dl_msg_t *dl_msg_new(const char *topic, size_t topic_len, const void *payload, size_t len,
                     uint8_t qos, bool retain) {
    return dl_msg_new_props(topic, topic_len, NULL, 0, payload, len, qos, retain);
}

dl_msg_t *dl_msg_new_props(const char *topic, size_t topic_len, const void *props, size_t props_len,
                           const void *payload, size_t len, uint8_t qos, bool retain) {
    return dl_msg_make(&(dl_msg_spec_t){.topic = topic,
                                        .topic_len = topic_len,
                                        .props = props,
                                        .props_len = props_len,
                                        .payload = payload,
                                        .len = len,
                                        .qos = qos,
                                        .retain = retain});
}

dl_msg_t *dl_msg_make(const dl_msg_spec_t *sp) {
    dl_msg_t *m = malloc(sizeof(*m) + sp->topic_len + 1 + sp->len + sp->props_len + sp->origin_len);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->qos = sp->qos;
    m->retain = sp->retain;
    m->published_retain = sp->published_retain;
    m->topic = (char *)(m + 1);
    memcpy(m->topic, sp->topic, sp->topic_len);
    m->topic[sp->topic_len] = '\0';
    m->topic_len = sp->topic_len;
    m->payload = (uint8_t *)m->topic + sp->topic_len + 1;
    if (sp->len)
        memcpy(m->payload, sp->payload, sp->len);
    m->len = sp->len;
    m->props = sp->props_len ? m->payload + sp->len : NULL;
    if (sp->props_len && sp->props) /* else the caller writes them */
        memcpy(m->props, sp->props, sp->props_len);
    m->props_len = sp->props_len;
    char *origin = (char *)m->payload + sp->len + sp->props_len;
    if (sp->origin)
        memcpy(origin, sp->origin, sp->origin_len);
    m->origin = sp->origin ? origin : NULL;
    m->origin_len = sp->origin ? sp->origin_len : 0;
    m->expires_ms = 0;
    return m;
}

dl_msg_t *dl_msg_ref(dl_msg_t *m) {
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

/* The release orders this thread's reads of the message before the free
 * another thread's last unref may do; the acquire, the reverse. */
void dl_msg_unref(dl_msg_t *m) {
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}

void dl_queue_init(dl_queue_t *q, dl_queue_stats_t *stats) {
    list_init(&q->all);
    list_init(&q->qos0);
    q->n = 0;
    q->stats = stats;
}

void dl_qentry_free(dl_qentry_t *e) {
    if (!e)
        return;
    dl_msg_unref(e->msg);
    free(e->xprops);
    free(e);
}

static void entry_unlink(dl_queue_t *q, dl_qentry_t *e) {
    list_remove(&e->all);
    list_remove(&e->q0);
    q->n--;
    q->stats->depth--;
}

void dl_queue_clear(dl_queue_t *q) {
    dl_qentry_t *e;
    while ((e = dl_queue_pop(q)))
        dl_qentry_free(e);
}

int dl_queue_push(dl_queue_t *q, dl_msg_t *msg, uint8_t qos, size_t max) {
    int rc = 0;
    if (q->n >= max) {
        list_t *old = list_first(&q->qos0);
        if (!old || max == 0) {
            q->stats->refused_full++;
            return DL_EFULL;
        }
        dl_qentry_t *e = LIST_ENTRY(old, dl_qentry_t, q0);
        entry_unlink(q, e);
        dl_qentry_free(e);
        q->stats->dropped_oldest_0++;
        rc = 1;
    }
    dl_qentry_t *e = malloc(sizeof(*e));
    if (!e)
        return DL_ENOMEM;
    e->msg = dl_msg_ref(msg);
    e->xprops = NULL;
    e->xlen = 0;
    e->qos = qos;
    list_insert_tail(&q->all, &e->all);
    list_init(&e->q0);
    if (qos == 0)
        list_insert_tail(&q->qos0, &e->q0);
    q->n++;
    q->stats->depth++;
    q->stats->queued++;
    return rc;
}

dl_qentry_t *dl_queue_pop(dl_queue_t *q) {
    list_t *first = list_first(&q->all);
    if (!first)
        return NULL;
    dl_qentry_t *e = LIST_ENTRY(first, dl_qentry_t, all);
    entry_unlink(q, e);
    return e;
}

uint64_t dl_queue_drop_expired(dl_queue_t *q, uint64_t now_ms,
                               void (*each)(void *ud, const dl_qentry_t *e), void *ud) {
    uint64_t next = 0;
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &q->all) {
        dl_qentry_t *e = LIST_ENTRY(it, dl_qentry_t, all);
        uint64_t at = e->msg->expires_ms;
        if (!at)
            continue;
        if (at > now_ms) {
            next = next && next < at ? next : at;
            continue;
        }
        if (each)
            each(ud, e);
        entry_unlink(q, e);
        dl_qentry_free(e);
        q->stats->expired++;
    }
    return next;
}
