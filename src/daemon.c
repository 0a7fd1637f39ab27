/* Wiring: config -> Kafka producer -> topic map -> sessions -> server; signals,
 * metrics and health, systemd notifications, SIGHUP reload and the ordered
 * shutdown (see daemon.h). */
#include "daemon.h"
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
#include "daemon_auth.h"
#include "daemon_downlink.h"
#include "daemon_metrics.h"
#include "daemon_spool.h"

#define METADATA_WAIT_MS 10000
#define METADATA_SLICE_MS 100 /* the longest the metrics listener waits at start */
#define SHUTDOWN_TICK_MS 50
#define RELOAD_ERRBUF 65536

typedef struct daemon daemon_t;
struct daemon {
    const config_t *cfg; /* the running configuration */
    config_t *owned;     /* cfg when it came from a reload (freed by us), else NULL */
    /* The configuration the start built from (main owns it): what a reload
     * does not apply (the settings that need a restart) still runs as it
     * says, so a reload compares with this, not with the last file read. */
    const config_t *started;
    kafka_t *k;
    topic_map_t *tm;
    session_mgr_t *sm;
    server_t *srv;
    http_server_t *http; /* the protocol of the metrics listener */
    security_t *sec;     /* always present: a reload may add a password or ACL file */
    /* With `downlink:` or `retained:` (daemon_downlink.c); NULL otherwise. */
    dl_router_t *router;
    dl_retained_t *retained;
    daemon_downlink_t *dl;
    daemon_auth_t *auth; /* password checks on the threadpool */
    spool_t *spool;      /* with `spool:` (runtime.c opened it); NULL otherwise */
    daemon_spool_t *ds;  /* with `spool:`: records go through the spooler (spooler.h) */
    spooler_t *fwd;      /* its spooler */
    metrics_t m;
    bool listening, stopping, fatal, done;
    bool waiting_kafka;   /* the start's wait for metadata (/readyz says so) */
    bool status_kafka_up; /* what the last STATUS= line said */
    bool notify_warned;
    uint64_t deadline_ms;
    int exit_code;
    /* At log.level debug, the MQTT topic of the last match (cut), for the
     * line of the record produced right after it (route_cb, produce_cb). */
    bool routed;
    int routed_len;
    char routed_topic[256];
    log_ratelimit_t rl_routed;
};

/* At most this many "routed" debug lines per second (log.level: debug). */
#define ROUTED_LOG_PER_S 10

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
    bool up = kafka_reachable(d->k, why, sizeof(why));
    d->status_kafka_up = up;
    if (up)
        notify(d, "%sSTATUS=serving; Kafka %s reachable", prefix, kafka_bootstrap_servers(d->k));
    else
        notify(d, "%sSTATUS=serving; Kafka unreachable (%s): messages wait in the %s", prefix, why,
               d->fwd ? "spool" : "producer queue");
}

static void on_watchdog(void *ud) {
    notify(ud, "WATCHDOG=1");
}

/* ---- producer and sessions ------------------------------------------------ */

static int route_cb(void *ud, const char *topic, size_t topic_len, const topic_map_ctx_t *ctx,
                    char *scratch, size_t cap, topic_map_result_t *out) {
    daemon_t *d = ud;
    /* d->tm, not a captured map: a reload swaps it between two callbacks. */
    int rc = topic_map_lookup(d->tm, topic, topic_len, ctx, scratch, cap, out);
    d->routed = rc == TOPIC_MAP_MATCHED && log_get_level() >= LOG_DEBUG;
    if (d->routed) {
        size_t n = topic_len < sizeof(d->routed_topic) ? topic_len : sizeof(d->routed_topic);
        memcpy(d->routed_topic, topic, n);
        d->routed_len = (int)n;
    }
    return rc;
}

/* "routed topic=T kafka=K key=KEY" for a record a rule mapped, at debug,
 * rate-limited: log.level: debug shows the routing without flooding. */
static void log_routed(daemon_t *d, const kafka_record_t *rec) {
    int kl = (int)(rec->key_len < sizeof(d->routed_topic) ? rec->key_len : sizeof(d->routed_topic));
    log_ratelimited(&d->rl_routed, LOG_DEBUG, "routed topic=%.*s kafka=%s key=%.*s", d->routed_len,
                    d->routed_topic, rec->topic, rec->key ? kl : 6,
                    rec->key ? (const char *)rec->key : "(none)");
}

static int produce_cb(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    daemon_t *d = ud;
    if (d->fatal)
        return KAFKA_ERR_FATAL;
    if (d->fwd) {
        int frc = spooler_produce(d->fwd, rec, opaque);
        /* A will published as a connection closes: the turn's sync must come. */
        if (frc == KAFKA_OK && d->srv && spooler_pending(d->fwd))
            server_request_turn(d->srv);
        return frc;
    }
    int rc = kafka_produce(d->k, rec, opaque);
    if (rc == KAFKA_OK && d->routed)
        log_routed(d, rec);
    d->routed = false;
    if (rc == KAFKA_ERR_PRODUCE || rc == KAFKA_ERR_FATAL)
        log_error("kafka: producing to topic %s failed: %s", rec->topic, kafka_last_error(d->k));
    return rc;
}

/* The ack latency into the registry's histogram. */
static void on_ack_latency(void *ud, uint32_t usec) {
    metrics_histogram_observe(&((daemon_t *)ud)->m.ack_latency, usec);
}

static void on_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    daemon_t *d = ud;
    if (err != 0)
        metrics_label_inc(&d->m.kafka_records_failed, kafka_err_name(err));
    if (d->ds)
        daemon_spool_on_delivery(d->ds, opaque, err, errstr);
    else
        session_on_delivery(d->sm, opaque, err, errstr);
}

static void on_turn(void *ud) {
    daemon_t *d = ud;
    daemon_spool_turn(d->ds);
}

static void on_stats(void *ud, const char *json, size_t len) {
    daemon_t *d = ud;
    if (metrics_rdkafka_update(&d->m, json, len) != 0)
        return;
    int up = metrics_rdkafka_brokers_up(&d->m);
    if (up > 0)
        kafka_set_reachable(d->k, true, NULL);
    else if (up == 0)
        kafka_set_reachable(d->k, false, "no broker connection is up");
}

/* ---- MQTT sessions as the server's protocol ---------------------------------- */

/* The server reaches the sessions only through server_protocol_ops_t; the
 * session reaches its connection through session_conn_ops_t, whose `ud` is
 * the server_conn_t. */
static int mqtt_send(void *conn, const void *buf, size_t len) {
    return server_conn_send(conn, buf, len);
}
static void mqtt_close(void *conn) {
    server_conn_close(conn);
}
static void mqtt_pause(void *conn) {
    server_conn_pause(conn);
}
static void mqtt_resume(void *conn) {
    server_conn_resume(conn);
}
static void mqtt_hold(void *conn, uint32_t ms) {
    server_conn_hold(conn, ms);
}
static const session_conn_ops_t mqtt_conn_ops = {mqtt_send, mqtt_close, mqtt_pause, mqtt_resume,
                                                 mqtt_hold};

/* The protocol object is the session_conn_t; its password check, while its
 * CONNECT waits for one, is daemon_auth's (session_conn_data). */
static void *mqtt_open(void *ud, server_conn_t *conn, const char *remote) {
    daemon_t *d = ud;
    session_conn_t *sc = session_conn_new(d->sm, &mqtt_conn_ops, conn, remote);
    if (!sc) {
        log_error("out of memory for the session of %s", remote);
        return NULL;
    }
    daemon_auth_conn_open(d->auth, sc);
    return sc;
}
static int mqtt_identity(void *pc, const char *user) {
    return session_conn_set_identity(pc, user);
}
static ssize_t mqtt_feed(void *pc, const uint8_t *buf, size_t len) {
    return daemon_auth_feed(pc, buf, len);
}
static size_t mqtt_need(const void *pc, const uint8_t *buf, size_t len) {
    mqtt_fixed_header_t fh;
    (void)pc; /* a packet's length is in its fixed header, in every version */
    return mqtt_decode_fixed_header(buf, len, &fh) > 0 ? fh.header_len + fh.remaining_length : 0;
}
static void mqtt_lost(void *pc, const char *reason) {
    session_conn_lost(pc, reason);
}
static void mqtt_end(void *pc, const char *reason) {
    session_conn_close(pc, reason);
}
static void mqtt_goodbye(void *pc, int why) {
    session_conn_goodbye(pc, why == SERVER_GOODBYE_BUSY);
}
static bool mqtt_paused(const void *pc) {
    return daemon_auth_waiting(pc) || session_conn_paused(pc);
}
static uint32_t mqtt_inflight(const void *pc) {
    return session_conn_inflight(pc);
}
static const char *mqtt_remote(const void *pc) {
    return session_conn_remote(pc);
}
static void mqtt_free(void *pc) {
    daemon_auth_conn_free(pc);
}
static void mqtt_tick(void *ud) {
    session_mgr_tick(((daemon_t *)ud)->sm);
}
static void mqtt_set_now(void *ud, uint64_t mono_ms, int64_t wall_ms, uint64_t mono_us) {
    session_mgr_set_now(((daemon_t *)ud)->sm, mono_ms, wall_ms);
    session_mgr_set_now_us(((daemon_t *)ud)->sm, mono_us);
}
static const server_protocol_ops_t mqtt_protocol = {
    .conn_open = mqtt_open,
    .conn_identity = mqtt_identity,
    .conn_feed = mqtt_feed,
    .conn_need = mqtt_need,
    .conn_lost = mqtt_lost,
    .conn_close = mqtt_end,
    .conn_goodbye = mqtt_goodbye,
    .conn_paused = mqtt_paused,
    .conn_inflight = mqtt_inflight,
    .conn_remote = mqtt_remote,
    .conn_free = mqtt_free,
    .tick = mqtt_tick,
    .set_now = mqtt_set_now,
};

/* ---- HTTP endpoint ---------------------------------------------------------- */

static char *on_metrics(void *ud, size_t *len) {
    daemon_t *d = ud;
    daemon_parts_t parts = {d->sm, d->srv, d->sec, d->k, d->auth, d->fwd, d->spool, d->dl};
    daemon_metrics_collect(&d->m, &parts);
    return metrics_render_alloc(&d->m, len);
}

static char *on_list(void *ud, int kind, size_t offset, size_t limit, size_t *len) {
    daemon_t *d = ud;
    return introspect_page(d->sm, d->srv, kind, offset, limit, len);
}

static int on_ready(void *ud, char *reason, size_t cap) {
    daemon_t *d = ud;
    char why[256];
    if (d->stopping) {
        snprintf(reason, cap, "shutting down");
        return 0;
    }
    if (d->waiting_kafka) {
        snprintf(reason, cap, "waiting for Kafka metadata from %s", kafka_bootstrap_servers(d->k));
        return 0;
    }
    if (!d->listening) {
        snprintf(reason, cap, "MQTT listeners not bound yet");
        return 0;
    }
    if (d->fwd && spooler_stats(d->fwd)->full) {
        snprintf(reason, cap, "the spool is full (spool.max_bytes or the disk)");
        return 0;
    }
    /* With the spool, records are acked from it whether Kafka is up or not. */
    if (!d->fwd && !kafka_reachable(d->k, why, sizeof(why))) {
        snprintf(reason, cap, "Kafka unreachable: %s", why);
        return 0;
    }
    if (d->dl)
        return daemon_downlink_ready(d->dl, reason, cap);
    return 1;
}

/* ---- shutdown --------------------------------------------------------------- */

static void finish_shutdown(daemon_t *d);

static void begin_shutdown(daemon_t *d, const char *why) {
    if (d->stopping)
        return;
    d->stopping = true;
    session_mgr_publish_delayed_wills(d->sm); /* before the drain (or the spool's last sync) */
    if (d->fwd)
        spooler_stop(d->fwd);
    /* mode outage: records produced directly wait for Kafka as without a spool. */
    if (d->fwd && !spooler_direct_inflight(d->fwd)) {
        /* The final sync (its records are acked); what Kafka has not
         * confirmed stays in the spool for the next start. */
        spool_stats_t ss;
        spool_stats(d->spool, &ss);
        notify(d, "STOPPING=1\nSTATUS=stopping (%s): the spool keeps %" PRIu64 " records", why,
               ss.records);
        log_info("%s: stopping; the spool is synced and keeps %" PRIu64
                 " records Kafka has not confirmed for the next start",
                 why, ss.records);
        server_stop_accepting(d->srv);
        server_stop_reading(d->srv);
        finish_shutdown(d);
        return;
    }
    d->deadline_ms = server_now_ms(d->srv) + (uint64_t)d->cfg->shutdown_timeout_s * 1000u;
    notify(d, "STOPPING=1\nSTATUS=stopping (%s): waiting for Kafka to confirm %d messages", why,
           kafka_outq_len(d->k));
    log_info("%s: stopping intake; waiting up to %u s for %d messages in flight to Kafka", why,
             d->cfg->shutdown_timeout_s, kafka_outq_len(d->k));
    server_stop_accepting(d->srv);
    server_stop_reading(d->srv);
    /* The loop keeps running: delivery reports still arrive and their acks
     * still go out while the producer drains. */
    server_set_tick(d->srv, SHUTDOWN_TICK_MS);
}

static void finish_shutdown(daemon_t *d) {
    if (d->done)
        return;
    d->done = true;
    int left = kafka_outq_len(d->k);
    if (left > 0 && d->fwd && !spooler_direct_inflight(d->fwd)) {
        /* Acked from the spool already; they stay in it (not confirmed). */
        kafka_purge(d->k);
        kafka_poll(d->k);
    } else if (left > 0) {
        int purged = kafka_purge(d->k);
        log_warn("shutdown: %d messages not confirmed by Kafka within shutdown_timeout_s %u s; "
                 "purged, not acknowledged",
                 purged, d->cfg->shutdown_timeout_s);
        /* Their failed reports close the connections that waited for them. */
        kafka_poll(d->k);
        if (!d->exit_code && d->fatal)
            d->exit_code = 1;
    }
    const session_stats_t *st = session_mgr_stats(d->sm);
    log_info("shutdown: %" PRIu64 " records produced, %" PRIu64 " delivered, %" PRIu64
             " failed; closing %zu connections",
             st->published, st->delivered, st->delivery_failed, server_conn_count(d->srv));
    session_mgr_set_stopping(d->sm);
    server_stop(d->srv);
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
 * format). All of it runs in one signal callback on the loop thread, so no
 * packet sees half of a reload.
 *
 * The password/ACL files and the TLS certificates are steps too, so they are
 * read again on every SIGHUP, also when the YAML is unchanged, and a file
 * that does not load rejects the whole reload (the YAML changes included). */

/* The running objects, for runtime_prepare and runtime_commit. */
static runtime_t daemon_runtime(daemon_t *d) {
    return (runtime_t){.kafka = &d->k,
                       .topics = &d->tm,
                       .security = &d->sec,
                       .router = &d->router,
                       .retained = &d->retained,
                       .spool = &d->spool,
                       .server = d->srv,
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
    runtime_t rt = daemon_runtime(d);
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
    runtime_commit(&rt, prep);
    session_mgr_set_config(d->sm, next);
    server_set_config(d->srv, next);
    log_set_level(next->log_level);
    log_set_format(next->log_format);
    config_free(d->owned);
    d->owned = next;
    d->cfg = next;
    d->m.config_reloads++;
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
    d->m.config_reload_failures++;
    log_error("reload: the running configuration stays unchanged");
    notify(d, "READY=1\nSTATUS=serving; the last reload failed (see the log)");
}

/* ---- loop callbacks ----------------------------------------------------------- */

static void on_fd(void *ud) {
    daemon_t *d = ud;
    kafka_poll(d->k);
}

static void on_downlink_fd(void *ud) {
    daemon_t *d = ud;
    daemon_downlink_poll(d->dl);
}

static void on_tick(void *ud) {
    daemon_t *d = ud;
    /* The event fd is the fast path; this catches anything it missed. */
    kafka_poll(d->k);
    if (d->dl)
        daemon_downlink_poll(d->dl);
    if (!d->stopping && d->listening && kafka_reachable(d->k, NULL, 0) != d->status_kafka_up)
        notify_status(d, "");
    if (!d->stopping || d->done)
        return;
    if (kafka_outq_len(d->k) == 0 || server_now_ms(d->srv) >= d->deadline_ms)
        finish_shutdown(d);
}

static void on_signal(void *ud, int signum) {
    daemon_t *d = ud;
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
        finish_shutdown(d);
        return;
    }
    begin_shutdown(d, strsignal(signum));
}

static void on_fatal(void *ud, const char *errstr) {
    daemon_t *d = ud;
    log_error("kafka: fatal producer error: %s; stopping", errstr ? errstr : "?");
    d->fatal = true;
    d->exit_code = 1;
    if (d->srv)
        begin_shutdown(d, "fatal Kafka error");
}

/* kafka.embedded_port: a relay from the fixed port to the mock cluster's
 * first broker (its ports are the kernel's choice). */
static int embedded_relay(daemon_t *d, char *err, size_t errlen) {
    const char *all = kafka_bootstrap_servers(d->k);
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(all, ","), all);
    uint16_t port = (uint16_t)d->cfg->kafka_embedded_port;
    if (server_forward(d->srv, "127.0.0.1", port, first, err, errlen) != 0)
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
    d->waiting_kafka = true;
    int64_t deadline = server_wall_ms() + METADATA_WAIT_MS;
    int rc = -1;
    while (!d->stopping) {
        int64_t left = deadline - server_wall_ms();
        if (left <= 0)
            break;
        if (kafka_wait_metadata(d->k, left < METADATA_SLICE_MS ? (int)left : METADATA_SLICE_MS) ==
            0) {
            rc = 0;
            break;
        }
        server_run_once(d->srv);
        if (server_wall_ms() >= deadline)
            break;
    }
    d->waiting_kafka = false;
    return rc;
}

int daemon_run(const config_t *cfg) {
    daemon_t *d = calloc(1, sizeof(*d));
    char err[1024];
    runtime_prep_t *prep = NULL;
    char *errs = NULL;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    if (!d || !(errs = malloc(RELOAD_ERRBUF))) {
        log_error("out of memory");
        free(d);
        return 1;
    }
    d->cfg = cfg;
    d->started = cfg;
    d->rl_routed = (log_ratelimit_t)LOG_RATELIMIT_INIT("routed messages", ROUTED_LOG_PER_S, 1000);
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    metrics_init(&d->m);
    d->m.start_time_seconds = (uint64_t)time(NULL);
    daemon_threadpool_size(cfg);

    /* The producer, the topic map and the security files: the same steps as
     * --check (which prints the errors the same way), then committed. */
    runtime_t rt = daemon_runtime(d);
    rt.kafka_opts = (kafka_opts_t){
        .on_delivery = on_delivery,
        .on_fatal = on_fatal,
        .on_stats = on_stats,
        .ud = d,
    };
    if (runtime_prepare(&rt, cfg, RUNTIME_START, &prep, errs, RELOAD_ERRBUF) != 0) {
        /* With the warnings, as --check prints them. */
        config_lint(cfg, errs, RELOAD_ERRBUF);
        runtime_sort_errors(errs, cfg->path);
        fputs(errs, stderr);
        free(errs);
        free(d);
        return 1;
    }
    free(errs);
    log_lint(cfg, "");
    runtime_commit(&rt, prep);
    session_mgr_opts_t so = {
        .cfg = cfg,
        .route = route_cb,
        .route_ud = d,
        .produce = produce_cb,
        .produce_ud = d,
        .auth = daemon_auth_session_ops(&d->sec),
        .ack_latency = on_ack_latency,
        .ack_latency_ud = d,
        .retained = d->retained,
    };
    d->sm = session_mgr_new(&so);
    if (!d->sm || (d->spool && !(d->ds = daemon_spool_new(cfg, d->spool, &d->k, &d->sm)))) {
        log_error("out of memory");
        goto out;
    }
    d->fwd = daemon_spool_spooler(d->ds);
    if (cfg->n_downlink || cfg->retained.enabled) {
        d->dl = daemon_downlink_new(cfg, kafka_bootstrap_servers(d->k), d->router, d->retained,
                                    d->sm, err, sizeof(err));
        if (!d->dl) {
            log_error("downlink: %s", err);
            goto out;
        }
    }
    d->http = http_server_new(&(http_server_opts_t){on_metrics, on_ready, on_list, d});
    if (!d->http) {
        log_error("out of memory");
        goto out;
    }
    server_opts_t sv = {
        .cfg = cfg,
        .mqtt = {&mqtt_protocol, d},
        .http = {&http_server_ops, d->http},
        .ud = d,
        .on_signal = on_signal,
        .watch_fd = kafka_event_fd(d->k),
        .on_fd = on_fd,
        .watch_fd2 = d->dl ? daemon_downlink_fd(d->dl) : -1,
        .on_fd2 = d->dl ? on_downlink_fd : NULL,
        .on_tick = on_tick,
        .on_turn = d->fwd ? on_turn : NULL,
    };
    if (server_new(&sv, &d->srv, err, sizeof(err)) != 0) {
        log_error("server: %s", err);
        goto out;
    }
    if (d->ds)
        daemon_spool_set_server(d->ds, d->srv);
    d->auth = daemon_auth_new(d->srv, &d->sec, &d->cfg);
    if (!d->auth) {
        log_error("out of memory");
        goto out;
    }
    /* The metrics listener first: /healthz answers and /readyz says why it
     * is not ready while the start waits for Kafka. */
    if (server_listen_metrics(d->srv, err, sizeof(err)) != 0) {
        log_error("%s", err);
        server_stop(d->srv);
        server_run(d->srv);
        goto out;
    }
    if (cfg->kafka_embedded_port && embedded_relay(d, err, sizeof(err)) != 0) {
        log_error("embedded Kafka: kafka.embedded_port %u: %s", cfg->kafka_embedded_port, err);
        server_stop(d->srv);
        server_run(d->srv);
        goto out;
    }
    int waited = 0;
    if (d->fwd) {
        daemon_spool_log_start(d->ds, d->cfg, d->spool);
    } else {
        log_info("kafka: waiting up to %d s for metadata from %s", METADATA_WAIT_MS / 1000,
                 kafka_bootstrap_servers(d->k));
        waited = wait_metadata(d);
    }
    if (d->stopping) {
        /* A signal during the wait: nothing was accepted, shut down. */
    } else if (waited != 0) {
        log_error("kafka: no metadata from %s after %d s; starting anyway, librdkafka keeps "
                  "retrying and messages wait in its queue",
                  kafka_bootstrap_servers(d->k), METADATA_WAIT_MS / 1000);
        kafka_set_reachable(d->k, false, "no metadata at start");
    } else if (!d->fwd) {
        log_info("kafka: connected to %s", kafka_bootstrap_servers(d->k));
    }
    if (d->stopping) {
        server_run(d->srv);
        rc = d->exit_code;
        goto out;
    }
    if (server_listen(d->srv, err, sizeof(err)) != 0) {
        log_error("%s", err);
        server_stop(d->srv);
        server_run(d->srv);
        goto out;
    }
    d->listening = true;
    /* READY=1 also when Kafka is unreachable: the proxy accepts and queues,
     * `systemctl start` must not fail or hang on a broker outage; the STATUS=
     * line and /readyz say that Kafka is unreachable. */
    notify_status(d, "READY=1\n");
    uint64_t wd = sd_notify_watchdog_usec();
    if (wd > 0) {
        unsigned ms = (unsigned)(wd / 2000u);
        server_set_periodic(d->srv, ms ? ms : 1, on_watchdog);
        log_info("systemd watchdog: WATCHDOG=1 every %u ms", ms ? ms : 1);
    }
    if (d->fatal)
        begin_shutdown(d, "fatal Kafka error");
    server_run(d->srv);
    rc = d->exit_code;
out:
    /* The producer goes first, while the server's signal watchers still
     * catch a repeated SIGTERM; afterwards the signals are ignored. */
    daemon_downlink_free(d->dl);
    if (d->k)
        kafka_free(d->k);
    daemon_spool_free(d->ds);
    spool_close(d->spool);
    server_free(d->srv); /* waits for the password checks still running */
    daemon_auth_free(d->auth);
    http_server_free(d->http);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    session_mgr_free(d->sm);
    security_free(d->sec);
    if (d->tm)
        topic_map_free(d->tm);
    dl_router_free(d->router);
    dl_retained_free(d->retained);
    config_free(d->owned);
    free(d);
    log_info("exiting with status %d", rc);
    return rc;
}
