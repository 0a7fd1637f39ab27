/* Work off the loop thread: libuv's threadpool, one request per call; and
 * the transports' jobs (TLS handshake steps), at most
 * mqtt.max_tls_handshake_workers of them on the threadpool at once. */
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

/* ---- the transports' jobs ------------------------------------------------------ */

static void job_work(void *arg) {
    net_job_t *j = arg;
    j->work(j->arg);
}

static void job_pump(server_t *s);

static void job_done(void *arg) {
    net_job_t *j = arg;
    server_t *s = j->s;
    s->jobs_running--;
    j->running = false;
    job_pump(s); /* the next one starts before this one's done() runs */
    j->done(j->arg);
}

/* Starts waiting jobs while workers are free. */
static void job_pump(server_t *s) {
    list_t *n;
    /* The queue first: at server_free's drain it is empty and the
     * configuration may be gone. */
    uint32_t max = config_share(s->cfg->mqtt.max_tls_handshake_workers, s->o.workers);
    while ((n = list_first(&s->jobs)) && s->jobs_running < max) {
        net_job_t *j = LIST_ENTRY(n, net_job_t, node);
        list_remove(n);
        j->running = true;
        s->jobs_running++;
        if (server_work(s, job_work, job_done, j) != 0) {
            /* No memory for the request: run on the loop, as before. */
            j->work(j->arg);
            s->jobs_running--;
            j->running = false;
            j->done(j->arg);
        }
    }
}

void net_job_submit(conn_t *c, net_job_t *j) {
    server_t *s = c->l->srv;
    j->s = s;
    j->running = false;
    list_insert_tail(&s->jobs, &j->node);
    job_pump(s);
}

bool net_job_cancel(net_job_t *j) {
    if (j->running)
        return false;
    list_remove(&j->node);
    return true;
}
