/* Topic map: MQTT topic -> Kafka topic, key (and which rule matched).
 * Filter rules are compiled into a trie so lookup cost does not grow with the
 * number of rules; regex rules (regex.h) keep their place in rule order. */
#ifndef M2K_TOPIC_MAP_H
#define M2K_TOPIC_MAP_H

#include <stddef.h>

#include "config.h"

typedef struct topic_map topic_map_t;

/* What a template may use besides the rule's captures. */
typedef struct {
    const char *client_id;
    size_t client_id_len;
    const char *username; /* NULL when the client gave none */
    size_t username_len;
} topic_map_ctx_t;

typedef struct {
    const char *kafka_topic; /* NUL-terminated, inside the caller's scratch */
    size_t kafka_topic_len;
    const char *key; /* inside scratch (not NUL-terminated) */
    size_t key_len;
    int rule; /* index of the matching rule in config order, -1 for unmapped */
} topic_map_result_t;

enum {
    TOPIC_MAP_UNMAPPED = 0,       /* no rule matched */
    TOPIC_MAP_MATCHED = 1,        /* out is filled */
    TOPIC_MAP_ERR_NO_ROOM = -1,   /* rendered topic + key do not fit in scratch */
    TOPIC_MAP_ERR_BAD_TOPIC = -2, /* rendered Kafka topic is not a legal Kafka name */
};

/* Compiles the rules; NULL on error with a "file:line:col: message" in errbuf. */
topic_map_t *topic_map_new(const config_rule_t *rules, size_t n, char *errbuf, size_t errlen);
void topic_map_free(topic_map_t *m);

/* Looks up an MQTT topic (not NUL-terminated) and renders the Kafka topic and
 * key into `scratch`. No heap allocation. Returns a TOPIC_MAP_* value. */
int topic_map_lookup(const topic_map_t *m, const char *topic, size_t topic_len,
                     const topic_map_ctx_t *ctx, char *scratch, size_t scratch_cap,
                     topic_map_result_t *out);

#endif
