/* The HTTP endpoint as a protocol on net/ connections (see http_server.h). */
#include "ops/http_server.h"

#include <stdlib.h>
#include <string.h>

#include "ops/http.h"
#include "util/log.h"

struct http_server {
    http_server_opts_t o;
    size_t n_conns;
    http_server_stats_t st;
};

typedef struct {
    http_server_t *srv;
    server_conn_t *conn;
    http_conn_t *h;
    char remote[]; /* as given at accept */
} hconn_t;

static void on_write(void *ud, const char *buf, size_t len) {
    hconn_t *c = ud;
    if (len && server_conn_send(c->conn, buf, len) != 0)
        server_conn_close(c->conn);
}

static char *on_metrics(void *ud, size_t *len) {
    hconn_t *c = ud;
    return c->srv->o.metrics ? c->srv->o.metrics(c->srv->o.ud, len) : NULL;
}

static char *on_list(void *ud, int kind, size_t offset, size_t limit, size_t *len) {
    hconn_t *c = ud;
    return c->srv->o.list(c->srv->o.ud, kind, offset, limit, len);
}

static int on_ready(void *ud, char *reason, size_t cap) {
    hconn_t *c = ud;
    return c->srv->o.ready ? c->srv->o.ready(c->srv->o.ud, reason, cap) : 1;
}

static void *hs_open(void *proto, server_conn_t *conn, const char *remote) {
    http_server_t *s = proto;
    if (s->n_conns >= HTTP_SERVER_MAX_CONNS) {
        s->st.refused++;
        return NULL;
    }
    size_t rlen = strlen(remote);
    hconn_t *c = calloc(1, sizeof(*c) + rlen + 1);
    if (c) {
        c->srv = s;
        c->conn = conn;
        memcpy(c->remote, remote, rlen + 1);
        http_handlers_t hh = {on_write, on_metrics, on_ready, s->o.list ? on_list : NULL, c};
        c->h = http_conn_new(&hh);
    }
    if (!c || !c->h || server_conn_timer(conn, HTTP_IDLE_TIMEOUT_MS) != 0) {
        log_error("out of memory accepting an HTTP connection");
        if (c)
            http_conn_free(c->h);
        free(c);
        return NULL;
    }
    s->n_conns++;
    return c;
}

static ssize_t hs_feed(void *pc, const uint8_t *buf, size_t len) {
    hconn_t *c = pc;
    if (http_feed(c->h, (const char *)buf, len) != HTTP_DONE)
        return (ssize_t)len;
    c->srv->st.requests++;
    server_conn_close(c->conn); /* the FIN goes out after the response */
    return -1;
}

static void hs_timer(void *pc) {
    hconn_t *c = pc;
    http_timeout(c->h);
    server_conn_close(c->conn);
}

static void hs_lost(void *pc, const char *reason) {
    (void)pc;
    (void)reason;
}

static void hs_close(void *pc, const char *reason) {
    hconn_t *c = pc;
    (void)reason;
    server_conn_close(c->conn);
}

static bool hs_paused(const void *pc) {
    (void)pc;
    return false;
}

static const char *hs_remote(const void *pc) {
    const hconn_t *c = pc;
    return c->remote;
}

static void hs_free(void *pc) {
    hconn_t *c = pc;
    c->srv->n_conns--;
    http_conn_free(c->h);
    free(c);
}

const server_protocol_ops_t http_server_ops = {
    .conn_open = hs_open,
    .conn_feed = hs_feed,
    .conn_lost = hs_lost,
    .conn_close = hs_close,
    .conn_paused = hs_paused,
    .conn_remote = hs_remote,
    .conn_timer = hs_timer,
    .conn_free = hs_free,
};

http_server_t *http_server_new(const http_server_opts_t *opts) {
    http_server_t *s = calloc(1, sizeof(*s));
    if (s)
        s->o = *opts;
    return s;
}

void http_server_free(http_server_t *h) {
    free(h);
}

const http_server_stats_t *http_server_stats(const http_server_t *h) {
    return &h->st;
}
