/* The network side (libuv and OpenSSL's libssl are used in net/ only): one
 * loop, listeners, accept admission, connections with their read and write
 * buffers, transports (plain TCP, TLS, WebSocket; see src/net/transport.h),
 * backpressure, timers, signals and the close lifecycle.
 *
 * What the bytes mean is a protocol's business. The server serves two, each
 * given as a server_protocol_ops_t: one on the listeners (the daemon passes
 * the MQTT session manager) and one on the metrics listener (the HTTP
 * endpoint, ops/http_server.h). It never branches on which one it is; a
 * protocol drives its connection with the server_conn_* functions. */
#ifndef M2K_SERVER_H
#define M2K_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

typedef struct server server_t;
/* One accepted connection as its protocol sees it: valid until conn_free. */
typedef struct server_conn server_conn_t;

/* A protocol served on connections. `proto` is server_protocol_t.ud and `pc`
 * what conn_open returned. Called on the loop thread; none may call back
 * into the server for the same connection synchronously, except the
 * server_conn_* functions. Fields marked optional may be NULL. */
typedef struct {
    /* An accepted connection from `remote` ("1.2.3.4:5", "[::1]:5"; copy it
     * to keep it): the protocol's object, or NULL to refuse the connection
     * (the socket is closed at once; the protocol logs and counts why). Only
     * with a non-NULL result may it use server_conn_* on conn from here. */
    void *(*conn_open)(void *proto, server_conn_t *conn, const char *remote);
    /* Optional: the peer identity the transport established (the verified
     * client certificate's user name), before any byte is fed. 0 or -1. */
    int (*conn_identity)(void *pc, const char *user);
    /* Bytes from the client: the count consumed (the server keeps the rest
     * and feeds it again with the next bytes or after server_conn_resume),
     * or -1 when the connection was closed. */
    ssize_t (*conn_feed)(void *pc, const uint8_t *buf, size_t len);
    /* Optional: the whole length of the unit (packet) that starts at buf,
     * once its header tells, else 0. With it, a unit begun in an earlier read
     * is completed by copying only its missing bytes; what follows in the
     * read is fed from the read buffer without a copy. */
    size_t (*conn_need)(const void *pc, const uint8_t *buf, size_t len);
    /* The peer went away or the stream failed (`reason`); the server closes. */
    void (*conn_lost)(void *pc, const char *reason);
    /* The server needs the connection closed (output bound, transport
     * failure or timeout, no memory): log `reason`, then server_conn_close. */
    void (*conn_close)(void *pc, const char *reason);
    /* Optional: the server is about to close an open connection for a
     * reason of its own (SERVER_GOODBYE_*): the protocol may queue its last
     * words (MQTT 5: DISCONNECT 0x8B, 0x89), which go out before the close
     * (and before a transport's own goodbye, as the ws close frame). */
    void (*conn_goodbye)(void *pc, int why);
    /* True while the protocol wants no input. */
    bool (*conn_paused)(const void *pc);
    /* Optional: work outstanding; with none, an emptied output buffer is
     * freed instead of kept for the next answers. */
    uint32_t (*conn_inflight)(const void *pc);
    /* The remote address given to conn_open. */
    const char *(*conn_remote)(const void *pc);
    /* Optional: the timer of server_conn_timer expired. */
    void (*conn_timer)(void *pc);
    /* The socket is closed: free pc. */
    void (*conn_free)(void *pc);
    /* Optional: every tick interval (1 s by default). */
    void (*tick)(void *proto);
    /* Optional: the time the next calls see (loop monotonic ms, wall clock
     * in Unix ms, monotonic us), set before feeding, ticking and on_fd. */
    void (*set_now)(void *proto, uint64_t mono_ms, int64_t wall_ms, uint64_t mono_us);
} server_protocol_ops_t;

/* conn_goodbye's reasons: shutdown after the drain (server_stop), a bound
 * of the server's (mqtt.max_input_buffer_bytes). */
enum { SERVER_GOODBYE_SHUTDOWN, SERVER_GOODBYE_BUSY };

typedef struct {
    const server_protocol_ops_t *ops; /* NULL: not served */
    void *ud;                         /* `proto` of every call */
} server_protocol_t;

/* The process-wide connection bounds of several servers, one per worker
 * thread (threads: N): mqtt.max_connections, mqtt.max_tls_handshakes and
 * mqtt.max_input_buffer_bytes as atomic counters, the per-address limits
 * (auth/iplimit.h) under a mutex. A server without one makes its own. */
typedef struct server_shared server_shared_t;
/* NULL when out of memory; free after every server that uses it. */
server_shared_t *server_shared_new(const config_t *cfg);
void server_shared_free(server_shared_t *sh);

typedef struct {
    const config_t *cfg; /* borrowed */
    /* Optional (NULL: the server's own): the bounds it shares with the
     * servers of the other workers; borrowed. */
    server_shared_t *shared;
    /* Optional: the first worker's server, whose bound ports the listeners
     * bind too (port 0 in the configuration), with SO_REUSEPORT. */
    const server_t *first;
    /* The listeners are opened with SO_REUSEPORT (several workers). */
    bool reuseport;
    /* The servers (workers) sharing libuv's threadpool: each runs
     * config_share(mqtt.max_tls_handshake_workers, workers) handshake steps
     * at once. 0 counts as 1. */
    unsigned workers;
    /* Served on cfg->listeners, under the mqtt: limits: max_connections, the
     * per-address limits, connect_timeout_s for a transport handshake,
     * max_output_buffer. */
    server_protocol_t mqtt;
    /* Served on cfg->metrics_listen (when set) without those limits: the
     * protocol bounds itself. */
    server_protocol_t http;
    void *ud;                                /* passed to the callbacks below */
    void (*on_signal)(void *ud, int signum); /* SIGTERM, SIGINT, SIGHUP */
    int watch_fd;                            /* -1: none; else on_fd when readable */
    void (*on_fd)(void *ud);
    /* A second fd (the downlink consumer's), watched when on_fd2 is set. */
    int watch_fd2;
    void (*on_fd2)(void *ud);
    void (*on_tick)(void *ud); /* after the protocols' tick, every tick interval */
    /* Optional: once per loop turn, before the turn's pending connections are
     * fed and their output written, and again after (the spool's group
     * commit: what it answers then goes out in the same or the next turn). */
    void (*on_turn)(void *ud);
} server_opts_t;

/* The connections of the mqtt protocol (the listeners); the metrics
 * listener's are not counted here. */
typedef struct {
    uint64_t accepted;
    uint64_t refused_max_connections;
    uint64_t bytes_in, bytes_out;
    uint64_t writes;                 /* one per connection per loop turn with output */
    uint64_t refused_per_ip;         /* max_connections_per_ip (or address table full) */
    uint64_t refused_rate_per_ip;    /* connect_rate_per_ip */
    uint64_t refused_output_limit;   /* connections cut at max_output_buffer */
    uint64_t tls_handshake_failures; /* handshake errors and timeouts, max_tls_handshakes */
    uint64_t tls_handshake_steps;    /* SSL_do_handshake runs handed to the threadpool */
    uint64_t packet_timeouts;        /* a started packet not completed in packet_timeout_s */
    uint64_t input_budget_closed;    /* closed over max_input_buffer_bytes */
    uint64_t input_bytes;            /* gauge: bytes of partly received packets buffered */
    uint64_t ws_upgrade_failures;    /* WebSocket upgrades refused or timed out */
} server_stats_t;

/* Creates the loop, timers and signal watchers (no listening yet). Returns 0
 * or -1 with a message in errbuf. */
int server_new(const server_opts_t *opts, server_t **out, char *errbuf, size_t errlen);
/* Binds and listens on every configured listener and the metrics listener
 * (cfg->metrics_listen) unless server_listen_metrics already did; 0 or -1
 * with errbuf. */
int server_listen(server_t *s, char *errbuf, size_t errlen);
/* Binds the metrics listener alone (nothing when none is configured or it is
 * bound already), so /healthz and /readyz answer while the start still waits
 * for Kafka; 0 or -1 with errbuf. */
int server_listen_metrics(server_t *s, char *errbuf, size_t errlen);
/* A TCP relay from host:port (IPv4) to target ("IPv4:port"), served by the
 * loop until server_stop: the embedded Kafka's fixed bootstrap address
 * (kafka.embedded_port). 0, or -1 with errbuf. */
typedef struct server_forward server_forward_t;
int server_forward(server_t *s, const char *host, uint16_t port, const char *target, char *errbuf,
                   size_t errlen);
/* The port listener i (cfg->listeners order) is bound to, also when the
 * system chose it (port 0); 0 when it is not listening. */
uint16_t server_listener_port(const server_t *s, size_t i);
/* Makes the loop run one more turn (with its on_turn hooks) without waiting
 * for I/O: for work queued outside a connection's callbacks. */
void server_request_turn(server_t *s);
/* Runs the loop until server_stop has closed everything. Returns 0. */
int server_run(server_t *s);
/* Serves what is ready on the loop (connections, timers, signals) without
 * blocking, for the start's wait for Kafka. */
void server_run_once(server_t *s);
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
/* Closes the listeners (the metrics listener stays until server_stop). */
void server_stop_accepting(server_t *s);
/* Stops reading from every connection for good (acks still go out). */
void server_stop_reading(server_t *s);
/* Flushes pending output, closes every connection and handle; server_run
 * returns once all are closed (connections that do not drain are cut after 2 s). */
void server_stop(server_t *s);
/* Frees the server after server_run has returned. */
void server_free(server_t *s);
const server_stats_t *server_stats(const server_t *s);
/* Connections of the mqtt protocol. */
size_t server_conn_count(const server_t *s);

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

/* Runs fn(arg) on s's loop thread, soon; callable from any thread. A call
 * posted before server_stop runs at the latest in server_stop. 0, or -1 (no
 * memory, or s stopped already: fn does not run). */
int server_post(server_t *s, void (*fn)(void *arg), void *arg);

/* Runs work(arg) on libuv's threadpool (shared with DNS and file requests;
 * UV_THREADPOOL_SIZE, 4 by default), then done(arg) on the loop thread.
 * work() must touch nothing the loop thread uses unlocked. 0, or -1 (no
 * memory): nothing was queued. server_free waits for every done(). */
int server_work(server_t *s, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* ---- for protocols: one connection (`c` from conn_open) ---- */

/* Hands an open connection to server `to` (another worker's loop, on its
 * thread), with `buf`/`len` the bytes the protocol read and did not consume
 * (copied). Called from conn_feed, which then returns -1: the protocol's
 * object is freed (conn_free, nothing logged), no byte goes out, and the
 * socket, its transport layers (a TLS session, a WebSocket's state), remote
 * address, listener and accept time continue on `to`, which opens its
 * protocol and feeds it `buf` as if just read. Only once the transports'
 * handshakes are done. 0, or -1 (`to` stops, no memory): nothing changed. */
int server_conn_move(server_conn_t *c, server_t *to, const uint8_t *buf, size_t len);

/* Queues bytes for the client (copied; each connection's output is written
 * once per loop turn, in order): 0, or -1 when the output bound is hit
 * (logged and counted; the protocol then closes) or the socket is closed. */
int server_conn_send(server_conn_t *c, const void *buf, size_t len);
/* Stops reading, flushes what was queued, sends the FIN and closes the
 * socket (cut when it does not drain within 5 s); conn_free follows.
 * Idempotent. */
void server_conn_close(server_conn_t *c);
/* Stops reading: the bytes conn_feed did not consume stay buffered. */
void server_conn_pause(server_conn_t *c);
/* Reading may go on: the buffered bytes are fed again from the loop (never
 * from inside this call), then reading restarts. */
void server_conn_resume(server_conn_t *c);
/* Holds the connection's output and input for ms milliseconds (a throttled
 * answer); a close requested meanwhile happens after the hold. */
void server_conn_hold(server_conn_t *c, uint32_t ms);
/* Calls conn_timer once after ms, unless the connection is closing by then.
 * A connection has one timer: a hold replaces it. 0, or -1 (no memory, held
 * or closing). */
int server_conn_timer(server_conn_t *c, uint32_t ms);
/* The accepting listener's name ("127.0.0.1:1883", "0.0.0.0:8883 (TLS)")
 * and the accept time in ns on the monotonic clock the loops' (server_now_ms)
 * is in ms, read at the accept and kept through server_conn_move: it orders
 * connections across workers (the introspection endpoint). */
const char *server_conn_listener(const server_conn_t *c);
/* The `ud` of the protocol the connection is served by (server_protocol_t). */
void *server_conn_proto(const server_conn_t *c);
uint64_t server_conn_accepted_ns(const server_conn_t *c);

#endif
