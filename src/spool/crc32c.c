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
#include <pthread.h>

/* The crc32 instruction takes three cycles and can start one a cycle: three
 * independent CRCs over three adjacent blocks, combined by appending the
 * zeros of a block's length to the CRC before it (an operator on the
 * register: tables per length, built once), go three times as fast over a
 * 16 KiB record as one chain (Mark Adler's crc32c.c does the same). */
#define CRC_LONG 4096
#define CRC_SHORT 256

static uint32_t crc_long[4][256], crc_short[4][256];
static pthread_once_t crc_shift_once = PTHREAD_ONCE_INIT;

/* GF(2) matrix (32 columns) times a vector. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The tables applying len zero bytes (a power of two) to a register. */
static void crc_zeros(uint32_t zeros[4][256], size_t len) {
    uint32_t even[32], odd[32];
    odd[0] = CRC32C_POLY; /* one zero bit */
    for (int n = 1; n < 32; n++)
        odd[n] = 1u << (n - 1);
    gf2_square(even, odd); /* two bits */
    gf2_square(odd, even); /* four bits */
    const uint32_t *op = even;
    for (;;) {
        gf2_square(even, odd); /* one byte, then 4, 16, ... */
        op = even;
        len >>= 1;
        if (len == 0)
            break;
        gf2_square(odd, even); /* two bytes, then 8, 32, ... */
        op = odd;
        len >>= 1;
        if (len == 0)
            break;
    }
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_times(op, n);
        zeros[1][n] = gf2_times(op, n << 8);
        zeros[2][n] = gf2_times(op, n << 16);
        zeros[3][n] = gf2_times(op, n << 24);
    }
}

static void crc_shift_init(void) {
    crc_zeros(crc_long, CRC_LONG);
    crc_zeros(crc_short, CRC_SHORT);
}

static uint32_t crc_shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xFF] ^ zeros[1][(crc >> 8) & 0xFF] ^ zeros[2][(crc >> 16) & 0xFF] ^
           zeros[3][crc >> 24];
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* x86 is little-endian, as the format */
    return v;
}

/* Three chains over blocks of n bytes each while 3n remain. */
__attribute__((target("sse4.2"))) static uint64_t
crc_3way(uint64_t c0, const uint8_t **pp, size_t *lenp, size_t n, uint32_t zeros[4][256]) {
    const uint8_t *p = *pp;
    size_t len = *lenp;
    while (len >= 3 * n) {
        uint64_t c1 = 0, c2 = 0;
        for (const uint8_t *end = p + n; p < end; p += 8) {
            c0 = _mm_crc32_u64(c0, load64(p));
            c1 = _mm_crc32_u64(c1, load64(p + n));
            c2 = _mm_crc32_u64(c2, load64(p + 2 * n));
        }
        c0 = crc_shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = crc_shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * n;
        len -= 3 * n;
    }
    *pp = p;
    *lenp = len;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const void *buf,
                                                            size_t len) {
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    if (len >= 3 * CRC_SHORT) {
        pthread_once(&crc_shift_once, crc_shift_init);
        c = crc_3way(c, &p, &len, CRC_LONG, crc_long);
        c = crc_3way(c, &p, &len, CRC_SHORT, crc_short);
    }
    while (len >= 8) {
        c = _mm_crc32_u64(c, load64(p));
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
