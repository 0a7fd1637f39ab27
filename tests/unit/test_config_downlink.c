/* downlink:, retained: and spool: in the configuration: defaults, every
 * error with its file:line:col, and the reload's "needs a restart". */
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
    return cfg;
}

static void expect_errors(const char *yaml, const char *errors) {
    config_t *cfg = (config_t *)1;
    assert_int_equal(config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf)),
                     -1);
    assert_null(cfg);
    assert_string_equal(errbuf, errors);
}

static void test_downlink_rules(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN);
    assert_int_equal(cfg->n_downlink, 0);
    assert_false(cfg->retained.enabled);
    assert_int_equal(cfg->retained.max_messages, 100000);
    assert_int_equal(cfg->retained.max_bytes, 67108864);
    config_free(cfg);

    cfg = load_ok(MIN "downlink:\n"
                      "  - kafka: commands\n"
                      "    mqtt: \"devices/{key}/commands\"\n"
                      "  - kafka: mqtt-events\n"
                      "  - {kafka: lights, mqtt: \"room/{header:room}/set\", qos: 0}\n"
                      "retained:\n  topic: mqtt-retained\n  max_messages: 10\n");
    assert_int_equal(cfg->n_downlink, 3);
    assert_string_equal(cfg->downlink[0].kafka, "commands");
    assert_string_equal(cfg->downlink[0].mqtt, "devices/{key}/commands");
    assert_int_equal(cfg->downlink[0].qos, 1);
    assert_int_equal(cfg->downlink[0].pos.line, 4);
    assert_string_equal(cfg->downlink[1].kafka, "mqtt-events");
    assert_null(cfg->downlink[1].mqtt);
    assert_int_equal(cfg->downlink[1].qos, 1);
    assert_string_equal(cfg->downlink[2].mqtt, "room/{header:room}/set");
    assert_int_equal(cfg->downlink[2].qos, 0);
    assert_true(cfg->retained.enabled);
    assert_string_equal(cfg->retained.topic, "mqtt-retained");
    assert_int_equal(cfg->retained.max_messages, 10);
    assert_int_equal(cfg->retained.max_bytes, 67108864);
    assert_int_equal(cfg->retained.pos.line, 9);
    config_free(cfg);
}

static void test_downlink_errors(void **state) {
    (void)state;
    expect_errors(MIN "downlink:\n  - mqtt: a\n",
                  "t.yaml:4:5: downlink[0]: missing 'kafka' (the Kafka topic to read)\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n    qos: 3\n",
                  "t.yaml:5:10: downlink[0].qos: expected an integer from 0 to 2, got \"3\"\n");
    expect_errors(MIN "downlink:\n  - kafka: \"a b\"\n",
                  "t.yaml:4:12: downlink[0].kafka: invalid Kafka topic name \"a b\": a Kafka "
                  "topic name may only contain a-z A-Z 0-9 . _ -\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n  - kafka: b\n  - kafka: a\n",
                  "t.yaml:6:12: downlink[2].kafka: \"a\" is already read by the rule at line 4\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n    mqtt: x/{keys}\n",
                  "t.yaml:5:13: downlink[0].mqtt: unknown placeholder (known: {key}, "
                  "{header:NAME})\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n    mqtt: \"x/{key\"\n",
                  "t.yaml:5:14: downlink[0].mqtt: '{' without '}'\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n    mqtt: \"\"\n",
                  "t.yaml:5:11: downlink[0].mqtt: expected an MQTT topic template, got \"\"\n");
    expect_errors(MIN "downlink:\n  - kafka: a\n    topic: b\n",
                  "t.yaml:5:5: downlink[0].topic: unknown key (expected one of: kafka, mqtt, "
                  "qos)\n");
    expect_errors(MIN "downlink: a\n", "t.yaml:3:11: downlink: expected a list, got \"a\"\n");
    expect_errors(MIN "retained: {}\n",
                  "t.yaml:3:11: retained.topic: missing (the compacted Kafka topic of retained "
                  "messages)\n");
    expect_errors(MIN "retained:\n  topic: \"x/y\"\n",
                  "t.yaml:4:10: retained.topic: invalid Kafka topic name \"x/y\": a Kafka "
                  "topic name may only contain a-z A-Z 0-9 . _ -\n");
    expect_errors(MIN "downlink:\n  - kafka: r\nretained: {topic: r}\n",
                  "t.yaml:5:19: retained.topic: \"r\" is also a downlink topic (line 4)\n");
    expect_errors(MIN "retained: {topic: r}\ndownlink:\n  - kafka: r\n",
                  "t.yaml:5:12: downlink[0].kafka: \"r\" is the retained topic (line 3)\n");
    expect_errors(MIN "retained:\n  topic: r\n  max_bytes: -1\n",
                  "t.yaml:5:14: retained.max_bytes: expected an integer from 0 to 4294967295, got "
                  "\"-1\"\n");
}

static void collect(void *ud, const char *msg) {
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 2048 - n, "%s\n", msg);
}

static void test_downlink_needs_restart(void **state) {
    (void)state;
    config_t *a = load_ok(MIN "downlink:\n  - kafka: a\n");
    config_t *b = load_ok(MIN "downlink:\n  - {kafka: a, qos: 2}\nretained: {topic: r}\n");
    config_t *c = load_ok(MIN "downlink:\n  - {kafka: a, qos: 2}\nretained: {topic: s}\n");
    char got[2048] = "";
    assert_int_equal(config_restart_changes(a, b, collect, got), 2);
    assert_string_equal(got, "downlink changed; this needs a restart (the consumer keeps its "
                             "topics and rules)\n"
                             "retained.topic changed; this needs a restart (the retained "
                             "store still reads off)\n");
    got[0] = '\0';
    assert_int_equal(config_restart_changes(b, c, collect, got), 1);
    assert_string_equal(got, "retained.topic changed; this needs a restart (the retained store "
                             "still reads r)\n");
    got[0] = '\0';
    assert_int_equal(config_restart_changes(c, c, collect, got), 0);
    config_free(a);
    config_free(b);
    config_free(c);
}

static void test_spool_rows(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN);
    assert_false(cfg->spool.enabled);
    assert_null(cfg->spool.dir);
    assert_int_equal(cfg->spool.max_bytes, 0);
    config_free(cfg);

    /* A relative dir is taken from the configuration file's directory. */
    const char *rel = MIN "spool:\n  dir: spool\n  max_bytes: 10737418240\n  mode: always\n";
    assert_int_equal(
        config_load_string(rel, strlen(rel), "/etc/m/t.yaml", &cfg, errbuf, sizeof(errbuf)), 0);
    assert_true(cfg->spool.enabled);
    assert_string_equal(cfg->spool.dir, "/etc/m/spool");
    assert_true(cfg->spool.max_bytes == 10737418240ull);
    assert_int_equal(cfg->spool.mode, SPOOL_MODE_ALWAYS);
    assert_int_equal(cfg->spool.pos.line, 4);
    config_free(cfg);

    cfg = load_ok(MIN "spool: {dir: /var/s, mode: always, max_bytes: 18446744073709551615}\n");
    assert_string_equal(cfg->spool.dir, "/var/s");
    assert_true(cfg->spool.max_bytes == UINT64_MAX);
    config_free(cfg);

    /* outage is the default mode, with its threshold. */
    cfg = load_ok(MIN "spool:\n  dir: /s\n");
    assert_int_equal(cfg->spool.mode, SPOOL_MODE_OUTAGE);
    assert_int_equal(cfg->spool.outage_after_ms, 5000);
    config_free(cfg);
    cfg = load_ok(MIN "spool: {dir: /s, mode: outage, outage_after_ms: 250}\n");
    assert_int_equal(cfg->spool.mode, SPOOL_MODE_OUTAGE);
    assert_int_equal(cfg->spool.outage_after_ms, 250);
    config_free(cfg);
}

static void test_spool_errors(void **state) {
    (void)state;
    expect_errors(MIN "spool:\n  dir: /s\n  outage_after_ms: 99\n",
                  "t.yaml:5:20: spool.outage_after_ms: expected an integer from 100 to 3600000, "
                  "got \"99\"\n");
    expect_errors(MIN "spool:\n  mode: always\n",
                  "t.yaml:4:3: spool.dir: missing (the spool directory)\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: sometimes\n",
                  "t.yaml:5:9: spool.mode: expected outage or always, got \"sometimes\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  max_bytes: 18446744073709551616\n",
                  "t.yaml:6:14: spool.max_bytes: expected an integer from 0 to "
                  "18446744073709551615, got \"18446744073709551616\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  max_bytes: -1\n",
                  "t.yaml:6:14: spool.max_bytes: expected an integer from 0 to "
                  "18446744073709551615, got \"-1\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  segment: 1\n",
                  "t.yaml:6:3: spool.segment: unknown key (expected one of: dir, max_bytes, "
                  "mode, outage_after_ms)\n");
}

static void test_spool_restart(void **state) {
    (void)state;
    config_t *a = load_ok(MIN);
    config_t *b = load_ok(MIN "spool:\n  dir: /s\n  mode: always\n");
    config_t *c = load_ok(MIN "spool:\n  dir: /t\n  mode: always\n");
    char msgs[2048] = "";
    assert_int_equal(config_restart_changes(a, b, collect, msgs), 3);
    assert_string_equal(msgs, "spool changed; this needs a restart (the spool stays as it "
                              "started)\n"
                              "spool.dir changed; this needs a restart (still spooling to off)\n"
                              "spool.mode changed; this needs a restart (the spool keeps its "
                              "mode)\n");
    msgs[0] = '\0';
    assert_int_equal(config_restart_changes(b, c, collect, msgs), 1);
    assert_string_equal(msgs, "spool.dir changed; this needs a restart (still spooling to /s)\n");
    config_free(a);
    config_free(b);
    config_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_downlink_rules),         cmocka_unit_test(test_downlink_errors),
        cmocka_unit_test(test_downlink_needs_restart), cmocka_unit_test(test_spool_rows),
        cmocka_unit_test(test_spool_errors),           cmocka_unit_test(test_spool_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
