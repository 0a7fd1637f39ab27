/* The spools of N workers (spool_workers.h): the file `workers`, the worker
 * count a start runs when its spools hold records written with another,
 * the removal of the spools past the count once they are empty, the shared
 * max_bytes, the placement of client ids. */
#include "spool_fixture.h"
#include "spool_workers.h"
#include "util/hash.h"

static bool holds_records(spool_t *sp, void *ud) {
    (void)ud;
    spool_stats_t ss;
    spool_stats(sp, &ss);
    return ss.records > 0;
}

/* Opens worker 0's spool at dir, then the others; n expected. */
static spool_t *open_all(spool_workers_t *sw, unsigned want, unsigned n) {
    spool_t *sp0 = open_spool(0, 0);
    char err[256];
    if (spool_workers_open(sw, dir, 0, sp0, want, holds_records, NULL, err, sizeof err) != 0)
        fail_msg("spool_workers_open: %s", err);
    assert_int_equal(sw->n, n);
    return sp0;
}

static void close_all(spool_workers_t *sw, spool_t *sp0) {
    spool_workers_close(sw);
    spool_close(sp0);
}

static bool exists(const char *name) {
    char p[256];
    struct stat st;
    path_of(p, sizeof p, name);
    return stat(p, &st) == 0;
}

static void test_layout_kept_and_placement_stable(void **state) {
    (void)state;
    spool_workers_t sw;
    spool_t *sp0 = open_all(&sw, 1, 1);
    close_all(&sw, sp0);
    /* One worker that never had more: the layout of a daemon before workers. */
    assert_false(exists("workers"));
    sp0 = open_all(&sw, 2, 2);
    assert_true(exists("w1"));
    uint8_t key[16];
    memcpy(key, sw.key, sizeof key);
    char p[256], want[128], hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(want, sizeof want, "mqtt2kafka spool workers 1\nworkers 2\nkey %s\n", hex);
    path_of(p, sizeof p, "workers");
    size_t len;
    char *text = (char *)slurp(p, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(text, want, len);
    free(text);
    unsigned owner = spool_workers_owner(&sw, "client-7", 8);
    assert_int_equal(owner, m2k_siphash24(key, "client-7", 8) % 2);
    /* Every spool's checkpoint in the shared total. */
    assert_int_equal(atomic_load(&sw.bytes), 2 * SPOOL_CHECKPOINT_SIZE);
    close_all(&sw, sp0);
    /* A restart: the same key, so the same placement. */
    sp0 = open_all(&sw, 2, 2);
    assert_memory_equal(sw.key, key, sizeof key);
    assert_int_equal(spool_workers_owner(&sw, "client-7", 8), owner);
    close_all(&sw, sp0);
}

static void test_other_count_waits_for_empty_spools(void **state) {
    (void)state;
    spool_workers_t sw;
    spool_t *sp0 = open_all(&sw, 2, 2);
    append_sync(sw.spools[1], 1, 3, 100);
    close_all(&sw, sp0);
    /* w1 holds records: a start with threads: 1 runs 2, and says so. */
    sp0 = open_all(&sw, 1, 2);
    char line[512];
    snprintf(line, sizeof line,
             "warn  spool: %s was written with threads: 2 and holds records or QoS 2 ids: "
             "running threads: 2, not 1, until a start finds the spools empty\n",
             dir);
    assert_non_null(strstr(log_text(), line));
    spool_record_t r;
    uint64_t seq;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(spool_peek(sw.spools[1], &r, &seq), 0);
        spool_next(sw.spools[1]);
    }
    assert_int_equal(spool_confirm(sw.spools[1], 3), 0);
    close_all(&sw, sp0);
    /* Empty: threads: 1 now, w1 removed, the file says so. */
    sp0 = open_all(&sw, 1, 1);
    snprintf(line, sizeof line, "info  spool: %s/w1: removed (empty; threads: 1 now)\n", dir);
    assert_non_null(strstr(log_text(), line));
    assert_false(exists("w1"));
    char p[256];
    path_of(p, sizeof p, "workers");
    size_t len;
    char *text = (char *)slurp(p, &len);
    assert_non_null(strstr(text, "\nworkers 1\n"));
    free(text);
    assert_int_equal(atomic_load(&sw.bytes), SPOOL_CHECKPOINT_SIZE);
    close_all(&sw, sp0);
    /* And from 1 with records to 2: 1 is kept. */
    sp0 = open_all(&sw, 1, 1);
    append_sync(sp0, 1, 2, 100);
    close_all(&sw, sp0);
    sp0 = open_all(&sw, 2, 1);
    assert_false(exists("w1"));
    close_all(&sw, sp0);
}

static void test_unreadable_workers_file_refuses(void **state) {
    (void)state;
    char p[256];
    path_of(p, sizeof p, "workers");
    put_file(p, (const uint8_t *)"mqtt2kafka spool workers 1\nworkers 0\nkey 00\n", 44);
    spool_t *sp0 = open_spool(0, 0);
    spool_workers_t sw;
    char err[512], want[512];
    assert_int_equal(spool_workers_open(&sw, dir, 0, sp0, 2, holds_records, NULL, err, sizeof err),
                     -1);
    snprintf(want, sizeof want,
             "%s: not a file of this version (it places client ids on the workers whose spools "
             "hold their records): fix or restore it",
             p);
    assert_string_equal(err, want);
    assert_false(exists("w1"));
    spool_close(sp0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout_kept_and_placement_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_count_waits_for_empty_spools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_workers_file_refuses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
