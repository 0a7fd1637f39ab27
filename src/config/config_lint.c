/* Lint warnings of a valid configuration (config_lint in config.h): what
 * --check, the start and a reload warn about without refusing it. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "map/rule_lint.h"
#include "map/topic_map.h"

typedef struct {
    const config_t *cfg;
    char *buf;
    size_t len, used, count;
} lint_t;

static void lint_add(void *ud, config_pos_t pos, const char *msg) {
    lint_t *l = ud;
    l->count++;
    if (l->used + 1 >= l->len)
        return;
    int n = snprintf(l->buf + l->used, l->len - l->used, "%s:%d:%d: warning: %s\n", l->cfg->path,
                     pos.line, pos.col, msg);
    if (n > 0)
        l->used += (size_t)n;
    if (l->used >= l->len)
        l->used = l->len - 1;
}

__attribute__((format(printf, 3, 4))) static void lint_at(lint_t *l, config_pos_t pos,
                                                          const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lint_add(l, pos, msg);
}

/* The property as librdkafka will apply it (the last one wins; `alias` is
 * librdkafka's other name for it), NULL when not set. */
static const config_property_t *last_property(const config_t *c, const char *name,
                                              const char *alias) {
    for (size_t i = c->n_kafka_properties; i-- > 0;) {
        const config_property_t *p = &c->kafka_properties[i];
        if (strcmp(p->name, name) == 0 || (alias && strcmp(p->name, alias) == 0))
            return p;
    }
    return NULL;
}

/* librdkafka's false for a boolean property (rdkafka_conf.c). */
static bool rdkafka_false(const char *v) {
    return strcasecmp(v, "false") == 0 || strcasecmp(v, "f") == 0 || strcmp(v, "0") == 0;
}

size_t config_lint(const config_t *cfg, char *buf, size_t len) {
    lint_t l = {cfg, buf, len, strlen(buf), 0};
    topic_map_lint(cfg->rules, cfg->n_rules, lint_add, &l);
    /* Each rule alone: unanchored regexes, templates that can render an
     * illegal Kafka topic name (regex_lint.c). */
    for (size_t i = 0; i < cfg->n_rules; i++)
        (void)topic_map_rule_lint(&cfg->rules[i], i, lint_add, &l);

    /* With idempotence on, librdkafka refuses acks other than all: an error
     * of the producer step, not a warning. */
    const config_property_t *idem = last_property(cfg, "enable.idempotence", NULL);
    bool idem_off = idem && rdkafka_false(idem->value);
    const config_property_t *acks = last_property(cfg, "acks", "request.required.acks");
    if (idem_off && acks && acks->pos.line > 0 && strcasecmp(acks->value, "all") != 0 &&
        strcmp(acks->value, "-1") != 0)
        lint_at(&l, acks->pos,
                "kafka.properties.%s: %s: a record counts as delivered (and its QoS 1/2 message is "
                "acknowledged) before every in-sync replica has it; a leader failure can lose it "
                "(acks: all keeps it)",
                acks->name, acks->value);
    if (idem_off && idem->pos.line > 0)
        lint_at(&l, idem->pos,
                "kafka.properties.enable.idempotence: %s: a retried produce request can write a "
                "record twice or out of order",
                idem->value);
    if (cfg->unmapped == UNMAPPED_DROP && cfg->unmapped_pos.line > 0)
        lint_add(&l, cfg->unmapped_pos,
                 "unmapped: drop: QoS 1 and 2 messages to topics no rule maps are acknowledged and "
                 "thrown away");
    if (cfg->auth.acl_deny == ACL_DENY_DROP && cfg->auth.acl_deny_pos.line > 0)
        lint_add(&l, cfg->auth.acl_deny_pos,
                 "auth.acl_deny: drop: QoS 1 and 2 messages the ACL refuses are acknowledged and "
                 "thrown away");
    return l.count;
}
