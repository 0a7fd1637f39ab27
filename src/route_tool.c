/* mqtt2kafka route: a dry run of one PUBLISH through the daemon's own
 * checks: the topic name check of the codec, the ACL (security_can_publish)
 * and the topic map (topic_map_lookup), built from the configuration as the
 * start builds them; nothing connects to Kafka. */
#include "route_tool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/security.h"
#include "config/config.h"
#include "map/topic_map.h"
#include "mqtt/codec.h"

#define ROUTE_ERRBUF 65536
#define ROUTE_SCRATCH 4096

static void route_usage(FILE *out) {
    fprintf(out, "usage: mqtt2kafka route [-c FILE] TOPIC [--client-id ID] [--username USER]\n"
                 "  prints the rule that matches (file:line:col), the Kafka topic, key and\n"
                 "  headers, or why the message would not reach Kafka; exit 0 when it would,\n"
                 "  3 when it would not, 1 for a configuration error, 2 for a usage error\n");
}

static void print_headers(const config_t *cfg, const char *topic, const char *client_id,
                          const char *user) {
    if (!cfg->headers) {
        printf("headers:  none (headers: false)\n");
        return;
    }
    printf("headers:  mqtt.topic=%s\n", topic);
    printf("          mqtt.client_id=%s\n", client_id);
    printf("          mqtt.qos=<the PUBLISH's QoS: 0, 1 or 2>\n");
    printf("          mqtt.retain=1 (only when the PUBLISH has RETAIN)\n");
    if (user)
        printf("          mqtt.username=%s\n", user);
}

/* Exit status: 0 reaches Kafka, 3 does not. */
static int route_one(const config_t *cfg, const topic_map_t *tm, const security_t *sec,
                     const char *topic, const char *client_id, const char *user) {
    size_t len = strlen(topic);
    printf("topic:    %s\n", topic);
    printf("client:   %s%s%s\n", client_id, user ? ", user " : ", no user name", user ? user : "");
    if (mqtt_topic_name_check((const uint8_t *)topic, len) != 0) {
        printf("refused:  not a valid MQTT topic name (empty, wildcards, or a NUL): the client "
               "is disconnected (protocol error)\n");
        return 3;
    }
    if (!security_can_publish(sec, user, client_id, topic, len)) {
        printf("refused:  the ACL (%s) does not let %s%s publish here: %s\n", cfg->auth.acl_file,
               user ? "user " : "anonymous clients", user ? user : "",
               cfg->auth.acl_deny == ACL_DENY_DROP
                   ? "the message is dropped (acknowledged, not produced; auth.acl_deny: drop)"
                   : "the client is disconnected (auth.acl_deny: disconnect)");
        return 3;
    }
    topic_map_ctx_t ctx = {.client_id = client_id,
                           .client_id_len = strlen(client_id),
                           .username = user,
                           .username_len = user ? strlen(user) : 0};
    static char scratch[ROUTE_SCRATCH];
    topic_map_result_t res = {.rule = -1};
    int r = topic_map_lookup(tm, topic, len, &ctx, scratch, sizeof(scratch), &res);
    if (r == TOPIC_MAP_MATCHED) {
        const config_rule_t *rule = &cfg->rules[res.rule];
        printf("rule:     %s:%d:%d: topics[%d] %s: \"%s\"\n", cfg->path, rule->pos.line,
               rule->pos.col, res.rule, rule->kind == RULE_REGEX ? "regex" : "mqtt", rule->pattern);
        printf("kafka:    %s\n", res.kafka_topic);
        if (res.key)
            printf("key:      %.*s\n", (int)res.key_len, res.key);
        else
            printf("key:      none (key: \"\": any partition)\n");
        print_headers(cfg, topic, client_id, user);
        return 0;
    }
    if (r != TOPIC_MAP_UNMAPPED) {
        /* Mapped, but its Kafka topic cannot be used: the daemon refuses it
         * whatever unmapped: says (session_route). */
        if (r != TOPIC_MAP_ERR_NO_ROOM) {
            const config_rule_t *rule = &cfg->rules[res.rule];
            printf("rule:     %s:%d:%d: topics[%d] %s: \"%s\"\n", cfg->path, rule->pos.line,
                   rule->pos.col, res.rule, rule->kind == RULE_REGEX ? "regex" : "mqtt",
                   rule->pattern);
            printf("refused:  it renders the Kafka topic '%.*s', %s: never acknowledged, the "
                   "client is disconnected\n",
                   (int)res.kafka_topic_len, res.kafka_topic, topic_map_refusal(r));
        } else {
            printf("refused:  %s: never acknowledged, the client is disconnected\n",
                   topic_map_refusal(r));
        }
        return 3;
    }
    const char *why = res.regex_skipped ? "no rule matches (regex rules skipped: the topic is "
                                          "longer than mqtt.max_regex_topic_length)"
                                        : "no rule matches";
    switch (cfg->unmapped) {
    case UNMAPPED_TOPIC:
        printf("unmapped: %s; unmapped: {topic: %s}\n", why, cfg->unmapped_topic);
        printf("kafka:    %s\n", cfg->unmapped_topic);
        printf("key:      %s\n", topic);
        print_headers(cfg, topic, client_id, user);
        return 0;
    case UNMAPPED_DROP:
        printf("unmapped: %s; unmapped: drop: acknowledged and not produced\n", why);
        return 3;
    default:
        printf("unmapped: %s; unmapped: disconnect: the client is disconnected\n", why);
        return 3;
    }
}

int route_tool_main(int argc, char **argv, const char *default_config) {
    const char *path = default_config, *topic = NULL, *client_id = "route-dry-run", *user = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            route_usage(stdout);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            dst = &path;
        } else if (strncmp(a, "-c=", 3) == 0 || strncmp(a, "--config=", 9) == 0) {
            path = strchr(a, '=') + 1;
            continue;
        } else if (strcmp(a, "--client-id") == 0) {
            dst = &client_id;
        } else if (strcmp(a, "--username") == 0) {
            dst = &user;
        } else if (a[0] == '-' || topic) {
            fprintf(stderr, "mqtt2kafka route: unexpected argument '%s'\n", a);
            route_usage(stderr);
            return 2;
        } else {
            topic = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "mqtt2kafka route: %s needs a value\n", a);
            route_usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!topic || !path[0]) {
        fprintf(stderr, "mqtt2kafka route: %s\n", topic ? "-c needs a file name" : "no topic");
        route_usage(stderr);
        return 2;
    }
    char *errbuf = malloc(ROUTE_ERRBUF);
    config_t *cfg = NULL;
    topic_map_t *tm = NULL;
    security_t *sec = NULL;
    int rc = 1;
    if (!errbuf) {
        fprintf(stderr, "mqtt2kafka route: out of memory\n");
        return 1;
    }
    if (config_load(path, &cfg, errbuf, ROUTE_ERRBUF) != 0) {
        fputs(errbuf, stderr);
        goto out;
    }
    tm = topic_map_new(cfg->rules, cfg->n_rules, errbuf, ROUTE_ERRBUF);
    if (!tm) {
        fputs(errbuf, stderr);
        goto out;
    }
    topic_map_set_regex_topic_max(tm, cfg->mqtt.max_regex_topic_length); /* as runtime.c */
    if (security_new(&cfg->auth, &sec, errbuf, ROUTE_ERRBUF) != 0) {
        fprintf(stderr, "%s:%d:%d: auth: %s\n", cfg->path, cfg->auth.pos.line, cfg->auth.pos.col,
                errbuf);
        goto out;
    }
    rc = route_one(cfg, tm, sec, topic, client_id, user);
out:
    security_free(sec);
    if (tm)
        topic_map_free(tm);
    config_free(cfg);
    free(errbuf);
    return rc;
}
