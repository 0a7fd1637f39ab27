/* The spools of N workers (docs/architecture.md, "Workers"): worker 0's is
 * spool.dir itself (a one-worker daemon's layout, unchanged), worker k's is
 * spool.dir/w<k>. A client id lives on worker SipHash-2-4(key, id) mod N, and
 * its records and QoS 2 ids are in that worker's spool; the file
 * spool.dir/workers keeps N and the key, so a restart places every client
 * id where its spooled records and ids are. A restart with another worker
 * count while some spool holds records or QoS 2 ids runs the count they
 * were written with (a warning names both), until a start finds them empty;
 * then the spools past the new count are removed. */
#ifndef M2K_SPOOL_WORKERS_H
#define M2K_SPOOL_WORKERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "spool/spool.h"

#define SPOOL_WORKERS_FILE "workers"

typedef struct {
    unsigned n;                          /* the workers to run */
    uint8_t key[16];                     /* places a client id on a worker */
    spool_t *spools[CONFIG_THREADS_MAX]; /* [0]: the caller's; [1 .. n): opened here */
    _Atomic uint64_t bytes;              /* every spool's bytes: max_bytes bounds the sum */
} spool_workers_t;

/* Whether a spool holds what ties it to its worker's client ids (records
 * Kafka has not confirmed, QoS 2 ids). */
typedef bool (*spool_workers_holds_fn)(spool_t *sp, void *ud);

/* With sp0 open at dir: reads dir/workers, decides sw->n from want (the
 * configured count), opens the other spools with max_bytes, shares the bound
 * among all of them, writes dir/workers when it changed. sw is zeroed
 * first and must not move afterwards. 0, or -1 with errbuf filled (the
 * spools opened here closed). */
int spool_workers_open(spool_workers_t *sw, const char *dir, uint64_t max_bytes, spool_t *sp0,
                       unsigned want, spool_workers_holds_fn holds, void *ud, char *errbuf,
                       size_t errlen);
/* The worker a client id lives on. */
unsigned spool_workers_owner(const spool_workers_t *sw, const void *id, size_t len);
/* Closes spools[1 .. n) (spools[0] is the caller's). */
void spool_workers_close(spool_workers_t *sw);

#endif
