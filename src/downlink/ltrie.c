#include "ltrie.h"

#include "util/hash.h"

#include <stdlib.h>
#include <string.h>

static uint64_t node_hash(const hmap_node_t *h) {
    const ltrie_node_t *n = HMAP_ENTRY(h, ltrie_node_t, h);
    return m2k_hash_keyed(n->level, n->len);
}

void ltrie_root_init(ltrie_node_t *root) {
    memset(root, 0, sizeof(*root));
    hmap_init(&root->children, node_hash, 0);
    root->level = NULL;
}

ltrie_node_t *ltrie_find(const ltrie_node_t *n, const char *level, size_t len) {
    if (n->children.n == 0)
        return NULL;
    hmap_node_t *it;
    HMAP_FOR_BUCKET(it, &n->children, m2k_hash_keyed(level, len)) {
        ltrie_node_t *c = HMAP_ENTRY(it, ltrie_node_t, h);
        if (c->len == len && memcmp(c->level, level, len) == 0)
            return c;
    }
    return NULL;
}

ltrie_node_t *ltrie_get(ltrie_node_t *n, const char *level, size_t len, size_t size, int *created) {
    ltrie_node_t *c = ltrie_find(n, level, len);
    *created = 0;
    if (c)
        return c;
    c = calloc(1, size);
    if (!c || !(c->level = malloc(len + 1)))
        goto fail;
    memcpy(c->level, level, len);
    c->level[len] = '\0';
    c->len = len;
    c->parent = n;
    hmap_init(&c->children, node_hash, 0);
    if (hmap_insert(&n->children, &c->h, m2k_hash_keyed(level, len)) != 0)
        goto fail;
    *created = 1;
    return c;
fail:
    if (c)
        free(c->level);
    free(c);
    return NULL;
}

void ltrie_unlink(ltrie_node_t *n) {
    if (n->parent)
        hmap_remove(&n->parent->children, &n->h, m2k_hash_keyed(n->level, n->len));
    hmap_free(&n->children);
    free(n->level);
    n->level = NULL;
    n->parent = NULL;
}

typedef struct {
    void (*fn)(ltrie_node_t *, void *);
    void *ud;
} each_t;

static void each_one(hmap_node_t *h, void *ud) {
    each_t *e = ud;
    e->fn(HMAP_ENTRY(h, ltrie_node_t, h), e->ud);
}

void ltrie_each(const ltrie_node_t *n, void (*fn)(ltrie_node_t *child, void *ud), void *ud) {
    each_t e = {fn, ud};
    hmap_each((hmap_t *)&n->children, each_one, &e);
}

size_t ltrie_level_len(const char *t, size_t len, size_t pos) {
    const char *slash = pos < len ? memchr(t + pos, '/', len - pos) : NULL;
    return slash ? (size_t)(slash - (t + pos)) : len - pos;
}
