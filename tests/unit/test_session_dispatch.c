/* The dispatch table (src/mqtt/dispatch.c): which packet may come before
 * CONNECT, after it, and at which protocol level; each refusal closes the
 * connection with the log line and counter it had before the table. */
#include "session_fixture.h"

#include "../../src/mqtt/session_int.h" /* white box: the connection's level */

static const char *closing_line(fx_t *fx, fconn_t *f, pk_t p) {
    log_capture_begin();
    ssize_t r = feed(f, p);
    const char *log = log_capture_end();
    assert_int_equal(r, -1);
    assert_int_equal(f->closes, 1);
    assert_int_equal(fx->prod.n, 0);
    return log;
}

static void assert_logged(const char *log, const char *line) {
    if (!strstr(log, line))
        fail_msg("no line \"%s\" in:\n%s", line, log);
}

static pk_t raw(const uint8_t *b, size_t n) {
    pk_t p = {.n = n};
    memcpy(p.b, b, n);
    return p;
}

/* One of each packet a client can send or a server sends, but CONNECT. */
static const struct {
    uint8_t b[8];
    size_t n;
    const char *name;
} others[] = {
    {{0x20, 0x02, 0x00, 0x00}, 4, "CONNACK"},
    {{0x30, 0x04, 0x00, 0x02, 't', '/'}, 6, "PUBLISH"},
    {{0x40, 0x02, 0x00, 0x01}, 4, "PUBACK"},
    {{0x50, 0x02, 0x00, 0x01}, 4, "PUBREC"},
    {{0x62, 0x02, 0x00, 0x01}, 4, "PUBREL"},
    {{0x70, 0x02, 0x00, 0x01}, 4, "PUBCOMP"},
    {{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, 8, "SUBSCRIBE"},
    {{0x90, 0x03, 0x00, 0x01, 0x00}, 5, "SUBACK"},
    {{0xa2, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'}, 7, "UNSUBSCRIBE"},
    {{0xb0, 0x02, 0x00, 0x01}, 4, "UNSUBACK"},
    {{0xc0, 0x00}, 2, "PINGREQ"},
    {{0xd0, 0x00}, 2, "PINGRESP"},
    {{0xe0, 0x00}, 2, "DISCONNECT"},
};
#define N_OTHERS (sizeof(others) / sizeof(others[0]))

static void test_only_connect_before_connect(void **state) {
    fx_t *fx = *state;
    for (size_t i = 0; i < N_OTHERS; i++) {
        fx_restart(fx);
        fconn_t *f = open_conn(fx, 0);
        const char *log = closing_line(fx, f, raw(others[i].b, others[i].n));
        char want[128];
        snprintf(want, sizeof(want),
                 "warn  client=- addr=127.0.0.1:5000 closing: first packet is %s, not CONNECT "
                 "[MQTT-3.1.0-1]\n",
                 others[i].name);
        assert_logged(log, want);
        EXPECT_NO_OUT(f);
        const session_stats_t *st = session_mgr_stats(fx->m);
        assert_int_equal(st->protocol_error_kinds[SESSION_ERR_FIRST_PACKET_NOT_CONNECT], 1);
        assert_int_equal(st->refused_protocol_errors, 1);
        assert_int_equal(st->packets_received[others[i].b[0] >> 4], 1);
    }
}

/* After CONNECT: the rows that refuse (a second CONNECT, the server's
 * packets, acks for PUBLISHes the server never sent). */
static void test_refusing_rows_after_connect(void **state) {
    fx_t *fx = *state;
    static const struct {
        size_t other; /* index in others[], or N_OTHERS for a second CONNECT */
        int kind;
        const char *line;
    } cases[] = {
        {N_OTHERS, SESSION_ERR_SECOND_CONNECT, "closing: second CONNECT [MQTT-3.1.0-2]\n"},
        {0, SESSION_ERR_SERVER_ONLY_PACKET, "closing: CONNACK is a server-only packet\n"},
        {7, SESSION_ERR_SERVER_ONLY_PACKET, "closing: SUBACK is a server-only packet\n"},
        {9, SESSION_ERR_SERVER_ONLY_PACKET, "closing: UNSUBACK is a server-only packet\n"},
        {11, SESSION_ERR_SERVER_ONLY_PACKET, "closing: PINGRESP is a server-only packet\n"},
        {2, SESSION_ERR_UNEXPECTED_ACK,
         "closing: unexpected PUBACK for id 1 (no server PUBLISH awaits it)\n"},
        {3, SESSION_ERR_UNEXPECTED_ACK,
         "closing: unexpected PUBREC for id 1 (no server PUBLISH awaits it)\n"},
        {5, SESSION_ERR_UNEXPECTED_ACK,
         "closing: unexpected PUBCOMP for id 1 (no server PUBLISH awaits it)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_restart(fx);
        fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
        pk_t p = cases[i].other == N_OTHERS
                     ? connect_pk((cn_t){.id = "dev1", .clean = true})
                     : raw(others[cases[i].other].b, others[cases[i].other].n);
        const char *log = closing_line(fx, f, p);
        assert_logged(log, cases[i].line);
        EXPECT_NO_OUT(f);
        const session_stats_t *st = session_mgr_stats(fx->m);
        assert_int_equal(st->protocol_error_kinds[cases[i].kind], 1);
        assert_int_equal(st->protocol_errors, 1);
        assert_int_equal(st->refused_protocol_errors, 0);
    }
}

/* A CONNECT named "MQTT" at a level the table does not serve (3 is
 * "MQIsdp"'s, 5 is served since MQTT 5) gets CONNACK 0x01. */
static void test_connect_at_an_unserved_level(void **state) {
    fx_t *fx = *state;
    static const uint8_t levels[] = {3, 6};
    for (size_t i = 0; i < sizeof(levels); i++) {
        fx_restart(fx);
        fconn_t *f = open_conn(fx, 0);
        const char *log = closing_line(
            fx, f, connect_pk((cn_t){.id = "dev1", .clean = true, .level = levels[i]}));
        char want[128];
        snprintf(want, sizeof(want),
                 "closing: unsupported protocol level %u (only 4, MQTT 3.1.1) [MQTT-3.1.2-2]\n",
                 levels[i]);
        assert_logged(log, want);
        EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x01);
        assert_int_equal(session_mgr_stats(fx->m)->connack_refused[MQTT_CONNACK_BAD_PROTOCOL], 1);
    }
}

/* A packet whose row does not include the connection's level: no row
 * serves level 6, so a connection at it may send nothing. */
static void test_packet_not_allowed_at_the_level(void **state) {
    fx_t *fx = *state;
    for (size_t i = 0; i < N_OTHERS; i++) {
        fx_restart(fx);
        fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
        assert_int_equal(f->c->level, 4);
        f->c->level = 6;
        const char *log = closing_line(fx, f, raw(others[i].b, others[i].n));
        char want[64];
        snprintf(want, sizeof(want), "closing: unexpected packet type %d\n", others[i].b[0] >> 4);
        assert_logged(log, want);
        EXPECT_NO_OUT(f);
        const session_stats_t *st = session_mgr_stats(fx->m);
        assert_int_equal(st->protocol_error_kinds[SESSION_ERR_UNEXPECTED_PACKET_TYPE], 1);
    }
}

/* The rows that serve level 4 reach their handlers. */
static void test_served_rows(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    assert_int_equal(feed(f, raw(others[1].b, others[1].n)), (ssize_t)others[1].n);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(feed(f, raw(others[4].b, others[4].n)), (ssize_t)others[4].n);
    EXPECT_OUT(f, 0x70, 0x02, 0x00, 0x01);
    assert_int_equal(feed(f, raw(others[6].b, others[6].n)), (ssize_t)others[6].n);
    EXPECT_OUT(f, 0x90, 0x03, 0x00, 0x01, 0x00);
    assert_int_equal(feed(f, raw(others[8].b, others[8].n)), (ssize_t)others[8].n);
    EXPECT_OUT(f, 0xb0, 0x02, 0x00, 0x01);
    assert_int_equal(feed(f, raw(others[10].b, others[10].n)), 2);
    EXPECT_OUT(f, 0xd0, 0x00);
    assert_int_equal(feed(f, raw(others[12].b, others[12].n)), -1);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_errors, 0);
}

/* A connection's states, as the public API shows them. */
static void test_connection_states(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(f->c->state, CONN_NEW);
    pk_t p = connect_pk((cn_t){.id = "dev1", .clean = true});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(f->c->state, CONN_CONNECTED);
    /* The output bound: CLOSING while the packet is handled, then CLOSED. */
    f->fail_send = true;
    assert_int_equal(feed(f, raw(others[10].b, others[10].n)), -1);
    assert_int_equal(f->c->state, CONN_CLOSED);
    assert_true(session_conn_closed(f->c));
    assert_int_equal(f->closes, 1);
}

/* Session ids wrap below 2^31 and skip the ids still held (the delivery
 * reports find their session by id). */
static void test_session_ids_skip_those_in_use(void **state) {
    fx_t *fx = *state;
    fconn_t *keep = connected(fx, 0, (cn_t){.id = "keep", .clean = false});
    assert_int_equal(keep->c->s->id, 1);
    fx->m->next_session_id = INT32_MAX - 1;
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = true});
    assert_int_equal(b->c->s->id, INT32_MAX);
    fconn_t *c = connected(fx, 2, (cn_t){.id = "c", .clean = true});
    assert_int_equal(c->c->s->id, 2); /* 1 is the persistent session's */
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_only_connect_before_connect),
        T(test_refusing_rows_after_connect),
        T(test_connect_at_an_unserved_level),
        T(test_packet_not_allowed_at_the_level),
        T(test_served_rows),
        T(test_connection_states),
        T(test_session_ids_skip_those_in_use),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
