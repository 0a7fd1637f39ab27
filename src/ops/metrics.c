#include "ops/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "version.h"

_Static_assert((int)METRICS_UNMAPPED_DISCONNECT == (int)UNMAPPED_DISCONNECT &&
                   (int)METRICS_UNMAPPED_DROP == (int)UNMAPPED_DROP &&
                   (int)METRICS_UNMAPPED_TOPIC == (int)UNMAPPED_TOPIC,
               "metrics_unmapped_t must index like config_unmapped_t");

const uint64_t metrics_latency_bounds_usec[METRICS_LATENCY_BUCKETS] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
/* The same bounds as Prometheus `le` values, written once so they are exact. */
static const char *const latency_le[METRICS_LATENCY_BUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};

static const char *const refused_names[METRICS_REFUSED__COUNT] = {
    "max_connections",     "connect_timeout",    "protocol_error",   "protocol_version",
    "identifier_rejected", "server_unavailable", "not_authorized",   "max_connections_per_ip",
    "connect_rate_per_ip", "tls_handshake",      "connect_too_long", "websocket_upgrade"};

static const char *const unmapped_names[METRICS_UNMAPPED__COUNT] = {"disconnect", "drop", "topic"};

static const char *const msg_refused_names[METRICS_MSG_REFUSED__COUNT] = {
    "illegal_topic", "reserved_topic", "topic_limit"};

/* MQTT 3.1.1 control packet types 1..14 (0 and 15 are reserved). */
static const char *const packet_names[METRICS_PACKET_TYPES] = {
    NULL,      "connect",  "connack",    "publish", "puback",      "pubrec",
    "pubrel",  "pubcomp",  "subscribe",  "suback",  "unsubscribe", "unsuback",
    "pingreq", "pingresp", "disconnect", NULL};

#define OTHER "other"

void metrics_init(metrics_t *m) {
    memset(m, 0, sizeof(*m));
}

void metrics_label_add(metrics_label_table_t *t, const char *value, uint64_t n) {
    size_t len = strlen(value);
    if (len < METRICS_LABEL_MAX) {
        for (uint32_t i = 0; i < t->used; i++) {
            if (strcmp(t->slots[i].value, value) == 0) {
                t->slots[i].count += n;
                return;
            }
        }
        if (t->used < METRICS_LABEL_SLOTS - 1 && strcmp(value, OTHER) != 0) {
            metrics_label_slot_t *s = &t->slots[t->used++];
            memcpy(s->value, value, len + 1);
            s->count = n;
            return;
        }
    }
    /* "other" takes the next free slot when first needed; at most
     * METRICS_LABEL_SLOTS - 1 other values exist, so one is always free. */
    for (uint32_t i = 0; i < t->used; i++) {
        if (strcmp(t->slots[i].value, OTHER) == 0) {
            t->slots[i].count += n;
            return;
        }
    }
    metrics_label_slot_t *o = &t->slots[t->used++];
    strcpy(o->value, OTHER);
    o->count = n;
}

uint64_t metrics_label_get(const metrics_label_table_t *t, const char *value) {
    for (uint32_t i = 0; i < t->used; i++)
        if (strcmp(t->slots[i].value, value) == 0)
            return t->slots[i].count;
    return 0;
}

void metrics_histogram_observe(metrics_histogram_t *h, uint64_t usec) {
    size_t i = 0;
    while (i < METRICS_LATENCY_BUCKETS && usec > metrics_latency_bounds_usec[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_usec += usec;
}

/* ---- librdkafka statistics ---- */

static uint64_t json_u64(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= 1.8e19)
        return 0; /* absent, or librdkafka's -1 for "never" */
    return (uint64_t)v->valuedouble;
}

int metrics_rdkafka_update(metrics_t *m, const char *json, size_t len) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = -1;
    if (!cJSON_IsObject(root) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "msg_cnt")))
        goto out;
    metrics_rdkafka_t *r = &m->rdkafka;
    memset(r, 0, sizeof(*r));
    r->valid = true;
    r->msg_cnt = json_u64(root, "msg_cnt");
    r->msg_size = json_u64(root, "msg_size");
    r->msg_max = json_u64(root, "msg_max");
    r->msg_size_max = json_u64(root, "msg_size_max");
    r->txmsgs = json_u64(root, "txmsgs");
    r->txmsg_bytes = json_u64(root, "txmsg_bytes");
    const cJSON *brokers = cJSON_GetObjectItemCaseSensitive(root, "brokers");
    const cJSON *b;
    cJSON_ArrayForEach(b, brokers) {
        if (!cJSON_IsObject(b))
            continue;
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(b, "source");
        if (cJSON_IsString(src) && strcmp(src->valuestring, "internal") == 0)
            continue;
        if (r->n_brokers == METRICS_MAX_BROKERS) {
            r->brokers_dropped++;
            continue;
        }
        metrics_broker_t *mb = &r->brokers[r->n_brokers++];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(b, "name");
        snprintf(mb->name, sizeof(mb->name), "%s",
                 cJSON_IsString(name) ? name->valuestring : (b->string ? b->string : "?"));
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(b, "state");
        mb->up = cJSON_IsString(state) && strcmp(state->valuestring, "UP") == 0;
        const cJSON *rtt = cJSON_GetObjectItemCaseSensitive(b, "rtt");
        mb->rtt_avg_usec = json_u64(rtt, "avg");
        mb->rtt_p99_usec = json_u64(rtt, "p99");
        mb->outbuf_msg_cnt = json_u64(b, "outbuf_msg_cnt");
        mb->waitresp_msg_cnt = json_u64(b, "waitresp_msg_cnt");
        mb->tx = json_u64(b, "tx");
        mb->rx = json_u64(b, "rx");
        mb->txerrs = json_u64(b, "txerrs");
        mb->rxerrs = json_u64(b, "rxerrs");
        mb->txretries = json_u64(b, "txretries");
        mb->req_timeouts = json_u64(b, "req_timeouts");
        mb->connects = json_u64(b, "connects");
        mb->disconnects = json_u64(b, "disconnects");
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int metrics_rdkafka_brokers_up(const metrics_t *m) {
    if (!m->rdkafka.valid)
        return -1;
    int n = 0;
    for (uint32_t i = 0; i < m->rdkafka.n_brokers; i++)
        n += m->rdkafka.brokers[i].up;
    return n;
}

/* ---- rendering ---- */

/* Counts every byte it would write, like snprintf, and writes what fits. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
} writer_t;

static void w_put(writer_t *w, const char *s, size_t n) {
    if (w->len < w->cap) {
        size_t room = w->cap - w->len - 1;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

__attribute__((format(printf, 2, 3))) static void w_printf(writer_t *w, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        w_put(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Label values escape backslash, double quote and newline (format 0.0.4). */
static void w_label_value(writer_t *w, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            w_put(w, "\\\\", 2);
        else if (*s == '"')
            w_put(w, "\\\"", 2);
        else if (*s == '\n')
            w_put(w, "\\n", 2);
        else
            w_put(w, s, 1);
    }
}

static void family(writer_t *w, const char *name, const char *type, const char *help) {
    w_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(writer_t *w, const char *name, uint64_t v) {
    w_printf(w, "%s %" PRIu64 "\n", name, v);
}

static void sample_label(writer_t *w, const char *name, const char *label, const char *value,
                         const char *v) {
    w_printf(w, "%s{%s=\"", name, label);
    w_label_value(w, value);
    w_printf(w, "\"} %s\n", v);
}

static void sample_label_u64(writer_t *w, const char *name, const char *label, const char *value,
                             uint64_t v) {
    char num[32];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    sample_label(w, name, label, value, num);
}

/* Microseconds as exact decimal seconds. */
static void usec_seconds(char *buf, size_t cap, uint64_t usec) {
    snprintf(buf, cap, "%" PRIu64 ".%06" PRIu64, usec / 1000000u, usec % 1000000u);
}

static void counter(writer_t *w, const char *name, const char *help, uint64_t v) {
    family(w, name, "counter", help);
    sample(w, name, v);
}

static void gauge(writer_t *w, const char *name, const char *help, uint64_t v) {
    family(w, name, "gauge", help);
    sample(w, name, v);
}

static void label_table(writer_t *w, const char *name, const char *help, const char *label,
                        const metrics_label_table_t *t) {
    family(w, name, "counter", help);
    for (uint32_t i = 0; i < t->used; i++)
        sample_label_u64(w, name, label, t->slots[i].value, t->slots[i].count);
}

/* A counter family with one sample per label value. */
static void counters(writer_t *w, const char *name, const char *help, const char *label,
                     const char *const *values, const uint64_t *v, size_t n) {
    family(w, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        sample_label_u64(w, name, label, values[i], v[i]);
}

/* One family per count, a sample per topic; "(other)" holds the topics past
 * METRICS_KAFKA_TOPICS (shown once there are any). */
static void render_kafka_topics(writer_t *w, const metrics_t *m) {
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"mqtt2kafka_kafka_topic_records_produced_total",
         "Records handed to the producer, by Kafka topic (the first 100 topics by first use; "
         "the rest as \"(other)\").",
         offsetof(metrics_kafka_topic_t, produced)},
        {"mqtt2kafka_kafka_topic_records_delivered_total",
         "Records Kafka confirmed, by Kafka topic.", offsetof(metrics_kafka_topic_t, delivered)},
        {"mqtt2kafka_kafka_topic_records_failed_total",
         "Records whose delivery failed, by Kafka topic.", offsetof(metrics_kafka_topic_t, failed)},
    };
    const metrics_kafka_topic_t *rest = &m->kafka_topic_rest;
    bool any_rest = rest->produced || rest->delivered || rest->failed;
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(w, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < m->n_kafka_topic && i < METRICS_KAFKA_TOPICS; i++) {
            const metrics_kafka_topic_t *t = &m->kafka_topic[i];
            sample_label_u64(w, fams[f].name, "topic", t->topic,
                             *(const uint64_t *)(const void *)((const char *)t + fams[f].off));
        }
        if (any_rest)
            sample_label_u64(w, fams[f].name, "topic", "(other)",
                             *(const uint64_t *)(const void *)((const char *)rest + fams[f].off));
    }
}

static void render_spool(writer_t *w, const metrics_t *m) {
    gauge(w, "mqtt2kafka_spool_bytes", "Bytes the spool holds on disk (segments + checkpoint).",
          m->spool_bytes);
    gauge(w, "mqtt2kafka_spool_records", "Records in the spool that Kafka has not confirmed.",
          m->spool_records);
    gauge(w, "mqtt2kafka_spool_oldest_record_age_seconds",
          "Age of the oldest record Kafka has not confirmed; 0 when there is none.",
          m->spool_oldest_age_seconds);
    counter(w, "mqtt2kafka_spool_records_spooled_total",
            "Records appended to the spool and made durable (then acknowledged).",
            m->spool_records_spooled);
    counter(w, "mqtt2kafka_spool_records_drained_total",
            "Records from the spool that Kafka confirmed.", m->spool_records_drained);
    counter(w, "mqtt2kafka_spool_full_total",
            "Records the spool refused (max_bytes or the disk full): not acknowledged.",
            m->spool_full);
    counter(w, "mqtt2kafka_spool_qos0_dropped_total",
            "QoS 0 messages dropped because the spool was full.", m->spool_qos0_dropped);
    counter(w, "mqtt2kafka_spool_corrupt_records_skipped_total",
            "Corrupt records (or runs of bytes) the spool skipped.", m->spool_corrupt_skipped);
    counter(w, "mqtt2kafka_spool_torn_tails_truncated_total",
            "Torn tails the spool truncated at its start.", m->spool_truncations);
    counter(w, "mqtt2kafka_spool_rewinds_total",
            "Times the feed to Kafka started again after a failed delivery (at least once).",
            m->spool_rewinds);
    gauge(w, "mqtt2kafka_spool_state",
          "Where records go: 0 Kafka directly (mode outage), 1 the spool while Kafka is "
          "unreachable, 2 the spool while it drains to Kafka.",
          m->spool_state);
    counter(w, "mqtt2kafka_spool_outages_total",
            "Switches from Kafka directly to the spool (mode outage).", m->spool_outages);
    counter(w, "mqtt2kafka_spool_outage_seconds_total",
            "Seconds records went to the spool instead of Kafka (mode outage).",
            m->spool_outage_seconds);
    gauge(w, "mqtt2kafka_spool_drain_records_per_second",
          "Records Kafka confirmed from the spool in the last second.", m->spool_drain_rate);
    counter(w, "mqtt2kafka_spool_records_taken_back_total",
            "Records taken back from the producer at a switch to the spool and spooled.",
            m->spool_taken_back);
    counter(w, "mqtt2kafka_spool_records_maybe_twice_total",
            "Records taken back from flight: Kafka may have written them too (a duplicate).",
            m->spool_maybe_twice);
    counter(w, "mqtt2kafka_spool_state_save_failures_total",
            "Saves of the QoS 2 state file that failed; their PUBREC and PUBCOMP wait (retried).",
            m->spool_state_save_failures);
    counter(w, "mqtt2kafka_spool_state_pubcomp_wait_full_total",
            "Connections closed because too many PUBCOMPs waited for a QoS 2 state save.",
            m->spool_state_pubcomp_full);
}

static void per_worker(writer_t *w, const char *name, const char *type, const char *help,
                       const metrics_t *m, const uint64_t *v);

static void render_downlink(writer_t *w, const metrics_t *m) {
    label_table(w, "mqtt2kafka_downlink_records_consumed_total",
                "Records read from the downlink and retained Kafka topics, by topic.", "topic",
                &m->downlink_consumed);
    counter(w, "mqtt2kafka_downlink_records_routed_total",
            "Downlink records given an MQTT topic and QoS.", m->downlink_routed);
    label_table(w, "mqtt2kafka_downlink_records_skipped_total",
                "Downlink records skipped, by reason (no rendered topic, an invalid one, a bad "
                "mqtt.qos header).",
                "reason", &m->downlink_skipped);
    counter(w, "mqtt2kafka_downlink_offset_out_of_range_total",
            "Partitions the consumer found behind Kafka's retention and resumed at the earliest "
            "offset.",
            m->downlink_out_of_range);
    counter(w, "mqtt2kafka_downlink_consumer_errors_total",
            "Other errors the downlink consumer reported.", m->downlink_consumer_errors);
    gauge(w, "mqtt2kafka_downlink_partitions", "Partitions the downlink consumer reads.",
          m->downlink_partitions);
    gauge(w, "mqtt2kafka_downlink_consumer_lag",
          "Records the downlink consumer is behind the high watermarks Kafka last reported.",
          m->downlink_lag);
    if (m->workers > 1) {
        counter(w, "mqtt2kafka_downlink_fanout_waits_total",
                "Polls of the downlink consumer put off while a worker held 2,000 records (or "
                "64 MiB) not yet delivered (threads).",
                m->downlink_fanout_waits);
        per_worker(w, "mqtt2kafka_worker_downlink_records_total", "counter",
                   "Routed downlink records handed to each worker's sessions (threads; a worker "
                   "without subscriptions gets none).",
                   m, m->worker_downlink_records);
    }
    static const char *const qos[] = {"0", "1", "2"},
                             *const not_delivered[] = {"acl_read", "too_large"},
                             *const refused[] = {"acl", "invalid", "quota"},
                             *const dropped[] = {"oldest_qos0", "queue_full", "session_bytes",
                                                 "expired"};
    counters(w, "mqtt2kafka_downlink_deliveries_total",
             "PUBLISH packets sent to subscribers, by QoS.", "qos", qos, m->downlink_deliveries, 3);
    counters(w, "mqtt2kafka_downlink_not_delivered_total",
             "Deliveries to a matching subscription not made, by reason.", "reason", not_delivered,
             m->downlink_not_delivered, 2);
    counters(w, "mqtt2kafka_subscribe_refused_total", "SUBSCRIBE filters refused, by reason.",
             "reason", refused, m->subscribe_refused, 3);
    gauge(w, "mqtt2kafka_subscriptions", "Subscriptions held (every session).", m->subscriptions);
    gauge(w, "mqtt2kafka_downlink_queued_messages",
          "Messages waiting in the sessions' queues (window full, or the client away).",
          m->downlink_queued);
    counters(w, "mqtt2kafka_downlink_dropped_total",
             "Messages a session's queue dropped (its oldest QoS 0) or did not take.", "reason",
             dropped, m->downlink_dropped, 4);
    gauge(w, "mqtt2kafka_retained_messages", "Retained messages held in memory.",
          m->retained_messages);
    gauge(w, "mqtt2kafka_retained_bytes", "Bytes (topic + payload) of the retained messages held.",
          m->retained_bytes);
    counter(w, "mqtt2kafka_retained_copies_lost_total",
            "QoS 0 PUBLISHes and wills with RETAIN 1 whose copy for the retained topic the "
            "producer refused or Kafka did not confirm (a QoS 1/2 one fails the message).",
            m->retained_copies_lost);
    family(w, "mqtt2kafka_retained_updates_total", "counter",
           "Records of the retained topic applied to the store.");
    sample_label_u64(w, "mqtt2kafka_retained_updates_total", "op", "set", m->retained_updates[0]);
    sample_label_u64(w, "mqtt2kafka_retained_updates_total", "op", "delete",
                     m->retained_updates[1]);
    label_table(w, "mqtt2kafka_retained_refused_total",
                "Records of the retained topic not applied, by reason.", "reason",
                &m->retained_refused);
    counter(w, "mqtt2kafka_retained_expired_total",
            "Retained messages dropped past their message expiry (checked when a new "
            "subscription matches them).",
            m->retained_expired);
}

static void packets(writer_t *w, const char *name, const char *help, const uint64_t *v) {
    counters(w, name, help, "type", packet_names + 1, v + 1, 14);
}

typedef enum { B_GAUGE, B_COUNTER } btype_t;

/* One per-broker family; `field` picks the value. */
static void broker_family(writer_t *w, const metrics_rdkafka_t *r, const char *name, btype_t type,
                          const char *help, size_t offset, bool seconds) {
    family(w, name, type == B_GAUGE ? "gauge" : "counter", help);
    for (uint32_t i = 0; i < r->n_brokers; i++) {
        const metrics_broker_t *b = &r->brokers[i];
        uint64_t v;
        if (offset == (size_t)-1)
            v = b->up;
        else
            memcpy(&v, (const char *)b + offset, sizeof(v));
        char num[40];
        if (seconds)
            usec_seconds(num, sizeof(num), v);
        else
            snprintf(num, sizeof(num), "%" PRIu64, v);
        sample_label(w, name, "broker", b->name, num);
    }
}

#define BF(name, type, help, field, secs)                                                          \
    broker_family(w, r, "mqtt2kafka_kafka_broker_" name, type, help,                               \
                  offsetof(metrics_broker_t, field), secs)

static void render_rdkafka(writer_t *w, const metrics_rdkafka_t *r) {
    if (!r->valid)
        return;
    gauge(w, "mqtt2kafka_kafka_queue_messages",
          "Records in librdkafka's producer queue, not yet delivered (msg_cnt).", r->msg_cnt);
    gauge(w, "mqtt2kafka_kafka_queue_bytes",
          "Bytes of records in librdkafka's producer queue (msg_size).", r->msg_size);
    gauge(w, "mqtt2kafka_kafka_queue_max_messages",
          "Capacity of librdkafka's producer queue in records (queue.buffering.max.messages).",
          r->msg_max);
    gauge(w, "mqtt2kafka_kafka_queue_max_bytes",
          "Capacity of librdkafka's producer queue in bytes (queue.buffering.max.kbytes).",
          r->msg_size_max);
    counter(w, "mqtt2kafka_kafka_messages_sent_total",
            "Records librdkafka sent to brokers, retries included (txmsgs).", r->txmsgs);
    counter(w, "mqtt2kafka_kafka_message_bytes_sent_total",
            "Record bytes librdkafka sent to brokers (txmsg_bytes).", r->txmsg_bytes);
    if (r->n_brokers == 0)
        return;
    broker_family(w, r, "mqtt2kafka_kafka_broker_up", B_GAUGE,
                  "1 when librdkafka's connection to the broker is UP.", (size_t)-1, false);
    BF("rtt_avg_seconds", B_GAUGE,
       "Average request round-trip time to the broker over the last statistics interval.",
       rtt_avg_usec, true);
    BF("rtt_p99_seconds", B_GAUGE,
       "99th percentile request round-trip time over the last statistics interval.", rtt_p99_usec,
       true);
    BF("outbuf_messages", B_GAUGE, "Records waiting to be sent to the broker.", outbuf_msg_cnt,
       false);
    BF("waitresp_messages", B_GAUGE, "Records sent to the broker, waiting for its response.",
       waitresp_msg_cnt, false);
    BF("requests_sent_total", B_COUNTER, "Requests sent to the broker (tx).", tx, false);
    BF("responses_received_total", B_COUNTER, "Responses received from the broker (rx).", rx,
       false);
    BF("request_retries_total", B_COUNTER, "Requests retried to the broker (txretries).", txretries,
       false);
    BF("send_errors_total", B_COUNTER, "Transmission errors to the broker (txerrs).", txerrs,
       false);
    BF("receive_errors_total", B_COUNTER, "Receive errors from the broker (rxerrs).", rxerrs,
       false);
    BF("request_timeouts_total", B_COUNTER, "Requests to the broker that timed out.", req_timeouts,
       false);
    BF("connects_total", B_COUNTER, "Connection attempts to the broker, failed ones included.",
       connects, false);
    BF("disconnects_total", B_COUNTER, "Connections to the broker that were lost.", disconnects,
       false);
}

/* threads: N: one sample per worker. */
static void per_worker(writer_t *w, const char *name, const char *type, const char *help,
                       const metrics_t *m, const uint64_t *v) {
    char num[16];
    family(w, name, type, help);
    for (uint32_t i = 0; i < m->workers && i < METRICS_MAX_WORKERS; i++) {
        snprintf(num, sizeof(num), "%" PRIu32, i);
        sample_label_u64(w, name, "worker", num, v[i]);
    }
}

size_t metrics_render(const metrics_t *m, char *buf, size_t cap) {
    writer_t w_ = {buf, cap, 0};
    writer_t *w = &w_;
    char num[40];

    family(w, "mqtt2kafka_build_info", "gauge", "Version of the running mqtt2kafka (value 1).");
    sample_label(w, "mqtt2kafka_build_info", "version", M2K_VERSION, "1");
    gauge(w, "mqtt2kafka_start_time_seconds", "Start time of the process, unix seconds.",
          m->start_time_seconds);
    counter(w, "mqtt2kafka_config_reloads_total", "Configuration reloads (SIGHUP) applied.",
            m->config_reloads);
    counter(w, "mqtt2kafka_config_reload_failures_total",
            "Configuration reloads (SIGHUP) rejected; the old configuration stays.",
            m->config_reload_failures);

    gauge(w, "mqtt2kafka_connections", "Open MQTT connections.", m->connections);
    counter(w, "mqtt2kafka_connections_total", "MQTT connections accepted.", m->connections_total);
    if (m->workers > 1) {
        per_worker(w, "mqtt2kafka_worker_connections_accepted_total", "counter",
                   "MQTT connections accepted by each worker's listening socket (threads).", m,
                   m->worker_accepted);
        per_worker(w, "mqtt2kafka_worker_connections", "gauge",
                   "Open MQTT connections each worker serves (its client ids).", m,
                   m->worker_connections);
    }
    counters(w, "mqtt2kafka_connections_refused_total",
             "Connections refused or closed before a successful CONNECT, by reason.", "reason",
             refused_names, m->connections_refused, METRICS_REFUSED__COUNT);
    counter(w, "mqtt2kafka_tls_handshake_steps_total",
            "TLS handshake steps (one per read of the client's handshake flights) run on "
            "libuv's threadpool, mqtt.max_tls_handshake_workers at once.",
            m->tls_handshake_steps);
    counter(w, "mqtt2kafka_auth_unchecked_refusals_total",
            "CONNECTs refused without checking their password: their address had 10 recent "
            "failures, or 16 answers held.",
            m->auth_unchecked);
    counter(w, "mqtt2kafka_auth_failures_total",
            "CONNECTs refused by authentication (bad credentials, or anonymous not allowed).",
            m->auth_failures);
    counter(w, "mqtt2kafka_acl_denied_total",
            "PUBLISHes (and will topics at CONNECT) the ACL refused.", m->acl_denied);
    counter(w, "mqtt2kafka_output_limit_closed_total",
            "Connections cut at mqtt.max_output_buffer (the client does not read).",
            m->output_limit_closed);
    static const char *const input_closed[] = {"packet_timeout", "input_budget"};
    const uint64_t input_closed_v[] = {m->packet_timeout_closed, m->input_budget_closed};
    counters(w, "mqtt2kafka_input_closed_total",
             "Connections closed for their partly received input: a packet not completed within "
             "mqtt.packet_timeout_s, or the most buffered when all connections held more than "
             "mqtt.max_input_buffer_bytes.",
             "reason", input_closed, input_closed_v, 2);
    gauge(w, "mqtt2kafka_input_buffer_bytes",
          "Bytes of partly received packets buffered for MQTT connections (bounded by "
          "mqtt.max_input_buffer_bytes).",
          m->input_buffer_bytes);
    counter(w, "mqtt2kafka_wills_published_total",
            "Will messages produced to Kafka (a connection ended without DISCONNECT).",
            m->wills_published);
    counter(w, "mqtt2kafka_wills_lost_total",
            "Will messages not produced (refused by the ACL in force, unmapped, producer queue "
            "full).",
            m->wills_lost);

    packets(w, "mqtt2kafka_packets_received_total", "MQTT packets received, by type.",
            m->packets_received);
    packets(w, "mqtt2kafka_packets_sent_total", "MQTT packets sent, by type.", m->packets_sent);
    static const char *const qos[] = {"0", "1", "2"};
    counters(w, "mqtt2kafka_messages_received_total", "PUBLISH messages received, by QoS.", "qos",
             qos, m->messages_received, 3);
    counter(w, "mqtt2kafka_bytes_received_total", "Bytes read from MQTT clients.",
            m->bytes_received);
    counter(w, "mqtt2kafka_bytes_sent_total", "Bytes written to MQTT clients.", m->bytes_sent);
    label_table(w, "mqtt2kafka_protocol_errors_total",
                "Connections closed for a protocol violation, by kind.", "kind",
                &m->protocol_errors);
    counters(w, "mqtt2kafka_unmapped_total",
             "PUBLISH messages whose topic matched no rule, by the action taken.", "action",
             unmapped_names, m->unmapped, METRICS_UNMAPPED__COUNT);
    counters(w, "mqtt2kafka_messages_refused_total",
             "Messages a rule maps whose rendered Kafka topic was refused (never acknowledged: "
             "the connection is closed), by reason.",
             "reason", msg_refused_names, m->messages_refused, METRICS_MSG_REFUSED__COUNT);
    gauge(w, "mqtt2kafka_kafka_topics",
          "Distinct Kafka topics the topic map has rendered (bounded by kafka.max_topics).",
          m->kafka_topics);
    render_kafka_topics(w, m);

    gauge(w, "mqtt2kafka_inflight_messages",
          "QoS 1/2 messages produced to Kafka and not yet acknowledged to the client.",
          m->inflight_messages);
    gauge(w, "mqtt2kafka_paused_readers",
          "Connections whose reading is paused by backpressure (inflight limit, Kafka queue).",
          m->paused_readers);
    gauge(w, "mqtt2kafka_persistent_sessions",
          "Clean session 0 sessions kept without a connection.", m->persistent_sessions);
    gauge(w, "mqtt2kafka_persistent_session_bytes",
          "Bytes held by the sessions kept without a connection (session, client id, in-flight "
          "entries, QoS 2 ids).",
          m->persistent_session_bytes);
    static const char *const evicted[] = {"max_persistent_sessions", "max_session_bytes"};
    const uint64_t evicted_v[] = {m->sessions_evicted_count, m->sessions_evicted_bytes};
    counters(w, "mqtt2kafka_sessions_evicted_total",
             "Sessions kept without a connection discarded over a bound, oldest first.", "bound",
             evicted, evicted_v, 2);

    const metrics_histogram_t *h = &m->ack_latency;
    family(w, "mqtt2kafka_ack_latency_seconds", "histogram",
           "Time from a QoS 1/2 PUBLISH received to its PUBACK/PUBREC sent.");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += h->buckets[i];
        w_printf(w, "mqtt2kafka_ack_latency_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", latency_le[i],
                 cum);
    }
    cum += h->buckets[METRICS_LATENCY_BUCKETS];
    w_printf(w, "mqtt2kafka_ack_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    usec_seconds(num, sizeof(num), h->sum_usec);
    w_printf(w, "mqtt2kafka_ack_latency_seconds_sum %s\n", num);
    w_printf(w, "mqtt2kafka_ack_latency_seconds_count %" PRIu64 "\n", h->count);

    counter(w, "mqtt2kafka_kafka_records_produced_total", "Records handed to the Kafka producer.",
            m->kafka_records_produced);
    counter(w, "mqtt2kafka_kafka_records_delivered_total",
            "Records Kafka confirmed (delivery report without error).", m->kafka_records_delivered);
    label_table(w, "mqtt2kafka_kafka_records_failed_total",
                "Records whose delivery failed, by librdkafka error name.", "error",
                &m->kafka_records_failed);
    counter(w, "mqtt2kafka_kafka_queue_full_total",
            "Produce attempts refused because librdkafka's queue was full.", m->kafka_queue_full);
    counter(w, "mqtt2kafka_kafka_producer_replaced_total",
            "Producers replaced by a new one (a new producer id) after a fatal producer error.",
            m->kafka_producer_replaced);
    render_rdkafka(w, &m->rdkafka);
    if (m->downlink)
        render_downlink(w, m);
    if (m->spool)
        render_spool(w, m);

    if (cap > 0)
        buf[w->len < cap ? w->len : cap - 1] = '\0';
    return w->len;
}

char *metrics_render_alloc(const metrics_t *m, size_t *len) {
    size_t cap = 16384;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf)
            return NULL;
        size_t n = metrics_render(m, buf, cap);
        if (n < cap) {
            if (len)
                *len = n;
            return buf;
        }
        free(buf);
        cap = n + 1;
    }
}
