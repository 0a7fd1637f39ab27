/* The session with the spool. At a full spool (KAFKA_ERR_SPOOL_FULL from
 * the produce op) QoS 0 is dropped, counted and logged and the client is
 * read on; QoS 1 waits unacknowledged with its reader paused, then goes
 * once. QoS 2 ids across a restart: what session_mgr_qos2_each reports and
 * when the version changes; a restored session's ids answer a DUP resend
 * with PUBREC and no record, a DUP 0 reuse is a new message; PUBCOMP waits
 * for the save of the release. */
#include <inttypes.h>

#include "session5_fixture.h"

#include "../../src/mqtt/session_int.h" /* white box: the sessions a walk visits */

static void test_qos0_dropped_and_counted_at_a_full_spool(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.rc_queue[1] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 2;
    pk_t p = publish_pk("t/a", "x", 0, 0, false);
    log_capture_begin();
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    const char *logged = log_capture_end();
    assert_non_null(strstr(logged, "dropped a QoS 0 message on topic 't/a': the spool is full"));
    assert_false(f->paused);
    assert_int_equal(f->pauses, 0);
    assert_int_equal(session_mgr_stats(fx->m)->qos0_dropped_spool_full, 2);
    assert_int_equal(session_mgr_stats(fx->m)->queue_full, 0);
    assert_int_equal(session_mgr_stats(fx->m)->published, 0);
    /* Room again: the next one goes. */
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 1);
    assert_int_equal(session_mgr_stats(fx->m)->published, 1);
    EXPECT_NO_OUT(f);
}

static void test_qos1_waits_unacked_at_a_full_spool(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    fx->prod.rc_queue[0] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 1;
    pk_t p = publish_pk("t/a", "x", 1, 7, false);
    assert_int_equal(feed(f, p), 0); /* not taken: retried */
    assert_true(f->paused);
    EXPECT_NO_OUT(f);
    assert_int_equal(session_mgr_stats(fx->m)->qos0_dropped_spool_full, 0);
    session_mgr_tick(fx->m); /* the periodic retry */
    assert_false(f->paused);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    assert_int_equal(fx->prod.n, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 7);
}

static const char *qos2_ids(fx_t *fx);

/* MQTT 5 has a negative ack for it: PUBACK/PUBREC 0x97 with a reason
 * string (none when the client asked for no problem information), the
 * client read on, nothing produced; the ids are free again. */
static void test_v5_gets_0x97_at_a_full_spool(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected5(fx, 0, (cn5_t){.id = "v5", .clean = false});
    for (int i = 0; i < 3; i++)
        fx->prod.rc_queue[i] = KAFKA_ERR_SPOOL_FULL;
    fx->prod.n_rc = 3;
    pk_t p1 = publish5("t/a", 1, 7, NULL, 0, "x");
    log_capture_begin();
    assert_int_equal(feed(f, p1), (ssize_t)p1.n);
    const char *logged = log_capture_end();
    assert_logged(logged, "refused a QoS 1 message on topic 't/a': the spool is full (0x97)");
    expect_reason(f, 0x40, 7, 0x97, "the spool is full (spool.max_bytes or the disk)");
    pk_t p2 = publish5("t/a", 2, 8, NULL, 0, "y");
    assert_int_equal(feed(f, p2), (ssize_t)p2.n);
    expect_reason(f, 0x50, 8, 0x97, "the spool is full (spool.max_bytes or the disk)");
    assert_false(f->paused);
    assert_int_equal(f->pauses, 0);
    assert_int_equal(fx->prod.n, 0);
    assert_string_equal(qos2_ids(fx), ""); /* refused: no PUBREL follows */
    fconn_t *g = connected5(fx, 1, (cn5_t){.id = "quiet", .clean = true, PROPS("\x17\x00")});
    pk_t p3 = publish5("t/a", 1, 9, NULL, 0, "z");
    assert_int_equal(feed(g, p3), (ssize_t)p3.n);
    expect_reason(g, 0x40, 9, 0x97, NULL);
    /* Room again: the same message goes, acked after its report. */
    assert_int_equal(feed(f, p1), (ssize_t)p1.n);
    assert_int_equal(fx->prod.n, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 7);
}

typedef struct {
    char out[256];
    size_t len;
} ids_t;

static void collect(void *ctx, const char *cid, size_t len, const session_qos2_id_t *ids,
                    size_t n) {
    ids_t *x = ctx;
    x->len += (size_t)snprintf(x->out + x->len, sizeof(x->out) - x->len, "%.*s:", (int)len, cid);
    for (size_t i = 0; i < n; i++)
        x->len += (size_t)snprintf(x->out + x->len, sizeof(x->out) - x->len, " %u", ids[i].id);
    x->len += (size_t)snprintf(x->out + x->len, sizeof(x->out) - x->len, "\n");
}

static void collect_hash(void *ctx, const char *cid, size_t len, const session_qos2_id_t *ids,
                         size_t n) {
    ids_t *x = ctx;
    (void)cid;
    (void)len;
    for (size_t i = 0; i < n; i++)
        x->len += (size_t)snprintf(x->out + x->len, sizeof(x->out) - x->len, "%s%u=%016" PRIx64,
                                   i ? " " : "", ids[i].id, ids[i].hash);
    x->len += (size_t)snprintf(x->out + x->len, sizeof(x->out) - x->len, "\n");
}

static const char *qos2_ids(fx_t *fx) {
    static ids_t x;
    x = (ids_t){0};
    assert_int_equal(session_mgr_qos2_each(fx->m, collect, &x), 0);
    return x.out;
}

static void test_qos2_ids_reported_while_awaiting_pubrel(void **state) {
    fx_t *fx = *state;
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    fconn_t *g = connected(fx, 1, (cn_t){.id = "dev2", .clean = true});
    uint64_t v0 = session_mgr_qos2_version(fx->m);
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    uint64_t v1 = session_mgr_qos2_version(fx->m);
    assert_true(v1 != v0);
    /* In flight and not durable yet: not saved (after a crash its resend
     * must go to Kafka, not be taken for a duplicate). */
    assert_string_equal(qos2_ids(fx), "");
    session_mgr_qos2_durable(fx->m, fx->prod.recs[0].opaque);
    assert_true(session_mgr_qos2_version(fx->m) != v1);
    v1 = session_mgr_qos2_version(fx->m);
    assert_string_equal(qos2_ids(fx), "dev1: 7\n"); /* durable: PUBREC comes after the save */
    session_mgr_qos2_durable(fx->m, fx->prod.recs[0].opaque); /* once is enough */
    assert_int_equal(session_mgr_qos2_version(fx->m), v1);
    feed(g, publish_pk("t/a", "y", 2, 9, false)); /* a clean session: not kept */
    session_mgr_qos2_durable(fx->m, fx->prod.recs[1].opaque);
    assert_int_equal(session_mgr_qos2_version(fx->m), v1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7);
    assert_int_equal(session_mgr_qos2_version(fx->m), v1); /* the same id, now awaiting PUBREL */
    assert_string_equal(qos2_ids(fx), "dev1: 7\n");
    feed(f, publish_pk("t/a", "z", 2, 8, false));
    assert_string_equal(qos2_ids(fx), "dev1: 7\n");
    deliver(fx, 2, 0); /* a delivery report: durable too */
    EXPECT_OUT(f, 0x50, 2, 0, 8);
    assert_string_equal(qos2_ids(fx), "dev1: 7 8\n");
    uint64_t v2 = session_mgr_qos2_version(fx->m);
    feed(f, id_pk(0x62, 8));
    EXPECT_OUT(f, 0x70, 2, 0, 8);
    assert_true(session_mgr_qos2_version(fx->m) != v2);
    assert_string_equal(qos2_ids(fx), "dev1: 7\n");
    /* Detached, the session keeps them; a clean session replacing it drops them. */
    session_conn_lost(f->c, "gone");
    assert_string_equal(qos2_ids(fx), "dev1: 7\n");
    uint64_t v3 = session_mgr_qos2_version(fx->m);
    connected(fx, 0, (cn_t){.id = "dev1", .clean = true});
    assert_true(session_mgr_qos2_version(fx->m) != v3);
    assert_string_equal(qos2_ids(fx), "");
}

static void test_restored_ids_answer_a_dup_resend(void **state) {
    fx_t *fx = *state;
    static const session_qos2_id_t ids[] = {{0, 7}, {0, 9}};
    assert_int_equal(session_mgr_qos2_restore(fx->m, "dev1", 4, ids, 2), 0);
    assert_int_equal(session_mgr_qos2_restore(fx->m, "dev1", 4, ids, 2), -1); /* taken */
    assert_int_equal(session_mgr_stats(fx->m)->persistent_sessions, 1);
    assert_string_equal(qos2_ids(fx), "dev1: 7 9\n");
    fconn_t *f = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "dev1", .clean = false});
    assert_int_equal(feed(f, c), (ssize_t)c.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00); /* session present */
    pk_t dup = publish_pk("t/a", "x", 2, 7, false);
    dup.b[0] |= 0x08;
    assert_int_equal(feed(f, dup), (ssize_t)dup.n);
    EXPECT_OUT(f, 0x50, 2, 0, 7); /* PUBREC, no record */
    assert_int_equal(fx->prod.n, 0);
    assert_int_equal(session_mgr_stats(fx->m)->qos2_duplicates, 1);
    feed(f, id_pk(0x62, 7));
    EXPECT_OUT(f, 0x70, 2, 0, 7);
    /* DUP 0 with a restored id: released before the restart, reused. */
    feed(f, publish_pk("t/a", "new", 2, 9, false));
    assert_int_equal(fx->prod.n, 1);
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 9);
    assert_string_equal(qos2_ids(fx), "dev1: 9\n");
}

static const uint8_t KEY[16] = "0123456789abcdef";

static void test_qos2_hash_keys_topic_and_payload(void **state) {
    fx_t *fx = *state;
    session_mgr_qos2_set_key(fx->m, KEY);
    uint64_t h = session_mgr_qos2_hash(fx->m, "ab", 2, "c", 1);
    assert_true(h != 0);
    assert_true(h == session_mgr_qos2_hash(fx->m, "ab", 2, "c", 1));
    assert_true(h != session_mgr_qos2_hash(fx->m, "a", 1, "bc", 2)); /* another split */
    assert_true(h != session_mgr_qos2_hash(fx->m, "ab", 2, "d", 1));
    assert_true(h != session_mgr_qos2_hash(fx->m, "ac", 2, "c", 1));
    static const uint8_t other[16] = "fedcba9876543210";
    session_mgr_qos2_set_key(fx->m, other);
    assert_true(h != session_mgr_qos2_hash(fx->m, "ab", 2, "c", 1));
}

static void test_qos2_ids_reported_with_their_hash(void **state) {
    fx_t *fx = *state;
    session_mgr_qos2_set_key(fx->m, KEY);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7);
    feed(f, publish_pk("t/b", "y", 2, 8, false));
    session_mgr_qos2_durable(fx->m, fx->prod.recs[1].opaque); /* in flight, durable */
    ids_t x = {0};
    assert_int_equal(session_mgr_qos2_each(fx->m, collect_hash, &x), 0);
    char want[128];
    snprintf(want, sizeof(want), "7=%016" PRIx64 " 8=%016" PRIx64 "\n",
             session_mgr_qos2_hash(fx->m, "t/a", 3, "x", 1),
             session_mgr_qos2_hash(fx->m, "t/b", 3, "y", 1));
    assert_string_equal(x.out, want);
}

/* The window the hash closes: id 7 released (PUBCOMP) before the restart but
 * still in the state file, reused for a new message the crash cut off, which
 * the client resends with DUP 1. */
static void test_restored_id_with_dup_1_and_another_message_is_new(void **state) {
    fx_t *fx = *state;
    session_mgr_qos2_set_key(fx->m, KEY);
    const session_qos2_id_t ids[] = {{session_mgr_qos2_hash(fx->m, "t/a", 3, "old", 3), 7},
                                     {session_mgr_qos2_hash(fx->m, "t/a", 3, "x", 1), 9}};
    assert_int_equal(session_mgr_qos2_restore(fx->m, "dev1", 4, ids, 2), 0);
    fconn_t *f = open_conn(fx, 0);
    pk_t c = connect_pk((cn_t){.id = "dev1", .clean = false});
    assert_int_equal(feed(f, c), (ssize_t)c.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x01, 0x00);
    pk_t same = publish_pk("t/a", "x", 2, 9, false); /* what id 9 acknowledged */
    same.b[0] |= 0x08;
    assert_int_equal(feed(f, same), (ssize_t)same.n);
    EXPECT_OUT(f, 0x50, 2, 0, 9); /* PUBREC, no record */
    assert_int_equal(fx->prod.n, 0);
    pk_t other_topic = publish_pk("t/b", "old", 2, 7, false);
    other_topic.b[0] |= 0x08;
    assert_int_equal(feed(f, other_topic), (ssize_t)other_topic.n);
    assert_int_equal(fx->prod.n, 1); /* produced: a new message */
    EXPECT_NO_OUT(f);                /* PUBREC after its delivery report */
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7);
    assert_int_equal(session_mgr_stats(fx->m)->qos2_duplicates, 1);
    char want[128];
    ids_t x = {0};
    assert_int_equal(session_mgr_qos2_each(fx->m, collect_hash, &x), 0);
    snprintf(want, sizeof(want), "9=%016" PRIx64 " 7=%016" PRIx64 "\n", ids[1].hash,
             session_mgr_qos2_hash(fx->m, "t/b", 3, "old", 3));
    assert_string_equal(x.out, want); /* id 7 now stands for the new message */
}

/* With the ids kept (a key set), PUBCOMP waits until a state without the
 * released id is on disk: after PUBCOMP the client may reuse the id, and a
 * file still holding it would take the new message's resend after a crash
 * for the old one. */
static void test_pubcomp_waits_for_the_save_of_the_release(void **state) {
    fx_t *fx = *state;
    session_mgr_qos2_set_key(fx->m, KEY);
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m));
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    fconn_t *g = connected(fx, 1, (cn_t){.id = "dev2", .clean = true});
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    assert_true(session_mgr_qos2_durable(fx->m, fx->prod.recs[0].opaque));
    feed(g, publish_pk("t/a", "y", 2, 9, false));
    assert_false(session_mgr_qos2_durable(fx->m, fx->prod.recs[1].opaque)); /* clean */
    feed(f, publish_pk("t/a", "q1", 1, 3, false));
    assert_false(session_mgr_qos2_durable(fx->m, fx->prod.recs[2].opaque)); /* QoS 1 */
    deliver(fx, 0, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7);
    deliver(fx, 1, 0);
    EXPECT_OUT(g, 0x50, 2, 0, 9);
    deliver(fx, 2, 0);
    EXPECT_OUT(f, 0x40, 2, 0, 3);
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m)); /* id 7 on disk */
    feed(f, id_pk(0x62, 7));
    EXPECT_NO_OUT(f);
    assert_int_equal(session_mgr_qos2_pubcomps_waiting(fx->m), 1);
    uint64_t v = session_mgr_qos2_version(fx->m);
    feed(g, id_pk(0x62, 9)); /* a clean session's ids are not kept: at once */
    EXPECT_OUT(g, 0x70, 2, 0, 9);
    session_mgr_qos2_saved(fx->m, v - 1); /* an older save still holds id 7 */
    EXPECT_NO_OUT(f);
    session_mgr_qos2_saved(fx->m, v);
    EXPECT_OUT(f, 0x70, 2, 0, 7);
    assert_int_equal(session_mgr_qos2_pubcomps_waiting(fx->m), 0);
    feed(f, id_pk(0x62, 7)); /* again, nothing unsaved: at once */
    EXPECT_OUT(f, 0x70, 2, 0, 7);
    /* Unsaved changes: a PUBREL of an unknown id waits as well (it may be a
     * PUBREL again whose release is not on disk yet). */
    feed(f, publish_pk("t/a", "z", 2, 8, false));
    feed(f, id_pk(0x62, 5));
    EXPECT_NO_OUT(f);
    /* The connection is gone before the save: its PUBCOMP is not sent to
     * the next one (the client sends PUBREL again there). */
    session_conn_lost(f->c, "gone");
    fconn_t *h = open_conn(fx, 2);
    pk_t c = connect_pk((cn_t){.id = "dev1", .clean = false});
    assert_int_equal(feed(h, c), (ssize_t)c.n);
    EXPECT_OUT(h, 0x20, 0x02, 0x01, 0x00); /* session present */
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m));
    EXPECT_NO_OUT(h);
    assert_int_equal(session_mgr_qos2_pubcomps_waiting(fx->m), 0);
}

/* With a key, a walk visits only the sessions that hold QoS 2 ids or
 * changed since the last walk, not every session; the first walk after
 * the key is set visits all of them and lists those with ids. */
static void test_keyed_walk_visits_only_listed_sessions(void **state) {
    fx_t *fx = *state;
    static const session_qos2_id_t ids[] = {{0, 4}};
    assert_int_equal(session_mgr_qos2_restore(fx->m, "old", 3, ids, 1), 0);
    session_mgr_qos2_set_key(fx->m, KEY);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    fconn_t *g = connected(fx, 1, (cn_t){.id = "dev2", .clean = false});
    assert_string_equal(qos2_ids(fx), "old: 4\n"); /* the full walk */
    assert_int_equal(fx->m->qos2_n, 1);
    feed(g, publish_pk("t/a", "q1", 1, 3, false)); /* QoS 1: not listed */
    feed(f, publish_pk("t/a", "x", 2, 7, false));
    session_mgr_qos2_durable(fx->m, fx->prod.recs[1].opaque);
    assert_string_equal(qos2_ids(fx), "old: 4\ndev1: 7\n");
    assert_int_equal(fx->m->qos2_n, 2);
    deliver(fx, 1, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7);
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m));
    feed(f, id_pk(0x62, 7));
    assert_string_equal(qos2_ids(fx), "old: 4\n"); /* released: dropped from the list */
    assert_int_equal(fx->m->qos2_n, 1);
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m));
    EXPECT_OUT(f, 0x70, 2, 0, 7);
    feed(f, publish_pk("t/a", "y", 2, 8, false)); /* listed again */
    session_mgr_qos2_durable(fx->m, fx->prod.recs[2].opaque);
    assert_string_equal(qos2_ids(fx), "old: 4\ndev1: 8\n");
    /* A clean session replaces "old": gone from the list at the next walk. */
    connected(fx, 2, (cn_t){.id = "old", .clean = true});
    assert_string_equal(qos2_ids(fx), "dev1: 8\n");
    assert_int_equal(fx->m->qos2_n, 1);
}

/* The PUBCOMPs waiting for a save are bounded: past SESSION_QOS2_PUBCOMP_MAX
 * the connection is closed (its client sends PUBREL again), counted. */
static void test_pubcomps_waiting_are_bounded(void **state) {
    fx_t *fx = *state;
    session_mgr_qos2_set_key(fx->m, KEY);
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    feed(f, publish_pk("t/a", "x", 2, 7, false)); /* unsaved from here on */
    for (uint32_t i = 0; i < SESSION_QOS2_PUBCOMP_MAX; i++)
        feed(f, id_pk(0x62, (uint16_t)(i % 65535 + 1)));
    assert_int_equal(session_mgr_qos2_pubcomps_waiting(fx->m), SESSION_QOS2_PUBCOMP_MAX);
    assert_int_equal(f->closes, 0);
    log_capture_begin();
    feed(f, id_pk(0x62, 9));
    const char *logged = log_capture_end();
    assert_int_equal(f->closes, 1);
    assert_int_equal(session_mgr_stats(fx->m)->qos2_pubcomp_wait_full, 1);
    assert_non_null(strstr(logged, "65536 PUBCOMPs wait for the QoS 2 state to be saved; the "
                                   "client sends PUBREL again"));
    session_mgr_qos2_saved(fx->m, session_mgr_qos2_version(fx->m));
    assert_int_equal(session_mgr_qos2_pubcomps_waiting(fx->m), 0);
    EXPECT_NO_OUT(f); /* that connection is gone */
}

static void test_restored_session_expires(void **state) {
    fx_t *fx = *state;
    static const session_qos2_id_t ids[] = {{0, 1}};
    assert_int_equal(session_mgr_qos2_restore(fx->m, "old", 3, ids, 1), 0);
    set_time(fx, fx->now + 60 * 1000);
    session_mgr_tick(fx->m);
    assert_int_equal(session_mgr_stats(fx->m)->sessions_expired, 1);
    assert_string_equal(qos2_ids(fx), "");
}

/* A QoS 2 RETAIN 1 message (with `retained:`) is durable, and its id saved,
 * once both its record and its retained copy are, in either order: an id
 * saved with only the record durable would answer the resend after a crash
 * as a duplicate, and the copy would be lost. */
static void test_retained_qos2_durable_with_both_records(void **state) {
    fx_t *fx = *state;
    fx->cfg.retained = (config_retained_t){.enabled = true, .topic = "ret"};
    fconn_t *f = connected(fx, 0, (cn_t){.id = "dev1", .clean = false});
    feed(f, publish_pk("t/a", "x", 2, 7, true));
    feed(f, publish_pk("t/b", "y", 2, 8, true));
    assert_int_equal(fx->prod.n, 4);
    session_mgr_qos2_durable(fx->m, fx->prod.recs[0].opaque); /* 7's record */
    session_mgr_qos2_durable(fx->m, fx->prod.recs[0].opaque);
    session_mgr_qos2_durable(fx->m, fx->prod.recs[3].opaque); /* 8's copy */
    assert_string_equal(qos2_ids(fx), "");
    uint64_t v = session_mgr_qos2_version(fx->m);
    session_mgr_qos2_durable(fx->m, fx->prod.recs[1].opaque); /* 7's copy */
    assert_true(session_mgr_qos2_version(fx->m) != v);
    assert_string_equal(qos2_ids(fx), "dev1: 7\n");
    session_mgr_qos2_durable(fx->m, fx->prod.recs[2].opaque); /* 8's record */
    assert_string_equal(qos2_ids(fx), "dev1: 7 8\n");
    for (int i = 0; i < 4; i++)
        deliver(fx, i, 0);
    EXPECT_OUT(f, 0x50, 2, 0, 7, 0x50, 2, 0, 8);
    assert_string_equal(qos2_ids(fx), "dev1: 7 8\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qos0_dropped_and_counted_at_a_full_spool, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qos1_waits_unacked_at_a_full_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_ids_reported_while_awaiting_pubrel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restored_ids_answer_a_dup_resend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restored_session_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_hash_keys_topic_and_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v5_gets_0x97_at_a_full_spool, setup5, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_ids_reported_with_their_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restored_id_with_dup_1_and_another_message_is_new,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_qos2_durable_with_both_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pubcomp_waits_for_the_save_of_the_release, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keyed_walk_visits_only_listed_sessions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pubcomps_waiting_are_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
