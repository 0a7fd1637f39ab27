/* Work off the loop thread: libuv's threadpool, one request per call. */
#include <stdlib.h>

#include "conn.h"

typedef struct {
    uv_work_t req;
    server_t *s;
    void (*work)(void *arg);
    void (*done)(void *arg);
    void *arg;
} work_t;

static void on_work(uv_work_t *req) {
    work_t *w = req->data;
    w->work(w->arg);
}

static void on_work_done(uv_work_t *req, int status) {
    (void)status; /* never cancelled: done() always follows work() */
    work_t *w = req->data;
    w->s->work_pending--;
    net_set_now(w->s);
    w->done(w->arg);
    free(w);
}

int server_work(server_t *s, void (*work)(void *arg), void (*done)(void *arg), void *arg) {
    work_t *w = malloc(sizeof(*w));
    if (!w)
        return -1;
    *w = (work_t){.s = s, .work = work, .done = done, .arg = arg};
    w->req.data = w;
    if (uv_queue_work(&s->loop, &w->req, on_work, on_work_done) != 0) {
        free(w);
        return -1;
    }
    s->work_pending++;
    return 0;
}

void net_work_drain(server_t *s) {
    while (s->work_pending)
        uv_run(&s->loop, UV_RUN_ONCE);
}
