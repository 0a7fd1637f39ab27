/* A session's outbound queue: messages waiting for a connection or for room
 * in the in-flight window, bounded by `mqtt.max_queued_messages`. A full
 * queue drops its oldest QoS 0 message to take a new one; holding no QoS 0,
 * it refuses the new message. Each is counted per reason; nothing blocks.
 * Messages are shared by the queues they are in (reference counted), so a
 * fan-out to many sessions copies a record once. */
#ifndef M2K_DOWNLINK_QUEUE_H
#define M2K_DOWNLINK_QUEUE_H

#include <stdatomic.h>

#include "downlink/downlink.h"
#include "util/list.h"

/* One message as sent: topic, payload, the record's QoS, retain flag.
 * Immutable once made, so the queues of several workers' sessions may
 * share it (threads: N): the count is atomic, the rest is only read. */
typedef struct {
    atomic_uint refs;
    uint8_t qos;
    bool retain;
    /* What the record's mqtt.* headers said, for a message made once for
     * every worker (dl_msg_make): RETAIN as published, and the publishing
     * client id (MQTT 5 no local; NULL: none, else in the same allocation). */
    bool published_retain;
    const char *origin;
    size_t origin_len;
    char *topic; /* NUL-terminated, in the same allocation */
    size_t topic_len;
    uint8_t *payload; /* in the same allocation */
    size_t len;
    uint8_t *props; /* MQTT 5 property bytes to send with it (NULL: none), same allocation */
    size_t props_len;
    /* Message expiry (the record's mqtt.message_expiry header): when it
     * expires on the caller's monotonic clock, in ms; 0: never. */
    uint64_t expires_ms;
} dl_msg_t;

/* A message with one reference; NULL when out of memory. */
dl_msg_t *dl_msg_new(const char *topic, size_t topic_len, const void *payload, size_t len,
                     uint8_t qos, bool retain);
/* The same with MQTT 5 property bytes (copied; for MQTT 5 clients only). */
dl_msg_t *dl_msg_new_props(const char *topic, size_t topic_len, const void *props, size_t props_len,
                           const void *payload, size_t len, uint8_t qos, bool retain);
/* All of it at once: each pointer may be NULL when its length is 0; props
 * NULL with props_len > 0 leaves room the caller fills (m->props). */
typedef struct {
    const char *topic;
    size_t topic_len;
    const void *props;
    size_t props_len;
    const char *origin;
    size_t origin_len;
    const void *payload;
    size_t len;
    uint8_t qos;
    bool retain, published_retain;
} dl_msg_spec_t;
dl_msg_t *dl_msg_make(const dl_msg_spec_t *spec);
/* Another reference; the last unref frees it (from any thread). */
dl_msg_t *dl_msg_ref(dl_msg_t *m);
void dl_msg_unref(dl_msg_t *m);

/* Counts shared by every queue of a session manager. */
typedef struct {
    uint64_t queued;           /* messages accepted */
    uint64_t dropped_oldest_0; /* a queued QoS 0 message dropped for a new one */
    uint64_t refused_full;     /* a new message refused: full of QoS 1/2 */
    uint64_t expired;          /* past its message expiry before it was sent */
    uint64_t depth;            /* messages in every queue now */
} dl_queue_stats_t;

typedef struct {
    list_t all;  /* dl_qentry_t.all, oldest first */
    list_t qos0; /* dl_qentry_t.q0, the QoS 0 ones, oldest first */
    size_t n;
    dl_queue_stats_t *stats;
} dl_queue_t;

typedef struct {
    list_t all, q0;
    dl_msg_t *msg;
    uint8_t *xprops; /* MQTT 5 properties of this delivery alone (malloc), sent before the
                      * message's; NULL: none. dl_qentry_free frees them. */
    uint16_t xlen;
    uint8_t qos; /* min(message QoS, subscription QoS) */
} dl_qentry_t;

void dl_queue_init(dl_queue_t *q, dl_queue_stats_t *stats);
/* Drops every entry (their message references). */
void dl_queue_clear(dl_queue_t *q);

/* Appends msg at qos (takes a reference of its own); max is the bound.
 * 0, 1 when a QoS 0 message was dropped to make room, DL_EFULL when refused,
 * DL_ENOMEM. */
int dl_queue_push(dl_queue_t *q, dl_msg_t *msg, uint8_t qos, size_t max);

/* Drops the entries whose message has expired at now_ms (0 < expires_ms <=
 * now_ms) wherever they are, counted in stats->expired; each (may be NULL)
 * sees every one before it is freed. Returns the earliest expires_ms of the
 * entries left (0: none of them expires). O(entries). */
uint64_t dl_queue_drop_expired(dl_queue_t *q, uint64_t now_ms,
                               void (*each)(void *ud, const dl_qentry_t *e), void *ud);

/* The oldest entry, or NULL; the caller owns it (dl_qentry_free). */
dl_qentry_t *dl_queue_pop(dl_queue_t *q);
void dl_qentry_free(dl_qentry_t *e);

static inline size_t dl_queue_len(const dl_queue_t *q) {
    return q->n;
}

#endif
