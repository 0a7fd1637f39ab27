/* QoS 2 ids across a restart, with the spool (docs/semantics.md, "QoS 2
 * across a restart"): the ids that sessions outliving their connection hold
 * between PUBLISH and PUBREL, saved in the spool's state file before the
 * PUBREC they guard goes out (and without a released id before its PUBCOMP
 * goes out), and put back as detached sessions at start. */
#ifndef M2K_DAEMON_QOS2_H
#define M2K_DAEMON_QOS2_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt/session.h"
#include "spool/spool.h"

typedef struct daemon_qos2 daemon_qos2_t;

/* Restores the saved sessions into sm (their expiry counts from now) and
 * logs what it found. NULL (logged): no memory, the ids are not kept. */
daemon_qos2_t *daemon_qos2_new(session_mgr_t *sm, spool_t *sp);
/* Waits for the save in flight, saves what changed since (the final state
 * at a clean exit), then frees. */
void daemon_qos2_free(daemon_qos2_t *q);
/* Whether sp's saved state holds a session's QoS 2 ids (or cannot be read). */
bool daemon_qos2_saved_ids(spool_t *sp);
/* Runs run(arg) on another thread, then done(arg) on the loop's; 0, or -1
 * (nothing queued). The daemon's is server_work; without one, saves run on
 * the loop thread. */
typedef int (*daemon_qos2_work_fn)(void *ud, void (*run)(void *arg), void (*done)(void *arg),
                                   void *arg);
void daemon_qos2_set_worker(daemon_qos2_t *q, daemon_qos2_work_fn work, void *ud);
/* A durable QoS 2 message of a session that outlives its connection
 * (session_mgr_qos2_durable said so): its completion (session_on_delivery,
 * err 0: the PUBREC) is held until a save holds its id. false: not held
 * (NULL, or no memory: the ids were saved here and now), deliver it. */
bool daemon_qos2_hold(daemon_qos2_t *q, uint64_t opaque);
/* Once per loop turn: when the ids changed since the last save and no save
 * is in flight, starts one (a snapshot now, the write and syncs on the
 * worker); its held PUBRECs and the PUBCOMPs waiting for it
 * (session_mgr_qos2_saved) go out once it is on disk. A failed save
 * answers nothing, is logged once per cause, counted
 * (session_mgr_qos2_save_failed) and retried at a turn QOS2_RETRY_MS later
 * at the earliest. NULL: no-op. */
void daemon_qos2_turn(daemon_qos2_t *q);

#endif
