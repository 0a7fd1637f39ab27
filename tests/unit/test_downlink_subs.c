/* downlink/subs.c: filter semantics (MQTT 3.1.1 4.7), the '$' rule, one
 * delivery per client at the highest QoS, shared subscriptions round robin,
 * add/replace/remove and pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "downlink/subs.h"

static int add(dl_subs_t *s, uint64_t c, const char *f, uint8_t qos) {
    return dl_subs_add(s, c, f, strlen(f), qos);
}

static int rm(dl_subs_t *s, uint64_t c, const char *f) {
    return dl_subs_remove(s, c, f, strlen(f));
}

static int cmp(const void *a, const void *b) {
    const dl_match_t *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    if (x->shared != y->shared)
        return (int)x->shared - (int)y->shared;
    return (int)x->qos - (int)y->qos;
}

static dl_matches_t res;

/* The deliveries for topic as "client:qos[s] ...", sorted by client. */
static const char *match(dl_subs_t *s, const char *topic) {
    static char buf[512];
    assert_int_equal(dl_subs_match(s, topic, strlen(topic), &res), 0);
    qsort(res.v, res.n, sizeof(*res.v), cmp);
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < res.n; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%llu:%u%s", i ? " " : "",
                              (unsigned long long)res.v[i].client, res.v[i].qos,
                              res.v[i].shared ? "s" : "");
    return buf;
}

static void test_filter_semantics(void **state) {
    (void)state;
    static const struct {
        const char *filter, *topic;
        int match;
    } cases[] = {
        {"sport/tennis/player1/#", "sport/tennis/player1", 1},
        {"sport/tennis/player1/#", "sport/tennis/player1/ranking", 1},
        {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", 1},
        {"sport/#", "sport", 1},
        {"#", "sport/tennis", 1},
        {"#", "/", 1},
        {"sport/tennis/+", "sport/tennis/player1", 1},
        {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
        {"sport/+", "sport", 0},
        {"sport/+", "sport/", 1},
        {"+/+", "/finance", 1},
        {"/+", "/finance", 1},
        {"+", "/finance", 0},
        {"+/tennis/#", "sport/tennis", 1},
        {"+/tennis/#", "sport/tennis/x/y", 1},
        {"+/tennis/#", "sport/golf", 0},
        {"a/b", "a/b", 1},
        {"a/b", "a/b/c", 0},
        {"a/b", "a", 0},
        {"A/b", "a/b", 0},
        {"a//b", "a//b", 1},
        {"a/+/b", "a//b", 1},
        /* The '$' rule [MQTT-4.7.2-1]. */
        {"#", "$SYS/broker", 0},
        {"+/broker", "$SYS/broker", 0},
        {"+", "$SYS", 0},
        {"$SYS/#", "$SYS/broker", 1},
        {"$SYS/+", "$SYS/broker", 1},
        {"a/#", "a/$x", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dl_subs_t *s = dl_subs_new();
        assert_int_equal(add(s, 9, cases[i].filter, 1), 0);
        const char *got = match(s, cases[i].topic);
        if (strcmp(got, cases[i].match ? "9:1" : "") != 0)
            fail_msg("%s vs %s: got \"%s\"", cases[i].filter, cases[i].topic, got);
        assert_int_equal(rm(s, 9, cases[i].filter), 0);
        assert_int_equal(dl_subs_count(s), 0);
        assert_int_equal(dl_subs_nodes(s), 0);
        dl_subs_free(s);
    }
}

static void test_overlap_once_at_highest_qos(void **state) {
    (void)state;
    dl_subs_t *s = dl_subs_new();
    assert_int_equal(add(s, 1, "a/+", 0), 0);
    assert_int_equal(add(s, 1, "a/#", 2), 0);
    assert_int_equal(add(s, 1, "a/b", 1), 0);
    assert_int_equal(add(s, 2, "a/b", 0), 0);
    assert_int_equal(add(s, 3, "#", 1), 0);
    assert_int_equal(add(s, 4, "x/y", 2), 0);
    assert_string_equal(match(s, "a/b"), "1:2 2:0 3:1");
    assert_string_equal(match(s, "a/c"), "1:2 3:1");
    assert_string_equal(match(s, "a"), "1:2 3:1");
    assert_string_equal(match(s, "x/y"), "3:1 4:2");
    assert_string_equal(match(s, "q"), "3:1");
    /* The same filter again replaces the granted QoS. */
    assert_int_equal(add(s, 1, "a/#", 0), 1);
    assert_string_equal(match(s, "a/b"), "1:1 2:0 3:1");
    assert_int_equal(dl_subs_count(s), 6);
    assert_int_equal(rm(s, 1, "a/b"), 0);
    assert_int_equal(rm(s, 1, "a/b"), DL_ENOENT);
    assert_int_equal(rm(s, 5, "a/b"), DL_ENOENT);
    assert_int_equal(rm(s, 1, "zz/top"), DL_ENOENT);
    assert_string_equal(match(s, "a/b"), "1:0 2:0 3:1");
    assert_int_equal(dl_subs_remove_client(s, 1), 2);
    assert_int_equal(dl_subs_remove_client(s, 1), 0);
    assert_string_equal(match(s, "a/b"), "2:0 3:1");
    assert_int_equal(dl_subs_remove_client(s, 2), 1);
    assert_int_equal(dl_subs_remove_client(s, 3), 1);
    assert_int_equal(dl_subs_remove_client(s, 4), 1);
    assert_int_equal(dl_subs_count(s), 0);
    assert_int_equal(dl_subs_nodes(s), 0);
    dl_subs_free(s);
}

static void test_shared_round_robin(void **state) {
    (void)state;
    dl_subs_t *s = dl_subs_new();
    assert_int_equal(add(s, 1, "$share/g/t/+", 1), 0);
    assert_int_equal(add(s, 2, "$share/g/t/+", 2), 0);
    assert_int_equal(add(s, 3, "$share/g/t/+", 0), 0);
    assert_int_equal(add(s, 1, "$share/h/t/#", 0), 0); /* another group */
    assert_int_equal(add(s, 1, "t/x", 2), 0);          /* its own, beside the groups */
    assert_string_equal(match(s, "t/x"), "1:2 1:0s 1:1s");
    assert_string_equal(match(s, "t/x"), "1:2 1:0s 2:2s");
    assert_string_equal(match(s, "t/x"), "1:2 1:0s 3:0s");
    assert_string_equal(match(s, "t/y"), "1:0s 1:1s");
    /* Removing the member whose turn is next passes the turn on. */
    assert_int_equal(rm(s, 2, "$share/g/t/+"), 0);
    assert_string_equal(match(s, "t/y"), "1:0s 3:0s");
    assert_string_equal(match(s, "t/y"), "1:0s 1:1s");
    assert_int_equal(rm(s, 2, "$share/g/t/+"), DL_ENOENT);
    assert_int_equal(rm(s, 1, "$share/zz/t/+"), DL_ENOENT);
    assert_int_equal(rm(s, 1, "t/+"), DL_ENOENT); /* not shared: another subscription */
    assert_int_equal(add(s, 3, "$share/g/t/+", 2), 1);
    assert_string_equal(match(s, "t/z"), "1:0s 3:2s");
    assert_int_equal(dl_subs_count(s), 4);
    assert_int_equal(dl_subs_remove_client(s, 1), 3);
    assert_int_equal(dl_subs_remove_client(s, 3), 1);
    assert_int_equal(dl_subs_nodes(s), 0);
    assert_string_equal(match(s, "t/z"), "");
    dl_subs_free(s);
}

static void test_invalid(void **state) {
    (void)state;
    dl_subs_t *s = dl_subs_new();
    const char *bad[] = {"",         "a/#/b",     "a+",          "$share//a",
                         "$share/g", "$share/g/", "$share/g+/a", "$share/#/a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (add(s, 1, bad[i], 1) != DL_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(rm(s, 1, bad[i]), DL_EINVAL);
    }
    assert_int_equal(add(s, 1, "a", 3), DL_EINVAL);
    assert_int_equal(dl_subs_add(s, 1, "a\0b", 3, 1), DL_EINVAL);
    dl_matches_t m = {0};
    assert_int_equal(dl_subs_match(s, "a/+", 3, &m), DL_EINVAL);
    assert_int_equal(dl_subs_match(s, "", 0, &m), DL_EINVAL);
    assert_int_equal(m.n, 0);
    assert_int_equal(dl_subs_count(s), 0);
    assert_int_equal(dl_subs_nodes(s), 0);
    /* Freed with subscriptions still held (ASan checks nothing leaks). */
    assert_int_equal(add(s, 1, "a/b/c", 1), 0);
    assert_int_equal(add(s, 2, "$share/g/a/#", 1), 0);
    assert_int_equal(dl_subs_nodes(s), 4); /* a, a/b, a/b/c, a/# */
    dl_subs_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_semantics),
        cmocka_unit_test(test_overlap_once_at_highest_qos),
        cmocka_unit_test(test_shared_round_robin),
        cmocka_unit_test(test_invalid),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(res.v);
    return rc;
}
