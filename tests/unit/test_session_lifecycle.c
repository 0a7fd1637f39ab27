/* Session lifecycle: the will, takeover, keepalive and CONNECT timeouts, the
 * connection log rate limit and persistent (clean session 0) sessions, with
 * the fake producer and clock of session_fixture.h. */
#include "session_fixture.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
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
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
