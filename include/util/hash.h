/* The project's hash functions: 64-bit FNV-1a over bytes (m2k_hash), fast and
 * not keyed, for tables whose keys the configuration chooses; and SipHash-2-4
 * with a random key per process (m2k_hash_keyed), for tables whose keys a
 * client chooses (client ids, addresses, rendered Kafka topic names), so no
 * client can predict which keys share a bucket. */
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

/* SipHash-2-4 of n bytes under a 16-byte key (the reference's test vectors
 * hold: tests/unit/test_util.c). */
uint64_t m2k_siphash24(const uint8_t key[16], const void *p, size_t n);

/* SipHash-2-4 under this process's key: 16 bytes from getrandom(2), drawn on
 * first use (thread-safe). */
uint64_t m2k_hash_keyed(const void *p, size_t n);

/* A 32-bit integer key (session ids): Fibonacci hashing. */
static inline uint64_t m2k_hash_u32(uint32_t v) {
    return (uint64_t)v * 0x9e3779b97f4a7c15ull;
}

#endif
