/* The group commit in parts (spool_sync_begin / run / end, src/spool/sync.c)
 * so the fdatasync runs off the owner's thread: records appended while a
 * sync runs are the next group; a failed sync takes them too; confirms that
 * delete segments meanwhile; a reopen finds what the sync covered. And the
 * spooler on a worker (spooler_set_worker): one sync at a time, acks after
 * their sync, in order, the next group once the sync before returned. */
#include "spool_fixture.h"

#include "spooler.h"

static int failing_datasync(int fd) {
    (void)fd;
    errno = EIO;
    return -1;
}

static void test_appends_during_a_sync_are_the_next_group(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    append_n(sp, 1, 2, 300);
    spool_sync_job_t *job;
    uint64_t synced = 99;
    assert_int_equal(spool_sync_begin(sp, &job, &synced), 0);
    assert_non_null(job);
    append_n(sp, 3, 1, 300); /* while the job runs */
    spool_sync_run(job);
    assert_int_equal(spool_sync_end(sp, job, &synced), 0);
    assert_int_equal(synced, 2);
    read_expect(sp, 1, 2, 300); /* 3 is not durable yet: not handed out */
    assert_int_equal(spool_sync(sp, &synced), 0);
    assert_int_equal(synced, 3);
    read_expect(sp, 3, 3, 300);
    /* Nothing appended: no job, the sync point as it is. */
    assert_int_equal(spool_sync_begin(sp, &job, &synced), 0);
    assert_null(job);
    assert_int_equal(synced, 3);
    spool_close(sp);
    sp = open_spool(0, 0);
    read_expect(sp, 1, 3, 300);
    spool_close(sp);
}

static void test_failed_sync_takes_the_next_group_too(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 1024);
    append_sync(sp, 1, 2, 300);
    spool_stats_t before;
    spool_stats(sp, &before);
    append_n(sp, 3, 2, 300);
    spool_sync_job_t *job;
    uint64_t synced;
    sp->datasync = failing_datasync; /* copied into the job by begin */
    assert_int_equal(spool_sync_begin(sp, &job, &synced), 0);
    sp->datasync = fdatasync;
    assert_non_null(job);
    append_n(sp, 5, 4, 300); /* the next group, across a roll */
    spool_sync_run(job);
    assert_int_equal(spool_sync_end(sp, job, &synced), SPOOL_FULL);
    assert_non_null(strstr(log_text(), "fdatasync failed: Input/output error"));
    /* The files are back at the last successful sync; the next group's
     * sync reports its records lost (never acked), then the spool goes on. */
    assert_int_equal(spool_sync(sp, &synced), SPOOL_FULL);
    spool_stats_t after;
    spool_stats(sp, &after);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.next_seq, 3);
    assert_int_equal(dir_bytes(), before.bytes);
    append_sync(sp, 3, 1, 300);
    read_expect(sp, 1, 3, 300);
    spool_close(sp);
}

static void test_confirm_deletes_segments_while_a_sync_runs(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 1024);
    append_sync_read(sp, 1, 20, 300); /* several segments */
    int segs = count_files(".seg");
    assert_true(segs >= 3);
    append_n(sp, 21, 6, 300);
    spool_sync_job_t *job;
    uint64_t synced;
    assert_int_equal(spool_sync_begin(sp, &job, &synced), 0);
    assert_int_equal(spool_confirm(sp, 20), 0); /* deletes the drained segments */
    assert_true(count_files(".seg") < segs);
    spool_sync_run(job);
    assert_int_equal(spool_sync_end(sp, job, &synced), 0);
    assert_int_equal(synced, 26);
    read_expect(sp, 21, 26, 300);
    assert_int_equal(spool_confirm(sp, 26), 0);
    spool_close(sp);
    sp = open_spool(0, 1024);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.next_seq, 27);
    spool_close(sp);
}

/* ---- the spooler on a worker ---- */

static struct {
    uint64_t opaque[16];
    size_t n;
} acked;

static struct {
    void (*run)(void *);
    void (*done)(void *);
    void *arg;
    int queued;
} worker;

static void on_complete(void *ud, uint64_t opaque, int err, const char *errstr) {
    (void)ud;
    (void)errstr;
    assert_int_equal(err, 0);
    acked.opaque[acked.n++] = opaque;
}

static int fake_produce(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    (void)ud;
    (void)rec;
    (void)opaque;
    return KAFKA_OK;
}

static int fake_work(void *ud, void (*run)(void *), void (*done)(void *), void *arg) {
    (void)ud;
    assert_null(worker.arg); /* one sync at a time */
    worker.run = run;
    worker.done = done;
    worker.arg = arg;
    worker.queued++;
    return 0;
}

/* The worker runs the queued sync, then the loop calls its done. */
static void work_finish(void) {
    void *arg = worker.arg;
    worker.arg = NULL;
    worker.run(arg);
    worker.done(arg);
}

static int put(spooler_t *f, const char *v, uint64_t opaque) {
    kafka_record_t r = {.topic = "t", .value = v, .value_len = strlen(v), .timestamp_ms = 1};
    return spooler_produce(f, &r, opaque);
}

static void test_spooler_syncs_on_the_worker_one_group_at_a_time(void **state) {
    (void)state;
    memset(&acked, 0, sizeof acked);
    memset(&worker, 0, sizeof worker);
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = spooler_new(&(spooler_opts_t){sp, fake_produce, NULL, on_complete, NULL});
    spooler_set_worker(f, fake_work, NULL);
    assert_int_equal(put(f, "a", 1), KAFKA_OK);
    assert_int_equal(put(f, "b", 2), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(worker.queued, 1);
    assert_int_equal(acked.n, 0); /* not before the sync returned */
    assert_int_equal(put(f, "c", 3), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(worker.queued, 1); /* c waits for the sync in flight */
    work_finish();
    assert_int_equal(acked.n, 2);
    assert_int_equal(worker.queued, 2); /* c's group started as a and b's returned */
    work_finish();
    assert_int_equal(acked.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(acked.opaque[i], i + 1);
    /* Shutdown with a sync in flight whose worker has finished: completed
     * there, then the final sync of what came after; the late done only
     * frees its holder. */
    assert_int_equal(put(f, "d", 4), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(put(f, "e", 5), KAFKA_OK);
    void *arg = worker.arg;
    worker.arg = NULL;
    worker.run(arg);
    spooler_stop(f);
    assert_int_equal(acked.n, 5);
    assert_int_equal(acked.opaque[3], 4);
    assert_int_equal(acked.opaque[4], 5);
    worker.done(arg);
    assert_int_equal(acked.n, 5);
    assert_int_equal(spooler_stats(f)->spooled, 5);
    spooler_free(f);
    spool_stats_t st;
    spool_stats(sp, &st);
    assert_int_equal(st.synced_seq, 5);
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_appends_during_a_sync_are_the_next_group, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_sync_takes_the_next_group_too, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirm_deletes_segments_while_a_sync_runs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spooler_syncs_on_the_worker_one_group_at_a_time, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
