/* The Kafka -> MQTT routing core (src/downlink/, library m2k_downlink): what
 * does not live in the MQTT session. Pure: no I/O, no clock, no globals; links
 * m2k_util only. The session calls it through the functions of route.h,
 * subs.h, retained.h and queue.h (docs/architecture.md "The downlink"). */
#ifndef M2K_DOWNLINK_DOWNLINK_H
#define M2K_DOWNLINK_DOWNLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes of the downlink functions: 0 or one of these. */
#define DL_EINVAL (-1) /* an invalid topic name or filter */
#define DL_ENOMEM (-2)
#define DL_ENOENT (-3) /* no such subscription / retained message */
#define DL_EFULL (-4)  /* a bound was hit (counted by the caller's stats) */

/* A static description of a DL_* code. */
const char *dl_strerror(int rc);

/* An MQTT topic name a server may send: 1..65535 bytes of valid UTF-8
 * without NUL, '+' or '#'. 0 or DL_EINVAL, *why (may be NULL) says which. */
int dl_topic_check(const char *t, size_t len, const char **why);

/* An MQTT topic filter: a topic name where '+' is a whole level and '#' the
 * whole last level. 0 or DL_EINVAL. */
int dl_filter_check(const char *f, size_t len, const char **why);

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
bool dl_utf8_valid(const char *s, size_t len);

/* An mqtt.message_expiry header's value: decimal seconds, 1..4294967295 (as
 * MQTT 5's message expiry interval); anything else (0, signs, spaces, more
 * digits) is 0: no expiry. */
uint32_t dl_expiry_parse(const void *v, size_t len);

#endif
