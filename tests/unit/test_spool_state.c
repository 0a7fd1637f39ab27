/* The spool's state file (spool_state_save / spool_state_load): exact bytes
 * on disk, the round trip, none at first, a corrupt file set aside and read
 * as none, the size bound; the file is no segment to the spool's scan; its
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

static void test_round_trip_and_exact_bytes(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    assert_int_equal(len, 0);
    assert_int_equal(spool_state_save(sp, "abc", 3), 0);
    char p[128];
    path_of(p, sizeof p, "state");
    uint8_t file[64];
    size_t n;
    read_file(p, file, sizeof file, &n);
    /* "M2KT" | version 1 | length 3 | crc32c("abc") = 0x364b3fb7 | "abc" */
    static const uint8_t want[] = {'M', '2', 'K',  'T',  1,    0,    0,   0,   3,  0,
                                   0,   0,   0xb7, 0x3f, 0x4b, 0x36, 'a', 'b', 'c'};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(file, want, sizeof want);
    assert_int_equal(spool_state_save(sp, "hello", 5), 0); /* replaced */
    spool_close(sp);
    sp = open_spool(0, 0);
    assert_null(strstr(log_text(), "not a spool file"));
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "hello", 5);
    free(b);
    assert_int_equal(spool_state_save(sp, "", 0), 0); /* empty is a state too */
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_non_null(b);
    assert_int_equal(len, 0);
    free(b);
    assert_int_equal(spool_state_save(sp, "x", (size_t)SPOOL_STATE_MAX + 1), SPOOL_EINVAL);
    spool_close(sp);
}

static void test_corrupt_state_is_set_aside(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    assert_int_equal(spool_state_save(sp, "abcdef", 6), 0);
    char p[128], aside[128];
    path_of(p, sizeof p, "state");
    path_of(aside, sizeof aside, "state.corrupt");
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    fseek(f, 18, SEEK_SET);
    fputc('X', f); /* "abXdef": the CRC no longer matches */
    fclose(f);
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    assert_int_equal(len, 0);
    assert_int_equal(file_size(p), -1);
    assert_int_equal(file_size(aside), 16 + 6);
    char want[256];
    snprintf(want, sizeof want,
             "spool: %s/state: bad checksum: moved aside as state.corrupt (its QoS 2 ids are "
             "lost: a resend of those messages goes to Kafka again)",
             dir);
    assert_non_null(strstr(log_text(), want));
    /* A truncated one too. */
    assert_int_equal(spool_state_save(sp, "abcdef", 6), 0);
    assert_int_equal(truncate(p, 10), 0);
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_null(b);
    snprintf(want, sizeof want, "spool: %s/state: bad size: moved aside", dir);
    assert_non_null(strstr(log_text(), want));
    spool_close(sp);
}

/* The state file's bytes count in max_bytes and in the stats (after a save,
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
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + SPOOL_STATE_HEADER_SIZE + sizeof blob);
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
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 2 * frame +
                                   SPOOL_STATE_HEADER_SIZE + sizeof blob);
    assert_int_equal(spool_append(sp, &r, &seq), SPOOL_FULL);
    assert_int_equal(spool_state_save(sp, "", 0), 0); /* replaced: its own size counts */
    spool_stats(sp, &st);
    assert_int_equal(st.bytes, SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 2 * frame +
                                   SPOOL_STATE_HEADER_SIZE);
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

static void expect_state(spool_t *sp, const char *want) {
    uint8_t *b;
    size_t len;
    assert_int_equal(spool_state_load(sp, &b, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(b, want, len);
    free(b);
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
    char want[256], tmp[128];
    path_of(tmp, sizeof tmp, "state.tmp");
    /* fdatasync fails: a full disk (ENOSPC) and an I/O error (EIO). */
    static const int errs[] = {ENOSPC, EIO};
    for (int i = 0; i < 2; i++) {
        datasync_errno = errs[i];
        sp->datasync = failing_datasync;
        assert_int_equal(spool_state_begin(sp, "xyz", 3, &job), 0);
        sp->datasync = fdatasync;
        spool_state_run(job);
        assert_int_equal(spool_state_end(sp, job, why, sizeof why), SPOOL_FULL);
        snprintf(want, sizeof want, "%s: fdatasync failed: %s", tmp, strerror(errs[i]));
        assert_string_equal(why, want);
        assert_int_equal(access(tmp, F_OK), -1);
        expect_state(sp, "hello");
        spool_stats(sp, &after);
        assert_int_equal(after.bytes, before.bytes);
    }
    /* The temp file cannot be created. */
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(spool_state_begin(sp, "xyz", 3, &job), 0);
    spool_state_run(job);
    assert_int_equal(spool_state_end(sp, job, why, sizeof why), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot create: Is a directory", tmp);
    assert_string_equal(why, want);
    assert_int_equal(rmdir(tmp), 0);
    expect_state(sp, "hello");
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_state_is_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_counts_in_max_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_on_another_thread_and_its_failures, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
