/* The bound on downlink records handed to other workers and not yet
 * delivered there (threads: N, docs/architecture.md "The downlink across
 * workers"): the consumer's thread asks for room before a poll and takes
 * what it posts to worker i; worker i gives it back once delivered. While
 * some worker holds more than max - want records, or max_bytes bytes or
 * more, there is no room: the consumer waits, and the worker whose give
 * brings it back within both is told (once) to wake it. So a worker holds at
 * most max records and less than max_bytes plus one poll's bytes.
 * Lock-free; every call may come from any thread. */
#ifndef M2K_DOWNLINK_CREDIT_H
#define M2K_DOWNLINK_CREDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dl_credit dl_credit_t;

/* For n workers, at most max records and about max_bytes held by each.
 * NULL: out of memory. */
dl_credit_t *dl_credit_new(unsigned n, size_t max, size_t max_bytes);
void dl_credit_free(dl_credit_t *c);

/* want when every worker holds at most max - want records and less than
 * max_bytes, else 0 (counted in waits; the consumer is then marked as
 * waiting). */
size_t dl_credit_room(dl_credit_t *c, size_t want);
/* n records of bytes in all posted to worker i. */
void dl_credit_take(dl_credit_t *c, unsigned i, size_t n, size_t bytes);
/* n records of bytes in all of worker i delivered (or dropped); true when
 * the consumer waited and worker i now has room for want: the caller wakes
 * it. */
bool dl_credit_give(dl_credit_t *c, unsigned i, size_t n, size_t bytes, size_t want);
/* What worker i holds now: records, bytes. */
size_t dl_credit_held(const dl_credit_t *c, unsigned i);
size_t dl_credit_held_bytes(const dl_credit_t *c, unsigned i);
/* How many times room said 0. */
uint64_t dl_credit_waits(const dl_credit_t *c);

#endif
