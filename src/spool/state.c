/* The caller's state file beside the segments (spool.h, spool_state_save
 * and its parts for a save on another thread). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_internal.h"

struct spool_state_job {
    int dirfd; /* a duplicate: the owner may close the spool meanwhile */
    int (*datasync)(int fd);
    uint8_t *file; /* the framed state */
    size_t len;
    /* run's result: 0, or the errno of the step that failed (step: what
     * failed on state.tmp; NULL: the fsync of the directory). */
    int err;
    const char *step;
};

int spool_state_begin(spool_t *sp, const void *buf, size_t len, spool_state_job_t **out) {
    *out = NULL;
    if (len > SPOOL_STATE_MAX)
        return SPOOL_EINVAL;
    spool_state_job_t *job = calloc(1, sizeof(*job));
    uint8_t *file = malloc(SPOOL_STATE_HEADER_SIZE + len);
    int fd = job && file ? fcntl(sp->dirfd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0) {
        free(file);
        free(job);
        return SPOOL_ENOMEM;
    }
    spool_state_header_encode(file, buf, len);
    if (len)
        memcpy(file + SPOOL_STATE_HEADER_SIZE, buf, len);
    *job = (spool_state_job_t){
        .dirfd = fd, .datasync = sp->datasync, .file = file, .len = SPOOL_STATE_HEADER_SIZE + len};
    *out = job;
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Touches only the job: any thread. */
void spool_state_run(spool_state_job_t *job) {
    int fd = openat(job->dirfd, SPOOL_STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        job->step = "cannot create";
    } else if (write_all(fd, job->file, job->len) != 0) {
        job->step = "cannot write";
    } else if (job->datasync(fd) != 0) {
        job->step = "fdatasync failed";
    } else {
        close(fd);
        fd = -1;
        if (renameat(job->dirfd, SPOOL_STATE_TMP, job->dirfd, SPOOL_STATE_NAME) != 0)
            job->step = "cannot rename to " SPOOL_STATE_NAME;
        else if (fsync(job->dirfd) != 0)
            job->step = NULL; /* the directory */
        else
            return;
    }
    job->err = errno ? errno : EIO;
    if (fd >= 0) {
        close(fd);
        unlinkat(job->dirfd, SPOOL_STATE_TMP, 0);
    }
}

int spool_state_end(spool_t *sp, spool_state_job_t *job, char *why, size_t cap) {
    int rc = 0;
    if (job->err) {
        rc = spool_io_code(job->err);
        if (why && cap && job->step)
            snprintf(why, cap, "%s/%s: %s: %s", sp->dir, SPOOL_STATE_TMP, job->step,
                     strerror(job->err));
        else if (why && cap)
            snprintf(why, cap, "%s: fsync of the directory failed: %s", sp->dir,
                     strerror(job->err));
    } else {
        /* Counted, never refused at max_bytes: it is bounded by the
         * sessions' QoS 2 windows, and without it a resend would go to
         * Kafka twice. */
        sp->state_bytes = job->len;
    }
    close(job->dirfd);
    free(job->file);
    free(job);
    return rc;
}

int spool_state_save(spool_t *sp, const void *buf, size_t len) {
    spool_state_job_t *job;
    int rc = spool_state_begin(sp, buf, len, &job);
    if (rc != 0)
        return rc;
    spool_state_run(job);
    char why[256];
    rc = spool_state_end(sp, job, why, sizeof(why));
    if (rc != 0)
        log_error("spool: saving the state failed: %s", why);
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
