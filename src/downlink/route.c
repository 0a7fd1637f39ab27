/* Routing a Kafka record to an MQTT topic name and QoS (route.h). A template
 * is compiled once into parts (literal, {key}, {header:NAME}); rendering
 * copies views of the record into the caller's buffer and checks the result
 * as a topic name, so a key or header can never smuggle in a wildcard. */
#include "downlink/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PART_LIT, PART_KEY, PART_HEADER } part_kind_t;

typedef struct {
    part_kind_t kind;
    const char *s; /* literal bytes or header name, into the rule's copy */
    size_t len;
} part_t;

typedef struct {
    char *kafka;
    char *tmpl; /* NULL: the mqtt.topic header */
    part_t *parts;
    size_t n_parts;
    int qos;
    uint64_t seen;
} rule_t;

struct dl_router {
    rule_t *rules;
    size_t n;
    uint64_t counts[DL_SKIP_REASONS];
};

static const char *const result_names[DL_SKIP_REASONS] = {
    "routed", "no_rule", "missing", "empty", "wildcard", "nul", "utf8", "too_long", "bad_qos",
};

const char *dl_route_result_name(dl_route_result_t res) {
    return (unsigned)res < DL_SKIP_REASONS ? result_names[res] : "unknown";
}

/* Parses tmpl into parts (NULL: count only); the error or NULL. */
static const char *tmpl_parse(const char *tmpl, part_t *parts, size_t *n, size_t *col) {
    size_t np = 0, i = 0, len = strlen(tmpl);
    while (i < len) {
        /* "{{" and "}}" are a literal brace, as in the uplink's templates. */
        if ((tmpl[i] == '{' || tmpl[i] == '}') && i + 1 < len && tmpl[i + 1] == tmpl[i]) {
            if (parts)
                parts[np] = (part_t){PART_LIT, tmpl + i, 1};
            np++;
            i += 2;
            continue;
        }
        if (tmpl[i] == '}') {
            *col = i;
            return "'}' without '{'";
        }
        if (tmpl[i] != '{') {
            size_t j = i;
            while (j < len && tmpl[j] != '{' && tmpl[j] != '}')
                j++;
            if (parts)
                parts[np] = (part_t){PART_LIT, tmpl + i, j - i};
            np++;
            i = j;
            continue;
        }
        const char *end = memchr(tmpl + i, '}', len - i);
        if (!end) {
            *col = i;
            return "'{' without '}'";
        }
        size_t plen = (size_t)(end - (tmpl + i)) + 1;
        if (plen == 5 && memcmp(tmpl + i, "{key}", 5) == 0) {
            if (parts)
                parts[np] = (part_t){PART_KEY, NULL, 0};
        } else if (plen > 9 && memcmp(tmpl + i, "{header:", 8) == 0) {
            if (memchr(tmpl + i + 1, '{', plen - 1)) {
                *col = i;
                return "'{' inside a placeholder";
            }
            if (parts)
                parts[np] = (part_t){PART_HEADER, tmpl + i + 8, plen - 9};
        } else {
            *col = i;
            return "unknown placeholder (known: {key}, {header:NAME})";
        }
        np++;
        i += plen;
    }
    *n = np;
    return NULL;
}

const char *dl_template_check(const char *tmpl, size_t *col) {
    size_t n, c = 0;
    const char *err = tmpl_parse(tmpl, NULL, &n, &c);
    if (!err && n == 0)
        err = "empty";
    if (col)
        *col = c;
    return err;
}

void dl_router_free(dl_router_t *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rules[i].kafka);
        free(r->rules[i].tmpl);
        free(r->rules[i].parts);
    }
    free(r->rules);
    free(r);
}

dl_router_t *dl_router_new(const dl_rule_t *rules, size_t n, char *errbuf, size_t errlen) {
    dl_router_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->rules = calloc(n ? n : 1, sizeof(*r->rules))))
        goto nomem;
    r->n = n; /* zeroed: dl_router_free takes a half-built router */
    for (size_t i = 0; i < n; i++) {
        rule_t *ru = &r->rules[i];
        if (!(ru->kafka = strdup(rules[i].kafka)))
            goto nomem;
        ru->qos = rules[i].qos;
        if (ru->qos < 0 || ru->qos > 2) {
            snprintf(errbuf, errlen, "downlink rule %zu: qos %d is not 0, 1 or 2", i + 1, ru->qos);
            goto fail;
        }
        if (!rules[i].mqtt)
            continue;
        if (!(ru->tmpl = strdup(rules[i].mqtt)))
            goto nomem;
        size_t col;
        const char *err = dl_template_check(ru->tmpl, &col);
        if (err) {
            snprintf(errbuf, errlen, "downlink rule %zu: mqtt template, column %zu: %s", i + 1,
                     col + 1, err);
            goto fail;
        }
        tmpl_parse(ru->tmpl, NULL, &ru->n_parts, &col);
        if (!(ru->parts = calloc(ru->n_parts, sizeof(*ru->parts))))
            goto nomem;
        tmpl_parse(ru->tmpl, ru->parts, &ru->n_parts, &col);
    }
    return r;
nomem:
    snprintf(errbuf, errlen, "out of memory");
fail:
    dl_router_free(r);
    return NULL;
}

int dl_router_rule(const dl_router_t *r, const char *kafka_topic) {
    /* A handful of rules from the configuration: a scan beats a hash. */
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->rules[i].kafka, kafka_topic) == 0)
            return (int)i;
    return -1;
}

/* The last header named name (Kafka keeps duplicates; the last one wins as
 * in most clients' "get last" helpers), or NULL. */
static const dl_header_t *header_find(const dl_record_t *rec, const char *name, size_t len) {
    for (size_t i = rec->n_headers; i-- > 0;) {
        const dl_header_t *h = &rec->headers[i];
        if (strlen(h->name) == len && memcmp(h->name, name, len) == 0)
            return h;
    }
    return NULL;
}

static dl_route_result_t render(const rule_t *ru, const dl_record_t *rec, char *out, size_t cap,
                                size_t *out_len) {
    size_t o = 0;
    bool over = false;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (n_ > 65535 || o + n_ >= cap)                                                           \
            over = true;                                                                           \
        else if (n_) {                                                                             \
            memcpy(out + o, (p), n_);                                                              \
            o += n_;                                                                               \
        }                                                                                          \
    } while (0)
    if (!ru->tmpl) {
        const dl_header_t *h = header_find(rec, "mqtt.topic", 10);
        if (!h || !h->value)
            return DL_SKIP_MISSING;
        PUT(h->value, h->value_len);
    }
    for (size_t i = 0; ru->tmpl && i < ru->n_parts && !over; i++) {
        const part_t *p = &ru->parts[i];
        if (p->kind == PART_LIT) {
            PUT(p->s, p->len);
        } else if (p->kind == PART_KEY) {
            if (!rec->key)
                return DL_SKIP_MISSING;
            PUT(rec->key, rec->key_len);
        } else {
            const dl_header_t *h = header_find(rec, p->s, p->len);
            if (!h || !h->value)
                return DL_SKIP_MISSING;
            PUT(h->value, h->value_len);
        }
    }
#undef PUT
    if (over)
        return DL_SKIP_TOO_LONG;
    out[o] = '\0';
    *out_len = o;
    if (o == 0)
        return DL_SKIP_EMPTY;
    if (o > 65535)
        return DL_SKIP_TOO_LONG;
    if (memchr(out, '\0', o))
        return DL_SKIP_NUL;
    if (memchr(out, '+', o) || memchr(out, '#', o))
        return DL_SKIP_WILDCARD;
    if (!dl_utf8_valid(out, o))
        return DL_SKIP_UTF8;
    return DL_ROUTED;
}

static dl_route_result_t route(dl_router_t *r, const dl_record_t *rec, char *out, size_t cap,
                               size_t *out_len, int *qos) {
    int i = dl_router_rule(r, rec->topic);
    if (i < 0)
        return DL_SKIP_NO_RULE;
    rule_t *ru = &r->rules[i];
    ru->seen++;
    dl_route_result_t res = render(ru, rec, out, cap, out_len);
    if (res != DL_ROUTED)
        return res;
    *qos = ru->qos;
    const dl_header_t *h = header_find(rec, "mqtt.qos", 8);
    if (h) {
        const char *v = h->value;
        if (!v || h->value_len != 1 || v[0] < '0' || v[0] > '2')
            return DL_SKIP_BAD_QOS;
        *qos = v[0] - '0';
    }
    return DL_ROUTED;
}

dl_route_result_t dl_router_route(dl_router_t *r, const dl_record_t *rec, char *out, size_t cap,
                                  size_t *out_len, int *qos) {
    if (cap)
        out[0] = '\0';
    *out_len = 0;
    dl_route_result_t res = cap ? route(r, rec, out, cap, out_len, qos) : DL_SKIP_TOO_LONG;
    if (res != DL_ROUTED && cap) {
        out[0] = '\0';
        *out_len = 0;
    }
    r->counts[res]++;
    return res;
}

const uint64_t *dl_router_counts(const dl_router_t *r) {
    return r->counts;
}

uint64_t dl_router_rule_count(const dl_router_t *r, size_t rule) {
    return rule < r->n ? r->rules[rule].seen : 0;
}
