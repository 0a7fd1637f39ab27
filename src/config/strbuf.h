/* A growable string for the importer's output (private to config/): a
 * failed allocation sets .oom and later appends do nothing, so callers check
 * once at the end. */
#ifndef M2K_CONFIG_STRBUF_H
#define M2K_CONFIG_STRBUF_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sb_t;

static inline void sb_putn(sb_t *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void sb_puts(sb_t *b, const char *s) {
    sb_putn(b, s, strlen(s));
}

static inline void sb_putc(sb_t *b, char c) {
    sb_putn(b, &c, 1);
}

#endif
