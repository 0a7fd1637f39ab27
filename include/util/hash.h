/* The project's one hash function: 64-bit FNV-1a over bytes. Not keyed: for
 * tables whose keys an attacker chooses, mix a per-table random seed in with
 * m2k_hash_seed (the failed-login throttle does). */
#ifndef M2K_UTIL_HASH_H
#define M2K_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define M2K_HASH_INIT 0xcbf29ce484222325ull

/* Continues a hash over n more bytes: m2k_hash_seed(M2K_HASH_INIT, p, n) is
 * m2k_hash(p, n); chaining two calls hashes the concatenation. */
static inline uint64_t m2k_hash_seed(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t m2k_hash(const void *p, size_t n) {
    return m2k_hash_seed(M2K_HASH_INIT, p, n);
}

/* A 32-bit integer key (session ids): Fibonacci hashing. */
static inline uint64_t m2k_hash_u32(uint32_t v) {
    return (uint64_t)v * 0x9e3779b97f4a7c15ull;
}

#endif
