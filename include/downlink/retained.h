/* The retained store: topic name -> (payload, QoS) in a trie, loaded from the
 * retained Kafka topic (key = topic, empty value = delete) and matched against
 * a new subscription's filter. Bounded by a message count and a byte total
 * (topic + payload); a message that would exceed either is refused and
 * counted, the stored one for its topic (if any) is kept. Thread-safe: one
 * mutex, held for each call (a match's fn runs under it, and must not call
 * back into the store). */
#ifndef M2K_DOWNLINK_RETAINED_H
#define M2K_DOWNLINK_RETAINED_H

#include "downlink/downlink.h"

typedef struct dl_retained dl_retained_t;

typedef struct {
    uint64_t messages, bytes; /* held now */
    uint64_t set, deleted;    /* accepted updates */
    uint64_t expired;         /* dropped past their message expiry (dl_retained_match_at) */
    uint64_t refused_full;    /* over max_messages or max_bytes */
    uint64_t refused_invalid; /* not a valid topic name */
} dl_retained_stats_t;

/* max_messages, max_bytes: 0 = no message may be held. */
dl_retained_t *dl_retained_new(size_t max_messages, size_t max_bytes);
void dl_retained_free(dl_retained_t *r);
/* New bounds (SIGHUP); messages already held stay until replaced or deleted. */
void dl_retained_set_limits(dl_retained_t *r, size_t max_messages, size_t max_bytes);

/* Stores a copy of payload for topic (replacing the one held), or deletes it
 * when len is 0. 0, DL_EINVAL (topic), DL_EFULL, DL_ENOMEM; a delete of a
 * topic not held is 0. */
int dl_retained_set(dl_retained_t *r, const char *topic, size_t topic_len, const void *payload,
                    size_t len, uint8_t qos);
/* The same with a message expiry: expires_ms on the caller's wall clock (the
 * record's timestamp plus its mqtt.message_expiry), 0 = never. */
int dl_retained_set_expiring(dl_retained_t *r, const char *topic, size_t topic_len,
                             const void *payload, size_t len, uint8_t qos, int64_t expires_ms);

/* Calls fn for every retained message whose topic filter matches ('$' rule
 * included); the views are valid during the call only. The count, or
 * DL_EINVAL for an invalid filter. */
typedef void (*dl_retained_fn)(void *ud, const char *topic, size_t topic_len, const void *payload,
                               size_t len, uint8_t qos);
int dl_retained_match(dl_retained_t *r, const char *filter, size_t len, dl_retained_fn fn,
                      void *ud);
/* The same at wall time now_ms: a matching message whose expiry has come is
 * dropped from the store (counted in expired) instead of passed to fn; fn
 * gets each one's expires_ms (0: none). Expiry is checked here only: an
 * expired message no subscription matches stays held (counted in messages
 * and bytes) until one does, or its topic is set again or deleted. */
typedef void (*dl_retained_at_fn)(void *ud, const char *topic, size_t topic_len,
                                  const void *payload, size_t len, uint8_t qos, int64_t expires_ms);
int dl_retained_match_at(dl_retained_t *r, const char *filter, size_t len, int64_t now_ms,
                         dl_retained_at_fn fn, void *ud);

/* The counts, read without the lock: by the thread that writes the store
 * while no other one matches (the daemon's scrape parks the workers). */
const dl_retained_stats_t *dl_retained_stats(const dl_retained_t *r);

#endif
