/* Building what the daemon runs with from a configuration: one path, in two
 * phases, for the start, `--check` and a SIGHUP reload.
 *
 *   runtime_prepare  builds everything `next` needs without touching what
 *                    runs: librdkafka checks the producer properties, the
 *                    topic map is compiled, every TLS listener's certificate,
 *                    key and CA and the password and ACL files are loaded,
 *                    and at the start the producer is created (last, once
 *                    everything else is good; --check creates it connecting
 *                    to nothing; after another failure it is only checked
 *                    so). Every failure is reported, sorted by line.
 *   runtime_commit   swaps the prepared objects into the running ones; it
 *                    cannot fail.
 *   runtime_abort    frees them instead.
 *
 * The start is prepare + commit, `--check` is prepare + abort (so it loads
 * and checks exactly what the start does), a reload is prepare, then the
 * settings that need a restart are named (config_restart_changes), then
 * commit. Each object has one step in runtime.c (docs/architecture.md). */
#ifndef M2K_RUNTIME_H
#define M2K_RUNTIME_H

#include <stddef.h>

#include "auth/security.h"
#include "config/config.h"
#include "downlink/retained.h"
#include "downlink/route.h"
#include "kafka/producer.h"
#include "map/topic_map.h"
#include "net/server.h"
#include "spool/spool.h"

typedef enum {
    RUNTIME_CHECK,  /* mqtt2kafka --check: nothing runs */
    RUNTIME_START,  /* the objects are created */
    RUNTIME_RELOAD, /* SIGHUP: the objects exist and are replaced */
} runtime_mode_t;

/* The running objects, as the daemon owns them: a commit stores into and
 * replaces what these point at (the daemon's own fields). */
typedef struct {
    kafka_t **kafka;
    topic_map_t **topics;
    security_t **security;
    /* RUNTIME_START, with `downlink:` / `retained:`: the router of the
     * downlink rules and the retained store (a change needs a restart). */
    dl_router_t **router;
    dl_retained_t **retained;
    /* RUNTIME_START, with `spool:`: the spool, opened and recovered (a
     * change needs a restart). */
    spool_t **spool;
    server_t *server; /* RUNTIME_RELOAD: its TLS listeners take the new certificates */
    /* ... and those of these servers too (the other workers', threads: N). */
    server_t *const *more_servers;
    size_t n_more_servers;
    /* RUNTIME_RELOAD: the configuration the running objects were built from
     * (a new setting is checked against what a reload cannot change). */
    const config_t *running;
    /* RUNTIME_START: the producer's callbacks; bootstrap_servers and the
     * properties come from the configuration. */
    kafka_opts_t kafka_opts;
} runtime_t;

typedef struct runtime_prep runtime_prep_t;

/* Prepares every object `next` (borrowed; it must outlive the commit and
 * what is committed) needs. `rt` is NULL for RUNTIME_CHECK. Returns 0 with
 * *out, or -1 with every error in errbuf, one line each: at the start and in
 * --check as "file:line:col: setting: message" (the producer's as
 * "file:line:col: kafka.properties.NAME: message" for the property
 * librdkafka's message names, else "file: kafka: message"), in a reload prefixed with the step
 * instead ("auth files: ...", "TLS certificates: ...", "configuration rejected: ..."), as the
 * reload logs them. */
int runtime_prepare(const runtime_t *rt, const config_t *next, runtime_mode_t mode,
                    runtime_prep_t **out, char *errbuf, size_t errlen);
/* Sorts the lines of errbuf that start with "path:LINE:COL: " by line, then
 * column, in place; the other lines (no position: a built-in default, the
 * producer as a whole) follow in their order. runtime_prepare does it at the
 * start and in --check; main merges the loader's lines with its own. */
void runtime_sort_errors(char *errbuf, const char *path);
/* Swaps the prepared objects in (freeing what they replace) and frees p. */
void runtime_commit(const runtime_t *rt, runtime_prep_t *p);
/* Frees p and what it prepared; NULL is allowed. */
void runtime_abort(runtime_prep_t *p);
/* Another producer for the configuration the start committed (a worker's,
 * threads: N), with `bootstrap` in place of kafka.bootstrap_servers (the
 * embedded cluster's address). 0, or -1 with errbuf. */
int runtime_producer_new(const config_t *cfg, const kafka_opts_t *opts, const char *bootstrap,
                         kafka_t **out, char *errbuf, size_t errlen);

#endif
