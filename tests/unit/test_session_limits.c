/* Session backpressure (the in-flight window, a full producer queue, the
 * output bound) and the packets a client may not send, with the fakes of
 * session_fixture.h. */
#include "session_fixture.h"

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
    /* Fed twice, received once (and g's). */
    assert_int_equal(session_mgr_stats(fx->m)->messages_received[1], 2);
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

/* The in-flight ring at its largest: mqtt.max_inflight 65535 (the setting's
 * bound; the ring's counters are 16 bits to keep session_t small). The first
 * PUBLISH waits for its report; the 65,534 after it are unmapped and dropped,
 * complete on arrival, and wait behind it (acks go in arrival order), so the
 * ring holds 65,535 entries and the window is full; one report acks them all,
 * in order. A counter that wrapped would lose or reorder acks. */
typedef struct {
    size_t acks;
    uint16_t next;
    bool bad, paused;
} ack_count_t;

static int ac_send(void *ud, const void *buf, size_t len) {
    ack_count_t *a = ud;
    const uint8_t *b = buf;
    for (size_t i = 0; i + 4 <= len; i += 4) {
        if (b[i] == 0x20) /* the CONNACK */
            continue;
        if (b[i] != 0x40 || b[i + 1] != 2 || (uint16_t)(b[i + 2] << 8 | b[i + 3]) != a->next)
            a->bad = true;
        a->next++;
        a->acks++;
    }
    a->bad |= len % 4 != 0;
    return 0;
}
static void ac_close(void *ud) {
    ((ack_count_t *)ud)->bad = true;
}
static void ac_pause(void *ud) {
    ((ack_count_t *)ud)->paused = true;
}
static void ac_resume(void *ud) {
    ((ack_count_t *)ud)->paused = false;
}

static void test_inflight_ring_at_65535(void **state) {
    static const session_conn_ops_t ops = {ac_send, ac_close, ac_pause, ac_resume, NULL};
    fx_t *fx = *state;
    fx->cfg.mqtt.max_inflight = 65535;
    fx->cfg.unmapped = UNMAPPED_DROP;
    ack_count_t a = {.next = 1};
    session_conn_t *c = session_conn_new(fx->m, &ops, &a, "127.0.0.1:5000");
    assert_non_null(c);
    pk_t con = connect_pk((cn_t){.id = "dev1", .clean = true});
    assert_int_equal(session_feed(c, con.b, con.n), (ssize_t)con.n);
    pk_t first = publish_pk("t/a", "x", 1, 1, false);
    assert_int_equal(session_feed(c, first.b, first.n), (ssize_t)first.n);
    for (uint32_t id = 2; id <= 65535; id++) {
        pk_t p = publish_pk("other", "x", 1, (uint16_t)id, false);
        assert_int_equal(session_feed(c, p.b, p.n), (ssize_t)p.n);
    }
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_conn_inflight(c), 65535);
    assert_true(a.paused);
    assert_true(session_conn_paused(c));
    pk_t more = publish_pk("other", "x", 1, 1, false);
    assert_int_equal(session_feed(c, more.b, more.n), 0);
    assert_int_equal(a.acks, 0);
    deliver(fx, 0, 0);
    assert_false(a.bad);
    assert_int_equal(a.acks, 65535);
    assert_int_equal(session_conn_inflight(c), 0);
    assert_false(a.paused);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_inflight_window_pauses_and_resumes),
        T(test_queue_full_retries_same_packet),
        T(test_queue_full_tick_retries),
        T(test_output_bound_closes),
        T(test_subscribe_unsubscribe_ping),
        T(test_violations_close),
        T(test_inflight_ring_at_65535),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
