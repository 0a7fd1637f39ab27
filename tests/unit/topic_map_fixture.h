/* The topic map tests' fixture (test_topic_map*.c): a map built from rule
 * specs and a lookup that copies out what it rendered. */
#ifndef M2K_TEST_TOPIC_MAP_FIXTURE_H
#define M2K_TEST_TOPIC_MAP_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"
#include "map/topic_map.h"

typedef struct {
    const char *kind; /* "mqtt" or "regex" */
    const char *pattern;
    const char *kafka;
    const char *key; /* NULL = "{topic}" */
} rule_spec_t;

static inline topic_map_t *map_of(const rule_spec_t *specs, size_t n) {
    config_rule_t *rules = calloc(n ? n : 1, sizeof(*rules));
    assert_non_null(rules);
    for (size_t i = 0; i < n; i++) {
        rules[i].kind = strcmp(specs[i].kind, "regex") == 0 ? RULE_REGEX : RULE_FILTER;
        rules[i].pattern = (char *)specs[i].pattern;
        rules[i].kafka = (char *)specs[i].kafka;
        rules[i].key = (char *)(specs[i].key ? specs[i].key : "{topic}");
        rules[i].pos = (config_pos_t){(int)i + 1, 3};
        rules[i].pattern_pos = (config_pos_t){(int)i + 1, 11};
        rules[i].kafka_pos = (config_pos_t){(int)i + 1, 21};
        rules[i].file = "t.yaml";
    }
    char err[256];
    topic_map_t *m = topic_map_new(rules, n, err, sizeof(err));
    if (!m)
        fail_msg("topic_map_new: %s", err);
    free(rules);
    return m;
}

typedef struct {
    int rc;
    int rule;
    char topic[300];
    char key[300];
    int key_null;
} res_t;

static inline res_t lookup_ctx(const topic_map_t *m, const char *topic,
                               const topic_map_ctx_t *ctx) {
    char scratch[1024];
    topic_map_result_t out;
    memset(&out, 0x55, sizeof(out));
    res_t r = {0};
    r.rc = topic_map_lookup(m, topic, strlen(topic), ctx, scratch, sizeof(scratch), &out);
    r.rule = out.rule;
    if (r.rc == TOPIC_MAP_MATCHED) {
        assert_int_equal(strlen(out.kafka_topic), out.kafka_topic_len);
        snprintf(r.topic, sizeof(r.topic), "%s", out.kafka_topic);
        r.key_null = out.key == NULL;
        if (out.key)
            snprintf(r.key, sizeof(r.key), "%.*s", (int)out.key_len, out.key);
        else
            assert_int_equal(out.key_len, 0);
    }
    return r;
}

static inline res_t lookup(const topic_map_t *m, const char *topic) {
    return lookup_ctx(m, topic, NULL);
}

#endif
