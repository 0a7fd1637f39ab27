/* The session with MQTT 5 clients (issue 13): CONNECT and its properties,
 * CONNACK's properties, PUBLISH with user properties as Kafka headers, the
 * reason code before a close, DISCONNECT with the will, SUBSCRIBE granted in
 * the v5 form, AUTH. Exact bytes out; statement ids of OASIS MQTT 5.0. */
#include "session5_fixture.h"

/* [MQTT-3.2.2-?] CONNACK properties; the line says MQTT 5. */
static void test_v5_connect_connack(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect5((cn5_t){.id = "d5", .clean = true, .keepalive = 30});
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x13, 0x00, 0x00, 0x10, CONNACK_PROPS);
    assert_logged(log, "client=d5 addr=127.0.0.1:5000 connected (MQTT 5, clean start 1, session "
                       "expiry 0 s, keepalive 30 s, session present 0)\n");
    assert_int_equal(feed(f, frame(0xc0, &(pk_t){.n = 0})), 2);
    EXPECT_OUT(f, 0xd0, 0x00);
}

/* A keep alive above max_keepalive_s (600) is lowered, and CONNACK says so
 * with server keep alive [MQTT-3.2.2-21] (3.1.1 refuses it). */
static void test_v5_server_keep_alive(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_keepalive_s = 600;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect5((cn5_t){.id = "k", .clean = true, .keepalive = 601});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x16, 0x00, 0x00, 0x13, 0x13, 0x02, 0x58, CONNACK_PROPS);
}

/* Session expiry replaces clean session: 0 ends the session with the
 * connection; above session_expiry_s (60) CONNACK gives the server's value. */
static void test_v5_session_expiry(void **state) {
    fx_t *fx = *state;
    pk_t disconnect = frame(0xe0, &(pk_t){.n = 0});
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "e", .clean = false});
    assert_int_equal(feed(f, disconnect), -1);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    f = open_conn(fx, 1);
    pk_t p = connect5((cn5_t){.id = "e", .clean = false, PROPS("\x11\x00\x00\x00\x64")});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x18, 0x00, 0x00, 0x15, 0x11, 0x00, 0x00, 0x00, 0x3c, CONNACK_PROPS);
    assert_int_equal(feed(f, disconnect), -1);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    f = open_conn(fx, 2);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x18, 0x01, 0x00, 0x15, 0x11, 0x00, 0x00, 0x00, 0x3c, CONNACK_PROPS);
    /* DISCONNECT may set it to 0 at the end: the session goes. */
    assert_int_equal(feed(f, frame(0xe0, &(pk_t){.b = {0x00, 0x05, 0x11, 0, 0, 0, 0}, .n = 7})),
                     -1);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

/* DISCONNECT may not set a session expiry after 0 in CONNECT [MQTT-3.14.2-2]. */
static void test_v5_disconnect_expiry_after_zero(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "z", .clean = true});
    const char *log = closed(f, frame(0xe0, &(pk_t){.b = {0x00, 0x05, 0x11, 0, 0, 0, 1}, .n = 7}));
    expect_reason(f, 0xe0, -1, 0x82,
                  "DISCONNECT sets a session expiry interval after 0 in CONNECT [MQTT-3.14.2-2]");
    assert_logged(log, "closing: DISCONNECT sets a session expiry interval after 0 in CONNECT "
                       "[MQTT-3.14.2-2]\n");
}

/* An empty client id with clean start gets a random one, in CONNACK's
 * assigned client identifier [MQTT-3.2.2-16]. */
static void test_v5_assigned_client_id(void **state) {
    fx_t *fx = *state;
    char ids[2][42]; /* "m2k-auto-" and 32 hex digits, as for 3.1.1 */
    for (int i = 0; i < 2; i++) {
        fconn_t *f = open_conn(fx, i);
        pk_t p = connect5((cn5_t){.id = "", .clean = true});
        assert_int_equal(feed(f, p), (ssize_t)p.n);
        assert_int_equal(f->out_len, 65);
        static const uint8_t head[] = {0x20, 0x3f, 0x00, 0x00, 0x3c, 0x12, 0x00, 0x29};
        assert_memory_equal(f->out, head, sizeof(head));
        memcpy(ids[i], f->out + 8, 41);
        ids[i][41] = '\0';
        static const uint8_t tail[] = {CONNACK_PROPS};
        assert_memory_equal(f->out + 49, tail, sizeof(tail));
        assert_memory_equal(ids[i], "m2k-auto-", 9);
        for (int k = 9; k < 41; k++)
            assert_non_null(strchr("0123456789abcdef", ids[i][k]));
        f->out_len = 0;
        assert_int_equal(feed(f, publish5("t/a", 0, 0, NULL, 0, "x")), 9);
    }
    assert_string_not_equal(ids[0], ids[1]);
    char want[128];
    snprintf(want, sizeof(want), "mqtt.topic=t/a;mqtt.client_id=%s;mqtt.qos=0;", ids[1]);
    assert_string_equal(fx->prod.recs[1].headers, want);
    /* Without clean start, an empty id is refused: 0x85. */
    fconn_t *f = open_conn(fx, 2);
    closed(f, connect5((cn5_t){.id = "", .clean = false}));
    expect_reason(f, 0x20, -1, 0x85, "empty client id with clean session 0 [MQTT-3.1.3-8]");
}

/* Enhanced authentication is not offered: CONNACK 0x8C [MQTT-4.12.0-1]. */
static void test_v5_auth_method_refused(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    const char *log =
        closed(f, connect5((cn5_t){.id = "a", .clean = true, PROPS("\x15\x00\x05SCRAM")}));
    expect_reason(f, 0x20, -1, 0x8c,
                  "authentication method 'SCRAM' not supported (enhanced authentication)");
    assert_logged(log, "closing: authentication method 'SCRAM' not supported (enhanced "
                       "authentication)\n");
    assert_int_equal(session_mgr_stats(fx->m)->rejected, 1);
}

/* The 3.1.1 refusals in their v5 codes: a client id with a control
 * character is 0x85, a malformed CONNECT 0x81, a duplicate property 0x82. */
static void test_v5_connect_refusals(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    closed(f, connect5((cn5_t){.id = "a\x01", .clean = true}));
    expect_reason(f, 0x20, -1, 0x85,
                  "client id 'a?' refused: string contains a control character (U+0001..U+001F, "
                  "U+007F..U+009F)");
    f = open_conn(fx, 1);
    const char *log = closed(
        f, connect5((cn5_t){
               .id = "b", .clean = true, PROPS("\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02")}));
    expect_reason(f, 0x20, -1, 0x82,
                  "MQTT_ERR_PROPERTY_DUPLICATE: property that may appear once given twice");
    assert_logged(log, "closing: MQTT_ERR_PROPERTY_DUPLICATE: property that may appear once given "
                       "twice\n");
    f = open_conn(fx, 2);
    closed(f, connect5((cn5_t){.id = "c", .clean = true, PROPS("\x23\x00\x01")}));
    expect_reason(f, 0x20, -1, 0x81,
                  "MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed in this packet");
}

/* User properties become Kafka headers after ours, names and values
 * unchanged, in order, duplicates kept, one named like ours kept as an extra
 * [MQTT-3.3.2-17/-18]; content type, response topic and correlation data
 * become mqtt.* headers. The ack is the 3.1.1 bytes. */
static void test_v5_publish_headers(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "h", .clean = true});
    static const char props[] = "\x26\x00\x01"
                                "a\x00\x01"
                                "1"
                                "\x26\x00\x01"
                                "a\x00\x01"
                                "2"
                                "\x26\x00\x0amqtt.topic\x00\x01x"
                                "\x03\x00\x04json"
                                "\x08\x00\x03r/t"
                                "\x09\x00\x02id";
    pk_t p = publish5("t/a", 1, 7, props, sizeof(props) - 1, "v");
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].headers,
                        "mqtt.topic=t/a;mqtt.client_id=h;mqtt.qos=1;mqtt.content_type=json;"
                        "mqtt.response_topic=r/t;mqtt.correlation_data=id;a=1;a=2;mqtt.topic=x;");
    assert_int_equal(fx->prod.recs[0].value_len, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x07);
    /* headers: false: none at all. */
    fx->cfg.headers = false;
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_string_equal(fx->prod.recs[1].headers, "");
}

/* A malformed packet after CONNECT: DISCONNECT with its reason, then the
 * close [MQTT-4.13.1-1]; 0x81 malformed, 0x82 protocol error. */
static void test_v5_malformed_disconnects(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "m", .clean = true});
    const char *log = closed(f, publish5("t/a", 0, 0, P("\x22\x00\x01"), "x"));
    expect_reason(f, 0xe0, -1, 0x81,
                  "MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed in this packet");
    assert_logged(log, "closing: MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed in this "
                       "packet\n");
    f = connected5(fx, 1, (cn5_t){.id = "n", .clean = true});
    closed(f, publish5("t/a", 0, 0, P("\x01\x01\x01\x00"), "x"));
    expect_reason(f, 0xe0, -1, 0x82,
                  "MQTT_ERR_PROPERTY_DUPLICATE: property that may appear once given twice");
    f = connected5(fx, 2, (cn5_t){.id = "o", .clean = true});
    closed(f, publish5("t/\x01", 0, 0, NULL, 0, "x"));
    expect_reason(f, 0xe0, -1, 0x81,
                  "MQTT_ERR_UTF8_CONTROL: string contains a control character (U+0001..U+001F, "
                  "U+007F..U+009F)");
    /* Over max_packet_size: 0x95. */
    f = connected5(fx, 3, (cn5_t){.id = "p", .clean = true});
    closed(f, (pk_t){.b = {0x30, 0x80, 0x10}, .n = 3});
    expect_reason(
        f, 0xe0, -1, 0x95,
        "MQTT_ERR_PACKET_TOO_LARGE PUBLISH packet of 2051 bytes is over max_packet_size 1024");
    assert_int_equal(fx->prod.n, 0);
}

/* A topic alias with mqtt.topic_alias_maximum 0 (no topic alias maximum
 * in CONNACK means 0): DISCONNECT 0x94 [MQTT-3.3.2-10]. */
static void test_v5_topic_alias_refused(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "ta", .clean = true});
    const char *log = closed(f, publish5("t/a", 0, 0, P("\x23\x00\x01"), "x"));
    expect_reason(f, 0xe0, -1, 0x94,
                  "topic alias 1, but the topic alias maximum is 0 [MQTT-3.3.2-10]");
    assert_logged(log,
                  "closing: topic alias 1, but the topic alias maximum is 0 [MQTT-3.3.2-10]\n");
    f = connected5(fx, 1, (cn5_t){.id = "tb", .clean = true});
    closed(f, publish5("", 0, 0, P("\x23\x00\x02"), "x"));
    expect_reason(f, 0xe0, -1, 0x94,
                  "topic alias 2, but the topic alias maximum is 0 [MQTT-3.3.2-10]");
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(
        session_mgr_stats(fx->m)->protocol_error_kinds[SESSION_ERR_TOPIC_ALIAS_INVALID], 2);
}

/* AUTH without an authentication method: DISCONNECT 0x82 [MQTT-4.12.0-6];
 * a server-only packet from the client: 0x82 too. */
static void test_v5_auth_and_server_packets(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "q", .clean = true});
    const char *log = closed(f, frame(0xf0, &(pk_t){.n = 0}));
    expect_reason(f, 0xe0, -1, 0x82,
                  "AUTH without an authentication method in CONNECT [MQTT-4.12.0-6]");
    assert_logged(log, "closing: AUTH without an authentication method in CONNECT "
                       "[MQTT-4.12.0-6]\n");
    f = connected5(fx, 1, (cn5_t){.id = "r", .clean = true});
    closed(f, frame(0xd0, &(pk_t){.n = 0}));
    expect_reason(f, 0xe0, -1, 0x82, "PINGRESP is a server-only packet");
}

/* DISCONNECT 0x04 publishes the will; 0x00 does not [MQTT-3.14.4-3]. */
static void test_v5_disconnect_with_will(void **state) {
    fx_t *fx = *state;
    cn5_t cn = {.id = "w", .clean = true, .will_topic = "t/will", .will_payload = "gone"};
    fconn_t *f = connected5(fx, 0, cn);
    const char *log = closed(f, frame(0xe0, &(pk_t){.b = {0x04}, .n = 1}));
    assert_logged(log, "closing: DISCONNECT received (reason 0x04: publish the will)\n");
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].value, "gone");
    f = connected5(fx, 1, cn);
    closed(f, frame(0xe0, &(pk_t){.n = 0}));
    assert_int_equal(fx->prod.n, 1);
}

/* SUBSCRIBE is granted per filter at the requested QoS in the v5 SUBACK
 * form; UNSUBSCRIBE answers 0x00 for a subscription removed, 0x11 for none. */
static void test_v5_subscribe_granted(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "s", .clean = true});
    pk_t sub = {.b = {0x82, 0x0b, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x01, 0x00, 0x01, 'b', 0x00},
                .n = 13};
    assert_int_equal(feed(f, sub), 13);
    EXPECT_OUT(f, 0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00);
    pk_t unsub = {.b = {0xa2, 0x06, 0x00, 0x02, 0x00, 0x00, 0x01, 'a'}, .n = 8};
    assert_int_equal(feed(f, unsub), 8);
    EXPECT_OUT(f, 0xb0, 0x04, 0x00, 0x02, 0x00, 0x00);
    assert_int_equal(feed(f, unsub), 8);
    EXPECT_OUT(f, 0xb0, 0x04, 0x00, 0x02, 0x00, 0x11);
}

/* A Kafka failure is a negative ack for an MQTT 5 client, not a close
 * (3.1.1 closes: test_session.c): PUBACK/PUBREC 0x80, in arrival order, and
 * the connection goes on; no PUBREL is expected after PUBREC 0x80. */
static void test_v5_kafka_failure_nack(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "k", .clean = true});
    assert_int_equal(feed(f, publish5("t/a", 1, 7, NULL, 0, "a")), 11);
    assert_int_equal(feed(f, publish5("t/a", 2, 8, NULL, 0, "b")), 11);
    assert_int_equal(feed(f, publish5("t/a", 1, 9, NULL, 0, "c")), 11);
    log_capture_begin();
    deliver(fx, 0, 1);
    deliver(fx, 1, 1);
    const char *log = log_capture_end();
    assert_logged(log, "Kafka did not take a QoS 1 message on topic 't/a': Broker: boom\n");
    pk_t two = {.n = 0};
    reason5(&two, 0x40, 7, 0x80, "Kafka did not take the message");
    reason5(&two, 0x50, 8, 0x80, "Kafka did not take the message");
    expect_pk(f, &two);
    deliver(fx, 2, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x09);
    assert_int_equal(f->closes, 0);
    /* The QoS 2 id was not kept awaiting PUBREL: the same id is new again. */
    assert_int_equal(feed(f, publish5("t/a", 2, 8, NULL, 0, "d")), 11);
    assert_int_equal(fx->prod.n, 4);
}

/* The producer refuses at once (a topic whose metadata has an error): the
 * same negative ack for QoS 1; QoS 0 gets DISCONNECT 0x80 and the close. */
static void test_v5_produce_refused_nack(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "pr", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_PRODUCE;
    fx->prod.rc_queue[1] = KAFKA_ERR_PRODUCE;
    fx->prod.n_rc = 2;
    log_capture_begin();
    assert_int_equal(feed(f, publish5("t/a", 1, 6, NULL, 0, "a")), 11);
    const char *log = log_capture_end();
    expect_reason(f, 0x40, 0x06, 0x80, "Kafka did not take the message");
    assert_logged(log, "the producer refused a message on topic 't/a' (produce error): refused "
                       "(0x80)\n");
    closed(f, publish5("t/a", 0, 0, NULL, 0, "a"));
    expect_reason(f, 0xe0, -1, 0x80, "Kafka did not take the message");
    assert_int_equal(fx->prod.n, 0);
}

/* The topic map refuses (unmapped: disconnect): PUBACK 0x90 for QoS 1;
 * QoS 0 has no ack, so DISCONNECT 0x90 and the close. */
static void test_v5_unmapped_nack(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "u", .clean = true});
    log_capture_begin();
    assert_int_equal(feed(f, publish5("zzz", 1, 3, NULL, 0, "a")), 11);
    const char *log = log_capture_end();
    expect_reason(f, 0x40, 0x03, 0x90, "no rule maps this topic to a legal Kafka topic");
    assert_logged(log, "topic 'zzz' is not mapped: no rule matches: refused (0x90)\n");
    assert_int_equal(f->closes, 0);
    closed(f, publish5("zzz", 0, 0, NULL, 0, "a"));
    expect_reason(f, 0xe0, -1, 0x90, "no rule maps this topic to a legal Kafka topic");
    assert_int_equal(fx->prod.n, 0);
}

/* Payload format indicator 1 with a payload that is not UTF-8: PUBACK 0x99
 * [MQTT-3.3.2-4]; QoS 0 is dropped; the connection goes on. */
static void test_v5_payload_format_invalid(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "pf", .clean = true});
    assert_int_equal(feed(f, publish5("t/a", 1, 4, P("\x01\x01"), "\xff")), 13);
    expect_reason(f, 0x40, 0x04, 0x99,
                  "the payload is not UTF-8 as its payload format indicator says");
    assert_int_equal(feed(f, publish5("t/a", 0, 0, P("\x01\x01"), "\xc3")), 11);
    EXPECT_NO_OUT(f);
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(feed(f, publish5("t/a", 1, 5, P("\x01\x01"), "\xc3\xa9")), 14);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(f->closes, 0);
}

/* An ACL refusal: PUBACK 0x87 for an MQTT 5 client, whatever auth.acl_deny
 * says (it chooses between two answers 3.1.1 can give); QoS 0 with
 * acl_deny: disconnect gets DISCONNECT 0x87. */
static void test_v5_acl_nack(void **state) {
    fx_t *fx = *state;
    fx->cfg.auth.acl_deny = ACL_DENY_DISCONNECT;
    fx->auth.gen = 1;
    fx->auth.deny = "t/no";
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "acl", .clean = true});
    log_capture_begin();
    assert_int_equal(feed(f, publish5("t/no", 1, 2, NULL, 0, "a")), 12);
    const char *log = log_capture_end();
    expect_reason(f, 0x40, 0x02, 0x87, "the ACL does not allow publishing on this topic");
    assert_logged(log, "the ACL does not allow publishing on topic 't/no': refused (0x87)\n");
    assert_int_equal(f->closes, 0);
    closed(f, publish5("t/no", 0, 0, NULL, 0, "a"));
    expect_reason(f, 0xe0, -1, 0x87, "the ACL does not allow publishing on this topic");
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->acl_denied, 2);
}

/* The server's other closes a v5 client is told about: a takeover gets
 * DISCONNECT 0x8E [MQTT-3.1.4-3], a keep alive timeout 0x8D. */
static void test_v5_takeover_and_keepalive_disconnect(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "tk", .clean = true});
    connected5(fx, 1, (cn5_t){.id = "tk", .clean = true});
    assert_int_equal(a->closes, 1);
    expect_reason(a, 0xe0, -1, 0x8e, "a new connection with this client id took the session over");
    fconn_t *k = connected5(fx, 2, (cn5_t){.id = "ka", .clean = true, .keepalive = 10});
    set_time(fx, 1000 + 14999);
    session_mgr_tick(fx->m);
    EXPECT_NO_OUT(k);
    set_time(fx, 1000 + 15000);
    session_mgr_tick(fx->m);
    assert_int_equal(k->closes, 1);
    expect_reason(k, 0xe0, -1, 0x8d, "no packet within 1.5 x keep alive");
}

/* Receive maximum (max_inflight, 4 here): a v5 client is read on with 4
 * QoS 1/2 messages unacknowledged, and a fifth gets DISCONNECT 0x93
 * [MQTT-3.3.4-9]; a QoS 2 message counts until PUBCOMP. */
static void test_v5_receive_maximum_exceeded(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "rm", .clean = true});
    assert_int_equal(feed(f, publish5("t/a", 2, 1, NULL, 0, "a")), 11);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x01); /* PUBREC: counts until PUBCOMP */
    for (uint16_t id = 2; id <= 4; id++)
        assert_int_equal(feed(f, publish5("t/a", 1, id, NULL, 0, "a")), 11);
    assert_int_equal(f->pauses, 0);
    /* A resent QoS 2 awaiting PUBREL is not a new message. */
    assert_int_equal(feed(f, publish5("t/a", 2, 1, NULL, 0, "a")), 11);
    const char *log = closed(f, publish5("t/a", 1, 5, NULL, 0, "a"));
    expect_reason(f, 0xe0, -1, 0x93,
                  "4 QoS 1/2 messages unacknowledged, receive maximum 4 exceeded [MQTT-3.3.4-9]");
    assert_logged(log, "closing: 4 QoS 1/2 messages unacknowledged, receive maximum 4 exceeded "
                       "[MQTT-3.3.4-9]\n");
    assert_int_equal(fx->prod.n, 4);
}

/* At the limit, a QoS 0 message that finds the ring full waits: reading
 * pauses, the packet is fed again after a report, nothing is refused. */
static void test_v5_full_ring_waits(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "fr", .clean = true});
    for (uint16_t id = 1; id <= 4; id++)
        assert_int_equal(feed(f, publish5("t/a", 1, id, NULL, 0, "a")), 11);
    pk_t q0 = publish5("t/a", 0, 0, NULL, 0, "z");
    assert_int_equal(feed(f, q0), 0);
    assert_int_equal(f->pauses, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x01);
    assert_int_equal(f->resumes, 0); /* resumed at the low-water mark, 2 */
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x02);
    assert_int_equal(f->resumes, 1);
    assert_int_equal(feed(f, q0), (ssize_t)q0.n);
    assert_int_equal(fx->prod.n, 5);
    assert_int_equal(f->closes, 0);
}

/* With mqtt.topic_alias_maximum 2: CONNACK says 2; a PUBLISH with topic and
 * alias sets it, one with an empty topic uses it [MQTT-3.3.2-11/-12] (the
 * record has the topic); 3 is over the maximum (0x94), an alias never set
 * is a protocol error (0x82). */
static void test_v5_topic_aliases(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.topic_alias_maximum = 2;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect5((cn5_t){.id = "al", .clean = true});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x16, 0x00, 0x00, 0x13, 0x21, 0x00, 0x04, 0x22, 0x00, 0x02, 0x25, 0x01,
               0x27, 0x00, 0x00, 0x04, 0x00, 0x28, 0x01, 0x29, 0x01, 0x2a, 0x01);
    assert_int_equal(feed(f, publish5("t/a", 1, 1, P("\x23\x00\x01"), "x")), 14);
    assert_int_equal(feed(f, publish5("", 1, 2, P("\x23\x00\x01"), "y")), 11);
    assert_int_equal(feed(f, publish5("t/b", 0, 0, P("\x23\x00\x01"), "z")), 12);
    assert_int_equal(feed(f, publish5("", 0, 0, P("\x23\x00\x01"), "w")), 9);
    assert_int_equal(fx->prod.n, 4);
    assert_string_equal(fx->prod.recs[1].headers, "mqtt.topic=t/a;mqtt.client_id=al;mqtt.qos=1;");
    assert_string_equal(fx->prod.recs[3].headers, "mqtt.topic=t/b;mqtt.client_id=al;mqtt.qos=0;");
    const char *log = closed(f, publish5("", 0, 0, P("\x23\x00\x02"), "v"));
    expect_reason(f, 0xe0, -1, 0x82,
                  "empty topic with topic alias 2, which was never set [MQTT-3.3.2-12]");
    assert_logged(log, "closing: empty topic with topic alias 2, which was never set "
                       "[MQTT-3.3.2-12]\n");
    assert_int_equal(fx->prod.n, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup5, teardown)
        T(test_v5_connect_connack),
        T(test_v5_server_keep_alive),
        T(test_v5_session_expiry),
        T(test_v5_disconnect_expiry_after_zero),
        T(test_v5_assigned_client_id),
        T(test_v5_auth_method_refused),
        T(test_v5_connect_refusals),
        T(test_v5_publish_headers),
        T(test_v5_malformed_disconnects),
        T(test_v5_auth_and_server_packets),
        T(test_v5_topic_alias_refused),
        T(test_v5_topic_aliases),
        T(test_v5_disconnect_with_will),
        T(test_v5_subscribe_granted),
        T(test_v5_kafka_failure_nack),
        T(test_v5_unmapped_nack),
        T(test_v5_produce_refused_nack),
        T(test_v5_takeover_and_keepalive_disconnect),
        T(test_v5_receive_maximum_exceeded),
        T(test_v5_full_ring_waits),
        T(test_v5_payload_format_invalid),
        cmocka_unit_test_setup_teardown(test_v5_acl_nack, setup5_auth, teardown),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
