/* Confluent MQTT Proxy import: properties parsing, regex rewriting, the whole
 * conversion against a golden file, and that the output loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/confluent_import.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Converts `text`; returns the YAML (malloc'd). */
static char *convert(const char *text) {
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    assert_non_null(mem);
    char err[256];
    int rc = confluent_import_string(text, strlen(text), "in.properties", mem, err, sizeof(err));
    fclose(mem);
    if (rc != 0)
        fail_msg("import failed: %s", err);
    return out;
}

static void expect_loads(const char *yaml, config_t **cfg_out) {
    char err[4096];
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "out.yaml", &cfg, err, sizeof(err)) != 0)
        fail_msg("output does not load:\n%s\n---\n%s", err, yaml);
    if (cfg_out)
        *cfg_out = cfg;
    else
        config_free(cfg);
}

static void test_golden_file(void **state) {
    (void)state;
    size_t in_len, want_len;
    char *in = read_all(TEST_DATA_DIR "/kafka-mqtt.properties", &in_len);
    char *want = read_all(TEST_DATA_DIR "/kafka-mqtt.expected.yaml", &want_len);
    char *out = NULL;
    size_t out_len = 0;
    FILE *mem = open_memstream(&out, &out_len);
    char err[256];
    assert_int_equal(
        confluent_import_string(in, in_len, "kafka-mqtt.properties", mem, err, sizeof(err)), 0);
    fclose(mem);
    assert_string_equal(out, want);
    config_t *cfg;
    expect_loads(out, &cfg);
    assert_int_equal(cfg->n_rules, 4);
    assert_int_equal(cfg->rules[0].kind, RULE_REGEX);
    assert_string_equal(cfg->rules[0].pattern, "^.*temperature$");
    assert_string_equal(cfg->rules[0].key, "{topic}"); /* Confluent's key: the MQTT topic */
    assert_string_equal(cfg->rules[2].pattern, "^(devices/[0-9]+/(status|events))$");
    assert_int_equal(cfg->mqtt.max_packet_size, 65541);
    assert_false(cfg->headers);
    assert_int_equal(cfg->n_listeners, 2);
    config_free(cfg);
    /* The secret in a dropped setting is not echoed. */
    assert_null(strstr(out, "changeit"));
    free(in);
    free(want);
    free(out);
}

static void test_properties_syntax(void **state) {
    (void)state;
    /* Separators '=', ':' and blanks; comments with '#' and '!'; continuation
     * lines; escapes; the last of two equal keys wins. */
    char *out = convert("! comment\n"
                        "  # indented comment\n"
                        "bootstrap.servers   kafka:9092\n"
                        "topic.regex.list : a:x/\\\n"
                        "                   y\n"
                        "producer.client.id=first\n"
                        "producer.client.id=m2k\\u0041\n"
                        "listeners=\\\n"
                        "  0.0.0.0:1\\\\\n"
                        "listeners=1.2.3.4:5\r\n");
    assert_string_equal(out, "# Converted from a Confluent MQTT Proxy configuration by\n"
                             "# mqtt2kafka --import-confluent in.properties\n"
                             "# Review the comments, then check with: mqtt2kafka -t -c FILE\n"
                             "listeners:\n"
                             "  - listen: \"1.2.3.4:5\"\n"
                             "kafka:\n"
                             "  bootstrap_servers: \"kafka:9092\"\n"
                             "  properties:\n"
                             "    client.id: \"m2kA\"\n"
                             "topics:\n"
                             "  - regex: \"^x/y$\"   # Java: x/y\n"
                             "    kafka: \"a\"\n"
                             "unmapped: disconnect\n"
                             "# Confluent's records carry the MQTT topic as key and the payload "
                             "as value,\n"
                             "# without headers; set true to add mqtt.* headers.\n"
                             "headers: false\n");
    expect_loads(out, NULL);
    free(out);
}

static void test_defaults_and_gaps(void **state) {
    (void)state;
    /* Nothing set: Confluent's default listener, no cluster, no rules. */
    char *out = convert("");
    assert_string_equal(out, "# Converted from a Confluent MQTT Proxy configuration by\n"
                             "# mqtt2kafka --import-confluent in.properties\n"
                             "# Review the comments, then check with: mqtt2kafka -t -c FILE\n"
                             "listeners:\n"
                             "  - listen: \"0.0.0.0:1883\"\n"
                             "kafka:\n"
                             "  bootstrap_servers: \"localhost:9092\"   # bootstrap.servers was "
                             "not set\n"
                             "# topic.regex.list was empty: every topic is unmapped\n"
                             "topics: []\n"
                             "unmapped: disconnect\n"
                             "# Confluent's records carry the MQTT topic as key and the payload "
                             "as value,\n"
                             "# without headers; set true to add mqtt.* headers.\n"
                             "headers: false\n");
    expect_loads(out, NULL);
    free(out);

    /* TLS for clients: the listeners are left out, not downgraded. A large
     * MQTT limit raises message.max.bytes so the result still loads. */
    out = convert("listeners=0.0.0.0:8883\nlisteners.security.protocol=SSL\n"
                  "bootstrap.servers=k:9092\ntopic.regex.list=t:(?<=a)b\n"
                  "mqtt.message.max.bytes=3000000\n");
    assert_string_equal(out, "# Converted from a Confluent MQTT Proxy configuration by\n"
                             "# mqtt2kafka --import-confluent in.properties\n"
                             "# Review the comments, then check with: mqtt2kafka -t -c FILE\n"
                             "# listeners: none carried over; the default is 127.0.0.1:1883\n"
                             "kafka:\n"
                             "  bootstrap_servers: \"k:9092\"\n"
                             "  properties:\n"
                             "    # raised so that mqtt.max_packet_size fits in one record; the "
                             "topic's\n"
                             "    # max.message.bytes must allow it too\n"
                             "    message.max.bytes: \"3000005\"\n"
                             "topics: []\n"
                             "unmapped: disconnect\n"
                             "# Confluent's records carry the MQTT topic as key and the payload "
                             "as value,\n"
                             "# without headers; set true to add mqtt.* headers.\n"
                             "headers: false\n"
                             "mqtt:\n"
                             "  max_packet_size: 3000005\n"
                             "\n"
                             "# not carried over: listeners.security.protocol=SSL (line 2): "
                             "mqtt2kafka's TLS listeners take PEM files (listeners[].tls: cert, "
                             "key, ca), not Java keystores; the listeners are left out rather "
                             "than exposed unencrypted: add them with a tls: section\n"
                             "# warning: regex for t: (?: lookarounds, inline flags and atomic "
                             "groups have no POSIX ERE equivalent\n"
                             "# not carried over: topic.regex.list=(?<=a)b (line 4): regex for t "
                             "uses a Java-only construct\n");
    expect_loads(out, NULL);
    free(out);
}

static void test_regex_rewrites(void **state) {
    (void)state;
    static const struct {
        const char *java, *posix, *notes;
    } ok[] = {
        {".*temperature", "^.*temperature$", ""},
        {"^a/b$", "^a/b$", ""},
        {"a\\$", "^a\\$$", ""},
        {"a|b", "^(a|b)$", ""},
        {"x/\\d+/\\w*\\s?", "^x/[0-9]+/[[:alnum:]_]*[[:space:]]?$",
         "\\d rewritten as [0-9]\n\\w rewritten as [[:alnum:]_]\n\\s rewritten as "
         "[[:space:]]\n"},
        {"\\D\\W\\S", "^[^0-9][^[:alnum:]_][^[:space:]]$",
         "\\D rewritten as [^0-9]\n\\W rewritten as [^[:alnum:]_]\n\\S rewritten as "
         "[^[:space:]]\n"},
        {"[\\d.]+", "^[0-9.]+$", "\\d rewritten as 0-9 inside [...]\n"},
        {"[\\.\\/]", "^[./]$", ""},
        {"[]a]", "^[]a]$", ""},
        {"[^]a]", "^[^]a]$", ""},
        {"(?:a)(?<name>b)", "^(a)(b)$",
         "(?: non-capturing group rewritten as a plain group\n(?<name> named group rewritten as "
         "a plain group\n"},
        {"a.+?b{1,2}?", "^a.+b{1,2}$",
         "lazy quantifier +? rewritten as greedy (same topics match)\nlazy quantifier }? "
         "rewritten as greedy (same topics match)\n"},
        {"\\Qa.b\\E/c", "^a\\.b/c$", "\\Q...\\E quoting rewritten with backslashes\n"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *out, *notes;
        if (confluent_regex_to_posix(ok[i].java, &out, &notes) != 0)
            fail_msg("%s: %s", ok[i].java, notes);
        assert_string_equal(out, ok[i].posix);
        assert_string_equal(notes, ok[i].notes);
        free(out);
        free(notes);
    }
    static const struct {
        const char *java, *notes;
    } bad[] = {
        {"(?=a)", "(?: lookarounds, inline flags and atomic groups have no POSIX ERE equivalent\n"},
        {"(?!a)", "(?: lookarounds, inline flags and atomic groups have no POSIX ERE equivalent\n"},
        {"(?i)a", "(?: lookarounds, inline flags and atomic groups have no POSIX ERE equivalent\n"},
        {"a*+", "possessive quantifier *+ has no POSIX ERE equivalent\n"},
        {"\\bx", "\\b has no POSIX ERE equivalent (word boundaries, \\A \\z, Unicode classes, "
                 "back-references and character escapes are Java-only)\n"},
        {"(a)\\1", "\\1 has no POSIX ERE equivalent (word boundaries, \\A \\z, Unicode classes, "
                   "back-references and character escapes are Java-only)\n"},
        {"\\p{L}", "\\p has no POSIX ERE equivalent (word boundaries, \\A \\z, Unicode classes, "
                   "back-references and character escapes are Java-only)\n"},
        {"[a[b]]", "[[: a class inside a class (union) has no POSIX equivalent\n"},
        {"[a&&b]", "&&: class intersection has no POSIX equivalent\n"},
        {"[\\]]", "\\] inside [...] has no POSIX equivalent\n"},
        {"[ab", "[: unterminated character class\n"},
        {"a\\", "\\: trailing backslash\n"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = (char *)1, *notes;
        assert_int_equal(confluent_regex_to_posix(bad[i].java, &out, &notes), -1);
        assert_null(out);
        assert_string_equal(notes, bad[i].notes);
        free(notes);
    }
}

static void test_missing_file(void **state) {
    (void)state;
    char err[256];
    assert_int_equal(
        confluent_import("/nonexistent/kafka-mqtt.properties", stdout, err, sizeof(err)), -1);
    assert_string_equal(
        err, "/nonexistent/kafka-mqtt.properties: cannot open: No such file or directory\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_file),       cmocka_unit_test(test_properties_syntax),
        cmocka_unit_test(test_defaults_and_gaps), cmocka_unit_test(test_regex_rewrites),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
