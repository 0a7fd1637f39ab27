/* The server's side of MQTT 5 (issue 13, part B): reason strings and when
 * they are left out, request response information, a shorter session
 * expiry interval, the bytes topic aliases hold, quota exceeded (0x97).
 * Exact bytes out; statement ids of OASIS MQTT 5.0. */
#include "session5_fixture.h"

/* Request response information 1: the server MAY send response information
 * (0 forbids it, [MQTT-3.1.2-28]); none is offered, so CONNACK is the usual. */
static void test_v5_request_response_information(void **state) {
    connected5(*state, 0, (cn5_t){.id = "rr", .clean = true, PROPS("\x19\x01")});
}

/* A session expiry interval below session_expiry_s (60) is honoured: "s5"
 * ends 5 s after its client left though "long" (60 s), detached before it,
 * is still there [MQTT-3.1.2-23]; DISCONNECT changes a non-zero interval:
 * to 2 s, or to 1000 s, which is capped at 60 [MQTT-3.14.2-2]. At most 2
 * sessions are kept here (max_detached_sessions). */
static void test_v5_shorter_session_expiry(void **state) {
    fx_t *fx = *state;
    pk_t disconnect = frame(0xe0, &(pk_t){.n = 0});
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "long", PROPS("\x11\x00\x00\x00\x3c")});
    assert_int_equal(feed(f, disconnect), -1);
    f = connected5(fx, 1, (cn5_t){.id = "s5", PROPS("\x11\x00\x00\x00\x05")});
    assert_int_equal(feed(f, disconnect), -1);
    set_time(fx, 1000 + 4999);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 2);
    set_time(fx, 1000 + 5000);
    log_capture_begin();
    session_mgr_tick(fx->m);
    assert_logged(log_capture_end(),
                  "client=s5 addr=- session expired after 5 s without a connection\n");
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    f = connected5(fx, 2, (cn5_t){.id = "d2", PROPS("\x11\x00\x00\x00\x3c")});
    assert_int_equal(feed(f, frame(0xe0, &(pk_t){.b = {0x00, 0x05, 0x11, 0, 0, 0, 2}, .n = 7})),
                     -1);
    set_time(fx, 6000 + 1999);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 2);
    set_time(fx, 6000 + 2000);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    f = connected5(fx, 3, (cn5_t){.id = "cap", PROPS("\x11\x00\x00\x00\x05")});
    assert_int_equal(
        feed(f, frame(0xe0, &(pk_t){.b = {0x00, 0x05, 0x11, 0, 0, 0x03, 0xe8}, .n = 7})), -1);
    set_time(fx, 61000); /* "long" goes */
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    set_time(fx, 8000 + 59999);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    set_time(fx, 8000 + 60000);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    assert_int_equal(session_mgr_stats(fx->m)->sessions_expired, 4);
}

/* Request problem information 0: the negative acks go without a reason
 * string, CONNACK and DISCONNECT keep theirs [MQTT-3.1.2-29]. */
static void test_v5_no_problem_info(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "np", .clean = true, PROPS("\x17\x00")});
    assert_int_equal(feed(f, publish5("zzz", 1, 3, NULL, 0, "a")), 11);
    EXPECT_OUT(f, 0x40, 0x03, 0x00, 0x03, 0x90);
    assert_int_equal(feed(f, publish5("t/a", 2, 4, P("\x01\x01"), "\xff")), 13);
    EXPECT_OUT(f, 0x50, 0x03, 0x00, 0x04, 0x99);
    closed(f, publish5("zzz", 0, 0, NULL, 0, "a"));
    expect_reason(f, 0xe0, -1, 0x90, "no rule maps this topic to a legal Kafka topic");
    f = open_conn(fx, 1);
    closed(f, connect5((cn5_t){.id = "", .clean = false, PROPS("\x17\x00")}));
    expect_reason(f, 0x20, -1, 0x85, "empty client id with clean session 0 [MQTT-3.1.3-8]");
}

/* The client's maximum packet size: the reason string is left out where
 * it would make a packet larger [MQTT-3.2.2-19] [MQTT-3.4.2-2]
 * [MQTT-3.14.2-3]; PUBACK 0x90 with its string is 55 bytes. */
static void test_v5_reason_string_max_packet_size(void **state) {
    fx_t *fx = *state;
    static const char why[] = "no rule maps this topic to a legal Kafka topic";
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "m55", PROPS("\x27\x00\x00\x00\x37")});
    assert_int_equal(feed(f, publish5("zzz", 1, 3, NULL, 0, "a")), 11);
    expect_reason(f, 0x40, 3, 0x90, why);
    f = connected5(fx, 1, (cn5_t){.id = "m54", PROPS("\x27\x00\x00\x00\x36")});
    assert_int_equal(feed(f, publish5("zzz", 1, 3, NULL, 0, "a")), 11);
    EXPECT_OUT(f, 0x40, 0x03, 0x00, 0x03, 0x90);
    closed(f, publish5("zzz", 0, 0, NULL, 0, "a")); /* DISCONNECT with it: 53 bytes */
    expect_reason(f, 0xe0, -1, 0x90, why);
    f = connected5(fx, 3, (cn5_t){.id = "m52", PROPS("\x27\x00\x00\x00\x34")});
    closed(f, publish5("zzz", 0, 0, NULL, 0, "a"));
    EXPECT_OUT(f, 0xe0, 0x01, 0x90);
    f = open_conn(fx, 2);
    closed(f, connect5((cn5_t){.id = "a", PROPS("\x27\x00\x00\x00\x0a\x15\x00\x01x")}));
    EXPECT_OUT(f, 0x20, 0x03, 0x00, 0x8c, 0x00);
}

/* A reason string is the log line's text cut to 160 bytes, on a character
 * boundary; none when that text is not UTF-8 (a client id cut in the log). */
static void test_v5_reason_string_cut(void **state) {
    fx_t *fx = *state;
    fx->auth.gen = 1;
    fx->auth.deny = "w/";
    char topic[64] = "w/", full[256];
    for (int i = 0; i < 29; i++)
        strcat(topic, "\xc3\xa9"); /* 60 bytes */
    snprintf(full, sizeof(full),
             "connection refused (CONNACK 5): client id 'c', user '(none)': the ACL does not "
             "allow publishing on the will topic '%s'",
             topic);
    fconn_t *f = open_conn(fx, 0);
    const char *log =
        closed(f, connect5((cn5_t){.id = "c", .will_topic = topic, .will_payload = "x"}));
    assert_logged(log, full);
    assert_int_equal((uint8_t)full[159], 0xc3); /* byte 160 is inside an 'é' */
    full[159] = '\0';
    expect_reason(f, 0x20, -1, 0x87, full);
    f = open_conn(fx, 1);
    char cid[64];
    memset(cid, 'a', 59);
    memcpy(cid + 59, "\xc3\xa9", 3); /* the log keeps 60 bytes: half an 'é' */
    closed(f, connect5((cn5_t){.id = cid, .will_topic = "w/x", .will_payload = "x"}));
    EXPECT_OUT(f, 0x20, 0x03, 0x00, 0x87, 0x00);
}

/* The topics one connection's aliases hold are bounded
 * (mqtt.max_topic_alias_bytes, 256 here): an alias replaced gives its bytes
 * back; one more byte is DISCONNECT 0x97 (quota exceeded). */
static void test_v5_topic_alias_quota(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.topic_alias_maximum = 2;
    fx->cfg.mqtt.max_topic_alias_bytes = 256;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect5((cn5_t){.id = "aq", .clean = true});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    f->out_len = 0;
    char t200[201] = "t/", t58[59] = "t/";
    memset(t200 + 2, 'a', 198);
    memset(t58 + 2, 'b', 56);
    assert_int_equal(feed(f, publish5(t200, 0, 0, P("\x23\x00\x01"), "x")), 210);
    t58[56] = '\0';
    assert_int_equal(feed(f, publish5(t58, 0, 0, P("\x23\x00\x02"), "x")), 65);   /* 256 */
    assert_int_equal(feed(f, publish5("t/c", 0, 0, P("\x23\x00\x01"), "x")), 12); /* 59 */
    t200[199] = '\0';
    assert_int_equal(feed(f, publish5(t200, 0, 0, P("\x23\x00\x01"), "x")), 209); /* 255 */
    t58[56] = 'b';
    const char *log = closed(f, publish5(t58, 0, 0, P("\x23\x00\x02"), "x"));
    static const char why[] =
        "topic alias 2 would hold 257 bytes of topics, over mqtt.max_topic_alias_bytes 256";
    expect_reason(f, 0xe0, -1, 0x97, why);
    assert_logged(log, why);
    assert_int_equal(fx->prod.n, 4);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_error_kinds[SESSION_ERR_TOPIC_ALIAS_QUOTA],
                     1);
}

/* kafka.max_topics reached: a bound backpressure cannot absorb (waiting
 * frees no topic), so an MQTT 5 client gets PUBACK/PUBREC 0x97 (quota
 * exceeded) in arrival order, and DISCONNECT 0x97 for QoS 0; 3.1.1 closes
 * (test_session.c). */
static void test_v5_topic_limit_quota(void **state) {
    fx_t *fx = *state;
    static const char why[] = "a new Kafka topic past kafka.max_topics";
    fx->cfg.kafka_max_topics = 1;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "q", .clean = true});
    assert_int_equal(feed(f, publish5("k/a", 1, 1, NULL, 0, "a")), 11);
    log_capture_begin();
    assert_int_equal(feed(f, publish5("k/b", 1, 2, NULL, 0, "b")), 11);
    assert_logged(log_capture_end(), "topic 'k/b': a new topic past kafka.max_topics distinct "
                                     "Kafka topics: refused (0x97)\n");
    EXPECT_NO_OUT(f); /* behind the first one's ack */
    deliver(fx, 0, 0);
    pk_t acks = {.n = 0};
    put(&acks, "\x40\x02\x00\x01", 4);
    reason5(&acks, 0x40, 2, 0x97, why);
    expect_pk(f, &acks);
    assert_int_equal(feed(f, publish5("k/c", 2, 3, NULL, 0, "c")), 11);
    expect_reason(f, 0x50, 3, 0x97, why);
    closed(f, publish5("k/d", 0, 0, NULL, 0, "d"));
    expect_reason(f, 0xe0, -1, 0x97, why);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->messages_refused[SESSION_REFUSED_TOPIC_LIMIT], 3);
}

/* A CONNECT string over its cap (mqtt.max_will_topic_length, 16 here):
 * MQTT 3.1.1 closes unanswered (test_session.c), MQTT 5 gets CONNACK 0x97
 * with the log line's text. */
static void test_v5_connect_over_cap_quota(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_will_topic_length = 16;
    fconn_t *f = open_conn(fx, 0);
    const char *log = closed(
        f, connect5((cn5_t){.id = "wq", .will_topic = "t/0123456789abcde", .will_payload = "x"}));
    static const char why[] =
        "CONNECT refused: will topic of 17 bytes above mqtt.max_will_topic_length 16";
    assert_logged(log, why);
    expect_reason(f, 0x20, -1, 0x97, why);
    assert_int_equal(session_mgr_stats(fx->m)->refused_too_long, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup5, teardown)
        T(test_v5_request_response_information),
        T(test_v5_shorter_session_expiry),
        T(test_v5_no_problem_info),
        T(test_v5_reason_string_max_packet_size),
        T(test_v5_topic_alias_quota),
        T(test_v5_topic_limit_quota),
        T(test_v5_connect_over_cap_quota),
        cmocka_unit_test_setup_teardown(test_v5_reason_string_cut, setup5_auth, teardown),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
