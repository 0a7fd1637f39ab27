/* The spool's in-memory feed (src/spool/cache.c, reader.c): a reader caught
 * up with the writer gets the records from the writer's chunks, never before
 * their sync; one that lags past SPOOL_CACHE_BYTES reads the oldest from the
 * file and the rest from memory; after a restart, and after a torn tail,
 * everything comes from the file. Exact records and exact counts of each. */
#include "spool_fixture.h"

#include <stdbool.h>

/* Every record here has the same frame: topic "t/N" (3 bytes), an 8-byte key,
 * a 16,000-byte value derived from seq. */
#define VAL 16000
#define FRAME (SPOOL_FRAME_HEADER_SIZE + 8 + 2 + 3 + 4 + 8 + 4 + VAL + 2 + 2)
static uint8_t val[VAL];
static char key[9];

static void rec_of(uint64_t seq, spool_record_t *r) {
    for (size_t i = 0; i < VAL; i++)
        val[i] = (uint8_t)(seq * 131 + i);
    snprintf(key, sizeof key, "%08llu", (unsigned long long)(seq % 100000000));
    *r = (spool_record_t){.topic = "t/1",
                          .topic_len = 3,
                          .key = key,
                          .key_len = 8,
                          .value = val,
                          .value_len = VAL,
                          .timestamp_ms = (int64_t)seq};
}

static void append_recs(spool_t *sp, uint64_t first, uint64_t n) {
    for (uint64_t s = first; s < first + n; s++) {
        spool_record_t r;
        uint64_t seq;
        rec_of(s, &r);
        assert_int_equal(spool_body_size(&r) + SPOOL_FRAME_HEADER_SIZE, FRAME);
        assert_int_equal(spool_append(sp, &r, &seq), 0);
        assert_int_equal(seq, s);
    }
}

static void sync_to(spool_t *sp, uint64_t want) {
    uint64_t synced;
    assert_int_equal(spool_sync(sp, &synced), 0);
    assert_int_equal(synced, want);
}

/* Reads first..last exactly, then nothing. */
static void read_recs(spool_t *sp, uint64_t first, uint64_t last) {
    for (uint64_t s = first; s <= last; s++) {
        spool_record_t got, want;
        uint64_t seq;
        assert_int_equal(spool_peek(sp, &got, &seq), 0);
        assert_int_equal(seq, s);
        rec_of(s, &want);
        assert_int_equal(got.topic_len, 3);
        assert_memory_equal(got.topic, "t/1", 3);
        assert_int_equal(got.key_len, 8);
        assert_memory_equal(got.key, want.key, 8);
        assert_int_equal(got.value_len, VAL);
        assert_memory_equal(got.value, val, VAL);
        assert_int_equal(got.n_headers, 0);
        assert_int_equal(got.timestamp_ms, (int64_t)s);
        spool_next(sp);
    }
    spool_record_t r;
    uint64_t seq;
    assert_int_equal(spool_peek(sp, &r, &seq), SPOOL_EMPTY);
}

/* Appends first..first+n-1, syncs them and reads them back. */
static void append_sync_read_recs(spool_t *sp, uint64_t first, uint64_t n) {
    append_recs(sp, first, n);
    sync_to(sp, first + n - 1);
    read_recs(sp, first, first + n - 1);
}

/* How many records the reader handed out from the files and from memory. */
static void reads_are(const spool_t *sp, uint64_t disk, uint64_t mem) {
    assert_int_equal(sp->reads_disk, disk);
    assert_int_equal(sp->reads_mem, mem);
}

/* Flips a byte of record seq's value in the file (the records are all in
 * the first segment, base 1). */
static void flip_in_file(uint64_t seq) {
    char p[128];
    seg_path(p, sizeof p, 1);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    off_t at = (off_t)(SPOOL_SEG_HEADER_SIZE + (seq - 1) * FRAME + FRAME - 100);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0xFF;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* Caught up: groups of 64 appended, synced and read; every record from
 * memory (a byte flipped in the file under each group does not show), none
 * before its sync (also while the sync runs), and the chunks kept stay at
 * the few the reader has not passed. */
static void test_caught_up_feeds_from_memory(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spool_record_t r;
    uint64_t seq, next = 1;
    for (int g = 0; g < 40; g++) {
        append_recs(sp, next, 64);
        assert_int_equal(spool_peek(sp, &r, &seq), SPOOL_EMPTY);
        spool_sync_job_t *job;
        assert_int_equal(spool_sync_begin(sp, &job, NULL), 0);
        assert_non_null(job);
        assert_int_equal(spool_peek(sp, &r, &seq), SPOOL_EMPTY); /* not durable yet */
        spool_sync_run(job);
        uint64_t synced;
        assert_int_equal(spool_sync_end(sp, job, &synced), 0);
        assert_int_equal(synced, next + 63);
        flip_in_file(next + 10);
        read_recs(sp, next, next + 63);
        next += 64;
        assert_true(sp->cache_bytes <= 2 * SPOOL_WBUF_FLUSH);
    }
    reads_are(sp, 0, 40 * 64);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.corrupt_skipped, 0);
    /* A rewind reads again from the segment's start: the file up to the
     * chunks still kept (the confirmed records passed over, the 39 flipped
     * ones among them skipped and counted), the unconfirmed group from
     * memory (its flipped record intact). */
    assert_int_equal(spool_confirm(sp, 64 * 39), 0);
    spool_rewind(sp);
    read_recs(sp, 64 * 39 + 1, 64 * 40);
    reads_are(sp, 0, 41 * 64);
    spool_stats(sp, &st);
    assert_int_equal(st.corrupt_skipped, 39);
    spool_close(sp);
    assert_non_null(strstr(log_text(), "2624 records fed from memory, 0 read from the files"));
}

/* The feed lags: 2,600 records (41 MB) synced before any is read. The
 * chunks kept stay within SPOOL_CACHE_BYTES; the reader reads the records
 * before the first chunk kept from the file, and from memory from there on:
 * exactly. */
static void test_lagging_past_the_bound(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    for (uint64_t s = 1; s <= 2600; s += 100) {
        append_recs(sp, s, 100);
        sync_to(sp, s + 99);
        assert_true(sp->cache_bytes <= SPOOL_CACHE_BYTES + SPOOL_WBUF_FLUSH);
    }
    assert_true(sp->nchunks > 0);
    assert_int_equal(sp->chunks[0].seg, 1);
    uint64_t first_cached = sp->chunks[0].off;
    assert_int_equal((first_cached - SPOOL_SEG_HEADER_SIZE) % FRAME, 0);
    uint64_t from_file = (first_cached - SPOOL_SEG_HEADER_SIZE) / FRAME;
    assert_true(from_file > 0 && from_file < 2600);
    /* 32 MiB of 16,056-byte frames, whole chunks of 65 frames. */
    assert_int_equal(2600 - from_file, (SPOOL_CACHE_BYTES / SPOOL_WBUF_FLUSH + 1) * 65);
    read_recs(sp, 1, 2600);
    reads_are(sp, from_file, 2600 - from_file);
    /* Caught up again: the next groups come from memory. */
    append_sync_read_recs(sp, 2601, 50);
    reads_are(sp, from_file, 2650 - from_file);
    spool_close(sp);
}

/* After a restart nothing is in memory: every record from the file, then
 * what is appended after the restart from memory. */
static void test_restart_reads_from_disk(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    append_recs(sp, 1, 300);
    sync_to(sp, 300);
    spool_close(sp);
    sp = open_spool(0, 0);
    read_recs(sp, 1, 300);
    reads_are(sp, 300, 0);
    append_sync_read_recs(sp, 301, 30);
    reads_are(sp, 300, 30);
    spool_close(sp);
}

/* A torn tail: records 1..200 synced, 201..260 written (a full chunk goes
 * out) but never synced, the file cut inside record 230: the reopen
 * truncates the torn record, the file gives 1..229, and the records
 * appended after it follow from memory with the next numbers. */
static void test_torn_tail_then_memory(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    append_recs(sp, 1, 200);
    sync_to(sp, 200);
    append_recs(sp, 201, 60);
    assert_int_equal(spool_flush(sp), 0);
    spool_close(sp); /* no sync: a crash */
    char p[128];
    seg_path(p, sizeof p, 1);
    assert_int_equal(truncate(p, (off_t)(SPOOL_SEG_HEADER_SIZE + 229 * FRAME + 5000)), 0);
    sp = open_spool(0, 0);
    assert_non_null(strstr(log_text(), "torn tail at offset"));
    assert_int_equal(file_size(p), (off_t)(SPOOL_SEG_HEADER_SIZE + 229 * FRAME));
    read_recs(sp, 1, 229);
    reads_are(sp, 229, 0);
    append_sync_read_recs(sp, 230, 20);
    reads_are(sp, 229, 20);
    spool_close(sp);
    sp = open_spool(0, 0);
    read_recs(sp, 1, 249);
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_caught_up_feeds_from_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lagging_past_the_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_reads_from_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_then_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
