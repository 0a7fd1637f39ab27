/* The bounds on one session's subscriptions (issue 15): the count
 * (mqtt.max_subscriptions_per_session) and the filters' bytes
 * (mqtt.max_subscription_bytes_per_session); past either a new filter is
 * refused (SUBACK 0x80, MQTT 5 0x97), counted and logged, a held one is
 * still replaced, and UNSUBSCRIBE gives the room back. */
#include "subscribe_fixture.h"

/* 3.1.1, a bound of 2: the third new filter gets 0x80, the held one is
 * replaced; an UNSUBSCRIBE makes room; other sessions have their own. */
static void test_count_bound_311(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_subscriptions_per_session = 2;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    const char *f[] = {"a/1", "a/2", "a/3", "a/1"};
    const uint8_t q[] = {0, 1, 1, 2};
    log_capture_begin();
    pk_t s = sub_pk(5, f, q, 4, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    const char *log = log_capture_end();
    EXPECT_OUT(a, 0x90, 0x06, 0x00, 0x05, 0x00, 0x01, 0x80, 0x02);
    assert_non_null(strstr(log, "client a: SUBSCRIBE to 'a/3' refused: the session holds 2 "
                                "subscriptions of 6 bytes (mqtt.max_subscriptions_per_session 2, "
                                "mqtt.max_subscription_bytes_per_session 4096)\n"));
    assert_int_equal(session_mgr_subscription_count(fx->m), 2);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_quota, 1);
    assert_int_equal(session_mgr_deliver(fx->m, "a/3", 3, "x", 1, 0, NULL, 0),
                     0); /* not subscribed */
    assert_int_equal(session_mgr_deliver(fx->m, "a/1", 3, "x", 1, 0, NULL, 0), 1);
    EXPECT_OUT(a, 0x30, 0x06, 0x00, 0x03, 'a', '/', '1', 'x');
    s = sub_pk(6, f + 2, q + 2, 1, false);
    assert_int_equal(feed(b, s), (ssize_t)s.n); /* b's own bound */
    EXPECT_OUT(b, 0x90, 0x03, 0x00, 0x06, 0x01);
    pk_t u = unsub_pk(7, "a/2", false);
    assert_int_equal(feed(a, u), (ssize_t)u.n);
    EXPECT_OUT(a, 0xb0, 0x02, 0x00, 0x07);
    u = unsub_pk(8, "a/9", false); /* none held: no room made */
    assert_int_equal(feed(a, u), (ssize_t)u.n);
    EXPECT_OUT(a, 0xb0, 0x02, 0x00, 0x08);
    s = sub_pk(9, f + 2, q + 2, 2, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x09, 0x01, 0x02);
    assert_int_equal(session_mgr_subscription_count(fx->m), 3);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_quota, 1);
}

/* MQTT 5, a bound of 11 filter bytes: 0x97 quota exceeded; a shared
 * subscription counts its whole filter; UNSUBSCRIBE gives its bytes back. */
static void test_bytes_bound_v5(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_subscription_bytes_per_session = 11;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    const char *f[] = {"abcd", "efghij", "$share/g/t", "k", "lmnopq"};
    const uint8_t q[] = {1, 1, 1, 1, 1};
    pk_t s = sub_pk(3, f, q, 5, true);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x08, 0x00, 0x03, 0x00, 0x01, 0x01, 0x97, 0x01, 0x97);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_quota, 2);
    pk_t u = unsub_pk(4, "efghij", true);
    assert_int_equal(feed(a, u), (ssize_t)u.n);
    EXPECT_OUT(a, 0xb0, 0x04, 0x00, 0x04, 0x00, 0x00);
    s = sub_pk(5, f + 4, q + 4, 1, true); /* 5 + 6 bytes */
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x04, 0x00, 0x05, 0x00, 0x01);
    assert_int_equal(session_mgr_subscription_count(fx->m), 3);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_quota, 2);
    /* a filter longer than the bound alone (refused before the trie is touched) */
    fconn_t *b = connected5(fx, 1, (cn5_t){.id = "b", .clean = true});
    const char *lf[] = {"a/b/c/d/e/f/"};
    s = sub_pk(6, lf, q, 1, true);
    assert_int_equal(feed(b, s), (ssize_t)s.n);
    EXPECT_OUT(b, 0x90, 0x04, 0x00, 0x06, 0x00, 0x97);
    assert_int_equal(session_mgr_stats(fx->m)->subscribe_quota, 3);
    assert_int_equal(session_mgr_subscription_count(fx->m), 3);
}

/* A persistent session keeps its count: the client back finds its room
 * used; a clean start begins at 0. */
static void test_bound_across_reconnect(void **state) {
    fx_t *fx = *state;
    fx->cfg.mqtt.max_subscriptions_per_session = 1;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = false});
    const char *f[] = {"x", "y"};
    const uint8_t q[] = {0, 0};
    pk_t s = sub_pk(1, f, q, 1, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x03, 0x00, 0x01, 0x00);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    a = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "a", .clean = false});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    EXPECT_OUT(a, 0x20, 0x02, 0x01, 0x00); /* session present */
    s = sub_pk(2, f + 1, q + 1, 1, false);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x03, 0x00, 0x02, 0x80);
    session_conn_lost(a->c, "gone");
    session_conn_free(a->c);
    a = open_conn(fx, 0);
    c = connect_pk((cn_t){.id = "a", .clean = true});
    assert_int_equal(feed(a, c), (ssize_t)c.n);
    EXPECT_OUT(a, 0x20, 0x02, 0x00, 0x00);
    assert_int_equal(feed(a, s), (ssize_t)s.n);
    EXPECT_OUT(a, 0x90, 0x03, 0x00, 0x02, 0x00);
}

/* MQTT 5: a PUBLISH carries the identifiers of every matching subscription,
 * here 64 of 5 bytes each (2^21 + k), past the 255 bytes once kept. */
static void test_v5_many_subscription_identifiers(void **state) {
    fx_t *fx = *state;
    fconn_t *a = connected5(fx, 0, (cn5_t){.id = "a", .clean = true});
    for (uint8_t k = 1; k <= 64; k++) {
        char f[12]; /* a/b/c/d/e/f with '+' at the levels of k - 1's bits */
        for (int l = 0; l < 6; l++) {
            f[2 * l] = (char)((k - 1) >> l & 1 ? '+' : 'a' + l);
            f[2 * l + 1] = l < 5 ? '/' : '\0';
        }
        pk_t b = {.n = 0};
        put_u16(&b, k);
        put_u8(&b, 5); /* properties: subscription identifier 2^21 + k */
        const uint8_t id[] = {0x0b, (uint8_t)(0x80 | k), 0x80, 0x80, 0x01};
        put(&b, id, sizeof(id));
        put_str(&b, f);
        put_u8(&b, 0);
        pk_t s = frame(0x82, &b);
        assert_int_equal(feed(a, s), (ssize_t)s.n);
        const uint8_t suback[] = {0x90, 0x04, 0x00, k, 0x00, 0x00};
        expect_out(a, suback, sizeof(suback));
    }
    assert_int_equal(session_mgr_deliver(fx->m, "a/b/c/d/e/f", 11, "p", 1, 0, NULL, 0), 1);
    /* 0x30, remaining 2 + 11 + 2 (property length 320) + 320 + 1 = 336 */
    assert_int_equal(a->out_len, 3 + 336);
    assert_memory_equal(a->out,
                        "\x30\xd0\x02\x00\x0b"
                        "a/b/c/d/e/f\xc0\x02",
                        18);
    bool seen[65] = {false};
    for (size_t i = 18; i < 18 + 320; i += 5) {
        assert_memory_equal(a->out + i + 2, "\x80\x80\x01", 3);
        assert_int_equal(a->out[i], 0x0b);
        uint8_t k = a->out[i + 1] & 0x7f;
        assert_in_range(k, 1, 64);
        assert_false(seen[k]);
        seen[k] = true;
    }
    assert_int_equal(a->out[338], 'p');
    a->out_len = 0;
}

static int setup_l(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_count_bound_311, setup_l, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_bound_v5, setup_l, teardown),
        cmocka_unit_test_setup_teardown(test_bound_across_reconnect, setup_l, teardown),
        cmocka_unit_test_setup_teardown(test_v5_many_subscription_identifiers, setup_l, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
