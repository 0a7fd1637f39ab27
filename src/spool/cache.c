/* The append buffer in chunks, kept for the reader: a feed that is caught up
 * with the writer reads the records from the bytes it appended, not back from
 * the file (no pread, no second CRC check); what is no longer here (after a
 * restart, a rollback, or past SPOOL_CACHE_BYTES when the feed lags) is read
 * from the file (reader.c). The reader still reads only what a sync covered,
 * so nothing is handed out before it is durable. */
#include "spool_internal.h"

#include <stdlib.h>
#include <string.h>

spool_chunk_t *spool_cache_last(spool_t *sp) {
    return sp->nchunks ? &sp->chunks[sp->nchunks - 1] : NULL;
}

const spool_chunk_t *spool_cache_find(const spool_t *sp, uint64_t seg, uint64_t off) {
    if (sp->nchunks == 0 || sp->chunks[0].seg > seg ||
        (sp->chunks[0].seg == seg && off < sp->chunks[0].off))
        return NULL; /* before every chunk: a feed that lags */
    for (size_t i = sp->nchunks; i-- > 0;) {
        const spool_chunk_t *c = &sp->chunks[i];
        if (c->seg == seg && c->off <= off && off < c->off + c->len)
            return c;
        if (c->seg < seg || (c->seg == seg && c->off + c->len <= off))
            break; /* chunks are in file order */
    }
    return NULL;
}

static void chunk_release(spool_t *sp, spool_chunk_t *c) {
    if (sp->r_mem && sp->r_chunk == c->data)
        spool_reader_leave_mem(sp);
    sp->cache_bytes -= c->cap;
    if (!sp->spare && c->cap == SPOOL_WBUF_FLUSH)
        sp->spare = c->data;
    else
        free(c->data);
}

/* Drops the first n chunks. */
static void drop_front(spool_t *sp, size_t n) {
    if (n == 0)
        return; /* chunks may be NULL */
    for (size_t i = 0; i < n; i++)
        chunk_release(sp, &sp->chunks[i]);
    memmove(sp->chunks, sp->chunks + n, (sp->nchunks - n) * sizeof *sp->chunks);
    sp->nchunks -= n;
}

/* Whether the reader has moved past every byte of c. */
static bool passed(const spool_t *sp, const spool_chunk_t *c) {
    if (sp->r_seg >= sp->nsegs)
        return true; /* no segment left to read: c's is gone */
    uint64_t seg = sp->segs[sp->r_seg].base, pos = sp->r_base + sp->r_off;
    return c->seg < seg || (c->seg == seg && c->off + c->len <= pos);
}

static void trim(spool_t *sp) {
    size_t n = 0;
    while (n < sp->nchunks && sp->chunks[n].written == sp->chunks[n].len &&
           passed(sp, &sp->chunks[n]))
        n++;
    uint64_t bytes = sp->cache_bytes;
    for (size_t i = 0; i < n; i++)
        bytes -= sp->chunks[i].cap;
    /* The feed lags: its oldest chunks go, it reads them from the file. */
    while (n < sp->nchunks && bytes > SPOOL_CACHE_BYTES &&
           sp->chunks[n].written == sp->chunks[n].len)
        bytes -= sp->chunks[n++].cap;
    if (n > 0)
        drop_front(sp, n);
}

spool_chunk_t *spool_cache_push(spool_t *sp, uint64_t seg, uint64_t off, size_t need) {
    trim(sp);
    if (spool_grow((void **)&sp->chunks, &sp->chunks_cap, sp->nchunks, sizeof *sp->chunks) != 0)
        return NULL;
    size_t cap = need > SPOOL_WBUF_FLUSH ? need : SPOOL_WBUF_FLUSH;
    uint8_t *data;
    if (cap == SPOOL_WBUF_FLUSH && sp->spare) {
        data = sp->spare;
        sp->spare = NULL;
    } else if (!(data = malloc(cap))) {
        return NULL;
    }
    spool_chunk_t *c = &sp->chunks[sp->nchunks++];
    *c = (spool_chunk_t){.data = data, .cap = cap, .seg = seg, .off = off};
    sp->cache_bytes += cap;
    return c;
}

void spool_cache_pop(spool_t *sp) {
    if (sp->nchunks == 0)
        return;
    chunk_release(sp, &sp->chunks[sp->nchunks - 1]);
    sp->nchunks--;
}

void spool_cache_clear(spool_t *sp) {
    drop_front(sp, sp->nchunks);
}

void spool_cache_free(spool_t *sp) {
    spool_cache_clear(sp);
    free(sp->chunks);
    free(sp->spare);
    sp->chunks = NULL;
    sp->spare = NULL;
    sp->chunks_cap = 0;
}
