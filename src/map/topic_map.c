/* Topic map: MQTT topic -> Kafka topic and key.
 *
 * Filter rules live in one trie (children by level string in a shared hash
 * table, plus one '+' child and one '#' rule per node); a lookup walks only
 * the branches the topic can take and keeps the lowest rule index, so its cost
 * follows the topic's depth and the wildcards on its path, not the number of
 * rules. Regex rules keep their place in rule order: only those with an index
 * below the trie's best match are tried, in order. */
#include "map/topic_map.h"

#include "mqtt/codec.h"
#include "util/hash.h"
#include "regex_lint.h"

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CAPTURES 9
#define NO_RULE INT32_MAX

typedef enum {
    PART_LIT,
    PART_CAPTURE,
    PART_TOPIC,
    PART_CLIENT_ID,
    PART_USERNAME,
    PART_PROPERTY
} part_kind_t;

typedef struct {
    part_kind_t kind;
    int capture;     /* 1..9 for PART_CAPTURE */
    const char *lit; /* the literal, or PART_PROPERTY's name */
    size_t len;
} tmpl_part_t;

typedef struct {
    tmpl_part_t *parts;
    size_t n;
    char *lits;          /* literal bytes, '{{' and '}}' already unescaped */
    bool topic_only;     /* the template is exactly "{topic}" */
    bool lit_underscore; /* the template starts with a literal '_' */
} tmpl_t;

typedef struct {
    config_rule_kind_t kind;
    char *pattern;
    size_t pattern_len;
    regex_t re;
    bool has_re;
    tmpl_t kafka;
    tmpl_t key;
    bool no_key;
} rule_t;

typedef struct {
    int32_t plus;      /* child node for '+', -1 if none */
    int32_t term_rule; /* lowest rule whose filter ends here */
    int32_t hash_rule; /* lowest rule whose filter has '#' after this node */
    int32_t min_rule;  /* lowest rule anywhere in this subtree, for pruning */
} node_t;

typedef struct {
    uint32_t parent;
    uint32_t hash;
    int32_t child; /* -1 = empty slot */
    uint32_t off;  /* level bytes in strs */
    uint32_t len;
} edge_t;

struct topic_map {
    rule_t *rules;
    size_t n_rules;
    node_t *nodes;
    size_t n_nodes, cap_nodes;
    edge_t *edges;
    size_t n_edges, cap_edges; /* cap is a power of two */
    char *strs;
    size_t n_strs, cap_strs;
    int32_t *regex_rules; /* indexes of regex rules in order */
    size_t n_regex;
    size_t regex_topic_max; /* 0: no bound */
};

/* ---- validation ---- */

int topic_map_filter_check(const char *f, size_t len, const char **why) {
    if (len == 0) {
        *why = "an empty topic filter matches nothing";
        return -1;
    }
    /* The codec decides (the same rules as a SUBSCRIBE: wildcards, UTF-8,
     * length); this only says which wildcard is misplaced. */
    int rc = mqtt_topic_filter_check((const uint8_t *)f, len);
    if (rc == 0)
        return 0;
    *why = mqtt_strerror(rc);
    for (size_t i = 0; rc == MQTT_ERR_FILTER_INVALID && i < len; i++) {
        bool level_start = i == 0 || f[i - 1] == '/';
        bool level_end = i + 1 == len || f[i + 1] == '/';
        if (f[i] == '#' && (!level_start || i + 1 != len)) {
            *why = "'#' must be alone in the last level";
            break;
        }
        if (f[i] == '+' && (!level_start || !level_end)) {
            *why = "'+' must be alone in its level";
            break;
        }
    }
    return -1;
}

bool map_kafka_char_ok(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int topic_map_kafka_topic_check(const char *name, size_t len, const char **why) {
    if (len == 0) {
        *why = "a Kafka topic name must not be empty";
        return -1;
    }
    if (len > TOPIC_MAP_KAFKA_TOPIC_MAX) {
        *why = "a Kafka topic name has at most 249 characters";
        return -1;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        *why = "\".\" and \"..\" are not valid Kafka topic names";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!map_kafka_char_ok((unsigned char)name[i])) {
            *why = "a Kafka topic name may only contain a-z A-Z 0-9 . _ -";
            return -1;
        }
    }
    return 0;
}

/* Parses a template. With `out` NULL it only validates; messages go to
 * report() prefixed with `field`. Returns the number of errors. */
static int tmpl_parse(const char *s, int n_captures, bool kafka_topic, const char *field,
                      config_pos_t pos, topic_map_report_fn report, void *ud, tmpl_t *out) {
    char msg[512];
    int errors = 0;
    size_t len = strlen(s);
    size_t n_parts = 0, lit_len = 0, lit_total = 0;
    tmpl_part_t *parts = NULL;
    char *lits = NULL;
    bool has_placeholder = false;
    if (out) {
        /* At most one part per input byte, literals at most as long as the input. */
        parts = calloc(len + 1, sizeof(*parts));
        lits = malloc(len + 1);
        if (!parts || !lits) {
            free(parts);
            free(lits);
            report(ud, pos, "out of memory");
            return 1;
        }
    }
    size_t lit_start = 0;
#define FLUSH_LIT()                                                                                \
    do {                                                                                           \
        if (lit_len > 0 && out) {                                                                  \
            parts[n_parts].kind = PART_LIT;                                                        \
            parts[n_parts].lit = lits + lit_start;                                                 \
            parts[n_parts].len = lit_len;                                                          \
            n_parts++;                                                                             \
        }                                                                                          \
        lit_start += lit_len;                                                                      \
        lit_len = 0;                                                                               \
    } while (0)
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '{' && i + 1 < len && s[i + 1] == '{') {
            c = '{';
            i++;
        } else if (c == '}' && i + 1 < len && s[i + 1] == '}') {
            c = '}';
            i++;
        } else if (c == '}') {
            snprintf(msg, sizeof(msg),
                     "%s: unmatched '}' at offset %zu (write '}}' for a literal '}')", field, i);
            report(ud, pos, msg);
            errors++;
            continue;
        } else if (c == '{') {
            const char *close = memchr(s + i + 1, '}', len - i - 1);
            if (!close) {
                snprintf(msg, sizeof(msg),
                         "%s: unmatched '{' at offset %zu (write '{{' for a literal '{')", field,
                         i);
                report(ud, pos, msg);
                errors++;
                break;
            }
            size_t nlen = (size_t)(close - (s + i + 1));
            const char *name = s + i + 1;
            tmpl_part_t p = {0};
            if (nlen == 1 && name[0] >= '1' && name[0] <= '9') {
                p.kind = PART_CAPTURE;
                p.capture = name[0] - '0';
                if (p.capture > n_captures) {
                    snprintf(msg, sizeof(msg), "%s: {%d} names capture %d but the rule has %d",
                             field, p.capture, p.capture, n_captures);
                    report(ud, pos, msg);
                    errors++;
                }
            } else if (nlen == 5 && memcmp(name, "topic", 5) == 0) {
                p.kind = PART_TOPIC;
            } else if (nlen == 9 && memcmp(name, "client_id", 9) == 0) {
                p.kind = PART_CLIENT_ID;
            } else if (nlen == 8 && memcmp(name, "username", 8) == 0) {
                p.kind = PART_USERNAME;
            } else if (nlen > 9 && memcmp(name, "property:", 9) == 0) {
                p.kind = PART_PROPERTY; /* the name is kept with the literals */
                p.len = nlen - 9;
            } else {
                snprintf(msg, sizeof(msg),
                         "%s: unknown placeholder {%.*s} (expected {1}..{9}, {topic}, "
                         "{client_id}, {username} or {property:NAME})",
                         field, (int)(nlen > 64 ? 64 : nlen), name);
                report(ud, pos, msg);
                errors++;
            }
            has_placeholder = true;
            FLUSH_LIT();
            if (out && p.kind == PART_PROPERTY) {
                memcpy(lits + lit_start, name + 9, p.len);
                p.lit = lits + lit_start;
                lit_start += p.len;
            }
            if (out)
                parts[n_parts++] = p;
            i += nlen + 1;
            continue;
        }
        if (kafka_topic && !map_kafka_char_ok((unsigned char)c)) {
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                snprintf(
                    msg, sizeof(msg),
                    "%s: '%c' is not allowed in a Kafka topic name (allowed: a-z A-Z 0-9 . _ -)",
                    field, c);
            else
                snprintf(msg, sizeof(msg),
                         "%s: byte 0x%02x is not allowed in a Kafka topic name (allowed: a-z A-Z "
                         "0-9 . _ -)",
                         field, (unsigned char)c);
            report(ud, pos, msg);
            errors++;
        }
        if (out)
            lits[lit_start + lit_len] = c;
        lit_len++;
        lit_total++;
    }
    FLUSH_LIT();
#undef FLUSH_LIT
    if (kafka_topic && errors == 0) {
        const char *why = NULL;
        if (len == 0) {
            snprintf(msg, sizeof(msg), "%s: a Kafka topic name must not be empty", field);
            report(ud, pos, msg);
            errors++;
        } else if (lit_total > TOPIC_MAP_KAFKA_TOPIC_MAX) {
            snprintf(msg, sizeof(msg), "%s: a Kafka topic name has at most 249 characters", field);
            report(ud, pos, msg);
            errors++;
        } else if (!has_placeholder && topic_map_kafka_topic_check(s, len, &why) < 0) {
            snprintf(msg, sizeof(msg), "%s: %s", field, why);
            report(ud, pos, msg);
            errors++;
        }
    }
    if (out) {
        if (errors) {
            free(parts);
            free(lits);
        } else {
            out->parts = parts;
            out->n = n_parts;
            out->lits = lits;
            out->topic_only = n_parts == 1 && parts[0].kind == PART_TOPIC;
            out->lit_underscore =
                n_parts > 0 && parts[0].kind == PART_LIT && parts[0].lit[0] == '_';
        }
    }
    return errors;
}

static int filter_captures(const char *f) {
    int n = 0;
    for (const char *p = f; *p; p++)
        if (*p == '+' || *p == '#')
            n++;
    return n;
}

static size_t filter_levels(const char *f) {
    size_t n = 1;
    for (const char *p = f; *p; p++)
        if (*p == '/')
            n++;
    return n;
}

/* Checks a rule; compiles its regex into *re when re != NULL and the rule is
 * valid (the caller frees it). */
static int rule_check(const config_rule_t *r, size_t index, topic_map_report_fn report, void *ud,
                      regex_t *re, int *n_captures_out) {
    char msg[768];
    int errors = 0;
    int n_captures = 0;
    bool pattern_ok = true;
    if (r->kind == RULE_FILTER) {
        const char *why;
        if (topic_map_filter_check(r->pattern, strlen(r->pattern), &why) < 0) {
            snprintf(msg, sizeof(msg), "topics[%zu].mqtt: invalid topic filter \"%.200s\": %s",
                     index, r->pattern, why);
            report(ud, r->pattern_pos, msg);
            errors++;
            pattern_ok = false;
        } else if (filter_levels(r->pattern) > TOPIC_MAP_MAX_FILTER_LEVELS) {
            snprintf(msg, sizeof(msg), "topics[%zu].mqtt: a topic filter has at most %d levels",
                     index, TOPIC_MAP_MAX_FILTER_LEVELS);
            report(ud, r->pattern_pos, msg);
            errors++;
            pattern_ok = false;
        } else {
            n_captures = filter_captures(r->pattern);
        }
    } else {
        regex_t tmp;
        bool inside = false;
        char e = regex_perl_escape(r->pattern, &inside);
        int rc = e ? 0 : regcomp(&tmp, r->pattern, REG_EXTENDED);
        if (e) {
            snprintf(msg, sizeof(msg),
                     "topics[%zu].regex: \"\\%c\"%s in \"%.200s\" is a Perl escape, not POSIX "
                     "extended regex (which would match something else): use %s",
                     index, e, inside ? " inside [...]" : "", r->pattern,
                     regex_posix_form(e, inside));
            report(ud, r->pattern_pos, msg);
            errors++;
            pattern_ok = false;
        } else if (rc != 0) {
            char rbuf[256];
            regerror(rc, &tmp, rbuf, sizeof(rbuf));
            snprintf(msg, sizeof(msg),
                     "topics[%zu].regex: invalid POSIX extended regex \"%.200s\": %s", index,
                     r->pattern, rbuf);
            report(ud, r->pattern_pos, msg);
            errors++;
            pattern_ok = false;
        } else {
            n_captures = (int)tmp.re_nsub;
            if (re)
                *re = tmp;
            else
                regfree(&tmp);
        }
    }
    if (pattern_ok) {
        char field[64];
        snprintf(field, sizeof(field), "topics[%zu].kafka", index);
        errors += tmpl_parse(r->kafka, n_captures, true, field, r->kafka_pos, report, ud, NULL);
        snprintf(field, sizeof(field), "topics[%zu].key", index);
        errors += tmpl_parse(r->key, n_captures, false, field,
                             r->key_pos.line ? r->key_pos : r->pos, report, ud, NULL);
        if (errors && re && r->kind == RULE_REGEX)
            regfree(re);
    }
    *n_captures_out = n_captures;
    return errors;
}

int topic_map_rule_check(const config_rule_t *rule, size_t index, topic_map_report_fn report,
                         void *ud) {
    int n;
    return rule_check(rule, index, report, ud, NULL, &n);
}

/* ---- trie ---- */

static uint32_t level_hash(uint32_t parent, const char *s, size_t len) {
    uint64_t h = m2k_hash_seed(M2K_HASH_INIT ^ (parent * 0x9e3779b97f4a7c15ull), s, len);
    return (uint32_t)(h ^ (h >> 32));
}

static int32_t edge_find(const topic_map_t *m, uint32_t parent, const char *s, size_t len) {
    uint32_t h = level_hash(parent, s, len);
    size_t mask = m->cap_edges - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const edge_t *e = &m->edges[i];
        if (e->child < 0)
            return -1;
        if (e->hash == h && e->parent == parent && e->len == len &&
            (len == 0 || memcmp(m->strs + e->off, s, len) == 0))
            return e->child;
    }
}

static int32_t node_add(topic_map_t *m) {
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 16;
        node_t *n = realloc(m->nodes, cap * sizeof(*n));
        if (!n)
            return -1;
        m->nodes = n;
        m->cap_nodes = cap;
    }
    node_t *n = &m->nodes[m->n_nodes];
    n->plus = -1;
    n->term_rule = n->hash_rule = n->min_rule = NO_RULE;
    return (int32_t)m->n_nodes++;
}

static int edges_grow(topic_map_t *m) {
    size_t cap = m->cap_edges ? m->cap_edges * 2 : 64;
    edge_t *e = malloc(cap * sizeof(*e));
    if (!e)
        return -1;
    for (size_t i = 0; i < cap; i++)
        e[i].child = -1;
    for (size_t i = 0; i < m->cap_edges; i++) {
        if (m->edges[i].child < 0)
            continue;
        size_t j = m->edges[i].hash & (cap - 1);
        while (e[j].child >= 0)
            j = (j + 1) & (cap - 1);
        e[j] = m->edges[i];
    }
    free(m->edges);
    m->edges = e;
    m->cap_edges = cap;
    return 0;
}

/* Returns the child of `parent` for a literal level, creating it. */
static int32_t edge_get_or_add(topic_map_t *m, uint32_t parent, const char *s, size_t len) {
    int32_t c = m->cap_edges ? edge_find(m, parent, s, len) : -1;
    if (c >= 0)
        return c;
    if ((m->n_edges + 1) * 2 > m->cap_edges && edges_grow(m) < 0)
        return -1;
    if (m->n_strs + len > m->cap_strs) {
        size_t cap = m->cap_strs ? m->cap_strs * 2 : 256;
        while (cap < m->n_strs + len)
            cap *= 2;
        char *p = realloc(m->strs, cap);
        if (!p)
            return -1;
        m->strs = p;
        m->cap_strs = cap;
    }
    c = node_add(m);
    if (c < 0)
        return -1;
    if (len) /* an empty level stores no bytes (and strs may still be NULL) */
        memcpy(m->strs + m->n_strs, s, len);
    uint32_t h = level_hash(parent, s, len);
    size_t j = h & (m->cap_edges - 1);
    while (m->edges[j].child >= 0)
        j = (j + 1) & (m->cap_edges - 1);
    m->edges[j] = (edge_t){parent, h, c, (uint32_t)m->n_strs, (uint32_t)len};
    m->n_strs += len;
    m->n_edges++;
    return c;
}

static int32_t min32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

static int trie_insert(topic_map_t *m, const char *f, int32_t rule) {
    int32_t path[TOPIC_MAP_MAX_FILTER_LEVELS + 1];
    size_t depth = 0;
    int32_t node = 0;
    path[depth++] = node;
    size_t len = strlen(f);
    size_t pos = 0;
    for (;;) {
        const char *slash = memchr(f + pos, '/', len - pos);
        size_t end = slash ? (size_t)(slash - f) : len;
        size_t llen = end - pos;
        if (llen == 1 && f[pos] == '#') {
            m->nodes[node].hash_rule = min32(m->nodes[node].hash_rule, rule);
            break;
        }
        int32_t next;
        if (llen == 1 && f[pos] == '+') {
            next = m->nodes[node].plus;
            if (next < 0) {
                next = node_add(m);
                if (next < 0)
                    return -1;
                m->nodes[node].plus = next;
            }
        } else {
            next = edge_get_or_add(m, (uint32_t)node, f + pos, llen);
            if (next < 0)
                return -1;
        }
        node = next;
        path[depth++] = node;
        if (!slash) {
            m->nodes[node].term_rule = min32(m->nodes[node].term_rule, rule);
            break;
        }
        pos = end + 1;
    }
    for (size_t i = 0; i < depth; i++)
        m->nodes[path[i]].min_rule = min32(m->nodes[path[i]].min_rule, rule);
    return 0;
}

/* `pos` is where the current level starts; pos == len + 1 means the topic's
 * levels are all consumed. */
static void trie_walk(const topic_map_t *m, int32_t node, const char *t, size_t len, size_t pos,
                      bool dollar_root, int32_t *best) {
    const node_t *n = &m->nodes[node];
    if (n->min_rule >= *best)
        return;
    /* '#' matches the rest, and its parent level too ("a/#" matches "a"). */
    if (!dollar_root && n->hash_rule < *best)
        *best = n->hash_rule;
    if (pos > len) {
        if (n->term_rule < *best)
            *best = n->term_rule;
        return;
    }
    const char *slash = memchr(t + pos, '/', len - pos);
    size_t end = slash ? (size_t)(slash - t) : len;
    size_t next = slash ? end + 1 : len + 1;
    if (m->n_edges) {
        int32_t c = edge_find(m, (uint32_t)node, t + pos, end - pos);
        if (c >= 0)
            trie_walk(m, c, t, len, next, false, best);
    }
    if (n->plus >= 0 && !dollar_root)
        trie_walk(m, n->plus, t, len, next, false, best);
}

/* ---- construction ---- */

static void tmpl_free(tmpl_t *t) {
    free(t->parts);
    free(t->lits);
}

void topic_map_free(topic_map_t *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->n_rules; i++) {
        rule_t *r = &m->rules[i];
        free(r->pattern);
        if (r->has_re)
            regfree(&r->re);
        tmpl_free(&r->kafka);
        tmpl_free(&r->key);
    }
    free(m->rules);
    free(m->nodes);
    free(m->edges);
    free(m->strs);
    free(m->regex_rules);
    free(m);
}

typedef struct {
    char *buf;
    size_t len;
    const char *file;
    int count;
} first_error_t;

static void report_first(void *ud, config_pos_t pos, const char *msg) {
    first_error_t *e = ud;
    if (e->count++ == 0 && e->len > 0)
        snprintf(e->buf, e->len, "%s:%d:%d: %s", e->file ? e->file : "<rules>", pos.line, pos.col,
                 msg);
}

topic_map_t *topic_map_new(const config_rule_t *rules, size_t n, char *errbuf, size_t errlen) {
    if (errlen)
        errbuf[0] = '\0';
    topic_map_t *m = calloc(1, sizeof(*m));
    if (!m)
        goto oom;
    m->rules = calloc(n ? n : 1, sizeof(*m->rules));
    m->regex_rules = calloc(n ? n : 1, sizeof(*m->regex_rules));
    if (!m->rules || !m->regex_rules || node_add(m) < 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const config_rule_t *cr = &rules[i];
        rule_t *r = &m->rules[i];
        first_error_t fe = {errbuf, errlen, cr->file, 0};
        int n_captures;
        if (rule_check(cr, i, report_first, &fe, &r->re, &n_captures) > 0)
            goto fail;
        r->kind = cr->kind;
        r->has_re = cr->kind == RULE_REGEX;
        m->n_rules = i + 1; /* from here on topic_map_free releases this rule */
        r->pattern = strdup(cr->pattern);
        r->pattern_len = strlen(cr->pattern);
        if (!r->pattern)
            goto oom;
        if (tmpl_parse(cr->kafka, n_captures, true, "", cr->kafka_pos, report_first, &fe,
                       &r->kafka) ||
            tmpl_parse(cr->key, n_captures, false, "", cr->key_pos, report_first, &fe, &r->key))
            goto fail;
        r->no_key = cr->key[0] == '\0';
        if (r->kind == RULE_FILTER) {
            if (trie_insert(m, cr->pattern, (int32_t)i) < 0)
                goto oom;
        } else {
            m->regex_rules[m->n_regex++] = (int32_t)i;
        }
    }
    return m;
oom:
    if (errlen)
        snprintf(errbuf, errlen, "topic map: out of memory");
fail:
    topic_map_free(m);
    return NULL;
}

void topic_map_set_regex_topic_max(topic_map_t *m, size_t max) {
    m->regex_topic_max = max;
}

/* ---- lookup ---- */

typedef struct {
    const char *p;
    size_t len;
} span_t;

/* Captures of a filter that is known to match: each '+' level, then what '#'
 * covers (empty when '#' matched the parent level). */
static int filter_captures_of(const rule_t *r, const char *t, size_t len, span_t *caps) {
    int n = 0;
    size_t fp = 0, tp = 0;
    const char *f = r->pattern;
    size_t flen = r->pattern_len;
    for (;;) {
        if (f[fp] == '#') {
            if (n < MAX_CAPTURES)
                caps[n++] = tp <= len ? (span_t){t + tp, len - tp} : (span_t){t, 0};
            break;
        }
        const char *ts = tp <= len ? memchr(t + tp, '/', len - tp) : NULL;
        size_t tend = ts ? (size_t)(ts - t) : len;
        if (f[fp] == '+' && n < MAX_CAPTURES)
            caps[n++] = (span_t){t + tp, tend - tp};
        const char *fs = memchr(f + fp, '/', flen - fp);
        if (!fs)
            break;
        fp = (size_t)(fs - f) + 1;
        tp = ts ? tend + 1 : len + 1;
    }
    return n;
}

typedef struct {
    char *p;
    size_t len, cap;
    bool overflow;
} out_t;

static void out_put(out_t *o, const char *s, size_t n) {
    if (n > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    if (n)
        memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void tmpl_render(const tmpl_t *t, const span_t *caps, int n_caps, const char *topic,
                        size_t topic_len, const topic_map_ctx_t *ctx, out_t *o) {
    for (size_t i = 0; i < t->n; i++) {
        const tmpl_part_t *p = &t->parts[i];
        switch (p->kind) {
        case PART_LIT:
            out_put(o, p->lit, p->len);
            break;
        case PART_CAPTURE:
            if (p->capture <= n_caps)
                out_put(o, caps[p->capture - 1].p, caps[p->capture - 1].len);
            break;
        case PART_TOPIC:
            out_put(o, topic, topic_len);
            break;
        case PART_CLIENT_ID:
            if (ctx && ctx->client_id)
                out_put(o, ctx->client_id, ctx->client_id_len);
            break;
        case PART_USERNAME:
            if (ctx && ctx->username)
                out_put(o, ctx->username, ctx->username_len);
            break;
        case PART_PROPERTY: {
            const char *v;
            size_t vl;
            if (ctx && ctx->property && ctx->property(ctx->props, p->lit, p->len, &v, &vl))
                out_put(o, v, vl);
            break;
        }
        }
    }
}

int topic_map_lookup(const topic_map_t *m, const char *topic, size_t topic_len,
                     const topic_map_ctx_t *ctx, char *scratch, size_t scratch_cap,
                     topic_map_result_t *out) {
    int32_t best = NO_RULE;
    bool dollar = topic_len > 0 && topic[0] == '$';
    trie_walk(m, 0, topic, topic_len, 0, dollar, &best);

    span_t caps[MAX_CAPTURES];
    int n_caps = 0;
    /* regexec wants a C string and the topic is a view into the read buffer
     * (not NUL-terminated): regex rules see a terminated copy in the scratch
     * buffer, which the rendering only uses after the match (captures point
     * into the topic itself: the offsets are the same). REG_STARTEND would
     * spare the copy, but it is not POSIX and sanitizers' regexec checks the
     * string with strlen anyway, reading past the view. */
    const char *cstr = NULL;
    out->regex_skipped = 0;
    if (m->n_regex && m->regex_rules[0] < best && m->regex_topic_max &&
        topic_len > m->regex_topic_max) {
        out->regex_skipped = 1;
    } else if (m->n_regex && m->regex_rules[0] < best) {
        if (topic_len >= scratch_cap)
            return TOPIC_MAP_ERR_NO_ROOM;
        memcpy(scratch, topic, topic_len);
        scratch[topic_len] = '\0';
        cstr = scratch;
    }
    for (size_t i = 0; cstr && i < m->n_regex && m->regex_rules[i] < best; i++) {
        const rule_t *r = &m->rules[m->regex_rules[i]];
        regmatch_t pm[MAX_CAPTURES + 1];
        if (regexec(&r->re, cstr, MAX_CAPTURES + 1, pm, 0) == 0) {
            best = m->regex_rules[i];
            size_t ng = r->re.re_nsub < MAX_CAPTURES ? r->re.re_nsub : MAX_CAPTURES;
            for (size_t g = 1; g <= ng; g++) {
                if (pm[g].rm_so < 0)
                    caps[g - 1] = (span_t){topic, 0};
                else
                    caps[g - 1] =
                        (span_t){topic + pm[g].rm_so, (size_t)(pm[g].rm_eo - pm[g].rm_so)};
            }
            n_caps = (int)ng;
            break;
        }
    }
    if (best == NO_RULE) {
        out->rule = -1;
        return TOPIC_MAP_UNMAPPED;
    }
    const rule_t *r = &m->rules[best];
    if (r->kind == RULE_FILTER)
        n_caps = filter_captures_of(r, topic, topic_len, caps);

    out_t o = {scratch, 0, scratch_cap, false};
    tmpl_render(&r->kafka, caps, n_caps, topic, topic_len, ctx, &o);
    size_t topic_end = o.len;
    out_put(&o, "", 1);
    if (r->key.topic_only)
        out_put(&o, topic, topic_len);
    else
        tmpl_render(&r->key, caps, n_caps, topic, topic_len, ctx, &o);
    if (o.overflow)
        return TOPIC_MAP_ERR_NO_ROOM;
    const char *why;
    out->rule = (int)best;
    /* Set for the refusals too: the caller logs the name it refuses. */
    out->kafka_topic = scratch;
    out->kafka_topic_len = topic_end;
    if (topic_map_kafka_topic_check(scratch, topic_end, &why) < 0)
        return TOPIC_MAP_ERR_BAD_TOPIC;
    if (scratch[0] == '_' && !r->kafka.lit_underscore)
        return TOPIC_MAP_ERR_RESERVED;
    out->key = r->no_key ? NULL : scratch + topic_end + 1;
    out->key_len = o.len - topic_end - 1;
    return TOPIC_MAP_MATCHED;
}
