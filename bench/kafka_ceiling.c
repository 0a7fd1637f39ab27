/* kafka_ceiling: the Kafka-side ceiling for `make bench`. A plain librdkafka
 * producer sends the records mqtt2kafka would send for an mqtt-bench run
 * (same topic, keys, value size, timestamp, optionally the same mqtt.*
 * headers, same producer properties) as fast as librdkafka takes them, and
 * reports the rate at which Kafka confirmed them. Whatever the proxy does on
 * top (MQTT, routing, acks) can only be slower than this.
 *
 *   kafka_ceiling -b BOOTSTRAP [-t TOPIC] [-s BYTES] [-k KEYS] [-d SECONDS]
 *                 [-r RATE] [--headers] [-X name=value]... [--json]
 *   kafka_ceiling --smoke
 *
 * Keys are "<topic>/<i>" for i in 0..KEYS-1 in turn, like mqtt-bench's topic
 * bench/%d rendered by the proxy's default key "{topic}". The default
 * properties are mqtt2kafka's own defaults (enable.idempotence=true,
 * acks=all, linger.ms=5, partitioner=murmur2_random); -X adds or overrides. The rate is records
 * confirmed divided by the time from the first produce to the end of the final flush. With -r RATE
 * it produces at that rate instead and reports the latency from produce to delivery report (what
 * the proxy adds to it is the MQTT side). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_PROPS 32

typedef struct {
    const char *bootstrap;
    const char *topic;
    size_t payload;
    unsigned keys;
    double duration;
    double rate;
    bool headers;
    bool json;
    const char *props[2 * MAX_PROPS];
    size_t n_props;
} opts_t;

typedef struct {
    uint64_t delivered, failed;
    rd_kafka_resp_err_t first_err;
    float *lat_us; /* rate mode: produce-to-report latency of each record */
    size_t n_lat, cap_lat;
} counts_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    counts_t *c = opaque;
    (void)rk;
    if (c->lat_us && c->n_lat < c->cap_lat && msg->_private) {
        double sent = (double)(uintptr_t)msg->_private / 1e6;
        c->lat_us[c->n_lat++] = (float)((now_s() - sent) * 1e6);
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->delivered++;
    } else {
        if (c->failed++ == 0)
            c->first_err = msg->err;
    }
}

static int add_prop(opts_t *o, const char *name, const char *value) {
    for (size_t i = 0; i < o->n_props; i++) {
        if (strcmp(o->props[2 * i], name) == 0) {
            o->props[2 * i + 1] = value;
            return 0;
        }
    }
    if (o->n_props == MAX_PROPS)
        return -1;
    o->props[2 * o->n_props] = name;
    o->props[2 * o->n_props + 1] = value;
    o->n_props++;
    return 0;
}

/* Produces for o->duration seconds, flushes, prints the report. Returns 0 when
 * every record was confirmed. */
static int run(const opts_t *o, uint64_t *delivered_out) {
    char err[512];
    counts_t counts = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) != 0 ||
        rd_kafka_conf_set(conf, "client.id", "kafka-ceiling", err, sizeof(err)) != 0) {
        fprintf(stderr, "kafka_ceiling: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    for (size_t i = 0; i < o->n_props; i++) {
        if (rd_kafka_conf_set(conf, o->props[2 * i], o->props[2 * i + 1], err, sizeof(err)) != 0) {
            fprintf(stderr, "kafka_ceiling: %s: %s\n", o->props[2 * i], err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &counts);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "kafka_ceiling: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    char *value = malloc(o->payload ? o->payload : 1);
    char(*keys)[128] = calloc(o->keys, sizeof(*keys));
    size_t *key_lens = calloc(o->keys, sizeof(*key_lens));
    int rc = -1;
    if (!rkt || !value || !keys || !key_lens) {
        fprintf(stderr, "kafka_ceiling: out of memory\n");
        goto out;
    }
    memset(value, 'x', o->payload);
    for (unsigned i = 0; i < o->keys; i++)
        key_lens[i] = (size_t)snprintf(keys[i], sizeof(keys[i]), "%s/%u", o->topic, i);

    /* Warm up: metadata and the producer id before the clock starts. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);

    if (o->rate > 0) {
        counts.cap_lat = (size_t)(o->rate * o->duration) + 1000;
        counts.lat_us = malloc(counts.cap_lat * sizeof(float));
        if (!counts.lat_us) {
            fprintf(stderr, "kafka_ceiling: out of memory\n");
            goto out;
        }
    }
    double t0 = now_s(), c0 = cpu_s(), end = t0 + o->duration;
    uint64_t sent = 0;
    unsigned k = 0;
    for (double t = t0; t < end; t = now_s()) {
        int quota = 1000;
        if (o->rate > 0) {
            double due = (t - t0) * o->rate - (double)sent;
            quota = due < 1 ? 0 : due > 1000 ? 1000 : (int)due;
            if (quota == 0) {
                rd_kafka_poll(rk, 0);
                struct timespec pause = {0, 100000};
                nanosleep(&pause, NULL);
                continue;
            }
        }
        for (int batch = 0; batch < quota; batch++) {
            void *op = o->rate > 0 ? (void *)(uintptr_t)(now_s() * 1e6) : NULL;
            rd_kafka_resp_err_t e;
            if (o->headers) {
                e = rd_kafka_producev(
                    rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(keys[k], key_lens[k]), RD_KAFKA_V_VALUE(value, o->payload),
                    RD_KAFKA_V_TIMESTAMP(wall_ms()),
                    RD_KAFKA_V_HEADER("mqtt.topic", keys[k], (ssize_t)key_lens[k]),
                    RD_KAFKA_V_HEADER("mqtt.client_id", "mqtt-bench-0", 12),
                    RD_KAFKA_V_HEADER("mqtt.qos", "1", 1), RD_KAFKA_V_OPAQUE(op), RD_KAFKA_V_END);
            } else {
                e = rd_kafka_producev(
                    rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(keys[k], key_lens[k]), RD_KAFKA_V_VALUE(value, o->payload),
                    RD_KAFKA_V_TIMESTAMP(wall_ms()), RD_KAFKA_V_OPAQUE(op), RD_KAFKA_V_END);
            }
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(rk, 1);
                continue;
            }
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "kafka_ceiling: produce: %s\n", rd_kafka_err2str(e));
                goto out;
            }
            sent++;
            if (++k == o->keys)
                k = 0;
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    double t1 = now_s(), c1 = cpu_s();
    double secs = t1 - t0;
    uint64_t missing = sent - counts.delivered - counts.failed;
    double rate = secs > 0 ? (double)counts.delivered / secs : 0;
    double cpu_us = counts.delivered ? (c1 - c0) * 1e6 / (double)counts.delivered : 0;
    double p50 = 0, p99 = 0;
    if (counts.n_lat) {
        qsort(counts.lat_us, counts.n_lat, sizeof(float), cmp_float);
        p50 = counts.lat_us[counts.n_lat / 2];
        p99 = counts.lat_us[(size_t)((double)counts.n_lat * 0.99)];
    }
    if (o->json)
        printf("{\"tool\":\"kafka_ceiling\",\"topic\":\"%s\",\"payload_bytes\":%zu,\"keys\":%u,"
               "\"headers\":%s,\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"unconfirmed\":%" PRIu64 ",\"seconds\":%.6f,\"msgs_per_s\":%.1f,"
               "\"cpu_us_per_msg\":%.3f,\"rate\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
               o->topic, o->payload, o->keys, o->headers ? "true" : "false", sent, counts.delivered,
               counts.failed, missing, secs, rate, cpu_us, o->rate, p50, p99);
    else
        printf("kafka_ceiling: %" PRIu64 " sent, %" PRIu64 " confirmed, %" PRIu64
               " failed, %" PRIu64
               " unconfirmed in %.3f s: %.0f msgs/s, %.3f us CPU/msg, latency p50 %.0f us, "
               "p99 %.0f us\n",
               sent, counts.delivered, counts.failed, missing, secs, rate, cpu_us, p50, p99);
    if (counts.failed)
        fprintf(stderr, "kafka_ceiling: first failure: %s\n", rd_kafka_err2str(counts.first_err));
    if (delivered_out)
        *delivered_out = counts.delivered;
    rc = (counts.failed || missing) ? -1 : 0;
out:
    free(counts.lat_us);
    free(value);
    free(keys);
    free(key_lens);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* ~1 s against an in-process mock cluster of 3 brokers. */
static int smoke(opts_t *o) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!mrk) {
        fprintf(stderr, "kafka_ceiling --smoke: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mrk, 3);
    if (!mc) {
        fprintf(stderr, "kafka_ceiling --smoke: no mock cluster\n");
        rd_kafka_destroy(mrk);
        return 1;
    }
    o->bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    o->duration = 0.3;
    uint64_t delivered = 0;
    int rc = run(o, &delivered);
    o->rate = 10000;
    uint64_t delivered_r = 0;
    if (rc == 0)
        rc = run(o, &delivered_r);
    o->rate = 0;
    o->headers = true;
    uint64_t delivered_h = 0;
    if (rc == 0)
        rc = run(o, &delivered_h);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mrk);
    if (rc != 0 || delivered == 0 || delivered_h == 0 || delivered_r == 0) {
        fprintf(stderr, "kafka_ceiling --smoke: FAILED\n");
        return 1;
    }
    printf("kafka_ceiling --smoke: OK\n");
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: kafka_ceiling -b BOOTSTRAP [options] | --smoke\n"
               "  -b, --bootstrap ADDRS   Kafka bootstrap servers\n"
               "  -t, --topic NAME        topic (ceiling); keys are NAME/<i>\n"
               "  -s, --payload BYTES     value size (100)\n"
               "  -k, --keys N            distinct keys, used in turn (10)\n"
               "  -d, --duration SECONDS  producing time (5)\n"
               "  -r, --rate MSGS         produce at this rate, report latency (0 = max)\n"
               "      --headers           add mqtt.topic, mqtt.client_id, mqtt.qos headers\n"
               "  -X NAME=VALUE           producer property (after the defaults\n"
               "                          enable.idempotence=true acks=all linger.ms=5\n"
               "                          partitioner=murmur2_random)\n"
               "      --json              one JSON object on stdout\n"
               "      --smoke             ~1 s self-check against an in-process mock cluster\n");
}

int main(int argc, char **argv) {
    opts_t o = {.topic = "ceiling", .payload = 100, .keys = 10, .duration = 5};
    add_prop(&o, "enable.idempotence", "true");
    add_prop(&o, "acks", "all");
    add_prop(&o, "linger.ms", "5");
    add_prop(&o, "partitioner", "murmur2_random");
    bool smoke_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "--smoke") || !strcmp(a, "--self-test")) {
            smoke_mode = true;
            takes = false;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
            takes = false;
        } else if (!strcmp(a, "--headers")) {
            o.headers = true;
            takes = false;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--bootstrap")) {
            o.bootstrap = v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--topic")) {
            o.topic = v;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--payload")) {
            o.payload = strtoul(v, NULL, 10);
        } else if (!strcmp(a, "-k") || !strcmp(a, "--keys")) {
            o.keys = (unsigned)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "-r") || !strcmp(a, "--rate")) {
            o.rate = strtod(v, NULL);
        } else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) {
            o.duration = strtod(v, NULL);
        } else if (!strcmp(a, "-X")) {
            char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                fprintf(stderr, "kafka_ceiling: -X wants name=value, got %s\n", v);
                return 2;
            }
            *eq = '\0';
            if (add_prop(&o, v, eq + 1) != 0) {
                fprintf(stderr, "kafka_ceiling: too many -X properties\n");
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
        if (takes)
            i++;
    }
    if (o.keys == 0 || o.payload > 100 * 1024 * 1024 || o.duration <= 0) {
        fprintf(stderr, "kafka_ceiling: bad --keys, --payload or --duration\n");
        return 2;
    }
    if (smoke_mode)
        return smoke(&o);
    if (!o.bootstrap) {
        usage(stderr);
        return 2;
    }
    return run(&o, NULL) == 0 ? 0 : 1;
}
