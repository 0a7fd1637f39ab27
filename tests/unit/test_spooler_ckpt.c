/* The spooler's checkpoint (src/spooler_ckpt.c): what Kafka confirmed counts
 * at once, the checkpoint file follows at most every SPOOLER_CHECKPOINT_MS,
 * at once when a segment is drained (deleted in the same job) and at
 * shutdown; on the worker, one job at a time, the files untouched until it
 * runs. And the engine's confirm in parts (spool_confirm_begin / run / end).
 * The clock, the producer and the worker are fakes; the spooler runs in
 * `mode: outage` with Kafka unreachable, so every record goes through the
 * spool (the outage fakes carry the clock). */
#include "spool_fixture.h"

#include "spooler.h"

static uint64_t clock_ms;
static uint64_t produced[64];
static size_t n_produced, n_acked;

static void on_complete(void *ud, uint64_t opaque, int err, const char *errstr) {
    (void)ud;
    (void)opaque;
    (void)errstr;
    assert_int_equal(err, 0);
    n_acked++;
}

static int fake_produce(void *ud, const kafka_record_t *rec, uint64_t seq) {
    (void)ud;
    (void)rec;
    produced[n_produced++] = seq;
    return KAFKA_OK;
}

static bool unreachable(void *ud, char *why, size_t cap) {
    (void)ud;
    snprintf(why, cap, "down");
    return false;
}

static uint64_t fake_now(void *ud) {
    (void)ud;
    return clock_ms;
}

/* The fake worker: a queue of jobs the test runs when it chooses. */
static struct {
    void (*run[8])(void *);
    void (*done[8])(void *);
    void *arg[8];
    size_t n;
} wq;

static int fake_work(void *ud, void (*run)(void *), void (*done)(void *), void *arg) {
    (void)ud;
    assert_true(wq.n < 8);
    wq.run[wq.n] = run;
    wq.done[wq.n] = done;
    wq.arg[wq.n++] = arg;
    return 0;
}

/* Runs the queued jobs in order, each run then its done. */
static void work_all(void) {
    while (wq.n > 0) {
        void (*run)(void *) = wq.run[0], (*done)(void *) = wq.done[0];
        void *arg = wq.arg[0];
        wq.n--;
        memmove(wq.run, wq.run + 1, wq.n * sizeof(wq.run[0]));
        memmove(wq.done, wq.done + 1, wq.n * sizeof(wq.done[0]));
        memmove(wq.arg, wq.arg + 1, wq.n * sizeof(wq.arg[0]));
        run(arg);
        done(arg);
    }
}

static spooler_t *new_spooler(spool_t *sp) {
    clock_ms = 1000;
    n_produced = n_acked = 0;
    memset(&wq, 0, sizeof wq);
    spooler_t *f = spooler_new(&(spooler_opts_t){sp, fake_produce, NULL, on_complete, NULL});
    assert_non_null(f);
    spooler_set_outage(
        f,
        &(spooler_outage_t){.outage_after_ms = 1000, .reachable = unreachable, .now_ms = fake_now});
    spooler_turn(f); /* to the spool */
    assert_int_equal(spooler_stats(f)->state, SPOOLER_SPOOLING);
    return f;
}

static void put(spooler_t *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        kafka_record_t r = {.topic = "t", .value = "v", .value_len = 1, .timestamp_ms = 1};
        assert_int_equal(spooler_produce(f, &r, 100 + i), KAFKA_OK);
    }
}

/* The confirmed sequence number the checkpoint file holds (0: none). */
static uint64_t ckpt_on_disk(void) {
    char p[256];
    path_of(p, sizeof p, SPOOL_CHECKPOINT_NAME);
    if (file_size(p) < 0)
        return 0;
    size_t len;
    uint8_t *b = slurp(p, &len);
    uint64_t seq = 0;
    assert_true(spool_checkpoint_decode(b, len, &seq));
    free(b);
    return seq;
}

static uint64_t confirmed(spool_t *sp) {
    spool_stats_t ss;
    spool_stats(sp, &ss);
    return ss.confirmed_seq;
}

static void test_checkpoint_at_most_every_interval_and_at_stop(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    put(f, 4);
    spooler_turn(f);
    assert_int_equal(n_acked, 4);
    assert_int_equal(n_produced, 4);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f); /* the first: at once */
    assert_int_equal(confirmed(sp), 1);
    assert_int_equal(ckpt_on_disk(), 1);
    clock_ms += 10;
    spooler_on_delivery(f, 2, 0, NULL);
    spooler_turn(f);
    assert_int_equal(confirmed(sp), 2); /* counts at once */
    assert_int_equal(ckpt_on_disk(), 1);
    clock_ms = 1000 + SPOOLER_CHECKPOINT_MS - 1;
    spooler_turn(f);
    assert_int_equal(ckpt_on_disk(), 1);
    clock_ms = 1000 + SPOOLER_CHECKPOINT_MS;
    spooler_turn(f);
    assert_int_equal(ckpt_on_disk(), 2);
    /* A reopen after a crash here hands out 3 and 4 again; at stop the
     * checkpoint is written whatever the clock says. */
    clock_ms += 1;
    spooler_on_delivery(f, 3, 0, NULL);
    spooler_turn(f);
    assert_int_equal(ckpt_on_disk(), 2);
    spooler_stop(f);
    assert_int_equal(ckpt_on_disk(), 3);
    spooler_free(f);
    spool_close(sp);
    sp = open_spool(0, 0);
    assert_int_equal(confirmed(sp), 3);
    spool_close(sp);
}

static void test_drained_segment_deleted_at_once(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 64); /* one record a segment */
    spooler_t *f = new_spooler(sp);
    put(f, 3);
    spooler_turn(f);
    assert_int_equal(count_files(".seg"), 3);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f);
    assert_int_equal(count_files(".seg"), 2);
    char p[256];
    seg_path(p, sizeof p, 1);
    assert_int_equal(file_size(p), -1);
    clock_ms += 1; /* well within the interval */
    spooler_on_delivery(f, 2, 0, NULL);
    spooler_turn(f);
    seg_path(p, sizeof p, 2);
    assert_int_equal(file_size(p), -1);
    assert_int_equal(ckpt_on_disk(), 2);
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.bytes, dir_bytes());
    spooler_free(f);
    spool_close(sp);
}

/* A full spool is not throttled: as Kafka confirms, the checkpoint goes
 * out in the same turn, and the newest segment, drained, with it, so the
 * space is back before the confirmation shows. */
static void test_full_spool_checkpoint_not_throttled(void **state) {
    (void)state;
    spool_t *sp = open_spool(24 + 16 + 2 * 60, 0); /* checkpoint, header, ~two records */
    spooler_t *f = new_spooler(sp);
    kafka_record_t r = {.topic = "t", .value = "v", .value_len = 1, .timestamp_ms = 1};
    size_t n = 0;
    while (n < 10 && spooler_produce(f, &r, 100 + n) == KAFKA_OK)
        n++;
    assert_true(n >= 1 && n < 10);
    assert_true(spooler_stats(f)->full);
    spooler_turn(f);
    assert_int_equal(n_produced, n);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f);
    assert_int_equal(ckpt_on_disk(), 1);
    clock_ms += 1;
    for (uint64_t s = 2; s <= n; s++)
        spooler_on_delivery(f, s, 0, NULL);
    spooler_turn(f); /* within the interval: written all the same */
    assert_int_equal(ckpt_on_disk(), n);
    assert_int_equal(count_files(".seg"), 0);                /* the newest, drained, went with it */
    assert_int_equal(spooler_produce(f, &r, 999), KAFKA_OK); /* the space is back */
    spooler_free(f);
    spool_close(sp);
}

static void test_checkpoint_on_the_worker_one_job_at_a_time(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 64);
    spooler_t *f = new_spooler(sp);
    spooler_set_worker(f, fake_work, NULL);
    put(f, 3);
    spooler_turn(f);
    work_all(); /* the group commit */
    assert_int_equal(n_acked, 3);
    spooler_turn(f); /* the feed after the sync */
    assert_int_equal(n_produced, 3);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f);
    assert_int_equal(wq.n, 1); /* queued: the files are untouched until it runs */
    assert_int_equal(confirmed(sp), 1);
    assert_int_equal(ckpt_on_disk(), 0);
    assert_int_equal(count_files(".seg"), 3);
    spooler_on_delivery(f, 2, 0, NULL);
    clock_ms += SPOOLER_CHECKPOINT_MS;
    spooler_turn(f);
    assert_int_equal(wq.n, 1); /* the one in flight first */
    work_all();
    assert_int_equal(ckpt_on_disk(), 1);
    assert_int_equal(count_files(".seg"), 2);
    spooler_turn(f); /* segment 2 is drained: the next job at once */
    assert_int_equal(wq.n, 1);
    work_all();
    assert_int_equal(ckpt_on_disk(), 2);
    assert_int_equal(count_files(".seg"), 1);
    /* Freed with a job whose run returned and whose done has not come: the
     * spooler ends it, the late done only frees its holder. */
    spooler_on_delivery(f, 3, 0, NULL);
    clock_ms += SPOOLER_CHECKPOINT_MS;
    spooler_turn(f);
    assert_int_equal(wq.n, 1);
    wq.run[0](wq.arg[0]);
    spooler_free(f);
    wq.done[0](wq.arg[0]);
    assert_int_equal(ckpt_on_disk(), 3);
    assert_int_equal(count_files(".seg"), 0); /* the newest, drained, at the free */
    spool_close(sp);
}

/* The engine's parts: the confirmation counts at begin, the drained segments
 * leave the spool's bytes at begin and their files at run; the newest segment
 * goes with the job after the one whose checkpoint covers it. */
static void test_confirm_in_parts(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 1024);
    append_sync_read(sp, 1, 10, 300);
    int segs = count_files(".seg");
    assert_true(segs >= 3);
    spool_confirm_job_t *job;
    assert_int_equal(spool_confirm_begin(sp, 11, &job), SPOOL_EINVAL); /* not read */
    assert_int_equal(spool_confirm_begin(sp, 10, &job), 0);
    assert_non_null(job);
    assert_int_equal(confirmed(sp), 10);
    assert_int_equal(count_files(".seg"), segs);
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.segments, 1); /* the newest stays: no durable checkpoint says 10 */
    assert_false(spool_drained(sp));
    spool_confirm_run(job);
    assert_int_equal(spool_confirm_end(sp, job), 0);
    assert_int_equal(count_files(".seg"), 1);
    assert_int_equal(ckpt_on_disk(), 10);
    assert_false(spool_checkpoint_behind(sp));
    assert_true(spool_drained(sp)); /* now the newest can go */
    assert_int_equal(spool_confirm_begin(sp, 10, &job), 0);
    assert_non_null(job);
    spool_confirm_run(job);
    assert_int_equal(spool_confirm_end(sp, job), 0);
    assert_int_equal(count_files(".seg"), 0);
    assert_int_equal(spool_confirm_begin(sp, 10, &job), 0);
    assert_null(job); /* nothing left to write or delete */
    spool_close(sp);
    sp = open_spool(0, 1024);
    append_sync_read(sp, 11, 1, 300); /* the sequence numbers carry on */
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_checkpoint_at_most_every_interval_and_at_stop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drained_segment_deleted_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_spool_checkpoint_not_throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_on_the_worker_one_job_at_a_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_confirm_in_parts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
