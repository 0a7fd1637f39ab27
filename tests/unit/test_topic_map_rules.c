/* Topic map rules: what topic_map_new refuses (with the error's position),
 * what POSIX regex escapes stay accepted, Kafka's name limits, and --check's
 * warnings (topic_map_rule_lint). */
#include "topic_map_fixture.h"

typedef struct {
    char buf[4096];
    size_t len;
} lint_out_t;

static void lint_report(void *ud, config_pos_t pos, const char *msg) {
    lint_out_t *o = ud;
    o->len += (size_t)snprintf(o->buf + o->len, sizeof(o->buf) - o->len, "%d:%d: %s\n", pos.line,
                               pos.col, msg);
}

static const char *lint_of(const char *kind, const char *pattern, const char *kafka,
                           lint_out_t *o) {
    config_rule_t r = {0};
    r.kind = strcmp(kind, "regex") == 0 ? RULE_REGEX : RULE_FILTER;
    r.pattern = (char *)pattern;
    r.kafka = (char *)kafka;
    r.key = (char *)"{topic}";
    r.pattern_pos = (config_pos_t){4, 12};
    r.kafka_pos = (config_pos_t){5, 12};
    o->len = 0;
    o->buf[0] = '\0';
    int n = topic_map_rule_lint(&r, 0, lint_report, o);
    size_t lines = 0;
    for (const char *p = o->buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal((size_t)n, lines);
    return o->buf;
}

#define TAIL                                                                                       \
    ": a message whose rendered Kafka topic is illegal is refused, never acknowledged (allowed: "  \
    "a-z A-Z 0-9 . _ -, 1..249 characters)\n"

/* --check's warnings (finding 2, issue 19 bug 6). */
static void test_rule_lint(void **state) {
    (void)state;
    lint_out_t o;
    assert_string_equal(lint_of("regex", "(.+)/alarm", "alarms", &o),
                        "4:12: topics[0].regex: \"(.+)/alarm\" is not anchored with '^': it is "
                        "tried from every position of the topic, in time up to quadratic in the "
                        "topic's length on the event loop (topics over "
                        "mqtt.max_regex_topic_length skip regex rules)\n");
    assert_string_equal(lint_of("regex", "^a/(.+)$|b", "x", &o),
                        "4:12: topics[0].regex: \"^a/(.+)$|b\" is not anchored with '^': it is "
                        "tried from every position of the topic, in time up to quadratic in the "
                        "topic's length on the event loop (topics over "
                        "mqtt.max_regex_topic_length skip regex rules)\n");
    assert_string_equal(lint_of("regex", "^a/(.+)$|^b(c|d)", "x", &o), "");
    /* groups that can only match legal bytes */
    assert_string_equal(lint_of("regex", "^plant/([a-z0-9-]+)/([^/]+)/.+$", "plant-{1}", &o), "");
    assert_string_equal(lint_of("regex", "^p/([[:alnum:]_.]{1,20}|x\\.y)/(.*)$", "p-{1}", &o), "");
    assert_string_equal(
        lint_of("regex", "^plant/([^/]+)/(.+)$", "plant-{1}", &o),
        "5:12: topics[0].kafka: {1} is regex group 1, which may match a byte a Kafka topic name "
        "cannot hold (write the group with [a-zA-Z0-9._-])" TAIL);
    assert_string_equal(lint_of("regex", "^p/([a-z]+)/(.)", "p-{2}", &o),
                        "5:12: topics[0].kafka: {2} is regex group 2, which may match a byte a "
                        "Kafka topic name cannot hold (write the group with [a-zA-Z0-9._-])" TAIL);
    assert_string_equal(lint_of("regex", "^p/([a-~]+)$", "p-{1}", &o),
                        "5:12: topics[0].kafka: {1} is regex group 1, which may match a byte a "
                        "Kafka topic name cannot hold (write the group with [a-zA-Z0-9._-])" TAIL);
    assert_string_equal(lint_of("mqtt", "a/+/#", "a-{1}-{2}", &o),
                        "5:12: topics[0].kafka: {1} is a whole topic level ('+'), which may hold "
                        "any character but '/' (a regex rule with a [a-zA-Z0-9._-] group bounds "
                        "it)" TAIL "5:12: topics[0].kafka: {2} is what '#' matches, which may hold "
                        "'/'" TAIL);
    assert_string_equal(lint_of("mqtt", "a/b", "{topic}", &o),
                        "5:12: topics[0].kafka: {topic} is the MQTT topic, whose '/' a Kafka "
                        "topic name cannot hold" TAIL);
    assert_string_equal(lint_of("mqtt", "ab", "{topic}", &o), "");
    assert_string_equal(lint_of("mqtt", "a/+", "a-{{1}}", &o), "");
    assert_string_equal(lint_of("mqtt", "a", "c-{client_id}-{username}", &o),
                        "5:12: topics[0].kafka: {client_id} is chosen by the client and may hold "
                        "any character" TAIL
                        "5:12: topics[0].kafka: {username} may hold any character" TAIL);
    assert_string_equal(lint_of("mqtt", "a", "c-{property:site}", &o),
                        "5:12: topics[0].kafka: {property:NAME} is chosen by the client and may "
                        "hold any character" TAIL);
}

static void test_new_reports_errors(void **state) {
    (void)state;
    static const struct {
        rule_spec_t spec;
        const char *err;
    } cases[] = {
        {{"mqtt", "a/#/b", "t", NULL},
         "t.yaml:1:11: topics[0].mqtt: invalid topic filter \"a/#/b\": '#' must be alone in the "
         "last level"},
        {{"mqtt", "a#", "t", NULL},
         "t.yaml:1:11: topics[0].mqtt: invalid topic filter \"a#\": '#' must be alone in the last "
         "level"},
        {{"mqtt", "a/b+", "t", NULL},
         "t.yaml:1:11: topics[0].mqtt: invalid topic filter \"a/b+\": '+' must be alone in its "
         "level"},
        {{"mqtt", "", "t", NULL},
         "t.yaml:1:11: topics[0].mqtt: invalid topic filter \"\": an empty topic filter matches "
         "nothing"},
        {{"regex", "a(", "t", NULL},
         "t.yaml:1:11: topics[0].regex: invalid POSIX extended regex \"a(\": Unmatched ( or \\("},
        {{"regex", "^dev/\\d+/x$", "t", NULL},
         "t.yaml:1:11: topics[0].regex: \"\\d\" in \"^dev/\\d+/x$\" is a Perl escape, not "
         "POSIX extended regex (which would match something else): use [0-9]"},
        {{"regex", "^a/\\\\\\W", "t", NULL},
         "t.yaml:1:11: topics[0].regex: \"\\W\" in \"^a/\\\\\\W\" is a Perl escape, not "
         "POSIX extended regex (which would match something else): use [^[:alnum:]_]"},
        {{"regex", "^a[.\\s]$", "t", NULL},
         "t.yaml:1:11: topics[0].regex: \"\\s\" inside [...] in \"^a[.\\s]$\" is a Perl "
         "escape, not POSIX extended regex (which would match something else): use [:space:] (as "
         "in [[:space:]])"},
        {{"regex", "(^|/)\\bx", "t", NULL},
         "t.yaml:1:11: topics[0].regex: \"\\b\" in \"(^|/)\\bx\" is a Perl escape, not POSIX "
         "extended regex (which would match something else): use ^, $ or the level separator (as "
         "in (^|/)name(/|$)): POSIX has no word boundaries or \\A \\z"},
        {{"regex", "^a\\ex", "t", NULL},
         "t.yaml:1:11: topics[0].regex: \"\\e\" in \"^a\\ex\" is a Perl escape, not POSIX "
         "extended regex (which would match something else): use the letter itself, without the "
         "backslash, or a bracket expression"},
        {{"mqtt", "a/+", "t{2}", NULL},
         "t.yaml:1:21: topics[0].kafka: {2} names capture 2 but "
         "the rule has 1"},
        {{"regex", "^(a)$", "t{2}", NULL},
         "t.yaml:1:21: topics[0].kafka: {2} names capture 2 "
         "but the rule has 1"},
        {{"mqtt", "a", "t", "{1}"},
         "t.yaml:1:3: topics[0].key: {1} names capture 1 but the rule "
         "has 0"},
        {{"mqtt", "a", "t{x}", NULL},
         "t.yaml:1:21: topics[0].kafka: unknown placeholder {x} (expected {1}..{9}, {topic}, "
         "{client_id}, {username} or {property:NAME})"},
        {{"mqtt", "a", "t{0}", NULL},
         "t.yaml:1:21: topics[0].kafka: unknown placeholder {0} (expected {1}..{9}, {topic}, "
         "{client_id}, {username} or {property:NAME})"},
        {{"mqtt", "a", "t{property:}", NULL},
         "t.yaml:1:21: topics[0].kafka: unknown placeholder {property:} (expected {1}..{9}, "
         "{topic}, {client_id}, {username} or {property:NAME})"},
        {{"mqtt", "a", "t{topic", NULL},
         "t.yaml:1:21: topics[0].kafka: unmatched '{' at offset "
         "1 (write '{{' for a literal '{')"},
        {{"mqtt", "a", "t", "x}"},
         "t.yaml:1:3: topics[0].key: unmatched '}' at offset 1 (write "
         "'}}' for a literal '}')"},
        {{"mqtt", "a", "a/b", NULL},
         "t.yaml:1:21: topics[0].kafka: '/' is not allowed in a "
         "Kafka topic name (allowed: a-z A-Z 0-9 . _ -)"},
        {{"mqtt", "a", "{{x}}", NULL},
         "t.yaml:1:21: topics[0].kafka: '{' is not allowed in a "
         "Kafka topic name (allowed: a-z A-Z 0-9 . _ -)"},
        {{"mqtt", "a", "", NULL},
         "t.yaml:1:21: topics[0].kafka: a Kafka topic name must not be empty"},
        {{"mqtt", "a", "..", NULL},
         "t.yaml:1:21: topics[0].kafka: \".\" and \"..\" are not valid Kafka topic names"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_rule_t r = {0};
        const rule_spec_t *s = &cases[i].spec;
        r.kind = strcmp(s->kind, "regex") == 0 ? RULE_REGEX : RULE_FILTER;
        r.pattern = (char *)s->pattern;
        r.kafka = (char *)s->kafka;
        r.key = (char *)(s->key ? s->key : "{topic}");
        r.pos = (config_pos_t){1, 3};
        r.pattern_pos = (config_pos_t){1, 11};
        r.kafka_pos = (config_pos_t){1, 21};
        r.file = "t.yaml";
        char err[512];
        assert_null(topic_map_new(&r, 1, err, sizeof(err)));
        assert_string_equal(err, cases[i].err);
    }
}

/* What POSIX does give a backslash, and bracket classes, stay accepted. */
static void test_regex_posix_escapes_accepted(void **state) {
    (void)state;
    static const char *const ok[] = {"^a\\.b\\+c\\(d\\)$", "^a\\\\d$",
                                     "^[[:alnum:]_]+/[^[:space:]]$", "^[]a]x\\[y$", "^[[.-.]a]$"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        config_rule_t r = {0};
        r.kind = RULE_REGEX;
        r.pattern = (char *)ok[i];
        r.kafka = "t";
        r.key = "{topic}";
        r.file = "t.yaml";
        char err[512];
        topic_map_t *m = topic_map_new(&r, 1, err, sizeof(err));
        assert_non_null(m);
        topic_map_free(m);
    }
}

static void test_kafka_name_limits(void **state) {
    (void)state;
    char name[251];
    const char *why;
    memset(name, 'a', sizeof(name));
    assert_int_equal(topic_map_kafka_topic_check(name, 249, &why), 0);
    assert_int_equal(topic_map_kafka_topic_check(name, 250, &why), -1);
    assert_string_equal(why, "a Kafka topic name has at most 249 characters");
    /* Literal parts over 249 characters cannot become legal. */
    char tmpl[260];
    memset(tmpl, 'a', 250);
    strcpy(tmpl + 250, "{1}");
    config_rule_t r = {RULE_FILTER, "+", tmpl, "", {1, 1}, {1, 1}, {2, 8}, {0, 0}, "t.yaml"};
    char err[256];
    assert_null(topic_map_new(&r, 1, err, sizeof(err)));
    assert_string_equal(
        err, "t.yaml:2:8: topics[0].kafka: a Kafka topic name has at most 249 characters");
    tmpl[249] = '{';
    tmpl[250] = '1';
    tmpl[251] = '}';
    tmpl[252] = '\0';
    topic_map_t *m = topic_map_new(&r, 1, err, sizeof(err));
    assert_non_null(m);
    topic_map_free(m);
    /* A filter too deep for the lookup's bounded recursion. */
    char deep[2 * TOPIC_MAP_MAX_FILTER_LEVELS + 2];
    for (int i = 0; i < TOPIC_MAP_MAX_FILTER_LEVELS; i++) {
        deep[2 * i] = 'a';
        deep[2 * i + 1] = '/';
    }
    deep[2 * TOPIC_MAP_MAX_FILTER_LEVELS - 1] = '\0';
    config_rule_t d = {RULE_FILTER, deep, "t", "", {1, 1}, {1, 9}, {1, 1}, {0, 0}, "t.yaml"};
    m = topic_map_new(&d, 1, err, sizeof(err));
    assert_non_null(m);
    topic_map_free(m);
    deep[2 * TOPIC_MAP_MAX_FILTER_LEVELS - 1] = '/';
    deep[2 * TOPIC_MAP_MAX_FILTER_LEVELS] = 'a';
    deep[2 * TOPIC_MAP_MAX_FILTER_LEVELS + 1] = '\0';
    assert_null(topic_map_new(&d, 1, err, sizeof(err)));
    assert_string_equal(err, "t.yaml:1:9: topics[0].mqtt: a topic filter has at most 128 levels");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_lint),
        cmocka_unit_test(test_new_reports_errors),
        cmocka_unit_test(test_regex_posix_escapes_accepted),
        cmocka_unit_test(test_kafka_name_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
