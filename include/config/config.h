/* Configuration: YAML file -> immutable config struct (libyaml is used here
 * only). Every error names file:line:col and what was expected. */
#ifndef M2K_CONFIG_H
#define M2K_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/log.h"

/* Where a value came from, for error messages. */
typedef struct {
    int line; /* 1-based; 0 = defaulted, not in the file */
    int col;
} config_pos_t;

/* TLS on one listener (enabled when the listener has a tls: mapping). */
#define CONFIG_TLS_1_2 12
#define CONFIG_TLS_1_3 13
typedef struct {
    bool enabled;
    char *cert; /* PEM server certificate chain */
    char *key;  /* PEM private key */
    char *ca;   /* PEM CA bundle for client certificates; NULL when not set */
    char *crl;  /* PEM CRLs of that CA; NULL when not set */
    bool require_client_cert;
    bool use_identity_as_username; /* user name = client certificate's CN */
    int min_version;               /* CONFIG_TLS_1_2 (default) or CONFIG_TLS_1_3 */
    config_pos_t pos;              /* the tls: mapping */
} config_tls_t;

/* MQTT over WebSocket on one listener (enabled when it has a websocket:
 * mapping; with tls: too, wss). */
#define CONFIG_WS_DEFAULT_PATH "/mqtt"
typedef struct {
    bool enabled;
    char *path;     /* the request path the upgrade must name; "/mqtt" by default */
    char **origins; /* allowed Origin values, "scheme://host[:port]"; none: any */
    size_t n_origins;
    uint32_t max_message; /* a frame's or message's payload bound: mqtt.max_packet_size */
    config_pos_t pos;     /* the websocket: mapping */
} config_ws_t;

typedef struct {
    char *listen; /* as written: "0.0.0.0:1883", "[::]:1883" */
    char *host;   /* "0.0.0.0", "::" (brackets removed) */
    uint16_t port;
    config_pos_t pos;
    config_tls_t tls;
    config_ws_t websocket;
} config_listener_t;

typedef struct {
    char *name;  /* librdkafka property name, verbatim */
    char *value; /* as a string */
    config_pos_t pos;
} config_property_t;

typedef enum { RULE_FILTER = 0, RULE_REGEX = 1 } config_rule_kind_t;

typedef struct {
    config_rule_kind_t kind;
    char *pattern;            /* MQTT topic filter or POSIX ERE */
    char *kafka;              /* Kafka topic template */
    char *key;                /* key template; "{topic}" when not given; "" = no key (null key) */
    config_pos_t pos;         /* the rule's mapping in the list */
    config_pos_t pattern_pos; /* the mqtt: or regex: value */
    config_pos_t kafka_pos;
    config_pos_t key_pos; /* line 0 when defaulted */
    const char *file;     /* the configuration's path (owned by config_t), for messages */
} config_rule_t;

/* One `downlink:` rule: a Kafka topic read towards MQTT (docs/semantics.md). */
typedef struct {
    char *kafka;      /* the Kafka topic */
    char *mqtt;       /* topic template ({key}, {header:NAME}); NULL: the mqtt.topic header */
    uint32_t qos;     /* 0..2, default 1; a record's mqtt.qos header overrides it */
    config_pos_t pos; /* the rule's mapping */
} config_downlink_t;

/* `retained:`: the compacted Kafka topic of retained messages. */
typedef struct {
    bool enabled; /* the section is there */
    char *topic;
    uint32_t max_messages; /* held in memory at most */
    uint32_t max_bytes;    /* topic + payload bytes held at most */
    config_pos_t pos;
} config_retained_t;

/* `spool:`: the crash-safe local spool (docs/semantics.md, "The spool"). */
typedef enum {
    SPOOL_MODE_OUTAGE = 0, /* the default: the spool only while Kafka cannot take records */
    SPOOL_MODE_ALWAYS = 1, /* every record is spooled and acked after the fsync */
} config_spool_mode_t;

typedef struct {
    bool enabled; /* the section is there */
    char *dir;
    uint64_t max_bytes;       /* 0: no bound */
    int mode;                 /* config_spool_mode_t */
    uint32_t outage_after_ms; /* mode outage: a delivery report this late is an outage */
    config_pos_t pos;
} config_spool_t;

typedef enum {
    UNMAPPED_DISCONNECT = 0, /* log and close the connection */
    UNMAPPED_DROP = 1,       /* acknowledge, count, rate-limited log */
    UNMAPPED_TOPIC = 2,      /* route to unmapped_topic */
} config_unmapped_t;

typedef struct {
    uint32_t max_packet_size;         /* bytes, whole packet */
    config_pos_t max_packet_size_pos; /* line 0 when derived from message.max.bytes */
    uint32_t max_inflight;            /* unacknowledged QoS 1/2 PUBLISH per client */
    uint32_t max_queued_messages;     /* downlink messages waiting per session */
    uint32_t max_subscriptions_per_session;
    uint32_t max_subscription_bytes_per_session; /* the filters' bytes together */
    uint32_t max_connections;
    uint32_t max_tls_handshakes;        /* TLS handshakes in progress, all listeners */
    uint32_t max_tls_handshake_workers; /* handshake steps on the threadpool at once */
    uint32_t max_tls_handshakes_per_ip; /* ... in progress from one address; 0 = no limit */
    uint32_t connect_timeout_s;         /* TCP accept to CONNECT */
    uint32_t max_keepalive_s;
    uint32_t session_expiry_s; /* clean-session=0 sessions */
    /* Hostile-client bounds (docs/security.md). 0 = no limit where noted. */
    uint32_t max_connections_per_ip;  /* live connections from one IP; 0 = no limit */
    uint32_t connect_rate_per_ip;     /* new connections per second from one IP; 0 = no limit */
    uint32_t connect_burst_per_ip;    /* token bucket size for connect_rate_per_ip */
    uint32_t max_output_buffer;       /* bytes queued for one client before it is cut */
    uint32_t max_persistent_sessions; /* clean session 0 sessions without a connection */
    uint32_t max_session_bytes;       /* bytes those sessions may hold together */
    /* CONNECT strings kept for the connection's (or session's) life. */
    uint32_t max_client_id_length; /* longer: CONNACK 2 */
    uint32_t max_username_length;  /* longer: closed without CONNACK */
    uint32_t max_will_topic_length;
    uint32_t max_will_payload;
    uint32_t max_regex_topic_length; /* longer topics skip regex rules */
    uint32_t packet_timeout_s;       /* to complete a started packet; 0 = none */
    uint32_t max_input_buffer_bytes; /* partly received packets, all connections */
    uint32_t topic_alias_maximum;    /* MQTT 5 topic aliases per connection; 0 = none */
    uint32_t max_topic_alias_bytes;  /* bytes of the topics one connection's aliases hold */
} config_mqtt_t;

typedef enum {
    ACL_DENY_DISCONNECT = 0, /* log and close the connection */
    ACL_DENY_DROP = 1,       /* acknowledge without producing, count, rate-limited log */
} config_acl_deny_t;

typedef struct {
    bool allow_anonymous; /* resolved: default false with a password file, else true */
    bool allow_anonymous_set;
    char *password_file; /* NULL: no password check (every user name accepted) */
    char *acl_file;      /* NULL: every publish allowed */
    config_acl_deny_t acl_deny;
    config_pos_t acl_deny_pos;  /* line 0 when defaulted */
    uint32_t max_hashing;       /* password checks running on the threadpool at once */
    uint32_t max_hashing_queue; /* CONNECTs waiting for one; more: CONNACK 3 */
    config_pos_t pos;
} config_auth_t;

typedef struct config {
    char *path;
    config_listener_t *listeners;
    size_t n_listeners;

    char *bootstrap_servers;      /* "embedded" or "host:port,..." */
    uint32_t kafka_embedded_port; /* embedded: a fixed bootstrap port on 127.0.0.1 (0: none) */
    /* Producer properties with our defaults (enable.idempotence=true,
     * acks=all, linger.ms=5) first, then the user's in file order; later
     * entries override earlier ones when applied in order. */
    config_property_t *kafka_properties;
    size_t n_kafka_properties;
    /* message.max.bytes as librdkafka will see it (librdkafka's default if
     * not set), which mqtt.max_packet_size must not exceed. */
    unsigned long kafka_message_max_bytes;
    uint32_t kafka_max_topics; /* distinct rendered Kafka topics */

    config_rule_t *rules;
    size_t n_rules;
    config_unmapped_t unmapped;
    char *unmapped_topic; /* for UNMAPPED_TOPIC */
    bool headers;
    config_pos_t unmapped_pos;

    config_downlink_t *downlink; /* Kafka -> MQTT rules, file order */
    size_t n_downlink;
    config_retained_t retained;
    config_spool_t spool;

    config_mqtt_t mqtt;
    config_auth_t auth;
    uint32_t shutdown_timeout_s;
    uint32_t threads;         /* workers; 0: auto (config_threads) */
    config_pos_t threads_pos; /* where `threads:` was set; line 0: not */
    char *metrics_listen;     /* NULL when not set */
    char *metrics_host;       /* brackets removed; NULL when not set */
    uint16_t metrics_port;
    log_level_t log_level;
    log_format_t log_format; /* log.format: text (default) or json */
} config_t;

/* Loads and validates a file. On success returns 0 and *out (free with
 * config_free). On failure returns -1 and writes every error, one per line as
 * "file:line:col: message", into errbuf (truncated to errlen). */
int config_load(const char *path, config_t **out, char *errbuf, size_t errlen);
/* The same from a string (tests); `name` stands in for the file name. */
int config_load_string(const char *yaml, size_t len, const char *name, config_t **out, char *errbuf,
                       size_t errlen);
/* config_load that, on failure, also leaves in *partial what did parse (the
 * settings and list items without errors; NULL when the file is not a YAML
 * mapping), so the files and properties it names can be checked in the same
 * run (runtime_prepare with RUNTIME_CHECK); free it with config_free. */
int config_load_partial(const char *path, config_t **out, config_t **partial, char *errbuf,
                        size_t errlen);
void config_free(config_t *cfg);

/* Parses "host:port" / "[v6]:port" (IP literals only) into a malloc'd host and
 * a port. Returns 0, or -1 with a static reason in *why. */
int config_parse_listen(const char *s, char **host, uint16_t *port, const char **why);

/* Every setting a SIGHUP does not apply (its row in the settings table says
 * it needs a restart) that differs between `running` and `next`, in table
 * order: report(ud, "kafka.bootstrap_servers changed; this needs a restart
 * (still using k1:9092)"). Returns how many. */
size_t config_restart_changes(const config_t *running, const config_t *next,
                              void (*report)(void *ud, const char *msg), void *ud);

/* Appends to buf (NUL-terminated, `len` its size) one line per lint warning
 * of `cfg`, as "file:line:col: warning: message\n": rules an earlier rule
 * shadows and regexes that never match (map/rule_lint.h), and settings that
 * trade safety (acks other than all with idempotence off, enable.idempotence
 * false, unmapped: drop, auth.acl_deny: drop). Warnings never refuse a
 * configuration. Returns how many. */
size_t config_lint(const config_t *cfg, char *buf, size_t len);

/* The settings table of docs/configuration.md, generated from the table
 * (`mqtt2kafka --settings-markdown`). */
void config_settings_markdown(FILE *out);

/* Default path used when -c is not given: the build defines it from the
 * install prefix (CMakeLists.txt: <prefix>/etc/mqtt2kafka/mqtt2kafka.yaml,
 * /etc/mqtt2kafka/mqtt2kafka.yaml for the prefix /usr). */
#ifndef CONFIG_DEFAULT_PATH
#define CONFIG_DEFAULT_PATH "/etc/mqtt2kafka/mqtt2kafka.yaml"
#endif
/* librdkafka's default message.max.bytes, compared with mqtt.max_packet_size. */
#define CONFIG_KAFKA_MESSAGE_MAX_BYTES_DEFAULT 1000000u

/* `threads:` at most, and auto's cap. */
#define CONFIG_THREADS_MAX 64
#define CONFIG_THREADS_AUTO_MAX 16
/* The workers to run: `threads:`, or with 0 (auto) the CPUs this process
 * may run on (sched_getaffinity), at most CONFIG_THREADS_AUTO_MAX, and 1
 * with the spool, the downlink or the retained store; *why then names the
 * reason ("spool: ..."), else NULL. */
unsigned config_threads(const config_t *cfg, const char **why);
/* A worker's share of a process-wide bound of libuv's threadpool
 * (auth.max_hashing, auth.max_hashing_queue, mqtt.max_tls_handshake_workers)
 * among `workers`: v / workers, at least 1 (0 stays 0). */
static inline uint32_t config_share(uint32_t v, unsigned workers) {
    if (workers <= 1 || v == 0)
        return v;
    return v / workers ? v / workers : 1;
}

#endif
