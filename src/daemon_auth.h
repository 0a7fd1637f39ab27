/* Password checks off the loop thread (issue 20 finding 6): a connection's
 * CONNECT is held back from its session while auth_db_check runs on the
 * server's threadpool (server_work), at most auth.max_hashing at once, the
 * others waiting in a queue of auth.max_hashing_queue; past it the CONNECT
 * is answered CONNACK 3 (server unavailable) and closed. When the check is
 * done the CONNECT is fed to the session, which answers it as always with
 * the verdict given through security_set_verdict. */
#ifndef M2K_DAEMON_AUTH_H
#define M2K_DAEMON_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth/security.h"
#include "config/config.h"
#include "mqtt/session.h"
#include "net/server.h"

typedef struct daemon_auth daemon_auth_t;
typedef struct auth_job auth_job_t;
/* `sec` and `cfg` point at the daemon's pointers (read at each CONNECT: a
 * reload may replace them). With several workers (threads: N) each has one
 * on its server; `first` is the first worker's (NULL for it): auth.max_hashing
 * and auth.max_hashing_queue count every worker's checks. NULL when out of
 * memory. Made before the workers run; the first freed last. */
daemon_auth_t *daemon_auth_new(server_t *srv, security_t **sec, const config_t **cfg,
                               daemon_auth_t *first);
void daemon_auth_free(daemon_auth_t *a);
/* Sizes libuv's threadpool (UV_THREADPOOL_SIZE, read once at its first use)
 * so the password checks (auth.max_hashing), the TLS handshake steps
 * (mqtt.max_tls_handshake_workers) and the spool's fdatasync never wait
 * for each other: their sum plus 2 (the sync and one spare), unless the
 * environment sets it already (then a warning when it is smaller). Called
 * at start, before anything runs on the pool. With `workers` sharing the
 * pool, each runs its share of the handshake steps. Returns the size in
 * force. */
unsigned daemon_threadpool_size(const config_t *cfg, unsigned workers);
/* CONNECTs refused because the queue was full. */
uint64_t daemon_auth_refused(const daemon_auth_t *a);

/* The protocol object of an MQTT connection is its session_conn_t; its
 * session_conn_data is this module's (no allocation per connection). Call
 * once the connection's session exists, before it is fed. */
void daemon_auth_conn_open(daemon_auth_t *a, session_conn_t *sc);
/* The connection's input: session_feed, except for a CONNECT whose password
 * must be hashed, which is consumed only once its check is done (0 until
 * then; the connection is paused). -1: the connection was closed. */
ssize_t daemon_auth_feed(session_conn_t *sc, const uint8_t *buf, size_t len);
/* True once the first packet was screened (a CONNECT waits for its check, or
 * the bytes go to the session): the client id's worker was settled. */
bool daemon_auth_screened(const session_conn_t *sc);
/* True while the CONNECT waits for its check. */
bool daemon_auth_waiting(const session_conn_t *sc);
/* Frees the session's connection; a check still running finishes on its own. */
void daemon_auth_conn_free(session_conn_t *sc);

/* The session's auth ops (CONNECT, publish, subscribe and read decisions)
 * over security_*; `sec` points at the daemon's pointer, read at each call. */
session_auth_ops_t daemon_auth_session_ops(security_t **sec);

#endif
