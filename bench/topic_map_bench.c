/* topic_map_lookup throughput: 10 vs 1,000 filter rules on one core, with a
 * topic mix of exact, '+' and '#' matches and misses.
 *   topic_map_bench            ~1 s per case, prints lookups/s and the ratio
 *   topic_map_bench --smoke    a few thousand lookups, checks results
 *   topic_map_bench --help     usage */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "map/topic_map.h"

#define N_TOPICS 4096

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rules shaped like a fleet's: per-site device trees and measurements, a
 * few wildcard-heavy rules, and a catch-all at the end. */
static config_rule_t *make_rules(size_t n, char ***strs) {
    config_rule_t *r = calloc(n, sizeof(*r));
    char **s = calloc(2 * n, sizeof(char *));
    if (!r || !s)
        exit(1);
    for (size_t i = 0; i + 1 < n; i++) {
        s[2 * i] = malloc(64);
        s[2 * i + 1] = malloc(32);
        switch (i % 4) {
        case 0:
            snprintf(s[2 * i], 64, "site/%zu/+/temperature", i / 4);
            break;
        case 1:
            snprintf(s[2 * i], 64, "site/%zu/+/brightness", i / 4);
            break;
        case 2:
            snprintf(s[2 * i], 64, "site/%zu/gateway/#", i / 4);
            break;
        default:
            snprintf(s[2 * i], 64, "fleet/+/truck-%zu/gps", i / 4);
            break;
        }
        snprintf(s[2 * i + 1], 32, "t-%zu", i % 50);
        r[i] = (config_rule_t){RULE_FILTER, s[2 * i], s[2 * i + 1], "{1}",  {0, 0},
                               {0, 0},      {0, 0},   {0, 0},       "bench"};
    }
    s[2 * (n - 1)] = strdup("#");
    s[2 * (n - 1) + 1] = strdup("mqtt-events");
    r[n - 1] = (config_rule_t){RULE_FILTER, s[2 * (n - 1)], s[2 * (n - 1) + 1],
                               "{topic}",   {0, 0},         {0, 0},
                               {0, 0},      {0, 0},         "bench"};
    *strs = s;
    return r;
}

static void free_rules(config_rule_t *r, char **s, size_t n) {
    for (size_t i = 0; i < 2 * n; i++)
        free(s[i]);
    free(s);
    free(r);
}

/* `spread` sites and trucks. With spread 2 every topic matches the same rule
 * (same index, same captures) in the 10-rule and the 1000-rule map, so the
 * two cases do the same work and differ only in the size of the trie. With
 * spread 250 ("mixed"), sites beyond the 10-rule map fall through to its
 * catch-all, as unmatched traffic does. */
static char (*make_topics(unsigned spread))[96] {
    char(*t)[96] = malloc(N_TOPICS * sizeof(*t));
    if (!t)
        exit(1);
    unsigned seed = 42;
    for (int i = 0; i < N_TOPICS; i++) {
        unsigned site = (unsigned)rand_r(&seed) % spread, dev = (unsigned)rand_r(&seed) % 10000;
        switch (rand_r(&seed) % 5) {
        case 0:
            snprintf(t[i], 96, "site/%u/sensor-%u/temperature", site, dev);
            break;
        case 1:
            snprintf(t[i], 96, "site/%u/sensor-%u/brightness", site, dev);
            break;
        case 2:
            snprintf(t[i], 96, "site/%u/gateway/status/uplink", site);
            break;
        case 3:
            snprintf(t[i], 96, "fleet/eu/truck-%u/gps", site);
            break;
        default:
            snprintf(t[i], 96, "misc/device-%u/heartbeat", dev);
            break;
        }
    }
    return t;
}

static double run(size_t n_rules, char (*topics)[96], long iters, int check, int *rules_seen) {
    char **strs;
    config_rule_t *rules = make_rules(n_rules, &strs);
    char err[256];
    topic_map_t *m = topic_map_new(rules, n_rules, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "topic_map_new: %s\n", err);
        exit(1);
    }
    size_t lens[N_TOPICS];
    for (int i = 0; i < N_TOPICS; i++)
        lens[i] = strlen(topics[i]);
    topic_map_ctx_t ctx = {"client", 6, NULL, 0, NULL, NULL};
    char scratch[512];
    topic_map_result_t out;
    long matched = 0;
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        int k = (int)(i & (N_TOPICS - 1));
        matched += topic_map_lookup(m, topics[k], lens[k], &ctx, scratch, sizeof(scratch), &out) ==
                   TOPIC_MAP_MATCHED;
    }
    double dt = now_s() - t0;
    for (int k = 0; rules_seen && k < N_TOPICS; k++) {
        topic_map_lookup(m, topics[k], lens[k], &ctx, scratch, sizeof(scratch), &out);
        /* The catch-all is the last rule of each map. */
        rules_seen[k] = out.rule == (int)n_rules - 1 ? -2 : out.rule;
    }
    if (check && matched != iters) {
        fprintf(stderr, "expected every topic to match (catch-all), %ld of %ld did\n", matched,
                iters);
        exit(1);
    }
    topic_map_free(m);
    free_rules(rules, strs, n_rules);
    return (double)iters / dt;
}

static const char USAGE[] =
    "usage: topic_map_bench [--smoke] [-h|--help]\n"
    "topic_map_lookup throughput, 10 vs 1,000 rules, one core (about 1 s per case).\n"
    "  --smoke     a few thousand lookups, checks the results (run by ctest)\n"
    "  -h, --help  print this help and exit\n";

int main(int argc, char **argv) {
    int smoke = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            fprintf(stderr, "topic_map_bench: unknown argument '%s'\n%s", argv[i], USAGE);
            return 2;
        }
    }
    long iters = smoke ? 20000 : 20000000;
    char(*same)[96] = make_topics(2);
    char(*mixed)[96] = make_topics(250);
    static int seen10[N_TOPICS], seen1000[N_TOPICS];
    run(1000, mixed, N_TOPICS, 1, NULL); /* warm-up */
    double s10 = run(10, same, iters, 1, seen10);
    double s1000 = run(1000, same, iters, 1, seen1000);
    if (memcmp(seen10, seen1000, sizeof(seen10)) != 0) {
        fprintf(stderr, "the shared topics matched different rules in the two maps\n");
        return 1;
    }
    double m10 = run(10, mixed, iters, 1, NULL);
    double m1000 = run(1000, mixed, iters, 1, NULL);
    printf("topic_map_lookup, %d distinct topics, %ld lookups per case, one core\n", N_TOPICS,
           iters);
    printf("  same matches:  10 rules %6.2f M/s (%4.0f ns)  1000 rules %6.2f M/s (%4.0f ns)  "
           "time ratio %.2f\n",
           s10 / 1e6, 1e9 / s10, s1000 / 1e6, 1e9 / s1000, s10 / s1000);
    printf("  mixed topics:  10 rules %6.2f M/s (%4.0f ns)  1000 rules %6.2f M/s (%4.0f ns)  "
           "time ratio %.2f\n",
           m10 / 1e6, 1e9 / m10, m1000 / 1e6, 1e9 / m1000, m10 / m1000);
    free(same);
    free(mixed);
    return 0;
}
