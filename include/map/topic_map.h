/* Topic map: MQTT topic -> Kafka topic, key (and which rule matched).
 * Filter rules are compiled into a trie so lookup cost does not grow with the
 * number of rules; regex rules (regex.h) keep their place in rule order. */
#ifndef M2K_TOPIC_MAP_H
#define M2K_TOPIC_MAP_H

#include <stddef.h>

#include "config/config.h"

typedef struct topic_map topic_map_t;

/* What a template may use besides the rule's captures. */
typedef struct {
    const char *client_id;
    size_t client_id_len;
    const char *username; /* NULL when the client gave none */
    size_t username_len;
    /* {property:NAME}: the value of the message's first MQTT 5 user property
     * NAME into *val, *val_len; false when it has none (renders empty).
     * NULL for a message without properties (MQTT 3.1.1, wills). */
    bool (*property)(const void *props, const char *name, size_t name_len, const char **val,
                     size_t *val_len);
    const void *props;
} topic_map_ctx_t;

typedef struct {
    const char *kafka_topic; /* NUL-terminated, inside the caller's scratch */
    size_t kafka_topic_len;
    const char *key; /* inside scratch (not NUL-terminated); NULL when the rule's
                        key template is "" (record without a key) */
    size_t key_len;
    int rule; /* index of the matching rule in config order, -1 for unmapped */
    /* UNMAPPED only: regex rules were not tried, the topic being longer than
     * topic_map_set_regex_topic_max's bound */
    int regex_skipped;
} topic_map_result_t;

enum {
    TOPIC_MAP_UNMAPPED = 0,       /* no rule matched */
    TOPIC_MAP_MATCHED = 1,        /* out is filled */
    TOPIC_MAP_ERR_NO_ROOM = -1,   /* rendered topic + key do not fit in scratch */
    TOPIC_MAP_ERR_BAD_TOPIC = -2, /* rendered Kafka topic is not a legal Kafka name */
    /* rendered Kafka topic starts with '_' (Kafka's internal topics, Schema
     * Registry's _schemas) though the rule's template does not */
    TOPIC_MAP_ERR_RESERVED = -3,
};

/* Why a mapped message's rendered Kafka topic is refused (rc one of the
 * TOPIC_MAP_ERR_*), as a clause after "it renders the Kafka topic 'NAME', "
 * (TOPIC_MAP_ERR_NO_ROOM: a clause of its own, no name was rendered).
 * Inline: the session (mqtt/) words its refusals with it without linking map/. */
static inline const char *topic_map_refusal(int rc) {
    switch (rc) {
    case TOPIC_MAP_ERR_RESERVED:
        return "which starts with '_' though the rule's template does not (Kafka and its tools "
               "keep such names)";
    case TOPIC_MAP_ERR_NO_ROOM:
        return "its rendered Kafka topic and key do not fit in the routing buffer";
    default:
        return "which is not a legal Kafka topic name (a-z A-Z 0-9 . _ -, 1..249 characters)";
    }
}

/* Compiles the rules; NULL on error with a "file:line:col: message" in errbuf. */
topic_map_t *topic_map_new(const config_rule_t *rules, size_t n, char *errbuf, size_t errlen);
void topic_map_free(topic_map_t *m);
/* Topics longer than `max` bytes skip the regex rules (regexec's cost grows
 * with the topic, up to quadratically for an unanchored pattern); filter
 * rules still apply. 0 (the default) = no bound. */
void topic_map_set_regex_topic_max(topic_map_t *m, size_t max);

/* Looks up an MQTT topic (not NUL-terminated) and renders the Kafka topic and
 * key into `scratch`; when regex rules are tried, `scratch` first holds a
 * NUL-terminated copy of the topic for regexec (TOPIC_MAP_ERR_NO_ROOM when the
 * topic does not fit). No heap allocation. Returns a TOPIC_MAP_* value. */
int topic_map_lookup(const topic_map_t *m, const char *topic, size_t topic_len,
                     const topic_map_ctx_t *ctx, char *scratch, size_t scratch_cap,
                     topic_map_result_t *out);

/* Validation shared by config_load and topic_map_new, so both say the same
 * thing. `report` is called once per error with the position of the offending
 * value and a message without position; returns how many errors it found.
 * Checks the filter or regex, and the kafka and key templates (placeholders,
 * captures the rule can produce, legal characters in the Kafka topic). */
typedef void (*topic_map_report_fn)(void *ud, config_pos_t pos, const char *msg);
int topic_map_rule_check(const config_rule_t *rule, size_t index, topic_map_report_fn report,
                         void *ud);

/* Warnings for --check about a valid rule (`report` as above, once per
 * warning): an unanchored regex (slow on long topics), and a Kafka topic
 * template that can render an illegal name from what the client chooses (a
 * {N} that may hold a '/', '+' or a character Kafka refuses, {topic},
 * {client_id}, {username}): such messages are refused. Returns the count. */
int topic_map_rule_lint(const config_rule_t *rule, size_t index, topic_map_report_fn report,
                        void *ud);

/* An MQTT topic filter: non-empty, '#' alone in the last level, '+' alone in
 * its level. Returns 0 or -1 with a static reason in *why. */
int topic_map_filter_check(const char *filter, size_t len, const char **why);
/* A literal Kafka topic name: 1..249 of [a-zA-Z0-9._-], not "." or "..".
 * Returns 0 or -1 with a static reason in *why. */
int topic_map_kafka_topic_check(const char *name, size_t len, const char **why);

/* Longest topic filter (in levels) a rule may have; bounds the lookup's
 * recursion depth. */
#define TOPIC_MAP_MAX_FILTER_LEVELS 128
/* Kafka's limit on topic names. */
#define TOPIC_MAP_KAFKA_TOPIC_MAX 249

#endif
