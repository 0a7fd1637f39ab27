/* Topic access control from a Mosquitto-format ACL file.
 *
 *     # comment
 *     topic [read|write|readwrite|deny] FILTER    (no access word: readwrite)
 *     user NAME
 *     topic ...                                    (entries of NAME)
 *     pattern [read|write|readwrite|deny] FILTER   (%u, %c: whole levels)
 *
 * `topic` lines before the first `user` line apply to clients that gave no
 * user name; `pattern` lines apply to every client wherever they appear.
 * Decision, as in Mosquitto 2.0 (src/security_default.c):
 *   1. the client's own `topic` entries: a matching deny refuses; else a
 *      matching entry granting the access allows;
 *   2. then `pattern` entries: a matching deny refuses; else a matching entry
 *      granting the access allows;
 *   3. otherwise refused (so an empty file refuses everything).
 * A client whose user name or client id is empty or contains '+', '#' or '/'
 * never matches any pattern. Details and deviations: docs/security.md. */
#ifndef M2K_ACL_H
#define M2K_ACL_H

#include <stdbool.h>
#include <stddef.h>

#define ACL_READ 1
#define ACL_WRITE 2

typedef struct acl acl_t;

/* Loads an ACL file; NULL with "FILE:LINE: message" in errbuf on error. */
acl_t *acl_load(const char *path, char *errbuf, size_t errlen);
/* The same from a buffer (need not be NUL-terminated); `name` for messages. */
acl_t *acl_load_string(const char *name, const char *buf, size_t len, char *errbuf, size_t errlen);
void acl_free(acl_t *acl);

/* Whether the client may have `access` (ACL_READ or ACL_WRITE) on the topic
 * name. `user` is NULL for a client that gave no user name; `client_id` is
 * NUL-terminated; `topic` is a topic name (a wildcard in it is refused). Cost:
 * a binary search for the user plus a walk over that user's entries and all
 * patterns; a session may cache decisions per topic (the ACL is immutable). */
bool acl_check(const acl_t *acl, const char *user, const char *client_id, const char *topic,
               size_t topic_len, int access);
bool acl_can_publish(const acl_t *acl, const char *user, const char *client_id, const char *topic,
                     size_t topic_len);

/* Whether a SUBSCRIBE to the (valid) topic filter may be granted: some
 * `read`/`readwrite` entry of the client's (its own `topic` lines, then the
 * patterns with %u/%c replaced) matches a topic the filter matches. Deny
 * entries are not consulted here: a filter wider than the rules is granted
 * and each delivery is checked with acl_check(ACL_READ). */
bool acl_can_subscribe(const acl_t *acl, const char *user, const char *client_id,
                       const char *filter, size_t filter_len);

/* MQTT 3.1.1 matching of a valid filter against a topic name, including '#'
 * matching its parent level and wildcards at the first level not matching a
 * topic that starts with '$' [4.7.2-1]. Exposed for tests and the fuzzer. */
bool acl_filter_matches(const char *filter, size_t flen, const char *topic, size_t tlen);

#endif
