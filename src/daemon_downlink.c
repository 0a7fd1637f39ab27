/* The daemon's downlink side (daemon_downlink.h). */
#include "daemon_downlink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_fanout.h"
#include "kafka/consumer.h"
#include "net/server.h"
#include "util/log.h"

struct daemon_downlink {
    const config_t *cfg;
    session_mgr_t *sm;
    daemon_fanout_t *fan; /* with several workers, instead of sm */
    kafka_consumer_t *kc;
    dl_router_t *router;
    dl_retained_t *retained;
    const char *retained_topic;
    uint64_t *consumed; /* per rule, then the retained topic */
    dl_header_t *hv;
    size_t hcap;
    char topic[65536];
    log_ratelimit_t rl_routed, rl_skipped, rl_retained;
};

static void on_message(void *ud, const kafka_message_t *m);

daemon_downlink_t *daemon_downlink_new(const config_t *cfg, const char *bootstrap,
                                       dl_router_t *router, dl_retained_t *retained,
                                       session_mgr_t *sm, char *errbuf, size_t errlen) {
    daemon_downlink_t *dd = calloc(1, sizeof(*dd));
    const char **topics = calloc(cfg->n_downlink + 1, sizeof(*topics));
    const char **props = calloc(cfg->n_kafka_properties * 2 + 1, sizeof(*props));
    if (!dd || !topics || !props || !(dd->consumed = calloc(cfg->n_downlink + 1, 8))) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    dd->cfg = cfg;
    dd->sm = sm;
    dd->router = router;
    dd->retained = retained;
    dd->retained_topic = cfg->retained.enabled ? cfg->retained.topic : NULL;
    /* Debug lines for tests and troubleshooting; bounded so a burst of
     * records cannot flood the log. */
    dd->rl_routed = (log_ratelimit_t)LOG_RATELIMIT_INIT("downlink routed", 100, 10000);
    dd->rl_skipped = (log_ratelimit_t)LOG_RATELIMIT_INIT("downlink skipped", 20, 10000);
    dd->rl_retained = (log_ratelimit_t)LOG_RATELIMIT_INIT("retained refused", 20, 10000);
    for (size_t i = 0; i < cfg->n_downlink; i++)
        topics[i] = cfg->downlink[i].kafka;
    for (size_t i = 0; i < cfg->n_kafka_properties; i++) {
        props[2 * i] = cfg->kafka_properties[i].name;
        props[2 * i + 1] = cfg->kafka_properties[i].value;
    }
    kafka_consumer_opts_t o = {.bootstrap_servers = bootstrap,
                               .properties = props,
                               .n_properties = cfg->n_kafka_properties,
                               .topics = topics,
                               .n_topics = cfg->n_downlink,
                               .from_beginning = dd->retained_topic,
                               .on_message = on_message,
                               .ud = dd};
    if (kafka_consumer_new(&o, &dd->kc, errbuf, errlen) != 0)
        goto fail;
    free(topics);
    free(props);
    log_info("downlink: reading %zu Kafka topic(s)%s%s", cfg->n_downlink,
             dd->retained_topic ? " and the retained topic " : "",
             dd->retained_topic ? dd->retained_topic : "");
    return dd;
fail:
    free(topics);
    free(props);
    daemon_downlink_free(dd);
    return NULL;
}

void daemon_downlink_free(daemon_downlink_t *dd) {
    if (!dd)
        return;
    kafka_consumer_free(dd->kc);
    free(dd->consumed);
    free(dd->hv);
    free(dd);
}

int daemon_downlink_fd(const daemon_downlink_t *dd) {
    return kafka_consumer_event_fd(dd->kc);
}

void daemon_downlink_set_fanout(daemon_downlink_t *dd, daemon_fanout_t *fan) {
    dd->fan = fan;
}

void daemon_downlink_poll(daemon_downlink_t *dd) {
    if (!dd->fan) {
        kafka_consumer_poll(dd->kc, DOWNLINK_POLL_BATCH);
        return;
    }
    kafka_consumer_poll(dd->kc, daemon_fanout_room(dd->fan, DOWNLINK_POLL_BATCH));
    daemon_fanout_flush(dd->fan);
}

/* The retained topic: key = MQTT topic, value = payload (none or empty
 * deletes), mqtt.qos header = QoS (default 0), mqtt.message_expiry header =
 * seconds from the record's timestamp (none: it does not expire). */
static void on_retained(daemon_downlink_t *dd, const kafka_message_t *m) {
    uint8_t qos = 0;
    uint32_t expiry_s = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const kafka_header_t *h = &m->headers[i];
        if (strcmp(h->name, "mqtt.qos") == 0 && h->len == 1 && ((const char *)h->value)[0] >= '0' &&
            ((const char *)h->value)[0] <= '2')
            qos = (uint8_t)(((const char *)h->value)[0] - '0');
        else if (strcmp(h->name, "mqtt.message_expiry") == 0)
            expiry_s = dl_expiry_parse(h->value, h->len);
    }
    int64_t expires_ms = 0;
    if (expiry_s)
        expires_ms =
            (m->timestamp_ms >= 0 ? m->timestamp_ms : server_wall_ms()) + (int64_t)expiry_s * 1000;
    int rc = m->key ? dl_retained_set_expiring(dd->retained, m->key, m->key_len, m->value,
                                               m->value ? m->value_len : 0, qos, expires_ms)
                    : DL_EINVAL;
    if (rc == 0)
        return;
    if (!m->key) /* counted with the invalid topic names: "" is one */
        dl_retained_set(dd->retained, "", 0, NULL, 0, 0);
    log_ratelimited(&dd->rl_retained, LOG_WARN,
                    "retained: %s [%" PRId32 "] offset %" PRId64 " not kept: %s", m->topic,
                    m->partition, m->offset,
                    rc == DL_EFULL    ? "retained.max_messages or retained.max_bytes reached"
                    : rc == DL_EINVAL ? "its key is not a valid MQTT topic name"
                                      : dl_strerror(rc));
}

static void on_message(void *ud, const kafka_message_t *m) {
    daemon_downlink_t *dd = ud;
    /* The configuration keeps the retained topic out of `downlink`. */
    if (dd->retained_topic && strcmp(m->topic, dd->retained_topic) == 0) {
        dd->consumed[dd->cfg->n_downlink]++;
        on_retained(dd, m);
        return;
    }
    if (m->n_headers > dd->hcap) {
        dl_header_t *hv = realloc(dd->hv, m->n_headers * sizeof(*hv));
        if (!hv) {
            log_error("downlink: out of memory for %zu headers", m->n_headers);
            return;
        }
        dd->hv = hv;
        dd->hcap = m->n_headers;
    }
    for (size_t i = 0; i < m->n_headers; i++)
        dd->hv[i] = (dl_header_t){m->headers[i].name, m->headers[i].value, m->headers[i].len};
    dl_record_t rec = {.topic = m->topic,
                       .partition = m->partition,
                       .offset = m->offset,
                       .timestamp_ms = m->timestamp_ms,
                       .key = m->key,
                       .key_len = m->key_len,
                       .value = m->value,
                       .value_len = m->value_len,
                       .headers = dd->hv,
                       .n_headers = m->n_headers};
    int rule = dl_router_rule(dd->router, m->topic);
    if (rule >= 0)
        dd->consumed[rule]++;
    size_t len;
    int qos;
    dl_route_result_t res =
        dl_router_route(dd->router, &rec, dd->topic, sizeof(dd->topic), &len, &qos);
    if (res == DL_ROUTED) {
        log_ratelimited(&dd->rl_routed, LOG_DEBUG,
                        "downlink: %s [%" PRId32 "] offset %" PRId64 " -> %s (qos %d, %zu bytes)",
                        m->topic, m->partition, m->offset, dd->topic, qos, m->value_len);
        if (dd->fan)
            daemon_fanout_record(dd->fan, dd->topic, len, m->value, m->value_len, (uint8_t)qos,
                                 dd->hv, m->n_headers, m->timestamp_ms);
        else
            session_mgr_deliver_at(dd->sm, dd->topic, len, m->value, m->value_len, (uint8_t)qos,
                                   dd->hv, m->n_headers, m->timestamp_ms);
    } else
        log_ratelimited(&dd->rl_skipped, LOG_DEBUG,
                        "downlink: %s [%" PRId32 "] offset %" PRId64 " skipped: %s", m->topic,
                        m->partition, m->offset, dl_route_result_name(res));
}

void daemon_downlink_metrics(daemon_downlink_t *dd, metrics_t *m) {
    kafka_consumer_stats_t st;
    kafka_consumer_stats(dd->kc, &st);
    m->downlink = true;
    memset(&m->downlink_consumed, 0, sizeof(m->downlink_consumed));
    for (size_t i = 0; i < dd->cfg->n_downlink; i++)
        metrics_label_add(&m->downlink_consumed, dd->cfg->downlink[i].kafka, dd->consumed[i]);
    if (dd->retained_topic)
        metrics_label_add(&m->downlink_consumed, dd->retained_topic,
                          dd->consumed[dd->cfg->n_downlink]);
    const uint64_t *c = dl_router_counts(dd->router);
    m->downlink_routed = c[DL_ROUTED];
    memset(&m->downlink_skipped, 0, sizeof(m->downlink_skipped));
    for (int r = DL_ROUTED + 1; r < DL_SKIP_REASONS; r++)
        metrics_label_add(&m->downlink_skipped, dl_route_result_name((dl_route_result_t)r), c[r]);
    m->downlink_out_of_range = st.out_of_range;
    m->downlink_consumer_errors = st.errors;
    m->downlink_partitions = st.partitions;
    m->downlink_lag = st.lag > 0 ? (uint64_t)st.lag : 0;
    m->downlink_fanout_waits = dd->fan ? daemon_fanout_stats(dd->fan).waits : 0;
    for (unsigned i = 0; dd->fan && i < METRICS_MAX_WORKERS; i++)
        m->worker_downlink_records[i] = daemon_fanout_worker_records(dd->fan, i);
    memset(&m->retained_refused, 0, sizeof(m->retained_refused));
    if (dd->retained) {
        const dl_retained_stats_t *rs = dl_retained_stats(dd->retained);
        m->retained_messages = rs->messages;
        m->retained_bytes = rs->bytes;
        m->retained_updates[0] = rs->set;
        m->retained_updates[1] = rs->deleted;
        m->retained_expired = rs->expired;
        metrics_label_add(&m->retained_refused, "full", rs->refused_full);
        metrics_label_add(&m->retained_refused, "invalid_topic", rs->refused_invalid);
    }
}

int daemon_downlink_ready(daemon_downlink_t *dd, char *reason, size_t cap) {
    kafka_consumer_stats_t st;
    kafka_consumer_stats(dd->kc, &st);
    if (st.assigned)
        return 1;
    snprintf(reason, cap, "the downlink consumer has no partition assignment yet (no metadata)");
    return 0;
}
