/* The network side (libuv is used here only): one loop, TCP listeners,
 * accept, per-connection read and write buffers, backpressure, timers,
 * signals and the close lifecycle. Protocol work is delegated to session.c. */
#ifndef M2K_SERVER_H
#define M2K_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "session.h"

typedef struct server server_t;

typedef struct {
    const config_t *cfg;                     /* borrowed */
    session_mgr_t *sessions;                 /* borrowed */
    void *ud;                                /* passed to the callbacks below */
    void (*on_signal)(void *ud, int signum); /* SIGTERM, SIGINT, SIGHUP */
    int watch_fd;                            /* -1: none; else on_fd when readable */
    void (*on_fd)(void *ud);
    void (*on_tick)(void *ud); /* after the sessions' tick, every tick interval */
} server_opts_t;

typedef struct {
    uint64_t accepted;
    uint64_t refused_max_connections;
    uint64_t bytes_in, bytes_out;
    uint64_t writes;               /* one per connection per loop turn with output */
    uint64_t refused_per_ip;       /* max_connections_per_ip (or address table full) */
    uint64_t refused_rate_per_ip;  /* connect_rate_per_ip */
    uint64_t refused_output_limit; /* connections cut at max_output_buffer */
} server_stats_t;

/* Creates the loop, timers and signal watchers (no listening yet). Returns 0
 * or -1 with a message in errbuf. */
int server_new(const server_opts_t *opts, server_t **out, char *errbuf, size_t errlen);
/* Binds and listens on every configured listener; 0 or -1 with errbuf. */
int server_listen(server_t *s, char *errbuf, size_t errlen);
/* Runs the loop until server_stop has closed everything. Returns 0. */
int server_run(server_t *s);
/* The loop's monotonic time in ms and the wall clock in Unix ms. */
uint64_t server_now_ms(const server_t *s);
int64_t server_wall_ms(void);
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
/* SIGHUP: reloads every TLS listener's certificate, key and CA. New
 * handshakes use the new files; established connections are untouched. A
 * listener whose files do not load keeps the old ones (logged). 0, or -1 if
 * any listener failed. */
int server_reload_tls(server_t *s);
size_t server_conn_count(const server_t *s);

#endif
