/* The spooler between the sessions' produce op and the producer when the
 * spool is on (docs/architecture.md, "Spool"). `mode: always`:
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
 * `mode: outage` (opts.outage): while Kafka takes records (state DIRECT)
 * they go to the producer with opaque SPOOLER_DIRECT_BIT | a counter and
 * their reports complete them. When every broker is down (opts.reachable),
 * a record fails with a retriable error (spooler_report_t.retriable) or the
 * oldest record in the producer has waited opts.outage_after_ms, the turn
 * switches to SPOOLING: opts.purge takes back what the producer holds, the
 * records come back as failed reports with the record, and are appended in
 * the order they were produced, ahead of any newer one; from then on
 * records are spooled as in `mode: always`. Once Kafka is reachable
 * (DRAINING) and every spooled record is confirmed, DIRECT again.
 *
 * One thread (the loop's). Not thread-safe. */
#ifndef M2K_SPOOLER_H
#define M2K_SPOOLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kafka/producer.h"
#include "spool/spool.h"

typedef struct spooler spooler_t;

/* What a delivery report would have told the session (session_on_delivery). */
typedef void (*spooler_complete_fn)(void *ud, uint64_t opaque, int err, const char *errstr);

/* Records handed to the producer at most (the feed's window), and their
 * bytes (topic, key, value, headers: the producer copies them) at most,
 * past one record. */
#define SPOOLER_WINDOW 65536
#define SPOOLER_WINDOW_BYTES (64u * 1024 * 1024)
/* What Kafka confirmed is written to the spool's checkpoint at most this
 * often (at once when a segment is drained, and at shutdown): a crash
 * re-sends what was confirmed since (docs/semantics.md). */
#define SPOOLER_CHECKPOINT_MS 50
/* The opaque of a record produced directly (mode outage, state DIRECT);
 * the feed's opaques are spool sequence numbers, below it. */
#define SPOOLER_DIRECT_BIT (UINT64_C(1) << 63)

typedef enum {
    SPOOLER_DIRECT = 0,   /* mode outage: records go to Kafka, acked on its report */
    SPOOLER_SPOOLING = 1, /* records go to the spool; Kafka unreachable */
    SPOOLER_DRAINING = 2, /* records go to the spool; Kafka reachable, the spool drains */
} spooler_state_t;

typedef struct {
    uint64_t spooled;      /* records appended and synced (acked to the session) */
    uint64_t refused_full; /* appends refused with SPOOL_FULL (max_bytes, disk full) */
    uint64_t drained;      /* records Kafka confirmed from the spool */
    uint64_t failed;       /* delivery reports with an error (the feed rewinds) */
    uint64_t rewinds;
    uint64_t sync_failures;
    bool full; /* the last append was refused with SPOOL_FULL */
    int state; /* spooler_state_t */
    /* mode outage */
    uint64_t outages;     /* switches from DIRECT to the spool */
    uint64_t outage_ms;   /* time out of DIRECT, the current outage included */
    uint64_t direct;      /* records Kafka confirmed that went to it directly */
    uint64_t taken_back;  /* records given to the producer, then spooled (purged or failed) */
    uint64_t maybe_twice; /* of those, records Kafka may have written too (were in flight) */
    uint64_t drain_rate;  /* records Kafka confirmed from the spool per second, last second */
} spooler_stats_t;

/* What the daemon knows of a delivery report beyond its error. */
typedef struct {
    const kafka_record_t *rec; /* a failed report's record (views valid during the call); or NULL */
    bool retriable;            /* Kafka could not take it now (kafka_err_retriable) */
    bool maybe_written;        /* Kafka may have written it anyway */
} spooler_report_t;

/* kafka_produce's contract (the daemon passes it; tests a fake). */
typedef int (*spooler_produce_fn)(void *ud, const kafka_record_t *rec, uint64_t opaque);

typedef struct {
    spool_t *spool; /* borrowed; must outlive the spooler */
    spooler_produce_fn produce;
    void *produce_ud;
    spooler_complete_fn complete;
    void *complete_ud;
} spooler_opts_t;

/* `mode: outage` (spooler_set_outage); the ops get the spooler's produce_ud. */
typedef struct {
    uint32_t outage_after_ms;
    /* Whether Kafka is reachable (the /readyz signal; why when not); NULL: yes. */
    bool (*reachable)(void *ud, char *why, size_t cap);
    /* Takes back every record the producer holds: their failed reports
     * (with the record) come back through spooler_on_report before it returns. */
    void (*purge)(void *ud);
    uint64_t (*now_ms)(void *ud); /* a monotonic clock; NULL: CLOCK_MONOTONIC */
} spooler_outage_t;

/* NULL: no memory. */
spooler_t *spooler_new(const spooler_opts_t *o);
/* Runs run(arg) on another thread, then done(arg) on the owner's; 0, or -1
 * (nothing queued). The daemon's is server_work. */
typedef int (*spooler_work_fn)(void *ud, void (*run)(void *arg), void (*done)(void *arg),
                               void *arg);
/* The group commit's fdatasync on work's thread: the records appended while
 * one runs are the next group, synced once it returned; acks still follow
 * their sync, in order. The checkpoint's write and the deletion of drained
 * segments go there too (spooler_ckpt.h). Without it, spooler_turn syncs
 * and writes on the caller's thread. */
void spooler_set_worker(spooler_t *f, spooler_work_fn work, void *ud);
/* Optional: durable(complete_ud, opaques, n) gets a synced group's opaques
 * before their completions, so one save of the caller's state covers the
 * group (daemon_spool.c: the QoS 2 ids). */
typedef void (*spooler_durable_fn)(void *ud, const uint64_t *opaques, size_t n);
void spooler_set_durable(spooler_t *f, spooler_durable_fn durable);
/* `mode: outage`, right after spooler_new: direct unless the spool holds
 * records (they drain first). */
void spooler_set_outage(spooler_t *f, const spooler_outage_t *o);
void spooler_free(spooler_t *f);
/* The session's produce op: appends the record. KAFKA_OK (completed at the
 * next spooler_turn), KAFKA_ERR_SPOOL_FULL (the spool is full: the session
 * pauses a QoS 1/2 publisher's reader, as for a full producer queue, and
 * drops QoS 0), KAFKA_ERR_QUEUE_FULL (stopping), KAFKA_ERR_PRODUCE. */
int spooler_produce(spooler_t *f, const kafka_record_t *rec, uint64_t opaque);
/* Whether records wait for spooler_turn's sync. */
bool spooler_pending(const spooler_t *f);
/* Once per loop turn: syncs the turn's records and completes them, rewinds
 * after a failure, feeds the producer from the spool, confirms what Kafka
 * took. */
void spooler_turn(spooler_t *f);
/* Every delivery report of the producer (the opaque is a spool sequence,
 * or SPOOLER_DIRECT_BIT | n); spooler_on_delivery = report NULL. */
void spooler_on_report(spooler_t *f, uint64_t opaque, int err, const char *errstr,
                       const spooler_report_t *r);
void spooler_on_delivery(spooler_t *f, uint64_t opaque, int err, const char *errstr);
/* Records produced directly whose report has not come (mode outage). */
uint64_t spooler_direct_inflight(const spooler_t *f);
/* Shutdown: the final sync (and completions); the producer is fed no more. */
void spooler_stop(spooler_t *f);
const spooler_stats_t *spooler_stats(const spooler_t *f);

#endif
