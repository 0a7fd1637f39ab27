/* The subscription trie (subs.h). Filters are paths in a level trie where
 * '+' and '#' are children like any level; a match follows, at each level,
 * the literal child, the '+' child and the '#' child, so it visits only
 * branches that can match. Each subscription is also indexed by (node, group,
 * client) for add/remove, and listed under its client for a session's end.
 * Matches are merged per client with a generation mark on the client, so
 * merging costs O(matches) and no allocation beyond the result vector. */
#include "downlink/subs.h"

#include "ltrie.h"
#include "util/hash.h"
#include "util/list.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct snode {
    ltrie_node_t t;            /* first */
    list_t subs;               /* sub_t.at, non-shared subscriptions ending here */
    list_t groups;             /* group_t.at, shared groups ending here */
    struct snode *plus, *hash; /* the '+' and '#' children (also in the map), or NULL */
} snode_t;

typedef struct {
    hmap_node_t h; /* in dl_subs_t.clients */
    uint64_t handle;
    list_t subs; /* sub_t.of_client */
    uint64_t mark;
    size_t slot; /* the client's delivery in the current match */
} client_t;

typedef struct {
    list_t at; /* in snode_t.groups */
    char *name;
    size_t len;
    list_t members; /* sub_t.at */
    list_t *next;   /* round robin: the member that gets the next message */
} group_t;

typedef struct {
    hmap_node_t h; /* in dl_subs_t.index */
    list_t at;     /* in snode_t.subs or group_t.members */
    list_t of_client;
    snode_t *node;
    group_t *group;
    client_t *client;
    uint8_t qos;
    uint8_t opts;    /* DL_SUB_* */
    uint32_t sub_id; /* MQTT 5 subscription identifier, 0: none */
} sub_t;

struct dl_subs {
    snode_t root;
    hmap_t index;
    hmap_t clients;
    /* Read by other threads (dl_subs_count: threads: N, whether a worker
     * has any subscription); the trie itself only by its owner. */
    atomic_size_t n_subs;
    size_t n_nodes;
    uint64_t gen;
};

static uint64_t key_hash(const snode_t *n, const group_t *g, uint64_t client) {
    uint64_t k[3] = {(uint64_t)(uintptr_t)n, (uint64_t)(uintptr_t)g, client};
    return m2k_hash(k, sizeof(k)) ^ client;
}

static uint64_t sub_hash(const hmap_node_t *h) {
    const sub_t *s = HMAP_ENTRY(h, sub_t, h);
    return key_hash(s->node, s->group, s->client->handle);
}

static uint64_t client_hash(const hmap_node_t *h) {
    const client_t *c = HMAP_ENTRY(h, client_t, h);
    return m2k_hash(&c->handle, sizeof(c->handle));
}

static void snode_init(snode_t *n) {
    list_init(&n->subs);
    list_init(&n->groups);
}

dl_subs_t *dl_subs_new(void) {
    dl_subs_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    ltrie_root_init(&s->root.t);
    snode_init(&s->root);
    hmap_init(&s->index, sub_hash, 0);
    hmap_init(&s->clients, client_hash, 0);
    atomic_init(&s->n_subs, 0);
    return s;
}

/* Frees the subtree under t and what t holds; t itself unless it is the root. */
static void free_tree(ltrie_node_t *t, void *ud) {
    ltrie_each(t, free_tree, ud);
    snode_t *n = (snode_t *)t;
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &n->groups) {
        group_t *g = LIST_ENTRY(it, group_t, at);
        list_t *m, *mx;
        LIST_FOREACH_SAFE(m, mx, &g->members) free(LIST_ENTRY(m, sub_t, at));
        free(g->name);
        free(g);
    }
    LIST_FOREACH_SAFE(it, nx, &n->subs) free(LIST_ENTRY(it, sub_t, at));
    bool root = t->parent == NULL;
    ltrie_unlink(t);
    if (!root)
        free(n);
}

static void free_client(hmap_node_t *h, void *ud) {
    (void)ud;
    free(HMAP_ENTRY(h, client_t, h));
}

void dl_subs_free(dl_subs_t *s) {
    if (!s)
        return;
    free_tree(&s->root.t, NULL);
    hmap_each(&s->clients, free_client, NULL);
    hmap_free(&s->clients);
    hmap_free(&s->index);
    free(s);
}

/* Splits "$share/GROUP/filter"; 1 when shared, 0 when not, DL_EINVAL. */
static int share_parse(const char **f, size_t *len, const char **group, size_t *glen) {
    if (*len < 7 || memcmp(*f, "$share/", 7) != 0)
        return 0;
    const char *g = *f + 7;
    const char *slash = memchr(g, '/', *len - 7);
    if (!slash || slash == g)
        return DL_EINVAL;
    *group = g;
    *glen = (size_t)(slash - g);
    if (memchr(g, '+', *glen) || memchr(g, '#', *glen))
        return DL_EINVAL;
    *len -= 7 + *glen + 1;
    *f = slash + 1;
    return 1;
}

/* The node of filter f, created when create is set; NULL when absent or out
 * of memory (*nomem tells). */
static snode_t *node_of(dl_subs_t *s, const char *f, size_t len, bool create, bool *nomem) {
    ltrie_node_t *n = &s->root.t;
    *nomem = false;
    for (size_t pos = 0; pos <= len;) {
        size_t l = ltrie_level_len(f, len, pos);
        ltrie_node_t *c;
        if (create) {
            int created;
            c = ltrie_get(n, f + pos, l, sizeof(snode_t), &created);
            if (!c) {
                *nomem = true;
                return NULL;
            }
            if (created) {
                snode_init((snode_t *)c);
                s->n_nodes++;
                /* Kept aside so a match does not hash "+" and "#" at each level. */
                if (l == 1 && f[pos] == '+')
                    ((snode_t *)n)->plus = (snode_t *)c;
                else if (l == 1 && f[pos] == '#')
                    ((snode_t *)n)->hash = (snode_t *)c;
            }
        } else if (!(c = ltrie_find(n, f + pos, l))) {
            return NULL;
        }
        n = c;
        pos += l + 1;
    }
    return (snode_t *)n;
}

/* Frees n and its ancestors while they hold nothing. */
static void prune(dl_subs_t *s, snode_t *n) {
    while (n != &s->root && list_empty(&n->subs) && list_empty(&n->groups) &&
           n->t.children.n == 0) {
        snode_t *parent = (snode_t *)n->t.parent;
        if (parent->plus == n)
            parent->plus = NULL;
        if (parent->hash == n)
            parent->hash = NULL;
        ltrie_unlink(&n->t);
        free(n);
        s->n_nodes--;
        n = parent;
    }
}

static group_t *group_find(snode_t *n, const char *name, size_t len) {
    list_t *it;
    for (it = n->groups.next; it != &n->groups; it = it->next) {
        group_t *g = LIST_ENTRY(it, group_t, at);
        if (g->len == len && memcmp(g->name, name, len) == 0)
            return g;
    }
    return NULL;
}

static client_t *client_find(dl_subs_t *s, uint64_t handle) {
    hmap_node_t *it;
    HMAP_FOR_BUCKET(it, &s->clients, m2k_hash(&handle, sizeof(handle))) {
        client_t *c = HMAP_ENTRY(it, client_t, h);
        if (c->handle == handle)
            return c;
    }
    return NULL;
}

static sub_t *sub_find(dl_subs_t *s, snode_t *n, group_t *g, uint64_t client) {
    hmap_node_t *it;
    HMAP_FOR_BUCKET(it, &s->index, key_hash(n, g, client)) {
        sub_t *x = HMAP_ENTRY(it, sub_t, h);
        if (x->node == n && x->group == g && x->client->handle == client)
            return x;
    }
    return NULL;
}

int dl_subs_add(dl_subs_t *s, uint64_t client, const char *filter, size_t len, uint8_t qos) {
    return dl_subs_add_opts(s, client, filter, len, qos, 0, 0);
}

int dl_subs_add_opts(dl_subs_t *s, uint64_t client, const char *filter, size_t len, uint8_t qos,
                     uint8_t opts, uint32_t sub_id) {
    const char *gname = NULL;
    size_t glen = 0;
    int shared = share_parse(&filter, &len, &gname, &glen);
    if (shared < 0 || qos > 2 || dl_filter_check(filter, len, NULL) != 0)
        return DL_EINVAL;
    bool nomem;
    snode_t *n = node_of(s, filter, len, true, &nomem);
    if (!n)
        return DL_ENOMEM;
    group_t *g = NULL;
    client_t *c = NULL;
    sub_t *x = NULL;
    if (shared && !(g = group_find(n, gname, glen))) {
        if (!(g = calloc(1, sizeof(*g))) || !(g->name = malloc(glen))) {
            free(g);
            g = NULL;
            goto nomem;
        }
        memcpy(g->name, gname, glen);
        g->len = glen;
        list_init(&g->members);
        g->next = &g->members;
        list_insert_tail(&n->groups, &g->at);
    }
    if ((x = sub_find(s, n, g, client))) {
        x->qos = qos;
        x->opts = opts;
        x->sub_id = sub_id;
        return 1;
    }
    if (!(c = client_find(s, client))) {
        if (!(c = calloc(1, sizeof(*c))))
            goto nomem;
        c->handle = client;
        list_init(&c->subs);
        if (hmap_insert(&s->clients, &c->h, m2k_hash(&client, sizeof(client))) != 0) {
            free(c);
            c = NULL;
            goto nomem;
        }
    }
    if (!(x = calloc(1, sizeof(*x))))
        goto nomem;
    x->node = n;
    x->group = g;
    x->client = c;
    x->qos = qos;
    x->opts = opts;
    x->sub_id = sub_id;
    if (hmap_insert(&s->index, &x->h, key_hash(n, g, client)) != 0) {
        free(x);
        goto nomem;
    }
    list_insert_tail(g ? &g->members : &n->subs, &x->at);
    list_insert_tail(&c->subs, &x->of_client);
    s->n_subs++;
    return 0;
nomem:
    if (c && list_empty(&c->subs)) {
        hmap_remove(&s->clients, &c->h, m2k_hash(&client, sizeof(client)));
        free(c);
    }
    if (g && list_empty(&g->members)) {
        list_remove(&g->at);
        free(g->name);
        free(g);
    }
    prune(s, n);
    return DL_ENOMEM;
}

static void sub_unlink(dl_subs_t *s, sub_t *x) {
    group_t *g = x->group;
    snode_t *n = x->node;
    client_t *c = x->client;
    if (g && g->next == &x->at)
        g->next = x->at.next;
    list_remove(&x->at);
    list_remove(&x->of_client);
    hmap_remove(&s->index, &x->h, key_hash(n, g, c->handle));
    free(x);
    s->n_subs--;
    if (g && list_empty(&g->members)) {
        list_remove(&g->at);
        free(g->name);
        free(g);
    }
    if (list_empty(&c->subs)) {
        hmap_remove(&s->clients, &c->h, m2k_hash(&c->handle, sizeof(c->handle)));
        free(c);
    }
    prune(s, n);
}

int dl_subs_remove(dl_subs_t *s, uint64_t client, const char *filter, size_t len) {
    const char *gname = NULL;
    size_t glen = 0;
    int shared = share_parse(&filter, &len, &gname, &glen);
    if (shared < 0 || dl_filter_check(filter, len, NULL) != 0)
        return DL_EINVAL;
    bool nomem;
    snode_t *n = node_of(s, filter, len, false, &nomem);
    group_t *g = n && shared ? group_find(n, gname, glen) : NULL;
    sub_t *x = n && (g || !shared) ? sub_find(s, n, g, client) : NULL;
    if (!x)
        return DL_ENOENT;
    sub_unlink(s, x);
    return 0;
}

size_t dl_subs_remove_client(dl_subs_t *s, uint64_t client) {
    client_t *c = client_find(s, client);
    size_t k = 0;
    for (bool last = !c; !last; k++) {
        last = c->subs.next->next == &c->subs;
        sub_unlink(s, LIST_ENTRY(c->subs.next, sub_t, of_client)); /* frees c with the last */
    }
    return k;
}

typedef struct {
    dl_subs_t *s;
    dl_matches_t *out;
    int rc;
} walk_t;

static dl_match_t *out_push(walk_t *w) {
    dl_matches_t *o = w->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        dl_match_t *v = realloc(o->v, cap * sizeof(*v));
        if (!v) {
            w->rc = DL_ENOMEM;
            return NULL;
        }
        o->v = v;
        o->cap = cap;
    }
    return &o->v[o->n++];
}

/* Adds a subscription's identifier to the match at index slot. */
static void id_push(walk_t *w, size_t slot, uint32_t id) {
    dl_matches_t *o = w->out;
    if (!id || w->rc)
        return;
    if (o->n_ids == o->cap_ids) {
        size_t cap = o->cap_ids ? o->cap_ids * 2 : 16;
        dl_match_id_t *v = realloc(o->ids, cap * sizeof(*v));
        if (!v) {
            w->rc = DL_ENOMEM;
            return;
        }
        o->ids = v;
        o->cap_ids = cap;
    }
    o->ids[o->n_ids] = (dl_match_id_t){id, o->v[slot].ids};
    o->v[slot].ids = (uint32_t)++o->n_ids;
}

static void collect(walk_t *w, snode_t *n) {
    list_t *it;
    for (it = n->subs.next; it != &n->subs; it = it->next) {
        sub_t *x = LIST_ENTRY(it, sub_t, at);
        client_t *c = x->client;
        bool local = !(x->opts & DL_SUB_NO_LOCAL);
        bool rap = x->opts & DL_SUB_RETAIN_AS_PUBLISHED;
        if (c->mark == w->s->gen) {
            dl_match_t *m = &w->out->v[c->slot];
            if (x->qos > m->qos)
                m->qos = x->qos;
            if (local && (m->qos_local == DL_QOS_NONE || x->qos > m->qos_local))
                m->qos_local = x->qos;
            m->rap = m->rap || rap;
            id_push(w, c->slot, x->sub_id);
            continue;
        }
        dl_match_t *m = out_push(w);
        if (!m)
            return;
        c->mark = w->s->gen;
        c->slot = w->out->n - 1;
        *m = (dl_match_t){c->handle, x->qos, false, local ? x->qos : DL_QOS_NONE, rap, 0};
        id_push(w, c->slot, x->sub_id);
    }
    for (it = n->groups.next; it != &n->groups; it = it->next) {
        group_t *g = LIST_ENTRY(it, group_t, at);
        if (g->next == &g->members)
            g->next = g->members.next;
        sub_t *x = LIST_ENTRY(g->next, sub_t, at);
        g->next = g->next->next;
        dl_match_t *m = out_push(w);
        if (!m)
            return;
        *m = (dl_match_t){x->client->handle,
                          x->qos,
                          true,
                          x->opts & DL_SUB_NO_LOCAL ? DL_QOS_NONE : x->qos,
                          (x->opts & DL_SUB_RETAIN_AS_PUBLISHED) != 0,
                          0};
        id_push(w, w->out->n - 1, x->sub_id);
    }
}

static void walk(walk_t *w, snode_t *n, const char *t, size_t len, size_t pos) {
    /* The '$' rule: a first-level wildcard does not match a '$' topic. */
    bool wild = !(pos == 0 && t[0] == '$');
    snode_t *c;
    if (wild && n->hash)
        collect(w, n->hash);
    if (pos > len) {
        collect(w, n);
        return;
    }
    size_t l = ltrie_level_len(t, len, pos);
    if ((c = (snode_t *)ltrie_find(&n->t, t + pos, l)))
        walk(w, c, t, len, pos + l + 1);
    if (wild && n->plus)
        walk(w, n->plus, t, len, pos + l + 1);
}

int dl_subs_match(dl_subs_t *s, const char *topic, size_t len, dl_matches_t *out) {
    out->n = 0;
    out->n_ids = 0;
    if (dl_topic_check(topic, len, NULL) != 0)
        return DL_EINVAL;
    walk_t w = {s, out, 0};
    s->gen++;
    walk(&w, &s->root, topic, len, 0);
    return w.rc;
}

size_t dl_subs_count(const dl_subs_t *s) {
    return atomic_load(&s->n_subs);
}

size_t dl_subs_nodes(const dl_subs_t *s) {
    return s->n_nodes;
}
