/* The will of an MQTT 5 client (issue 13): its properties become the record's
 * headers as a PUBLISH's do, its payload format indicator is checked at
 * CONNECT. Exact bytes out; statement ids of OASIS MQTT 5.0. */
#include "session_fixture.h"

typedef struct {
    const char *id;
    uint8_t will_qos;
    const char *props; /* CONNECT property bytes (without their length) */
    size_t props_len;
    const char *will_props; /* will property bytes (without their length) */
    size_t will_props_len;
    const char *will_payload; /* NULL: "gone" */
    size_t will_payload_len;
} wc_t;

#define P2(field, lit) .field = lit, .field##_len = sizeof(lit) - 1

/* A level 5 CONNECT (clean start, keep alive 0) with the will "t/w". */
static pk_t connect_will5(wc_t c) {
    pk_t b = {.n = 0};
    put_str(&b, "MQTT");
    put_u8(&b, 5);
    put_u8(&b, (uint8_t)(0x02 | 0x04 | c.will_qos << 3));
    put_u16(&b, 0);
    assert_true(c.props_len < 128 && c.will_props_len < 128); /* one-byte lengths */
    put_u8(&b, (uint8_t)c.props_len);
    put(&b, c.props, c.props_len);
    put_str(&b, c.id);
    put_u8(&b, (uint8_t)c.will_props_len);
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

/* CONNACK 0 with this fixture's properties (test_session_v5.c's CONNACK_PROPS). */
#define CONNACK_OK                                                                                 \
    0x20, 0x13, 0x00, 0x00, 0x10, 0x21, 0x00, 0x04, 0x25, 0x01, 0x27, 0x00, 0x00, 0x04, 0x00,      \
        0x28, 0x00, 0x29, 0x00, 0x2a, 0x00

static int setup5(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

static fconn_t *connected_will5(fx_t *fx, int i, wc_t c) {
    fconn_t *f = open_conn(fx, i);
    pk_t p = connect_will5(c);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, CONNACK_OK);
    return f;
}

/* The will's properties, kept from the CONNECT, become the headers a
 * PUBLISH's would (3.1.3.2): content type, response topic, correlation data,
 * then the user properties in order, duplicates kept. */
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
                        "mqtt.topic=t/w;mqtt.client_id=w5;mqtt.qos=1;mqtt.content_type=text/"
                        "plain;mqtt.response_topic=r/t;mqtt.correlation_data=cd;k=v1;k=v2;");
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
    EXPECT_OUT(f, 0x20, 0x03, 0x00, 0x99, 0x00);
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
    EXPECT_NO_OUT(f);
    assert_non_null(strstr(log, "closing: CONNECT refused: will properties of 13 bytes above "
                                "mqtt.max_will_payload 8\n"));
    assert_int_equal(session_mgr_stats(fx->m)->refused_too_long, 1);
    session_conn_free(f->c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_will_properties_become_headers, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_without_properties, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_payload_format_invalid, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_payload_format_bytes, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_will_properties_over_cap, setup5, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
