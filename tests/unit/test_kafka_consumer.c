/* kafka/consumer.c against librdkafka's in-process mock cluster: partitions
 * read from the end, the from-beginning topic, a topic created later, exact
 * records (key, value, headers, offsets) on the caller's thread through the
 * event fd, offset out of range resumed at the earliest offset, and the
 * produce -> callback latency (printed, not asserted). */
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

#include "kafka/consumer.h"

#define WAIT_MS 15000
#define APIKEY_FETCH 1

typedef struct {
    char topic[32];
    int32_t partition;
    int64_t offset;
    char key[32];
    int has_key;
    char value[64];
    char headers[128]; /* "name=value;" */
    int64_t at_us;
} rec_t;

typedef struct {
    rd_kafka_t *mock_rk, *prod;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    kafka_consumer_t *c;
    rec_t recs[256];
    int n;
} fixture_t;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_message(void *ud, const kafka_message_t *m) {
    fixture_t *f = ud;
    assert_true(f->n < 256);
    rec_t *r = &f->recs[f->n++];
    snprintf(r->topic, sizeof(r->topic), "%s", m->topic);
    r->partition = m->partition;
    r->offset = m->offset;
    r->has_key = m->key != NULL;
    snprintf(r->key, sizeof(r->key), "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
    snprintf(r->value, sizeof(r->value), "%.*s", (int)m->value_len, (const char *)m->value);
    size_t o = 0;
    r->headers[0] = '\0';
    for (size_t i = 0; i < m->n_headers; i++)
        o +=
            (size_t)snprintf(r->headers + o, sizeof(r->headers) - o, "%s=%.*s;", m->headers[i].name,
                             (int)m->headers[i].len, (const char *)m->headers[i].value);
    r->at_us = now_us();
}

static void produce(fixture_t *f, const char *topic, int32_t partition, const char *key,
                    const char *value, const char *hname, const char *hval) {
    rd_kafka_resp_err_t err;
    if (hname)
        err = rd_kafka_producev(f->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_HEADER(hname, hval, (ssize_t)strlen(hval)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(f->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(f->prod, WAIT_MS), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Serves the consumer as the daemon does until pred holds; fails after WAIT_MS. */
static void serve_until(fixture_t *f, int (*pred)(fixture_t *, int), int arg) {
    int64_t deadline = now_us() + WAIT_MS * 1000LL;
    while (!pred(f, arg)) {
        if (now_us() > deadline)
            fail_msg("timed out (%d records so far)", f->n);
        struct pollfd pfd = {.fd = kafka_consumer_event_fd(f->c), .events = POLLIN};
        (void)poll(&pfd, 1, 20);
        kafka_consumer_poll(f->c, 100);
    }
}

static int have_records(fixture_t *f, int n) {
    return f->n >= n;
}

static int have_partitions(fixture_t *f, int n) {
    kafka_consumer_stats_t st;
    kafka_consumer_stats(f->c, &st);
    return (int)st.partitions >= n;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)), RD_KAFKA_CONF_OK);
    f->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    f->mc = rd_kafka_mock_cluster_new(f->mock_rk, 1);
    assert_non_null(f->mc);
    f->bootstrap = rd_kafka_mock_cluster_bootstraps(f->mc);
    conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof(err)), RD_KAFKA_CONF_OK);
    f->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(f->prod);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "cmd", 2, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "ret", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    kafka_consumer_free(f->c);
    rd_kafka_destroy(f->prod);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->mock_rk);
    free(f);
    return 0;
}

static void start(fixture_t *f) {
    static const char *const topics[] = {"cmd", "late"};
    static const char *const props[] = {"linger.ms", "5"}; /* a producer property: ignored */
    kafka_consumer_opts_t o = {.bootstrap_servers = f->bootstrap,
                               .properties = props,
                               .n_properties = 1,
                               .topics = topics,
                               .n_topics = 2,
                               .from_beginning = "ret",
                               .refresh_ms = 100,
                               .on_message = on_message,
                               .ud = f};
    char err[512];
    if (kafka_consumer_new(&o, &f->c, err, sizeof(err)) != 0)
        fail_msg("kafka_consumer_new: %s", err);
}

static void test_consume(void **state) {
    fixture_t *f = *state;
    /* Before the start: "cmd" is not read back, "ret" is. */
    produce(f, "cmd", 0, "old", "before", NULL, NULL);
    produce(f, "ret", 0, "a/b", "kept", NULL, NULL);
    produce(f, "ret", 0, "a/c", "", NULL, NULL);
    start(f);
    serve_until(f, have_partitions, 3);
    serve_until(f, have_records, 2);
    assert_string_equal(f->recs[0].topic, "ret");
    assert_string_equal(f->recs[0].key, "a/b");
    assert_string_equal(f->recs[0].value, "kept");
    assert_int_equal(f->recs[0].offset, 0);
    assert_string_equal(f->recs[1].key, "a/c");
    assert_string_equal(f->recs[1].value, "");
    assert_int_equal(f->recs[1].offset, 1);

    /* One at a time: Kafka orders records within a partition only. */
    produce(f, "cmd", 1, "bulb-7", "on", "mqtt.qos", "2");
    serve_until(f, have_records, 3);
    produce(f, "cmd", 0, NULL, "off", NULL, NULL);
    serve_until(f, have_records, 4);
    assert_string_equal(f->recs[2].topic, "cmd");
    assert_int_equal(f->recs[2].partition, 1);
    assert_int_equal(f->recs[2].offset, 0);
    assert_string_equal(f->recs[2].key, "bulb-7");
    assert_string_equal(f->recs[2].value, "on");
    assert_string_equal(f->recs[2].headers, "mqtt.qos=2;");
    assert_int_equal(f->recs[3].partition, 0);
    assert_int_equal(f->recs[3].offset, 1); /* offset 0 was before the start */
    assert_false(f->recs[3].has_key);
    assert_string_equal(f->recs[3].value, "off");

    /* A topic created after the start is read from its beginning. */
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, "late", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    produce(f, "late", 0, "k", "first", NULL, NULL);
    serve_until(f, have_records, 5);
    assert_string_equal(f->recs[4].topic, "late");
    assert_string_equal(f->recs[4].value, "first");
    assert_int_equal(f->recs[4].offset, 0);

    kafka_consumer_stats_t st;
    kafka_consumer_stats(f->c, &st);
    assert_int_equal(st.consumed, 5);
    assert_int_equal(st.partitions, 4);
    assert_int_equal(st.topics_found, 3);
    assert_int_equal(st.out_of_range, 0);
    assert_true(st.assigned);
    assert_int_equal(f->n, 5);
}

static int have_out_of_range(fixture_t *f, int n) {
    kafka_consumer_stats_t st;
    kafka_consumer_stats(f->c, &st);
    return (int)st.out_of_range >= n;
}

static void test_out_of_range_resumes_at_earliest(void **state) {
    fixture_t *f = *state;
    start(f);
    serve_until(f, have_partitions, 3);
    produce(f, "ret", 0, "t", "r0", NULL, NULL);
    serve_until(f, have_records, 1);
    /* The next fetch answers "offset out of range" for every partition in it. */
    rd_kafka_mock_push_request_errors(f->mc, APIKEY_FETCH, 1,
                                      RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
    serve_until(f, have_out_of_range, 1);
    produce(f, "ret", 0, "t", "r1", NULL, NULL);
    /* "ret" is read again from offset 0 if it was in that fetch; r1 in any case. */
    int64_t deadline = now_us() + WAIT_MS * 1000LL;
    int seen_r1 = 0;
    while (!seen_r1) {
        serve_until(f, have_records, f->n + 1);
        seen_r1 = strcmp(f->recs[f->n - 1].value, "r1") == 0;
        assert_true(now_us() < deadline);
    }
    kafka_consumer_stats_t st;
    kafka_consumer_stats(f->c, &st);
    assert_true(st.out_of_range >= 1);
    assert_int_equal(st.lag, 0);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Produce -> on_message latency through the mock cluster; printed. */
static void test_latency(void **state) {
    fixture_t *f = *state;
    start(f);
    serve_until(f, have_partitions, 3);
    /* One record first: the producer's and the fetchers' first round trips. */
    produce(f, "cmd", 0, NULL, "warm-up", NULL, NULL);
    serve_until(f, have_records, 1);
    enum { N = 20 };
    int64_t lat[N];
    for (int i = 0; i < N; i++) {
        /* Idle first, so the consumer sits in a long poll as in production. */
        int64_t idle = now_us() + 150000;
        while (now_us() < idle) {
            struct pollfd pfd = {.fd = kafka_consumer_event_fd(f->c), .events = POLLIN};
            (void)poll(&pfd, 1, 10);
            kafka_consumer_poll(f->c, 100);
        }
        int64_t t0 = now_us();
        assert_int_equal(
            rd_kafka_producev(f->prod, RD_KAFKA_V_TOPIC("cmd"), RD_KAFKA_V_PARTITION(i % 2),
                              RD_KAFKA_V_VALUE((void *)"x", 1),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(f->prod, 0);
        serve_until(f, have_records, i + 2);
        lat[i] = f->recs[i + 1].at_us - t0;
    }
    qsort(lat, N, sizeof(lat[0]), cmp_i64);
    printf("produce -> callback latency over %d records (mock cluster, fetch.wait.max.ms=%s): "
           "median %.1f ms, max %.1f ms\n",
           N, KAFKA_CONSUMER_FETCH_WAIT_MS, (double)lat[N / 2] / 1000, (double)lat[N - 1] / 1000);
}

/* Before any metadata answer the consumer reads nothing and says so
 * (the daemon's /readyz reason). Port 1 on loopback: nothing listens. */
static void test_not_assigned_without_metadata(void **state) {
    (void)state;
    fixture_t f = {.bootstrap = "127.0.0.1:1"};
    start(&f);
    kafka_consumer_stats_t st;
    kafka_consumer_stats(f.c, &st);
    assert_false(st.assigned);
    assert_int_equal(st.partitions, 0);
    assert_int_equal(kafka_consumer_poll(f.c, 10), 0);
    kafka_consumer_free(f.c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_resumes_at_earliest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
        cmocka_unit_test(test_not_assigned_without_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
