/* The crash-safe local spool: records Kafka could not take yet, on disk in
 * segment files like Kafka's own log (docs/architecture.md, "Spool").
 *
 * One owner, one thread. Appends go to the newest segment; spool_sync() makes
 * every record appended since the last sync durable with one fdatasync (group
 * commit); the reader hands out synced records in append order; the caller
 * confirms what Kafka took with spool_confirm(), which writes the checkpoint
 * and deletes drained segments. spool_open() recovers after a crash: a torn
 * tail is truncated, a corrupt record in the middle is skipped and counted.
 *
 *   spool_t *sp;
 *   if (spool_open(&opts, &sp, err, sizeof err) != 0) die(err);
 *   spool_append(sp, &rec, &seq);  ...            (a loop turn's records)
 *   if (spool_sync(sp, &durable) == 0) ack every record with seq <= durable;
 *   while (spool_peek(sp, &rec, &seq) == 0) { produce(&rec, seq); spool_next(sp); }
 *   spool_confirm(sp, highest seq such that all before it were delivered);
 */
#ifndef M2K_SPOOL_H
#define M2K_SPOOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes: 0 or one of these. */
enum {
    SPOOL_FULL = -1,   /* max_bytes reached, or the disk said ENOSPC/EDQUOT/EIO/EFBIG */
    SPOOL_EMPTY = -2,  /* spool_peek: no synced record left to read */
    SPOOL_EINVAL = -3, /* a record too large, a field too long, a confirm beyond the reader */
    SPOOL_EIO = -4,    /* any other I/O error (errno in the log line) */
    SPOOL_ENOMEM = -5,
};

/* The largest record body (topic + key + value + headers + tag + fixed fields). */
#define SPOOL_BODY_MAX (64u * 1024 * 1024)
#define SPOOL_SEGMENT_BYTES_DEFAULT (64ull * 1024 * 1024)

typedef struct spool spool_t;

typedef struct {
    const char *name;
    size_t name_len;
    const void *value; /* NULL: a null header value */
    size_t value_len;
} spool_header_t;

/* What a Kafka record needs, plus an opaque tag for the MQTT side. A NULL
 * key or value is stored as null (not as empty). In records handed out by
 * spool_peek every pointer is a view into the spool's read buffer, valid
 * until the next spool_* call on the same spool. */
typedef struct {
    const char *topic; /* 1..65535 bytes */
    size_t topic_len;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const spool_header_t *headers; /* from spool_peek: NULL when n_headers is 0 */
    size_t n_headers;              /* at most 65535 */
    int64_t timestamp_ms;
    const void *tag; /* at most 65535 bytes */
    size_t tag_len;
} spool_record_t;

typedef struct {
    const char *dir;        /* created (one level) if missing */
    uint64_t max_bytes;     /* every byte of segments + checkpoint + state; 0: no bound */
    uint64_t segment_bytes; /* roll size; 0: SPOOL_SEGMENT_BYTES_DEFAULT */
} spool_options_t;

typedef struct {
    uint64_t bytes;              /* on disk: segments + the checkpoint (always counted) + state */
    uint64_t records;            /* appended and not confirmed (by sequence number) */
    int64_t oldest_timestamp_ms; /* of the oldest unconfirmed synced record; 0: none */
    uint64_t corrupt_skipped;    /* corrupt records (or runs of bytes) skipped */
    uint64_t truncations;        /* torn tails truncated at open */
    uint64_t segments;
    uint64_t next_seq;      /* the sequence number the next append gets */
    uint64_t synced_seq;    /* every record <= this one is durable */
    uint64_t confirmed_seq; /* every record <= this one was confirmed */
} spool_stats_t;

/* Opens (or creates) the spool in opts->dir and recovers it. Returns 0 and
 * *out (free with spool_close), or a negative code with "DIR: what: strerror"
 * in errbuf. */
int spool_open(const spool_options_t *opts, spool_t **out, char *errbuf, size_t errlen);
/* For --check beside a running daemon: whether spool_open could use dir,
 * without creating, locking or reading anything. dir must be a writable
 * directory, or missing with a writable parent. Returns 0, or SPOOL_EIO with
 * "DIR: what: strerror" in errbuf (spool_open's wording). */
int spool_check(const char *dir, char *errbuf, size_t errlen);
/* Closes the files; does not sync (call spool_sync first to keep the tail). */
void spool_close(spool_t *sp);
/* Several spools under one max_bytes (one per worker): each keeps *total
 * up to date with its bytes (from this call until spool_close), and an
 * append reserves its bytes in it with a compare-and-swap, so the bound
 * holds exactly for their sum. total is the caller's, zero before the
 * first spool shares it, and outlives them. */
void spool_share_bytes(spool_t *sp, _Atomic uint64_t *total);

/* Appends one record to the newest segment (rolling to a new one at
 * segment_bytes) and gives its sequence number. The record is buffered (the
 * buffer is written out when it passes 1 MiB, at a roll and by spool_sync);
 * it is not durable until spool_sync returns 0. On SPOOL_FULL (max_bytes, or the disk full) nothing
 * of this record is left in the file and the records appended before it are untouched; a later
 * append may succeed once space returns. */
int spool_append(spool_t *sp, const spool_record_t *rec, uint64_t *seq_out);
/* Makes everything appended since the last sync durable (writes the buffer,
 * fdatasync of the segments written, fsync of the directory when a segment
 * was created) and
 * gives the highest durable sequence number. On failure every record appended
 * since the last successful sync is removed from the files (they were never
 * durable: do not ack them; append them again) and SPOOL_FULL or SPOOL_EIO is
 * returned; what was synced before is untouched. */
int spool_sync(spool_t *sp, uint64_t *synced_seq_out);

/* spool_sync in three parts, so the fdatasync can run on another thread while
 * the owner appends the next group. begin (owner's thread) writes the buffer
 * and takes the sync point: 0 and *job NULL when nothing waits for a sync
 * (*synced_seq_out set), 0 and a job, or spool_sync's failure (the records
 * since the last successful sync are gone). spool_sync_run(job) does the
 * fdatasyncs and touches nothing but the job (any thread). end (owner's
 * thread, once run returned) publishes the sync point: 0 and the highest
 * durable sequence number (the records appended before begin), or a
 * failure as spool_sync's, which also removes the records appended since
 * begin (the next sync reports them lost). One job at a time; until end,
 * appends, reads and confirms go on, spool_sync and spool_close may not. */
typedef struct spool_sync_job spool_sync_job_t;
int spool_sync_begin(spool_t *sp, spool_sync_job_t **job, uint64_t *synced_seq_out);
void spool_sync_run(spool_sync_job_t *job);
int spool_sync_end(spool_t *sp, spool_sync_job_t *job, uint64_t *synced_seq_out);

/* The next synced record in append order, without moving past it. Returns 0,
 * SPOOL_EMPTY, SPOOL_EIO or SPOOL_ENOMEM. */
int spool_peek(spool_t *sp, spool_record_t *rec, uint64_t *seq_out);
/* Moves past the record the last successful spool_peek returned. */
void spool_next(spool_t *sp);
/* Moves the reader back to the first unconfirmed record (after Kafka gave
 * back records the reader had handed out). */
void spool_rewind(spool_t *sp);
/* Records that every record with a sequence number <= seq reached Kafka
 * (cumulative: the caller passes the highest seq with no undelivered record
 * before it; it must have been read). Writes the checkpoint atomically (temp
 * file, fsync, rename, fsync of the directory) and deletes fully drained
 * segments. Returns 0, SPOOL_EINVAL, or SPOOL_FULL / SPOOL_EIO when the
 * checkpoint could not be written: the confirmation still counts, drained
 * older segments are still deleted (so a full disk gets space back), and the
 * next call writes the checkpoint again; until then a restart hands out the
 * records since the last checkpoint again (at least once). */
int spool_confirm(spool_t *sp, uint64_t seq);

/* spool_confirm in three parts, so the checkpoint's and the deletions' I/O
 * run on another thread. begin (owner's thread) records the confirmation at
 * once (SPOOL_EINVAL as spool_confirm), takes the drained segments out of the
 * spool (their bytes no longer counted) and gives a job that writes the
 * checkpoint and deletes their files, or 0 and *job NULL when there is
 * nothing to write or delete (SPOOL_ENOMEM: the confirmation still counts).
 * spool_confirm_run(job) does the I/O and touches nothing but the job (any
 * thread). end (owner's thread, once run returned) logs what failed and
 * returns 0, or SPOOL_FULL / SPOOL_EIO when the checkpoint could not be
 * written (the next begin writes it again). The newest segment, once
 * drained, goes with the job after the one whose checkpoint covers it. One
 * job at a time; until end, appends, syncs and reads go on, spool_confirm
 * and spool_close may not. */
typedef struct spool_confirm_job spool_confirm_job_t;
int spool_confirm_begin(spool_t *sp, uint64_t seq, spool_confirm_job_t **job);
void spool_confirm_run(spool_confirm_job_t *job);
int spool_confirm_end(spool_t *sp, spool_confirm_job_t *job);
/* The confirmation alone, in memory (the reader, the stats, a rewind): the
 * next spool_confirm or spool_confirm_begin writes it. 0 or SPOOL_EINVAL.
 * Allowed while a confirm job runs. */
int spool_confirm_note(spool_t *sp, uint64_t seq);
/* Whether a segment is drained: the next spool_confirm_begin deletes it. */
bool spool_drained(const spool_t *sp);
/* Whether the checkpoint on disk is behind the confirmation. */
bool spool_checkpoint_behind(const spool_t *sp);

/* The caller's state beside the records (the daemon's QoS 2 ids, at most
 * SPOOL_STATE_MAX bytes), in two slot files with a generation (state.c):
 * spool_state_save overwrites the slot the newest does not hold, in place,
 * and fdatasyncs it (the directory too after creating it), and returns 0,
 * SPOOL_EINVAL (too large), SPOOL_FULL or SPOOL_EIO (the last saved state
 * stays in the other slot); spool_state_load gives the last saved state
 * (the valid slot with the highest generation, else the file "state" of the
 * daemons before the slots; malloc'ed, free it; NULL and 0 when there is
 * none) and returns 0, or SPOOL_ENOMEM; a torn slot beside a valid one is
 * logged, corrupt files when none is valid are logged, moved aside as
 * "<name>.corrupt" and read as none. */
#define SPOOL_STATE_MAX (64u * 1024 * 1024)
int spool_state_save(spool_t *sp, const void *buf, size_t len);
/* spool_state_save in parts, for the write and syncs on another thread:
 * begin copies and frames buf (0, SPOOL_EINVAL or SPOOL_ENOMEM: no job);
 * run touches only the job (any thread, one at a time per spool); end, on
 * the owner's thread, frees the job and returns 0, SPOOL_FULL or SPOOL_EIO
 * with why ("<dir>/state.1: cannot write: <strerror>") filled. */
typedef struct spool_state_job spool_state_job_t;
int spool_state_begin(spool_t *sp, const void *buf, size_t len, spool_state_job_t **job);
void spool_state_run(spool_state_job_t *job);
int spool_state_end(spool_t *sp, spool_state_job_t *job, char *why, size_t cap);
int spool_state_load(spool_t *sp, uint8_t **buf, size_t *len);

/* The figures for metrics. When no read record awaits confirmation, the
 * oldest timestamp comes from spool_peek (which may read from disk). */
void spool_stats(spool_t *sp, spool_stats_t *out);
const char *spool_strerror(int code);

#endif
