/* Per source address admission: live connections per IP and a token bucket
 * of new connections per IP. Pure (time is passed in); the table holds one
 * entry per address that has live connections or a bucket not yet refilled,
 * at most `max_entries` (then new addresses are refused: fail closed). */
#ifndef M2K_IPLIMIT_H
#define M2K_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define IPLIMIT_OK 0
#define IPLIMIT_TOO_MANY (-1)   /* max_per_ip live connections from this address */
#define IPLIMIT_RATE (-2)       /* the address's bucket is empty */
#define IPLIMIT_TABLE_FULL (-3) /* max_entries addresses are tracked */
#define IPLIMIT_NOMEM (-4)
#define IPLIMIT_HANDSHAKES (-5) /* the address's TLS handshakes in progress are at the cap */
#define IPLIMIT_KEY_MAX 64

typedef struct iplimit iplimit_t;

/* max_per_ip 0: no count limit; rate 0: no rate limit (rate is connections
 * per second, burst the bucket size). NULL on allocation failure. */
iplimit_t *iplimit_new(uint32_t max_per_ip, uint32_t rate, uint32_t burst, size_t max_entries);
void iplimit_free(iplimit_t *l);
/* New limits (configuration reload), from the next accept on; live counts are
 * kept and buckets above the new burst are cut to it. Connections accepted
 * while both limits were 0 were not counted, so an address may go over a
 * newly set max_per_ip until those end. */
void iplimit_set_limits(iplimit_t *l, uint32_t max_per_ip, uint32_t rate, uint32_t burst);
/* Admits one connection from ip (taking a token and counting it), or says why not. */
int iplimit_accept(iplimit_t *l, const char *ip, uint64_t now_ms);
/* A connection admitted with iplimit_accept has ended. */
void iplimit_release(iplimit_t *l, const char *ip, uint64_t now_ms);
/* One more TLS handshake in progress from ip, unless it has `max` already
 * (IPLIMIT_HANDSHAKES; or IPLIMIT_TABLE_FULL / IPLIMIT_NOMEM). Counted
 * whatever the connection limits, in the same entry. */
int iplimit_handshake_begin(iplimit_t *l, const char *ip, uint32_t max, uint64_t now_ms);
/* A handshake counted with iplimit_handshake_begin is over (done or closed). */
void iplimit_handshake_end(iplimit_t *l, const char *ip, uint64_t now_ms);
/* Forgets addresses with no connection and a full bucket. */
void iplimit_prune(iplimit_t *l, uint64_t now_ms);
size_t iplimit_size(const iplimit_t *l);
/* Live connections, and handshakes in progress, counted for ip (tests). */
uint32_t iplimit_count(const iplimit_t *l, const char *ip);
uint32_t iplimit_handshakes(const iplimit_t *l, const char *ip);
const char *iplimit_strerror(int rc);

#endif
