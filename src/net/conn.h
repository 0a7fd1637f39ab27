/* Private to net/: the server's and the connections' structures, shared by
 * server.c (loop, listeners, timers, lifecycle) and conn.c (the connection
 * core: accept, read, write, close). */
#ifndef M2K_NET_CONN_H
#define M2K_NET_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "auth/iplimit.h"
#include "net/server.h"
#include "transport.h"
#include "util/list.h"
#include "util/log.h"

#define READ_BUF_SIZE (64 * 1024)

typedef struct listener listener_t;

#define SHARED_SERVERS_MAX 64 /* threads: at most CONFIG_THREADS_MAX */

/* The bounds several servers share (server.h). */
struct server_shared {
    atomic_size_t conns;        /* mqtt connections of every server (max_connections) */
    atomic_size_t handshakes;   /* in CONN_HANDSHAKE (max_tls_handshakes) */
    atomic_uint_fast64_t input; /* bytes of partial packets (max_input_buffer_bytes) */
    pthread_mutex_t mu;         /* iplimit */
    iplimit_t *iplimit;
    /* max_input_buffer_bytes' largest first across servers: each server's
     * largest partial packet as it last saw it (possibly high once it is
     * released), and the servers, to ask the one holding the largest. */
    atomic_uint_fast64_t largest[SHARED_SERVERS_MAX];
    _Atomic(server_t *) servers[SHARED_SERVERS_MAX];
    atomic_uint n_servers;
    /* Their repetitive lines: the limits hold for the process. */
    log_ratelimit_t rl_refused, iplimit_log;
};

/* The connections of one protocol. */
typedef struct {
    server_protocol_t p;
    size_t n_conns;
    bool limits; /* the mqtt: limits apply (see server_opts_t) */
    server_stats_t st;
} service_t;

enum { SERVICE_MQTT, SERVICE_HTTP, SERVICE_COUNT };

struct listener {
    uv_tcp_t tcp;
    server_t *srv;
    service_t *svc;
    char name[80];
    const config_listener_t *cfg; /* NULL on the metrics listener */
    transport_stack_t stack;      /* the layers of its connections */
    uint16_t port;                /* bound */
};

/* A connection's life; conn_set_state asserts every transition. */
typedef enum {
    CONN_HANDSHAKE, /* a transport handshake (TLS) is under way */
    CONN_OPEN,      /* the protocol's bytes flow */
    CONN_CLOSING,   /* no more reading: queued output is flushed, then the FIN */
    CONN_SHUTDOWN,  /* the FIN is queued behind the output (uv_shutdown) */
    CONN_CLOSED,    /* the handle is closing; freed in its close callback */
} conn_state_t;

/* One per connection, idle ones included: sizes are 32-bit (input is
 * bounded by max_packet_size, output by max_output_buffer) and flags are
 * bits, to keep it small. The address for the per-IP limits is not kept:
 * it is the protocol's remote address without the port. */
struct server_conn {
    /* First: a refused connection is freed as its handle, and the handle's
     * callbacks cast it back to the connection. Its `data` (libuv leaves it
     * to us) holds the accept time instead (conn_accepted_ns). */
    uv_tcp_t tcp;
    listener_t *l;
    void *pc;          /* the protocol's object */
    transport_t *tr;   /* the top transport layer */
    uv_timer_t *timer; /* while held, or while the protocol's timer runs */
    /* Accepted at (handshake timeout); while open, when the packet being
     * received started (packet_timeout_s); then the start of the close
     * (grace timeout): they never overlap. */
    uint64_t since_ms;
    uint8_t *in;
    uint8_t *out;
    list_t node;    /* server.conns */
    list_t pending; /* server.pending: output to flush, bytes to feed again, a close */
    uint32_t in_len, in_cap;
    uint32_t out_len, out_cap;
    uint32_t queued; /* bytes handed to uv_write and not yet written */
    uint8_t state;   /* conn_state_t */
    bool reading : 1, paused : 1, held : 1, feed_pending : 1, counted_ip : 1;
    bool tr_wait : 1;        /* a transport job runs: no reading (net_conn_input_wait) */
    bool in_counted : 1;     /* in_cap is in the service's st.input_bytes */
    bool tls_counted : 1;    /* in the server's handshakes until it leaves CONN_HANDSHAKE */
    bool tls_counted_ip : 1; /* ... and in its address's (max_tls_handshakes_per_ip) */
    bool moving : 1;         /* server_conn_move: its message is in server.moves */
    bool moved : 1;          /* handed to another server: it counts there */
};

/* The accept time (uv_hrtime, ns), kept through a move: the introspection
 * pages order connections by it across workers. In the handle's `data`:
 * `since_ms` is the accept time only until the first packet arrives in
 * pieces, and a field of its own would grow every connection. */
_Static_assert(sizeof(void *) >= sizeof(uint64_t), "the accept time is kept in a pointer");
static inline void conn_set_accepted(conn_t *c, uint64_t ns) {
    c->tcp.data = (void *)(uintptr_t)ns;
}
static inline uint64_t conn_accepted_ns(const conn_t *c) {
    return (uint64_t)(uintptr_t)c->tcp.data;
}

struct server {
    server_opts_t o;
    const config_t *cfg;
    uv_loop_t loop;
    uv_timer_t tick, stop_timer, periodic;
    uv_check_t check;
    uv_idle_t idle;
    uv_poll_t poll;
    uv_poll_t poll2; /* opts.watch_fd2 */
    uv_signal_t sig[3];
    bool have_poll, have_poll2, have_metrics;
    service_t svc[SERVICE_COUNT];
    listener_t *listeners;
    size_t n_listeners, n_listening;
    size_t n_listener_slots; /* listeners[] entries, transport stacks among them */
    listener_t metrics;
    list_t conns;   /* every connection, newest first */
    list_t pending; /* connections with work for the end of the loop turn */
    bool intake_stopped, stopping, stop_timer_closed;
    unsigned tick_ms;
    uint8_t *rbuf; /* the read buffer shared by every connection */
    void (*periodic_cb)(void *ud);
    server_forward_t *fwd; /* forward.c: the embedded Kafka's fixed bootstrap port */
    size_t work_pending;   /* work.c: requests on the threadpool */
    list_t jobs;           /* work.c: transport jobs waiting for a worker, oldest first */
    uint32_t jobs_running; /* ... and on the threadpool (mqtt.max_tls_handshake_workers) */
    server_shared_t *sh;   /* the bounds shared with other servers (opts.shared or own) */
    bool own_sh;
    unsigned sh_idx; /* this server's slot in sh->largest and sh->servers */
    /* move.c: connections other servers hand over (server_conn_move). */
    uv_async_t inbox_async;
    pthread_mutex_t inbox_mu;
    list_t inbox;
    list_t calls;      /* server_post */
    list_t moves;      /* connections on their way out, sent once their output is out
                          (a list here, not a pointer in every conn_t: moves are rare) */
    bool inbox_closed; /* under inbox_mu: server_stop ran; moves are refused */
};

/* The per-address limits, under the shared mutex (iplimit.h's calls). */
int net_ip_accept(server_t *s, const char *ip);
int net_ip_handshake_begin(server_t *s, const char *ip, uint32_t max);
void net_ip_handshake_end(server_t *s, const char *ip);
void net_ip_release(server_t *s, const char *ip);
/* move.c, for server.c: the inbox opens with the server, closes with
 * server_stop (connections still in it are closed), is freed by server_free. */
int net_inbox_init(server_t *s);
void net_inbox_close(server_t *s);
void net_inbox_free(server_t *s);
/* move.c, for conn.c: sends a moving connection once its output is written
 * (true: it is gone, its handle closing). */
bool net_move_send(conn_t *c);
/* Bytes a transport layer decoded after server_conn_move (the rest of the
 * read the CONNECT came in): they go along, after the moved bytes. */
void net_move_append(conn_t *c, const uint8_t *p, size_t n);
void net_move_abandon(conn_t *c);

/* work.c: runs the loop until every threadpool request has called done(). */
void net_work_drain(server_t *s);

/* server.c: tells every protocol the time (before feeding, ticking, on_fd). */
void net_set_now(server_t *s);

/* conn.c, for conn_accept.c and move.c. */
void conn_set_state(conn_t *c, conn_state_t to);
void conn_read_start(conn_t *c);
void conn_read_stop(conn_t *c);
/* Work for the end of the loop turn (output, a feed, a close, a move). */
void conn_mark_pending(conn_t *c);
/* Closes the handle at once (no FIN first); the close callback frees. */
void conn_close_handle(conn_t *c);
void conn_on_refused_closed(uv_handle_t *h);
/* conn_accept.c, for server.c. */
void conn_on_connection(uv_stream_t *ls, int status);
/* conn.c, for server.c. */
void conn_on_check(uv_check_t *h);
void conn_process_pending(server_t *s);
/* Transport handshakes past connect_timeout_s are closed (before the
 * protocols' tick, so the log says why). */
void conn_check_handshakes(server_t *s, uint64_t now);
/* Open connections that started a packet more than packet_timeout_s ago
 * (and are not paused by backpressure) are closed. */
void conn_check_partial(server_t *s, uint64_t now);
/* Closing connections that did not drain within the grace period are cut. */
void conn_cut_stragglers(server_t *s, uint64_t now);
void conn_stop_reading_all(server_t *s);
/* server_stop: every connection is told and begins to close. */
void conn_close_all(server_t *s);
/* The stop timer: whatever is left is cut. */
void conn_cut_all(server_t *s);
/* forward.c, for server.c: server_stop closes the relay and its connections,
 * server_free frees it. */
void forward_stop(server_t *s);
void forward_free(server_t *s);

#endif
