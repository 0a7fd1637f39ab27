/* Configuration: YAML -> config_t. The whole file is loaded as a libyaml node
 * graph (marks give line:col for every value), then walked once with the
 * settings table (settings.c): each mapping's keys are the rows below its
 * section, each value is parsed by its row's type. Every error is collected,
 * so an operator fixes a file in one round instead of one error per run. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "settings.h"
#include "util/hash.h"
#include "util/file_read.h"

struct errs {
    const char *file;
    char *buf;
    size_t cap, len;
    int count;
    bool oom;
};
typedef struct errs errs_t;

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

void cfg_err(parse_ctx_t *c, config_pos_t pos, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(c->errs, pos, fmt, ap);
    va_end(ap);
}

void cfg_oom(parse_ctx_t *c) {
    c->errs->oom = true;
}

config_pos_t cfg_pos_of(const yaml_node_t *n) {
    return (config_pos_t){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

bool cfg_is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *cfg_describe(const yaml_node_t *n, char *buf, size_t len) {
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        if (cfg_is_null(n))
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

int cfg_get_string(parse_ctx_t *c, const yaml_node_t *n, const char *where, const char **out) {
    char d[80];
    if (n->type != YAML_SCALAR_NODE || cfg_is_null(n)) {
        cfg_err(c, cfg_pos_of(n), "%s: expected a string, got %s", where,
                cfg_describe(n, d, sizeof(d)));
        return -1;
    }
    if (strlen(scalar(n)) != n->data.scalar.length) {
        cfg_err(c, cfg_pos_of(n), "%s: must not contain U+0000", where);
        return -1;
    }
    *out = scalar(n);
    return 0;
}

static int get_uint(parse_ctx_t *c, const yaml_node_t *n, const char *where, unsigned long lo,
                    unsigned long hi, uint32_t *out) {
    char d[80];
    bool ok = n->type == YAML_SCALAR_NODE && !cfg_is_null(n);
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
        cfg_err(c, cfg_pos_of(n), "%s: expected an integer from %lu to %lu, got %s", where, lo, hi,
                cfg_describe(n, d, sizeof(d)));
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int get_bool(parse_ctx_t *c, const yaml_node_t *n, const char *where, bool *out) {
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
    cfg_err(c, cfg_pos_of(n), "%s: expected true or false, got %s", where,
            cfg_describe(n, d, sizeof(d)));
    return -1;
}

char *cfg_resolve_path(parse_ctx_t *c, const char *name) {
    const char *slash = strrchr(c->cfg->path, '/');
    if (name[0] == '/' || slash == NULL)
        return cfg_strdup(c, name);
    size_t dir = (size_t)(slash - c->cfg->path) + 1, len = strlen(name);
    char *out = malloc(dir + len + 1);
    if (!out) {
        cfg_oom(c);
        return NULL;
    }
    memcpy(out, c->cfg->path, dir);
    memcpy(out + dir, name, len + 1);
    return out;
}

bool cfg_property_is_file(const char *name, const char *value) {
    static const char *const files[] = {"ssl.ca.location",     "ssl.certificate.location",
                                        "ssl.key.location",    "ssl.keystore.location",
                                        "ssl.crl.location",    "sasl.kerberos.keytab",
                                        "ssl.engine.location", NULL};
    /* ssl.ca.location: probe asks librdkafka to look in the system's places. */
    if (strcmp(name, "ssl.ca.location") == 0 && strcmp(value, "probe") == 0)
        return false;
    for (const char *const *f = files; *f; f++)
        if (strcmp(name, *f) == 0)
            return value[0] != '\0';
    return false;
}

/* SET_STRING and SET_FILE: a non-empty string. Whether a file can be read is
 * checked when the daemon loads it (the check runs as another user). */
static void get_nonempty(parse_ctx_t *c, const yaml_node_t *n, const char *where,
                         const setting_t *s, char **out) {
    const char *v;
    if (cfg_get_string(c, n, where, &v) < 0)
        return;
    if (v[0] == '\0') {
        cfg_err(c, cfg_pos_of(n), "%s: expected %s, got \"\"", where,
                s->type == SET_FILE ? "a file name" : s->expected);
        return;
    }
    free(*out);
    *out = s->type == SET_FILE ? cfg_resolve_path(c, v) : cfg_strdup(c, v);
}

/* SET_ENUM: one of the row's words ("expected error, warn, info or debug"). */
static void get_enum(parse_ctx_t *c, const yaml_node_t *n, const char *where, const setting_t *s,
                     int *out) {
    const char *v = NULL;
    if (s->flags & SETTING_STRING_FIRST) {
        if (cfg_get_string(c, n, where, &v) < 0)
            return;
    } else if (n->type == YAML_SCALAR_NODE) {
        v = scalar(n);
    }
    for (const setting_word_t *w = s->words; v && w->word; w++) {
        if (strcmp(v, w->word) == 0) {
            *out = w->value;
            return;
        }
    }
    char words[256], d[80];
    size_t o = 0;
    const char *q = s->flags & SETTING_QUOTED ? "\"" : "";
    for (const setting_word_t *w = s->words; w->word && o < sizeof(words); w++)
        o += (size_t)snprintf(words + o, sizeof(words) - o, "%s%s%s%s",
                              w == s->words ? "" : (w[1].word ? ", " : " or "), q, w->word, q);
    if (s->flags & SETTING_STRING_FIRST)
        cfg_err(c, cfg_pos_of(n), "%s: expected %s, got \"%s\"", where, words, v);
    else
        cfg_err(c, cfg_pos_of(n), "%s: expected %s, got %s", where, words,
                cfg_describe(n, d, sizeof(d)));
}

bool cfg_expect(parse_ctx_t *c, const yaml_node_t *n, yaml_node_type_t t, const char *where) {
    char d[80];
    if (n->type == t)
        return true;
    cfg_err(c, cfg_pos_of(n), "%s: expected %s, got %s", where,
            t == YAML_MAPPING_NODE ? "a mapping" : "a list", cfg_describe(n, d, sizeof(d)));
    return false;
}

#define KEYS_LINEAR 16 /* mappings up to this many pairs are searched in place */

/* The slot of key `k` in the key table: its first occurrence, or the empty
 * slot where it goes. */
static yaml_node_t **key_slot(parse_ctx_t *c, const yaml_node_t *k) {
    size_t mask = c->keys.cap - 1;
    const char *s = scalar(k);
    for (size_t i = m2k_hash(s, strlen(s)) & mask;; i = (i + 1) & mask) {
        yaml_node_t **slot = &c->keys.slots[i];
        if (!*slot || strcmp(scalar(*slot), s) == 0)
            return slot;
    }
}

/* The earlier key equal to pair's in a large mapping, NULL if none; the
 * table follows the walk (rebuilt when another mapping was walked since). */
static yaml_node_t *key_seen(parse_ctx_t *c, const yaml_node_t *map, yaml_node_pair_t *pair,
                             yaml_node_t *k) {
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - start);
    if (c->keys.map != map || c->keys.next != pair) {
        size_t cap = 16;
        while (cap < 2 * n)
            cap *= 2;
        yaml_node_t **slots = calloc(cap, sizeof(*slots));
        if (!slots) {
            cfg_oom(c);
            return NULL;
        }
        free(c->keys.slots);
        c->keys.map = map;
        c->keys.slots = slots;
        c->keys.cap = cap;
        for (yaml_node_pair_t *p = start; p < pair; p++) {
            yaml_node_t *pk = yaml_document_get_node(c->doc, p->key);
            yaml_node_t **slot;
            if (pk->type == YAML_SCALAR_NODE && !*(slot = key_slot(c, pk)))
                *slot = pk;
        }
    }
    c->keys.next = pair + 1;
    yaml_node_t **slot = key_slot(c, k);
    if (*slot)
        return *slot;
    *slot = k;
    return NULL;
}

/* Duplicate keys are errors: libyaml accepts them silently, and the last
 * would win and hide a mistake. */
const char *cfg_pair_key(parse_ctx_t *c, const yaml_node_t *map, yaml_node_pair_t *pair,
                         const char *where, yaml_node_t **value) {
    yaml_node_t *k = yaml_document_get_node(c->doc, pair->key);
    *value = yaml_document_get_node(c->doc, pair->value);
    if (k->type != YAML_SCALAR_NODE || cfg_is_null(k)) {
        char d[80];
        cfg_err(c, cfg_pos_of(k), "%s: expected a key name, got %s", where,
                cfg_describe(k, d, sizeof(d)));
        return NULL;
    }
    yaml_node_t *first = NULL;
    if (map->data.mapping.pairs.top - map->data.mapping.pairs.start > KEYS_LINEAR) {
        first = key_seen(c, map, pair, k);
    } else {
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair && !first; p++) {
            yaml_node_t *pk = yaml_document_get_node(c->doc, p->key);
            if (pk->type == YAML_SCALAR_NODE && strcmp(scalar(pk), scalar(k)) == 0)
                first = pk;
        }
    }
    if (first) {
        cfg_err(c, cfg_pos_of(k), "%s%s%s: duplicate key (first at line %d)", where,
                where[0] ? "." : "", scalar(k), cfg_pos_of(first).line);
        return NULL;
    }
    return scalar(k);
}

char *cfg_strdup(parse_ctx_t *c, const char *s) {
    char *p = strdup(s);
    if (!p)
        cfg_oom(c);
    return p;
}

int cfg_add_property(parse_ctx_t *c, const char *name, const char *value, config_pos_t pos) {
    config_t *cfg = c->cfg;
    config_property_t *p =
        realloc(cfg->kafka_properties, (cfg->n_kafka_properties + 1) * sizeof(*p));
    if (!p) {
        cfg_oom(c);
        return -1;
    }
    cfg->kafka_properties = p;
    p += cfg->n_kafka_properties++;
    p->name = cfg_strdup(c, name);
    p->value = cfg_strdup(c, value);
    p->pos = pos;
    return 0;
}

/* ---- the walk ---- */

static void join(char *out, size_t cap, const char *where, const char *name) {
    snprintf(out, cap, "%s%s%s", where, where[0] ? "." : "", name);
}

/* SET_LIST: the array (as long as the list; items that fail are left out),
 * then each item by the row's item parser. */
static void parse_list(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                       void *base) {
    if (!cfg_expect(c, n, YAML_SEQUENCE_NODE, where))
        return;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count < s->min) {
        cfg_err(c, cfg_pos_of(n), "%s: %s", where, s->missing);
        return;
    }
    void *items = calloc(count ? count : 1, s->item_size);
    if (!items) {
        cfg_oom(c);
        return;
    }
    *(void **)((char *)base + s->off) = items;
    char sec[64];
    snprintf(sec, sizeof(sec), "%s[]", s->path);
    size_t idx = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        char at[64];
        snprintf(at, sizeof(at), "%s[%zu]", where, idx);
        if (cfg_expect(c, item, YAML_MAPPING_NODE, at))
            s->item(c, s, item, sec, at, idx, base);
    }
}

static void parse_value(parse_ctx_t *c, const setting_t *s, yaml_node_t *v, const char *where,
                        void *base) {
    const setting_t *t = s->type == SET_ALIAS ? settings_find(s->alias) : s;
    /* A setting outside lists is set once, also when it has two places. */
    if (!strstr(t->path, "[]")) {
        config_pos_t *seen = &c->seen[t - config_settings];
        if (seen->line) {
            cfg_err(c, cfg_pos_of(v), "%s: also set at line %d; keep one", where, seen->line);
            return;
        }
        *seen = cfg_pos_of(v);
    }
    char *f = (char *)base + t->off;
    switch (t->type) {
    case SET_BOOL:
        get_bool(c, v, where, (bool *)f);
        break;
    case SET_UINT:
        get_uint(c, v, where, t->min, t->max, (uint32_t *)f);
        break;
    case SET_STRING:
    case SET_FILE:
        get_nonempty(c, v, where, t, (char **)f);
        break;
    case SET_ENUM:
        get_enum(c, v, where, t, (int *)f);
        break;
    case SET_SECTION:
        cfg_parse_section(c, t, v, where, base);
        break;
    case SET_LIST:
        parse_list(c, t, v, where, base);
        break;
    default:
        t->parse(c, t, v, where, base);
    }
}

bool cfg_walk(parse_ctx_t *c, yaml_node_t *n, const char *sec, const char *where, void *base,
              yaml_node_t **found, bool parse) {
    bool ok = true;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v;
        const char *k = cfg_pair_key(c, n, p, where, &v);
        const setting_t *s = NULL;
        const char *name;
        for (size_t i = 0; k && !s && i < config_settings_count; i++)
            if (settings_is_child(&config_settings[i], sec, &name) && strcmp(name, k) == 0)
                s = &config_settings[i];
        if (k && !s) {
            char known[1024]; /* every key of a section (mqtt: about 600 bytes) */
            size_t o = 0;
            for (size_t i = 0; i < config_settings_count && o < sizeof(known); i++)
                if (settings_is_child(&config_settings[i], sec, &name))
                    o +=
                        (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", o ? ", " : "", name);
            cfg_err(c, cfg_pos_of(yaml_document_get_node(c->doc, p->key)),
                    "%s%s%s: unknown key (expected one of: %s)", where, where[0] ? "." : "", k,
                    known);
        }
        if (!s) {
            ok = false;
            continue;
        }
        found[s - config_settings] = v;
        if (parse && !(s->flags & SETTING_LATE)) {
            char field[128];
            join(field, sizeof(field), where, k);
            parse_value(c, s, v, field, base);
        }
    }
    return ok;
}

bool cfg_check_required(parse_ctx_t *c, const yaml_node_t *n, const char *sec, const char *where,
                        yaml_node_t *const *found) {
    bool missing = false;
    for (size_t i = 0; i < config_settings_count; i++) {
        const setting_t *s = &config_settings[i];
        const char *name;
        if (found[i] || !settings_is_child(s, sec, &name))
            continue;
        char field[128];
        join(field, sizeof(field), where, name);
        if ((s->flags & SETTING_REQUIRED) && strstr(s->path, "[]")) {
            /* A list item names the key it lacks. */
            cfg_err(c, cfg_pos_of(n), "%s: missing '%s' (%s)", where, name, s->missing);
            missing = true;
        } else if (s->flags & SETTING_REQUIRED) {
            cfg_err(c, cfg_pos_of(n), "%s: missing (%s)", field, s->missing);
            missing = true;
        } else if (s->type == SET_SECTION && !s->field) {
            /* An absent section lacks what it requires (an optional one, such as
             * a listener's tls:, does not). */
            yaml_node_t *none[SETTINGS_MAX] = {0};
            missing |= cfg_check_required(c, n, s->path, field, none);
        }
    }
    return missing;
}

yaml_node_t *cfg_found(yaml_node_t *const *found, const char *path) {
    return found[settings_find(path) - config_settings];
}

/* s = NULL: the top level. */
void cfg_parse_section(parse_ctx_t *c, const setting_t *s, yaml_node_t *n, const char *where,
                       void *base) {
    const char *sec = s ? s->path : "";
    if (!cfg_expect(c, n, YAML_MAPPING_NODE, s ? where : "the top level"))
        return;
    if (s && s->field) {
        /* An optional section (a listener's tls:): present, with its defaults. */
        *(bool *)((char *)base + s->off) = true;
        settings_defaults(sec, base);
    }
    if (s && (s->flags & SETTING_POS))
        *(config_pos_t *)((char *)base + s->pos_off) = cfg_pos_of(n);
    yaml_node_t *found[SETTINGS_MAX] = {0};
    cfg_walk(c, n, sec, where, base, found, true);
    cfg_check_required(c, n, sec, where, found);
    for (size_t i = 0; i < config_settings_count; i++) {
        const char *name;
        if (found[i] && (config_settings[i].flags & SETTING_LATE) &&
            settings_is_child(&config_settings[i], sec, &name)) {
            char field[128];
            join(field, sizeof(field), where, name);
            parse_value(c, &config_settings[i], found[i], field, base);
        }
    }
    if (s && s->check)
        s->check(c, n, where, base, found);
}

/* Fills in the defaults that depend on what the file said, after parsing. */
static void apply_derived(parse_ctx_t *c) {
    config_t *cfg = c->cfg;
    config_pos_t eport = c->seen[settings_find("kafka.embedded_port") - config_settings];
    if (cfg->kafka_embedded_port && cfg->bootstrap_servers &&
        strcmp(cfg->bootstrap_servers, "embedded") != 0)
        cfg_err(c, eport, "kafka.embedded_port: only with bootstrap_servers: embedded");
    if (!cfg->listeners) {
        cfg->listeners = calloc(1, sizeof(*cfg->listeners));
        if (!cfg->listeners) {
            cfg_oom(c);
            return;
        }
        cfg->listeners[0].listen = cfg_strdup(c, "127.0.0.1:1883");
        cfg->listeners[0].host = cfg_strdup(c, "127.0.0.1");
        cfg->listeners[0].port = 1883;
        cfg->n_listeners = 1;
    }
    const config_pos_t *seen = c->seen;
    if (!seen[settings_find("mqtt.max_persistent_sessions") - config_settings].line)
        cfg->mqtt.max_persistent_sessions = cfg->mqtt.max_connections;
    /* Like Mosquitto 2.0: once a password file is configured, a client must
     * log in unless the operator says otherwise. */
    cfg->auth.allow_anonymous_set =
        seen[settings_find("auth.allow_anonymous") - config_settings].line != 0;
    if (!cfg->auth.allow_anonymous_set)
        cfg->auth.allow_anonymous = cfg->auth.password_file == NULL;
    cfg->auth.acl_deny_pos = seen[settings_find("auth.acl_deny") - config_settings];
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
    cfg->kafka_message_max_bytes = mmb;
    config_pos_t max_packet = seen[settings_find("mqtt.max_packet_size") - config_settings];
    cfg->mqtt.max_packet_size_pos = max_packet;
    if (!max_packet.line)
        cfg->mqtt.max_packet_size =
            (uint32_t)(mmb < CONFIG_MQTT_MAX_PACKET ? mmb : CONFIG_MQTT_MAX_PACKET);
    else if (cfg->mqtt.max_packet_size > mmb)
        cfg_err(c, max_packet,
                "mqtt.max_packet_size: %u is above Kafka's message.max.bytes (%lu); lower it or "
                "raise kafka.properties.message.max.bytes",
                cfg->mqtt.max_packet_size, mmb);
    cfg->threads_pos = seen[settings_find("threads") - config_settings];
    /* A WebSocket frame or message carries at most one packet's worth. */
    for (size_t i = 0; i < cfg->n_listeners; i++)
        cfg->listeners[i].websocket.max_message = cfg->mqtt.max_packet_size;
}

/* The defaults the settings table gives, before parsing. */
static void config_init(parse_ctx_t *c) {
    settings_defaults("", c->cfg);
    for (size_t i = 0; i < config_settings_count; i++) {
        const setting_t *s = &config_settings[i];
        for (const char *const *d = s->type == SET_MAP ? s->defaults : NULL; d && d[0]; d += 2)
            cfg_add_property(c, d[0], d[1], (config_pos_t){0, 0});
    }
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

static void yaml_error(parse_ctx_t *c, const yaml_parser_t *parser, const char *yaml, size_t len) {
    config_pos_t pos;
    if (parser->error == YAML_READER_ERROR) {
        pos = pos_from_offset(yaml, len, parser->problem_offset);
        cfg_err(c, pos, "invalid YAML: %s", parser->problem ? parser->problem : "read error");
        return;
    }
    pos = (config_pos_t){(int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1};
    if (parser->context)
        cfg_err(c, pos, "invalid YAML: %s (%s at line %d)",
                parser->problem ? parser->problem : "syntax error", parser->context,
                (int)parser->context_mark.line + 1);
    else
        cfg_err(c, pos, "invalid YAML: %s", parser->problem ? parser->problem : "syntax error");
}

static int load_string(const char *yaml, size_t len, const char *name, config_t **out,
                       config_t **partial, char *errbuf, size_t errlen) {
    errs_t errs = {name, errbuf, errlen, 0, 0, false};
    if (errlen)
        errbuf[0] = '\0';
    *out = NULL;
    if (partial)
        *partial = NULL;
    bool parsed = false;
    config_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(name))) {
        free(cfg);
        if (errlen)
            snprintf(errbuf, errlen, "%s: out of memory\n", name);
        return -1;
    }
    parse_ctx_t c = {.errs = &errs, .cfg = cfg};
    config_init(&c);

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
        cfg_err(&c, (config_pos_t){1, 1},
                "the file is empty; expected a mapping with at least kafka.bootstrap_servers");
    } else {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            yaml_error(&c, &parser, yaml, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2)
                cfg_err(&c, cfg_pos_of(r2), "only one YAML document is allowed");
            yaml_document_delete(&next);
        }
        cfg_parse_section(&c, NULL, root, "", cfg);
        apply_derived(&c);
        parsed = root->type == YAML_MAPPING_NODE;
    }
    yaml_parser_delete(&parser);
done:
    free(c.keys.slots);
    if (have_doc)
        yaml_document_delete(&doc);
    if (errs.oom) {
        errs.count++;
        if (errlen && errs.len + 1 < errlen)
            snprintf(errbuf + errs.len, errlen - errs.len, "%s: out of memory\n", name);
    }
    if (errs.count > 0) {
        if (partial && parsed && !errs.oom)
            *partial = cfg;
        else
            config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

int config_load_string(const char *yaml, size_t len, const char *name, config_t **out, char *errbuf,
                       size_t errlen) {
    return load_string(yaml, len, name, out, NULL, errbuf, errlen);
}

int config_load(const char *path, config_t **out, char *errbuf, size_t errlen) {
    return config_load_partial(path, out, NULL, errbuf, errlen);
}

int config_load_partial(const char *path, config_t **out, config_t **partial, char *errbuf,
                        size_t errlen) {
    *out = NULL;
    if (partial)
        *partial = NULL;
    char *buf;
    size_t len;
    char err[512];
    /* A configuration file is small; a huge one is a mistake. */
    if (file_read_all(path, 16u << 20, &buf, &len, err, sizeof(err)) < 0) {
        if (errlen)
            snprintf(errbuf, errlen, "%s\n", err);
        return -1;
    }
    int rc = load_string(buf, len, path, out, partial, errbuf, errlen);
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
        free(cfg->listeners[i].tls.crl);
        free(cfg->listeners[i].websocket.path);
        for (size_t j = 0; j < cfg->listeners[i].websocket.n_origins; j++)
            free(cfg->listeners[i].websocket.origins[j]);
        free(cfg->listeners[i].websocket.origins);
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
    for (size_t i = 0; i < cfg->n_downlink; i++) {
        free(cfg->downlink[i].kafka);
        free(cfg->downlink[i].mqtt);
    }
    free(cfg->downlink);
    free(cfg->retained.topic);
    free(cfg->spool.dir);
    free(cfg->unmapped_topic);
    free(cfg->auth.password_file);
    free(cfg->auth.acl_file);
    free(cfg->metrics_listen);
    free(cfg->metrics_host);
    free(cfg->path);
    free(cfg);
}

unsigned config_threads(const config_t *cfg, const char **why) {
    *why = NULL;
    if (cfg->threads)
        return cfg->threads;
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    if (n < 1)
        n = 1;
    return n > CONFIG_THREADS_AUTO_MAX ? CONFIG_THREADS_AUTO_MAX : (unsigned)n;
}
