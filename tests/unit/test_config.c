/* Configuration loader: every field, every default, every error message with
 * its position, the shipped configuration files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The whole error output, exactly. */
static void expect_errors(const char *yaml, const char *errors) {
    config_t *cfg = (config_t *)1;
    int rc = config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf));
    assert_int_equal(rc, -1);
    assert_null(cfg);
    assert_string_equal(errbuf, errors);
}

static void test_minimal_defaults(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN);
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->n_listeners, 1);
    assert_string_equal(cfg->listeners[0].listen, "127.0.0.1:1883");
    assert_string_equal(cfg->listeners[0].host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 1883);
    assert_int_equal(cfg->listeners[0].pos.line, 0);
    assert_string_equal(cfg->bootstrap_servers, "embedded");
    assert_int_equal(cfg->n_kafka_properties, 4);
    assert_string_equal(cfg->kafka_properties[0].name, "enable.idempotence");
    assert_string_equal(cfg->kafka_properties[0].value, "true");
    assert_string_equal(cfg->kafka_properties[1].name, "acks");
    assert_string_equal(cfg->kafka_properties[1].value, "all");
    assert_string_equal(cfg->kafka_properties[2].name, "linger.ms");
    assert_string_equal(cfg->kafka_properties[2].value, "5");
    assert_int_equal(cfg->kafka_properties[2].pos.line, 0);
    assert_string_equal(cfg->kafka_properties[3].name, "partitioner");
    assert_string_equal(cfg->kafka_properties[3].value, "murmur2_random");
    assert_int_equal(cfg->n_rules, 0);
    assert_int_equal(cfg->unmapped, UNMAPPED_DISCONNECT);
    assert_null(cfg->unmapped_topic);
    assert_true(cfg->headers);
    assert_int_equal(cfg->mqtt.max_packet_size, 1000000);
    assert_int_equal(cfg->mqtt.max_inflight, 1024);
    assert_int_equal(cfg->mqtt.max_connections, 100000);
    assert_int_equal(cfg->mqtt.connect_timeout_s, 10);
    assert_int_equal(cfg->mqtt.max_keepalive_s, 65535);
    assert_int_equal(cfg->mqtt.session_expiry_s, 86400);
    assert_int_equal(cfg->shutdown_timeout_s, 30);
    assert_null(cfg->metrics_listen);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    config_free(cfg);
}

static void test_every_field(void **state) {
    (void)state;
    const char *yaml = "listeners:\n"
                       "  - listen: \"0.0.0.0:1883\"\n"
                       "  - listen: \"[::1]:1884\"\n"
                       "kafka:\n"
                       "  bootstrap_servers: \"k1:9092,k2:9092\"\n"
                       "  properties:\n"
                       "    linger.ms: 20\n"
                       "    compression.type: lz4\n"
                       "    enable.idempotence: true\n"
                       "    message.max.bytes: 2000000\n"
                       "topics:\n"
                       "  - mqtt: \"sensors/+/temperature\"\n"
                       "    kafka: \"temperature\"\n"
                       "    key: \"{1}\"\n"
                       "  - regex: \"^plant/([^/]+)/(.+)$\"\n"
                       "    kafka: \"plant-{1}\"\n"
                       "  - mqtt: \"nokey/#\"\n"
                       "    kafka: nokey\n"
                       "    key: \"\"\n"
                       "  - mqtt: \"nokey2\"\n"
                       "    kafka: nokey\n"
                       "    key:\n"
                       "unmapped: drop\n"
                       "headers: false\n"
                       "mqtt:\n"
                       "  max_packet_size: 2000000\n"
                       "  max_inflight: 65535\n"
                       "  max_connections: 10\n"
                       "  connect_timeout_s: 3600\n"
                       "  max_keepalive_s: 1\n"
                       "  session_expiry_s: 4294967295\n"
                       "shutdown_timeout_s: 0\n"
                       "metrics:\n"
                       "  listen: \"[::]:9234\"\n"
                       "log:\n"
                       "  level: debug\n"
                       "  format: json\n";
    config_t *cfg = load_ok(yaml);
    assert_int_equal(cfg->n_listeners, 2);
    assert_string_equal(cfg->listeners[0].listen, "0.0.0.0:1883");
    assert_string_equal(cfg->listeners[0].host, "0.0.0.0");
    assert_int_equal(cfg->listeners[0].pos.line, 2);
    assert_int_equal(cfg->listeners[0].pos.col, 13);
    assert_string_equal(cfg->listeners[1].host, "::1");
    assert_int_equal(cfg->listeners[1].port, 1884);
    assert_string_equal(cfg->bootstrap_servers, "k1:9092,k2:9092");
    assert_int_equal(cfg->n_kafka_properties, 8);
    const char *want[][2] = {{"enable.idempotence", "true"},
                             {"acks", "all"},
                             {"linger.ms", "5"},
                             {"partitioner", "murmur2_random"},
                             {"linger.ms", "20"},
                             {"compression.type", "lz4"},
                             {"enable.idempotence", "true"},
                             {"message.max.bytes", "2000000"}};
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(cfg->kafka_properties[i].name, want[i][0]);
        assert_string_equal(cfg->kafka_properties[i].value, want[i][1]);
    }
    assert_int_equal(cfg->kafka_properties[4].pos.line, 7);
    assert_int_equal(cfg->kafka_properties[4].pos.col, 16);
    assert_int_equal(cfg->n_rules, 4);
    assert_int_equal(cfg->rules[0].kind, RULE_FILTER);
    assert_string_equal(cfg->rules[0].pattern, "sensors/+/temperature");
    assert_string_equal(cfg->rules[0].kafka, "temperature");
    assert_string_equal(cfg->rules[0].key, "{1}");
    assert_int_equal(cfg->rules[0].pos.line, 12);
    assert_int_equal(cfg->rules[0].pattern_pos.col, 11);
    assert_int_equal(cfg->rules[0].kafka_pos.line, 13);
    assert_int_equal(cfg->rules[0].key_pos.line, 14);
    assert_string_equal(cfg->rules[0].file, "t.yaml");
    assert_int_equal(cfg->rules[1].kind, RULE_REGEX);
    assert_string_equal(cfg->rules[1].pattern, "^plant/([^/]+)/(.+)$");
    assert_string_equal(cfg->rules[1].key, "{topic}");
    assert_int_equal(cfg->rules[1].key_pos.line, 0);
    assert_string_equal(cfg->rules[2].key, "");
    assert_string_equal(cfg->rules[3].key, "");
    assert_int_equal(cfg->unmapped, UNMAPPED_DROP);
    assert_false(cfg->headers);
    assert_int_equal(cfg->mqtt.max_packet_size, 2000000);
    assert_int_equal(cfg->mqtt.max_inflight, 65535);
    assert_int_equal(cfg->mqtt.max_connections, 10);
    assert_int_equal(cfg->mqtt.connect_timeout_s, 3600);
    assert_int_equal(cfg->mqtt.max_keepalive_s, 1);
    assert_int_equal(cfg->mqtt.session_expiry_s, 4294967295u);
    assert_int_equal(cfg->shutdown_timeout_s, 0);
    assert_string_equal(cfg->metrics_listen, "[::]:9234");
    assert_string_equal(cfg->metrics_host, "::");
    assert_int_equal(cfg->metrics_port, 9234);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    config_free(cfg);
}

/* Port 0 (any free port) on several listeners and the metrics listener is
 * not a duplicate: each bind gets its own port. */
static void test_port_zero_is_never_a_duplicate(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "listeners:\n"
                                "  - listen: \"127.0.0.1:0\"\n"
                                "  - listen: \"127.0.0.1:0\"\n"
                                "metrics:\n"
                                "  listen: \"127.0.0.1:0\"\n"
                                "log:\n"
                                "  format: text\n");
    assert_int_equal(cfg->n_listeners, 2);
    assert_int_equal(cfg->listeners[1].port, 0);
    assert_int_equal(cfg->metrics_port, 0);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    config_free(cfg);
}

static void test_unmapped_and_shutdown_variants(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN "unmapped: {topic: mqtt-unmapped}\n");
    assert_int_equal(cfg->unmapped, UNMAPPED_TOPIC);
    assert_string_equal(cfg->unmapped_topic, "mqtt-unmapped");
    config_free(cfg);
    cfg = load_ok(MIN "unmapped: disconnect\nheaders: yes\n");
    assert_int_equal(cfg->unmapped, UNMAPPED_DISCONNECT);
    assert_true(cfg->headers);
    config_free(cfg);
    cfg = load_ok(MIN "  shutdown_timeout_s: 7\n");
    assert_int_equal(cfg->shutdown_timeout_s, 7);
    config_free(cfg);
    /* max_packet_size follows message.max.bytes when not given. */
    cfg = load_ok(MIN "  properties:\n    message.max.bytes: 5000\n");
    assert_int_equal(cfg->mqtt.max_packet_size, 5000);
    config_free(cfg);
    cfg = load_ok(MIN "  properties:\n    message.max.bytes: 1000000000\n");
    assert_int_equal(cfg->mqtt.max_packet_size, 268435460);
    config_free(cfg);
    cfg = load_ok(MIN "mqtt:\n  max_packet_size: 1000000\n");
    assert_int_equal(cfg->mqtt.max_packet_size, 1000000);
    config_free(cfg);
    /* Anchors and aliases are plain YAML. */
    cfg = load_ok(MIN "topics:\n  - mqtt: &f \"a/+\"\n    kafka: a\n  - mqtt: *f\n    kafka: b\n");
    assert_string_equal(cfg->rules[1].pattern, "a/+");
    config_free(cfg);
}

/* Issue 20 finding 11: large mappings are checked for duplicate keys through
 * a hash table (the pairwise check was quadratic), with the same errors. */
static void test_duplicate_keys_in_a_large_mapping(void **state) {
    (void)state;
    static char yaml[8192];
    size_t n = (size_t)snprintf(yaml, sizeof(yaml), "kafka:\n  properties:\n");
    for (int i = 0; i < 40; i++) /* lines 3..42 */
        n += (size_t)snprintf(yaml + n, sizeof(yaml) - n, "    p%d.x: %d\n", i, i);
    n += (size_t)snprintf(yaml + n, sizeof(yaml) - n,
                          "    p5.x: 1\n    p39.x: 2\n    q.x: 3\n    q.x: 4\n"
                          "  bootstrap_servers: embedded\n  bootstrap_servers: x\n");
    expect_errors(yaml, "t.yaml:43:5: kafka.properties.p5.x: duplicate key (first at line 8)\n"
                        "t.yaml:44:5: kafka.properties.p39.x: duplicate key (first at line 42)\n"
                        "t.yaml:46:5: kafka.properties.q.x: duplicate key (first at line 45)\n"
                        "t.yaml:48:3: kafka.bootstrap_servers: duplicate key (first at line 47)\n");
    /* 20,000 distinct keys load */
    size_t cap = 20000 * 24 + 64;
    char *big = malloc(cap);
    assert_non_null(big);
    n = (size_t)snprintf(big, cap, "kafka:\n  bootstrap_servers: embedded\n  properties:\n");
    for (int i = 0; i < 20000; i++)
        n += (size_t)snprintf(big + n, cap - n, "    k%d.x: 1\n", i);
    config_t *cfg = load_ok(big);
    assert_true(cfg->n_kafka_properties >= 20000);
    config_free(cfg);
    free(big);
}

static void test_errors_structure(void **state) {
    (void)state;
    expect_errors("", "t.yaml:1:1: the file is empty; expected a mapping with at least "
                      "kafka.bootstrap_servers\n");
    expect_errors("- a\n", "t.yaml:1:1: the top level: expected a mapping, got a list\n");
    expect_errors("listeners: []\n",
                  "t.yaml:1:12: listeners: at least one listener is needed\n"
                  "t.yaml:1:1: kafka.bootstrap_servers: missing (\"host:port,...\", or "
                  "\"embedded\" for the in-process test cluster)\n");
    expect_errors("kafka: {}\n", "t.yaml:1:8: kafka.bootstrap_servers: missing (\"host:port,...\", "
                                 "or \"embedded\" for the in-process test cluster)\n");
    expect_errors("kafka:\n  bootstrap_servers: \"\"\n",
                  "t.yaml:2:22: kafka.bootstrap_servers: expected \"host:port,...\" or "
                  "\"embedded\", got \"\"\n");
    expect_errors("kafka:\n  bootstrap_servers:\n",
                  "t.yaml:2:21: kafka.bootstrap_servers: expected a string, got nothing\n");
    expect_errors(MIN "bogus: 1\n", "t.yaml:3:1: bogus: unknown key (expected one of: listeners, "
                                    "kafka, topics, unmapped, headers, downlink, retained, spool, "
                                    "mqtt, "
                                    "auth, "
                                    "shutdown_timeout_s, threads, metrics, log)\n");
    expect_errors(MIN "kafka: {}\n", "t.yaml:3:1: kafka: duplicate key (first at line 1)\n");
    expect_errors(MIN "  extra: 1\n",
                  "t.yaml:3:3: kafka.extra: unknown key (expected one of: "
                  "bootstrap_servers, properties, embedded_port, shutdown_timeout_s, "
                  "max_topics)\n");
    expect_errors(MIN "? [a]\n: 1\n", "t.yaml:3:3: : expected a key name, got a list\n");
    expect_errors(MIN "mqtt: 5\n", "t.yaml:3:7: mqtt: expected a mapping, got \"5\"\n");
    expect_errors(MIN "topics: {}\n", "t.yaml:3:9: topics: expected a list, got a mapping\n");
    expect_errors(MIN "---\na: 1\n", "t.yaml:4:1: only one YAML document is allowed\n");
}

static void test_errors_yaml_syntax(void **state) {
    (void)state;
    expect_errors("a: [1, 2\nb: 3\n", "t.yaml:2:2: invalid YAML: did not find expected ',' or "
                                      "']' (while parsing a flow sequence at line 1)\n");
    expect_errors(MIN "  x: y: z\n",
                  "t.yaml:3:7: invalid YAML: mapping values are not allowed in this context\n");
    expect_errors(MIN "log:\n\tlevel: info\n",
                  "t.yaml:4:1: invalid YAML: found character that cannot start any token (while "
                  "scanning for the next token at line 4)\n");
    expect_errors("kafka:\n  bootstrap_servers: \"\xff\"\n",
                  "t.yaml:2:23: invalid YAML: invalid leading UTF-8 octet\n");
}

static void test_errors_listeners(void **state) {
    (void)state;
    expect_errors(
        MIN "listeners:\n"
            "  - listen: \"0.0.0.0:1883\"\n"
            "  - listen: \"0.0.0.0:1883\"\n"
            "  - listen: \"host.example:1883\"\n"
            "  - listen: \"1.2.3.4\"\n"
            "  - listen: \"1.2.3.4:8x\"\n"
            "  - listen: \"1.2.3.4:65536\"\n"
            "  - listen: \"::1:1883\"\n"
            "  - listen: \"[::1\"\n"
            "  - listen: \"[::1]\"\n"
            "  - listen: \"[zz]:1\"\n"
            "  - listen: 1883\n"
            "  - {}\n"
            "  - listen: \"[::]:1883\"\n"
            "    port: 1\n"
            "  - x\n",
        "t.yaml:5:13: listeners[1].listen: duplicate listener \"0.0.0.0:1883\" (first "
        "at line 4)\n"
        "t.yaml:6:13: listeners[2].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"host.example:1883\": not an IPv4 address (host names are not resolved)\n"
        "t.yaml:7:13: listeners[3].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"1.2.3.4\": missing ':port'\n"
        "t.yaml:8:13: listeners[4].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"1.2.3.4:8x\": the port must be a number from 0 to 65535\n"
        "t.yaml:9:13: listeners[5].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"1.2.3.4:65536\": the port must be a number from 0 to 65535\n"
        "t.yaml:10:13: listeners[6].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"::1:1883\": an IPv6 address needs brackets: \"[::]:1883\"\n"
        "t.yaml:11:13: listeners[7].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"[::1\": missing ']' after the IPv6 address\n"
        "t.yaml:12:13: listeners[8].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"[::1]\": missing ':port'\n"
        "t.yaml:13:13: listeners[9].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"[zz]:1\": not an IPv6 address\n"
        "t.yaml:14:13: listeners[10].listen: expected \"host:port\" or \"[IPv6]:port\", "
        "got \"1883\": missing ':port'\n"
        "t.yaml:15:5: listeners[11]: missing 'listen' (\"host:port\")\n"
        "t.yaml:17:5: listeners[12].port: unknown key (expected one of: listen, tls, websocket)\n"
        "t.yaml:18:5: listeners[13]: expected a mapping, got \"x\"\n");
    /* The same address written two ways is the same listener. */
    expect_errors(MIN "listeners:\n  - listen: \"[::]:1\"\n  - listen: \"[0::0]:1\"\n",
                  "t.yaml:5:13: listeners[1].listen: duplicate listener \"[0::0]:1\" (first at "
                  "line 4)\n");
    expect_errors(MIN "listeners:\n  - listen: \"127.0.0.1:9234\"\nmetrics:\n  listen: "
                      "\"127.0.0.1:9234\"\n",
                  "t.yaml:6:11: metrics.listen: \"127.0.0.1:9234\" is also an MQTT listener "
                  "(line 4)\n");
    expect_errors(MIN "metrics:\n  listen: \"localhost:9234\"\n  path: /m\n",
                  "t.yaml:4:11: metrics.listen: expected \"host:port\" or \"[IPv6]:port\", got "
                  "\"localhost:9234\": not an IPv4 address (host names are not resolved)\n"
                  "t.yaml:5:3: metrics.path: unknown key (expected one of: listen)\n");
}

static void test_errors_kafka(void **state) {
    (void)state;
    expect_errors(MIN "  properties:\n"
                      "    linger.ms: 5\n"
                      "    linger.ms: 6\n"
                      "    bootstrap.servers: x:1\n"
                      "    acks: [all]\n"
                      "    batch.size:\n"
                      "  properties: {}\n",
                  "t.yaml:5:5: kafka.properties.linger.ms: duplicate key (first at line 4)\n"
                  "t.yaml:6:24: kafka.properties.bootstrap.servers: set kafka.bootstrap_servers "
                  "instead\n"
                  "t.yaml:7:11: kafka.properties.acks: expected a value (string or number), got "
                  "a list\n"
                  "t.yaml:8:16: kafka.properties.batch.size: expected a value (string or number), "
                  "got nothing\n"
                  "t.yaml:9:3: kafka.properties: duplicate key (first at line 3)\n");
    expect_errors("shutdown_timeout_s: 5\n" MIN "  shutdown_timeout_s: 6\n",
                  "t.yaml:4:23: kafka.shutdown_timeout_s: also set at line 1; keep one\n");
    expect_errors(MIN "  shutdown_timeout_s: 6\nshutdown_timeout_s: 5\n",
                  "t.yaml:4:21: shutdown_timeout_s: also set at line 3; keep one\n");
    expect_errors(MIN "shutdown_timeout_s: 3601\n",
                  "t.yaml:3:21: shutdown_timeout_s: expected an integer from 0 to 3600, got "
                  "\"3601\"\n");
}

static void test_errors_mqtt_numbers(void **state) {
    (void)state;
    expect_errors(
        MIN "mqtt:\n"
            "  max_packet_size: 127\n"
            "  max_inflight: 0\n"
            "  max_connections: -1\n"
            "  connect_timeout_s: 1.5\n"
            "  max_keepalive_s: 65536\n"
            "  session_expiry_s: 4294967296\n"
            "  bogus: 1\n"
            "  max_inflight: 2\n",
        "t.yaml:4:20: mqtt.max_packet_size: expected an integer from 128 to 268435460, "
        "got \"127\"\n"
        "t.yaml:5:17: mqtt.max_inflight: expected an integer from 1 to 65535, got "
        "\"0\"\n"
        "t.yaml:6:20: mqtt.max_connections: expected an integer from 1 to 10000000, got "
        "\"-1\"\n"
        "t.yaml:7:22: mqtt.connect_timeout_s: expected an integer from 1 to 3600, got "
        "\"1.5\"\n"
        "t.yaml:8:20: mqtt.max_keepalive_s: expected an integer from 1 to 65535, got "
        "\"65536\"\n"
        "t.yaml:9:21: mqtt.session_expiry_s: expected an integer from 0 to 4294967295, "
        "got \"4294967296\"\n"
        "t.yaml:10:3: mqtt.bogus: unknown key (expected one of: max_packet_size, "
        "max_inflight, max_connections, connect_timeout_s, max_keepalive_s, "
        "session_expiry_s, max_connections_per_ip, connect_rate_per_ip, "
        "connect_burst_per_ip, max_output_buffer, max_persistent_sessions, "
        "max_session_bytes, max_client_id_length, max_username_length, max_will_topic_length, "
        "max_will_payload, max_regex_topic_length, packet_timeout_s, max_input_buffer_bytes, "
        "topic_alias_maximum, max_topic_alias_bytes, max_tls_handshakes, "
        "max_tls_handshake_workers, max_tls_handshakes_per_ip, max_queued_messages, "
        "max_subscriptions_per_session, max_subscription_bytes_per_session)\n"
        "t.yaml:11:3: mqtt.max_inflight: duplicate key (first at line 5)\n");
    expect_errors(MIN "mqtt:\n  max_packet_size: 1048576\n",
                  "t.yaml:4:20: mqtt.max_packet_size: 1048576 is above Kafka's message.max.bytes "
                  "(1000000); lower it or raise kafka.properties.message.max.bytes\n");
    expect_errors(MIN
                  "  properties:\n    message.max.bytes: 2000\nmqtt:\n  max_packet_size: 2001\n",
                  "t.yaml:6:20: mqtt.max_packet_size: 2001 is above Kafka's message.max.bytes "
                  "(2000); lower it or raise kafka.properties.message.max.bytes\n");
    expect_errors(MIN "log:\n  format: xml\n",
                  "t.yaml:4:11: log.format: expected text or json, got \"xml\"\n");
    expect_errors(MIN "headers: 1\nlog:\n  level: loud\n  file: x\n",
                  "t.yaml:3:10: headers: expected true or false, got \"1\"\n"
                  "t.yaml:5:10: log.level: expected error, warn, info or debug, got \"loud\"\n"
                  "t.yaml:6:3: log.file: unknown key (expected one of: level, format)\n");
}

static void test_errors_topics(void **state) {
    (void)state;
    expect_errors(MIN "topics:\n"
                      "  - mqtt: \"a/#/b\"\n"
                      "    kafka: x\n"
                      "  - regex: \"a(\"\n"
                      "    kafka: y\n"
                      "  - mqtt: \"a/+\"\n"
                      "    kafka: \"t-{2}\"\n"
                      "    key: \"{foo}\"\n"
                      "  - kafka: z\n"
                      "  - mqtt: q\n"
                      "    regex: r\n"
                      "  - mqtt: ok\n"
                      "    kafka: \"bad topic\"\n"
                      "  - mqtt: ok\n"
                      "    kafka: k\n"
                      "    partition: 1\n"
                      "  - mqtt: [a]\n"
                      "    kafka: k\n"
                      "  - \"a\"\n"
                      "unmapped: \"a b\"\n",
                  "t.yaml:4:11: topics[0].mqtt: invalid topic filter \"a/#/b\": '#' must be alone "
                  "in the last level\n"
                  "t.yaml:6:12: topics[1].regex: invalid POSIX extended regex \"a(\": Unmatched ( "
                  "or \\(\n"
                  "t.yaml:9:12: topics[2].kafka: {2} names capture 2 but the rule has 1\n"
                  "t.yaml:10:10: topics[2].key: unknown placeholder {foo} (expected {1}..{9}, "
                  "{topic}, {client_id}, {username} or {property:NAME})\n"
                  "t.yaml:11:5: topics[3]: missing 'mqtt' (a topic filter) or 'regex'\n"
                  "t.yaml:12:5: topics[4]: give either 'mqtt' (a topic filter) or 'regex', not "
                  "both\n"
                  "t.yaml:12:5: topics[4]: missing 'kafka' (the Kafka topic template)\n"
                  "t.yaml:15:12: topics[5].kafka: ' ' is not allowed in a Kafka topic name "
                  "(allowed: a-z A-Z 0-9 . _ -)\n"
                  "t.yaml:18:5: topics[6].partition: unknown key (expected one of: mqtt, regex, "
                  "kafka, key)\n"
                  "t.yaml:19:11: topics[7].mqtt: expected a string, got a list\n"
                  "t.yaml:21:5: topics[8]: expected a mapping, got \"a\"\n"
                  "t.yaml:22:11: unmapped: expected disconnect, drop or {topic: NAME}, got "
                  "\"a b\"\n");
    expect_errors(MIN "topics:\n  - mqtt: a\n    kafka: k\n    mqtt: b\n",
                  "t.yaml:6:5: topics[0].mqtt: duplicate key (first at line 4)\n");
    expect_errors(
        MIN "unmapped: [x]\n",
        "t.yaml:3:11: unmapped: expected disconnect, drop or {topic: NAME}, got a list\n");
}

/* Only the two words or the explicit topic form: a typo of a word, or a bare
 * name, never becomes the name of a Kafka topic. */
static void test_unmapped_typos_are_errors(void **state) {
    (void)state;
    expect_errors(MIN "unmapped: Drop\n", "t.yaml:3:11: unmapped: expected disconnect, drop or "
                                          "{topic: NAME}, got \"Drop\" (did you mean drop?)\n");
    expect_errors(MIN "unmapped: dropp\n", "t.yaml:3:11: unmapped: expected disconnect, drop or "
                                           "{topic: NAME}, got \"dropp\" (did you mean drop?)\n");
    expect_errors(MIN "unmapped: disconect\n",
                  "t.yaml:3:11: unmapped: expected disconnect, drop or {topic: NAME}, got "
                  "\"disconect\" (did you mean disconnect?)\n");
    expect_errors(MIN "unmapped: discard\n",
                  "t.yaml:3:11: unmapped: expected disconnect, drop or {topic: NAME}, got "
                  "\"discard\" (to send unmapped messages to the Kafka topic discard, write "
                  "unmapped: {topic: discard})\n");
    expect_errors(MIN "unmapped: {topic: \"a b\"}\n",
                  "t.yaml:3:19: unmapped.topic: invalid Kafka topic name \"a b\": a Kafka topic "
                  "name may only contain a-z A-Z 0-9 . _ -\n");
    expect_errors(MIN "unmapped: {topc: x}\n",
                  "t.yaml:3:12: unmapped.topc: unknown key (expected topic)\n"
                  "t.yaml:3:11: unmapped: missing 'topic' (unmapped: {topic: NAME})\n");
    config_t *cfg = load_ok(MIN "unmapped:\n  topic: drop\n");
    assert_int_equal(cfg->unmapped, UNMAPPED_TOPIC);
    assert_string_equal(cfg->unmapped_topic, "drop");
    config_free(cfg);
}

static void test_errbuf_truncation(void **state) {
    (void)state;
    const char *yaml = "a: 1\nb: 2\nc: 3\n";
    char small[40];
    memset(small, 'Z', sizeof(small));
    config_t *cfg = (config_t *)1;
    assert_int_equal(config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, small, 30), -1);
    assert_null(cfg);
    assert_int_equal(strlen(small), 29);
    assert_int_equal(small[30], 'Z'); /* nothing written past errlen */
    assert_int_equal(config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, small, 0), -1);
}

static void test_load_file(void **state) {
    (void)state;
    config_t *cfg = (config_t *)1;
    assert_int_equal(config_load("/nonexistent/m2k.yaml", &cfg, errbuf, sizeof(errbuf)), -1);
    assert_null(cfg);
    assert_string_equal(errbuf, "/nonexistent/m2k.yaml: cannot open: No such file or directory\n");
    char path[] = "/tmp/m2k_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(MIN "log:\n  level: warn\n", f);
    fclose(f);
    assert_int_equal(config_load(path, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->log_level, LOG_WARN);
    config_free(cfg);
    f = fopen(path, "w");
    fputs(MIN "log: 1\n", f);
    fclose(f);
    assert_int_equal(config_load(path, &cfg, errbuf, sizeof(errbuf)), -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:3:6: log: expected a mapping, got \"1\"\n", path);
    assert_string_equal(errbuf, want);
    unlink(path);
}

/* The files we ship must load (the demo is what `make run` uses). */
static void test_shipped_configs(void **state) {
    (void)state;
    config_t *cfg = NULL;
    int rc =
        config_load(TEST_DATA_DIR "/../../config/mqtt2kafka.yaml", &cfg, errbuf, sizeof(errbuf));
    if (rc != 0)
        fail_msg("%s", errbuf);
    assert_string_equal(cfg->bootstrap_servers, "embedded");
    assert_int_equal(cfg->kafka_embedded_port, 19092);
    assert_int_equal(cfg->n_rules, 3);
    assert_string_equal(cfg->rules[0].pattern, "sensors/+/temperature");
    assert_string_equal(cfg->rules[0].kafka, "temperature");
    assert_string_equal(cfg->rules[0].key, "{1}");
    assert_string_equal(cfg->rules[1].pattern, "sensors/+/brightness");
    assert_string_equal(cfg->rules[1].kafka, "brightness");
    assert_string_equal(cfg->rules[1].key, "{1}");
    assert_string_equal(cfg->rules[2].pattern, "#");
    assert_string_equal(cfg->rules[2].kafka, "mqtt-events");
    assert_string_equal(cfg->listeners[0].listen, "127.0.0.1:1883");
    config_free(cfg);
    rc = config_load(TEST_DATA_DIR "/../../config/production.example.yaml", &cfg, errbuf,
                     sizeof(errbuf));
    if (rc != 0)
        fail_msg("%s", errbuf);
    assert_int_equal(cfg->unmapped, UNMAPPED_TOPIC);
    assert_int_equal(cfg->n_listeners, 2);
    config_free(cfg);
}

static const char *property(const config_t *cfg, const char *name) {
    for (size_t i = 0; i < cfg->n_kafka_properties; i++)
        if (strcmp(cfg->kafka_properties[i].name, name) == 0)
            return cfg->kafka_properties[i].value;
    return NULL;
}

/* File names are taken from the configuration file's directory, not the
 * working directory; absolute names and non-file properties stay as written. */
static void test_relative_paths_follow_the_config_file(void **state) {
    (void)state;
    static const char yaml[] = "listeners:\n"
                               "  - listen: \"127.0.0.1:8883\"\n"
                               "    tls: {cert: certs/srv.pem, key: /abs/srv.key, ca: ../ca.pem}\n"
                               "kafka:\n"
                               "  bootstrap_servers: embedded\n"
                               "  properties:\n"
                               "    ssl.key.location: kafka.key\n"
                               "    ssl.ca.location: probe\n"
                               "    ssl.certificate.location: /etc/kafka.pem\n"
                               "    client.id: relative/not/a/file\n"
                               "auth: {password_file: pw, acl_file: acl/rules}\n";
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "/etc/m2k/mqtt2kafka.yaml", &cfg, errbuf,
                           sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    assert_string_equal(cfg->listeners[0].tls.cert, "/etc/m2k/certs/srv.pem");
    assert_string_equal(cfg->listeners[0].tls.key, "/abs/srv.key");
    assert_string_equal(cfg->listeners[0].tls.ca, "/etc/m2k/../ca.pem");
    assert_string_equal(cfg->auth.password_file, "/etc/m2k/pw");
    assert_string_equal(cfg->auth.acl_file, "/etc/m2k/acl/rules");
    assert_string_equal(property(cfg, "ssl.key.location"), "/etc/m2k/kafka.key");
    assert_string_equal(property(cfg, "ssl.ca.location"), "probe");
    assert_string_equal(property(cfg, "ssl.certificate.location"), "/etc/kafka.pem");
    assert_string_equal(property(cfg, "client.id"), "relative/not/a/file");
    config_free(cfg);
    /* A configuration in the working directory: the names as written. */
    if (config_load_string(yaml, strlen(yaml), "m.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    assert_string_equal(cfg->auth.password_file, "pw");
    assert_string_equal(cfg->listeners[0].tls.cert, "certs/srv.pem");
    config_free(cfg);
    /* A relative configuration path keeps its directory relative. */
    if (config_load_string(yaml, strlen(yaml), "conf/m.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    assert_string_equal(cfg->auth.password_file, "conf/pw");
    config_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_unmapped_and_shutdown_variants),
        cmocka_unit_test(test_unmapped_typos_are_errors),
        cmocka_unit_test(test_port_zero_is_never_a_duplicate),
        cmocka_unit_test(test_errors_structure),
        cmocka_unit_test(test_duplicate_keys_in_a_large_mapping),
        cmocka_unit_test(test_errors_yaml_syntax),
        cmocka_unit_test(test_errors_listeners),
        cmocka_unit_test(test_errors_kafka),
        cmocka_unit_test(test_errors_mqtt_numbers),
        cmocka_unit_test(test_errors_topics),
        cmocka_unit_test(test_errbuf_truncation),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_relative_paths_follow_the_config_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
