/* The WebSocket layer (see transport.h), over the socket (ws) or over TLS
 * (wss): the HTTP/1.1 upgrade, then binary frames carrying the protocol's
 * bytes (net/ws.h does the parsing, with http_parser and wslay). Refused
 * upgrades and violations are logged (rate-limited) and counted as
 * ws_upgrade_failures (upgrades) or closed with a close frame (frames). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "transport.h"
#include "util/log.h"

/* One WebSocket listener: its settings as the daemon started (path,
 * origins) and the frame bound, which follows mqtt.max_packet_size. */
typedef struct {
    const config_listener_t *cfg;
    uint32_t max_message;
} ws_listen_t;

typedef struct {
    transport_t base;
    ws_listen_t *l;
    conn_t *c;           /* while input or output runs */
    ws_frames_t *frames; /* NULL until the upgrade is done */
    uint8_t *head;       /* the request head so far */
    size_t head_len;
} ws_layer_t;

/* One for every worker: the limit holds for the process. */
static log_ratelimit_t ws_log = LOG_RATELIMIT_INIT("WebSocket failure", 20, 10000);

static int ws_listen_new(const config_listener_t *cl, void **ctx, char *errbuf, size_t errlen) {
    *ctx = NULL;
    if (!cl->websocket.enabled)
        return 0;
    ws_listen_t *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    l->cfg = cl;
    l->max_message = cl->websocket.max_message;
    *ctx = l;
    return 0;
}

static void ws_listen_free(void *ctx) {
    free(ctx);
}

static int ws_reload_prepare(void *ctx, const config_listener_t *next, void **update, char *errbuf,
                             size_t errlen) {
    ws_listen_t *l = ctx;
    uint32_t *u = malloc(sizeof(*u));
    if (!u) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    *u = next && next->websocket.enabled ? next->websocket.max_message : l->max_message;
    *update = u;
    return 0;
}

/* New connections get the new bound; open ones keep theirs. */
static void ws_reload_commit(void *ctx, void *update, const char *listener_name) {
    (void)listener_name;
    ((ws_listen_t *)ctx)->max_message = *(uint32_t *)update;
    free(update);
}

static void ws_reload_abort(void *update) {
    free(update);
}

static transport_t *ws_layer_new(void *ctx) {
    ws_layer_t *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->l = ctx;
    return &x->base;
}

static void ws_layer_free(transport_t *t) {
    ws_layer_t *x = (ws_layer_t *)t;
    ws_frames_free(x->frames);
    free(x->head);
    free(x);
}

static bool frames_data(void *ud, const uint8_t *p, size_t n) {
    ws_layer_t *x = ud;
    transport_up(&x->base, x->c, p, n);
    return !net_conn_closing(x->c);
}

static int frames_send(void *ud, const uint8_t *p, size_t n) {
    ws_layer_t *x = ud;
    return transport_down(&x->base, x->c, p, n);
}

static const ws_frames_ops_t frames_ops = {frames_data, frames_send};

static void frames_input(ws_layer_t *x, conn_t *c, const uint8_t *p, size_t n) {
    if (n == 0 || net_conn_closing(c))
        return;
    x->c = c;
    if (ws_frames_input(x->frames, p, n) != WS_DONE || net_conn_closing(c))
        return;
    if (ws_frames_by_peer(x->frames))
        net_conn_lost(c, ws_frames_why(x->frames));
    else
        net_conn_end(c, ws_frames_why(x->frames));
}

/* The request head: answered once complete; the bytes after it are frames. */
static void upgrade_input(ws_layer_t *x, conn_t *c, const uint8_t *p, size_t n) {
    const uint8_t *buf = p;
    size_t len = n, prev = x->head_len;
    if (x->head_len || n < WS_MAX_HEAD) {
        size_t take = n < WS_MAX_HEAD - x->head_len ? n : WS_MAX_HEAD - x->head_len;
        if (!x->head && !(x->head = malloc(WS_MAX_HEAD))) {
            net_conn_end(c, "out of memory for the WebSocket upgrade");
            return;
        }
        memcpy(x->head + x->head_len, p, take);
        x->head_len += take;
        buf = x->head;
        len = x->head_len;
    }
    ws_upgrade_t u;
    const config_ws_t *w = &x->l->cfg->websocket;
    ws_upgrade_opts_t o = {w->path, w->origins, w->n_origins};
    if (ws_upgrade_parse(buf, len, &o, &u) == 0)
        return;
    transport_down(&x->base, c, u.response, u.response_len);
    if (u.status != 101) {
        net_conn_stats(c)->ws_upgrade_failures++;
        log_client_ratelimited(&ws_log, LOG_WARN, NULL, net_conn_remote(c),
                               "WebSocket upgrade refused: %d %s", u.status, u.why);
        net_conn_lost(c, "WebSocket upgrade refused");
        return;
    }
    /* What followed the head in this read. */
    size_t rest_off = buf == p ? u.head_len : u.head_len - prev;
    x->frames = ws_frames_new(&frames_ops, x, x->l->max_message);
    free(x->head);
    x->head = NULL;
    x->head_len = 0;
    if (!x->frames) {
        net_conn_end(c, "out of memory for the WebSocket state");
        return;
    }
    log_debug("%s: WebSocket upgrade done (subprotocol %s)", net_conn_remote(c), u.subprotocol);
    transport_ready(&x->base, c);
    frames_input(x, c, p + rest_off, n - rest_off);
}

static void ws_input(transport_t *t, conn_t *c, const uint8_t *p, size_t n) {
    ws_layer_t *x = (ws_layer_t *)t;
    if (x->frames)
        frames_input(x, c, p, n);
    else
        upgrade_input(x, c, p, n);
}

static int ws_output(transport_t *t, conn_t *c, const void *p, size_t n) {
    ws_layer_t *x = (ws_layer_t *)t;
    if (!x->frames)
        return -1;
    x->c = c;
    return ws_frames_send(x->frames, p, n);
}

static void ws_shutdown(transport_t *t, conn_t *c) {
    ws_layer_t *x = (ws_layer_t *)t;
    if (!x->frames)
        return;
    x->c = c;
    ws_frames_close(x->frames, 1000);
}

static const char *ws_handshake_timeout(transport_t *t, conn_t *c, unsigned limit_s) {
    ws_layer_t *x = (ws_layer_t *)t;
    if (x->frames)
        return NULL;
    net_conn_stats(c)->ws_upgrade_failures++;
    log_client_ratelimited(&ws_log, LOG_WARN, NULL, net_conn_remote(c),
                           "WebSocket upgrade not completed within connect_timeout_s %u", limit_s);
    return "WebSocket upgrade timeout";
}

static void ws_conn_rebind(transport_t *t, void *ctx) {
    ((ws_layer_t *)t)->l = ctx;
}

const transport_type_t transport_ws_type = {
    .name = "WebSocket",
    .handshake = true,
    .listen_new = ws_listen_new,
    .listen_free = ws_listen_free,
    .reload_prepare = ws_reload_prepare,
    .reload_commit = ws_reload_commit,
    .reload_abort = ws_reload_abort,
    .conn_new = ws_layer_new,
    .conn_free = ws_layer_free,
    .input = ws_input,
    .output = ws_output,
    .shutdown = ws_shutdown,
    .conn_rebind = ws_conn_rebind,
    .handshake_timeout = ws_handshake_timeout,
};
