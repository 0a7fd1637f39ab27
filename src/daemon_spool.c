/* The daemon's side of the spooler (daemon_spool.h). */
#include "daemon_spool.h"

#include <inttypes.h>
#include <stdlib.h>

#include "daemon_qos2.h"
#include "util/log.h"

struct daemon_spool {
    spooler_t *f;
    kafka_t *const *k;
    session_mgr_t *const *sm;
    daemon_qos2_t *q2; /* QoS 2 ids across restarts */
};

/* Every ack of a record goes through here, spooled or direct: a PUBREC of
 * a session that outlives its connection waits for a save of its id. */
static void on_complete(void *ud, uint64_t opaque, int err, const char *errstr) {
    daemon_spool_t *ds = ud;
    if (err == 0 && ds->q2 && session_mgr_qos2_durable(*ds->sm, opaque) &&
        daemon_qos2_hold(ds->q2, opaque))
        return; /* daemon_qos2_turn */
    session_on_delivery(*ds->sm, opaque, err, errstr);
}

static void on_durable(void *ud, const uint64_t *opaques, size_t n) {
    daemon_spool_t *ds = ud;
    for (size_t i = 0; i < n; i++)
        session_mgr_qos2_durable(*ds->sm, opaques[i]);
}

static int produce(void *ud, const kafka_record_t *rec, uint64_t opaque) {
    daemon_spool_t *ds = ud;
    int rc = kafka_produce(*ds->k, rec, opaque);
    if (rc == KAFKA_ERR_PRODUCE || rc == KAFKA_ERR_FATAL) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT("spool produce", 10, 10000);
        log_ratelimited(&rl, LOG_ERROR, "kafka: producing to topic %s failed: %s", rec->topic,
                        kafka_last_error(*ds->k));
    }
    return rc;
}

static bool reachable(void *ud, char *why, size_t cap) {
    daemon_spool_t *ds = ud;
    return kafka_reachable(*ds->k, why, cap);
}

/* The purged records' reports are served at once (kafka_poll), so they come
 * back to the spooler before it appends anything newer. */
static void purge(void *ud) {
    daemon_spool_t *ds = ud;
    kafka_purge(*ds->k);
    kafka_poll(*ds->k);
}

daemon_spool_t *daemon_spool_new(const config_t *cfg, spool_t *sp, kafka_t *const *k,
                                 session_mgr_t *const *sm) {
    daemon_spool_t *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return NULL;
    ds->k = k;
    ds->sm = sm;
    ds->f = spooler_new(&(spooler_opts_t){sp, produce, ds, on_complete, ds});
    if (!ds->f) {
        free(ds);
        return NULL;
    }
    spooler_set_durable(ds->f, on_durable);
    ds->q2 = daemon_qos2_new(*sm, sp); /* NULL (logged): the ids are not kept */
    if (cfg->spool.mode == SPOOL_MODE_OUTAGE)
        spooler_set_outage(ds->f, &(spooler_outage_t){.outage_after_ms = cfg->spool.outage_after_ms,
                                                      .reachable = reachable,
                                                      .purge = purge});
    return ds;
}

void daemon_spool_free(daemon_spool_t *ds) {
    if (!ds)
        return;
    spooler_free(ds->f);
    daemon_qos2_free(ds->q2); /* saves the last changes first */
    free(ds);
}

static int work(void *ud, void (*run)(void *arg), void (*done)(void *arg), void *arg) {
    return server_work(ud, run, done, arg);
}

void daemon_spool_set_server(daemon_spool_t *ds, server_t *srv) {
    spooler_set_worker(ds->f, work, srv);
    daemon_qos2_set_worker(ds->q2, work, srv);
}

void daemon_spool_turn(daemon_spool_t *ds) {
    spooler_turn(ds->f);
    daemon_qos2_turn(ds->q2);
}

spooler_t *daemon_spool_spooler(const daemon_spool_t *ds) {
    return ds ? ds->f : NULL;
}

void daemon_spool_on_delivery(daemon_spool_t *ds, uint64_t opaque, int err, const char *errstr) {
    spooler_report_t r = {0};
    kafka_record_t rec;
    if (err != 0 && kafka_report_record(*ds->k, &rec, &r.maybe_written) == 0) {
        r.rec = &rec;
        r.retriable = kafka_err_retriable(err);
    }
    spooler_on_report(ds->f, opaque, err, errstr, &r);
}

void daemon_spool_log_start(const config_t *cfg, spool_t *const *spools, unsigned n,
                            const char *bootstrap) {
    uint64_t records = 0, bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        spool_stats_t ss;
        spool_stats(spools[i], &ss);
        records += ss.records;
        bytes += ss.bytes;
    }
    bool outage = cfg->spool.mode == SPOOL_MODE_OUTAGE;
    log_info("spool: %s, mode %s: %" PRIu64 " records (%" PRIu64
             " bytes) to send to Kafka first; not waiting for Kafka metadata from %s",
             cfg->spool.dir, outage ? "outage" : "always", records, bytes, bootstrap);
}
