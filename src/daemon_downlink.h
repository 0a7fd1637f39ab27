/* The daemon's downlink (Kafka -> MQTT) side, outside the MQTT session: the
 * consumer, records into the router and the retained store, their metrics;
 * a routed record goes to the sessions' subscriptions (session_mgr_deliver). */
#ifndef M2K_DAEMON_DOWNLINK_H
#define M2K_DAEMON_DOWNLINK_H

#include "config/config.h"
#include "downlink/retained.h"
#include "downlink/route.h"
#include "mqtt/session.h"
#include "ops/metrics.h"

/* Records served per poll: the loop turns between batches. */
#define DOWNLINK_POLL_BATCH 500

typedef struct daemon_downlink daemon_downlink_t;
typedef struct daemon_fanout daemon_fanout_t;

/* Starts the consumer of cfg's downlink and retained topics against
 * bootstrap (borrowed: router, retained, which the runtime built, either may
 * be NULL; sm, which gets the routed records). NULL with a message in errbuf. */
daemon_downlink_t *daemon_downlink_new(const config_t *cfg, const char *bootstrap,
                                       dl_router_t *router, dl_retained_t *retained,
                                       session_mgr_t *sm, char *errbuf, size_t errlen);
/* With several workers: routed records go to fan (borrowed, daemon_fanout.h)
 * instead of sm. */
void daemon_downlink_set_fanout(daemon_downlink_t *dd, daemon_fanout_t *fan);
/* Stops the consumer (the router and retained store stay the caller's). */
void daemon_downlink_free(daemon_downlink_t *dd);

int daemon_downlink_fd(const daemon_downlink_t *dd);
/* Serves waiting records (a bounded batch per call; none while a worker is
 * behind, daemon_fanout_room). */
void daemon_downlink_poll(daemon_downlink_t *dd);
/* Copies the counts into the registry (at scrape time). */
void daemon_downlink_metrics(daemon_downlink_t *dd, metrics_t *m);
/* 1 when the consumer has its assignment, else 0 with the reason. */
int daemon_downlink_ready(daemon_downlink_t *dd, char *reason, size_t cap);

#endif
