/* libFuzzer target for the spool's recovery scan and reader over arbitrary
 * segment bytes.
 *
 * Input: byte 0 picks the layout (bit 0: put a valid segment header before
 * the rest; bit 1: a second, older segment of valid records before it, so the
 * reader crosses a sealed segment first); the rest is the newest segment's
 * content. Opening must succeed (the file is ours by name), every record read
 * must decode with increasing sequence numbers, and the spool must take,
 * sync and hand back a new record afterwards. Works in one temporary
 * directory per process, emptied for each input and removed at exit. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/spool/format.h"
#include "fuzz.h"
#include "spool/spool.h"
#include "util/log.h"

static char dir[64];

static void empty_dir(void) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    char p[600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
}

static void remove_dir(void) {
    empty_dir();
    rmdir(dir);
}

static void put(const char *name, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, a, alen) == (ssize_t)alen);
    CHECK(write(fd, b, blen) == (ssize_t)blen);
    close(fd);
}

static const spool_record_t probe = {.topic = "t", .topic_len = 1, .value = "v", .value_len = 1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        /* tmpfs where there is one: the syncs cost nothing there. */
        snprintf(dir, sizeof dir, "%s/m2k-fuzz-spool-%d",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        (void)mkdir(dir, 0700);
        atexit(remove_dir);
        log_set_level(LOG_ERROR);
        log_set_fd(open("/dev/null", O_WRONLY));
    }
    if (size == 0)
        return 0;
    empty_dir();
    uint8_t mode = data[0];
    data++;
    size--;
    /* Records 1..3 in segment 1 (sealed), the input as segment 100. */
    uint8_t hdr[SPOOL_SEG_HEADER_SIZE];
    if (mode & 2) {
        uint8_t seg[SPOOL_SEG_HEADER_SIZE + 3 * 64];
        size_t len = SPOOL_SEG_HEADER_SIZE;
        spool_seg_header_encode(seg, 1);
        size_t body = spool_body_size(&probe);
        for (uint64_t s = 1; s <= 3; s++) {
            spool_frame_encode(seg + len, &probe, body, s);
            len += SPOOL_FRAME_HEADER_SIZE + body;
        }
        put("00000000000000000001.seg", seg, len, NULL, 0);
    }
    spool_seg_header_encode(hdr, 100);
    put("00000000000000000100.seg", hdr, (mode & 1) ? sizeof hdr : 0, data, size);

    spool_options_t o = {.dir = dir, .segment_bytes = 4096};
    spool_t *sp;
    char err[256];
    CHECK(spool_open(&o, &sp, err, sizeof err) == 0);
    spool_record_t rec;
    uint64_t seq, last = 0, synced;
    int rc;
    while ((rc = spool_peek(sp, &rec, &seq)) == 0) {
        CHECK(seq > last);
        CHECK(rec.topic_len >= 1);
        last = seq;
        spool_next(sp);
    }
    CHECK(rc == SPOOL_EMPTY);
    spool_stats_t st;
    spool_stats(sp, &st);
    CHECK(st.next_seq > last);
    CHECK(spool_append(sp, &probe, &seq) == 0);
    CHECK(seq == st.next_seq);
    CHECK(spool_sync(sp, &synced) == 0 && synced == seq);
    CHECK(spool_peek(sp, &rec, &seq) == 0 && seq == synced && rec.value_len == 1);
    spool_close(sp);
    return 0;
}
