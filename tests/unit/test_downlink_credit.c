/* downlink/credit.c: the bound on records handed to other workers (threads:
 * N). Exact room, takes, gives and wake-ups in sequence, by records and by
 * bytes; then a consumer
 * and two worker threads passing 20,000 records through a bound of 64:
 * no worker ever holds more, no wake-up is lost (the run ends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "downlink/credit.h"

static void test_sequence(void **state) {
    (void)state;
    dl_credit_t *c = dl_credit_new(3, 2000, 1 << 20);
    assert_int_equal(dl_credit_room(c, 500), 500);
    dl_credit_take(c, 1, 500, 0);
    dl_credit_take(c, 2, 500, 0);
    dl_credit_take(c, 1, 1000, 0); /* worker 1 holds 1500: room for 500 more */
    assert_int_equal(dl_credit_room(c, 500), 500);
    dl_credit_take(c, 1, 1, 0);
    assert_int_equal(dl_credit_held(c, 1), 1501);
    assert_int_equal(dl_credit_room(c, 500), 0); /* 1501 + 500 > 2000 */
    assert_int_equal(dl_credit_waits(c), 1);
    /* Worker 2 catching up wakes the consumer (the flag is taken) though
     * worker 1 is still behind: the consumer asks again and waits again. */
    assert_true(dl_credit_give(c, 2, 500, 0, 500));
    assert_int_equal(dl_credit_room(c, 500), 0);
    assert_int_equal(dl_credit_waits(c), 2);
    /* Worker 1 gives back 1, still 1500 + 500 <= 2000: wakes. */
    assert_true(dl_credit_give(c, 1, 1, 0, 500));
    assert_false(dl_credit_give(c, 1, 100, 0, 500)); /* nobody waits now */
    assert_int_equal(dl_credit_room(c, 500), 500);
    /* A give that leaves the worker over the bound takes no flag. */
    dl_credit_take(c, 1, 600, 0); /* 2000 */
    assert_int_equal(dl_credit_room(c, 500), 0);
    assert_false(dl_credit_give(c, 1, 100, 0, 500)); /* 1900 + 500 > 2000 */
    assert_true(dl_credit_give(c, 1, 400, 0, 500));  /* 1500 */
    assert_int_equal(dl_credit_held(c, 1), 1500);
    assert_int_equal(dl_credit_held(c, 2), 0);
    assert_int_equal(dl_credit_waits(c), 3);
    /* Bytes: room while a worker holds less than max_bytes (one poll may
     * take it past), none once it holds max_bytes or more. */
    dl_credit_take(c, 2, 1, (1 << 20) - 1);
    assert_int_equal(dl_credit_room(c, 500), 500);
    dl_credit_take(c, 2, 1, 1);
    assert_int_equal(dl_credit_held_bytes(c, 2), 1 << 20);
    assert_int_equal(dl_credit_room(c, 500), 0);
    assert_false(dl_credit_give(c, 2, 0, 0, 500)); /* still 1 MiB */
    assert_true(dl_credit_give(c, 2, 1, 1, 500));  /* 1 MiB - 1 */
    assert_int_equal(dl_credit_held(c, 2), 1);
    assert_int_equal(dl_credit_room(c, 500), 500);
    assert_int_equal(dl_credit_waits(c), 4);
    dl_credit_free(c);
}

#define RECORDS 20000
#define BOUND 64
#define WANT 8

typedef struct {
    dl_credit_t *c;
    atomic_size_t posted[3], done[3]; /* per worker */
    atomic_bool woken, over;
} run_t;

typedef struct {
    run_t *r;
    unsigned idx;
} wk_t;

/* A worker: delivers what was posted to it, a few at a time. */
static void *worker(void *arg) {
    wk_t *w = arg;
    run_t *r = w->r;
    size_t done = 0;
    while (done < RECORDS) {
        size_t posted = atomic_load(&r->posted[w->idx]);
        if (posted == done) {
            sched_yield();
            continue;
        }
        size_t n = posted - done > 3 ? 3 : posted - done;
        if (dl_credit_held(r->c, w->idx) > BOUND)
            atomic_store(&r->over, true);
        done += n;
        atomic_store(&r->done[w->idx], done);
        if (dl_credit_give(r->c, w->idx, n, n * 100, WANT))
            atomic_store(&r->woken, true);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    run_t *r = calloc(1, sizeof(*r));
    r->c = dl_credit_new(3, BOUND, BOUND * 100 + 1);
    pthread_t th[2];
    wk_t wk[2] = {{r, 1}, {r, 2}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &wk[i]), 0);
    size_t sent = 0;
    while (sent < RECORDS) {
        size_t n = dl_credit_room(r->c, WANT);
        if (n == 0) {
            /* Waits for the wake-up alone: a lost one hangs the test. */
            while (!atomic_exchange(&r->woken, false))
                sched_yield();
            continue;
        }
        if (n > RECORDS - sent)
            n = RECORDS - sent;
        for (unsigned i = 1; i <= 2; i++) {
            dl_credit_take(r->c, i, n, n * 100);
            atomic_fetch_add(&r->posted[i], n);
        }
        sent += n;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_false(atomic_load(&r->over));
    assert_int_equal(dl_credit_held(r->c, 1), 0);
    assert_int_equal(dl_credit_held(r->c, 2), 0);
    assert_int_equal(dl_credit_held_bytes(r->c, 1), 0);
    assert_int_equal(dl_credit_held_bytes(r->c, 2), 0);
    assert_true(dl_credit_waits(r->c) > 0);
    dl_credit_free(r->c);
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
