/* The one path from a configuration to the objects the daemon runs with
 * (see runtime.h): a table of steps, one per object, each with a prepare
 * that builds without touching what runs, a commit that swaps in and cannot
 * fail, and an abort that frees. It grew out of the SIGHUP reload's two
 * phases; the start and --check now go through the same steps.
 *
 * To build another object from the configuration, add a step. */
#include "runtime.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"
#include "util/log.h"

/* Where a step reports its errors: one line each, with the step's name in
 * front during a reload (the reload logs "reload: <line>"). */
typedef struct {
    char *buf;
    size_t cap, len;
    const char *prefix; /* NULL: none */
} report_t;

__attribute__((format(printf, 2, 3))) static void report(report_t *r, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (r->len + 1 >= r->cap)
        return;
    int n = snprintf(r->buf + r->len, r->cap - r->len, "%s%s%s\n", r->prefix ? r->prefix : "",
                     r->prefix ? ": " : "", line);
    if (n > 0)
        r->len += (size_t)n;
    if (r->len >= r->cap)
        r->len = r->cap - 1;
}

/* A message of several lines, one report each. */
static void report_lines(report_t *r, char *msg) {
    char *save = NULL;
    for (char *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        report(r, "%s", line);
}

typedef struct {
    const char *name; /* in a reload's errors */
    /* Built only when every step before it succeeded: creating the producer
     * starts connecting, pointless for a configuration that fails (it is
     * checked instead, as in --check). */
    bool last;
    /* 0 with *state (may stay NULL), or -1 after reporting; *state is then NULL. */
    int (*prepare)(const runtime_t *rt, const config_t *next, runtime_mode_t mode, void **state,
                   report_t *r);
    void (*commit)(const runtime_t *rt, const config_t *next, runtime_mode_t mode, void *state);
    void (*abort)(runtime_mode_t mode, void *state); /* state is not NULL */
} step_t;

/* ---- kafka.properties: librdkafka is the judge of its own properties (our
 * defaults are checked too: a librdkafka without idempotence would refuse
 * them) ---- */

static int props_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                         void **state, report_t *r) {
    (void)rt;
    (void)mode;
    (void)state;
    int errors = 0;
    for (size_t i = 0; i < next->n_kafka_properties; i++) {
        const config_property_t *p = &next->kafka_properties[i];
        char e[512];
        if (kafka_check_property(p->name, p->value, e, sizeof(e)) == 0)
            continue;
        errors++;
        if (p->pos.line > 0)
            report(r, "%s:%d:%d: kafka.properties.%s: %s", next->path, p->pos.line, p->pos.col,
                   p->name, e);
        else
            report(r, "%s: kafka.properties.%s (built-in default): %s", next->path, p->name, e);
    }
    /* The producer keeps the message.max.bytes it started with (a restart
     * setting): a larger packet would be accepted, then refused by Kafka on
     * every retry. */
    const config_t *run = rt && mode == RUNTIME_RELOAD ? rt->running : NULL;
    if (run && next->mqtt.max_packet_size > run->kafka_message_max_bytes) {
        errors++;
        const config_pos_t *at = &next->mqtt.max_packet_size_pos;
        char where[64] = "";
        if (at->line > 0)
            snprintf(where, sizeof(where), ":%d:%d", at->line, at->col);
        report(r,
               "%s%s: mqtt.max_packet_size%s: %u is above the running producer's "
               "message.max.bytes (%lu), which changes only with a restart; lower it or restart",
               next->path, where, at->line > 0 ? "" : " (from kafka.properties.message.max.bytes)",
               next->mqtt.max_packet_size, run->kafka_message_max_bytes);
    }
    return errors ? -1 : 0;
}

/* ---- the topic map ---- */

static int topics_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                          void **state, report_t *r) {
    (void)rt;
    (void)mode;
    char e[4096];
    topic_map_t *tm = topic_map_new(next->rules, next->n_rules, e, sizeof(e));
    if (!tm) {
        report_lines(r, e);
        return -1;
    }
    topic_map_set_regex_topic_max(tm, next->mqtt.max_regex_topic_length);
    *state = tm;
    return 0;
}

static void topics_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                          void *state) {
    (void)next;
    (void)mode;
    topic_map_t *old = *rt->topics;
    /* Records already produced carry their rendered topic; nothing refers to
     * the old map once this returns (the daemon's route callback reads the
     * pointer on every lookup). */
    *rt->topics = state;
    if (old)
        topic_map_free(old);
}

static void topics_abort(runtime_mode_t mode, void *state) {
    (void)mode;
    topic_map_free(state);
}

/* ---- TLS: certificate, key and CA of every TLS listener ---- */

/* A reload's TLS updates, one per server (each worker has its listeners). */
typedef struct {
    size_t n;
    server_tls_update_t *u[];
} tls_updates_t;

static void tls_abort(runtime_mode_t mode, void *state);

static int tls_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode, void **state,
                       report_t *r) {
    char e[4096];
    if (mode == RUNTIME_RELOAD && rt->server) {
        /* The running listeners' new contexts (a listener that changed in
         * `next` needs a restart and reloads the files it started with). */
        size_t n = 1 + rt->n_more_servers;
        tls_updates_t *all = calloc(1, sizeof(*all) + n * sizeof(all->u[0]));
        if (!all) {
            report(r, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            server_t *s = i ? rt->more_servers[i - 1] : rt->server;
            if (server_tls_prepare(s, next, &all->u[i], e, sizeof(e)) != 0) {
                report_lines(r, e);
                tls_abort(mode, all);
                return -1;
            }
            all->n = i + 1;
        }
        *state = all;
        return 0;
    }
    /* Loaded and checked, then freed: server_listen loads them again at the
     * start, as its interface takes no prepared context. */
    int errors = 0;
    for (size_t i = 0; i < next->n_listeners; i++) {
        const config_listener_t *l = &next->listeners[i];
        tls_ctx_t *t = NULL;
        /* Without both files the loader reported the listener already. */
        if (!l->tls.enabled || !l->tls.cert || !l->tls.key)
            continue;
        if (tls_ctx_new(&l->tls, &t, e, sizeof(e)) != 0) {
            report(r, "%s:%d:%d: listeners[%zu].tls: %s", next->path, l->tls.pos.line,
                   l->tls.pos.col, i, e);
            errors++;
        }
        tls_ctx_free(t);
    }
    return errors ? -1 : 0;
}

static void tls_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                       void *state) {
    (void)next;
    tls_updates_t *all = state;
    if (mode != RUNTIME_RELOAD || !rt->server || !all)
        return;
    /* Logs each listener it switched (the first worker's: the others' are
     * the same files). */
    for (size_t i = 0; i < all->n; i++)
        server_tls_commit(i ? rt->more_servers[i - 1] : rt->server, all->u[i]);
    free(all);
}

static void tls_abort(runtime_mode_t mode, void *state) {
    tls_updates_t *all = state;
    (void)mode;
    for (size_t i = 0; i < all->n; i++)
        server_tls_abort(all->u[i]);
    free(all);
}

/* ---- the password and ACL files (read again on every SIGHUP, also when
 * the YAML did not change) ---- */

static int auth_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                        void **state, report_t *r) {
    char e[1024];
    if (mode == RUNTIME_RELOAD) {
        security_update_t *u = NULL;
        if (security_prepare(&next->auth, &u, e, sizeof(e)) != 0) {
            report(r, "%s", e);
            return -1;
        }
        *state = u;
        return 0;
    }
    security_t *s = NULL;
    if (security_new(&next->auth, &s, e, sizeof(e)) != 0) {
        report(r, "%s:%d:%d: auth: %s", next->path, next->auth.pos.line, next->auth.pos.col, e);
        return -1;
    }
    *state = s;
    return 0;
}

static void auth_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                        void *state) {
    const config_auth_t *a = &next->auth;
    if (mode == RUNTIME_RELOAD) {
        /* Sessions compare the generation: cached ACL decisions become stale. */
        security_commit(*rt->security, a, state);
        if (a->password_file || a->acl_file)
            log_info("reload: password and ACL files reloaded (password file %s, ACL file %s, "
                     "anonymous clients %s)",
                     a->password_file ? a->password_file : "none",
                     a->acl_file ? a->acl_file : "none",
                     a->allow_anonymous ? "allowed" : "refused");
        return;
    }
    security_free(*rt->security);
    *rt->security = state;
    if (a->password_file || a->acl_file || !a->allow_anonymous)
        log_info("auth: %s%s%s, anonymous clients %s",
                 a->password_file ? "password file " : "no password file",
                 a->password_file ? a->password_file : "",
                 a->acl_file ? ", ACL file loaded" : ", no ACL file",
                 a->allow_anonymous ? "allowed" : "refused");
}

static void auth_abort(runtime_mode_t mode, void *state) {
    if (mode == RUNTIME_RELOAD)
        security_update_free(state);
    else
        security_free(state);
}

/* ---- the producer: created at the start only (a change of
 * kafka.bootstrap_servers or kafka.properties needs a restart) ---- */

/* The user's property (the last one, as the last wins) that librdkafka's
 * message names, else NULL: its position is where the error is reported. */
static const config_property_t *producer_culprit(const config_t *c, const char *msg) {
    const config_property_t *found = NULL;
    for (size_t i = 0; i < c->n_kafka_properties; i++) {
        const config_property_t *p = &c->kafka_properties[i];
        size_t n = strlen(p->name);
        if (p->pos.line <= 0 || n == 0)
            continue;
        for (const char *at = strstr(msg, p->name); at; at = strstr(at + 1, p->name)) {
            /* A whole name: "acks" is not "sasl.acks" or "acksx". */
            bool left =
                at == msg || !(at[-1] == '.' || at[-1] == '_' || isalnum((unsigned char)at[-1]));
            bool right = !(at[n] == '.' || at[n] == '_' || isalnum((unsigned char)at[n]));
            if (left && right) {
                /* The one written first in the file names the mistake best. */
                if (!found || p->pos.line < found->pos.line)
                    found = p;
                break;
            }
        }
    }
    if (found)
        return found;
    /* librdkafka's own names for what the user may have written otherwise,
     * and SASL settings that only security.protocol asked for. */
    static const char *const aliases[][2] = {
        {"max.in.flight", "max.in.flight.requests.per.connection"},
        {"acks", "request.required.acks"},
        {"sasl.", "security.protocol"},
        {"ssl.", "security.protocol"},
    };
    for (size_t a = 0; a < sizeof(aliases) / sizeof(aliases[0]); a++) {
        if (!strstr(msg, aliases[a][0]))
            continue;
        for (size_t i = c->n_kafka_properties; i-- > 0;) {
            const config_property_t *p = &c->kafka_properties[i];
            if (p->pos.line > 0 && strcmp(p->name, aliases[a][1]) == 0)
                return p;
        }
    }
    return NULL;
}

static int producer_build(const config_t *next, kafka_opts_t o, const char *bootstrap,
                          runtime_mode_t mode, kafka_t **out, char *e, size_t elen);

static int producer_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                            void **state, report_t *r) {
    if (mode == RUNTIME_RELOAD)
        return 0;
    kafka_opts_t o = {0};
    if (rt)
        o = rt->kafka_opts;
    kafka_t *k = NULL;
    char e[1024];
    if (producer_build(next, o, next->bootstrap_servers, mode, &k, e, sizeof(e)) != 0) {
        const config_property_t *p = producer_culprit(next, e);
        if (p)
            report(r, "%s:%d:%d: kafka.properties.%s: %s", next->path, p->pos.line, p->pos.col,
                   p->name, e);
        else
            report(r, "%s: kafka: %s", next->path, e);
        return -1;
    }
    *state = k;
    return 0;
}

int runtime_producer_new(const config_t *cfg, const kafka_opts_t *opts, const char *bootstrap,
                         kafka_t **out, char *errbuf, size_t errlen) {
    return producer_build(cfg, *opts, bootstrap, RUNTIME_START, out, errbuf, errlen);
}

static int producer_build(const config_t *next, kafka_opts_t o, const char *bootstrap,
                          runtime_mode_t mode, kafka_t **out, char *e, size_t elen) {
    const char **props = calloc(next->n_kafka_properties * 2 + 1, sizeof(*props));
    if (!props) {
        snprintf(e, elen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < next->n_kafka_properties; i++) {
        props[2 * i] = next->kafka_properties[i].name;
        props[2 * i + 1] = next->kafka_properties[i].value;
    }
    o.bootstrap_servers = bootstrap;
    o.properties = props;
    o.n_properties = next->n_kafka_properties;
    /* --check builds the same configuration and lets librdkafka refuse it as
     * rd_kafka_new at the start would, without connecting. */
    int rc = mode == RUNTIME_CHECK ? kafka_check(&o, e, elen) : kafka_new(&o, out, e, elen);
    free(props); /* librdkafka copied them */
    return rc;
}

static void producer_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                            void *state) {
    (void)next;
    if (mode == RUNTIME_START)
        *rt->kafka = state;
}

static void producer_abort(runtime_mode_t mode, void *state) {
    (void)mode;
    kafka_free(state);
}

/* ---- the downlink's router and retained store: built at the start (and by
 * --check); `downlink` and `retained` need a restart. The consumer that
 * feeds them needs the producer's bootstrap (the embedded cluster's address
 * is known once the producer exists), so daemon.c creates it. ---- */

typedef struct {
    dl_router_t *router;
    dl_retained_t *retained;
} downlink_prep_t;

static void downlink_abort(runtime_mode_t mode, void *state) {
    (void)mode;
    downlink_prep_t *p = state;
    dl_router_free(p->router);
    dl_retained_free(p->retained);
    free(p);
}

static int downlink_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                            void **state, report_t *r) {
    (void)rt;
    if (mode == RUNTIME_RELOAD || (next->n_downlink == 0 && !next->retained.enabled))
        return 0;
    downlink_prep_t *p = calloc(1, sizeof(*p));
    dl_rule_t *rules = calloc(next->n_downlink + 1, sizeof(*rules));
    char e[512] = "out of memory";
    if (!p || !rules)
        goto fail;
    for (size_t i = 0; i < next->n_downlink; i++)
        rules[i] = (dl_rule_t){next->downlink[i].kafka, next->downlink[i].mqtt,
                               (int)next->downlink[i].qos};
    if (!(p->router = dl_router_new(rules, next->n_downlink, e, sizeof(e))))
        goto fail;
    if (next->retained.enabled &&
        !(p->retained = dl_retained_new(next->retained.max_messages, next->retained.max_bytes))) {
        snprintf(e, sizeof(e), "out of memory");
        goto fail;
    }
    free(rules);
    *state = p;
    return 0;
fail:
    free(rules);
    if (p)
        downlink_abort(mode, p);
    report(r, "%s: downlink: %s", next->path, e);
    return -1;
}

static void downlink_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                            void *state) {
    (void)next;
    downlink_prep_t *p = state;
    if (!p)
        return;
    if (mode != RUNTIME_START || !rt->router || !rt->retained) {
        downlink_abort(mode, p);
        return;
    }
    *rt->router = p->router;
    *rt->retained = p->retained;
    free(p);
}

/* ---- the spool (`spool:`, needs a restart): --check only looks at the
 * directory (spool_check: a running daemon holds its lock), the start opens
 * and recovers it; an unusable directory refuses the start. ---- */

static int spool_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                         void **state, report_t *r) {
    (void)rt;
    const config_spool_t *c = &next->spool;
    if (mode == RUNTIME_RELOAD || !c->enabled || !c->dir)
        return 0;
    char e[1024];
    int rc;
    if (mode == RUNTIME_CHECK) {
        rc = spool_check(c->dir, e, sizeof(e));
    } else {
        spool_t *sp = NULL;
        spool_options_t o = {.dir = c->dir, .max_bytes = c->max_bytes};
        rc = spool_open(&o, &sp, e, sizeof(e));
        *state = sp;
    }
    if (rc != 0) {
        report(r, "%s:%d:%d: spool.dir: %s", next->path, c->pos.line, c->pos.col, e);
        return -1;
    }
    return 0;
}

static void spool_abort(runtime_mode_t mode, void *state) {
    (void)mode;
    spool_close(state);
}

static void spool_commit(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                         void *state) {
    (void)next;
    if (!state)
        return;
    if (mode != RUNTIME_START || !rt->spool) {
        spool_close(state);
        return;
    }
    *rt->spool = state;
}

/* In this order: --check prints the errors so, and a reload logs the
 * objects it switched so. */
static const step_t steps[] = {
    {"configuration rejected", false, props_prepare, NULL, NULL},
    {"topic map", false, topics_prepare, topics_commit, topics_abort},
    {"TLS certificates", false, tls_prepare, tls_commit, tls_abort},
    {"auth files", false, auth_prepare, auth_commit, auth_abort},
    {"downlink", false, downlink_prepare, downlink_commit, downlink_abort},
    {"spool", false, spool_prepare, spool_commit, spool_abort},
    {"kafka", true, producer_prepare, producer_commit, producer_abort},
};
#define N_STEPS (sizeof(steps) / sizeof(steps[0]))

struct runtime_prep {
    runtime_mode_t mode;
    const config_t *cfg;
    void *state[N_STEPS];
};

int runtime_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                    runtime_prep_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (errlen)
        errbuf[0] = '\0';
    runtime_prep_t *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errbuf, errlen, "out of memory\n");
        return -1;
    }
    p->mode = mode;
    p->cfg = next;
    report_t r = {errbuf, errlen, 0, NULL};
    bool failed = false;
    /* Every step, so that one run reports every file that does not load.
     * After a failure the last step (the producer) is only checked, as
     * --check does (connecting to nothing), so the start reports what
     * --check reports. */
    bool props_failed = false;
    for (size_t i = 0; i < N_STEPS; i++) {
        runtime_mode_t m = mode;
        if (failed && steps[i].last) {
            /* librdkafka refused a property already: it would only say so again. */
            if (mode == RUNTIME_RELOAD || props_failed)
                continue;
            m = RUNTIME_CHECK;
        }
        r.prefix = mode == RUNTIME_RELOAD ? steps[i].name : NULL;
        if (steps[i].prepare(rt, next, m, &p->state[i], &r) != 0) {
            failed = true;
            props_failed |= steps[i].prepare == props_prepare;
        }
    }
    if (failed) {
        if (mode != RUNTIME_RELOAD)
            runtime_sort_errors(errbuf, next->path);
        runtime_abort(p);
        return -1;
    }
    *out = p;
    return 0;
}

typedef struct {
    char *line;
    long at; /* line * 2^20 + col, or LONG_MAX without a position */
    size_t idx;
} error_line_t;

static int error_line_cmp(const void *a, const void *b) {
    const error_line_t *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static long error_position(const char *line, const char *path) {
    size_t n = strlen(path);
    if (strncmp(line, path, n) != 0 || line[n] != ':' || !isdigit((unsigned char)line[n + 1]))
        return LONG_MAX;
    char *end;
    long l = strtol(line + n + 1, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1]))
        return LONG_MAX;
    long c = strtol(end + 1, &end, 10);
    if (*end != ':' || l < 0 || l > 0x7ffffL || c < 0 || c >= (1L << 20))
        return LONG_MAX;
    return (l << 20) + c;
}

void runtime_sort_errors(char *errbuf, const char *path) {
    size_t len = strlen(errbuf), n = 0;
    for (size_t i = 0; i < len; i++)
        n += errbuf[i] == '\n';
    /* Truncated output (no newline at its end) is left as it is. */
    if (n < 2 || path == NULL || errbuf[len - 1] != '\n')
        return;
    char *copy = malloc(len + 1);
    error_line_t *lines = calloc(n + 1, sizeof(*lines));
    if (!copy || !lines) {
        free(copy);
        free(lines);
        return; /* unsorted, but every line is still there */
    }
    memcpy(copy, errbuf, len + 1);
    size_t k = 0;
    for (char *s = copy; k < n; k++) {
        char *nl = strchr(s, '\n'); /* n newlines: there is one */
        *nl = '\0';
        lines[k] = (error_line_t){s, error_position(s, path), k};
        s = nl + 1;
    }
    qsort(lines, k, sizeof(*lines), error_line_cmp);
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        size_t l = strlen(lines[i].line);
        memcpy(errbuf + off, lines[i].line, l);
        errbuf[off + l] = '\n';
        off += l + 1;
    }
    errbuf[off] = '\0';
    free(lines);
    free(copy);
}

void runtime_commit(const runtime_t *rt, runtime_prep_t *p) {
    for (size_t i = 0; i < N_STEPS; i++)
        if (steps[i].commit)
            steps[i].commit(rt, p->cfg, p->mode, p->state[i]);
    free(p);
}

void runtime_abort(runtime_prep_t *p) {
    if (!p)
        return;
    for (size_t i = N_STEPS; i-- > 0;)
        if (p->state[i] && steps[i].abort)
            steps[i].abort(p->mode, p->state[i]);
    free(p);
}
