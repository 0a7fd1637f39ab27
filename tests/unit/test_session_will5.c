/* The will of an MQTT 5 client (issue 13): its properties become the record's
 * headers as a PUBLISH's do, its payload format indicator is checked at
 * CONNECT, its will delay interval is honoured and bounded; and the
 * DISCONNECT a v5 client gets before the server closes it for a reason of
 * its own. Exact bytes out; statement ids of OASIS MQTT 5.0. */
#include "session5_fixture.h"

typedef struct {
    const char *id;
    bool keep; /* clean start 0 */
    uint8_t will_qos;
    const char *props; /* CONNECT property bytes (without their length) */
    size_t props_len;
    const char *will_props; /* will property bytes (without their length) */
    size_t will_props_len;
    const char *will_payload; /* NULL: "gone" */
    size_t will_payload_len;
} wc_t;

#define P2(field, lit) .field = lit, .field##_len = sizeof(lit) - 1

/* A level 5 CONNECT (keep alive 0) with the will "t/w". */
static pk_t connect_will5(wc_t c) {
    pk_t b = {.n = 0};
    put_str(&b, "MQTT");
    put_u8(&b, 5);
    put_u8(&b, (uint8_t)((c.keep ? 0 : 0x02) | 0x04 | c.will_qos << 3));
    put_u16(&b, 0);
    assert_true(c.props_len < 128 && c.will_props_len < 128); /* one-byte lengths */
    put_u8(&b, (uint8_t)c.props_len);
    if (c.props_len)
        put(&b, c.props, c.props_len);
    put_str(&b, c.id);
    put_u8(&b, (uint8_t)c.will_props_len);
    if (c.will_props_len)
        put(&b, c.will_props, c.will_props_len);
    put_str(&b, "t/w");
    if (c.will_payload) {
        put_u16(&b, (uint16_t)c.will_payload_len);
        put(&b, c.will_payload, c.will_payload_len);
    } else {
        put_str(&b, "gone");
    }
    return frame(0x10, &b);
}

/* CONNACK 0 with this fixture's properties (session5_fixture.h). */
#define CONNACK_OK 0x20, 0x13, 0x00, 0x00, 0x10, CONNACK_PROPS
#define CONNACK_PRESENT 0x20, 0x13, 0x01, 0x00, 0x10, CONNACK_PROPS

static fconn_t *connected_will5(fx_t *fx, int i, wc_t c) {
    fconn_t *f = open_conn(fx, i);
    pk_t p = connect_will5(c);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, CONNACK_OK);
    return f;
}

/* The will's properties, kept from the CONNECT, become the headers a
 * PUBLISH's would (3.1.3.2): message expiry, content type, response topic,
 * correlation data, then the user properties in order, duplicates kept. */
static void test_will_properties_become_headers(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(
        fx, 0,
        (wc_t){.id = "w5",
               .will_qos = 1,
               P2(will_props, "\x01\x01"                /* payload format indicator 1 */
                              "\x02\x00\x00\x00\x0a"    /* message expiry interval 10 */
                              "\x03\x00\x0atext/plain"  /* content type */
                              "\x08\x00\x03r/t"         /* response topic */
                              "\x09\x00\x02\x63\x64"    /* correlation data "cd" */
                              "\x26\x00\x01k\x00\x02v1" /* user property k=v1 */
                              "\x26\x00\x01k\x00\x02v2") /* and k=v2 */});
    session_conn_lost(f->c, "connection reset");
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].topic, "kt");
    assert_memory_equal(fx->prod.recs[0].value, "gone", 4);
    assert_string_equal(fx->prod.recs[0].headers,
                        "mqtt.topic=t/w;mqtt.client_id=w5;mqtt.qos=1;mqtt.message_expiry=10;"
                        "mqtt.content_type=text/plain;mqtt.response_topic=r/t;"
                        "mqtt.correlation_data=cd;k=v1;k=v2;");
    assert_int_equal(session_mgr_stats(fx->m)->wills_published, 1);
    session_conn_free(f->c);
}

/* A will without properties has the 3.1.1 headers only. */
static void test_will_without_properties(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "w0"});
    session_conn_lost(f->c, "connection reset");
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].headers, "mqtt.topic=t/w;mqtt.client_id=w0;mqtt.qos=0;");
    session_conn_free(f->c);
}

/* Payload format indicator 1 and a will payload that is not UTF-8: CONNACK
 * 0x99 payload format invalid (3.1.3.2.3), nothing kept. */
static void test_will_payload_format_invalid(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect_will5(
        (wc_t){.id = "bad", P2(will_props, "\x01\x01"), P2(will_payload, "\xff\xfe")});
    log_capture_begin();
    assert_int_equal(feed(f, p), -1);
    const char *log = log_capture_end();
    expect_reason(f, 0x20, -1, 0x99,
                  "will message of client id 'bad' is not UTF-8 as its payload format "
                  "indicator says (CONNACK 0x99)");
    assert_int_equal(f->closes, 1);
    assert_non_null(strstr(log, "closing: will message of client id 'bad' is not UTF-8 as its "
                                "payload format indicator says (CONNACK 0x99)\n"));
    assert_int_equal(session_mgr_session_count(fx->m), 0);
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 0);
}

/* The same payload with payload format indicator 0 (bytes) is taken. */
static void test_will_payload_format_bytes(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(
        fx, 0, (wc_t){.id = "raw", P2(will_props, "\x01\x00"), P2(will_payload, "\xff\xfe")});
    session_conn_lost(f->c, "connection reset");
    assert_int_equal(fx->prod.n, 1);
    assert_memory_equal(fx->prod.recs[0].value, "\xff\xfe", 2);
    session_conn_free(f->c);
}

/* Will properties over mqtt.max_will_payload: closed unanswered, as a will
 * message over it is (they live as long as the connection). */
static void test_will_properties_over_cap(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_will_payload = 8;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect_will5((wc_t){.id = "big", P2(will_props, "\x03\x00\x0atext/plain")});
    log_capture_begin();
    assert_int_equal(feed(f, p), -1);
    const char *log = log_capture_end();
    /* MQTT 5 has a code for a bound: CONNACK 0x97 (quota exceeded) */
    expect_reason(f, 0x20, -1, 0x97,
                  "CONNECT refused: will properties of 13 bytes above mqtt.max_will_payload 8");
    assert_non_null(strstr(log, "closing: CONNECT refused: will properties of 13 bytes above "
                                "mqtt.max_will_payload 8\n"));
    assert_int_equal(session_mgr_stats(fx->m)->refused_too_long, 1);
    session_conn_free(f->c);
}

/* ---- the will delay interval (3.1.3.2.2) ---- */

/* Session expiry 50 s (kept: under session_expiry_s 60), will delay 30 s. */
#define KEPT_DELAY30 P2(props, "\x11\x00\x00\x00\x32"), P2(will_props, "\x18\x00\x00\x00\x1e")

/* The connection drops at 1000 ms: the will waits in the kept session. */
static void dropped_with_delayed_will(fx_t *fx, wc_t c) {
    fconn_t *f = connected_will5(fx, 0, c);
    session_conn_lost(f->c, "connection reset");
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 1);
    assert_int_equal(session_mgr_stats(fx->m)->persistent_sessions, 1);
}

static const char *tick_at(fx_t *fx, uint64_t ms) {
    set_time(fx, ms);
    log_capture_begin();
    session_mgr_tick(fx->m);
    return log_capture_end();
}

/* Published once the delay has passed, not a millisecond before; its
 * session stays. */
static void test_will_delay_published_after_delay(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "d1", KEPT_DELAY30});
    tick_at(fx, 30999);
    assert_int_equal(fx->prod.n, 0);
    const char *log = tick_at(fx, 31000);
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].headers, "mqtt.topic=t/w;mqtt.client_id=d1;mqtt.qos=0;");
    assert_non_null(strstr(log, "client=d1 addr=127.0.0.1:5000 publishing the will message after "
                                "its will delay interval of 30 s\n"));
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 0);
    assert_int_equal(session_mgr_stats(fx->m)->wills_published, 1);
    assert_int_equal(session_mgr_stats(fx->m)->persistent_sessions, 1);
    tick_at(fx, 60000);
    assert_int_equal(fx->prod.n, 1);
}

/* The client comes back to its session (clean start 0) within the delay:
 * the will is never published [MQTT-3.1.3-9]. */
static void test_will_delay_cancelled_by_reconnect(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "d2", KEPT_DELAY30});
    set_time(fx, 5000);
    fconn_t *f = open_conn(fx, 1);
    pk_t p = connect_will5((wc_t){.id = "d2", .keep = true, P2(props, "\x11\x00\x00\x00\x32")});
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    EXPECT_OUT(f, CONNACK_PRESENT);
    assert_non_null(strstr(log, "client=d2 addr=127.0.0.1:5000 will message not published: the "
                                "client came back to its session within the will delay "
                                "interval of 30 s [MQTT-3.1.3-9]\n"));
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 0);
    tick_at(fx, 40000);
    assert_int_equal(fx->prod.n, 0);
}

/* A reconnect with clean start 1 ends the old session: its will goes then. */
static void test_will_delay_clean_start_ends_session(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "d3", KEPT_DELAY30});
    set_time(fx, 5000);
    fconn_t *f = open_conn(fx, 1);
    pk_t p = connect_will5((wc_t){.id = "d3"});
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    EXPECT_OUT(f, CONNACK_OK);
    assert_int_equal(fx->prod.n, 1);
    assert_non_null(strstr(log, "client=d3 addr=127.0.0.1:5000 publishing the will message at the "
                                "end of its session, before its will delay interval passed\n"));
}

/* The session ends first (its session expiry 50 s < will delay 100 s): the
 * will is published when it expires. */
static void test_will_delay_session_expires_first(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "d4",
                                         P2(props, "\x11\x00\x00\x00\x32"),
                                         P2(will_props, "\x18\x00\x00\x00\x64")});
    tick_at(fx, 50999);
    assert_int_equal(fx->prod.n, 0);
    const char *log = tick_at(fx, 51000);
    assert_int_equal(fx->prod.n, 1);
    assert_non_null(strstr(log, "publishing the will message at the end of its session"));
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

/* DISCONNECT 0x04 (with will message): the will waits for its delay too. */
static void test_will_delay_after_disconnect_with_will(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "d6", KEPT_DELAY30});
    assert_int_equal(feed(f, frame(0xe0, &(pk_t){.b = {0x04}, .n = 1})), -1);
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 1);
    tick_at(fx, 31000);
    assert_int_equal(fx->prod.n, 1);
}

/* Session expiry 0: the session ends with the connection, before any delay. */
static void test_will_delay_session_ends_with_connection(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "d5", P2(will_props, "\x18\x00\x00\x00\x1e")});
    session_conn_lost(f->c, "connection reset");
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 0);
    session_conn_free(f->c);
}

/* A waiting will counts in its session's bytes (mqtt.max_session_bytes), and
 * the bound on kept sessions (2 here) ends the oldest: its will goes then. */
static void test_will_delay_bounded_by_session_limits(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "b1", KEPT_DELAY30});
    uint64_t with_will = session_mgr_stats(fx->m)->persistent_session_bytes;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "b2", P2(props, "\x11\x00\x00\x00\x32")});
    session_conn_lost(f->c, "connection reset");
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 1); /* b2's will has no delay */
    /* b2's session without a waiting will holds that much less (the same
     * client id length): the stand-in, topic, payload. */
    uint64_t both = session_mgr_stats(fx->m)->persistent_session_bytes;
    assert_true(both - with_will + 3 + 1 + 4 + 1 < with_will);
    f = connected_will5(fx, 0, (wc_t){.id = "b3", KEPT_DELAY30});
    session_conn_lost(f->c, "connection reset");
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 2); /* b1's session discarded */
    assert_string_equal(fx->prod.recs[1].headers, "mqtt.topic=t/w;mqtt.client_id=b1;mqtt.qos=0;");
    assert_int_equal(session_mgr_stats(fx->m)->sessions_evicted, 1);
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 1);
}

/* SIGTERM: the waiting wills are published at once (their sessions end with
 * the process), and from then on a will does not wait. */
static void test_will_delay_published_at_shutdown(void **state) {
    fx_t *fx = *state;
    dropped_with_delayed_will(fx, (wc_t){.id = "s1", KEPT_DELAY30});
    log_capture_begin();
    session_mgr_publish_delayed_wills(fx->m);
    const char *log = log_capture_end();
    assert_int_equal(fx->prod.n, 1);
    assert_non_null(strstr(log, "client=s1 addr=127.0.0.1:5000 publishing the will message at "
                                "shutdown, before its will delay interval passed (sessions end "
                                "with the process)\n"));
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "s2", KEPT_DELAY30});
    session_conn_lost(f->c, "connection reset");
    session_conn_free(f->c);
    assert_int_equal(fx->prod.n, 2);
    assert_int_equal(session_mgr_stats(fx->m)->wills_delayed, 0);
}

/* ---- the server's own closes: the reason first (4.13.2) ---- */

/* Shutdown: DISCONNECT 0x8B server shutting down, then the close. */
static void test_goodbye_shutdown_0x8b(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "g1"});
    session_conn_goodbye(f->c, false);
    expect_reason(f, 0xe0, -1, 0x8b, "the server is shutting down");
    session_conn_lost(f->c, "server shutting down");
    assert_int_equal(fx->prod.n, 1); /* the will: the client did not DISCONNECT */
    session_conn_free(f->c);
}

/* A bound of the server's: DISCONNECT 0x89 server busy. */
static void test_goodbye_busy_0x89(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected_will5(fx, 0, (wc_t){.id = "g2"});
    session_conn_goodbye(f->c, true);
    expect_reason(f, 0xe0, -1, 0x89, "the server holds too many bytes of partly received packets");
    session_conn_free(f->c);
}

/* MQTT 3.1.1 has no DISCONNECT from the server, and before CONNACK there is
 * no session to say goodbye to: nothing is sent. */
static void test_goodbye_not_v5_or_not_connected(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "g3", .clean = true});
    session_conn_goodbye(f->c, false);
    EXPECT_NO_OUT(f);
    fconn_t *g = open_conn(fx, 1);
    session_conn_goodbye(g->c, true);
    EXPECT_NO_OUT(g);
    session_conn_free(f->c);
    session_conn_free(g->c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_will_properties_become_headers, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_without_properties, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_payload_format_invalid, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_payload_format_bytes, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_properties_over_cap, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_published_after_delay, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_cancelled_by_reconnect, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_clean_start_ends_session, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_session_expires_first, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_after_disconnect_with_will, setup5,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_session_ends_with_connection, setup5,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_bounded_by_session_limits, setup5,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_will_delay_published_at_shutdown, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_goodbye_shutdown_0x8b, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_goodbye_busy_0x89, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_goodbye_not_v5_or_not_connected, setup5, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
