/* dl_subs_match cost: the same topics matched against 10 and against 10,000
 * subscriptions of which only one or two match each topic (a device fleet:
 * one command filter per device, a few wildcard watchers), plus a fan-out
 * row (1,000 clients on one filter). The ratio 10,000 / 10 shows that the
 * cost does not follow the subscriptions that do not match.
 *   downlink_bench            ~1 s per case, prints matches/s and ns/match
 *   downlink_bench --smoke    a few thousand matches, checks the results */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "downlink/subs.h"

#define N_TOPICS 1024

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n subscriptions: client i takes "devices/<i>/commands"; every 100th
 * client also watches "site/<i%10>/+/set" and "devices/<i>/#". */
static dl_subs_t *fleet(size_t n) {
    dl_subs_t *s = dl_subs_new();
    char f[64];
    size_t added = 0;
    for (size_t i = 0; added < n; i++) {
        snprintf(f, sizeof(f), "devices/%zu/commands", i);
        if (dl_subs_add(s, i, f, strlen(f), 1) != 0)
            exit(1);
        added++;
        if (i % 100 == 0 && added + 2 <= n) {
            snprintf(f, sizeof(f), "site/%zu/+/set", i % 10);
            dl_subs_add(s, i, f, strlen(f), 0);
            snprintf(f, sizeof(f), "devices/%zu/#", i);
            dl_subs_add(s, i, f, strlen(f), 2);
            added += 2;
        }
    }
    return s;
}

static double run(dl_subs_t *s, char **topics, double seconds, size_t *matched, size_t *done) {
    dl_matches_t m = {0};
    size_t k = 0, hits = 0;
    double t0 = now_s(), t;
    do {
        for (size_t j = 0; j < 1000; j++, k++) {
            const char *tp = topics[k % N_TOPICS];
            dl_subs_match(s, tp, strlen(tp), &m);
            hits += m.n;
        }
        t = now_s();
    } while (t - t0 < seconds);
    free(m.v);
    *matched = hits;
    *done = k;
    return (double)k / (t - t0);
}

int main(int argc, char **argv) {
    int smoke = argc > 1 && strcmp(argv[1], "--smoke") == 0;
    double secs = smoke ? 0.001 : 1.0;
    char *topics[N_TOPICS];
    for (size_t i = 0; i < N_TOPICS; i++) {
        topics[i] = malloc(48);
        /* Devices 0..7 exist in both fleets: every topic matches one client. */
        snprintf(topics[i], 48, "devices/%zu/commands", i % 8);
    }
    static const size_t sizes[] = {10, 10000};
    double rate[2];
    for (int c = 0; c < 2; c++) {
        dl_subs_t *s = fleet(sizes[c]);
        size_t hits, done;
        rate[c] = run(s, topics, secs, &hits, &done);
        /* devices/0/commands: client 0 twice (merged); others once. */
        if (hits != done) {
            fprintf(stderr, "%zu subscriptions: %zu deliveries for %zu matches\n", sizes[c], hits,
                    done);
            return 1;
        }
        printf("%6zu subscriptions (%zu trie nodes): %10.0f matches/s  %6.1f ns/match\n",
               dl_subs_count(s), dl_subs_nodes(s), rate[c], 1e9 / rate[c]);
        dl_subs_free(s);
    }
    printf("ratio 10,000 / 10: %.2f (1.00 = independent of non-matching subscriptions)\n",
           rate[1] / rate[0]);

    /* Fan-out: 1,000 clients on one filter. */
    dl_subs_t *s = dl_subs_new();
    for (size_t i = 0; i < 1000; i++)
        dl_subs_add(s, i, "room/+/light", 12, 1);
    for (size_t i = 0; i < N_TOPICS; i++)
        snprintf(topics[i], 48, "room/%zu/light", i % 7);
    size_t hits, done;
    double r = run(s, topics, secs, &hits, &done);
    if (hits != done * 1000) {
        fprintf(stderr, "fan-out: %zu deliveries for %zu matches\n", hits, done);
        return 1;
    }
    printf("fan-out 1,000 clients: %10.0f matches/s  %6.1f ns/delivery\n", r, 1e9 / r / 1000);
    dl_subs_free(s);
    for (size_t i = 0; i < N_TOPICS; i++)
        free(topics[i]);
    return 0;
}
