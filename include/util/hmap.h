/* The project's one hash map: intrusive, chained, power-of-two buckets that
 * double when the map holds as many entries as buckets (or `load` times as
 * many, hmap_set_load). An element embeds an
 * hmap_node_t; the map stores no hash, so it is given a function that hashes
 * an element (used when it grows) and callers pass the hash of a key to
 * look up. No allocation but the bucket array; elements are owned by the
 * caller.
 *
 *     hmap_node_t *n;
 *     HMAP_FOR_BUCKET(n, &map, m2k_hash(key, len))
 *         if (matches(LIST_ENTRY-like container of n)) ...
 */
#ifndef M2K_UTIL_HMAP_H
#define M2K_UTIL_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hmap_node {
    struct hmap_node *next;
} hmap_node_t;

typedef uint64_t (*hmap_hash_fn)(const hmap_node_t *n);

typedef struct {
    hmap_node_t **b;
    size_t nb, n; /* buckets (0 until the first insert), elements */
    size_t min_nb;
    size_t load; /* entries per bucket before the array doubles (1) */
    hmap_hash_fn hash;
} hmap_t;

#define HMAP_ENTRY(node, type, field) ((type *)(void *)((char *)(node)-offsetof(type, field)))

/* Every node that may hold an element with hash h (compare the key). */
#define HMAP_FOR_BUCKET(it, map, h)                                                                \
    for ((it) = (map)->nb ? (map)->b[(size_t)(h) & ((map)->nb - 1)] : NULL; (it); (it) = (it)->next)

/* An empty map; min_buckets (rounded up to a power of two, 0 = lazily 16) is
 * allocated on the first insert. */
void hmap_init(hmap_t *m, hmap_hash_fn hash, size_t min_buckets);
/* Lets the map hold `load` (>= 1) entries per bucket on average before its
 * bucket array doubles: longer chains, half the array per doubling of load
 * (for a map looked up rarely whose array is memory per element). */
void hmap_set_load(hmap_t *m, size_t load);
/* Frees the bucket array (not the elements). */
void hmap_free(hmap_t *m);
/* Links n, whose hash is h (= m->hash(n)); 0, or -1 when the bucket array
 * could not be allocated (n is then not linked). */
int hmap_insert(hmap_t *m, hmap_node_t *n, uint64_t h);
/* Unlinks n (hash h); a node not in the map is ignored. */
void hmap_remove(hmap_t *m, hmap_node_t *n, uint64_t h);
/* Calls fn on every element (fn may free it: the next is read first). */
void hmap_each(hmap_t *m, void (*fn)(hmap_node_t *n, void *ud), void *ud);

#endif
