/* The bound on downlink records handed to other workers and not yet
 * delivered there (threads: N, docs/architecture.md "The downlink across
 * workers"): the consumer's thread asks for room before a poll and takes
 * what it posts to worker i; worker i gives it back once delivered. While
 * some worker holds more than max - want, there is no room: the consumer
 * waits, and the worker whose give brings it back within the bound is told
 * (once) to wake it. Lock-free; every call may come from any thread. */
#ifndef M2K_DOWNLINK_CREDIT_H
#define M2K_DOWNLINK_CREDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dl_credit dl_credit_t;

/* For n workers, at most max records held by each. NULL: out of memory. */
dl_credit_t *dl_credit_new(unsigned n, size_t max);
void dl_credit_free(dl_credit_t *c);

/* want when every worker holds at most max - want, else 0 (counted in
 * waits; the consumer is then marked as waiting). */
size_t dl_credit_room(dl_credit_t *c, size_t want);
/* n records posted to worker i. */
void dl_credit_take(dl_credit_t *c, unsigned i, size_t n);
/* n records of worker i delivered (or dropped); true when the consumer
 * waited and worker i now has room for want: the caller wakes it. */
bool dl_credit_give(dl_credit_t *c, unsigned i, size_t n, size_t want);
/* What worker i holds now. */
size_t dl_credit_held(const dl_credit_t *c, unsigned i);
/* How many times room said 0. */
uint64_t dl_credit_waits(const dl_credit_t *c);

#endif
