/* One worker (daemon_int.h): its producer and sessions wired to its server,
 * the MQTT protocol ops with the placement of a client id on its worker,
 * its part of the ordered shutdown, its thread, and the parking of the
 * other workers that a reload, a scrape and the introspection pages use. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_int.h"
#include "mqtt/codec.h"
#include "mqtt/codec5.h"
#include "runtime.h"
#include "util/hash.h"

#define SHUTDOWN_TICK_MS 50

/* ---- producer and sessions ------------------------------------------------ */

static int route_cb(void *ud, const char *topic, size_t topic_len, const topic_map_ctx_t *ctx,
                    char *scratch, size_t cap, topic_map_result_t *out) {
    worker_t *w = ud;
    /* d->tm, not a captured map: a reload swaps it between two callbacks. */
    int rc = topic_map_lookup(w->d->tm, topic, topic_len, ctx, scratch, cap, out);
    w->routed = rc == TOPIC_MAP_MATCHED && log_get_level() >= LOG_DEBUG;
    if (w->routed) {
        size_t n = topic_len < sizeof(w->routed_topic) ? topic_len : sizeof(w->routed_topic);
        memcpy(w->routed_topic, topic, n);
        w->routed_len = (int)n;
    }
    return rc;
}

/* "routed topic=T kafka=K key=KEY" for a record a rule mapped, at debug,
 * rate-limited: log.level: debug shows the routing without flooding. */
static void log_routed(worker_t *w, const kafka_record_t *rec) {
    int kl = (int)(rec->key_len < sizeof(w->routed_topic) ? rec->key_len : sizeof(w->routed_topic));
    log_ratelimited(&w->d->rl_routed, LOG_DEBUG, "routed topic=%.*s kafka=%s key=%.*s",
                    w->routed_len, w->routed_topic, rec->topic, rec->key ? kl : 6,
                    rec->key ? (const char *)rec->key : "(none)");
}

static int produce_cb(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    worker_t *w = ud;
    if (w->fatal)
        return KAFKA_ERR_FATAL;
    if (w->fwd) {
        int frc = spooler_produce(w->fwd, rec, opaque);
        /* A will published as a connection closes: the turn's sync must come. */
        if (frc == KAFKA_OK && w->srv && spooler_pending(w->fwd))
            server_request_turn(w->srv);
        return frc;
    }
    int rc = kafka_produce(w->k, rec, opaque);
    if (rc == KAFKA_OK && w->routed)
        log_routed(w, rec);
    w->routed = false;
    if (rc == KAFKA_ERR_PRODUCE || rc == KAFKA_ERR_FATAL)
        log_error("kafka: producing to topic %s failed: %s", rec->topic, kafka_last_error(w->k));
    return rc;
}

/* The ack latency into the registry's histogram. */
static void on_ack_latency(void *ud, uint32_t usec) {
    metrics_histogram_observe(&((worker_t *)ud)->m.ack_latency, usec);
}

static void on_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    worker_t *w = ud;
    if (err != 0)
        metrics_label_inc(&w->m.kafka_records_failed, kafka_err_name(err));
    if (w->ds)
        daemon_spool_on_delivery(w->ds, opaque, err, errstr);
    else
        session_on_delivery(w->sm, opaque, err, errstr);
}

static void on_stats(void *ud, const char *json, size_t len) {
    worker_t *w = ud;
    if (metrics_rdkafka_update(&w->m, json, len) != 0)
        return;
    int up = metrics_rdkafka_brokers_up(&w->m);
    if (up > 0)
        kafka_set_reachable(w->k, true, NULL);
    else if (up == 0)
        kafka_set_reachable(w->k, false, "no broker connection is up");
}

static void stop_fatal(worker_t *w) {
    w->fatal = true;
    w->exit_code = 1;
    if (w->srv)
        daemon_on_fatal(w);
}

/* A fatal producer error costs a new producer (kafka_replace_soon: what the
 * old one held fails back to the sessions, which answer it as any failed
 * delivery), up to FATAL_REPLACE_MAX times in FATAL_REPLACE_WINDOW_MS;
 * beyond that, or before serving or while stopping, the daemon stops. */
static void on_fatal(void *ud, const char *errstr) {
    worker_t *w = ud;
    const char *why = errstr ? errstr : "?";
    if (!w->srv || w->stopping) {
        log_error("kafka: fatal producer error: %s; stopping", why);
        stop_fatal(w);
        return;
    }
    uint64_t now = server_now_ms(w->srv);
    if (w->n_fatal_at == FATAL_REPLACE_MAX && now - w->fatal_at[0] < FATAL_REPLACE_WINDOW_MS) {
        log_error("kafka: fatal producer error: %s; %u fatal errors within %u s: stopping", why,
                  FATAL_REPLACE_MAX + 1, FATAL_REPLACE_WINDOW_MS / 1000);
        stop_fatal(w);
        return;
    }
    if (w->n_fatal_at == FATAL_REPLACE_MAX) {
        memmove(w->fatal_at, w->fatal_at + 1, (FATAL_REPLACE_MAX - 1) * sizeof(w->fatal_at[0]));
        w->n_fatal_at--;
    }
    w->fatal_at[w->n_fatal_at++] = now;
    log_error("kafka: fatal producer error: %s; replacing the producer", why);
    kafka_replace_soon(w->k);
}

static void on_replaced(void *ud, int failed, const char *errstr) {
    worker_t *w = ud;
    if (errstr != NULL) {
        log_error("kafka: the producer could not be replaced: %s; stopping", errstr);
        stop_fatal(w);
        return;
    }
    w->m.kafka_producer_replaced++;
    log_warn("kafka: producer replaced; %d records of the old one failed back to their clients",
             failed);
}

kafka_opts_t worker_kafka_opts(worker_t *w) {
    return (kafka_opts_t){
        .on_delivery = on_delivery,
        .on_fatal = on_fatal,
        .on_replaced = on_replaced,
        .on_stats = on_stats,
        .ud = w,
    };
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
    worker_t *w = ud;
    session_conn_t *sc = session_conn_new(w->sm, &mqtt_conn_ops, conn, remote);
    if (!sc) {
        log_error("out of memory for the session of %s", remote);
        return NULL;
    }
    daemon_auth_conn_open(w->auth, sc);
    return sc;
}
static int mqtt_identity(void *pc, const char *user) {
    return session_conn_set_identity(pc, user);
}

/* The worker client id `id` lives on. With the spool, under the key its
 * directory keeps: a restart places the id where its spooled records and
 * QoS 2 ids are. */
static unsigned client_owner(const daemon_t *d, const void *id, size_t len) {
    if (d->spool)
        return spool_workers_owner(&d->spools, id, len);
    return (unsigned)(m2k_hash_keyed(id, len) % d->n_workers);
}

/* session_mgr_opts_t.owns_client_id: an id the server assigns is drawn
 * again until it lives on this worker (N draws on average), so the client's
 * reconnect with it is placed where its session is. */
static bool owns_client_id(void *ud, const char *id, size_t len) {
    worker_t *w = ud;
    return client_owner(w->d, id, len) == w->idx;
}

/* The worker a CONNECT's client id lives on: keyed hash mod N; -1 for a
 * first packet that is not a whole, valid CONNECT with a client id or is
 * over mqtt.max_packet_size (served where it is: the session answers it),
 * -2 while it is incomplete (the session sees it then: it consumes none of
 * an incomplete packet, and refuses one longer than its caps allow). */
static int owner_of(const daemon_t *d, const uint8_t *buf, size_t len, uint32_t max_packet) {
    mqtt_fixed_header_t fh;
    int h = mqtt_decode_fixed_header(buf, len, &fh);
    if (h == 0)
        return -2;
    if (h < 0 || fh.type != MQTT_CONNECT || fh.header_len + fh.remaining_length > max_packet)
        return -1;
    if (len < fh.header_len + fh.remaining_length)
        return -2;
    mqtt_packet_t pkt;
    mqtt5_packet_t pkt5;
    const mqtt_str_t *id;
    if (mqtt_decode(buf, len, 0, &pkt) > 0 && pkt.type == MQTT_CONNECT)
        id = &pkt.u.connect.client_id;
    else if (mqtt5_decode(buf, len, 0, &pkt5) > 0 && pkt5.type == MQTT_CONNECT)
        id = &pkt5.u.connect.c.client_id;
    else
        return -1;
    if (id->len == 0)
        return -1; /* the server assigns one its worker owns (owns_client_id) */
    return (int)client_owner(d, id->ptr, id->len);
}

/* Until its first packet is screened (daemon_auth_screened), a connection
 * may belong to another worker: a whole CONNECT whose client id another
 * worker owns is handed over (server_conn_move) before anything else. */
static ssize_t mqtt_feed(void *pc, const uint8_t *buf, size_t len) {
    session_conn_t *sc = pc;
    server_conn_t *conn = session_conn_ud(sc);
    worker_t *w = server_conn_proto(conn);
    if (w->d->n_workers > 1 && !daemon_auth_screened(sc)) {
        int owner = owner_of(w->d, buf, len, w->d->cfg->mqtt.max_packet_size);
        if (owner >= 0 && (unsigned)owner != w->idx) {
            char why[64];
            snprintf(why, sizeof(why), "handed to worker %d", owner);
            if (server_conn_move(conn, w->d->w[owner]->srv, buf, len) == 0) {
                session_conn_forget(sc, why);
                return -1;
            }
            log_warn("%s: could not hand the connection to worker %d; served by worker %u",
                     session_conn_remote(sc), owner, w->idx);
        }
        /* -2: incomplete; the session refuses one over its caps from its
         * header, and consumes none of it otherwise. */
    }
    return daemon_auth_feed(sc, buf, len);
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
    session_mgr_tick(((worker_t *)ud)->sm);
}
static void mqtt_set_now(void *ud, uint64_t mono_ms, int64_t wall_ms, uint64_t mono_us) {
    session_mgr_set_now(((worker_t *)ud)->sm, mono_ms, wall_ms);
    session_mgr_set_now_us(((worker_t *)ud)->sm, mono_us);
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

/* ---- loop callbacks ----------------------------------------------------------- */

static void on_fd(void *ud) {
    worker_t *w = ud;
    kafka_poll(w->k);
}

static void on_turn(void *ud) {
    worker_t *w = ud;
    daemon_spool_turn(w->ds);
}

static void on_tick(void *ud) {
    worker_tick(ud);
}

void worker_tick(worker_t *w) {
    /* The event fd is the fast path; this catches anything it missed. */
    kafka_poll(w->k);
    if (w->idx == 0)
        daemon_tick(w->d);
    if (!w->stopping || w->done)
        return;
    if (kafka_outq_len(w->k) == 0 || server_now_ms(w->srv) >= w->deadline_ms)
        worker_finish_shutdown(w);
}

/* ---- life ------------------------------------------------------------------------- */

worker_t *worker_alloc(daemon_t *d, unsigned idx) {
    worker_t *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("out of memory");
        return NULL;
    }
    w->d = d;
    w->idx = idx;
    metrics_init(&w->m);
    return w;
}

int worker_sessions(worker_t *w) {
    daemon_t *d = w->d;
    char err[1024];
    if (!w->k) {
        /* The embedded cluster runs in worker 0's producer: the others
         * connect to its address. */
        kafka_opts_t ko = worker_kafka_opts(w);
        const char *boot = kafka_bootstrap_servers(d->w[0]->k);
        if (runtime_producer_new(d->cfg, &ko, boot, &w->k, err, sizeof(err)) != 0) {
            log_error("kafka: worker %u: %s", w->idx, err);
            return -1;
        }
    }
    session_mgr_opts_t so = {
        .cfg = d->cfg,
        .route = route_cb,
        .route_ud = w,
        .produce = produce_cb,
        .produce_ud = w,
        .auth = daemon_auth_session_ops(&d->sec),
        .ack_latency = on_ack_latency,
        .ack_latency_ud = w,
        .retained = d->retained,
        .limits = &d->limits,
        .owns_client_id = d->n_workers > 1 ? owns_client_id : NULL,
        .owns_ud = w,
        .workers = d->n_workers,
    };
    w->sm = session_mgr_new(&so);
    if (!w->sm) {
        log_error("out of memory");
        return -1;
    }
    /* Restores the QoS 2 ids saved in the worker's spool into its sessions. */
    if (d->spool && !(w->ds = daemon_spool_new(d->cfg, d->spools.spools[w->idx], &w->k, &w->sm))) {
        log_error("out of memory");
        return -1;
    }
    w->fwd = daemon_spool_spooler(w->ds);
    return 0;
}

int worker_serve(worker_t *w, const server_opts_t *extra) {
    daemon_t *d = w->d;
    char err[1024];
    server_opts_t sv = *extra;
    sv.cfg = d->cfg;
    sv.mqtt = (server_protocol_t){&mqtt_protocol, w};
    sv.ud = w;
    sv.shared = d->shared;
    sv.first = w->idx ? d->w[0]->srv : NULL;
    sv.reuseport = d->n_workers > 1;
    sv.workers = d->n_workers;
    sv.watch_fd = kafka_event_fd(w->k);
    sv.on_fd = on_fd;
    sv.on_tick = on_tick;
    sv.on_turn = w->fwd ? on_turn : NULL;
    if (server_new(&sv, &w->srv, err, sizeof(err)) != 0) {
        log_error("server: %s", err);
        return -1;
    }
    if (w->ds)
        daemon_spool_set_server(w->ds, w->srv);
    w->auth = daemon_auth_new(w->srv, &d->sec, &d->cfg, w->idx ? d->w[0]->auth : NULL);
    if (!w->auth) {
        log_error("out of memory");
        return -1;
    }
    return 0;
}

void worker_free(worker_t *w) {
    if (!w)
        return;
    /* The producer goes first: its last reports still reach the sessions. */
    if (w->k)
        kafka_free(w->k);
    w->k = NULL;
    daemon_spool_free(w->ds); /* after the producer's last reports; saves the QoS 2 ids */
    w->ds = NULL;
    w->fwd = NULL;
    if (w->srv && !w->have_thread && !atomic_load(&w->ended) && !w->stopping) {
        server_stop(w->srv); /* built, never run */
        server_run(w->srv);
    }
    server_free(w->srv); /* waits for the password checks still running */
    daemon_auth_free(w->auth);
    session_mgr_free(w->sm);
    free(w);
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    server_run(w->srv);
    atomic_store(&w->ended, true);
    return NULL;
}

int worker_start_thread(worker_t *w) {
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->have_thread = true;
    return 0;
}

void worker_join(worker_t *w) {
    if (w && w->have_thread) {
        pthread_join(w->thread, NULL);
        w->have_thread = false;
    }
}

/* ---- shutdown ------------------------------------------------------------------ */

void worker_begin_shutdown(worker_t *w, const char *why) {
    daemon_t *d = w->d;
    if (w->stopping)
        return;
    w->stopping = true;
    session_mgr_publish_delayed_wills(w->sm); /* before the drain (or the spool's last sync) */
    if (w->fwd)
        spooler_stop(w->fwd);
    /* mode outage: records produced directly wait for Kafka as without a spool. */
    if (w->fwd && !spooler_direct_inflight(w->fwd)) {
        server_stop_accepting(w->srv);
        server_stop_reading(w->srv);
        worker_finish_shutdown(w);
        return;
    }
    (void)why;
    w->deadline_ms = server_now_ms(w->srv) + (uint64_t)d->cfg->shutdown_timeout_s * 1000u;
    server_stop_accepting(w->srv);
    server_stop_reading(w->srv);
    /* The loop keeps running: delivery reports still arrive and their acks
     * still go out while the producer drains. */
    server_set_tick(w->srv, SHUTDOWN_TICK_MS);
}

void worker_finish_shutdown(worker_t *w) {
    daemon_t *d = w->d;
    if (w->done)
        return;
    w->done = true;
    int left = kafka_outq_len(w->k);
    if (left > 0 && w->fwd && !spooler_direct_inflight(w->fwd)) {
        /* Acked from the spool already; they stay in it (not confirmed). */
        kafka_purge(w->k);
        kafka_poll(w->k);
    } else if (left > 0) {
        int purged = kafka_purge(w->k);
        log_warn("shutdown: %d messages not confirmed by Kafka within shutdown_timeout_s %u s; "
                 "purged, not acknowledged",
                 purged, d->cfg->shutdown_timeout_s);
        /* Their failed reports close the connections that waited for them. */
        kafka_poll(w->k);
        if (!w->exit_code && w->fatal)
            w->exit_code = 1;
    }
    const session_stats_t *st = session_mgr_stats(w->sm);
    w->fin_produced = st->published;
    w->fin_delivered = st->delivered;
    w->fin_failed = st->delivery_failed;
    w->fin_conns = server_conn_count(w->srv);
    if (d->n_workers == 1) /* else daemon_run logs every worker's sum */
        log_info("shutdown: %" PRIu64 " records produced, %" PRIu64 " delivered, %" PRIu64
                 " failed; closing %zu connections",
                 w->fin_produced, w->fin_delivered, w->fin_failed, w->fin_conns);
    session_mgr_set_stopping(w->sm);
    server_stop(w->srv);
}

/* ---- parking the other workers ------------------------------------------------- */

static void park_here(void *arg) {
    worker_t *w = arg;
    daemon_t *d = w->d;
    pthread_mutex_lock(&d->park_mu);
    unsigned gen = d->park_gen;
    d->parked++;
    pthread_cond_broadcast(&d->park_cv);
    while (d->park_gen == gen)
        pthread_cond_wait(&d->park_cv, &d->park_mu);
    pthread_mutex_unlock(&d->park_mu);
}

void daemon_park(daemon_t *d) {
    unsigned want = 0;
    for (unsigned i = 1; i < d->n_workers; i++) {
        worker_t *w = d->w[i];
        if (!w)
            continue;
        /* A worker not started or ended touches nothing. */
        w->still = !w->have_thread || atomic_load(&w->ended);
        if (!w->still && server_post(w->srv, park_here, w) == 0) {
            w->still = true;
            want++;
        }
    }
    pthread_mutex_lock(&d->park_mu);
    while (d->parked < want)
        pthread_cond_wait(&d->park_cv, &d->park_mu);
    pthread_mutex_unlock(&d->park_mu);
}

void daemon_unpark(daemon_t *d) {
    pthread_mutex_lock(&d->park_mu);
    d->parked = 0;
    d->park_gen++;
    pthread_cond_broadcast(&d->park_cv);
    pthread_mutex_unlock(&d->park_mu);
}

void daemon_post_all(daemon_t *d, void (*fn)(void *w)) {
    for (unsigned i = 1; i < d->n_workers; i++)
        if (d->w[i] && d->w[i]->have_thread)
            server_post(d->w[i]->srv, fn, d->w[i]);
}
