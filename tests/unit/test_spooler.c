/* The spooler (src/spooler.c, spool: {mode: always}): group commit then
 * completions in order; the feed in sequence order up to the window; the
 * confirmation of the contiguous delivered prefix; the rewind after a failed
 * delivery; a full spool refused as KAFKA_ERR_SPOOL_FULL; a reopened spool feeds
 * what was not confirmed first. The producer is a fake that records what it
 * was given. */
#include "spool_fixture.h"

#include "spooler.h"

#define MAXP 64

static struct {
    uint64_t opaque[MAXP]; /* completions */
    int err[MAXP];
    size_t n; /* all of them (the first MAXP are kept) */
} done;

static struct {
    uint64_t seq[SPOOLER_WINDOW + 8]; /* produced */
    char value[SPOOLER_WINDOW + 8][16];
    char topic[SPOOLER_WINDOW + 8][16];
    char hname[SPOOLER_WINDOW + 8][16];
    size_t n;
    int rc; /* what produce answers */
} prod;

static void on_complete(void *ud, uint64_t opaque, int err, const char *errstr) {
    (void)ud;
    (void)errstr;
    if (done.n < MAXP) {
        done.opaque[done.n] = opaque;
        done.err[done.n] = err;
    }
    done.n++;
}

static int fake_produce(void *ud, const kafka_record_t *rec, uint64_t seq) {
    (void)ud;
    if (prod.rc != KAFKA_OK)
        return prod.rc;
    size_t i = prod.n++;
    prod.seq[i] = seq;
    snprintf(prod.value[i], sizeof prod.value[i], "%.*s", (int)rec->value_len,
             (const char *)rec->value);
    snprintf(prod.topic[i], sizeof prod.topic[i], "%s", rec->topic);
    snprintf(prod.hname[i], sizeof prod.hname[i], "%s", rec->n_headers ? rec->headers[0].name : "");
    return KAFKA_OK;
}

static spooler_t *new_spooler(spool_t *sp) {
    memset(&done, 0, sizeof done);
    memset(&prod, 0, sizeof prod);
    spooler_t *f = spooler_new(&(spooler_opts_t){sp, fake_produce, NULL, on_complete, NULL});
    assert_non_null(f);
    return f;
}

static int produce_one(spooler_t *f, const char *value, uint64_t opaque) {
    kafka_header_t h = {"mqtt.qos", "1", 1};
    kafka_record_t r = {.topic = "t",
                        .key = "k",
                        .key_len = 1,
                        .value = value,
                        .value_len = strlen(value),
                        .headers = &h,
                        .n_headers = 1,
                        .timestamp_ms = 1};
    return spooler_produce(f, &r, opaque);
}

static void test_group_commit_then_completions_in_order(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    assert_int_equal(produce_one(f, "a", 101), KAFKA_OK);
    assert_int_equal(produce_one(f, "b", 102), KAFKA_OK);
    assert_int_equal(produce_one(f, "c", 103), KAFKA_OK);
    assert_true(spooler_pending(f));
    assert_int_equal(done.n, 0); /* nothing acked before the sync */
    assert_int_equal(prod.n, 0);
    spooler_turn(f);
    assert_false(spooler_pending(f));
    assert_int_equal(done.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(done.opaque[i], 101 + i);
        assert_int_equal(done.err[i], 0);
    }
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.synced_seq, 3);
    /* The same turn fed the producer, in order, with the sequence numbers. */
    assert_int_equal(prod.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(prod.seq[i], i + 1);
        assert_int_equal(prod.value[i][0], 'a' + (int)i);
        assert_int_equal(prod.value[i][1], '\0');
        assert_string_equal(prod.topic[i], "t");
        assert_string_equal(prod.hname[i], "mqtt.qos");
    }
    assert_int_equal(spooler_stats(f)->spooled, 3);
    spooler_free(f);
    spool_close(sp);
}

/* spooler_set_durable: a synced group's opaques, at once, before the
 * first of its completions. */
static size_t durable_n, durable_calls, durable_done_before;
static uint64_t durable_opaque[4];

static void on_durable(void *ud, const uint64_t *opaques, size_t n) {
    (void)ud;
    durable_calls++;
    durable_done_before = done.n;
    for (size_t i = 0; i < n && durable_n < 4; i++)
        durable_opaque[durable_n++] = opaques[i];
}

static void test_durable_hook_gets_the_group_before_its_completions(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    durable_n = durable_calls = 0;
    spooler_set_durable(f, on_durable);
    assert_int_equal(produce_one(f, "a", 201), KAFKA_OK);
    assert_int_equal(produce_one(f, "b", 202), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(durable_calls, 1);
    assert_int_equal(durable_done_before, 0);
    assert_int_equal(durable_n, 2);
    assert_int_equal(durable_opaque[0], 201);
    assert_int_equal(durable_opaque[1], 202);
    assert_int_equal(done.n, 2);
    spooler_free(f);
    spool_close(sp);
}

static void test_confirms_the_contiguous_delivered_prefix(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    for (int i = 0; i < 4; i++)
        assert_int_equal(produce_one(f, "v", 1), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(prod.n, 4);
    spooler_on_delivery(f, 2, 0, NULL); /* 1 is still out: nothing confirmed */
    spooler_on_delivery(f, 4, 0, NULL);
    spooler_turn(f);
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.confirmed_seq, 0);
    assert_int_equal(spooler_stats(f)->drained, 0);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_on_delivery(f, 1, 0, NULL);  /* a second report: ignored */
    spooler_on_delivery(f, 99, 0, NULL); /* unknown: ignored */
    spooler_turn(f);
    spool_stats(sp, &ss);
    assert_int_equal(ss.confirmed_seq, 2);
    assert_int_equal(spooler_stats(f)->drained, 2);
    spooler_on_delivery(f, 3, 0, NULL);
    spooler_turn(f);
    spool_stats(sp, &ss);
    assert_int_equal(ss.confirmed_seq, 4);
    assert_int_equal(ss.records, 0);
    assert_int_equal(prod.n, 4); /* nothing produced twice */
    spooler_free(f);
    spool_close(sp);
}

static void test_failed_delivery_rewinds_after_the_window_is_back(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    for (int i = 0; i < 5; i++)
        assert_int_equal(produce_one(f, "v", 1), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(prod.n, 5);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_on_delivery(f, 2, -192, "Local: Message timed out");
    spooler_on_delivery(f, 4, 0, NULL);
    /* New records wait: the feed stops until 3 and 5 are back. */
    assert_int_equal(produce_one(f, "w", 1), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(prod.n, 5);
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.confirmed_seq, 1);
    spooler_on_delivery(f, 3, -192, "Local: Message timed out");
    spooler_turn(f);
    assert_int_equal(prod.n, 5);
    spooler_on_delivery(f, 5, 0, NULL);
    spooler_turn(f);
    /* Rewound to 2: 2..6 again (4 and 5 twice: at least once), in order. */
    assert_int_equal(prod.n, 10);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(prod.seq[5 + i], 2 + i);
    assert_int_equal(spooler_stats(f)->rewinds, 1);
    assert_int_equal(spooler_stats(f)->failed, 2);
    for (uint64_t s = 2; s <= 6; s++)
        spooler_on_delivery(f, s, 0, NULL);
    spooler_turn(f);
    spool_stats(sp, &ss);
    assert_int_equal(ss.confirmed_seq, 6);
    assert_non_null(strstr(log_text(), "spool: Kafka did not take record 2 (Local: Message timed "
                                       "out); the feed starts again"));
    assert_non_null(strstr(log_text(), "spool: the feed to Kafka starts again after record 1"));
    spooler_free(f);
    spool_close(sp);
}

static void test_window_and_a_full_producer_queue(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    prod.rc = KAFKA_ERR_QUEUE_FULL;
    for (int i = 0; i < SPOOLER_WINDOW + 3; i++)
        assert_int_equal(produce_one(f, "v", 1), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(done.n, SPOOLER_WINDOW + 3);
    assert_int_equal(prod.n, 0); /* the queue is full: kept for the next turn */
    prod.rc = KAFKA_OK;
    spooler_turn(f);
    assert_int_equal(prod.n, SPOOLER_WINDOW);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f);
    assert_int_equal(prod.n, SPOOLER_WINDOW + 1);
    assert_int_equal(prod.seq[SPOOLER_WINDOW], SPOOLER_WINDOW + 1);
    spooler_free(f);
    spool_close(sp);
}

/* The window's bytes: 1 MiB records, 64 of them in the producer at most
 * (SPOOLER_WINDOW_BYTES), the next once the first is delivered. */
static void test_window_bytes(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    size_t len = 1024 * 1024, max = SPOOLER_WINDOW_BYTES / len;
    char *v = malloc(len + 1);
    assert_non_null(v);
    memset(v, 'm', len);
    v[len] = '\0';
    for (size_t i = 0; i < max + 2; i++)
        assert_int_equal(produce_one(f, v, i + 1), KAFKA_OK);
    free(v);
    spooler_turn(f);
    assert_int_equal(done.n, max + 2);
    assert_int_equal(prod.n, max);
    spooler_turn(f);
    assert_int_equal(prod.n, max); /* nothing delivered: nothing more */
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f);
    assert_int_equal(prod.n, max + 1);
    assert_int_equal(prod.seq[max], max + 1);
    spooler_free(f);
    spool_close(sp);
}

static void test_full_spool_is_refused_as_spool_full(void **state) {
    (void)state;
    spool_t *sp = open_spool(24 + 16 + 2 * 60, 0); /* checkpoint, header, about two records */
    spooler_t *f = new_spooler(sp);
    prod.rc = KAFKA_ERR_QUEUE_FULL; /* Kafka takes nothing */
    int rc = KAFKA_OK;
    size_t n = 0;
    while ((rc = produce_one(f, "v", n + 1)) == KAFKA_OK && n < 10)
        n++;
    assert_int_equal(rc, KAFKA_ERR_SPOOL_FULL);
    assert_true(n >= 1 && n < 10);
    assert_true(spooler_stats(f)->full);
    assert_int_equal(spooler_stats(f)->refused_full, 1);
    spooler_turn(f);
    assert_int_equal(done.n, n); /* what was taken is acked; the refused one is not */
    spooler_free(f);
    spool_close(sp);
}

static void test_reopened_spool_feeds_the_unconfirmed_first(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = new_spooler(sp);
    assert_int_equal(produce_one(f, "a", 1), KAFKA_OK);
    assert_int_equal(produce_one(f, "b", 2), KAFKA_OK);
    assert_int_equal(produce_one(f, "c", 3), KAFKA_OK);
    spooler_turn(f);
    spooler_on_delivery(f, 1, 0, NULL);
    spooler_turn(f); /* 1 confirmed (checkpoint), 2 and 3 not */
    spooler_stop(f);
    assert_int_equal(produce_one(f, "x", 1), KAFKA_ERR_QUEUE_FULL); /* stopped */
    spooler_free(f);
    spool_close(sp);

    sp = open_spool(0, 0);
    f = new_spooler(sp);
    assert_int_equal(produce_one(f, "d", 9), KAFKA_OK);
    spooler_turn(f);
    assert_int_equal(prod.n, 3);
    assert_string_equal(prod.value[0], "b");
    assert_string_equal(prod.value[1], "c");
    assert_string_equal(prod.value[2], "d");
    assert_int_equal(prod.seq[0], 2);
    spooler_free(f);
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_commit_then_completions_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_confirms_the_contiguous_delivered_prefix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_durable_hook_gets_the_group_before_its_completions,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_delivery_rewinds_after_the_window_is_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_and_a_full_producer_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_spool_is_refused_as_spool_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopened_spool_feeds_the_unconfirmed_first, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
