/* Kafka producer (librdkafka is used here only): one producer, delivery
 * reports served on the event-loop thread, the embedded mock cluster.
 * This header does not include rdkafka.h, so other modules and their tests do
 * not depend on librdkafka. */
#ifndef M2K_KAFKA_H
#define M2K_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kafka kafka_t;

typedef struct {
    const char *name; /* NUL-terminated */
    const void *value;
    size_t len;
} kafka_header_t;

typedef struct {
    const char *topic; /* NUL-terminated */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const kafka_header_t *headers;
    size_t n_headers;
    int64_t timestamp_ms; /* receipt time; 0 = let librdkafka set it */
} kafka_record_t;

/* Called on the loop thread from kafka_poll(): err == 0 means Kafka confirmed
 * the record (acks as configured); otherwise errstr says why it failed. */
typedef void (*kafka_delivery_cb)(void *ud, uint64_t opaque, int err, const char *errstr);
/* A fatal producer error (rd_kafka_fatal_error), on the loop thread from
 * kafka_poll(). Either kafka_replace_soon() from here, or the producer stays
 * fatal (kafka_produce: KAFKA_ERR_FATAL): stop intake, flush, exit. */
typedef void (*kafka_fatal_cb)(void *ud, const char *errstr);
/* After kafka_replace_soon: errstr NULL when a new producer took over once
 * every report of the old one was served, `failed` of them failed since its
 * fatal error. Else why no new producer could be made (the old one stays,
 * fatal, drained). */
typedef void (*kafka_replaced_cb)(void *ud, int failed, const char *errstr);
/* librdkafka's statistics JSON (statistics.interval.ms), on the loop thread
 * from kafka_poll(); the buffer is valid during the call only. */
typedef void (*kafka_stats_cb)(void *ud, const char *json, size_t len);

typedef struct {
    const char *bootstrap_servers; /* "embedded" starts the in-process mock cluster */
    const char *const *properties; /* name, value, name, value, ... applied in order */
    size_t n_properties;           /* number of name/value PAIRS (2 * n_properties strings) */
    kafka_delivery_cb on_delivery;
    kafka_fatal_cb on_fatal;
    kafka_replaced_cb on_replaced; /* optional */
    /* Optional. When set, statistics.interval.ms defaults to
     * KAFKA_STATS_INTERVAL_MS_DEFAULT (properties may override it; 0 = off). */
    kafka_stats_cb on_stats;
    void *ud;
} kafka_opts_t;

#define KAFKA_STATS_INTERVAL_MS_DEFAULT "15000"

/* kafka_produce keeps librdkafka topic handles for this many distinct topics
 * (producing with a handle skips a lookup by name per record); further topics
 * are produced by name. */
#define KAFKA_TOPIC_CACHE_MAX 1024

enum {
    KAFKA_OK = 0,
    KAFKA_ERR_QUEUE_FULL = -1, /* librdkafka's queue is full: pause intake, retry later */
    KAFKA_ERR_PRODUCE = -2,    /* any other produce error (see kafka_last_error) */
    KAFKA_ERR_FATAL = -3,      /* the producer is in a fatal state */
    /* Not kafka_produce's: the spool (spooler.h) is full. QoS 1/2 wait as
     * for KAFKA_ERR_QUEUE_FULL (no ack); QoS 0 is dropped and counted. */
    KAFKA_ERR_SPOOL_FULL = -4,
};

/* Creates the producer (and the mock cluster for "embedded"). Returns 0 or -1
 * with a message in errbuf. */
int kafka_new(const kafka_opts_t *opts, kafka_t **out, char *errbuf, size_t errlen);
/* Flushes nothing; purges what is left and frees. Call kafka_flush first. */
void kafka_free(kafka_t *k);

/* Builds the producer's configuration as kafka_new does (opts' bootstrap
 * servers aside) and lets librdkafka judge it whole by creating a handle that
 * connects to nothing. 0, or -1 with "kafka producer: <librdkafka's message>"
 * in errbuf. Used by `mqtt2kafka --check`. */
int kafka_check(const kafka_opts_t *opts, char *errbuf, size_t errlen);
/* Checks one producer property with librdkafka; 0 or -1 with librdkafka's
 * own message in errbuf. Used by `mqtt2kafka --check`. */
int kafka_check_property(const char *name, const char *value, char *errbuf, size_t errlen);

/* A non-blocking fd that becomes readable when delivery reports (or errors)
 * wait; watch it with uv_poll and call kafka_poll. */
int kafka_event_fd(const kafka_t *k);
/* Serves every waiting event (delivery reports, errors, logs); returns how many.
 * Replaces the producer when kafka_replace_soon asked for it. */
int kafka_poll(kafka_t *k);
/* From the fatal callback (or the loop thread). From now on kafka_produce
 * refuses with KAFKA_ERR_QUEUE_FULL. The next kafka_poll, once librdkafka's
 * callbacks returned, purges the records the producer has not sent (their
 * reports fail); those in flight are answered, or purged after
 * KAFKA_REPLACE_INFLIGHT_MS (5 s, checked on each kafka_poll). Once every
 * report is served, a new producer with the same configuration (a new
 * producer id) takes its place: the kafka_t, its event fd, its topic counts
 * and the embedded mock cluster stay. Then on_replaced. */
void kafka_replace_soon(kafka_t *k);

/* Enqueues one record (copied into librdkafka). `opaque` comes back in the
 * delivery report. Returns KAFKA_OK or a KAFKA_ERR_* value. */
int kafka_produce(kafka_t *k, const kafka_record_t *rec, uint64_t opaque);
const char *kafka_last_error(const kafka_t *k);

/* Waits up to timeout_ms for cluster metadata; 0 when known, -1 otherwise. */
int kafka_wait_metadata(kafka_t *k, int timeout_ms);
/* Messages produced and not yet delivered (queued or in flight). */
int kafka_outq_len(const kafka_t *k);
/* Waits up to timeout_ms for outstanding messages, serving delivery reports;
 * returns how many are left. */
int kafka_flush(kafka_t *k, int timeout_ms);
/* Purges what is left (queued and in flight); their delivery reports fail and
 * arrive on the next kafka_poll. Returns how many were purged. */
int kafka_purge(kafka_t *k);

/* Reachability for readiness checks. false from librdkafka's "all brokers
 * down" error (_ALL_BROKERS_DOWN) until a record is delivered or
 * kafka_set_reachable(k, true) (e.g. statistics show a broker UP); starts
 * true. `why` (may be NULL) receives the reason when false. */
bool kafka_reachable(const kafka_t *k, char *why, size_t cap);
void kafka_set_reachable(kafka_t *k, bool up, const char *why);

/* Records per Kafka topic: handed to librdkafka, confirmed, failed. */
typedef struct {
    const char *topic; /* valid until kafka_free */
    uint64_t produced, delivered, failed;
} kafka_topic_stat_t;

/* The counts of the first `max` topics the producer used, in order of first
 * use, into out (returns how many); the rest, and records produced by name
 * past KAFKA_TOPIC_CACHE_MAX topics, summed into *rest (topic NULL). */
size_t kafka_topic_stats(const kafka_t *k, kafka_topic_stat_t *out, size_t max,
                         kafka_topic_stat_t *rest);

/* During on_delivery for a failed report only: the record as it was
 * produced (views valid during the callback) and whether Kafka may have
 * written it anyway (taken back from flight, or timed out there). 0, or -1
 * outside a failed report. */
int kafka_report_record(kafka_t *k, kafka_record_t *out, bool *maybe_written);
/* Whether a delivery error says Kafka could not take the record now (a
 * timeout, a transport error, brokers down, a purge, a retriable broker
 * error) rather than that it refuses this record. */
bool kafka_err_retriable(int err);

/* librdkafka's name of an error code ("_MSG_TIMED_OUT", ...), for metrics. */
const char *kafka_err_name(int err);

/* The bootstrap address clients can use: the mock cluster's for "embedded",
 * the configured one otherwise. */
const char *kafka_bootstrap_servers(const kafka_t *k);

#endif
