/* downlink/route.c and topic.c: templates, the mqtt.topic and mqtt.qos
 * headers, every skip reason counted, topic name and filter checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "downlink/route.h"

static dl_router_t *router(void) {
    static const dl_rule_t rules[] = {
        {"commands", "devices/{key}/commands", 1},
        {"mqtt-events", NULL, 0},
        {"by-header", "site/{header:site}/{header:room}/set", 2},
        {"literal", "fixed/topic", 0},
        {"braces", "{{x}}/{key}}}", 1},
    };
    char err[200] = "";
    dl_router_t *r = dl_router_new(rules, 5, err, sizeof(err));
    if (!r)
        fail_msg("dl_router_new: %s", err);
    return r;
}

typedef struct {
    dl_route_result_t res;
    char topic[256];
    int qos;
} out_t;

static out_t route(dl_router_t *r, const char *kafka, const char *key, size_t key_len,
                   const dl_header_t *h, size_t nh) {
    out_t o = {.qos = -1};
    dl_record_t rec = {.topic = kafka,
                       .partition = 0,
                       .offset = 7,
                       .key = key,
                       .key_len = key_len,
                       .value = "v",
                       .value_len = 1,
                       .headers = h,
                       .n_headers = nh};
    size_t len = 99;
    o.res = dl_router_route(r, &rec, o.topic, sizeof(o.topic), &len, &o.qos);
    assert_int_equal(len, o.res == DL_ROUTED ? strlen(o.topic) : len);
    return o;
}

static void test_templates(void **state) {
    (void)state;
    dl_router_t *r = router();
    out_t o = route(r, "commands", "bulb-7", 6, NULL, 0);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "devices/bulb-7/commands");
    assert_int_equal(o.qos, 1);

    dl_header_t h[] = {{"room", "kitchen", 7}, {"site", "lyon", 4}, {"room", "hall", 4}};
    o = route(r, "by-header", NULL, 0, h, 3);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "site/lyon/hall/set"); /* the last "room" header */
    assert_int_equal(o.qos, 2);

    o = route(r, "literal", NULL, 0, NULL, 0);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "fixed/topic");
    assert_int_equal(o.qos, 0);

    dl_header_t t[] = {{"mqtt.topic", "a/b/c", 5}, {"mqtt.qos", "2", 1}};
    o = route(r, "mqtt-events", NULL, 0, t, 2);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "a/b/c");
    assert_int_equal(o.qos, 2);
    o = route(r, "mqtt-events", NULL, 0, t, 1);
    assert_int_equal(o.qos, 0); /* the rule's */

    /* An empty key is a key: "devices//commands" is a valid topic. */
    o = route(r, "commands", "", 0, NULL, 0);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "devices//commands");

    o = route(r, "braces", "k", 1, NULL, 0);
    assert_int_equal(o.res, DL_ROUTED);
    assert_string_equal(o.topic, "{x}/k}");

    assert_int_equal(dl_router_rule(r, "by-header"), 2);
    assert_int_equal(dl_router_rule(r, "nope"), -1);
    assert_int_equal(dl_router_rule_count(r, 0), 2);
    assert_int_equal(dl_router_rule_count(r, 1), 2);
    assert_int_equal(dl_router_counts(r)[DL_ROUTED], 7);
    dl_router_free(r);
}

static void test_skips_counted(void **state) {
    (void)state;
    dl_router_t *r = router();
    static const struct {
        const char *kafka, *key;
        size_t key_len;
        dl_header_t h;
        dl_route_result_t res;
    } cases[] = {
        {"other", "k", 1, {"x", "y", 1}, DL_SKIP_NO_RULE},
        {"commands", NULL, 0, {"x", "y", 1}, DL_SKIP_MISSING},
        {"mqtt-events", NULL, 0, {"x", "y", 1}, DL_SKIP_MISSING},
        {"mqtt-events", NULL, 0, {"mqtt.topic", NULL, 0}, DL_SKIP_MISSING},
        {"by-header", NULL, 0, {"site", "s", 1}, DL_SKIP_MISSING},
        {"mqtt-events", NULL, 0, {"mqtt.topic", "", 0}, DL_SKIP_EMPTY},
        {"commands", "a+", 2, {"x", "y", 1}, DL_SKIP_WILDCARD},
        {"commands", "#", 1, {"x", "y", 1}, DL_SKIP_WILDCARD},
        {"mqtt-events", NULL, 0, {"mqtt.topic", "a/+/b", 5}, DL_SKIP_WILDCARD},
        {"commands", "a\0b", 3, {"x", "y", 1}, DL_SKIP_NUL},
        {"commands", "\xc3\x28", 2, {"x", "y", 1}, DL_SKIP_UTF8},
        {"commands", "\xed\xa0\x80", 3, {"x", "y", 1}, DL_SKIP_UTF8},
        {"literal", NULL, 0, {"mqtt.qos", "3", 1}, DL_SKIP_BAD_QOS},
        {"literal", NULL, 0, {"mqtt.qos", "11", 2}, DL_SKIP_BAD_QOS},
        {"literal", NULL, 0, {"mqtt.qos", NULL, 0}, DL_SKIP_BAD_QOS},
    };
    uint64_t want[DL_SKIP_REASONS] = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out_t o = route(r, cases[i].kafka, cases[i].key, cases[i].key_len, &cases[i].h, 1);
        if (o.res != cases[i].res)
            fail_msg("case %zu: %s, want %s", i, dl_route_result_name(o.res),
                     dl_route_result_name(cases[i].res));
        want[cases[i].res]++;
    }
    assert_memory_equal(dl_router_counts(r), want, sizeof(want));
    assert_int_equal(want[DL_SKIP_MISSING], 4);

    /* A key longer than a topic may be. */
    char *big = malloc(70000);
    memset(big, 'k', 70000);
    out_t o = route(r, "commands", big, 70000, NULL, 0);
    assert_int_equal(o.res, DL_SKIP_TOO_LONG);
    char *out = malloc(70000);
    size_t len;
    int qos;
    dl_record_t rec = {.topic = "commands", .key = big, .key_len = 65535 - 17};
    assert_int_equal(dl_router_route(r, &rec, out, 70000, &len, &qos), DL_ROUTED);
    assert_int_equal(len, 65535);
    rec.key_len++;
    assert_int_equal(dl_router_route(r, &rec, out, 70000, &len, &qos), DL_SKIP_TOO_LONG);
    /* The caller's buffer is the bound too. */
    rec.key_len = 10;
    assert_int_equal(dl_router_route(r, &rec, out, 28, &len, &qos), DL_ROUTED);
    assert_int_equal(dl_router_route(r, &rec, out, 27, &len, &qos), DL_SKIP_TOO_LONG);
    assert_string_equal(out, "");
    free(out);
    free(big);
    assert_string_equal(dl_route_result_name(DL_SKIP_UTF8), "utf8");
    dl_router_free(r);
}

static void test_template_errors(void **state) {
    (void)state;
    static const struct {
        const char *t, *err;
        size_t col;
    } cases[] = {
        {"a/{key}", NULL, 0},
        {"{header:x}{key}", NULL, 0},
        {"a{{b}}", NULL, 0},
        {"", "empty", 0},
        {"a/{keys}", "unknown placeholder (known: {key}, {header:NAME})", 2},
        {"a/{header:}", "unknown placeholder (known: {key}, {header:NAME})", 2},
        {"a/{key", "'{' without '}'", 2},
        {"a}", "'}' without '{'", 1},
        {"{header:a{b}", "'{' inside a placeholder", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t col = 99;
        const char *err = dl_template_check(cases[i].t, &col);
        if (!cases[i].err) {
            assert_null(err);
            continue;
        }
        assert_non_null(err);
        assert_string_equal(err, cases[i].err);
        assert_int_equal(col, cases[i].col);
    }
    dl_rule_t bad[] = {{"a", "x/{nope}", 1}};
    char err[200];
    assert_null(dl_router_new(bad, 1, err, sizeof(err)));
    assert_string_equal(err, "downlink rule 1: mqtt template, column 3: unknown placeholder "
                             "(known: {key}, {header:NAME})");
    dl_rule_t badq[] = {{"a", NULL, 1}, {"b", NULL, 3}};
    assert_null(dl_router_new(badq, 2, err, sizeof(err)));
    assert_string_equal(err, "downlink rule 2: qos 3 is not 0, 1 or 2");
}

static void test_topic_checks(void **state) {
    (void)state;
    const char *why;
    assert_int_equal(dl_topic_check("a/b", 3, &why), 0);
    assert_null(why);
    assert_int_equal(dl_topic_check("", 0, &why), DL_EINVAL);
    assert_string_equal(why, "empty");
    assert_int_equal(dl_topic_check("a/+", 3, &why), DL_EINVAL);
    assert_string_equal(why, "contains a wildcard");
    assert_int_equal(dl_filter_check("a/+/#", 5, &why), 0);
    assert_int_equal(dl_filter_check("+", 1, NULL), 0);
    assert_int_equal(dl_filter_check("#", 1, NULL), 0);
    assert_int_equal(dl_filter_check("a+", 2, &why), DL_EINVAL);
    assert_string_equal(why, "a wildcard is not a whole level");
    assert_int_equal(dl_filter_check("a/#/b", 5, &why), DL_EINVAL);
    assert_string_equal(why, "'#' is not the last level");
    assert_int_equal(dl_filter_check("a\0", 2, &why), DL_EINVAL);
    assert_string_equal(why, "contains NUL");
    assert_true(dl_utf8_valid("\xe2\x82\xac\xf0\x9f\x98\x80", 7));
    assert_false(dl_utf8_valid("\xc0\x80", 2));         /* overlong NUL */
    assert_false(dl_utf8_valid("\xe0\x80\x80", 3));     /* overlong */
    assert_false(dl_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(dl_utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_string_equal(dl_strerror(DL_EFULL), "bound reached");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_skips_counted),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_topic_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
