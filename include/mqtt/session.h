/* MQTT 3.1.1 session state machine: CONNECT, keepalive, QoS 0/1/2 flows,
 * will, persistent (clean session 0) sessions.
 *
 * No I/O, no clocks, no libuv, no librdkafka: bytes come in through
 * session_feed(), bytes go out and connections close through callbacks the
 * server provides, records leave through a producer callback, delivery
 * reports come back through session_on_delivery(), and time is whatever the
 * caller last passed to session_mgr_set_now(). */
#ifndef M2K_SESSION_H
#define M2K_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "downlink/queue.h"
#include "downlink/retained.h"
#include "downlink/route.h"
#include "kafka/producer.h"
#include "map/topic_map.h"
#include "util/log.h"

typedef struct session_mgr session_mgr_t;
typedef struct session_conn session_conn_t;

/* Routes an MQTT topic (topic_map_lookup's contract; returns TOPIC_MAP_*). */
typedef int (*session_route_fn)(void *ud, const char *topic, size_t topic_len,
                                const topic_map_ctx_t *ctx, char *scratch, size_t scratch_cap,
                                topic_map_result_t *out);
/* Enqueues one record; returns KAFKA_OK or KAFKA_ERR_* (kafka_produce's contract). */
typedef int (*session_produce_fn)(void *ud, const kafka_record_t *rec, uint64_t opaque);

/* Authentication and publish authorization (the daemon adapts auth/security.h).
 * Every callback gets `ud`. connect NULL: no check at CONNECT (nor of the will
 * topic); acl_generation NULL: every PUBLISH allowed. */
typedef struct {
    /* A CONNECT's credentials (security_connect's contract): MQTT_CONNACK_ACCEPTED,
     * _BAD_CREDENTIALS or _NOT_AUTHORIZED, and in *delay_ms how long to hold the
     * answer (failed-login throttle). `identity` (non-NULL) is a user name from a
     * verified client certificate; `addr` is the remote "ip:port". */
    int (*connect)(void *ud, const char *addr, const char *identity, bool has_user,
                   const char *user, size_t ulen, bool has_pw, const uint8_t *pw, size_t pwlen,
                   uint64_t now_ms, uint32_t *delay_ms);
    /* Whether the client may publish on the topic (user NULL: none given). */
    bool (*can_publish)(void *ud, const char *user, const char *client_id, const char *topic,
                        size_t topic_len);
    /* 0 while no ACL is in force (can_publish is then not called); otherwise a
     * value that changes whenever earlier can_publish answers may be stale.
     * Called once per PUBLISH: it guards each connection's cached decision. */
    uint32_t (*acl_generation)(void *ud);
    void *ud;
    /* Downlink (called only while acl_generation is not 0): whether the
     * client may subscribe to the filter (some read rule meets it), and may
     * receive a message on the topic name. NULL: allowed. */
    bool (*can_subscribe)(void *ud, const char *user, const char *client_id, const char *filter,
                          size_t filter_len);
    bool (*can_read)(void *ud, const char *user, const char *client_id, const char *topic,
                     size_t topic_len);
} session_auth_ops_t;

/* The rate limiters of a manager's repetitive lines, one per kind. The
 * workers' managers share one set (opts.limits) so each limit holds for the
 * process, not per worker. */
typedef struct {
    log_ratelimit_t protocol, refused, delivery, drop, acl, route, spool_drop;
    /* "connected" and every other "closing" line, and discarded sessions: a
     * reconnect storm must not flood the log */
    log_ratelimit_t connected, closing, evict;
    log_ratelimit_t sub;
} session_limits_t;

void session_limits_init(session_limits_t *l);

typedef struct {
    const config_t *cfg; /* borrowed; must outlive the manager */
    session_route_fn route;
    void *route_ud;
    session_produce_fn produce;
    void *produce_ud;
    /* Most sessions (clean session 0) kept without a connection; when one
     * more would be kept, the one that disconnected first is discarded (logged).
     * 0 = cfg->mqtt.max_connections. */
    size_t max_detached_sessions;
    session_auth_ops_t auth;
    /* Metrics: every count is a plain increment in session_stats_t, copied at
     * scrape time; only the ack latency (PUBLISH received to PUBACK/PUBREC
     * queued, in microseconds) is reported as it happens. NULL: not measured. */
    void (*ack_latency)(void *ud, uint32_t usec);
    void *ack_latency_ud;
    /* The retained store (borrowed; NULL without `retained:`): a new
     * subscription gets its matching messages first; those past their
     * message expiry are dropped from it then. */
    dl_retained_t *retained;
    /* Shared rate limiters (borrowed; session_limits_init'ed); NULL: the
     * manager's own. */
    session_limits_t *limits;
    /* Several workers: whether a client id the server assigns (MQTT 5, an
     * empty client id) lives on this manager's worker, so the client finds
     * its session when it reconnects with it. NULL: every id does. */
    bool (*owns_client_id)(void *ud, const char *id, size_t len);
    void *owns_ud;
    /* The workers whose managers share mqtt.max_persistent_sessions and
     * mqtt.max_session_bytes: this one keeps config_share(bound, workers)
     * of each, so the process stays within the bound. 0 or 1: all of it. */
    unsigned workers;
} session_mgr_opts_t;

/* What the server does for one connection. Every callback gets the `ud` given
 * to session_conn_new. None of them may call back into session_* functions for
 * the same connection synchronously (except session_conn_free after close). */
typedef struct {
    /* Queues bytes for the socket (copied); 0, or -1 if the output bound is hit
     * (the session then closes the connection). */
    int (*send)(void *ud, const void *buf, size_t len);
    /* The session has closed the connection (reason already logged): stop
     * reading, flush what was queued, close the socket, then session_conn_free. */
    void (*close)(void *ud);
    /* Stop reading: unprocessed bytes stay buffered in the server. */
    void (*pause)(void *ud);
    /* Reading may go on: the server feeds its buffered bytes again and restarts reading. */
    void (*resume)(void *ud);
    /* Optional (may be NULL): hold this connection's output and input for ms
     * milliseconds (the failed-login throttle delays a CONNACK this way); a
     * close requested meanwhile happens after the hold. */
    void (*hold)(void *ud, uint32_t ms);
} session_conn_ops_t;

/* Kinds of protocol error (session_stats_t.protocol_error_kinds): 1 ..
 * SESSION_ERR_CODEC_MAX are the codec's errors (kind = -MQTT_ERR_*), then the
 * session's own. session_error_name() names them for metrics. */
enum {
    SESSION_ERR_CODEC_MAX = 47,
    SESSION_ERR_FIRST_PACKET_NOT_CONNECT,
    SESSION_ERR_SECOND_CONNECT,
    SESSION_ERR_SERVER_ONLY_PACKET,
    SESSION_ERR_UNEXPECTED_ACK,
    SESSION_ERR_UNEXPECTED_PACKET_TYPE,
    SESSION_ERR_QOS2_WINDOW_FULL,
    SESSION_ERR_SUBSCRIBE_TOO_MANY_FILTERS,
    SESSION_ERR_TOPIC_ALIAS_INVALID, /* MQTT 5: DISCONNECT 0x94 */
    SESSION_ERR_AUTH_UNEXPECTED,     /* MQTT 5: AUTH without an authentication method */
    SESSION_ERR_RECEIVE_MAXIMUM,     /* MQTT 5: DISCONNECT 0x93 */
    SESSION_ERR_TOPIC_ALIAS_UNKNOWN, /* MQTT 5: an empty topic with an alias never set: 0x82 */
    SESSION_ERR_TOPIC_ALIAS_QUOTA,   /* MQTT 5: past mqtt.max_topic_alias_bytes: 0x97 */
    SESSION_ERR__COUNT
};
/* "MQTT_ERR_QOS_INVALID" (mqtt_errname), "second_connect", ...; NULL for 0. */
const char *session_error_name(int kind);

/* Why a message a rule maps was refused (never acknowledged): its rendered
 * Kafka topic is illegal (or with its key too long), starts with '_' though
 * its template does not, or is one more than kafka.max_topics. */
enum {
    SESSION_REFUSED_ILLEGAL_TOPIC,
    SESSION_REFUSED_RESERVED_TOPIC,
    SESSION_REFUSED_TOPIC_LIMIT,
    SESSION_REFUSED__COUNT
};

/* Counters, for logs and metrics (plain increments on the loop thread). */
typedef struct {
    uint64_t connects;        /* CONNACK 0 sent */
    uint64_t rejected;        /* CONNACK != 0 sent */
    uint64_t protocol_errors; /* connections closed for a protocol violation */
    uint64_t published;       /* records handed to the producer (wills included) */
    uint64_t delivered;       /* delivery reports with err == 0 */
    uint64_t delivery_failed; /* delivery reports with err != 0 */
    uint64_t unmapped_dropped;
    uint64_t unmapped_routed;
    uint64_t unmapped_closed;
    uint64_t messages_refused[SESSION_REFUSED__COUNT]; /* wills included */
    uint64_t kafka_topics;            /* gauge: distinct Kafka topics rendered (kafka.max_topics) */
    uint64_t qos2_duplicates;         /* QoS 2 PUBLISH answered without producing again */
    uint64_t qos2_save_failures;      /* saves of the QoS 2 state that failed (retried) */
    uint64_t qos2_pubcomp_wait_full;  /* closed: SESSION_QOS2_PUBCOMP_MAX PUBCOMPs waited */
    uint64_t queue_full;              /* produce attempts refused with KAFKA_ERR_QUEUE_FULL */
    uint64_t qos0_dropped_spool_full; /* QoS 0 PUBLISH refused with KAFKA_ERR_SPOOL_FULL */
    uint64_t takeovers;
    uint64_t keepalive_timeouts;
    uint64_t connect_timeouts;
    uint64_t sessions_expired;
    uint64_t sessions_evicted;       /* detached sessions discarded over max_detached_sessions */
    uint64_t sessions_evicted_bytes; /* ... over mqtt.max_session_bytes */
    /* Gauges: clean session 0 sessions kept without a connection, and the
     * bytes they hold (object, client id, in-flight ring, QoS 2 ids). */
    uint64_t persistent_sessions;
    uint64_t persistent_session_bytes;
    uint64_t wills_published;
    uint64_t wills_lost;           /* could not be produced (unmapped, queue full, produce error) */
    uint64_t wills_delayed;        /* gauge: MQTT 5 wills waiting for their will delay interval */
    uint64_t auth_bad_credentials; /* CONNACK 4 sent */
    uint64_t auth_not_authorized;  /* CONNACK 5 sent (anonymous refused, will topic denied) */
    uint64_t acl_denied;           /* PUBLISHes and will topics refused by the ACL */
    uint64_t auth_failures;        /* CONNACK 4, and 5 for an anonymous client */
    uint64_t connack_refused[6];   /* CONNACK != 0 sent, by return code ([0] unused) */
    uint64_t refused_protocol_errors; /* protocol errors before CONNECT was accepted */
    /* CONNECTs closed unanswered for a user name, will topic or will message
     * over its mqtt.max_* cap (a client id over its cap gets CONNACK 2) */
    uint64_t refused_too_long;
    uint64_t packets_received[16]; /* by MQTT control packet type */
    uint64_t packets_sent[16];
    uint64_t messages_received[3]; /* PUBLISH by QoS */
    uint64_t protocol_error_kinds[SESSION_ERR__COUNT];
    /* Downlink (Kafka -> MQTT): server-sent PUBLISH by QoS; deliveries not
     * made, by reason; SUBSCRIBE filters refused by the ACL or as invalid. */
    uint64_t deliveries[3];
    uint64_t delivery_denied;    /* the ACL's read rules refused the topic */
    uint64_t delivery_too_large; /* over the MQTT 5 client's maximum packet size */
    /* not queued for a session kept without a connection: mqtt.max_session_bytes */
    uint64_t delivery_session_bytes;
    uint64_t subscribe_denied;
    uint64_t subscribe_invalid;
    uint64_t subscribe_quota; /* past mqtt.max_subscription(s|_bytes)_per_session */
    uint64_t retained_lost;   /* retained-topic copies nobody waits for (QoS 0, wills) lost */
} session_stats_t;

/* Creates a manager; NULL on allocation failure. */
session_mgr_t *session_mgr_new(const session_mgr_opts_t *opts);
/* Frees every session and connection object; callbacks are not called. */
void session_mgr_free(session_mgr_t *m);

/* Shutdown: connections closed from now on publish no will (the producer is
 * being flushed and freed; a will produced now could not be confirmed). */
void session_mgr_set_stopping(session_mgr_t *m);
/* Shutdown begins: the wills waiting for their will delay interval are
 * published now (their sessions end with the process), before the producer
 * drains; from now on a will does not wait. */
void session_mgr_publish_delayed_wills(session_mgr_t *m);
/* The time the next calls see: a monotonic clock for timeouts and the wall
 * clock (Unix ms) stamped on records. */
void session_mgr_set_now(session_mgr_t *m, uint64_t mono_ms, int64_t wall_ms);
/* A finer monotonic clock (microseconds) for the ack latency histogram. */
void session_mgr_set_now_us(session_mgr_t *m, uint64_t mono_us);
/* Switches to another configuration (SIGHUP reload); borrowed like opts->cfg.
 * Limits, unmapped policy and headers apply from the next packet on;
 * in-flight messages are unaffected (their records are already produced). */
void session_mgr_set_config(session_mgr_t *m, const config_t *cfg);
/* Closes connections past connect_timeout_s or 1.5 x keepalive, expires
 * detached sessions, retries connections blocked on a full producer queue,
 * releases idle in-flight rings. Call about once a second. */
void session_mgr_tick(session_mgr_t *m);
/* A delivery report (from kafka_poll): completes the in-flight entry and sends
 * the acks that are now in order. Unknown opaques are ignored. */
void session_on_delivery(session_mgr_t *m, uint64_t opaque, int err, const char *errstr);
const session_stats_t *session_mgr_stats(const session_mgr_t *m);
size_t session_mgr_conn_count(const session_mgr_t *m);
size_t session_mgr_session_count(const session_mgr_t *m);
/* Connections not being read because of backpressure (walks the list: for
 * scrapes, not the hot path). */
size_t session_mgr_paused_count(const session_mgr_t *m);

/* A new network connection; `remote` ("1.2.3.4:5", "[::1]:5") is copied.
 * NULL on allocation failure. */
session_conn_t *session_conn_new(session_mgr_t *m, const session_conn_ops_t *ops, void *ud,
                                 const char *remote);
/* The user name a verified client certificate established (TLS listener
 * with use_identity_as_username): it replaces the CONNECT's user name and no
 * password is checked. Call before feeding the CONNECT. 0 or -1 (no memory). */
int session_conn_set_identity(session_conn_t *c, const char *user);
/* Decodes and handles whole packets from buf. Returns the bytes consumed (the
 * rest is an incomplete packet or was not processed because the connection is
 * paused; keep it and feed it again), or -1 when the connection was closed. */
ssize_t session_feed(session_conn_t *c, const uint8_t *buf, size_t len);
/* The peer went away or the socket failed (`reason` is logged): the will is
 * published, the session detached. Idempotent; does not call ops->close. */
void session_conn_lost(session_conn_t *c, const char *reason);
/* Closes for a server-side reason (output bound, shutdown): logs, publishes the
 * will, calls ops->close. Idempotent. */
void session_conn_close(session_conn_t *c, const char *reason);
/* What the server says before it closes a connection for a reason of its
 * own: an MQTT 5 client gets DISCONNECT 0x89 server busy (`busy`: a bound of
 * the server's) or 0x8B server shutting down; MQTT 3.1.1 has no such packet
 * (nothing is sent). The close follows (session_conn_lost or _close). */
void session_conn_goodbye(session_conn_t *c, bool busy);
/* True while the session wants no input (in-flight window or producer queue full). */
bool session_conn_paused(const session_conn_t *c);
/* Messages of this connection's session not yet acknowledged to the client. */
uint32_t session_conn_inflight(const session_conn_t *c);
bool session_conn_closed(const session_conn_t *c);
/* The remote address given to session_conn_new. */
const char *session_conn_remote(const session_conn_t *c);
/* The `ud` given to session_conn_new. */
void *session_conn_ud(const session_conn_t *c);
/* True once session_conn_set_identity succeeded. */
bool session_conn_has_identity(const session_conn_t *c);
/* One pointer the connection's owner keeps with it (NULL at first; the
 * session never reads it): the daemon's password-check state, without an
 * allocation of its own per connection (idle memory, docs/performance.md). */
void *session_conn_data(const session_conn_t *c);
void session_conn_set_data(session_conn_t *c, void *data);
/* Frees the connection object (closes it first if still open, as "freed"). */
void session_conn_free(session_conn_t *c);
/* Before its CONNECT was fed: the connection goes on elsewhere (another
 * worker, threads: N), so it ends here with `why` at debug level only. */
void session_conn_forget(session_conn_t *c, const char *why);

/* QoS 2 across a restart (with the spool; docs/semantics.md). The version
 * changes whenever the ids session_mgr_qos2_each reports may have changed.
 * each gets, per session that outlives its connection, the QoS 2 ids that
 * await PUBREL or are in flight (ids valid during the call), each with the
 * hash of the message it acknowledged (session_mgr_qos2_hash); returns 0 or -1
 * (no memory). session_mgr_qos2_restore puts such a session back at start,
 * detached (session expiry and the detached-session bounds apply): a PUBLISH
 * with DUP 1, one of its ids and that id's hash gets PUBREC without a record;
 * one with DUP 0 or another hash is a new message (the id was released and
 * reused before the release was saved); PUBREL gets PUBCOMP; 0, or -1 (no
 * memory, no ids, the client id taken). */
typedef struct {
    uint64_t hash; /* session_mgr_qos2_hash of the message; 0 before a key is set */
    uint16_t id;
} session_qos2_id_t;
typedef void (*session_qos2_each_fn)(void *ctx, const char *client_id, size_t len,
                                     const session_qos2_id_t *ids, size_t n);
uint64_t session_mgr_qos2_version(const session_mgr_t *m);
int session_mgr_qos2_each(session_mgr_t *m, session_qos2_each_fn each, void *ctx);
int session_mgr_qos2_restore(session_mgr_t *m, const char *client_id, size_t len,
                             const session_qos2_id_t *ids, size_t n);
/* The message of opaque (a session_produce_fn's) is durable (synced in the
 * spool, or confirmed by Kafka) though not yet delivered: its QoS 2 id is
 * reported by session_mgr_qos2_each from now. Until then an id in flight is
 * not (saved, a resend of a message never made durable would be answered
 * as a duplicate after a crash: lost). Returns whether it is a QoS 2
 * message of a session that outlives its connection, still in flight: its
 * PUBREC (session_on_delivery) must wait for a save of the ids. */
bool session_mgr_qos2_durable(session_mgr_t *m, uint64_t opaque);
/* The ids of `version` (session_mgr_qos2_version) are on disk: the PUBCOMPs
 * that waited for it go out. Once a key is set, a PUBREL of a session that
 * outlives its connection is answered only when the state without its id
 * is on disk (the client may reuse the id after PUBCOMP). */
void session_mgr_qos2_saved(session_mgr_t *m, uint64_t version);
/* PUBCOMPs waiting for a save. */
size_t session_mgr_qos2_pubcomps_waiting(const session_mgr_t *m);
/* A save failed: counted in qos2_save_failures. */
void session_mgr_qos2_save_failed(session_mgr_t *m);
/* The key of the QoS 2 hashes (kept in the state file, so the hashes of a
 * restored session compare): until it is set no hash is computed. */
void session_mgr_qos2_set_key(session_mgr_t *m, const uint8_t key[16]);
/* SipHash-2-4 under the key of a message's topic and payload (never 0). */
uint64_t session_mgr_qos2_hash(const session_mgr_t *m, const void *topic, size_t topic_len,
                               const void *payload, size_t payload_len);
/* Delivers one downlink message (topic name checked by the router, QoS 0..2)
 * to every session with a matching subscription at min(qos, granted QoS):
 * written at once, or queued (mqtt.max_queued_messages) for room in the
 * client's window or a persistent session's return; each checked against the
 * ACL's read rules when written. MQTT 5 clients get the headers whose names do
 * not start with "mqtt." as user properties (valid UTF-8 ones, in order).
 * The views need only live during the call.
 * Returns the number of sessions that took it (written or queued). */
size_t session_mgr_deliver(session_mgr_t *m, const char *topic, size_t topic_len,
                           const void *payload, size_t len, uint8_t qos, const dl_header_t *headers,
                           size_t n_headers);
/* The same for a record with its Kafka timestamp (ms since the epoch; -1:
 * none): an mqtt.message_expiry header (decimal seconds) counts from it. A
 * message past its expiry is not sent (a queued one is dropped when its
 * turn comes, counted in the queue stats' expired); an MQTT 5 PUBLISH
 * carries what is left of it. */
size_t session_mgr_deliver_at(session_mgr_t *m, const char *topic, size_t topic_len,
                              const void *payload, size_t len, uint8_t qos,
                              const dl_header_t *headers, size_t n_headers, int64_t timestamp_ms);
/* With several workers (threads: N), a record is made into one message for
 * all of them: session_mgr_dl_msg (on the consumer's worker, m for its
 * clocks) does what session_mgr_deliver_at does before matching (the MQTT 5
 * user properties, the publisher's client id and RETAIN flag, the message
 * expiry on the monotonic clock every worker's loop shares; 1 when it is past
 * already) and returns it with one reference (NULL: out of memory, or a topic
 * over 65535 bytes). session_mgr_deliver_msg delivers it as
 * session_mgr_deliver_at would, on the manager's own thread; the queues it
 * enters take references of their own, msg is not changed (the caller keeps
 * its reference). */
dl_msg_t *session_mgr_dl_msg(const session_mgr_t *m, const char *topic, size_t topic_len,
                             const void *payload, size_t len, uint8_t qos,
                             const dl_header_t *headers, size_t n_headers, int64_t timestamp_ms);
size_t session_mgr_deliver_msg(session_mgr_t *m, dl_msg_t *msg);
/* Subscriptions held (every session, shared ones included). Callable from
 * any thread (threads: N: whether a worker needs a downlink record). */
size_t session_mgr_subscription_count(const session_mgr_t *m);
/* The sessions' queues: depth now, messages dropped and refused. */
const dl_queue_stats_t *session_mgr_queue_stats(const session_mgr_t *m);

/* Read-only views for the introspection endpoint (they walk the lists: for
 * an operator's request, not the hot path). The strings are valid until the
 * next call into the manager. */
typedef struct {
    const char *client_id; /* NUL-terminated */
    const char *remote;
    const char *username; /* the certificate identity when set; NULL without one */
    size_t username_len;
    int protocol_level; /* of the accepted CONNECT: 3 (3.1), 4 (3.1.1) */
    uint32_t inflight;  /* not yet acknowledged to the client */
    bool paused;
    void *ud; /* session_conn_new's */
} session_client_info_t;
typedef struct {
    const char *client_id;
    uint64_t detached_ms; /* monotonic (session_mgr_set_now's clock) */
    uint32_t inflight;    /* messages kept for the client's return */
    uint32_t bytes_held;  /* counted against mqtt.max_session_bytes */
} session_detached_info_t;
/* Calls `each` for the connected clients (CONNECT accepted, not closing),
 * oldest connection first, from the offset-th on, until it returns false.
 * Returns how many there are. */
size_t session_mgr_list_clients(const session_mgr_t *m, size_t offset,
                                bool (*each)(void *ctx, const session_client_info_t *), void *ctx);
/* The same for the persistent sessions kept without a connection, oldest
 * first. */
size_t session_mgr_list_detached(const session_mgr_t *m, size_t offset,
                                 bool (*each)(void *ctx, const session_detached_info_t *),
                                 void *ctx);

/* Opaque layout: session id (below 2^31, never reused while the process
 * runs) in the high 32 bits, the session's in-flight sequence number in the
 * low 32 bits. The top bit marks the retained topic's copy of a QoS 1/2
 * RETAIN 1 PUBLISH (SESSION_OPAQUE_COPY): its entry awaits both reports.
 * Session id 0 marks records nobody waits for: wills (SESSION_OPAQUE_WILL)
 * and the copies of QoS 0 RETAIN 1 PUBLISHes and of wills
 * (SESSION_OPAQUE_RETAINED). */
#define SESSION_OPAQUE(id, seq) (((uint64_t)(id) << 32) | (uint32_t)(seq))
#define SESSION_OPAQUE_COPY_BIT (1ull << 63)
#define SESSION_OPAQUE_COPY(id, seq) (SESSION_OPAQUE(id, seq) | SESSION_OPAQUE_COPY_BIT)
#define SESSION_OPAQUE_WILL SESSION_OPAQUE(0, 0)
#define SESSION_OPAQUE_RETAINED SESSION_OPAQUE(0, 1)

#endif
