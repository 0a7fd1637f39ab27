/* The QoS 2 state file's payload (daemon_qos2.h), all integers little-endian:
 *   "M2Q2" | 16-byte hash key |
 *   { u16 client_id_len | client_id | u16 n | n x (u16 packet id | u64 hash) }*
 * The hash (session_mgr_qos2_hash, under the file's key) tells a resend of
 * the message an id acknowledged from a new message under a released id
 * (docs/semantics.md). The spool frames it (magic, length, CRC32C) and
 * replaces it atomically. */
#include "daemon_qos2.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "util/log.h"

struct daemon_qos2 {
    session_mgr_t *sm;
    spool_t *sp;
    uint64_t saved; /* the session manager's qos2 version on disk */
    uint8_t key[16];
    uint8_t *buf;
    size_t len, cap;
    size_t sessions, ids;
    bool oom;
};

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

static void save(daemon_qos2_t *q) {
    uint64_t v = session_mgr_qos2_version(q->sm);
    if (v == q->saved)
        return;
    q->len = q->sessions = q->ids = 0;
    q->oom = !reserve(q, QOS2_HEAD);
    if (!q->oom) {
        memcpy(q->buf, QOS2_MAGIC, 4);
        memcpy(q->buf + 4, q->key, sizeof(q->key));
        q->len = QOS2_HEAD;
    }
    int rc = session_mgr_qos2_each(q->sm, encode_one, q) != 0 || q->oom
                 ? SPOOL_ENOMEM
                 : spool_state_save(q->sp, q->buf, q->len);
    if (rc == 0) {
        q->saved = v;
        return;
    }
    /* Retried before the next PUBREC; a crash before then may send a resend
     * of these messages to Kafka twice (never lose one). */
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool state", 10, 10000);
    log_ratelimited(&rl, LOG_ERROR,
                    "spool: saving the QoS 2 ids of %zu sessions failed: %s (retried; until "
                    "then a resend after a crash may reach Kafka twice)",
                    q->sessions, spool_strerror(rc));
}

void daemon_qos2_before_ack(daemon_qos2_t *q, int err) {
    if (q && err == 0)
        save(q);
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
    return q;
}

void daemon_qos2_free(daemon_qos2_t *q) {
    if (!q)
        return;
    save(q);
    free(q->buf);
    free(q);
}
