/* Per-address admission: count limit, token bucket, table bound, pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "auth/iplimit.h"
#include "auth/security.h"

static void test_count_limit(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(2, 0, 1, 10);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_TOO_MANY);
    assert_int_equal(iplimit_accept(l, "10.0.0.2", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_count(l, "10.0.0.1"), 2);
    iplimit_release(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    iplimit_release(l, "10.0.0.1", 0);
    iplimit_release(l, "10.0.0.1", 0);
    iplimit_release(l, "10.0.0.2", 0);
    /* No connections and no bucket to remember: forgotten at once. */
    assert_int_equal(iplimit_size(l), 0);
    iplimit_release(l, "10.0.0.9", 0); /* unknown: ignored */
    iplimit_free(l);
}

static void test_token_bucket(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(0, 2, 3, 10); /* 2 per second, burst 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(iplimit_accept(l, "::1", 1000), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "::1", 1000), IPLIMIT_RATE);
    assert_int_equal(iplimit_accept(l, "::1", 1499), IPLIMIT_RATE); /* 0.998 tokens */
    assert_int_equal(iplimit_accept(l, "::1", 1500), IPLIMIT_OK);   /* 1 token after 500 ms */
    assert_int_equal(iplimit_accept(l, "::1", 1500), IPLIMIT_RATE);
    for (int i = 0; i < 4; i++)
        iplimit_release(l, "::1", 1500);
    assert_int_equal(iplimit_size(l), 1); /* bucket not full yet: remembered */
    iplimit_prune(l, 2999);
    assert_int_equal(iplimit_size(l), 1);
    iplimit_prune(l, 3000); /* 1.5 s x 2/s = 3 tokens: full */
    assert_int_equal(iplimit_size(l), 0);
    /* A long pause does not overflow the bucket. */
    assert_int_equal(iplimit_accept(l, "::1", UINT64_MAX / 2), IPLIMIT_OK);
    iplimit_free(l);
}

static void test_table_bound(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(5, 1, 1, 2);
    assert_int_equal(iplimit_accept(l, "a", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "b", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "c", 0), IPLIMIT_TABLE_FULL);
    assert_string_equal(iplimit_strerror(IPLIMIT_TABLE_FULL), "too many source addresses tracked");
    iplimit_release(l, "a", 0); /* its bucket is empty: still remembered */
    assert_int_equal(iplimit_accept(l, "c", 500), IPLIMIT_TABLE_FULL);
    assert_int_equal(iplimit_accept(l, "c", 1000), IPLIMIT_OK); /* "a" refilled and pruned */
    assert_int_equal(iplimit_size(l), 2);
    iplimit_free(l);
}

static void test_disabled(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(0, 0, 1, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(iplimit_accept(l, "x", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_size(l), 0);
    iplimit_free(l);
}

/* A reload changes the limits: live counts carry over, a lowered burst cuts
 * the bucket, and turning the limits off still releases what was counted. */
static void test_set_limits(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(3, 1, 5, 10);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    iplimit_set_limits(l, 2, 1, 1); /* 3 tokens left, cut to 1; 2 live = the new max */
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_TOO_MANY);
    iplimit_release(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    iplimit_release(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_RATE);
    iplimit_set_limits(l, 0, 0, 0);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK); /* not counted */
    assert_int_equal(iplimit_count(l, "10.0.0.1"), 1);
    iplimit_release(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_size(l), 0);
    iplimit_free(l);
}

/* The key the limits are counted under: IPv4 as is, IPv6 by /64. */
static void test_address_keys(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"10.1.2.3:5000", "10.1.2.3"},
        {"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:1883", "2001:db8:1:2::/64"},
        {"[2001:db8:1:2::7]:1", "2001:db8:1:2::/64"},
        {"[2001:db8:1:3::7]:1", "2001:db8:1:3::/64"},
        {"[::ffff:192.0.2.5]:99", "192.0.2.5"},
        {"[::1]:5", "::/64"},
        {"[not-an-address]:1", "not-an-address"},
    };
    char out[IPLIMIT_KEY_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        security_addr_ip(cases[i][0], out, sizeof(out));
        assert_string_equal(out, cases[i][1]);
    }
    security_addr_ip("[2001:db8:1:2::7]:1", out, 8); /* truncated, terminated */
    assert_string_equal(out, "2001:db");
    /* Two addresses of one /64 share the count. */
    iplimit_t *l = iplimit_new(1, 0, 1, 10);
    security_addr_ip("[2001:db8::1]:1", out, sizeof(out));
    assert_int_equal(iplimit_accept(l, out, 0), IPLIMIT_OK);
    security_addr_ip("[2001:db8::2]:1", out, sizeof(out));
    assert_int_equal(iplimit_accept(l, out, 0), IPLIMIT_TOO_MANY);
    iplimit_free(l);
}

/* TLS handshakes in progress per address (max_tls_handshakes_per_ip):
 * counted whatever the connection limits, in the address's entry, which
 * goes once its connections and handshakes are over. */
static void test_handshakes(void **state) {
    (void)state;
    iplimit_t *l = iplimit_new(0, 0, 1, 2); /* connection limits off, 2 addresses */
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.1", 2, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.1", 2, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.1", 2, 0), IPLIMIT_HANDSHAKES);
    assert_string_equal(iplimit_strerror(IPLIMIT_HANDSHAKES),
                        "max_tls_handshakes_per_ip in progress");
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.2", 2, 0), IPLIMIT_OK);
    assert_int_equal(iplimit_handshakes(l, "10.0.0.1"), 2);
    assert_int_equal(iplimit_handshakes(l, "10.0.0.2"), 1);
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.3", 2, 0), IPLIMIT_TABLE_FULL);
    iplimit_handshake_end(l, "10.0.0.1", 0); /* one done: a slot again */
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.1", 2, 0), IPLIMIT_OK);
    for (int i = 0; i < 2; i++)
        iplimit_handshake_end(l, "10.0.0.1", 0);
    iplimit_handshake_end(l, "10.0.0.2", 0);
    iplimit_handshake_end(l, "10.0.0.2", 0); /* not counted: ignored */
    assert_int_equal(iplimit_size(l), 0);
    /* With a connection limit both counts share the entry. */
    iplimit_set_limits(l, 1, 0, 1);
    assert_int_equal(iplimit_accept(l, "10.0.0.1", 0), IPLIMIT_OK);
    assert_int_equal(iplimit_handshake_begin(l, "10.0.0.1", 2, 0), IPLIMIT_OK);
    iplimit_release(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_size(l), 1); /* its handshake still counts */
    assert_int_equal(iplimit_count(l, "10.0.0.1"), 0);
    iplimit_handshake_end(l, "10.0.0.1", 0);
    assert_int_equal(iplimit_size(l), 0);
    iplimit_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_limit), cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_table_bound), cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_set_limits),  cmocka_unit_test(test_address_keys),
        cmocka_unit_test(test_handshakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
