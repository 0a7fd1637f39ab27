/* Latency histogram for mqtt-bench: log-linear buckets like HdrHistogram
 * with 6 significant bits, so recording is a shift and an add and the whole
 * table (30 KB) covers 1 ns to years without configuration. */
#include <string.h>

#include "mqtt_bench.h"

/* Values below 128 get their own bucket; above, a value with its top bit at
 * position msb falls in one of 64 buckets of width 2^(msb-6). */
static unsigned hist_index(uint64_t v) {
    if (v < 128)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6;
    return 64u * shift + (unsigned)(v >> shift);
}

static uint64_t hist_upper(unsigned idx) {
    if (idx < 128)
        return idx;
    unsigned shift = idx / 64 - 1;
    uint64_t m = idx % 64 + 64;
    return ((m + 1) << shift) - 1;
}

void hist_init(hist_t *h) {
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void hist_record(hist_t *h, uint64_t ns) {
    h->counts[hist_index(ns)]++;
    h->total++;
    h->sum += (double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

uint64_t hist_quantile(const hist_t *h, double q) {
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
