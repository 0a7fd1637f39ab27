/* The spool's reader: synced records in append order, corrupt ones logged,
 * counted and skipped (spool.h: spool_peek, spool_next, spool_rewind); from
 * the writer's chunks while they hold its position (cache.c), else from the
 * files. */
#include "spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void reader_close_seg(spool_t *sp) {
    if (sp->r_fd >= 0)
        close(sp->r_fd);
    sp->r_fd = -1;
    sp->rlen = sp->r_off = 0;
    sp->r_base = 0;
    sp->peeked = false;
    sp->r_mem = false;
    sp->r_chunk = NULL;
    sp->rdata = sp->rbuf;
}

void spool_reader_leave_mem(spool_t *sp) {
    if (!sp->r_mem)
        return;
    sp->r_base += sp->r_off;
    sp->rlen = sp->r_off = 0;
    sp->r_mem = false;
    sp->r_chunk = NULL;
    sp->rdata = sp->rbuf;
    sp->peeked = false; /* its views were into the chunk */
}

/* The reader has consumed its bytes: reads on from a chunk that holds its
 * position, up to limit (what the last sync covered). */
static bool reader_try_mem(spool_t *sp, uint64_t limit) {
    uint64_t pos = sp->r_base + sp->r_off, seg = sp->segs[sp->r_seg].base;
    if (sp->nchunks == 0 || seg < sp->r_nomem_seg ||
        (seg == sp->r_nomem_seg && pos <= sp->r_nomem_off))
        return false;
    const spool_chunk_t *c = spool_cache_find(sp, seg, pos);
    if (!c)
        return false;
    uint64_t end = c->off + c->len < limit ? c->off + c->len : limit;
    if (end <= pos)
        return false;
    sp->r_base = pos;
    sp->r_off = 0;
    sp->rlen = (size_t)(end - pos);
    sp->rdata = c->data + (pos - c->off);
    sp->r_chunk = c->data;
    sp->r_mem = true;
    return true;
}

void spool_reader_reset(spool_t *sp) {
    reader_close_seg(sp);
    sp->r_seg = 0;
}

void spool_reader_free(spool_t *sp) {
    reader_close_seg(sp);
    free(sp->rbuf);
    free(sp->hdrs);
    free(sp->tsq);
    sp->rbuf = NULL;
    sp->rdata = NULL;
    sp->hdrs = NULL;
    sp->tsq = NULL;
}

void spool_reader_dropped(spool_t *sp, size_t n) {
    if (sp->r_seg < n)
        spool_reader_reset(sp);
    else
        sp->r_seg -= n;
}

void spool_rewind(spool_t *sp) {
    spool_reader_reset(sp);
    sp->r_min_seq = 0;
    sp->r_last = sp->confirmed;
    sp->tsq_head = sp->tsq_len = 0;
}

/* Reads the next SPOOL_READ_CHUNK bytes of segs[r_seg] (a frame larger than
 * that whole), up to what the last sync covered, into rbuf, after dropping
 * the bytes already consumed. Returns 0 or a code. */
static int reader_fill(spool_t *sp, uint64_t limit) {
    spool_reader_leave_mem(sp);
    if (sp->r_fd < 0) {
        char name[SPOOL_SEG_NAME_LEN + 1];
        spool_seg_name(name, sp->segs[sp->r_seg].base);
        sp->r_fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (sp->r_fd < 0) {
            log_error("spool: %s/%s: cannot open: %s", sp->dir, name, strerror(errno));
            return SPOOL_EIO;
        }
    }
    if (sp->r_off > 0) {
        memmove(sp->rbuf, sp->rbuf + sp->r_off, sp->rlen - sp->r_off);
        sp->r_base += sp->r_off;
        sp->rlen -= sp->r_off;
        sp->r_off = 0;
    }
    uint64_t end = sp->r_base + sp->rlen;
    if (end >= limit)
        return 0;
    size_t want = (size_t)(limit - end), chunk = SPOOL_READ_CHUNK;
    if (sp->rlen >= SPOOL_FRAME_HEADER_SIZE) {
        const uint8_t *l = sp->rbuf + 8; /* the partial frame's body_len */
        size_t flen = SPOOL_FRAME_HEADER_SIZE +
                      ((size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24);
        if (flen > sp->rlen && flen - sp->rlen > chunk)
            chunk = flen - sp->rlen;
    }
    if (want > chunk)
        want = chunk;
    if (sp->rlen + want > sp->rcap) {
        uint8_t *b = realloc(sp->rbuf, sp->rlen + want);
        if (!b)
            return SPOOL_ENOMEM;
        sp->rbuf = b;
        sp->rcap = sp->rlen + want;
        sp->rdata = b;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(sp->r_fd, sp->rbuf + sp->rlen + got, want - got, (off_t)(end + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_error("spool: %s: read of segment %" PRIu64 " failed at %" PRIu64 ": %s", sp->dir,
                      sp->segs[sp->r_seg].base, end + got, n < 0 ? strerror(errno) : "short file");
            return SPOOL_EIO;
        }
        got += (size_t)n;
    }
    sp->rlen += want;
    return 0;
}

static void skip_log(spool_t *sp, uint64_t off, size_t n, const char *what) {
    uint64_t base = sp->segs[sp->r_seg].base;
    if (base < sp->seen_base || (base == sp->seen_base && off < sp->seen_off) ||
        (base == sp->scan_base && off < sp->scan_end))
        return;
    sp->seen_base = base;
    sp->seen_off = off + 1;
    char name[SPOOL_SEG_NAME_LEN + 1];
    spool_seg_name(name, sp->segs[sp->r_seg].base);
    log_error("spool: %s/%s: %s at offset %" PRIu64 ": %zu bytes skipped", sp->dir, name, what, off,
              n);
    sp->corrupt_skipped++;
}

int spool_peek(spool_t *sp, spool_record_t *rec, uint64_t *seq_out) {
    for (;;) {
        if (sp->r_seg >= sp->nsegs || sp->r_seg >= sp->sync_nsegs)
            return SPOOL_EMPTY;
        uint64_t limit = spool_seg_limit(sp, sp->r_seg);
        if (sp->r_base + sp->r_off < SPOOL_SEG_HEADER_SIZE) {
            /* The header was checked at open; a segment is read after it. */
            spool_reader_leave_mem(sp);
            sp->r_base = SPOOL_SEG_HEADER_SIZE;
            sp->rlen = sp->r_off = 0;
        }
        if (sp->r_off == sp->rlen && sp->r_base + sp->rlen >= limit) {
            if (sp->r_seg + 1 < sp->sync_nsegs) {
                reader_close_seg(sp);
                sp->r_seg++;
                continue;
            }
            return SPOOL_EMPTY;
        }
        /* At every record from the file, and at the end of a chunk's synced
         * bytes: on from memory where a chunk holds the position. */
        bool mem = (sp->r_off == sp->rlen || !sp->r_mem) && reader_try_mem(sp, limit);
        if (!mem && sp->r_off == sp->rlen) {
            int rc = reader_fill(sp, limit);
            if (rc != 0)
                return rc;
        }
        uint64_t base = sp->segs[sp->r_seg].base;
        uint64_t min_seq = sp->r_min_seq > base ? sp->r_min_seq : base;
        const uint8_t *p = sp->rdata + sp->r_off;
        size_t avail = sp->rlen - sp->r_off, flen;
        uint64_t seq;
        /* The writer's own bytes, whole frames: no CRC to check. */
        spool_frame_result_t r = sp->r_mem ? spool_frame_peek(p, avail, &flen, &seq)
                                           : spool_frame_check(p, avail, min_seq, &flen, &seq);
        if (r != SPOOL_FRAME_OK && sp->r_mem) {
            /* Not expected: the file decides, up to this position. */
            sp->r_nomem_seg = base;
            sp->r_nomem_off = sp->r_base + sp->r_off;
            spool_reader_leave_mem(sp);
            continue;
        }
        if (r != SPOOL_FRAME_OK) {
            if (sp->r_base + sp->rlen < limit) {
                int rc = reader_fill(sp, limit);
                if (rc != 0)
                    return rc;
                continue;
            }
            size_t skip = spool_frame_resync(p, avail, min_seq);
            skip_log(sp, sp->r_base + sp->r_off, skip,
                     skip < avail ? "corrupt record" : "corrupt tail");
            sp->r_off += skip;
            continue;
        }
        if (seq <= sp->confirmed) {
            sp->r_off += flen;
            sp->r_min_seq = seq + 1;
            continue;
        }
        int rc = spool_body_decode(p + SPOOL_FRAME_HEADER_SIZE, flen - SPOOL_FRAME_HEADER_SIZE, rec,
                                   &sp->hdrs, &sp->hdrs_cap);
        if (rc != 0)
            return rc == SPOOL_ENOMEM ? rc : SPOOL_EIO; /* checked by spool_frame_check */
        sp->peeked = true;
        sp->peek_mem = sp->r_mem;
        sp->peek_len = flen;
        sp->peek_seq = seq;
        sp->peek_ts = rec->timestamp_ms;
        if (seq_out)
            *seq_out = seq;
        return 0;
    }
}

void spool_next(spool_t *sp) {
    if (!sp->peeked)
        return;
    sp->peeked = false;
    if (sp->peek_mem)
        sp->reads_mem++;
    else
        sp->reads_disk++;
    sp->r_off += sp->peek_len;
    sp->r_min_seq = sp->peek_seq + 1;
    sp->r_last = sp->peek_seq;
    if (sp->tsq_len == sp->tsq_cap) {
        size_t cap = sp->tsq_cap ? sp->tsq_cap * 2 : 64;
        spool_ts_t *q = malloc(cap * sizeof *q);
        if (!q)
            return; /* the oldest timestamp is then only approximate */
        for (size_t i = 0; i < sp->tsq_len; i++)
            q[i] = sp->tsq[(sp->tsq_head + i) % sp->tsq_cap];
        free(sp->tsq);
        sp->tsq = q;
        sp->tsq_cap = cap;
        sp->tsq_head = 0;
    }
    sp->tsq[(sp->tsq_head + sp->tsq_len) % sp->tsq_cap] = (spool_ts_t){sp->peek_seq, sp->peek_ts};
    sp->tsq_len++;
}
