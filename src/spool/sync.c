/* The group commit (spool.h: spool_sync, and its parts for a sync on another
 * thread): write the buffer, fdatasync every segment written since the last
 * sync (through duplicated descriptors, so the owner may close or delete
 * segments meanwhile), fsync the directory after a segment was created,
 * then publish the sync point. */
#include "spool_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct spool_sync_job {
    int (*datasync)(int fd);
    int *fds; /* segments written since the last sync, oldest first; then the directory */
    uint64_t *bases;
    size_t nfds, cap;
    bool dir; /* fds[nfds - 1] is the directory (fsync) */
    /* The sync point: the newest segment's base and size, the last record. */
    uint64_t base, off, seq, gen;
    /* run's result: 0, or the errno of the first failure and its file. */
    int err;
    size_t failed;
};

static void job_close(spool_sync_job_t *job) {
    for (size_t i = 0; i < job->nfds; i++)
        close(job->fds[i]);
    job->nfds = 0;
}

static int job_add(spool_sync_job_t *job, int fd, uint64_t base) {
    if (job->nfds == job->cap) {
        size_t cap = job->cap ? job->cap * 2 : 4;
        int *f = realloc(job->fds, cap * sizeof(*f));
        if (!f)
            return -1;
        job->fds = f;
        uint64_t *b = realloc(job->bases, cap * sizeof(*b));
        if (!b)
            return -1;
        job->bases = b;
        job->cap = cap;
    }
    int d = dup(fd);
    if (d < 0)
        return -1;
    job->fds[job->nfds] = d;
    job->bases[job->nfds++] = base;
    return 0;
}

/* spool_sync's failure path: the records since the last sync are gone. */
static int lost(spool_t *sp, int err) {
    spool_rollback(sp);
    return spool_io_code(err);
}

static int sync_begin(spool_t *sp, spool_sync_job_t **out, uint64_t *synced_seq_out) {
    *out = NULL;
    if (sp->broken && spool_rollback(sp) != 0)
        return SPOOL_EIO;
    if (sp->group_lost) {
        sp->group_lost = false;
        return sp->lost_code;
    }
    if (!sp->dirty) {
        if (synced_seq_out)
            *synced_seq_out = sp->synced_seq;
        return 0;
    }
    if (spool_flush(sp) != 0) {
        int err = errno;
        if (!sp->group_lost)
            spool_rollback(sp);
        sp->group_lost = false;
        return spool_io_code(err);
    }
    if (!sp->job && !(sp->job = calloc(1, sizeof(*sp->job))))
        return lost(sp, ENOMEM);
    spool_sync_job_t *job = sp->job;
    job->nfds = 0;
    job->err = 0;
    job->datasync = sp->datasync;
    size_t first = sp->sync_nsegs ? sp->sync_nsegs - 1 : 0;
    for (size_t i = first; i < sp->nsegs; i++)
        if (sp->segs[i].fd >= 0 && job_add(job, sp->segs[i].fd, sp->segs[i].base) != 0) {
            int err = errno;
            job_close(job);
            return lost(sp, err);
        }
    job->dir = sp->need_dir_sync;
    if (job->dir && job_add(job, sp->dirfd, 0) != 0) {
        int err = errno;
        job_close(job);
        return lost(sp, err);
    }
    job->base = sp->segs[sp->nsegs - 1].base;
    job->off = sp->segs[sp->nsegs - 1].size;
    job->seq = sp->next_seq - 1;
    job->gen = sp->gen;
    /* Appends from here on are the next group's. */
    sp->dirty = false;
    sp->need_dir_sync = false;
    sp->job_busy = true;
    *out = job;
    return 0;
}

void spool_sync_run(spool_sync_job_t *job) {
    for (size_t i = 0; i < job->nfds; i++) {
        bool dir = job->dir && i + 1 == job->nfds;
        if ((dir ? fsync(job->fds[i]) : job->datasync(job->fds[i])) != 0) {
            job->err = errno ? errno : EIO;
            job->failed = i;
            return;
        }
    }
}

static int sync_end(spool_t *sp, spool_sync_job_t *job, uint64_t *synced_seq_out) {
    sp->job_busy = false;
    int err = job->err;
    if (err) {
        if (job->dir && job->failed + 1 == job->nfds) {
            log_error("spool: %s: fsync of the directory failed: %s", sp->dir, strerror(err));
        } else {
            char name[SPOOL_SEG_NAME_LEN + 1];
            spool_seg_name(name, job->bases[job->failed]);
            log_ratelimited(&sp->rl_write, LOG_WARN, "spool: %s/%s: fdatasync failed: %s", sp->dir,
                            name, strerror(err));
        }
    }
    job_close(job);
    if (job->gen != sp->gen) /* rolled back meanwhile: what it covered is gone */
        return sp->lost_code ? sp->lost_code : SPOOL_EIO;
    if (err) {
        /* The records appended since begin go with the rollback: the next
         * sync reports them. */
        if (sp->next_seq - 1 > job->seq) {
            sp->group_lost = true;
            sp->lost_code = spool_io_code(err);
        }
        return lost(sp, err);
    }
    /* Segments before the newest at begin were whole then: closed now.
     * Confirms may have deleted older segments meanwhile: find it by base. */
    size_t idx = 0;
    while (idx < sp->nsegs && sp->segs[idx].base != job->base)
        idx++;
    for (size_t i = 0; i < idx; i++) {
        if (sp->segs[i].fd >= 0)
            close(sp->segs[i].fd);
        sp->segs[i].fd = -1;
    }
    sp->sync_nsegs = idx + 1;
    sp->sync_off = job->off;
    sp->synced_seq = job->seq;
    if (synced_seq_out)
        *synced_seq_out = sp->synced_seq;
    return 0;
}

void spool_sync_job_free(spool_sync_job_t *job) {
    if (!job)
        return;
    job_close(job);
    free(job->fds);
    free(job->bases);
    free(job);
}

int spool_sync(spool_t *sp, uint64_t *synced_seq_out) {
    spool_sync_job_t *job;
    int rc = spool_sync_begin(sp, &job, synced_seq_out);
    if (rc != 0 || !job)
        return rc;
    spool_sync_run(job);
    return spool_sync_end(sp, job, synced_seq_out);
}

int spool_sync_begin(spool_t *sp, spool_sync_job_t **out, uint64_t *synced_seq_out) {
    int rc = sync_begin(sp, out, synced_seq_out);
    spool_publish(sp);
    return rc;
}

int spool_sync_end(spool_t *sp, spool_sync_job_t *job, uint64_t *synced_seq_out) {
    int rc = sync_end(sp, job, synced_seq_out);
    spool_publish(sp);
    return rc;
}
