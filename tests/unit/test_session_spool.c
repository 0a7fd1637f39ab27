/* The session at a full spool (KAFKA_ERR_SPOOL_FULL from the produce op):
 * QoS 0 is dropped, counted and logged and the client is read on; QoS 1
 * waits unacknowledged with its reader paused, then goes once. */
#include "session_fixture.h"

static void test_qos0_dropped_and_counted_at_a_full_spool(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.rc_queue[1] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 2;
    pk_t p = publish_pk("t/a", "x", 0, 0, false);
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *logged = log_capture_end();
    assert_non_null(strstr(logged, "dropped a QoS 0 message on topic 't/a': the spool is full"));
    assert_false(f->paused);
    assert_int_equal(f->pauses, 0);
    assert_int_equal(session_mgr_stats(fx->m)->qos0_dropped_spool_full, 2);
    assert_int_equal(session_mgr_stats(fx->m)->queue_full, 0);
    assert_int_equal(session_mgr_stats(fx->m)->published, 0);
    /* Room again: the next one goes. */
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->published, 1);
    EXPECT_NO_OUT(f);
}

static void test_qos1_waits_unacked_at_a_full_spool(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 1;
    pk_t p = publish_pk("t/a", "x", 1, 7, false);
    assert_int_equal(feed(f, p), 0); /* not taken: retried */
    assert_true(f->paused);
    EXPECT_NO_OUT(f);
    assert_int_equal(session_mgr_stats(fx->m)->qos0_dropped_spool_full, 0);
    session_mgr_tick(fx->m); /* the periodic retry */
    assert_false(f->paused);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 7);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qos0_dropped_and_counted_at_a_full_spool, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qos1_waits_unacked_at_a_full_spool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
