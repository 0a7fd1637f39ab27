/* Transports (private to net/): the byte-stream layers between a
 * connection's socket and its protocol.
 *
 * A listener has a stack of layers, bottom first, chosen from its
 * configuration: TLS, and WebSocket above it (wss) or alone over the socket
 * (ws). An empty stack is plain TCP:
 * the shared transport_tcp, which passes bytes through. Each accepted
 * connection gets one transport_t per layer, linked by up and down.
 *
 * The connection core (conn.c) owns the socket, the shared read buffer and
 * the output buffer with its write coalescing. It hands socket bytes to the
 * bottom layer (transport_input) and the protocol's bytes to the top one
 * (type->output). A layer passes what it decoded up with transport_up() and
 * what it encoded down with transport_down(); past the ends are the
 * protocol and the socket. Nothing outside the layer's own file knows what
 * it is; docs/architecture.md says how a new one is added. */
#ifndef M2K_NET_TRANSPORT_H
#define M2K_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "net/server.h"
#include "util/list.h"

typedef struct server_conn conn_t;
typedef struct transport transport_t;
typedef struct transport_type transport_type_t;

/* One layer of one connection; an implementation embeds it first. */
struct transport {
    const transport_type_t *type;
    transport_t *up, *down; /* NULL: the protocol above, the socket below */
};

struct transport_type {
    const char *name; /* "TLS": in listener names ("0.0.0.0:8883 (TLS)") and logs */
    /* The connection opens (its protocol may send) only once this layer,
     * when it is the top one, calls transport_ready(); false: at accept. */
    bool handshake;

    /* Listener: *ctx for a listener whose configuration uses this layer,
     * NULL when it does not; 0, or -1 with errbuf. */
    int (*listen_new)(const config_listener_t *cl, void **ctx, char *errbuf, size_t errlen);
    void (*listen_free)(void *ctx);
    /* Optional, SIGHUP: prepare an *update from `next` (the listener's entry
     * in the new configuration, NULL when its address changed there), then
     * commit it into ctx (cannot fail) or abort it. */
    int (*reload_prepare)(void *ctx, const config_listener_t *next, void **update, char *errbuf,
                          size_t errlen);
    void (*reload_commit)(void *ctx, void *update, const char *listener_name);
    void (*reload_abort)(void *update);

    /* Connection: a new layer (NULL: no memory) and its end. */
    transport_t *(*conn_new)(void *ctx);
    void (*conn_free)(transport_t *t);
    /* Bytes from below: decode, pass the result on with transport_up();
     * on a broken stream call net_conn_lost(). */
    void (*input)(transport_t *t, conn_t *c, const uint8_t *p, size_t n);
    /* Bytes from above: encode, pass on with transport_down(). 0 or -1. */
    int (*output)(transport_t *t, conn_t *c, const void *p, size_t n);
    /* Optional: the connection is closing; say goodbye (close_notify). */
    void (*shutdown)(transport_t *t, conn_t *c);
    /* Optional, server_conn_move: the layer continues on another worker's
     * listener of the same address (its ctx); `resume` then decodes what
     * the layer holds and did not pass up before the move. */
    void (*conn_rebind)(transport_t *t, void *ctx);
    void (*resume)(transport_t *t, conn_t *c);
    /* Optional, server_conn_move: the protocol was opened again on the new
     * loop, before the moved bytes reach it; tell it again what the layer
     * told the first one (the TLS certificate's identity). */
    void (*reopened)(transport_t *t, conn_t *c);
    /* Optional: the connection did not open within connect_timeout_s. NULL
     * when this layer's handshake is done; else it logs, counts and returns
     * the reason the connection is closed with. */
    const char *(*handshake_timeout)(transport_t *t, conn_t *c, unsigned limit_s);
};

/* The implementations. */
extern transport_t transport_tcp; /* shared by every plain connection; no state */
extern const transport_type_t transport_tls_type;
extern const transport_type_t transport_ws_type;

/* ---- what the connection core does for transports (conn.c) ---- */

/* Decoded bytes to the protocol (buffering what it does not consume). */
void net_conn_deliver(conn_t *c, const uint8_t *p, size_t n);
/* Bytes to the socket, appended to the output buffer. 0 or -1 (no memory). */
int net_conn_emit(conn_t *c, const void *p, size_t n);
/* The handshake is done: the connection is open. */
void net_conn_ready(conn_t *c);
/* The stream is broken: the protocol is told (reason), the connection closes. */
void net_conn_lost(conn_t *c, const char *reason);
/* The protocol closes the connection with `reason` (logged there). */
void net_conn_end(conn_t *c, const char *reason);
/* The peer identity (client certificate user name) for the protocol: 0 or -1. */
int net_conn_set_identity(conn_t *c, const char *user);
const char *net_conn_remote(const conn_t *c);
server_stats_t *net_conn_stats(conn_t *c);
/* True once the connection is closing: decode nothing more. */
bool net_conn_closing(const conn_t *c);
/* While a layer's job runs (wait true), the socket is not read, so no input
 * reaches the layer; false: reading resumes (unless paused or closing). */
void net_conn_input_wait(conn_t *c, bool wait);

/* A layer's job off the loop thread (a TLS handshake step), work.c: the
 * server's jobs run on libuv's threadpool, at most
 * mqtt.max_tls_handshake_workers at once, the others waiting in order. The
 * layer owns j (embedded) and keeps it until done() or a cancel. */
typedef struct {
    list_t node; /* in the server's queue while waiting */
    server_t *s;
    void (*work)(void *arg); /* on a threadpool thread */
    void (*done)(void *arg); /* then on the loop thread */
    void *arg;
    bool running;
} net_job_t;

void net_job_submit(conn_t *c, net_job_t *j);
/* A waiting job is dropped: true. False when it runs: done() follows. */
bool net_job_cancel(net_job_t *j);

static inline void transport_up(transport_t *t, conn_t *c, const uint8_t *p, size_t n) {
    if (t->up)
        t->up->type->input(t->up, c, p, n);
    else
        net_conn_deliver(c, p, n);
}

static inline int transport_down(transport_t *t, conn_t *c, const void *p, size_t n) {
    return t->down ? t->down->type->output(t->down, c, p, n) : net_conn_emit(c, p, n);
}

/* A layer's handshake is done: the connection opens when it is the top one. */
static inline void transport_ready(transport_t *t, conn_t *c) {
    if (!t->up)
        net_conn_ready(c);
}

/* ---- stacks (transport.c) ---- */

#define TRANSPORT_MAX_LAYERS 3

/* The layers a listener gives its connections, bottom first. */
typedef struct {
    size_t n;
    const transport_type_t *type[TRANSPORT_MAX_LAYERS];
    void *ctx[TRANSPORT_MAX_LAYERS];
} transport_stack_t;

/* The stack cl asks for (NULL: none, plain TCP). 0, or -1 with "TLS: why". */
int transport_stack_init(transport_stack_t *st, const config_listener_t *cl, char *errbuf,
                         size_t errlen);
void transport_stack_free(transport_stack_t *st);
/* " (TLS)", or "" for plain TCP. */
void transport_stack_label(const transport_stack_t *st, char *out, size_t cap);
/* Layers with a reload step. */
size_t transport_stack_reloadable(const transport_stack_t *st);
/* Prepares every layer's reload into upd[]; -1 with errbuf on the first
 * failure (what was prepared is aborted). */
int transport_stack_reload_prepare(const transport_stack_t *st, const config_listener_t *next,
                                   void *upd[TRANSPORT_MAX_LAYERS], char *errbuf, size_t errlen);
void transport_stack_reload_commit(transport_stack_t *st, void *upd[TRANSPORT_MAX_LAYERS],
                                   const char *listener_name);
void transport_stack_reload_abort(const transport_stack_t *st, void *upd[TRANSPORT_MAX_LAYERS]);

/* A connection's layers: the top one, or NULL (logged, naming `peer`) when
 * out of memory. */
transport_t *transport_conn_new(const transport_stack_t *st, const char *peer);
void transport_conn_free(transport_t *top);
/* Socket bytes into the bottom layer. */
void transport_input(transport_t *top, conn_t *c, const uint8_t *p, size_t n);
/* server_conn_move: every layer to the same listener's ctx on the new server,
 * then every layer's resume, bottom first. */
void transport_conn_rebind(transport_t *top, const transport_stack_t *st);
void transport_resume(transport_t *top, conn_t *c);
/* server_conn_move: every layer's reopened, bottom first. */
void transport_reopened(transport_t *top, conn_t *c);
/* Every layer's goodbye, top first. */
void transport_shutdown(transport_t *top, conn_t *c);
/* The close reason from the first layer, bottom up, whose handshake is not done. */
const char *transport_handshake_timeout(transport_t *top, conn_t *c, unsigned limit_s);

#endif
