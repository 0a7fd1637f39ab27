/* The spooler in `mode: outage` (src/spooler.c): records go to the producer
 * while Kafka takes them; every broker down, a retriable delivery error or a
 * report later than outage_after_ms switches to the spool; the purge's
 * records (and any still due) are spooled in the order they were produced,
 * ahead of newer ones; the spool drains, then records go directly again.
 * The producer, its purge, its reachability and the clock are fakes. */
#include "spool_fixture.h"

#include "spooler.h"

#define MAXN 64
#define PURGED (-152) /* RD_KAFKA_RESP_ERR__PURGE_QUEUE */

static struct {
    uint64_t opaque[MAXN];
    int err[MAXN];
    size_t n;
} done;

static struct {
    uint64_t opaque[MAXN]; /* as given to the producer */
    char value[MAXN][16];
    bool reported[MAXN];
    size_t n;
    size_t purge_max; /* the purge returns at most this many (the rest come late) */
} prod;

static spooler_t *cur;
static bool up = true;
static uint64_t clock_ms;

static void on_complete(void *ud, uint64_t opaque, int err, const char *errstr) {
    (void)ud;
    (void)errstr;
    done.opaque[done.n] = opaque;
    done.err[done.n] = err;
    done.n++;
}

static int fake_produce(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    (void)ud;
    size_t i = prod.n++;
    prod.opaque[i] = opaque;
    prod.reported[i] = false;
    snprintf(prod.value[i], sizeof prod.value[i], "%.*s", (int)rec->value_len,
             (const char *)rec->value);
    return KAFKA_OK;
}

/* The failed report of produced record i, with its record. */
static void report(size_t i, int err, bool retriable, bool maybe_written) {
    kafka_header_t h = {"mqtt.qos", "1", 1};
    kafka_record_t r = {.topic = "t",
                        .key = "k",
                        .key_len = 1,
                        .value = prod.value[i],
                        .value_len = strlen(prod.value[i]),
                        .headers = &h,
                        .n_headers = 1,
                        .timestamp_ms = 5};
    prod.reported[i] = true;
    spooler_on_report(cur, prod.opaque[i], err, "failed",
                      &(spooler_report_t){&r, retriable, maybe_written});
}

static void deliver(size_t i) {
    prod.reported[i] = true;
    spooler_on_report(cur, prod.opaque[i], 0, NULL, &(spooler_report_t){0});
}

/* Reports in reverse order: the spooler must restore the produced order. */
static void fake_purge(void *ud) {
    (void)ud;
    size_t n = 0;
    for (size_t i = prod.n; i-- > 0;)
        if (!prod.reported[i] && (prod.opaque[i] & SPOOLER_DIRECT_BIT) && n++ < prod.purge_max)
            report(i, PURGED, true, i % 2 == 0);
}

static bool fake_reachable(void *ud, char *why, size_t cap) {
    (void)ud;
    if (!up)
        snprintf(why, cap, "3/3 brokers are down");
    return up;
}

static uint64_t fake_now(void *ud) {
    (void)ud;
    return clock_ms;
}

static spooler_t *new_outage(spool_t *sp) {
    memset(&done, 0, sizeof done);
    memset(&prod, 0, sizeof prod);
    prod.purge_max = MAXN;
    up = true;
    clock_ms = 1000;
    cur = spooler_new(&(spooler_opts_t){sp, fake_produce, NULL, on_complete, NULL});
    assert_non_null(cur);
    spooler_set_outage(cur, &(spooler_outage_t){.outage_after_ms = 1000,
                                                .reachable = fake_reachable,
                                                .purge = fake_purge,
                                                .now_ms = fake_now});
    return cur;
}

static int produce(const char *value, uint64_t opaque) {
    kafka_record_t r = {.topic = "t",
                        .key = "k",
                        .key_len = 1,
                        .value = value,
                        .value_len = strlen(value),
                        .timestamp_ms = 5};
    return spooler_produce(cur, &r, opaque);
}

static void assert_done(const uint64_t *want, size_t n) {
    assert_int_equal(done.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(done.opaque[i], want[i]);
        assert_int_equal(done.err[i], 0);
    }
}

/* The spool's records in order, as the feed produced them: "a,b,". */
static void assert_fed(size_t from, const char *want) {
    char got[256] = "";
    for (size_t i = from; i < prod.n; i++) {
        assert_false(prod.opaque[i] & SPOOLER_DIRECT_BIT);
        strcat(got, prod.value[i]);
        strcat(got, ",");
    }
    assert_string_equal(got, want);
}

static void test_direct_while_kafka_takes_records(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    new_outage(sp);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DIRECT);
    assert_int_equal(produce("a", 11), KAFKA_OK);
    assert_int_equal(produce("b", 12), KAFKA_OK);
    assert_false(spooler_pending(cur));
    assert_int_equal(prod.n, 2);
    assert_int_equal(prod.opaque[0], SPOOLER_DIRECT_BIT | 0);
    assert_int_equal(prod.opaque[1], SPOOLER_DIRECT_BIT | 1);
    spooler_turn(cur);
    assert_int_equal(done.n, 0); /* acked on Kafka's report only */
    assert_int_equal(spooler_direct_inflight(cur), 2);
    deliver(1);
    deliver(0);
    assert_done((uint64_t[]){12, 11}, 2);
    /* A refusal that is not an outage fails to the session, no switch. */
    assert_int_equal(produce("c", 13), KAFKA_OK);
    report(2, 10, false, false); /* MSG_SIZE_TOO_LARGE */
    assert_int_equal(done.n, 3);
    assert_int_equal(done.err[2], 10);
    spooler_turn(cur);
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.records, 0);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DIRECT);
    assert_int_equal(spooler_stats(cur)->spooled, 0);
    assert_int_equal(spooler_stats(cur)->direct, 2);
    assert_int_equal(spooler_direct_inflight(cur), 0);
    spooler_free(cur);
    spool_close(sp);
}

static void test_brokers_down_takes_back_in_order_then_drains_then_direct(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    new_outage(sp);
    for (int i = 0; i < 4; i++)
        assert_int_equal(produce((const char[]){(char)('a' + i), 0}, 21 + (uint64_t)i), KAFKA_OK);
    deliver(1); /* b is in Kafka */
    up = false;
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_SPOOLING);
    assert_non_null(strstr(log_text(), "spool: Kafka cannot take records (Kafka unreachable: 3/3 "
                                       "brokers are down): switching to the spool, records are "
                                       "acknowledged once fsync'ed; 3 records taken back from "
                                       "the producer\n"));
    /* Purged d, c, a; spooled and acked a, c, d (the sync of the same turn). */
    assert_done((uint64_t[]){22, 21, 23, 24}, 4);
    assert_int_equal(spooler_stats(cur)->taken_back, 3);
    assert_int_equal(spooler_stats(cur)->maybe_twice, 2); /* a and c (fake: even ones) */
    assert_int_equal(produce("e", 25), KAFKA_OK);         /* newer: behind them */
    assert_true(spooler_pending(cur));
    spooler_turn(cur);
    assert_done((uint64_t[]){22, 21, 23, 24, 25}, 5);
    assert_fed(4, "a,c,d,e,");
    assert_int_equal(prod.opaque[4], 1); /* spool sequence numbers */
    /* Kafka back: draining until every spooled record is confirmed. */
    up = true;
    clock_ms += 2500;
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DRAINING);
    assert_non_null(strstr(log_text(), "spool: Kafka reachable: draining 4 records from the "
                                       "spool, new records queue behind them\n"));
    for (size_t i = 4; i < 8; i++)
        deliver(i);
    assert_int_equal(produce("f", 26), KAFKA_OK); /* still to the spool */
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DRAINING);
    assert_fed(4, "a,c,d,e,f,");
    deliver(8);
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DIRECT);
    assert_non_null(strstr(log_text(), "spool: drained; records go to Kafka directly again after "
                                       "2.5 s on the spool\n"));
    assert_int_equal(spooler_stats(cur)->outage_ms, 2500);
    assert_int_equal(spooler_stats(cur)->outages, 1);
    assert_int_equal(spooler_stats(cur)->drained, 5);
    /* The drain rate: records confirmed per second, sampled once a second
     * (the last sample was when Kafka came back, before any report). */
    assert_int_equal(spooler_stats(cur)->drain_rate, 0);
    clock_ms += 1000;
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->drain_rate, 5);
    assert_int_equal(spooler_stats(cur)->outage_ms, 2500); /* direct again: no longer grows */
    spool_stats_t ss;
    spool_stats(sp, &ss);
    assert_int_equal(ss.records, 0);
    assert_int_equal(produce("g", 27), KAFKA_OK);
    assert_int_equal(prod.opaque[prod.n - 1], SPOOLER_DIRECT_BIT | 4);
    assert_false(spooler_pending(cur));
    spooler_free(cur);
    spool_close(sp);
}

static void test_retriable_error_switches_and_keeps_the_failed_record_first(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    new_outage(sp);
    assert_int_equal(produce("a", 31), KAFKA_OK);
    assert_int_equal(produce("b", 32), KAFKA_OK);
    report(0, -192, true, true); /* a: message timed out */
    assert_int_equal(done.n, 0);
    assert_int_equal(produce("c", 33), KAFKA_OK); /* before the turn: to the producer, taken back */
    assert_int_equal(prod.n, 3);
    spooler_turn(cur);
    assert_non_null(strstr(log_text(), "spool: Kafka cannot take records (a record failed: "
                                       "failed): switching to the spool, records are acknowledged "
                                       "once fsync'ed; 3 records taken back from the producer\n"));
    assert_done((uint64_t[]){31, 32, 33}, 3);
    assert_fed(3, "a,b,c,");
    spooler_free(cur);
    spool_close(sp);
}

static void test_late_report_switches_after_outage_after_ms(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    new_outage(sp);
    assert_int_equal(produce("a", 41), KAFKA_OK);
    clock_ms += 999;
    spooler_turn(cur);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DIRECT);
    clock_ms += 1;
    spooler_turn(cur);
    /* Reachable but hung: the spool feeds it as it can. */
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_DRAINING);
    assert_non_null(strstr(log_text(), "spool: Kafka cannot take records (a record waited 1000 ms "
                                       "for its delivery report): switching to the spool"));
    assert_done((uint64_t[]){41}, 1);
    spooler_free(cur);
    spool_close(sp);
}

static void test_reports_after_the_purge_still_go_first(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    new_outage(sp);
    assert_int_equal(produce("a", 51), KAFKA_OK);
    assert_int_equal(produce("b", 52), KAFKA_OK);
    prod.purge_max = 1; /* b comes back now, a later */
    up = false;
    spooler_turn(cur);
    assert_int_equal(produce("c", 53), KAFKA_OK); /* kept behind a and b */
    spooler_turn(cur);
    assert_int_equal(done.n, 0);
    assert_int_equal(spooler_direct_inflight(cur), 1);
    report(0, PURGED, true, false);
    spooler_turn(cur);
    assert_done((uint64_t[]){51, 52, 53}, 3);
    assert_fed(2, "a,b,c,");
    spooler_free(cur);
    spool_close(sp);
}

static void test_starts_on_the_spool_when_it_holds_records(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 0);
    spooler_t *f = spooler_new(&(spooler_opts_t){sp, fake_produce, NULL, on_complete, NULL});
    kafka_record_t r = {.topic = "t", .value = "old", .value_len = 3, .timestamp_ms = 5};
    assert_int_equal(spooler_produce(f, &r, 1), KAFKA_OK);
    spooler_stop(f);
    spooler_free(f);
    spool_close(sp);
    sp = open_spool(0, 0);
    new_outage(sp);
    assert_int_equal(spooler_stats(cur)->state, SPOOLER_SPOOLING);
    assert_int_equal(produce("new", 61), KAFKA_OK);
    spooler_turn(cur);
    assert_fed(0, "old,new,");
    spooler_free(cur);
    spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_direct_while_kafka_takes_records, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_brokers_down_takes_back_in_order_then_drains_then_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_retriable_error_switches_and_keeps_the_failed_record_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_report_switches_after_outage_after_ms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reports_after_the_purge_still_go_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_starts_on_the_spool_when_it_holds_records, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
