/* The QoS 2 state file's payload (daemon_qos2.h), all integers little-endian:
 *   "M2Q2" | 16-byte hash key |
 *   { u16 client_id_len | client_id | u16 n | n x (u16 packet id | u64 hash) }*
 * The hash (session_mgr_qos2_hash, under the file's key) tells a resend of
 * the message an id acknowledged from a new message under a released id
 * (docs/semantics.md). The spool frames it (magic, length, generation,
 * CRC32C) and writes it into the older of its two slots (spool.h).
 *
 * The group commit of the ids: the PUBRECs (their completions, held here)
 * and the PUBCOMPs (held by the session manager) that wait for the state of
 * one loop turn share one save: the payload is built on the loop thread (a
 * snapshot), written and synced on the threadpool, and the answers go out
 * when it is on disk. At most one save is in flight; what changes meanwhile
 * is the next one's. A failed save answers nothing, and is retried. */
#include "daemon_qos2.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util/log.h"

/* A failed save is tried again at a loop turn this much later at the
 * earliest (an idle loop turns at least once a tick). */
#define QOS2_RETRY_MS 100

/* The save on the worker: the holder outlives q if q is freed first
 * (consumed: done only frees it). */
struct save_holder {
    daemon_qos2_t *q;
    spool_state_job_t *job;
    atomic_bool finished;
    bool consumed;
};

struct daemon_qos2 {
    session_mgr_t *sm;
    spool_t *sp;
    daemon_qos2_work_fn work;
    void *work_ud;
    uint64_t saved; /* the session manager's qos2 version on disk */
    uint8_t key[16];
    uint8_t *buf;
    size_t len, cap;
    size_t sessions, ids;
    bool oom;
    /* Completions (opaques) of QoS 2 messages held until a save holds their
     * ids; wait[0 .. covered) are in the save in flight. */
    uint64_t *wait;
    size_t n_wait, cap_wait, covered;
    struct save_holder *inflight;
    uint64_t inflight_version;
    /* Failures: the cause logged last (one line per cause), the retry. */
    char why[256];
    uint64_t failures, retry_at_ms;
};

static uint64_t mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define QOS2_MAGIC "M2Q2"
#define QOS2_HEAD (4 + 16) /* magic and key */
#define QOS2_ID 10         /* u16 packet id, u64 hash */

static bool reserve(daemon_qos2_t *q, size_t need) {
    if (need > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(q->buf, cap);
        if (!b) {
            q->oom = true;
            return false;
        }
        q->buf = b;
        q->cap = cap;
    }
    return true;
}

static void encode_one(void *ctx, const char *cid, size_t len, const session_qos2_id_t *ids,
                       size_t n) {
    daemon_qos2_t *q = ctx;
    size_t need = q->len + 4 + len + QOS2_ID * n;
    if (q->oom || len > UINT16_MAX || n > UINT16_MAX || !reserve(q, need))
        return;
    uint8_t *p = q->buf + q->len;
    put16(p, (uint16_t)len);
    memcpy(p + 2, cid, len);
    p += 2 + len;
    put16(p, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t *r = p + 2 + QOS2_ID * i;
        put16(r, ids[i].id);
        for (int b = 0; b < 8; b++)
            r[2 + b] = (uint8_t)(ids[i].hash >> (8 * b));
    }
    q->len = need;
    q->sessions++;
    q->ids += n;
}

/* The snapshot: the payload of every id of the sessions that outlive
 * their connection, into q->buf. 0, or SPOOL_ENOMEM. */
static int build(daemon_qos2_t *q) {
    q->len = q->sessions = q->ids = 0;
    q->oom = !reserve(q, QOS2_HEAD);
    if (!q->oom) {
        memcpy(q->buf, QOS2_MAGIC, 4);
        memcpy(q->buf + 4, q->key, sizeof(q->key));
        q->len = QOS2_HEAD;
    }
    return session_mgr_qos2_each(q->sm, encode_one, q) != 0 || q->oom ? SPOOL_ENOMEM : 0;
}

/* The held completions wait[0 .. n) go to their sessions (PUBREC). */
static void release(daemon_qos2_t *q, size_t n) {
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        session_on_delivery(q->sm, q->wait[i], 0, NULL);
    memmove(q->wait, q->wait + n, (q->n_wait - n) * sizeof(*q->wait));
    q->n_wait -= n;
}

static void failed(daemon_qos2_t *q, int rc, const char *why) {
    session_mgr_qos2_save_failed(q->sm);
    q->failures++;
    q->retry_at_ms = mono_ms() + QOS2_RETRY_MS;
    char buf[sizeof(q->why)];
    snprintf(buf, sizeof(buf), "%s", rc == SPOOL_ENOMEM ? "out of memory" : why);
    if (strcmp(buf, q->why) == 0)
        return; /* logged: once per cause */
    memcpy(q->why, buf, sizeof(buf));
    log_error("spool: saving the QoS 2 state failed: %s (%zu PUBRECs and %zu PUBCOMPs wait; "
              "retried)",
              q->why, q->n_wait, session_mgr_qos2_pubcomps_waiting(q->sm));
}

static void saved(daemon_qos2_t *q, uint64_t v) {
    q->saved = v;
    if (q->failures) {
        log_info("spool: the QoS 2 state is saved again (after %" PRIu64 " failed saves)",
                 q->failures);
        q->failures = 0;
        q->why[0] = '\0';
    }
    q->retry_at_ms = 0;
    session_mgr_qos2_saved(q->sm, v);
}

/* The save in flight has returned: on disk, its answers go out (unless
 * the daemon is going: then the clients resend). */
static void finish(daemon_qos2_t *q, spool_state_job_t *job, bool answer) {
    char why[sizeof(q->why)] = "";
    int rc = spool_state_end(q->sp, job, why, sizeof(why));
    size_t covered = q->covered;
    q->covered = 0;
    if (rc != 0) {
        failed(q, rc, why);
        return;
    }
    if (!answer) {
        q->saved = q->inflight_version;
        return;
    }
    saved(q, q->inflight_version);
    release(q, covered);
}

static void save_run(void *arg) {
    struct save_holder *h = arg;
    spool_state_run(h->job);
    atomic_store(&h->finished, true);
}

static void save_done(void *arg) {
    struct save_holder *h = arg;
    if (!h->consumed) {
        daemon_qos2_t *q = h->q;
        q->inflight = NULL;
        finish(q, h->job, true);
        /* What changed meanwhile is the next save's. */
        daemon_qos2_turn(q);
    }
    free(h);
}

/* Waits for the worker (one write and one fdatasync). */
static void save_wait(daemon_qos2_t *q, bool answer) {
    struct save_holder *h = q->inflight;
    while (!atomic_load(&h->finished))
        nanosleep(&(struct timespec){0, 200000}, NULL);
    h->consumed = true;
    q->inflight = NULL;
    finish(q, h->job, answer);
}

/* Starts a save of the ids as they are now: on the worker when there is
 * one, here otherwise. */
static void start(daemon_qos2_t *q, uint64_t v) {
    spool_state_job_t *job = NULL;
    int rc = build(q);
    if (rc == 0)
        rc = spool_state_begin(q->sp, q->buf, q->len, &job);
    if (rc != 0) {
        failed(q, rc, spool_strerror(rc));
        return;
    }
    q->covered = q->n_wait;
    q->inflight_version = v;
    if (q->work) {
        struct save_holder *h = malloc(sizeof(*h));
        if (h) {
            *h = (struct save_holder){.q = q, .job = job};
            atomic_init(&h->finished, false);
            q->inflight = h;
            if (q->work(q->work_ud, save_run, save_done, h) == 0)
                return;
            q->inflight = NULL;
            free(h);
        }
    }
    spool_state_run(job);
    finish(q, job, true);
}

void daemon_qos2_turn(daemon_qos2_t *q) {
    if (!q || q->inflight)
        return;
    uint64_t v = session_mgr_qos2_version(q->sm);
    if (v == q->saved) {
        /* Nothing unsaved: the held ids were durable before the last save. */
        release(q, q->n_wait);
        return;
    }
    if (q->retry_at_ms && mono_ms() < q->retry_at_ms)
        return;
    start(q, v);
}

bool daemon_qos2_hold(daemon_qos2_t *q, uint64_t opaque) {
    if (!q)
        return false;
    if (q->n_wait == q->cap_wait) {
        size_t cap = q->cap_wait ? q->cap_wait * 2 : 64;
        uint64_t *w = realloc(q->wait, cap * sizeof(*w));
        if (!w) {
            /* Here and now instead: the loop waits for the disk once. */
            if (q->inflight)
                save_wait(q, true);
            uint64_t v = session_mgr_qos2_version(q->sm);
            if (v != q->saved && build(q) == 0 && spool_state_save(q->sp, q->buf, q->len) == 0)
                saved(q, v);
            return false;
        }
        q->wait = w;
        q->cap_wait = cap;
    }
    q->wait[q->n_wait++] = opaque;
    return true;
}

void daemon_qos2_set_worker(daemon_qos2_t *q, daemon_qos2_work_fn work, void *ud) {
    if (!q)
        return;
    q->work = work;
    q->work_ud = ud;
}

/* Puts the saved sessions back; a malformed payload ends the walk (its CRC
 * was right: a bug, or a file of another version). */
static void restore(daemon_qos2_t *q, const uint8_t *b, size_t len) {
    size_t off = QOS2_HEAD, sessions = 0, ids = 0, skipped = 0;
    if (len < QOS2_HEAD || memcmp(b, QOS2_MAGIC, 4) != 0) {
        log_error("spool: the QoS 2 state is not of this version: its ids are ignored (a resend "
                  "of those messages goes to Kafka again)");
        return;
    }
    memcpy(q->key, b + 4, sizeof(q->key));
    session_qos2_id_t *scratch = malloc(65535 * sizeof(*scratch));
    while (scratch && off + 2 <= len) {
        size_t cl = get16(b + off);
        if (off + 2 + cl + 2 > len)
            break;
        const char *cid = (const char *)b + off + 2;
        size_t n = get16(b + off + 2 + cl);
        const uint8_t *p = b + off + 4 + cl;
        if ((size_t)(b + len - p) < QOS2_ID * n)
            break;
        for (size_t i = 0; i < n; i++)
            scratch[i] = (session_qos2_id_t){get64(p + QOS2_ID * i + 2), get16(p + QOS2_ID * i)};
        if (session_mgr_qos2_restore(q->sm, cid, cl, scratch, n) == 0) {
            sessions++;
            ids += n;
        } else {
            skipped++;
        }
        off += 4 + cl + QOS2_ID * n;
    }
    free(scratch);
    if (off != len)
        log_error("spool: the QoS 2 state is malformed at byte %zu of %zu: the rest is ignored",
                  off, len);
    if (sessions || skipped || off != len)
        log_info("spool: restored %zu sessions with %zu QoS 2 ids awaiting PUBREL "
                 "(%zu not restored)",
                 sessions, ids, skipped);
}

bool daemon_qos2_saved_ids(spool_t *sp) {
    uint8_t *b;
    size_t len;
    if (spool_state_load(sp, &b, &len) != 0)
        return true; /* unknown: as if it held some */
    bool ids = false;
    size_t off = QOS2_HEAD;
    /* A malformed payload (restore logs it) holds none that can be read. */
    while (b && !ids && off + 2 <= len) {
        size_t cl = get16(b + off);
        if (off + 4 + cl > len)
            break;
        ids = get16(b + off + 2 + cl) > 0;
        off += 4 + cl + QOS2_ID * (size_t)get16(b + off + 2 + cl);
    }
    free(b);
    return ids;
}

daemon_qos2_t *daemon_qos2_new(session_mgr_t *sm, spool_t *sp) {
    daemon_qos2_t *q = calloc(1, sizeof(*q));
    if (!q) {
        log_error("spool: out of memory: QoS 2 ids are not kept across restarts");
        return NULL;
    }
    q->sm = sm;
    q->sp = sp;
    uint8_t *b;
    size_t len;
    if (spool_state_load(sp, &b, &len) != 0) {
        log_error("spool: out of memory: QoS 2 ids are not kept across restarts");
        free(q);
        return NULL;
    }
    /* The loop's clock (uv_now) is CLOCK_MONOTONIC in ms: expiry counts from now. */
    struct timespec mono, wall;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    session_mgr_set_now(sm, (uint64_t)mono.tv_sec * 1000u + (uint64_t)mono.tv_nsec / 1000000u,
                        (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
    /* A new key unless the file brings one (its hashes were made under it). */
    if (getrandom(q->key, sizeof(q->key), 0) != (ssize_t)sizeof(q->key)) {
        log_error("spool: no random bytes for the QoS 2 hash key: QoS 2 ids are not kept "
                  "across restarts");
        free(b);
        free(q);
        return NULL;
    }
    if (b)
        restore(q, b, len);
    free(b);
    session_mgr_qos2_set_key(sm, q->key);
    /* What the file holds now: the restored sessions, minus any the
     * detached-session bounds discarded (saved again at the next change). */
    q->saved = session_mgr_qos2_version(sm);
    session_mgr_qos2_saved(sm, q->saved);
    return q;
}

void daemon_qos2_free(daemon_qos2_t *q) {
    if (!q)
        return;
    if (q->inflight)
        save_wait(q, false);
    /* The last changes, here and now; the held completions' connections
     * are gone (their clients resend). */
    uint64_t v = session_mgr_qos2_version(q->sm);
    if (v != q->saved) {
        if (build(q) != 0)
            log_error("spool: saving the QoS 2 state at exit failed: out of memory");
        else
            spool_state_save(q->sp, q->buf, q->len); /* logs a failure */
    }
    free(q->wait);
    free(q->buf);
    free(q);
}
