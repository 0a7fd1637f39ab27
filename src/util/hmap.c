#include "util/hmap.h"

#include <stdlib.h>

void hmap_init(hmap_t *m, hmap_hash_fn hash, size_t min_buckets) {
    size_t nb = 16;
    while (nb < min_buckets)
        nb *= 2;
    *m = (hmap_t){.b = NULL, .nb = 0, .n = 0, .min_nb = nb, .load = 1, .hash = hash};
}

void hmap_set_load(hmap_t *m, size_t load) {
    m->load = load ? load : 1;
}

void hmap_free(hmap_t *m) {
    free(m->b);
    m->b = NULL;
    m->nb = 0;
    m->n = 0;
}

static int hmap_grow(hmap_t *m, size_t nb) {
    hmap_node_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        for (hmap_node_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            size_t j = (size_t)m->hash(e) & (nb - 1);
            e->next = b[j];
            b[j] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int hmap_insert(hmap_t *m, hmap_node_t *n, uint64_t h) {
    if (!m->nb) {
        if (hmap_grow(m, m->min_nb ? m->min_nb : 16) != 0)
            return -1;
    } else if (m->n + 1 > m->nb * m->load && hmap_grow(m, m->nb * 2) != 0) {
        return -1;
    }
    hmap_node_t **slot = &m->b[(size_t)h & (m->nb - 1)];
    n->next = *slot;
    *slot = n;
    m->n++;
    return 0;
}

void hmap_remove(hmap_t *m, hmap_node_t *n, uint64_t h) {
    if (!m->nb)
        return;
    for (hmap_node_t **pp = &m->b[(size_t)h & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            m->n--;
            return;
        }
    }
}

void hmap_each(hmap_t *m, void (*fn)(hmap_node_t *n, void *ud), void *ud) {
    for (size_t i = 0; i < m->nb; i++) {
        for (hmap_node_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            fn(e, ud);
        }
    }
}
