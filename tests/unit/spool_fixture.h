/* Helpers of the spool tests (test_spool.c, test_spool_faults.c): a
 * temporary directory and captured log per test, records derived from their
 * sequence number, file helpers. */
#ifndef M2K_TEST_SPOOL_FIXTURE_H
#define M2K_TEST_SPOOL_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/spool/spool_internal.h"
#include "spool/spool.h"
#include "util/log.h"

#pragma GCC diagnostic ignored "-Wunused-function"

static char dir[64];
static char logpath[96];
static int log_fd = -1, saved_log_fd = -1;

static void rm_dir(const char *d) {
    DIR *dd = opendir(d);
    if (!dd)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(dd)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        if (unlink(p) != 0)
            rm_dir(p);
    }
    closedir(dd);
    rmdir(d);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/m2k-spool-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(logpath, sizeof logpath, "%s.log", dir);
    log_fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    saved_log_fd = log_set_fd(log_fd);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    log_set_fd(saved_log_fd);
    close(log_fd);
    unlink(logpath);
    rm_dir(dir);
    return 0;
}

/* The log lines written since setup. */
static char *log_text(void) {
    static char buf[65536];
    ssize_t n = pread(log_fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void path_of(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%.180s", dir, name);
}

static void seg_path(char *out, size_t n, uint64_t base) {
    snprintf(out, n, "%s/%020llu.seg", dir, (unsigned long long)base);
}

static off_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static int count_files(const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static spool_t *open_spool(uint64_t max_bytes, uint64_t segment_bytes) {
    spool_options_t o = {.dir = dir, .max_bytes = max_bytes, .segment_bytes = segment_bytes};
    spool_t *sp = NULL;
    char err[256];
    int rc = spool_open(&o, &sp, err, sizeof err);
    if (rc != 0)
        fail_msg("spool_open: %s", err);
    return sp;
}

/* The record numbered seq, derived from seq alone: a value of (seq * 37) %
 * max_value bytes, the key null for every 7th, two headers for every 3rd. */
static uint8_t valbuf[20000];
static spool_header_t hdrs[2];
static char topic[32], keybuf[32];
static uint64_t tagval;

static void make_record(uint64_t seq, size_t max_value, spool_record_t *r) {
    memset(r, 0, sizeof *r);
    snprintf(topic, sizeof topic, "topic-%llu", (unsigned long long)(seq % 5));
    r->topic = topic;
    r->topic_len = strlen(topic);
    if (seq % 7 != 0) {
        snprintf(keybuf, sizeof keybuf, "k%llu", (unsigned long long)seq);
        r->key = keybuf;
        r->key_len = strlen(keybuf);
    }
    size_t vl = (size_t)((seq * 37) % max_value);
    for (size_t i = 0; i < vl; i++)
        valbuf[i] = (uint8_t)(seq + i);
    r->value = valbuf;
    r->value_len = vl;
    if (seq % 3 == 0) {
        hdrs[0] = (spool_header_t){"mqtt.topic", 10, "a/b", 3};
        hdrs[1] = (spool_header_t){"n", 1, NULL, 0};
        r->headers = hdrs;
        r->n_headers = 2;
    }
    r->timestamp_ms = 1700000000000 + (int64_t)seq;
    tagval = seq;
    r->tag = &tagval;
    r->tag_len = sizeof tagval;
}

/* 0 when rec is the record numbered seq. */
static int check_record(const spool_record_t *rec, uint64_t seq, size_t max_value) {
    uint64_t s = seq;
    spool_record_t w;
    make_record(s, max_value, &w);
    if (rec->topic_len != w.topic_len || memcmp(rec->topic, w.topic, w.topic_len) != 0)
        return 1;
    if ((rec->key == NULL) != (w.key == NULL) || rec->key_len != w.key_len ||
        (w.key && memcmp(rec->key, w.key, w.key_len) != 0))
        return 2;
    if (rec->value_len != w.value_len || memcmp(rec->value, w.value, w.value_len) != 0)
        return 3;
    if (rec->n_headers != w.n_headers)
        return 4;
    for (size_t i = 0; i < w.n_headers; i++)
        if (rec->headers[i].name_len != w.headers[i].name_len ||
            memcmp(rec->headers[i].name, w.headers[i].name, w.headers[i].name_len) != 0 ||
            (rec->headers[i].value == NULL) != (w.headers[i].value == NULL) ||
            rec->headers[i].value_len != w.headers[i].value_len)
            return 5;
    if (rec->timestamp_ms != w.timestamp_ms || rec->tag_len != 8 || memcmp(rec->tag, &s, 8) != 0)
        return 6;
    return 0;
}

static void append_n(spool_t *sp, uint64_t first, uint64_t n, size_t max_value) {
    for (uint64_t i = 0; i < n; i++) {
        spool_record_t r;
        uint64_t seq;
        make_record(first + i, max_value, &r);
        assert_int_equal(spool_append(sp, &r, &seq), 0);
        assert_int_equal(seq, first + i);
    }
}

/* Reads every record; asserts they are first..last in order, without `skip`
 * (0: none), and then nothing. */
static void read_expect_skip(spool_t *sp, uint64_t first, uint64_t last, uint64_t skip,
                             size_t max_value) {
    spool_record_t rec;
    uint64_t seq;
    for (uint64_t s = first; s <= last; s++) {
        if (s == skip)
            continue;
        assert_int_equal(spool_peek(sp, &rec, &seq), 0);
        assert_int_equal(seq, s);
        assert_int_equal(check_record(&rec, s, max_value), 0);
        spool_next(sp);
    }
    assert_int_equal(spool_peek(sp, &rec, &seq), SPOOL_EMPTY);
}

static void read_expect(spool_t *sp, uint64_t first, uint64_t last, size_t max_value) {
    read_expect_skip(sp, first, last, 0, max_value);
}

/* Appends first..first+n-1 and syncs them. */
static void append_sync(spool_t *sp, uint64_t first, uint64_t n, size_t max_value) {
    uint64_t synced;
    append_n(sp, first, n, max_value);
    assert_int_equal(spool_sync(sp, &synced), 0);
    assert_int_equal(synced, first + n - 1);
}

/* The same, then reads them back. */
static void append_sync_read(spool_t *sp, uint64_t first, uint64_t n, size_t max_value) {
    append_sync(sp, first, n, max_value);
    read_expect(sp, first, first + n - 1, max_value);
}

/* What the spool's bytes should be: its segment files plus the checkpoint. */
static uint64_t dir_bytes(void) {
    uint64_t n = SPOOL_CHECKPOINT_SIZE;
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".seg") && !strstr(e->d_name, ".corrupt")) {
            snprintf(p, sizeof p, "%s/%.40s", dir, e->d_name);
            n += (uint64_t)file_size(p);
        }
    closedir(d);
    return n;
}

static uint8_t *slurp(const char *p, size_t *len) {
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    off_t n = lseek(fd, 0, SEEK_END);
    uint8_t *b = malloc((size_t)n + 1);
    assert_int_equal(pread(fd, b, (size_t)n, 0), n);
    close(fd);
    *len = (size_t)n;
    return b;
}

static void put_file(const char *p, const uint8_t *b, size_t n) {
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

/* The offsets of the frames in a segment's bytes (from their magic), at most
 * max; returns how many. */
static size_t frame_offsets(const uint8_t *b, size_t len, size_t *offs, size_t max) {
    size_t n = 0;
    for (size_t i = SPOOL_SEG_HEADER_SIZE; i + 4 <= len && n < max; i++)
        if (memcmp(b + i, "M2KR", 4) == 0)
            offs[n++] = i;
    return n;
}

/* Records 1..40 in 1 KiB segments, closed; returns the first segment's bytes
 * (free them) and its path in seg. */
static uint8_t *forty_in_small_segments(char *seg, size_t seg_len, size_t *len) {
    spool_t *sp = open_spool(0, 1024);
    append_sync(sp, 1, 40, 300);
    spool_close(sp);
    seg_path(seg, seg_len, 1);
    return slurp(seg, len);
}

#endif
