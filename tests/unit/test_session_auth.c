/* Authentication and the publish ACL, through a fake of the auth ops
 * (opts.auth, session_fixture.h): exact CONNACK bytes and log lines, the
 * failed-login throttle's hold, the will topic, acl_deny drop and disconnect,
 * and each connection's ACL cache against the generation. */
#include "session_fixture.h"

static fconn_t *refused(fx_t *fx, int i, cn_t c) {
    fconn_t *f = open_conn(fx, i);
    assert_int_equal(feed(f, connect_pk(c)), -1);
    assert_int_equal(f->closes, 1);
    assert_true(session_conn_closed(f->c));
    return f;
}

static void assert_logged(const char *log, const char *line) {
    if (!strstr(log, line))
        fail_msg("no line \"%s\" in:\n%s", line, log);
}

/* ---- CONNECT ------------------------------------------------------------------ */

static void test_auth_sees_the_credentials(void **state) {
    fx_t *fx = *state;
    set_time(fx, 4242);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true, .user = "bob", .pass = "pw"});
    assert_int_equal(fx->auth.connects, 1);
    assert_true(fx->auth.has_user);
    assert_string_equal(fx->auth.user, "bob");
    assert_true(fx->auth.has_pw);
    assert_string_equal(fx->auth.pass, "pw");
    assert_string_equal(fx->auth.identity, "");
    assert_int_equal(fx->auth.now_ms, 4242);
    assert_int_equal(f->holds, 0);
    assert_int_equal(fx->auth.gens, 0); /* no will: no ACL question */
    connected(fx, 1, (cn_t){.id = "dev2", .clean = true});
    assert_false(fx->auth.has_user);
    assert_false(fx->auth.has_pw);
}

static void test_auth_bad_credentials(void **state) {
    fx_t *fx = *state;
    fx->auth.rc = MQTT_CONNACK_BAD_CREDENTIALS;
    log_capture_begin();
    fconn_t *f =
        refused(fx, 0, (cn_t){.id = "dev1", .clean = true, .user = "bob", .pass = "guess"});
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x04);
    assert_logged(log, "warn  client=- addr=127.0.0.1:5000 closing: connection refused (CONNACK "
                       "4): client id 'dev1', user 'bob': bad user name or password\n");
    assert_null(strstr(log, "guess"));
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->auth_bad_credentials, 1);
    assert_int_equal(st->auth_not_authorized, 0);
    assert_int_equal(st->auth_failures, 1);
    assert_int_equal(st->rejected, 1);
    assert_int_equal(st->connack_refused[MQTT_CONNACK_BAD_CREDENTIALS], 1);
    assert_int_equal(st->connects, 0);
    assert_int_equal(session_mgr_session_count(fx->m), 0);
}

static void test_auth_not_authorized(void **state) {
    fx_t *fx = *state;
    fx->auth.rc = MQTT_CONNACK_NOT_AUTHORIZED;
    log_capture_begin();
    fconn_t *f = refused(fx, 0, (cn_t){.id = "dev1", .clean = true});
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x05);
    assert_logged(log, "closing: connection refused (CONNACK 5): client id 'dev1', user '(none)': "
                       "anonymous clients are not allowed (auth.allow_anonymous: false)\n");
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->auth_not_authorized, 1);
    assert_int_equal(st->auth_failures, 1);
    assert_int_equal(st->connack_refused[MQTT_CONNACK_NOT_AUTHORIZED], 1);
}

/* The throttle's delay holds the connection before its CONNACK is queued. */
static void test_auth_throttle_holds_the_connack(void **state) {
    fx_t *fx = *state;
    fx->auth.rc = MQTT_CONNACK_BAD_CREDENTIALS;
    fx->auth.delay_ms = 1500;
    log_capture_begin();
    fconn_t *f = refused(fx, 0, (cn_t){.id = "dev1", .clean = true, .user = "bob", .pass = "x"});
    const char *log = log_capture_end();
    assert_int_equal(f->holds, 1);
    assert_int_equal(f->held_ms, 1500);
    assert_int_equal(f->out_at_hold, 0);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x04);
    assert_logged(log, ": bad user name or password; answer delayed after recent failures from "
                       "this address\n");
    /* An accepted login may be held too. */
    fx->auth.rc = MQTT_CONNACK_ACCEPTED;
    fx->auth.delay_ms = 250;
    f = connected(fx, 1, (cn_t){.id = "dev1", .clean = true, .user = "bob", .pass = "y"});
    assert_int_equal(f->holds, 1);
    assert_int_equal(f->held_ms, 250);
    /* A server without hold answers at once. */
    fx->ops = &f_ops;
    fx->auth.rc = MQTT_CONNACK_BAD_CREDENTIALS;
    f = refused(fx, 2, (cn_t){.id = "dev3", .clean = true, .user = "bob", .pass = "z"});
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x04);
}

/* A client that fails to log in does not take over the session it names. */
static void test_auth_failure_does_not_take_over(void **state) {
    fx_t *fx = *state;
    fconn_t *a =
        connected(fx, 0, (cn_t){.id = "dev1", .clean = false, .user = "bob", .pass = "pw"});
    fx->auth.rc = MQTT_CONNACK_BAD_CREDENTIALS;
    refused(fx, 1, (cn_t){.id = "dev1", .clean = true, .user = "eve", .pass = "guess"});
    assert_int_equal(a->closes, 0);
    assert_false(session_conn_closed(a->c));
    assert_int_equal(session_mgr_stats(fx->m)->takeovers, 0);
    assert_int_equal(session_mgr_session_count(fx->m), 1);
}

/* A certificate's identity replaces the CONNECT's user name everywhere. */
static void test_auth_identity(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_int_equal(session_conn_set_identity(f->c, "cn-user"), 0);
    pk_t p = connect_pk((cn_t){.id = "dev1", .clean = true, .user = "bob", .pass = "pw"});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
    assert_string_equal(fx->auth.identity, "cn-user");
    assert_true(fx->auth.has_user);
    assert_string_equal(fx->auth.user, "cn-user");
    fx->auth.gen = 1;
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    assert_string_equal(fx->auth.acl_user, "cn-user");
    assert_string_equal(fx->prod.recs[0].headers, "mqtt.topic=t/a;mqtt.client_id=dev1;mqtt.qos=0;"
                                                  "mqtt.username=cn-user;");
}

/* ---- the will topic ------------------------------------------------------------ */

static void test_will_topic_denied(void **state) {
    fx_t *fx = *state;
    fx->auth.gen = 1;
    fx->auth.deny = "t/secret";
    log_capture_begin();
    fconn_t *f = refused(fx, 0,
                         (cn_t){.id = "dev1",
                                .clean = true,
                                .user = "bob",
                                .pass = "pw",
                                .will_topic = "t/secret/w",
                                .will_payload = "gone"});
    const char *log = log_capture_end();
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x05);
    assert_logged(log, "closing: connection refused (CONNACK 5): client id 'dev1', user 'bob': the "
                       "ACL does not allow publishing on the will topic 't/secret/w'\n");
    assert_int_equal(fx->auth.checks, 1);
    assert_string_equal(fx->auth.acl_user, "bob");
    assert_string_equal(fx->auth.acl_cid, "dev1");
    assert_string_equal(fx->auth.acl_topic, "t/secret/w");
    const session_stats_t *st = session_mgr_stats(fx->m);
    assert_int_equal(st->auth_not_authorized, 1);
    assert_int_equal(st->acl_denied, 1);
    assert_int_equal(st->auth_failures, 0); /* the credentials were good */
    assert_int_equal(st->connack_refused[MQTT_CONNACK_NOT_AUTHORIZED], 1);
    assert_int_equal(fx->prod.n, 0); /* the refused will is not published */

    /* Anonymous with a will topic the ACL allows. */
    connected(fx, 1, (cn_t){.id = "dev2", .clean = true, .will_topic = "t/w", .will_payload = "g"});
    assert_int_equal(fx->auth.checks, 2);
    assert_string_equal(fx->auth.acl_user, "(null)");
    /* Without an ACL the will topic is not checked. */
    fx->auth.gen = 0;
    connected(fx, 2,
              (cn_t){.id = "dev3", .clean = true, .will_topic = "t/secret/w", .will_payload = "g"});
    assert_int_equal(fx->auth.checks, 2);
}

/* ---- PUBLISH ----------------------------------------------------------------------- */

static void test_acl_deny_drop_acks_in_order(void **state) {
    fx_t *fx = *state;
    fx->cfg.auth.acl_deny = ACL_DENY_DROP;
    fx->auth.gen = 1;
    fx->auth.deny = "t/no";
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    log_capture_begin();
    feed(f, publish_pk("t/ok", "x", 1, 1, false));
    feed(f, publish_pk("t/no", "x", 1, 2, false));
    feed(f, publish_pk("t/no", "x", 0, 0, false));
    feed(f, publish_pk("t/no", "x", 2, 3, false));
    const char *log = log_capture_end();
    assert_logged(log, "warn  client=dev1 addr=127.0.0.1:5000 the ACL does not allow publishing on "
                       "topic 't/no': dropped (auth.acl_deny: drop)\n");
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].value, "x");
    EXPECT_NO_OUT(f); /* the drops wait behind the first PUBLISH */
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x50, 2, 0, 3);
    assert_int_equal(f->closes, 0);
    assert_int_equal(session_mgr_stats(fx->m)->acl_denied, 3);
}

static void test_acl_deny_disconnect(void **state) {
    fx_t *fx = *state;
    fx->cfg.auth.acl_deny = ACL_DENY_DISCONNECT;
    fx->auth.gen = 1;
    fx->auth.deny = "t/no";
    fconn_t *f = connected(
        fx, 0, (cn_t){.id = "dev1", .clean = true, .will_topic = "t/will", .will_payload = "bye"});
    log_capture_begin();
    assert_int_equal(feed(f, publish_pk("t/no", "x", 1, 1, false)), -1);
    const char *log = log_capture_end();
    assert_logged(log, "warn  client=dev1 addr=127.0.0.1:5000 closing: the ACL does not allow "
                       "publishing on topic 't/no' (auth.acl_deny: disconnect)\n");
    EXPECT_NO_OUT(f);
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->acl_denied, 1);
    /* Not a DISCONNECT: the will is published, the refused message is not. */
    assert_int_equal(fx->prod.n, 1);
    assert_string_equal(fx->prod.recs[0].value, "bye");
}

/* One decision per topic and generation: a new generation asks again. */
static void test_acl_cache_and_generation(void **state) {
    fx_t *fx = *state;
    fx->cfg.auth.acl_deny = ACL_DENY_DROP;
    fx->cfg.mqtt.max_inflight = 64; /* no report comes: room for every message */
    fx->auth.gen = 7;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    for (int i = 0; i < 3; i++)
        feed(f, publish_pk("t/a", "x", 0, 0, false));
    assert_int_equal(fx->auth.checks, 1);
    assert_int_equal(fx->auth.gens, 3);
    assert_int_equal(fx->prod.n, 3);
    fx->auth.deny = "t/a"; /* the cached answer stands until the generation moves */
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    assert_int_equal(fx->prod.n, 4);
    fx->auth.gen = 8;
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    assert_int_equal(fx->auth.checks, 2);
    assert_int_equal(fx->prod.n, 4);
    feed(f, publish_pk("t/b", "x", 0, 0, false)); /* another topic replaces the entry */
    feed(f, publish_pk("t/a", "x", 0, 0, false));
    assert_int_equal(fx->auth.checks, 4);
    assert_int_equal(fx->prod.n, 5);
    /* Topics over 256 bytes are not cached. */
    char topic[301] = "t/";
    memset(topic + 2, 'l', 298);
    feed(f, publish_pk(topic, "x", 0, 0, false));
    feed(f, publish_pk(topic, "x", 0, 0, false));
    assert_int_equal(fx->auth.checks, 6);
    assert_int_equal(fx->prod.n, 7);
    assert_int_equal(session_mgr_stats(fx->m)->acl_denied, 2);
}

static void test_no_acl_no_checks(void **state) {
    fx_t *fx = *state;
    fx->auth.deny = "t/"; /* would deny everything if it were asked */
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    feed(f, publish_pk("t/a", "x", 1, 1, false));
    feed(f, publish_pk("t/b", "x", 0, 0, false));
    assert_int_equal(fx->auth.gens, 2);
    assert_int_equal(fx->auth.checks, 0);
    assert_int_equal(fx->prod.n, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup_auth, teardown)
        T(test_auth_sees_the_credentials),
        T(test_auth_bad_credentials),
        T(test_auth_not_authorized),
        T(test_auth_throttle_holds_the_connack),
        T(test_auth_failure_does_not_take_over),
        T(test_auth_identity),
        T(test_will_topic_denied),
        T(test_acl_deny_drop_acks_in_order),
        T(test_acl_deny_disconnect),
        T(test_acl_cache_and_generation),
        T(test_no_acl_no_checks),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
