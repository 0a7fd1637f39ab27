/* Configuration: YAML -> config_t. The whole file is loaded as a libyaml node
 * graph (marks give line:col for every value), then walked once; every error
 * is collected, so an operator fixes a file in one round instead of one error
 * per run. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/file_read.h"
#include "map/topic_map.h"

/* MQTT's largest packet: 1 byte header, 4 bytes remaining length, 268435455. */
#define MQTT_MAX_PACKET 268435460u
#define MIN_PACKET 128u

typedef struct {
    const char *file;
    char *buf;
    size_t cap, len;
    int count;
    bool oom;
} errs_t;

typedef struct {
    yaml_document_t *doc;
    errs_t *errs;
    config_t *cfg;
    config_pos_t shutdown_pos; /* where shutdown_timeout_s was set, line 0 if not */
    config_pos_t max_packet_pos;
    bool max_packet_set;
    bool max_persistent_set;
} ctx_t;

static void errs_vadd(errs_t *e, config_pos_t pos, const char *fmt, va_list ap) {
    e->count++;
    if (e->cap == 0 || e->len + 1 >= e->cap)
        return;
    char raw[1024], msg[1024];
    vsnprintf(raw, sizeof(raw), fmt, ap);
    /* Values from the file are echoed in messages: a newline in one must not
     * start a line that does not name the file (found by fuzz_config). */
    size_t o = 0;
    for (const unsigned char *q = (const unsigned char *)raw; *q && o + 5 < sizeof(msg); q++) {
        if (*q < 0x20 || *q == 0x7f)
            o += (size_t)snprintf(msg + o, sizeof(msg) - o, "\\x%02x", *q);
        else
            msg[o++] = (char)*q;
    }
    msg[o] = '\0';
    int n;
    if (pos.line > 0)
        n = snprintf(e->buf + e->len, e->cap - e->len, "%s:%d:%d: %s\n", e->file, pos.line, pos.col,
                     msg);
    else
        n = snprintf(e->buf + e->len, e->cap - e->len, "%s: %s\n", e->file, msg);
    if (n < 0)
        return;
    e->len += (size_t)n;
    if (e->len >= e->cap)
        e->len = e->cap - 1;
}

__attribute__((format(printf, 3, 4))) static void err_at(ctx_t *c, config_pos_t pos,
                                                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(c->errs, pos, fmt, ap);
    va_end(ap);
}

static void report_cb(void *ud, config_pos_t pos, const char *msg) {
    err_at(ud, pos, "%s", msg);
}

static config_pos_t pos_of(const yaml_node_t *n) {
    return (config_pos_t){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *describe(const yaml_node_t *n, char *buf, size_t len) {
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        if (is_null(n))
            return "nothing";
        snprintf(buf, len, "\"%.60s\"", (const char *)n->data.scalar.value);
        return buf;
    default:
        return "nothing";
    }
}

static const char *scalar(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

/* ---- typed getters: each reports its own error and returns -1 ---- */

static int get_string(ctx_t *c, const yaml_node_t *n, const char *where, const char **out) {
    char d[80];
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err_at(c, pos_of(n), "%s: expected a string, got %s", where, describe(n, d, sizeof(d)));
        return -1;
    }
    if (strlen(scalar(n)) != n->data.scalar.length) {
        err_at(c, pos_of(n), "%s: must not contain U+0000", where);
        return -1;
    }
    *out = scalar(n);
    return 0;
}

static int get_uint(ctx_t *c, const yaml_node_t *n, const char *where, unsigned long lo,
                    unsigned long hi, uint32_t *out) {
    char d[80];
    bool ok = n->type == YAML_SCALAR_NODE && !is_null(n);
    unsigned long v = 0;
    if (ok) {
        const char *s = scalar(n);
        ok = s[0] != '\0' && strlen(s) <= 10;
        for (const char *p = s; ok && *p; p++)
            ok = *p >= '0' && *p <= '9';
        if (ok) {
            v = strtoul(s, NULL, 10);
            ok = v >= lo && v <= hi;
        }
    }
    if (!ok) {
        err_at(c, pos_of(n), "%s: expected an integer from %lu to %lu, got %s", where, lo, hi,
               describe(n, d, sizeof(d)));
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int get_bool(ctx_t *c, const yaml_node_t *n, const char *where, bool *out) {
    char d[80];
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = scalar(n);
        if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0) {
            *out = false;
            return 0;
        }
    }
    err_at(c, pos_of(n), "%s: expected true or false, got %s", where, describe(n, d, sizeof(d)));
    return -1;
}

static bool expect_type(ctx_t *c, const yaml_node_t *n, yaml_node_type_t t, const char *where) {
    char d[80];
    if (n->type == t)
        return true;
    err_at(c, pos_of(n), "%s: expected %s, got %s", where,
           t == YAML_MAPPING_NODE ? "a mapping" : "a list", describe(n, d, sizeof(d)));
    return false;
}

/* Iterates a mapping's pairs, reporting non-string keys and duplicates (which
 * libyaml accepts silently; the last would win and hide a mistake). Returns
 * the key for pair i, or NULL to skip it. */
static const char *pair_key(ctx_t *c, const yaml_node_t *map, yaml_node_pair_t *pair,
                            const char *where, yaml_node_t **value) {
    yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
    *value = yaml_document_get_node(c->doc, pair->value);
    if (k->type != YAML_SCALAR_NODE || is_null(k)) {
        char d[80];
        err_at(c, pos_of(k), "%s: expected a key name, got %s", where, describe(k, d, sizeof(d)));
        return NULL;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *pk = yaml_document_get_node(c->doc, p->key);
        if (pk->type == YAML_SCALAR_NODE && strcmp(scalar(pk), scalar(k)) == 0) {
            err_at(c, pos_of(k), "%s%s%s: duplicate key (first at line %d)", where,
                   where[0] ? "." : "", scalar(k), pos_of(pk).line);
            return NULL;
        }
    }
    return scalar(k);
}

static void unknown_key(ctx_t *c, const yaml_node_t *map, yaml_node_pair_t *pair, const char *where,
                        const char *key, const char *expected) {
    yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
    (void)map;
    err_at(c, pos_of(k), "%s%s%s: unknown key (expected one of: %s)", where, where[0] ? "." : "",
           key, expected);
}

static char *xstrdup(ctx_t *c, const char *s) {
    char *p = strdup(s);
    if (!p)
        c->errs->oom = true;
    return p;
}

/* ---- host:port ---- */

int config_parse_listen(const char *s, char **host, uint16_t *port, const char **why) {
    const char *colon;
    char addr[64];
    unsigned char bin[16];
    size_t hlen;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after the IPv6 address";
            return -1;
        }
        if (rb[1] != ':') {
            *why = "missing ':port'";
            return -1;
        }
        colon = rb + 1;
        hlen = (size_t)(rb - s - 1);
        if (hlen >= sizeof(addr)) {
            *why = "not an IPv6 address";
            return -1;
        }
        memcpy(addr, s + 1, hlen);
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing ':port'";
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) {
            *why = "an IPv6 address needs brackets: \"[::]:1883\"";
            return -1;
        }
        if (hlen >= sizeof(addr)) {
            *why = "not an IPv4 address (host names are not resolved)";
            return -1;
        }
        memcpy(addr, s, hlen);
    }
    addr[hlen] = '\0';
    const char *ps = colon + 1;
    unsigned long p = 0;
    bool port_ok = ps[0] != '\0' && strlen(ps) <= 5;
    for (const char *q = ps; port_ok && *q; q++)
        port_ok = *q >= '0' && *q <= '9';
    if (port_ok)
        p = strtoul(ps, NULL, 10);
    /* Port 0: the kernel picks a free port and the log names it (tests). */
    if (!port_ok || p > 65535) {
        *why = "the port must be a number from 0 to 65535";
        return -1;
    }
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, bin) != 1) {
        *why = v6 ? "not an IPv6 address" : "not an IPv4 address (host names are not resolved)";
        return -1;
    }
    *host = strdup(addr);
    if (!*host) {
        *why = "out of memory";
        return -1;
    }
    *port = (uint16_t)p;
    return 0;
}

/* Same address family, bytes and port. */
static bool same_endpoint(const char *h1, uint16_t p1, const char *h2, uint16_t p2) {
    unsigned char a[16] = {0}, b[16] = {0};
    /* Port 0 binds any free port: two of them never collide. */
    if (p1 != p2 || p1 == 0)
        return false;
    bool v6a = strchr(h1, ':') != NULL, v6b = strchr(h2, ':') != NULL;
    if (v6a != v6b)
        return false;
    inet_pton(v6a ? AF_INET6 : AF_INET, h1, a);
    inet_pton(v6b ? AF_INET6 : AF_INET, h2, b);
    return memcmp(a, b, 16) == 0;
}

/* ---- sections ---- */

static void parse_tls(ctx_t *c, yaml_node_t *n, const char *where, config_tls_t *t);

static void parse_listeners(ctx_t *c, yaml_node_t *n) {
    config_t *cfg = c->cfg;
    if (!expect_type(c, n, YAML_SEQUENCE_NODE, "listeners"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        err_at(c, pos_of(n), "listeners: at least one listener is needed");
        return;
    }
    cfg->listeners = calloc(count, sizeof(*cfg->listeners));
    if (!cfg->listeners) {
        c->errs->oom = true;
        return;
    }
    size_t idx = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        char where[64];
        snprintf(where, sizeof(where), "listeners[%zu]", idx);
        if (!expect_type(c, item, YAML_MAPPING_NODE, where))
            continue;
        yaml_node_t *listen = NULL, *tls = NULL;
        for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
             p++) {
            yaml_node_t *v;
            const char *k = pair_key(c, item, p, where, &v);
            if (!k)
                continue;
            if (strcmp(k, "listen") == 0)
                listen = v;
            else if (strcmp(k, "tls") == 0)
                tls = v;
            else
                unknown_key(c, item, p, where, k, "listen, tls");
        }
        if (!listen) {
            err_at(c, pos_of(item), "%s: missing 'listen' (\"host:port\")", where);
            continue;
        }
        snprintf(where, sizeof(where), "listeners[%zu].listen", idx);
        const char *s, *why;
        char *host;
        uint16_t port;
        if (get_string(c, listen, where, &s) < 0)
            continue;
        if (config_parse_listen(s, &host, &port, &why) < 0) {
            err_at(c, pos_of(listen),
                   "%s: expected \"host:port\" or \"[IPv6]:port\", got \"%s\": %s", where, s, why);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < cfg->n_listeners; j++) {
            if (port != 0 &&
                same_endpoint(cfg->listeners[j].host, cfg->listeners[j].port, host, port)) {
                err_at(c, pos_of(listen), "%s: duplicate listener \"%s\" (first at line %d)", where,
                       s, cfg->listeners[j].pos.line);
                dup = true;
                break;
            }
        }
        if (dup) {
            free(host);
            continue;
        }
        config_listener_t *l = &cfg->listeners[cfg->n_listeners++];
        l->listen = xstrdup(c, s);
        l->host = host;
        l->port = port;
        l->pos = pos_of(listen);
        if (tls) {
            snprintf(where, sizeof(where), "listeners[%zu].tls", idx);
            parse_tls(c, tls, where, &l->tls);
        }
    }
}

/* A file the daemon will read: must be a non-empty string; whether it can be
 * read is checked when the daemon loads it (the check runs as another user). */
static void get_path(ctx_t *c, yaml_node_t *v, const char *where, char **out) {
    const char *s;
    if (get_string(c, v, where, &s) < 0)
        return;
    if (s[0] == '\0') {
        err_at(c, pos_of(v), "%s: expected a file name, got \"\"", where);
        return;
    }
    free(*out);
    *out = xstrdup(c, s);
}

static void parse_tls(ctx_t *c, yaml_node_t *n, const char *where, config_tls_t *t) {
    char field[96];
    if (!expect_type(c, n, YAML_MAPPING_NODE, where))
        return;
    t->enabled = true;
    t->min_version = CONFIG_TLS_1_2;
    t->pos = pos_of(n);
    bool req_set = false, ident_set = false;
    config_pos_t ident_pos = {0, 0};
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, where, &v);
        if (!k)
            continue;
        snprintf(field, sizeof(field), "%s.%s", where, k);
        if (strcmp(k, "cert") == 0) {
            get_path(c, v, field, &t->cert);
        } else if (strcmp(k, "key") == 0) {
            get_path(c, v, field, &t->key);
        } else if (strcmp(k, "ca") == 0) {
            get_path(c, v, field, &t->ca);
        } else if (strcmp(k, "require_client_cert") == 0) {
            req_set = get_bool(c, v, field, &t->require_client_cert) == 0;
        } else if (strcmp(k, "use_identity_as_username") == 0) {
            ident_set = get_bool(c, v, field, &t->use_identity_as_username) == 0;
            ident_pos = pos_of(v);
        } else if (strcmp(k, "min_version") == 0) {
            const char *s;
            char d[80];
            if (v->type == YAML_SCALAR_NODE && (s = scalar(v)) != NULL &&
                (strcmp(s, "1.2") == 0 || strcmp(s, "1.3") == 0))
                t->min_version = s[2] == '2' ? CONFIG_TLS_1_2 : CONFIG_TLS_1_3;
            else
                err_at(c, pos_of(v), "%s: expected \"1.2\" or \"1.3\", got %s", field,
                       describe(v, d, sizeof(d)));
        } else {
            unknown_key(c, n, p, where, k,
                        "cert, key, ca, require_client_cert, use_identity_as_username, "
                        "min_version");
        }
    }
    (void)req_set;
    if (!t->cert)
        err_at(c, pos_of(n), "%s: missing 'cert' (PEM certificate file)", where);
    if (!t->key)
        err_at(c, pos_of(n), "%s: missing 'key' (PEM private key file)", where);
    if (t->require_client_cert && !t->ca)
        err_at(c, pos_of(n),
               "%s: require_client_cert needs 'ca' (the CA that signs client "
               "certificates)",
               where);
    if (ident_set && t->use_identity_as_username && !t->require_client_cert)
        err_at(c, ident_pos, "%s.use_identity_as_username: needs require_client_cert: true", where);
}

static void parse_auth(ctx_t *c, yaml_node_t *n) {
    config_auth_t *a = &c->cfg->auth;
    if (!expect_type(c, n, YAML_MAPPING_NODE, "auth"))
        return;
    a->pos = pos_of(n);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "auth", &v);
        if (!k)
            continue;
        char where[64];
        snprintf(where, sizeof(where), "auth.%s", k);
        if (strcmp(k, "allow_anonymous") == 0) {
            a->allow_anonymous_set = get_bool(c, v, where, &a->allow_anonymous) == 0;
        } else if (strcmp(k, "password_file") == 0) {
            get_path(c, v, where, &a->password_file);
        } else if (strcmp(k, "acl_file") == 0) {
            get_path(c, v, where, &a->acl_file);
        } else if (strcmp(k, "acl_deny") == 0) {
            const char *s;
            if (get_string(c, v, where, &s) < 0)
                continue;
            if (strcmp(s, "disconnect") == 0)
                a->acl_deny = ACL_DENY_DISCONNECT;
            else if (strcmp(s, "drop") == 0)
                a->acl_deny = ACL_DENY_DROP;
            else
                err_at(c, pos_of(v), "auth.acl_deny: expected disconnect or drop, got \"%s\"", s);
        } else {
            unknown_key(c, n, p, "auth", k, "allow_anonymous, password_file, acl_file, acl_deny");
        }
    }
}

static int add_property(ctx_t *c, const char *name, const char *value, config_pos_t pos) {
    config_t *cfg = c->cfg;
    config_property_t *p =
        realloc(cfg->kafka_properties, (cfg->n_kafka_properties + 1) * sizeof(*p));
    if (!p) {
        c->errs->oom = true;
        return -1;
    }
    cfg->kafka_properties = p;
    p += cfg->n_kafka_properties++;
    p->name = xstrdup(c, name);
    p->value = xstrdup(c, value);
    p->pos = pos;
    return 0;
}

static void parse_properties(ctx_t *c, yaml_node_t *n) {
    if (!expect_type(c, n, YAML_MAPPING_NODE, "kafka.properties"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "kafka.properties", &v);
        if (!k)
            continue;
        char d[80];
        if (strcmp(k, "bootstrap.servers") == 0 || strcmp(k, "metadata.broker.list") == 0) {
            err_at(c, pos_of(v), "kafka.properties.%s: set kafka.bootstrap_servers instead", k);
            continue;
        }
        if (v->type != YAML_SCALAR_NODE || is_null(v)) {
            err_at(c, pos_of(v), "kafka.properties.%s: expected a value (string or number), got %s",
                   k, describe(v, d, sizeof(d)));
            continue;
        }
        add_property(c, k, scalar(v), pos_of(v));
    }
}

static void parse_kafka(ctx_t *c, yaml_node_t *n) {
    config_t *cfg = c->cfg;
    if (!expect_type(c, n, YAML_MAPPING_NODE, "kafka"))
        return;
    bool have_bootstrap = false;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "kafka", &v);
        if (!k)
            continue;
        if (strcmp(k, "bootstrap_servers") == 0) {
            const char *s;
            have_bootstrap = true;
            if (get_string(c, v, "kafka.bootstrap_servers", &s) < 0)
                continue;
            if (s[0] == '\0') {
                err_at(c, pos_of(v),
                       "kafka.bootstrap_servers: expected \"host:port,...\" or \"embedded\", got "
                       "\"\"");
                continue;
            }
            cfg->bootstrap_servers = xstrdup(c, s);
        } else if (strcmp(k, "properties") == 0) {
            parse_properties(c, v);
        } else if (strcmp(k, "shutdown_timeout_s") == 0) {
            if (c->shutdown_pos.line) {
                err_at(c, pos_of(v), "kafka.shutdown_timeout_s: also set at line %d; keep one",
                       c->shutdown_pos.line);
                continue;
            }
            c->shutdown_pos = pos_of(v);
            get_uint(c, v, "kafka.shutdown_timeout_s", 0, 3600, &cfg->shutdown_timeout_s);
        } else {
            unknown_key(c, n, p, "kafka", k, "bootstrap_servers, properties, shutdown_timeout_s");
        }
    }
    if (!have_bootstrap)
        err_at(c, pos_of(n),
               "kafka.bootstrap_servers: missing (\"host:port,...\", or \"embedded\" for the "
               "in-process test cluster)");
}

static void parse_rules(ctx_t *c, yaml_node_t *n) {
    config_t *cfg = c->cfg;
    if (!expect_type(c, n, YAML_SEQUENCE_NODE, "topics"))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    cfg->rules = calloc(count ? count : 1, sizeof(*cfg->rules));
    if (!cfg->rules) {
        c->errs->oom = true;
        return;
    }
    size_t idx = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        char where[64], field[80];
        snprintf(where, sizeof(where), "topics[%zu]", idx);
        if (!expect_type(c, item, YAML_MAPPING_NODE, where))
            continue;
        const char *mqtt = NULL, *regex = NULL, *kafka = NULL, *key = NULL;
        config_rule_t r = {0};
        bool bad = false, have_mqtt = false, have_regex = false, have_kafka = false;
        for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
             p++) {
            yaml_node_t *v;
            const char *k = pair_key(c, item, p, where, &v);
            if (!k) {
                bad = true;
                continue;
            }
            snprintf(field, sizeof(field), "%s.%s", where, k);
            if (strcmp(k, "mqtt") == 0) {
                have_mqtt = true;
                r.pattern_pos = pos_of(v);
                bad |= get_string(c, v, field, &mqtt) < 0;
            } else if (strcmp(k, "regex") == 0) {
                have_regex = true;
                if (!have_mqtt)
                    r.pattern_pos = pos_of(v);
                bad |= get_string(c, v, field, &regex) < 0;
            } else if (strcmp(k, "kafka") == 0) {
                have_kafka = true;
                r.kafka_pos = pos_of(v);
                bad |= get_string(c, v, field, &kafka) < 0;
            } else if (strcmp(k, "key") == 0) {
                r.key_pos = pos_of(v);
                /* An empty plain value means "no key": records go to any partition. */
                if (is_null(v))
                    key = "";
                else
                    bad |= get_string(c, v, field, &key) < 0;
            } else {
                unknown_key(c, item, p, where, k, "mqtt, regex, kafka, key");
                bad = true;
            }
        }
        if (have_mqtt && have_regex) {
            err_at(c, pos_of(item), "%s: give either 'mqtt' (a topic filter) or 'regex', not both",
                   where);
            bad = true;
        } else if (!have_mqtt && !have_regex) {
            err_at(c, pos_of(item), "%s: missing 'mqtt' (a topic filter) or 'regex'", where);
            bad = true;
        }
        if (!have_kafka) {
            err_at(c, pos_of(item), "%s: missing 'kafka' (the Kafka topic template)", where);
            bad = true;
        }
        if (bad)
            continue;
        r.kind = mqtt ? RULE_FILTER : RULE_REGEX;
        r.pattern = (char *)(mqtt ? mqtt : regex);
        r.kafka = (char *)kafka;
        r.key = (char *)(key ? key : "{topic}");
        r.pos = pos_of(item);
        r.file = cfg->path;
        if (topic_map_rule_check(&r, idx, report_cb, c) > 0)
            continue;
        /* Index = position in the file, so messages and metrics agree with it. */
        r.pattern = xstrdup(c, r.pattern);
        r.kafka = xstrdup(c, r.kafka);
        r.key = xstrdup(c, r.key);
        cfg->rules[cfg->n_rules++] = r;
    }
}

static void parse_unmapped(ctx_t *c, yaml_node_t *n) {
    const char *s, *why;
    if (get_string(c, n, "unmapped", &s) < 0)
        return;
    c->cfg->unmapped_pos = pos_of(n);
    if (strcmp(s, "disconnect") == 0) {
        c->cfg->unmapped = UNMAPPED_DISCONNECT;
    } else if (strcmp(s, "drop") == 0) {
        c->cfg->unmapped = UNMAPPED_DROP;
    } else if (topic_map_kafka_topic_check(s, strlen(s), &why) < 0) {
        err_at(c, pos_of(n),
               "unmapped: expected disconnect, drop or a Kafka topic name, got \"%s\": %s", s, why);
    } else {
        c->cfg->unmapped = UNMAPPED_TOPIC;
        c->cfg->unmapped_topic = xstrdup(c, s);
    }
}

static void parse_mqtt(ctx_t *c, yaml_node_t *n) {
    config_mqtt_t *m = &c->cfg->mqtt;
    if (!expect_type(c, n, YAML_MAPPING_NODE, "mqtt"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "mqtt", &v);
        if (!k)
            continue;
        char where[64];
        snprintf(where, sizeof(where), "mqtt.%s", k);
        if (strcmp(k, "max_packet_size") == 0) {
            if (get_uint(c, v, where, MIN_PACKET, MQTT_MAX_PACKET, &m->max_packet_size) == 0) {
                c->max_packet_set = true;
                c->max_packet_pos = pos_of(v);
            }
        } else if (strcmp(k, "max_inflight") == 0) {
            get_uint(c, v, where, 1, 65535, &m->max_inflight);
        } else if (strcmp(k, "max_connections") == 0) {
            get_uint(c, v, where, 1, 10000000, &m->max_connections);
        } else if (strcmp(k, "connect_timeout_s") == 0) {
            get_uint(c, v, where, 1, 3600, &m->connect_timeout_s);
        } else if (strcmp(k, "max_keepalive_s") == 0) {
            get_uint(c, v, where, 1, 65535, &m->max_keepalive_s);
        } else if (strcmp(k, "session_expiry_s") == 0) {
            get_uint(c, v, where, 0, UINT32_MAX, &m->session_expiry_s);
        } else if (strcmp(k, "max_connections_per_ip") == 0) {
            get_uint(c, v, where, 0, 10000000, &m->max_connections_per_ip);
        } else if (strcmp(k, "connect_rate_per_ip") == 0) {
            get_uint(c, v, where, 0, 1000000, &m->connect_rate_per_ip);
        } else if (strcmp(k, "connect_burst_per_ip") == 0) {
            get_uint(c, v, where, 1, 1000000, &m->connect_burst_per_ip);
        } else if (strcmp(k, "max_output_buffer") == 0) {
            get_uint(c, v, where, 4096, 1u << 30, &m->max_output_buffer);
        } else if (strcmp(k, "max_persistent_sessions") == 0) {
            get_uint(c, v, where, 0, 10000000, &m->max_persistent_sessions);
            c->max_persistent_set = true;
        } else {
            unknown_key(c, n, p, "mqtt", k,
                        "max_packet_size, max_inflight, max_connections, connect_timeout_s, "
                        "max_keepalive_s, session_expiry_s, max_connections_per_ip, "
                        "connect_rate_per_ip, connect_burst_per_ip, max_output_buffer, "
                        "max_persistent_sessions");
        }
    }
}

static void parse_metrics(ctx_t *c, yaml_node_t *n) {
    if (!expect_type(c, n, YAML_MAPPING_NODE, "metrics"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "metrics", &v);
        if (!k)
            continue;
        if (strcmp(k, "listen") != 0) {
            unknown_key(c, n, p, "metrics", k, "listen");
            continue;
        }
        const char *s, *why;
        if (get_string(c, v, "metrics.listen", &s) < 0)
            continue;
        char *host;
        uint16_t port;
        if (config_parse_listen(s, &host, &port, &why) < 0) {
            err_at(c, pos_of(v),
                   "metrics.listen: expected \"host:port\" or \"[IPv6]:port\", got \"%s\": %s", s,
                   why);
            continue;
        }
        c->cfg->metrics_listen = xstrdup(c, s);
        c->cfg->metrics_host = host;
        c->cfg->metrics_port = port;
        for (size_t j = 0; j < c->cfg->n_listeners; j++) {
            const config_listener_t *l = &c->cfg->listeners[j];
            if (same_endpoint(l->host, l->port, host, port))
                err_at(c, pos_of(v), "metrics.listen: \"%s\" is also an MQTT listener (line %d)", s,
                       l->pos.line);
        }
    }
}

static void parse_log(ctx_t *c, yaml_node_t *n) {
    if (!expect_type(c, n, YAML_MAPPING_NODE, "log"))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, n, p, "log", &v);
        if (!k)
            continue;
        char d[80];
        if (strcmp(k, "level") == 0) {
            if (v->type != YAML_SCALAR_NODE || log_level_parse(scalar(v), &c->cfg->log_level) < 0)
                err_at(c, pos_of(v), "log.level: expected error, warn, info or debug, got %s",
                       describe(v, d, sizeof(d)));
        } else if (strcmp(k, "format") == 0) {
            if (v->type != YAML_SCALAR_NODE || log_format_parse(scalar(v), &c->cfg->log_format) < 0)
                err_at(c, pos_of(v), "log.format: expected text or json, got %s",
                       describe(v, d, sizeof(d)));
        } else {
            unknown_key(c, n, p, "log", k, "level, format");
        }
    }
}

static void parse_root(ctx_t *c, yaml_node_t *root) {
    config_t *cfg = c->cfg;
    yaml_node_t *metrics = NULL;
    bool have_kafka = false;
    if (!expect_type(c, root, YAML_MAPPING_NODE, "the top level"))
        return;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *v;
        const char *k = pair_key(c, root, p, "", &v);
        if (!k)
            continue;
        if (strcmp(k, "listeners") == 0) {
            parse_listeners(c, v);
        } else if (strcmp(k, "kafka") == 0) {
            have_kafka = true;
            parse_kafka(c, v);
        } else if (strcmp(k, "topics") == 0) {
            parse_rules(c, v);
        } else if (strcmp(k, "unmapped") == 0) {
            parse_unmapped(c, v);
        } else if (strcmp(k, "headers") == 0) {
            get_bool(c, v, "headers", &cfg->headers);
        } else if (strcmp(k, "mqtt") == 0) {
            parse_mqtt(c, v);
        } else if (strcmp(k, "shutdown_timeout_s") == 0) {
            if (c->shutdown_pos.line)
                err_at(c, pos_of(v), "shutdown_timeout_s: also set at line %d; keep one",
                       c->shutdown_pos.line);
            else if (get_uint(c, v, "shutdown_timeout_s", 0, 3600, &cfg->shutdown_timeout_s) == 0)
                c->shutdown_pos = pos_of(v);
        } else if (strcmp(k, "metrics") == 0) {
            metrics = v;
        } else if (strcmp(k, "log") == 0) {
            parse_log(c, v);
        } else if (strcmp(k, "auth") == 0) {
            parse_auth(c, v);
        } else {
            unknown_key(c, root, p, "", k,
                        "listeners, kafka, topics, unmapped, headers, mqtt, auth, "
                        "shutdown_timeout_s, metrics, log");
        }
    }
    if (!have_kafka)
        err_at(c, pos_of(root),
               "kafka.bootstrap_servers: missing (\"host:port,...\", or \"embedded\" for the "
               "in-process test cluster)");
    /* After the listeners, wherever it was in the file: it is compared with them. */
    if (metrics)
        parse_metrics(c, metrics);
}

/* Fills in what the file did not say, after parsing so that defaults can
 * depend on what it did say. */
static void apply_defaults(ctx_t *c) {
    config_t *cfg = c->cfg;
    if (!cfg->listeners) {
        cfg->listeners = calloc(1, sizeof(*cfg->listeners));
        if (!cfg->listeners) {
            c->errs->oom = true;
            return;
        }
        cfg->listeners[0].listen = xstrdup(c, "127.0.0.1:1883");
        cfg->listeners[0].host = xstrdup(c, "127.0.0.1");
        cfg->listeners[0].port = 1883;
        cfg->n_listeners = 1;
    }
    if (!c->max_persistent_set)
        cfg->mqtt.max_persistent_sessions = cfg->mqtt.max_connections;
    /* Like Mosquitto 2.0: once a password file is configured, a client must
     * log in unless the operator says otherwise. */
    if (!cfg->auth.allow_anonymous_set)
        cfg->auth.allow_anonymous = cfg->auth.password_file == NULL;
    /* message.max.bytes as librdkafka will see it (the last setting wins). */
    unsigned long mmb = CONFIG_KAFKA_MESSAGE_MAX_BYTES_DEFAULT;
    for (size_t i = 0; i < cfg->n_kafka_properties; i++) {
        const config_property_t *p = &cfg->kafka_properties[i];
        if (strcmp(p->name, "message.max.bytes") != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long v = strtoul(p->value, &end, 10);
        /* Not a plain number: librdkafka's check reports it. */
        if (p->value[0] >= '0' && p->value[0] <= '9' && *end == '\0' && errno == 0)
            mmb = v;
    }
    if (!c->max_packet_set)
        cfg->mqtt.max_packet_size = (uint32_t)(mmb < MQTT_MAX_PACKET ? mmb : MQTT_MAX_PACKET);
    else if (cfg->mqtt.max_packet_size > mmb)
        err_at(c, c->max_packet_pos,
               "mqtt.max_packet_size: %u is above Kafka's message.max.bytes (%lu); lower it or "
               "raise kafka.properties.message.max.bytes",
               cfg->mqtt.max_packet_size, mmb);
}

static void config_init(config_t *cfg) {
    cfg->unmapped = UNMAPPED_DISCONNECT;
    cfg->headers = true;
    cfg->mqtt.max_inflight = 1024;
    cfg->mqtt.max_connections = 100000;
    cfg->mqtt.connect_timeout_s = 10;
    cfg->mqtt.max_keepalive_s = 65535;
    cfg->mqtt.session_expiry_s = 86400;
    cfg->mqtt.max_connections_per_ip = 10000;
    cfg->mqtt.connect_rate_per_ip = 1000;
    cfg->mqtt.connect_burst_per_ip = 2000;
    cfg->mqtt.max_output_buffer = 1024 * 1024;
    cfg->shutdown_timeout_s = 30;
    cfg->log_level = LOG_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
}

/* libyaml's reader errors carry an offset, not a mark. */
static config_pos_t pos_from_offset(const char *s, size_t len, size_t off) {
    config_pos_t p = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (s[i] == '\n') {
            p.line++;
            p.col = 1;
        } else {
            p.col++;
        }
    }
    return p;
}

static void yaml_error(ctx_t *c, const yaml_parser_t *parser, const char *yaml, size_t len) {
    config_pos_t pos;
    if (parser->error == YAML_READER_ERROR) {
        pos = pos_from_offset(yaml, len, parser->problem_offset);
        err_at(c, pos, "invalid YAML: %s", parser->problem ? parser->problem : "read error");
        return;
    }
    pos = (config_pos_t){(int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1};
    if (parser->context)
        err_at(c, pos, "invalid YAML: %s (%s at line %d)",
               parser->problem ? parser->problem : "syntax error", parser->context,
               (int)parser->context_mark.line + 1);
    else
        err_at(c, pos, "invalid YAML: %s", parser->problem ? parser->problem : "syntax error");
}

int config_load_string(const char *yaml, size_t len, const char *name, config_t **out, char *errbuf,
                       size_t errlen) {
    errs_t errs = {name, errbuf, errlen, 0, 0, false};
    if (errlen)
        errbuf[0] = '\0';
    *out = NULL;
    config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(name))) {
        free(cfg);
        if (errlen)
            snprintf(errbuf, errlen, "%s: out of memory\n", name);
        return -1;
    }
    config_init(cfg);
    ctx_t c = {NULL, &errs, cfg, {0, 0}, {0, 0}, false, false};
    /* Our defaults first: applied in order, the user's entries override them. */
    add_property(&c, "enable.idempotence", "true", (config_pos_t){0, 0});
    add_property(&c, "acks", "all", (config_pos_t){0, 0});
    add_property(&c, "linger.ms", "5", (config_pos_t){0, 0});
    /* The Java client's key hashing (murmur2), as Confluent MQTT Proxy and
     * every Java producer use: a key lands on the partition it did before a
     * migration and that other producers of the topic pick. */
    add_property(&c, "partitioner", "murmur2_random", (config_pos_t){0, 0});

    yaml_parser_t parser;
    yaml_document_t doc;
    bool have_doc = false;
    if (!yaml_parser_initialize(&parser)) {
        errs.oom = true;
        goto done;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_error(&c, &parser, yaml, len);
        yaml_parser_delete(&parser);
        goto done;
    }
    have_doc = true;
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        err_at(&c, (config_pos_t){1, 1},
               "the file is empty; expected a mapping with at least kafka.bootstrap_servers");
    } else {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            yaml_error(&c, &parser, yaml, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2)
                err_at(&c, pos_of(r2), "only one YAML document is allowed");
            yaml_document_delete(&next);
        }
        parse_root(&c, root);
        apply_defaults(&c);
    }
    yaml_parser_delete(&parser);
done:
    if (have_doc)
        yaml_document_delete(&doc);
    if (errs.oom) {
        errs.count++;
        if (errlen && errs.len + 1 < errlen)
            snprintf(errbuf + errs.len, errlen - errs.len, "%s: out of memory\n", name);
    }
    if (errs.count > 0) {
        config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, config_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    char *buf;
    size_t len;
    char err[512];
    /* A configuration file is small; a huge one is a mistake. */
    if (file_read_all(path, 16u << 20, &buf, &len, err, sizeof(err)) < 0) {
        if (errlen)
            snprintf(errbuf, errlen, "%s\n", err);
        return -1;
    }
    int rc = config_load_string(buf, len, path, out, errbuf, errlen);
    free(buf);
    return rc;
}

void config_free(config_t *cfg) {
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].listen);
        free(cfg->listeners[i].host);
        free(cfg->listeners[i].tls.cert);
        free(cfg->listeners[i].tls.key);
        free(cfg->listeners[i].tls.ca);
    }
    free(cfg->listeners);
    free(cfg->bootstrap_servers);
    for (size_t i = 0; i < cfg->n_kafka_properties; i++) {
        free(cfg->kafka_properties[i].name);
        free(cfg->kafka_properties[i].value);
    }
    free(cfg->kafka_properties);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        free(cfg->rules[i].pattern);
        free(cfg->rules[i].kafka);
        free(cfg->rules[i].key);
    }
    free(cfg->rules);
    free(cfg->unmapped_topic);
    free(cfg->auth.password_file);
    free(cfg->auth.acl_file);
    free(cfg->metrics_listen);
    free(cfg->metrics_host);
    free(cfg->path);
    free(cfg);
}
