/* Per-address admission (see iplimit.h): a chained hash table. */
#include "auth/iplimit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry entry_t;
struct entry {
    entry_t *next;
    uint32_t conns;
    uint64_t milli_tokens; /* tokens x 1000 */
    uint64_t refill_ms;
    char ip[IPLIMIT_KEY_MAX];
};

struct iplimit {
    uint32_t max_per_ip, rate, burst;
    size_t max_entries, n, nb;
    entry_t **b;
};

iplimit_t *iplimit_new(uint32_t max_per_ip, uint32_t rate, uint32_t burst, size_t max_entries) {
    iplimit_t *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->max_per_ip = max_per_ip;
    l->rate = rate;
    l->burst = burst ? burst : 1;
    l->max_entries = max_entries ? max_entries : 1;
    l->nb = 1024;
    while (l->nb < l->max_entries / 2 && l->nb < (1u << 20))
        l->nb *= 2;
    l->b = calloc(l->nb, sizeof(*l->b));
    if (!l->b) {
        free(l);
        return NULL;
    }
    return l;
}

void iplimit_free(iplimit_t *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->nb; i++) {
        for (entry_t *e = l->b[i], *nx; e; e = nx) {
            nx = e->next;
            free(e);
        }
    }
    free(l->b);
    free(l);
}

static size_t slot(const iplimit_t *l, const char *ip) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)ip; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h & (l->nb - 1));
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
    return e->conns == 0 && (l->rate == 0 || e->milli_tokens >= (uint64_t)l->burst * 1000u);
}

static entry_t *find(const iplimit_t *l, const char *ip, entry_t ***link) {
    entry_t **pp = &l->b[slot(l, ip)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->ip, ip) == 0)
            break;
    }
    if (link)
        *link = pp;
    return *pp;
}

int iplimit_accept(iplimit_t *l, const char *ip, uint64_t now_ms) {
    if (l->max_per_ip == 0 && l->rate == 0)
        return IPLIMIT_OK;
    entry_t **link;
    entry_t *e = find(l, ip, &link);
    if (!e) {
        if (l->n >= l->max_entries) {
            iplimit_prune(l, now_ms);
            if (l->n >= l->max_entries)
                return IPLIMIT_TABLE_FULL;
            find(l, ip, &link);
        }
        e = calloc(1, sizeof(*e));
        if (!e)
            return IPLIMIT_NOMEM;
        strncpy(e->ip, ip, sizeof(e->ip) - 1);
        e->milli_tokens = (uint64_t)l->burst * 1000u;
        e->refill_ms = now_ms;
        *link = e;
        l->n++;
    }
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

void iplimit_release(iplimit_t *l, const char *ip, uint64_t now_ms) {
    /* No shortcut when both limits are 0: a reload may have turned them
     * off while connections counted before are still open. */
    entry_t **link;
    entry_t *e = find(l, ip, &link);
    if (!e)
        return;
    if (e->conns)
        e->conns--;
    refill(l, e, now_ms);
    if (idle(l, e)) {
        *link = e->next;
        free(e);
        l->n--;
    }
}

void iplimit_prune(iplimit_t *l, uint64_t now_ms) {
    for (size_t i = 0; i < l->nb && l->n; i++) {
        for (entry_t **pp = &l->b[i]; *pp;) {
            entry_t *e = *pp;
            refill(l, e, now_ms);
            if (idle(l, e)) {
                *pp = e->next;
                free(e);
                l->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

size_t iplimit_size(const iplimit_t *l) {
    return l->n;
}

uint32_t iplimit_count(const iplimit_t *l, const char *ip) {
    entry_t *e = find(l, ip, NULL);
    return e ? e->conns : 0;
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
    default:
        return "?";
    }
}
