/* Session state machine: raw MQTT bytes in, exact bytes and records out, with
 * a fake producer, a fake topic map and a hand-driven clock
 * (session_fixture.h). Authentication, the ACL and the dispatch table are in
 * test_session_auth.c and test_session_dispatch.c. */
#include "session_fixture.h"

/* ---- CONNECT ---------------------------------------------------------------- */

/* The counters the session keeps for the metrics registry: exact counts per
 * packet type, QoS, refusal reason and protocol error kind, and the ack
 * latency from the us clock (reported through opts.ack_latency). */
static void test_metrics_fed_by_the_session(void **state) {
    fx_t *fx = *state;
    const session_stats_t *st = session_mgr_stats(fx->m);
    session_mgr_set_now_us(fx->m, 5000000);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    feed(f, publish_pk("t/a", "x", 1, 7, false));
    feed(f, publish_pk("t/a", "x", 2, 8, false));
    session_mgr_set_now_us(fx->m, 5000000 + 3000); /* 3 ms later */
    deliver(fx, 0, 0);
    deliver(fx, 1, 0);
    deliver(fx, 2, 0);
    feed(f, id_pk(0x62, 8)); /* PUBREL */
    assert_int_equal(st->packets_received[MQTT_CONNECT], 1);
    assert_int_equal(st->packets_received[MQTT_PUBLISH], 3);
    assert_int_equal(st->packets_received[MQTT_PUBREL], 1);
    assert_int_equal(st->packets_sent[MQTT_CONNACK], 1);
    assert_int_equal(st->packets_sent[MQTT_PUBACK], 1);
    assert_int_equal(st->packets_sent[MQTT_PUBREC], 1);
    assert_int_equal(st->packets_sent[MQTT_PUBCOMP], 1);
    assert_int_equal(st->messages_received[0], 1);
    assert_int_equal(st->messages_received[1], 1);
    assert_int_equal(st->messages_received[2], 1);
    /* Two acks, each 3000 us: the 0.005 s bucket (index 3). */
    assert_int_equal(fx->lat.count, 2);
    assert_int_equal(fx->lat.sum_usec, 6000);
    assert_int_equal(fx->lat.buckets[3], 2);
    assert_int_equal(session_mgr_paused_count(fx->m), 0);

    /* Refusals: a bad protocol level, then a PUBLISH before CONNECT. */
    fconn_t *g = open_conn(fx, 1);
    assert_int_equal(feed(g, connect_pk((cn_t){.id = "b", .clean = true, .level = 3})), -1);
    fconn_t *h = open_conn(fx, 2);
    assert_int_equal(feed(h, publish_pk("t/a", "x", 0, 0, false)), -1);
    /* A protocol error after CONNECT is not a refusal. */
    assert_int_equal(feed(f, connect_pk((cn_t){.id = "a", .clean = true})), -1);
    assert_int_equal(st->connack_refused[MQTT_CONNACK_BAD_PROTOCOL], 1);
    assert_int_equal(st->refused_protocol_errors, 1);
    assert_int_equal(st->protocol_error_kinds[SESSION_ERR_FIRST_PACKET_NOT_CONNECT], 1);
    assert_int_equal(st->protocol_error_kinds[SESSION_ERR_SECOND_CONNECT], 1);
    int kinds = 0;
    for (int k = 0; k < SESSION_ERR__COUNT; k++)
        kinds += st->protocol_error_kinds[k] != 0;
    assert_int_equal(kinds, 2);
    assert_int_equal(st->packets_sent[MQTT_CONNACK], 2); /* + CONNACK 0x01 */
}

/* The names the metrics label protocol errors with. */
static void test_error_names(void **state) {
    (void)state;
    assert_null(session_error_name(0));
    assert_string_equal(session_error_name(-MQTT_ERR_QOS_INVALID), "MQTT_ERR_QOS_INVALID");
    assert_string_equal(session_error_name(-MQTT_ERR_STRING_TOO_LONG), "MQTT_ERR_STRING_TOO_LONG");
    assert_string_equal(session_error_name(SESSION_ERR_FIRST_PACKET_NOT_CONNECT),
                        "first_packet_not_connect");
    assert_string_equal(session_error_name(SESSION_ERR_SECOND_CONNECT), "second_connect");
    assert_string_equal(session_error_name(SESSION_ERR_SERVER_ONLY_PACKET), "server_only_packet");
    assert_string_equal(session_error_name(SESSION_ERR_UNEXPECTED_ACK), "unexpected_ack");
    assert_string_equal(session_error_name(SESSION_ERR_UNEXPECTED_PACKET_TYPE),
                        "unexpected_packet_type");
    assert_string_equal(session_error_name(SESSION_ERR_QOS2_WINDOW_FULL), "qos2_window_full");
    assert_string_equal(session_error_name(SESSION_ERR_SUBSCRIBE_TOO_MANY_FILTERS),
                        "subscribe_too_many_filters");
    assert_null(session_error_name(SESSION_ERR__COUNT));
}

static void test_connect_accepted(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true, .keepalive = 30});
    assert_false(session_conn_closed(f->c));
    assert_int_equal(session_mgr_stats(fx->m)->connects, 1);
}

static void test_connect_bad_level(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(feed(f, connect_pk((cn_t){.id = "a", .clean = true, .level = 3})), -1);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x01);
    assert_int_equal(f->closes, 1);
    assert_true(session_conn_closed(f->c));
}

static void test_connect_empty_id_clean1_gets_generated_id(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "", .clean = true});
    fconn_t *g = connected(fx, 1, (cn_t){.id = "", .clean = true});
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    feed(g, publish_pk("t/a", "y", 0, 0, false));
    assert_int_equal(fx->prod.n, 2);
    /* 128 random bits, not a counter another client could guess (issue 20
     * finding 10). */
    char ids[2][64];
    for (int i = 0; i < 2; i++) {
        const char *h = fx->prod.recs[i].headers;
        const char *pre = "mqtt.topic=t/a;mqtt.client_id=m2k-auto-";
        assert_memory_equal(h, pre, strlen(pre));
        const char *hex = h + strlen(pre);
        assert_int_equal(strspn(hex, "0123456789abcdef"), 32);
        assert_string_equal(hex + 32, ";mqtt.qos=0;");
        snprintf(ids[i], sizeof(ids[i]), "%.32s", hex);
        assert_string_not_equal(ids[i], "00000000000000000000000000000001");
    }
    assert_string_not_equal(ids[0], ids[1]);
}

static void test_connect_empty_id_clean0_rejected(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(feed(f, connect_pk((cn_t){.id = "", .clean = false})), -1);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x02);
    assert_int_equal(f->closes, 1);
}

static void test_connect_keepalive_too_large(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(feed(f, connect_pk((cn_t){.id = "a", .clean = true, .keepalive = 601})), -1);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x02);
    f = open_conn(fx, 1);
    pk_t p = connect_pk((cn_t){.id = "a", .clean = true, .keepalive = 600});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
}

static void test_connect_long_utf8_id(void **state) {
    fx_t *fx = *state;
    char id[601];
    for (int i = 0; i < 200; i++)
        memcpy(id + 3 * i, "\xe2\x82\xac", 3); /* U+20AC, 600 bytes */
    id[600] = '\0';
    fx->cfg.mqtt.max_client_id_length = 600;
    connected(fx, 0, (cn_t){.id = id, .clean = true});
}

/* The caps on what a CONNECT makes the session keep: a client id over its
 * cap gets CONNACK 2; a user name or will over its cap has no CONNACK code in
 * 3.1.1, so the connection is closed unanswered, with a line and a count. */
static void test_connect_client_id_cap(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_client_id_length = 23;
    char id[25];
    memset(id, 'a', 24);
    id[24] = '\0';
    fconn_t *f = open_conn(fx, 0);
    log_capture_begin();
    assert_int_equal(feed(f, connect_pk((cn_t){.id = id, .clean = false})), -1);
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x02);
    assert_int_equal(f->closes, 1);
    assert_non_null(strstr(log, "client id of 24 bytes above mqtt.max_client_id_length 23"));
    assert_int_equal(session_mgr_stats(fx->m)->connack_refused[MQTT_CONNACK_ID_REJECTED], 1);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    id[23] = '\0'; /* 23 bytes: at the cap */
    connected(fx, 1, (cn_t){.id = id, .clean = false});
}

static void refused_too_long(fx_t *fx, int i, cn_t cn, const char *line, uint64_t count) {
    fconn_t *f = open_conn(fx, i);
    log_capture_begin();
    assert_int_equal(feed(f, connect_pk(cn)), -1);
    const char *log = log_capture_end();
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_non_null(strstr(log, line));
    assert_int_equal(session_mgr_stats(fx->m)->refused_too_long, count);
    assert_int_equal(session_mgr_stats(fx->m)->rejected, 0);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

static void test_connect_user_and_will_caps(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_username_length = 4;
    fx->cfg.mqtt.max_will_topic_length = 5;
    fx->cfg.mqtt.max_will_payload = 6;
    refused_too_long(fx, 0, (cn_t){.id = "a", .clean = true, .user = "abcde"},
                     "CONNECT refused: user name of 5 bytes above mqtt.max_username_length 4", 1);
    refused_too_long(
        fx, 1, (cn_t){.id = "a", .clean = true, .will_topic = "t/abcd", .will_payload = "x"},
        "CONNECT refused: will topic of 6 bytes above mqtt.max_will_topic_length 5", 2);
    refused_too_long(
        fx, 2, (cn_t){.id = "a", .clean = true, .will_topic = "t/a", .will_payload = "1234567"},
        "CONNECT refused: will message of 7 bytes above mqtt.max_will_payload 6", 3);
    /* At the caps: accepted. */
    connected(fx, 3,
              (cn_t){.id = "a",
                     .clean = true,
                     .user = "abcd",
                     .will_topic = "t/abc",
                     .will_payload = "123456"});
}

static void test_first_packet_not_connect(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(feed(f, publish_pk("t/a", "x", 0, 0, false)), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_errors, 1);
}

static void test_second_connect_closes(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    assert_int_equal(feed(f, connect_pk((cn_t){.id = "a", .clean = true})), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
}

static void test_partial_packets(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect_pk((cn_t){.id = "a", .clean = true});
    for (size_t i = 0; i < p.n; i++)
        assert_int_equal(session_feed(f->c, p.b, i), 0);
    assert_int_equal(session_feed(f->c, p.b, p.n), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
}

/* ---- PUBLISH flows ------------------------------------------------------------ */

static void test_qos0_record(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true, .user = "bob"});
    set_time(fx, 5000);
    pk_t p = publish_pk("t/temp", "21.5", 0, 0, true);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_NO_OUT(f);
    assert_int_equal(fx->prod.n, 1);
    rec_t *r = &fx->prod.recs[0];
    assert_string_equal(r->topic, "kt");
    assert_int_equal(r->key_len, 8);
    assert_memory_equal(r->key, "K:t/temp", 8);
    assert_int_equal(r->value_len, 4);
    assert_memory_equal(r->value, "21.5", 4);
    assert_int_equal(r->ts, 1700000005000);
    assert_string_equal(r->headers, "mqtt.topic=t/temp;mqtt.client_id=dev1;mqtt.qos=0;"
                                    "mqtt.retain=1;mqtt.username=bob;");
    deliver(fx, 0, 0);
    EXPECT_NO_OUT(f);
}

static void test_no_headers_when_disabled(void **state) {
    fx_t *fx = *state;
    fx->cfg.headers = false;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "", 1, 1, false));
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].headers, "");
    assert_int_equal(fx->prod.recs[0].value_len, 0);
}

static void test_qos1_ack_after_report(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 1, 0x1234, false));
    EXPECT_NO_OUT(f);
    assert_string_equal(fx->prod.recs[0].headers, "mqtt.topic=t/a;mqtt.client_id=dev1;mqtt.qos=1;");
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x12, 0x34);
    /* A repeated QoS 1 id is a new message. */
    feed(f, publish_pk("t/a", "x", 1, 0x1234, false));
    assert_int_equal(fx->prod.n, 2);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x12, 0x34);
}

static void test_acks_in_arrival_order(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    pk_t a = publish_pk("t/a", "1", 1, 1, false);
    pk_t b = publish_pk("t/a", "2", 0, 0, false);
    pk_t c = publish_pk("t/a", "3", 2, 3, false);
    pk_t all = a;
    put(&all, b.b, b.n);
    put(&all, c.b, c.n);
    assert_int_equal(feed(f, all), (ssize_t)all.n);
    assert_int_equal(fx->prod.n, 3);
    deliver(fx, 2, 0);
    deliver(fx, 1, 0);
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x01, 0x50, 0x02, 0x00, 0x03);
    /* A second report for the same opaque is ignored. */
    deliver(fx, 0, 0);
    EXPECT_NO_OUT(f);
}

/* A ring capacity that is not a power of two (max_inflight 5) wrapping many
 * times, reports arriving newest first: acks still leave in arrival order. */
static void test_acks_in_order_across_ring_wraps(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_inflight = 5;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    uint16_t pid = 1;
    for (int round = 0; round < 12; round++) {
        int first = fx->prod.n;
        uint8_t want[4 * 4];
        for (int i = 0; i < 4; i++, pid++) {
            pk_t p = publish_pk("t/a", "v", 1, pid, false);
            assert_int_equal(feed(f, p), (ssize_t)p.n);
            uint8_t ack[4] = {0x40, 0x02, (uint8_t)(pid >> 8), (uint8_t)pid};
            memcpy(want + 4 * i, ack, 4);
        }
        assert_int_equal(fx->prod.n, first + 4);
        for (int i = 3; i >= 1; i--)
            deliver(fx, first + i, 0);
        EXPECT_NO_OUT(f);
        deliver(fx, first, 0);
        expect_out(f, want, sizeof(want));
    }
}

static void test_qos2_flow_and_duplicate(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x07);
    /* Resent before PUBREL: PUBREC again, not produced again. */
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x07);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->qos2_duplicates, 1);
    feed(f, id_pk(0x62, 7));
    EXPECT_OUT(f, 0x70, 0x02, 0x00, 0x07);
    /* After PUBCOMP the id is free: a new message. */
    feed(f, publish_pk("t/a", "y", 2, 7, false));
    assert_int_equal(fx->prod.n, 2);
}

static void test_qos2_duplicate_while_in_flight(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 2, 9, false));
    feed(f, publish_pk("t/a", "x", 2, 9, false));
    assert_int_equal(fx->prod.n, 1);
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x09);
}

static void test_qos2_duplicate_keeps_order(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 2, 9, false));
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x09);
    feed(f, publish_pk("t/a", "y", 1, 1, false));
    feed(f, publish_pk("t/a", "x", 2, 9, false)); /* waits behind id 1 */
    EXPECT_NO_OUT(f);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x01, 0x50, 0x02, 0x00, 0x09);
}

static void test_pubrel_unknown_id(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    pk_t p = id_pk(0x62, 0x4242);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x70, 0x02, 0x42, 0x42);
}

static void test_qos2_pending_pubrel_bound(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    for (uint16_t i = 1; i <= 4; i++) {
        feed(f, publish_pk("t/a", "x", 2, i, false));
        deliver(fx, i - 1, 0);
    }
    EXPECT_OUT(f, 0x50, 2, 0, 1, 0x50, 2, 0, 2, 0x50, 2, 0, 3, 0x50, 2, 0, 4);
    assert_int_equal(feed(f, publish_pk("t/a", "x", 2, 5, false)), -1);
    assert_int_equal(f->closes, 1);
    assert_int_equal(fx->prod.n, 4);
}

static void test_delivery_failure_closes_without_ack(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 1, 1, false));
    feed(f, publish_pk("t/a", "y", 1, 2, false));
    deliver(fx, 1, 0);
    deliver(fx, 0, -192);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_true(session_conn_closed(f->c));
    assert_int_equal(session_mgr_stats(fx->m)->delivery_failed, 1);
}

static void test_qos0_failure_does_not_close(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    deliver(fx, 0, -192);
    assert_int_equal(f->closes, 0);
}

static void test_produce_error_closes(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_PRODUCE;
    fx->prod.n_rc = 1;
    assert_int_equal(feed(f, publish_pk("t/a", "x", 1, 1, false)), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
}

/* ---- unmapped topics ----------------------------------------------------------- */

static void test_unmapped_disconnect(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    assert_int_equal(feed(f, publish_pk("other", "x", 1, 1, false)), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->unmapped_closed, 1);
}

static void test_unmapped_drop_acks_in_order(void **state) {
    fx_t *fx = *state;
    fx->cfg.unmapped = UNMAPPED_DROP;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 1, 1, false));
    feed(f, publish_pk("other", "x", 1, 2, false));
    feed(f, publish_pk("other/2", "x", 2, 3, false));
    feed(f, publish_pk("other/0", "x", 0, 0, false));
    assert_int_equal(fx->prod.n, 1);
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x50, 2, 0, 3);
    assert_int_equal(session_mgr_stats(fx->m)->unmapped_dropped, 3);
    assert_int_equal(f->closes, 0);
}

static void test_unmapped_topic_route(void **state) {
    fx_t *fx = *state;
    fx->cfg.unmapped = UNMAPPED_TOPIC;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("other/x", "v", 1, 1, false));
    feed(f, publish_pk("other/y", "w", 0, 0, false));
    assert_int_equal(fx->prod.n, 2);
    assert_string_equal(fx->prod.recs[0].topic, "unmapped");
    assert_int_equal(fx->prod.recs[0].key_len, 7);
    assert_memory_equal(fx->prod.recs[0].key, "other/x", 7);
    assert_string_equal(fx->prod.recs[1].topic, "unmapped");
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 1);
}

/* Issue 19 bug 6: a message a rule maps whose Kafka topic cannot be used is
 * not "unmapped": whatever `unmapped:` says, it is never acknowledged (3.1.1
 * has no negative ack: the connection closes), never produced, and counted. */
static void test_refused_mapped_message_closes_under_every_policy(void **state) {
    fx_t *fx = *state;
    static const struct {
        const char *topic;
        int kind;
    } cases[] = {{"bad/a b", SESSION_REFUSED_ILLEGAL_TOPIC},
                 {"res/schemas", SESSION_REFUSED_RESERVED_TOPIC},
                 {"room/x", SESSION_REFUSED_ILLEGAL_TOPIC}};
    const config_unmapped_t policies[] = {UNMAPPED_DISCONNECT, UNMAPPED_DROP, UNMAPPED_TOPIC};
    uint64_t want[SESSION_REFUSED__COUNT] = {0};
    for (size_t p = 0; p < 3; p++) {
        for (size_t i = 0; i < 3; i++) {
            fx->cfg.unmapped = policies[p];
            fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
            assert_int_equal(feed(f, publish_pk(cases[i].topic, "x", 1, 7, false)), -1);
            EXPECT_NO_OUT(f); /* no PUBACK */
            assert_int_equal(f->closes, 1);
            assert_int_equal(fx->prod.n, 0);
            want[cases[i].kind]++;
            assert_memory_equal(session_mgr_stats(fx->m)->messages_refused, want, sizeof(want));
        }
    }
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->unmapped_closed + st->unmapped_dropped + st->unmapped_routed, 0);
}

/* Issue 20 finding 3: distinct Kafka topics are bounded by kafka.max_topics;
 * a known one still goes through, one more is refused like an illegal name. */
static void test_kafka_max_topics(void **state) {
    fx_t *fx = *state;
    fx->cfg.kafka_max_topics = 2;
    fx->cfg.unmapped = UNMAPPED_DROP;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    assert_true(feed(f, publish_pk("k/a", "1", 0, 0, false)) > 0);
    assert_true(feed(f, publish_pk("k/b", "2", 0, 0, false)) > 0);
    assert_true(feed(f, publish_pk("k/a", "3", 0, 0, false)) > 0);
    assert_int_equal(fx->prod.n, 3);
    assert_string_equal(fx->prod.recs[2].topic, "a");
    assert_int_equal(session_mgr_stats(fx->m)->kafka_topics, 2);
    assert_int_equal(feed(f, publish_pk("k/c", "4", 1, 1, false)), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(fx->prod.n, 3);
    assert_int_equal(session_mgr_stats(fx->m)->messages_refused[SESSION_REFUSED_TOPIC_LIMIT], 1);
    assert_int_equal(session_mgr_stats(fx->m)->kafka_topics, 2);
    /* A reload that raises the bound lets the next one in. */
    fx->cfg.kafka_max_topics = 3;
    f = connected(fx, 1, (cn_t){.id = "dev2", .clean = true});
    assert_true(feed(f, publish_pk("k/c", "5", 0, 0, false)) > 0);
    assert_int_equal(fx->prod.n, 4);
    assert_int_equal(session_mgr_stats(fx->m)->kafka_topics, 3);
}

/* ---- will, takeover, timeouts ------------------------------------------------ */

static void test_will_on_abrupt_close(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0,
                           (cn_t){.id = "dev1",
                                  .clean = true,
                                  .will_topic = "t/will",
                                  .will_payload = "gone",
                                  .will_qos = 1,
                                  .will_retain = true});
    session_conn_lost(f->c, "connection reset by peer");
    assert_int_equal(f->closes, 0);
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].topic, "kt");
    assert_memory_equal(fx->prod.recs[0].value, "gone", 4);
    assert_string_equal(fx->prod.recs[0].headers,
                        "mqtt.topic=t/will;mqtt.client_id=dev1;mqtt.qos=1;mqtt.retain=1;");
    assert_int_equal(fx->prod.recs[0].opaque >> 32, 0);
    deliver(fx, 0, 0); /* no session waits for it */
    session_conn_lost(f->c, "again");
    assert_int_equal(fx->prod.n, 1);
    session_conn_free(f->c);
}

static void test_no_will_after_disconnect(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(
        fx, 0, (cn_t){.id = "dev1", .clean = true, .will_topic = "t/will", .will_payload = "g"});
    pk_t d = {.b = {0xe0, 0x00}, .n = 2};
    assert_int_equal(feed(f, d), -1);
    assert_int_equal(f->closes, 1);
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 0);
}

static void test_will_on_protocol_error(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(
        fx, 0, (cn_t){.id = "dev1", .clean = true, .will_topic = "t/will", .will_payload = "g"});
    pk_t bad = {.b = {0xf0, 0x00}, .n = 2};
    assert_int_equal(feed(f, bad), -1);
    assert_int_equal(fx->prod.n, 1);
}

static void test_takeover(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(
        fx, 0, (cn_t){.id = "dev1", .clean = true, .will_topic = "t/w", .will_payload = "a"});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "dev1", .clean = true});
    assert_int_equal(a->closes, 1);
    assert_true(session_conn_closed(a->c));
    assert_int_equal(fx->prod.n, 1); /* the old connection's will */
    assert_int_equal(session_mgr_stats(fx->m)->takeovers, 1);
    assert_int_equal(b->closes, 0);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
}

static void test_keepalive_timeout(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true, .keepalive = 10});
    set_time(fx, 1000 + 14999);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 0);
    pk_t ping = {.b = {0xc0, 0x00}, .n = 2};
    assert_int_equal(feed(f, ping), 2);
    EXPECT_OUT(f, 0xd0, 0x00);
    set_time(fx, 1000 + 14999 + 14999);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 0);
    set_time(fx, 1000 + 14999 + 15000);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->keepalive_timeouts, 1);
}

/* Keepalive 0 never times out when max_keepalive_s is MQTT's 65535 (no
 * cap); below that it gets max_keepalive_s (issue 20 finding 4). */
static void test_keepalive_zero(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_keepalive_s = 65535;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true, .keepalive = 0});
    set_time(fx, 100000000);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 0);
    fx->cfg.mqtt.max_keepalive_s = 600; /* the fixture's */
    set_time(fx, 200000000);
    f = connected(fx, 1, (cn_t){.id = "dev2", .clean = true, .keepalive = 0});
    set_time(fx, 200000000 + 899999);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 0);
    set_time(fx, 200000000 + 900000);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 1);
    assert_int_equal(fx->conns[0].closes, 0);
    assert_int_equal(session_mgr_stats(fx->m)->keepalive_timeouts, 1);
}

/* A first packet's fixed header announcing more than a CONNECT within the
 * caps can hold is refused at once, before its body is buffered (issue 20
 * finding 4): with the fixture's caps 5 + 12 + 258 + 1026 + 4098 + 258 +
 * 65537 = 71194 bytes, i.e. a remaining length of 71190 behind a 4-byte
 * fixed header. */
static void test_connect_length_bound(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_packet_size = 1000000;
    uint8_t at[] = {0x10, 0x96, 0xac, 0x04}; /* 71190 */
    uint8_t over[] = {0x10, 0x97, 0xac, 0x04};
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(session_feed(f->c, at, sizeof(at)), 0); /* needs more */
    assert_int_equal(f->closes, 0);
    f = open_conn(fx, 1);
    log_capture_begin();
    assert_int_equal(session_feed(f->c, over, sizeof(over)), -1);
    const char *log = log_capture_end();
    assert_non_null(strstr(log, " closing: CONNECT refused: 71195 bytes announced, over the 71194 "
                                "a CONNECT within mqtt.max_client_id_length, "
                                "max_username_length, max_will_topic_length and "
                                "max_will_payload can have\n"));
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->refused_too_long, 1);
    /* Any other first packet that large is no CONNECT at all. */
    over[0] = 0x30;
    f = open_conn(fx, 2);
    assert_int_equal(session_feed(f->c, over, sizeof(over)), -1);
    assert_int_equal(f->closes, 1);
    assert_int_equal(
        session_mgr_stats(fx->m)->protocol_error_kinds[SESSION_ERR_FIRST_PACKET_NOT_CONNECT], 1);
    /* After the CONNECT, max_packet_size is the bound. */
    f = connected(fx, 3, (cn_t){.id = "dev1", .clean = true});
    over[0] = 0x32;
    assert_int_equal(session_feed(f->c, over, sizeof(over)), 0);
    assert_int_equal(f->closes, 0);
}

static size_t count_lines(const char *log, const char *needle) {
    size_t n = 0;
    for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Issue 20 finding 11: a reconnect storm does not flood the log: at most 100
 * "connected" and 100 other "closing" lines per 10 s (then a "suppressed"
 * line), 10 "discarding the oldest" ones. */
static void test_connection_lines_rate_limited(void **state) {
    fx_t *fx = *state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = log_set_fd(fileno(tmp));
    for (int i = 0; i < 105; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        fconn_t *f = connected(fx, i % 4, (cn_t){.id = id, .clean = i >= 20});
        session_conn_close(f->c, "bye");
    }
    log_set_fd(saved);
    static char log[65536];
    rewind(tmp);
    log[fread(log, 1, sizeof(log) - 1, tmp)] = '\0';
    fclose(tmp);
    assert_int_equal(count_lines(log, " connected (clean session "), 100);
    assert_int_equal(count_lines(log, " closing: bye\n"), 100);
    /* 20 kept sessions, 2 at most: 18 discarded, 10 lines */
    assert_int_equal(session_mgr_stats(fx->m)->sessions_evicted, 18);
    assert_int_equal(count_lines(log, "; discarding the oldest\n"), 10);
}

static void test_connect_timeout(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    set_time(fx, 1000 + 9999);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 0);
    set_time(fx, 1000 + 10000);
    session_mgr_tick(fx->m);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->connect_timeouts, 1);
}

/* ---- persistent sessions --------------------------------------------------------- */

static void test_clean0_qos2_exactly_once_across_reconnect(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    feed(f, publish_pk("t/a", "x", 2, 5, false));
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    deliver(fx, 0, 0); /* arrives with nobody connected */
    f = open_conn(fx, 1);
    pk_t p = connect_pk((cn_t){.id = "dev1", .clean = false});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
    feed(f, publish_pk("t/a", "x", 2, 5, true));
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x05);
    assert_int_equal(fx->prod.n, 1);
}

/* A kept session holds what is in flight, not the window its client used:
 * the ring is cut to its entries when the connection goes, and freed when the
 * last report arrives; the gauges follow. */
static void test_detached_ring_shrinks(void **state) {
    fx_t *fx = *state;
    const session_stats_t *st = session_mgr_stats(fx->m);
    fx->cfg.mqtt.max_inflight = 16;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev2", .clean = false});
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    uint64_t empty = st->persistent_session_bytes; /* a session with a 4-byte id, no ring */
    assert_int_equal(st->persistent_sessions, 1);
    assert_true(empty > 0);

    f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    for (uint16_t i = 1; i <= 9; i++) /* the ring grows to 16 entries */
        feed(f, publish_pk("t/a", "x", 1, i, false));
    for (int i = 0; i < 7; i++)
        deliver(fx, i, 0);
    f->out_len = 0;
    assert_int_equal(st->persistent_sessions, 1);
    assert_int_equal(st->persistent_session_bytes, empty);
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    assert_int_equal(st->persistent_sessions, 2);
    assert_int_equal(st->persistent_session_bytes, 2 * empty + 2 * 64); /* 2 entries kept */

    deliver(fx, 7, 0); /* the reports still find their entries */
    assert_int_equal(st->persistent_session_bytes, 2 * empty + 2 * 64);
    deliver(fx, 8, 0);
    assert_int_equal(st->persistent_session_bytes, 2 * empty); /* the ring is gone */

    f = open_conn(fx, 1);
    feed(f, connect_pk((cn_t){.id = "dev1", .clean = false}));
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
    assert_int_equal(st->persistent_sessions, 1);
    assert_int_equal(st->persistent_session_bytes, empty);
    feed(f, publish_pk("t/a", "x", 1, 10, false)); /* a ring again */
    deliver(fx, 9, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x0a);
}

static void kept(fx_t *fx, int i, const char *id, int in_flight) {
    fconn_t *f = connected(fx, i, (cn_t){.id = id, .clean = false});
    for (int n = 1; n <= in_flight; n++)
        feed(f, publish_pk("t/a", "x", 1, (uint16_t)n, false));
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
}

/* mqtt.max_session_bytes: the sessions kept without a connection are
 * discarded oldest first until the one being kept fits, each with a line and
 * a count; a session alone over the budget is not kept. */
static void test_detached_session_byte_budget(void **state) {
    fx_t *fx = *state;
    const session_stats_t *st = session_mgr_stats(fx->m);
    kept(fx, 0, "a1", 0);
    uint64_t e = st->persistent_session_bytes; /* one session, 2-byte id, no ring */
    fx->cfg.mqtt.max_session_bytes = (uint32_t)(2 * e + 3 * 64 - 1);
    char want[256];
    snprintf(want, sizeof(want),
             "client=a1 addr=- session limit: %llu + %llu bytes kept without a connection over "
             "mqtt.max_session_bytes %u; discarding the oldest",
             (unsigned long long)e, (unsigned long long)(e + 3 * 64),
             fx->cfg.mqtt.max_session_bytes);
    log_capture_begin();
    kept(fx, 1, "a2", 3); /* 3 messages in flight: over by one byte with a1 */
    const char *log = log_capture_end();
    assert_non_null(strstr(log, want));
    assert_int_equal(st->sessions_evicted_bytes, 1);
    assert_int_equal(st->sessions_evicted, 0);
    assert_int_equal(st->persistent_sessions, 1);
    assert_int_equal(st->persistent_session_bytes, e + 3 * 64);
    fconn_t *f = open_conn(fx, 2); /* a1 is gone: session present 0 */
    feed(f, connect_pk((cn_t){.id = "a1", .clean = false}));
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    /* a2 (now the oldest) leaves room for it. */
    assert_int_equal(st->sessions_evicted_bytes, 2);
    assert_int_equal(st->persistent_sessions, 1);
    assert_int_equal(st->persistent_session_bytes, e);

    /* Alone over the budget: everything older goes, then the session itself. */
    fx->cfg.mqtt.max_session_bytes = (uint32_t)e;
    log_capture_begin();
    kept(fx, 3, "b1", 1);
    log = log_capture_end();
    snprintf(
        want, sizeof(want),
        "client=b1 addr=- session limit: %llu bytes over mqtt.max_session_bytes %llu; not kept",
        (unsigned long long)(e + 64), (unsigned long long)e);
    assert_non_null(strstr(log, want));
    assert_int_equal(st->sessions_evicted_bytes, 4);
    assert_int_equal(st->persistent_sessions, 0);
    assert_int_equal(st->persistent_session_bytes, 0);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    deliver(fx, 3, 0); /* b1's report finds no session */
}

static void test_clean0_resend_while_in_flight(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    feed(f, publish_pk("t/a", "x", 2, 5, false));
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    f = open_conn(fx, 1);
    feed(f, connect_pk((cn_t){.id = "dev1", .clean = false}));
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
    feed(f, publish_pk("t/a", "x", 2, 5, true));
    assert_int_equal(fx->prod.n, 1);
    EXPECT_NO_OUT(f);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x05);
}

static void test_clean1_discards_session(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    session_conn_lost(f->c, "gone");
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    connected(fx, 1, (cn_t){.id = "dev1", .clean = true}); /* present 0 */
    session_conn_lost(fx->conns[1].c, "gone");
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

static void test_session_expiry(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    session_conn_lost(f->c, "gone");
    set_time(fx, 1000 + 59999);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    set_time(fx, 1000 + 60000);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    assert_int_equal(session_mgr_stats(fx->m)->sessions_expired, 1);
    connected(fx, 1, (cn_t){.id = "dev1", .clean = false}); /* present 0 */
}

static void test_detached_session_bound(void **state) {
    fx_t *fx = *state;
    const char *ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        fconn_t *f = connected(fx, i, (cn_t){.id = ids[i], .clean = false});
        session_conn_lost(f->c, "gone");
    }
    assert_int_equal(session_mgr_session_count(fx->m), 2);
    assert_int_equal(session_mgr_stats(fx->m)->sessions_evicted, 1);
    connected(fx, 3, (cn_t){.id = "a", .clean = false}); /* evicted: present 0 */
    fconn_t *f = open_conn(fx, 3);
    feed(f, connect_pk((cn_t){.id = "c", .clean = false}));
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
}

static void test_report_for_gone_session_ignored(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 1, 1, false));
    session_conn_lost(f->c, "gone");
    session_conn_free(f->c);
    deliver(fx, 0, 0);
    deliver(fx, 0, -1);
    session_on_delivery(fx->m, SESSION_OPAQUE(999, 0), 0, NULL);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

/* ---- backpressure ------------------------------------------------------------------ */

static void test_inflight_window_pauses_and_resumes(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    pk_t all = {.n = 0};
    size_t four = 0;
    for (uint16_t i = 1; i <= 6; i++) {
        pk_t p = publish_pk("t/a", "x", i % 2 ? 1 : 0, i, false);
        put(&all, p.b, p.n);
        if (i == 4)
            four = all.n;
    }
    assert_int_equal(session_feed(f->c, all.b, all.n), (ssize_t)four);
    assert_int_equal(fx->prod.n, 4);
    assert_true(f->paused);
    assert_true(session_conn_paused(f->c));
    assert_int_equal(session_feed(f->c, all.b + four, all.n - four), 0);
    deliver(fx, 0, 0); /* 3 left: above the low-water mark (2) */
    assert_true(f->paused);
    EXPECT_OUT(f, 0x40, 2, 0, 1);
    deliver(fx, 1, 0);
    assert_false(f->paused);
    assert_int_equal(f->resumes, 1);
    assert_int_equal(session_feed(f->c, all.b + four, all.n - four), (ssize_t)(all.n - four));
    assert_int_equal(fx->prod.n, 6);
}

static void test_queue_full_retries_same_packet(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fconn_t *g = connected(fx, 1, (cn_t){.id = "dev2", .clean = true});
    feed(g, publish_pk("t/g", "g", 1, 1, false));
    fx->prod.rc_queue[0] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.n_rc = 1;
    pk_t p = publish_pk("t/a", "x", 1, 1, false);
    assert_int_equal(feed(f, p), 0);
    assert_true(f->paused);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->queue_full, 1);
    deliver(fx, 0, 0); /* another client's report: room in the queue again */
    assert_false(f->paused);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 2);
    assert_memory_equal(fx->prod.recs[1].value, "x", 1);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 1);
}

static void test_queue_full_tick_retries(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_QUEUE_FULL;
    fx->prod.n_rc = 1;
    assert_int_equal(feed(f, publish_pk("t/a", "x", 0, 0, false)), 0);
    assert_true(f->paused);
    session_mgr_tick(fx->m);
    assert_false(f->paused);
}

static void test_output_bound_closes(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    f->fail_send = true;
    pk_t ping = {.b = {0xc0, 0x00}, .n = 2};
    assert_int_equal(feed(f, ping), -1);
    assert_int_equal(f->closes, 1);
}

/* ---- other packets and violations ------------------------------------------------- */

static void test_subscribe_unsubscribe_ping(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    pk_t b = {.n = 0};
    put_u16(&b, 1);
    put_str(&b, "a/#");
    put_u8(&b, 1);
    put_str(&b, "b");
    put_u8(&b, 0);
    pk_t sub = frame(0x82, &b);
    assert_int_equal(feed(f, sub), (ssize_t)sub.n);
    EXPECT_OUT(f, 0x90, 0x04, 0x00, 0x01, 0x01, 0x00); /* the requested QoS granted */
    pk_t u = {.n = 0};
    put_u16(&u, 2);
    put_str(&u, "a/#");
    pk_t unsub = frame(0xa2, &u);
    assert_int_equal(feed(f, unsub), (ssize_t)unsub.n);
    EXPECT_OUT(f, 0xb0, 0x02, 0x00, 0x02);
    pk_t ping = {.b = {0xc0, 0x00}, .n = 2};
    assert_int_equal(feed(f, ping), 2);
    EXPECT_OUT(f, 0xd0, 0x00);
}

static void violation_case(fx_t *fx, pk_t p) {
    fx_restart(fx);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    assert_int_equal(feed(f, p), -1);
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_errors, 1);
    assert_int_equal(fx->prod.n, 0);
}

static void test_violations_close(void **state) {
    fx_t *fx = *state;
    pk_t e = {.n = 0};
    pk_t connack = {.b = {0x20, 0x02, 0x00, 0x00}, .n = 4};
    violation_case(fx, connack);
    pk_t suback = {.b = {0x90, 0x03, 0x00, 0x01, 0x00}, .n = 5};
    violation_case(fx, suback);
    violation_case(fx, id_pk(0xb0, 1));  /* UNSUBACK */
    violation_case(fx, frame(0xd0, &e)); /* PINGRESP */
    violation_case(fx, id_pk(0x40, 1));  /* PUBACK */
    violation_case(fx, id_pk(0x50, 1));  /* PUBREC */
    violation_case(fx, id_pk(0x70, 1));  /* PUBCOMP */
    violation_case(fx, id_pk(0x60, 1));  /* PUBREL with wrong flags */
    pk_t reserved = {.b = {0xf0, 0x00}, .n = 2};
    violation_case(fx, reserved);
    pk_t qos3 = publish_pk("t/a", "x", 3, 1, false);
    violation_case(fx, qos3);
    pk_t wildcard = publish_pk("t/+", "x", 0, 0, false);
    violation_case(fx, wildcard);
    /* Over max_packet_size (1024): refused from the fixed header alone. */
    pk_t big = {.b = {0x30, 0x80, 0x10}, .n = 3};
    violation_case(fx, big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_connect_accepted),
        T(test_metrics_fed_by_the_session),
        T(test_error_names),
        T(test_connect_bad_level),
        T(test_connect_empty_id_clean1_gets_generated_id),
        T(test_connect_empty_id_clean0_rejected),
        T(test_connect_keepalive_too_large),
        T(test_connect_long_utf8_id),
        T(test_connect_client_id_cap),
        T(test_connect_user_and_will_caps),
        T(test_first_packet_not_connect),
        T(test_second_connect_closes),
        T(test_partial_packets),
        T(test_qos0_record),
        T(test_no_headers_when_disabled),
        T(test_qos1_ack_after_report),
        T(test_acks_in_arrival_order),
        T(test_acks_in_order_across_ring_wraps),
        T(test_qos2_flow_and_duplicate),
        T(test_qos2_duplicate_while_in_flight),
        T(test_qos2_duplicate_keeps_order),
        T(test_pubrel_unknown_id),
        T(test_qos2_pending_pubrel_bound),
        T(test_delivery_failure_closes_without_ack),
        T(test_qos0_failure_does_not_close),
        T(test_produce_error_closes),
        T(test_unmapped_disconnect),
        T(test_unmapped_drop_acks_in_order),
        T(test_unmapped_topic_route),
        T(test_refused_mapped_message_closes_under_every_policy),
        T(test_kafka_max_topics),
        T(test_will_on_abrupt_close),
        T(test_no_will_after_disconnect),
        T(test_will_on_protocol_error),
        T(test_takeover),
        T(test_keepalive_timeout),
        T(test_keepalive_zero),
        T(test_connect_length_bound),
        T(test_connection_lines_rate_limited),
        T(test_connect_timeout),
        T(test_clean0_qos2_exactly_once_across_reconnect),
        T(test_clean0_resend_while_in_flight),
        T(test_detached_ring_shrinks),
        T(test_detached_session_byte_budget),
        T(test_clean1_discards_session),
        T(test_session_expiry),
        T(test_detached_session_bound),
        T(test_report_for_gone_session_ignored),
        T(test_inflight_window_pauses_and_resumes),
        T(test_queue_full_retries_same_packet),
        T(test_queue_full_tick_retries),
        T(test_output_bound_closes),
        T(test_subscribe_unsubscribe_ping),
        T(test_violations_close),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
