/* The QoS 2 state file's payload (daemon_qos2.h), all integers little-endian:
 *   { u16 client_id_len | client_id | u16 n | n x u16 packet id }*
 * The spool frames it (magic, length, CRC32C) and replaces it atomically. */
#include "daemon_qos2.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

struct daemon_qos2 {
    session_mgr_t *sm;
    spool_t *sp;
    uint64_t saved; /* the session manager's qos2 version on disk */
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

static void encode_one(void *ctx, const char *cid, size_t len, const uint16_t *ids, size_t n) {
    daemon_qos2_t *q = ctx;
    size_t need = q->len + 4 + len + 2 * n;
    if (q->oom || len > UINT16_MAX || n > UINT16_MAX)
        return;
    if (need > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(q->buf, cap);
        if (!b) {
            q->oom = true;
            return;
        }
        q->buf = b;
        q->cap = cap;
    }
    uint8_t *p = q->buf + q->len;
    put16(p, (uint16_t)len);
    memcpy(p + 2, cid, len);
    p += 2 + len;
    put16(p, (uint16_t)n);
    for (size_t i = 0; i < n; i++)
        put16(p + 2 + 2 * i, ids[i]);
    q->len = need;
    q->sessions++;
    q->ids += n;
}

static void save(daemon_qos2_t *q) {
    uint64_t v = session_mgr_qos2_version(q->sm);
    if (v == q->saved)
        return;
    q->len = q->sessions = q->ids = 0;
    q->oom = false;
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
 * was right: a bug, not a disk error). */
static void restore(daemon_qos2_t *q, const uint8_t *b, size_t len) {
    size_t off = 0, sessions = 0, ids = 0, skipped = 0;
    uint16_t *scratch = malloc(65535 * sizeof(*scratch));
    while (scratch && off + 2 <= len) {
        size_t cl = get16(b + off);
        if (off + 2 + cl + 2 > len)
            break;
        const char *cid = (const char *)b + off + 2;
        size_t n = get16(b + off + 2 + cl);
        const uint8_t *p = b + off + 4 + cl;
        if ((size_t)(b + len - p) < 2 * n)
            break;
        for (size_t i = 0; i < n; i++)
            scratch[i] = get16(p + 2 * i);
        if (session_mgr_qos2_restore(q->sm, cid, cl, scratch, n) == 0) {
            sessions++;
            ids += n;
        } else {
            skipped++;
        }
        off += 4 + cl + 2 * n;
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
    if (b)
        restore(q, b, len);
    free(b);
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
