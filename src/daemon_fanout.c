/* The downlink across workers (daemon_fanout.h). Worker 0 makes each routed
 * record into one dl_msg_t (its count is atomic, the rest immutable) and
 * appends a reference to the batch of every other running worker; a poll's
 * batches are posted at its end (server_post: one list push and one
 * uv_async_send per worker), so each worker's sessions get the records in
 * the order worker 0 read them, which keeps a partition's order per
 * subscriber. A worker with no subscription at all is left out; one with
 * none matching the record matches and drops it. */
#include "daemon_fanout.h"

#include <stdlib.h>
#include <string.h>

#include "daemon_int.h"
#include "downlink/credit.h"

typedef struct {
    dl_msg_t **v;
    size_t n, cap;
    size_t bytes; /* of the messages, for the byte bound */
} fan_buf_t;

struct daemon_fanout {
    daemon_t *d;
    void (*resume)(void *ud);
    void *ud;
    unsigned n;        /* workers */
    fan_buf_t *buf;    /* per worker (0 unused): this poll's records */
    dl_credit_t *held; /* per worker: posted, not yet delivered (FANOUT_MAX_PENDING*) */
    uint64_t *handed;  /* per worker: records delivered there or posted to it */
    daemon_fanout_stats_t st;
};

typedef struct {
    daemon_fanout_t *f;
    unsigned idx;
    size_t n, bytes;
    dl_msg_t *v[];
} fan_batch_t;

daemon_fanout_t *daemon_fanout_new(daemon_t *d, void (*resume)(void *ud), void *ud) {
    daemon_fanout_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->d = d;
    f->resume = resume;
    f->ud = ud;
    f->n = d->n_workers;
    f->buf = calloc(f->n, sizeof(*f->buf));
    f->held = dl_credit_new(f->n, FANOUT_MAX_PENDING, FANOUT_MAX_PENDING_BYTES);
    f->handed = calloc(f->n, sizeof(*f->handed));
    if (!f->buf || !f->held || !f->handed) {
        daemon_fanout_free(f);
        return NULL;
    }
    return f;
}

static void buf_clear(fan_buf_t *b) {
    for (size_t k = 0; k < b->n; k++)
        dl_msg_unref(b->v[k]);
    b->n = 0;
    b->bytes = 0;
}

void daemon_fanout_free(daemon_fanout_t *f) {
    if (!f)
        return;
    for (unsigned i = 0; f->buf && i < f->n; i++) {
        buf_clear(&f->buf[i]);
        free(f->buf[i].v);
    }
    free(f->buf);
    dl_credit_free(f->held);
    free(f->handed);
    free(f);
}

/* A worker whose loop runs on its own thread, not stopped: its server takes posts. */
static worker_t *running(const daemon_fanout_t *f, unsigned i) {
    worker_t *w = f->d->w[i];
    return w && w->have_thread && !atomic_load(&w->ended) ? w : NULL;
}

/* A worker with no subscription (its count is atomic, raised before the
 * SUBACK is written) is left out: a record read after the SUBACK still
 * finds the count raised. */
static worker_t *wants(const daemon_fanout_t *f, unsigned i) {
    worker_t *w = running(f, i);
    return w && session_mgr_subscription_count(w->sm) ? w : NULL;
}

int daemon_fanout_room(daemon_fanout_t *f, int want) {
    return (int)dl_credit_room(f->held, (size_t)want);
}

void daemon_fanout_record(daemon_fanout_t *f, const char *topic, size_t topic_len,
                          const void *payload, size_t len, uint8_t qos, const dl_header_t *headers,
                          size_t n_headers, int64_t timestamp_ms) {
    session_mgr_t *sm0 = f->d->w[0]->sm;
    dl_msg_t *msg = session_mgr_dl_msg(sm0, topic, topic_len, payload, len, qos, headers, n_headers,
                                       timestamp_ms);
    if (!msg) {
        log_error("downlink: out of memory for a record of %zu bytes", len);
        return;
    }
    f->st.records++;
    if (session_mgr_subscription_count(sm0)) {
        f->handed[0]++;
        session_mgr_deliver_msg(sm0, msg);
    }
    for (unsigned i = 1; i < f->n; i++) {
        fan_buf_t *b = &f->buf[i];
        if (!wants(f, i))
            continue;
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 64;
            dl_msg_t **v = realloc(b->v, cap * sizeof(*v));
            if (!v) {
                log_error("downlink: out of memory: a record not given to worker %u", i);
                continue;
            }
            b->v = v;
            b->cap = cap;
        }
        b->v[b->n++] = dl_msg_ref(msg);
        b->bytes += sizeof(*msg) + msg->topic_len + 1 + msg->len + msg->props_len + msg->origin_len;
        f->handed[i]++;
    }
    dl_msg_unref(msg);
}

static void on_resume(void *arg) {
    daemon_fanout_t *f = arg;
    if (!f->d->stopping)
        f->resume(f->ud);
}

/* On worker b->idx's loop thread. */
static void run_batch(void *arg) {
    fan_batch_t *b = arg;
    daemon_fanout_t *f = b->f;
    worker_t *w = f->d->w[b->idx];
    /* The loop's time of this turn: the message expiry is on it. */
    session_mgr_set_now(w->sm, server_now_ms(w->srv), server_wall_ms());
    for (size_t k = 0; k < b->n; k++) {
        session_mgr_deliver_msg(w->sm, b->v[k]);
        dl_msg_unref(b->v[k]);
    }
    bool wake = dl_credit_give(f->held, b->idx, b->n, b->bytes, DOWNLINK_POLL_BATCH);
    free(b);
    if (wake)
        server_post(f->d->w[0]->srv, on_resume, f);
}

void daemon_fanout_flush(daemon_fanout_t *f) {
    for (unsigned i = 1; i < f->n; i++) {
        fan_buf_t *b = &f->buf[i];
        if (!b->n)
            continue;
        worker_t *w = running(f, i);
        fan_batch_t *batch = w ? malloc(sizeof(*batch) + b->n * sizeof(batch->v[0])) : NULL;
        if (batch) {
            batch->f = f;
            batch->idx = i;
            batch->n = b->n;
            batch->bytes = b->bytes;
            memcpy(batch->v, b->v, b->n * sizeof(batch->v[0]));
            dl_credit_take(f->held, i, b->n, b->bytes);
            if (server_post(w->srv, run_batch, batch) == 0) {
                f->st.batches++;
                b->n = 0;
                b->bytes = 0;
                continue;
            }
            /* Not posted: given back (a wake-up it may take is not needed:
             * the consumer runs now, and its tick polls every second). */
            dl_credit_give(f->held, i, b->n, b->bytes, 0);
            free(batch);
        }
        /* Stopped (shutdown), or out of memory: the sessions there miss them. */
        if (w && !f->d->stopping)
            log_warn("downlink: %zu records not given to worker %u (%s)", b->n, i,
                     batch ? "it stopped" : "out of memory");
        f->st.lost += b->n;
        buf_clear(b);
    }
}

uint64_t daemon_fanout_worker_records(const daemon_fanout_t *f, unsigned i) {
    return i < f->n ? f->handed[i] : 0;
}

daemon_fanout_stats_t daemon_fanout_stats(const daemon_fanout_t *f) {
    daemon_fanout_stats_t st = f->st;
    st.waits = dl_credit_waits(f->held);
    return st;
}
