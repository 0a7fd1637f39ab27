/* A job of the spooler's on its worker (spooler_set_worker): the group
 * commit's sync (spooler.c) and the checkpoint (spooler_ckpt.c). run(arg)
 * runs there, then finish(arg, true) on the owner's thread, once. The owner
 * may take the result first (spooler_task_wait: shutdown, free): it waits
 * for run to return and calls finish(arg, false) itself; the worker's done
 * then only frees the task, which so outlives its owner. */
#ifndef M2K_SPOOLER_TASK_H
#define M2K_SPOOLER_TASK_H

#include "spooler.h"

typedef struct spooler_task spooler_task_t;

/* NULL when there is no worker (work NULL) or nothing was queued: the caller
 * runs the job itself. */
spooler_task_t *spooler_task_start(spooler_work_fn work, void *ud, void (*run)(void *arg),
                                   void (*finish)(void *arg, bool from_worker), void *arg);
/* Waits for run (one fdatasync or checkpoint: milliseconds), then finishes
 * the job here. The owner does not touch t afterwards. */
void spooler_task_wait(spooler_task_t *t);

#endif
