/* The level trie under the subscription trie and the retained store: a node
 * per topic level, children by level string in a per-node hash map (keyed
 * hash: the levels are chosen by clients and by Kafka records). A module's
 * node embeds ltrie_node_t first. Private to src/downlink/. */
#ifndef M2K_DOWNLINK_LTRIE_H
#define M2K_DOWNLINK_LTRIE_H

#include "util/hmap.h"

#include <stddef.h>

typedef struct ltrie_node {
    hmap_node_t h; /* in parent->children */
    struct ltrie_node *parent;
    hmap_t children;
    char *level; /* NUL-terminated copy; "" at the root */
    size_t len;
} ltrie_node_t;

/* Initialises a root (allocated by the caller). */
void ltrie_root_init(ltrie_node_t *root);
/* The child of n for level, or NULL. */
ltrie_node_t *ltrie_find(const ltrie_node_t *n, const char *level, size_t len);
/* The child of n for level, created (calloc of size bytes) when absent; NULL
 * when out of memory. *created tells which. */
ltrie_node_t *ltrie_get(ltrie_node_t *n, const char *level, size_t len, size_t size, int *created);
/* Unlinks a childless node from its parent and frees its level and map; the
 * caller frees the node itself. */
void ltrie_unlink(ltrie_node_t *n);
/* Calls fn on each child of n (fn may unlink and free it). */
void ltrie_each(const ltrie_node_t *n, void (*fn)(ltrie_node_t *child, void *ud), void *ud);

/* The length of the level of topic t that starts at pos (up to '/' or len). */
size_t ltrie_level_len(const char *t, size_t len, size_t pos);

#endif
