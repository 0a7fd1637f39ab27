/* A PUBLISH with RETAIN 1 and `retained:`: its record and its copy to the
 * retained topic. A QoS 1/2 one is acked once both delivery reports are in,
 * in either order; a failed or refused copy fails the message as a failed
 * record does (3.1.1: the close, MQTT 5: 0x80); a copy the producer queue or
 * the spool cannot take yet is produced alone when the PUBLISH is fed again.
 * QoS 0 and wills: best effort, a lost copy counted. */
#include "session5_fixture.h"

static int setup_r(void **state) {
    setup5(state);
    fx_t *fx = *state;
    fx->cfg.retained = (config_retained_t){.enabled = true, .topic = "ret"};
    return 0;
}

/* publish5 with RETAIN 1. */
static pk_t publish5_retain(const char *topic, int qos, uint16_t id, const char *payload) {
    pk_t p = publish5(topic, qos, id, NULL, 0, payload);
    p.b[0] |= 1;
    return p;
}

static void test_ack_waits_for_both_reports(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    pk_t p1 = publish_pk("t/r", "v", 1, 1, true);
    assert_int_equal(feed(a, p1), (ssize_t)p1.n);
    assert_int_equal(fx->prod.n, 2);
    assert_string_equal(fx->prod.recs[1].topic, "ret");
    assert_int_equal(fx->prod.recs[1].opaque, fx->prod.recs[0].opaque | SESSION_OPAQUE_COPY_BIT);
    /* The copy's report first, then the record's. */
    deliver(fx, 1, 0);
    EXPECT_NO_OUT(a);
    deliver(fx, 0, 0);
    EXPECT_OUT(a, 0x40, 0x02, 0x00, 0x01);
    /* QoS 2, the record's report first; a plain PUBLISH behind it waits. */
    pk_t p2 = publish_pk("t/r", "w", 2, 2, true);
    pk_t p3 = publish_pk("t/n", "x", 1, 3, false);
    assert_int_equal(feed(a, p2), (ssize_t)p2.n);
    assert_int_equal(feed(a, p3), (ssize_t)p3.n);
    assert_int_equal(fx->prod.n, 5);
    assert_string_equal(fx->prod.recs[3].topic, "ret");
    assert_string_equal(fx->prod.recs[4].topic, "kt");
    deliver(fx, 2, 0);
    deliver(fx, 4, 0);
    EXPECT_NO_OUT(a);
    deliver(fx, 3, 0);
    EXPECT_OUT(a, 0x50, 0x02, 0x00, 0x02, 0x40, 0x02, 0x00, 0x03);
    /* A report that is no longer awaited changes nothing. */
    deliver(fx, 3, 1);
    EXPECT_NO_OUT(a);
    assert_int_equal(a->closes, 0);
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 0);
}

/* MQTT 3.1.1: a failed copy (or record) is a failed message: the close once
 * both reports are in, no ack; not a lost copy (the client resends). */
static void test_failed_copy_closes_311(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    pk_t p = publish_pk("t/r", "v", 1, 1, true);
    assert_int_equal(feed(a, p), (ssize_t)p.n);
    log_capture_begin();
    deliver(fx, 1, 1);
    assert_int_equal(a->closes, 0);
    deliver(fx, 0, 0);
    const char *log = log_capture_end();
    assert_logged(log, "Kafka did not take the retained copy of a QoS 1 message on topic 't/r': "
                       "Broker: boom\n");
    assert_logged(log, "closing: Kafka did not confirm a message; the client must resend it");
    assert_int_equal(a->closes, 1);
    EXPECT_NO_OUT(a);
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 0);
    /* The record failed, the copy went: the same. */
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    assert_int_equal(feed(b, p), (ssize_t)p.n);
    deliver(fx, 2, 1);
    assert_int_equal(b->closes, 0);
    deliver(fx, 3, 0);
    assert_int_equal(b->closes, 1);
    EXPECT_NO_OUT(b);
}

/* MQTT 5: PUBACK/PUBREC 0x80 instead, the connection goes on. */
static void test_failed_copy_nacks_v5(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "v", .clean = true});
    pk_t p1 = publish5_retain("t/r", 1, 7, "a");
    pk_t p2 = publish5_retain("t/r", 2, 8, "b");
    assert_int_equal(feed(f, p1), (ssize_t)p1.n);
    assert_int_equal(feed(f, p2), (ssize_t)p2.n);
    assert_int_equal(fx->prod.n, 4);
    deliver(fx, 1, 1); /* 7's copy failed */
    deliver(fx, 0, 0);
    expect_reason(f, 0x40, 7, 0x80, "Kafka did not take the message");
    deliver(fx, 2, 1); /* 8's record failed */
    EXPECT_NO_OUT(f);
    deliver(fx, 3, 0);
    expect_reason(f, 0x50, 8, 0x80, "Kafka did not take the message");
    assert_int_equal(f->closes, 0);
    /* The QoS 2 id awaits no PUBREL: the same id is a new message. */
    assert_int_equal(feed(f, p2), (ssize_t)p2.n);
    assert_int_equal(fx->prod.n, 6);
}

/* The producer refuses the copy at once: the message fails when the
 * record's report comes. */
static void test_copy_refused_fails_message(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "v", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_OK;
    fx->prod.rc_queue[1] = KAFKA_ERR_PRODUCE;
    fx->prod.n_rc = 2;
    pk_t p = publish5_retain("t/r", 1, 7, "a");
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    assert_logged(log, "the producer refused the retained copy of a message on topic 't/r' "
                       "(produce error): the message fails\n");
    assert_int_equal(fx->prod.n, 1);
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    expect_reason(f, 0x40, 7, 0x80, "Kafka did not take the message");
}

/* A full producer queue for the copy: the reader pauses, and the PUBLISH
 * fed again produces the copy alone, never the record twice. */
static void test_copy_queue_full_retried_without_duplicate(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_OK;
    fx->prod.rc_queue[1] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.rc_queue[2] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.n_rc = 3;
    pk_t p = publish_pk("t/r", "v", 2, 5, true);
    assert_int_equal(feed(a, p), 0); /* not taken: fed again */
    assert_true(a->paused);
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].topic, "kt");
    deliver(fx, 0, 0); /* the record's report wakes the reader */
    EXPECT_NO_OUT(a);
    assert_false(a->paused);
    assert_int_equal(feed(a, p), 0); /* still full */
    assert_int_equal(fx->prod.n, 1);
    session_mgr_tick(fx->m);
    assert_int_equal(feed(a, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 2);
    assert_string_equal(fx->prod.recs[1].topic, "ret");
    assert_int_equal(fx->prod.recs[1].opaque, fx->prod.recs[0].opaque | SESSION_OPAQUE_COPY_BIT);
    assert_int_equal(session_mgr_stats(fx->m)->queue_full, 2);
    EXPECT_NO_OUT(a);
    deliver(fx, 1, 0);
    EXPECT_OUT(a, 0x50, 0x02, 0x00, 0x05);
    /* The next PUBLISH is a new message again. */
    pk_t q = publish_pk("t/n", "w", 1, 6, false);
    assert_int_equal(feed(a, q), (ssize_t)q.n);
    assert_int_equal(fx->prod.n, 3);
    deliver(fx, 2, 0);
    EXPECT_OUT(a, 0x40, 0x02, 0x00, 0x06);
}

/* With the spool: the record spooled, the spool full for the copy. MQTT 5
 * gets no 0x97 (the record is already taken: 0x97 would have it produced
 * twice when the client sends it again); it waits, and the ack comes once
 * both are durable. A full spool for the record: 0x97, and no copy. */
static void test_copy_at_a_full_spool_waits(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "v", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_OK;
    fx->prod.rc_queue[1] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 2;
    pk_t p = publish5_retain("t/r", 1, 7, "a");
    assert_int_equal(feed(f, p), 0);
    EXPECT_NO_OUT(f);
    assert_true(f->paused);
    session_mgr_tick(fx->m);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 2);
    deliver(fx, 0, 0);
    EXPECT_NO_OUT(f);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x07);
    fx->prod.rc_queue[0] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 1;
    pk_t q = publish5_retain("t/r", 1, 8, "b");
    assert_int_equal(feed(f, q), (ssize_t)q.n);
    expect_reason(f, 0x40, 8, 0x97, "the spool is full (spool.max_bytes or the disk)");
    assert_int_equal(fx->prod.n, 2);
}

/* The connection ends while the copy is owed: it is never produced, the
 * entry fails (no PUBREL kept for its QoS 2 id) and the session's next
 * messages are acked as usual. */
static void test_owed_copy_dropped_with_the_connection(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "p", .clean = false});
    fx->prod.rc_queue[0] = KAFKA_OK;
    fx->prod.rc_queue[1] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.n_rc = 2;
    pk_t p = publish_pk("t/r", "v", 2, 5, true);
    assert_int_equal(feed(a, p), 0);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    deliver(fx, 0, 0);
    assert_int_equal(fx->prod.n, 1);
    fconn_t *b = open_conn(fx, 1);
    pk_t c = connect_pk((cn_t){.id = "p", .clean = false});
    assert_int_equal(feed(b, c), (ssize_t)c.n);
    EXPECT_OUT(b, 0x20, 0x02, 0x01, 0x00);
    assert_int_equal(feed(b, p), (ssize_t)p.n); /* id 5 is new: produced again */
    assert_int_equal(fx->prod.n, 3);
    pk_t q = publish_pk("t/n", "w", 1, 6, false);
    assert_int_equal(feed(b, q), (ssize_t)q.n);
    deliver(fx, 1, 0);
    deliver(fx, 2, 0);
    deliver(fx, 3, 0);
    EXPECT_OUT(b, 0x50, 0x02, 0x00, 0x05, 0x40, 0x02, 0x00, 0x06);
}

/* QoS 0: nothing is acked; the copy is best effort (SESSION_OPAQUE_RETAINED),
 * one the producer refuses is counted as lost and not retried. */
static void test_qos0_copy_best_effort(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_OK;
    fx->prod.rc_queue[1] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.n_rc = 2;
    pk_t p = publish_pk("t/r", "v", 0, 0, true);
    log_capture_begin();
    assert_int_equal(feed(a, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    assert_logged(log, "retained copy of a message on topic 't/r' not produced\n");
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 1);
    assert_int_equal(feed(a, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 3);
    assert_int_equal(fx->prod.recs[2].opaque, SESSION_OPAQUE_RETAINED);
    session_on_delivery(fx->m, fx->prod.recs[2].opaque, 1, "Broker: boom");
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 2);
    assert_false(a->paused);
    EXPECT_NO_OUT(a);
}

/* A will with RETAIN 1 updates the retained store too, best effort. */
static void test_will_retain_copied(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0,
                           (cn_t){.id = "w",
                                  .clean = true,
                                  .will_topic = "t/will",
                                  .will_payload = "gone",
                                  .will_qos = 1,
                                  .will_retain = true});
    session_conn_lost(a->c, "reset");
    assert_int_equal(fx->prod.n, 2);
    assert_string_equal(fx->prod.recs[0].topic, "kt");
    assert_int_equal(fx->prod.recs[0].opaque, SESSION_OPAQUE_WILL);
    assert_string_equal(fx->prod.recs[1].topic, "ret");
    assert_memory_equal(fx->prod.recs[1].key, "t/will", 6);
    assert_memory_equal(fx->prod.recs[1].value, "gone", 4);
    assert_string_equal(fx->prod.recs[1].headers, "mqtt.qos=1;");
    assert_int_equal(fx->prod.recs[1].opaque, SESSION_OPAQUE_RETAINED);
}

/* MQTT 5: a PUBLISH's message expiry interval is written as the
 * mqtt.message_expiry header (decimal seconds) on its record when `headers`
 * is on, and on the retained copy always. */
static void test_message_expiry_header(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "v", .clean = true});
    pk_t p = publish5("t/r", 1, 7, P("\x02\x00\x01\x51\x80"), "a"); /* 86400 s */
    p.b[0] |= 1;
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 2);
    assert_string_equal(fx->prod.recs[0].headers,
                        "mqtt.topic=t/r;mqtt.client_id=v;mqtt.qos=1;mqtt.retain=1;"
                        "mqtt.message_expiry=86400;");
    assert_string_equal(fx->prod.recs[1].headers, "mqtt.qos=1;mqtt.message_expiry=86400;");
    fx->cfg.headers = false;
    pk_t q = publish5("t/r", 0, 0, P("\x02\x00\x00\x00\x01"), "b");
    q.b[0] |= 1;
    assert_int_equal(feed(f, q), (ssize_t)q.n);
    assert_string_equal(fx->prod.recs[2].headers, "");
    assert_string_equal(fx->prod.recs[3].headers, "mqtt.qos=0;mqtt.message_expiry=1;");
    /* None without the property. */
    fx->cfg.headers = true;
    pk_t r = publish5("t/n", 0, 0, NULL, 0, "c");
    assert_int_equal(feed(f, r), (ssize_t)r.n);
    assert_string_equal(fx->prod.recs[4].headers, "mqtt.topic=t/n;mqtt.client_id=v;mqtt.qos=0;");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ack_waits_for_both_reports, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_failed_copy_closes_311, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_failed_copy_nacks_v5, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_copy_refused_fails_message, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_copy_queue_full_retried_without_duplicate, setup_r,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_copy_at_a_full_spool_waits, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_owed_copy_dropped_with_the_connection, setup_r,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qos0_copy_best_effort, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_will_retain_copied, setup_r, teardown),
        cmocka_unit_test_setup_teardown(test_message_expiry_header, setup_r, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
