/* MQTT 3.1 ("MQIsdp" level 3) and the strict string rules of CONNECT and
 * PUBLISH (issue 13), at the session: exact bytes out, the log line, the close. */
#include "session_fixture.h"

static const char *refused(fconn_t *f, pk_t p) {
    log_capture_begin();
    ssize_t r = feed(f, p);
    const char *log = log_capture_end();
    assert_int_equal(r, -1);
    assert_int_equal(f->closes, 1);
    assert_true(session_conn_closed(f->c));
    return log;
}

static void assert_logged(const char *log, const char *line) {
    if (!strstr(log, line))
        fail_msg("no line \"%s\" in:\n%s", line, log);
}

#define V31(...) ((cn_t){.name = "MQIsdp", .level = 3, __VA_ARGS__})

/* An MQTT 3.1 client connects, publishes and is acknowledged as 3.1.1 is. */
static void test_mqtt31_connect_and_publish(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    pk_t p = connect_pk(V31(.id = "dev31", .clean = true, .keepalive = 30));
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
    assert_logged(log, "client=dev31 addr=127.0.0.1:5000 connected (MQTT 3.1, clean session 1, "
                       "keepalive 30 s, session present 0)\n");
    assert_int_equal(feed(f, publish_pk("t/a", "x", 1, 7, false)), 10);
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].headers,
                        "mqtt.topic=t/a;mqtt.client_id=dev31;mqtt.qos=1;");
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 0x02, 0x00, 0x07);
    assert_int_equal(feed(f, publish_pk("t/a", "y", 2, 8, false)), 10);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x50, 0x02, 0x00, 0x08);
    assert_int_equal(feed(f, id_pk(0x62, 8)), 4);
    EXPECT_OUT(f, 0x70, 0x02, 0x00, 0x08);
    assert_int_equal(feed(f, frame(0xc0, &(pk_t){.n = 0})), 2);
    EXPECT_OUT(f, 0xd0, 0x00);
}

/* MQTT 3.1's CONNACK has no session present flag (its first byte is
 * reserved): a resumed session answers 00 where 3.1.1 answers 01. */
static void test_mqtt31_no_session_present(void **state) {
    fx_t *fx = *state;
    pk_t disconnect = frame(0xe0, &(pk_t){.n = 0});
    fconn_t *f = connected(fx, 0, V31(.id = "keep", .clean = false));
    assert_int_equal(feed(f, disconnect), -1);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
    f = connected(fx, 1, V31(.id = "keep", .clean = false)); /* CONNACK 20 02 00 00 */
    assert_int_equal(feed(f, disconnect), -1);
    /* The same session resumed by a 3.1.1 client does show it. */
    f = open_conn(fx, 2);
    pk_t p = connect_pk((cn_t){.id = "keep", .clean = false});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
}

/* MQTT 3.1: a client id has 1 to 23 bytes, else CONNACK 0x02 (also an empty
 * one with clean session 1, which 3.1.1 accepts [MQTT-3.1.3-6]). */
static void test_mqtt31_client_id_length(void **state) {
    fx_t *fx = *state;
    static const char id24[] = "abcdefghijklmnopqrstuvwx";
    const char *log = refused(open_conn(fx, 0), connect_pk(V31(.id = "", .clean = true)));
    EXPECT_OUT(&fx->conns[0], 0x20, 0x02, 0x00, 0x02);
    assert_logged(log, "closing: client id of 0 bytes: MQTT 3.1 allows 1 to 23\n");
    log = refused(open_conn(fx, 1), connect_pk(V31(.id = id24, .clean = true)));
    EXPECT_OUT(&fx->conns[1], 0x20, 0x02, 0x00, 0x02);
    assert_logged(log, "closing: client id of 24 bytes: MQTT 3.1 allows 1 to 23\n");
    assert_int_equal(session_mgr_stats(fx->m)->connack_refused[MQTT_CONNACK_ID_REJECTED], 2);
    connected(fx, 2, V31(.id = id24 + 1, .clean = true)); /* 23 bytes */
    connected(fx, 3, V31(.id = "a", .clean = true));
}

/* "MQIsdp" names MQTT 3.1, level 3; another level is refused with CONNACK
 * 0x01 and a line that says so [MQTT-3.1.2-2]. */
static void test_mqisdp_other_level(void **state) {
    fx_t *fx = *state;
    static const uint8_t levels[] = {4, 5};
    for (size_t i = 0; i < sizeof(levels); i++) {
        fx_restart(fx);
        fconn_t *f = open_conn(fx, 0);
        const char *log =
            refused(f, connect_pk((cn_t){.name = "MQIsdp", .level = levels[i], .id = "a"}));
        EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x01);
        char want[128];
        snprintf(want, sizeof(want),
                 "closing: unsupported protocol level %u for \"MQIsdp\" (only 3, MQTT 3.1) "
                 "[MQTT-3.1.2-2]\n",
                 levels[i]);
        assert_logged(log, want);
    }
}

/* A client id with a control character or a non-character: CONNACK 0x02, in
 * 3.1.1 and 3.1; the line shows the id with '?' for control bytes. */
static void test_client_id_strict(void **state) {
    fx_t *fx = *state;
    static const struct {
        const char *id;
        const char *line;
    } cases[] = {
        {"a\x01", "closing: client id 'a?' refused: string contains a control character "
                  "(U+0001..U+001F, U+007F..U+009F)\n"},
        {"a\x7f", "closing: client id 'a?' refused: string contains a control character "
                  "(U+0001..U+001F, U+007F..U+009F)\n"},
        {"a\xc2\x80", "closing: client id 'a\\u0080' refused: string contains a control "
                      "character (U+0001..U+001F, U+007F..U+009F)\n"},
        {"a\xef\xb7\x90", "closing: client id 'a\xef\xb7\x90' refused: string contains a "
                          "non-character (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int v31 = 0; v31 < 2; v31++) {
            fx_restart(fx);
            cn_t cn = {.id = cases[i].id, .clean = true};
            if (v31)
                cn = V31(.id = cases[i].id, .clean = true);
            fconn_t *f = open_conn(fx, 0);
            const char *log = refused(f, connect_pk(cn));
            EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x02);
            assert_logged(log, cases[i].line);
            const session_stats_t *st = session_mgr_stats(fx->m);
            assert_int_equal(st->connack_refused[MQTT_CONNACK_ID_REJECTED], 1);
            assert_int_equal(session_mgr_session_count(fx->m), 0);
        }
    }
    /* Printable ASCII and other characters pass. */
    connected(fx, 1, (cn_t){.id = "a b~\xc2\xa0\xef\xbf\xbd", .clean = true});
}

/* A user name or a will topic with a control character or a non-character:
 * closed without CONNACK (3.1.1 has no code for it), one line. */
static void test_user_and_will_topic_strict(void **state) {
    fx_t *fx = *state;
    static const struct {
        cn_t cn;
        const char *line;
    } cases[] = {
        {{.id = "a", .clean = true, .user = "u\x1f"},
         "closing: MQTT_ERR_UTF8_CONTROL: string contains a control character "
         "(U+0001..U+001F, U+007F..U+009F)\n"},
        {{.id = "a", .clean = true, .user = "\xef\xbf\xbf", .pass = "p"},
         "closing: MQTT_ERR_UTF8_NONCHARACTER: string contains a non-character "
         "(U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)\n"},
        {{.id = "a", .clean = true, .will_topic = "w/\xc2\x9f", .will_payload = "x"},
         "closing: MQTT_ERR_UTF8_CONTROL: string contains a control character "
         "(U+0001..U+001F, U+007F..U+009F)\n"},
        {{.name = "MQIsdp", .level = 3, .id = "a", .will_topic = "w\x0a", .will_payload = "x"},
         "closing: MQTT_ERR_UTF8_CONTROL: string contains a control character "
         "(U+0001..U+001F, U+007F..U+009F)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx_restart(fx);
        fconn_t *f = open_conn(fx, 0);
        const char *log = refused(f, connect_pk(cases[i].cn));
        EXPECT_NO_OUT(f);
        assert_logged(log, cases[i].line);
    }
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

/* A PUBLISH topic with a control character or a non-character: closed, the
 * will published (a protocol error is an abnormal end), nothing produced. */
static void test_publish_topic_strict(void **state) {
    fx_t *fx = *state;
    static const char *const topics[] = {"t/\x01", "t/\x7f", "t/\xc2\x85", "t/\xef\xbf\xbe"};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        fconn_t *f = connected(fx, (int)i, (cn_t){.id = "p", .clean = true});
        const char *log = refused(f, publish_pk(topics[i], "x", 1, 1, false));
        EXPECT_NO_OUT(f);
        assert_logged(log, i < 3 ? "closing: MQTT_ERR_UTF8_CONTROL: "
                                 : "closing: "
                                   "MQTT_ERR_UTF8_NONCHARACTER: ");
    }
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_error_kinds[-MQTT_ERR_UTF8_CONTROL], 3);
    assert_int_equal(session_mgr_stats(fx->m)->protocol_error_kinds[-MQTT_ERR_UTF8_NONCHARACTER],
                     1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_mqtt31_connect_and_publish), T(test_mqtt31_no_session_present),
        T(test_mqtt31_client_id_length),    T(test_mqisdp_other_level),
        T(test_client_id_strict),           T(test_user_and_will_topic_strict),
        T(test_publish_topic_strict),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
