/* What every libFuzzer target here shares: the entry point (also called by
 * replay_main.c under gcc), a check that stays in release builds, and the
 * chunked feed of the decoder targets. */
#ifndef M2K_TESTS_FUZZ_H
#define M2K_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* assert() vanishes under NDEBUG (RelWithDebInfo); this does not. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* An input fed in chunks of 1..61 bytes whose sizes the input itself picks,
 * so whole and chunked decoding can be compared. */
typedef struct {
    const uint8_t *data;
    size_t size, in, k;
} fuzz_chunks_t;

/* Appends the next chunk to buf[0..*have), as far as cap and the input allow;
 * c->in == c->size once the whole input is in. */
static inline void fuzz_chunk_next(fuzz_chunks_t *c, uint8_t *buf, size_t cap, size_t *have) {
    if (c->in >= c->size || *have >= cap)
        return;
    size_t n = 1 + c->data[(c->k++ * 7) % c->size] % 61;
    if (n > cap - *have)
        n = cap - *have;
    if (n > c->size - c->in)
        n = c->size - c->in;
    memcpy(buf + *have, c->data + c->in, n);
    *have += n;
    c->in += n;
}

#endif
