/* The daemon's counters into the metrics registry at scrape time
 * (daemon_metrics.h). */
#include "daemon_metrics.h"

#include <stdio.h>
#include <string.h>

#include "mqtt/codec.h"

void daemon_metrics_collect(metrics_t *m, const daemon_parts_t *p) {
    const session_stats_t *st = session_mgr_stats(p->sm);
    const server_stats_t *sv = server_stats(p->srv);
    m->connections = server_conn_count(p->srv);
    m->connections_total = sv->accepted;
    m->connections_refused[METRICS_REFUSED_MAX_CONNECTIONS] = sv->refused_max_connections;
    m->connections_refused[METRICS_REFUSED_PER_IP_LIMIT] = sv->refused_per_ip;
    m->connections_refused[METRICS_REFUSED_PER_IP_RATE] = sv->refused_rate_per_ip;
    m->connections_refused[METRICS_REFUSED_TLS_HANDSHAKE] = sv->tls_handshake_failures;
    m->connections_refused[METRICS_REFUSED_WS_UPGRADE] = sv->ws_upgrade_failures;
    m->tls_handshake_steps = sv->tls_handshake_steps;
    m->output_limit_closed = sv->refused_output_limit;
    m->packet_timeout_closed = sv->packet_timeouts;
    m->input_budget_closed = sv->input_budget_closed;
    m->input_buffer_bytes = sv->input_bytes;
    m->bytes_received = sv->bytes_in;
    m->bytes_sent = sv->bytes_out;
    _Static_assert(sizeof(m->packets_received) == sizeof(st->packets_received) &&
                       sizeof(m->messages_received) == sizeof(st->messages_received),
                   "the same packet types and QoS levels");
    memcpy(m->packets_received, st->packets_received, sizeof(m->packets_received));
    memcpy(m->packets_sent, st->packets_sent, sizeof(m->packets_sent));
    memcpy(m->messages_received, st->messages_received, sizeof(m->messages_received));
    m->auth_failures = st->auth_failures;
    m->auth_unchecked = security_refused_unchecked(p->sec);
    m->acl_denied = st->acl_denied;
    m->wills_published = st->wills_published;
    m->wills_lost = st->wills_lost;
    m->connections_refused[METRICS_REFUSED_CONNECT_TIMEOUT] = st->connect_timeouts;
    m->connections_refused[METRICS_REFUSED_PROTOCOL_ERROR] = st->refused_protocol_errors;
    m->connections_refused[METRICS_REFUSED_CONNECT_TOO_LONG] = st->refused_too_long;
    m->connections_refused[METRICS_REFUSED_PROTOCOL_VERSION] =
        st->connack_refused[MQTT_CONNACK_BAD_PROTOCOL];
    m->connections_refused[METRICS_REFUSED_IDENTIFIER_REJECTED] =
        st->connack_refused[MQTT_CONNACK_ID_REJECTED];
    m->connections_refused[METRICS_REFUSED_SERVER_UNAVAILABLE] =
        st->connack_refused[MQTT_CONNACK_UNAVAILABLE] + daemon_auth_refused(p->auth);
    m->connections_refused[METRICS_REFUSED_NOT_AUTHORIZED] =
        st->connack_refused[MQTT_CONNACK_BAD_CREDENTIALS] +
        st->connack_refused[MQTT_CONNACK_NOT_AUTHORIZED];
    memset(&m->protocol_errors, 0, sizeof(m->protocol_errors));
    for (int k = 1; k < SESSION_ERR__COUNT; k++)
        if (st->protocol_error_kinds[k])
            metrics_label_add(&m->protocol_errors, session_error_name(k),
                              st->protocol_error_kinds[k]);
    m->unmapped[METRICS_UNMAPPED_DISCONNECT] = st->unmapped_closed;
    m->unmapped[METRICS_UNMAPPED_DROP] = st->unmapped_dropped;
    m->unmapped[METRICS_UNMAPPED_TOPIC] = st->unmapped_routed;
    _Static_assert((int)METRICS_MSG_REFUSED__COUNT == (int)SESSION_REFUSED__COUNT &&
                       (int)METRICS_MSG_REFUSED_TOPIC_LIMIT == (int)SESSION_REFUSED_TOPIC_LIMIT,
                   "metrics_msg_refused_t must index like SESSION_REFUSED_*");
    memcpy(m->messages_refused, st->messages_refused, sizeof(m->messages_refused));
    m->kafka_topics = st->kafka_topics;
    kafka_topic_stat_t ts[METRICS_KAFKA_TOPICS], rest;
    m->n_kafka_topic = kafka_topic_stats(p->k, ts, METRICS_KAFKA_TOPICS, &rest);
    for (size_t i = 0; i < m->n_kafka_topic; i++) {
        metrics_kafka_topic_t *t = &m->kafka_topic[i];
        snprintf(t->topic, sizeof(t->topic), "%s", ts[i].topic);
        t->produced = ts[i].produced;
        t->delivered = ts[i].delivered;
        t->failed = ts[i].failed;
    }
    m->kafka_topic_rest = (metrics_kafka_topic_t){"", rest.produced, rest.delivered, rest.failed};
    int outq = kafka_outq_len(p->k);
    m->inflight_messages = outq > 0 ? (uint64_t)outq : 0;
    m->paused_readers = session_mgr_paused_count(p->sm);
    m->persistent_sessions = st->persistent_sessions;
    m->persistent_session_bytes = st->persistent_session_bytes;
    m->sessions_evicted_count = st->sessions_evicted;
    m->sessions_evicted_bytes = st->sessions_evicted_bytes;
    m->kafka_records_produced = st->published;
    m->kafka_records_delivered = st->delivered;
    m->kafka_queue_full = st->queue_full;
    if (p->fwd) {
        const spooler_stats_t *fs = spooler_stats(p->fwd);
        spool_stats_t ss;
        spool_stats(p->spool, &ss);
        /* The session counts the spool's acks as delivered; Kafka confirmed these. */
        m->kafka_records_delivered = fs->direct + fs->drained;
        m->spool = true;
        m->spool_bytes = ss.bytes;
        m->spool_records = ss.records;
        int64_t age = ss.oldest_timestamp_ms ? server_wall_ms() - ss.oldest_timestamp_ms : 0;
        m->spool_oldest_age_seconds = age > 0 ? (uint64_t)age / 1000 : 0;
        m->spool_records_spooled = fs->spooled;
        m->spool_records_drained = fs->drained;
        m->spool_full = fs->refused_full;
        m->spool_qos0_dropped = st->qos0_dropped_spool_full;
        m->spool_corrupt_skipped = ss.corrupt_skipped;
        m->spool_truncations = ss.truncations;
        m->spool_rewinds = fs->rewinds;
        m->spool_state = (uint64_t)fs->state;
        m->spool_outages = fs->outages;
        m->spool_outage_seconds = fs->outage_ms / 1000;
        m->spool_drain_rate = fs->drain_rate;
        m->spool_taken_back = fs->taken_back;
        m->spool_maybe_twice = fs->maybe_twice;
        m->spool_state_save_failures = st->qos2_save_failures;
        m->spool_state_pubcomp_full = st->qos2_pubcomp_wait_full;
    }
    if (p->dl)
        daemon_downlink_metrics(p->dl, m);
    if (p->downlink) {
        m->downlink = true;
        memcpy(m->downlink_deliveries, st->deliveries, sizeof(m->downlink_deliveries));
        m->downlink_not_delivered[0] = st->delivery_denied;
        m->downlink_not_delivered[1] = st->delivery_too_large;
        m->subscribe_refused[0] = st->subscribe_denied;
        m->subscribe_refused[1] = st->subscribe_invalid;
        m->subscribe_refused[2] = st->subscribe_quota;
        m->subscriptions = session_mgr_subscription_count(p->sm);
        const dl_queue_stats_t *qs = session_mgr_queue_stats(p->sm);
        m->downlink_queued = qs->depth;
        m->retained_copies_lost = st->retained_lost;
        m->downlink_dropped[0] = qs->dropped_oldest_0;
        m->downlink_dropped[1] = qs->refused_full;
        m->downlink_dropped[2] = st->delivery_session_bytes;
        m->downlink_dropped[3] = qs->expired;
    }
}
