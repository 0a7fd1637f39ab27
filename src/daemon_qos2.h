/* QoS 2 ids across a restart, with the spool (docs/semantics.md, "QoS 2
 * across a restart"): the ids that sessions outliving their connection hold
 * between PUBLISH and PUBREL, saved in the spool's state file before the
 * PUBREC they guard goes out, and put back as detached sessions at start. */
#ifndef M2K_DAEMON_QOS2_H
#define M2K_DAEMON_QOS2_H

#include <stdint.h>

#include "mqtt/session.h"
#include "spool/spool.h"

typedef struct daemon_qos2 daemon_qos2_t;

/* Restores the saved sessions into sm (their expiry counts from now) and
 * logs what it found. NULL (logged): no memory, the ids are not kept. */
daemon_qos2_t *daemon_qos2_new(session_mgr_t *sm, spool_t *sp);
/* Saves what changed since the last save (the final state at a clean exit), then frees. */
void daemon_qos2_free(daemon_qos2_t *q);
/* Before each completion of the spool (err: its status): when the record
 * is durable (err 0) and the ids changed since the last save, saves them,
 * so a PUBREC never goes out before its id is on disk; released ids go
 * with the next save. NULL: no-op. */
void daemon_qos2_before_ack(daemon_qos2_t *q, int err);

#endif
