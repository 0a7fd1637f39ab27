/* The parsers of the settings rows that hold more than one value: the
 * listeners and topics lists, kafka.properties, and the two values checked
 * against others (unmapped: a word or {topic: NAME}; metrics.listen: not an
 * MQTT listener), plus the checks across a listener's tls: keys. The keys
 * each list item may hold, and their plain values, come from the settings
 * table like everywhere else (settings.c). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "downlink/route.h"
#include "map/topic_map.h"
#include "settings.h"

/* ---- listeners ---- */

void cfg_parse_listener(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                        const char *at, size_t idx, void *base) {
    (void)s;
    (void)idx;
    config_t *cfg = base;
    char field[80];
    /* The keys first, then the address, then TLS (only with a valid address). */
    yaml_node_t *found[SETTINGS_MAX] = {0};
    cfg_walk(c, item, sec, at, NULL, found, false);
    if (cfg_check_required(c, item, sec, at, found))
        return;
    yaml_node_t *listen = cfg_found(found, "listeners[].listen");
    yaml_node_t *tls = cfg_found(found, "listeners[].tls");
    yaml_node_t *ws = cfg_found(found, "listeners[].websocket");
    snprintf(field, sizeof(field), "%s.listen", at);
    const char *str;
    char *host;
    uint16_t port;
    if (cfg_get_listen(c, listen, field, &str, &host, &port) < 0)
        return;
    for (size_t j = 0; j < cfg->n_listeners; j++) {
        if (port != 0 &&
            cfg_same_endpoint(cfg->listeners[j].host, cfg->listeners[j].port, host, port)) {
            cfg_err(c, cfg_pos_of(listen), "%s: duplicate listener \"%s\" (first at line %d)",
                    field, str, cfg->listeners[j].pos.line);
            free(host);
            return;
        }
    }
    config_listener_t *l = &cfg->listeners[cfg->n_listeners++];
    l->listen = cfg_strdup(c, str);
    l->host = host;
    l->port = port;
    l->pos = cfg_pos_of(listen);
    if (tls) {
        snprintf(field, sizeof(field), "%s.tls", at);
        cfg_parse_section(c, settings_find("listeners[].tls"), tls, field, l);
    }
    if (ws) {
        snprintf(field, sizeof(field), "%s.websocket", at);
        cfg_parse_section(c, settings_find("listeners[].websocket"), ws, field, l);
    }
}

void cfg_check_websocket(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                         yaml_node_t *const *found) {
    (void)n;
    config_ws_t *w = &((config_listener_t *)base)->websocket;
    yaml_node_t *path = cfg_found(found, "listeners[].websocket.path");
    if (!w->path)
        w->path = cfg_strdup(c, CONFIG_WS_DEFAULT_PATH);
    else if (w->path[0] != '/' || strpbrk(w->path, "?# \t"))
        cfg_err(c, cfg_pos_of(path), "%s.path: expected a path such as \"/mqtt\", got \"%s\"",
                where, w->path);
}

/* An Origin as browsers send it (RFC 6454): scheme "://" host [":" port],
 * lower case, nothing after. */
static bool origin_ok(const char *o) {
    const char *sep = strstr(o, "://");
    if (!sep || sep == o || !sep[3])
        return false;
    for (const char *p = o; *p; p++)
        if (isupper((unsigned char)*p) || isspace((unsigned char)*p) ||
            (p > sep + 2 && (*p == '/' || *p == '?' || *p == '#')))
            return false;
    return true;
}

void cfg_parse_origins(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                       void *base) {
    if (!cfg_expect(c, v, YAML_SEQUENCE_NODE, where))
        return;
    char ***list = (char ***)((char *)base + s->off);
    size_t *n = (size_t *)((char *)base + s->count_off);
    size_t want = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    *list = calloc(want ? want : 1, sizeof(**list));
    if (!*list) {
        cfg_oom(c);
        return;
    }
    size_t idx = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        char at[160];
        snprintf(at, sizeof(at), "%s[%zu]", where, idx);
        const char *str;
        if (cfg_get_string(c, item, at, &str) < 0)
            continue;
        if (!origin_ok(str)) {
            cfg_err(c, cfg_pos_of(item),
                    "%s: expected an origin \"scheme://host[:port]\" in lower case, got \"%s\"", at,
                    str);
            continue;
        }
        (*list)[(*n)++] = cfg_strdup(c, str);
    }
}

void cfg_check_tls(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                   yaml_node_t *const *found) {
    const config_tls_t *t = &((const config_listener_t *)base)->tls;
    yaml_node_t *ident = cfg_found(found, "listeners[].tls.use_identity_as_username");
    if (t->require_client_cert && !t->ca)
        cfg_err(c, cfg_pos_of(n),
                "%s: require_client_cert needs 'ca' (the CA that signs client certificates)",
                where);
    if (t->crl && !t->ca)
        cfg_err(c, cfg_pos_of(n), "%s: crl_file needs 'ca' (the CA whose revocations it lists)",
                where);
    if (ident && t->use_identity_as_username && !t->require_client_cert)
        cfg_err(c, cfg_pos_of(ident),
                "%s.use_identity_as_username: needs require_client_cert: true", where);
}

/* ---- kafka.properties: librdkafka's names, checked by librdkafka later ---- */

void cfg_parse_properties(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                          void *base) {
    (void)s;
    (void)base;
    if (!cfg_expect(c, n, YAML_MAPPING_NODE, where))
        return;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = cfg_pair_key(c, n, p, where, &v);
        if (!k)
            continue;
        char d[80];
        if (strcmp(k, "bootstrap.servers") == 0 || strcmp(k, "metadata.broker.list") == 0) {
            cfg_err(c, cfg_pos_of(v), "%s.%s: set kafka.bootstrap_servers instead", where, k);
            continue;
        }
        if (v->type != YAML_SCALAR_NODE || cfg_is_null(v)) {
            cfg_err(c, cfg_pos_of(v), "%s.%s: expected a value (string or number), got %s", where,
                    k, cfg_describe(v, d, sizeof(d)));
            continue;
        }
        const char *value = (const char *)v->data.scalar.value;
        if (cfg_property_is_file(k, value)) {
            char *path = cfg_resolve_path(c, value);
            if (path)
                cfg_add_property(c, k, path, cfg_pos_of(v));
            free(path);
            continue;
        }
        cfg_add_property(c, k, value, cfg_pos_of(v));
    }
}

/* ---- topics ---- */

/* One rule while its keys are parsed: the rows "topics[].x" point into r,
 * which holds the YAML's strings until the rule is checked and copied. */
typedef struct {
    config_rule_t r;
    bool bad;
} rule_build_t;

void cfg_parse_rule_string(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                           void *base) {
    rule_build_t *b = base;
    const char *str = "";
    *(config_pos_t *)((char *)&b->r + s->pos_off) = cfg_pos_of(v);
    /* key: an empty plain value means "no key": records go to any partition. */
    if (!(s->flags & SETTING_NULL_EMPTY) || !cfg_is_null(v))
        b->bad |= cfg_get_string(c, v, where, &str) < 0;
    *(const char **)((char *)&b->r + s->off) = str;
}

static void report_rule_error(void *ud, config_pos_t pos, const char *msg) {
    cfg_err(ud, pos, "%s", msg);
}

void cfg_parse_rule(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                    const char *at, size_t idx, void *base) {
    (void)s;
    config_t *cfg = base;
    rule_build_t b = {0};
    yaml_node_t *found[SETTINGS_MAX] = {0};
    if (!cfg_walk(c, item, sec, at, &b, found, true))
        b.bad = true;
    bool have_mqtt = cfg_found(found, "topics[].mqtt") != NULL;
    bool have_regex = cfg_found(found, "topics[].regex") != NULL;
    if (have_mqtt && have_regex) {
        cfg_err(c, cfg_pos_of(item), "%s: give either 'mqtt' (a topic filter) or 'regex', not both",
                at);
        b.bad = true;
    } else if (!have_mqtt && !have_regex) {
        cfg_err(c, cfg_pos_of(item), "%s: missing 'mqtt' (a topic filter) or 'regex'", at);
        b.bad = true;
    }
    b.bad |= cfg_check_required(c, item, sec, at, found);
    if (b.bad)
        return;
    config_rule_t r = b.r;
    r.kind = have_mqtt ? RULE_FILTER : RULE_REGEX;
    if (!r.key)
        r.key = (char *)"{topic}";
    r.pos = cfg_pos_of(item);
    r.file = cfg->path;
    if (topic_map_rule_check(&r, idx, report_rule_error, c) > 0)
        return;
    /* Index = position in the file, so messages and metrics agree with it. */
    r.pattern = cfg_strdup(c, r.pattern);
    r.kafka = cfg_strdup(c, r.kafka);
    r.key = cfg_strdup(c, r.key);
    cfg->rules[cfg->n_rules++] = r;
}

/* ---- downlink, retained ---- */

static bool kafka_name_ok(parse_ctx_t *c, const char *name, yaml_node_t *v, const char *where) {
    const char *why;
    if (topic_map_kafka_topic_check(name, strlen(name), &why) == 0)
        return true;
    cfg_err(c, cfg_pos_of(v), "%s: invalid Kafka topic name \"%s\": %s", where, name, why);
    return false;
}

void cfg_parse_downlink(parse_ctx_t *c, const setting_t *s, yaml_node_t *item, const char *sec,
                        const char *at, size_t idx, void *base) {
    (void)s;
    (void)idx;
    config_t *cfg = base;
    config_downlink_t d = {0};
    settings_defaults(sec, &d);
    yaml_node_t *found[SETTINGS_MAX] = {0};
    bool bad = !cfg_walk(c, item, sec, at, &d, found, true);
    bad |= cfg_check_required(c, item, sec, at, found);
    yaml_node_t *kafka = cfg_found(found, "downlink[].kafka");
    yaml_node_t *mqtt = cfg_found(found, "downlink[].mqtt");
    char field[80];
    snprintf(field, sizeof(field), "%s.kafka", at);
    if (!bad && d.kafka && !kafka_name_ok(c, d.kafka, kafka, field))
        bad = true;
    if (!bad && cfg->retained.topic && strcmp(cfg->retained.topic, d.kafka) == 0) {
        cfg_err(c, cfg_pos_of(kafka), "%s: \"%s\" is the retained topic (line %d)", field, d.kafka,
                cfg->retained.pos.line);
        bad = true;
    }
    for (size_t j = 0; !bad && j < cfg->n_downlink; j++) {
        if (strcmp(cfg->downlink[j].kafka, d.kafka) == 0) {
            cfg_err(c, cfg_pos_of(kafka), "%s: \"%s\" is already read by the rule at line %d",
                    field, d.kafka, cfg->downlink[j].pos.line);
            bad = true;
        }
    }
    size_t col;
    const char *err = d.mqtt ? dl_template_check(d.mqtt, &col) : NULL;
    if (err) {
        /* The value's own column when it is plain, one more after a quote. */
        config_pos_t p = cfg_pos_of(mqtt);
        p.col += (int)col + (mqtt->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? 0 : 1);
        cfg_err(c, p, "%s.mqtt: %s", at, err);
        bad = true;
    }
    if (bad) {
        free(d.kafka);
        free(d.mqtt);
        return;
    }
    d.pos = cfg_pos_of(item);
    cfg->downlink[cfg->n_downlink++] = d;
}

void cfg_check_retained(parse_ctx_t *c, yaml_node_t *n, const char *where, void *base,
                        yaml_node_t *const *found) {
    (void)n;
    const config_t *cfg = base;
    yaml_node_t *topic = cfg_found(found, "retained.topic");
    char field[80];
    snprintf(field, sizeof(field), "%s.topic", where);
    if (!topic || !cfg->retained.topic || !kafka_name_ok(c, cfg->retained.topic, topic, field))
        return;
    /* Its records update the store; delivered live as well, they would
     * arrive twice (docs/semantics.md). */
    for (size_t j = 0; j < cfg->n_downlink; j++)
        if (strcmp(cfg->downlink[j].kafka, cfg->retained.topic) == 0)
            cfg_err(c, cfg_pos_of(topic), "%s: \"%s\" is also a downlink topic (line %d)", field,
                    cfg->retained.topic, cfg->downlink[j].pos.line);
}

/* ---- spool ---- */

/* A uint64_t from 0 up (spool.max_bytes). */
void cfg_parse_u64(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                   void *base) {
    char d[80];
    bool ok = n->type == YAML_SCALAR_NODE && !cfg_is_null(n);
    unsigned long long v = 0;
    if (ok) {
        const char *str = (const char *)n->data.scalar.value;
        ok = str[0] != '\0' && strlen(str) <= 20;
        for (const char *p = str; ok && *p; p++)
            ok = *p >= '0' && *p <= '9';
        if (ok) {
            errno = 0;
            v = strtoull(str, NULL, 10);
            ok = errno == 0;
        }
    }
    if (!ok) {
        cfg_err(c, cfg_pos_of(n), "%s: expected an integer from 0 to %llu, got %s", where,
                (unsigned long long)UINT64_MAX, cfg_describe(n, d, sizeof(d)));
        return;
    }
    *(uint64_t *)((char *)base + s->off) = (uint64_t)v;
}

/* ---- unmapped, metrics.listen ---- */

/* Whether `s` is a likely typo of `word`: the same but for case, or at most
 * two edits away (dropp, disconect). */
static bool near_word(const char *s, const char *word) {
    if (strcasecmp(s, word) == 0)
        return true;
    size_t n = strlen(s), m = strlen(word);
    if (n > 32 || (n > m ? n - m : m - n) > 2)
        return false;
    size_t d[33][33];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t sub = d[i - 1][j - 1] + (tolower((unsigned char)s[i - 1]) != word[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[n][m] <= 2;
}

/* `unmapped: disconnect`, `unmapped: drop` or `unmapped: {topic: NAME}`: a
 * plain word that is neither is an error, so that a typo (Drop, dropp,
 * discard) never becomes the name of a Kafka topic. */
void cfg_parse_unmapped(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                        void *base) {
    (void)s;
    config_t *cfg = base;
    const char *str, *why;
    cfg->unmapped_pos = cfg_pos_of(n);
    if (n->type == YAML_MAPPING_NODE) {
        yaml_node_t *topic = NULL;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *v;
            const char *k = cfg_pair_key(c, n, p, where, &v);
            if (!k)
                continue;
            if (strcmp(k, "topic") == 0)
                topic = v;
            else
                cfg_err(c, cfg_pos_of(yaml_document_get_node(c->doc, p->key)),
                        "%s.%s: unknown key (expected topic)", where, k);
        }
        char at[64];
        snprintf(at, sizeof(at), "%s.topic", where);
        if (!topic) {
            cfg_err(c, cfg_pos_of(n), "%s: missing 'topic' (unmapped: {topic: NAME})", where);
            return;
        }
        if (cfg_get_string(c, topic, at, &str) < 0)
            return;
        if (topic_map_kafka_topic_check(str, strlen(str), &why) < 0) {
            cfg_err(c, cfg_pos_of(topic), "%s: invalid Kafka topic name \"%s\": %s", at, str, why);
            return;
        }
        cfg->unmapped = UNMAPPED_TOPIC;
        cfg->unmapped_topic = cfg_strdup(c, str);
        return;
    }
    if (n->type != YAML_SCALAR_NODE || cfg_is_null(n)) {
        char d[80];
        cfg_err(c, cfg_pos_of(n), "%s: expected disconnect, drop or {topic: NAME}, got %s", where,
                cfg_describe(n, d, sizeof(d)));
        return;
    }
    if (cfg_get_string(c, n, where, &str) < 0)
        return;
    if (strcmp(str, "disconnect") == 0) {
        cfg->unmapped = UNMAPPED_DISCONNECT;
    } else if (strcmp(str, "drop") == 0) {
        cfg->unmapped = UNMAPPED_DROP;
    } else if (near_word(str, "drop") || near_word(str, "disconnect")) {
        cfg_err(c, cfg_pos_of(n),
                "%s: expected disconnect, drop or {topic: NAME}, got \"%s\" (did you mean %s?)",
                where, str, near_word(str, "drop") ? "drop" : "disconnect");
    } else if (topic_map_kafka_topic_check(str, strlen(str), &why) == 0) {
        cfg_err(c, cfg_pos_of(n),
                "%s: expected disconnect, drop or {topic: NAME}, got \"%s\" (to send unmapped "
                "messages to the Kafka topic %s, write unmapped: {topic: %s})",
                where, str, str, str);
    } else {
        cfg_err(c, cfg_pos_of(n), "%s: expected disconnect, drop or {topic: NAME}, got \"%s\"",
                where, str);
    }
}

void cfg_parse_metrics_listen(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                              void *base) {
    (void)s;
    config_t *cfg = base;
    const char *str;
    char *host;
    uint16_t port;
    if (cfg_get_listen(c, v, where, &str, &host, &port) < 0)
        return;
    cfg->metrics_listen = cfg_strdup(c, str);
    cfg->metrics_host = host;
    cfg->metrics_port = port;
    for (size_t j = 0; j < cfg->n_listeners; j++) {
        const config_listener_t *l = &cfg->listeners[j];
        if (cfg_same_endpoint(l->host, l->port, host, port))
            cfg_err(c, cfg_pos_of(v), "%s: \"%s\" is also an MQTT listener (line %d)", where, str,
                    l->pos.line);
    }
}
