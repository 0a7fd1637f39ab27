/* The settings table: one row per setting (see settings.h). The YAML walk
 * (config.c), the defaults, the "needs a restart" comparison of a reload and
 * the settings table of docs/configuration.md all come from it; a new
 * setting is a new row (and a config_t field). */
#include "settings.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

static_assert(sizeof(log_level_t) == sizeof(int) && sizeof(log_format_t) == sizeof(int) &&
                  sizeof(config_acl_deny_t) == sizeof(int) &&
                  sizeof(config_unmapped_t) == sizeof(int),
              "SET_ENUM fields are stored as int");
static_assert(sizeof(config_spool_mode_t) == sizeof(int), "SET_ENUM fields are stored as int");

#define CFG(f) .field = true, .off = offsetof(config_t, f)
#define LISTENER(f) .field = true, .off = offsetof(config_listener_t, f)
#define RULE(f) .field = true, .off = offsetof(config_rule_t, f)
#define RULE_POS(f) .pos_off = offsetof(config_rule_t, f), .parse = cfg_parse_rule_string
#define DOWNLINK(f) .field = true, .off = offsetof(config_downlink_t, f)
#define LIST_OF(n, type) .count_off = offsetof(config_t, n), .item_size = sizeof(type)

static const setting_word_t tls_versions[] = {
    {"1.2", CONFIG_TLS_1_2}, {"1.3", CONFIG_TLS_1_3}, {NULL, 0}};
static const setting_word_t acl_deny_words[] = {
    {"disconnect", ACL_DENY_DISCONNECT}, {"drop", ACL_DENY_DROP}, {NULL, 0}};
static const setting_word_t log_levels[] = {
    {"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {NULL, 0}};
static const setting_word_t log_formats[] = {
    {"text", LOG_FORMAT_TEXT}, {"json", LOG_FORMAT_JSON}, {NULL, 0}};
static const setting_word_t spool_modes[] = {
    {"outage", SPOOL_MODE_OUTAGE}, {"always", SPOOL_MODE_ALWAYS}, {NULL, 0}};
/* Applied before the user's properties, which override them. partitioner:
 * the Java client's key hashing (murmur2), as Confluent MQTT Proxy and every
 * Java producer use: a key lands on the partition it did before a migration
 * and that other producers of the topic pick. */
static const char *const kafka_defaults[] = {
    "enable.idempotence", "true",           "acks", "all", "linger.ms", "5",
    "partitioner",        "murmur2_random", NULL};

/* Depth first: each section's rows follow it, in the order the "expected
 * one of" messages list them. */
const setting_t config_settings[] = {
    {.path = "listeners",
     .type = SET_LIST,
     .flags = SETTING_RESTART,
     CFG(listeners),
     LIST_OF(n_listeners, config_listener_t),
     .item = cfg_parse_listener,
     .min = 1,
     .missing = "at least one listener is needed",
     .restart_note = "still listening as before",
     .doc_default = "one: `127.0.0.1:1883`",
     .doc_allowed = "list of mappings",
     .doc = "the MQTT listeners; at least one entry when the key is given, no two for the same "
            "address and port (`[::]` and `[0::0]` are the same)"},
    {.path = "listeners[].listen",
     .type = SET_LISTEN,
     .flags = SETTING_RESTART | SETTING_REQUIRED,
     LISTENER(listen),
     .missing = "\"host:port\"",
     .doc_default = "**required**",
     .doc_allowed = "`IPv4:port`, `[IPv6]:port`, port 0..65535",
     .doc = "where MQTT clients connect (port 0: the kernel picks a free port and the `listening "
            "on` log line names it; for tests). Host names are not resolved: give an address."},
    {.path = "listeners[].tls",
     .type = SET_SECTION,
     .flags = SETTING_RESTART | SETTING_POS,
     LISTENER(tls.enabled),
     .pos_off = offsetof(config_listener_t, tls.pos),
     .check = cfg_check_tls,
     .doc_default = "none (plain TCP)",
     .doc = "makes this listener TLS-only; see [security](security.md#tls). Adding or removing "
            "it needs a restart; its files are read again on every SIGHUP"},
    {.path = "listeners[].tls.cert",
     .type = SET_FILE,
     .flags = SETTING_REQUIRED,
     LISTENER(tls.cert),
     .missing = "PEM certificate file",
     .doc_default = "**required** with `tls`",
     .doc = "PEM server certificate, chain after it"},
    {.path = "listeners[].tls.key",
     .type = SET_FILE,
     .flags = SETTING_REQUIRED,
     LISTENER(tls.key),
     .missing = "PEM private key file",
     .doc_default = "**required** with `tls`",
     .doc = "PEM private key (unencrypted)"},
    {.path = "listeners[].tls.ca",
     .type = SET_FILE,
     LISTENER(tls.ca),
     .doc = "PEM CA certificates client certificates must chain to; with it a client "
            "certificate is asked for and verified when sent"},
    {.path = "listeners[].tls.crl_file",
     .type = SET_FILE,
     LISTENER(tls.crl),
     .doc_default = "none (no revocation check)",
     .doc = "PEM certificate revocation lists of `ca`: a revoked client certificate fails the "
            "handshake, and so does one whose issuer has no CRL in the file. Needs `ca`; read "
            "again on every SIGHUP"},
    {.path = "listeners[].tls.require_client_cert",
     .type = SET_BOOL,
     LISTENER(tls.require_client_cert),
     .doc = "refuse the handshake without a valid client certificate (mutual TLS); needs `ca`"},
    {.path = "listeners[].tls.use_identity_as_username",
     .type = SET_BOOL,
     .flags = SETTING_RESTART,
     LISTENER(tls.use_identity_as_username),
     .doc = "the user name is the client certificate's subject CN; the CONNECT's user name and "
            "password are ignored (no password check); needs `require_client_cert: true`"},
    {.path = "listeners[].tls.min_version",
     .type = SET_ENUM,
     .flags = SETTING_QUOTED,
     LISTENER(tls.min_version),
     .words = tls_versions,
     .def = CONFIG_TLS_1_2,
     .doc = "oldest TLS version accepted"},
    {.path = "listeners[].websocket",
     .type = SET_SECTION,
     .flags = SETTING_RESTART | SETTING_POS,
     LISTENER(websocket.enabled),
     .pos_off = offsetof(config_listener_t, websocket.pos),
     .check = cfg_check_websocket,
     .doc_default = "none (MQTT over TCP)",
     .doc = "makes this listener MQTT over WebSocket (RFC 6455, subprotocol `mqtt` or "
            "`mqttv3.1`); with `tls` too, wss. See [operations](operations.md#websocket)"},
    {.path = "listeners[].websocket.path",
     .type = SET_STRING,
     .flags = SETTING_RESTART,
     LISTENER(websocket.path),
     .expected = "a path such as \"/mqtt\"",
     .doc_default = "`/mqtt`",
     .doc_allowed = "`/...`",
     .doc = "the request path of the upgrade; another path is answered 404"},
    {.path = "listeners[].websocket.origins",
     .type = SET_STRINGS,
     .flags = SETTING_RESTART,
     LISTENER(websocket.origins),
     .count_off = offsetof(config_listener_t, websocket.n_origins),
     .parse = cfg_parse_origins,
     .doc_default = "none (any)",
     .doc_allowed = "list of `scheme://host[:port]`",
     .doc = "the `Origin` values a browser may connect from, compared exactly; another is "
            "answered 403. A request without `Origin` (not a browser) is let through"},

    {.path = "kafka", .type = SET_SECTION},
    {.path = "kafka.bootstrap_servers",
     .type = SET_STRING,
     .flags = SETTING_RESTART | SETTING_REQUIRED,
     CFG(bootstrap_servers),
     .expected = "\"host:port,...\" or \"embedded\"",
     .missing = "\"host:port,...\", or \"embedded\" for the in-process test cluster",
     .restart_note = "still using %s",
     .doc_default = "**required**",
     .doc_allowed = "`host:port,...` or `embedded`",
     .doc = "the Kafka cluster. `embedded` starts librdkafka's in-process mock cluster: for "
            "trying mqtt2kafka out and for tests, never for data you need."},
    {.path = "kafka.properties",
     .type = SET_MAP,
     .flags = SETTING_RESTART,
     CFG(kafka_properties),
     LIST_OF(n_kafka_properties, config_property_t),
     .defaults = kafka_defaults,
     .parse = cfg_parse_properties,
     .restart_note = "the producer keeps its settings",
     .doc_allowed = "any librdkafka producer property",
     .doc = "passed to librdkafka verbatim (values as strings), after these defaults; a later "
            "setting of the same name wins. `bootstrap.servers` is refused here: use "
            "`kafka.bootstrap_servers`. `murmur2_random` is the Java client's key hash: a key "
            "goes to the partition Confluent MQTT Proxy and Java producers choose (librdkafka's "
            "own default, `consistent_random`, hashes with CRC32 and would move keys); keyless "
            "records spread at random."},
    {.path = "kafka.embedded_port",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     CFG(kafka_embedded_port),
     .min = 0,
     .max = 65535,
     .def = 0,
     .restart_note = "the relay keeps its port",
     .doc_default = "0 (none)",
     .doc = "with `bootstrap_servers: embedded` only: a fixed bootstrap address "
            "`127.0.0.1:PORT` for Kafka clients such as kcat. librdkafka 2.0.2's mock brokers "
            "listen on ports the kernel picks, so this is a relay to the first of them: a "
            "client bootstraps through it and then connects to the brokers the metadata names. "
            "The demo configuration sets 19092."},
    {.path = "kafka.shutdown_timeout_s", .type = SET_ALIAS, .alias = "shutdown_timeout_s"},
    {.path = "kafka.max_topics",
     .type = SET_UINT,
     CFG(kafka_max_topics),
     .min = 1,
     .max = 10000000,
     .def = 10000,
     .doc = "distinct Kafka topics the topic map may render while the process runs, per worker "
            "(`threads:`: each worker's producer keeps an object per topic, and a `{N}` template "
            "lets clients choose names); a "
            "message for one more is refused, never acknowledged (closed; an MQTT 5 client gets "
            "PUBACK/PUBREC 0x97; counted in "
            "`mqtt2kafka_messages_refused_total{reason=\"topic_limit\"}`)"},

    {.path = "topics",
     .type = SET_LIST,
     CFG(rules),
     LIST_OF(n_rules, config_rule_t),
     .item = cfg_parse_rule,
     .doc_default = "`[]` (no rule)",
     .doc_allowed = "list of rules",
     .doc = "tried in file order; the first rule that matches wins (see [Topic "
            "rules](#topic-rules))"},
    {.path = "topics[].mqtt",
     .type = SET_CUSTOM,
     RULE(pattern),
     RULE_POS(pattern_pos),
     .doc_default = "`mqtt` or `regex` is required",
     .doc_allowed = "MQTT topic filter",
     .doc = "the topics the rule takes, with MQTT's wildcards `+` and `#`"},
    {.path = "topics[].regex",
     .type = SET_CUSTOM,
     RULE(pattern),
     RULE_POS(pattern_pos),
     .doc_default = "`mqtt` or `regex` is required",
     .doc_allowed = "POSIX extended regex (no Perl escapes such as `\\d`)",
     .doc = "instead of `mqtt`: the topics this regex finds (anchor it with `^...$`)"},
    {.path = "topics[].kafka",
     .type = SET_CUSTOM,
     .flags = SETTING_REQUIRED,
     RULE(kafka),
     RULE_POS(kafka_pos),
     .missing = "the Kafka topic template",
     .doc_default = "**required**",
     .doc_allowed = "template",
     .doc = "the Kafka topic"},
    {.path = "topics[].key",
     .type = SET_CUSTOM,
     .flags = SETTING_NULL_EMPTY,
     RULE(key),
     RULE_POS(key_pos),
     .doc_default = "`{topic}`",
     .doc_allowed = "template, or empty",
     .doc = "the record key; `key: \"\"` (or `key:` with nothing) sends records without a key"},

    {.path = "unmapped",
     .type = SET_CUSTOM,
     CFG(unmapped),
     .parse = cfg_parse_unmapped,
     .doc_default = "`disconnect`",
     .doc_allowed = "`disconnect`, `drop`, `{topic: NAME}`",
     .doc = "a PUBLISH no rule matches: close the connection; acknowledge and count it; or send "
            "it to the Kafka topic NAME (key = the MQTT topic). Any other word is an error (a "
            "typo such as `Drop` must not become a topic name); a bare topic name, accepted "
            "before, now needs the `{topic: NAME}` form."},
    {.path = "headers",
     .type = SET_BOOL,
     CFG(headers),
     .def = true,
     .doc = "add the headers `mqtt.topic`, `mqtt.client_id`, `mqtt.qos`, `mqtt.retain` (when "
            "set), `mqtt.username` (when known) and `mqtt.message_expiry` (an MQTT 5 message "
            "expiry, when set) to every record (see "
            "[semantics.md](semantics.md#the-kafka-record))"},

    {.path = "downlink",
     .type = SET_LIST,
     .flags = SETTING_RESTART,
     CFG(downlink),
     LIST_OF(n_downlink, config_downlink_t),
     .item = cfg_parse_downlink,
     .restart_note = "the consumer keeps its topics and rules",
     .doc_default = "`[]` (nothing is read from Kafka)",
     .doc_allowed = "list of rules",
     .doc = "Kafka topics read towards MQTT, every partition, from the end (see [Downlink "
            "rules](#downlink-rules)); a Kafka topic in one rule only"},
    {.path = "downlink[].kafka",
     .type = SET_STRING,
     .flags = SETTING_RESTART | SETTING_REQUIRED,
     DOWNLINK(kafka),
     .expected = "a Kafka topic name",
     .missing = "the Kafka topic to read",
     .doc_default = "**required**",
     .doc_allowed = "Kafka topic name",
     .doc = "the Kafka topic"},
    {.path = "downlink[].mqtt",
     .type = SET_STRING,
     .flags = SETTING_RESTART,
     DOWNLINK(mqtt),
     .expected = "an MQTT topic template",
     .doc_default = "none: the record's `mqtt.topic` header",
     .doc_allowed = "template with `{key}`, `{header:NAME}`",
     .doc = "the MQTT topic of each record; a record it cannot be rendered for, or that renders "
            "to an invalid topic name, is skipped and counted"},
    {.path = "downlink[].qos",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     DOWNLINK(qos),
     .min = 0,
     .max = 2,
     .def = 1,
     .doc = "the QoS of the rule's records; a record's `mqtt.qos` header (`0`, `1`, `2`) "
            "overrides it"},
    {.path = "retained",
     .type = SET_SECTION,
     .flags = SETTING_POS,
     CFG(retained.enabled),
     .pos_off = offsetof(config_t, retained.pos),
     .check = cfg_check_retained,
     .doc_default = "none (no retained messages)",
     .doc = "retained messages, kept in a compacted Kafka topic and in memory"},
    {.path = "retained.topic",
     .type = SET_STRING,
     .flags = SETTING_RESTART | SETTING_REQUIRED,
     CFG(retained.topic),
     .expected = "a Kafka topic name",
     .missing = "the compacted Kafka topic of retained messages",
     .restart_note = "the retained store still reads %s",
     .doc_default = "**required** with `retained`",
     .doc_allowed = "Kafka topic name",
     .doc = "read from the beginning at the start: key = MQTT topic, value = payload, an empty "
            "value deletes; `mqtt.qos` header = its QoS (default 0)"},
    {.path = "retained.max_messages",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     CFG(retained.max_messages),
     .min = 0,
     .max = 100000000,
     .def = 100000,
     .doc = "retained messages held in memory at most; one more is refused and counted"},
    {.path = "retained.max_bytes",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     CFG(retained.max_bytes),
     .min = 0,
     .max = 4294967295u,
     .def = 67108864,
     .doc = "bytes (topic + payload) of retained messages held in memory at most; a message "
            "that would exceed it is refused and counted"},
    {.path = "spool",
     .type = SET_SECTION,
     .flags = SETTING_POS | SETTING_RESTART,
     CFG(spool.enabled),
     .pos_off = offsetof(config_t, spool.pos),
     .restart_note = "the spool stays as it started",
     .doc_default = "none (no spool: acked after Kafka's delivery report)",
     .doc = "the crash-safe local spool (docs/semantics.md, \"The spool\"); needs a restart"},
    {.path = "spool.dir",
     .type = SET_FILE,
     .flags = SETTING_RESTART | SETTING_REQUIRED,
     CFG(spool.dir),
     .missing = "the spool directory",
     .restart_note = "still spooling to %s",
     .doc_default = "**required** with `spool`",
     .doc_allowed = "directory (created if missing, its parent must exist)",
     .doc = "the segment files and the checkpoint; the daemon refuses to start when it is "
            "unusable, and takes an exclusive lock on it"},
    {.path = "spool.max_bytes",
     .type = SET_CUSTOM,
     .flags = SETTING_RESTART,
     CFG(spool.max_bytes),
     .parse = cfg_parse_u64,
     .doc_default = "0 (no bound but the disk)",
     .doc_allowed = "0..18446744073709551615",
     .doc = "every byte the spool holds on disk; at the bound nothing more is taken: MQTT 3.1.1 "
            "publishers pause as with a full producer queue, MQTT 5 ones get PUBACK/PUBREC 0x97"},
    {.path = "spool.mode",
     .type = SET_ENUM,
     .flags = SETTING_RESTART,
     CFG(spool.mode),
     .words = spool_modes,
     .def = SPOOL_MODE_OUTAGE,
     .restart_note = "the spool keeps its mode",
     .doc = "`outage`: records go to Kafka directly while it takes them and to the spool (acked "
            "once fsync'ed) while it cannot, then the spool drains in order; `always`: every "
            "record is spooled and acked once fsync'ed, Kafka is fed from the spool"},
    {.path = "spool.outage_after_ms",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     CFG(spool.outage_after_ms),
     .min = 100,
     .max = 3600000,
     .def = 5000,
     .doc = "`mode: outage`: a record waiting this long for Kafka's delivery report (a hung "
            "broker) switches to the spool, as every broker down or a retriable delivery error "
            "does"},

    {.path = "mqtt", .type = SET_SECTION},
    {.path = "mqtt.max_packet_size",
     .type = SET_UINT,
     .flags = SETTING_DERIVED,
     CFG(mqtt.max_packet_size),
     .min = 128,
     .max = CONFIG_MQTT_MAX_PACKET,
     .doc_default = "Kafka's `message.max.bytes` (librdkafka default 1000000), at most 268435460",
     .doc_allowed = "128..268435460, and not above `message.max.bytes` (on reload: the "
                    "running producer's)",
     .doc = "the largest MQTT packet accepted, whole packet including header and topic"},
    {.path = "mqtt.max_inflight",
     .type = SET_UINT,
     CFG(mqtt.max_inflight),
     .min = 1,
     .max = 65535,
     .def = 1024,
     .doc = "unacknowledged QoS 1/2 PUBLISH per client; reading from the client pauses at the "
            "limit"},
    {.path = "mqtt.max_connections",
     .type = SET_UINT,
     CFG(mqtt.max_connections),
     .min = 1,
     .max = 10000000,
     .def = 100000,
     .doc = "connections beyond it are refused"},
    {.path = "mqtt.connect_timeout_s",
     .type = SET_UINT,
     CFG(mqtt.connect_timeout_s),
     .min = 1,
     .max = 3600,
     .def = 10,
     .doc = "time from TCP accept to CONNECT"},
    {.path = "mqtt.max_keepalive_s",
     .type = SET_UINT,
     CFG(mqtt.max_keepalive_s),
     .min = 1,
     .max = 65535,
     .def = 65535,
     .doc = "upper bound on the keepalive a client asks for (above it: CONNACK 2); below 65535 "
            "it is also the keepalive of a client that asks for 0 (none), so a silent connection "
            "does not stay forever"},
    {.path = "mqtt.session_expiry_s",
     .type = SET_UINT,
     CFG(mqtt.session_expiry_s),
     .min = 0,
     .max = UINT32_MAX,
     .def = 86400,
     .doc = "how long a `clean session = 0` session is kept after its client leaves (an MQTT 5 "
            "client may ask for less with its session expiry interval; more is capped)"},
    {.path = "mqtt.max_connections_per_ip",
     .type = SET_UINT,
     CFG(mqtt.max_connections_per_ip),
     .min = 0,
     .max = 10000000,
     .def = 10000,
     .doc_allowed = "0..10000000 (0 = no limit)",
     .doc = "live connections from one source IP (IPv6: from one /64, the usual size of one "
            "host's or one customer's allocation; IPv4-mapped IPv6 counts as its IPv4); more are "
            "accepted and closed at once (logged, rate-limited)"},
    {.path = "mqtt.connect_rate_per_ip",
     .type = SET_UINT,
     CFG(mqtt.connect_rate_per_ip),
     .min = 0,
     .max = 1000000,
     .def = 1000,
     .doc_allowed = "0..1000000 (0 = no limit)",
     .doc = "new connections per second from one source IP, or IPv6 /64 (token bucket)"},
    {.path = "mqtt.connect_burst_per_ip",
     .type = SET_UINT,
     CFG(mqtt.connect_burst_per_ip),
     .min = 1,
     .max = 1000000,
     .def = 2000,
     .doc = "the bucket's size: connections one IP may open at once"},
    {.path = "mqtt.max_output_buffer",
     .type = SET_UINT,
     CFG(mqtt.max_output_buffer),
     .min = 4096,
     .max = 1u << 30,
     .def = 1024 * 1024,
     .doc = "bytes queued for one client that does not read before it is cut"},
    {.path = "mqtt.max_persistent_sessions",
     .type = SET_UINT,
     .flags = SETTING_DERIVED,
     CFG(mqtt.max_persistent_sessions),
     .min = 0,
     .max = 10000000,
     .doc_default = "`max_connections`",
     .doc = "`clean session = 0` sessions kept without a connection by the process; beyond it "
            "the oldest is discarded (0: none kept). With `threads:` N each worker keeps N-th of "
            "it (a client id lives on one worker)"},
    {.path = "mqtt.max_session_bytes",
     .type = SET_UINT,
     CFG(mqtt.max_session_bytes),
     .min = 65536,
     .max = UINT32_MAX,
     .def = 256u * 1024 * 1024,
     .doc = "bytes all `clean session = 0` sessions kept without a connection may hold together "
            "(with `threads:` N, each worker's N-th of it) "
            "(session, client id, messages still in flight, QoS 2 ids, downlink messages queued "
            "for them: the `mqtt2kafka_persistent_session_bytes` gauge); beyond it the oldest are "
            "discarded, and a downlink message that does not fit is not queued"},
    {.path = "mqtt.max_client_id_length",
     .type = SET_UINT,
     CFG(mqtt.max_client_id_length),
     .min = 23,
     .max = 65535,
     .def = 256,
     .doc = "bytes of a CONNECT's client id; a longer one is refused with CONNACK 2 (identifier "
            "rejected). 23 is the least MQTT 3.1.1 lets a server accept"},
    {.path = "mqtt.max_username_length",
     .type = SET_UINT,
     CFG(mqtt.max_username_length),
     .min = 1,
     .max = 65535,
     .def = 256,
     .doc = "bytes of a CONNECT's user name; over it the connection is closed without CONNACK "
            "(logged, counted: 3.1.1 has no return code for it; MQTT 5 gets CONNACK 0x97)"},
    {.path = "mqtt.max_will_topic_length",
     .type = SET_UINT,
     CFG(mqtt.max_will_topic_length),
     .min = 1,
     .max = 65535,
     .def = 1024,
     .doc = "bytes of a CONNECT's will topic; over it the connection is closed without CONNACK "
            "(logged, counted; MQTT 5 gets CONNACK 0x97)"},
    {.path = "mqtt.max_will_payload",
     .type = SET_UINT,
     CFG(mqtt.max_will_payload),
     .min = 0,
     .max = 65535,
     .def = 4096,
     .doc = "bytes of a CONNECT's will message, and of an MQTT 5 will's properties; over it the "
            "connection is closed without CONNACK (logged, counted; MQTT 5 gets CONNACK 0x97)"},
    {.path = "mqtt.max_regex_topic_length",
     .type = SET_UINT,
     CFG(mqtt.max_regex_topic_length),
     .min = 1,
     .max = 65535,
     .def = 1024,
     .doc = "bytes of an MQTT topic up to which regex rules are tried (a regex costs time on the "
            "event loop that grows with the topic, see [security.md](security.md#budgets)); a "
            "longer topic skips every regex rule: filter rules still apply, then `unmapped`"},
    {.path = "mqtt.packet_timeout_s",
     .type = SET_UINT,
     CFG(mqtt.packet_timeout_s),
     .min = 0,
     .max = 3600,
     .def = 30,
     .doc_allowed = "0..3600 (0 = no deadline)",
     .doc = "time a client has to complete a packet it started sending, whatever its keepalive; "
            "then the connection is closed (logged, `mqtt2kafka_input_closed_total{reason="
            "\"packet_timeout\"}`)"},
    {.path = "mqtt.max_input_buffer_bytes",
     .type = SET_UINT,
     CFG(mqtt.max_input_buffer_bytes),
     .min = 65536,
     .max = UINT32_MAX,
     .def = 128u * 1024 * 1024,
     .doc = "bytes all connections may hold in partly received packets together (keep it well "
            "above `max_packet_size`); past it the connections holding the most are closed "
            "first (logged, `mqtt2kafka_input_closed_total{reason=\"input_budget\"}`)"},
    {.path = "mqtt.topic_alias_maximum",
     .type = SET_UINT,
     CFG(mqtt.topic_alias_maximum),
     .min = 0,
     .max = 65535,
     .def = 10,
     .doc = "MQTT 5 topic aliases a client may set per connection (CONNACK's topic alias "
            "maximum; 10 as Mosquitto); each keeps a copy of its topic, together at most "
            "`mqtt.max_topic_alias_bytes`. 0: every alias gets DISCONNECT 0x94"},
    {.path = "mqtt.max_topic_alias_bytes",
     .type = SET_UINT,
     CFG(mqtt.max_topic_alias_bytes),
     .min = 256,
     .max = 16u << 20,
     .def = 4096,
     .doc = "bytes of the topics one connection's MQTT 5 topic aliases hold together (with 16 "
            "bytes a slot and a 24-byte block shared with the ACL cache, the whole of its alias "
            "memory); a PUBLISH setting an alias past it "
            "gets DISCONNECT 0x97 (quota exceeded, counted as "
            "`mqtt2kafka_protocol_errors_total{kind=\"topic_alias_quota\"}`)"},
    {.path = "mqtt.max_tls_handshakes",
     .type = SET_UINT,
     CFG(mqtt.max_tls_handshakes),
     .min = 1,
     .max = 10000000,
     .def = 256,
     .doc = "TLS handshakes in progress at once, all TLS listeners together (each holds a "
            "connection and waits for a `max_tls_handshake_workers` slot); a connection to a TLS "
            "listener past it is closed at accept (logged rate-limited, "
            "`mqtt2kafka_connections_refused_total{reason=\"tls_handshake\"}`)"},
    {.path = "mqtt.max_tls_handshake_workers",
     .type = SET_UINT,
     CFG(mqtt.max_tls_handshake_workers),
     .min = 1,
     .max = 64,
     .def = 2,
     .doc = "TLS handshake steps (`SSL_do_handshake`: the private-key operations) running at "
            "once on libuv's threadpool, off the event loop, all TLS listeners together; the "
            "others wait in order. The daemon sizes the pool to this + `auth.max_hashing` + 2 "
            "(the spool's fsync and a spare) unless `UV_THREADPOOL_SIZE` is set"},
    {.path = "mqtt.max_tls_handshakes_per_ip",
     .type = SET_UINT,
     CFG(mqtt.max_tls_handshakes_per_ip),
     .max = 10000000,
     .def = 64,
     .doc_allowed = "0..10000000 (0 = no limit)",
     .doc = "of `max_tls_handshakes`, those one source IP (IPv6: /64) may have in progress; "
            "past it, closed at accept like `max_tls_handshakes`"},

    {.path = "mqtt.max_queued_messages",
     .type = SET_UINT,
     CFG(mqtt.max_queued_messages),
     .min = 1,
     .max = 10000000,
     .def = 1000,
     .doc = "downlink messages waiting per session (for room in the client's window, or for a "
            "persistent session's return); when full the oldest QoS 0 one is dropped, else the "
            "new one is refused; both counted"},
    {.path = "mqtt.max_subscriptions_per_session",
     .type = SET_UINT,
     CFG(mqtt.max_subscriptions_per_session),
     .min = 1,
     .max = 65535,
     .def = 100,
     .doc = "subscriptions one session may hold (shared ones included); a new filter past it "
            "is refused (SUBACK 0x80, MQTT 5 0x97 quota exceeded; subscribing again to a held "
            "filter still replaces it), logged rate-limited and counted "
            "(`mqtt2kafka_subscribe_refused_total{reason=\"quota\"}`)"},
    {.path = "mqtt.max_subscription_bytes_per_session",
     .type = SET_UINT,
     CFG(mqtt.max_subscription_bytes_per_session),
     .min = 1,
     .max = 16777216,
     .def = 4096,
     .doc = "bytes of topic filters one session may hold together; each level of a filter is a "
            "node of the subscription trie (about 300 bytes), so this bounds what one session "
            "can make the trie hold; past it, refused like `max_subscriptions_per_session`"},
    {.path = "auth",
     .type = SET_SECTION,
     .flags = SETTING_POS,
     .pos_off = offsetof(config_t, auth.pos)},
    {.path = "auth.allow_anonymous",
     .type = SET_BOOL,
     .flags = SETTING_DERIVED,
     CFG(auth.allow_anonymous),
     .doc_default = "`false` when `password_file` is set, else `true`",
     .doc = "whether a CONNECT without a user name is accepted (refused: CONNACK 5)"},
    {.path = "auth.password_file",
     .type = SET_FILE,
     CFG(auth.password_file),
     .doc = "Mosquitto-format password file (`mosquitto_passwd`, `mqtt2kafka passwd`); a CONNECT "
            "with a user name must carry its password. Read again on every SIGHUP"},
    {.path = "auth.acl_file",
     .type = SET_FILE,
     CFG(auth.acl_file),
     .doc_default = "none (every publish allowed)",
     .doc = "Mosquitto-format ACL; each PUBLISH and will topic is checked for write access, "
            "each SUBSCRIBE filter and downlink delivery for read access. Read again on every "
            "SIGHUP"},
    {.path = "auth.acl_deny",
     .type = SET_ENUM,
     .flags = SETTING_STRING_FIRST,
     CFG(auth.acl_deny),
     .words = acl_deny_words,
     .def = ACL_DENY_DISCONNECT,
     .doc = "a PUBLISH the ACL refuses: close the connection (3.1.1 has no negative ack), or "
            "acknowledge it without producing (counted, rate-limited log)"},
    {.path = "auth.max_hashing",
     .type = SET_UINT,
     CFG(auth.max_hashing),
     .min = 1,
     .max = 64,
     .def = 2,
     .doc = "password checks (`password_file`) running at once on libuv's threadpool, off the "
            "event loop (the pool is sized to leave room for the TLS handshakes and the spool, "
            "see `mqtt.max_tls_handshake_workers`); more CONNECTs wait in a queue"},
    {.path = "auth.max_hashing_queue",
     .type = SET_UINT,
     CFG(auth.max_hashing_queue),
     .min = 0,
     .max = 65536,
     .def = 256,
     .doc = "CONNECTs waiting for a password check; past it a CONNECT is refused with CONNACK 3 "
            "(server unavailable), logged and counted "
            "(`mqtt2kafka_connections_refused_total{reason=\"server_unavailable\"}`)"},

    {.path = "shutdown_timeout_s",
     .type = SET_UINT,
     CFG(shutdown_timeout_s),
     .min = 0,
     .max = 3600,
     .def = 30,
     .doc = "on SIGTERM, how long to wait for Kafka to confirm what is in flight. Top level or "
            "under `kafka:`, not both."},

    {.path = "threads",
     .type = SET_UINT,
     .flags = SETTING_RESTART,
     CFG(threads),
     .min = 0,
     .max = CONFIG_THREADS_MAX,
     .def = 0,
     .doc = "workers, each an event loop on its own thread with its own listening sockets "
            "(SO_REUSEPORT), sessions and Kafka producer; a client id lives on one worker. 0 (the "
            "default): the CPUs the process may use, at most 16. With `spool:`, a spool per "
            "worker; a start whose spools hold records or QoS 2 ids written with another count "
            "keeps that count until they are empty (see "
            "[architecture.md](architecture.md#workers-threads-daemon_workerc))"},

    /* After the listeners, wherever it is in the file: it is compared with them. */
    {.path = "metrics", .type = SET_SECTION, .flags = SETTING_LATE},
    {.path = "metrics.listen",
     .type = SET_LISTEN,
     .flags = SETTING_RESTART,
     CFG(metrics_listen),
     .parse = cfg_parse_metrics_listen,
     .restart_note = "still %s",
     .doc_default = "none (no metrics endpoint)",
     .doc_allowed = "`IPv4:port`, `[IPv6]:port`",
     .doc = "HTTP `GET /metrics`, `/healthz`, `/readyz`, `/clients`, `/sessions` (see "
            "[operations.md](operations.md)); "
            "must differ from every MQTT listener (port 0: any free port, named in the log)"},

    {.path = "log", .type = SET_SECTION},
    {.path = "log.level",
     .type = SET_ENUM,
     CFG(log_level),
     .words = log_levels,
     .def = LOG_INFO,
     .doc = "the most verbose level logged"},
    {.path = "log.format",
     .type = SET_ENUM,
     CFG(log_format),
     .words = log_formats,
     .def = LOG_FORMAT_TEXT,
     .doc = "`json`: one JSON object per line with `ts`, `level`, `msg` and fields such as "
            "`client` and `addr` (see [operations.md](operations.md#logs))"},
};
const size_t config_settings_count = sizeof(config_settings) / sizeof(config_settings[0]);
static_assert(sizeof(config_settings) / sizeof(config_settings[0]) <= SETTINGS_MAX,
              "raise SETTINGS_MAX");
