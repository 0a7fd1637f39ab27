/* The spool's state slots (spool_state_save / spool_state_load): exact bytes
 * on disk, the round trip through both slots, none at first, a torn slot
 * read past, a corrupt one set aside and read as none, the file of the
 * version before the slots, the size bound; no file is a segment to the
 * spool's scan; their
 * bytes count in max_bytes; the save in parts for another thread, and its
 * failures (ENOSPC, EIO, no temp file). */
#include "spool_fixture.h"

#include <pthread.h>

static void read_file(const char *p, uint8_t *buf, size_t cap, size_t *n) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    *n = fread(buf, 1, cap, f);
    fclose(f);
}

static void expect_state(spool_t *sp, const char *want) {
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(b, want, len);
    free(b);
}

static void test_round_trip_and_exact_bytes(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    assert_int_equal(len, 0);
    assert_int_equal(spool_state_save(sp, "abc", 3), 0);
    char p0[128], p1[128];
    path_of(p0, sizeof p0, "state.0");
    path_of(p1, sizeof p1, "state.1");
    uint8_t file[64];
    size_t n;
    read_file(p1, file, sizeof file, &n); /* generation 1: slot 1 */
    /* "M2KT" | version 2 | length 3 | crc32c(gen, "abc") | gen 1 | "abc" */
    uint8_t want[27] = {'M', '2', 'K', 'T', 2, 0, 0, 0, 3, 0, 0,   0,   0,  0,
                        0,   0,   1,   0,   0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
    uint32_t crc = spool_crc32c(0, want + 16, 11);
    for (int i = 0; i < 4; i++)
        want[12 + i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(n, sizeof want);
    assert_memory_equal(file, want, sizeof want);
    assert_int_equal(file_size(p0), -1);
    assert_int_equal(spool_state_save(sp, "hello", 5), 0); /* generation 2: slot 0 */
    assert_int_equal(file_size(p0), 24 + 5);
    assert_int_equal(spool_state_save(sp, "", 0), 0); /* 3: slot 1, in place, not shorter */
    assert_int_equal(file_size(p1), 24 + 3);
    spool_close(sp);
    sp = open_spool(0, 0);
    assert_null(strstr(log_text(), "not a spool file"));
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_non_null(b); /* empty is a state too: the newest */
    assert_int_equal(len, 0);
    free(b);
    assert_int_equal(spool_state_save(sp, "again", 5), 0); /* 4: slot 0 */
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "again", 5);
    free(b);
    assert_int_equal(spool_state_save(sp, "x", (size_t)SPOOL_STATE_MAX + 1), SPOOL_EINVAL);
    spool_close(sp);
}

static void write_file(const char *p, const void *buf, size_t n) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void flip(const char *p, long at) {
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

/* A slot that does not check (a save cut short by a crash): the other, older
 * one is read, logged; no valid slot at all: set aside, logged, none read. */
static void test_torn_slot_falls_back_and_corrupt_state_is_set_aside(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    assert_int_equal(spool_state_save(sp, "abcdef", 6), 0); /* slot 1 */
    assert_int_equal(spool_state_save(sp, "ghijkl", 6), 0); /* slot 0 */
    char p0[128], p1[128], aside[128];
    path_of(p0, sizeof p0, "state.0");
    path_of(p1, sizeof p1, "state.1");
    path_of(aside, sizeof aside, "state.1.corrupt");
    flip(p0, 26);
    expect_state(sp, "abcdef");
    char want[256];
    snprintf(want, sizeof want,
             "spool: %s/state.0: bad checksum (a save cut short): the state saved before it is "
             "used",
             dir);
    assert_non_null(strstr(log_text(), want));
    /* The next save goes to the torn slot again; then both are whole. */
    assert_int_equal(spool_state_save(sp, "mnopqr", 6), 0);
    expect_state(sp, "mnopqr");
    spool_close(sp);
    assert_int_equal(unlink(p0), 0);
    flip(p1, 29);
    sp = open_spool(0, 0);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    assert_int_equal(len, 0);
    assert_int_equal(file_size(p1), -1);
    assert_int_equal(file_size(aside), 24 + 6);
    snprintf(want, sizeof want,
             "spool: %s/state.1: bad checksum: moved aside as state.1.corrupt (its QoS 2 ids are "
             "lost: a resend of those messages goes to Kafka again)",
             dir);
    assert_non_null(strstr(log_text(), want));
    spool_close(sp);
}

/* The file `state` of the daemons before the slots: read when no slot is,
 * removed by the first slot save; a corrupt one is set aside. */
static void test_legacy_state_file(void **state) {
    (void)state;
    char legacy[128], aside[128];
    path_of(legacy, sizeof legacy, "state");
    path_of(aside, sizeof aside, "state.corrupt");
    spool_t *sp = open_spool(0, 0);
    uint8_t file[16 + 3];
    spool_state_header_encode(file, (const uint8_t *)"old", 3);
    memcpy(file + 16, "old", 3);
    write_file(legacy, file, sizeof file);
    expect_state(sp, "old");
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + sizeof file);
    assert_int_equal(spool_state_save(sp, "new", 3), 0);
    assert_int_equal(file_size(legacy), -1);
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + 24 + 3);
    spool_close(sp);
    write_file(legacy, file, sizeof file); /* beside a valid slot it is older: not read */
    sp = open_spool(0, 0);
    expect_state(sp, "new");
    spool_close(sp);
    char p1[128];
    path_of(p1, sizeof p1, "state.1");
    assert_int_equal(unlink(p1), 0);
    flip(legacy, 17);
    sp = open_spool(0, 0);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    assert_int_equal(file_size(aside), sizeof file);
    char want[256];
    snprintf(want, sizeof want, "spool: %s/state: bad checksum: moved aside as state.corrupt", dir);
    assert_non_null(strstr(log_text(), want));
    spool_close(sp);
}

/* The state files' bytes count in max_bytes and in the stats (after a save,
 * and after a load at the next start); a save itself is never refused. */
static void test_state_counts_in_max_bytes(void **state) {
    (void)state;
    spool_record_t r;
    make_record(1, 100, &r);
    size_t frame = SPOOL_FRAME_HEADER_SIZE + spool_body_size(&r);
    uint64_t max = SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 3 * frame;
    spool_t *sp = open_spool(max, 0);
    static const uint8_t blob[64] = {0};
    assert_int_equal(spool_state_save(sp, blob, sizeof blob), 0);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + 24 + sizeof blob);
    uint64_t seq;
    for (int i = 0; i < 2; i++) {
        make_record(1, 100, &r);
        assert_int_equal(spool_append(sp, &r, &seq), 0);
    }
    assert_int_equal(spool_append(sp, &r, &seq), SPOOL_FULL); /* the state took its room */
    assert_int_equal(spool_sync(sp, &seq), 0);
    spool_close(sp);
    sp = open_spool(max, 0);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    free(b);
    spool_stats(sp, &st);
    assert_int_equal(st.bytes,
                     SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 2 * frame + 24 + sizeof blob);
    assert_int_equal(spool_append(sp, &r, &seq), SPOOL_FULL);
    assert_int_equal(spool_state_save(sp, "", 0), 0); /* the other slot: both count */
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 2 * frame + 24 +
                                   sizeof blob + 24);
    spool_close(sp);
}

static int datasync_errno;
static int failing_datasync(int fd) {
    (void)fd;
    errno = datasync_errno;
    return -1;
}

static void *run_job(void *job) {
    spool_state_run(job);
    return NULL;
}

/* The save in parts (begin on the owner's thread, run on another, end back
 * on the owner's): the file replaced as spool_state_save does; a failure
 * leaves the old state and no temp file, and says what failed. */
static void test_save_on_another_thread_and_its_failures(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    assert_int_equal(spool_state_save(sp, "abc", 3), 0);
    spool_state_job_t *job;
    assert_int_equal(spool_state_begin(sp, "hello", 5, &job), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_job, job), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    char why[256] = "";
    assert_int_equal(spool_state_end(sp, job, why, sizeof why), 0);
    assert_string_equal(why, "");
    expect_state(sp, "hello");
    spool_stats_t before, after;
    spool_stats(sp, &before);
    char want[256], slot[128];
    /* fdatasync fails: a full disk (ENOSPC) and an I/O error (EIO). */
    static const int errs[] = {ENOSPC, EIO};
    for (int i = 0; i < 2; i++) {
        datasync_errno = errs[i];
        sp->datasync = failing_datasync;
        assert_int_equal(spool_state_begin(sp, "xyz", 3, &job), 0);
        sp->datasync = fdatasync;
        spool_state_run(job);
        assert_int_equal(spool_state_end(sp, job, why, sizeof why), SPOOL_FULL);
        path_of(slot, sizeof slot, "state.1"); /* generation 3: "hello" was 2 */
        snprintf(want, sizeof want, "%s: fdatasync failed: %s", slot, strerror(errs[i]));
        assert_string_equal(why, want);
        spool_stats(sp, &after);
        assert_int_equal(after.bytes, before.bytes);
    }
    /* The slot cannot be opened. */
    assert_int_equal(unlink(slot), 0);
    assert_int_equal(mkdir(slot, 0700), 0);
    assert_int_equal(spool_state_begin(sp, "xyz", 3, &job), 0);
    spool_state_run(job);
    assert_int_equal(spool_state_end(sp, job, why, sizeof why), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot open: Is a directory", slot);
    assert_string_equal(why, want);
    assert_int_equal(rmdir(slot), 0);
    expect_state(sp, "hello");
    assert_int_equal(spool_state_save(sp, "xyz", 3), 0);
    expect_state(sp, "xyz");
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_slot_falls_back_and_corrupt_state_is_set_aside,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_state_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_counts_in_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_on_another_thread_and_its_failures, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
