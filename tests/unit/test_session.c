/* Session state machine: raw MQTT bytes in, exact bytes and records out, with
 * a fake producer, a fake topic map and a hand-driven clock
 * (session_fixture.h): CONNECT, PUBLISH flows, unmapped topics. The will,
 * timeouts and persistent sessions are in test_session_lifecycle.c,
 * backpressure and forbidden packets in test_session_limits.c,
 * authentication, the ACL and the dispatch table in test_session_auth.c and
 * test_session_dispatch.c. */
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
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
