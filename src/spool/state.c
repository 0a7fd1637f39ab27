/* The caller's state file beside the segments (spool.h, spool_state_save). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_internal.h"

int spool_state_save(spool_t *sp, const void *buf, size_t len) {
    if (len > SPOOL_STATE_MAX)
        return SPOOL_EINVAL;
    uint8_t *file = malloc(SPOOL_STATE_HEADER_SIZE + len);
    if (!file)
        return SPOOL_ENOMEM;
    spool_state_header_encode(file, buf, len);
    if (len)
        memcpy(file + SPOOL_STATE_HEADER_SIZE, buf, len);
    int rc = spool_replace_file(sp, SPOOL_STATE_NAME, SPOOL_STATE_TMP, file,
                                SPOOL_STATE_HEADER_SIZE + len);
    free(file);
    /* Counted, never refused at max_bytes: it is bounded by the sessions'
     * QoS 2 windows, and without it a resend would go to Kafka twice. */
    if (rc == 0)
        sp->state_bytes = SPOOL_STATE_HEADER_SIZE + len;
    return rc;
}

static int corrupt(spool_t *sp, const char *why) {
    log_error("spool: %s/%s: %s: moved aside as %s.corrupt (its QoS 2 ids are lost: a resend "
              "of those messages goes to Kafka again)",
              sp->dir, SPOOL_STATE_NAME, why, SPOOL_STATE_NAME);
    if (renameat(sp->dirfd, SPOOL_STATE_NAME, sp->dirfd, SPOOL_STATE_NAME ".corrupt") != 0)
        log_error("spool: %s/%s: cannot rename: %s", sp->dir, SPOOL_STATE_NAME, strerror(errno));
    return 0;
}

int spool_state_load(spool_t *sp, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = openat(sp->dirfd, SPOOL_STATE_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return corrupt(sp, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < SPOOL_STATE_HEADER_SIZE ||
        (uint64_t)st.st_size > SPOOL_STATE_HEADER_SIZE + (uint64_t)SPOOL_STATE_MAX) {
        close(fd);
        return corrupt(sp, "bad size");
    }
    size_t n = (size_t)st.st_size;
    uint8_t *file = malloc(n);
    if (!file) {
        close(fd);
        return SPOOL_ENOMEM;
    }
    ssize_t got = spool_read_all(fd, file, n, 0);
    close(fd);
    if (got != (ssize_t)n || !spool_state_valid(file, n)) {
        free(file);
        return corrupt(sp, got != (ssize_t)n ? "cannot read" : "bad checksum");
    }
    sp->state_bytes = n;
    memmove(file, file + SPOOL_STATE_HEADER_SIZE, n - SPOOL_STATE_HEADER_SIZE);
    *buf = file;
    *len = n - SPOOL_STATE_HEADER_SIZE;
    return 0;
}
