/* The bound on records handed to other workers (credit.h): a count per
 * worker and a waiting flag, all atomics. The consumer sets the flag and
 * then looks at the counts again, a worker lowers its count and then takes
 * the flag: whichever comes second sees the other's write, so a wake-up is
 * never lost (a worker lowers both counts before it takes the flag). */
#include "downlink/credit.h"

#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
    atomic_size_t records, bytes;
} held_t;

struct dl_credit {
    unsigned n;
    size_t max, max_bytes;
    atomic_bool waiting;
    atomic_uint_fast64_t waits;
    held_t held[]; /* per worker */
};

dl_credit_t *dl_credit_new(unsigned n, size_t max, size_t max_bytes) {
    dl_credit_t *c = malloc(sizeof(*c) + n * sizeof(c->held[0]));
    if (!c)
        return NULL;
    c->n = n;
    c->max = max;
    c->max_bytes = max_bytes;
    atomic_init(&c->waiting, false);
    atomic_init(&c->waits, 0);
    for (unsigned i = 0; i < n; i++) {
        atomic_init(&c->held[i].records, 0);
        atomic_init(&c->held[i].bytes, 0);
    }
    return c;
}

void dl_credit_free(dl_credit_t *c) {
    free(c);
}

static bool over(const dl_credit_t *c, size_t records, size_t bytes, size_t want) {
    return records + want > c->max || bytes >= c->max_bytes;
}

static bool full(const dl_credit_t *c, size_t want) {
    for (unsigned i = 0; i < c->n; i++)
        if (over(c, atomic_load(&c->held[i].records), atomic_load(&c->held[i].bytes), want))
            return true;
    return false;
}

size_t dl_credit_room(dl_credit_t *c, size_t want) {
    if (!full(c, want))
        return want;
    atomic_store(&c->waiting, true);
    if (!full(c, want)) {
        atomic_store(&c->waiting, false);
        return want;
    }
    atomic_fetch_add(&c->waits, 1);
    return 0;
}

void dl_credit_take(dl_credit_t *c, unsigned i, size_t n, size_t bytes) {
    atomic_fetch_add(&c->held[i].records, n);
    atomic_fetch_add(&c->held[i].bytes, bytes);
}

bool dl_credit_give(dl_credit_t *c, unsigned i, size_t n, size_t bytes, size_t want) {
    size_t records = atomic_fetch_sub(&c->held[i].records, n) - n;
    size_t left = atomic_fetch_sub(&c->held[i].bytes, bytes) - bytes;
    return !over(c, records, left, want) && atomic_exchange(&c->waiting, false);
}

size_t dl_credit_held(const dl_credit_t *c, unsigned i) {
    return atomic_load(&c->held[i].records);
}

size_t dl_credit_held_bytes(const dl_credit_t *c, unsigned i) {
    return atomic_load(&c->held[i].bytes);
}

uint64_t dl_credit_waits(const dl_credit_t *c) {
    return atomic_load(&c->waits);
}
