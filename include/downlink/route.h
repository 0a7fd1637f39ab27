/* Routing a Kafka record to an MQTT topic name and QoS, per `downlink:` rule:
 * the rule's `mqtt:` template ({key}, {header:NAME}), or the record's
 * `mqtt.topic` header when it has none; the QoS of the record's `mqtt.qos`
 * header, else the rule's. A record whose topic cannot be rendered or renders
 * to an invalid topic name is skipped and counted by reason. */
#ifndef M2K_DOWNLINK_ROUTE_H
#define M2K_DOWNLINK_ROUTE_H

#include "downlink/downlink.h"

typedef struct {
    const char *kafka; /* Kafka topic to read */
    const char *mqtt;  /* template, or NULL: the record's mqtt.topic header */
    int qos;           /* 0, 1, 2 */
} dl_rule_t;

typedef struct {
    const char *name;
    const void *value; /* NULL for a header without value */
    size_t value_len;
} dl_header_t;

/* A consumed record as the consumer hands it over (views; nothing owned). */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const void *key; /* NULL = no key */
    size_t key_len;
    const void *value;
    size_t value_len;
    const dl_header_t *headers;
    size_t n_headers;
} dl_record_t;

typedef enum {
    DL_ROUTED = 0,
    DL_SKIP_NO_RULE,  /* the record's Kafka topic has no rule */
    DL_SKIP_MISSING,  /* no key for {key}, no such header, no mqtt.topic header */
    DL_SKIP_EMPTY,    /* rendered to "" */
    DL_SKIP_WILDCARD, /* '+' or '#' in the rendered topic */
    DL_SKIP_NUL,      /* a NUL byte in it */
    DL_SKIP_UTF8,     /* not valid UTF-8 */
    DL_SKIP_TOO_LONG, /* over 65535 bytes */
    DL_SKIP_BAD_QOS,  /* an mqtt.qos header other than "0", "1", "2" */
    DL_SKIP_REASONS
} dl_route_result_t;

typedef struct dl_router dl_router_t;

/* Compiles the rules; NULL with a message in errbuf (a template error names
 * the rule by index and the column in its template). */
dl_router_t *dl_router_new(const dl_rule_t *rules, size_t n, char *errbuf, size_t errlen);
void dl_router_free(dl_router_t *r);

/* A template's error (NULL when it is valid), for the configuration's
 * file:line:col messages: *col is the 0-based byte offset in tmpl. */
const char *dl_template_check(const char *tmpl, size_t *col);

/* The rule of a Kafka topic (index), or -1. */
int dl_router_rule(const dl_router_t *r, const char *kafka_topic);

/* Renders rec's MQTT topic into out (cap bytes, NUL-terminated; at least
 * 65536 covers every valid topic) and its QoS; DL_ROUTED or the reason it
 * was skipped (out is then ""), counted in the router's stats either way. */
dl_route_result_t dl_router_route(dl_router_t *r, const dl_record_t *rec, char *out, size_t cap,
                                  size_t *out_len, int *qos);

/* Records routed and skipped per reason since dl_router_new (index = result). */
const uint64_t *dl_router_counts(const dl_router_t *r);
/* Records seen per rule (index = rule). */
uint64_t dl_router_rule_count(const dl_router_t *r, size_t rule);
/* "routed", "no_rule", "missing", "empty", "wildcard", "nul", "utf8", "too_long", "bad_qos". */
const char *dl_route_result_name(dl_route_result_t res);

#endif
