/* Private to the daemon's files: the process (daemon_t) and its workers
 * (worker_t, daemon_worker.c). With `threads: N` the daemon runs N workers,
 * each a thread with its own loop, server, sessions and producer; worker 0
 * is the main thread and also owns the signals, the metrics listener,
 * sd_notify, the reload and the downlink's consumer (its records reach the
 * other workers through daemon_fanout.c). With `spool:` each worker has a
 * spool of its own (spool_workers.h; docs/architecture.md, "Workers"). */
#ifndef M2K_DAEMON_INT_H
#define M2K_DAEMON_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/security.h"
#include "daemon_auth.h"
#include "daemon_downlink.h"
#include "daemon_fanout.h"
#include "daemon_spool.h"
#include "kafka/producer.h"
#include "map/topic_map.h"
#include "mqtt/session.h"
#include "net/server.h"
#include "spool_workers.h"
#include "ops/http_server.h"
#include "ops/metrics.h"
#include "util/log.h"

/* A worker replaces its producer after a fatal error, at most this many
 * times within FATAL_REPLACE_WINDOW_MS; the next fatal error within the
 * window stops the daemon (exit status 1), as without a replacement. */
#define FATAL_REPLACE_MAX 3
#define FATAL_REPLACE_WINDOW_MS 60000u

/* At most this many "routed" debug lines per second (log.level: debug). */
#define ROUTED_LOG_PER_S 10

typedef struct daemon daemon_t;
typedef struct worker worker_t;

/* One worker: what a single-threaded daemon builds, once per thread. Its
 * fields are touched by its own thread only, or by worker 0 while every
 * other worker is parked (daemon_park) or has ended. */
struct worker {
    daemon_t *d;
    unsigned idx;
    kafka_t *k;
    session_mgr_t *sm;
    server_t *srv;
    daemon_auth_t *auth; /* password checks on the threadpool */
    /* With `spool:`: records go through the spooler over this worker's
     * spool (d->spools.spools[idx]); NULL otherwise. */
    daemon_spool_t *ds;
    spooler_t *fwd;
    metrics_t m; /* counted on the hot path (ack latency, failures, rdkafka) */
    bool stopping, done, fatal;
    /* When its producer's last fatal errors came (server_now_ms), oldest
     * first: the bound on replacing it (daemon_worker.c, on_fatal). */
    uint64_t fatal_at[FATAL_REPLACE_MAX];
    unsigned n_fatal_at;
    uint64_t deadline_ms;
    int exit_code;
    /* With several workers, what its shutdown found (the main thread logs
     * the sum once every worker is done). */
    uint64_t fin_produced, fin_delivered, fin_failed;
    size_t fin_conns;
    pthread_t thread;
    bool have_thread;
    atomic_bool ended; /* its loop returned: its objects are still */
    bool still;        /* daemon_park: parked or ended, so worker 0 may read it */
    /* At log.level debug, the MQTT topic of the last match (cut), for the
     * line of the record produced right after it (route_cb, produce_cb). */
    bool routed;
    int routed_len;
    char routed_topic[256];
};

struct daemon {
    const config_t *cfg; /* the running configuration */
    config_t *owned;     /* cfg when it came from a reload (freed by us), else NULL */
    /* The configuration the start built from (main owns it): what a reload
     * does not apply (the settings that need a restart) still runs as it
     * says, so a reload compares with this, not with the last file read. */
    const config_t *started;
    /* Shared by every worker, read-only between reloads (a reload swaps
     * them while the other workers are parked). */
    topic_map_t *tm;
    security_t *sec;     /* always present: a reload may add a password or ACL file */
    http_server_t *http; /* the protocol of the metrics listener (worker 0) */
    /* With `downlink:` or `retained:` (daemon_downlink.c); NULL otherwise. */
    dl_router_t *router;
    dl_retained_t *retained;
    daemon_downlink_t *dl;
    daemon_fanout_t *fan; /* with the downlink and several workers (daemon_fanout.c) */
    spool_t *spool;       /* with `spool:`, worker 0's (runtime.c opened it); NULL otherwise */
    /* With `spool:`: every worker's spool, the placement of client ids
     * (stable across restarts) and the shared max_bytes. */
    spool_workers_t spools;
    worker_t **w;
    unsigned n_workers;
    server_shared_t *shared; /* the connection bounds every worker's server shares */
    /* The rate limiters every worker shares: each limit holds for the process. */
    session_limits_t limits;
    log_ratelimit_t rl_routed;
    bool listening, stopping;
    bool waiting_kafka;   /* the start's wait for metadata (/readyz says so) */
    bool status_kafka_up; /* what the last STATUS= line said */
    bool notify_warned;
    metrics_t *sum; /* the scrape's sum of every worker's registry */
    /* daemon_park: the other workers wait on cv until gen changes. */
    pthread_mutex_t park_mu;
    pthread_cond_t park_cv;
    unsigned parked, park_gen;
};

/* ---- daemon_worker.c ---- */

/* A worker, built in steps: worker_alloc (its producer's callbacks can be
 * given from then: worker_kafka_opts), worker_sessions (worker 0 with the
 * producer runtime.c built in w->k, the others make their own), then
 * worker_serve (its server with `extra`'s options, password checks). Each
 * logs why it failed: 0 or -1 (then worker_free). */
worker_t *worker_alloc(daemon_t *d, unsigned idx);
int worker_sessions(worker_t *w);
int worker_serve(worker_t *w, const server_opts_t *extra);
/* Frees what was built (after its loop returned). */
void worker_free(worker_t *w);
/* The producer's callbacks (ud: the worker). */
kafka_opts_t worker_kafka_opts(worker_t *w);
/* Runs the worker's loop on a thread of its own (workers 1..N-1). 0 or -1. */
int worker_start_thread(worker_t *w);
void worker_join(worker_t *w);
/* The ordered shutdown of one worker, on its own thread: stop accepting and
 * reading, wait for the producer to drain (or the spool), then close. */
void worker_begin_shutdown(worker_t *w, const char *why);
void worker_finish_shutdown(worker_t *w);
/* Every 1 s (50 ms while stopping) on the worker's loop. */
void worker_tick(worker_t *w);

/* From worker 0: every other running worker waits, parked in a call on its
 * loop, until daemon_unpark; the state of those with `still` set (parked,
 * or their loop ended) may be read and switched. A worker whose loop is
 * closing (shutdown) is not still and is left alone. */
void daemon_park(daemon_t *d);
void daemon_unpark(daemon_t *d);
/* From worker 0: fn(w) runs on every other worker's loop thread. */
void daemon_post_all(daemon_t *d, void (*fn)(void *w));

/* ---- daemon.c, for daemon_worker.c ---- */

/* A worker's producer failed for good: the whole daemon stops (from any worker). */
void daemon_on_fatal(worker_t *w);
/* Worker 0's part of the tick (sd_notify status, the downlink). */
void daemon_tick(daemon_t *d);
void daemon_on_signal(void *ud, int signum);

#endif
