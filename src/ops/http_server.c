/* The HTTP endpoint as a protocol on net/ connections (see http_server.h). */
#include "ops/http_server.h"

#include <stdlib.h>
#include <string.h>

#include "ops/http.h"
#include "util/log.h"

typedef struct hconn hconn_t;

struct http_server {
    http_server_opts_t o;
    size_t n_conns;
    hconn_t *conns[HTTP_SERVER_MAX_CONNS]; /* the first n_conns */
    http_server_stats_t st;
    log_ratelimit_t rl;
};

struct hconn {
    http_server_t *srv;
    server_conn_t *conn;
    http_conn_t *h;
    char remote[]; /* as given at accept */
};

/* The length of the address part of "1.2.3.4:5" or "[::1]:5". */
static size_t addr_len(const char *remote) {
    const char *colon = strrchr(remote, ':');
    return colon ? (size_t)(colon - remote) : strlen(remote);
}

/* Connections from the address of `remote`. */
static size_t conns_from(const http_server_t *s, const char *remote) {
    size_t n = 0, len = addr_len(remote);
    for (size_t i = 0; i < s->n_conns; i++)
        n += addr_len(s->conns[i]->remote) == len && memcmp(s->conns[i]->remote, remote, len) == 0;
    return n;
}

static void on_write(void *ud, const char *buf, size_t len) {
    hconn_t *c = ud;
    if (len && server_conn_send(c->conn, buf, len) != 0)
        server_conn_close(c->conn);
}

static char *on_metrics(void *ud, size_t *len) {
    hconn_t *c = ud;
    return c->srv->o.metrics ? c->srv->o.metrics(c->srv->o.ud, len) : NULL;
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
    /* One address cannot take every slot: a health probe from another
     * still gets one (idle sockets are cut after HTTP_IDLE_TIMEOUT_MS). */
    if (conns_from(s, remote) >= HTTP_SERVER_MAX_PER_ADDR) {
        s->st.refused++;
        log_ratelimited(&s->rl, LOG_WARN,
                        "metrics listener: refusing %s: %d connections from its address", remote,
                        HTTP_SERVER_MAX_PER_ADDR);
        return NULL;
    }
    size_t rlen = strlen(remote);
    hconn_t *c = calloc(1, sizeof(*c) + rlen + 1);
    if (c) {
        c->srv = s;
        c->conn = conn;
        memcpy(c->remote, remote, rlen + 1);
        http_handlers_t hh = {on_write, on_metrics, on_ready, c};
        c->h = http_conn_new(&hh);
    }
    if (!c || !c->h || server_conn_timer(conn, HTTP_IDLE_TIMEOUT_MS) != 0) {
        log_error("out of memory accepting an HTTP connection");
        if (c)
            http_conn_free(c->h);
        free(c);
        return NULL;
    }
    s->conns[s->n_conns++] = c;
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
    http_server_t *s = c->srv;
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i] == c) {
            s->conns[i] = s->conns[--s->n_conns];
            break;
        }
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
    if (s) {
        s->o = *opts;
        s->rl = (log_ratelimit_t)LOG_RATELIMIT_INIT("metrics connections refused", 10, 10000);
    }
    return s;
}

void http_server_free(http_server_t *h) {
    free(h);
}

const http_server_stats_t *http_server_stats(const http_server_t *h) {
    return &h->st;
}
