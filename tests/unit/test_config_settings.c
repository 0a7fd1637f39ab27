/* The settings table: the reload's "needs a restart" comparison it drives
 * (config_restart_changes) and the docs table it generates. */
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

static config_t *load_ok(const char *yaml) {
    char errbuf[4096];
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    return cfg;
}

static void collect(void *ud, const char *msg) {
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 4096 - n, "%s\n", msg);
}

/* Every message config_restart_changes gives for two files, one per line. */
static void expect_changes(const char *running, const char *next, const char *want) {
    config_t *a = load_ok(running), *b = load_ok(next);
    char got[4096] = "";
    size_t n = config_restart_changes(a, b, collect, got);
    assert_string_equal(got, want);
    size_t lines = 0;
    for (const char *p = want; *p; p++)
        lines += *p == '\n';
    assert_int_equal(n, lines);
    config_free(a);
    config_free(b);
}

static void test_settings_a_reload_applies_are_not_named(void **state) {
    (void)state;
    expect_changes(MIN, MIN, "");
    expect_changes(MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n    tls: {cert: a, key: b}\n",
                   MIN "listeners:\n  - listen: \"127.0.0.1:8883\"\n"
                       "    tls: {cert: c, key: d, ca: e, require_client_cert: true,"
                       " min_version: \"1.3\"}\n"
                       "topics:\n  - mqtt: \"#\"\n    kafka: k\n"
                       "unmapped: drop\nheaders: false\nshutdown_timeout_s: 1\n"
                       "mqtt:\n  max_inflight: 5\n  max_connections: 7\n"
                       "auth:\n  password_file: /p\n  acl_deny: drop\nlog:\n  level: debug\n",
                   "");
}

static void test_settings_restart_needed_in_table_order(void **state) {
    (void)state;
    expect_changes(MIN "metrics:\n  listen: \"127.0.0.1:9234\"\n",
                   "listeners:\n  - listen: \"127.0.0.1:1884\"\n"
                   "kafka:\n  bootstrap_servers: \"k1:9092\"\n  properties:\n    linger.ms: 7\n",
                   "listeners changed; this needs a restart (still listening as before)\n"
                   "kafka.bootstrap_servers changed; this needs a restart (still using "
                   "embedded)\n"
                   "kafka.properties changed; this needs a restart (the producer keeps its "
                   "settings)\n"
                   "metrics.listen changed; this needs a restart (still 127.0.0.1:9234)\n");
    expect_changes(MIN, MIN "metrics:\n  listen: \"127.0.0.1:9234\"\n",
                   "metrics.listen changed; this needs a restart (still off)\n");
}

/* A listener changes with its address, its count, TLS on or off and
 * use_identity_as_username; its certificate files are reloaded instead. */
static void test_settings_listener_rows(void **state) {
    (void)state;
    const char *msg = "listeners changed; this needs a restart (still listening as before)\n";
    const char *one = MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n";
    const char *tls = MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                          "    tls: {cert: a, key: b, ca: c, require_client_cert: true}\n";
    expect_changes(one,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "  - listen: \"127.0.0.1:1884\"\n",
                   msg);
    expect_changes(one, tls, msg);
    expect_changes(tls, one, msg);
    expect_changes(tls,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "    tls: {cert: a, key: b, ca: c, require_client_cert: true,"
                       " use_identity_as_username: true}\n",
                   msg);
    expect_changes(tls,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "    tls: {cert: x, key: y, ca: z}\n",
                   "");
    /* WebSocket on or off, its path and its origins; the frame bound follows
     * mqtt.max_packet_size, which a reload applies. */
    const char *ws = MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                         "    websocket: {origins: [\"https://a.example\"]}\n";
    expect_changes(one, ws, msg);
    expect_changes(ws, one, msg);
    expect_changes(ws,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "    websocket: {path: /ws, origins: [\"https://a.example\"]}\n",
                   msg);
    expect_changes(ws,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "    websocket: {origins: [\"https://b.example\"]}\n",
                   msg);
    expect_changes(ws,
                   MIN "listeners:\n  - listen: \"127.0.0.1:1883\"\n"
                       "    websocket: {path: /mqtt, origins: [\"https://a.example\"]}\n"
                       "mqtt:\n  max_packet_size: 4096\n",
                   "");
    /* The same property list in the same order is no change. */
    expect_changes(MIN "  properties:\n    acks: all\n", MIN "  properties:\n    acks: all\n", "");
}

/* The generated docs table: one row per documented setting, with the
 * defaults and ranges the parser uses. */
static void test_settings_markdown(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_settings_markdown(f);
    fclose(f);
    assert_true(strncmp(buf, "| setting | default | allowed | on SIGHUP | meaning |\n", 54) == 0);
    assert_non_null(strstr(buf, "\n| `mqtt.max_inflight` | 1024 | 1..65535 | applies | "));
    assert_non_null(strstr(buf, "\n| `log.level` | `info` | `error`, `warn`, `info`, `debug` | "));
    assert_non_null(strstr(buf, "\n| `listeners[].tls.min_version` | `\"1.2\"` | `\"1.2\"`, "
                                "`\"1.3\"` | applies | "));
    assert_non_null(strstr(buf, "\n| `kafka.bootstrap_servers` | **required** | "));
    assert_non_null(strstr(buf, "| restart | HTTP `GET /metrics`"));
    /* Namespaces and the alias have no row of their own. */
    assert_null(strstr(buf, "| `mqtt` |"));
    assert_null(strstr(buf, "`kafka.shutdown_timeout_s`"));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings_a_reload_applies_are_not_named),
        cmocka_unit_test(test_settings_restart_needed_in_table_order),
        cmocka_unit_test(test_settings_listener_rows),
        cmocka_unit_test(test_settings_markdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
