/* The spool engine (src/spool/): CRC32C vectors, exact frame bytes, round
 * trips across segment rolls and reopen, checkpoint and deletion, a torn tail
 * at every offset, a flipped byte at every offset, garbage files, the
 * max_bytes bound. The failure paths are in test_spool_faults.c. */
#include <pthread.h>
#include <stdatomic.h>

#include "spool_fixture.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void crc_vectors(crc_fn crc) {
    uint8_t b[32];
    memset(b, 0, 32);
    assert_int_equal(crc(0, b, 32), 0x8A9136AA);
    memset(b, 0xFF, 32);
    assert_int_equal(crc(0, b, 32), 0x62A8AB43);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    assert_int_equal(crc(0, b, 32), 0x46DD794E);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    assert_int_equal(crc(0, b, 32), 0x113FDB5C);
    assert_int_equal(crc(0, "123456789", 9), 0xE3069283);
    /* Incremental equals whole. */
    assert_int_equal(crc(crc(0, "1234", 4), "56789", 5), 0xE3069283);
}

/* The RFC 3720 vectors through spool_crc32c and each implementation. */
static void test_crc32c_rfc3720_vectors(void **state) {
    (void)state;
    crc_vectors(spool_crc32c);
    crc_vectors(spool_crc32c_table);
    crc_vectors(spool_crc32c_hw);
}

/* The SSE4.2 instruction and the table agree on every length 0..300 at
 * every alignment 0..7, and in pieces; and on lengths around the three-way
 * blocks (3 x 256 and 3 x 4096 bytes) up to 40,000. */
static void test_crc32c_hw_and_table_agree(void **state) {
    (void)state;
    static uint8_t big[40008];
    uint32_t y = 777;
    for (size_t i = 0; i < sizeof big; i++) {
        y = y * 1103515245u + 12345u;
        big[i] = (uint8_t)(y >> 16);
    }
    static const size_t lens[] = {767,   768,   769,   775,   776,   1535,  1536,
                                  2311,  12287, 12288, 12289, 12295, 13056, 16384,
                                  16400, 24576, 24577, 36863, 36864, 40000};
    for (size_t off = 0; off < 8; off++)
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            uint32_t t = spool_crc32c_table(0, big + off, lens[i]);
            assert_int_equal(spool_crc32c_hw(0, big + off, lens[i]), t);
            size_t cut = lens[i] / 3;
            assert_int_equal(
                spool_crc32c_hw(spool_crc32c_hw(0, big + off, cut), big + off + cut, lens[i] - cut),
                t);
        }
    uint8_t b[320];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof b; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 300; len++) {
            uint32_t t = spool_crc32c_table(0, b + off, len);
            assert_int_equal(spool_crc32c_hw(0, b + off, len), t);
            assert_int_equal(spool_crc32c(0, b + off, len), t);
            assert_int_equal(spool_crc32c_hw(spool_crc32c_hw(0, b + off, len / 3),
                                             b + off + len / 3, len - len / 3),
                             t);
        }
    print_message("crc32c: the SSE4.2 instruction is %s\n",
                  spool_crc32c_hw_available() ? "used" : "not available (table both ways)");
}

static void test_frame_exact_bytes(void **state) {
    (void)state;
    spool_header_t h = {"h", 1, NULL, 0};
    spool_record_t r = {.topic = "t",
                        .topic_len = 1,
                        .key = NULL,
                        .value = "v",
                        .value_len = 1,
                        .headers = &h,
                        .n_headers = 1,
                        .timestamp_ms = 0x0102,
                        .tag = "g",
                        .tag_len = 1};
    size_t body = spool_body_size(&r);
    assert_int_equal(body, 8 + 2 + 1 + 4 + 4 + 1 + 2 + 1 + 2 + 2 + 1 + 4);
    uint8_t out[64];
    spool_frame_encode(out, &r, body, 7);
    const uint8_t want_body[] = {0x02, 0x01, 0,    0,    0,    0,    0,   0, /* timestamp */
                                 1,    0,    't',                            /* topic */
                                 0xFF, 0xFF, 0xFF, 0xFF,                     /* null key */
                                 1,    0,    0,    0,    'v',                /* value */
                                 1,    0,    'g',                            /* tag */
                                 1,    0,                                    /* one header */
                                 1,    0,    'h',  0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(sizeof want_body, body);
    assert_memory_equal(out, "M2KR", 4);
    const uint8_t want_len_seq[] = {32, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(out + 8, want_len_seq, 12);
    assert_memory_equal(out + 20, want_body, body);
    uint32_t crc = spool_crc32c(0, out + 8, 12 + body);
    const uint8_t want_crc[] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                                (uint8_t)(crc >> 24)};
    assert_memory_equal(out + 4, want_crc, 4);
    /* Every prefix is "short", the whole is OK, decoding gives the fields back. */
    size_t flen;
    uint64_t seq;
    for (size_t i = 0; i < 20 + body; i++)
        assert_int_equal(spool_frame_check(out, i, 0, &flen, &seq), SPOOL_FRAME_SHORT);
    assert_int_equal(spool_frame_check(out, 20 + body, 0, &flen, &seq), SPOOL_FRAME_OK);
    assert_int_equal(flen, 20 + body);
    assert_int_equal(seq, 7);
    assert_int_equal(spool_frame_check(out, 20 + body, 8, &flen, &seq), SPOOL_FRAME_BAD);
    spool_header_t *hv = NULL;
    size_t hcap = 0;
    spool_record_t d;
    assert_int_equal(spool_body_decode(out + 20, body, &d, &hv, &hcap), 0);
    assert_null(d.key);
    assert_int_equal(d.value_len, 1);
    assert_int_equal(d.n_headers, 1);
    assert_null(hv[0].value);
    assert_int_equal(d.timestamp_ms, 0x0102);
    /* Every shorter body and a byte more are malformed. */
    for (size_t i = 0; i < body; i++)
        assert_int_equal(spool_body_decode(out + 20, i, &d, &hv, &hcap), -1);
    free(hv);
    /* Sequence numbers above 2^62 are corrupt (next_seq never wraps), and so is
     * a checkpoint that names one. */
    spool_frame_encode(out, &r, body, SPOOL_SEQ_MAX + 1);
    assert_int_equal(spool_frame_check(out, 20 + body, 0, &flen, &seq), SPOOL_FRAME_BAD);
    spool_frame_encode(out, &r, body, SPOOL_SEQ_MAX);
    assert_int_equal(spool_frame_check(out, 20 + body, 0, &flen, &seq), SPOOL_FRAME_OK);
    uint8_t ck[SPOOL_CHECKPOINT_SIZE];
    uint64_t confirmed;
    spool_checkpoint_encode(ck, SPOOL_SEQ_MAX);
    assert_true(spool_checkpoint_decode(ck, sizeof ck, &confirmed));
    assert_int_equal(confirmed, SPOOL_SEQ_MAX);
    spool_checkpoint_encode(ck, SPOOL_SEQ_MAX + 1);
    assert_false(spool_checkpoint_decode(ck, sizeof ck, &confirmed));
    /* Field bounds. */
    r.topic_len = 0;
    assert_int_equal(spool_body_size(&r), 0);
    r.topic_len = 65536;
    assert_int_equal(spool_body_size(&r), 0);
}

static void test_round_trip_rolls_and_reopen(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 4096);
    spool_record_t rec;
    uint64_t seq, synced;
    assert_int_equal(spool_peek(sp, &rec, &seq), SPOOL_EMPTY);
    append_n(sp, 1, 300, 1500);
    /* Nothing is readable before the sync. */
    assert_int_equal(spool_peek(sp, &rec, &seq), SPOOL_EMPTY);
    assert_int_equal(spool_sync(sp, &synced), 0);
    assert_int_equal(synced, 300);
    assert_true(count_files(".seg") > 20);
    read_expect(sp, 1, 300, 1500);
    /* More after reading everything: the reader follows. */
    append_sync_read(sp, 301, 10, 1500);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.records, 310);
    assert_int_equal(st.next_seq, 311);
    assert_int_equal(st.corrupt_skipped, 0);
    spool_close(sp);

    sp = open_spool(0, 4096);
    read_expect(sp, 1, 310, 1500);
    append_sync_read(sp, 311, 5, 1500);
    /* A rewind reads everything unconfirmed again. */
    spool_rewind(sp);
    read_expect(sp, 1, 315, 1500);
    spool_close(sp);
    if (strstr(log_text(), "corrupt record") || strstr(log_text(), "torn tail"))
        fail_msg("unexpected log: %s", log_text());
}

/* The reader reads SPOOL_READ_CHUNK at a time, a frame larger than that
 * whole: every record comes back across the chunks' boundaries, and the
 * read buffer stays at a chunk plus a frame, not the segment. (Reopened
 * first: in the session that wrote them the records come from memory.) */
static void test_reader_reads_in_chunks(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    append_sync(sp, 1, 3000, 1000); /* ~1.6 MB in one segment */
    size_t big_len = 3 * SPOOL_READ_CHUNK;
    uint8_t *big = malloc(big_len);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7);
    spool_record_t r = {.topic = "big", .topic_len = 3, .value = big, .value_len = big_len};
    uint64_t seq, synced;
    assert_int_equal(spool_append(sp, &r, &seq), 0);
    assert_int_equal(seq, 3001);
    append_n(sp, 3002, 10, 1000);
    assert_int_equal(spool_sync(sp, &synced), 0);
    spool_close(sp);
    sp = open_spool(0, 0);
    spool_record_t rec;
    for (uint64_t s = 1; s <= 3000; s++) {
        assert_int_equal(spool_peek(sp, &rec, &seq), 0);
        assert_int_equal(seq, s);
        assert_int_equal(check_record(&rec, s, 1000), 0);
        spool_next(sp);
        assert_true(sp->rcap <= SPOOL_READ_CHUNK + SPOOL_FRAME_HEADER_SIZE + 1200);
    }
    assert_int_equal(spool_peek(sp, &rec, &seq), 0);
    assert_int_equal(seq, 3001);
    assert_int_equal(rec.value_len, big_len);
    assert_memory_equal(rec.value, big, big_len);
    spool_next(sp);
    read_expect(sp, 3002, 3011, 1000);
    assert_int_equal(sp->reads_disk, 3011);
    assert_int_equal(sp->reads_mem, 0);
    free(big);
    spool_close(sp);
}

static void test_checkpoint_and_deletion(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 2048);
    uint64_t seq;
    spool_record_t rec;
    append_sync(sp, 1, 100, 400);
    int segs = count_files(".seg");
    assert_true(segs > 5);
    /* Confirming what was not read is refused. */
    assert_int_equal(spool_confirm(sp, 1), SPOOL_EINVAL);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(spool_peek(sp, &rec, &seq), 0);
        spool_next(sp);
    }
    assert_int_equal(spool_confirm(sp, 51), SPOOL_EINVAL);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.oldest_timestamp_ms, 1700000000000 + 1);
    assert_int_equal(spool_confirm(sp, 50), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.confirmed_seq, 50);
    assert_int_equal(st.records, 50);
    assert_int_equal(st.oldest_timestamp_ms, 1700000000000 + 51);
    assert_true(count_files(".seg") < segs);
    assert_int_equal((uint64_t)count_files(".seg"), st.segments);
    char p[256];
    path_of(p, sizeof p, "checkpoint");
    assert_int_equal(file_size(p), SPOOL_CHECKPOINT_SIZE);
    /* The bytes are the files' sizes. */
    assert_int_equal(st.bytes, dir_bytes());
    spool_close(sp);

    /* Reopen: the reader starts after the checkpoint. */
    sp = open_spool(0, 2048);
    read_expect(sp, 51, 100, 400);
    assert_int_equal(spool_confirm(sp, 100), 0);
    /* Everything drained: no segment left, only the checkpoint. */
    assert_int_equal(count_files(".seg"), 0);
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.oldest_timestamp_ms, 0);
    spool_close(sp);

    /* Sequence numbers continue from the checkpoint. */
    sp = open_spool(0, 2048);
    append_sync_read(sp, 101, 3, 400);
    spool_close(sp);
}

/* Writes 5 records in one segment; returns the offset of the last one. */
static off_t five_records(char *seg, size_t n) {
    spool_t *sp = open_spool(0, 0);
    append_sync(sp, 1, 4, 300);
    seg_path(seg, n, 1);
    off_t last = file_size(seg);
    append_sync(sp, 5, 1, 300);
    spool_close(sp);
    return last;
}

static void test_torn_tail_every_offset(void **state) {
    (void)state;
    char seg[256];
    off_t last = five_records(seg, sizeof seg);
    size_t len;
    uint8_t *orig = slurp(seg, &len);
    for (size_t cut = (size_t)last; cut < len; cut++) {
        put_file(seg, orig, cut);
        spool_t *sp = open_spool(0, 0);
        spool_stats_t st;
        spool_stats(sp, &st);
        assert_int_equal(st.truncations, cut > (size_t)last ? 1 : 0);
        assert_int_equal(st.corrupt_skipped, 0);
        assert_int_equal(st.next_seq, 5);
        assert_int_equal(file_size(seg), last);
        read_expect(sp, 1, 4, 300);
        /* The spool goes on after the cut. */
        append_sync_read(sp, 5, 1, 300);
        spool_close(sp);
    }
    char want[160];
    snprintf(want, sizeof want,
             "%s: torn tail at offset %lld (incomplete record, 1 bytes): truncated",
             seg + strlen(dir) + 1, (long long)last);
    assert_non_null(strstr(log_text(), want));
    free(orig);
}

static void test_flipped_byte_every_offset(void **state) {
    (void)state;
    /* Record 3 of 5, in the newest segment (found by the scan at open). */
    char seg[256];
    five_records(seg, sizeof seg);
    size_t len;
    uint8_t *orig = slurp(seg, &len);
    size_t offs[6];
    assert_int_equal(frame_offsets(orig, len, offs, 6), 5);
    for (size_t at = offs[2]; at < offs[3]; at++) {
        orig[at] ^= 0x40;
        put_file(seg, orig, len);
        orig[at] ^= 0x40;
        spool_t *sp = open_spool(0, 0);
        read_expect_skip(sp, 1, 5, 3, 300);
        spool_stats_t st;
        spool_stats(sp, &st);
        if (st.corrupt_skipped != 1 || st.truncations != 0 || st.next_seq != 6)
            fail_msg("byte %zu flipped: %llu skipped, %llu truncated, next %llu: %s", at,
                     (unsigned long long)st.corrupt_skipped, (unsigned long long)st.truncations,
                     (unsigned long long)st.next_seq, log_text());
        spool_close(sp);
    }
    char want[160];
    snprintf(want, sizeof want, "%s: corrupt record at offset %zu (bad frame): %zu bytes skipped",
             seg + strlen(dir) + 1, offs[2], offs[3] - offs[2]);
    assert_non_null(strstr(log_text(), want));
    free(orig);
}

static void test_flipped_byte_sealed_segment(void **state) {
    (void)state;
    /* Small segments: the corrupt record is in a sealed one, found by the reader. */
    char seg[256];
    size_t len, offs[2];
    uint8_t *b = forty_in_small_segments(seg, sizeof seg, &len);
    assert_int_equal(frame_offsets(b, len, offs, 2), 2);
    b[offs[1] + 40] ^= 1; /* in the second frame */
    put_file(seg, b, len);
    free(b);
    spool_t *sp = open_spool(0, 1024);
    read_expect_skip(sp, 1, 40, 2, 300);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.corrupt_skipped, 1);
    spool_close(sp);
    assert_non_null(strstr(log_text(), "00000000000000000001.seg: corrupt record at offset"));
}

static void test_cut_sealed_segment(void **state) {
    (void)state;
    /* A crash after a roll and before the sync can leave an older segment
     * with a torn end (never acked): the reader skips it, counts it once and
     * goes on with the next segment. */
    char seg[256];
    size_t len, offs[64];
    uint8_t *b = forty_in_small_segments(seg, sizeof seg, &len);
    uint64_t in_first = frame_offsets(b, len, offs, 64);
    size_t last = offs[in_first - 1];
    put_file(seg, b, last + 25);
    free(b);
    spool_t *sp = open_spool(0, 1024);
    read_expect_skip(sp, 1, 40, in_first, 300);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.corrupt_skipped, 1);
    assert_int_equal(st.truncations, 0);
    spool_rewind(sp);
    read_expect_skip(sp, 1, 40, in_first, 300);
    spool_stats(sp, &st);
    assert_int_equal(st.corrupt_skipped, 1); /* counted once, not again after a rewind */
    spool_close(sp);
    char want[128];
    snprintf(want, sizeof want,
             "00000000000000000001.seg: corrupt tail at offset %zu: 25 bytes skipped", last);
    assert_non_null(strstr(log_text(), want));
}

static void test_garbage_files(void **state) {
    (void)state;
    char p[256];
    uint8_t junk[5000];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)rand();
    /* A segment name with a bad header; a good header with garbage after it;
     * a torn creation; an unknown file; a directory; a garbage checkpoint. */
    seg_path(p, sizeof p, 3);
    put_file(p, junk, sizeof junk);
    seg_path(p, sizeof p, 10);
    spool_seg_header_encode(junk, 10);
    put_file(p, junk, sizeof junk);
    seg_path(p, sizeof p, 20);
    put_file(p, junk, 5);
    path_of(p, sizeof p, "notes.txt");
    put_file(p, (const uint8_t *)"x", 1);
    /* Names past 2^62 (and past 2^64) are not segments. */
    path_of(p, sizeof p, "09223372036854775807.seg");
    put_file(p, junk, 100);
    path_of(p, sizeof p, "99999999999999999999.seg");
    put_file(p, junk, 100);
    seg_path(p, sizeof p, 2);
    assert_int_equal(mkdir(p, 0700), 0);
    path_of(p, sizeof p, "checkpoint");
    put_file(p, junk + 100, SPOOL_CHECKPOINT_SIZE);

    spool_t *sp = open_spool(0, 0);
    spool_stats_t st;
    spool_stats(sp, &st);
    /* 3 and 2 set aside, 20 deleted (torn), 10 scanned empty and deleted. */
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.corrupt_skipped, 2);
    assert_int_equal(st.truncations, 2);
    /* Sequence numbers go past every segment name found. */
    assert_int_equal(st.next_seq, 20);
    spool_record_t rec;
    uint64_t seq;
    assert_int_equal(spool_peek(sp, &rec, &seq), SPOOL_EMPTY);
    append_sync_read(sp, 20, 3, 100);
    spool_close(sp);
    const char *log = log_text();
    assert_non_null(strstr(log, "00000000000000000003.seg: not a spool segment (bad header): moved "
                                "aside as 00000000000000000003.seg.corrupt"));
    assert_non_null(strstr(log, "00000000000000000002.seg: not a regular file"));
    assert_non_null(strstr(log, "notes.txt: not a spool file: ignored"));
    assert_non_null(strstr(log, "09223372036854775807.seg: not a spool file: ignored"));
    assert_non_null(strstr(log, "99999999999999999999.seg: not a spool file: ignored"));
    assert_non_null(strstr(log, "checkpoint: corrupt checkpoint: ignored"));
    assert_non_null(strstr(log, "00000000000000000010.seg: torn tail at offset 16"));
    assert_int_equal(count_files(".corrupt"), 2);
    path_of(p, sizeof p, "notes.txt");
    assert_int_equal(file_size(p), 1);
}

static void test_max_bytes_exact(void **state) {
    (void)state;
    spool_record_t r;
    make_record(1, 100, &r);
    size_t frame = SPOOL_FRAME_HEADER_SIZE + spool_body_size(&r);
    /* The same record each time: every frame has the same size. */
    uint64_t max = SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 3 * frame;
    spool_t *sp = open_spool(max, 0);
    uint64_t seq, synced;
    for (int i = 0; i < 3; i++) {
        make_record(1, 100, &r);
        assert_int_equal(spool_append(sp, &r, &seq), 0);
    }
    char p[256];
    seg_path(p, sizeof p, 1);
    off_t before = file_size(p);
    assert_int_equal(spool_append(sp, &r, &seq), SPOOL_FULL);
    assert_int_equal(file_size(p), before);
    assert_int_equal(spool_sync(sp, &synced), 0);
    assert_int_equal(synced, 3);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, max);
    assert_int_equal(st.next_seq, 4);
    /* Draining makes room again. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spool_peek(sp, &r, &seq), 0);
        spool_next(sp);
    }
    assert_int_equal(spool_confirm(sp, 3), 0);
    make_record(1, 100, &r);
    assert_int_equal(spool_append(sp, &r, &seq), 0);
    assert_int_equal(seq, 4);
    spool_close(sp);
    /* One byte less than one record needs: refused. */
    rm_dir(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    sp = open_spool(SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + frame - 1, 0);
    assert_int_equal(spool_append(sp, &r, &seq), SPOOL_FULL);
    assert_int_equal(count_files(".seg"), 0);
    spool_close(sp);
}

/* Two spools (two workers') under one max_bytes: the bound holds for their
 * sum, exactly; a drain or a close in one makes room for the other. */
static spool_t *open_sub(const char *name, uint64_t max, _Atomic uint64_t *total) {
    char p[256];
    path_of(p, sizeof p, name);
    spool_options_t o = {.dir = p, .max_bytes = max};
    spool_t *sp = NULL;
    char err[256];
    if (spool_open(&o, &sp, err, sizeof err) != 0)
        fail_msg("spool_open: %s", err);
    spool_share_bytes(sp, total);
    return sp;
}

static void test_max_bytes_shared(void **state) {
    (void)state;
    spool_record_t r;
    make_record(1, 100, &r);
    size_t frame = SPOOL_FRAME_HEADER_SIZE + spool_body_size(&r);
    uint64_t max = 2 * (SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE) + 3 * frame;
    _Atomic uint64_t total = 0;
    spool_t *a = open_sub("a", max, &total);
    spool_t *b = open_sub("b", max, &total);
    assert_int_equal(atomic_load(&total), 2 * SPOOL_CHECKPOINT_SIZE);
    uint64_t seq, synced;
    assert_int_equal(spool_append(a, &r, &seq), 0);
    assert_int_equal(spool_append(a, &r, &seq), 0);
    assert_int_equal(spool_append(b, &r, &seq), 0);
    assert_int_equal(atomic_load(&total), max);
    /* Each alone is far below max: the sum refuses. */
    assert_int_equal(spool_append(b, &r, &seq), SPOOL_FULL);
    assert_int_equal(spool_append(a, &r, &seq), SPOOL_FULL);
    assert_int_equal(spool_sync(a, &synced), 0);
    assert_int_equal(spool_sync(b, &synced), 0);
    spool_stats_t sa, sb;
    spool_stats(a, &sa);
    spool_stats(b, &sb);
    assert_int_equal(sa.bytes + sb.bytes, max);
    assert_int_equal(atomic_load(&total), max);
    /* b drains: its segment goes, a gets the room. */
    assert_int_equal(spool_peek(b, &r, &seq), 0);
    spool_next(b);
    assert_int_equal(spool_confirm(b, 1), 0);
    spool_stats(b, &sb);
    assert_int_equal(sb.segments, 0);
    assert_int_equal(atomic_load(&total), max - frame - SPOOL_SEG_HEADER_SIZE);
    make_record(1, 100, &r);
    assert_int_equal(spool_append(a, &r, &seq), 0);
    assert_int_equal(spool_append(b, &r, &seq), SPOOL_FULL);
    assert_int_equal(atomic_load(&total), max - SPOOL_SEG_HEADER_SIZE);
    /* A close gives back everything the spool counted. */
    spool_close(a);
    assert_int_equal(atomic_load(&total), SPOOL_CHECKPOINT_SIZE);
    spool_close(b);
    assert_int_equal(atomic_load(&total), 0);
}

struct filler {
    spool_t *sp;
    uint64_t appended;
};

static void *fill(void *arg) {
    struct filler *f = arg;
    spool_record_t r;
    make_record(1, 100, &r);
    uint64_t seq;
    while (spool_append(f->sp, &r, &seq) == 0)
        f->appended++;
    return NULL;
}

/* Two threads append to their own spools until refused: not one byte over
 * the bound between them, and no room left for another record. */
static void test_max_bytes_shared_threads(void **state) {
    (void)state;
    spool_record_t r;
    make_record(1, 100, &r);
    uint64_t frame = SPOOL_FRAME_HEADER_SIZE + spool_body_size(&r);
    uint64_t max = 2 * SPOOL_CHECKPOINT_SIZE + 20000 * frame / 7;
    _Atomic uint64_t total = 0;
    struct filler f[2] = {{open_sub("a", max, &total), 0}, {open_sub("b", max, &total), 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fill, &f[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    spool_stats_t sa, sb;
    spool_stats(f[0].sp, &sa);
    spool_stats(f[1].sp, &sb);
    assert_int_equal(sa.bytes + sb.bytes, atomic_load(&total));
    assert_true(atomic_load(&total) <= max);
    assert_true(max - atomic_load(&total) < frame);
    assert_int_equal(sa.next_seq - 1 + sb.next_seq - 1, f[0].appended + f[1].appended);
    spool_close(f[0].sp);
    spool_close(f[1].sp);
    assert_int_equal(atomic_load(&total), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_rfc3720_vectors),
        cmocka_unit_test(test_crc32c_hw_and_table_agree),
        cmocka_unit_test(test_frame_exact_bytes),
        cmocka_unit_test_setup_teardown(test_round_trip_rolls_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_reads_in_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_and_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_sealed_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_sealed_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bytes_shared_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
