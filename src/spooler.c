/* The spooler (spooler.h): sessions -> spool -> group commit -> acks; spool
 * reader -> producer -> confirm; with `mode: outage`, sessions -> producer
 * while Kafka takes records, and the switches between the two. */
#include "spooler.h"
#include "spooler_ckpt.h"
#include "spooler_task.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

struct spooler {
    spool_t *sp;
    spooler_opts_t o;
    spooler_outage_t out;
    bool outage;
    /* The opaques of the records appended since the last sync, in order,
     * and the array they are completed from (swapped: a completion may
     * produce again). */
    uint64_t *pending, *completing;
    size_t n_pending, cap_pending, n_completing, cap_completing;
    /* The sync on the worker, when there is one (spooler_set_worker). */
    spooler_work_fn work;
    void *work_ud;
    spooler_durable_fn durable; /* spooler_set_durable */
    spooler_task_t *inflight;   /* the sync on the worker */
    spool_sync_job_t *sync_job;
    bool freeing;
    /* The feed's window: the sequence numbers handed to the producer, in
     * order (a ring), with their state. */
    uint64_t seq[SPOOLER_WINDOW];
    uint8_t state[SPOOLER_WINDOW];  /* WAITING, DELIVERED, FAILED */
    uint32_t bytes[SPOOLER_WINDOW]; /* each record's topic, key, value, headers */
    size_t head, n, n_waiting;
    uint64_t window_bytes; /* the sum of bytes[] over the window */
    uint64_t confirm_to;   /* every record <= this one reached Kafka */
    bool confirm_due;      /* confirm_to moved since the spool was told */
    bool rewind, stopping;
    spooler_ckpt_t *ckpt; /* the checkpoint's writes (spooler_ckpt.c) */
    /* Scratch for the conversions: header arrays and NUL-terminated names. */
    spool_header_t *sh;
    size_t cap_sh;
    kafka_header_t *kh;
    size_t cap_kh;
    char *names;
    size_t cap_names;
    spooler_stats_t st;
    /* mode outage: the records produced directly, by counter (a ring of
     * ring_cap, a power of two, from d_head, the oldest without a report,
     * to d_next). */
    struct direct {
        uint64_t opaque, t_ms;
        bool done;
    } * ring;
    size_t ring_cap;
    uint64_t d_head, d_next, d_waiting;
    /* Records taken back (failed or purged reports, and records that came
     * while the purge's reports were still due), appended in counter order
     * once every direct record has its report. */
    struct kept {
        uint64_t n, opaque;
        kafka_record_t rec; /* views into blob */
        void *blob;
    } * kept;
    size_t n_kept, cap_kept;
    bool taking_back;
    char switch_why[256]; /* a retriable delivery error asks the next turn to switch */
    uint64_t outage_start, outage_done_ms, rate_t, rate_drained;
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

static uint64_t now_ms(spooler_t *f) {
    if (f->out.now_ms)
        return f->out.now_ms(f->o.produce_ud);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

spooler_t *spooler_new(const spooler_opts_t *o) {
    spooler_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->sp = o->spool;
    f->o = *o;
    if (!(f->ckpt = spooler_ckpt_new(f->sp))) {
        free(f);
        return NULL;
    }
    spool_stats_t ss;
    spool_stats(f->sp, &ss);
    f->confirm_to = ss.confirmed_seq;
    f->st.state = SPOOLER_SPOOLING;
    f->outage_start = f->rate_t = now_ms(f);
    return f;
}

void spooler_set_outage(spooler_t *f, const spooler_outage_t *o) {
    f->out = *o;
    f->outage = true;
    spool_stats_t ss;
    spool_stats(f->sp, &ss);
    if (ss.records == 0)
        f->st.state = SPOOLER_DIRECT;
    f->outage_start = f->rate_t = now_ms(f);
}

static void confirm(spooler_t *f, bool force);

void spooler_free(spooler_t *f) {
    if (!f)
        return;
    f->freeing = true; /* a sync in flight is published, its group not completed */
    if (f->inflight)
        spooler_task_wait(f->inflight);
    confirm(f, true); /* what Kafka confirmed after spooler_stop */
    spooler_ckpt_free(f->ckpt);
    free(f->pending);
    free(f->completing);
    free(f->sh);
    free(f->kh);
    free(f->names);
    for (size_t i = 0; i < f->n_kept; i++)
        free(f->kept[i].blob);
    free(f->kept);
    free(f->ring);
    free(f);
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends a record to the spool; its completion comes after the turn's sync. */
static int append(spooler_t *f, const kafka_record_t *rec, uint64_t opaque) {
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
        return KAFKA_ERR_SPOOL_FULL;
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

/* ---- mode outage: records produced directly and taken back -------------- */

static struct direct *direct_at(spooler_t *f, uint64_t n) {
    return &f->ring[n & (f->ring_cap - 1)];
}

/* Room for one more direct record in the ring. */
static int ring_reserve(spooler_t *f) {
    if (f->d_next - f->d_head < f->ring_cap)
        return 0;
    size_t cap = f->ring_cap ? f->ring_cap * 2 : 1024;
    struct direct *r = malloc(cap * sizeof(*r));
    if (!r)
        return -1;
    for (uint64_t n = f->d_head; n < f->d_next; n++)
        r[n & (cap - 1)] = *direct_at(f, n);
    free(f->ring);
    f->ring = r;
    f->ring_cap = cap;
    return 0;
}

/* A copy of a record (in one allocation) to append later. */
static int keep(spooler_t *f, uint64_t n, uint64_t opaque, const kafka_record_t *rec) {
    if (grow((void **)&f->kept, &f->cap_kept, f->n_kept + 1, sizeof(*f->kept)) != 0)
        return -1;
    size_t tlen = strlen(rec->topic) + 1,
           size = rec->n_headers * sizeof(kafka_header_t) + tlen + rec->key_len + rec->value_len;
    for (size_t i = 0; i < rec->n_headers; i++)
        size += strlen(rec->headers[i].name) + 1 + rec->headers[i].len;
    char *blob = malloc(size ? size : 1);
    if (!blob)
        return -1;
    kafka_header_t *h = (kafka_header_t *)blob;
    char *p = blob + rec->n_headers * sizeof(kafka_header_t);
    struct kept *k = &f->kept[f->n_kept++];
    *k = (struct kept){n, opaque, *rec, blob};
#define COPY(dst, src, len)                                                                        \
    do {                                                                                           \
        if (len)                                                                                   \
            memcpy(p, src, len);                                                                   \
        dst = p;                                                                                   \
        p += len;                                                                                  \
    } while (0)
    COPY(k->rec.topic, rec->topic, tlen);
    if (rec->key)
        COPY(k->rec.key, rec->key, rec->key_len);
    COPY(k->rec.value, rec->value, rec->value_len);
    for (size_t i = 0; i < rec->n_headers; i++) {
        COPY(h[i].name, rec->headers[i].name, strlen(rec->headers[i].name) + 1);
        COPY(h[i].value, rec->headers[i].value, rec->headers[i].len);
        h[i].len = rec->headers[i].len;
    }
#undef COPY
    k->rec.headers = rec->n_headers ? h : NULL;
    return 0;
}

static void advance(spooler_t *f) {
    while (f->d_head < f->d_next && direct_at(f, f->d_head)->done)
        f->d_head++;
}

static int by_counter(const void *a, const void *b) {
    uint64_t x = ((const struct kept *)a)->n, y = ((const struct kept *)b)->n;
    return x < y ? -1 : x > y;
}

/* Every direct record has its report: the kept records go to the spool in
 * the order they were produced, ahead of every record produced after them. */
static void append_kept(spooler_t *f) {
    if (f->n_kept > 1)
        qsort(f->kept, f->n_kept, sizeof(*f->kept), by_counter);
    for (size_t i = 0; i < f->n_kept; i++) {
        struct kept *k = &f->kept[i];
        if (append(f, &k->rec, k->opaque) != KAFKA_OK)
            f->o.complete(f->o.complete_ud, k->opaque, -1,
                          "neither Kafka nor the spool could take the record");
        free(k->blob);
    }
    f->n_kept = 0;
    f->taking_back = false;
}

static int produce_direct(spooler_t *f, const kafka_record_t *rec, uint64_t opaque) {
    if (ring_reserve(f) != 0) {
        log_error("spool: out of memory");
        return KAFKA_ERR_PRODUCE;
    }
    int rc = f->o.produce(f->o.produce_ud, rec, SPOOLER_DIRECT_BIT | f->d_next);
    if (rc == KAFKA_OK) {
        *direct_at(f, f->d_next++) = (struct direct){opaque, now_ms(f), false};
        f->d_waiting++;
    }
    return rc;
}

static void direct_report(spooler_t *f, uint64_t n, int err, const char *errstr,
                          const spooler_report_t *r) {
    if (n < f->d_head || n >= f->d_next || direct_at(f, n)->done)
        return;
    struct direct *e = direct_at(f, n);
    e->done = true;
    f->d_waiting--;
    uint64_t opaque = e->opaque;
    advance(f);
    if (err != 0 && !f->stopping && r && r->rec && r->retriable &&
        keep(f, n, opaque, r->rec) == 0) {
        f->st.taken_back++;
        f->st.maybe_twice += r->maybe_written;
        if (f->st.state == SPOOLER_DIRECT && !f->switch_why[0])
            snprintf(f->switch_why, sizeof(f->switch_why), "a record failed: %s",
                     errstr ? errstr : "?");
        f->taking_back = true;
        return;
    }
    f->st.direct += err == 0;
    f->o.complete(f->o.complete_ud, opaque, err, errstr);
}

/* DIRECT -> SPOOLING: take back what the producer holds; its reports come
 * back (direct_report) before the purge returns. */
static void go_spooling(spooler_t *f, uint64_t now, const char *why) {
    uint64_t held = f->d_waiting;
    f->st.state = SPOOLER_SPOOLING;
    f->st.outages++;
    f->outage_start = now;
    f->taking_back = true;
    if (held && f->out.purge)
        f->out.purge(f->o.produce_ud);
    log_warn("spool: Kafka cannot take records (%s): switching to the spool, records are "
             "acknowledged once fsync'ed; %zu records taken back from the producer",
             why, f->n_kept);
    f->switch_why[0] = '\0';
}

static void check_switch(spooler_t *f, uint64_t now) {
    char why[300];
    char down[256] = "";
    if (f->switch_why[0]) {
        snprintf(why, sizeof(why), "%s", f->switch_why);
    } else if (f->out.reachable && !f->out.reachable(f->o.produce_ud, down, sizeof(down))) {
        snprintf(why, sizeof(why), "Kafka unreachable: %s", down);
    } else if (f->d_head < f->d_next &&
               now - direct_at(f, f->d_head)->t_ms >= f->out.outage_after_ms) {
        snprintf(why, sizeof(why), "a record waited %" PRIu64 " ms for its delivery report",
                 now - direct_at(f, f->d_head)->t_ms);
    } else {
        return;
    }
    go_spooling(f, now, why);
}

/* SPOOLING <-> DRAINING by reachability; DRAINING -> DIRECT once the spool
 * is empty and every record fed from it is confirmed. */
static void update_state(spooler_t *f, uint64_t now) {
    if (!f->outage || f->st.state == SPOOLER_DIRECT || f->taking_back)
        return;
    char down[256] = "";
    bool up = !f->out.reachable || f->out.reachable(f->o.produce_ud, down, sizeof(down));
    spool_stats_t ss;
    spool_stats(f->sp, &ss);
    int next = up ? SPOOLER_DRAINING : SPOOLER_SPOOLING;
    if (up && f->outage && !f->stopping && f->n_pending == 0 && f->n == 0 && !f->rewind &&
        ss.records == 0)
        next = SPOOLER_DIRECT;
    if (next == f->st.state)
        return;
    if (next == SPOOLER_DRAINING)
        log_info("spool: Kafka reachable: draining %" PRIu64 " records from the spool, new "
                 "records queue behind them",
                 ss.records);
    else if (next == SPOOLER_SPOOLING)
        log_warn("spool: Kafka unreachable again (%s): records wait in the spool", down);
    if (next == SPOOLER_DIRECT) {
        f->outage_done_ms += now - f->outage_start;
        log_info("spool: drained; records go to Kafka directly again after %.1f s on the spool",
                 (double)(now - f->outage_start) / 1000.0);
    }
    f->st.state = next;
}

int spooler_produce(spooler_t *f, const kafka_record_t *rec, uint64_t opaque) {
    if (f->st.state == SPOOLER_DIRECT)
        return produce_direct(f, rec, opaque);
    if (f->stopping)
        return KAFKA_ERR_QUEUE_FULL;
    if (f->taking_back) {
        /* Behind the records still coming back from the producer. */
        if (ring_reserve(f) != 0 || keep(f, f->d_next, opaque, rec) != 0) {
            log_error("spool: out of memory");
            return KAFKA_ERR_PRODUCE;
        }
        *direct_at(f, f->d_next++) = (struct direct){opaque, 0, true};
        advance(f);
        return KAFKA_OK;
    }
    return append(f, rec, opaque);
}

uint64_t spooler_direct_inflight(const spooler_t *f) {
    return f->d_waiting;
}

bool spooler_pending(const spooler_t *f) {
    return f->n_pending > 0;
}

/* The records appended since the last sync become the group being synced
 * (completing); new appends go to the next group. */
static void take_group(spooler_t *f) {
    uint64_t *done = f->pending;
    size_t cap = f->cap_pending;
    f->n_completing = f->n_pending;
    f->pending = f->completing;
    f->cap_pending = f->cap_completing;
    f->completing = done;
    f->cap_completing = cap;
    f->n_pending = 0;
}

/* The group's completions, in order, once its sync returned rc. */
static void complete_group(spooler_t *f, int rc) {
    uint64_t *done = f->completing;
    size_t n = f->n_completing;
    f->n_completing = 0;
    if (rc != 0) {
        f->st.sync_failures++;
        log_error("spool: sync failed (%s): %zu records not acknowledged", spool_strerror(rc), n);
    } else {
        f->st.spooled += n;
        if (f->durable)
            f->durable(f->o.complete_ud, done, n);
    }
    for (size_t i = 0; i < n; i++)
        f->o.complete(f->o.complete_ud, done[i], rc == 0 ? 0 : -1,
                      rc == 0 ? NULL : "the spool could not make the record durable");
}

static void sync_begin(spooler_t *f);

static void sync_run(void *arg) {
    spool_sync_run(((spooler_t *)arg)->sync_job);
}

/* The sync on the worker has returned: publish it, complete its group (not
 * at spooler_free); from the worker's done, start the group appended
 * meanwhile. */
static void sync_finish(void *arg, bool from_worker) {
    spooler_t *f = arg;
    int rc = spool_sync_end(f->sp, f->sync_job, NULL);
    f->inflight = NULL;
    if (f->freeing)
        return;
    complete_group(f, rc);
    if (from_worker && f->n_pending && !f->stopping)
        sync_begin(f);
}

/* Starts the group commit of the records appended since the last sync: on
 * the worker when there is one, here otherwise. */
static void sync_begin(spooler_t *f) {
    spool_sync_job_t *job;
    take_group(f);
    int rc = spool_sync_begin(f->sp, &job, NULL);
    if (rc == 0 && job) {
        f->sync_job = job;
        if ((f->inflight = spooler_task_start(f->work, f->work_ud, sync_run, sync_finish, f)))
            return;
        spool_sync_run(job);
        rc = spool_sync_end(f->sp, job, NULL);
    }
    complete_group(f, rc);
}

/* The group commit, here and now (shutdown, and without a worker). */
static void sync_and_complete(spooler_t *f) {
    if (f->inflight)
        spooler_task_wait(f->inflight);
    if (!f->n_pending)
        return;
    spooler_work_fn saved = f->work;
    f->work = NULL;
    sync_begin(f);
    f->work = saved;
}

void spooler_set_worker(spooler_t *f, spooler_work_fn work, void *ud) {
    f->work = work;
    f->work_ud = ud;
    spooler_ckpt_set_worker(f->ckpt, work, ud);
}

void spooler_set_durable(spooler_t *f, spooler_durable_fn durable) {
    f->durable = durable;
}

/* What Kafka confirmed counts in the spool at once; its checkpoint follows
 * (spooler_ckpt.h): throttled, here and now when force. */
static void confirm(spooler_t *f, bool force) {
    if (f->confirm_due) {
        spooler_ckpt_confirm(f->ckpt, f->confirm_to);
        f->confirm_due = false;
    }
    spooler_ckpt_turn(f->ckpt, now_ms(f), force, f->st.full);
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

/* What a record holds in the producer's queue, roughly (its copy). */
static uint32_t record_bytes(const spool_record_t *r) {
    size_t n = r->topic_len + r->key_len + r->value_len;
    for (size_t i = 0; i < r->n_headers; i++)
        n += r->headers[i].name_len + r->headers[i].value_len;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* Feeds the producer from the reader, in order, up to the window. */
static void feed(spooler_t *f) {
    while (f->n < SPOOLER_WINDOW && (f->n == 0 || f->window_bytes < SPOOLER_WINDOW_BYTES)) {
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
        f->bytes[at] = record_bytes(&r);
        f->window_bytes += f->bytes[at];
        f->n++;
        f->n_waiting++;
        spool_next(f->sp);
    }
}

void spooler_turn(spooler_t *f) {
    uint64_t now = now_ms(f);
    if (f->outage && !f->stopping && f->st.state == SPOOLER_DIRECT)
        check_switch(f, now);
    if (f->taking_back && f->st.state != SPOOLER_DIRECT && f->d_head == f->d_next)
        append_kept(f);
    if (f->n_pending && !f->inflight)
        sync_begin(f);
    if (f->rewind && f->n_waiting == 0) {
        /* Every record handed out has its report: confirm the delivered
         * prefix and read again from the first record not confirmed. */
        confirm(f, false);
        spool_rewind(f->sp);
        f->n = 0;
        f->window_bytes = 0;
        f->rewind = false;
        f->st.rewinds++;
        log_info("spool: the feed to Kafka starts again after record %" PRIu64, f->confirm_to);
    }
    if (!f->stopping && !f->rewind && f->st.state != SPOOLER_DIRECT)
        feed(f);
    confirm(f, false);
    update_state(f, now);
    if (f->st.state != SPOOLER_DIRECT && f->outage)
        f->st.outage_ms = f->outage_done_ms + (now - f->outage_start);
    else
        f->st.outage_ms = f->outage_done_ms;
    if (now - f->rate_t >= 1000) {
        f->st.drain_rate = (f->st.drained - f->rate_drained) * 1000 / (now - f->rate_t);
        f->rate_t = now;
        f->rate_drained = f->st.drained;
    }
}

void spooler_on_delivery(spooler_t *f, uint64_t opaque, int err, const char *errstr) {
    spooler_on_report(f, opaque, err, errstr, NULL);
}

void spooler_on_report(spooler_t *f, uint64_t opaque, int err, const char *errstr,
                       const spooler_report_t *r) {
    if (opaque & SPOOLER_DIRECT_BIT) {
        direct_report(f, opaque & ~SPOOLER_DIRECT_BIT, err, errstr, r);
        return;
    }
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
        f->window_bytes -= f->bytes[f->head];
        f->head = (f->head + 1) % SPOOLER_WINDOW;
        f->n--;
    }
}

void spooler_stop(spooler_t *f) {
    if (f->n_kept)
        append_kept(f); /* what came back; reports due after this fail to their sessions */
    if (f->n_pending || f->inflight)
        sync_and_complete(f);
    confirm(f, true);
    f->stopping = true;
}

const spooler_stats_t *spooler_stats(const spooler_t *f) {
    return &f->st;
}
