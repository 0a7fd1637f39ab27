/* Confluent MQTT Proxy properties -> mqtt2kafka YAML. */
#include "config/confluent_import.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "strbuf.h"
#include "util/file_read.h"
#include "kafka/producer.h"
#include "map/topic_map.h"

typedef struct {
    char *key;
    char *value;
    int line;
    bool used;
} prop_t;

typedef struct {
    prop_t *v;
    size_t n, cap;
} props_t;

/* ---- Java properties ---- */

static void put_utf8(sb_t *b, unsigned cp) {
    char u[4];
    if (cp < 0x80) {
        sb_putc(b, (char)cp);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        sb_putn(b, u, 2);
    } else {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        sb_putn(b, u, 3);
    }
}

/* Unescapes s[0..n) the way java.util.Properties does. */
static char *unescape(const char *s, size_t n) {
    sb_t b = {0};
    sb_putn(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            sb_putc(&b, s[i]);
            continue;
        }
        char c = s[++i];
        if (c == 't')
            sb_putc(&b, '\t');
        else if (c == 'n')
            sb_putc(&b, '\n');
        else if (c == 'r')
            sb_putc(&b, '\r');
        else if (c == 'f')
            sb_putc(&b, '\f');
        else if (c == 'u' && i + 4 < n && isxdigit((unsigned char)s[i + 1]) &&
                 isxdigit((unsigned char)s[i + 2]) && isxdigit((unsigned char)s[i + 3]) &&
                 isxdigit((unsigned char)s[i + 4])) {
            char hex[5] = {s[i + 1], s[i + 2], s[i + 3], s[i + 4], 0};
            put_utf8(&b, (unsigned)strtoul(hex, NULL, 16));
            i += 4;
        } else
            sb_putc(&b, c);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static int props_add(props_t *ps, const char *k, size_t kn, const char *v, size_t vn, int line) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 32;
        prop_t *p = realloc(ps->v, cap * sizeof(*p));
        if (!p)
            return -1;
        ps->v = p;
        ps->cap = cap;
    }
    char *key = unescape(k, kn), *value = unescape(v, vn);
    if (!key || !value) {
        free(key);
        free(value);
        return -1;
    }
    /* Like java.util.Properties, a later line replaces an earlier one. */
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->v[i].key, key) == 0) {
            free(ps->v[i].value);
            free(key);
            ps->v[i].value = value;
            ps->v[i].line = line;
            return 0;
        }
    }
    ps->v[ps->n++] = (prop_t){key, value, line, false};
    return 0;
}

static void props_free(props_t *ps) {
    for (size_t i = 0; i < ps->n; i++) {
        free(ps->v[i].key);
        free(ps->v[i].value);
    }
    free(ps->v);
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\f';
}

static bool is_comment(const char *s, size_t n) {
    size_t q = 0;
    while (q < n && is_ws(s[q]))
        q++;
    return q < n && (s[q] == '#' || s[q] == '!');
}

static int props_parse(const char *text, size_t len, props_t *ps) {
    size_t i = 0;
    int line = 1;
    sb_t logical = {0};
    while (i < len) {
        int start_line = line;
        logical.len = 0;
        sb_putn(&logical, "", 0);
        /* Join continuation lines: an odd number of trailing backslashes. */
        bool first = true;
        for (;;) {
            size_t e = i;
            while (e < len && text[e] != '\n' && text[e] != '\r')
                e++;
            size_t s = i;
            if (!first)
                while (s < e && is_ws(text[s]))
                    s++;
            size_t bs = 0;
            while (bs < e - s && text[e - 1 - bs] == '\\')
                bs++;
            bool cont = bs % 2 == 1;
            bool comment = first && is_comment(text + s, e - s);
            sb_putn(&logical, text + s, e - s - (cont && !comment ? 1 : 0));
            i = e;
            if (i < len && text[i] == '\r')
                i++;
            if (i < len && text[i] == '\n')
                i++;
            line++;
            first = false;
            if (comment) {
                logical.len = 0;
                break;
            }
            if (!cont || i >= len)
                break;
        }
        if (logical.oom)
            goto oom;
        const char *l = logical.p;
        size_t n = logical.len, k = 0;
        while (k < n && is_ws(l[k]))
            k++;
        if (k == n)
            continue;
        size_t ks = k;
        while (k < n && l[k] != '=' && l[k] != ':' && !is_ws(l[k])) {
            if (l[k] == '\\')
                k++;
            k++;
        }
        if (k > n)
            k = n;
        size_t ke = k;
        while (k < n && is_ws(l[k]))
            k++;
        if (k < n && (l[k] == '=' || l[k] == ':'))
            k++;
        while (k < n && is_ws(l[k]))
            k++;
        if (props_add(ps, l + ks, ke - ks, l + k, n - k, start_line) < 0)
            goto oom;
    }
    free(logical.p);
    return 0;
oom:
    free(logical.p);
    return -1;
}

static prop_t *prop_get(props_t *ps, const char *key) {
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->v[i].key, key) == 0) {
            ps->v[i].used = true;
            return &ps->v[i];
        }
    }
    return NULL;
}

/* ---- YAML output ---- */

static void yaml_quote(sb_t *b, const char *s) {
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)*p);
        } else if (*p < 0x20 || *p == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            sb_puts(b, esc);
        } else {
            sb_putc(b, (char)*p);
        }
    }
    sb_putc(b, '"');
}

/* A comment holds one line: newlines in a value would end it. */
static void comment_text(sb_t *b, const char *s) {
    for (; *s; s++)
        sb_putc(b, (*s == '\n' || *s == '\r') ? ' ' : *s);
}

static bool is_secret(const char *key) {
    return strstr(key, "password") || strstr(key, "jaas") || strstr(key, "secret");
}

static void not_carried(sb_t *b, const prop_t *p, const char *why) {
    char line[32];
    sb_puts(b, "# not carried over: ");
    comment_text(b, p->key);
    sb_puts(b, "=");
    comment_text(b, is_secret(p->key) ? "<redacted>" : p->value);
    snprintf(line, sizeof(line), " (line %d): ", p->line);
    sb_puts(b, line);
    comment_text(b, why);
    sb_putc(b, '\n');
}

/* ---- conversion ---- */

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool starts_with_ci(const char *s, const char *prefix) {
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static void emit_listeners(sb_t *b, sb_t *nc, props_t *ps) {
    prop_t *l = prop_get(ps, "listeners");
    prop_t *sec = prop_get(ps, "listeners.security.protocol");
    bool tls = sec && strcasecmp(trim(sec->value), "PLAINTEXT") != 0;
    if (tls)
        not_carried(nc, sec,
                    "mqtt2kafka's TLS listeners take PEM files (listeners[].tls: cert, key, ca), "
                    "not Java keystores; the listeners are left out rather than exposed "
                    "unencrypted: add them with a tls: section");
    char *list = strdup(l ? l->value : "0.0.0.0:1883");
    if (!list) {
        b->oom = true;
        return;
    }
    bool any = false;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *e = trim(tok);
        if (*e == '\0')
            continue;
        const char *plain[] = {"tcp://", "mqtt://", "plaintext://"};
        const char *secure[] = {"ssl://",      "tls://",      "https://",         "mqtts://",
                                "sasl_ssl://", "sasl_tls://", "sasl_plaintext://"};
        bool skip = false;
        for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
            if (starts_with_ci(e, plain[i]))
                e += strlen(plain[i]);
        for (size_t i = 0; i < sizeof(secure) / sizeof(secure[0]); i++)
            if (starts_with_ci(e, secure[i]))
                skip = true;
        prop_t tmp = {"listeners", e, l ? l->line : 0, true};
        if (skip || tls) {
            if (!tls)
                not_carried(nc, &tmp,
                            "a TLS or SASL listener; add it with listeners[].tls (PEM files; no "
                            "SASL for MQTT)");
            continue;
        }
        char addr[300];
        if (e[0] == ':')
            snprintf(addr, sizeof(addr), "0.0.0.0%s", e);
        else if (starts_with_ci(e, "localhost:"))
            snprintf(addr, sizeof(addr), "127.0.0.1%s", e + 9);
        else
            snprintf(addr, sizeof(addr), "%s", e);
        char *host;
        uint16_t port;
        const char *why;
        if (config_parse_listen(addr, &host, &port, &why) < 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "mqtt2kafka listens on an IP address: %s", why);
            not_carried(nc, &tmp, msg);
            continue;
        }
        free(host);
        if (!any)
            sb_puts(b, "listeners:\n");
        any = true;
        sb_puts(b, "  - listen: ");
        yaml_quote(b, addr);
        sb_putc(b, '\n');
    }
    free(list);
    if (!any)
        sb_puts(b, "# listeners: none carried over; the default is 127.0.0.1:1883\n");
}

typedef struct {
    const char *java;
    const char *rdkafka; /* NULL: handled specially or not carried */
} rename_t;

static const rename_t renames[] = {
    {"max.request.size", "message.max.bytes"},
    {"buffer.memory", NULL},
    {"sasl.jaas.config", NULL},
};

/* username="x" in a JAAS line; NULL if absent. */
static char *jaas_field(const char *jaas, const char *name) {
    char pat[32];
    snprintf(pat, sizeof(pat), "%s=\"", name);
    const char *p = strstr(jaas, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    return q ? strndup(p, (size_t)(q - p)) : NULL;
}

static void emit_property(sb_t *b, const char *name, const char *value) {
    sb_puts(b, "    ");
    sb_puts(b, name);
    sb_puts(b, ": ");
    yaml_quote(b, value);
    sb_putc(b, '\n');
}

/* Returns message.max.bytes as the output sets it (librdkafka's default if not). */
static unsigned long emit_producer(sb_t *b, sb_t *nc, props_t *ps, unsigned long need_mmb) {
    unsigned long mmb = CONFIG_KAFKA_MESSAGE_MAX_BYTES_DEFAULT;
    bool header = false;
    char err[512];
    for (size_t i = 0; i < ps->n; i++) {
        prop_t *p = &ps->v[i];
        if (strncmp(p->key, "producer.", 9) != 0)
            continue;
        p->used = true;
        const char *name = p->key + 9;
        const char *value = p->value;
        if (!header) {
            sb_puts(b, "  properties:\n");
            header = true;
        }
        bool renamed = false;
        for (size_t r = 0; r < sizeof(renames) / sizeof(renames[0]); r++) {
            if (strcmp(name, renames[r].java) != 0)
                continue;
            renamed = true;
            if (strcmp(name, "sasl.jaas.config") == 0) {
                char *u = jaas_field(value, "username"), *pw = jaas_field(value, "password");
                if (u && pw &&
                    (strstr(value, "PlainLoginModule") || strstr(value, "ScramLoginModule"))) {
                    emit_property(b, "sasl.username", u);
                    emit_property(b, "sasl.password", pw);
                } else {
                    not_carried(nc, p,
                                "only PLAIN and SCRAM logins (username/password) map to "
                                "librdkafka's sasl.username and sasl.password");
                }
                free(u);
                free(pw);
            } else if (renames[r].rdkafka) {
                emit_property(b, renames[r].rdkafka, value);
                if (strcmp(renames[r].rdkafka, "message.max.bytes") == 0)
                    mmb = strtoul(value, NULL, 10);
            } else {
                not_carried(nc, p, "a Java client setting with no librdkafka equivalent");
            }
        }
        if (renamed)
            continue;
        if (strcmp(name, "bootstrap.servers") == 0) {
            not_carried(nc, p, "the top-level bootstrap.servers is used");
            continue;
        }
        if (kafka_check_property(name, value, err, sizeof(err)) < 0) {
            char msg[600];
            snprintf(msg, sizeof(msg), "librdkafka: %s", err);
            not_carried(nc, p, msg);
            continue;
        }
        emit_property(b, name, value);
        if (strcmp(name, "message.max.bytes") == 0)
            mmb = strtoul(value, NULL, 10);
    }
    if (need_mmb > mmb) {
        char v[32];
        if (!header)
            sb_puts(b, "  properties:\n");
        sb_puts(b, "    # raised so that mqtt.max_packet_size fits in one record; the topic's\n"
                   "    # max.message.bytes must allow it too\n");
        snprintf(v, sizeof(v), "%lu", need_mmb);
        emit_property(b, "message.max.bytes", v);
        mmb = need_mmb;
    }
    return mmb;
}

static void emit_rules(sb_t *b, sb_t *nc, props_t *ps) {
    prop_t *p = prop_get(ps, "topic.regex.list");
    if (!p || trim(p->value)[0] == '\0') {
        sb_puts(b, "# topic.regex.list was empty: every topic is unmapped\ntopics: []\n");
        return;
    }
    char *list = strdup(p->value);
    if (!list) {
        b->oom = true;
        return;
    }
    sb_puts(b, "topics:\n");
    size_t emitted = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *e = trim(tok);
        if (*e == '\0')
            continue;
        prop_t tmp = {"topic.regex.list", e, p->line, true};
        char *colon = strchr(e, ':');
        if (!colon) {
            not_carried(nc, &tmp, "expected kafka-topic:regex");
            continue;
        }
        *colon = '\0';
        char *topic = trim(e), *jre = trim(colon + 1);
        tmp.value = jre;
        const char *why;
        if (topic_map_kafka_topic_check(topic, strlen(topic), &why) < 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "Kafka topic \"%.100s\": %s", topic, why);
            not_carried(nc, &tmp, msg);
            continue;
        }
        char *posix = NULL, *notes = NULL;
        int rc = confluent_regex_to_posix(jre, &posix, &notes);
        if (rc == 0) {
            regex_t r;
            int rrc = regcomp(&r, posix, REG_EXTENDED | REG_NOSUB);
            if (rrc != 0) {
                char msg[300], rerr[200];
                regerror(rrc, &r, rerr, sizeof(rerr));
                snprintf(msg, sizeof(msg), "regex for %s: POSIX regcomp: %s", topic, rerr);
                not_carried(nc, &tmp, msg);
                free(posix);
                free(notes);
                continue;
            }
            regfree(&r);
        }
        if (notes && notes[0]) {
            char *save2 = NULL;
            for (char *ln = strtok_r(notes, "\n", &save2); ln; ln = strtok_r(NULL, "\n", &save2)) {
                sb_puts(rc == 0 ? b : nc,
                        rc == 0 ? "  # warning: regex for " : "# warning: regex for ");
                sb_puts(rc == 0 ? b : nc, topic);
                sb_puts(rc == 0 ? b : nc, ": ");
                comment_text(rc == 0 ? b : nc, ln);
                sb_putc(rc == 0 ? b : nc, '\n');
            }
        }
        if (rc < 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "regex for %.100s uses a Java-only construct", topic);
            not_carried(nc, &tmp, msg);
        } else {
            sb_puts(b, "  - regex: ");
            yaml_quote(b, posix);
            sb_puts(b, "   # Java: ");
            comment_text(b, jre);
            sb_puts(b, "\n    kafka: ");
            yaml_quote(b, topic);
            sb_putc(b, '\n');
            emitted++;
        }
        free(posix);
        free(notes);
    }
    free(list);
    if (emitted == 0) {
        /* "topics:" with nothing after it would be null, not a list. */
        b->len -= strlen("topics:\n");
        b->p[b->len] = '\0';
        sb_puts(b, "topics: []\n");
    }
}

static void emit_rest(sb_t *nc, props_t *ps) {
    for (size_t i = 0; i < ps->n; i++) {
        prop_t *p = &ps->v[i];
        if (p->used)
            continue;
        const char *k = p->key;
        if (strncmp(k, "confluent.", 10) == 0)
            not_carried(nc, p, "Confluent license settings; mqtt2kafka needs none");
        else if (strncmp(k, "listeners.ssl.", 14) == 0 || strncmp(k, "mqtt.ssl.", 9) == 0 ||
                 strncmp(k, "listeners.sasl.", 15) == 0 || strncmp(k, "ssl.", 4) == 0)
            not_carried(
                nc, p, "Java keystore/TLS setting; TLS listeners take PEM files (listeners[].tls)");
        else if (strncmp(k, "network.", 8) == 0 || strcmp(k, "stream.threads.num") == 0)
            not_carried(nc, p, "mqtt2kafka runs one event loop; no thread settings");
        else if (strncmp(k, "mqtt.", 5) == 0)
            not_carried(nc, p, "no equivalent MQTT setting (see docs/migrating-from-confluent.md)");
        else
            not_carried(nc, p, "unknown to the importer");
    }
}

int confluent_import_string(const char *text, size_t len, const char *name, FILE *out, char *errbuf,
                            size_t errlen) {
    props_t ps = {0};
    sb_t b = {0}, nc = {0};
    int rc = -1;
    if (props_parse(text, len, &ps) < 0) {
        snprintf(errbuf, errlen, "%s: out of memory\n", name);
        goto done;
    }
    sb_puts(&b, "# Converted from a Confluent MQTT Proxy configuration by\n# mqtt2kafka "
                "--import-confluent ");
    comment_text(&b, name);
    sb_puts(&b, "\n# Review the comments, then check with: mqtt2kafka -t -c FILE\n");

    emit_listeners(&b, &nc, &ps);

    /* mqtt.message.max.bytes excludes the fixed header (at most 5 bytes). */
    prop_t *mm = prop_get(&ps, "mqtt.message.max.bytes");
    unsigned long max_packet = 0;
    if (mm) {
        char *end;
        unsigned long v = strtoul(trim(mm->value), &end, 10);
        if (*end != '\0' || mm->value[0] == '\0' || v > 268435455ul)
            not_carried(&nc, mm, "not a number from 0 to 268435455");
        else
            max_packet = v + 5 < 128 ? 128 : v + 5;
    }

    sb_puts(&b, "kafka:\n  bootstrap_servers: ");
    prop_t *bs = prop_get(&ps, "bootstrap.servers");
    if (bs && trim(bs->value)[0]) {
        yaml_quote(&b, trim(bs->value));
        sb_putc(&b, '\n');
    } else {
        sb_puts(&b, "\"localhost:9092\"   # bootstrap.servers was not set\n");
    }
    emit_producer(&b, &nc, &ps, max_packet);
    emit_rules(&b, &nc, &ps);
    sb_puts(&b, "unmapped: disconnect\n"
                "# Confluent's records carry the MQTT topic as key and the payload as value,\n"
                "# without headers; set true to add mqtt.* headers.\n"
                "headers: false\n");
    if (max_packet) {
        char v[64];
        snprintf(v, sizeof(v), "mqtt:\n  max_packet_size: %lu\n", max_packet);
        sb_puts(&b, v);
    }
    emit_rest(&nc, &ps);
    if (nc.len) {
        sb_putc(&b, '\n');
        sb_putn(&b, nc.p, nc.len);
    }
    if (b.oom || nc.oom) {
        snprintf(errbuf, errlen, "%s: out of memory\n", name);
        goto done;
    }
    if (fwrite(b.p, 1, b.len, out) != b.len) {
        snprintf(errbuf, errlen, "%s: cannot write the output: %s\n", name, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(b.p);
    free(nc.p);
    props_free(&ps);
    return rc;
}

int confluent_import(const char *path, FILE *out, char *errbuf, size_t errlen) {
    char *buf;
    size_t len;
    char err[512];
    if (file_read_all(path, 16u << 20, &buf, &len, err, sizeof(err)) < 0) {
        snprintf(errbuf, errlen, "%s\n", err);
        return -1;
    }
    int rc = confluent_import_string(buf, len, path, out, errbuf, errlen);
    free(buf);
    return rc;
}
