/* The introspection endpoint's JSON pages: exact documents, the limit, the
 * byte bound and the next offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/introspect.h"

static void test_exact_pages(void **state) {
    (void)state;
    ops_list_t *l = ops_list_new(OPS_LIST_CLIENTS, 4, 2);
    assert_non_null(l);
    ops_client_t c = {"dev\"1",       "127.0.0.1:5000", NULL, "3.1.1",
                      "0.0.0.0:1883", 1764990000123,    3,    true};
    assert_true(ops_list_add_client(l, &c));
    c.client_id = "dev2";
    c.username = "alice";
    c.paused = false;
    c.in_flight = 0;
    assert_true(ops_list_add_client(l, &c));
    assert_false(ops_list_add_client(l, &c)); /* the limit */
    size_t len = 0;
    char *doc = ops_list_finish(l, 7, &len);
    const char *want =
        "{\"total\":7,\"offset\":4,\"limit\":2,\"next_offset\":6,\"clients\":["
        "{\"client_id\":\"dev\\\"1\",\"address\":\"127.0.0.1:5000\",\"username\":null,"
        "\"protocol\":\"3.1.1\",\"listener\":\"0.0.0.0:1883\","
        "\"connected_since\":\"2025-12-06T03:00:00.123Z\",\"in_flight\":3,\"paused\":true},"
        "{\"client_id\":\"dev2\",\"address\":\"127.0.0.1:5000\",\"username\":\"alice\","
        "\"protocol\":\"3.1.1\",\"listener\":\"0.0.0.0:1883\","
        "\"connected_since\":\"2025-12-06T03:00:00.123Z\",\"in_flight\":0,\"paused\":false}]}\n";
    assert_string_equal(doc, want);
    assert_int_equal(len, strlen(want));
    free(doc);

    l = ops_list_new(OPS_LIST_SESSIONS, 0, 100);
    ops_session_t s = {"keeper", 1764990000007, 2, 4242};
    assert_true(ops_list_add_session(l, &s));
    doc = ops_list_finish(l, 1, &len);
    assert_string_equal(doc,
                        "{\"total\":1,\"offset\":0,\"limit\":100,\"next_offset\":null,"
                        "\"sessions\":[{\"client_id\":\"keeper\",\"disconnected_since\":"
                        "\"2025-12-06T03:00:00.007Z\",\"in_flight\":2,\"bytes_held\":4242}]}\n");
    free(doc);
}

/* Client ids of 65,535 bytes (the MQTT maximum): two fit in the page's
 * OPS_LIST_MAX_BYTES, the third starts the next page; the document stays
 * under the bound. */
static void test_byte_bound(void **state) {
    (void)state;
    char *id = malloc(65536);
    assert_non_null(id);
    memset(id, 0x01, 65535); /* escaped as \u0001: the worst case */
    id[65535] = '\0';
    ops_list_t *l = ops_list_new(OPS_LIST_SESSIONS, 0, 1000);
    ops_session_t s = {id, 0, 0, 0};
    assert_true(ops_list_add_session(l, &s));
    assert_true(ops_list_add_session(l, &s));
    assert_false(ops_list_add_session(l, &s));
    size_t len = 0;
    char *doc = ops_list_finish(l, 3, &len);
    assert_true(len > 2 * 6 * 65535 && len <= OPS_LIST_MAX_BYTES);
    assert_non_null(strstr(doc, "\"next_offset\":2,"));
    free(doc);
    free(id);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_pages),
        cmocka_unit_test(test_byte_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
