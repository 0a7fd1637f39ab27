/* A downlink record made once for every worker (threads: N):
 * session_mgr_dl_msg on the consumer's worker, session_mgr_deliver_msg on
 * each worker's manager. Exact bytes as session_mgr_deliver_at gives, the
 * shared message's references as queues on two managers take and drop them,
 * MQTT 5 no local and retain as published from what the message keeps of
 * the headers, message expiry on the monotonic clock. */
#include "subscribe_fixture.h"

static void subscribe(fconn_t *f, const char *filter, uint8_t opts, bool v5) {
    pk_t s = sub_pk(1, &filter, &opts, 1, v5);
    assert_int_equal(feed(f, s), (ssize_t)s.n);
    const uint8_t w5[] = {0x90, 0x04, 0x00, 0x01, 0x00, (uint8_t)(opts & 3)};
    const uint8_t w[] = {0x90, 0x03, 0x00, 0x01, (uint8_t)(opts & 3)};
    if (v5)
        expect_out(f, w5, sizeof(w5));
    else
        expect_out(f, w, sizeof(w));
}

/* Two managers (two workers): a v5 QoS 0 subscriber on the first gets the
 * user properties written at once (no reference kept), a 3.1.1 QoS 1
 * subscriber on each holds the one message in its window until its PUBACK. */
static void test_one_message_two_managers(void **state) {
    fx_t *fx = *state;
    session_mgr_t *m0 = fx->m;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    subscribe(a, "t", 0, true);
    subscribe(b, "t", 1, false);
    fx_start(fx); /* a second manager, as another worker's */
    session_mgr_t *m1 = fx->m;
    fconn_t *c = connected(fx, 2, (cn_t){.id = "c", .clean = true});
    subscribe(c, "#", 1, false);
    const dl_header_t h[] = {
        {"mqtt.topic", "x", 1}, {"k", "v", 1}, {"bad", "\xff", 1}, {"k2", NULL, 0}};
    dl_msg_t *msg = session_mgr_dl_msg(m0, "t", 1, "p", 1, 1, h, 4, -1);
    assert_non_null(msg);
    assert_int_equal(msg->props_len, 14);
    assert_memory_equal(msg->props, "\x26\x00\x01k\x00\x01v\x26\x00\x02k2\x00\x00", 14);
    assert_null(msg->origin);
    assert_false(msg->published_retain);
    assert_int_equal(msg->expires_ms, 0);
    assert_int_equal(atomic_load(&msg->refs), 1);
    assert_int_equal(session_mgr_deliver_msg(m0, msg), 2);
    EXPECT_OUT(a, 0x30, 0x13, 0x00, 0x01, 't', 0x0e, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', 0x26,
               0x00, 0x02, 'k', '2', 0x00, 0x00, 'p');
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'p');
    assert_int_equal(atomic_load(&msg->refs), 2); /* b's window */
    assert_int_equal(session_mgr_deliver_msg(m1, msg), 1);
    EXPECT_OUT(c, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'p');
    assert_int_equal(atomic_load(&msg->refs), 3);
    assert_int_equal(feed(b, id_pk(0x40, 1)), 4);
    assert_int_equal(atomic_load(&msg->refs), 2);
    assert_int_equal(feed(c, id_pk(0x40, 1)), 4);
    assert_int_equal(atomic_load(&msg->refs), 1);
    assert_int_equal(session_mgr_stats(m0)->deliveries[0], 1);
    assert_int_equal(session_mgr_stats(m0)->deliveries[1], 1);
    assert_int_equal(session_mgr_stats(m1)->deliveries[1], 1);
    dl_msg_unref(msg);
    session_mgr_free(m0);
}

/* No local and retain as published, from the message's origin and flag. */
static void test_no_local_and_retain_as_published(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    subscribe(a, "t", 0x05, true); /* no local, QoS 1 */
    subscribe(b, "t", 0x08, true); /* retain as published, QoS 0 */
    const dl_header_t from_a[] = {
        {"mqtt.topic", "t", 1}, {"mqtt.client_id", "a", 1}, {"mqtt.retain", "1", 1}};
    dl_msg_t *msg = session_mgr_dl_msg(fx->m, "t", 1, "p", 1, 1, from_a, 3, -1);
    assert_int_equal(msg->origin_len, 1);
    assert_memory_equal(msg->origin, "a", 1);
    assert_true(msg->published_retain);
    assert_int_equal(msg->props_len, 0);
    assert_null(msg->props);
    assert_int_equal(session_mgr_deliver_msg(fx->m, msg), 1);
    EXPECT_NO_OUT(a);
    EXPECT_OUT(b, 0x31, 0x05, 0x00, 0x01, 't', 0x00, 'p');
    assert_int_equal(atomic_load(&msg->refs), 1);
    dl_msg_unref(msg);
}

/* The expiry is on the manager's monotonic clock, from the record's
 * timestamp: 10 s made 3 s ago at mono 1000 is 8000; already past: 1, which
 * every manager counts as expired per matching session. */
static void test_expiry(void **state) {
    fx_t *fx = *state;
    set_time(fx, 1000);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    subscribe(a, "t", 1, true);
    const dl_header_t h[] = {{"mqtt.message_expiry", "10", 2}};
    int64_t wall = 1700000000000 + 1000;
    dl_msg_t *msg = session_mgr_dl_msg(fx->m, "t", 1, "x", 1, 1, h, 1, wall - 3000);
    assert_int_equal(msg->expires_ms, 8000);
    set_time(fx, 1500); /* another loop's later turn: 6.5 s left, 7 */
    assert_int_equal(session_mgr_deliver_msg(fx->m, msg), 1);
    EXPECT_OUT(a, 0x32, 0x0c, 0x00, 0x01, 't', 0x00, 0x01, 0x05, 0x02, 0x00, 0x00, 0x00, 0x07, 'x');
    dl_msg_unref(msg);
    msg = session_mgr_dl_msg(fx->m, "t", 1, "x", 1, 1, h, 1, wall - 10000);
    assert_int_equal(msg->expires_ms, 1);
    assert_int_equal(session_mgr_deliver_msg(fx->m, msg), 0);
    EXPECT_NO_OUT(a);
    assert_int_equal(session_mgr_queue_stats(fx->m)->expired, 1);
    dl_msg_unref(msg);
}

static int setup_s(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    ((fx_t *)*state)->cfg.mqtt.max_queued_messages = 3;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_message_two_managers, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_no_local_and_retain_as_published, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup_s, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
