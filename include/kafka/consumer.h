/* Kafka consumer for the downlink (librdkafka is used in kafka/ only): reads
 * every partition of the configured topics without a consumer group and
 * without committing (each instance reads everything), from the end of each
 * partition that exists at the start, or from the beginning for one topic
 * (the retained topic) and for partitions and topics that appear later.
 * Records are handed to a callback on the caller's (loop) thread from
 * kafka_consumer_poll, which an event loop calls when kafka_consumer_event_fd
 * is readable, as for the producer. */
#ifndef M2K_KAFKA_CONSUMER_H
#define M2K_KAFKA_CONSUMER_H

#include "kafka/producer.h"

typedef struct kafka_consumer kafka_consumer_t;

/* One record; views valid during the callback only. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 when the record has none */
    const void *key;      /* NULL = no key */
    size_t key_len;
    const void *value; /* NULL = no value (a tombstone) */
    size_t value_len;
    const kafka_header_t *headers;
    size_t n_headers;
} kafka_message_t;

typedef void (*kafka_message_cb)(void *ud, const kafka_message_t *m);

typedef struct {
    const char *bootstrap_servers; /* an address list (embedded: kafka_bootstrap_servers) */
    const char *const *properties; /* name, value, ... (kafka.properties: security etc.) */
    size_t n_properties;           /* pairs */
    const char *const *topics;     /* read from the end */
    size_t n_topics;
    const char *from_beginning; /* NULL, or one more topic read from the beginning */
    uint32_t refresh_ms;        /* metadata refresh (new partitions, new topics); 0 = 5000 */
    kafka_message_cb on_message;
    void *ud;
} kafka_consumer_opts_t;

typedef struct {
    uint64_t consumed;     /* records handed to on_message */
    uint64_t out_of_range; /* a partition behind Kafka's retention, resumed at its earliest */
    uint64_t errors;       /* other consume errors (logged, rate-limited) */
    uint32_t partitions;   /* partitions being read */
    uint32_t topics_found; /* configured topics with partitions being read */
    int64_t lag;           /* records behind the high watermarks Kafka last reported */
    bool assigned;         /* the first metadata answer came: every existing partition is read */
} kafka_consumer_stats_t;

/* Creates the consumer and starts the metadata thread that assigns
 * partitions (the first assignment follows the first metadata answer).
 * 0, or -1 with a message in errbuf. */
int kafka_consumer_new(const kafka_consumer_opts_t *opts, kafka_consumer_t **out, char *errbuf,
                       size_t errlen);
void kafka_consumer_free(kafka_consumer_t *c);

/* A non-blocking fd readable when records (or errors) wait. */
int kafka_consumer_event_fd(const kafka_consumer_t *c);
/* Hands up to max waiting records to on_message; how many. When more wait,
 * the fd stays readable. max 0 clears the fd only: the records wait, and the
 * fd says nothing of them until the caller polls again with max > 0. */
int kafka_consumer_poll(kafka_consumer_t *c, int max);

void kafka_consumer_stats(kafka_consumer_t *c, kafka_consumer_stats_t *st);

/* librdkafka's defaults changed for latency: a fetch returns at once when
 * there is data, and waits at most this long when there is none. */
#define KAFKA_CONSUMER_FETCH_WAIT_MS "10"

#endif
