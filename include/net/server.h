/* The network side (libuv is used here only): one loop, TCP listeners,
 * accept, per-connection read and write buffers, backpressure, timers,
 * signals and the close lifecycle. Protocol work is delegated to session.c. */
#ifndef M2K_SERVER_H
#define M2K_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "mqtt/session.h"

typedef struct server server_t;

typedef struct {
    const config_t *cfg;                     /* borrowed */
    session_mgr_t *sessions;                 /* borrowed */
    void *ud;                                /* passed to the callbacks below */
    void (*on_signal)(void *ud, int signum); /* SIGTERM, SIGINT, SIGHUP */
    int watch_fd;                            /* -1: none; else on_fd when readable */
    void (*on_fd)(void *ud);
    void (*on_tick)(void *ud); /* after the sessions' tick, every tick interval */
    /* The HTTP endpoint on cfg->metrics_listen (see http.h): the metrics text
     * (malloc'd, NULL = 500) and readiness (1, or 0 with a reason). */
    char *(*on_metrics)(void *ud, size_t *len);
    int (*on_ready)(void *ud, char *reason, size_t cap);
} server_opts_t;

/* At most this many HTTP connections at once; more are closed at accept. */
#define SERVER_HTTP_MAX_CONNS 16

typedef struct {
    uint64_t accepted;
    uint64_t refused_max_connections;
    uint64_t bytes_in, bytes_out;
    uint64_t writes;               /* one per connection per loop turn with output */
    uint64_t refused_per_ip;       /* max_connections_per_ip (or address table full) */
    uint64_t refused_rate_per_ip;  /* connect_rate_per_ip */
    uint64_t refused_output_limit; /* connections cut at max_output_buffer */
    uint64_t http_requests, http_refused;
    uint64_t tls_handshake_failures; /* handshake errors and timeouts */
} server_stats_t;

/* Creates the loop, timers and signal watchers (no listening yet). Returns 0
 * or -1 with a message in errbuf. */
int server_new(const server_opts_t *opts, server_t **out, char *errbuf, size_t errlen);
/* Binds and listens on every configured listener and the metrics listener
 * (cfg->metrics_listen); 0 or -1 with errbuf. */
int server_listen(server_t *s, char *errbuf, size_t errlen);
/* Runs the loop until server_stop has closed everything. Returns 0. */
int server_run(server_t *s);
/* The loop's monotonic time in ms and the wall clock in Unix ms. */
uint64_t server_now_ms(const server_t *s);
int64_t server_wall_ms(void);
/* Switches to a reloaded configuration (borrowed): limits such as
 * mqtt.max_connections, the per-address limits (max_connections_per_ip,
 * connect_rate_per_ip, connect_burst_per_ip), connect_timeout_s and
 * max_output_buffer apply to the next accept or write. Listeners (address,
 * TLS on or off, use_identity_as_username) are not rebound or changed. */
void server_set_config(server_t *s, const config_t *cfg);
/* Calls cb(opts->ud) every period_ms from the loop (the systemd watchdog);
 * 0 stops it. */
void server_set_periodic(server_t *s, unsigned period_ms, void (*cb)(void *ud));
/* Changes the tick interval (1000 ms by default). */
void server_set_tick(server_t *s, unsigned ms);
/* Closes the listeners. */
void server_stop_accepting(server_t *s);
/* Stops reading from every connection for good (acks still go out). */
void server_stop_reading(server_t *s);
/* Flushes pending output, closes every connection and handle; server_run
 * returns once all are closed (connections that do not drain are cut after 2 s). */
void server_stop(server_t *s);
/* Frees the server after server_run has returned. */
void server_free(server_t *s);
const server_stats_t *server_stats(const server_t *s);
/* SIGHUP, in two phases like every reload step (daemon.c):
 * server_tls_prepare loads a new certificate, key and CA for every TLS
 * listener without touching the running ones. Each listener uses the tls:
 * section of the same listener in `next` (same listen address, TLS on);
 * a listener that changed there needs a restart and reloads the files it
 * started with. Returns 0 with *out (NULL when there is no TLS listener),
 * or -1 with every failing listener in errbuf (one line each).
 * server_tls_commit switches every listener to its new context and cannot
 * fail: new handshakes use it, established connections keep theirs. It
 * consumes `u`; server_tls_abort frees a prepared `u` instead. */
typedef struct server_tls_update server_tls_update_t;
int server_tls_prepare(server_t *s, const config_t *next, server_tls_update_t **out, char *errbuf,
                       size_t errlen);
void server_tls_commit(server_t *s, server_tls_update_t *u);
void server_tls_abort(server_tls_update_t *u);
size_t server_conn_count(const server_t *s);

#endif
