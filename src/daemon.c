/* Wiring: config -> Kafka producer -> topic map -> sessions -> server; signals
 * and the ordered shutdown (see daemon.h). */
#include "daemon.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "security.h"
#include "server.h"
#include "session.h"
#include "topic_map.h"

#define METADATA_WAIT_MS 10000
#define SHUTDOWN_TICK_MS 50

typedef struct {
    const config_t *cfg;
    kafka_t *k;
    topic_map_t *tm;
    session_mgr_t *sm;
    server_t *srv;
    security_t *sec;
    bool stopping, fatal, done;
    uint64_t deadline_ms;
    int exit_code;
} daemon_t;

static int route_cb(void *ud, const char *topic, size_t topic_len, const topic_map_ctx_t *ctx,
                    char *scratch, size_t cap, topic_map_result_t *out) {
    return topic_map_lookup(ud, topic, topic_len, ctx, scratch, cap, out);
}

static int produce_cb(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    daemon_t *d = ud;
    if (d->fatal)
        return KAFKA_ERR_FATAL;
    int rc = kafka_produce(d->k, rec, opaque);
    if (rc == KAFKA_ERR_PRODUCE || rc == KAFKA_ERR_FATAL)
        log_error("kafka: producing to topic %s failed: %s", rec->topic, kafka_last_error(d->k));
    return rc;
}

static void on_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    daemon_t *d = ud;
    session_on_delivery(d->sm, opaque, err, errstr);
}

static void begin_shutdown(daemon_t *d, const char *why) {
    if (d->stopping)
        return;
    d->stopping = true;
    d->deadline_ms = server_now_ms(d->srv) + (uint64_t)d->cfg->shutdown_timeout_s * 1000u;
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
    if (left > 0) {
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

static void on_fd(void *ud) {
    daemon_t *d = ud;
    kafka_poll(d->k);
}

static void on_tick(void *ud) {
    daemon_t *d = ud;
    /* The event fd is the fast path; this catches anything it missed. */
    kafka_poll(d->k);
    if (!d->stopping || d->done)
        return;
    if (kafka_outq_len(d->k) == 0 || server_now_ms(d->srv) >= d->deadline_ms)
        finish_shutdown(d);
}

/* SIGHUP: password file, ACL file and TLS certificates. Each keeps its old
 * contents when the new files do not load (fail closed, never open). */
static void daemon_reload_security(daemon_t *d) {
    char err[1024];
    if (d->sec) {
        if (security_reload(d->sec, err, sizeof(err)) != 0)
            log_error("reload: password/ACL files not reloaded, the old ones stay in force: %s",
                      err);
        else
            log_info("reload: password and ACL files reloaded");
    }
    server_reload_tls(d->srv);
}

static void on_signal(void *ud, int signum) {
    daemon_t *d = ud;
    if (signum == SIGHUP) {
        /* Until the configuration itself is reloaded: the security files. */
        daemon_reload_security(d);
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

int daemon_run(const config_t *cfg) {
    daemon_t d = {.cfg = cfg};
    char err[1024];
    const char **props = NULL;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    log_set_level(cfg->log_level);

    props = calloc(cfg->n_kafka_properties * 2 + 1, sizeof(*props));
    if (!props) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < cfg->n_kafka_properties; i++) {
        props[2 * i] = cfg->kafka_properties[i].name;
        props[2 * i + 1] = cfg->kafka_properties[i].value;
    }
    kafka_opts_t ko = {
        .bootstrap_servers = cfg->bootstrap_servers,
        .properties = props,
        .n_properties = cfg->n_kafka_properties,
        .on_delivery = on_delivery,
        .on_fatal = on_fatal,
        .ud = &d,
    };
    if (kafka_new(&ko, &d.k, err, sizeof(err)) != 0) {
        log_error("kafka: %s", err);
        goto out;
    }
    d.tm = topic_map_new(cfg->rules, cfg->n_rules, err, sizeof(err));
    if (!d.tm) {
        log_error("topic map: %s", err);
        goto out;
    }
    if (cfg->auth.password_file || cfg->auth.acl_file || !cfg->auth.allow_anonymous) {
        if (security_new(&cfg->auth, &d.sec, err, sizeof(err)) != 0) {
            log_error("auth: %s", err);
            goto out;
        }
        log_info("auth: %s%s%s, anonymous clients %s",
                 cfg->auth.password_file ? "password file " : "no password file",
                 cfg->auth.password_file ? cfg->auth.password_file : "",
                 cfg->auth.acl_file ? ", ACL file loaded" : ", no ACL file",
                 cfg->auth.allow_anonymous ? "allowed" : "refused");
    }
    session_mgr_opts_t so = {
        .cfg = cfg,
        .security = d.sec,
        .route = route_cb,
        .route_ud = d.tm,
        .produce = produce_cb,
        .produce_ud = &d,
    };
    d.sm = session_mgr_new(&so);
    if (!d.sm) {
        log_error("out of memory");
        goto out;
    }
    server_opts_t sv = {
        .cfg = cfg,
        .sessions = d.sm,
        .ud = &d,
        .on_signal = on_signal,
        .watch_fd = kafka_event_fd(d.k),
        .on_fd = on_fd,
        .on_tick = on_tick,
    };
    if (server_new(&sv, &d.srv, err, sizeof(err)) != 0) {
        log_error("server: %s", err);
        goto out;
    }
    log_info("kafka: waiting up to %d s for metadata from %s", METADATA_WAIT_MS / 1000,
             kafka_bootstrap_servers(d.k));
    if (kafka_wait_metadata(d.k, METADATA_WAIT_MS) != 0)
        log_error("kafka: no metadata from %s after %d s; starting anyway, librdkafka keeps "
                  "retrying and messages wait in its queue",
                  kafka_bootstrap_servers(d.k), METADATA_WAIT_MS / 1000);
    else
        log_info("kafka: connected to %s", kafka_bootstrap_servers(d.k));
    if (server_listen(d.srv, err, sizeof(err)) != 0) {
        log_error("%s", err);
        server_stop(d.srv);
        server_run(d.srv);
        goto out;
    }
    if (d.fatal)
        begin_shutdown(&d, "fatal Kafka error");
    server_run(d.srv);
    rc = d.exit_code;
out:
    /* The producer goes first, while the server's signal watchers still
     * catch a repeated SIGTERM; afterwards the signals are ignored. */
    if (d.k)
        kafka_free(d.k);
    server_free(d.srv);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    session_mgr_free(d.sm);
    security_free(d.sec);
    if (d.tm)
        topic_map_free(d.tm);
    free(props);
    log_info("exiting with status %d", rc);
    return rc;
}
