/* Kafka producer: the only module that uses librdkafka.
 *
 * Threading: librdkafka runs its own threads; everything it hands back to us
 * (delivery reports, errors) goes through the main queue, which we serve with
 * rd_kafka_poll() from the caller's thread in kafka_poll(). The main queue's IO
 * event writes to a non-blocking eventfd, so an event loop can watch one fd.
 * Only the log callback runs on librdkafka's threads; it calls log_write, which
 * emits each line with a single fwrite. */
#include "kafka/producer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "util/hash.h"
#include "util/hmap.h"
#include "util/log.h"

#include "headers.h"

/* The opaque travels as the message's pointer-sized _private field. */
_Static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "kafka.c needs 64-bit pointers");

#define KAFKA_EMBEDDED "embedded"
#define KAFKA_EMBEDDED_BROKERS 3
/* How long a replaced producer's requests in flight may still be answered. */
#define KAFKA_REPLACE_INFLIGHT_MS 5000
/* The most record numbers M2K_TEST_KAFKA_FATAL_AT takes. */
#define KAFKA_TEST_FATAL_MAX 16
#define KAFKA_TEST_FATAL_ENV "M2K_TEST_KAFKA_FATAL_AT"
/* Fixed members of one produceva call: topic, key, value, opaque, flags,
 * timestamp. Headers come on top. */
#define KAFKA_VU_FIXED 6
/* One cached rd_kafka_topic_t: producing with the handle skips librdkafka's
 * per-message lookup by name (a lock, a search, a reference count). */
typedef struct {
    hmap_node_t node;
    rd_kafka_topic_t *rkt; /* its opaque is this slot (delivery reports count here) */
    uint64_t produced, delivered, failed;
    size_t len;
    char name[]; /* NUL-terminated */
} kafka_topic_slot_t;

static uint64_t kafka_topic_hash(const hmap_node_t *n);

struct kafka {
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    int efd;

    /* "embedded": the mock cluster lives on its own handle so it outlives
     * nothing it depends on and is destroyed after the producer. */
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mcluster;
    char *bootstrap;

    kafka_delivery_cb on_delivery;
    kafka_fatal_cb on_fatal;
    kafka_replaced_cb on_replaced;
    kafka_stats_cb on_stats;
    void *ud;

    /* A copy of the producer's configuration (callbacks and opaque
     * included): a replacement is built from it. */
    rd_kafka_conf_t *conf;
    /* kafka_replace_soon asked for a new producer: from then on records
     * wait (KAFKA_ERR_QUEUE_FULL). The fatal producer's queued records are
     * purged; its requests in flight keep their chance of an answer until
     * drain_deadline_ms (a record Kafka wrote is acked, not failed and sent
     * again), then are purged too; once none is owed the new producer
     * takes over. Nothing new is sent meanwhile, so an answer that comes
     * late cannot land after a client's later records. */
    bool replace_pending, draining, inflight_purged;
    int64_t drain_deadline_ms;
    /* Failed reports of the fatal producer, from its fatal error on. */
    int failed_back;

    /* M2K_TEST_KAFKA_FATAL_AT (docs/development.md): a fabricated fatal
     * error right after the records numbered here were produced. */
    uint64_t n_produced;
    uint64_t test_fatal_at[KAFKA_TEST_FATAL_MAX];
    size_t n_test_fatal, test_fatal_next;

    /* Loop thread only (error_cb and delivery reports are served there). */
    bool unreachable;
    char unreachable_why[256];

    /* Produced and whose delivery report has not been served yet. Touched only
     * on the caller's thread (produce, and reports served by poll/flush). */
    int64_t outstanding;
    bool fatal_reported;
    /* Set by kafka_free: reports served while destroying must not reach a
     * caller that is tearing itself down. */
    bool closing;

    /* The failed delivery report being served (kafka_report_record) and the
     * header views of its record, grown on demand. */
    const rd_kafka_message_t *report;
    kafka_header_t *report_hdrs;
    size_t report_hdrs_cap;

    rd_kafka_vu_t *vus; /* produceva argument array, grown on demand */
    size_t vus_cap;

    hmap_t topics; /* of kafka_topic_slot_t */
    /* The slot found last: most records go to the topic of the one before,
     * and comparing names is cheaper than the keyed hash. Slots live until
     * kafka_free. */
    kafka_topic_slot_t *last_topic;
    /* The slots in order of first use, for kafka_topic_stats; and the counts
     * of records produced by name (no slot: the cache was full). */
    kafka_topic_slot_t **slot_order;
    size_t n_slots;
    kafka_topic_stat_t unslotted;

    char errstr[512];
};

static log_level_t kafka_log_level(int syslog_level) {
    if (syslog_level <= 3)
        return LOG_ERROR;
    if (syslog_level == 4)
        return LOG_WARN;
    if (syslog_level <= 6)
        return LOG_INFO;
    return LOG_DEBUG;
}

/* Runs on librdkafka's threads. */
static void kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_level_t l = kafka_log_level(level);
    if (l > log_get_level())
        return;
    /* A broker failure is logged as FAIL and raised as an error event with the
     * same text: kafka_on_error logs it (with its error name), once. */
    if (strcmp(fac, "FAIL") == 0)
        return;
    log_write(l, "kafka: %s: [%s] %s", rd_kafka_name(rk), fac, buf);
}

/* Served by rd_kafka_poll, i.e. on the caller's thread. */
static void kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    kafka_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        kafka_set_reachable(k, false, reason);
    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        /* Transient (broker down, all brokers down, ...): librdkafka retries
         * on its own; the delivery reports carry the final verdict. */
        log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    char fatal[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
    log_error("kafka: fatal error %s: %s", rd_kafka_err2name(orig), fatal);
    if (k->fatal_reported || k->closing)
        return;
    k->fatal_reported = true;
    k->failed_back = 0;
    if (k->on_fatal != NULL)
        k->on_fatal(k->ud, fatal);
}

/* Served by rd_kafka_poll or rd_kafka_flush, i.e. on the caller's thread. */
static void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    kafka_t *k = opaque;
    k->outstanding--;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR && k->fatal_reported)
        k->failed_back++;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && k->unreachable)
        kafka_set_reachable(k, true, NULL);
    if (k->closing)
        return;
    kafka_topic_slot_t *slot = msg->rkt ? rd_kafka_topic_opaque(msg->rkt) : NULL;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        slot ? slot->delivered++ : k->unslotted.delivered++;
    else
        slot ? slot->failed++ : k->unslotted.failed++;
    if (k->on_delivery == NULL)
        return;
    /* Not rd_kafka_message_errstr: for a delivery report it returns the
     * payload, which is the record's value. */
    k->report = msg->err != RD_KAFKA_RESP_ERR_NO_ERROR ? msg : NULL;
    k->on_delivery(k->ud, (uint64_t)(uintptr_t)msg->_private, (int)msg->err,
                   rd_kafka_err2str(msg->err));
    k->report = NULL;
}

/* Served by rd_kafka_poll, i.e. on the caller's thread. */
static int kafka_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    kafka_t *k = opaque;
    (void)rk;
    if (!k->closing && k->on_stats != NULL)
        k->on_stats(k->ud, json, len);
    return 0; /* librdkafka frees json */
}

static int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                          size_t errlen) {
    char rderr[512];
    if (rd_kafka_conf_set(conf, name, value, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errlen, "kafka property %s: %s", name, rderr);
        return -1;
    }
    return 0;
}

int kafka_check_property(const char *name, const char *value, char *errbuf, size_t errlen) {
    /* A fresh conf each time, and librdkafka's message unprefixed: the caller
     * adds the file:line:col and the property name. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, errbuf, errlen);
    rd_kafka_conf_destroy(conf);
    return res == RD_KAFKA_CONF_OK ? 0 : -1;
}

static int kafka_start_embedded(kafka_t *k, char *errbuf, size_t errlen) {
    char rderr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_on_log);
    /* This handle only hosts the cluster; its own notices ("no
     * bootstrap.servers configured") would only confuse. */
    if (kafka_conf_set(conf, "client.id", "mqtt2kafka-embedded", errbuf, errlen) != 0 ||
        kafka_conf_set(conf, "log_level", "4", errbuf, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (k->mock_rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errlen, "embedded Kafka: %s", rderr);
        return -1;
    }
    k->mcluster = rd_kafka_mock_cluster_new(k->mock_rk, KAFKA_EMBEDDED_BROKERS);
    if (k->mcluster == NULL) {
        snprintf(errbuf, errlen, "embedded Kafka: cannot start the mock cluster");
        return -1;
    }
    k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mcluster));
    if (k->bootstrap == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    log_warn("embedded Kafka is librdkafka's in-memory mock cluster: for trying out only, "
             "records are not durable and vanish when mqtt2kafka exits");
    log_info("embedded Kafka (mock cluster) listening on %s; read with: kcat -b %s -C -t <topic>",
             k->bootstrap, k->bootstrap);
    return 0;
}

/* The producer's configuration as kafka_new and kafka_check build it: ours
 * first, so that the user's properties, applied after, win. NULL with a
 * message in errbuf. */
static rd_kafka_conf_t *kafka_conf_build(const char *bootstrap, bool stats,
                                         const kafka_opts_t *opts, char *errbuf, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", bootstrap, errbuf, errlen) != 0 ||
        kafka_conf_set(conf, "client.id", "mqtt2kafka", errbuf, errlen) != 0)
        goto fail;
    if (stats && kafka_conf_set(conf, "statistics.interval.ms", KAFKA_STATS_INTERVAL_MS_DEFAULT,
                                errbuf, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < opts->n_properties; i++) {
        const char *name = opts->properties[2 * i];
        if (kafka_conf_set(conf, name, opts->properties[2 * i + 1], errbuf, errlen) != 0)
            goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void kafka_on_log_discard(const rd_kafka_t *rk, int level, const char *fac,
                                 const char *buf) {
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

int kafka_check(const kafka_opts_t *opts, char *errbuf, size_t errlen) {
    /* No bootstrap servers: rd_kafka_new checks the configuration as a whole
     * (acks against idempotence, SASL settings...) and connects to nothing. */
    rd_kafka_conf_t *conf = kafka_conf_build("", opts->on_stats != NULL, opts, errbuf, errlen);
    if (conf == NULL)
        return -1;
    rd_kafka_conf_set_log_cb(conf, kafka_on_log_discard); /* "no bootstrap.servers" */
    char rderr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errlen, "kafka producer: %s", rderr);
        return -1;
    }
    rd_kafka_destroy(rk);
    return 0;
}

/* M2K_TEST_KAFKA_FATAL_AT=N[,N...]: a test hook, read as the producer is
 * made (docs/development.md). 0, or -1 with errbuf for a malformed value. */
static int kafka_test_hook(kafka_t *k, char *errbuf, size_t errlen) {
    const char *v = getenv(KAFKA_TEST_FATAL_ENV);
    if (v == NULL || *v == '\0')
        return 0;
    const char *p = v;
    uint64_t last = 0;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(p, &end, 10);
        if (end == p || errno != 0 || n <= last || k->n_test_fatal == KAFKA_TEST_FATAL_MAX ||
            (*end != ',' && *end != '\0')) {
            snprintf(errbuf, errlen,
                     "%s=%s: want up to %d increasing record numbers, comma-separated",
                     KAFKA_TEST_FATAL_ENV, v, KAFKA_TEST_FATAL_MAX);
            return -1;
        }
        k->test_fatal_at[k->n_test_fatal++] = last = n;
        p = *end ? end + 1 : end;
    }
    log_warn("%s=%s: a test hook; fabricated fatal producer errors will come", KAFKA_TEST_FATAL_ENV,
             v);
    return 0;
}

int kafka_new(const kafka_opts_t *opts, kafka_t **out, char *errbuf, size_t errlen) {
    char rderr[512];
    rd_kafka_conf_t *conf = NULL;
    kafka_t *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    hmap_init(&k->topics, kafka_topic_hash, 16);
    k->efd = -1;
    k->on_delivery = opts->on_delivery;
    k->on_fatal = opts->on_fatal;
    k->on_replaced = opts->on_replaced;
    k->on_stats = opts->on_stats;
    k->ud = opts->ud;

    const char *bootstrap = opts->bootstrap_servers != NULL ? opts->bootstrap_servers : "";
    if (strcmp(bootstrap, KAFKA_EMBEDDED) == 0) {
        if (kafka_start_embedded(k, errbuf, errlen) != 0)
            goto fail;
    } else {
        k->bootstrap = strdup(bootstrap);
        if (k->bootstrap == NULL) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
    }

    conf = kafka_conf_build(k->bootstrap, k->on_stats != NULL, opts, errbuf, errlen);
    if (conf == NULL)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_on_delivery);
    rd_kafka_conf_set_error_cb(conf, kafka_on_error);
    rd_kafka_conf_set_log_cb(conf, kafka_on_log);
    if (k->on_stats != NULL)
        rd_kafka_conf_set_stats_cb(conf, kafka_on_stats);
    rd_kafka_conf_set_opaque(conf, k);
    k->conf = rd_kafka_conf_dup(conf);
    if (kafka_test_hook(k, errbuf, errlen) != 0)
        goto fail;

    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (k->rk == NULL) {
        snprintf(errbuf, errlen, "kafka producer: %s", rderr);
        goto fail;
    }
    conf = NULL; /* owned by k->rk now */

    k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->efd < 0) {
        snprintf(errbuf, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    /* An eventfd takes 8-byte writes; librdkafka writes this payload when
     * an event lands on the empty main queue. */
    static const uint64_t one = 1;
    k->mainq = rd_kafka_queue_get_main(k->rk);
    rd_kafka_queue_io_event_enable(k->mainq, k->efd, &one, sizeof(one));
    *out = k;
    return 0;

fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    kafka_free(k);
    return -1;
}

static void kafka_topic_slot_free(hmap_node_t *n, void *ud) {
    kafka_topic_slot_t *e = HMAP_ENTRY(n, kafka_topic_slot_t, node);
    if (e->rkt != NULL)
        rd_kafka_topic_destroy(e->rkt);
    free(e);
}

static void kafka_topics_free(kafka_t *k) {
    hmap_each(&k->topics, kafka_topic_slot_free, NULL);
    hmap_free(&k->topics);
    k->last_topic = NULL;
    free(k->slot_order);
    k->slot_order = NULL;
    k->n_slots = 0;
}

void kafka_free(kafka_t *k) {
    if (k == NULL)
        return;
    k->closing = true;
    kafka_topics_free(k);
    if (k->rk != NULL) {
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        if (k->mainq != NULL) {
            rd_kafka_queue_io_event_enable(k->mainq, -1, NULL, 0);
            rd_kafka_queue_destroy(k->mainq);
        }
        rd_kafka_destroy(k->rk);
    }
    if (k->efd >= 0)
        close(k->efd);
    if (k->mcluster != NULL)
        rd_kafka_mock_cluster_destroy(k->mcluster);
    if (k->mock_rk != NULL)
        rd_kafka_destroy(k->mock_rk);
    if (k->conf != NULL)
        rd_kafka_conf_destroy(k->conf);
    free(k->bootstrap);
    free(k->vus);
    free(k->report_hdrs);
    free(k);
}

int kafka_event_fd(const kafka_t *k) {
    return k->efd;
}

static int64_t kafka_now_ms(void);

static int kafka_serve(kafka_t *k) {
    int total = 0, n;
    while ((n = rd_kafka_poll(k->rk, 0)) > 0)
        total += n;
    return total;
}

/* The fatal producer is drained (every report served): a new one from the
 * same configuration (a new producer id) takes its place in this kafka_t,
 * with the same event fd; the topic slots (and their counts) get handles
 * of the new one. */
static void kafka_swap(kafka_t *k) {
    char rderr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(k->conf);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    k->replace_pending = k->draining = false;
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        if (k->on_replaced != NULL)
            k->on_replaced(k->ud, k->failed_back, rderr);
        return;
    }
    for (size_t i = 0; i < k->n_slots; i++) {
        kafka_topic_slot_t *e = k->slot_order[i];
        if (e->rkt != NULL)
            rd_kafka_topic_destroy(e->rkt);
        rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(rk);
        if (tc != NULL)
            rd_kafka_topic_conf_set_opaque(tc, e);
        e->rkt = tc ? rd_kafka_topic_new(rk, e->name, tc) : NULL; /* NULL: by name */
    }
    rd_kafka_queue_io_event_enable(k->mainq, -1, NULL, 0);
    rd_kafka_queue_destroy(k->mainq);
    rd_kafka_destroy(k->rk);
    static const uint64_t one = 1;
    k->rk = rk;
    k->mainq = rd_kafka_queue_get_main(rk);
    rd_kafka_queue_io_event_enable(k->mainq, k->efd, &one, sizeof(one));
    k->fatal_reported = false;
    if (k->on_replaced != NULL)
        k->on_replaced(k->ud, k->failed_back, NULL);
}

/* One step of a replacement, outside librdkafka's callbacks: start the
 * drain, purge what is still in flight past the deadline, swap once none
 * is owed. */
static int kafka_replace_step(kafka_t *k) {
    int total = 0;
    if (!k->draining) {
        k->draining = true;
        k->inflight_purged = false;
        k->drain_deadline_ms = kafka_now_ms() + KAFKA_REPLACE_INFLIGHT_MS;
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE);
        total += kafka_serve(k);
    }
    if (k->outstanding > 0 && !k->inflight_purged && kafka_now_ms() >= k->drain_deadline_ms) {
        k->inflight_purged = true;
        log_warn("kafka: %" PRId64 " records in flight in the fatal producer not answered within "
                 "%d ms; purged",
                 k->outstanding, KAFKA_REPLACE_INFLIGHT_MS);
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        total += kafka_serve(k);
    }
    if (k->outstanding <= 0)
        kafka_swap(k);
    return total;
}

int kafka_poll(kafka_t *k) {
    /* Drain first: an event enqueued after this read writes the fd again,
     * because serving the queue re-arms librdkafka's IO trigger. */
    uint64_t v;
    while (read(k->efd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
    }
    int total = kafka_serve(k);
    if (k->replace_pending && !k->closing)
        total += kafka_replace_step(k);
    return total;
}

void kafka_replace_soon(kafka_t *k) {
    k->replace_pending = true;
}

static int kafka_reserve_vus(kafka_t *k, size_t n) {
    if (n <= k->vus_cap)
        return 0;
    size_t cap = k->vus_cap ? k->vus_cap : 16;
    while (cap < n)
        cap *= 2;
    rd_kafka_vu_t *vus = realloc(k->vus, cap * sizeof(*vus));
    if (vus == NULL)
        return -1;
    k->vus = vus;
    k->vus_cap = cap;
    return 0;
}

static uint64_t kafka_topic_hash(const hmap_node_t *n) {
    const kafka_topic_slot_t *e = HMAP_ENTRY(n, kafka_topic_slot_t, node);
    return m2k_hash_keyed(e->name, e->len);
}

/* The cached slot of `topic`, created on first use; NULL when the cache is
 * full or librdkafka refuses the name (the caller then produces by name, which
 * reports the error the usual way). */
static kafka_topic_slot_t *kafka_topic_get(kafka_t *k, const char *topic) {
    size_t len = strlen(topic);
    kafka_topic_slot_t *last = k->last_topic;
    if (last != NULL && last->len == len && memcmp(last->name, topic, len) == 0)
        return last;
    uint64_t h = m2k_hash_keyed(topic, len);
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, &k->topics, h) {
        kafka_topic_slot_t *e = HMAP_ENTRY(n, kafka_topic_slot_t, node);
        if (e->len == len && memcmp(e->name, topic, len) == 0) {
            k->last_topic = e;
            return e;
        }
    }
    if (k->topics.n >= KAFKA_TOPIC_CACHE_MAX)
        return NULL;
    if (k->slot_order == NULL) {
        k->slot_order = malloc(KAFKA_TOPIC_CACHE_MAX * sizeof(*k->slot_order));
        if (k->slot_order == NULL)
            return NULL;
    }
    kafka_topic_slot_t *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->name, topic, len + 1);
    e->len = len;
    /* The slot as the topic's opaque: a delivery report names its rkt, so it
     * is counted without a lookup by name. A copy of the producer's default
     * topic configuration, which holds the topic-level properties
     * (acks, partitioner, message.timeout.ms, ...); a new one would not. */
    rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(k->rk);
    if (tc != NULL)
        rd_kafka_topic_conf_set_opaque(tc, e);
    e->rkt = tc ? rd_kafka_topic_new(k->rk, topic, tc) : NULL; /* takes tc */
    if (e->rkt == NULL || rd_kafka_topic_opaque(e->rkt) != e ||
        hmap_insert(&k->topics, &e->node, h) != 0) {
        if (e->rkt != NULL)
            rd_kafka_topic_destroy(e->rkt);
        free(e);
        return NULL;
    }
    k->slot_order[k->n_slots++] = e;
    k->last_topic = e;
    return e;
}

size_t kafka_topic_stats(const kafka_t *k, kafka_topic_stat_t *out, size_t max,
                         kafka_topic_stat_t *rest) {
    *rest = k->unslotted;
    rest->topic = NULL;
    size_t n = 0;
    for (size_t i = 0; i < k->n_slots; i++) {
        const kafka_topic_slot_t *e = k->slot_order[i];
        kafka_topic_stat_t *t = n < max ? &out[n++] : rest;
        if (t != rest)
            *t = (kafka_topic_stat_t){e->name, 0, 0, 0};
        t->produced += e->produced;
        t->delivered += e->delivered;
        t->failed += e->failed;
    }
    return n;
}

int kafka_produce(kafka_t *k, const kafka_record_t *rec, uint64_t opaque) {
    if (k->replace_pending) {
        snprintf(k->errstr, sizeof(k->errstr), "the producer is being replaced");
        return KAFKA_ERR_QUEUE_FULL;
    }
    if (kafka_reserve_vus(k, KAFKA_VU_FIXED + rec->n_headers) != 0) {
        snprintf(k->errstr, sizeof(k->errstr), "out of memory");
        return KAFKA_ERR_PRODUCE;
    }
    rd_kafka_vu_t *vu = k->vus;
    size_t n = 0;
    kafka_topic_slot_t *slot = kafka_topic_get(k, rec->topic);
    if (slot != NULL && slot->rkt != NULL) {
        vu[n].vtype = RD_KAFKA_VTYPE_RKT;
        vu[n++].u.rkt = slot->rkt;
    } else {
        vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vu[n++].u.cstr = rec->topic;
    }
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    if (rec->key != NULL) {
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *)rec->key;
        vu[n++].u.mem.size = rec->key_len;
    }
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *)rec->value;
    vu[n++].u.mem.size = rec->value_len;
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = (void *)(uintptr_t)opaque;
    if (rec->timestamp_ms != 0) {
        vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
        vu[n++].u.i64 = rec->timestamp_ms;
    }
    /* One headers list of ours (VTYPE_HEADERS), not VTYPE_HEADER per header:
     * librdkafka 2.0.2's rd_kafka_produceva frees a list it built from
     * VTYPE_HEADER twice when the partitioner refuses the record (a topic
     * whose metadata carries an error, such as a Kafka ACL's
     * TOPIC_AUTHORIZATION_FAILED; librdkafka issue 4627). A list of ours is
     * librdkafka's once the call succeeds and stays ours when it fails. */
    rd_kafka_headers_t *hdrs = NULL;
    if (rec->n_headers > 0) {
        hdrs = rd_kafka_headers_new(rec->n_headers);
        for (size_t i = 0; i < rec->n_headers; i++)
            rd_kafka_header_add(hdrs, rec->headers[i].name, -1, rec->headers[i].value,
                                (ssize_t)rec->headers[i].len);
        vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
        vu[n++].u.headers = hdrs;
    }

    rd_kafka_error_t *error = rd_kafka_produceva(k->rk, vu, n);
    if (error == NULL) {
        k->outstanding++;
        slot ? slot->produced++ : k->unslotted.produced++;
        k->n_produced++;
        if (k->test_fatal_next < k->n_test_fatal &&
            k->n_produced == k->test_fatal_at[k->test_fatal_next]) {
            k->test_fatal_next++;
            rd_kafka_test_fatal_error(k->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                      KAFKA_TEST_FATAL_ENV);
        }
        return KAFKA_OK;
    }
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    rd_kafka_resp_err_t err = rd_kafka_error_code(error);
    snprintf(k->errstr, sizeof(k->errstr), "%s", rd_kafka_error_string(error));
    int fatal = rd_kafka_error_is_fatal(error) || err == RD_KAFKA_RESP_ERR__FATAL;
    rd_kafka_error_destroy(error);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return KAFKA_ERR_QUEUE_FULL;
    if (fatal)
        return KAFKA_ERR_FATAL;
    return KAFKA_ERR_PRODUCE;
}

const char *kafka_last_error(const kafka_t *k) {
    return k->errstr;
}

static int64_t kafka_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kafka_wait_metadata(kafka_t *k, int timeout_ms) {
    int64_t deadline = kafka_now_ms() + timeout_ms;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = deadline - kafka_now_ms();
        /* Brokers only (no topics): proves the cluster answers. librdkafka
         * gives up early while no broker is connected, so retry until the
         * deadline: brokers may be starting along with us. */
        rd_kafka_resp_err_t err = rd_kafka_metadata(k->rk, 0, NULL, &md, left > 0 ? (int)left : 0);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
            return 0;
        }
        snprintf(k->errstr, sizeof(k->errstr), "metadata: %s", rd_kafka_err2str(err));
        left = deadline - kafka_now_ms();
        if (left <= 0)
            return -1;
        struct timespec pause = {0, (left < 100 ? left : 100) * 1000000L};
        nanosleep(&pause, NULL);
    }
}

int kafka_outq_len(const kafka_t *k) {
    return (int)k->outstanding;
}

int kafka_flush(kafka_t *k, int timeout_ms) {
    /* rd_kafka_flush serves the delivery reports through our callback on
     * this thread; ignore its verdict and count what we still owe. */
    (void)rd_kafka_flush(k->rk, timeout_ms);
    /* flush may stop once the queue is empty while reports still wait. */
    kafka_poll(k);
    return (int)k->outstanding;
}

int kafka_purge(kafka_t *k) {
    int n = (int)k->outstanding;
    rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    return n;
}

bool kafka_reachable(const kafka_t *k, char *why, size_t cap) {
    if (k->unreachable && why != NULL && cap > 0)
        snprintf(why, cap, "%s", k->unreachable_why);
    return !k->unreachable;
}

void kafka_set_reachable(kafka_t *k, bool up, const char *why) {
    if (up == !k->unreachable)
        return;
    k->unreachable = !up;
    if (up) {
        log_info("kafka: reachable again (%s)", k->bootstrap);
    } else {
        snprintf(k->unreachable_why, sizeof(k->unreachable_why), "%s",
                 why != NULL ? why : "unreachable");
        log_warn("kafka: unreachable: %s", k->unreachable_why);
    }
}

int kafka_report_record(kafka_t *k, kafka_record_t *out, bool *maybe_written) {
    const rd_kafka_message_t *m = k->report;
    if (m == NULL || m->rkt == NULL)
        return -1;
    size_t n;
    ssize_t got = kafka_headers_view(m, &k->report_hdrs, &k->report_hdrs_cap, &n);
    if (got < 0 || (size_t)got != n)
        return -1;
    *out = (kafka_record_t){.topic = rd_kafka_topic_name(m->rkt),
                            .key = m->key,
                            .key_len = m->key_len,
                            .value = m->payload,
                            .value_len = m->len,
                            .headers = n ? k->report_hdrs : NULL,
                            .n_headers = n,
                            .timestamp_ms = rd_kafka_message_timestamp(m, NULL)};
    if (out->timestamp_ms < 0)
        out->timestamp_ms = 0;
    if (maybe_written)
        *maybe_written = rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
    return 0;
}

const char *kafka_bootstrap_servers(const kafka_t *k) {
    return k->bootstrap;
}
