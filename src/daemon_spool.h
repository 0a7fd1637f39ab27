/* The daemon's side of the spooler (spooler.h) when `spool:` is on: its
 * produce, purge and reachability ops over the producer, its completions
 * into the sessions, and the delivery reports with their records. */
#ifndef M2K_DAEMON_SPOOL_H
#define M2K_DAEMON_SPOOL_H

#include "config/config.h"
#include "kafka/producer.h"
#include "mqtt/session.h"
#include "net/server.h"
#include "spool/spool.h"
#include "spooler.h"

typedef struct daemon_spool daemon_spool_t;

/* A spooler over sp (borrowed) for cfg's spool mode; *k and *sm are read at
 * each call. Restores the QoS 2 ids saved in the spool into *sm
 * (daemon_qos2.h). NULL: no memory. */
daemon_spool_t *daemon_spool_new(const config_t *cfg, spool_t *sp, kafka_t *const *k,
                                 session_mgr_t *const *sm);
/* Saves the QoS 2 ids' last changes, then frees. */
void daemon_spool_free(daemon_spool_t *ds);
spooler_t *daemon_spool_spooler(const daemon_spool_t *ds);
/* The group commit's fdatasync and the QoS 2 state's saves on srv's
 * threadpool (server_work). */
void daemon_spool_set_server(daemon_spool_t *ds, server_t *srv);
/* Once per loop turn: the spooler's group commit and feed, then the save
 * of the QoS 2 ids the turn changed (daemon_qos2_turn). */
void daemon_spool_turn(daemon_spool_t *ds);
/* One delivery report of the producer (the daemon's on_delivery). */
void daemon_spool_on_delivery(daemon_spool_t *ds, uint64_t opaque, int err, const char *errstr);
/* The start's line: the mode and what the n workers' spools hold. */
void daemon_spool_log_start(const config_t *cfg, spool_t *const *spools, unsigned n,
                            const char *bootstrap);

#endif
