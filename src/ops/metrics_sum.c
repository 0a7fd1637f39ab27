/* The registries of several workers summed into one (metrics_add, see
 * ops/metrics.h): what the scrape renders with threads: N. */
#include <string.h>

#include "ops/metrics.h"

#define ADD(f) dst->f += src->f
#define ADD_ARRAY(f)                                                                               \
    for (size_t i_ = 0; i_ < sizeof(dst->f) / sizeof(dst->f[0]); i_++)                             \
    dst->f[i_] += src->f[i_]

static void add_labels(metrics_label_table_t *dst, const metrics_label_table_t *src) {
    for (uint32_t i = 0; i < src->used; i++)
        metrics_label_add(dst, src->slots[i].value, src->slots[i].count);
}

static void add_topic(metrics_t *dst, const metrics_kafka_topic_t *t) {
    for (size_t i = 0; i < dst->n_kafka_topic; i++) {
        metrics_kafka_topic_t *d = &dst->kafka_topic[i];
        if (strcmp(d->topic, t->topic) == 0) {
            d->produced += t->produced;
            d->delivered += t->delivered;
            d->failed += t->failed;
            return;
        }
    }
    metrics_kafka_topic_t *d = dst->n_kafka_topic < METRICS_KAFKA_TOPICS
                                   ? &dst->kafka_topic[dst->n_kafka_topic++]
                                   : &dst->kafka_topic_rest;
    if (d != &dst->kafka_topic_rest)
        memcpy(d->topic, t->topic, sizeof(d->topic));
    d->produced += t->produced;
    d->delivered += t->delivered;
    d->failed += t->failed;
}

/* Each worker's producer has its own connection to each broker: the
 * counters add up, a broker is up when one producer has it up, the RTTs are
 * the worst. */
static void add_rdkafka(metrics_rdkafka_t *dst, const metrics_rdkafka_t *src) {
    if (!src->valid)
        return;
    dst->valid = true;
    ADD(msg_cnt);
    ADD(msg_size);
    dst->msg_max = dst->msg_max > src->msg_max ? dst->msg_max : src->msg_max;
    dst->msg_size_max =
        dst->msg_size_max > src->msg_size_max ? dst->msg_size_max : src->msg_size_max;
    ADD(txmsgs);
    ADD(txmsg_bytes);
    ADD(brokers_dropped);
    for (uint32_t i = 0; i < src->n_brokers; i++) {
        const metrics_broker_t *b = &src->brokers[i];
        metrics_broker_t *d = NULL;
        for (uint32_t j = 0; j < dst->n_brokers && !d; j++)
            if (strcmp(dst->brokers[j].name, b->name) == 0)
                d = &dst->brokers[j];
        if (!d) {
            if (dst->n_brokers == METRICS_MAX_BROKERS) {
                dst->brokers_dropped++;
                continue;
            }
            d = &dst->brokers[dst->n_brokers++];
            *d = *b;
            continue;
        }
        d->up = d->up || b->up;
        d->rtt_avg_usec = d->rtt_avg_usec > b->rtt_avg_usec ? d->rtt_avg_usec : b->rtt_avg_usec;
        d->rtt_p99_usec = d->rtt_p99_usec > b->rtt_p99_usec ? d->rtt_p99_usec : b->rtt_p99_usec;
        d->outbuf_msg_cnt += b->outbuf_msg_cnt;
        d->waitresp_msg_cnt += b->waitresp_msg_cnt;
        d->tx += b->tx;
        d->rx += b->rx;
        d->txerrs += b->txerrs;
        d->rxerrs += b->rxerrs;
        d->txretries += b->txretries;
        d->req_timeouts += b->req_timeouts;
        d->connects += b->connects;
        d->disconnects += b->disconnects;
    }
}

#define MAX(f) dst->f = dst->f > src->f ? dst->f : src->f

/* Each worker's spool: bytes, records and counters add up; the oldest
 * record is the oldest of any; one broker outage is one in each worker, so
 * the outages and their time are the worker's that saw the most; the state
 * is the highest (2 draining > 1 spooling > 0 direct: some worker is not
 * direct). */
static void add_spool(metrics_t *dst, const metrics_t *src) {
    dst->spool |= src->spool;
    ADD(spool_bytes);
    ADD(spool_records);
    MAX(spool_oldest_age_seconds);
    ADD(spool_records_spooled);
    ADD(spool_records_drained);
    ADD(spool_full);
    ADD(spool_qos0_dropped);
    ADD(spool_corrupt_skipped);
    ADD(spool_truncations);
    ADD(spool_rewinds);
    MAX(spool_state);
    MAX(spool_outages);
    MAX(spool_outage_seconds);
    ADD(spool_drain_rate);
    ADD(spool_taken_back);
    ADD(spool_maybe_twice);
    ADD(spool_state_save_failures);
    ADD(spool_state_pubcomp_full);
}

void metrics_add(metrics_t *dst, const metrics_t *src) {
    ADD(connections);
    ADD(connections_total);
    ADD_ARRAY(connections_refused);
    ADD(tls_handshake_steps);
    ADD(auth_failures);
    /* auth_unchecked: the shared security object's count, the same in each. */
    ADD(acl_denied);
    ADD(output_limit_closed);
    ADD(packet_timeout_closed);
    ADD(input_budget_closed);
    ADD(input_buffer_bytes);
    ADD(wills_published);
    ADD(wills_lost);
    ADD_ARRAY(packets_received);
    ADD_ARRAY(packets_sent);
    ADD_ARRAY(messages_received);
    ADD(bytes_received);
    ADD(bytes_sent);
    add_labels(&dst->protocol_errors, &src->protocol_errors);
    ADD_ARRAY(unmapped);
    ADD_ARRAY(messages_refused);
    for (size_t i = 0; i < src->n_kafka_topic; i++)
        add_topic(dst, &src->kafka_topic[i]);
    dst->kafka_topic_rest.produced += src->kafka_topic_rest.produced;
    dst->kafka_topic_rest.delivered += src->kafka_topic_rest.delivered;
    dst->kafka_topic_rest.failed += src->kafka_topic_rest.failed;
    /* Distinct topics: each worker counts its own; the merged table's. */
    dst->kafka_topics =
        dst->n_kafka_topic > dst->kafka_topics ? dst->n_kafka_topic : dst->kafka_topics;
    ADD(inflight_messages);
    ADD(paused_readers);
    ADD(persistent_sessions);
    ADD(persistent_session_bytes);
    ADD(sessions_evicted_count);
    ADD(sessions_evicted_bytes);
    ADD_ARRAY(ack_latency.buckets);
    ADD(ack_latency.count);
    ADD(ack_latency.sum_usec);
    ADD(kafka_records_produced);
    ADD(kafka_records_delivered);
    add_labels(&dst->kafka_records_failed, &src->kafka_records_failed);
    ADD(kafka_queue_full);
    ADD(kafka_producer_replaced);
    add_rdkafka(&dst->rdkafka, &src->rdkafka);
    /* The downlink's delivery to each worker's sessions (the consumer and
     * the retained store are one, counted in dst's own registry). */
    ADD_ARRAY(downlink_deliveries);
    ADD_ARRAY(downlink_not_delivered);
    ADD_ARRAY(subscribe_refused);
    ADD(subscriptions);
    ADD(downlink_queued);
    ADD_ARRAY(downlink_dropped);
    ADD(retained_copies_lost);
    add_spool(dst, src);
}
