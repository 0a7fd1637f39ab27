/* The spool's failure paths: a full disk (RLIMIT_FSIZE, and ENOSPC on a
 * small tmpfs), a failing fdatasync, an unusable directory, and SIGKILL at
 * seeded random points with the unsynced tail damaged as a power loss would. */
#include "spool_fixture.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* In a child (RLIMIT_FSIZE is per process): the file stops growing with
 * EFBIG; nothing partial stays, the synced records are intact, and appends
 * work again once the limit is raised. Returns the failed check's line. */
static int fsize_child(void) {
    signal(SIGXFSZ, SIG_IGN);
    spool_t *sp = open_spool(0, 0);
    spool_record_t r;
    uint64_t seq, synced;
    make_record(1, 1000, &r);
    size_t frame = SPOOL_FRAME_HEADER_SIZE + spool_body_size(&r);
    struct rlimit rl = {SPOOL_SEG_HEADER_SIZE + 3 * frame + frame / 2, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return __LINE__;
    for (int i = 0; i < 3; i++)
        if (spool_append(sp, &r, &seq) != 0)
            return __LINE__;
    if (spool_sync(sp, &synced) != 0 || synced != 3)
        return __LINE__;
    char p[256];
    seg_path(p, sizeof p, 1);
    if (file_size(p) != (off_t)(SPOOL_SEG_HEADER_SIZE + 3 * frame))
        return __LINE__;
    /* The fourth is buffered; its write at the sync fails half way. */
    if (spool_append(sp, &r, &seq) != 0 || seq != 4)
        return __LINE__;
    if (spool_sync(sp, &synced) != SPOOL_FULL)
        return __LINE__;
    if (file_size(p) != (off_t)(SPOOL_SEG_HEADER_SIZE + 3 * frame))
        return __LINE__;
    spool_stats_t st;
    spool_stats(sp, &st);
    if (st.next_seq != 4 || st.synced_seq != 3 ||
        st.bytes != SPOOL_CHECKPOINT_SIZE + SPOOL_SEG_HEADER_SIZE + 3 * frame)
        return __LINE__;
    /* A record that fills the write buffer: the append that must write it
     * out first fails, alone; the one before it stays buffered. */
    static uint8_t big[600 * 1024];
    spool_record_t b = {.topic = "t", .topic_len = 1, .value = big, .value_len = sizeof big};
    if (spool_append(sp, &b, &seq) != 0 || seq != 4)
        return __LINE__;
    if (spool_append(sp, &b, &seq) != SPOOL_FULL)
        return __LINE__;
    if (file_size(p) != (off_t)(SPOOL_SEG_HEADER_SIZE + 3 * frame))
        return __LINE__;
    rl.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return __LINE__;
    if (spool_sync(sp, &synced) != 0 || synced != 4)
        return __LINE__;
    if (spool_append(sp, &r, &seq) != 0 || seq != 5 || spool_sync(sp, &synced) != 0)
        return __LINE__;
    for (uint64_t s = 1; s <= 5; s++) {
        spool_record_t got;
        if (spool_peek(sp, &got, &seq) != 0 || seq != s ||
            got.value_len != (s == 4 ? sizeof big : r.value_len))
            return __LINE__;
        spool_next(sp);
    }
    spool_close(sp);
    return 0;
}

/* Runs fn in a forked child (cmocka's asserts do not cross a fork); returns
 * its exit code: 0, a failed check's line, or 77 for "cannot run here". */
static int run_child(int (*fn)(void)) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    int rc = WEXITSTATUS(status);
    if (rc != 0 && rc != 77)
        fail_msg("check at test_spool_faults.c:%d failed in the child", rc);
    return rc;
}

static void test_full_disk_rlimit_fsize(void **state) {
    (void)state;
    assert_int_equal(run_child(fsize_child), 0);
    assert_non_null(strstr(log_text(), "cannot write: File too large"));
}

/* Reads first..last back without cmocka (for a child): 0 or the line. */
static int child_read(spool_t *sp, uint64_t first, uint64_t last, size_t max_value) {
    spool_record_t rec;
    uint64_t seq;
    for (uint64_t s = first; s <= last; s++) {
        if (spool_peek(sp, &rec, &seq) != 0 || seq != s || check_record(&rec, s, max_value) != 0)
            return __LINE__;
        spool_next(sp);
    }
    return spool_peek(sp, &rec, &seq) == SPOOL_EMPTY ? 0 : __LINE__;
}

/* In a child with its own mount namespace, a 64 KiB tmpfs over the spool's
 * directory: it fills up (ENOSPC), nothing partial stays, every synced record
 * reads back, and confirming them frees the space (the checkpoint may not fit:
 * the drained segments go all the same), after which appends work again.
 * Returns 0, the failed check's line, or 77 when mounting is not allowed. */
static int tmpfs_child(void) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0)
        return 77;
    spool_t *sp = open_spool(0, 8192);
    uint64_t next = 1, synced, seq;
    int rc = 0;
    while (rc == 0) {
        for (int i = 0; i < 4 && rc == 0; i++) {
            spool_record_t r;
            make_record(next, 1000, &r);
            if ((rc = spool_append(sp, &r, &seq)) == 0)
                next++;
        }
        if (rc == 0)
            rc = spool_sync(sp, &synced);
        if (next > 10000)
            return __LINE__;
    }
    if (rc != SPOOL_FULL)
        return __LINE__;
    spool_sync(sp, &synced); /* what was pending: kept or rolled back, never half */
    spool_stats_t st;
    spool_stats(sp, &st);
    uint64_t s = st.synced_seq;
    if (s < 10 || st.next_seq != s + 1)
        return __LINE__;
    if (dir_bytes() != st.bytes)
        return __LINE__;
    if ((rc = child_read(sp, 1, s, 1000)) != 0)
        return rc;
    rc = spool_confirm(sp, s);
    if (rc != 0 && rc != SPOOL_FULL)
        return __LINE__;
    spool_stats(sp, &st);
    if (st.confirmed_seq != s || st.segments > 1)
        return __LINE__;
    for (uint64_t i = 0; i < 8; i++) {
        spool_record_t r;
        make_record(s + 1 + i, 1000, &r);
        if (spool_append(sp, &r, &seq) != 0 || seq != s + 1 + i)
            return __LINE__;
    }
    if (spool_sync(sp, &synced) != 0 || synced != s + 8)
        return __LINE__;
    if ((rc = child_read(sp, s + 1, s + 8, 1000)) != 0)
        return rc;
    if (spool_confirm(sp, s + 8) != 0)
        return __LINE__;
    spool_close(sp);
    return 0;
}

static void test_full_disk_tmpfs(void **state) {
    (void)state;
    if (run_child(tmpfs_child) == 77)
        skip(); /* no CAP_SYS_ADMIN: RLIMIT_FSIZE above covers the write path */
    assert_non_null(strstr(log_text(), "No space left on device"));
}

static int failing_datasync(int fd) {
    (void)fd;
    errno = EIO;
    return -1;
}

static void test_failed_sync_rolls_back(void **state) {
    (void)state;
    spool_t *sp = open_spool(0, 1024);
    uint64_t synced;
    append_sync(sp, 1, 3, 300);
    spool_stats_t before;
    spool_stats(sp, &before);
    int segs = count_files(".seg");
    /* A group across a roll, then the sync fails (EIO): all of it goes. */
    append_n(sp, 4, 10, 300);
    assert_true(count_files(".seg") > segs);
    sp->datasync = failing_datasync;
    assert_int_equal(spool_sync(sp, &synced), SPOOL_FULL);
    sp->datasync = fdatasync;
    spool_stats_t after;
    spool_stats(sp, &after);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.next_seq, 4);
    assert_int_equal(after.synced_seq, 3);
    assert_int_equal(count_files(".seg"), segs);
    read_expect(sp, 1, 3, 300);
    /* Usable again: the group is appended anew. */
    append_sync_read(sp, 4, 10, 300);
    spool_close(sp);
    assert_non_null(strstr(log_text(), "fdatasync failed: Input/output error"));
    sp = open_spool(0, 1024);
    read_expect(sp, 1, 13, 300);
    spool_stats(sp, &after);
    assert_int_equal(after.corrupt_skipped + after.truncations, 0);
    spool_close(sp);
}

static void test_unusable_dir(void **state) {
    (void)state;
    char p[256], err[256];
    spool_t *sp;
    path_of(p, sizeof p, "file");
    put_file(p, (const uint8_t *)"x", 1);
    spool_options_t o = {.dir = p};
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), SPOOL_EIO);
    char want[600];
    snprintf(want, sizeof want, "%s: cannot open the spool directory: Not a directory", p);
    assert_string_equal(err, want);
    path_of(p, sizeof p, "file/sub");
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot create the spool directory: Not a directory", p);
    assert_string_equal(err, want);
    /* A missing directory is created; a second user of it is refused. */
    path_of(p, sizeof p, "new");
    spool_t *a = NULL;
    assert_int_equal(spool_open(&o, &a, err, sizeof err), 0);
    assert_int_equal(spool_open(&o, &sp, err, sizeof err), SPOOL_EIO);
    snprintf(want, sizeof want,
             "%s: the spool directory is in use: Resource temporarily unavailable", p);
    assert_string_equal(err, want);
    /* spool_check says the same without creating or locking: it passes on
     * the directory a spool holds, and on a missing one in a usable parent. */
    assert_int_equal(spool_check(p, err, sizeof err), 0);
    spool_close(a);
    path_of(p, sizeof p, "later");
    assert_int_equal(spool_check(p, err, sizeof err), 0);
    assert_int_equal(file_size(p), -1);
    path_of(p, sizeof p, "file");
    assert_int_equal(spool_check(p, err, sizeof err), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot open the spool directory: Not a directory", p);
    assert_string_equal(err, want);
    path_of(p, sizeof p, "file/sub/");
    assert_int_equal(spool_check(p, err, sizeof err), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot open the spool directory: Not a directory", p);
    assert_string_equal(err, want);
    path_of(p, sizeof p, "missing/sub");
    assert_int_equal(spool_check(p, err, sizeof err), SPOOL_EIO);
    snprintf(want, sizeof want, "%s: cannot create the spool directory: No such file or directory",
             p);
    assert_string_equal(err, want);
}

/* ---- crash consistency: SIGKILL at seeded random points ---- */

#define CRASH_MAX_VALUE 20000
#define CRASH_ROUNDS 40

/* One report through the pipe: the synced seq, the newest segment and its
 * size (0, 0 when there is none), the confirmed seq. */
static void crash_report(int wfd, spool_t *sp) {
    spool_stats_t st;
    spool_stats(sp, &st);
    uint64_t rep[4] = {st.synced_seq, 0, 0, st.confirmed_seq};
    if (sp->nsegs > 0) {
        rep[1] = sp->segs[sp->nsegs - 1].base;
        rep[2] = sp->segs[sp->nsegs - 1].size;
    }
    if (write(wfd, rep, sizeof rep) != (ssize_t)sizeof rep)
        _exit(4);
}

/* Appends groups of records numbered by seq and syncs them; every other
 * group, drains a few and confirms them (checkpoint, deletions); reports
 * after each sync and confirm until it is killed. */
static void crash_child(int wfd, unsigned seed) {
    spool_t *sp = open_spool(0, 1024 * 1024);
    spool_stats_t st;
    spool_stats(sp, &st);
    uint64_t next = st.next_seq, synced, seq;
    for (;;) {
        int n = 1 + rand_r(&seed) % 20;
        for (int i = 0; i < n; i++) {
            spool_record_t r;
            make_record(next, CRASH_MAX_VALUE, &r);
            if (spool_append(sp, &r, &seq) != 0 || seq != next)
                _exit(2);
            next++;
        }
        if (spool_sync(sp, &synced) != 0)
            _exit(3);
        crash_report(wfd, sp);
        if (rand_r(&seed) % 2)
            continue;
        uint64_t last = 0;
        spool_record_t rec;
        for (int k = 1 + rand_r(&seed) % 30; k > 0 && spool_peek(sp, &rec, &seq) == 0; k--) {
            spool_next(sp);
            last = seq;
        }
        if (last && spool_confirm(sp, last) != 0)
            _exit(5);
        crash_report(wfd, sp);
    }
}

/* What a power loss may leave of what was not synced: a prefix of it, or a
 * prefix followed by zeros (the size was updated, the data was not). */
static void damage_unsynced(const uint64_t rep[4], unsigned *seed) {
    char p[256];
    DIR *d = opendir(dir);
    struct dirent *e;
    char newest[64] = "";
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg") && strcmp(e->d_name, newest) > 0)
            snprintf(newest, sizeof newest, "%.40s", e->d_name);
    closedir(d);
    seg_path(p, sizeof p, rep[1]);
    if (strcmp(newest, p + strlen(dir) + 1) != 0)
        return; /* rolled since: left as the kill left it */
    off_t cur = file_size(p);
    if (cur <= (off_t)rep[2] || rand_r(seed) % 3 == 0)
        return;
    off_t keep = (off_t)rep[2] + (off_t)(rand_r(seed) % (unsigned)(cur - (off_t)rep[2]));
    assert_int_equal(truncate(p, keep), 0);
    if (rand_r(seed) % 2)
        assert_int_equal(truncate(p, keep + 1 + rand_r(seed) % 5000), 0);
}

static void test_crash_sigkill_random_points(void **state) {
    (void)state;
    unsigned seed = 20261206;
    uint64_t torn = 0, records = 0, deleted = 0;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(pfd[1], seed + (unsigned)round);
        }
        close(pfd[1]);
        /* Wait for the first report, then kill it at a random point. */
        uint64_t rep[4], v[4];
        assert_int_equal(read(pfd[0], rep, sizeof rep), (ssize_t)sizeof rep);
        struct timespec ts = {0, (long)(rand_r(&seed) % 20000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        while (read(pfd[0], v, sizeof v) == (ssize_t)sizeof v)
            memcpy(rep, v, sizeof v);
        close(pfd[0]);
        uint64_t reported = rep[0];
        damage_unsynced(rep, &seed);

        /* What was confirmed stays confirmed; every record reported synced
         * after it is there, in order, and intact; anything after it that
         * survived is intact too. */
        spool_t *sp = open_spool(0, 1024 * 1024);
        spool_stats_t st;
        spool_stats(sp, &st);
        assert_int_equal(st.corrupt_skipped, 0);
        assert_true(st.confirmed_seq >= rep[3]);
        assert_true(st.confirmed_seq <= reported);
        assert_true(st.next_seq > reported);
        torn += st.truncations;
        records = st.next_seq - 1;
        spool_record_t rec;
        uint64_t seq, want = st.confirmed_seq + 1;
        while (spool_peek(sp, &rec, &seq) == 0) {
            assert_int_equal(seq, want);
            assert_int_equal(check_record(&rec, seq, CRASH_MAX_VALUE), 0);
            spool_next(sp);
            want++;
        }
        assert_true(want - 1 >= reported);
        /* Confirm a random part of it, as Kafka would. */
        uint64_t upto = st.confirmed_seq + (uint64_t)rand_r(&seed) % (want - st.confirmed_seq);
        assert_int_equal(spool_confirm(sp, upto), 0);
        deleted += st.segments - (uint64_t)count_files(".seg");
        spool_close(sp);
    }
    print_message("%d kills, %llu torn tails truncated, %llu records appended, %llu segments "
                  "deleted by the parent\n",
                  CRASH_ROUNDS, (unsigned long long)torn, (unsigned long long)records,
                  (unsigned long long)deleted);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk_rlimit_fsize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_sync_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_sigkill_random_points, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
