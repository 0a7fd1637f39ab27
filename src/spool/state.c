/* The caller's state beside the segments (spool.h, spool_state_*): two slot
 * files, state.0 and state.1, each one state slot (format.h) with a
 * generation. A save writes the slot the newest does not hold, in place,
 * and fdatasyncs it: one flush, no rename and no fsync of the directory
 * (but once, after it created the file). A load takes the valid slot with
 * the highest generation, so a save cut short by a crash leaves the one
 * before it. The file `state` that daemons before the slots wrote is read
 * when no slot is valid, and removed with the first slot save. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_internal.h"

static const char *const SLOT_NAME[2] = {SPOOL_STATE_SLOT0_NAME, SPOOL_STATE_SLOT1_NAME};

struct spool_state_job {
    int dirfd; /* a duplicate: the owner may close the spool meanwhile */
    int (*datasync)(int fd);
    uint8_t *file; /* the slot */
    size_t len;
    uint64_t gen;
    int slot;
    bool sync_dir;    /* the slot file is new, or not known synced: fsync the directory */
    bool drop_legacy; /* remove the file `state` once the slot is durable */
    /* run's result: 0, or the errno of the step that failed (step: what
     * failed on the slot file; NULL: the fsync of the directory). */
    int err;
    const char *step;
    bool legacy_gone;
};

bool spool_state_file(const char *name) {
    return strcmp(name, SPOOL_STATE_NAME) == 0 || strcmp(name, SLOT_NAME[0]) == 0 ||
           strcmp(name, SLOT_NAME[1]) == 0;
}

static void count(spool_t *sp) {
    sp->state_bytes = sp->state_slot_bytes[0] + sp->state_slot_bytes[1] + sp->state_legacy_bytes;
}

int spool_state_begin(spool_t *sp, const void *buf, size_t len, spool_state_job_t **out) {
    *out = NULL;
    if (len > SPOOL_STATE_MAX)
        return SPOOL_EINVAL;
    spool_state_job_t *job = calloc(1, sizeof(*job));
    uint8_t *file = malloc(SPOOL_STATE_SLOT_HEADER_SIZE + len);
    int fd = job && file ? fcntl(sp->dirfd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0) {
        free(file);
        free(job);
        return SPOOL_ENOMEM;
    }
    uint64_t gen = sp->state_gen + 1;
    spool_state_slot_encode(file, gen, buf, len);
    if (len)
        memcpy(file + SPOOL_STATE_SLOT_HEADER_SIZE, buf, len);
    int slot = (int)(gen & 1);
    *job = (spool_state_job_t){.dirfd = fd,
                               .datasync = sp->datasync,
                               .file = file,
                               .len = SPOOL_STATE_SLOT_HEADER_SIZE + len,
                               .gen = gen,
                               .slot = slot,
                               .sync_dir = !sp->state_slot_synced[slot],
                               .drop_legacy = sp->state_legacy};
    *out = job;
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len) {
    off_t off = 0;
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Touches only the job: any thread. */
void spool_state_run(spool_state_job_t *job) {
    int fd = openat(job->dirfd, SLOT_NAME[job->slot], O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) { /* a new file: its directory entry is synced too */
        job->sync_dir = true;
        fd = openat(job->dirfd, SLOT_NAME[job->slot], O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    }
    if (fd < 0) {
        job->step = "cannot open";
    } else if (write_all(fd, job->file, job->len) != 0) {
        job->step = "cannot write";
    } else if (job->datasync(fd) != 0) {
        job->step = "fdatasync failed";
    } else {
        close(fd);
        if (job->sync_dir && fsync(job->dirfd) != 0) {
            job->step = NULL;
            job->err = errno ? errno : EIO;
            return;
        }
        /* Best effort: a valid slot is read before the file `state`. */
        if (job->drop_legacy && (unlinkat(job->dirfd, SPOOL_STATE_NAME, 0) == 0 || errno == ENOENT))
            job->legacy_gone = fsync(job->dirfd) == 0;
        return;
    }
    job->err = errno ? errno : EIO;
    if (fd >= 0)
        close(fd);
}

/* The slot file's size (0 when there is none). */
static uint64_t slot_size(spool_t *sp, int slot) {
    struct stat st;
    return fstatat(sp->dirfd, SLOT_NAME[slot], &st, 0) == 0 ? (uint64_t)st.st_size : 0;
}

static int state_end(spool_t *sp, spool_state_job_t *job, char *why, size_t cap) {
    int rc = 0;
    if (job->err) {
        /* The slot written may be torn now: the other one holds the last
         * save, and the next save writes this one again. */
        rc = spool_io_code(job->err);
        if (why && cap && job->step)
            snprintf(why, cap, "%s/%s: %s: %s", sp->dir, SLOT_NAME[job->slot], job->step,
                     strerror(job->err));
        else if (why && cap)
            snprintf(why, cap, "%s: fsync of the directory failed: %s", sp->dir,
                     strerror(job->err));
    } else {
        sp->state_gen = job->gen;
        sp->state_slot_synced[job->slot] = true;
        if (job->legacy_gone) {
            sp->state_legacy = false;
            sp->state_legacy_bytes = 0;
        }
    }
    /* Counted, never refused at max_bytes: it is bounded by the sessions'
     * QoS 2 windows, and without it a resend would go to Kafka twice. */
    sp->state_slot_bytes[job->slot] = slot_size(sp, job->slot);
    count(sp);
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

static void corrupt(spool_t *sp, const char *name, const char *why) {
    log_error("spool: %s/%s: %s: moved aside as %s.corrupt (its QoS 2 ids are lost: a resend "
              "of those messages goes to Kafka again)",
              sp->dir, name, why, name);
    char aside[32];
    snprintf(aside, sizeof(aside), "%s.corrupt", name);
    if (renameat(sp->dirfd, name, sp->dirfd, aside) != 0)
        log_error("spool: %s/%s: cannot rename: %s", sp->dir, name, strerror(errno));
}

/* A whole file of at most max bytes into *out (malloc'ed): 0; ENOENT; or
 * SPOOL_ENOMEM; any other failure: *why says what, *out NULL. */
static int read_file(spool_t *sp, const char *name, uint64_t max, uint8_t **out, size_t *len,
                     const char **why) {
    *out = NULL;
    *len = 0;
    *why = NULL;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ENOENT;
        *why = strerror(errno);
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > max) {
        close(fd);
        *why = "bad size";
        return 0;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *file = malloc(n ? n : 1);
    if (!file) {
        close(fd);
        return SPOOL_ENOMEM;
    }
    ssize_t got = spool_read_all(fd, file, n, 0);
    close(fd);
    if (got != (ssize_t)n) {
        free(file);
        *why = "cannot read";
        return 0;
    }
    *out = file;
    *len = n;
    return 0;
}

/* The file `state` of the daemons before the slots. */
static int load_legacy(spool_t *sp, uint8_t **buf, size_t *len) {
    uint8_t *file;
    size_t n;
    const char *why;
    int rc = read_file(sp, SPOOL_STATE_NAME, SPOOL_STATE_HEADER_SIZE + (uint64_t)SPOOL_STATE_MAX,
                       &file, &n, &why);
    if (rc == ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    if (file && !spool_state_valid(file, n)) {
        free(file);
        file = NULL;
        why = n < SPOOL_STATE_HEADER_SIZE ? "bad size" : "bad checksum";
    }
    if (!file) {
        corrupt(sp, SPOOL_STATE_NAME, why);
        return 0;
    }
    sp->state_legacy = true;
    sp->state_legacy_bytes = n;
    memmove(file, file + SPOOL_STATE_HEADER_SIZE, n - SPOOL_STATE_HEADER_SIZE);
    *buf = file;
    *len = n - SPOOL_STATE_HEADER_SIZE;
    return 0;
}

static int state_load(spool_t *sp, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    uint8_t *file[2] = {NULL, NULL};
    size_t n[2] = {0, 0}, plen[2] = {0, 0};
    uint64_t gen[2] = {0, 0};
    const char *why[2] = {NULL, NULL};
    bool valid[2] = {false, false};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        int r = read_file(sp, SLOT_NAME[i],
                          SPOOL_STATE_SLOT_HEADER_SIZE + (uint64_t)SPOOL_STATE_MAX + (1u << 20),
                          &file[i], &n[i], &why[i]);
        if (r == SPOOL_ENOMEM)
            rc = r;
        else if (file[i] && n[i] > 0 &&
                 !(valid[i] = spool_state_slot_decode(file[i], n[i], &gen[i], &plen[i])))
            why[i] = "bad checksum";
        sp->state_slot_bytes[i] = r == ENOENT || why[i] ? 0 : n[i];
    }
    int best = valid[0] && (!valid[1] || gen[0] > gen[1]) ? 0 : valid[1] ? 1 : -1;
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (!why[i])
            continue;
        if (best >= 0) {
            /* A save cut short: written again by the next save. */
            log_warn("spool: %s/%s: %s (a save cut short): the state saved before it is used",
                     sp->dir, SLOT_NAME[i], why[i]);
            sp->state_slot_bytes[i] = n[i];
        } else {
            corrupt(sp, SLOT_NAME[i], why[i]);
        }
    }
    if (rc == 0 && best >= 0) {
        sp->state_gen = gen[best];
        memmove(file[best], file[best] + SPOOL_STATE_SLOT_HEADER_SIZE, plen[best]);
        *buf = file[best];
        *len = plen[best];
        file[best] = NULL;
        /* A file `state` beside valid slots is older than they are. */
        struct stat st;
        if (fstatat(sp->dirfd, SPOOL_STATE_NAME, &st, 0) == 0) {
            sp->state_legacy = true;
            sp->state_legacy_bytes = (uint64_t)st.st_size;
        }
    } else if (rc == 0) {
        rc = load_legacy(sp, buf, len);
    }
    free(file[0]);
    free(file[1]);
    count(sp);
    return rc;
}

int spool_state_end(spool_t *sp, spool_state_job_t *job, char *why, size_t cap) {
    int rc = state_end(sp, job, why, cap);
    spool_publish(sp);
    return rc;
}

int spool_state_load(spool_t *sp, uint8_t **buf, size_t *len) {
    int rc = state_load(sp, buf, len);
    spool_publish(sp);
    return rc;
}
