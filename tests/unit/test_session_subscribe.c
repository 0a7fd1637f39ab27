/* SUBSCRIBE / UNSUBSCRIBE and the delivery of downlink messages to the
 * sessions (issue 15, first step): exact SUBACK/UNSUBACK and PUBLISH bytes
 * for 3.1.1 and 5.0, the ACL's read rules, persistent sessions keeping their
 * subscriptions, shared subscriptions. */
#include "subscribe_fixture.h"

static size_t deliver_msg(fx_t *fx, const char *topic, const char *payload, uint8_t qos) {
    return session_mgr_deliver(fx->m, topic, strlen(topic), payload, strlen(payload), qos, NULL, 0);
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
    assert_int_equal(deliver_msg(fx, "a/b", "hi", 0), 1);
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
    assert_int_equal(deliver_msg(fx, "t/a", "hi", 0), 2);
    EXPECT_OUT(a, 0x30, 0x08, 0x00, 0x03, 't', '/', 'a', 0x00, 'h', 'i');
    EXPECT_OUT(b, 0x30, 0x08, 0x00, 0x03, 't', '/', 'a', 0x00, 'h', 'i');
    /* b's maximum packet size is 30: 2 + 2 + 3 + 1 + 22 bytes; one more is too many */
    const char *p22 = "1234567890123456789012", *p23 = "12345678901234567890123";
    assert_int_equal(deliver_msg(fx, "t/a", p22, 0), 2);
    assert_int_equal(a->out_len, 30);
    assert_int_equal(b->out_len, 30);
    assert_memory_equal(b->out,
                        "\x30\x1c\x00\x03t/a\x00"
                        "1234567890123456789012",
                        30);
    a->out_len = b->out_len = 0;
    assert_int_equal(deliver_msg(fx, "t/a", p23, 0), 1);
    assert_int_equal(a->out_len, 31);
    a->out_len = 0;
    EXPECT_NO_OUT(b);
    assert_int_equal(session_mgr_stats(fx->m)->delivery_too_large, 1);
}

/* Invalid shared subscriptions: 0x80 (3.1.1), 0x8F (5.0). */
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
    assert_int_equal(deliver_msg(fx, "c/1", "w", 0), 1); /* queued for its return */
    assert_int_equal(session_mgr_subscription_count(fx->m), 1);
    a = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "p", .clean = false});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    EXPECT_OUT(a, 0x20, 0x02, 0x01, 0x00, 0x30, 0x06, 0x00, 0x03, 'c', '/', '1', 'w');
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

/* ---- outbound QoS 1 and 2 ---- */

/* The PUBLISH the server sends (first byte with its flags). */
static pk_t spub(uint8_t first, uint16_t pid, const char *topic, const char *payload, bool v5) {
    pk_t b = {.n = 0};
    put_str(&b, topic);
    if (first & 0x06)
        put_u16(&b, pid);
    if (v5)
        put_u8(&b, 0);
    put(&b, payload, strlen(payload));
    return frame(first, &b);
}

static void expect_pkt(fconn_t *f, pk_t p) {
    expect_out(f, p.b, p.n);
}

static fconn_t *subscribed(fx_t *fx, int i, cn_t cn, const char *filter, uint8_t qos) {
    fconn_t *f = connected(fx, i, cn);
    const char *fl[] = {filter};
    pk_t s = sub_pk(1, fl, &qos, 1, false);
    assert_int_equal(feed(f, s), (ssize_t)s.n);
    const uint8_t ack[] = {0x90, 0x03, 0x00, 0x01, qos};
    expect_out(f, ack, sizeof(ack));
    return f;
}

/* QoS 1 at min(record, granted): packet ids 1, 2, ... up to the window
 * (mqtt.max_inflight 4 here), then the queue (3 here): a new message finding
 * it full of QoS 1 is refused and counted; each PUBACK lets the next one go,
 * in order; a PUBACK for an id not in flight closes. */
static void test_qos1_window_queue_and_acks(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "a", .clean = true}, "q/#", 1);
    const char *pl[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8"};
    for (int i = 0; i < 9; i++)
        assert_int_equal(deliver_msg(fx, "q/1", pl[i], 2), i < 7 ? 1 : 0);
    pk_t want = {.n = 0};
    for (int i = 0; i < 4; i++) {
        pk_t p = spub(0x32, (uint16_t)(i + 1), "q/1", pl[i], false);
        put(&want, p.b, p.n);
    }
    assert_memory_equal(want.b,
                        "\x32\x08\x00\x03q/1\x00\x01"
                        "0",
                        10); /* the first */
    expect_pkt(a, want);
    const dl_queue_stats_t *qs = session_mgr_queue_stats(fx->m);
    assert_int_equal(qs->depth, 3);
    assert_int_equal(qs->refused_full, 2);
    assert_int_equal(feed(a, id_pk(0x40, 1)), 4);
    expect_pkt(a, spub(0x32, 5, "q/1", "4", false));
    assert_int_equal(feed(a, id_pk(0x40, 3)), 4); /* out of order */
    expect_pkt(a, spub(0x32, 6, "q/1", "5", false));
    assert_int_equal(qs->depth, 1);
    assert_int_equal(session_mgr_stats(fx->m)->deliveries[1], 6);
    log_capture_begin();
    assert_int_equal(feed(a, id_pk(0x40, 3)), -1);
    const char *log = log_capture_end();
    assert_non_null(strstr(log, "closing: unexpected PUBACK for id 3 (no server PUBLISH awaits "
                                "it)\n"));
}

/* Packet ids wrap around after 65535, skipping 0 and an id still in flight
 * (1 here, never acked). */
static void test_packet_ids_wrap_around_one_in_flight(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "a", .clean = true}, "t", 1);
    for (int i = 0; i < 4; i++)
        deliver_msg(fx, "t", "x", 1);
    a->out_len = 0;
    uint16_t oldest = 2, next = 5;
    for (int k = 0; k < 65540; k++) {
        deliver_msg(fx, "t", "x", 1); /* queued: the window (4) is full */
        assert_int_equal(feed(a, id_pk(0x40, oldest)), 4);
        assert_int_equal(a->out_len, 8); /* 0x32 0x06 0x00 0x01 't' id id 'x' */
        assert_int_equal(a->out[5] << 8 | a->out[6], next);
        a->out_len = 0;
        oldest = oldest == 65535 ? 2 : (uint16_t)(oldest + 1);
        next = next == 65535 ? 2 : (uint16_t)(next + 1);
    }
    assert_true(next > 2 && next < 100); /* wrapped */
}

/* QoS 2: PUBREC gets PUBREL (again for a repeated PUBREC), PUBCOMP ends it;
 * a record at QoS 1 to a QoS 2 subscription goes at QoS 1. */
static void test_qos2_flow(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "a", .clean = true}, "t", 2);
    assert_int_equal(deliver_msg(fx, "t", "x", 2), 1);
    EXPECT_OUT(a, 0x34, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'x');
    assert_int_equal(deliver_msg(fx, "t", "y", 1), 1);
    EXPECT_OUT(a, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'y');
    assert_int_equal(feed(a, id_pk(0x50, 1)), 4);
    EXPECT_OUT(a, 0x62, 0x02, 0x00, 0x01);
    assert_int_equal(feed(a, id_pk(0x50, 1)), 4);
    EXPECT_OUT(a, 0x62, 0x02, 0x00, 0x01);
    assert_int_equal(feed(a, id_pk(0x70, 1)), 4);
    assert_int_equal(feed(a, id_pk(0x40, 2)), 4);
    EXPECT_NO_OUT(a);
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->deliveries[2], 1);
    assert_int_equal(st->deliveries[1], 1);
    assert_int_equal(feed(a, id_pk(0x70, 1)), -1); /* PUBCOMP for nothing */
}

/* A full queue drops its oldest QoS 0 message for a new one; order holds. */
static void test_queue_drops_oldest_qos0(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "a", .clean = true}, "t", 1);
    const char *pl[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 4; i++) /* the window */
        deliver_msg(fx, "t", pl[i], 1);
    a->out_len = 0;
    /* Nothing queued: a QoS 0 message goes at once (after the ones in flight). */
    assert_int_equal(deliver_msg(fx, "t", "e", 0), 1);
    expect_pkt(a, spub(0x30, 0, "t", "e", false));
    assert_int_equal(deliver_msg(fx, "t", "f", 1), 1);
    assert_int_equal(deliver_msg(fx, "t", "g", 0), 1); /* behind "f": queued */
    assert_int_equal(deliver_msg(fx, "t", "h", 1), 1);
    EXPECT_NO_OUT(a);
    assert_int_equal(deliver_msg(fx, "t", "i", 1), 1); /* full: drops "g" */
    assert_int_equal(session_mgr_queue_stats(fx->m)->dropped_oldest_0, 1);
    assert_int_equal(deliver_msg(fx, "t", "j", 0), 0); /* full of QoS 1: refused */
    assert_int_equal(session_mgr_queue_stats(fx->m)->refused_full, 1);
    assert_int_equal(feed(a, id_pk(0x40, 1)), 4);
    expect_pkt(a, spub(0x32, 5, "t", "f", false));
    assert_int_equal(feed(a, id_pk(0x40, 2)), 4);
    expect_pkt(a, spub(0x32, 6, "t", "h", false));
    assert_int_equal(feed(a, id_pk(0x40, 3)), 4);
    expect_pkt(a, spub(0x32, 7, "t", "i", false));
}

/* A persistent session: what is unacknowledged is resent after the
 * reconnect (PUBLISH with DUP, PUBREL), then what was queued while away;
 * nothing is kept for a clean session. */
static void test_persistent_resend_with_dup(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "p", .clean = false}, "r", 2);
    deliver_msg(fx, "r", "1", 1);
    deliver_msg(fx, "r", "2", 2);
    pk_t want = spub(0x32, 1, "r", "1", false), p = spub(0x34, 2, "r", "2", false);
    put(&want, p.b, p.n);
    expect_pkt(a, want);
    assert_int_equal(feed(a, id_pk(0x50, 2)), 4);
    EXPECT_OUT(a, 0x62, 0x02, 0x00, 0x02);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    assert_int_equal(deliver_msg(fx, "r", "3", 1), 1); /* kept for its return */
    assert_int_equal(deliver_msg(fx, "r", "4", 0), 1);
    a = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "p", .clean = false});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    want = (pk_t){.n = 0};
    put(&want, "\x20\x02\x01\x00", 4);
    p = spub(0x3a, 1, "r", "1", false); /* DUP */
    put(&want, p.b, p.n);
    put(&want, "\x62\x02\x00\x02", 4);
    p = spub(0x32, 3, "r", "3", false);
    put(&want, p.b, p.n);
    p = spub(0x30, 0, "r", "4", false);
    put(&want, p.b, p.n);
    expect_pkt(a, want);
    assert_int_equal(feed(a, id_pk(0x70, 2)), 4);
    assert_int_equal(feed(a, id_pk(0x40, 1)), 4);
    assert_int_equal(feed(a, id_pk(0x40, 3)), 4);
    EXPECT_NO_OUT(a);
    assert_int_equal(session_mgr_queue_stats(fx->m)->depth, 0);
    fconn_t *b = subscribed(fx, 1, (cn_t){.id = "c", .clean = true}, "r", 1);
    session_conn_lost(b->c, "gone");
    assert_int_equal(deliver_msg(fx, "r", "5", 1), 1); /* to p only */
}

/* What a session kept without a connection queues counts against
 * mqtt.max_session_bytes: past it a message is not queued (counted). */
static void test_detached_queue_within_session_bytes(void **state) {
    fx_t *fx = *state;
    fconn_t *a = subscribed(fx, 0, (cn_t){.id = "p", .clean = false}, "b", 1);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    const session_stats_t *st = session_mgr_stats(fx->m);
    uint64_t held0 = st->persistent_session_bytes;
    assert_int_equal(deliver_msg(fx, "b", "1", 1), 1);
    uint64_t held1 = st->persistent_session_bytes;
    assert_true(held1 > held0);
    assert_int_equal(deliver_msg(fx, "b", "2", 1), 1);
    uint64_t e = st->persistent_session_bytes - held1; /* one message */
    assert_int_equal(e, sizeof(dl_qentry_t) + sizeof(dl_msg_t) + 2 + 1);
    fx->cfg.mqtt.max_session_bytes = held1 + 2 * e; /* room for one more */
    assert_int_equal(deliver_msg(fx, "b", "3", 1), 1);
    assert_int_equal(deliver_msg(fx, "b", "4", 1), 0);
    assert_int_equal(st->delivery_session_bytes, 1);
    assert_int_equal(st->persistent_session_bytes, held1 + 2 * e);
    a = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "p", .clean = false});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    pk_t want = {.n = 0};
    put(&want, "\x20\x02\x01\x00", 4);
    const char *pl[] = {"1", "2", "3"};
    for (int i = 0; i < 3; i++) {
        pk_t p = spub(0x32, (uint16_t)(i + 1), "b", pl[i], false);
        put(&want, p.b, p.n);
    }
    expect_pkt(a, want);
    assert_int_equal(st->persistent_session_bytes, 0);
}

/* MQTT 5: the client's receive maximum is the window. */
static void test_v5_receive_maximum_window(void **state) {
    fx_t *fx = *state;
    fconn_t *a = open_conn(fx, 0);
    pk_t c = connect5((cn5_t){.id = "a", .clean = true, .props = "\x21\x00\x01", .props_len = 3});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    EXPECT_OUT(a, 0x20, 0x13, 0x00, 0x00, 0x10, CONNACK_PROPS);
    const char *f[] = {"t"};
    const uint8_t q[] = {1};
    pk_t s = sub_pk(1, f, q, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x01);
    deliver_msg(fx, "t", "1", 1);
    deliver_msg(fx, "t", "2", 1);
    expect_pkt(a, spub(0x32, 1, "t", "1", true));
    pk_t ack = {.b = {0x40, 0x03, 0x00, 0x01, 0x00}, .n = 5}; /* with a reason code */
    assert_int_equal(feed(a, ack), 5);
    expect_pkt(a, spub(0x32, 2, "t", "2", true));
}

/* ---- retained messages ---- */

/* A manager with fx->retained as its retained store. */
static void use_retained(fx_t *fx, const char *topic, const char *payload, uint8_t qos) {
    if (!fx->retained)
        fx->retained = dl_retained_new(10, 1000);
    assert_int_equal(
        dl_retained_set(fx->retained, topic, strlen(topic), payload, strlen(payload), qos), 0);
}

/* Back to a manager without it (teardown frees the manager only). */
static void drop_retained(fx_t *fx) {
    session_mgr_free(fx->m);
    fx->m = NULL;
    dl_retained_free(fx->retained);
    fx->retained = NULL;
    fx_start(fx);
}

/* A PUBLISH with RETAIN 1 is produced to its mapped topic and, with
 * `retained:`, to the retained topic: key = topic, mqtt.qos header, an empty
 * payload as a tombstone. A QoS 1/2 one is acked once both reports are in
 * (test_session_retain.c); nobody waits for a QoS 0 copy's report, and one
 * that fails is counted as a lost copy (a failed will's report is not). */
static void test_retain_publish_copied_to_retained_topic(void **state) {
    fx_t *fx = *state;
    fx->cfg.retained = (config_retained_t){.enabled = true, .topic = "ret"};
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    assert_int_equal(feed(a, publish_pk("t/r", "v", 1, 9, true)), 10);
    assert_int_equal(feed(a, publish_pk("t/r", "", 0, 0, true)), 7);
    assert_int_equal(feed(a, publish_pk("t/n", "w", 0, 0, false)), 8);
    assert_int_equal(fx->prod.n, 5);
    assert_string_equal(fx->prod.recs[0].topic, "kt");
    assert_string_equal(fx->prod.recs[1].topic, "ret");
    assert_memory_equal(fx->prod.recs[1].key, "t/r", 3);
    assert_int_equal(fx->prod.recs[1].value_len, 1);
    assert_string_equal(fx->prod.recs[1].headers, "mqtt.qos=1;");
    assert_int_equal(fx->prod.recs[1].opaque, fx->prod.recs[0].opaque | SESSION_OPAQUE_COPY_BIT);
    assert_string_equal(fx->prod.recs[3].topic, "ret");
    assert_int_equal(fx->prod.recs[3].value_len, 0);
    assert_string_equal(fx->prod.recs[3].headers, "mqtt.qos=0;");
    assert_int_equal(fx->prod.recs[3].opaque, SESSION_OPAQUE_RETAINED);
    assert_string_equal(fx->prod.recs[4].topic, "kt");
    deliver(fx, 0, 0);
    EXPECT_NO_OUT(a);
    deliver(fx, 1, 0);
    EXPECT_OUT(a, 0x40, 0x02, 0x00, 0x09);
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 0);
    session_on_delivery(fx->m, fx->prod.recs[3].opaque, 1, "Broker: Message size too large");
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 1);
    session_on_delivery(fx->m, SESSION_OPAQUE_WILL, 1, "Local: Message timed out");
    assert_int_equal(session_mgr_stats(fx->m)->retained_lost, 1);
}

/* A new subscription gets the matching retained messages after its SUBACK,
 * RETAIN 1, at min(retained QoS, granted QoS); a shared one does not. */
static void test_retained_on_subscribe(void **state) {
    fx_t *fx = *state;
    use_retained(fx, "r/a", "1", 2);
    use_retained(fx, "r/b", "2", 0);
    fx_restart(fx);
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    const char *f[] = {"r/a", "r/b", "$share/g/r/a", "x"};
    const uint8_t q[] = {1, 2, 2, 0};
    pk_t s = sub_pk(4, f, q, 4, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    pk_t want = {.n = 0};
    put(&want, "\x90\x06\x00\x04\x01\x02\x02\x00", 8);
    pk_t p = spub(0x33, 1, "r/a", "1", false); /* QoS 1, RETAIN */
    put(&want, p.b, p.n);
    p = spub(0x31, 0, "r/b", "2", false); /* QoS 0, RETAIN */
    put(&want, p.b, p.n);
    expect_pkt(a, want);
    /* Live messages after them have RETAIN 0. */
    assert_int_equal(deliver_msg(fx, "r/b", "3", 0), 1);
    expect_pkt(a, spub(0x30, 0, "r/b", "3", false));
    drop_retained(fx);
}

/* MQTT 5 retain handling: 0 always, 1 only for a new subscription, 2 never. */
static void test_v5_retain_handling(void **state) {
    fx_t *fx = *state;
    use_retained(fx, "r", "1", 0);
    fx_restart(fx);
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    const char *f[] = {"r"};
    const uint8_t rh1[] = {0x10}, rh2[] = {0x20}, rh0[] = {0x00};
    pk_t s = sub_pk(1, f, rh1, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    pk_t want = {.n = 0}, p = spub(0x31, 0, "r", "1", true);
    put(&want, "\x90\x04\x00\x01\x00\x00", 6);
    put(&want, p.b, p.n);
    expect_pkt(a, want);
    assert_int_equal(feed(a, s), (ssize_t)s.n); /* not new: nothing */
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x00);
    s = sub_pk(2, f, rh2, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x02, 0x00, 0x00);
    s = sub_pk(3, f, rh0, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    want.n = 0;
    put(&want, "\x90\x04\x00\x03\x00\x00", 6);
    put(&want, p.b, p.n);
    expect_pkt(a, want);
    drop_retained(fx);
}

/* MQTT 5 subscribers get the record's headers not named mqtt.* as user
 * properties (valid UTF-8 only, in order); 3.1.1 subscribers the same
 * PUBLISH without them. Queued messages keep them. */
static void test_v5_user_properties_from_headers(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    const char *f[] = {"t"};
    const uint8_t q0[] = {0}, q1[] = {1};
    pk_t s = sub_pk(1, f, q0, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x00);
    s = sub_pk(1, f, q1, 1, false);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x03, 0x00, 0x01, 0x01);
    const dl_header_t h[] = {
        {"mqtt.topic", "x", 1}, {"k", "v", 1}, {"bad", "\xff", 1}, {"k2", NULL, 0}};
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "p", 1, 1, h, 4), 2);
    EXPECT_OUT(a, 0x30, 0x13, 0x00, 0x01, 't', 0x0e, 0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', 0x26,
               0x00, 0x02, 'k', '2', 0x00, 0x00, 'p');
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x01, 'p');
    s = sub_pk(2, f, q1, 1, true); /* now QoS 1: through the queue */
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x02, 0x00, 0x01);
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "p", 1, 1, h + 1, 1), 2);
    EXPECT_OUT(a, 0x32, 0x0e, 0x00, 0x01, 't', 0x00, 0x01, 0x07, 0x26, 0x00, 0x01, 'k', 0x00, 0x01,
               'v', 'p');
    EXPECT_OUT(b, 0x32, 0x06, 0x00, 0x01, 't', 0x00, 0x02, 'p');
}

/* MQTT 5 subscription identifiers: each matching subscription's, in the
 * PUBLISH to that client (queued ones and retained ones too), none for
 * 3.1.1 clients or subscriptions without one. */
static void test_v5_subscription_identifiers(void **state) {
    fx_t *fx = *state;
    use_retained(fx, "z/r", "R", 0);
    fx_restart(fx);
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    /* SUBSCRIBE id 4, subscription identifier 5, "z/#" QoS 0 */
    pk_t id = {.b = {0x82, 0x0b, 0x00, 0x04, 0x02, 0x0b, 0x05, 0x00, 0x03, 'z', '/', '#', 0x00},
               .n = 13};
    assert_int_equal(feed(b, id), 13);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x04, 0x00, 0x00, /* then the retained one with id 5 */
               0x31, 0x09, 0x00, 0x03, 'z', '/', 'r', 0x02, 0x0b, 0x05, 'R');
    assert_int_equal(deliver_msg(fx, "z/a", "", 0), 1);
    EXPECT_OUT(b, 0x30, 0x08, 0x00, 0x03, 'z', '/', 'a', 0x02, 0x0b, 0x05);
    /* identifier 200 (two bytes) on "+/a" QoS 1: both ids, one PUBLISH */
    pk_t id2 = {
        .b = {0x82, 0x0c, 0x00, 0x05, 0x03, 0x0b, 0xc8, 0x01, 0x00, 0x03, '+', '/', 'a', 0x01},
        .n = 14};
    assert_int_equal(feed(b, id2), 14);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x05, 0x00, 0x01);
    assert_int_equal(deliver_msg(fx, "z/a", "q", 1), 1);
    assert_int_equal(b->out_len, 16);
    assert_memory_equal(b->out, "\x32\x0e\x00\x03z/a\x00\x01\x05", 10);
    /* the two ids, in either order */
    assert_true(memcmp(b->out + 10, "\x0b\xc8\x01\x0b\x05", 5) == 0 ||
                memcmp(b->out + 10, "\x0b\x05\x0b\xc8\x01", 5) == 0);
    assert_int_equal(b->out[15], 'q');
    b->out_len = 0;
    drop_retained(fx);
}

/* MQTT 5 no local: a record whose mqtt.client_id header names the
 * subscriber skips its no-local subscriptions; retain as published: the
 * record's mqtt.retain header sets RETAIN. */
static void test_v5_no_local_and_retain_as_published(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    const char *f[] = {"t"}, *all[] = {"#"};
    const uint8_t nl1[] = {0x05}, rap0[] = {0x08}, plain0[] = {0x00};
    pk_t s = sub_pk(1, f, nl1, 1, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x01, 0x00, 0x01);
    s = sub_pk(1, f, rap0, 1, true);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x01, 0x00, 0x00);
    const dl_header_t from_a[] = {
        {"mqtt.topic", "t", 1}, {"mqtt.client_id", "a", 1}, {"mqtt.retain", "1", 1}};
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "p", 1, 1, from_a, 3), 1);
    EXPECT_NO_OUT(a);
    EXPECT_OUT(b, 0x31, 0x05, 0x00, 0x01, 't', 0x00, 'p'); /* RETAIN as published */
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "q", 1, 1, from_a, 2), 1);
    EXPECT_OUT(b, 0x30, 0x05, 0x00, 0x01, 't', 0x00, 'q'); /* no mqtt.retain: 0 */
    s = sub_pk(2, all, plain0, 1, true);                   /* a subscription without no local */
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x02, 0x00, 0x00);
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "r", 1, 1, from_a, 3), 2);
    EXPECT_OUT(a, 0x30, 0x05, 0x00, 0x01, 't', 0x00, 'r'); /* at that one's QoS 0 */
    EXPECT_OUT(b, 0x31, 0x05, 0x00, 0x01, 't', 0x00, 'r');
    const dl_header_t from_b[] = {{"mqtt.client_id", "b", 1}};
    assert_int_equal(session_mgr_deliver(fx->m, "t", 1, "s", 1, 1, from_b, 1), 2);
    EXPECT_OUT(a, 0x32, 0x07, 0x00, 0x01, 't', 0x00, 0x01, 0x00, 's'); /* QoS 1 of "t" */
}

/* A keep alive of 0 stays 0, so connected5's CONNACK has no server keep alive. */
static int setup_s(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    ((fx_t *)*state)->cfg.mqtt.max_queued_messages = 3;
    return 0;
}

static int setup_s_auth(void **state) {
    setup_auth(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    ((fx_t *)*state)->cfg.mqtt.max_queued_messages = 3;
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
        cmocka_unit_test_setup_teardown(test_qos1_window_queue_and_acks, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_flow, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_packet_ids_wrap_around_one_in_flight, setup_s,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_queue_drops_oldest_qos0, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_resend_with_dup, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_v5_receive_maximum_window, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_detached_queue_within_session_bytes, setup_s,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retain_publish_copied_to_retained_topic, setup_s,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retained_on_subscribe, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_v5_retain_handling, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_v5_user_properties_from_headers, setup_s, teardown),
        cmocka_unit_test_setup_teardown(test_v5_no_local_and_retain_as_published, setup_s,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v5_subscription_identifiers, setup_s, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
