/* The retained store (retained.h): a level trie of topic names whose nodes
 * may hold a message. A filter walks the literal levels, fans out at '+' and
 * takes the whole subtree at '#'; empty branches are pruned on delete. One
 * mutex guards it: with threads: N the consumer (worker 0) writes it and a
 * SUBSCRIBE on any worker reads it (and drops the expired ones it meets);
 * neither is on the per-record path of the downlink. */
#include "downlink/retained.h"

#include "ltrie.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t qos;
    int64_t expires_ms; /* wall clock; 0: never */
    size_t len, topic_len;
    char *topic;    /* NUL-terminated, in the same allocation */
    uint8_t data[]; /* payload, then the topic */
} rmsg_t;

typedef struct {
    ltrie_node_t t; /* first */
    rmsg_t *msg;
} rnode_t;

struct dl_retained {
    rnode_t root; /* first: free_tree frees every node but this one */
    size_t max_messages, max_bytes;
    dl_retained_stats_t st;
    pthread_mutex_t mu;
};

dl_retained_t *dl_retained_new(size_t max_messages, size_t max_bytes) {
    dl_retained_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    ltrie_root_init(&r->root.t);
    r->max_messages = max_messages;
    r->max_bytes = max_bytes;
    return r;
}

void dl_retained_set_limits(dl_retained_t *r, size_t max_messages, size_t max_bytes) {
    pthread_mutex_lock(&r->mu);
    r->max_messages = max_messages;
    r->max_bytes = max_bytes;
    pthread_mutex_unlock(&r->mu);
}

static void free_tree(ltrie_node_t *t, void *ud) {
    ltrie_each(t, free_tree, ud);
    rnode_t *n = (rnode_t *)t;
    free(n->msg);
    bool root = t->parent == NULL;
    ltrie_unlink(t);
    if (!root)
        free(n);
}

void dl_retained_free(dl_retained_t *r) {
    if (!r)
        return;
    free_tree(&r->root.t, NULL);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static rnode_t *node_of(dl_retained_t *r, const char *t, size_t len, bool create) {
    ltrie_node_t *n = &r->root.t;
    for (size_t pos = 0; pos <= len && n;) {
        size_t l = ltrie_level_len(t, len, pos);
        int created;
        n = create ? ltrie_get(n, t + pos, l, sizeof(rnode_t), &created)
                   : ltrie_find(n, t + pos, l);
        pos += l + 1;
    }
    return (rnode_t *)n;
}

static void prune(dl_retained_t *r, rnode_t *n) {
    while (n != &r->root && !n->msg && n->t.children.n == 0) {
        rnode_t *parent = (rnode_t *)n->t.parent;
        ltrie_unlink(&n->t);
        free(n);
        n = parent;
    }
}

int dl_retained_set(dl_retained_t *r, const char *topic, size_t topic_len, const void *payload,
                    size_t len, uint8_t qos) {
    return dl_retained_set_expiring(r, topic, topic_len, payload, len, qos, 0);
}

static int set_locked(dl_retained_t *r, const char *topic, size_t topic_len, const void *payload,
                      size_t len, uint8_t qos, int64_t expires_ms);

int dl_retained_set_expiring(dl_retained_t *r, const char *topic, size_t topic_len,
                             const void *payload, size_t len, uint8_t qos, int64_t expires_ms) {
    pthread_mutex_lock(&r->mu);
    int rc = set_locked(r, topic, topic_len, payload, len, qos, expires_ms);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int set_locked(dl_retained_t *r, const char *topic, size_t topic_len, const void *payload,
                      size_t len, uint8_t qos, int64_t expires_ms) {
    if (dl_topic_check(topic, topic_len, NULL) != 0 || qos > 2) {
        r->st.refused_invalid++;
        return DL_EINVAL;
    }
    rnode_t *n = node_of(r, topic, topic_len, false);
    size_t old = n && n->msg ? n->msg->len + n->msg->topic_len : 0;
    if (len == 0) {
        if (n && n->msg) {
            free(n->msg);
            n->msg = NULL;
            r->st.messages--;
            r->st.bytes -= old;
            r->st.deleted++;
            prune(r, n);
        }
        return 0;
    }
    size_t add = len + topic_len;
    /* Only growth is refused: after lower bounds (SIGHUP) what is held can
     * still be replaced by something no larger, and deleted. */
    if ((!old && r->st.messages + 1 > r->max_messages) ||
        (add > old && r->st.bytes - old + add > r->max_bytes)) {
        r->st.refused_full++;
        return DL_EFULL;
    }
    rmsg_t *m = malloc(sizeof(*m) + add + 1);
    if (!m || !(n = node_of(r, topic, topic_len, true))) {
        free(m);
        if ((n = node_of(r, topic, topic_len, false)))
            prune(r, n);
        return DL_ENOMEM;
    }
    m->qos = qos;
    m->expires_ms = expires_ms;
    m->len = len;
    m->topic_len = topic_len;
    memcpy(m->data, payload, len);
    m->topic = (char *)m->data + len;
    memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    if (n->msg) {
        free(n->msg);
        r->st.messages--;
        r->st.bytes -= old;
    }
    n->msg = m;
    r->st.messages++;
    r->st.bytes += add;
    r->st.set++;
    return 0;
}

typedef struct {
    dl_retained_fn fn;
    dl_retained_at_fn fn_at; /* dl_retained_match_at's, with now_ms */
    void *ud;
    int count;
    bool root_dollar; /* skip '$' children: the subtree walk started at the root */
    int64_t now_ms;
    /* The expired nodes met, dropped after the walk (a node is freed only
     * once the walk is over); when out of memory, skipped but kept. */
    rnode_t **expired;
    size_t n_expired, cap_expired;
} walk_t;

static void emit(walk_t *w, const rnode_t *n) {
    const rmsg_t *m = n->msg;
    if (!m)
        return;
    if (w->fn_at && m->expires_ms && w->now_ms >= m->expires_ms) {
        if (w->n_expired == w->cap_expired) {
            size_t cap = w->cap_expired ? w->cap_expired * 2 : 8;
            rnode_t **e = realloc(w->expired, cap * sizeof(*e));
            if (!e)
                return;
            w->expired = e;
            w->cap_expired = cap;
        }
        w->expired[w->n_expired++] = (rnode_t *)n;
        return;
    }
    w->count++;
    if (w->fn_at)
        w->fn_at(w->ud, m->topic, m->topic_len, m->data, m->len, m->qos, m->expires_ms);
    else
        w->fn(w->ud, m->topic, m->topic_len, m->data, m->len, m->qos);
}

static void subtree(ltrie_node_t *t, void *ud) {
    walk_t *w = ud;
    if (w->root_dollar && t->parent && !t->parent->parent && t->len && t->level[0] == '$')
        return;
    emit(w, (rnode_t *)t);
    ltrie_each(t, subtree, w);
}

typedef struct {
    walk_t *w;
    const char *f;
    size_t len, pos;
} plus_t;

static void walk(walk_t *w, const rnode_t *n, const char *f, size_t len, size_t pos);

static void plus_child(ltrie_node_t *t, void *ud) {
    plus_t *p = ud;
    if (p->pos == 0 && t->len && t->level[0] == '$')
        return;
    size_t l = ltrie_level_len(p->f, p->len, p->pos);
    walk(p->w, (const rnode_t *)t, p->f, p->len, p->pos + l + 1);
}

static void walk(walk_t *w, const rnode_t *n, const char *f, size_t len, size_t pos) {
    if (pos > len) {
        emit(w, n);
        return;
    }
    size_t l = ltrie_level_len(f, len, pos);
    if (l == 1 && f[pos] == '#') {
        /* "a/#" matches "a" too; "#" at the root skips '$' topics. */
        w->root_dollar = pos == 0;
        if (pos > 0)
            emit(w, n);
        ltrie_each(&n->t, subtree, w);
    } else if (l == 1 && f[pos] == '+') {
        plus_t p = {w, f, len, pos};
        ltrie_each(&n->t, plus_child, &p);
    } else {
        const ltrie_node_t *c = ltrie_find(&n->t, f + pos, l);
        if (c)
            walk(w, (const rnode_t *)c, f, len, pos + l + 1);
    }
}

int dl_retained_match(dl_retained_t *r, const char *filter, size_t len, dl_retained_fn fn,
                      void *ud) {
    if (dl_filter_check(filter, len, NULL) != 0)
        return DL_EINVAL;
    walk_t w = {.fn = fn, .ud = ud};
    pthread_mutex_lock(&r->mu);
    walk(&w, &r->root, filter, len, 0);
    pthread_mutex_unlock(&r->mu);
    return w.count;
}

int dl_retained_match_at(dl_retained_t *r, const char *filter, size_t len, int64_t now_ms,
                         dl_retained_at_fn fn, void *ud) {
    if (dl_filter_check(filter, len, NULL) != 0)
        return DL_EINVAL;
    walk_t w = {.fn_at = fn, .ud = ud, .now_ms = now_ms};
    pthread_mutex_lock(&r->mu);
    walk(&w, &r->root, filter, len, 0);
    /* Each still holds its message, so no prune frees another one met. */
    for (size_t i = 0; i < w.n_expired; i++) {
        rnode_t *n = w.expired[i];
        r->st.messages--;
        r->st.bytes -= n->msg->len + n->msg->topic_len;
        r->st.expired++;
        free(n->msg);
        n->msg = NULL;
        prune(r, n);
    }
    pthread_mutex_unlock(&r->mu);
    free(w.expired);
    return w.count;
}

const dl_retained_stats_t *dl_retained_stats(const dl_retained_t *r) {
    return &r->st;
}
