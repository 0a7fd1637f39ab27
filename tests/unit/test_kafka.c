/* kafka.c against librdkafka's in-process mock cluster: delivery reports on the
 * caller's thread through the event fd, exact records read back with a
 * consumer, property errors, queue full, delivery failures, purge, fatal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka/producer.h"
#include "util/log.h"

#define APIKEY_PRODUCE 0
#define APIKEY_INIT_PRODUCER_ID 22
/* Bounds for waiting on the mock; a test that hits one fails. */
#define WAIT_MS 15000

typedef struct {
    uint64_t opaque;
    int err;
    char errstr[256];
} report_t;

typedef struct {
    report_t reports[64];
    int n_reports;
    int n_fatal;
    char fatal[256];
    /* When set, on_fatal asks for a new producer; on_replaced reports. */
    kafka_t **replace;
    int n_replaced, replaced_held, reports_at_replaced;
    char replaced_err[256];
} sink_t;

typedef struct {
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    sink_t sink;
    kafka_t *k;
} fixture_t;

static void on_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    sink_t *s = ud;
    assert_true(s->n_reports < 64);
    report_t *r = &s->reports[s->n_reports++];
    r->opaque = opaque;
    r->err = err;
    snprintf(r->errstr, sizeof(r->errstr), "%s", errstr);
}

static void on_fatal(void *ud, const char *errstr) {
    sink_t *s = ud;
    s->n_fatal++;
    snprintf(s->fatal, sizeof(s->fatal), "%s", errstr);
    if (s->replace != NULL)
        kafka_replace_soon(*s->replace);
}

static void on_replaced(void *ud, int held, const char *errstr) {
    sink_t *s = ud;
    s->n_replaced++;
    s->replaced_held = held;
    s->reports_at_replaced = s->n_reports;
    snprintf(s->replaced_err, sizeof(s->replaced_err), "%s", errstr ? errstr : "");
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Serves events the way the daemon does (wait on the fd, then kafka_poll)
 * until `n` reports arrived; fails the test after WAIT_MS. */
static void wait_reports(fixture_t *f, int n) {
    int64_t deadline = now_ms() + WAIT_MS;
    while (f->sink.n_reports < n) {
        assert_true(now_ms() < deadline);
        struct pollfd pfd = {.fd = kafka_event_fd(f->k), .events = POLLIN};
        (void)poll(&pfd, 1, 100);
        kafka_poll(f->k);
    }
}

static void wait_fatal(fixture_t *f) {
    int64_t deadline = now_ms() + WAIT_MS;
    while (f->sink.n_fatal == 0) {
        assert_true(now_ms() < deadline);
        struct pollfd pfd = {.fd = kafka_event_fd(f->k), .events = POLLIN};
        (void)poll(&pfd, 1, 100);
        kafka_poll(f->k);
    }
}

static int fd_readable(int fd) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0);
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)), RD_KAFKA_CONF_OK);
    f->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(f->mock_rk);
    f->mc = rd_kafka_mock_cluster_new(f->mock_rk, 3);
    assert_non_null(f->mc);
    f->bootstrap = rd_kafka_mock_cluster_bootstraps(f->mc);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    kafka_free(f->k);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->mock_rk);
    free(f);
    return 0;
}

/* Creates the producer under test with extra property pairs. */
static void start(fixture_t *f, const char *const *props, size_t n_pairs) {
    char err[512];
    kafka_opts_t opts = {.bootstrap_servers = f->bootstrap,
                         .properties = props,
                         .n_properties = n_pairs,
                         .on_delivery = on_delivery,
                         .on_fatal = on_fatal,
                         .on_replaced = on_replaced,
                         .ud = &f->sink};
    int rc = kafka_new(&opts, &f->k, err, sizeof(err));
    if (rc != 0)
        fail_msg("kafka_new: %s", err);
}

static kafka_record_t simple_record(const char *topic, const char *value) {
    kafka_record_t rec = {.topic = topic, .value = value, .value_len = strlen(value)};
    return rec;
}

static rd_kafka_t *consumer_new(const char *bootstrap) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(c);
    return c;
}

/* Reads the first record of topic/partition 0; the caller destroys it. */
static rd_kafka_message_t *consume_first(rd_kafka_t *c, const char *topic) {
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        assert_true(now_ms() < deadline);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return m;
        rd_kafka_message_destroy(m);
    }
}

static void test_produce_reads_back_exact_record(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "exact", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    assert_int_equal(kafka_wait_metadata(f->k, WAIT_MS), 0);

    static const char value[] = {'v', 0, 'x', (char)0xff};
    kafka_header_t hdrs[] = {{"mqtt.topic", "a/b", 3}, {"mqtt.qos", "1", 1}, {"empty", "", 0}};
    kafka_record_t rec = {.topic = "exact",
                          .key = "k1",
                          .key_len = 2,
                          .value = value,
                          .value_len = sizeof(value),
                          .headers = hdrs,
                          .n_headers = 3,
                          .timestamp_ms = 1700000000123};
    assert_int_equal(kafka_produce(f->k, &rec, UINT64_C(0xfedcba9876543210)), KAFKA_OK);
    assert_int_equal(kafka_outq_len(f->k), 1);
    wait_reports(f, 1);
    assert_int_equal(f->sink.n_reports, 1);
    assert_int_equal(f->sink.reports[0].err, 0);
    assert_true(f->sink.reports[0].opaque == UINT64_C(0xfedcba9876543210));
    assert_string_equal(f->sink.reports[0].errstr, "Success");
    assert_int_equal(kafka_outq_len(f->k), 0);

    rd_kafka_t *c = consumer_new(f->bootstrap);
    rd_kafka_message_t *m = consume_first(c, "exact");
    assert_int_equal(m->key_len, 2);
    assert_memory_equal(m->key, "k1", 2);
    assert_int_equal(m->len, sizeof(value));
    assert_memory_equal(m->payload, value, sizeof(value));
    rd_kafka_timestamp_type_t tstype;
    assert_true(rd_kafka_message_timestamp(m, &tstype) == 1700000000123);
    assert_int_equal(tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
    rd_kafka_headers_t *h = NULL;
    assert_int_equal(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_header_cnt(h), 3);
    for (size_t i = 0; i < 3; i++) {
        const char *name;
        const void *val;
        size_t size;
        assert_int_equal(rd_kafka_header_get_all(h, i, &name, &val, &size),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        assert_string_equal(name, hdrs[i].name);
        assert_int_equal(size, hdrs[i].len);
        if (size > 0)
            assert_memory_equal(val, hdrs[i].value, size);
    }
    rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

static void test_null_key_and_no_headers(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "nokey", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    kafka_record_t rec = simple_record("nokey", "plain");
    assert_int_equal(kafka_produce(f->k, &rec, 7), KAFKA_OK);
    wait_reports(f, 1);
    assert_int_equal(f->sink.reports[0].err, 0);
    assert_true(f->sink.reports[0].opaque == 7);

    rd_kafka_t *c = consumer_new(f->bootstrap);
    rd_kafka_message_t *m = consume_first(c, "nokey");
    assert_null(m->key);
    assert_int_equal(m->len, 5);
    assert_memory_equal(m->payload, "plain", 5);
    rd_kafka_headers_t *h = NULL;
    assert_int_equal(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR__NOENT);
    rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

typedef struct {
    int ok, failed;
    uint64_t opaque_sum;
} counter_t;

static void count_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    counter_t *c = ud;
    (void)errstr;
    if (err == 0)
        c->ok++;
    else
        c->failed++;
    c->opaque_sum += opaque;
}

/* Topic handles are cached up to KAFKA_TOPIC_CACHE_MAX; topics beyond it are
 * produced by name. Both paths deliver, twice over the same topics. */
static void test_more_topics_than_the_handle_cache(void **state) {
    fixture_t *f = *state;
    counter_t cnt = {0};
    char err[512];
    kafka_opts_t opts = {
        .bootstrap_servers = f->bootstrap, .on_delivery = count_delivery, .ud = &cnt};
    assert_int_equal(kafka_new(&opts, &f->k, err, sizeof(err)), 0);
    const int n = KAFKA_TOPIC_CACHE_MAX + 8;
    uint64_t want = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            char topic[32];
            snprintf(topic, sizeof(topic), "many-%d", i);
            kafka_record_t rec = simple_record(topic, "v");
            assert_int_equal(kafka_produce(f->k, &rec, (uint64_t)i + 1), KAFKA_OK);
            want += (uint64_t)i + 1;
        }
    }
    int64_t deadline = now_ms() + 4 * WAIT_MS;
    while (cnt.ok + cnt.failed < 2 * n) {
        assert_true(now_ms() < deadline);
        struct pollfd pfd = {.fd = kafka_event_fd(f->k), .events = POLLIN};
        (void)poll(&pfd, 1, 100);
        kafka_poll(f->k);
    }
    assert_int_equal(cnt.ok, 2 * n);
    assert_int_equal(cnt.failed, 0);
    assert_true(cnt.opaque_sum == want);
    assert_int_equal(kafka_outq_len(f->k), 0);
    /* Per-topic counts: the cached topics each 2 records; the 8 produced by
     * name and the topics past `max` in the rest. */
    static kafka_topic_stat_t ts[KAFKA_TOPIC_CACHE_MAX];
    kafka_topic_stat_t rest;
    assert_int_equal(kafka_topic_stats(f->k, ts, 10, &rest), 10);
    for (int i = 0; i < 10; i++) {
        char topic[32];
        snprintf(topic, sizeof(topic), "many-%d", i);
        assert_string_equal(ts[i].topic, topic);
        assert_true(ts[i].produced == 2 && ts[i].delivered == 2 && ts[i].failed == 0);
    }
    assert_null(rest.topic);
    assert_true(rest.produced == 2 * (uint64_t)(n - 10) && rest.delivered == rest.produced);
    assert_int_equal(kafka_topic_stats(f->k, ts, KAFKA_TOPIC_CACHE_MAX, &rest),
                     KAFKA_TOPIC_CACHE_MAX);
    assert_true(rest.produced == 16 && rest.delivered == 16 && rest.failed == 0);
}

/* A name librdkafka refuses (over 512 bytes) is not cached and fails the
 * produce call itself, as producing by name does. */
static void test_invalid_topic_name_fails_produce(void **state) {
    fixture_t *f = *state;
    start(f, NULL, 0);
    char topic[600];
    memset(topic, 'a', sizeof(topic) - 1);
    topic[sizeof(topic) - 1] = '\0';
    kafka_record_t rec = simple_record(topic, "v");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_ERR_PRODUCE);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_ERR_PRODUCE);
    assert_int_equal(kafka_outq_len(f->k), 0);
    assert_string_equal(kafka_last_error(f->k), "Topic name or object required");
}

static void test_event_fd_readable_when_report_waits(void **state) {
    fixture_t *f = *state;
    start(f, NULL, 0);
    int fd = kafka_event_fd(f->k);
    assert_true(fd >= 0);
    kafka_poll(f->k);
    assert_int_equal(fd_readable(fd), 0);

    kafka_record_t rec = simple_record("evfd", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 42), KAFKA_OK);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    assert_int_equal(f->sink.n_reports, 0); /* nothing runs until kafka_poll */
    assert_true(kafka_poll(f->k) >= 1);
    assert_int_equal(f->sink.n_reports, 1);
    assert_true(f->sink.reports[0].opaque == 42);
    assert_int_equal(f->sink.reports[0].err, 0);
    assert_int_equal(fd_readable(fd), 0);
    assert_int_equal(kafka_poll(f->k), 0);

    /* The trigger re-arms: a second report makes the fd readable again. */
    assert_int_equal(kafka_produce(f->k, &rec, 43), KAFKA_OK);
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
    assert_true(kafka_poll(f->k) >= 1);
    assert_int_equal(f->sink.n_reports, 2);
    assert_true(f->sink.reports[1].opaque == 43);
}

static void test_check_property(void **state) {
    (void)state;
    char err[512];
    assert_int_equal(kafka_check_property("linger.ms", "5", err, sizeof(err)), 0);
    assert_int_equal(kafka_check_property("enable.idempotence", "true", err, sizeof(err)), 0);
    assert_int_equal(kafka_check_property("linger.ms", "abc", err, sizeof(err)), -1);
    /* librdkafka's own message, unprefixed; it names the canonical property
     * (linger.ms is an alias). */
    assert_string_equal(err, "Invalid value for configuration property \"queue.buffering.max.ms\"");
    assert_int_equal(kafka_check_property("no.such.thing", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "No such configuration property: \"no.such.thing\"");
}

static void test_bad_property_fails_kafka_new(void **state) {
    fixture_t *f = *state;
    char err[512];
    const char *props[] = {"linger.ms", "1", "acks", "sometimes"};
    kafka_opts_t opts = {.bootstrap_servers = f->bootstrap,
                         .properties = props,
                         .n_properties = 2,
                         .on_delivery = on_delivery,
                         .ud = &f->sink};
    kafka_t *k = NULL;
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), -1);
    assert_null(k);
    assert_string_equal(err, "kafka property acks: Invalid value for configuration property "
                             "\"request.required.acks\"");
}

static void test_inconsistent_properties_fail_rd_kafka_new(void **state) {
    fixture_t *f = *state;
    char err[512];
    /* Each is valid alone; librdkafka rejects the pair at rd_kafka_new. */
    const char *props[] = {"enable.idempotence", "true", "acks", "1"};
    kafka_opts_t opts = {.bootstrap_servers = f->bootstrap, .properties = props, .n_properties = 2};
    kafka_t *k = NULL;
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), -1);
    assert_null(k);
    assert_string_equal(err, "kafka producer: `acks` must be set to `all` when "
                             "`enable.idempotence` is true");
}

static void test_properties_applied_in_order(void **state) {
    fixture_t *f = *state;
    /* The later queue bound wins: with brokers down the second produce is
     * refused only if queue.buffering.max.messages ended up 1. */
    const char *props[] = {"queue.buffering.max.messages", "100000", "queue.buffering.max.messages",
                           "1"};
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, props, 2);
    kafka_record_t rec = simple_record("order", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_OK);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_ERR_QUEUE_FULL);
}

static void test_queue_full(void **state) {
    fixture_t *f = *state;
    const char *props[] = {"queue.buffering.max.messages", "2"};
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, props, 1);
    kafka_record_t rec = simple_record("full", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_OK);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_OK);
    assert_int_equal(kafka_produce(f->k, &rec, 3), KAFKA_ERR_QUEUE_FULL);
    assert_string_equal(kafka_last_error(f->k), "Failed to produce message: Local: Queue full");
    assert_int_equal(kafka_outq_len(f->k), 2);

    /* Brokers back: the two queued records are delivered, room again. */
    assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    wait_reports(f, 2);
    /* Key-less records go to random partitions, so the two reports may come
     * in either order: both must be successes, for opaques 1 and 2. */
    assert_int_equal(f->sink.reports[0].err, 0);
    assert_int_equal(f->sink.reports[1].err, 0);
    assert_int_equal(f->sink.reports[0].opaque + f->sink.reports[1].opaque, 3);
    assert_true(f->sink.reports[0].opaque != f->sink.reports[1].opaque);
    assert_int_equal(kafka_produce(f->k, &rec, 3), KAFKA_OK);
    wait_reports(f, 3);
    assert_true(f->sink.reports[2].opaque == 3 && f->sink.reports[2].err == 0);
}

static void test_delivery_failure_topic_authorization(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "denied", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    assert_int_equal(kafka_wait_metadata(f->k, WAIT_MS), 0);
    rd_kafka_mock_push_request_errors(f->mc, APIKEY_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    kafka_record_t rec = simple_record("denied", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 99), KAFKA_OK);
    wait_reports(f, 1);
    assert_true(f->sink.reports[0].opaque == 99);
    assert_int_equal(f->sink.reports[0].err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_string_equal(f->sink.reports[0].errstr,
                        rd_kafka_err2str(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
    assert_int_equal(kafka_outq_len(f->k), 0);
}

static void test_delivery_failure_timeout_brokers_down(void **state) {
    fixture_t *f = *state;
    const char *props[] = {"message.timeout.ms", "300"};
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, props, 1);
    kafka_record_t rec = simple_record("down", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 5), KAFKA_OK);
    wait_reports(f, 1);
    assert_true(f->sink.reports[0].opaque == 5);
    assert_int_equal(f->sink.reports[0].err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    /* Counted as failed for its topic; the topic handle kept the producer's
     * message.timeout.ms (a fresh topic configuration would wait 300 s). */
    kafka_topic_stat_t ts[2], rest;
    assert_int_equal(kafka_topic_stats(f->k, ts, 2, &rest), 1);
    assert_string_equal(ts[0].topic, "down");
    assert_true(ts[0].produced == 1 && ts[0].delivered == 0 && ts[0].failed == 1);
    assert_true(rest.produced == 0 && rest.delivered == 0 && rest.failed == 0);
}

static void test_purge_fails_reports(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    kafka_record_t rec = simple_record("purged", "x");
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(kafka_produce(f->k, &rec, i), KAFKA_OK);
    assert_int_equal(kafka_outq_len(f->k), 3);
    assert_int_equal(kafka_purge(f->k), 3);
    assert_int_equal(f->sink.n_reports, 0); /* reports come through kafka_poll */
    wait_reports(f, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(f->sink.reports[i].opaque == (uint64_t)i + 1);
        assert_int_equal(f->sink.reports[i].err, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
    }
    assert_int_equal(kafka_outq_len(f->k), 0);
}

static void test_flush_serves_reports(void **state) {
    fixture_t *f = *state;
    start(f, NULL, 0);
    kafka_record_t rec = simple_record("flushed", "x");
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(kafka_produce(f->k, &rec, i), KAFKA_OK);
    assert_int_equal(kafka_flush(f->k, WAIT_MS), 0);
    assert_int_equal(f->sink.n_reports, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(f->sink.reports[i].err, 0);
}

static void test_flush_times_out_when_brokers_down(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    kafka_record_t rec = simple_record("stuck", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_OK);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_OK);
    assert_int_equal(kafka_flush(f->k, 200), 2);
    assert_int_equal(f->sink.n_reports, 0);
}

static void test_wait_metadata(void **state) {
    fixture_t *f = *state;
    start(f, NULL, 0);
    assert_int_equal(kafka_wait_metadata(f->k, WAIT_MS), 0);
    assert_string_equal(kafka_bootstrap_servers(f->k), f->bootstrap);
}

static void test_wait_metadata_fails_when_down(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    start(f, NULL, 0);
    assert_int_equal(kafka_wait_metadata(f->k, 300), -1);
    /* Which of the two depends on where the last attempt was cut off. */
    const char *e = kafka_last_error(f->k);
    if (strcmp(e, "metadata: Local: Broker transport failure") != 0)
        assert_string_equal(e, "metadata: Local: Timed out");
}

static void test_fatal_error(void **state) {
    fixture_t *f = *state;
    /* An idempotent producer that may not get a producer id is fatal. */
    rd_kafka_mock_push_request_errors(f->mc, APIKEY_INIT_PRODUCER_ID, 1,
                                      RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
    const char *props[] = {"enable.idempotence", "true"};
    start(f, props, 1);
    wait_fatal(f);
    assert_int_equal(f->sink.n_fatal, 1);
    assert_non_null(strstr(f->sink.fatal, "authoriz"));
    kafka_record_t rec = simple_record("fatal", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_ERR_FATAL);
    assert_true(strlen(kafka_last_error(f->k)) > 0);
    /* Reported once, however many times the loop polls. */
    kafka_poll(f->k);
    assert_int_equal(f->sink.n_fatal, 1);
}

/* As the daemon runs it (config/settings.c). */
static const char *const idempotent[] = {"enable.idempotence", "true"};

/* Serves events until on_replaced came; fails the test after WAIT_MS. */
static void wait_replaced(kafka_t *k, sink_t *s, int n) {
    int64_t deadline = now_ms() + WAIT_MS;
    while (s->n_replaced < n) {
        assert_true(now_ms() < deadline);
        struct pollfd pfd = {.fd = kafka_event_fd(k), .events = POLLIN};
        (void)poll(&pfd, 1, 100);
        kafka_poll(k);
    }
}

/* M2K_TEST_KAFKA_FATAL_AT=3: a fatal error right after the third record;
 * the fatal callback asks for a new producer: the three records (held
 * while the brokers are down) come back failed, once each, and the new
 * producer delivers once the brokers are back. */
static void test_fatal_error_replaces_producer(void **state) {
    fixture_t *f = *state;
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    f->sink.replace = &f->k;
    setenv("M2K_TEST_KAFKA_FATAL_AT", "3", 1);
    start(f, idempotent, 1);
    unsetenv("M2K_TEST_KAFKA_FATAL_AT");
    int efd = kafka_event_fd(f->k);
    kafka_record_t rec = simple_record("replaced", "x");
    for (uint64_t i = 1; i <= 3; i++)
        assert_int_equal(kafka_produce(f->k, &rec, i), KAFKA_OK);
    wait_replaced(f->k, &f->sink, 1);
    assert_int_equal(f->sink.n_fatal, 1);
    assert_string_equal(f->sink.fatal, "test_fatal_error: M2K_TEST_KAFKA_FATAL_AT");
    /* librdkafka's fatal state may fail queued records itself, before the
     * replacement purges the rest: either way every report is served by
     * the time on_replaced runs, and counted. */
    assert_int_equal(f->sink.replaced_held, 3);
    assert_int_equal(f->sink.reports_at_replaced, 3);
    assert_string_equal(f->sink.replaced_err, "");
    uint64_t seen = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->sink.reports[i].err, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
        seen |= 1u << f->sink.reports[i].opaque;
    }
    assert_true(seen == 0xe);
    assert_int_equal(kafka_outq_len(f->k), 0);
    /* The same event fd, and a producer that takes records. */
    assert_int_equal(kafka_event_fd(f->k), efd);
    assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, -1), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(kafka_produce(f->k, &rec, 4), KAFKA_OK);
    wait_reports(f, 4);
    assert_true(f->sink.reports[3].opaque == 4);
    assert_int_equal(f->sink.reports[3].err, 0);
    assert_int_equal(f->sink.n_fatal, 1);
    /* Counted for the topic across the two producers. */
    kafka_topic_stat_t ts[1], rest;
    assert_int_equal(kafka_topic_stats(f->k, ts, 1, &rest), 1);
    assert_true(ts[0].produced == 4 && ts[0].delivered == 1 && ts[0].failed == 3);
}

/* Record 1 delivered (the producer id and the topic's leader are known);
 * record 2 in flight, its answer `rtt_ms` away; record 3 queued, and the
 * hook's fatal error right after it, 0.3 s after record 2. */
static kafka_record_t fatal_with_record_in_flight(fixture_t *f, int rtt_ms) {
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "inflight", 1, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    f->sink.replace = &f->k;
    setenv("M2K_TEST_KAFKA_FATAL_AT", "3", 1);
    start(f, idempotent, 1);
    unsetenv("M2K_TEST_KAFKA_FATAL_AT");
    assert_int_equal(kafka_wait_metadata(f->k, WAIT_MS), 0);
    kafka_record_t rec = simple_record("inflight", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_OK);
    wait_reports(f, 1);
    assert_int_equal(f->sink.reports[0].err, 0);
    assert_int_equal(rd_kafka_mock_broker_set_rtt(f->mc, -1, rtt_ms), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_OK);
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(kafka_produce(f->k, &rec, 3), KAFKA_OK);
    return rec;
}

/* A record the fatal producer has in flight keeps its answer: Kafka wrote
 * it, so its report is a success (not a failure the client would answer
 * with a resend, a duplicate); the record not sent yet fails at once, and
 * records wait until the new producer takes over. */
static void test_fatal_error_in_flight_record_answered(void **state) {
    fixture_t *f = *state;
    kafka_record_t rec = fatal_with_record_in_flight(f, 1500);
    wait_fatal(f);
    kafka_poll(f->k);
    assert_int_equal(f->sink.n_replaced, 0); /* record 2 is still in flight */
    assert_int_equal(kafka_produce(f->k, &rec, 4), KAFKA_ERR_QUEUE_FULL);
    assert_string_equal(kafka_last_error(f->k), "the producer is being replaced");
    assert_int_equal(f->sink.n_reports, 2);
    assert_true(f->sink.reports[1].opaque == 3);
    assert_int_equal(f->sink.reports[1].err, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
    wait_replaced(f->k, &f->sink, 1);
    assert_int_equal(f->sink.n_reports, 3);
    assert_true(f->sink.reports[2].opaque == 2);
    assert_int_equal(f->sink.reports[2].err, 0);
    assert_int_equal(f->sink.replaced_held, 1);
    assert_int_equal(kafka_outq_len(f->k), 0);
    assert_int_equal(rd_kafka_mock_broker_set_rtt(f->mc, -1, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(kafka_produce(f->k, &rec, 4), KAFKA_OK);
    wait_reports(f, 4);
    assert_true(f->sink.reports[3].opaque == 4 && f->sink.reports[3].err == 0);
}

/* An answer that does not come within KAFKA_REPLACE_INFLIGHT_MS (5 s): the
 * record in flight is purged then, and fails. */
static void test_fatal_error_in_flight_record_purged_after_5_s(void **state) {
    fixture_t *f = *state;
    (void)fatal_with_record_in_flight(f, 12000);
    wait_replaced(f->k, &f->sink, 1);
    assert_int_equal(f->sink.n_reports, 3);
    assert_true(f->sink.reports[1].opaque == 3);
    assert_int_equal(f->sink.reports[1].err, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
    assert_true(f->sink.reports[2].opaque == 2);
    assert_int_equal(f->sink.reports[2].err, RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
    assert_int_equal(f->sink.replaced_held, 2);
    assert_int_equal(kafka_outq_len(f->k), 0);
    assert_int_equal(rd_kafka_mock_broker_set_rtt(f->mc, -1, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Without kafka_replace_soon the producer stays fatal (the daemon stops). */
static void test_fatal_error_not_replaced(void **state) {
    fixture_t *f = *state;
    setenv("M2K_TEST_KAFKA_FATAL_AT", "1", 1);
    start(f, idempotent, 1);
    unsetenv("M2K_TEST_KAFKA_FATAL_AT");
    kafka_record_t rec = simple_record("stays-fatal", "x");
    assert_int_equal(kafka_produce(f->k, &rec, 1), KAFKA_OK);
    wait_fatal(f);
    kafka_poll(f->k);
    assert_int_equal(f->sink.n_replaced, 0);
    assert_int_equal(kafka_produce(f->k, &rec, 2), KAFKA_ERR_FATAL);
}

static void test_fatal_hook_malformed(void **state) {
    fixture_t *f = *state;
    char err[512];
    kafka_opts_t opts = {.bootstrap_servers = f->bootstrap};
    kafka_t *k = NULL;
    setenv("M2K_TEST_KAFKA_FATAL_AT", "5,5", 1);
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), -1);
    unsetenv("M2K_TEST_KAFKA_FATAL_AT");
    assert_null(k);
    assert_string_equal(err, "M2K_TEST_KAFKA_FATAL_AT=5,5: want up to 16 increasing record "
                             "numbers, comma-separated");
}

/* "embedded": the mock cluster lives on its own handle, so a replaced
 * producer leaves it up: the new one delivers to it. */
static void test_fatal_error_embedded_cluster_survives(void **state) {
    (void)state;
    sink_t sink = {0};
    char err[512];
    kafka_t *k = NULL;
    sink.replace = &k;
    kafka_opts_t opts = {.bootstrap_servers = "embedded",
                         .properties = idempotent,
                         .n_properties = 1,
                         .on_delivery = on_delivery,
                         .on_fatal = on_fatal,
                         .on_replaced = on_replaced,
                         .ud = &sink};
    setenv("M2K_TEST_KAFKA_FATAL_AT", "1", 1);
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), 0);
    unsetenv("M2K_TEST_KAFKA_FATAL_AT");
    char bs[256];
    snprintf(bs, sizeof(bs), "%s", kafka_bootstrap_servers(k));
    kafka_record_t rec = simple_record("embedded-replaced", "x");
    assert_int_equal(kafka_produce(k, &rec, 1), KAFKA_OK);
    wait_replaced(k, &sink, 1);
    assert_string_equal(sink.replaced_err, "");
    assert_string_equal(kafka_bootstrap_servers(k), bs);
    assert_int_equal(kafka_produce(k, &rec, 2), KAFKA_OK);
    assert_int_equal(kafka_flush(k, WAIT_MS), 0);
    assert_int_equal(sink.n_reports, 2);
    assert_true(sink.reports[1].opaque == 2);
    assert_int_equal(sink.reports[1].err, 0);
    kafka_free(k);
}

static void test_embedded_cluster(void **state) {
    (void)state;
    sink_t sink = {0};
    char err[512];
    kafka_opts_t opts = {.bootstrap_servers = "embedded", .on_delivery = on_delivery, .ud = &sink};
    kafka_t *k = NULL;
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), 0);
    const char *bs = kafka_bootstrap_servers(k);
    assert_true(strncmp(bs, "127.0.0.1:", 10) == 0);
    /* Three brokers. */
    int commas = 0;
    for (const char *p = bs; *p; p++)
        commas += *p == ',';
    assert_int_equal(commas, 2);
    assert_int_equal(kafka_wait_metadata(k, WAIT_MS), 0);

    /* Topics auto-create on first produce (metadata request) with the mock's
     * default partition count. */
    kafka_record_t rec = simple_record("auto-created", "hello");
    assert_int_equal(kafka_produce(k, &rec, 11), KAFKA_OK);
    assert_int_equal(kafka_flush(k, WAIT_MS), 0);
    assert_int_equal(sink.n_reports, 1);
    assert_int_equal(sink.reports[0].err, 0);

    rd_kafka_t *c = consumer_new(bs);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, "auto-created", NULL);
    assert_int_equal(rd_kafka_metadata(c, 0, rkt, &md, WAIT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(md->topic_cnt, 1);
    assert_int_equal(md->topics[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(md->topics[0].partition_cnt, 4);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(c);
    kafka_free(k);
}

static void test_embedded_bad_property(void **state) {
    (void)state;
    char err[512];
    const char *props[] = {"batch.num.messages", "-1"};
    kafka_opts_t opts = {.bootstrap_servers = "embedded", .properties = props, .n_properties = 1};
    kafka_t *k = NULL;
    assert_int_equal(kafka_new(&opts, &k, err, sizeof(err)), -1);
    assert_null(k);
    assert_string_equal(err,
                        "kafka property batch.num.messages: Configuration property "
                        "\"batch.num.messages\" value -1 is outside allowed range 1..1000000\n");
}

int main(void) {
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_produce_reads_back_exact_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_key_and_no_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_more_topics_than_the_handle_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_topic_name_fails_produce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fd_readable_when_report_waits, setup, teardown),
        cmocka_unit_test(test_check_property),
        cmocka_unit_test_setup_teardown(test_bad_property_fails_kafka_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent_properties_fail_rd_kafka_new, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_properties_applied_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_topic_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_failure_timeout_brokers_down, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_fails_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_serves_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_times_out_when_brokers_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_metadata_fails_when_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error_replaces_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error_in_flight_record_answered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error_in_flight_record_purged_after_5_s, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fatal_error_not_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_hook_malformed, setup, teardown),
        cmocka_unit_test(test_fatal_error_embedded_cluster_survives),
        cmocka_unit_test(test_embedded_cluster),
        cmocka_unit_test(test_embedded_bad_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
