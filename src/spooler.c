/* The spooler of `spool: {mode: always}` (spooler.h): sessions -> spool ->
 * group commit -> acks; spool reader -> producer -> confirm. */
#include "spooler.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

struct spooler {
    spool_t *sp;
    spooler_opts_t o;
    /* The opaques of the records appended since the last sync, in order,
     * and the array they are completed from (swapped: a completion may
     * produce again). */
    uint64_t *pending, *completing;
    size_t n_pending, cap_pending, cap_completing;
    /* The feed's window: the sequence numbers handed to the producer, in
     * order (a ring), with their state. */
    uint64_t seq[SPOOLER_WINDOW];
    uint8_t state[SPOOLER_WINDOW]; /* WAITING, DELIVERED, FAILED */
    size_t head, n, n_waiting;
    uint64_t confirm_to; /* every record <= this one reached Kafka */
    bool confirm_due, rewind, stopping;
    /* Scratch for the conversions: header arrays and NUL-terminated names. */
    spool_header_t *sh;
    size_t cap_sh;
    kafka_header_t *kh;
    size_t cap_kh;
    char *names;
    size_t cap_names;
    spooler_stats_t st;
};

enum { WAITING = 0, DELIVERED = 1, FAILED = 2 };

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

spooler_t *spooler_new(const spooler_opts_t *o) {
    spooler_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->sp = o->spool;
    f->o = *o;
    spool_stats_t ss;
    spool_stats(f->sp, &ss);
    f->confirm_to = ss.confirmed_seq;
    return f;
}

void spooler_free(spooler_t *f) {
    if (!f)
        return;
    free(f->pending);
    free(f->completing);
    free(f->sh);
    free(f->kh);
    free(f->names);
    free(f);
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int spooler_produce(spooler_t *f, const kafka_record_t *rec, uint64_t opaque) {
    if (f->stopping)
        return KAFKA_ERR_QUEUE_FULL;
    if (grow((void **)&f->pending, &f->cap_pending, f->n_pending + 1, sizeof(uint64_t)) != 0 ||
        grow((void **)&f->sh, &f->cap_sh, rec->n_headers, sizeof(spool_header_t)) != 0) {
        log_error("spool: out of memory");
        return KAFKA_ERR_PRODUCE;
    }
    for (size_t i = 0; i < rec->n_headers; i++)
        f->sh[i] = (spool_header_t){rec->headers[i].name, strlen(rec->headers[i].name),
                                    rec->headers[i].value, rec->headers[i].len};
    spool_record_t r = {
        .topic = rec->topic,
        .topic_len = strlen(rec->topic),
        .key = rec->key,
        .key_len = rec->key_len,
        .value = rec->value,
        .value_len = rec->value_len,
        .headers = rec->n_headers ? f->sh : NULL,
        .n_headers = rec->n_headers,
        .timestamp_ms = rec->timestamp_ms ? rec->timestamp_ms : wall_ms(),
    };
    uint64_t seq;
    int rc = spool_append(f->sp, &r, &seq);
    if (rc == SPOOL_FULL) {
        if (!f->st.full)
            log_warn("spool: full (max_bytes or the disk): publishers pause");
        f->st.full = true;
        f->st.refused_full++;
        return KAFKA_ERR_QUEUE_FULL;
    }
    if (rc != 0) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool append", 10, 10000);
        log_ratelimited(&rl, LOG_ERROR, "spool: appending a record for topic %s failed: %s",
                        rec->topic, spool_strerror(rc));
        return KAFKA_ERR_PRODUCE;
    }
    if (f->st.full)
        log_info("spool: taking records again");
    f->st.full = false;
    f->pending[f->n_pending++] = opaque;
    return KAFKA_OK;
}

bool spooler_pending(const spooler_t *f) {
    return f->n_pending > 0;
}

/* The group commit: one sync for the turn's records, then their completions. */
static void sync_and_complete(spooler_t *f) {
    uint64_t synced;
    int rc = spool_sync(f->sp, &synced);
    uint64_t *done = f->pending;
    size_t n = f->n_pending, cap = f->cap_pending;
    f->pending = f->completing;
    f->cap_pending = f->cap_completing;
    f->completing = done;
    f->cap_completing = cap;
    f->n_pending = 0;
    if (rc != 0) {
        f->st.sync_failures++;
        log_error("spool: sync failed (%s): %zu records not acknowledged", spool_strerror(rc), n);
    } else {
        f->st.spooled += n;
    }
    for (size_t i = 0; i < n; i++)
        f->o.complete(f->o.complete_ud, done[i], rc == 0 ? 0 : -1,
                      rc == 0 ? NULL : "the spool could not make the record durable");
}

static void confirm(spooler_t *f) {
    if (!f->confirm_due)
        return;
    int rc = spool_confirm(f->sp, f->confirm_to);
    /* On a failed checkpoint the confirmation still counts; the next call
     * writes it again. */
    f->confirm_due = rc != 0;
    if (rc != 0) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool checkpoint", 10, 10000);
        log_ratelimited(&rl, LOG_WARN, "spool: writing the checkpoint failed: %s (retried)",
                        spool_strerror(rc));
    }
}

/* A spool record as a Kafka record: the topic and header names need NULs. */
static int to_kafka(spooler_t *f, const spool_record_t *r, kafka_record_t *out) {
    size_t need = r->topic_len + 1;
    for (size_t i = 0; i < r->n_headers; i++)
        need += r->headers[i].name_len + 1;
    if (grow((void **)&f->names, &f->cap_names, need, 1) != 0 ||
        grow((void **)&f->kh, &f->cap_kh, r->n_headers, sizeof(kafka_header_t)) != 0)
        return -1;
    char *p = f->names;
    memcpy(p, r->topic, r->topic_len);
    p[r->topic_len] = '\0';
    *out = (kafka_record_t){.topic = p,
                            .key = r->key,
                            .key_len = r->key_len,
                            .value = r->value,
                            .value_len = r->value_len,
                            .headers = r->n_headers ? f->kh : NULL,
                            .n_headers = r->n_headers,
                            .timestamp_ms = r->timestamp_ms};
    p += r->topic_len + 1;
    for (size_t i = 0; i < r->n_headers; i++) {
        memcpy(p, r->headers[i].name, r->headers[i].name_len);
        p[r->headers[i].name_len] = '\0';
        f->kh[i] = (kafka_header_t){p, r->headers[i].value, r->headers[i].value_len};
        p += r->headers[i].name_len + 1;
    }
    return 0;
}

/* Feeds the producer from the reader, in order, up to the window. */
static void feed(spooler_t *f) {
    while (f->n < SPOOLER_WINDOW) {
        spool_record_t r;
        uint64_t seq;
        int rc = spool_peek(f->sp, &r, &seq);
        if (rc == SPOOL_EMPTY)
            return;
        kafka_record_t kr;
        if (rc == 0 && to_kafka(f, &r, &kr) != 0)
            rc = SPOOL_ENOMEM;
        if (rc != 0) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool read", 10, 10000);
            log_ratelimited(&rl, LOG_ERROR, "spool: reading the next record failed: %s (retried)",
                            spool_strerror(rc));
            return;
        }
        int kr_rc = f->o.produce(f->o.produce_ud, &kr, seq);
        if (kr_rc == KAFKA_ERR_QUEUE_FULL)
            return;
        if (kr_rc != KAFKA_OK) {
            static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool produce", 10, 10000);
            log_ratelimited(&rl, LOG_ERROR,
                            "spool: producing record %" PRIu64 " to topic %s failed (retried)", seq,
                            kr.topic);
            return;
        }
        size_t at = (f->head + f->n) % SPOOLER_WINDOW;
        f->seq[at] = seq;
        f->state[at] = WAITING;
        f->n++;
        f->n_waiting++;
        spool_next(f->sp);
    }
}

void spooler_turn(spooler_t *f) {
    if (f->n_pending)
        sync_and_complete(f);
    if (f->rewind && f->n_waiting == 0) {
        /* Every record handed out has its report: confirm the delivered
         * prefix and read again from the first record not confirmed. */
        confirm(f);
        spool_rewind(f->sp);
        f->n = 0;
        f->rewind = false;
        f->st.rewinds++;
        log_info("spool: the feed to Kafka starts again after record %" PRIu64, f->confirm_to);
    }
    if (!f->stopping && !f->rewind)
        feed(f);
    confirm(f);
}

void spooler_on_delivery(spooler_t *f, uint64_t opaque, int err, const char *errstr) {
    /* The window holds increasing sequence numbers: a binary search. */
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->seq[(f->head + mid) % SPOOLER_WINDOW] < opaque)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t at = (f->head + lo) % SPOOLER_WINDOW;
    if (lo == f->n || f->seq[at] != opaque || f->state[at] != WAITING)
        return;
    f->n_waiting--;
    if (err == 0) {
        f->state[at] = DELIVERED;
    } else {
        f->state[at] = FAILED;
        f->st.failed++;
        if (!f->rewind && !f->stopping) /* at shutdown: the purge of what is left */
            log_warn("spool: Kafka did not take record %" PRIu64 " (%s); the feed starts again "
                     "from the first record not confirmed once the records in flight are back",
                     opaque, errstr ? errstr : "?");
        f->rewind = true;
    }
    while (f->n > 0 && f->state[f->head] == DELIVERED) {
        f->confirm_to = f->seq[f->head];
        f->confirm_due = true;
        f->st.drained++;
        f->head = (f->head + 1) % SPOOLER_WINDOW;
        f->n--;
    }
}

void spooler_stop(spooler_t *f) {
    if (f->n_pending)
        sync_and_complete(f);
    confirm(f);
    f->stopping = true;
}

const spooler_stats_t *spooler_stats(const spooler_t *f) {
    return &f->st;
}
