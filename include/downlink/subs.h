/* The subscription trie: (client, filter, granted QoS) entries, matched
 * against a topic name with '+', '#' and the '$' rule (a filter that starts
 * with a wildcard does not match a topic that starts with '$'). A match walks
 * only the trie branches the topic can take, so its cost follows the topic's
 * depth and the subscriptions that match, not the ones that do not.
 *
 * Overlapping subscriptions of one client give one delivery at the highest
 * granted QoS (MQTT 3.1.1 3.3.5, MQTT 5 3.3.4 allow it). A shared
 * subscription "$share/GROUP/filter" gives one delivery to one member of the
 * group per message, round robin, beside the client's own subscriptions. */
#ifndef M2K_DOWNLINK_SUBS_H
#define M2K_DOWNLINK_SUBS_H

#include "downlink/downlink.h"

typedef struct dl_subs dl_subs_t;

/* One delivery of a match: the client (the caller's opaque handle, e.g. a
 * session id and generation), the granted QoS, whether it came through a
 * shared subscription. */
typedef struct {
    uint64_t client;
    uint8_t qos;
    bool shared;
    /* MQTT 5 options over the client's matching subscriptions: the highest
     * QoS among those without no local (DL_QOS_NONE: every one has it), and
     * whether one asks for retain as published. */
    uint8_t qos_local;
    bool rap;
    /* MQTT 5 subscription identifiers of the matching subscriptions: a list
     * through dl_matches_t.ids (1-based index of its head, 0: none). */
    uint32_t ids;
} dl_match_t;

/* One subscription identifier of a match, and the next (1-based, 0: end). */
typedef struct {
    uint32_t id, next;
} dl_match_id_t;

/* Subscription options (dl_subs_add_opts). */
#define DL_SUB_NO_LOCAL 1
#define DL_SUB_RETAIN_AS_PUBLISHED 2
#define DL_QOS_NONE 0xFF

/* A growable result vector, owned by the caller (reuse it across matches;
 * free v when done). */
typedef struct {
    dl_match_t *v;
    size_t n, cap;
    dl_match_id_t *ids; /* free it too when done */
    size_t n_ids, cap_ids;
} dl_matches_t;

dl_subs_t *dl_subs_new(void);
void dl_subs_free(dl_subs_t *s);

/* Subscribes client to filter (a "$share/GROUP/filter" joins GROUP) at qos.
 * 0 when new, 1 when it replaced the client's subscription to the same
 * filter (its QoS is updated), DL_EINVAL for an invalid filter or share
 * name, DL_ENOMEM. */
int dl_subs_add(dl_subs_t *s, uint64_t client, const char *filter, size_t len, uint8_t qos);
/* The same with options (DL_SUB_*) and an MQTT 5 subscription identifier
 * (0: none), kept with the subscription. */
int dl_subs_add_opts(dl_subs_t *s, uint64_t client, const char *filter, size_t len, uint8_t qos,
                     uint8_t opts, uint32_t sub_id);

/* 0, or DL_ENOENT when the client has no such subscription (DL_EINVAL for an
 * invalid filter). */
int dl_subs_remove(dl_subs_t *s, uint64_t client, const char *filter, size_t len);

/* Removes every subscription of client (a session that ends); the count. */
size_t dl_subs_remove_client(dl_subs_t *s, uint64_t client);

/* Replaces out's contents with the deliveries for topic: one per client
 * through its own subscriptions (highest QoS), one per shared group. In no promised order. 0 or
 * DL_ENOMEM. */
int dl_subs_match(dl_subs_t *s, const char *topic, size_t len, dl_matches_t *out);

/* Subscriptions held (shared ones included; from any thread: the count is
 * atomic), trie nodes (the owner's thread only). */
size_t dl_subs_count(const dl_subs_t *s);
size_t dl_subs_nodes(const dl_subs_t *s);

#endif
