/* The spooler between the sessions' produce op and the producer when the
 * spool is on (`spool: {mode: always}`; docs/architecture.md, "Spool"):
 * every record the session hands over is appended to the spool, one
 * spool_sync per loop turn covers every record of the turn (group commit)
 * and then completes them to the session as a delivery report would, in
 * order; Kafka is fed from the spool's reader, in order, with the spool
 * sequence as the opaque, and what Kafka confirmed is confirmed to the spool.
 *
 * Order into Kafka: the reader hands out records in sequence order and the
 * producer is idempotent (our default), which keeps a partition's order
 * across its retries. A record that fails for good (a message timeout, a
 * purge) stops the feed; once every record handed to the producer has its
 * report, the contiguous delivered prefix is confirmed and the reader is
 * rewound to the first record not confirmed: records delivered after the
 * failed one go again (at least once), none is skipped.
 *
 * One thread (the loop's). Not thread-safe. */
#ifndef M2K_SPOOLER_H
#define M2K_SPOOLER_H

#include <stdbool.h>
#include <stdint.h>

#include "kafka/producer.h"
#include "spool/spool.h"

typedef struct spooler spooler_t;

/* What a delivery report would have told the session (session_on_delivery). */
typedef void (*spooler_complete_fn)(void *ud, uint64_t opaque, int err, const char *errstr);

/* Records handed to the producer at most (the feed's window). */
#define SPOOLER_WINDOW 8192

typedef struct {
    uint64_t spooled;      /* records appended and synced (acked to the session) */
    uint64_t refused_full; /* appends refused with SPOOL_FULL (max_bytes, disk full) */
    uint64_t drained;      /* records Kafka confirmed from the spool */
    uint64_t failed;       /* delivery reports with an error (the feed rewinds) */
    uint64_t rewinds;
    uint64_t sync_failures;
    bool full; /* the last append was refused with SPOOL_FULL */
} spooler_stats_t;

/* kafka_produce's contract (the daemon passes it; tests a fake). */
typedef int (*spooler_produce_fn)(void *ud, const kafka_record_t *rec, uint64_t opaque);

typedef struct {
    spool_t *spool; /* borrowed; must outlive the spooler */
    spooler_produce_fn produce;
    void *produce_ud;
    spooler_complete_fn complete;
    void *complete_ud;
} spooler_opts_t;

/* NULL: no memory. */
spooler_t *spooler_new(const spooler_opts_t *o);
void spooler_free(spooler_t *f);
/* The session's produce op: appends the record. KAFKA_OK (completed at the
 * next spooler_turn), KAFKA_ERR_QUEUE_FULL (the spool is full: the session
 * pauses the reader, as for a full producer queue), KAFKA_ERR_PRODUCE. */
int spooler_produce(spooler_t *f, const kafka_record_t *rec, uint64_t opaque);
/* Whether records wait for spooler_turn's sync. */
bool spooler_pending(const spooler_t *f);
/* Once per loop turn: syncs the turn's records and completes them, rewinds
 * after a failure, feeds the producer from the spool, confirms what Kafka
 * took. */
void spooler_turn(spooler_t *f);
/* Every delivery report of the producer (the opaque is a spool sequence). */
void spooler_on_delivery(spooler_t *f, uint64_t opaque, int err, const char *errstr);
/* Shutdown: the final sync (and completions); the producer is fed no more. */
void spooler_stop(spooler_t *f);
const spooler_stats_t *spooler_stats(const spooler_t *f);

#endif
