/* Authentication and publish authorization as the daemon applies them: the
 * password file (auth.h), the ACL file (acl.h) and the failed-attempt
 * throttle, with the policy from config.auth (allow_anonymous) and atomic
 * reload on SIGHUP.
 *
 * Loop thread only. No I/O except in security_new, security_reload and
 * security_prepare, which read the configured files. */
#ifndef M2K_SECURITY_H
#define M2K_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct security security_t;

/* Loads the files named in cfg (borrowed; must outlive the object). Returns
 * 0, or -1 with "FILE:LINE: message" in errbuf. */
int security_new(const config_auth_t *cfg, security_t **out, char *errbuf, size_t errlen);
void security_free(security_t *s);

/* Loads the password and ACL files again. Both load, or nothing changes
 * (fail closed: the old files stay in force) and -1 is returned with the
 * reason in errbuf. On success the generation advances. */
int security_reload(security_t *s, char *errbuf, size_t errlen);

/* The same in two phases, for a configuration reload (SIGHUP):
 * security_prepare loads the files named in cfg (the new configuration's
 * auth: section; borrowed like security_new's) into *out without touching
 * any running object: 0, or -1 with "FILE:LINE: message" in errbuf.
 * security_commit switches s to cfg and the loaded files, frees the old
 * ones, advances the generation and consumes u; it cannot fail. The
 * failed-login throttle is kept. security_update_free discards u instead. */
typedef struct security_update security_update_t;
int security_prepare(const config_auth_t *cfg, security_update_t **out, char *errbuf,
                     size_t errlen);
void security_commit(security_t *s, const config_auth_t *cfg, security_update_t *u);
void security_update_free(security_update_t *u);
/* Advances on every successful reload: cached ACL decisions of an older
 * generation are stale. */
uint32_t security_generation(const security_t *s);

/* The answer to a CONNECT: MQTT_CONNACK_ACCEPTED, MQTT_CONNACK_BAD_CREDENTIALS
 * (password file set and the user name/password pair is wrong or missing) or
 * MQTT_CONNACK_NOT_AUTHORIZED (no user name and anonymous clients are not
 * allowed). `identity` (non-NULL) is a user name established by a verified
 * client certificate: it is accepted without a password. `addr` is the
 * remote "ip:port"; failures are counted per IP and *delay_ms is how long to
 * hold the CONNACK (0..AUTH_THROTTLE_MAX_MS). While the address has
 * AUTH_THROTTLE_BURST recent failures, a user name and password are refused
 * (MQTT_CONNACK_BAD_CREDENTIALS) without being checked, and while
 * AUTH_THROTTLE_MAX_HELD of its answers are held any CONNECT is refused at
 * once (*delay_ms 0) without being checked; a success forgets
 * the failures of its user only. Nothing is logged here. */
int security_connect(security_t *s, const char *addr, const char *identity, bool has_user,
                     const char *user, size_t ulen, bool has_pw, const uint8_t *pw, size_t pwlen,
                     uint64_t now_ms, uint32_t *delay_ms);
/* For a check off the loop thread: whether security_connect would hash a
 * password for this CONNECT now (a user name, a password file, no
 * certificate identity, the address not throttled to an unchecked refusal).
 * security_db_ref: the password file, kept alive (auth_db_free releases it)
 * across a reload, or NULL. security_set_verdict: the next security_connect
 * on this thread (a worker's loop) that would hash uses `auth_rc`
 * (auth_db_check's answer, computed elsewhere) instead; that call consumes
 * it whatever it answers; SECURITY_NO_VERDICT clears it. The throttle's
 * bookkeeping is the same either way, under the object's mutex (every
 * worker's CONNECTs share it). */
#define SECURITY_NO_VERDICT 1
bool security_will_hash(security_t *s, const char *addr, const char *identity, bool has_user,
                        uint64_t now_ms);
struct auth_db;
struct auth_db *security_db_ref(security_t *s);
void security_set_verdict(security_t *s, int auth_rc);
/* CONNECTs refused without checking their password (AUTH_THROTTLE_BURST
 * failures, or AUTH_THROTTLE_MAX_HELD answers already held). */
uint64_t security_refused_unchecked(const security_t *s);
/* Whether the client may publish on the topic (true without an ACL file). */
bool security_can_publish(const security_t *s, const char *user, const char *client_id,
                          const char *topic, size_t topic_len);
/* Whether the client may receive a message on the topic name (an ACL
 * `read`/`readwrite` entry grants it, no deny refuses it), and whether it may
 * subscribe to the filter (acl_can_subscribe); true without an ACL file. */
bool security_can_read(const security_t *s, const char *user, const char *client_id,
                       const char *topic, size_t topic_len);
bool security_can_subscribe(const security_t *s, const char *user, const char *client_id,
                            const char *filter, size_t filter_len);
/* Whether an ACL file is in force (a session skips its cache otherwise). */
bool security_has_acl(const security_t *s);

/* The key for per-address limits and login throttling, from "ip:port" or
 * "[v6]:port" (NUL-terminated, truncated): the IPv4 address, or the IPv6
 * address's /64 as "2001:db8:1:2::/64" (an IPv4-mapped one as its IPv4). */
void security_addr_ip(const char *addr, char *out, size_t cap);

#endif
