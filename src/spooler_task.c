/* The spooler's jobs on its worker (spooler_task.h). */
#include "spooler_task.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct spooler_task {
    void (*run)(void *arg);
    void (*finish)(void *arg, bool from_worker);
    void *arg;
    atomic_bool finished; /* run returned (set on the worker) */
    bool consumed;        /* finish was called */
};

static void task_run(void *p) {
    spooler_task_t *t = p;
    t->run(t->arg);
    atomic_store(&t->finished, true);
}

static void task_done(void *p) {
    spooler_task_t *t = p;
    if (!t->consumed) {
        t->consumed = true;
        t->finish(t->arg, true);
    }
    free(t);
}

spooler_task_t *spooler_task_start(spooler_work_fn work, void *ud, void (*run)(void *arg),
                                   void (*finish)(void *arg, bool from_worker), void *arg) {
    if (!work)
        return NULL;
    spooler_task_t *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    *t = (spooler_task_t){.run = run, .finish = finish, .arg = arg};
    atomic_init(&t->finished, false);
    if (work(ud, task_run, task_done, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void spooler_task_wait(spooler_task_t *t) {
    while (!atomic_load(&t->finished))
        nanosleep(&(struct timespec){0, 200000}, NULL);
    t->consumed = true;
    t->finish(t->arg, false);
}
