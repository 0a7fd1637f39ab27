/* Wiring: config -> Kafka producer -> topic map -> sessions -> server; signals,
 * metrics and health, systemd notifications, SIGHUP reload and the ordered
 * shutdown (see daemon.h). */
#include "daemon.h"
#include "daemon_int.h"
#include "daemon_qos2.h"
#include "introspect.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka/producer.h"
#include "util/log.h"
#include "ops/http_server.h"
#include "ops/metrics.h"
#include "ops/sd_notify.h"
#include "auth/security.h"
#include "net/server.h"
#include "mqtt/codec.h"
#include "mqtt/session.h"
#include "map/topic_map.h"
#include "runtime.h"
#include "daemon_metrics.h"

#define METADATA_WAIT_MS 10000
#define METADATA_SLICE_MS 100 /* the longest the metrics listener waits at start */
#define RELOAD_ERRBUF 65536

#define W0(d) ((d)->w[0])

/* ---- systemd notifications ---------------------------------------------- */

static void notify(daemon_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notify(daemon_t *d, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int r = sd_notify_send(msg);
    if (r < 0 && !d->notify_warned) {
        d->notify_warned = true; /* once: the watchdog would repeat it forever */
        log_warn("sd_notify: %s", sd_notify_strerror(r));
    }
}

static void notify_status(daemon_t *d, const char *prefix) {
    char why[256] = "";
    bool up = kafka_reachable(W0(d)->k, why, sizeof(why));
    d->status_kafka_up = up;
    if (up)
        notify(d, "%sSTATUS=serving; Kafka %s reachable", prefix,
               kafka_bootstrap_servers(W0(d)->k));
    else
        notify(d, "%sSTATUS=serving; Kafka unreachable (%s): messages wait in the %s", prefix, why,
               d->spool ? "spool" : "producer queue");
}

static void on_watchdog(void *ud) {
    notify(((worker_t *)ud)->d, "WATCHDOG=1");
}

/* ---- HTTP endpoint ----------------------------------------------------------
 *
 * Each worker counts in its own objects with plain counters; a scrape, a
 * page and /readyz park the other workers (daemon_park) and read them. */

static void collect(worker_t *w, daemon_t *d) {
    /* The consumer's and the retained store's counts are worker 0's alone. */
    daemon_parts_t parts = {w->sm,
                            w->srv,
                            d->sec,
                            w->k,
                            w->auth,
                            w->fwd,
                            d->spool ? d->spools.spools[w->idx] : NULL,
                            w->idx ? NULL : d->dl,
                            d->dl != NULL};
    daemon_metrics_collect(&w->m, &parts);
}

static char *on_metrics(void *ud, size_t *len) {
    daemon_t *d = ud;
    collect(W0(d), d);
    if (d->n_workers == 1)
        return metrics_render_alloc(&W0(d)->m, len);
    daemon_park(d);
    *d->sum = W0(d)->m;
    for (unsigned i = 1; i < d->n_workers; i++) {
        if (!d->w[i] || !d->w[i]->still)
            continue; /* not made yet, or closing its loop (shutdown) */
        collect(d->w[i], d);
        metrics_add(d->sum, &d->w[i]->m);
    }
    daemon_unpark(d);
    d->sum->workers = d->n_workers;
    for (unsigned i = 0; i < d->n_workers && i < METRICS_MAX_WORKERS && d->w[i]; i++) {
        d->sum->worker_accepted[i] = d->w[i]->m.connections_total;
        d->sum->worker_connections[i] = d->w[i]->m.connections;
    }
    return metrics_render_alloc(d->sum, len);
}

static char *on_list(void *ud, int kind, size_t offset, size_t limit, size_t *len) {
    daemon_t *d = ud;
    const session_mgr_t *sm[CONFIG_THREADS_MAX];
    size_t n = 0;
    daemon_park(d);
    for (unsigned i = 0; i < d->n_workers; i++)
        if (i == 0 || (d->w[i] && d->w[i]->still))
            sm[n++] = d->w[i]->sm;
    char *page = introspect_page(sm, n, W0(d)->srv, kind, offset, limit, len);
    daemon_unpark(d);
    return page;
}

static int on_ready(void *ud, char *reason, size_t cap) {
    daemon_t *d = ud;
    char why[256];
    if (d->stopping) {
        snprintf(reason, cap, "shutting down");
        return 0;
    }
    if (d->waiting_kafka) {
        snprintf(reason, cap, "waiting for Kafka metadata from %s",
                 kafka_bootstrap_servers(W0(d)->k));
        return 0;
    }
    if (!d->listening) {
        snprintf(reason, cap, "MQTT listeners not bound yet");
        return 0;
    }
    /* With the spool, records are acked from it whether Kafka is up or not
     * (unless a worker's spool refuses them); without, every worker's
     * producer must reach it. */
    int ready = 1;
    daemon_park(d);
    for (unsigned i = 0; i < d->n_workers && ready; i++) {
        if (i && (!d->w[i] || !d->w[i]->still))
            continue;
        if (d->w[i]->fwd && spooler_stats(d->w[i]->fwd)->full) {
            snprintf(reason, cap, "the spool is full (spool.max_bytes or the disk)");
            ready = 0;
        } else if (!d->spool && !kafka_reachable(d->w[i]->k, why, sizeof(why))) {
            snprintf(reason, cap, "Kafka unreachable: %s", why);
            ready = 0;
        }
    }
    daemon_unpark(d);
    if (ready && d->dl)
        return daemon_downlink_ready(d->dl, reason, cap);
    return ready;
}

/* ---- shutdown: worker 0 tells every worker (worker_begin_shutdown) ---------- */

static int outq_all(daemon_t *d) {
    int n = 0; /* rd_kafka_outq_len may be called from any thread */
    for (unsigned i = 0; i < d->n_workers; i++)
        if (d->w[i]) /* the others are made once the start's wait is over */
            n += kafka_outq_len(d->w[i]->k);
    return n;
}

static void post_begin(void *arg) {
    worker_begin_shutdown(arg, "shutdown");
}

static void post_finish(void *arg) {
    worker_finish_shutdown(arg);
}

static void begin_shutdown(daemon_t *d, const char *why) {
    if (d->stopping)
        return;
    d->stopping = true;
    /* Every worker's spool (the others parked): records, and whether some
     * went to Kafka directly (mode outage) and wait for it. */
    uint64_t kept = 0;
    bool direct = false;
    if (d->spool) {
        daemon_park(d);
        for (unsigned i = 0; i < d->n_workers; i++) {
            if (!d->w[i] || !d->w[i]->fwd || (i && !d->w[i]->still))
                continue;
            spool_stats_t ss;
            spool_stats(d->spools.spools[i], &ss);
            kept += ss.records;
            direct |= spooler_direct_inflight(d->w[i]->fwd) > 0;
        }
        daemon_unpark(d);
    }
    if (d->spool && !direct) {
        /* The final sync (its records are acked); what Kafka has not
         * confirmed stays in the spool for the next start. */
        notify(d, "STOPPING=1\nSTATUS=stopping (%s): the spool keeps %" PRIu64 " records", why,
               kept);
        log_info("%s: stopping; the spool is synced and keeps %" PRIu64
                 " records Kafka has not confirmed for the next start",
                 why, kept);
    } else {
        int outq = outq_all(d);
        notify(d, "STOPPING=1\nSTATUS=stopping (%s): waiting for Kafka to confirm %d messages", why,
               outq);
        log_info("%s: stopping intake; waiting up to %u s for %d messages in flight to Kafka", why,
                 d->cfg->shutdown_timeout_s, outq);
    }
    daemon_post_all(d, post_begin);
    worker_begin_shutdown(W0(d), why);
}

static void fatal_stop(void *arg) {
    begin_shutdown(arg, "fatal Kafka error");
}

void daemon_on_fatal(worker_t *w) {
    if (w->idx == 0)
        begin_shutdown(w->d, "fatal Kafka error");
    else
        server_post(W0(w->d)->srv, fatal_stop, w->d);
}

/* ---- SIGHUP reload ------------------------------------------------------------
 *
 * A reload loads the file again into a new config_t and builds what it needs
 * with the same steps as the start and --check (runtime.c): runtime_prepare
 * builds without touching the running state and may fail, which rejects the
 * whole reload (fail closed: the running files and settings stay); then the
 * settings that need a restart are named (their rows in the settings table
 * say so), runtime_commit swaps the new objects in, and the sessions and the
 * server switch to `next` (limits, unmapped policy, headers, log level and
 * format). All of it runs in one signal callback on worker 0's loop, with
 * the other workers parked (daemon_park) while the new objects are swapped
 * in, so no packet on any worker sees half of a reload.
 *
 * The password/ACL files and the TLS certificates are steps too, so they are
 * read again on every SIGHUP, also when the YAML is unchanged, and a file
 * that does not load rejects the whole reload (the YAML changes included). */

/* The running objects, for runtime_prepare and runtime_commit. */
static runtime_t daemon_runtime(daemon_t *d, server_t *const *more) {
    return (runtime_t){.kafka = &W0(d)->k,
                       .topics = &d->tm,
                       .security = &d->sec,
                       .router = &d->router,
                       .retained = &d->retained,
                       .spool = &d->spool,
                       .server = W0(d)->srv,
                       .more_servers = more,
                       .n_more_servers = d->n_workers - 1,
                       .running = d->started};
}

/* Every error of a rejected configuration, one log line each. */
static void log_error_lines(const char *what, char *errs) {
    for (char *line = strtok(errs, "\n"); line; line = strtok(NULL, "\n"))
        log_error("reload: %s%s%s", what ? what : "", what ? ": " : "", line);
}

static void log_restart_needed(void *ud, const char *msg) {
    (void)ud;
    log_warn("reload: %s", msg);
}

/* The configuration's lint warnings (config_lint), sorted by line, each a
 * warn log line ("reload: " in front during a reload). */
static void log_lint(const config_t *cfg, const char *prefix) {
    char *buf = malloc(RELOAD_ERRBUF);
    if (!buf)
        return;
    buf[0] = '\0';
    if (config_lint(cfg, buf, RELOAD_ERRBUF) > 0) {
        runtime_sort_errors(buf, cfg->path);
        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            log_warn("%s%s", prefix, line);
    }
    free(buf);
}

static void daemon_reload(daemon_t *d) {
    const char *path = d->cfg->path;
    config_t *next = NULL;
    runtime_prep_t *prep = NULL;
    server_t *more[CONFIG_THREADS_MAX];
    for (unsigned i = 1; i < d->n_workers; i++)
        more[i - 1] = d->w[i]->srv;
    runtime_t rt = daemon_runtime(d, more);
    char *err = malloc(RELOAD_ERRBUF);
    notify(d, "RELOADING=1\nSTATUS=reloading %s", path);
    log_info("SIGHUP: reloading %s", path);
    if (!err) {
        log_error("reload: out of memory; the running configuration stays");
        goto fail;
    }
    err[0] = '\0';
    if (config_load(path, &next, err, RELOAD_ERRBUF) != 0) {
        log_error_lines("configuration rejected", err);
        goto fail;
    }
    /* Each line names its step: "auth files: ...", "TLS certificates: ...". */
    if (runtime_prepare(&rt, next, RUNTIME_RELOAD, &prep, err, RELOAD_ERRBUF) != 0) {
        log_error_lines(NULL, err);
        goto fail;
    }
    log_lint(next, "reload: ");
    config_restart_changes(d->started, next, log_restart_needed, NULL);
    daemon_park(d);
    runtime_commit(&rt, prep);
    for (unsigned i = 0; i < d->n_workers; i++) {
        session_mgr_set_config(d->w[i]->sm, next);
        server_set_config(d->w[i]->srv, next);
    }
    log_set_level(next->log_level);
    log_set_format(next->log_format);
    config_t *old = d->owned;
    d->owned = next;
    d->cfg = next;
    daemon_unpark(d);
    config_free(old); /* no worker refers to it any more */
    W0(d)->m.config_reloads++;
    log_info("reload: configuration applied (%zu topic rules, unmapped %s, log level %s)",
             next->n_rules,
             next->unmapped == UNMAPPED_DROP    ? "drop"
             : next->unmapped == UNMAPPED_TOPIC ? "topic"
                                                : "disconnect",
             log_level_name(next->log_level));
    free(err);
    notify_status(d, "READY=1\n");
    return;
fail:
    config_free(next);
    free(err);
    W0(d)->m.config_reload_failures++;
    log_error("reload: the running configuration stays unchanged");
    notify(d, "READY=1\nSTATUS=serving; the last reload failed (see the log)");
}

/* ---- loop callbacks (worker 0) ---------------------------------------------------- */

static void on_downlink_fd(void *ud) {
    worker_t *w = ud;
    daemon_downlink_poll(w->d->dl);
}

/* A worker the consumer waited for caught up (daemon_fanout_room). */
static void on_fanout_resume(void *ud) {
    daemon_t *d = ud;
    if (d->dl)
        daemon_downlink_poll(d->dl);
}

void daemon_tick(daemon_t *d) {
    if (d->dl)
        daemon_downlink_poll(d->dl);
    if (!d->stopping && d->listening && kafka_reachable(W0(d)->k, NULL, 0) != d->status_kafka_up)
        notify_status(d, "");
}

void daemon_on_signal(void *ud, int signum) {
    daemon_t *d = ((worker_t *)ud)->d;
    if (signum == SIGHUP) {
        if (d->waiting_kafka)
            log_warn("SIGHUP while the start waits for Kafka: ignored (reload once started)");
        else if (d->stopping)
            log_warn("SIGHUP during shutdown: ignored");
        else
            daemon_reload(d);
        return;
    }
    if (d->stopping) {
        log_warn("%s again: stopping now", strsignal(signum));
        daemon_post_all(d, post_finish);
        worker_finish_shutdown(W0(d));
        return;
    }
    begin_shutdown(d, strsignal(signum));
}

/* kafka.embedded_port: a relay from the fixed port to the mock cluster's
 * first broker (its ports are the kernel's choice). */
static int embedded_relay(daemon_t *d, char *err, size_t errlen) {
    const char *all = kafka_bootstrap_servers(W0(d)->k);
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(all, ","), all);
    uint16_t port = (uint16_t)d->cfg->kafka_embedded_port;
    if (server_forward(W0(d)->srv, "127.0.0.1", port, first, err, errlen) != 0)
        return -1;
    log_info("embedded Kafka: bootstrap also on 127.0.0.1:%u (relayed to %s); read with: kcat -b "
             "127.0.0.1:%u -C -t <topic>",
             (unsigned)port, first, (unsigned)port);
    return 0;
}

/* The start's wait for Kafka metadata, in slices that let the loop serve the
 * metrics listener and signals in between; 0 once Kafka answered, -1 after
 * METADATA_WAIT_MS or when a signal began the shutdown. */
static int wait_metadata(daemon_t *d) {
    kafka_t *k = W0(d)->k;
    d->waiting_kafka = true;
    int64_t deadline = server_wall_ms() + METADATA_WAIT_MS;
    int rc = -1;
    while (!d->stopping) {
        int64_t left = deadline - server_wall_ms();
        if (left <= 0)
            break;
        if (kafka_wait_metadata(k, left < METADATA_SLICE_MS ? (int)left : METADATA_SLICE_MS) == 0) {
            rc = 0;
            break;
        }
        server_run_once(W0(d)->srv);
        if (server_wall_ms() >= deadline)
            break;
    }
    d->waiting_kafka = false;
    return rc;
}

/* Workers 1..N-1: built once worker 0 is (its producer runs the embedded
 * cluster), listening on worker 0's ports, each on its own thread. */
static int start_workers(daemon_t *d, char *err, size_t errlen) {
    server_opts_t none = {.watch_fd = -1, .watch_fd2 = -1};
    for (unsigned i = 1; i < d->n_workers; i++) {
        if (!(d->w[i] = worker_alloc(d, i)) || worker_sessions(d->w[i]) != 0 ||
            worker_serve(d->w[i], &none) != 0)
            return -1;
        if (server_listen(d->w[i]->srv, err, errlen) != 0)
            return -1;
    }
    for (unsigned i = 1; i < d->n_workers; i++) {
        if (worker_start_thread(d->w[i]) != 0) {
            snprintf(err, errlen, "worker %u: cannot start its thread", i);
            return -1;
        }
    }
    return 0;
}

/* The workers after their loops returned; worker 0's last. */
static void free_workers(daemon_t *d) {
    for (unsigned i = d->n_workers; i-- > 1;) {
        worker_t *w = d->w[i];
        if (!w)
            continue;
        if (w->have_thread) {
            /* A start that failed after it began: stop it on its loop. */
            server_post(w->srv, post_finish, w);
            worker_join(w);
        } else if (w->srv) {
            server_stop(w->srv);
            server_run(w->srv);
        }
        worker_free(w);
        d->w[i] = NULL;
    }
}

/* What ties a spool to the worker its client ids lived on. */
static bool spool_holds(spool_t *sp, void *ud) {
    (void)ud;
    spool_stats_t ss;
    spool_stats(sp, &ss);
    return ss.records > 0 || daemon_qos2_saved_ids(sp);
}

int daemon_run(const config_t *cfg) {
    daemon_t *d = calloc(1, sizeof(*d));
    char err[1024];
    runtime_prep_t *prep = NULL;
    char *errs = NULL;
    int rc = 1;
    const char *why_one = NULL;
    unsigned n = config_threads(cfg, &why_one);

    signal(SIGPIPE, SIG_IGN);
    /* CONFIG_THREADS_MAX: the spools may ask for another count (spool_workers.h). */
    if (!d || !(errs = malloc(RELOAD_ERRBUF)) ||
        !(d->w = calloc(CONFIG_THREADS_MAX, sizeof(*d->w))) ||
        !(d->sum = malloc(sizeof(*d->sum)))) {
        log_error("out of memory");
        if (d)
            free(d->w);
        free(d);
        free(errs);
        return 1;
    }
    d->n_workers = n;
    session_limits_init(&d->limits);
    d->rl_routed = (log_ratelimit_t)LOG_RATELIMIT_INIT("routed messages", ROUTED_LOG_PER_S, 1000);
    pthread_mutex_init(&d->park_mu, NULL);
    pthread_cond_init(&d->park_cv, NULL);
    d->cfg = cfg;
    d->started = cfg;
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    if (!(d->shared = server_shared_new(cfg))) {
        log_error("out of memory");
        free(errs);
        goto out;
    }

    /* The producer, the topic map and the security files: the same steps as
     * --check (which prints the errors the same way), then committed. The
     * producer is worker 0's. */
    if (!(d->w[0] = worker_alloc(d, 0))) {
        free(errs);
        goto out;
    }
    worker_t *w0 = d->w[0];
    runtime_t rt = daemon_runtime(d, NULL);
    rt.kafka_opts = worker_kafka_opts(w0);
    rt.n_more_servers = 0;
    if (runtime_prepare(&rt, cfg, RUNTIME_START, &prep, errs, RELOAD_ERRBUF) != 0) {
        /* With the warnings, as --check prints them. */
        config_lint(cfg, errs, RELOAD_ERRBUF);
        runtime_sort_errors(errs, cfg->path);
        fputs(errs, stderr);
        free(errs);
        worker_free(w0);
        server_shared_free(d->shared);
        pthread_mutex_destroy(&d->park_mu);
        pthread_cond_destroy(&d->park_cv);
        free(d->sum);
        free(d->w);
        free(d);
        return 1;
    }
    free(errs);
    log_lint(cfg, "");
    runtime_commit(&rt, prep);
    w0->m.start_time_seconds = (uint64_t)time(NULL);
    unsigned want = n;
    if (d->spool) {
        if (spool_workers_open(&d->spools, cfg->spool.dir, cfg->spool.max_bytes, d->spool, n,
                               spool_holds, NULL, err, sizeof(err)) != 0) {
            log_error("spool: %s", err);
            goto out;
        }
        n = d->n_workers = d->spools.n;
    }
    if (n != want)
        log_info("threads: %u (the spool's)", n); /* after its warning, which says why */
    else if (why_one)
        log_info("threads: %u (%s)", n, why_one);
    else if (cfg->threads == 0)
        log_info("threads: %u (auto)", n);
    else if (n > 1)
        log_info("threads: %u", n);
    daemon_threadpool_size(cfg, n);
    if (worker_sessions(w0) != 0)
        goto out;
    if (cfg->n_downlink || cfg->retained.enabled) {
        d->dl = daemon_downlink_new(cfg, kafka_bootstrap_servers(w0->k), d->router, d->retained,
                                    w0->sm, err, sizeof(err));
        if (!d->dl) {
            log_error("downlink: %s", err);
            goto out;
        }
        if (n > 1) {
            if (!(d->fan = daemon_fanout_new(d, on_fanout_resume, d))) {
                log_error("out of memory");
                goto out;
            }
            daemon_downlink_set_fanout(d->dl, d->fan);
        }
    }
    d->http = http_server_new(&(http_server_opts_t){on_metrics, on_ready, on_list, d});
    if (!d->http) {
        log_error("out of memory");
        goto out;
    }
    server_opts_t extra = {
        .http = {&http_server_ops, d->http},
        .on_signal = daemon_on_signal,
        .watch_fd2 = d->dl ? daemon_downlink_fd(d->dl) : -1,
        .on_fd2 = d->dl ? on_downlink_fd : NULL,
    };
    if (worker_serve(w0, &extra) != 0)
        goto out;
    /* The metrics listener first: /healthz answers and /readyz says why it
     * is not ready while the start waits for Kafka. */
    if (server_listen_metrics(w0->srv, err, sizeof(err)) != 0) {
        log_error("%s", err);
        goto stop0;
    }
    if (cfg->kafka_embedded_port && embedded_relay(d, err, sizeof(err)) != 0) {
        log_error("embedded Kafka: kafka.embedded_port %u: %s", cfg->kafka_embedded_port, err);
        goto stop0;
    }
    int waited = 0;
    if (d->spool) {
        daemon_spool_log_start(d->cfg, d->spools.spools, d->n_workers,
                               kafka_bootstrap_servers(w0->k));
    } else {
        log_info("kafka: waiting up to %d s for metadata from %s", METADATA_WAIT_MS / 1000,
                 kafka_bootstrap_servers(w0->k));
        waited = wait_metadata(d);
    }
    if (d->stopping) {
        /* A signal during the wait: nothing was accepted, shut down. */
    } else if (waited != 0) {
        log_error("kafka: no metadata from %s after %d s; starting anyway, librdkafka keeps "
                  "retrying and messages wait in its queue",
                  kafka_bootstrap_servers(w0->k), METADATA_WAIT_MS / 1000);
        kafka_set_reachable(w0->k, false, "no metadata at start");
    } else if (!d->spool) {
        log_info("kafka: connected to %s", kafka_bootstrap_servers(w0->k));
    }
    if (d->stopping) {
        server_run(w0->srv);
        rc = w0->exit_code;
        goto out;
    }
    if (server_listen(w0->srv, err, sizeof(err)) != 0 || start_workers(d, err, sizeof(err)) != 0) {
        if (err[0])
            log_error("%s", err);
        goto stop0;
    }
    d->listening = true;
    /* READY=1 also when Kafka is unreachable: the proxy accepts and queues,
     * `systemctl start` must not fail or hang on a broker outage; the STATUS=
     * line and /readyz say that Kafka is unreachable. */
    notify_status(d, "READY=1\n");
    uint64_t wd = sd_notify_watchdog_usec();
    if (wd > 0) {
        unsigned ms = (unsigned)(wd / 2000u);
        server_set_periodic(w0->srv, ms ? ms : 1, on_watchdog);
        log_info("systemd watchdog: WATCHDOG=1 every %u ms", ms ? ms : 1);
    }
    for (unsigned i = 0; i < d->n_workers; i++)
        if (d->w[i]->fatal)
            begin_shutdown(d, "fatal Kafka error");
    server_run(w0->srv);
    rc = 0;
    for (unsigned i = 1; i < d->n_workers; i++)
        worker_join(d->w[i]); /* each drains its producer, then its loop ends */
    if (d->n_workers > 1) {   /* the line one worker writes, for all of them */
        uint64_t produced = 0, delivered = 0, failed = 0;
        size_t conns = 0;
        for (unsigned i = 0; i < d->n_workers; i++) {
            produced += d->w[i]->fin_produced;
            delivered += d->w[i]->fin_delivered;
            failed += d->w[i]->fin_failed;
            conns += d->w[i]->fin_conns;
        }
        log_info("shutdown: %" PRIu64 " records produced, %" PRIu64 " delivered, %" PRIu64
                 " failed; closing %zu connections",
                 produced, delivered, failed, conns);
    }
    for (unsigned i = 0; i < d->n_workers; i++)
        if (d->w[i]->exit_code)
            rc = d->w[i]->exit_code;
    goto out;
stop0:
    /* A start that failed after worker 0's server was made. */
    if (!d->stopping) {
        d->stopping = true;
        server_stop(w0->srv);
    }
    server_run(w0->srv);
    rc = 1;
out:
    /* The producers go first, while worker 0's signal watchers still catch
     * a repeated SIGTERM; afterwards the signals are ignored. */
    free_workers(d);
    daemon_downlink_free(d->dl);
    daemon_fanout_free(d->fan); /* every worker's batches ran or were freed */
    if (d->w && d->w[0] && d->w[0]->k) {
        kafka_free(d->w[0]->k);
        d->w[0]->k = NULL;
    }
    if (d->w)
        worker_free(d->w[0]); /* waits for the password checks still running */
    if (d->spool)
        spool_workers_close(&d->spools);
    spool_close(d->spool);
    http_server_free(d->http);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    security_free(d->sec);
    if (d->tm)
        topic_map_free(d->tm);
    dl_router_free(d->router);
    dl_retained_free(d->retained);
    config_free(d->owned);
    server_shared_free(d->shared);
    pthread_mutex_destroy(&d->park_mu);
    pthread_cond_destroy(&d->park_cv);
    free(d->sum);
    free(d->w);
    free(d);
    log_info("exiting with status %d", rc);
    return rc;
}
