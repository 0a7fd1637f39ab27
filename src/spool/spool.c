/* The spool's files: open and recovery, append, group commit, rollback,
 * deletion of segments (spool.h; the checkpoint in confirm.c; the format in
 * format.h; the rules in docs/architecture.md, "Spool"). */
#include "spool_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

const char *spool_strerror(int code) {
    switch (code) {
    case 0:
        return "ok";
    case SPOOL_FULL:
        return "spool full";
    case SPOOL_EMPTY:
        return "spool empty";
    case SPOOL_EINVAL:
        return "invalid argument";
    case SPOOL_EIO:
        return "I/O error";
    case SPOOL_ENOMEM:
        return "out of memory";
    default:
        return "unknown spool error";
    }
}

void spool_seg_name(char out[SPOOL_SEG_NAME_LEN + 1], uint64_t base) {
    snprintf(out, SPOOL_SEG_NAME_LEN + 1, "%020" PRIu64 ".seg", base);
}

/* The disk is full (or refuses to grow the file): the caller stops acking. */
int spool_io_code(int err) {
    return err == ENOSPC || err == EDQUOT || err == EIO || err == EFBIG ? SPOOL_FULL : SPOOL_EIO;
}

static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Reads up to len bytes at off; returns the count read or -1. */
ssize_t spool_read_all(int fd, uint8_t *buf, size_t len, uint64_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

uint64_t spool_seg_limit(const spool_t *sp, size_t i) {
    if (i + 1 < sp->sync_nsegs)
        return sp->segs[i].size;
    if (i + 1 == sp->sync_nsegs)
        return sp->sync_off;
    return 0;
}

int spool_grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void *a = realloc(*arr, c * size);
    if (!a)
        return SPOOL_ENOMEM;
    *arr = a;
    *cap = c;
    return 0;
}

static int segs_push(spool_t *sp, uint64_t base, uint64_t size, int fd) {
    if (spool_grow((void **)&sp->segs, &sp->segs_cap, sp->nsegs, sizeof *sp->segs) != 0)
        return SPOOL_ENOMEM;
    sp->segs[sp->nsegs++] = (spool_segment_t){base, size, fd};
    sp->seg_bytes += size;
    return 0;
}

int spool_sync_dir(spool_t *sp) {
    if (fsync(sp->dirfd) != 0) {
        log_error("spool: %s: fsync of the directory failed: %s", sp->dir, strerror(errno));
        return -1;
    }
    return 0;
}

void spool_seg_drop(spool_t *sp, size_t i) {
    if (sp->segs[i].fd >= 0)
        close(sp->segs[i].fd);
    sp->seg_bytes -= sp->segs[i].size;
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof *sp->segs);
    sp->nsegs--;
}

/* Removes segs[i] (closing and unlinking its file). */
static int seg_remove(spool_t *sp, size_t i) {
    char name[SPOOL_SEG_NAME_LEN + 1];
    spool_seg_name(name, sp->segs[i].base);
    if (sp->segs[i].fd >= 0)
        close(sp->segs[i].fd);
    sp->segs[i].fd = -1;
    int rc = unlinkat(sp->dirfd, name, 0);
    if (rc != 0)
        log_error("spool: %s/%s: cannot delete: %s", sp->dir, name, strerror(errno));
    int err = errno;
    spool_seg_drop(sp, i);
    errno = err;
    return rc;
}

/* Puts the files back to the last sync: segments created since are deleted,
 * the one the sync ended in is truncated to where it ended. */
int spool_rollback(spool_t *sp) {
    spool_cache_clear(sp); /* the buffered records go too */
    bool deleted = false;
    int rc = 0;
    while (sp->nsegs > sp->sync_nsegs) {
        if (seg_remove(sp, sp->nsegs - 1) != 0 && errno != ENOENT)
            rc = -1;
        deleted = true;
    }
    if (sp->nsegs > 0) {
        spool_segment_t *s = &sp->segs[sp->nsegs - 1];
        if (s->size != sp->sync_off) {
            if (ftruncate(s->fd, (off_t)sp->sync_off) != 0 || fdatasync(s->fd) != 0) {
                log_error("spool: %s: cannot truncate a segment back to %" PRIu64 ": %s", sp->dir,
                          sp->sync_off, strerror(errno));
                rc = -1;
            } else {
                sp->seg_bytes -= s->size - sp->sync_off;
                s->size = sp->sync_off;
            }
        }
    }
    if (deleted && spool_sync_dir(sp) != 0)
        rc = -1;
    sp->broken = rc != 0;
    sp->gen++; /* a sync in flight covers records that are gone */
    if (rc == 0) {
        sp->next_seq = sp->synced_seq + 1;
        sp->dirty = false;
        sp->need_dir_sync = false;
    }
    return rc;
}

/* Writes the buffered records (the last chunk's unwritten bytes) to the
 * newest segment. On failure nothing of them stays in the file (they stay
 * buffered) and errno is the write's. */
int spool_flush(spool_t *sp) {
    spool_chunk_t *c = spool_cache_last(sp);
    if (!c || c->written == c->len)
        return 0;
    spool_segment_t *s = &sp->segs[sp->nsegs - 1];
    uint64_t off = c->off + c->written;
    if (write_all(s->fd, c->data + c->written, c->len - c->written, off) == 0) {
        c->written = c->len;
        return 0;
    }
    int err = errno;
    char name[SPOOL_SEG_NAME_LEN + 1];
    spool_seg_name(name, s->base);
    log_ratelimited(&sp->rl_write, LOG_WARN, "spool: %s/%s: cannot write: %s", sp->dir, name,
                    strerror(err));
    /* A partial frame would read as a torn tail: cut it off. */
    if (ftruncate(s->fd, (off_t)off) != 0) {
        log_error("spool: %s/%s: cannot truncate a failed write: %s", sp->dir, name,
                  strerror(errno));
        sp->group_lost = true;
        sp->lost_code = spool_io_code(err);
        spool_rollback(sp);
    }
    errno = err;
    return -1;
}

void spool_publish(spool_t *sp) {
    if (!sp->shared)
        return;
    uint64_t cur = sp->seg_bytes + SPOOL_CHECKPOINT_SIZE + sp->state_bytes;
    if (cur != sp->published)
        atomic_fetch_add(sp->shared, cur - sp->published); /* mod 2^64: also a decrease */
    sp->published = cur;
}

void spool_share_bytes(spool_t *sp, _Atomic uint64_t *total) {
    sp->shared = total;
    sp->published = 0;
    spool_publish(sp);
}

/* Whether add more bytes fit under max_bytes; with a shared total, they
 * are taken in it (given back by the next spool_publish if the append
 * fails after all). */
static bool reserve(spool_t *sp, uint64_t add) {
    if (!sp->shared)
        return sp->seg_bytes + SPOOL_CHECKPOINT_SIZE + sp->state_bytes + add <= sp->max_bytes;
    spool_publish(sp);
    uint64_t cur = atomic_load(sp->shared);
    do {
        if (cur + add > sp->max_bytes)
            return false;
    } while (!atomic_compare_exchange_weak(sp->shared, &cur, cur + add));
    sp->published += add;
    return true;
}

static int append(spool_t *sp, const spool_record_t *rec, uint64_t *seq_out) {
    if (sp->broken && spool_rollback(sp) != 0)
        return SPOOL_EIO;
    size_t body = spool_body_size(rec);
    if (body == 0)
        return SPOOL_EINVAL;
    size_t frame = SPOOL_FRAME_HEADER_SIZE + body;
    spool_segment_t *last = sp->nsegs ? &sp->segs[sp->nsegs - 1] : NULL;
    bool roll =
        !last || (last->size > SPOOL_SEG_HEADER_SIZE && last->size + frame > sp->segment_bytes);
    size_t add = frame + (roll ? SPOOL_SEG_HEADER_SIZE : 0);
    if (sp->max_bytes && !reserve(sp, add))
        return SPOOL_FULL;
    /* Records are buffered in a chunk and written when it is full, at a roll,
     * or by a sync: one pwrite for many small records. */
    spool_chunk_t *c = spool_cache_last(sp);
    bool fresh = roll || !c || c->seg != last->base || c->off + c->len != last->size ||
                 c->len + add > c->cap;
    if (fresh && c && c->written < c->len && spool_flush(sp) != 0)
        return spool_io_code(errno);
    if (sp->group_lost)
        return sp->lost_code;
    if (fresh &&
        !(c = spool_cache_push(sp, roll ? sp->next_seq : last->base, roll ? 0 : last->size, add)))
        return SPOOL_ENOMEM;
    if (roll) {
        char name[SPOOL_SEG_NAME_LEN + 1];
        spool_seg_name(name, sp->next_seq);
        /* O_TRUNC: a file of this name can only be one a failed rollback left. */
        int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0) {
            int err = errno;
            log_ratelimited(&sp->rl_write, LOG_WARN, "spool: %s/%s: cannot create: %s", sp->dir,
                            name, strerror(err));
            spool_cache_pop(sp);
            return spool_io_code(err);
        }
        if (segs_push(sp, sp->next_seq, 0, fd) != 0) {
            close(fd);
            unlinkat(sp->dirfd, name, 0);
            spool_cache_pop(sp);
            return SPOOL_ENOMEM;
        }
        sp->need_dir_sync = true;
        last = &sp->segs[sp->nsegs - 1];
        spool_seg_header_encode(c->data + c->len, sp->next_seq);
        c->len += SPOOL_SEG_HEADER_SIZE;
    }
    spool_frame_encode(c->data + c->len, rec, body, sp->next_seq);
    c->len += frame;
    last->size += add;
    sp->seg_bytes += add;
    sp->dirty = true;
    if (seq_out)
        *seq_out = sp->next_seq;
    sp->next_seq++;
    return 0;
}

int spool_append(spool_t *sp, const spool_record_t *rec, uint64_t *seq_out) {
    int rc = append(sp, rec, seq_out);
    spool_publish(sp);
    return rc;
}

int spool_replace_file(spool_t *sp, const char *name, const char *tmp, const uint8_t *buf,
                       size_t len) {
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || write_all(fd, buf, len, 0) != 0 || fdatasync(fd) != 0) {
        int err = errno;
        log_ratelimited(&sp->rl_write, LOG_WARN, "spool: %s/%s: cannot write: %s", sp->dir, tmp,
                        strerror(err));
        if (fd >= 0)
            close(fd);
        unlinkat(sp->dirfd, tmp, 0);
        return spool_io_code(err);
    }
    close(fd);
    if (renameat(sp->dirfd, tmp, sp->dirfd, name) != 0) {
        int err = errno;
        log_error("spool: %s/%s: cannot rename: %s", sp->dir, tmp, strerror(err));
        return spool_io_code(err);
    }
    return spool_sync_dir(sp) == 0 ? 0 : SPOOL_EIO;
}

void spool_stats(spool_t *sp, spool_stats_t *out) {
    memset(out, 0, sizeof *out);
    out->bytes = sp->seg_bytes + SPOOL_CHECKPOINT_SIZE + sp->state_bytes;
    out->records = sp->next_seq - 1 - sp->confirmed;
    out->corrupt_skipped = sp->corrupt_skipped;
    out->truncations = sp->truncations;
    out->segments = sp->nsegs;
    out->next_seq = sp->next_seq;
    out->synced_seq = sp->synced_seq;
    out->confirmed_seq = sp->confirmed;
    if (sp->tsq_len > 0) {
        out->oldest_timestamp_ms = sp->tsq[sp->tsq_head].ts;
    } else {
        spool_record_t rec;
        uint64_t s;
        if (spool_peek(sp, &rec, &s) == 0)
            out->oldest_timestamp_ms = rec.timestamp_ms;
    }
}

/* ---- open and recovery ---- */

static int open_fail(char *errbuf, size_t errlen, const char *dir, const char *what, int err) {
    snprintf(errbuf, errlen, "%s: %s: %s", dir, what, strerror(err));
    return SPOOL_EIO;
}

static int cmp_seg(const void *a, const void *b) {
    uint64_t x = ((const spool_segment_t *)a)->base, y = ((const spool_segment_t *)b)->base;
    return x < y ? -1 : x > y;
}

static bool parse_seg_name(const char *name, uint64_t *base) {
    if (strlen(name) != SPOOL_SEG_NAME_LEN || strcmp(name + 20, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *base = v;
    return v > 0 && v <= SPOOL_SEQ_MAX;
}

/* Moves a file the spool cannot read out of its way (kept for a human). */
static void set_aside(spool_t *sp, const char *name, const char *why) {
    char aside[SPOOL_SEG_NAME_LEN + 16];
    snprintf(aside, sizeof aside, "%s.corrupt", name);
    log_error("spool: %s/%s: %s: moved aside as %s", sp->dir, name, why, aside);
    if (renameat(sp->dirfd, name, sp->dirfd, aside) != 0)
        log_error("spool: %s/%s: cannot rename: %s", sp->dir, name, strerror(errno));
    sp->corrupt_skipped++;
}

/* Lists the segment files, sorted; sets aside those whose header is wrong. */
static int scan_dir(spool_t *sp) {
    int fd = dup(sp->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t base;
        if (!parse_seg_name(e->d_name, &base)) {
            const char *n = e->d_name;
            size_t l = strlen(n);
            if (strcmp(n, ".") != 0 && strcmp(n, "..") != 0 &&
                strcmp(n, SPOOL_CHECKPOINT_NAME) != 0 && !spool_state_file(n) &&
                strcmp(n, SPOOL_WORKERS_NAME) != 0 && e->d_type != DT_DIR &&
                !(l > 8 && strcmp(n + l - 8, ".corrupt") == 0))
                log_warn("spool: %s/%s: not a spool file: ignored", sp->dir, n);
            continue;
        }
        if (sp->next_seq < base)
            sp->next_seq = base; /* sequence numbers go past every name seen */
        if (segs_push(sp, base, 0, -1) != 0) {
            rc = SPOOL_ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc != 0)
        return rc;
    if (sp->nsegs > 1)
        qsort(sp->segs, sp->nsegs, sizeof *sp->segs, cmp_seg);
    for (size_t i = 0; i < sp->nsegs;) {
        char name[SPOOL_SEG_NAME_LEN + 1];
        spool_seg_name(name, sp->segs[i].base);
        int sfd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        uint8_t hdr[SPOOL_SEG_HEADER_SIZE];
        const char *why = NULL;
        if (sfd < 0 || fstat(sfd, &st) != 0)
            why = "cannot open";
        else if (!S_ISREG(st.st_mode))
            why = "not a regular file";
        else if (st.st_size < SPOOL_SEG_HEADER_SIZE && i + 1 == sp->nsegs)
            why = "torn"; /* created, header not written: a crash at a roll */
        else if (spool_read_all(sfd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
                 !spool_seg_header_valid(hdr, sizeof hdr, sp->segs[i].base))
            why = "not a spool segment (bad header)";
        if (sfd >= 0)
            close(sfd);
        if (!why) {
            sp->segs[i].size = (uint64_t)st.st_size;
            sp->seg_bytes += (uint64_t)st.st_size;
            i++;
            continue;
        }
        if (strcmp(why, "torn") == 0) {
            log_warn("spool: %s/%s: torn at offset 0 (%lld bytes, no header): deleted", sp->dir,
                     name, (long long)st.st_size);
            unlinkat(sp->dirfd, name, 0);
            sp->truncations++;
        } else {
            set_aside(sp, name, why);
        }
        memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof *sp->segs);
        sp->nsegs--;
    }
    return 0;
}

/* Scans the newest segment: truncates a torn or corrupt tail, skips corrupt
 * records before a valid one, finds the highest sequence number. Returns 0
 * (*highest = 0 when it holds no record), or -1 (errno). */
static int recover_newest(spool_t *sp, uint64_t *highest) {
    spool_segment_t *s = &sp->segs[sp->nsegs - 1];
    char name[SPOOL_SEG_NAME_LEN + 1];
    spool_seg_name(name, s->base);
    int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* A segment holds at most segment_bytes, or one record past it. */
    uint64_t cap =
        sp->segment_bytes + SPOOL_SEG_HEADER_SIZE + SPOOL_FRAME_HEADER_SIZE + SPOOL_BODY_MAX;
    size_t len = (size_t)(s->size < cap ? s->size : cap);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf || spool_read_all(fd, buf, len, 0) != (ssize_t)len) {
        int err = buf ? errno : ENOMEM;
        free(buf);
        close(fd);
        errno = err;
        return -1;
    }
    size_t off = SPOOL_SEG_HEADER_SIZE;
    uint64_t min_seq = s->base, high = 0;
    const char *tail_why = NULL;
    while (off < len) {
        size_t flen;
        uint64_t seq;
        spool_frame_result_t r = spool_frame_check(buf + off, len - off, min_seq, &flen, &seq);
        if (r == SPOOL_FRAME_OK) {
            high = seq;
            min_seq = seq + 1;
            off += flen;
            continue;
        }
        size_t skip = spool_frame_resync(buf + off, len - off, min_seq);
        if (off + skip < len) {
            log_error("spool: %s/%s: corrupt record at offset %zu (%s): %zu bytes skipped", sp->dir,
                      name, off, r == SPOOL_FRAME_BAD_BODY ? "bad body" : "bad frame", skip);
            sp->corrupt_skipped++;
            off += skip;
            continue;
        }
        tail_why = r == SPOOL_FRAME_SHORT ? "incomplete record" : "corrupt record";
        break;
    }
    if (!tail_why && len < s->size)
        tail_why = "past the segment bound";
    int rc = 0;
    if (tail_why) {
        log_warn("spool: %s/%s: torn tail at offset %zu (%s, %" PRIu64 " bytes): truncated",
                 sp->dir, name, off, tail_why, s->size - off);
        sp->truncations++;
        if (ftruncate(fd, (off_t)off) != 0)
            rc = -1;
        sp->seg_bytes -= s->size - off;
        s->size = off;
    }
    sp->scan_base = s->base;
    sp->scan_end = s->size;
    /* What a killed process left is in the page cache, maybe not on disk:
     * make it durable before appending after it. */
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -1;
    free(buf);
    if (rc != 0 || high == 0) {
        int err = errno;
        close(fd);
        errno = err;
    } else {
        s->fd = fd;
    }
    *highest = high;
    return rc;
}

static void read_checkpoint(spool_t *sp, bool *have, uint64_t *confirmed) {
    *have = false;
    int fd = openat(sp->dirfd, SPOOL_CHECKPOINT_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            log_error("spool: %s/%s: cannot open: %s", sp->dir, SPOOL_CHECKPOINT_NAME,
                      strerror(errno));
        return;
    }
    uint8_t buf[SPOOL_CHECKPOINT_SIZE + 1];
    ssize_t n = spool_read_all(fd, buf, sizeof buf, 0);
    close(fd);
    if (n >= 0 && spool_checkpoint_decode(buf, (size_t)n, confirmed))
        *have = true;
    else
        log_error("spool: %s/%s: corrupt checkpoint: ignored (records are read from the oldest "
                  "segment)",
                  sp->dir, SPOOL_CHECKPOINT_NAME);
}

int spool_check(const char *dir, char *errbuf, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return open_fail(errbuf, errlen, dir, "cannot open the spool directory", ENOTDIR);
        if (access(dir, R_OK | W_OK | X_OK) != 0)
            return open_fail(errbuf, errlen, dir, "the spool directory is not writable", errno);
        return 0;
    }
    if (errno != ENOENT)
        return open_fail(errbuf, errlen, dir, "cannot open the spool directory", errno);
    /* Missing: spool_open creates it (one level) in its parent. */
    char *parent = strdup(dir);
    if (!parent) {
        snprintf(errbuf, errlen, "%s: out of memory", dir);
        return SPOOL_ENOMEM;
    }
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *p = !slash ? "." : slash == parent ? "/" : (*slash = '\0', parent);
    int err = 0;
    if (stat(p, &st) != 0)
        err = errno;
    else if (!S_ISDIR(st.st_mode))
        err = ENOTDIR;
    else if (access(p, W_OK | X_OK) != 0)
        err = errno;
    free(parent);
    return err ? open_fail(errbuf, errlen, dir, "cannot create the spool directory", err) : 0;
}

int spool_open(const spool_options_t *opts, spool_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    spool_t *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->dir = strdup(opts->dir))) {
        free(sp);
        snprintf(errbuf, errlen, "%s: out of memory", opts->dir);
        return SPOOL_ENOMEM;
    }
    sp->dirfd = sp->r_fd = -1;
    sp->datasync = fdatasync;
    sp->max_bytes = opts->max_bytes;
    sp->segment_bytes = opts->segment_bytes ? opts->segment_bytes : SPOOL_SEGMENT_BYTES_DEFAULT;
    sp->rl_write = (log_ratelimit_t)LOG_RATELIMIT_INIT("spool write failed", 10, 10000);
    int rc;
    if (mkdir(sp->dir, 0750) != 0 && errno != EEXIST) {
        rc = open_fail(errbuf, errlen, sp->dir, "cannot create the spool directory", errno);
        goto fail;
    }
    sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        rc = open_fail(errbuf, errlen, sp->dir, "cannot open the spool directory", errno);
        goto fail;
    }
    if (faccessat(sp->dirfd, ".", R_OK | W_OK | X_OK, AT_EACCESS) != 0) {
        rc = open_fail(errbuf, errlen, sp->dir, "the spool directory is not writable", errno);
        goto fail;
    }
    if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
        rc = open_fail(errbuf, errlen, sp->dir, "the spool directory is in use", errno);
        goto fail;
    }
    unlinkat(sp->dirfd, SPOOL_CHECKPOINT_TMP, 0);
    bool have_ckpt;
    uint64_t ckpt = 0;
    read_checkpoint(sp, &have_ckpt, &ckpt);
    if ((rc = scan_dir(sp)) != 0) {
        if (rc != SPOOL_ENOMEM)
            rc = open_fail(errbuf, errlen, sp->dir, "cannot list the spool directory", errno);
        else
            snprintf(errbuf, errlen, "%s: out of memory", sp->dir);
        goto fail;
    }
    uint64_t next = sp->next_seq ? sp->next_seq : 1;
    bool changed = false;
    while (sp->nsegs > 0) {
        uint64_t high;
        if (recover_newest(sp, &high) != 0) {
            rc = open_fail(errbuf, errlen, sp->dir, "cannot recover the newest segment", errno);
            goto fail;
        }
        spool_segment_t *s = &sp->segs[sp->nsegs - 1];
        if (next < s->base)
            next = s->base;
        if (high > 0) {
            if (next < high + 1)
                next = high + 1;
            break;
        }
        /* No record survived: the segment goes, the one before is the newest. */
        seg_remove(sp, sp->nsegs - 1);
        changed = true;
    }
    uint64_t oldest = sp->nsegs ? sp->segs[0].base : next;
    sp->confirmed = have_ckpt && ckpt + 1 >= oldest ? ckpt : oldest - 1;
    sp->ckpt_seq = sp->confirmed;
    if (next < sp->confirmed + 1)
        next = sp->confirmed + 1;
    sp->next_seq = next;
    sp->synced_seq = next - 1;
    sp->sync_nsegs = sp->nsegs;
    sp->sync_off = sp->nsegs ? sp->segs[sp->nsegs - 1].size : 0;
    sp->r_min_seq = 0;
    sp->r_last = sp->confirmed;
    if ((changed || sp->truncations || sp->corrupt_skipped) && spool_sync_dir(sp) != 0) {
        rc = open_fail(errbuf, errlen, sp->dir, "cannot fsync the spool directory", errno);
        goto fail;
    }
    if (sp->nsegs > 0 || sp->truncations || sp->corrupt_skipped)
        log_info("spool: %s: opened: %zu segment(s), %" PRIu64 " bytes, records %" PRIu64
                 "..%" PRIu64 " unconfirmed, %" PRIu64 " corrupt skipped, %" PRIu64 " truncated",
                 sp->dir, sp->nsegs, sp->seg_bytes, sp->confirmed + 1, sp->next_seq - 1,
                 sp->corrupt_skipped, sp->truncations);
    *out = sp;
    return 0;
fail:
    spool_close(sp);
    return rc;
}

void spool_close(spool_t *sp) {
    if (!sp)
        return;
    if (sp->shared)
        atomic_fetch_sub(sp->shared, sp->published);
    for (size_t i = 0; i < sp->nsegs; i++)
        if (sp->segs[i].fd >= 0)
            close(sp->segs[i].fd);
    spool_reader_free(sp);
    if (sp->dirfd >= 0)
        close(sp->dirfd); /* releases the flock */
    free(sp->segs);
    spool_sync_job_free(sp->job);
    spool_confirm_job_free(sp->cjob);
    if (sp->reads_mem || sp->reads_disk)
        log_info("spool: %s: %" PRIu64 " records fed from memory, %" PRIu64 " read from the files",
                 sp->dir, sp->reads_mem, sp->reads_disk);
    spool_cache_free(sp);
    free(sp->dir);
    free(sp);
}
