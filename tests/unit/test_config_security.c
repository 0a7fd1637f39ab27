/* Configuration keys of the security work: listeners[].tls, auth, the
 * hostile-client limits under mqtt, and control characters in messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

#define MIN "kafka:\n  bootstrap_servers: embedded\n"

static char errbuf[8192];

static config_t *load_ok(const char *yaml) {
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    assert_non_null(cfg);
    return cfg;
}

static void expect_errors(const char *yaml, const char *errors) {
    config_t *cfg = (config_t *)1;
    int rc = config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf));
    assert_int_equal(rc, -1);
    assert_null(cfg);
    assert_string_equal(errbuf, errors);
}

static void test_defaults(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN);
    assert_false(cfg->listeners[0].tls.enabled);
    assert_true(cfg->auth.allow_anonymous);
    assert_null(cfg->auth.password_file);
    assert_null(cfg->auth.acl_file);
    assert_int_equal(cfg->auth.acl_deny, ACL_DENY_DISCONNECT);
    assert_int_equal(cfg->mqtt.max_connections_per_ip, 10000);
    assert_int_equal(cfg->mqtt.connect_rate_per_ip, 1000);
    assert_int_equal(cfg->mqtt.connect_burst_per_ip, 2000);
    assert_int_equal(cfg->mqtt.max_output_buffer, 1048576);
    assert_int_equal(cfg->mqtt.max_persistent_sessions, 100000);
    config_free(cfg);
    /* max_persistent_sessions follows max_connections unless set. */
    cfg = load_ok(MIN "mqtt:\n  max_connections: 50\n");
    assert_int_equal(cfg->mqtt.max_persistent_sessions, 50);
    config_free(cfg);
}

static void test_tls_full(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "listeners:\n"
                                "  - listen: \"127.0.0.1:8883\"\n"
                                "    tls:\n"
                                "      cert: /s.crt\n"
                                "      key: /s.key\n"
                                "      ca: /ca.crt\n"
                                "      require_client_cert: true\n"
                                "      use_identity_as_username: true\n"
                                "      min_version: \"1.3\"\n"
                                "  - listen: \"127.0.0.1:1883\"\n");
    const config_tls_t *t = &cfg->listeners[0].tls;
    assert_true(t->enabled);
    assert_string_equal(t->cert, "/s.crt");
    assert_string_equal(t->key, "/s.key");
    assert_string_equal(t->ca, "/ca.crt");
    assert_true(t->require_client_cert);
    assert_true(t->use_identity_as_username);
    assert_int_equal(t->min_version, CONFIG_TLS_1_3);
    assert_int_equal(t->pos.line, 6);
    assert_false(cfg->listeners[1].tls.enabled);
    config_free(cfg);
    cfg = load_ok(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                      "    tls: {cert: a, key: b}\n");
    assert_int_equal(cfg->listeners[0].tls.min_version, CONFIG_TLS_1_2);
    assert_null(cfg->listeners[0].tls.ca);
    assert_false(cfg->listeners[0].tls.require_client_cert);
    config_free(cfg);
}

static void test_tls_errors(void **state) {
    (void)state;
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n    tls: {}\n",
                  "t.yaml:5:10: listeners[0].tls: missing 'cert' (PEM certificate file)\n"
                  "t.yaml:5:10: listeners[0].tls: missing 'key' (PEM private key file)\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                      "    tls: {cert: a, key: b, min_version: \"1.1\", bogus: 1, ca: \"\"}\n",
                  "t.yaml:5:41: listeners[0].tls.min_version: expected \"1.2\" or \"1.3\", got "
                  "\"1.1\"\n"
                  "t.yaml:5:48: listeners[0].tls.bogus: unknown key (expected one of: cert, key, "
                  "ca, crl_file, require_client_cert, use_identity_as_username, min_version)\n"
                  "t.yaml:5:62: listeners[0].tls.ca: expected a file name, got \"\"\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                      "    tls: {cert: a, key: b, crl_file: c}\n",
                  "t.yaml:5:10: listeners[0].tls: crl_file needs 'ca' (the CA whose revocations "
                  "it lists)\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                      "    tls: {cert: a, key: b, require_client_cert: true}\n",
                  "t.yaml:5:10: listeners[0].tls: require_client_cert needs 'ca' (the CA that "
                  "signs client certificates)\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                      "    tls: {cert: a, key: b, use_identity_as_username: true}\n",
                  "t.yaml:5:54: listeners[0].tls.use_identity_as_username: needs "
                  "require_client_cert: true\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n    tls: yes\n",
                  "t.yaml:5:10: listeners[0].tls: expected a mapping, got \"yes\"\n");
}

static void test_websocket(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "listeners:\n  - listen: \"127.0.0.1:8083\"\n    websocket: {}\n"
                                "  - listen: \"127.0.0.1:8084\"\n"
                                "    tls: {cert: a, key: b}\n"
                                "    websocket:\n      path: /ws/mqtt\n"
                                "      origins: [\"https://ops.example.com\", "
                                "\"http://localhost:8080\"]\n"
                                "  - listen: \"127.0.0.1:1883\"\n"
                                "mqtt:\n  max_packet_size: 4096\n");
    const config_ws_t *w = &cfg->listeners[0].websocket;
    assert_true(w->enabled);
    assert_string_equal(w->path, "/mqtt");
    assert_int_equal(w->n_origins, 0);
    assert_int_equal(w->max_message, 4096);
    w = &cfg->listeners[1].websocket;
    assert_true(w->enabled && cfg->listeners[1].tls.enabled);
    assert_string_equal(w->path, "/ws/mqtt");
    assert_int_equal(w->n_origins, 2);
    assert_string_equal(w->origins[0], "https://ops.example.com");
    assert_string_equal(w->origins[1], "http://localhost:8080");
    assert_false(cfg->listeners[2].websocket.enabled);
    config_free(cfg);
}

static void test_websocket_errors(void **state) {
    (void)state;
    expect_errors(
        MIN "listeners:\n  - listen: \"127.0.0.1:8083\"\n"
            "    websocket: {path: mqtt, bogus: 1}\n",
        "t.yaml:5:29: listeners[0].websocket.bogus: unknown key (expected one of: path, "
        "origins)\n"
        "t.yaml:5:23: listeners[0].websocket.path: expected a path such as \"/mqtt\", got "
        "\"mqtt\"\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8083\"\n"
                      "    websocket:\n      origins: [\"https://a.example/\", \"HTTPS://B\", "
                      "\"a.example\", 7]\n",
                  "t.yaml:6:17: listeners[0].websocket.origins[0]: expected an origin "
                  "\"scheme://host[:port]\" in lower case, got \"https://a.example/\"\n"
                  "t.yaml:6:39: listeners[0].websocket.origins[1]: expected an origin "
                  "\"scheme://host[:port]\" in lower case, got \"HTTPS://B\"\n"
                  "t.yaml:6:52: listeners[0].websocket.origins[2]: expected an origin "
                  "\"scheme://host[:port]\" in lower case, got \"a.example\"\n"
                  "t.yaml:6:65: listeners[0].websocket.origins[3]: expected an origin "
                  "\"scheme://host[:port]\" in lower case, got \"7\"\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:8083\"\n    websocket: {origins: x}\n",
                  "t.yaml:5:26: listeners[0].websocket.origins: expected a list, got \"x\"\n");
}

static void test_auth(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "auth:\n  password_file: /p\n  acl_file: /a\n  acl_deny: drop\n");
    assert_string_equal(cfg->auth.password_file, "/p");
    assert_string_equal(cfg->auth.acl_file, "/a");
    assert_int_equal(cfg->auth.acl_deny, ACL_DENY_DROP);
    assert_false(cfg->auth.allow_anonymous); /* a password file turns anonymous off */
    config_free(cfg);
    cfg = load_ok(MIN "auth:\n  password_file: /p\n  allow_anonymous: true\n");
    assert_true(cfg->auth.allow_anonymous);
    config_free(cfg);
    cfg = load_ok(MIN "auth:\n  allow_anonymous: false\n");
    assert_false(cfg->auth.allow_anonymous);
    assert_null(cfg->auth.password_file);
    config_free(cfg);
    expect_errors(MIN "auth:\n  acl_deny: ignore\n  allow_anonymous: 1\n  user: x\n",
                  "t.yaml:4:13: auth.acl_deny: expected disconnect or drop, got \"ignore\"\n"
                  "t.yaml:5:20: auth.allow_anonymous: expected true or false, got \"1\"\n"
                  "t.yaml:6:3: auth.user: unknown key (expected one of: allow_anonymous, "
                  "password_file, acl_file, acl_deny, max_hashing, max_hashing_queue)\n");
}

static void test_limits(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "mqtt:\n  max_connections_per_ip: 0\n  connect_rate_per_ip: 5\n"
                                "  connect_burst_per_ip: 7\n  max_output_buffer: 4096\n"
                                "  max_persistent_sessions: 0\n");
    assert_int_equal(cfg->mqtt.max_connections_per_ip, 0);
    assert_int_equal(cfg->mqtt.connect_rate_per_ip, 5);
    assert_int_equal(cfg->mqtt.connect_burst_per_ip, 7);
    assert_int_equal(cfg->mqtt.max_output_buffer, 4096);
    assert_int_equal(cfg->mqtt.max_persistent_sessions, 0);
    config_free(cfg);
    expect_errors(MIN "mqtt:\n  max_output_buffer: 4095\n  connect_burst_per_ip: 0\n",
                  "t.yaml:4:22: mqtt.max_output_buffer: expected an integer from 4096 to "
                  "1073741824, got \"4095\"\n"
                  "t.yaml:5:25: mqtt.connect_burst_per_ip: expected an integer from 1 to 1000000, "
                  "got \"0\"\n");
}

/* A value echoed in a message cannot start a line of its own. */
static void test_control_characters_escaped(void **state) {
    (void)state;
    expect_errors(MIN "unmapped: \"a\\nb\\tc\"\n",
                  "t.yaml:3:11: unmapped: expected disconnect, drop or {topic: NAME}, got "
                  "\"a\\x0ab\\x09c\"\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_tls_full),
        cmocka_unit_test(test_tls_errors),       cmocka_unit_test(test_websocket),
        cmocka_unit_test(test_websocket_errors), cmocka_unit_test(test_auth),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_control_characters_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
