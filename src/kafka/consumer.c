/* Kafka consumer for the downlink (consumer.h).
 *
 * librdkafka's simple (legacy) consumer: one fetch per partition started with
 * rd_kafka_consume_start_queue, all into one queue, so there is no consumer
 * group, no rebalance and no commit: every instance reads every partition.
 * The queue's IO event writes a non-blocking eventfd for the event loop, and
 * the main queue (errors, logs) is forwarded into it, so one fd and one poll
 * on the loop thread serve everything, as for the producer.
 *
 * Partitions are found by a thread of ours that asks for metadata every
 * refresh_ms (rd_kafka_metadata blocks: it must not run on the loop thread)
 * and starts the partitions it has not started yet: at the end for what
 * exists at the first answer, at the beginning for partitions and topics
 * that appear later (everything in them is new) and for the from_beginning
 * topic. An offset out of range (the consumer fell behind the retention)
 * stops the partition's fetch (auto.offset.reset=error); the loop thread
 * logs it, counts it and restarts the partition at its earliest offset. */
#include "kafka/consumer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "util/log.h"

#include "headers.h"

/* The metadata thread's requests block (they cannot be cancelled), and
 * kafka_consumer_free joins the thread: a stop while Kafka does not answer
 * waits up to this long. */
#define REQUEST_TIMEOUT_MS 2000

typedef struct {
    char *name;
    rd_kafka_topic_t *rkt;
    bool beginning;
    int32_t n_parts; /* partitions started (0..n_parts-1) */
    int64_t *next;   /* per partition: the offset after the last record handed on, -1 */
} ctopic_t;

struct kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int efd;
    ctopic_t *t;
    size_t n;
    kafka_message_cb on_message;
    void *ud;
    uint32_t refresh_ms;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* n_parts, next[], the counts below the line */
    pthread_cond_t cond;
    bool stop;
    bool initial_done; /* a metadata answer arrived: later partitions start at the beginning */
    uint32_t partitions, topics_found;

    /* loop thread only */
    kafka_header_t *hv;
    size_t hcap;
    uint64_t consumed, out_of_range, errors;
    log_ratelimit_t rl_err;
};

static log_level_t level_of(int syslog_level) {
    return syslog_level <= 3 ? LOG_ERROR : syslog_level <= 4 ? LOG_WARN : LOG_DEBUG;
}

/* librdkafka's threads; log_write is safe from any thread. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    /* The producer's properties (kafka.properties, our defaults) are
     * shared with the consumer, which ignores them: not worth a warning. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "producer property"))
        return;
    log_write(level_of(level), "kafka consumer: %s: %s", fac, buf);
}

/* Served from kafka_consumer_poll (the main queue is forwarded). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    kafka_consumer_t *c = opaque;
    c->errors++;
    log_ratelimited(&c->rl_err, LOG_WARN, "kafka consumer: %s: %s",
                    rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf,
                    size_t errlen) {
    char rderr[512];
    if (rd_kafka_conf_set(conf, name, value, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errlen, "kafka consumer: %s", rderr);
        return -1;
    }
    return 0;
}

/* Starts partitions [t->n_parts, count) of t at from[p - t->n_parts];
 * called with c->lock held. */
static void start_partitions(kafka_consumer_t *c, ctopic_t *t, int32_t count, const int64_t *from) {
    /* The handle is made once the topic exists: a handle asks for the
     * topic's metadata, which a broker that auto-creates topics obeys. */
    if (!t->rkt && !(t->rkt = rd_kafka_topic_new(c->rk, t->name, NULL))) {
        log_error("kafka consumer: topic %s: %s", t->name, rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    int64_t *next = realloc(t->next, (size_t)count * sizeof(*next));
    if (!next) {
        log_error("kafka consumer: out of memory for the partitions of %s", t->name);
        return;
    }
    t->next = next;
    if (t->n_parts == 0)
        c->topics_found++;
    for (int32_t p = t->n_parts; p < count; p++) {
        t->next[p] = -1;
        if (rd_kafka_consume_start_queue(t->rkt, p, from[p - t->n_parts], c->q) != 0) {
            log_error("kafka consumer: cannot start %s [%" PRId32 "]: %s", t->name, p,
                      rd_kafka_err2str(rd_kafka_last_error()));
            count = p;
            break;
        }
        c->partitions++;
    }
    if (count > t->n_parts)
        log_info("kafka consumer: reading %s partitions %" PRId32 "..%" PRId32 " from the %s",
                 t->name, t->n_parts, count - 1,
                 from[0] == RD_KAFKA_OFFSET_BEGINNING ? "beginning" : "end");
    t->n_parts = count;
}

static void refresh(kafka_consumer_t *c) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 1, NULL, &md, REQUEST_TIMEOUT_MS);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_debug("kafka consumer: metadata: %s", rd_kafka_err2str(err));
        return;
    }
    /* This thread is the only one that changes n_parts and initial_done:
     * reading them unlocked is safe here, and the watermark queries (which
     * block) hold no lock. */
    for (size_t i = 0; i < c->n; i++) {
        ctopic_t *t = &c->t[i];
        for (int k = 0; k < md->topic_cnt; k++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[k];
            if (mt->err != RD_KAFKA_RESP_ERR_NO_ERROR || strcmp(mt->topic, t->name) != 0 ||
                mt->partition_cnt <= t->n_parts)
                continue;
            int64_t *from = calloc((size_t)(mt->partition_cnt - t->n_parts), sizeof(*from));
            if (!from)
                continue;
            for (int32_t p = t->n_parts; p < mt->partition_cnt; p++) {
                int64_t lo, hi;
                /* "The end" as the offset asked for now, so that a record
                 * produced after the "reading" line is read (librdkafka's
                 * logical END is resolved later, once its fetcher runs). */
                from[p - t->n_parts] = RD_KAFKA_OFFSET_BEGINNING;
                if (t->beginning || c->initial_done)
                    continue;
                from[p - t->n_parts] = rd_kafka_query_watermark_offsets(c->rk, t->name, p, &lo, &hi,
                                                                        REQUEST_TIMEOUT_MS) == 0
                                           ? hi
                                           : RD_KAFKA_OFFSET_END;
            }
            pthread_mutex_lock(&c->lock);
            start_partitions(c, t, mt->partition_cnt, from);
            pthread_mutex_unlock(&c->lock);
            free(from);
        }
    }
    pthread_mutex_lock(&c->lock);
    c->initial_done = true;
    pthread_mutex_unlock(&c->lock);
    rd_kafka_metadata_destroy(md);
}

static void *refresh_main(void *arg) {
    kafka_consumer_t *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        pthread_mutex_unlock(&c->lock);
        refresh(c);
        pthread_mutex_lock(&c->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += c->refresh_ms / 1000;
        ts.tv_nsec += (long)(c->refresh_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int topic_add(kafka_consumer_t *c, const char *name, bool beginning, char *errbuf,
                     size_t errlen) {
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->t[i].name, name) == 0) {
            c->t[i].beginning |= beginning;
            return 0;
        }
    }
    ctopic_t *t = &c->t[c->n];
    if (!(t->name = strdup(name))) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    t->beginning = beginning;
    c->n++;
    return 0;
}

int kafka_consumer_new(const kafka_consumer_opts_t *o, kafka_consumer_t **out, char *errbuf,
                       size_t errlen) {
    kafka_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rderr[512];
    if (!c) {
        snprintf(errbuf, errlen, "out of memory");
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    c->efd = -1;
    c->on_message = o->on_message;
    c->ud = o->ud;
    c->refresh_ms = o->refresh_ms ? o->refresh_ms : 5000;
    c->rl_err = (log_ratelimit_t)LOG_RATELIMIT_INIT("kafka consumer error", 10, 10000);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    /* Ours, then the user's (kafka.properties: security, tuning), then what
     * this consumer's design needs. */
    static const char *const ours[] = {"client.id",
                                       "mqtt2kafka-downlink",
                                       "fetch.wait.max.ms",
                                       KAFKA_CONSUMER_FETCH_WAIT_MS,
                                       "fetch.error.backoff.ms",
                                       "100",
                                       "queued.max.messages.kbytes",
                                       "8192",
                                       "socket.nagle.disable",
                                       "true",
                                       NULL};
    for (const char *const *p = ours; *p; p += 2)
        if (conf_set(conf, p[0], p[1], errbuf, errlen) != 0)
            goto fail;
    for (size_t i = 0; i < o->n_properties; i++)
        if (conf_set(conf, o->properties[2 * i], o->properties[2 * i + 1], errbuf, errlen) != 0)
            goto fail;
    if (conf_set(conf, "bootstrap.servers", o->bootstrap_servers, errbuf, errlen) != 0 ||
        conf_set(conf, "enable.partition.eof", "false", errbuf, errlen) != 0 ||
        conf_set(conf, "auto.offset.reset", "error", errbuf, errlen) != 0)
        goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, c);
    if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr)))) {
        snprintf(errbuf, errlen, "kafka consumer: %s", rderr);
        goto fail;
    }
    conf = NULL;
    c->q = rd_kafka_queue_new(c->rk);
    rd_kafka_queue_t *mainq = rd_kafka_queue_get_main(c->rk);
    rd_kafka_queue_forward(mainq, c->q);
    rd_kafka_queue_destroy(mainq);
    if ((c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(errbuf, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(c->q, c->efd, &one, sizeof(one));
    if (!(c->t = calloc(o->n_topics + 1, sizeof(*c->t)))) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->n_topics; i++)
        if (topic_add(c, o->topics[i], false, errbuf, errlen) != 0)
            goto fail;
    if (o->from_beginning && topic_add(c, o->from_beginning, true, errbuf, errlen) != 0)
        goto fail;
    if (pthread_create(&c->thread, NULL, refresh_main, c) != 0) {
        snprintf(errbuf, errlen, "kafka consumer: cannot start its metadata thread");
        goto fail;
    }
    c->thread_started = true;
    *out = c;
    return 0;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    kafka_consumer_free(c);
    return -1;
}

void kafka_consumer_free(kafka_consumer_t *c) {
    if (!c)
        return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    for (size_t i = 0; i < c->n; i++) {
        for (int32_t p = 0; p < c->t[i].n_parts; p++)
            rd_kafka_consume_stop(c->t[i].rkt, p);
        if (c->t[i].rkt)
            rd_kafka_topic_destroy(c->t[i].rkt);
        free(c->t[i].name);
        free(c->t[i].next);
    }
    free(c->t);
    if (c->q) {
        rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
        rd_kafka_queue_destroy(c->q);
    }
    if (c->rk)
        rd_kafka_destroy(c->rk);
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->hv);
    free(c);
}

int kafka_consumer_event_fd(const kafka_consumer_t *c) {
    return c->efd;
}

static ctopic_t *topic_of(kafka_consumer_t *c, const rd_kafka_message_t *m) {
    if (!m->rkt)
        return NULL;
    const char *name = rd_kafka_topic_name(m->rkt);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0)
            return &c->t[i];
    return NULL;
}

static void on_consume_error(kafka_consumer_t *c, const rd_kafka_message_t *m) {
    ctopic_t *t = topic_of(c, m);
    if (t && (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
              m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)) {
        c->out_of_range++;
        log_warn("kafka consumer: %s [%" PRId32 "]: offset out of range (behind Kafka's "
                 "retention); resuming at the earliest offset",
                 t->name, m->partition);
        rd_kafka_consume_stop(t->rkt, m->partition);
        if (rd_kafka_consume_start_queue(t->rkt, m->partition, RD_KAFKA_OFFSET_BEGINNING, c->q) !=
            0)
            log_error("kafka consumer: cannot restart %s [%" PRId32 "]: %s", t->name, m->partition,
                      rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    c->errors++;
    log_ratelimited(&c->rl_err, LOG_WARN, "kafka consumer: %s [%" PRId32 "]: %s", t ? t->name : "-",
                    m->partition, rd_kafka_message_errstr(m));
}

static void on_record(kafka_consumer_t *c, const rd_kafka_message_t *m) {
    ctopic_t *t = topic_of(c, m);
    size_t count; /* a header that cannot be read ends the list */
    ssize_t nh = kafka_headers_view(m, &c->hv, &c->hcap, &count);
    if (nh < 0) {
        c->errors++;
        log_ratelimited(&c->rl_err, LOG_ERROR, "kafka consumer: out of memory for %zu headers",
                        count);
        return;
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    kafka_message_t km = {
        .topic = rd_kafka_topic_name(m->rkt),
        .partition = m->partition,
        .offset = m->offset,
        .timestamp_ms = tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->payload,
        .value_len = m->len,
        .headers = c->hv,
        .n_headers = (size_t)nh,
    };
    if (t) {
        pthread_mutex_lock(&c->lock);
        if (m->partition >= 0 && m->partition < t->n_parts)
            t->next[m->partition] = m->offset + 1;
        pthread_mutex_unlock(&c->lock);
    }
    c->consumed++;
    c->on_message(c->ud, &km);
}

int kafka_consumer_poll(kafka_consumer_t *c, int max) {
    uint64_t v;
    while (read(c->efd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
    }
    int n = 0;
    rd_kafka_message_t *m;
    while (n < max && (m = rd_kafka_consume_queue(c->q, 0)) != NULL) {
        if (m->err)
            on_consume_error(c, m);
        else
            on_record(c, m);
        rd_kafka_message_destroy(m);
        n++;
    }
    if (n == max && max > 0) {
        /* More may wait: the IO event fires only on an empty queue. */
        static const uint64_t one = 1;
        ssize_t w = write(c->efd, &one, sizeof(one));
        (void)w;
    }
    return n;
}

void kafka_consumer_stats(kafka_consumer_t *c, kafka_consumer_stats_t *st) {
    memset(st, 0, sizeof(*st));
    st->consumed = c->consumed;
    st->out_of_range = c->out_of_range;
    st->errors = c->errors;
    pthread_mutex_lock(&c->lock);
    st->partitions = c->partitions;
    st->topics_found = c->topics_found;
    st->assigned = c->initial_done;
    for (size_t i = 0; i < c->n; i++) {
        for (int32_t p = 0; p < c->t[i].n_parts; p++) {
            int64_t lo, hi;
            if (c->t[i].next[p] >= 0 &&
                rd_kafka_get_watermark_offsets(c->rk, c->t[i].name, p, &lo, &hi) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR &&
                hi > c->t[i].next[p])
                st->lag += hi - c->t[i].next[p];
        }
    }
    pthread_mutex_unlock(&c->lock);
}
