/* MQTT session state machine (see session.h). One manager per loop; every
 * function runs on the loop thread.
 *
 * In-flight window: each session keeps a FIFO ring of the PUBLISHes it has
 * taken and not yet answered, QoS 0 included so QoS 0 is paced like the rest.
 * A delivery report completes its entry (found by the sequence number packed
 * into the opaque); completed entries are popped from the head only, so acks
 * leave in the order the PUBLISHes arrived. Answers that need no Kafka round
 * trip (QoS 2 duplicate, dropped unmapped message) also go through the ring so
 * they cannot overtake earlier acks. */
#include "mqtt/session.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "mqtt/codec.h"
#include "auth/security.h"

enum { IF_PENDING = 0, IF_OK = 1, IF_FAILED = 2 };
enum { CONN_NEW = 0, CONN_ACTIVE = 1, CONN_CLOSED = 2 };
enum { FEED_OK = 0, FEED_RETRY = 1, FEED_CLOSED = 2 };

#define INFLIGHT_TOPIC_MAX 50     /* topic prefix kept for the failure log line */
#define SCRATCH_SIZE (132 * 1024) /* rendered Kafka topic + key (topic <= 64 KiB) */
#define LOG_ID_MAX 64
#define ACL_CACHE_TOPIC_MAX 256

typedef struct {
    uint32_t ack_gen; /* connection generation owed the ack; 0 = none */
    /* PUBLISH received, low 32 bits of the us clock: the ack latency is the
     * wrapping difference, right for anything under 71 minutes. */
    uint32_t recv_us;
    uint16_t packet_id;
    uint8_t qos;
    uint8_t state;
    uint8_t produced; /* went to Kafka (else completed on arrival) */
    uint8_t topic_len;
    char topic[INFLIGHT_TOPIC_MAX];
} inflight_t;
_Static_assert(sizeof(inflight_t) == 64, "an in-flight entry is one cache line");

typedef struct session session_t;
/* Field order packs the struct: one of these lives as long as its client's
 * session, so every byte counts per idle connection. */
struct session {
    session_conn_t *conn;
    inflight_t *ring; /* lazily allocated, grown up to max_inflight */
    uint16_t *pubrel; /* QoS 2 ids answered with PUBREC, awaiting PUBREL */
    session_t *next_by_id, *next_by_cid;
    session_t *det_prev, *det_next;
    uint64_t detached_at;
    uint32_t id;
    uint32_t conn_gen;
    uint32_t ring_cap, ring_head, ring_count, ring_qos2;
    uint32_t head_seq, next_seq;
    uint32_t pubrel_count, pubrel_cap;
    uint16_t client_id_len; /* MQTT strings are at most 65535 bytes */
    bool clean;
    bool ring_used; /* since the last tick */
    bool detached;
    char client_id[]; /* NUL-terminated, allocated with the struct */
};

/* Packed like session_t: the remote address string is allocated with it. */
struct session_conn {
    session_mgr_t *mgr;
    const session_conn_ops_t *ops;
    void *ud;
    session_t *s;
    /* Creation time while CONN_NEW (the connect timeout: no complete packet
     * is processed in that state but the CONNECT), then the time of the last
     * complete packet (keepalive). */
    uint64_t rx_ms;
    char *will_topic;
    uint8_t *will_payload;
    char *username;
    char *identity;                      /* from a client certificate; overrides username */
    char *acl_topic;                     /* the last ACL decision's topic (see publish_allowed) */
    session_conn_t *prev, *next;         /* all connections */
    session_conn_t *blk_prev, *blk_next; /* blocked on a full producer queue */
    uint32_t gen;
    /* The last ACL decision is valid for this topic and security generation:
     * a client usually publishes on few topics, often the same one. */
    uint32_t acl_gen;
    uint16_t acl_topic_len;
    uint16_t keepalive;
    uint16_t will_topic_len, will_payload_len, username_len; /* 2-byte MQTT lengths */
    uint8_t state;
    uint8_t will_qos;
    /* Packed: one of these per connection (idle memory, docs/performance.md). */
    bool will : 1, will_retain : 1, has_username : 1, paused_inflight : 1, paused_queue : 1,
        send_failed : 1, blocked : 1, acl_ok : 1;
    char remote[]; /* "addr:port", NUL-terminated */
};

typedef struct {
    session_t **b;
    size_t nb, n;
} stab_t;

struct session_mgr {
    session_mgr_opts_t o;
    const config_t *cfg;
    uint64_t mono_ms;
    int64_t wall_ms;
    stab_t by_id, by_cid;
    uint32_t next_session_id;
    uint64_t next_auto_id;
    session_conn_t *conns;
    size_t n_conns;
    session_conn_t *blocked;
    session_t *det_head, *det_tail;
    size_t n_detached, max_detached;
    char *scratch;
    bool stopping;
    uint64_t mono_us;
    metrics_t *mx; /* opts.metrics or own_mx */
    log_ratelimit_t rl_protocol, rl_refused, rl_delivery, rl_drop, rl_acl;
    session_stats_t st;
    metrics_t own_mx;
};

/* ---- hash tables ------------------------------------------------------ */

static size_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return (size_t)h;
}

static size_t hash_id(uint32_t id) {
    return (size_t)(id * 2654435761u);
}

static session_t **stab_next(session_t *s, bool by_cid) {
    return by_cid ? &s->next_by_cid : &s->next_by_id;
}

static size_t stab_hash(const session_t *s, bool by_cid) {
    return by_cid ? hash_bytes(s->client_id, s->client_id_len) : hash_id(s->id);
}

static int stab_insert(stab_t *t, session_t *s, bool by_cid) {
    if (t->n + 1 > t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 16;
        session_t **b = calloc(nb, sizeof(*b));
        if (!b)
            return -1;
        for (size_t i = 0; i < t->nb; i++) {
            session_t *e = t->b[i];
            while (e) {
                session_t *nx = *stab_next(e, by_cid);
                size_t h = stab_hash(e, by_cid) & (nb - 1);
                *stab_next(e, by_cid) = b[h];
                b[h] = e;
                e = nx;
            }
        }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    size_t h = stab_hash(s, by_cid) & (t->nb - 1);
    *stab_next(s, by_cid) = t->b[h];
    t->b[h] = s;
    t->n++;
    return 0;
}

static void stab_remove(stab_t *t, session_t *s, bool by_cid) {
    if (!t->nb)
        return;
    session_t **pp = &t->b[stab_hash(s, by_cid) & (t->nb - 1)];
    while (*pp) {
        if (*pp == s) {
            *pp = *stab_next(s, by_cid);
            t->n--;
            return;
        }
        pp = stab_next(*pp, by_cid);
    }
}

static session_t *find_by_id(const session_mgr_t *m, uint32_t id) {
    if (!m->by_id.nb)
        return NULL;
    for (session_t *s = m->by_id.b[hash_id(id) & (m->by_id.nb - 1)]; s; s = s->next_by_id)
        if (s->id == id)
            return s;
    return NULL;
}

static session_t *find_by_cid(const session_mgr_t *m, const char *cid, size_t len) {
    if (!m->by_cid.nb)
        return NULL;
    for (session_t *s = m->by_cid.b[hash_bytes(cid, len) & (m->by_cid.nb - 1)]; s;
         s = s->next_by_cid)
        if (s->client_id_len == len && memcmp(s->client_id, cid, len) == 0)
            return s;
    return NULL;
}

/* ---- helpers ---------------------------------------------------------- */

/* A client id or topic for a log line: bounded, control bytes masked. */
static const char *log_str(char *out, size_t cap, const char *p, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++)
        out[j++] = ((uint8_t)p[i] < 0x20 || p[i] == 0x7f) ? '?' : p[i];
    if (j < n && j + 4 >= cap) {
        memcpy(out + j, "...", 3);
        j += 3;
    }
    out[j] = '\0';
    return out;
}

static const char *conn_id(const session_conn_t *c, char *buf, size_t cap) {
    if (!c->s)
        return "-";
    return log_str(buf, cap, c->s->client_id, c->s->client_id_len);
}

static uint32_t max_inflight(const session_mgr_t *m) {
    return m->cfg->mqtt.max_inflight ? m->cfg->mqtt.max_inflight : 1;
}

static char *dup_bytes(const void *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

static void conn_send(session_conn_t *c, const uint8_t *buf, size_t n) {
    if (c->state == CONN_CLOSED || c->send_failed)
        return;
    if (c->ops->send(c->ud, buf, n) != 0)
        c->send_failed = true;
    else
        c->mgr->mx->packets_sent[buf[0] >> 4]++; /* one packet per call */
}

static void conn_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid) {
    uint8_t b[4];
    size_t n = mqtt_encode_ack(b, sizeof(b), type, pid);
    assert(n == sizeof(b));
    conn_send(c, b, n);
}

static void conn_send_connack(session_conn_t *c, bool present, uint8_t rc) {
    uint8_t b[4];
    size_t n = mqtt_encode_connack(b, sizeof(b), present, rc);
    assert(n == sizeof(b));
    conn_send(c, b, n);
}

static void blocked_remove(session_conn_t *c) {
    session_mgr_t *m = c->mgr;
    if (!c->blocked)
        return;
    if (c->blk_prev)
        c->blk_prev->blk_next = c->blk_next;
    else
        m->blocked = c->blk_next;
    if (c->blk_next)
        c->blk_next->blk_prev = c->blk_prev;
    c->blk_prev = c->blk_next = NULL;
    c->blocked = false;
}

static void detached_remove(session_mgr_t *m, session_t *s) {
    if (!s->detached)
        return;
    if (s->det_prev)
        s->det_prev->det_next = s->det_next;
    else
        m->det_head = s->det_next;
    if (s->det_next)
        s->det_next->det_prev = s->det_prev;
    else
        m->det_tail = s->det_prev;
    s->det_prev = s->det_next = NULL;
    s->detached = false;
    m->n_detached--;
}

static void session_destroy(session_mgr_t *m, session_t *s) {
    assert(!s->conn);
    detached_remove(m, s);
    stab_remove(&m->by_id, s, false);
    stab_remove(&m->by_cid, s, true);
    free(s->ring);
    free(s->pubrel);
    free(s);
}

static session_t *session_create(session_mgr_t *m, const char *cid, size_t len, bool clean) {
    if (len > UINT16_MAX)
        return NULL;
    session_t *s = calloc(1, sizeof(*s) + len + 1);
    if (!s)
        return NULL;
    memcpy(s->client_id, cid, len);
    s->client_id_len = (uint16_t)len;
    s->clean = clean;
    /* Ids are never reused (0 is reserved for wills); after 2^32 - 1 sessions
     * the counter would wrap, which a process does not reach in practice. */
    if (++m->next_session_id == 0)
        m->next_session_id = 1;
    s->id = m->next_session_id;
    if (stab_insert(&m->by_id, s, false) != 0)
        goto fail;
    if (stab_insert(&m->by_cid, s, true) != 0) {
        stab_remove(&m->by_id, s, false);
        goto fail;
    }
    return s;
fail:
    free(s);
    return NULL;
}

/* ---- in-flight ring and PUBREL set ------------------------------------- */

/* i < ring_cap and ring_head < ring_cap: one compare instead of a division
 * (the capacity need not be a power of two: it stops at max_inflight). */
static inflight_t *ring_at(session_t *s, uint32_t i) {
    uint32_t j = s->ring_head + i;
    return &s->ring[j >= s->ring_cap ? j - s->ring_cap : j];
}

static int ring_reserve(session_mgr_t *m, session_t *s) {
    if (s->ring_count < s->ring_cap)
        return 0;
    uint32_t max = max_inflight(m);
    uint32_t cap = s->ring_cap ? s->ring_cap * 2 : 8;
    if (cap > max)
        cap = max;
    if (cap <= s->ring_cap)
        return -1;
    inflight_t *r = malloc((size_t)cap * sizeof(*r));
    if (!r)
        return -1;
    for (uint32_t i = 0; i < s->ring_count; i++)
        r[i] = *ring_at(s, i);
    free(s->ring);
    s->ring = r;
    s->ring_cap = cap;
    s->ring_head = 0;
    return 0;
}

static bool pubrel_has(const session_t *s, uint16_t pid) {
    for (uint32_t i = 0; i < s->pubrel_count; i++)
        if (s->pubrel[i] == pid)
            return true;
    return false;
}

static void pubrel_remove(session_t *s, uint16_t pid) {
    for (uint32_t i = 0; i < s->pubrel_count; i++) {
        if (s->pubrel[i] == pid) {
            s->pubrel[i] = s->pubrel[--s->pubrel_count];
            return;
        }
    }
}

static void pubrel_add(session_mgr_t *m, session_t *s, uint16_t pid) {
    if (pubrel_has(s, pid))
        return;
    if (s->pubrel_count == s->pubrel_cap) {
        uint32_t cap = s->pubrel_cap ? s->pubrel_cap * 2 : 8;
        uint16_t *p = realloc(s->pubrel, cap * sizeof(*p));
        if (!p) {
            /* The admission bound keeps this rare; without the id a resend
             * would be produced twice, which is what QoS 1 would give. */
            log_error("session %" PRIu32 ": out of memory recording QoS 2 id %u", s->id, pid);
            return;
        }
        s->pubrel = p;
        s->pubrel_cap = cap;
    }
    s->pubrel[s->pubrel_count++] = pid;
}

/* Pops completed entries from the head and sends the acks now in order. */
static void ring_pop_completed(session_mgr_t *m, session_t *s) {
    while (s->ring_count) {
        inflight_t *e = ring_at(s, 0);
        if (e->state == IF_PENDING)
            break;
        if (e->state == IF_OK && e->qos == 2)
            pubrel_add(m, s, e->packet_id);
        if (e->state == IF_OK && e->ack_gen && s->conn && e->ack_gen == s->conn_gen) {
            conn_send_ack(s->conn, e->qos == 2 ? MQTT_PUBREC : MQTT_PUBACK, e->packet_id);
            metrics_histogram_observe(&m->mx->ack_latency, (uint32_t)m->mono_us - e->recv_us);
        }
        if (e->qos == 2)
            s->ring_qos2--;
        if (++s->ring_head == s->ring_cap)
            s->ring_head = 0;
        s->ring_count--;
        s->head_seq++;
    }
}

static void conn_end(session_conn_t *c, log_level_t lvl, bool will, bool call_close,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void conn_end_rl(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                        bool call_close, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Resumes reading once the window has drained to its low-water mark, so a
 * busy client does not stop and start on every report. */
static void conn_maybe_resume(session_conn_t *c) {
    uint32_t max = max_inflight(c->mgr);
    uint32_t low = max - 1 - max / 4;
    if (c->state != CONN_CLOSED && c->paused_inflight && c->s && c->s->ring_count <= low) {
        c->paused_inflight = false;
        if (!c->paused_queue)
            c->ops->resume(c->ud);
    }
}

static void conn_check_window(session_conn_t *c) {
    if (c->s && !c->paused_inflight && c->s->ring_count >= max_inflight(c->mgr)) {
        c->paused_inflight = true;
        if (log_get_level() >= LOG_DEBUG) {
            char idb[LOG_ID_MAX];
            log_client(LOG_DEBUG, conn_id(c, idb, sizeof(idb)), c->remote,
                       "%u messages in flight, pausing reads", c->s->ring_count);
        }
        if (!c->paused_queue)
            c->ops->pause(c->ud);
    }
}

static void wake_blocked(session_mgr_t *m) {
    while (m->blocked) {
        session_conn_t *c = m->blocked;
        blocked_remove(c);
        c->paused_queue = false;
        if (!c->paused_inflight)
            c->ops->resume(c->ud);
    }
}

/* ---- producing ---------------------------------------------------------- */

typedef struct {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    bool retain;
} msg_t;

enum { ROUTE_OK = 0, ROUTE_DROP = 1, ROUTE_CLOSE = 2 };

/* Resolves the Kafka topic and key; applies the unmapped policy. */
static int route_msg(session_conn_t *c, const msg_t *msg, const char **ktopic, const char **key,
                     size_t *key_len, const char **why) {
    session_mgr_t *m = c->mgr;
    topic_map_ctx_t ctx = {
        .client_id = c->s->client_id,
        .client_id_len = c->s->client_id_len,
        .username = c->has_username ? c->username : NULL,
        .username_len = c->has_username ? c->username_len : 0,
    };
    topic_map_result_t res;
    int r =
        m->o.route(m->o.route_ud, msg->topic, msg->topic_len, &ctx, m->scratch, SCRATCH_SIZE, &res);
    if (r == TOPIC_MAP_MATCHED) {
        *ktopic = res.kafka_topic;
        *key = res.key;
        *key_len = res.key_len;
        return ROUTE_OK;
    }
    *why = r == TOPIC_MAP_UNMAPPED        ? "no rule matches"
           : r == TOPIC_MAP_ERR_BAD_TOPIC ? "the rendered Kafka topic is not a legal name"
           : r == TOPIC_MAP_ERR_NO_ROOM   ? "the rendered Kafka topic and key are too long"
                                          : "topic map error";
    switch (m->cfg->unmapped) {
    case UNMAPPED_TOPIC:
        if (m->cfg->unmapped_topic) {
            *ktopic = m->cfg->unmapped_topic;
            *key = msg->topic;
            *key_len = msg->topic_len;
            m->st.unmapped_routed++;
            return ROUTE_OK;
        }
        return ROUTE_CLOSE;
    case UNMAPPED_DROP:
        return ROUTE_DROP;
    case UNMAPPED_DISCONNECT:
    default:
        return ROUTE_CLOSE;
    }
}

static int produce_msg(session_conn_t *c, const msg_t *msg, const char *ktopic, const char *key,
                       size_t key_len, uint64_t opaque) {
    session_mgr_t *m = c->mgr;
    static const char *const qos_str[] = {"0", "1", "2"};
    kafka_header_t h[5];
    size_t nh = 0;
    if (m->cfg->headers) {
        h[nh++] = (kafka_header_t){"mqtt.topic", msg->topic, msg->topic_len};
        h[nh++] = (kafka_header_t){"mqtt.client_id", c->s->client_id, c->s->client_id_len};
        h[nh++] = (kafka_header_t){"mqtt.qos", qos_str[msg->qos <= 2 ? msg->qos : 0], 1};
        if (msg->retain)
            h[nh++] = (kafka_header_t){"mqtt.retain", "1", 1};
        if (c->has_username)
            h[nh++] = (kafka_header_t){"mqtt.username", c->username, c->username_len};
    }
    kafka_record_t rec = {
        .topic = ktopic,
        .key = key,
        .key_len = key_len,
        .value = msg->payload,
        .value_len = msg->payload_len,
        .headers = nh ? h : NULL,
        .n_headers = nh,
        .timestamp_ms = m->wall_ms,
    };
    int rc = m->o.produce(m->o.produce_ud, &rec, opaque);
    if (rc == KAFKA_OK)
        m->st.published++;
    else if (rc == KAFKA_ERR_QUEUE_FULL)
        m->st.queue_full++;
    return rc;
}

static void publish_will(session_conn_t *c) {
    session_mgr_t *m = c->mgr;
    char idb[LOG_ID_MAX];
    msg_t msg = {c->will_topic,       c->will_topic_len, c->will_payload,
                 c->will_payload_len, c->will_qos,       c->will_retain};
    const char *ktopic, *key, *why = "";
    size_t key_len;
    int r = route_msg(c, &msg, &ktopic, &key, &key_len, &why);
    if (r != ROUTE_OK) {
        m->st.wills_lost++;
        log_client(LOG_WARN, conn_id(c, idb, sizeof(idb)), c->remote,
                   "will message not published: %s (unmapped policy)", why);
        return;
    }
    int rc = produce_msg(c, &msg, ktopic, key, key_len, SESSION_OPAQUE(0, 0));
    if (rc != KAFKA_OK) {
        m->st.wills_lost++;
        log_client(LOG_ERROR, conn_id(c, idb, sizeof(idb)), c->remote,
                   "will message lost: producer refused it (%s)",
                   rc == KAFKA_ERR_QUEUE_FULL ? "queue full" : "produce error");
        return;
    }
    m->st.wills_published++;
}

/* ---- closing ----------------------------------------------------------- */

static void session_detach(session_mgr_t *m, session_t *s) {
    s->conn = NULL;
    if (s->clean || m->cfg->mqtt.session_expiry_s == 0) {
        session_destroy(m, s);
        return;
    }
    if (m->max_detached == 0) {
        session_destroy(m, s);
        return;
    }
    while (m->n_detached >= m->max_detached && m->det_head) {
        session_t *old = m->det_head;
        char idb[LOG_ID_MAX];
        log_client(LOG_WARN, log_str(idb, sizeof(idb), old->client_id, old->client_id_len), NULL,
                   "session limit: %zu sessions kept without a connection; discarding the "
                   "oldest",
                   m->n_detached);
        m->st.sessions_evicted++;
        session_destroy(m, old);
    }
    s->detached = true;
    s->detached_at = m->mono_ms;
    s->det_prev = m->det_tail;
    s->det_next = NULL;
    if (m->det_tail)
        m->det_tail->det_next = s;
    else
        m->det_head = s;
    m->det_tail = s;
    m->n_detached++;
}

/* Ends a connection once: one log line (through `rl` when not NULL), the
 * will unless `will` is false (DISCONNECT), detach its session, and tell the
 * server unless it told us. */
static void conn_end_v(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                       bool call_close, const char *fmt, va_list ap) {
    if (c->state == CONN_CLOSED)
        return;
    session_mgr_t *m = c->mgr;
    char reason[256], idb[LOG_ID_MAX];
    if (lvl <= log_get_level()) {
        vsnprintf(reason, sizeof(reason), fmt, ap);
        if (rl)
            log_client_ratelimited(rl, lvl, conn_id(c, idb, sizeof(idb)), c->remote, "closing: %s",
                                   reason);
        else
            log_client(lvl, conn_id(c, idb, sizeof(idb)), c->remote, "closing: %s", reason);
    }
    bool was_active = c->state == CONN_ACTIVE;
    c->state = CONN_CLOSED;
    blocked_remove(c);
    if (was_active && will && c->will) {
        if (m->stopping)
            log_client(LOG_INFO, conn_id(c, idb, sizeof(idb)), c->remote,
                       "will message not published: shutting down");
        else
            publish_will(c);
    }
    c->will = false;
    free(c->will_topic);
    free(c->will_payload);
    c->will_topic = NULL;
    c->will_payload = NULL;
    if (c->s) {
        session_t *s = c->s;
        c->s = NULL;
        session_detach(m, s);
    }
    if (call_close)
        c->ops->close(c->ud);
}

static void conn_end(session_conn_t *c, log_level_t lvl, bool will, bool call_close,
                     const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    conn_end_v(c, NULL, lvl, will, call_close, fmt, ap);
    va_end(ap);
}

static void conn_end_rl(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                        bool call_close, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    conn_end_v(c, rl, lvl, will, call_close, fmt, ap);
    va_end(ap);
}

/* A refused CONNECT (CONNACK != 0 already queued): counted by reason, logged
 * rate-limited (a misconfigured fleet reconnects in a loop). */
#define refuse(c, reason, lvl, ...)                                                                \
    do {                                                                                           \
        (c)->mgr->st.rejected++;                                                                   \
        (c)->mgr->mx->connections_refused[(reason)]++;                                             \
        conn_end_rl((c), &(c)->mgr->rl_refused, (lvl), false, true, __VA_ARGS__);                  \
    } while (0)

/* A protocol violation: counted by `kind` (mqtt_errname() or a short session
 * reason), as a refusal when it came before CONNECT was accepted. */
#define violation(c, kind, ...)                                                                    \
    do {                                                                                           \
        session_mgr_t *vm_ = (c)->mgr;                                                             \
        vm_->st.protocol_errors++;                                                                 \
        metrics_label_inc(&vm_->mx->protocol_errors, (kind));                                      \
        if ((c)->state == CONN_NEW)                                                                \
            vm_->mx->connections_refused[METRICS_REFUSED_PROTOCOL_ERROR]++;                        \
        conn_end_rl((c), &vm_->rl_protocol, LOG_WARN, true, true, __VA_ARGS__);                    \
    } while (0)

/* ---- packets ----------------------------------------------------------- */

/* Password, anonymous policy and the will's ACL; on refusal sends the CONNACK
 * (held by the throttle delay), logs without the password, closes, and
 * returns -1. */
static int authorize_connect(session_conn_t *c, const mqtt_connect_t *p, const char *cid,
                             size_t cid_len) {
    session_mgr_t *m = c->mgr;
    security_t *sec = m->o.security;
    char idb[LOG_ID_MAX], ub[LOG_ID_MAX], tb[LOG_ID_MAX] = "";
    uint32_t delay = 0;
    const char *user = c->identity ? c->identity : (const char *)p->username.ptr;
    size_t ulen = c->identity ? strlen(c->identity) : p->username.len;
    bool has_user = c->identity || p->has_username;
    int rc = security_connect(sec, c->remote, c->identity, has_user, user, ulen, p->has_password,
                              p->password.ptr, p->password.len, m->mono_ms, &delay);
    const char *why = NULL;
    if (rc == MQTT_CONNACK_BAD_CREDENTIALS) {
        m->st.auth_bad_credentials++;
        m->mx->auth_failures++;
        why = "bad user name or password";
    } else if (rc != MQTT_CONNACK_ACCEPTED) {
        m->st.auth_not_authorized++;
        m->mx->auth_failures++;
        why = "anonymous clients are not allowed (auth.allow_anonymous: false)";
    } else if (p->will_flag && security_has_acl(sec)) {
        /* The user name is NUL-terminated for the ACL: copy it. */
        char *u = has_user ? dup_bytes(user, ulen) : NULL;
        char *id = dup_bytes(cid, cid_len);
        bool ok =
            id && (!has_user || u) &&
            security_can_publish(sec, u, id, (const char *)p->will_topic.ptr, p->will_topic.len);
        free(u);
        free(id);
        if (!ok) {
            rc = MQTT_CONNACK_NOT_AUTHORIZED;
            m->st.auth_not_authorized++;
            m->st.acl_denied++;
            m->mx->acl_denied++;
            log_str(tb, sizeof(tb), (const char *)p->will_topic.ptr, p->will_topic.len);
            why = "the ACL does not allow publishing on the will topic";
        }
    }
    if (delay && c->ops->hold)
        c->ops->hold(c->ud, delay);
    if (rc == MQTT_CONNACK_ACCEPTED)
        return 0;
    conn_send_connack(c, false, (uint8_t)rc);
    /* Rate-limited: a guesser or a misconfigured fleet must not flood the log. */
    refuse(c, METRICS_REFUSED_NOT_AUTHORIZED, LOG_WARN,
           "connection refused (CONNACK %d): client id '%s', user '%s': %s%s%s%s%s", rc,
           log_str(idb, sizeof(idb), cid, cid_len),
           has_user ? log_str(ub, sizeof(ub), user, ulen) : "(none)", why, tb[0] ? " '" : "", tb,
           tb[0] ? "'" : "",
           delay ? "; answer delayed after recent failures from this address" : "");
    return -1;
}

static int handle_connect(session_conn_t *c, const mqtt_connect_t *p) {
    session_mgr_t *m = c->mgr;
    const config_mqtt_t *mq = &m->cfg->mqtt;
    char idb[LOG_ID_MAX];
    const char *cid = (const char *)p->client_id.ptr;
    size_t cid_len = p->client_id.len;
    char gen[40];

    if (mq->max_keepalive_s && p->keepalive > mq->max_keepalive_s) {
        conn_send_connack(c, false, MQTT_CONNACK_ID_REJECTED);
        refuse(c, METRICS_REFUSED_IDENTIFIER_REJECTED, LOG_WARN,
               "keepalive %u s above max_keepalive_s %u", p->keepalive, mq->max_keepalive_s);
        return FEED_CLOSED;
    }
    if (cid_len == 0) {
        if (!p->clean_session) {
            conn_send_connack(c, false, MQTT_CONNACK_ID_REJECTED);
            refuse(c, METRICS_REFUSED_IDENTIFIER_REJECTED, LOG_WARN,
                   "empty client id with clean session 0 [MQTT-3.1.3-8]");
            return FEED_CLOSED;
        }
        do {
            snprintf(gen, sizeof(gen), "m2k-auto-%" PRIu64, ++m->next_auto_id);
        } while (find_by_cid(m, gen, strlen(gen)));
        cid = gen;
        cid_len = strlen(gen);
    }

    /* Decided before the takeover below: a client that fails to log in must
     * not disconnect the session it names. */
    if (m->o.security && authorize_connect(c, p, cid, cid_len) != 0)
        return FEED_CLOSED;

    session_t *s = find_by_cid(m, cid, cid_len);
    if (s && s->conn) {
        m->st.takeovers++;
        conn_end(s->conn, LOG_INFO, true, true, "taken over by a new connection from %s",
                 c->remote);
        s = find_by_cid(m, cid, cid_len); /* a clean session is gone now */
    }
    bool present = false;
    if (s && (p->clean_session || s->clean)) {
        detached_remove(m, s);
        session_destroy(m, s);
        s = NULL;
    }
    if (s) {
        detached_remove(m, s);
        present = true;
    } else {
        s = session_create(m, cid, cid_len, p->clean_session);
        if (!s) {
            conn_send_connack(c, false, MQTT_CONNACK_UNAVAILABLE);
            refuse(c, METRICS_REFUSED_SERVER_UNAVAILABLE, LOG_ERROR,
                   "out of memory creating a session");
            return FEED_CLOSED;
        }
    }
    if (p->will_flag) {
        c->will_topic = dup_bytes(p->will_topic.ptr, p->will_topic.len);
        c->will_payload = (uint8_t *)dup_bytes(p->will_payload.ptr, p->will_payload.len);
        c->will_topic_len = (uint16_t)p->will_topic.len;
        c->will_payload_len = (uint16_t)p->will_payload.len;
        c->will_qos = p->will_qos;
        c->will_retain = p->will_retain;
        c->will = c->will_topic && c->will_payload;
    }
    if (c->identity) {
        c->username = dup_bytes(c->identity, strlen(c->identity));
        c->username_len = (uint16_t)strlen(c->identity);
        c->has_username = c->username != NULL;
    } else if (p->has_username) {
        c->username = dup_bytes(p->username.ptr, p->username.len);
        c->username_len = (uint16_t)p->username.len;
        c->has_username = c->username != NULL;
    }
    if ((p->will_flag && !c->will) || ((p->has_username || c->identity) && !c->has_username)) {
        c->s = s;
        s->conn = c;
        conn_send_connack(c, false, MQTT_CONNACK_UNAVAILABLE);
        refuse(c, METRICS_REFUSED_SERVER_UNAVAILABLE, LOG_ERROR, "out of memory in CONNECT");
        return FEED_CLOSED;
    }
    s->conn = c;
    c->s = s;
    if (++s->conn_gen == 0)
        s->conn_gen = 1;
    c->gen = s->conn_gen;
    c->keepalive = p->keepalive;
    c->state = CONN_ACTIVE;
    conn_send_connack(c, present, MQTT_CONNACK_ACCEPTED);
    m->st.connects++;
    log_client(LOG_INFO, conn_id(c, idb, sizeof(idb)), c->remote,
               "connected (clean session %d, keepalive %u s, session present %d)", p->clean_session,
               p->keepalive, present);
    conn_check_window(c);
    return FEED_OK;
}

/* Queues an answer that needs no Kafka round trip behind the pending ones. */
static int push_done(session_conn_t *c, uint8_t qos, uint16_t pid) {
    session_t *s = c->s;
    if (ring_reserve(c->mgr, s) != 0)
        return -1;
    inflight_t *e = ring_at(s, s->ring_count);
    memset(e, 0, sizeof(*e));
    e->ack_gen = c->gen;
    e->packet_id = pid;
    e->qos = qos;
    e->state = IF_OK;
    e->recv_us = (uint32_t)c->mgr->mono_us;
    s->ring_count++;
    s->ring_qos2 += qos == 2;
    s->next_seq++;
    s->ring_used = true;
    ring_pop_completed(c->mgr, s);
    return 0;
}

/* The ACL decision for a PUBLISH, with a one-topic cache per connection. */
static bool publish_allowed(session_conn_t *c, const mqtt_publish_t *p) {
    security_t *sec = c->mgr->o.security;
    const char *topic = (const char *)p->topic.ptr;
    size_t len = p->topic.len;
    if (!security_has_acl(sec))
        return true;
    uint32_t gen = security_generation(sec);
    if (c->acl_topic && c->acl_gen == gen && c->acl_topic_len == len &&
        memcmp(c->acl_topic, topic, len) == 0)
        return c->acl_ok;
    bool ok = security_can_publish(sec, c->has_username ? c->username : NULL, c->s->client_id,
                                   topic, len);
    /* Cached only for short topics: the cache must not double a big packet. */
    if (len <= ACL_CACHE_TOPIC_MAX) {
        if (!c->acl_topic)
            c->acl_topic = malloc(ACL_CACHE_TOPIC_MAX);
        if (c->acl_topic) {
            memcpy(c->acl_topic, topic, len);
            c->acl_topic_len = (uint16_t)len;
            c->acl_gen = gen;
            c->acl_ok = ok;
        }
    }
    return ok;
}

static int handle_publish(session_conn_t *c, const mqtt_publish_t *p) {
    session_mgr_t *m = c->mgr;
    session_t *s = c->s;
    char idb[LOG_ID_MAX], tb[LOG_ID_MAX];
    uint32_t max = max_inflight(m);
    m->mx->messages_received[p->qos <= 2 ? p->qos : 0]++;

    if (p->qos == 2) {
        if (pubrel_has(s, p->packet_id)) {
            m->st.qos2_duplicates++;
            if (push_done(c, 2, p->packet_id) != 0)
                goto oom;
            conn_check_window(c);
            return FEED_OK;
        }
        for (uint32_t i = 0; i < s->ring_count; i++) {
            inflight_t *e = ring_at(s, i);
            if (e->qos == 2 && e->packet_id == p->packet_id && e->state != IF_FAILED) {
                /* Still in flight: the report answers this connection, once. */
                e->ack_gen = c->gen;
                m->st.qos2_duplicates++;
                return FEED_OK;
            }
        }
        if (s->pubrel_count + s->ring_qos2 >= max) {
            violation(c, "qos2_window_full",
                      "%u QoS 2 messages await PUBREL or delivery (max_inflight %u)",
                      s->pubrel_count + s->ring_qos2, max);
            return FEED_CLOSED;
        }
    }
    if (m->o.security && !publish_allowed(c, p)) {
        m->st.acl_denied++;
        m->mx->acl_denied++;
        if (m->cfg->auth.acl_deny == ACL_DENY_DISCONNECT) {
            /* MQTT 3.1.1 has no negative acknowledgement: closing is the
             * only way a QoS 1/2 sender learns it was refused. */
            conn_end_rl(c, &m->rl_acl, LOG_WARN, true, true,
                        "the ACL does not allow publishing on topic '%s' (auth.acl_deny: "
                        "disconnect)",
                        log_str(tb, sizeof(tb), (const char *)p->topic.ptr, p->topic.len));
            return FEED_CLOSED;
        }
        log_client_ratelimited(&m->rl_acl, LOG_WARN, conn_id(c, idb, sizeof(idb)), c->remote,
                               "the ACL does not allow publishing on topic '%s': dropped "
                               "(auth.acl_deny: drop)",
                               log_str(tb, sizeof(tb), (const char *)p->topic.ptr, p->topic.len));
        if (p->qos > 0) {
            if (push_done(c, p->qos, p->packet_id) != 0)
                goto oom;
            conn_check_window(c);
        }
        return FEED_OK;
    }

    if (ring_reserve(m, s) != 0)
        goto oom;

    msg_t msg = {(const char *)p->topic.ptr,
                 p->topic.len,
                 p->payload.ptr,
                 p->payload.len,
                 p->qos,
                 p->retain};
    const char *ktopic, *key, *why = "";
    size_t key_len;
    int r = route_msg(c, &msg, &ktopic, &key, &key_len, &why);
    if (r == ROUTE_CLOSE) {
        m->st.unmapped_closed++;
        conn_end(c, LOG_WARN, true, true, "topic '%s' is not mapped: %s",
                 log_str(tb, sizeof(tb), msg.topic, msg.topic_len), why);
        return FEED_CLOSED;
    }
    if (r == ROUTE_DROP) {
        m->st.unmapped_dropped++;
        log_client_ratelimited(&m->rl_drop, LOG_WARN, conn_id(c, idb, sizeof(idb)), c->remote,
                               "dropped a message on topic '%s': %s",
                               log_str(tb, sizeof(tb), msg.topic, msg.topic_len), why);
        if (p->qos > 0 && push_done(c, p->qos, p->packet_id) != 0)
            goto oom;
        conn_check_window(c);
        return FEED_OK;
    }

    int rc = produce_msg(c, &msg, ktopic, key, key_len, SESSION_OPAQUE(s->id, s->next_seq));
    if (rc == KAFKA_ERR_QUEUE_FULL) {
        if (!c->blocked) {
            log_client(LOG_DEBUG, conn_id(c, idb, sizeof(idb)), c->remote,
                       "producer queue full, pausing until reports drain");
            c->blocked = true;
            c->blk_prev = NULL;
            c->blk_next = m->blocked;
            if (m->blocked)
                m->blocked->blk_prev = c;
            m->blocked = c;
        }
        if (!c->paused_queue) {
            c->paused_queue = true;
            if (!c->paused_inflight)
                c->ops->pause(c->ud);
        }
        return FEED_RETRY;
    }
    if (rc != KAFKA_OK) {
        conn_end(c, LOG_ERROR, true, true, "the producer refused a message on topic '%s' (%s)",
                 log_str(tb, sizeof(tb), msg.topic, msg.topic_len),
                 rc == KAFKA_ERR_FATAL ? "fatal producer error" : "produce error");
        return FEED_CLOSED;
    }
    inflight_t *e = ring_at(s, s->ring_count);
    e->ack_gen = p->qos ? c->gen : 0;
    e->packet_id = p->packet_id;
    e->qos = p->qos;
    e->state = IF_PENDING;
    e->produced = 1;
    e->recv_us = (uint32_t)m->mono_us;
    e->topic_len =
        (uint8_t)(msg.topic_len < INFLIGHT_TOPIC_MAX ? msg.topic_len : INFLIGHT_TOPIC_MAX);
    memcpy(e->topic, msg.topic, e->topic_len);
    s->ring_count++;
    s->ring_qos2 += p->qos == 2;
    s->next_seq++;
    s->ring_used = true;
    conn_check_window(c);
    return FEED_OK;
oom:
    conn_end(c, LOG_ERROR, true, true, "out of memory for the in-flight window");
    return FEED_CLOSED;
}

static int handle_packet(session_conn_t *c, const mqtt_packet_t *pkt) {
    session_mgr_t *m = c->mgr;
    m->mx->packets_received[pkt->type & 15]++;
    if (c->state == CONN_NEW) {
        if (pkt->type != MQTT_CONNECT) {
            violation(c, "first_packet_not_connect",
                      "first packet is %s, not CONNECT [MQTT-3.1.0-1]", mqtt_type_name(pkt->type));
            return FEED_CLOSED;
        }
        return handle_connect(c, &pkt->u.connect);
    }
    switch (pkt->type) {
    case MQTT_CONNECT:
        violation(c, "second_connect", "second CONNECT [MQTT-3.1.0-2]");
        return FEED_CLOSED;
    case MQTT_PUBLISH:
        return handle_publish(c, &pkt->u.publish);
    case MQTT_PUBREL:
        pubrel_remove(c->s, pkt->u.packet_id);
        conn_send_ack(c, MQTT_PUBCOMP, pkt->u.packet_id);
        return FEED_OK;
    case MQTT_SUBSCRIBE: {
        /* No subscriptions: every filter is refused (0x80). */
        uint32_t n = pkt->u.subscribe.count;
        uint8_t *codes = (uint8_t *)m->scratch;
        if (n > SCRATCH_SIZE / 2) {
            violation(c, "subscribe_too_many_filters", "SUBSCRIBE with %u filters", n);
            return FEED_CLOSED;
        }
        memset(codes, MQTT_SUBACK_FAILURE, n);
        uint8_t *out = codes + n;
        size_t len =
            mqtt_encode_suback(out, SCRATCH_SIZE - n, pkt->u.subscribe.packet_id, codes, n);
        if (len <= SCRATCH_SIZE - n)
            conn_send(c, out, len);
        return FEED_OK;
    }
    case MQTT_UNSUBSCRIBE:
        conn_send_ack(c, MQTT_UNSUBACK, pkt->u.subscribe.packet_id);
        return FEED_OK;
    case MQTT_PINGREQ: {
        uint8_t b[2];
        size_t n = mqtt_encode_empty(b, sizeof(b), MQTT_PINGRESP);
        conn_send(c, b, n);
        return FEED_OK;
    }
    case MQTT_DISCONNECT:
        conn_end(c, LOG_INFO, false, true, "DISCONNECT received");
        return FEED_CLOSED;
    case MQTT_CONNACK:
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
    case MQTT_PINGRESP:
        violation(c, "server_only_packet", "%s is a server-only packet", mqtt_type_name(pkt->type));
        return FEED_CLOSED;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        violation(c, "unexpected_ack",
                  "unexpected %s for id %u (the server sends no QoS 1/2 PUBLISH)",
                  mqtt_type_name(pkt->type), pkt->u.packet_id);
        return FEED_CLOSED;
    default:
        violation(c, "unexpected_packet_type", "unexpected packet type %d", (int)pkt->type);
        return FEED_CLOSED;
    }
}

/* ---- public API ---------------------------------------------------------- */

session_mgr_t *session_mgr_new(const session_mgr_opts_t *opts) {
    session_mgr_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->o = *opts;
    m->cfg = opts->cfg;
    m->mx = opts->metrics ? opts->metrics : &m->own_mx;
    m->rl_protocol = (log_ratelimit_t)LOG_RATELIMIT_INIT("protocol errors", 10, 10000);
    m->rl_refused = (log_ratelimit_t)LOG_RATELIMIT_INIT("refused connections", 10, 10000);
    m->rl_delivery = (log_ratelimit_t)LOG_RATELIMIT_INIT("delivery failures", 10, 10000);
    m->rl_drop = (log_ratelimit_t)LOG_RATELIMIT_INIT("unmapped messages dropped", 10, 10000);
    m->rl_acl = (log_ratelimit_t)LOG_RATELIMIT_INIT("ACL denied publish", 10, 10000);
    m->max_detached = opts->max_detached_sessions ? opts->max_detached_sessions
                                                  : m->cfg->mqtt.max_persistent_sessions;
    m->scratch = malloc(SCRATCH_SIZE);
    if (!m->scratch) {
        free(m);
        return NULL;
    }
    return m;
}

void session_mgr_free(session_mgr_t *m) {
    if (!m)
        return;
    while (m->conns) {
        session_conn_t *c = m->conns;
        m->conns = c->next;
        free(c->will_topic);
        free(c->will_payload);
        free(c->username);
        free(c->identity);
        free(c->acl_topic);
        if (c->s)
            c->s->conn = NULL;
        free(c);
    }
    for (size_t i = 0; i < m->by_id.nb; i++) {
        session_t *s = m->by_id.b[i];
        while (s) {
            session_t *nx = s->next_by_id;
            free(s->ring);
            free(s->pubrel);
            free(s);
            s = nx;
        }
    }
    free(m->by_id.b);
    free(m->by_cid.b);
    free(m->scratch);
    free(m);
}

void session_mgr_set_stopping(session_mgr_t *m) {
    m->stopping = true;
}

void session_mgr_set_now(session_mgr_t *m, uint64_t mono_ms, int64_t wall_ms) {
    m->mono_ms = mono_ms;
    m->wall_ms = wall_ms;
}

void session_mgr_set_now_us(session_mgr_t *m, uint64_t mono_us) {
    m->mono_us = mono_us;
}

void session_mgr_set_config(session_mgr_t *m, const config_t *cfg) {
    m->cfg = cfg;
    m->o.cfg = cfg;
    /* A lower bound takes effect at the next detach (the oldest go first). */
    if (!m->o.max_detached_sessions)
        m->max_detached = cfg->mqtt.max_persistent_sessions;
}

size_t session_mgr_paused_count(const session_mgr_t *m) {
    size_t n = 0;
    for (const session_conn_t *c = m->conns; c; c = c->next)
        n += c->state != CONN_CLOSED && (c->paused_inflight || c->paused_queue);
    return n;
}

const session_stats_t *session_mgr_stats(const session_mgr_t *m) {
    return &m->st;
}

size_t session_mgr_conn_count(const session_mgr_t *m) {
    return m->n_conns;
}

size_t session_mgr_session_count(const session_mgr_t *m) {
    return m->by_id.n;
}

void session_mgr_tick(session_mgr_t *m) {
    const config_mqtt_t *mq = &m->cfg->mqtt;
    for (session_conn_t *c = m->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->state == CONN_NEW && m->mono_ms - c->rx_ms >= mq->connect_timeout_s * 1000ull) {
            m->st.connect_timeouts++;
            m->mx->connections_refused[METRICS_REFUSED_CONNECT_TIMEOUT]++;
            conn_end_rl(c, &m->rl_refused, LOG_WARN, false, true,
                        "no CONNECT within connect_timeout_s %u", mq->connect_timeout_s);
            continue;
        }
        if (c->state != CONN_ACTIVE)
            continue;
        if (c->paused_inflight || c->paused_queue) {
            /* Not reading is our choice, not the client's silence. */
            c->rx_ms = m->mono_ms;
        } else if (c->keepalive && m->mono_ms - c->rx_ms >= (uint64_t)c->keepalive * 1500u) {
            m->st.keepalive_timeouts++;
            conn_end(c, LOG_WARN, true, true, "no packet within 1.5 x keepalive %u s",
                     c->keepalive);
            continue;
        }
        session_t *s = c->s;
        if (s->ring && s->ring_count == 0 && !s->ring_used) {
            free(s->ring);
            s->ring = NULL;
            s->ring_cap = s->ring_head = 0;
        }
        s->ring_used = false;
    }
    uint64_t expiry = (uint64_t)mq->session_expiry_s * 1000u;
    while (m->det_head && m->mono_ms - m->det_head->detached_at >= expiry) {
        session_t *s = m->det_head;
        char idb[LOG_ID_MAX];
        log_client(LOG_INFO, log_str(idb, sizeof(idb), s->client_id, s->client_id_len), NULL,
                   "session expired after %u s without a connection", mq->session_expiry_s);
        m->st.sessions_expired++;
        session_destroy(m, s);
    }
    /* A full queue also drains when no report is ours to see: retry now and then. */
    wake_blocked(m);
}

void session_on_delivery(session_mgr_t *m, uint64_t opaque, int err, const char *errstr) {
    uint32_t id = (uint32_t)(opaque >> 32), seq = (uint32_t)opaque;
    if (err == 0)
        m->st.delivered++;
    else
        m->st.delivery_failed++;
    if (id == 0) {
        if (err)
            log_ratelimited(&m->rl_delivery, LOG_ERROR, "will message not delivered to Kafka: %s",
                            errstr ? errstr : "?");
        wake_blocked(m);
        return;
    }
    session_t *s = find_by_id(m, id);
    uint32_t off = s ? seq - s->head_seq : 0;
    if (!s || off >= s->ring_count || ring_at(s, off)->state != IF_PENDING) {
        if (err)
            log_ratelimited(&m->rl_delivery, LOG_WARN,
                            "delivery failed for a message of a session that is gone: %s",
                            errstr ? errstr : "?");
        else
            log_debug("delivery report for a session that is gone (opaque %" PRIx64 ")", opaque);
        wake_blocked(m);
        return;
    }
    inflight_t *e = ring_at(s, off);
    session_conn_t *c = s->conn;
    bool close_conn = false;
    char idb[LOG_ID_MAX], tb[LOG_ID_MAX];
    if (err == 0) {
        e->state = IF_OK;
    } else {
        e->state = IF_FAILED;
        log_client_ratelimited(
            &m->rl_delivery, LOG_ERROR, log_str(idb, sizeof(idb), s->client_id, s->client_id_len),
            c ? c->remote : NULL, "Kafka did not take a QoS %u message on topic '%s%s': %s", e->qos,
            log_str(tb, sizeof(tb), e->topic, e->topic_len),
            e->topic_len == INFLIGHT_TOPIC_MAX ? "..." : "", errstr ? errstr : "?");
        /* The client resends what it got no ack for once it reconnects. */
        close_conn = c && e->ack_gen && e->ack_gen == s->conn_gen;
    }
    if (close_conn) {
        /* Close before popping: no later ack may overtake the missing one. */
        conn_end(c, LOG_WARN, true, true,
                 "Kafka did not confirm a message; the client must "
                 "resend it");
        s = find_by_id(m, id); /* a clean session is gone with its connection */
        if (s)
            ring_pop_completed(m, s);
        wake_blocked(m);
        return;
    }
    ring_pop_completed(m, s);
    if (c) {
        if (c->send_failed)
            conn_end(c, LOG_WARN, true, true, "output buffer limit reached");
        else
            conn_maybe_resume(c);
    }
    wake_blocked(m);
}

session_conn_t *session_conn_new(session_mgr_t *m, const session_conn_ops_t *ops, void *ud,
                                 const char *remote) {
    if (!remote)
        remote = "?";
    size_t rlen = strnlen(remote, 63);
    session_conn_t *c = calloc(1, sizeof(*c) + rlen + 1);
    if (!c)
        return NULL;
    c->mgr = m;
    c->ops = ops;
    c->ud = ud;
    memcpy(c->remote, remote, rlen);
    c->rx_ms = m->mono_ms;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->n_conns++;
    return c;
}

ssize_t session_feed(session_conn_t *c, const uint8_t *buf, size_t len) {
    session_mgr_t *m = c->mgr;
    size_t off = 0;
    if (c->state == CONN_CLOSED)
        return -1;
    while (off < len && !c->paused_inflight && !c->paused_queue) {
        mqtt_packet_t pkt;
        ssize_t n = mqtt_decode(buf + off, len - off, m->cfg->mqtt.max_packet_size, &pkt);
        if (n == 0)
            break;
        if (n < 0) {
            if (n == MQTT_ERR_PROTOCOL_LEVEL && c->state == CONN_NEW) {
                conn_send_connack(c, false, MQTT_CONNACK_BAD_PROTOCOL);
                refuse(c, METRICS_REFUSED_PROTOCOL_VERSION, LOG_WARN,
                       "unsupported protocol level %u (only 4, MQTT 3.1.1) [MQTT-3.1.2-2]",
                       pkt.u.connect.protocol_level);
                return -1;
            }
            mqtt_fixed_header_t fh;
            if (n == MQTT_ERR_PACKET_TOO_LARGE &&
                mqtt_decode_fixed_header(buf + off, len - off, &fh) > 0) {
                violation(c, mqtt_errname((int)n),
                          "%s %s packet of %" PRIu64 " bytes is over max_packet_size %u",
                          mqtt_errname((int)n), mqtt_type_name(fh.type),
                          (uint64_t)fh.header_len + fh.remaining_length,
                          m->cfg->mqtt.max_packet_size);
                return -1;
            }
            violation(c, mqtt_errname((int)n), "%s: %s", mqtt_errname((int)n),
                      mqtt_strerror((int)n));
            return -1;
        }
        c->rx_ms = m->mono_ms;
        int r = handle_packet(c, &pkt);
        if (r == FEED_RETRY)
            break;
        if (r == FEED_CLOSED || c->state == CONN_CLOSED)
            return -1;
        if (c->send_failed) {
            conn_end(c, LOG_WARN, true, true, "output buffer limit reached");
            return -1;
        }
        off += (size_t)n;
    }
    return (ssize_t)off;
}

void session_conn_lost(session_conn_t *c, const char *reason) {
    conn_end(c, LOG_INFO, true, false, "%s", reason);
}

void session_conn_close(session_conn_t *c, const char *reason) {
    conn_end(c, LOG_WARN, true, true, "%s", reason);
}

bool session_conn_paused(const session_conn_t *c) {
    return c->paused_inflight || c->paused_queue;
}

uint32_t session_conn_inflight(const session_conn_t *c) {
    return c->s ? c->s->ring_count : 0;
}

const char *session_conn_remote(const session_conn_t *c) {
    return c->remote;
}

bool session_conn_closed(const session_conn_t *c) {
    return c->state == CONN_CLOSED;
}

void session_conn_free(session_conn_t *c) {
    if (!c)
        return;
    session_mgr_t *m = c->mgr;
    conn_end(c, LOG_INFO, true, false, "connection freed");
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->n_conns--;
    free(c->username);
    free(c->identity);
    free(c->acl_topic);
    free(c);
}

int session_conn_set_identity(session_conn_t *c, const char *user) {
    char *d = dup_bytes(user, strlen(user));
    if (!d)
        return -1;
    free(c->identity);
    c->identity = d;
    return 0;
}
