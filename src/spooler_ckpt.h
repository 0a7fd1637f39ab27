/* The spooler's checkpoint (spooler.c): what Kafka confirmed counts in the
 * spool at once (its reader, its stats); the checkpoint file and the deletion
 * of drained segments follow at most every SPOOLER_CHECKPOINT_MS, at once
 * when a segment is drained (its space comes back), on the spooler's worker
 * when it has one (spool_confirm_begin / run / end); while the spool is full
 * at each turn on the caller's thread. A crash re-sends what
 * Kafka confirmed since the last checkpoint (docs/semantics.md). One thread
 * (the spooler's). */
#ifndef M2K_SPOOLER_CKPT_H
#define M2K_SPOOLER_CKPT_H

#include "spooler.h"

typedef struct spooler_ckpt spooler_ckpt_t;

/* NULL: no memory. */
spooler_ckpt_t *spooler_ckpt_new(spool_t *sp);
void spooler_ckpt_set_worker(spooler_ckpt_t *c, spooler_work_fn work, void *ud);
/* Everything <= seq reached Kafka: counts at once. */
void spooler_ckpt_confirm(spooler_ckpt_t *c, uint64_t seq);
/* Once per turn: starts the checkpoint's write and the deletions when due
 * (now_ms: a monotonic clock). force (shutdown), or full (the spool refused
 * a record): waits for a job in flight, then writes and deletes here and
 * now (spool_confirm), so a full spool's space is back in the turn that
 * confirmed it. */
void spooler_ckpt_turn(spooler_ckpt_t *c, uint64_t now_ms, bool force, bool full);
/* Waits for a job in flight (its result is dropped: the next start writes
 * the checkpoint again if it failed). */
void spooler_ckpt_free(spooler_ckpt_t *c);

#endif
