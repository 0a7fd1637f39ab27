/* The spooler's checkpoint (spooler_ckpt.h): throttled, and off the loop
 * thread as the group commit's fdatasync (spooler_task.h). */
#include "spooler_ckpt.h"

#include "spooler_task.h"

#include <stdlib.h>

#include "util/log.h"

struct spooler_ckpt {
    spool_t *sp;
    spooler_work_fn work;
    void *work_ud;
    spooler_task_t *inflight;
    spool_confirm_job_t *job;
    uint64_t last_ms; /* when the last job started */
    bool started;
};

spooler_ckpt_t *spooler_ckpt_new(spool_t *sp) {
    spooler_ckpt_t *c = calloc(1, sizeof(*c));
    if (c)
        c->sp = sp;
    return c;
}

void spooler_ckpt_set_worker(spooler_ckpt_t *c, spooler_work_fn work, void *ud) {
    c->work = work;
    c->work_ud = ud;
}

void spooler_ckpt_confirm(spooler_ckpt_t *c, uint64_t seq) {
    /* seq came from the feed's window: it was read (SPOOL_EINVAL cannot be). */
    spool_confirm_note(c->sp, seq);
}

static void failed(int rc) {
    static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool checkpoint", 10, 10000);
    log_ratelimited(&rl, LOG_WARN, "spool: writing the checkpoint failed: %s (retried)",
                    spool_strerror(rc));
}

static void run(void *arg) {
    spool_confirm_run(((spooler_ckpt_t *)arg)->job);
}

static void finish(void *arg, bool from_worker) {
    (void)from_worker;
    spooler_ckpt_t *c = arg;
    int rc = spool_confirm_end(c->sp, c->job);
    c->inflight = NULL;
    if (rc != 0)
        failed(rc);
}

/* Starts the job: on the worker when there is one, here otherwise. */
static void start(spooler_ckpt_t *c) {
    spool_stats_t ss;
    spool_stats(c->sp, &ss);
    spool_confirm_job_t *job;
    int rc = spool_confirm_begin(c->sp, ss.confirmed_seq, &job);
    if (rc != 0 || !job) {
        if (rc != 0)
            failed(rc);
        return;
    }
    c->job = job;
    if ((c->inflight = spooler_task_start(c->work, c->work_ud, run, finish, c)))
        return;
    spool_confirm_run(job);
    rc = spool_confirm_end(c->sp, job);
    if (rc != 0)
        failed(rc);
}

void spooler_ckpt_turn(spooler_ckpt_t *c, uint64_t now_ms, bool force, bool full) {
    /* A full spool (and shutdown) writes here and now, the newest segment
     * deleted in the same call once drained: the space is back before the
     * confirmation shows (mqtt2kafka_spool_records), as a refused client
     * may expect. */
    force = force || full;
    if (c->inflight) {
        if (!force)
            return;
        spooler_task_wait(c->inflight);
    }
    bool drained = spool_drained(c->sp);
    if (!drained && !spool_checkpoint_behind(c->sp))
        return;
    if (force) {
        spool_stats_t ss;
        spool_stats(c->sp, &ss);
        int rc = spool_confirm(c->sp, ss.confirmed_seq);
        if (rc != 0)
            failed(rc);
        return;
    }
    if (!drained && c->started && now_ms - c->last_ms < SPOOLER_CHECKPOINT_MS)
        return;
    c->started = true;
    c->last_ms = now_ms;
    start(c);
}

void spooler_ckpt_free(spooler_ckpt_t *c) {
    if (!c)
        return;
    if (c->inflight)
        spooler_task_wait(c->inflight);
    free(c);
}
