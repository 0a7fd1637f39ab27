/* Metrics: a fixed registry the loop thread updates directly, rendered in the
 * Prometheus text exposition format 0.0.4 (GET /metrics).
 *
 * Threading: the registry is plain data owned by the loop thread. Every
 * update (m->bytes_received += n; metrics_label_inc(...)) and the rendering
 * run on that thread, so nothing is atomic. librdkafka's statistics arrive
 * through kafka_poll() on the loop thread too (stats_cb is served from the
 * main queue), so metrics_rdkafka_update also runs there.
 *
 * No dynamic registration: every family is a field below. Families labelled
 * by a fixed enum render every label value (zeros included, so rate() works
 * from the first scrape); families labelled by a string (protocol error kind,
 * Kafka error name) use a small bounded table that folds values beyond its
 * size into "other". cJSON is used here only, for librdkafka's statistics. */
#ifndef M2K_METRICS_H
#define M2K_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- fixed label sets ---- */

/* Why a connection was refused or closed before or at CONNECT. */
typedef enum {
    METRICS_REFUSED_MAX_CONNECTIONS = 0, /* mqtt.max_connections reached at accept */
    METRICS_REFUSED_CONNECT_TIMEOUT,     /* no CONNECT within mqtt.connect_timeout */
    METRICS_REFUSED_PROTOCOL_ERROR,      /* first packet not CONNECT, or malformed CONNECT */
    METRICS_REFUSED_PROTOCOL_VERSION,    /* CONNACK 0x01 */
    METRICS_REFUSED_IDENTIFIER_REJECTED, /* CONNACK 0x02 */
    METRICS_REFUSED_SERVER_UNAVAILABLE,  /* CONNACK 0x03 (Kafka down, shutting down) */
    METRICS_REFUSED_NOT_AUTHORIZED,      /* CONNACK 0x04 / 0x05 */
    METRICS_REFUSED_PER_IP_LIMIT,        /* mqtt.max_connections_per_ip (or address table full) */
    METRICS_REFUSED_PER_IP_RATE,         /* mqtt.connect_rate_per_ip */
    METRICS_REFUSED_TLS_HANDSHAKE,       /* TLS handshake failed or timed out */
    METRICS_REFUSED_CONNECT_TOO_LONG,    /* user name or will over its mqtt.max_* cap */
    METRICS_REFUSED_WS_UPGRADE,          /* WebSocket upgrade refused or timed out */
    METRICS_REFUSED__COUNT
} metrics_refused_t;

/* mqtt.unmapped actions; the same order as config_unmapped_t (checked in metrics.c). */
typedef enum {
    METRICS_UNMAPPED_DISCONNECT = 0,
    METRICS_UNMAPPED_DROP = 1,
    METRICS_UNMAPPED_TOPIC = 2,
    METRICS_UNMAPPED__COUNT
} metrics_unmapped_t;

/* Mapped messages refused (never acknowledged), by reason (session.h's
 * SESSION_REFUSED_* in the same order). */
typedef enum {
    METRICS_MSG_REFUSED_ILLEGAL_TOPIC,  /* rendered Kafka topic illegal */
    METRICS_MSG_REFUSED_RESERVED_TOPIC, /* starts with '_', the template does not */
    METRICS_MSG_REFUSED_TOPIC_LIMIT,    /* one more than kafka.max_topics */
    METRICS_MSG_REFUSED__COUNT
} metrics_msg_refused_t;

/* ---- records per Kafka topic (bounded: the first topics by first use) ---- */

#define METRICS_KAFKA_TOPICS 100
#define METRICS_KAFKA_TOPIC_MAX 250 /* a Kafka topic name is at most 249 bytes */

typedef struct {
    char topic[METRICS_KAFKA_TOPIC_MAX];
    uint64_t produced, delivered, failed;
} metrics_kafka_topic_t;

/* ---- string-labelled families: a bounded table ---- */

#define METRICS_LABEL_MAX 64 /* bytes of a label value, NUL included */
#define METRICS_LABEL_SLOTS 24

typedef struct {
    char value[METRICS_LABEL_MAX];
    uint64_t count;
} metrics_label_slot_t;

/* The first METRICS_LABEL_SLOTS - 1 distinct values get a slot each, in
 * order of first use; later new values, and values too long for a slot, go
 * to the last slot, "other". Lookup is a linear scan: use on error paths,
 * not per message. */
typedef struct {
    metrics_label_slot_t slots[METRICS_LABEL_SLOTS];
    uint32_t used;
} metrics_label_table_t;

void metrics_label_add(metrics_label_table_t *t, const char *value, uint64_t n);
static inline void metrics_label_inc(metrics_label_table_t *t, const char *value) {
    metrics_label_add(t, value, 1);
}
/* The count of one value (0 when absent); "other" is a value like any. */
uint64_t metrics_label_get(const metrics_label_table_t *t, const char *value);

/* ---- histogram of ack latency ---- */

/* Upper bounds in microseconds: 0.0005 s .. 10 s, then +Inf. */
#define METRICS_LATENCY_BUCKETS 14

typedef struct {
    uint64_t buckets[METRICS_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative; last = +Inf */
    uint64_t count;
    uint64_t sum_usec;
} metrics_histogram_t;

extern const uint64_t metrics_latency_bounds_usec[METRICS_LATENCY_BUCKETS];
void metrics_histogram_observe(metrics_histogram_t *h, uint64_t usec);

/* ---- librdkafka statistics (statistics.interval.ms) ---- */

#define METRICS_MAX_BROKERS 16
#define METRICS_BROKER_NAME_MAX 128

typedef struct {
    char name[METRICS_BROKER_NAME_MAX]; /* librdkafka's "host:port/id" */
    bool up;                            /* state "UP" */
    uint64_t rtt_avg_usec, rtt_p99_usec;
    uint64_t outbuf_msg_cnt, waitresp_msg_cnt;
    uint64_t tx, rx, txerrs, rxerrs, txretries, req_timeouts, connects, disconnects;
} metrics_broker_t;

typedef struct {
    bool valid; /* at least one statistics JSON was parsed */
    uint64_t msg_cnt, msg_size, msg_max, msg_size_max;
    uint64_t txmsgs, txmsg_bytes;
    metrics_broker_t brokers[METRICS_MAX_BROKERS];
    uint32_t n_brokers;
    uint32_t brokers_dropped; /* beyond METRICS_MAX_BROKERS in the last update */
} metrics_rdkafka_t;

/* ---- the registry ---- */

#define METRICS_MAX_WORKERS 64  /* threads: at most CONFIG_THREADS_MAX */
#define METRICS_PACKET_TYPES 16 /* indexed by the MQTT control packet type 0..15 */

typedef struct {
    /* process */
    uint64_t start_time_seconds; /* unix time, set by the daemon at start */
    uint64_t config_reloads;
    uint64_t config_reload_failures;

    /* connections */
    /* threads: N (rendered when workers > 1): per worker, the connections
     * its listening sockets accepted and those it serves (after the moves
     * of client ids to their workers). */
    uint32_t workers;
    uint64_t worker_accepted[METRICS_MAX_WORKERS];
    uint64_t worker_connections[METRICS_MAX_WORKERS];

    uint64_t connections; /* gauge: open MQTT connections (accepted, not closed) */
    uint64_t connections_total;
    uint64_t connections_refused[METRICS_REFUSED__COUNT];
    uint64_t tls_handshake_steps;   /* SSL_do_handshake runs on the threadpool */
    uint64_t auth_failures;         /* CONNACK 4 (bad credentials) and 5 (anonymous refused) */
    uint64_t auth_unchecked;        /* ... of which refused without a password check */
    uint64_t acl_denied;            /* PUBLISHes and will topics the ACL refused */
    uint64_t output_limit_closed;   /* connections cut at mqtt.max_output_buffer */
    uint64_t packet_timeout_closed; /* a started packet not completed in packet_timeout_s */
    uint64_t input_budget_closed;   /* closed over mqtt.max_input_buffer_bytes */
    uint64_t input_buffer_bytes;    /* gauge: partly received packets buffered */
    uint64_t wills_published;       /* will messages handed to the producer */
    uint64_t wills_lost;            /* will messages that could not be (unmapped, queue full) */

    /* traffic */
    uint64_t packets_received[METRICS_PACKET_TYPES];
    uint64_t packets_sent[METRICS_PACKET_TYPES];
    uint64_t messages_received[3]; /* PUBLISH by QoS */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    metrics_label_table_t protocol_errors; /* by kind: mqtt_errname() or a session reason */
    uint64_t unmapped[METRICS_UNMAPPED__COUNT];
    uint64_t messages_refused[METRICS_MSG_REFUSED__COUNT];
    uint64_t kafka_topics; /* gauge: distinct Kafka topics rendered */
    /* Records per Kafka topic, the first METRICS_KAFKA_TOPICS topics by first
     * use, the rest in kafka_topic_rest (rendered as topic="(other)", which
     * no Kafka topic can be called). */
    metrics_kafka_topic_t kafka_topic[METRICS_KAFKA_TOPICS];
    size_t n_kafka_topic;
    metrics_kafka_topic_t kafka_topic_rest;

    /* flow */
    uint64_t inflight_messages;        /* gauge: produced, delivery report pending */
    uint64_t paused_readers;           /* gauge: connections not read because of backpressure */
    uint64_t persistent_sessions;      /* gauge: clean session 0 sessions without a connection */
    uint64_t persistent_session_bytes; /* gauge: the bytes those sessions hold */
    uint64_t sessions_evicted_count;   /* kept sessions discarded over max_persistent_sessions */
    uint64_t sessions_evicted_bytes;   /* ... over mqtt.max_session_bytes */
    metrics_histogram_t ack_latency;

    /* kafka */
    uint64_t kafka_records_produced;
    uint64_t kafka_records_delivered;
    metrics_label_table_t kafka_records_failed; /* by rd_kafka_err2name() */
    uint64_t kafka_queue_full;                  /* produce attempts refused with QUEUE_FULL */
    uint64_t kafka_producer_replaced;           /* new producers after a fatal error */
    metrics_rdkafka_t rdkafka;

    /* downlink (Kafka -> MQTT): rendered only when `downlink` is set */
    bool downlink;
    metrics_label_table_t downlink_consumed; /* records read, by Kafka topic */
    uint64_t downlink_routed;                /* records given an MQTT topic and QoS */
    metrics_label_table_t downlink_skipped;  /* by reason (dl_route_result_name) */
    uint64_t downlink_out_of_range;          /* partitions resumed at the earliest offset */
    uint64_t downlink_consumer_errors;
    uint64_t downlink_partitions;   /* gauge: partitions being read */
    uint64_t downlink_lag;          /* gauge: records behind the high watermarks */
    uint64_t downlink_fanout_waits; /* threads: N (rendered when workers > 1): polls put off */
    uint64_t worker_downlink_records[METRICS_MAX_WORKERS]; /* handed to each worker */
    /* delivery to subscribers (the session's counts) */
    uint64_t downlink_deliveries[3];    /* server-sent PUBLISH by QoS */
    uint64_t downlink_not_delivered[2]; /* acl_read, too_large */
    uint64_t subscribe_refused[3];      /* acl, invalid, quota */
    uint64_t subscriptions;             /* gauge */
    uint64_t downlink_queued;           /* gauge: messages in the sessions' queues */
    uint64_t downlink_dropped[4];       /* oldest_qos0, queue_full, session_bytes, expired */
    uint64_t retained_copies_lost;      /* RETAIN 1 copies nobody waits for (QoS 0, wills) lost */
    /* the retained store (rendered with `downlink`) */
    uint64_t retained_messages, retained_bytes; /* gauges */
    uint64_t retained_updates[2];               /* set, deleted */
    uint64_t retained_expired;                  /* dropped past their message expiry */
    metrics_label_table_t retained_refused;     /* by reason: full, invalid_topic */
    /* the spool: rendered only with `spool` */
    bool spool;
    uint64_t spool_bytes;               /* gauge: on disk, segments + checkpoint */
    uint64_t spool_records;             /* gauge: appended and not confirmed by Kafka */
    uint64_t spool_oldest_age_seconds;  /* gauge: of the oldest unconfirmed record; 0: none */
    uint64_t spool_records_spooled;     /* appended and synced (acked) */
    uint64_t spool_records_drained;     /* confirmed by Kafka from the spool */
    uint64_t spool_full;                /* appends refused: max_bytes or the disk full */
    uint64_t spool_qos0_dropped;        /* QoS 0 PUBLISH dropped at a full spool */
    uint64_t spool_corrupt_skipped;     /* corrupt records (or runs of bytes) skipped */
    uint64_t spool_truncations;         /* torn tails truncated at open */
    uint64_t spool_rewinds;             /* the feed started again after a failed delivery */
    uint64_t spool_state;               /* gauge: 0 direct, 1 spooling, 2 draining */
    uint64_t spool_outages;             /* mode outage: switches from direct to the spool */
    uint64_t spool_outage_seconds;      /* mode outage: time on the spool */
    uint64_t spool_drain_rate;          /* gauge: records/s Kafka confirmed from the spool */
    uint64_t spool_taken_back;          /* records taken back from the producer and spooled */
    uint64_t spool_maybe_twice;         /* of those, records Kafka may have written too */
    uint64_t spool_state_save_failures; /* saves of the QoS 2 state that failed (retried) */
    uint64_t spool_state_pubcomp_full;  /* closed: too many PUBCOMPs waited for a save */
} metrics_t;

/* Zeroes the registry. No allocation: embed metrics_t where convenient. */
void metrics_init(metrics_t *m);
/* Adds another worker's registry (threads: N) into dst: the MQTT, traffic,
 * flow, producer and spool counters and gauges (of the spool, the oldest
 * record's age, the state and the outages are the maximum), the downlink's
 * deliveries, subscriptions and queues (the downlink's consumer and the
 * retained store are one, dst's, and are not summed); label tables and
 * Kafka topics merge by value, brokers by name (up when one producer has it
 * up, the worst RTT). */
void metrics_add(metrics_t *dst, const metrics_t *src);

/* Replaces the librdkafka part with one statistics JSON document (the
 * stats_cb argument). Returns 0, or -1 when it is not a librdkafka
 * statistics object (nothing changed). Brokers whose source is "internal"
 * are skipped. */
int metrics_rdkafka_update(metrics_t *m, const char *json, size_t len);
/* Brokers in state UP in the last statistics (for /readyz); -1 before any. */
int metrics_rdkafka_brokers_up(const metrics_t *m);

/* Renders the exposition text into buf (NUL-terminated when cap > 0).
 * Returns the length of the whole text like snprintf: when it is >= cap the
 * output was cut; call again with a buffer of at least the result + 1. */
size_t metrics_render(const metrics_t *m, char *buf, size_t cap);
/* Renders into a malloc'd buffer (caller frees); NULL when out of memory. */
char *metrics_render_alloc(const metrics_t *m, size_t *len);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
