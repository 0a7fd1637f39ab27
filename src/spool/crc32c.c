/* CRC32C (Castagnoli, RFC 3720 B.4) for the spool's frames (format.h).
 * Debian ships no C CRC32C library (only Python bindings), so it is ours:
 * the SSE4.2 crc32 instruction where the CPU has it (checked once at run
 * time), slicing-by-8 over the reflected polynomial otherwise. Both give the
 * same value (tests/unit/test_spool.c checks they agree). */
#include "format.h"

#include <stdatomic.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
    crc_ready = 1;
}

uint32_t spool_crc32c_table(uint32_t crc, const void *buf, size_t len) {
    if (!crc_ready)
        crc_init();
    const uint8_t *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const void *buf,
                                                            size_t len) {
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8); /* x86 is little-endian, as the format */
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

bool spool_crc32c_hw_available(void) {
    return __builtin_cpu_supports("sse4.2");
}

uint32_t spool_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    return crc_sse42(crc, buf, len);
}
#else
bool spool_crc32c_hw_available(void) {
    return false;
}

uint32_t spool_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
    return spool_crc32c_table(crc, buf, len);
}
#endif

/* 0: not checked yet, 1: table, 2: instruction (every thread that checks
 * stores the same value). */
static atomic_int crc_impl;

uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len) {
    int impl = atomic_load_explicit(&crc_impl, memory_order_relaxed);
    if (impl == 0) {
        impl = spool_crc32c_hw_available() ? 2 : 1;
        atomic_store_explicit(&crc_impl, impl, memory_order_relaxed);
    }
    return impl == 2 ? spool_crc32c_hw(crc, buf, len) : spool_crc32c_table(crc, buf, len);
}
