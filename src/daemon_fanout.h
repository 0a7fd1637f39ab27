/* The downlink across workers (threads: N > 1, docs/architecture.md
 * "Workers"): one consumer on worker 0; each routed record made once into an
 * immutable, reference-counted message (session_mgr_dl_msg), delivered at
 * once to worker 0's sessions and, in a batch posted once per poll (one
 * wake-up), to every other running worker's that holds a subscription,
 * whose queues share it. */
#ifndef M2K_DAEMON_FANOUT_H
#define M2K_DAEMON_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "daemon_downlink.h"
#include "downlink/downlink.h"
#include "downlink/route.h"

/* Records posted to one worker and not yet delivered there: past this, or
 * past the bytes below, the consumer is not polled (the records wait in
 * librdkafka's fetch queue, which its own settings bound) until that worker
 * catches up. A worker holds at most the records, and less than the bytes
 * plus one poll's. */
#define FANOUT_MAX_PENDING (4 * DOWNLINK_POLL_BATCH)
#define FANOUT_MAX_PENDING_BYTES (64u << 20)

typedef struct daemon daemon_t;
typedef struct daemon_fanout daemon_fanout_t;

/* For d's workers (worker 0's thread only; the others are reached when
 * running). resume(ud) runs on worker 0's loop when a worker the consumer
 * waited for has caught up. NULL when out of memory. */
daemon_fanout_t *daemon_fanout_new(daemon_t *d, void (*resume)(void *ud), void *ud);
/* After every worker has stopped (their batches ran or were freed). */
void daemon_fanout_free(daemon_fanout_t *f);

/* How many records the next poll may take, want or 0: a worker holds too
 * many not delivered (resume comes when it catches up). */
int daemon_fanout_room(daemon_fanout_t *f, int want);
/* One routed record (the views live during the call only). */
void daemon_fanout_record(daemon_fanout_t *f, const char *topic, size_t topic_len,
                          const void *payload, size_t len, uint8_t qos, const dl_header_t *headers,
                          size_t n_headers, int64_t timestamp_ms);
/* The end of a poll: each worker's batch posted to its loop. */
void daemon_fanout_flush(daemon_fanout_t *f);

typedef struct {
    uint64_t records; /* made into a message and fanned out */
    uint64_t batches; /* posted to a worker */
    uint64_t waits;   /* polls put off: a worker was FANOUT_MAX_PENDING* behind */
    uint64_t lost;    /* records a stopped worker could not take (shutdown) */
} daemon_fanout_stats_t;
daemon_fanout_stats_t daemon_fanout_stats(const daemon_fanout_t *f);
/* Records handed to worker i (delivered there or posted to it). */
uint64_t daemon_fanout_worker_records(const daemon_fanout_t *f, unsigned i);

#endif
