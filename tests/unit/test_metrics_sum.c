/* metrics_add (threads: N): the downlink's per-worker counts (deliveries,
 * refusals, subscriptions, queues, retained copies lost) add up; the
 * consumer's and the retained store's, which one worker keeps, stay dst's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ops/metrics.h"

static void fill(metrics_t *m, uint64_t base) {
    metrics_init(m);
    m->downlink = true;
    for (int i = 0; i < 3; i++) {
        m->downlink_deliveries[i] = base + (uint64_t)i;
        m->subscribe_refused[i] = base + 10 + (uint64_t)i;
    }
    for (int i = 0; i < 2; i++)
        m->downlink_not_delivered[i] = base + 20 + (uint64_t)i;
    for (int i = 0; i < 4; i++)
        m->downlink_dropped[i] = base + 30 + (uint64_t)i;
    m->subscriptions = base + 40;
    m->downlink_queued = base + 41;
    m->retained_copies_lost = base + 42;
    m->downlink_routed = base + 50;
    m->downlink_lag = base + 51;
    m->retained_messages = base + 52;
    m->retained_bytes = base + 53;
}

static void test_downlink_summed(void **state) {
    (void)state;
    metrics_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    fill(a, 100);
    fill(b, 1000);
    metrics_add(a, b);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a->downlink_deliveries[i], 1100 + 2 * (uint64_t)i);
        assert_int_equal(a->subscribe_refused[i], 1120 + 2 * (uint64_t)i);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(a->downlink_not_delivered[i], 1140 + 2 * (uint64_t)i);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a->downlink_dropped[i], 1160 + 2 * (uint64_t)i);
    assert_int_equal(a->subscriptions, 1180);
    assert_int_equal(a->downlink_queued, 1182);
    assert_int_equal(a->retained_copies_lost, 1184);
    /* one consumer, one store: dst's own */
    assert_int_equal(a->downlink_routed, 150);
    assert_int_equal(a->downlink_lag, 151);
    assert_int_equal(a->retained_messages, 152);
    assert_int_equal(a->retained_bytes, 153);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_downlink_summed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
