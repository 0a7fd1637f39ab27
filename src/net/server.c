/* libuv side of the daemon (see server.h).
 *
 * Memory per idle connection: the uv_tcp_t, this module's conn_t and the
 * session objects, no buffers. Reads land in one shared buffer; only the tail
 * of an incomplete packet (or bytes left while paused) is copied into a
 * per-connection buffer, freed again once consumed. Output produced during a
 * loop turn is appended to a per-connection buffer and written once, from the
 * check handle that runs after I/O polling; the write request owns the buffer
 * until its callback. */
#include "net/server.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "ops/http.h"
#include "auth/iplimit.h"
#include "util/log.h"
#include "auth/security.h"
#include "net/tls.h"

#define READ_BUF_SIZE (64 * 1024)
#define CLOSE_GRACE_MS 5000 /* a closing connection that does not drain is cut */
#define STOP_GRACE_MS 2000

typedef struct listener listener_t;
typedef struct conn conn_t;
/* One per connection, idle ones included: sizes are 32-bit (input is bounded
 * by max_packet_size, output by OUT_LIMIT) and flags are bits, to keep it small. */
struct conn {
    uv_tcp_t tcp;
    server_t *srv;
    session_conn_t *sc;
    tls_conn_t *tls; /* NULL on a plain listener */
    listener_t *l;
    uv_timer_t *hold_timer; /* while a throttled CONNACK is held */
    /* Accepted at (TLS handshake timeout) until closing starts, then the
     * start of the close (grace timeout): the two never overlap. */
    uint64_t since_ms;
    uint8_t *in;
    uint8_t *out;
    conn_t *pending_next;
    conn_t *prev, *next;
    uint32_t in_len, in_cap;
    uint32_t out_len, out_cap;
    uint32_t queued; /* bytes handed to uv_write and not yet written */
    /* Packed, like the rest: one conn_t per connection (idle memory). The
     * address for the per-IP limits is not kept: it is the session's remote
     * address without the port. */
    bool reading : 1, paused : 1, closing : 1, handle_closing : 1, feed_pending : 1,
        shutdown_sent : 1, pending : 1, held : 1, counted_ip : 1, identity_set : 1;
};

typedef struct {
    uv_write_t req;
    conn_t *c;
    uv_buf_t buf;
} write_req_t;

struct listener {
    uv_tcp_t tcp;
    server_t *srv;
    char name[80];
    const config_listener_t *cfg;
    tls_ctx_t *tls; /* NULL: plain TCP */
};

/* One HTTP connection on the metrics listener: freed once both handles closed. */
typedef struct hconn hconn_t;
struct hconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    server_t *srv;
    http_conn_t *h;
    int open_handles;
    bool done, closing;
    hconn_t *prev, *next;
};

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} hwrite_t;

struct server {
    server_opts_t o;
    const config_t *cfg;
    uv_loop_t loop;
    uv_timer_t tick, stop_timer;
    uv_check_t check;
    uv_idle_t idle;
    uv_poll_t poll;
    uv_signal_t sig[3];
    bool have_poll;
    listener_t *listeners;
    size_t n_listeners, n_listening;
    size_t n_listener_slots; /* listeners[] entries, TLS contexts among them */
    conn_t *conns;
    size_t n_conns;
    conn_t *pending; /* output to flush, bytes to feed again, sockets to close */
    bool intake_stopped, stopping, stop_timer_closed;
    unsigned tick_ms;
    uint8_t *rbuf;
    bool rbuf_busy;
    log_ratelimit_t rl_refused;
    listener_t metrics;
    bool have_metrics;
    hconn_t *hconns;
    size_t n_hconns;
    uv_timer_t periodic;
    void (*periodic_cb)(void *ud);
    uint8_t *pbuf; /* decrypted bytes of one TLS read */
    iplimit_t *iplimit;
    log_ratelimit_t iplimit_log, tls_log;
    server_stats_t st;
};

static const session_conn_ops_t conn_ops;

int64_t server_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t server_now_ms(const server_t *s) {
    return uv_now(&s->loop);
}

static void set_now(server_t *s) {
    session_mgr_set_now(s->o.sessions, uv_now(&s->loop), server_wall_ms());
    session_mgr_set_now_us(s->o.sessions, uv_hrtime() / 1000u);
}

static void on_idle(uv_idle_t *h);

static void mark_pending(conn_t *c) {
    server_t *s = c->srv;
    if (!c->pending) {
        c->pending = true;
        c->pending_next = s->pending;
        s->pending = c;
    }
    /* The idle handle keeps the next poll from blocking while work waits. */
    if (!s->stopping && !uv_is_active((uv_handle_t *)&s->idle))
        uv_idle_start(&s->idle, on_idle);
}

/* ---- read side ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = h->data;
    server_t *s = c->srv;
    (void)suggested;
    /* One read at a time on one thread: the shared buffer is free again once
     * on_read returns. */
    buf->base = (char *)s->rbuf;
    buf->len = READ_BUF_SIZE;
}

/* Appends to a growable buffer with 32-bit sizes, doubling from `initial`.
 * The sizes never get near the guard (max_packet_size plus one read for
 * input, max_output_buffer for output), but they are 32-bit. */
static int buf_append(uint8_t **buf, uint32_t *len, uint32_t *cap, uint32_t initial,
                      const void *src, size_t n) {
    if (n > UINT32_MAX / 4 || *len + n > UINT32_MAX / 4)
        return -1;
    if (*len + n > *cap) {
        size_t ncap = *cap ? *cap : initial;
        while (ncap < *len + n)
            ncap *= 2;
        uint8_t *b = realloc(*buf, ncap);
        if (!b)
            return -1;
        *buf = b;
        *cap = (uint32_t)ncap;
    }
    memcpy(*buf + *len, src, n);
    *len += (uint32_t)n;
    return 0;
}

static int in_append(conn_t *c, const uint8_t *p, size_t n) {
    return buf_append(&c->in, &c->in_len, &c->in_cap, 256, p, n);
}

static void in_release(conn_t *c) {
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(conn_t *c) {
    if (!c->reading && !c->paused && !c->held && !c->closing && !c->srv->intake_stopped) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

static void conn_read_stop(conn_t *c) {
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Feeds the per-connection buffer; keeps what was not consumed. */
static void feed_buffered(conn_t *c) {
    if (c->closing || !c->in_len)
        return;
    ssize_t n = session_feed(c->sc, c->in, c->in_len);
    if (n < 0) {
        in_release(c);
        return;
    }
    if ((size_t)n == c->in_len) {
        in_release(c);
    } else if (n > 0) {
        memmove(c->in, c->in + n, c->in_len - (size_t)n);
        c->in_len -= (uint32_t)n;
    }
}

static void conn_lost(conn_t *c, const char *reason);

/* Plaintext from the socket (or from TLS) into the session. */
static void deliver(conn_t *c, const uint8_t *p, size_t n) {
    if (c->in_len) {
        if (in_append(c, p, n) != 0) {
            session_conn_close(c->sc, "out of memory for the input buffer");
            return;
        }
        feed_buffered(c);
    } else {
        ssize_t used = session_feed(c->sc, p, n);
        if (used >= 0 && (size_t)used < n && in_append(c, p + used, n - (size_t)used) != 0)
            session_conn_close(c->sc, "out of memory for the input buffer");
    }
}

static int tls_drain(conn_t *c);
static void tls_handshake_done(conn_t *c);

/* Ciphertext in: handshake records out, plaintext to the session. */
static void tls_input(conn_t *c, const uint8_t *p, size_t n) {
    server_t *s = c->srv;
    bool was_done = tls_conn_handshake_done(c->tls);
    int rc = tls_conn_feed(c->tls, p, n);
    tls_drain(c);
    if (rc != TLS_OK) {
        if (!was_done)
            s->st.tls_handshake_failures++;
        log_client_ratelimited(&s->tls_log, LOG_WARN, NULL, session_conn_remote(c->sc), "%s",
                               tls_conn_error(c->tls));
        conn_lost(c, tls_conn_error(c->tls));
        return;
    }
    if (!was_done && tls_conn_handshake_done(c->tls))
        tls_handshake_done(c);
    while (!c->closing && tls_conn_handshake_done(c->tls)) {
        ssize_t got = tls_conn_read(c->tls, s->pbuf, READ_BUF_SIZE);
        tls_drain(c);
        if (got < 0) {
            conn_lost(c, tls_conn_error(c->tls));
            return;
        }
        if (got == 0)
            break;
        deliver(c, s->pbuf, (size_t)got);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = stream->data;
    server_t *s = c->srv;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_lost(c, nread == UV_EOF ? "connection closed by the client" : uv_strerror((int)nread));
        return;
    }
    s->st.bytes_in += (uint64_t)nread;
    set_now(s);
    if (c->tls)
        tls_input(c, (const uint8_t *)buf->base, (size_t)nread);
    else
        deliver(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---- write side ------------------------------------------------------------------ */

static void conn_begin_close(conn_t *c) {
    if (c->closing)
        return;
    if (c->tls) {
        tls_conn_shutdown(c->tls);
        tls_drain(c);
    }
    c->closing = true;
    c->since_ms = uv_now(&c->srv->loop);
    conn_read_stop(c);
    mark_pending(c);
}

static void on_handle_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    server_t *s = c->srv;
    if (c->counted_ip) {
        char ip[IPLIMIT_KEY_MAX];
        security_addr_ip(session_conn_remote(c->sc), ip, sizeof(ip));
        iplimit_release(s->iplimit, ip, uv_now(&s->loop));
    }
    session_conn_free(c->sc);
    tls_conn_free(c->tls);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (s->stopping && !s->conns && !s->stop_timer_closed) {
        s->stop_timer_closed = true;
        uv_close((uv_handle_t *)&s->stop_timer, NULL);
    }
    free(c->in);
    free(c->out);
    free(c);
}

static void on_hold_timer_closed(uv_handle_t *h) {
    free(h);
}

static void conn_close_handle(conn_t *c) {
    if (!c->handle_closing) {
        c->handle_closing = true;
        if (c->hold_timer) {
            uv_close((uv_handle_t *)c->hold_timer, on_hold_timer_closed);
            c->hold_timer = NULL;
        }
        conn_read_stop(c);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    }
}

/* A write to the client failed (not cancelled): the peer is gone. */
static void conn_write_failed(conn_t *c, int status) {
    if (!c->closing) {
        session_conn_lost(c->sc, uv_strerror(status));
        conn_begin_close(c);
    }
}

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    conn_t *c = w->c;
    c->queued -= w->buf.len;
    free(w->buf.base);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_write_failed(c, status);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    (void)status;
    free(req);
    conn_close_handle(c);
}

static void conn_flush(conn_t *c) {
    server_t *s = c->srv;
    if (!c->out_len || c->handle_closing)
        return;
    if (!c->queued) {
        /* Nothing queued: write now, with no request, no copy and no change
         * of epoll interest (a finished uv_write costs an epoll_ctl). */
        uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_write_failed(c, n);
            return;
        }
        if (n > 0) {
            s->st.writes++;
            s->st.bytes_out += (uint64_t)n;
            c->out_len -= (uint32_t)n;
            if (c->out_len) {
                memmove(c->out, c->out + n, c->out_len);
            } else {
                /* A busy connection keeps its buffer for the next acks; an
                 * idle one gives it back. */
                if (!session_conn_inflight(c->sc)) {
                    free(c->out);
                    c->out = NULL;
                    c->out_cap = 0;
                }
                return;
            }
        }
    }
    write_req_t *w = malloc(sizeof(*w));
    if (!w) {
        session_conn_close(c->sc, "out of memory for a write");
        return;
    }
    w->c = c;
    w->buf = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    c->queued += c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_write);
    if (r < 0) {
        c->queued -= w->buf.len;
        free(w->buf.base);
        free(w);
        conn_write_failed(c, r);
        return;
    }
    s->st.writes++;
    s->st.bytes_out += w->buf.len;
}

static void conn_finish_close(conn_t *c) {
    if (c->shutdown_sent || c->handle_closing)
        return;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req) {
        req->data = c;
        /* Lets CONNACK 0x01 and the last acks reach the client before the FIN. */
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
            c->shutdown_sent = true;
            return;
        }
        free(req);
    }
    conn_close_handle(c);
}

/* Runs once per loop turn after I/O: feeds what resumed connections kept,
 * writes each connection's output in one write, finishes closes. */
static void process_pending(server_t *s) {
    set_now(s);
    /* Feeding may queue more work (acks, closes of other connections). */
    for (int round = 0; s->pending && round < 8; round++) {
        conn_t *list = s->pending;
        s->pending = NULL;
        while (list) {
            conn_t *c = list;
            list = c->pending_next;
            c->pending = false;
            if (c->feed_pending && !c->closing) {
                c->feed_pending = false;
                feed_buffered(c);
                if (!session_conn_paused(c->sc))
                    conn_read_start(c);
            }
            if (c->pending) /* queued again while feeding: handle in the next round */
                continue;
            if (c->held) /* the hold timer queues it again */
                continue;
            conn_flush(c);
            if (c->closing)
                conn_finish_close(c);
        }
    }
    if (!s->pending && !s->stopping && uv_is_active((uv_handle_t *)&s->idle))
        uv_idle_stop(&s->idle);
}

static void on_check(uv_check_t *h) {
    process_pending(h->data);
}

static void on_idle(uv_idle_t *h) {
    process_pending(h->data);
}

/* ---- session callbacks ------------------------------------------------------------- */

static int out_append(conn_t *c, const void *buf, size_t len) {
    if (buf_append(&c->out, &c->out_len, &c->out_cap, 64, buf, len) < 0)
        return -1;
    mark_pending(c);
    return 0;
}

/* Moves the ciphertext TLS produced into the output buffer. */
static int tls_drain(conn_t *c) {
    uint8_t chunk[16384];
    size_t n;
    while ((n = tls_conn_take_output(c->tls, chunk, sizeof(chunk))) > 0) {
        if (out_append(c, chunk, n) != 0)
            return -1;
    }
    return 0;
}

static int op_send(void *ud, const void *buf, size_t len) {
    conn_t *c = ud;
    uint32_t limit = c->srv->cfg->mqtt.max_output_buffer;
    if (c->closing && c->handle_closing)
        return -1;
    if (c->out_len + c->queued + len > limit) {
        static log_ratelimit_t rl = LOG_RATELIMIT_INIT("output buffer limit", 10, 10000);
        log_client_ratelimited(&rl, LOG_WARN, NULL, session_conn_remote(c->sc),
                               "%zu bytes of output queued, over mqtt.max_output_buffer %u (the "
                               "client does not read)",
                               c->out_len + c->queued + len, limit);
        c->srv->st.refused_output_limit++;
        return -1;
    }
    if (c->tls)
        return tls_conn_write(c->tls, buf, len) == TLS_OK && tls_drain(c) == 0 ? 0 : -1;
    return out_append(c, buf, len);
}

static void op_close(void *ud) {
    conn_begin_close(ud);
}

static void on_hold_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    c->held = false;
    uv_close((uv_handle_t *)t, on_hold_timer_closed);
    c->hold_timer = NULL;
    set_now(c->srv);
    mark_pending(c);
    if (!c->closing && !session_conn_paused(c->sc))
        conn_read_start(c);
}

/* Holds output and input (the throttled CONNACK); the timer releases it. */
static void op_hold(void *ud, uint32_t ms) {
    conn_t *c = ud;
    if (c->held || c->handle_closing)
        return;
    uv_timer_t *t = malloc(sizeof(*t));
    if (!t)
        return; /* answered at once: a missed delay, not a missed answer */
    uv_timer_init(&c->srv->loop, t);
    t->data = c;
    uv_timer_start(t, on_hold_timer, ms, 0);
    c->hold_timer = t;
    c->held = true;
    conn_read_stop(c);
}

static void op_pause(void *ud) {
    conn_t *c = ud;
    c->paused = true;
    conn_read_stop(c);
}

static void op_resume(void *ud) {
    conn_t *c = ud;
    c->paused = false;
    /* Not synchronously: the session may be in the middle of a callback. */
    c->feed_pending = true;
    mark_pending(c);
}

static const session_conn_ops_t conn_ops = {op_send, op_close, op_pause, op_resume, op_hold};

static void tls_handshake_done(conn_t *c) {
    log_debug("%s: TLS handshake done (%s)", session_conn_remote(c->sc), tls_conn_version(c->tls));
    if (!c->l->cfg->tls.use_identity_as_username)
        return;
    char cn[256];
    if (tls_conn_peer_cn(c->tls, cn, sizeof(cn)) != 0) {
        session_conn_close(c->sc, "TLS: the client certificate has no usable common name "
                                  "(use_identity_as_username)");
        return;
    }
    if (session_conn_set_identity(c->sc, cn) != 0)
        session_conn_close(c->sc, "out of memory for the certificate identity");
}

static void conn_lost(conn_t *c, const char *reason) {
    session_conn_lost(c->sc, reason);
    conn_begin_close(c);
}

/* ---- accept -------------------------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h) {
    free(h);
}

static void format_peer(uv_tcp_t *tcp, char *out, size_t cap) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[64] = "?";
    int port = 0;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
            snprintf(out, cap, "[%s]:%d", host, port);
            return;
        }
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s:%d", host, port);
}

static void on_connection(uv_stream_t *ls, int status) {
    listener_t *l = ls->data;
    server_t *s = l->srv;
    if (status < 0) {
        log_warn("accept on %s: %s", l->name, uv_strerror(status));
        return;
    }
    set_now(s);
    if (s->n_conns >= s->cfg->mqtt.max_connections) {
        /* Accept and close at once so the client sees a refusal, not a hang. */
        uv_tcp_t *t = malloc(sizeof(*t));
        if (!t)
            return;
        uv_tcp_init(&s->loop, t);
        if (uv_accept(ls, (uv_stream_t *)t) == 0) {
            s->st.refused_max_connections++;
            char peer[96];
            format_peer(t, peer, sizeof(peer));
            log_client_ratelimited(&s->rl_refused, LOG_WARN, NULL, peer,
                                   "refused: max_connections %u reached",
                                   s->cfg->mqtt.max_connections);
        }
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        return;
    }
    c->srv = s;
    c->l = l;
    uv_tcp_init(&s->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    char peer[96], ip[IPLIMIT_KEY_MAX];
    format_peer(&c->tcp, peer, sizeof(peer));
    security_addr_ip(peer, ip, sizeof(ip));
    int lim = iplimit_accept(s->iplimit, ip, uv_now(&s->loop));
    if (lim != IPLIMIT_OK) {
        if (lim == IPLIMIT_RATE)
            s->st.refused_rate_per_ip++;
        else
            s->st.refused_per_ip++;
        log_ratelimited(&s->iplimit_log, LOG_WARN, "refusing %s on %s: %s", peer, l->name,
                        iplimit_strerror(lim));
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    if (l->tls && !(c->tls = tls_conn_new(l->tls))) {
        log_error("out of memory for the TLS state of %s", peer);
        iplimit_release(s->iplimit, ip, uv_now(&s->loop));
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    c->since_ms = uv_now(&s->loop);
    c->sc = session_conn_new(s->o.sessions, &conn_ops, c, peer);
    if (!c->sc) {
        log_error("out of memory for the session of %s", peer);
        tls_conn_free(c->tls);
        iplimit_release(s->iplimit, ip, uv_now(&s->loop));
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    c->counted_ip = true; /* released with the session's address, see conn_t */
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->st.accepted++;
    log_debug("accepted %s on %s", peer, l->name);
    conn_read_start(c);
}

/* ---- metrics HTTP endpoint ------------------------------------------------------ */

static void on_hconn_closed(uv_handle_t *h) {
    hconn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->hconns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_hconns--;
    http_conn_free(c->h);
    free(c);
}

static void hconn_close(hconn_t *c) {
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_hconn_closed);
    uv_close((uv_handle_t *)&c->timer, on_hconn_closed);
}

static void on_hwrite(uv_write_t *req, int status) {
    hwrite_t *w = (hwrite_t *)req;
    (void)status;
    free(w->buf.base);
    free(w);
}

static void on_hshutdown(uv_shutdown_t *req, int status) {
    hconn_t *c = req->data;
    (void)status;
    free(req);
    hconn_close(c);
}

/* The response is complete: the FIN goes out after the queued writes. */
static void hconn_finish(hconn_t *c) {
    if (c->done || c->closing)
        return;
    c->done = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req) {
        req->data = c;
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_hshutdown) == 0)
            return;
        free(req);
    }
    hconn_close(c);
}

static void http_write_cb(void *ud, const char *buf, size_t len) {
    hconn_t *c = ud;
    if (c->closing || len == 0)
        return;
    hwrite_t *w = malloc(sizeof(*w));
    char *copy = malloc(len);
    if (!w || !copy) {
        free(w);
        free(copy);
        hconn_close(c);
        return;
    }
    memcpy(copy, buf, len);
    w->buf = uv_buf_init(copy, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_hwrite) < 0) {
        free(copy);
        free(w);
        hconn_close(c);
        return;
    }
}

static char *http_metrics_cb(void *ud, size_t *len) {
    hconn_t *c = ud;
    server_t *s = c->srv;
    return s->o.on_metrics ? s->o.on_metrics(s->o.ud, len) : NULL;
}

static int http_ready_cb(void *ud, char *reason, size_t cap) {
    hconn_t *c = ud;
    server_t *s = c->srv;
    return s->o.on_ready ? s->o.on_ready(s->o.ud, reason, cap) : 1;
}

static void on_halloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    hconn_t *c = h->data;
    (void)suggested;
    buf->base = (char *)c->srv->rbuf;
    buf->len = READ_BUF_SIZE;
}

static void on_hread(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    hconn_t *c = stream->data;
    if (nread == 0 || c->done)
        return;
    if (nread < 0) {
        hconn_close(c);
        return;
    }
    if (http_feed(c->h, buf->base, (size_t)nread) == HTTP_DONE) {
        c->srv->st.http_requests++;
        hconn_finish(c);
    }
}

static void on_htimeout(uv_timer_t *t) {
    hconn_t *c = t->data;
    http_timeout(c->h);
    hconn_finish(c);
}

static void on_http_connection(uv_stream_t *ls, int status) {
    listener_t *l = ls->data;
    server_t *s = l->srv;
    if (status < 0) {
        log_warn("accept on %s: %s", l->name, uv_strerror(status));
        return;
    }
    hconn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting an HTTP connection");
        return;
    }
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = s->hconns;
    if (s->hconns)
        s->hconns->prev = c;
    s->hconns = c;
    s->n_hconns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        hconn_close(c);
        return;
    }
    if (s->n_hconns > SERVER_HTTP_MAX_CONNS) {
        /* A scraper that opens connections without end must not cost memory. */
        s->st.http_refused++;
        hconn_close(c);
        return;
    }
    http_handlers_t hh = {http_write_cb, http_metrics_cb, http_ready_cb, c};
    c->h = http_conn_new(&hh);
    if (!c->h || uv_read_start((uv_stream_t *)&c->tcp, on_halloc, on_hread) != 0) {
        hconn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_htimeout, HTTP_IDLE_TIMEOUT_MS, 0);
}

static int metrics_listen(server_t *s, char *errbuf, size_t errlen) {
    const config_t *cfg = s->cfg;
    listener_t *l = &s->metrics;
    struct sockaddr_storage ss;
    bool v6 = strchr(cfg->metrics_host, ':') != NULL;
    int r = v6 ? uv_ip6_addr(cfg->metrics_host, cfg->metrics_port, (struct sockaddr_in6 *)&ss)
               : uv_ip4_addr(cfg->metrics_host, cfg->metrics_port, (struct sockaddr_in *)&ss);
    snprintf(l->name, sizeof(l->name), "%s", cfg->metrics_listen);
    l->srv = s;
    if (r < 0) {
        snprintf(errbuf, errlen, "metrics listener %s: bad address: %s", cfg->metrics_listen,
                 uv_strerror(r));
        return -1;
    }
    uv_tcp_init(&s->loop, &l->tcp);
    l->tcp.data = l;
    s->have_metrics = true;
    r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 64, on_http_connection);
    if (r < 0) {
        snprintf(errbuf, errlen, "metrics listener %s: %s", cfg->metrics_listen, uv_strerror(r));
        return -1;
    }
    /* The bound port, so that port 0 (any free port) is named. */
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    int port = cfg->metrics_port;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen) == 0)
        port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    log_info(v6 ? "metrics listening on [%s]:%d (GET /metrics, /healthz, /readyz)"
                : "metrics listening on %s:%d (GET /metrics, /healthz, /readyz)",
             cfg->metrics_host, port);
    return 0;
}

/* ---- timers, signals, fd ----------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
    server_t *s = t->data;
    set_now(s);
    uint64_t now = uv_now(&s->loop);
    uint64_t hs_limit = (uint64_t)s->cfg->mqtt.connect_timeout_s * 1000u;
    for (conn_t *c = s->conns; c; c = c->next) {
        /* Before the session's own connect timeout, so the line says why. */
        if (c->tls && !c->closing && !tls_conn_handshake_done(c->tls) &&
            now - c->since_ms >= hs_limit) {
            s->st.tls_handshake_failures++;
            log_client_ratelimited(&s->tls_log, LOG_WARN, NULL, session_conn_remote(c->sc),
                                   "TLS handshake not completed within connect_timeout_s %u",
                                   s->cfg->mqtt.connect_timeout_s);
            session_conn_close(c->sc, "TLS handshake timeout");
        }
    }
    session_mgr_tick(s->o.sessions);
    iplimit_prune(s->iplimit, now);
    for (conn_t *c = s->conns; c; c = c->next) {
        if (c->closing && !c->handle_closing && now - c->since_ms >= CLOSE_GRACE_MS)
            conn_close_handle(c); /* the peer does not read: cut it */
    }
    if (s->o.on_tick)
        s->o.on_tick(s->o.ud);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    server_t *s = p->data;
    (void)events;
    if (status < 0) {
        log_error("watching the Kafka event fd: %s", uv_strerror(status));
        return;
    }
    set_now(s);
    if (s->o.on_fd)
        s->o.on_fd(s->o.ud);
}

static void on_signal(uv_signal_t *h, int signum) {
    server_t *s = h->data;
    if (s->o.on_signal)
        s->o.on_signal(s->o.ud, signum);
}

/* ---- public -------------------------------------------------------------------------- */

int server_new(const server_opts_t *opts, server_t **out, char *errbuf, size_t errlen) {
    server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    s->o = *opts;
    s->cfg = opts->cfg;
    s->tick_ms = 1000;
    s->rl_refused = (log_ratelimit_t)LOG_RATELIMIT_INIT("connections refused at max_connections",
                                                        LOG_RATELIMIT_DEFAULT_BURST,
                                                        LOG_RATELIMIT_DEFAULT_INTERVAL_MS);
    s->rbuf = malloc(READ_BUF_SIZE);
    s->pbuf = malloc(READ_BUF_SIZE);
    const config_mqtt_t *mq = &s->cfg->mqtt;
    s->iplimit = iplimit_new(mq->max_connections_per_ip, mq->connect_rate_per_ip,
                             mq->connect_burst_per_ip, (size_t)mq->max_connections + 4096);
    s->iplimit_log = (log_ratelimit_t)LOG_RATELIMIT_INIT("per-address limit", 10, 10000);
    s->tls_log = (log_ratelimit_t)LOG_RATELIMIT_INIT("TLS failure", 20, 10000);
    int r = s->rbuf && s->pbuf && s->iplimit ? uv_loop_init(&s->loop) : UV_ENOMEM;
    if (r < 0) {
        snprintf(errbuf, errlen, "event loop: %s", uv_strerror(r));
        free(s->rbuf);
        free(s->pbuf);
        iplimit_free(s->iplimit);
        free(s);
        return -1;
    }
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
    uv_timer_init(&s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_check_init(&s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, on_check);
    uv_idle_init(&s->loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(&s->loop, &s->periodic);
    s->periodic.data = s;
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&s->loop, &s->sig[i]);
        s->sig[i].data = s;
        uv_signal_start(&s->sig[i], on_signal, sigs[i]);
    }
    if (opts->watch_fd >= 0) {
        r = uv_poll_init(&s->loop, &s->poll, opts->watch_fd);
        if (r < 0) {
            snprintf(errbuf, errlen, "watching fd %d: %s", opts->watch_fd, uv_strerror(r));
            server_stop(s);
            uv_run(&s->loop, UV_RUN_DEFAULT);
            server_free(s);
            return -1;
        }
        s->have_poll = true;
        s->poll.data = s;
        uv_poll_start(&s->poll, UV_READABLE, on_poll);
    }
    *out = s;
    return 0;
}

int server_listen(server_t *s, char *errbuf, size_t errlen) {
    s->listeners = calloc(s->cfg->n_listeners ? s->cfg->n_listeners : 1, sizeof(listener_t));
    if (!s->listeners) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    /* Not s->cfg->n_listeners later: a reloaded configuration may list
     * others (they need a restart), while these stay. */
    s->n_listener_slots = s->cfg->n_listeners;
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        const config_listener_t *cl = &s->cfg->listeners[i];
        listener_t *l = &s->listeners[i];
        struct sockaddr_storage ss;
        bool v6 = strchr(cl->host, ':') != NULL;
        int r = v6 ? uv_ip6_addr(cl->host, cl->port, (struct sockaddr_in6 *)&ss)
                   : uv_ip4_addr(cl->host, cl->port, (struct sockaddr_in *)&ss);
        snprintf(l->name, sizeof(l->name), "%s%s", cl->listen, cl->tls.enabled ? " (TLS)" : "");
        l->srv = s;
        l->cfg = cl;
        if (cl->tls.enabled && tls_ctx_new(&cl->tls, &l->tls, errbuf, errlen) != 0) {
            char why[512];
            snprintf(why, sizeof(why), "%s", errbuf);
            snprintf(errbuf, errlen, "listener %s: TLS: %s", cl->listen, why);
            return -1;
        }
        if (r < 0) {
            snprintf(errbuf, errlen, "listener %s: bad address: %s", cl->listen, uv_strerror(r));
            return -1;
        }
        uv_tcp_init(&s->loop, &l->tcp);
        l->tcp.data = l;
        s->n_listeners++;
        /* IPV6ONLY lets "[::]:1883" and "0.0.0.0:1883" both be listed. */
        r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (r < 0) {
            snprintf(errbuf, errlen, "listener %s: %s", cl->listen, uv_strerror(r));
            return -1;
        }
        s->n_listening++;
        /* The bound address, so that port 0 (any free port) is named. */
        struct sockaddr_storage bound;
        int blen = sizeof(bound);
        char host[INET6_ADDRSTRLEN] = "?";
        int port = cl->port;
        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen) == 0) {
            if (bound.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&bound;
                uv_ip6_name(a6, host, sizeof(host));
                port = ntohs(a6->sin6_port);
            } else {
                const struct sockaddr_in *a4 = (const struct sockaddr_in *)&bound;
                uv_ip4_name(a4, host, sizeof(host));
                port = ntohs(a4->sin_port);
            }
        }
        log_info(v6 ? "listening on [%s]:%d%s" : "listening on %s:%d%s", host, port,
                 l->tls ? " (TLS)" : "");
    }
    if (s->cfg->metrics_listen)
        return metrics_listen(s, errbuf, errlen);
    return 0;
}

void server_set_config(server_t *s, const config_t *cfg) {
    const config_mqtt_t *mq = &cfg->mqtt;
    s->cfg = cfg;
    s->o.cfg = cfg;
    /* The address table keeps its size (max_connections at start + 4096). */
    iplimit_set_limits(s->iplimit, mq->max_connections_per_ip, mq->connect_rate_per_ip,
                       mq->connect_burst_per_ip);
}

static void on_periodic(uv_timer_t *t) {
    server_t *s = t->data;
    if (s->periodic_cb)
        s->periodic_cb(s->o.ud);
}

void server_set_periodic(server_t *s, unsigned period_ms, void (*cb)(void *ud)) {
    if (s->stopping)
        return;
    s->periodic_cb = cb;
    if (period_ms == 0 || !cb)
        uv_timer_stop(&s->periodic);
    else
        uv_timer_start(&s->periodic, on_periodic, period_ms, period_ms);
}

int server_run(server_t *s) {
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return 0;
}

void server_set_tick(server_t *s, unsigned ms) {
    s->tick_ms = ms ? ms : 1;
    if (uv_is_active((uv_handle_t *)&s->tick))
        uv_timer_start(&s->tick, on_tick, s->tick_ms, s->tick_ms);
}

void server_stop_accepting(server_t *s) {
    for (size_t i = 0; i < s->n_listeners; i++)
        if (!uv_is_closing((uv_handle_t *)&s->listeners[i].tcp))
            uv_close((uv_handle_t *)&s->listeners[i].tcp, NULL);
}

void server_stop_reading(server_t *s) {
    s->intake_stopped = true;
    for (conn_t *c = s->conns; c; c = c->next)
        conn_read_stop(c);
}

static void on_stop_timer(uv_timer_t *t) {
    server_t *s = t->data;
    for (conn_t *c = s->conns; c; c = c->next)
        conn_close_handle(c);
}

void server_stop(server_t *s) {
    if (s->stopping)
        return;
    s->stopping = true;
    s->intake_stopped = true;
    server_stop_accepting(s);
    for (conn_t *c = s->conns; c; c = c->next) {
        session_conn_lost(c->sc, "server shutting down");
        conn_begin_close(c);
    }
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->periodic, NULL);
    if (s->have_metrics)
        uv_close((uv_handle_t *)&s->metrics.tcp, NULL);
    for (hconn_t *h = s->hconns; h; h = h->next)
        hconn_close(h);
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_close((uv_handle_t *)&s->idle, NULL);
    /* Signal watchers stay installed (unreferenced, so the loop can end): a
     * second SIGTERM during the last steps must not kill the process. */
    for (int i = 0; i < 3; i++)
        uv_unref((uv_handle_t *)&s->sig[i]);
    if (s->have_poll)
        uv_close((uv_handle_t *)&s->poll, NULL);
    /* Pending output and the shutdowns go out now; the timer cuts stragglers. */
    process_pending(s);
    if (s->conns) {
        uv_timer_start(&s->stop_timer, on_stop_timer, STOP_GRACE_MS, 0);
    } else if (!s->stop_timer_closed) {
        s->stop_timer_closed = true;
        uv_close((uv_handle_t *)&s->stop_timer, NULL);
    }
}

void server_free(server_t *s) {
    if (!s)
        return;
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&s->sig[i], NULL);
    uv_run(&s->loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&s->loop) != 0)
        log_warn("event loop closed with handles still open");
    for (size_t i = 0; s->listeners && i < s->n_listener_slots; i++)
        tls_ctx_free(s->listeners[i].tls);
    free(s->listeners);
    free(s->rbuf);
    free(s->pbuf);
    iplimit_free(s->iplimit);
    free(s);
}

struct server_tls_update {
    size_t n;
    tls_ctx_t *ctx[]; /* per listener slot; NULL for a plain listener */
};

int server_tls_prepare(server_t *s, const config_t *next, server_tls_update_t **out, char *errbuf,
                       size_t errlen) {
    *out = NULL;
    errbuf[0] = '\0';
    size_t n_tls = 0;
    for (size_t i = 0; i < s->n_listener_slots; i++)
        n_tls += s->listeners[i].tls != NULL;
    if (n_tls == 0)
        return 0;
    server_tls_update_t *u = calloc(1, sizeof(*u) + s->n_listener_slots * sizeof(tls_ctx_t *));
    if (!u) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    u->n = s->n_listener_slots;
    size_t off = 0;
    int failed = 0;
    for (size_t i = 0; i < u->n; i++) {
        const listener_t *l = &s->listeners[i];
        if (!l->tls)
            continue;
        /* l->cfg is the configuration the daemon started with, which lives
         * as long as the server; next's files win while the listener is the same. */
        const config_tls_t *tc = &l->cfg->tls;
        if (i < next->n_listeners && next->listeners[i].tls.enabled &&
            strcmp(next->listeners[i].listen, l->cfg->listen) == 0)
            tc = &next->listeners[i].tls;
        char e[512];
        if (tls_ctx_new(tc, &u->ctx[i], e, sizeof(e)) == 0)
            continue;
        failed++;
        if (off < errlen) {
            int k = snprintf(errbuf + off, errlen - off, "%slistener %s: %s", off ? "\n" : "",
                             l->name, e);
            off += k > 0 ? (size_t)k : 0;
        }
    }
    if (failed) {
        server_tls_abort(u);
        return -1;
    }
    *out = u;
    return 0;
}

void server_tls_commit(server_t *s, server_tls_update_t *u) {
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++) {
        if (!u->ctx[i])
            continue;
        listener_t *l = &s->listeners[i];
        tls_ctx_replace(l->tls, u->ctx[i]);
        u->ctx[i] = NULL;
        log_info("reload: listener %s: TLS certificate reloaded (new handshakes use it)", l->name);
    }
    free(u);
}

void server_tls_abort(server_tls_update_t *u) {
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        tls_ctx_free(u->ctx[i]);
    free(u);
}

const server_stats_t *server_stats(const server_t *s) {
    return &s->st;
}

size_t server_conn_count(const server_t *s) {
    return s->n_conns;
}
