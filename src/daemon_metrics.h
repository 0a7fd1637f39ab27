/* The daemon's counters at scrape time: what the session, server, producer,
 * spool and downlink modules already count is copied into the metrics
 * registry when /metrics is asked for, instead of being counted twice on the
 * hot path (daemon.c's on_metrics renders it). */
#ifndef M2K_DAEMON_METRICS_H
#define M2K_DAEMON_METRICS_H

#include "auth/security.h"
#include "daemon_auth.h"
#include "daemon_downlink.h"
#include "kafka/producer.h"
#include "mqtt/session.h"
#include "net/server.h"
#include "ops/metrics.h"
#include "spooler.h"

/* The parts whose counters are copied; spooler, spool and downlink may be NULL. */
typedef struct {
    session_mgr_t *sm;
    server_t *srv;
    security_t *sec;
    kafka_t *k;
    daemon_auth_t *auth;
    spooler_t *fwd;
    spool_t *spool;
    daemon_downlink_t *dl; /* the consumer's and retained store's counts (one worker's) */
    bool downlink;         /* the sessions' downlink counts */
} daemon_parts_t;

void daemon_metrics_collect(metrics_t *m, const daemon_parts_t *p);

#endif
