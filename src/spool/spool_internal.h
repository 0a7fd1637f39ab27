/* The spool object, shared by spool.c (open, recovery, append, sync, confirm)
 * and reader.c (peek, next, rewind). */
#ifndef M2K_SPOOL_INTERNAL_H
#define M2K_SPOOL_INTERNAL_H

#include "format.h"
#include "spool/spool.h"
#include "util/log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "00000000000000000001.seg": the base sequence number, 20 digits. */
#define SPOOL_SEG_NAME_LEN 24
#define SPOOL_CHECKPOINT_NAME "checkpoint"
#define SPOOL_CHECKPOINT_TMP "checkpoint.tmp"
/* The state's two slots (state.c); "state": the file before them. */
#define SPOOL_STATE_NAME "state"
/* The daemon's record of the workers the spools under it belong to (and
 * their subdirectories, one per worker past the first): not warned about. */
#define SPOOL_WORKERS_NAME "workers"
#define SPOOL_STATE_SLOT0_NAME "state.0"
#define SPOOL_STATE_SLOT1_NAME "state.1"
/* Appends are buffered in chunks of this size (a larger frame gets a chunk
 * of its own), each written out when it is full, at a roll and by a sync. */
#define SPOOL_WBUF_FLUSH (1024 * 1024)
/* The written chunks kept for the reader (cache.c) beyond the one appended
 * to: the reader trails the writer by the group being synced and the one
 * being appended, and 32 MiB holds two groups of ~1,000 16 KiB records
 * (the in-flight window of 64-256 per connection over 10 connections).
 * Past it the oldest chunks go and the reader reads them from the file. */
#define SPOOL_CACHE_BYTES (32 * 1024 * 1024)
/* The reader reads this much at a time (a larger frame whole). */
#define SPOOL_READ_CHUNK (1024 * 1024)

typedef struct {
    uint64_t base; /* the sequence number of its first record (its name) */
    uint64_t size; /* bytes in the file */
    int fd;        /* open for writing while it is newest or written since the last sync */
} spool_segment_t;

typedef struct {
    uint64_t seq;
    int64_t ts;
} spool_ts_t;

/* Appended bytes of one segment (cache.c): data[0..len) are the file's bytes
 * [off, off + len), whole frames (and the segment header at offset 0);
 * data[0..written) are in the file. Only the last chunk has bytes not
 * written. */
typedef struct {
    uint8_t *data;
    size_t len, cap, written;
    uint64_t seg; /* the base of its segment */
    uint64_t off;
} spool_chunk_t;

struct spool {
    char *dir;
    int dirfd;
    uint64_t max_bytes, segment_bytes;

    spool_segment_t *segs; /* oldest first; the last is the one appended to */
    size_t nsegs, segs_cap;
    uint64_t seg_bytes;   /* the sum of segs[].size */
    uint64_t state_bytes; /* the state files (spool_state_*), counted in max_bytes */
    /* spool_share_bytes: the total of every spool sharing max_bytes, and
     * what this one has added to it. */
    _Atomic uint64_t *shared;
    uint64_t published;
    /* state.c: the newest slot's generation, each slot file's size and
     * whether its directory entry is synced; the file `state` of the
     * daemons before the slots, until a slot save removes it. */
    uint64_t state_gen;
    uint64_t state_slot_bytes[2], state_legacy_bytes;
    bool state_slot_synced[2], state_legacy;
    uint64_t next_seq;

    /* The last successful sync: the first sync_nsegs segments, the last of
     * them sync_off bytes long, hold every record <= synced_seq. */
    size_t sync_nsegs;
    uint64_t sync_off;
    uint64_t synced_seq;
    bool dirty, need_dir_sync;
    bool broken;     /* a rollback failed: retried before any other write */
    bool group_lost; /* records appended since the sync were removed: the next sync fails */
    int lost_code;

    uint64_t confirmed;
    uint64_t ckpt_seq; /* what the checkpoint file holds (or need not hold) */

    /* The reader: rdata holds bytes [r_base, r_base + rlen) of segs[r_seg]:
     * rdata is rbuf (read from the file), or a view into the chunk whose
     * data is r_chunk (r_mem: the writer's bytes, not read back). */
    size_t r_seg;
    int r_fd;
    uint8_t *rbuf;
    const uint8_t *rdata, *r_chunk;
    bool r_mem;
    size_t rlen, rcap, r_off;
    uint64_t r_base;
    uint64_t reads_mem, reads_disk; /* records handed out from each */
    /* A chunk's bytes did not parse (not expected): the file up to here. */
    uint64_t r_nomem_seg, r_nomem_off;
    uint64_t r_min_seq; /* the lowest sequence number the next record may have */
    uint64_t r_last;    /* the last record spool_next moved past (0: none) */
    bool peeked, peek_mem;
    size_t peek_len;
    uint64_t peek_seq;
    int64_t peek_ts;
    spool_header_t *hdrs;
    size_t hdrs_cap;
    spool_ts_t *tsq; /* read and not confirmed: (seq, timestamp), oldest at tsq_head */
    size_t tsq_head, tsq_len, tsq_cap;

    /* fdatasync(2); a seam for the tests of a failing sync. */
    int (*datasync)(int fd);
    /* spool_sync_begin..end (sync.c): the one sync in flight; gen counts
     * rollbacks, so a sync that one overtook does not publish. */
    spool_sync_job_t *job;
    bool job_busy;
    uint64_t gen;
    /* spool_confirm_begin..end (confirm.c): the one checkpoint job. */
    spool_confirm_job_t *cjob;
    bool cjob_busy;

    /* The appended bytes in chunks, oldest first (cache.c): the last one's
     * unwritten bytes are the end of the newest segment (whose size counts
     * them); the written ones before stay for the reader until it passed
     * them or they pass SPOOL_CACHE_BYTES. */
    spool_chunk_t *chunks;
    size_t nchunks, chunks_cap;
    uint64_t cache_bytes; /* the sum of chunks[].cap */
    uint8_t *spare;       /* a chunk's buffer of SPOOL_WBUF_FLUSH bytes, for reuse */

    uint64_t corrupt_skipped, truncations;
    /* Corruption the reader finds was logged and counted already when it is
     * before the reader's mark (seen_*: a rewind) or in what the scan at open
     * covered (scan_*: the newest segment). */
    uint64_t seen_base, seen_off, scan_base, scan_end;
    log_ratelimit_t rl_write;
};

void spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], uint64_t base);
/* Room for element n of the array *arr of *cap elements of size bytes
 * (doubled, 16 at first): 0 or SPOOL_ENOMEM. */
int spool_grow(void **arr, size_t *cap, size_t n, size_t size);
/* spool.c's helpers for sync.c: SPOOL_FULL or SPOOL_EIO for an errno; fsync
 * of the directory; the files back to the last successful sync (records
 * appended since are gone); the append buffer written out (-1 and errno). */
int spool_io_code(int err);
int spool_sync_dir(spool_t *sp);
int spool_rollback(spool_t *sp);
int spool_flush(spool_t *sp);
void spool_sync_job_free(spool_sync_job_t *job);
void spool_confirm_job_free(spool_confirm_job_t *job);
/* Takes segs[i] out of the list: its file closed (not deleted), its bytes
 * no longer counted. */
void spool_seg_drop(spool_t *sp, size_t i);
/* Replaces the file `name` with buf, durably: tmp, fdatasync, rename over,
 * fsync of the directory. 0, SPOOL_FULL (the disk) or SPOOL_EIO. */
int spool_replace_file(spool_t *sp, const char *name, const char *tmp, const uint8_t *buf,
                       size_t len);
/* Reads up to len bytes at off; returns the count read or -1. */
ssize_t spool_read_all(int fd, uint8_t *buf, size_t len, uint64_t off);
/* The readable end of segs[i]: what the last sync covered. */
uint64_t spool_seg_limit(const spool_t *sp, size_t i);
/* Whether a file in the directory is one of the state's (state.c). */
bool spool_state_file(const char *name);
/* Drops the reader's buffer and file; the reader starts again at segs[0]. */
void spool_reader_reset(spool_t *sp);
void spool_reader_free(spool_t *sp);
/* Called when segs[0..n) were deleted: shifts the reader. */
void spool_reader_dropped(spool_t *sp, size_t n);
/* The reader reads on from the file at its position (its chunk goes). */
void spool_reader_leave_mem(spool_t *sp);

/* cache.c: the chunks. The last one, or NULL. */
spool_chunk_t *spool_cache_last(spool_t *sp);
/* A new last chunk for the bytes of segment seg from off on, room for at
 * least need bytes; first drops the chunks the reader passed and the oldest
 * past SPOOL_CACHE_BYTES. NULL: out of memory. */
spool_chunk_t *spool_cache_push(spool_t *sp, uint64_t seg, uint64_t off, size_t need);
/* Removes the last chunk (a roll that failed after spool_cache_push). */
void spool_cache_pop(spool_t *sp);
/* The chunk holding byte off of segment seg, or NULL. */
const spool_chunk_t *spool_cache_find(const spool_t *sp, uint64_t seg, uint64_t off);
/* Every chunk goes (a rollback: bytes not written go with them). */
void spool_cache_clear(spool_t *sp);
void spool_cache_free(spool_t *sp);

/* Brings the shared total (spool_share_bytes) up to this spool's bytes. */
void spool_publish(spool_t *sp);

#endif
