/* downlink/retained.c and queue.c: the retained store (set, replace, delete
 * by empty payload, filter match with the '$' rule, bounds counted, message
 * expiry at match time) and the
 * session queue (order, the overflow rules, counts, shared messages); what
 * threads: N needs of both: a message's references taken and dropped from
 * several threads, the store written and matched from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "downlink/queue.h"
#include "downlink/retained.h"

typedef struct {
    char buf[1024];
    size_t o;
} acc_t;

static void collect(void *ud, const char *topic, size_t topic_len, const void *payload, size_t len,
                    uint8_t qos) {
    acc_t *a = ud;
    assert_int_equal(strlen(topic), topic_len);
    a->o += (size_t)snprintf(a->buf + a->o, sizeof(a->buf) - a->o, "%s=%.*s@%u;", topic, (int)len,
                             (const char *)payload, qos);
}

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The matches of filter as "topic=payload@qos;" sorted. */
static const char *rmatch(dl_retained_t *r, const char *filter) {
    static char out[1024];
    acc_t a = {.o = 0};
    a.buf[0] = '\0';
    int n = dl_retained_match(r, filter, strlen(filter), collect, &a);
    assert_true(n >= 0);
    char *parts[64];
    int k = 0;
    for (char *p = strtok(a.buf, ";"); p; p = strtok(NULL, ";"))
        parts[k++] = p;
    assert_int_equal(k, n);
    qsort(parts, (size_t)k, sizeof(*parts), cmpstr);
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < k; i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s;", parts[i]);
    return out;
}

static int set(dl_retained_t *r, const char *t, const char *p, uint8_t qos) {
    return dl_retained_set(r, t, strlen(t), p, strlen(p), qos);
}

static void test_retained(void **state) {
    (void)state;
    dl_retained_t *r = dl_retained_new(100, 10000);
    assert_int_equal(set(r, "home/kitchen/temp", "21", 1), 0);
    assert_int_equal(set(r, "home/kitchen", "k", 0), 0);
    assert_int_equal(set(r, "home/hall/temp", "19", 2), 0);
    assert_int_equal(set(r, "$SYS/uptime", "5", 0), 0);
    assert_int_equal(set(r, "other", "o", 1), 0);
    assert_string_equal(rmatch(r, "home/+/temp"), "home/hall/temp=19@2;home/kitchen/temp=21@1;");
    assert_string_equal(rmatch(r, "home/#"),
                        "home/hall/temp=19@2;home/kitchen/temp=21@1;home/kitchen=k@0;");
    assert_string_equal(rmatch(r, "home/kitchen/#"), "home/kitchen/temp=21@1;home/kitchen=k@0;");
    assert_string_equal(rmatch(r, "#"), "home/hall/temp=19@2;home/kitchen/temp=21@1;"
                                        "home/kitchen=k@0;other=o@1;");
    assert_string_equal(rmatch(r, "+"), "other=o@1;");
    assert_string_equal(rmatch(r, "$SYS/#"), "$SYS/uptime=5@0;");
    assert_string_equal(rmatch(r, "+/uptime"), "");
    assert_string_equal(rmatch(r, "home"), "");
    assert_string_equal(rmatch(r, "home/kitchen"), "home/kitchen=k@0;");
    assert_int_equal(dl_retained_match(r, "a/#/b", 5, collect, NULL), DL_EINVAL);

    const dl_retained_stats_t *st = dl_retained_stats(r);
    assert_int_equal(st->messages, 5);
    assert_int_equal(st->bytes, 17 + 2 + 12 + 1 + 14 + 2 + 11 + 1 + 5 + 1);
    /* Replace, then delete by an empty payload; a delete of nothing is 0. */
    assert_int_equal(set(r, "home/kitchen/temp", "22.5", 0), 0);
    assert_string_equal(rmatch(r, "home/kitchen/temp"), "home/kitchen/temp=22.5@0;");
    assert_int_equal(set(r, "home/kitchen", "", 0), 0);
    assert_int_equal(set(r, "home/kitchen", "", 0), 0);
    assert_int_equal(set(r, "nothing/here", "", 0), 0);
    assert_string_equal(rmatch(r, "home/kitchen/#"), "home/kitchen/temp=22.5@0;");
    assert_int_equal(st->messages, 4);
    assert_int_equal(st->bytes, 17 + 4 + 14 + 2 + 11 + 1 + 5 + 1);
    assert_int_equal(st->set, 6);
    assert_int_equal(st->deleted, 1);
    assert_int_equal(set(r, "a/+", "x", 0), DL_EINVAL);
    assert_int_equal(dl_retained_set(r, "a\0", 2, "x", 1, 0), DL_EINVAL);
    assert_int_equal(dl_retained_set(r, "\xff", 1, "x", 1, 0), DL_EINVAL);
    assert_int_equal(st->refused_invalid, 3);
    dl_retained_free(r);
}

static void test_retained_bounds(void **state) {
    (void)state;
    dl_retained_t *r = dl_retained_new(2, 20);
    assert_int_equal(set(r, "a", "123456789", 0), 0); /* 10 bytes */
    assert_int_equal(set(r, "b", "12345", 0), 0);     /* 16 */
    assert_int_equal(set(r, "c", "1", 0), DL_EFULL);  /* a third message */
    assert_int_equal(set(r, "b", "12345678", 0), 0);  /* replaced: 19 */
    assert_int_equal(set(r, "b", "123456789", 0), 0); /* 20: the bound is inclusive */
    assert_int_equal(set(r, "b", "1234567890", 0), DL_EFULL);
    assert_string_equal(rmatch(r, "#"), "a=123456789@0;b=123456789@0;"); /* the old one kept */
    const dl_retained_stats_t *st = dl_retained_stats(r);
    assert_int_equal(st->refused_full, 2);
    assert_int_equal(st->messages, 2);
    assert_int_equal(st->bytes, 20);
    assert_int_equal(set(r, "a", "", 0), 0);
    assert_int_equal(set(r, "c", "1", 0), 0);
    dl_retained_set_limits(r, 1, 100);
    assert_int_equal(set(r, "d", "1", 0), DL_EFULL);
    assert_int_equal(set(r, "c", "2", 0), 0); /* a replacement adds no message */
    dl_retained_set_limits(r, 10, 12);
    assert_int_equal(set(r, "b", "1234567890", 0), DL_EFULL); /* grows past 12 bytes */
    assert_int_equal(set(r, "b", "12", 0), 0);                /* shrinks */
    assert_int_equal(st->bytes, 5);
    dl_retained_free(r);
}

static void test_queue_overflow(void **state) {
    (void)state;
    dl_queue_stats_t st = {0};
    dl_queue_t q;
    dl_queue_init(&q, &st);
    dl_msg_t *m[6];
    for (int i = 0; i < 6; i++) {
        char t[8];
        snprintf(t, sizeof(t), "t/%d", i);
        m[i] = dl_msg_new(t, strlen(t), "p", 1, 1, false);
        assert_non_null(m[i]);
    }
    /* max 3: QoS 1, 0, 0 */
    assert_int_equal(dl_queue_push(&q, m[0], 1, 3), 0);
    assert_int_equal(dl_queue_push(&q, m[1], 0, 3), 0);
    assert_int_equal(dl_queue_push(&q, m[2], 0, 3), 0);
    /* Full: the oldest QoS 0 (t/1) goes, for a QoS 2 and then a QoS 0. */
    assert_int_equal(dl_queue_push(&q, m[3], 2, 3), 1);
    assert_int_equal(dl_queue_push(&q, m[4], 0, 3), 1); /* drops t/2 */
    /* Full of QoS 1/2 but t/4: it goes for t/5; then nothing is QoS 0. */
    assert_int_equal(dl_queue_push(&q, m[5], 1, 3), 1);
    assert_int_equal(dl_queue_push(&q, m[1], 0, 3), DL_EFULL);
    assert_int_equal(dl_queue_push(&q, m[1], 2, 3), DL_EFULL);
    assert_int_equal(st.queued, 6);
    assert_int_equal(st.dropped_oldest_0, 3);
    assert_int_equal(st.refused_full, 2);
    assert_int_equal(st.depth, 3);
    assert_int_equal(dl_queue_len(&q), 3);
    const char *want[] = {"t/0", "t/3", "t/5"};
    const uint8_t wqos[] = {1, 2, 1};
    for (int i = 0; i < 3; i++) {
        dl_qentry_t *e = dl_queue_pop(&q);
        assert_non_null(e);
        assert_string_equal(e->msg->topic, want[i]);
        assert_int_equal(e->qos, wqos[i]);
        dl_qentry_free(e);
    }
    assert_null(dl_queue_pop(&q));
    assert_int_equal(st.depth, 0);
    /* A bound of 0 takes nothing. */
    assert_int_equal(dl_queue_push(&q, m[0], 0, 0), DL_EFULL);

    /* One message in two queues: freed with the last reference. */
    dl_queue_t q2;
    dl_queue_init(&q2, &st);
    assert_int_equal(dl_queue_push(&q, m[0], 1, 10), 0);
    assert_int_equal(dl_queue_push(&q2, m[0], 0, 10), 0);
    assert_int_equal(m[0]->refs, 3);
    assert_int_equal(st.depth, 2);
    dl_queue_clear(&q);
    dl_queue_clear(&q2);
    assert_int_equal(m[0]->refs, 1);
    assert_int_equal(st.depth, 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(m[i]->refs, 1);
        dl_msg_unref(m[i]);
    }
    dl_msg_t *e = dl_msg_new("x", 1, NULL, 0, 2, true);
    assert_int_equal(e->len, 0);
    assert_true(e->retain);
    assert_string_equal(e->topic, "x");
    dl_msg_unref(e);
}

static void count_dropped(void *ud, const dl_qentry_t *e) {
    acc_t *a = ud;
    a->o += (size_t)snprintf(a->buf + a->o, sizeof(a->buf) - a->o, "%s;", e->msg->topic);
}

/* Expired entries leave from anywhere in the queue (QoS 0 list too); the
 * earliest expiry of what stays is returned. */
static void test_queue_drop_expired(void **state) {
    (void)state;
    dl_queue_stats_t st = {0};
    dl_queue_t q;
    dl_queue_init(&q, &st);
    const char *topics[] = {"a", "b", "c", "d"};
    const uint64_t at[] = {0, 100, 300, 200};
    for (int i = 0; i < 4; i++) {
        dl_msg_t *m = dl_msg_new(topics[i], 1, "x", 1, 1, false);
        m->expires_ms = at[i];
        assert_int_equal(dl_queue_push(&q, m, (uint8_t)(i % 2), 10), 0);
        dl_msg_unref(m);
    }
    acc_t a = {.o = 0};
    assert_int_equal(dl_queue_drop_expired(&q, 99, count_dropped, &a), 100);
    assert_int_equal(st.expired, 0);
    assert_int_equal(dl_queue_drop_expired(&q, 250, count_dropped, &a), 300);
    assert_string_equal(a.buf, "b;d;");
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.depth, 2);
    assert_int_equal(dl_queue_drop_expired(&q, 300, NULL, NULL), 0);
    dl_qentry_t *e = dl_queue_pop(&q);
    assert_string_equal(e->msg->topic, "a");
    dl_qentry_free(e);
    assert_null(dl_queue_pop(&q));
    assert_true(list_empty(&q.qos0));
    assert_int_equal(st.depth, 0);
}

static void collect_at(void *ud, const char *topic, size_t topic_len, const void *payload,
                       size_t len, uint8_t qos, int64_t expires_ms) {
    acc_t *a = ud;
    assert_int_equal(strlen(topic), topic_len);
    a->o += (size_t)snprintf(a->buf + a->o, sizeof(a->buf) - a->o, "%s=%.*s@%u/%lld;", topic,
                             (int)len, (const char *)payload, qos, (long long)expires_ms);
}

/* A message whose expiry has come is dropped when a filter matching it is
 * matched at or after that time (the others stay), counted; its node is
 * freed with its emptied parents. */
static void test_retained_expiry(void **state) {
    (void)state;
    dl_retained_t *r = dl_retained_new(100, 10000);
    assert_int_equal(dl_retained_set_expiring(r, "a", 1, "1", 1, 1, 100), 0);
    assert_int_equal(dl_retained_set_expiring(r, "a/b", 3, "2", 1, 0, 100), 0);
    assert_int_equal(dl_retained_set_expiring(r, "c", 1, "3", 1, 2, 0), 0);
    assert_int_equal(dl_retained_set_expiring(r, "d/e", 3, "4", 1, 0, 200), 0);
    acc_t a = {.o = 0};
    assert_int_equal(dl_retained_match_at(r, "d/+", 3, 150, collect_at, &a), 1);
    assert_string_equal(a.buf, "d/e=4@0/200;");
    const dl_retained_stats_t *st = dl_retained_stats(r);
    assert_int_equal(st->expired, 0);
    a.o = 0;
    a.buf[0] = '\0';
    assert_int_equal(dl_retained_match_at(r, "#", 1, 150, collect_at, &a), 2);
    assert_non_null(strstr(a.buf, "c=3@2/0;"));
    assert_non_null(strstr(a.buf, "d/e=4@0/200;"));
    assert_int_equal(st->expired, 2);
    assert_int_equal(st->messages, 2);
    assert_int_equal(st->bytes, 6);
    assert_string_equal(rmatch(r, "#"), "c=3@2;d/e=4@0;");
    /* At its expiry exactly: gone. */
    a.o = 0;
    assert_int_equal(dl_retained_match_at(r, "d/e", 3, 200, collect_at, &a), 0);
    assert_int_equal(st->expired, 3);
    assert_string_equal(rmatch(r, "#"), "c=3@2;");
    /* The topics take new messages. */
    assert_int_equal(set(r, "a/b", "5", 0), 0);
    assert_string_equal(rmatch(r, "#"), "a/b=5@0;c=3@2;");
    assert_int_equal(st->messages, 2);
    dl_retained_free(r);
}

/* dl_msg_make: every part in one allocation; props NULL with a length
 * leaves room the caller fills; the origin kept with its length. */
static void test_msg_make(void **state) {
    (void)state;
    dl_msg_t *m = dl_msg_make(&(dl_msg_spec_t){.topic = "a/b",
                                               .topic_len = 3,
                                               .props_len = 2,
                                               .origin = "client-1",
                                               .origin_len = 8,
                                               .payload = "xyz",
                                               .len = 3,
                                               .qos = 2,
                                               .published_retain = true});
    assert_non_null(m);
    m->props[0] = 0x26;
    m->props[1] = 0x27;
    assert_string_equal(m->topic, "a/b");
    assert_memory_equal(m->payload, "xyz", 3);
    assert_ptr_equal(m->props, m->payload + 3);
    assert_ptr_equal(m->origin, (const char *)m->payload + 5);
    assert_memory_equal(m->origin, "client-1", 8);
    assert_int_equal(m->origin_len, 8);
    assert_memory_equal(m->props, "\x26\x27", 2); /* not overwritten by the origin */
    assert_true(m->published_retain);
    assert_false(m->retain);
    assert_int_equal(m->qos, 2);
    assert_int_equal(m->expires_ms, 0);
    dl_msg_unref(m);
    m = dl_msg_new("t", 1, "p", 1, 0, false);
    assert_null(m->origin);
    assert_int_equal(m->origin_len, 0);
    assert_false(m->published_retain);
    dl_msg_unref(m);
}

#define REF_THREADS 4
#define REF_ROUNDS 100000

typedef struct {
    dl_msg_t *m;
    dl_retained_t *r;
    int idx;
} thr_t;

static void *ref_unref(void *arg) {
    thr_t *t = arg;
    for (int i = 0; i < REF_ROUNDS; i++) {
        dl_msg_ref(t->m);
        dl_msg_unref(t->m);
    }
    dl_msg_unref(t->m); /* the one the main thread took for this thread */
    return NULL;
}

/* The count is exact when threads take and drop references at once; the
 * last one (here the main thread's) frees it (ASan: no leak, no double free). */
static void test_msg_refs_across_threads(void **state) {
    (void)state;
    dl_msg_t *m = dl_msg_new("t", 1, "p", 1, 1, false);
    pthread_t th[REF_THREADS];
    thr_t t[REF_THREADS];
    for (int i = 0; i < REF_THREADS; i++) {
        t[i] = (thr_t){.m = dl_msg_ref(m), .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, ref_unref, &t[i]), 0);
    }
    for (int i = 0; i < REF_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&m->refs), 1);
    dl_msg_unref(m);
}

#define STORE_ROUNDS 2000

/* One writer (the consumer's worker) sets and deletes topics while readers
 * (SUBSCRIBEs on other workers) match; every match sees whole messages, and
 * the counts after are exact. */
static void match_whole(void *ud, const char *topic, size_t topic_len, const void *payload,
                        size_t len, uint8_t qos) {
    (void)ud;
    (void)qos;
    assert_int_equal(strlen(topic), topic_len);
    assert_int_equal(len, 8);
    assert_memory_equal(payload, "payload:", 8);
}

static void *store_reader(void *arg) {
    thr_t *t = arg;
    for (int i = 0; i < STORE_ROUNDS; i++)
        assert_true(dl_retained_match(t->r, "s/#", 3, match_whole, NULL) >= 0);
    return NULL;
}

static void test_retained_across_threads(void **state) {
    (void)state;
    dl_retained_t *r = dl_retained_new(100, 100000);
    pthread_t th[2];
    thr_t t[2];
    for (int i = 0; i < 2; i++) {
        t[i] = (thr_t){.r = r, .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, store_reader, &t[i]), 0);
    }
    for (int i = 0; i < STORE_ROUNDS; i++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "s/%d", i % 10);
        assert_int_equal(set(r, topic, i % 3 == 2 ? "" : "payload:", 1), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* the last round of each of s/0..s/9: i = 1990..1999, deleted when i % 3 == 2 */
    const dl_retained_stats_t *st = dl_retained_stats(r);
    assert_int_equal(st->messages, 7);
    assert_int_equal(st->bytes, 7 * (3 + 8));
    dl_retained_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retained),
        cmocka_unit_test(test_retained_bounds),
        cmocka_unit_test(test_retained_expiry),
        cmocka_unit_test(test_queue_drop_expired),
        cmocka_unit_test(test_queue_overflow),
        cmocka_unit_test(test_msg_make),
        cmocka_unit_test(test_msg_refs_across_threads),
        cmocka_unit_test(test_retained_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
