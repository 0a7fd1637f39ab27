/* What the session files share; private to src/mqtt/ (include/mqtt/session.h
 * is the contract with the server and the daemon). Which file holds what:
 * docs/architecture.md, "The session in src/mqtt/". */
#ifndef M2K_MQTT_SESSION_INT_H
#define M2K_MQTT_SESSION_INT_H

#include <stdarg.h>
#include <stddef.h>

#include "mqtt/codec.h"
#include "mqtt/codec5.h"
#include "downlink/queue.h"
#include "downlink/subs.h"
#include "mqtt/session.h"
#include "util/hash.h"
#include "util/hmap.h"
#include "util/list.h"
#include "util/log.h"

#define INFLIGHT_TOPIC_MAX 42     /* topic prefix kept for the failure log line */
#define SCRATCH_SIZE (132 * 1024) /* rendered Kafka topic + key (topic <= 64 KiB) */
#define LOG_ID_MAX 64

/* The bytes to allocate for a struct whose flexible array member holds n
 * bytes: counted from the member's offset, not from sizeof (its tail padding
 * can push a session or connection into the next malloc size class, 16 bytes
 * more per idle connection), and never less than sizeof. */
#define FLEX_SIZE(type, member, n)                                                                 \
    (offsetof(type, member) + (n) > sizeof(type) ? offsetof(type, member) + (n) : sizeof(type))

/* IF_NACK: answered with a reason code >= 0x80 (MQTT 5), no PUBREL follows. */
enum { IF_PENDING = 0, IF_OK = 1, IF_FAILED = 2, IF_NACK = 3 };
/* What a packet handler tells the feed loop: go on, stop here and feed this
 * packet again later (producer queue full), or the connection is closed. */
enum { FEED_OK = 0, FEED_RETRY = 1, FEED_CLOSED = 2 };

/* A connection's life; session_set_state asserts the transitions:
 * NEW -> CONNECTED (CONNECT accepted) -> CLOSING (the output bound was hit:
 * nothing more is sent, and the step under way ends by closing) -> CLOSED.
 * NEW and CONNECTED may go straight to CLOSED. */
typedef enum { CONN_NEW, CONN_CONNECTED, CONN_CLOSING, CONN_CLOSED } conn_state_t;

typedef struct {
    uint64_t hash;    /* QoS 2: session_mgr_qos2_hash of the message (0: none) */
    uint32_t ack_gen; /* connection generation owed the ack; 0 = none */
    /* PUBLISH received, low 32 bits of the us clock: the ack latency is the
     * wrapping difference, right for anything under 71 minutes. */
    uint32_t recv_us;
    uint16_t packet_id;
    /* produced: went to Kafka (else completed on arrival); again: the answer
     * to a QoS 2 PUBLISH resent while its id awaits PUBREL */
    uint8_t qos : 2, produced : 1, again : 1;
    uint8_t spool_full : 1; /* refused (0x97) by a full spool */
    uint8_t durable : 1;    /* session_mgr_qos2_durable */
    /* RETAIN 1 with `retained:` (QoS 1/2): the copy to the retained topic
     * has its own report (SESSION_OPAQUE_COPY), awaited beside the mapped
     * record's; owed: the copy is not produced yet (its producer queue or
     * the spool was full), the PUBLISH is fed again for it alone. */
    uint8_t copy : 1, owed : 1;
    /* IF_*; with the spool, RETAIN 1: which of the two records is durable
     * (durable above is set once both are) */
    uint8_t state : 2, map_durable : 1, copy_durable : 1;
    /* MQTT 5: the ack's reason code (0: success). While IF_PENDING: non-zero
     * once one of the entry's two reports failed (the other still awaited). */
    uint8_t reason;
    uint8_t topic_len : 6;
    uint8_t mapped_in : 1; /* the mapped record's report came */
    char topic[INFLIGHT_TOPIC_MAX];
} inflight_t;
_Static_assert(sizeof(inflight_t) == 64, "an in-flight entry is one cache line");

/* A server-sent QoS 1/2 PUBLISH the client has not acknowledged yet. */
enum { OB_PUBACK = 1, OB_PUBREC = 2, OB_PUBCOMP = 3 };
typedef struct {
    dl_qentry_t *e; /* the message; NULL once PUBREC came (only PUBCOMP awaited) */
    uint16_t pid;
    uint8_t state; /* OB_* */
} ob_flight_t;

/* A session's downlink state, allocated with its first message or
 * subscription: the queue (mqtt.max_queued_messages) and the in-flight ring
 * in send order, which is the order of the resend after a reconnect. Also
 * what else only some sessions need (an MQTT 5 expiry, a will waiting for its
 * delay), so that session_t stays small (idle memory). Kept until the
 * session ends. */
typedef struct {
    dl_queue_t q;
    ob_flight_t *fl;
    uint32_t head, n, cap;
    uint16_t last_pid;
    uint16_t n_subs; /* subscriptions held (mqtt.max_subscriptions_per_session) */
    size_t bytes;    /* the messages queued and in flight (outbound_bytes) */
    /* No queued message expires before this (mono ms; 0: none expires):
     * outbound_expire looks at the queue only from then. */
    uint64_t next_expiry_ms;
    uint32_t sub_bytes; /* the filters' bytes (mqtt.max_subscription_bytes_per_session) */
    /* MQTT 5: the session expiry interval asked for, when below
     * session_expiry_s (0: session_expiry_s, as for 3.1.1). */
    uint32_t expiry_s;
    session_conn_t *will; /* MQTT 5: a will waiting for its delay (will.c) */
} outbound_t;

/* A connection's will (CONNECT with the will flag) in one allocation, so a
 * connection without one keeps a NULL pointer only: the topic and then the
 * payload (each NUL-terminated) follow the struct. */
typedef struct {
    mqtt5_props_t *props; /* MQTT 5: the will's properties (session5_props_dup) */
    uint8_t *payload;     /* in this allocation, after the topic */
    uint32_t delay;       /* MQTT 5: the will delay interval, s */
    uint16_t topic_len, payload_len;
    uint8_t qos;
    bool retain;
    char topic[];
} session_will_t;

/* The last ACL decision for a PUBLISH (publish_allowed), allocated with the
 * first one an ACL decides: valid for this topic and ACL generation (a client
 * usually publishes on few topics, often the same one). */
typedef struct {
    uint32_t gen;
    uint16_t len;
    bool ok;
    char topic[];
} acl_cache_t;

/* What a connection that publishes may cache, allocated with the first of
 * them (session_conn_caches): the last ACL decision, its MQTT 5 topic
 * aliases (alias_max of them once one is set) and the bytes of their topics
 * (mqtt.max_topic_alias_bytes). */
struct alias {
    char *topic;
    uint16_t len;
};
typedef struct {
    acl_cache_t *acl;
    struct alias *aliases;
    uint32_t alias_bytes;
} session_caches_t;

typedef struct session session_t;
/* Field order packs the struct: one of these lives as long as its client's
 * session, so every byte counts per idle connection. */
struct session {
    session_conn_t *conn;
    inflight_t *ring;          /* lazily allocated, grown up to max_inflight */
    session_qos2_id_t *pubrel; /* QoS 2 ids answered with PUBREC, awaiting PUBREL */
    hmap_node_t by_id, by_cid;
    list_t detached; /* in mgr->detached while kept without a connection */
    outbound_t *ob;  /* downlink and more: NULL until needed (outbound_get) */
    uint64_t detached_at;
    uint32_t id;
    uint32_t conn_gen;
    uint32_t head_seq, next_seq;
    uint32_t pubrel_count, pubrel_cap;
    uint32_t held; /* bytes counted in st.persistent_session_bytes while detached */
    /* Each at most mqtt.max_inflight (1..65535): ring_grow caps the ring there. */
    uint16_t ring_cap, ring_head, ring_count, ring_qos2, ring_qos1, ring_again;
    uint16_t client_id_len; /* MQTT strings are at most 65535 bytes */
    /* pubrel[0 .. pubrel_restored) came from the spool's state file at start
     * (store_qos2.c): they match a PUBLISH with DUP 1 only. */
    uint16_t pubrel_restored;
    bool clean : 1;
    bool ring_used : 1;   /* since the last tick */
    bool qos2_listed : 1; /* its id is in mgr->qos2_sids (store_qos2.c) */
    char client_id[];     /* NUL-terminated, allocated with the struct */
};
/* With a client id of up to 17 bytes (NUL included) it fills a 144-byte
 * malloc chunk (docs/performance.md, idle connections). */
_Static_assert(offsetof(session_t, client_id) <= 119, "session_t grew: idle memory");

/* Packed like session_t: the remote address string is allocated with it. */
struct session_conn {
    session_mgr_t *mgr;
    const session_conn_ops_t *ops;
    void *ud;
    void *data; /* session_conn_set_data's */
    session_t *s;
    /* Creation time while CONN_NEW (the connect timeout: no complete packet
     * is processed in that state but the CONNECT), then the time of the last
     * complete packet (keepalive); a waiting will's stand-in (will.c): when
     * the will is due. */
    uint64_t rx_ms;
    session_will_t *will; /* NULL: none (or it was published, dropped or moved) */
    /* The CONNECT's user name; before it, a client certificate's identity
     * (has_identity), which then overrides the CONNECT's. */
    char *username;
    session_caches_t *caches; /* NULL until a PUBLISH needs one */
    list_t node;              /* mgr->conns */
    list_t blocked;           /* in mgr->blocked while the producer queue is full */
    /* MQTT 5: the packet being handled (NULL for 3.1.1), and the client's
     * maximum packet size (0: the protocol's). */
    const mqtt5_packet_t *p5;
    uint32_t max_out;
    uint16_t alias_max; /* MQTT 5: the topic alias maximum its CONNACK gave */
    uint16_t recv_max;  /* MQTT 5: the client's receive maximum (65535 if not given) */
    uint32_t gen;
    uint16_t keepalive;
    uint16_t username_len; /* 2-byte MQTT length */
    uint8_t state;         /* conn_state_t */
    uint8_t level;         /* protocol level of the accepted CONNECT; 0 before */
    /* Packed: one of these per connection (idle memory, docs/performance.md). */
    bool has_username : 1, has_identity : 1, paused_inflight : 1, paused_queue : 1;
    /* MQTT 5: the CONNECT was level 5 (set before it is handled); the client
     * takes reason strings; its session ends at disconnect (expiry 0). */
    bool v5 : 1, problem_info : 1, expiry_zero : 1;
    /* The packet being fed is one a handler answered FEED_RETRY (a full
     * producer queue, spool or in-flight ring): it is not counted again. */
    bool refeed : 1;
    char remote[]; /* "addr:port", NUL-terminated */
};
/* One per connection, idle ones included: with an address of up to 17 bytes
 * (NUL included) it fills a 160-byte malloc chunk (docs/performance.md, idle
 * connections). What only some connections need goes behind a pointer (the
 * will, the caches). */
_Static_assert(offsetof(session_conn_t, remote) <= 135, "session_conn_t grew: idle memory");

struct session_mgr {
    session_mgr_opts_t o;
    const config_t *cfg;
    uint64_t mono_ms;
    int64_t wall_ms;
    uint64_t mono_us;
    hmap_t by_id, by_cid;
    uint32_t next_session_id;
    list_t conns;    /* every session_conn_t */
    list_t blocked;  /* connections waiting for room in the producer queue */
    list_t detached; /* sessions without a connection, oldest first */
    list_t wills;    /* the stand-ins of wills waiting for their delay (will.c) */
    size_t n_conns, n_detached, max_detached;
    size_t n_detached_short; /* detached sessions with their own expiry_s */
    char *scratch;
    bool stopping;
    bool wills_now;       /* shutdown began: no will waits for its delay any more */
    session_limits_t *rl; /* opts.limits or own_rl */
    hmap_t ktopics;       /* ktopic_t: the Kafka topics rendered so far */
    /* Downlink: every session's subscriptions, keyed by session id (never
     * reused), and the match vector reused by each delivery. */
    dl_subs_t *subs;
    dl_matches_t matches;
    uint8_t *xids; /* one delivery's subscription identifier properties, grown */
    size_t xids_cap;
    dl_queue_stats_t qstats; /* every session's queue */
    session_stats_t st;
    uint64_t qos2_version; /* session_mgr_qos2_version */
    uint8_t qos2_key[16];  /* session_mgr_qos2_set_key */
    bool qos2_keyed;
    uint64_t qos2_saved; /* session_mgr_qos2_saved: the version on disk */
    /* PUBCOMPs waiting for a save (store_qos2.c), oldest at pubcomp_head. */
    struct qos2_pubcomp *pubcomp;
    size_t pubcomp_head, pubcomp_n, pubcomp_cap;
    /* Once a key is set, the ids of the sessions session_mgr_qos2_each
     * visits: every one that holds QoS 2 ids or changed since the last walk
     * (qos2_changed adds it); qos2_all: walk every session instead (the
     * first walk, or an id not added for want of memory). */
    uint32_t *qos2_sids;
    size_t qos2_n, qos2_cap;
    bool qos2_all;
    /* Last: used only without opts.limits, away from the hot fields. */
    session_limits_t own_rl;
};

static inline uint32_t max_inflight(const session_mgr_t *m) {
    return m->cfg->mqtt.max_inflight ? m->cfg->mqtt.max_inflight : 1;
}

/* ---- session.c: connections ---- */

/* The connection's caches, allocated when it has none; NULL when out of
 * memory. */
session_caches_t *session_conn_caches(session_conn_t *c);

void session_set_state(session_conn_t *c, conn_state_t to);
/* A client id or topic for a log line: bounded, control bytes masked. */
const char *session_log_str(char *out, size_t cap, const char *p, size_t n);
/* The connection's client id for a log line ("-" before CONNECT). */
const char *session_log_id(const session_conn_t *c, char *buf, size_t cap);
/* A NUL-terminated copy (malloc); NULL when out of memory. */
char *session_dup(const void *p, size_t n);
/* Queues one packet for the client; a refused send moves a connected
 * connection to CLOSING. */
void session_send(session_conn_t *c, const uint8_t *buf, size_t n);
void session_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid);
void session_send_connack(session_conn_t *c, bool present, uint8_t rc);
/* Ends a connection once: one log line (through `rl` when not NULL), the
 * will unless `will` is false (DISCONNECT), detaches its session, and tells
 * the server unless it told us (`call_close`). */
void session_end(session_conn_t *c, log_ratelimit_t *rl, log_level_t lvl, bool will,
                 bool call_close, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Refuses a CONNECT: sends CONNACK rc, counts, logs rate-limited, closes. */
void session_refuse(session_conn_t *c, uint8_t rc, log_level_t lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Closes for a protocol violation of `kind` (SESSION_ERR_*, or -MQTT_ERR_*
 * of the codec), counted as a refusal before CONNECT was accepted. */
void session_violation(session_conn_t *c, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- store.c: sessions ---- */

void store_init(session_mgr_t *m);
/* Frees every session (their connections are gone or being freed). */
void store_free(session_mgr_t *m);
session_t *store_find_cid(const session_mgr_t *m, const char *cid, size_t len);
/* NULL when out of memory or the client id is over 65535 bytes. */
session_t *store_create(session_mgr_t *m, const char *cid, size_t len, bool clean);
void store_destroy(session_mgr_t *m, session_t *s);
/* Its connection is gone: destroys a clean session, keeps the others
 * (discarding the oldest kept over the bound). */
void store_detach(session_mgr_t *m, session_t *s);
/* A kept session gets a connection again. */
void store_attach(session_mgr_t *m, session_t *s);
/* A kept session's ring, QoS 2 ids or downlink messages changed size:
 * counts its bytes again. */
void store_resize(session_mgr_t *m, session_t *s);
/* Sets the session's MQTT 5 expiry interval (0: session_expiry_s) while it
 * has a connection; 0, or -1 when out of memory (unchanged then). */
int store_set_expiry(session_mgr_t *m, session_t *s, uint32_t expiry_s);
/* What the session holds now, as counted against mqtt.max_session_bytes. */
size_t store_held(const session_t *s);
/* Destroys the sessions kept longer than their expiry (session_expiry_s, or
 * a shorter one an MQTT 5 client asked for). */
void store_expire(session_mgr_t *m);

/* Hot: every delivery report looks up its session. */
static inline session_t *store_find_id(const session_mgr_t *m, uint32_t id) {
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, &m->by_id, m2k_hash_u32(id)) {
        session_t *s = HMAP_ENTRY(n, session_t, by_id);
        if (s->id == id)
            return s;
    }
    return NULL;
}

/* ---- inflight.c: the ring, QoS 2 ids, backpressure ---- */

/* i < ring_cap and ring_head < ring_cap: one compare instead of a division
 * (the capacity need not be a power of two: it stops at max_inflight). */
static inline inflight_t *ring_at(session_t *s, uint32_t i) {
    uint32_t j = s->ring_head + i;
    return &s->ring[j >= s->ring_cap ? j - s->ring_cap : j];
}
int ring_grow(session_mgr_t *m, session_t *s);
/* Room for one more entry at ring_at(s, s->ring_count): 0, or -1 (no memory). */
static inline int ring_reserve(session_mgr_t *m, session_t *s) {
    return s->ring_count < s->ring_cap ? 0 : ring_grow(m, s);
}
/* The tick: frees an empty ring not used since the last tick. */
void ring_release_idle(session_t *s);
/* The session lost its connection: the ring and the QoS 2 ids are cut to what
 * they hold (freed when empty), so a kept session does not keep a window. */
void ring_shrink(session_t *s);
/* Queues an answer that needs no Kafka round trip behind the pending ones. */
int ring_push_done(session_conn_t *c, uint8_t qos, uint16_t pid);
/* The same with an MQTT 5 reason code (>= 0x80: a negative ack). */
int ring_push_reason(session_conn_t *c, uint8_t qos, uint16_t pid, uint8_t reason);
/* The PUBREC again for a QoS 2 PUBLISH resent while its id awaits PUBREL. */
int ring_push_again(session_conn_t *c, uint16_t pid);
/* MQTT 5 at a full spool: PUBACK/PUBREC 0x97 with SESSION_SPOOL_FULL_WHY. */
int ring_push_spool_full(session_conn_t *c, uint8_t qos, uint16_t pid);
#define SESSION_SPOOL_FULL_WHY "the spool is full (spool.max_bytes or the disk)"
/* Pops completed entries from the head and sends the acks now in order. */
void ring_pop_completed(session_mgr_t *m, session_t *s);
/* Every report of e (in s, whose id is id) is in, or will never come: its
 * answer (e->reason non-zero: today's failure rules), then the acks in order.
 * May close s's connection (and free s with it). */
void inflight_settle(session_mgr_t *m, session_t *s, uint32_t id, inflight_t *e);
/* s's connection ends: a retained copy still owed will not be produced (the
 * PUBLISH is not fed again): its entry fails. */
void inflight_abandon_owed(session_mgr_t *m, session_t *s);
bool pubrel_has(const session_t *s, uint16_t pid);
/* The id's index in s->pubrel, or -1. */
int pubrel_index(const session_t *s, uint16_t pid);
/* Whether the id was there. */
bool pubrel_remove(session_t *s, uint16_t pid);
/* ---- store_qos2.c: QoS 2 ids across a restart ---- */

/* PUBREL: the id is released; PUBCOMP now, or once a state save without it
 * is on disk (session_mgr_qos2_saved). FEED_OK, or FEED_CLOSED when
 * SESSION_QOS2_PUBCOMP_MAX PUBCOMPs wait already. */
int qos2_pubrel(session_conn_t *c, uint16_t pid);
#define SESSION_QOS2_PUBCOMP_MAX (1u << 16)
void qos2_free(session_mgr_t *m);
/* The set session_mgr_qos2_each reports may have changed (a session that
 * outlives its connection gained or lost a QoS 2 id). */
void qos2_list(session_mgr_t *m, session_t *s);
static inline void qos2_changed(session_mgr_t *m, session_t *s) {
    if (!s->clean) {
        m->qos2_version++;
        if (!s->qos2_listed && m->qos2_keyed)
            qos2_list(m, s);
    }
}
void inflight_pause(session_conn_t *c);
/* Pauses reading when the window is full; not an MQTT 5 client's, which is
 * read on so that a PUBLISH over its receive maximum is seen (handle_publish.c
 * pauses it when a message finds no room). */
static inline void inflight_check_window(session_conn_t *c) {
    if (c->s && !c->v5 && !c->paused_inflight && c->s->ring_count >= max_inflight(c->mgr))
        inflight_pause(c);
}
/* The producer queue is full: stop reading until a report (or the tick) wakes it. */
void inflight_block(session_conn_t *c);
void inflight_wake_blocked(session_mgr_t *m);

/* ---- handle_*.c: packet handlers (the table is in dispatch.c) ---- */

typedef int (*session_handler_fn)(session_conn_t *c, const mqtt_packet_t *pkt);

int session_on_connect(session_conn_t *c, const mqtt_packet_t *pkt);
/* Publishes the connection's will through the topic map (logged, counted). */
void session_publish_will(session_conn_t *c);
int session_on_publish(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_pubrel(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_client_ack(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_subscribe(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_unsubscribe(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_pingreq(session_conn_t *c, const mqtt_packet_t *pkt);
int session_on_disconnect(session_conn_t *c, const mqtt_packet_t *pkt);

/* A message to route and produce: a PUBLISH or a will. */
typedef struct {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    bool retain;
    const mqtt5_props_t *props; /* MQTT 5 PUBLISH: its properties; else NULL */
} msg_t;

/* ROUTE_REFUSE: a rule maps the message but its Kafka topic is refused
 * (counted in st.messages_refused; *ktopic is the rendered name, or NULL). */
enum { ROUTE_OK = 0, ROUTE_DROP = 1, ROUTE_CLOSE = 2, ROUTE_REFUSE = 3 };
/* Resolves the Kafka topic and key; applies the unmapped policy. */
int session_route(session_conn_t *c, const msg_t *msg, const char **ktopic, const char **key,
                  size_t *key_len, const char **why);
void ktopics_init(session_mgr_t *m);
void ktopics_free(session_mgr_t *m);
/* Hands one record to the producer; returns its KAFKA_* code. */
int session_produce(session_conn_t *c, const msg_t *msg, const char *ktopic, const char *key,
                    size_t key_len, uint64_t opaque);
/* Hands a RETAIN 1 message's copy to the retained topic (key = MQTT topic,
 * value = payload, none: a tombstone; mqtt.qos header); returns its KAFKA_*
 * code. */
int session_produce_copy(session_conn_t *c, const msg_t *msg, uint64_t opaque);
/* A copy nobody waits for (QoS 0, a will): produced best effort; one the
 * producer refuses is logged and counted (st.retained_lost). */
void session_produce_copy_best_effort(session_conn_t *c, const msg_t *msg);

/* ---- outbound.c: downlink delivery ---- */

/* The connection (re)attached to its session after CONNACK: in-flight
 * messages are resent (PUBLISH with DUP, or PUBREL), then the queue flows. */
void outbound_resume(session_conn_t *c);
/* PUBACK, PUBREC, PUBCOMP from the client: FEED_OK, or FEED_CLOSED for an
 * id the server is not waiting for in that state. */
int outbound_on_ack(session_conn_t *c, const mqtt_packet_t *pkt);
/* Frees a session's downlink state (the session ends). */
void outbound_free(session_t *s);
/* The session's outbound_t, allocated (its queue empty) when it has none;
 * NULL when out of memory. */
outbound_t *outbound_get(session_mgr_t *m, session_t *s);
/* Its fields for what only some sessions need (0 or NULL without one). */
static inline uint32_t session_expiry(const session_t *s) {
    return s->ob ? s->ob->expiry_s : 0;
}
static inline session_conn_t *session_will(const session_t *s) {
    return s->ob ? s->ob->will : NULL;
}
/* The tick, for a session kept without a connection: its queued messages
 * past their expiry are dropped now (not when their turn comes), so they
 * hold no mqtt.max_queued_messages slot and no mqtt.max_session_bytes. */
void outbound_expire(session_mgr_t *m, session_t *s);
/* The bytes a session's downlink state holds (each queued or in-flight
 * message counted whole, though it may be shared): part of what a
 * persistent session kept without a connection counts against
 * mqtt.max_session_bytes. O(1): kept up to date as messages come and go. */
size_t outbound_bytes(const session_t *s);
/* A subscription granted at qos: the retained messages its filter matches
 * are queued for the client (RETAIN 1, at min(their QoS, qos), with its MQTT 5
 * subscription identifier when not 0), then sent as the window allows. */
void outbound_retained(session_conn_t *c, const char *filter, size_t len, uint8_t qos,
                       uint32_t sub_id);

/* ---- will.c: the will delay interval ---- */

/* The connection ends with its will owed: keeps the will in the session for
 * its delay when the session outlives the connection (moved into a stand-in
 * connection). Returns false when it is to be published now. */
bool will_defer(session_conn_t *c);
/* Publishes the session's waiting will, if any (`when` ends the log line). */
void will_publish(session_mgr_t *m, session_t *s, const char *when);
/* The client came back to its session: its waiting will is dropped. */
void will_cancel(session_mgr_t *m, session_t *s);
/* Publishes the wills whose delay has passed. */
void wills_tick(session_mgr_t *m);
/* The bytes a waiting will holds (counted as its session's). */
size_t will_bytes(const session_conn_t *w);
void will_free(session_conn_t *w);
/* The CONNECT's will (wp: its MQTT 5 properties, or NULL); NULL when out of
 * memory. */
session_will_t *will_new(const mqtt_connect_t *p, const mqtt5_props_t *wp);
void will_data_free(session_will_t *w);

/* ---- session5.c: what MQTT 5 adds ---- */

/* Decodes one level 5 packet (at most max bytes) and gives its 3.1.1 view in
 * pkt for the shared handlers (the rest stays in p5); returns as mqtt_decode
 * does. */
ssize_t session5_decode(session_conn_t *c, const uint8_t *buf, size_t len, size_t max,
                        mqtt_packet_t *pkt, mqtt5_packet_t *p5);
/* The v5 reason code for a 3.1.1 CONNACK return code. */
uint8_t session5_connack_reason(uint8_t rc);
void session5_send_connack(session_conn_t *c, bool present, uint8_t reason,
                           const mqtt5_props_t *props);
/* A refusing CONNACK with the reason string `why` (NULL: none). */
void session5_refuse_connack(session_conn_t *c, uint8_t reason, const char *why);
/* PUBACK, PUBREC, PUBREL, PUBCOMP with a reason code (0: the 3.1.1 bytes);
 * a code >= 0x80 carries a reason string when the client takes problem
 * information. */
void session5_send_ack(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t reason);
/* The same with the reason string why (NULL: the reason code's own). */
void session5_send_ack_why(session_conn_t *c, mqtt_type_t type, uint16_t pid, uint8_t reason,
                           const char *why);
/* Before a close for a protocol violation of `kind`: CONNACK (before the
 * CONNECT is accepted) or DISCONNECT with the reason code. */
void session5_tell_violation(session_conn_t *c, int kind, const char *why);
/* A copy of decoded properties that outlives the packet: one allocation
 * (free() it) holding the struct and its bytes; NULL when out of memory. */
mqtt5_props_t *session5_props_dup(const mqtt5_props_t *p);
/* Sends DISCONNECT with a reason code and the reason string `why` (NULL:
 * none), to a connected level 5 client only. */
void session5_disconnect_why(session_conn_t *c, uint8_t reason, const char *why);
/* The same with the reason code's own short text. */
void session5_send_disconnect(session_conn_t *c, uint8_t reason);
/* The headers an MQTT 5 PUBLISH adds after ours: mqtt.content_type,
 * mqtt.response_topic, mqtt.correlation_data, then the user properties in
 * order. Returns how many there are and sets *name_bytes to the room their
 * NUL-terminated names take; with h, writes them (names into `names`). */
size_t session5_headers(const mqtt5_props_t *p, kafka_header_t *h, char *names, size_t *name_bytes);
int session5_on_auth(session_conn_t *c, const mqtt_packet_t *pkt);
/* topic_map_ctx_t.property over an mqtt5_props_t: the first user property
 * named `name` (bytes compared). */
bool session5_user_property(const void *props, const char *name, size_t name_len, const char **val,
                            size_t *val_len);
/* A PUBLISH's topic alias [MQTT-3.3.2-10..12]: sets the alias (a topic
 * given) or replaces the empty topic by the alias's (in *p). Returns FEED_OK,
 * or FEED_CLOSED after DISCONNECT 0x94 (0 or above alias_max), 0x82 (an alias
 * never set) or running out of memory. */
int session5_topic_alias(session_conn_t *c, mqtt_publish_t *p);

/* This manager's share of mqtt.max_session_bytes (opts.workers). */
static inline uint64_t session_budget(const session_mgr_t *m) {
    return config_share(m->cfg->mqtt.max_session_bytes, m->o.workers);
}

#endif
