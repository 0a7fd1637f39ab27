/* Message expiry of downlink messages (issue 15, MQTT 5 3.3.2.3.3): the
 * record's mqtt.message_expiry header (decimal seconds) counts from its Kafka
 * timestamp; a message past it is not sent (one queued is dropped when its
 * turn comes, counted), and an MQTT 5 PUBLISH carries what is left of it,
 * rounded up [MQTT-3.3.2-6]; retained messages expire the same way. Exact
 * bytes. */
#include "subscribe_fixture.h"

#define WALL0 1700000000000 /* the fixture's wall clock at time 0 */

static void subscribe(fconn_t *f, const char *filter, uint8_t qos, bool v5) {
    pk_t s = sub_pk(1, &filter, &qos, 1, v5);
    assert_int_equal(feed(f, s), (ssize_t)s.n);
    const uint8_t w5[] = {0x90, 0x04, 0x00, 0x01, 0x00, qos}, w[] = {0x90, 0x03, 0x00, 0x01, qos};
    if (v5)
        expect_out(f, w5, sizeof(w5));
    else
        expect_out(f, w, sizeof(w));
}

/* One record on "t" with payload "x", its mqtt.message_expiry header, made
 * age_ms before now. */
static size_t dl_record(fx_t *fx, uint8_t qos, const char *expiry, int64_t age_ms) {
    const dl_header_t h[] = {{"mqtt.message_expiry", expiry, expiry ? strlen(expiry) : 0}};
    return session_mgr_deliver_at(fx->m, "t", 1, "x", 1, qos, h, expiry ? 1 : 0,
                                  WALL0 + (int64_t)fx->now - age_ms);
}

/* Written at once: the interval less the record's age, rounded up. */
static void test_v5_remaining_interval_at_once(void **state) {
    fx_t *fx = *state;
    set_time(fx, 1000);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    subscribe(a, "t", 0, true);
    assert_int_equal(dl_record(fx, 0, "10", 3000), 1);
    EXPECT_OUT(a, 0x30, 0x0a, 0x00, 0x01, 't', 0x05, 0x02, 0x00, 0x00, 0x00, 0x07, 'x');
    assert_int_equal(dl_record(fx, 0, "10", 2500), 1); /* 7.5 s left: 8 */
    EXPECT_OUT(a, 0x30, 0x0a, 0x00, 0x01, 't', 0x05, 0x02, 0x00, 0x00, 0x00, 0x08, 'x');
    assert_int_equal(dl_record(fx, 0, "4294967295", -5000), 1); /* a clock ahead: age 0 */
    EXPECT_OUT(a, 0x30, 0x0a, 0x00, 0x01, 't', 0x05, 0x02, 0xff, 0xff, 0xff, 0xff, 'x');
    /* not an interval: no expiry, no property */
    const char *bad[] = {"0", "", "4294967296", "12a", "-1", "+5", " 5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dl_record(fx, 0, bad[i], 99000), 1);
        EXPECT_OUT(a, 0x30, 0x05, 0x00, 0x01, 't', 0x00, 'x');
    }
    assert_int_equal(session_mgr_queue_stats(fx->m)->expired, 0);
}

/* A record already past its expiry when read goes to nobody, counted once
 * per matching session. */
static void test_expired_when_read(void **state) {
    fx_t *fx = *state;
    set_time(fx, 1000);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    subscribe(a, "t", 1, true);
    subscribe(b, "#", 1, false);
    assert_int_equal(dl_record(fx, 1, "10", 10000), 0);
    EXPECT_NO_OUT(a);
    EXPECT_NO_OUT(b);
    assert_int_equal(session_mgr_queue_stats(fx->m)->expired, 2);
    assert_int_equal(dl_record(fx, 1, "10", 9999), 2); /* 1 ms left: 1 s */
    EXPECT_OUT(a, 0x32, 0x0c, 0x00, 0x01, 't', 0x00, 0x01, 0x05, 0x02, 0x00, 0x00, 0x00, 0x01, 'x');
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'x'); /* 3.1.1: no property */
}

/* Queued behind a full window (4): sent with what is left when its turn
 * comes, or dropped once past it; 3.1.1 the same without the property. */
static void test_queued_expiry(void **state) {
    fx_t *fx = *state;
    set_time(fx, 1000);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    subscribe(a, "t", 1, true);
    subscribe(b, "t", 1, false);
    for (int i = 0; i < 4; i++)
        assert_int_equal(dl_record(fx, 1, NULL, 0), 2);
    a->out_len = b->out_len = 0;
    assert_int_equal(dl_record(fx, 1, "10", 0), 2); /* queued: 10 s */
    assert_int_equal(dl_record(fx, 1, "2", 0), 2);  /* queued: 2 s */
    assert_int_equal(dl_record(fx, 1, NULL, 0), 2); /* queued: none */
    EXPECT_NO_OUT(a);
    set_time(fx, 5000); /* 4 s later */
    assert_int_equal(feed(a, id_pk(0x40, 1)), 4);
    EXPECT_OUT(a, 0x32, 0x0c, 0x00, 0x01, 't', 0x00, 0x05, 0x05, 0x02, 0x00, 0x00, 0x00, 0x06, 'x');
    assert_int_equal(feed(a, id_pk(0x40, 2)), 4); /* the 2 s one is dropped, the next goes */
    EXPECT_OUT(a, 0x32, 0x07, 0x00, 0x01, 't', 0x00, 0x06, 0x00, 'x');
    assert_int_equal(feed(b, id_pk(0x40, 1)), 4);
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x05, 'x');
    assert_int_equal(feed(b, id_pk(0x40, 2)), 4);
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x06, 'x');
    const dl_queue_stats_t *qs = session_mgr_queue_stats(fx->m);
    assert_int_equal(qs->expired, 2);
    assert_int_equal(qs->depth, 0);
}

/* A persistent session away: what expired meanwhile is not sent when it
 * comes back; the rest carries what is left. */
static void test_persistent_session_return(void **state) {
    fx_t *fx = *state;
    set_time(fx, 1000);
    fconn_t *a = open_conn(fx, 0);
    pk_t c = connect5((cn5_t){.id = "p", .clean = false, PROPS("\x11\x00\x00\x0e\x10")});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    assert_int_equal(a->out[0], 0x20);
    a->out_len = 0;
    subscribe(a, "t", 1, true);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    assert_int_equal(dl_record(fx, 1, "5", 0), 1);
    assert_int_equal(dl_record(fx, 1, "60", 0), 1);
    set_time(fx, 11000); /* 10 s later */
    a = open_conn(fx, 0);
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    assert_true(a->out_len > 0);
    assert_int_equal(a->out[0], 0x20); /* CONNACK, then the one left: 50 s */
    size_t n = 2 + a->out[1];
    const uint8_t want[] = {0x32, 0x0c, 0x00, 0x01, 't',  0x00, 0x01,
                            0x05, 0x02, 0x00, 0x00, 0x00, 0x32, 'x'};
    assert_int_equal(a->out_len, n + sizeof(want));
    assert_memory_equal(a->out + n, want, sizeof(want));
    a->out_len = 0;
    assert_int_equal(session_mgr_queue_stats(fx->m)->expired, 1);
}

/* A session kept without a connection: the tick drops what expired in its
 * queue wherever it is (not only when its turn comes), so it frees its
 * mqtt.max_queued_messages slot and its bytes; what has not expired stays. */
static void test_away_queue_expired_at_the_tick(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_queued_messages = 2;
    set_time(fx, 1000);
    fconn_t *a = open_conn(fx, 0);
    pk_t c = connect5((cn5_t){.id = "p", .clean = false, PROPS("\x11\x00\x00\x0e\x10")});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    a->out_len = 0;
    subscribe(a, "t", 1, true);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    assert_int_equal(dl_record(fx, 1, NULL, 0), 1);
    uint64_t first = session_mgr_stats(fx->m)->persistent_session_bytes;
    assert_int_equal(dl_record(fx, 1, "5", 0), 1); /* behind the first */
    uint64_t full = session_mgr_stats(fx->m)->persistent_session_bytes;
    assert_true(full > first);
    session_mgr_tick(fx->m); /* not expired yet: kept */
    assert_int_equal(session_mgr_queue_stats(fx->m)->depth, 2);
    set_time(fx, 6000);
    session_mgr_tick(fx->m);
    const dl_queue_stats_t *qs = session_mgr_queue_stats(fx->m);
    assert_int_equal(qs->expired, 1);
    assert_int_equal(qs->depth, 1);
    assert_int_equal(session_mgr_stats(fx->m)->persistent_session_bytes, first);
    assert_int_equal(dl_record(fx, 1, NULL, 0), 1); /* its slot is free again */
    assert_int_equal(qs->refused_full, 0);
    assert_int_equal(qs->depth, 2);
}

/* A retained message with an expiry (the retained record's mqtt.message_expiry
 * from its timestamp: dl_retained_set_expiring's wall time): a subscription
 * after it has passed gets nothing and the store drops it; before, an MQTT 5
 * subscriber gets what is left of it. */
static void test_retained_expiry_on_subscribe(void **state) {
    fx_t *fx = *state;
    fx->retained = dl_retained_new(10, 1000);
    assert_int_equal(dl_retained_set_expiring(fx->retained, "r/a", 3, "1", 1, 0, WALL0 + 5000), 0);
    assert_int_equal(dl_retained_set_expiring(fx->retained, "r/b", 3, "2", 1, 0, WALL0 + 500), 0);
    fx_restart(fx);
    set_time(fx, 1000);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    const char *f = "r/#";
    uint8_t q = 0;
    pk_t s = sub_pk(1, &f, &q, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    /* The SUBACK, then r/a with 4 s left; r/b dropped. */
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x00, 0x31, 0x0c, 0x00, 0x03, 'r', '/', 'a', 0x05,
               0x02, 0x00, 0x00, 0x00, 0x04, '1');
    assert_int_equal(dl_retained_stats(fx->retained)->expired, 1);
    assert_int_equal(dl_retained_stats(fx->retained)->messages, 1);
    set_time(fx, 5000);
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    subscribe(b, "r/a", 1, false);
    EXPECT_NO_OUT(b);
    assert_int_equal(dl_retained_stats(fx->retained)->messages, 0);
    session_mgr_free(fx->m);
    fx->m = NULL;
    dl_retained_free(fx->retained);
    fx->retained = NULL;
    fx_start(fx);
}

static int setup_e(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    ((fx_t *)*state)->cfg.mqtt.max_queued_messages = 10;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v5_remaining_interval_at_once, setup_e, teardown),
        cmocka_unit_test_setup_teardown(test_expired_when_read, setup_e, teardown),
        cmocka_unit_test_setup_teardown(test_queued_expiry, setup_e, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_session_return, setup_e, teardown),
        cmocka_unit_test_setup_teardown(test_retained_expiry_on_subscribe, setup_e, teardown),
        cmocka_unit_test_setup_teardown(test_away_queue_expired_at_the_tick, setup_e, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
