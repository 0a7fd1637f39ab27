/* SUBSCRIBE / UNSUBSCRIBE and the delivery of downlink messages to the
 * sessions (issue 15, first step): exact SUBACK/UNSUBACK and PUBLISH bytes
 * for 3.1.1 and 5.0, the ACL's read rules, persistent sessions keeping their
 * subscriptions, shared subscriptions. */
#include "session_fixture.h"

static pk_t sub_pk(uint16_t pid, const char *const *filters, const uint8_t *qos, size_t n,
                   bool v5) {
    pk_t b = {.n = 0};
    put_u16(&b, pid);
    if (v5)
        put_u8(&b, 0); /* no properties */
    for (size_t i = 0; i < n; i++) {
        put_str(&b, filters[i]);
        put_u8(&b, qos[i]);
    }
    return frame(0x82, &b);
}

static pk_t unsub_pk(uint16_t pid, const char *filter, bool v5) {
    pk_t b = {.n = 0};
    put_u16(&b, pid);
    if (v5)
        put_u8(&b, 0);
    put_str(&b, filter);
    return frame(0xa2, &b);
}

static size_t deliver_msg(fx_t *fx, const char *topic, const char *payload, uint8_t qos) {
    return session_mgr_deliver(fx->m, topic, strlen(topic), payload, strlen(payload), qos);
}

/* Overlapping subscriptions give one PUBLISH; granted QoS = requested; the
 * message leaves as QoS 0 with the topic and payload as given. */
static void test_subscribe_and_deliver_311(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    const char *f[] = {"a/+", "a/#", "x"};
    const uint8_t q[] = {1, 2, 0};
    pk_t s = sub_pk(7, f, q, 3, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x05, 0x00, 0x07, 0x01, 0x02, 0x00);
    assert_int_equal(session_mgr_subscription_count(fx->m), 3);
    assert_int_equal(deliver_msg(fx, "a/b", "hi", 1), 1);
    EXPECT_OUT(a, 0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i');
    EXPECT_NO_OUT(b);
    assert_int_equal(deliver_msg(fx, "b", "no", 0), 0);
    assert_int_equal(deliver_msg(fx, "x", "", 2), 1); /* an empty payload */
    EXPECT_OUT(a, 0x30, 0x03, 0x00, 0x01, 'x');
    pk_t u = unsub_pk(8, "a/+", false);
    assert_int_equal(feed(a, u), (ssize_t)u.n);
    EXPECT_OUT(a, 0xb0, 0x02, 0x00, 0x08);
    assert_int_equal(deliver_msg(fx, "a/c", "1", 0), 1); /* still a/# */
    EXPECT_OUT(a, 0x30, 0x06, 0x00, 0x03, 'a', '/', 'c', '1');
    u = unsub_pk(9, "a/#", false);
    assert_int_equal(feed(a, u), (ssize_t)u.n);
    EXPECT_OUT(a, 0xb0, 0x02, 0x00, 0x09);
    assert_int_equal(deliver_msg(fx, "a/c", "1", 0), 0);
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->deliveries[0], 3);
    assert_int_equal(st->packets_sent[MQTT_PUBLISH], 3);
}

/* MQTT 5: the PUBLISH has an empty property length; a message over the
 * client's maximum packet size is not sent and counted. */
static void test_deliver_v5_and_max_packet(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = open_conn(fx, 1);
    pk_t c = connect5(
        (cn5_t){.id = "b", .clean = true, .props = "\x27\x00\x00\x00\x1e", .props_len = 5});
    assert_int_equal(feed(b, c), (ssize_t)c.n);
    EXPECT_OUT(b, 0x20, 0x13, 0x00, 0x00, 0x10, CONNACK_PROPS);
    const char *f[] = {"t/#"};
    const uint8_t q[] = {0x02};
    pk_t s = sub_pk(1, f, q, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x02);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x01, 0x00, 0x02);
    assert_int_equal(deliver_msg(fx, "t/a", "hi", 2), 2);
    EXPECT_OUT(a, 0x30, 0x08, 0x00, 0x03, 't', '/', 'a', 0x00, 'h', 'i');
    EXPECT_OUT(b, 0x30, 0x08, 0x00, 0x03, 't', '/', 'a', 0x00, 'h', 'i');
    /* b's maximum packet size is 30: 2 + 2 + 3 + 1 + 22 bytes; one more is too many */
    const char *p22 = "1234567890123456789012", *p23 = "12345678901234567890123";
    assert_int_equal(deliver_msg(fx, "t/a", p22, 2), 2);
    assert_int_equal(a->out_len, 30);
    assert_int_equal(b->out_len, 30);
    assert_memory_equal(b->out,
                        "\x30\x1c\x00\x03t/a\x00"
                        "1234567890123456789012",
                        30);
    a->out_len = b->out_len = 0;
    assert_int_equal(deliver_msg(fx, "t/a", p23, 2), 1);
    assert_int_equal(a->out_len, 31);
    a->out_len = 0;
    EXPECT_NO_OUT(b);
    assert_int_equal(session_mgr_stats(fx->m)->delivery_too_large, 1);
}

/* Invalid shared subscriptions: 0x80 (3.1.1), 0x8F (5.0); a subscription
 * identifier: 0xA1 (CONNACK says they are not available). */
static void test_subscribe_invalid(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    const char *f[] = {"$share/g", "$share//t", "$share/g/t"};
    const uint8_t q[] = {1, 1, 1};
    log_capture_begin();
    pk_t s = sub_pk(3, f, q, 3, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    const char *log = log_capture_end();
    EXPECT_OUT(a, 0x90, 0x05, 0x00, 0x03, 0x80, 0x80, 0x01);
    assert_non_null(strstr(log, "client a: SUBSCRIBE to '$share/g' refused: invalid shared "
                                "subscription\n"));
    s = sub_pk(3, f, q, 3, true);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x06, 0x00, 0x03, 0x00, 0x8f, 0x8f, 0x01);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_invalid, 4);
    pk_t id = {.b = {0x82, 0x09, 0x00, 0x04, 0x02, 0x0b, 0x05, 0x00, 0x01, 'z', 0x00}, .n = 11};
    assert_int_equal(feed(b, id), 11);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x04, 0x00, 0xa1);
    assert_int_equal(deliver_msg(fx, "z", "", 0), 0);
    /* One member of the group per message, round robin. */
    assert_int_equal(deliver_msg(fx, "t", "1", 0), 1);
    assert_int_equal(deliver_msg(fx, "t", "2", 0), 1);
    assert_int_equal(a->out_len, 6); /* 0x30 0x04 0x00 0x01 't' payload */
    assert_int_equal(b->out_len, 7); /* ... and the empty property length */
    assert_int_not_equal(a->out[5], b->out[6]);
}

/* A persistent session keeps its subscriptions while away (nothing is
 * delivered to it then) and after reconnecting; a clean one drops them. */
static void test_persistent_session_keeps_subscriptions(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "p", .clean = false});
    const char *f[] = {"c/#"};
    const uint8_t q[] = {0};
    pk_t s = sub_pk(1, f, q, 1, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x03, 0x00, 0x01, 0x00);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    assert_int_equal(deliver_msg(fx, "c/1", "x", 0), 0);
    assert_int_equal(session_mgr_subscription_count(fx->m), 1);
    a = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "p", .clean = false});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    EXPECT_OUT(a, 0x20, 0x02, 0x01, 0x00);
    assert_int_equal(deliver_msg(fx, "c/1", "x", 0), 1);
    EXPECT_OUT(a, 0x30, 0x06, 0x00, 0x03, 'c', '/', '1', 'x');
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    a = connected(fx, 0, (cn_t){.id = "p", .clean = true}); /* discards the session */
    assert_int_equal(session_mgr_subscription_count(fx->m), 0);
    assert_int_equal(deliver_msg(fx, "c/1", "x", 0), 0);
    fconn_t *b = connected(fx, 1, (cn_t){.id = "q", .clean = true});
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x03, 0x00, 0x01, 0x00);
    session_conn_lost(b->c, "gone");
    assert_int_equal(session_mgr_subscription_count(fx->m), 0);
}

/* A client that does not read: the delivery hits the output bound and
 * closes that connection only. */
static void test_deliver_output_bound(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    const char *f[] = {"#"};
    const uint8_t q[] = {0};
    pk_t s = sub_pk(1, f, q, 1, false);
    feed(a, s);
    feed(b, s);
    EXPECT_OUT(a, 0x90, 0x03, 0x00, 0x01, 0x00);
    EXPECT_OUT(b, 0x90, 0x03, 0x00, 0x01, 0x00);
    a->fail_send = true;
    log_capture_begin();
    assert_int_equal(deliver_msg(fx, "k", "v", 0), 1);
    const char *log = log_capture_end();
    assert_non_null(strstr(log, "client=a addr=127.0.0.1:5000 closing: output buffer limit "
                                "reached\n"));
    assert_int_equal(a->closes, 1);
    EXPECT_OUT(b, 0x30, 0x04, 0x00, 0x01, 'k', 'v');
}

/* With an ACL: a filter no read rule meets is refused (0x80; MQTT 5 0x87);
 * a delivery the read rules refuse is not sent and counted. */
static void test_acl_subscribe_and_read(void **state) {
    fx_t *fx = *state;
    fx->auth.gen = 1;
    fx->auth.deny_sub = "secret";
    fx->auth.deny_read = "ok/hidden";
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    const char *f[] = {"secret/#", "ok/#", "$share/g/secret"};
    const uint8_t q[] = {1, 1, 1};
    log_capture_begin();
    pk_t s = sub_pk(5, f, q, 3, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    const char *log = log_capture_end();
    assert_non_null(strstr(log, "client a: SUBSCRIBE to 'secret/#' refused by the ACL\n"));
    EXPECT_OUT(a, 0x90, 0x05, 0x00, 0x05, 0x80, 0x01, 0x80);
    s = sub_pk(5, f, q, 3, true);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x06, 0x00, 0x05, 0x00, 0x87, 0x01, 0x87);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_denied, 4);
    assert_int_equal(deliver_msg(fx, "ok/hidden", "x", 0), 0);
    EXPECT_NO_OUT(a);
    EXPECT_NO_OUT(b);
    assert_int_equal(session_mgr_stats(fx->m)->delivery_denied, 2);
    assert_int_equal(deliver_msg(fx, "ok/1", "x", 0), 2);
    EXPECT_OUT(a, 0x30, 0x07, 0x00, 0x04, 'o', 'k', '/', '1', 'x');
    EXPECT_OUT(b, 0x30, 0x08, 0x00, 0x04, 'o', 'k', '/', '1', 0x00, 'x');
}

/* A keep alive of 0 stays 0, so connected5's CONNACK has no server keep alive. */
static int setup_s(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

static int setup_s_auth(void **state) {
    setup_auth(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subscribe_and_deliver_311, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_v5_and_max_packet, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_invalid, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_session_keeps_subscriptions, setup_s,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deliver_output_bound, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_acl_subscribe_and_read, setup_s_auth, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
