/* What Kafka confirmed (spool.h: spool_confirm, and its parts for the I/O on
 * another thread): the confirmation in memory at once; the checkpoint file
 * (temp file, fdatasync, rename, fsync of the directory) and the deletion of
 * drained segments as a job that touches nothing of the spool. */
#include "spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct spool_confirm_job {
    int dirfd; /* the spool's (it stays open until the job's end) */
    bool write;
    uint64_t seq; /* the checkpoint to write, when write */
    uint8_t buf[SPOOL_CHECKPOINT_SIZE];
    uint64_t *bases; /* the drained segments to delete, oldest first */
    int *errs;       /* run's errno for each of them (0: deleted) */
    size_t nbases, cap;
    /* run's results: the checkpoint's failure (0: none) and what failed;
     * the directory's fsync. */
    int ckpt_err, dir_err;
    bool ckpt_renaming;
};

/* How many segments from the oldest are drained: a sealed one when the next
 * starts after the confirmed record; the newest when everything appended is
 * confirmed and synced and a durable checkpoint says so (it then carries the
 * sequence numbers on; the next append starts a new segment). Never past the
 * reader. */
static size_t drained(const spool_t *sp) {
    size_t n = 0;
    while (n < sp->nsegs && n < sp->r_seg + 1) {
        bool sealed = n + 1 < sp->nsegs;
        if (sealed ? sp->segs[n + 1].base - 1 > sp->confirmed
                   : (sp->ckpt_seq != sp->confirmed || sp->confirmed + 1 < sp->next_seq ||
                      sp->dirty || sp->nsegs != sp->sync_nsegs))
            break;
        n++;
    }
    return n;
}

bool spool_drained(const spool_t *sp) {
    return drained(sp) > 0;
}

bool spool_checkpoint_behind(const spool_t *sp) {
    return sp->ckpt_seq != sp->confirmed;
}

int spool_confirm_note(spool_t *sp, uint64_t seq) {
    if (seq > sp->confirmed) {
        if (seq > sp->r_last)
            return SPOOL_EINVAL;
        sp->confirmed = seq;
        while (sp->tsq_len > 0 && sp->tsq[sp->tsq_head].seq <= seq) {
            sp->tsq_head = (sp->tsq_head + 1) % sp->tsq_cap;
            sp->tsq_len--;
        }
    }
    return 0;
}

static int confirm_begin(spool_t *sp, uint64_t seq, spool_confirm_job_t **out) {
    *out = NULL;
    int rc = spool_confirm_note(sp, seq);
    if (rc != 0)
        return rc;
    /* Drained sealed segments go whether or not the checkpoint can be
     * written (recovery takes every record before the oldest segment as
     * confirmed): on a full disk that is how space comes back. */
    size_t n = drained(sp);
    bool write = sp->ckpt_seq != sp->confirmed;
    if (!write && n == 0)
        return 0;
    if (!sp->cjob && !(sp->cjob = calloc(1, sizeof(*sp->cjob))))
        return SPOOL_ENOMEM;
    spool_confirm_job_t *job = sp->cjob;
    if (n > job->cap) {
        uint64_t *b = realloc(job->bases, n * sizeof(*b));
        if (b)
            job->bases = b;
        int *e = b ? realloc(job->errs, n * sizeof(*e)) : NULL;
        if (!e)
            return SPOOL_ENOMEM;
        job->errs = e;
        job->cap = n;
    }
    job->dirfd = sp->dirfd;
    job->write = write;
    job->seq = sp->confirmed;
    spool_checkpoint_encode(job->buf, job->seq);
    job->ckpt_err = job->dir_err = 0;
    job->ckpt_renaming = false;
    job->nbases = n;
    if (n > 0) {
        spool_reader_dropped(sp, n);
        for (size_t i = 0; i < n; i++) {
            job->bases[i] = sp->segs[0].base;
            spool_seg_drop(sp, 0);
        }
        sp->sync_nsegs -= n;
        if (sp->sync_nsegs == 0)
            sp->sync_off = 0;
    }
    sp->cjob_busy = true;
    *out = job;
    return 0;
}

static int write_ckpt(spool_confirm_job_t *job) {
    int fd =
        openat(job->dirfd, SPOOL_CHECKPOINT_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    ssize_t w = pwrite(fd, job->buf, sizeof(job->buf), 0);
    int err = w == (ssize_t)sizeof(job->buf) ? 0 : w < 0 ? errno : EIO;
    if (err == 0 && fdatasync(fd) != 0)
        err = errno;
    close(fd);
    if (err != 0)
        unlinkat(job->dirfd, SPOOL_CHECKPOINT_TMP, 0);
    return err;
}

void spool_confirm_run(spool_confirm_job_t *job) {
    if (job->write && (job->ckpt_err = write_ckpt(job)) == 0 &&
        renameat(job->dirfd, SPOOL_CHECKPOINT_TMP, job->dirfd, SPOOL_CHECKPOINT_NAME) != 0) {
        job->ckpt_err = errno;
        job->ckpt_renaming = true;
    }
    for (size_t i = 0; i < job->nbases; i++) {
        char name[SPOOL_SEG_NAME_LEN + 1];
        spool_seg_name(name, job->bases[i]);
        job->errs[i] = unlinkat(job->dirfd, name, 0) == 0 ? 0 : errno;
    }
    /* One fsync of the directory covers the rename and the deletions. */
    if ((job->write && job->ckpt_err == 0) || job->nbases > 0)
        job->dir_err = fsync(job->dirfd) == 0 ? 0 : errno;
}

int spool_confirm_end(spool_t *sp, spool_confirm_job_t *job) {
    sp->cjob_busy = false;
    int rc = 0;
    if (job->write && job->ckpt_err) {
        if (job->ckpt_renaming)
            log_error("spool: %s/%s: cannot rename: %s", sp->dir, SPOOL_CHECKPOINT_TMP,
                      strerror(job->ckpt_err));
        else
            log_ratelimited(&sp->rl_write, LOG_WARN, "spool: %s/%s: cannot write: %s", sp->dir,
                            SPOOL_CHECKPOINT_TMP, strerror(job->ckpt_err));
        rc = spool_io_code(job->ckpt_err);
    }
    for (size_t i = 0; i < job->nbases; i++)
        if (job->errs[i]) {
            char name[SPOOL_SEG_NAME_LEN + 1];
            spool_seg_name(name, job->bases[i]);
            log_error("spool: %s/%s: cannot delete: %s", sp->dir, name, strerror(job->errs[i]));
        }
    if (job->dir_err) {
        log_error("spool: %s: fsync of the directory failed: %s", sp->dir, strerror(job->dir_err));
        if (rc == 0)
            rc = SPOOL_EIO;
    }
    /* A checkpoint is durable once the directory's fsync after its rename
     * returned. */
    if (job->write && rc == 0)
        sp->ckpt_seq = job->seq;
    return rc;
}

void spool_confirm_job_free(spool_confirm_job_t *job) {
    if (!job)
        return;
    free(job->bases);
    free(job->errs);
    free(job);
}

int spool_confirm(spool_t *sp, uint64_t seq) {
    spool_confirm_job_t *job;
    int rc = spool_confirm_begin(sp, seq, &job);
    if (rc != 0 || !job)
        return rc;
    spool_confirm_run(job);
    rc = spool_confirm_end(sp, job);
    /* The newest segment goes once the checkpoint that covers it is durable:
     * now, in the same call. */
    if (rc == 0 && spool_drained(sp) && spool_confirm_begin(sp, seq, &job) == 0 && job) {
        spool_confirm_run(job);
        rc = spool_confirm_end(sp, job);
    }
    return rc;
}

int spool_confirm_begin(spool_t *sp, uint64_t seq, spool_confirm_job_t **out) {
    int rc = confirm_begin(sp, seq, out);
    spool_publish(sp);
    return rc;
}
