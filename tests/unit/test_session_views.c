/* The session manager's read-only views (introspection endpoint): which
 * connections and detached sessions are listed, in which order, with which
 * counts, and the offset and early stop. */
#include "session_fixture.h"

typedef struct {
    char out[1024];
    size_t len;
    int stop_after; /* each returns false from this call on (0: never) */
    int calls;
    int (*conn_of)(const void *ud); /* the fixture connection's index */
} seen_t;

static fx_t *the_fx;
static int conn_index(const void *ud) {
    return (int)((const fconn_t *)ud - the_fx->conns);
}

static bool each_client(void *ctx, const session_client_info_t *i) {
    seen_t *s = ctx;
    s->calls++;
    if (s->stop_after && s->calls >= s->stop_after)
        return false;
    s->len += (size_t)snprintf(s->out + s->len, sizeof(s->out) - s->len,
                               "%s %s user=%s level=%d inflight=%u paused=%d conn=%d\n",
                               i->client_id, i->remote, i->username ? i->username : "-",
                               i->protocol_level, i->inflight, i->paused, s->conn_of(i->ud));
    return true;
}

static bool each_detached(void *ctx, const session_detached_info_t *i) {
    seen_t *s = ctx;
    s->calls++;
    s->len += (size_t)snprintf(s->out + s->len, sizeof(s->out) - s->len,
                               "%s at=%llu inflight=%u held=%u\n", i->client_id,
                               (unsigned long long)i->detached_ms, i->inflight, i->bytes_held);
    return true;
}

static void test_views(void **state) {
    fx_t *fx = *state;
    the_fx = fx;
    fconn_t *a = connected(fx, 0, (cn_t){.id = "a", .clean = true, .user = "u"});
    fconn_t *b = connected(fx, 1, (cn_t){.id = "b", .clean = false});
    open_conn(fx, 2); /* no CONNECT yet: not a client */
    /* a fills its in-flight window (max_inflight 4): paused. */
    for (uint16_t id = 1; id <= 4; id++)
        assert_true(feed(a, publish_pk("t/x", "v", 1, id, false)) > 0);
    assert_true(feed(b, publish_pk("t/y", "v", 1, 9, false)) > 0);
    seen_t s = {.conn_of = conn_index};
    assert_int_equal(session_mgr_list_clients(fx->m, 0, each_client, &s), 2);
    assert_string_equal(s.out, "a 127.0.0.1:5000 user=u level=4 inflight=4 paused=1 conn=0\n"
                               "b 127.0.0.1:5000 user=- level=4 inflight=1 paused=0 conn=1\n");
    /* From an offset; an early stop still counts them all. */
    s = (seen_t){.conn_of = conn_index};
    assert_int_equal(session_mgr_list_clients(fx->m, 1, each_client, &s), 2);
    assert_string_equal(s.out, "b 127.0.0.1:5000 user=- level=4 inflight=1 paused=0 conn=1\n");
    s = (seen_t){.stop_after = 1, .conn_of = conn_index};
    assert_int_equal(session_mgr_list_clients(fx->m, 0, each_client, &s), 2);
    assert_int_equal(s.calls, 1);

    /* b leaves its session (one message in flight) behind. */
    s = (seen_t){0};
    assert_int_equal(session_mgr_list_detached(fx->m, 0, each_detached, &s), 0);
    set_time(fx, 5000);
    session_conn_lost(b->c, "gone");
    s = (seen_t){.conn_of = conn_index};
    assert_int_equal(session_mgr_list_clients(fx->m, 0, each_client, &s), 1);
    s = (seen_t){0};
    assert_int_equal(session_mgr_list_detached(fx->m, 0, each_detached, &s), 1);
    char want[128];
    snprintf(want, sizeof(want), "b at=5000 inflight=1 held=%llu\n",
             (unsigned long long)session_mgr_stats(fx->m)->persistent_session_bytes);
    assert_string_equal(s.out, want);
    s = (seen_t){0};
    assert_int_equal(session_mgr_list_detached(fx->m, 1, each_detached, &s), 1);
    assert_int_equal(s.calls, 0);
}

/* What the connection's owner reads back (the daemon keeps its password-check
 * state in session_conn_data instead of an allocation per connection). */
static void test_owner_views(void **state) {
    fx_t *fx = *state;
    fconn_t *f = open_conn(fx, 0);
    assert_ptr_equal(session_conn_ud(f->c), f);
    assert_null(session_conn_data(f->c));
    int mark;
    session_conn_set_data(f->c, &mark);
    assert_ptr_equal(session_conn_data(f->c), &mark);
    assert_false(session_conn_has_identity(f->c));
    assert_int_equal(session_conn_set_identity(f->c, "device-1"), 0);
    assert_true(session_conn_has_identity(f->c));
    session_conn_set_data(f->c, NULL);
    assert_null(session_conn_data(f->c));
    /* The identity, kept in the user name's place, overrides the CONNECT's. */
    pk_t p = connect_pk((cn_t){.id = "a", .clean = true, .user = "u"});
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
    the_fx = fx;
    seen_t s = {.conn_of = conn_index};
    assert_int_equal(session_mgr_list_clients(fx->m, 0, each_client, &s), 1);
    assert_string_equal(s.out,
                        "a 127.0.0.1:5000 user=device-1 level=4 inflight=0 paused=0 conn=0\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_views, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
