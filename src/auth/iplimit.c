/* Per-address admission (see iplimit.h): entries in the util hash map. */
#include "auth/iplimit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/hmap.h"

typedef struct entry entry_t;
struct entry {
    hmap_node_t node;
    uint32_t conns;
    uint32_t handshakes;   /* TLS handshakes in progress */
    uint64_t milli_tokens; /* tokens x 1000 */
    uint64_t refill_ms;
    char ip[IPLIMIT_KEY_MAX];
};

struct iplimit {
    uint32_t max_per_ip, rate, burst;
    size_t max_entries;
    hmap_t map; /* of entry_t, by address */
};

static uint64_t entry_hash(const hmap_node_t *n) {
    const entry_t *e = HMAP_ENTRY(n, entry_t, node);
    return m2k_hash_keyed(e->ip, strlen(e->ip));
}

iplimit_t *iplimit_new(uint32_t max_per_ip, uint32_t rate, uint32_t burst, size_t max_entries) {
    iplimit_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->max_per_ip = max_per_ip;
    l->rate = rate;
    l->burst = burst ? burst : 1;
    l->max_entries = max_entries ? max_entries : 1;
    hmap_init(&l->map, entry_hash, 1024);
    return l;
}

static void entry_free(hmap_node_t *n, void *ud) {
    free(HMAP_ENTRY(n, entry_t, node));
}

void iplimit_free(iplimit_t *l) {
    if (!l)
        return;
    hmap_each(&l->map, entry_free, NULL);
    hmap_free(&l->map);
    free(l);
}

static void refill(const iplimit_t *l, entry_t *e, uint64_t now_ms) {
    uint64_t cap = (uint64_t)l->burst * 1000u;
    if (e->milli_tokens > cap)
        e->milli_tokens = cap; /* the burst was lowered by a reload */
    if (l->rate && now_ms > e->refill_ms) {
        /* rate tokens per second = rate milli-tokens per millisecond */
        uint64_t dt = now_ms - e->refill_ms;
        if (dt > cap / l->rate)
            e->milli_tokens = cap; /* also keeps dt * rate from overflowing */
        else if (cap - e->milli_tokens <= dt * l->rate)
            e->milli_tokens = cap;
        else
            e->milli_tokens += dt * l->rate;
        e->refill_ms = now_ms;
    }
}

static bool idle(const iplimit_t *l, const entry_t *e) {
    return e->conns == 0 && e->handshakes == 0 &&
           (l->rate == 0 || e->milli_tokens >= (uint64_t)l->burst * 1000u);
}

static entry_t *find(const iplimit_t *l, const char *ip, uint64_t h) {
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, &l->map, h) {
        entry_t *e = HMAP_ENTRY(n, entry_t, node);
        if (strcmp(e->ip, ip) == 0)
            return e;
    }
    return NULL;
}

/* ip's entry, made when there is none: NULL with *rc when that fails. */
static entry_t *get(iplimit_t *l, const char *ip, uint64_t h, uint64_t now_ms, int *rc) {
    entry_t *e = find(l, ip, h);
    if (e)
        return e;
    *rc = IPLIMIT_TABLE_FULL;
    if (l->map.n >= l->max_entries) {
        iplimit_prune(l, now_ms);
        if (l->map.n >= l->max_entries)
            return NULL;
    }
    *rc = IPLIMIT_NOMEM;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    strncpy(e->ip, ip, sizeof(e->ip) - 1);
    e->milli_tokens = (uint64_t)l->burst * 1000u;
    e->refill_ms = now_ms;
    if (hmap_insert(&l->map, &e->node, h) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

int iplimit_accept(iplimit_t *l, const char *ip, uint64_t now_ms) {
    if (l->max_per_ip == 0 && l->rate == 0)
        return IPLIMIT_OK;
    uint64_t h = m2k_hash_keyed(ip, strlen(ip));
    int rc;
    entry_t *e = get(l, ip, h, now_ms, &rc);
    if (!e)
        return rc;
    refill(l, e, now_ms);
    if (l->max_per_ip && e->conns >= l->max_per_ip)
        return IPLIMIT_TOO_MANY;
    if (l->rate) {
        if (e->milli_tokens < 1000)
            return IPLIMIT_RATE;
        e->milli_tokens -= 1000;
    }
    e->conns++;
    return IPLIMIT_OK;
}

void iplimit_set_limits(iplimit_t *l, uint32_t max_per_ip, uint32_t rate, uint32_t burst) {
    l->max_per_ip = max_per_ip;
    l->rate = rate;
    l->burst = burst ? burst : 1;
}

/* Frees e if it holds nothing: no connection and a full bucket of tokens. */
static void drop_if_idle(iplimit_t *l, entry_t *e, uint64_t h, uint64_t now_ms) {
    refill(l, e, now_ms);
    if (idle(l, e)) {
        hmap_remove(&l->map, &e->node, h);
        free(e);
    }
}

/* One connection, or one handshake, of ip fewer. */
static void uncount(iplimit_t *l, const char *ip, uint64_t now_ms, bool handshake) {
    uint64_t h = m2k_hash_keyed(ip, strlen(ip));
    entry_t *e = find(l, ip, h);
    if (!e)
        return;
    uint32_t *n = handshake ? &e->handshakes : &e->conns;
    if (*n)
        (*n)--;
    drop_if_idle(l, e, h, now_ms);
}

void iplimit_release(iplimit_t *l, const char *ip, uint64_t now_ms) {
    /* No shortcut when both limits are 0: a reload may have turned them
     * off while connections counted before are still open. */
    uncount(l, ip, now_ms, false);
}

int iplimit_handshake_begin(iplimit_t *l, const char *ip, uint32_t max, uint64_t now_ms) {
    uint64_t h = m2k_hash_keyed(ip, strlen(ip));
    int rc;
    entry_t *e = get(l, ip, h, now_ms, &rc);
    if (!e)
        return rc;
    if (e->handshakes >= max) {
        drop_if_idle(l, e, h, now_ms);
        return IPLIMIT_HANDSHAKES;
    }
    e->handshakes++;
    return IPLIMIT_OK;
}

void iplimit_handshake_end(iplimit_t *l, const char *ip, uint64_t now_ms) {
    uncount(l, ip, now_ms, true);
}

typedef struct {
    iplimit_t *l;
    uint64_t now_ms;
} prune_t;

static void prune_one(hmap_node_t *n, void *ud) {
    prune_t *p = ud;
    entry_t *e = HMAP_ENTRY(n, entry_t, node);
    drop_if_idle(p->l, e, entry_hash(n), p->now_ms);
}

void iplimit_prune(iplimit_t *l, uint64_t now_ms) {
    prune_t p = {l, now_ms};
    hmap_each(&l->map, prune_one, &p);
}

size_t iplimit_size(const iplimit_t *l) {
    return l->map.n;
}

uint32_t iplimit_count(const iplimit_t *l, const char *ip) {
    entry_t *e = find(l, ip, m2k_hash_keyed(ip, strlen(ip)));
    return e ? e->conns : 0;
}

uint32_t iplimit_handshakes(const iplimit_t *l, const char *ip) {
    entry_t *e = find(l, ip, m2k_hash_keyed(ip, strlen(ip)));
    return e ? e->handshakes : 0;
}

const char *iplimit_strerror(int rc) {
    switch (rc) {
    case IPLIMIT_OK:
        return "ok";
    case IPLIMIT_TOO_MANY:
        return "max_connections_per_ip reached";
    case IPLIMIT_RATE:
        return "connect_rate_per_ip exceeded";
    case IPLIMIT_TABLE_FULL:
        return "too many source addresses tracked";
    case IPLIMIT_NOMEM:
        return "out of memory";
    case IPLIMIT_HANDSHAKES:
        return "max_tls_handshakes_per_ip in progress";
    default:
        return "?";
    }
}
