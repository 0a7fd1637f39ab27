/* The connection core (see conn.h): reading, the write path and the close
 * lifecycle, for every protocol and transport (accept admission is in
 * conn_accept.c).
 *
 * Memory per idle connection: the uv_tcp_t, this module's conn_t and the
 * protocol's object, no buffers. Reads land in one shared buffer; only the
 * tail the protocol did not consume (an incomplete packet, or bytes left
 * while paused) is copied into a per-connection buffer, freed again once
 * consumed; the next read completes it with the missing bytes only.
 * Output produced during a loop turn is appended to a per-connection buffer
 * and written once, from the check handle that runs after I/O polling; the
 * write request owns the buffer until its callback. */
#include "conn.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/security.h"

#define CLOSE_GRACE_MS 5000 /* a closing connection that does not drain is cut */
#define PENDING_ROUNDS 8    /* work a turn's feeding queues is done in the same turn */

typedef struct {
    uv_write_t req;
    conn_t *c;
    uv_buf_t buf;
} write_req_t;

static server_t *srv_of(const conn_t *c) {
    return c->l->srv;
}

static const server_protocol_ops_t *ops_of(const conn_t *c) {
    return c->l->svc->p.ops;
}

void conn_set_state(conn_t *c, conn_state_t to) {
    static const uint8_t allowed[] = {
        [CONN_HANDSHAKE] = 1u << CONN_OPEN | 1u << CONN_CLOSING,
        [CONN_OPEN] = 1u << CONN_CLOSING,
        [CONN_CLOSING] = 1u << CONN_SHUTDOWN | 1u << CONN_CLOSED,
        [CONN_SHUTDOWN] = 1u << CONN_CLOSED,
        [CONN_CLOSED] = 0,
    };
    assert(allowed[c->state] & (1u << to));
    (void)allowed; /* NDEBUG */
    if (c->state == CONN_HANDSHAKE && c->tls_counted) {
        c->tls_counted = false;
        atomic_fetch_sub(&srv_of(c)->sh->handshakes, 1);
    }
    if (c->state == CONN_HANDSHAKE && c->tls_counted_ip) {
        char ip[IPLIMIT_KEY_MAX];
        c->tls_counted_ip = false;
        security_addr_ip(ops_of(c)->conn_remote(c->pc), ip, sizeof(ip));
        net_ip_handshake_end(srv_of(c), ip);
    }
    c->state = (uint8_t)to;
}

/* One round of the pending connections, between the optional turn hooks. */
static void turn(server_t *s) {
    if (s->o.on_turn)
        s->o.on_turn(s->o.ud);
    conn_process_pending(s);
    if (s->o.on_turn)
        s->o.on_turn(s->o.ud);
}

static void on_idle(uv_idle_t *h) {
    turn(h->data);
}

void conn_on_check(uv_check_t *h) {
    turn(h->data);
}

void server_request_turn(server_t *s) {
    if (!s->stopping && !uv_is_active((uv_handle_t *)&s->idle))
        uv_idle_start(&s->idle, on_idle);
}

void conn_mark_pending(conn_t *c) {
    server_t *s = srv_of(c);
    if (!list_linked(&c->pending))
        list_insert_tail(&s->pending, &c->pending);
    /* The idle handle keeps the next poll from blocking while work waits. */
    if (!s->stopping && !uv_is_active((uv_handle_t *)&s->idle))
        uv_idle_start(&s->idle, on_idle);
}

/* ---- read side ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = (conn_t *)h; /* the handle is its first member */
    (void)suggested;
    /* One read at a time on one thread: the shared buffer is free again once
     * on_read returns. */
    buf->base = (char *)srv_of(c)->rbuf;
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

static void input_over_budget(server_t *s, service_t *svc);

/* Keeps bytes the protocol did not consume: an incomplete packet (its
 * deadline starts with its first byte) or input left while paused. */
static int in_append(conn_t *c, const uint8_t *p, size_t n) {
    service_t *svc = c->l->svc;
    uint32_t cap0 = c->in_cap;
    if (c->in_len == 0 && c->state == CONN_OPEN)
        c->since_ms = uv_now(&srv_of(c)->loop);
    if (buf_append(&c->in, &c->in_len, &c->in_cap, 256, p, n) != 0)
        return -1;
    if (svc->limits && c->state < CONN_CLOSING) {
        uint32_t add = c->in_cap - (c->in_counted ? cap0 : 0);
        svc->st.input_bytes += add;
        c->in_counted = true;
        uint64_t all = atomic_fetch_add(&srv_of(c)->sh->input, add) + add;
        server_t *s = srv_of(c);
        if (s->sh_idx < SHARED_SERVERS_MAX && c->in_cap > atomic_load(&s->sh->largest[s->sh_idx]))
            atomic_store(&s->sh->largest[s->sh_idx], c->in_cap);
        if (all > srv_of(c)->cfg->mqtt.max_input_buffer_bytes)
            input_over_budget(srv_of(c), svc);
    }
    return 0;
}

/* The input buffer no longer counts against the budget (freed, or closing). */
static void in_uncount(conn_t *c) {
    if (c->in_counted) {
        c->l->svc->st.input_bytes -= c->in_cap;
        atomic_fetch_sub(&srv_of(c)->sh->input, c->in_cap);
        c->in_counted = false;
    }
}

static void in_release(conn_t *c) {
    in_uncount(c);
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

void conn_read_start(conn_t *c) {
    if (!c->reading && !c->paused && !c->held && !c->tr_wait && c->state < CONN_CLOSING &&
        !srv_of(c)->intake_stopped) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

void conn_read_stop(conn_t *c) {
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Feeds the per-connection buffer; keeps what was not consumed. */
static void feed_buffered(conn_t *c) {
    if (c->state >= CONN_CLOSING || !c->in_len)
        return;
    ssize_t n = ops_of(c)->conn_feed(c->pc, c->in, c->in_len);
    if (n < 0) {
        in_release(c);
        return;
    }
    if ((size_t)n == c->in_len) {
        in_release(c);
    } else if (n > 0) {
        memmove(c->in, c->in + n, c->in_len - (size_t)n);
        c->in_len -= (uint32_t)n;
        c->since_ms = uv_now(&srv_of(c)->loop); /* the next packet has begun */
    }
}

void net_conn_deliver(conn_t *c, const uint8_t *p, size_t n) {
    if (c->moving && c->state != CONN_CLOSED) { /* decoded after the CONNECT: goes along */
        net_move_append(c, p, n);
        return;
    }
    if (c->state >= CONN_CLOSING)
        return; /* nobody reads it any more */
    if (c->in_len) {
        /* A packet begun in an earlier read: only its missing bytes join it
         * (a big payload is copied once, not once more per read); when it
         * is consumed, the rest of this read is fed from `p`. */
        const server_protocol_ops_t *ops = ops_of(c);
        size_t need = ops->conn_need ? ops->conn_need(c->pc, c->in, c->in_len) : 0;
        size_t take = need > c->in_len && need - c->in_len < n ? need - c->in_len : n;
        if (in_append(c, p, take) != 0) {
            net_conn_end(c, "out of memory for the input buffer");
            return;
        }
        feed_buffered(c);
        if (take == n)
            return;
        p += take;
        n -= take;
        if (c->state >= CONN_CLOSING) {
            /* Closed: dropped. Moved by the packet it completed (a CONNECT
             * begun in an earlier read): the rest of this read goes along. */
            net_conn_deliver(c, p, n);
            return;
        }
        if (c->in_len) { /* not consumed (paused): the rest waits with it */
            if (in_append(c, p, n) != 0)
                net_conn_end(c, "out of memory for the input buffer");
            return;
        }
    }
    ssize_t used = ops_of(c)->conn_feed(c->pc, p, n);
    if (used >= 0 && (size_t)used < n && in_append(c, p + used, n - (size_t)used) != 0)
        net_conn_end(c, "out of memory for the input buffer");
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = (conn_t *)stream;
    if (nread == 0)
        return;
    if (nread < 0) {
        net_conn_lost(c, nread == UV_EOF ? "connection closed by the client"
                                         : uv_strerror((int)nread));
        return;
    }
    c->l->svc->st.bytes_in += (uint64_t)nread;
    net_set_now(srv_of(c));
    transport_input(c->tr, c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---- close lifecycle --------------------------------------------------------- */

static void conn_begin_close(conn_t *c) {
    if (c->state >= CONN_CLOSING)
        return;
    transport_shutdown(c->tr, c);
    /* Freed with the connection (a feed may still be reading it), but no
     * longer held against the input budget. */
    in_uncount(c);
    conn_set_state(c, CONN_CLOSING);
    c->since_ms = uv_now(&srv_of(c)->loop);
    conn_read_stop(c);
    conn_mark_pending(c);
}

static void on_handle_closed(uv_handle_t *h) {
    conn_t *c = (conn_t *)h;
    server_t *s = srv_of(c);
    if (c->counted_ip) {
        char ip[IPLIMIT_KEY_MAX];
        security_addr_ip(ops_of(c)->conn_remote(c->pc), ip, sizeof(ip));
        net_ip_release(s, ip);
    }
    ops_of(c)->conn_free(c->pc);
    transport_conn_free(c->tr);
    list_remove(&c->node);
    list_remove(&c->pending);
    c->l->svc->n_conns--;
    if (c->moving) /* closed before it could go (cut, or no socket to hand over) */
        net_move_abandon(c);
    if (c->l->svc->limits && !c->moved) /* a moved one counts on its new server */
        atomic_fetch_sub(&s->sh->conns, 1);
    if (s->stopping && list_empty(&s->conns) && !s->stop_timer_closed) {
        s->stop_timer_closed = true;
        uv_close((uv_handle_t *)&s->stop_timer, NULL);
    }
    free(c->in);
    free(c->out);
    free(c);
}

static void on_timer_closed(uv_handle_t *h) {
    free(h);
}

static void conn_timer_stop(conn_t *c) {
    if (c->timer) {
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
        c->timer = NULL;
    }
}

void conn_close_handle(conn_t *c) {
    if (c->state == CONN_CLOSED)
        return;
    conn_set_state(c, CONN_CLOSED);
    conn_timer_stop(c);
    conn_read_stop(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void net_conn_lost(conn_t *c, const char *reason) {
    ops_of(c)->conn_lost(c->pc, reason);
    conn_begin_close(c);
}

void net_conn_end(conn_t *c, const char *reason) {
    ops_of(c)->conn_close(c->pc, reason);
}

/* The protocol's last words before the server closes an open connection. */
static void conn_goodbye(conn_t *c, int why) {
    if (c->state == CONN_OPEN && ops_of(c)->conn_goodbye)
        ops_of(c)->conn_goodbye(c->pc, why);
}

/* A write to the client failed (not cancelled): the peer is gone. */
static void conn_write_failed(conn_t *c, int status) {
    if (c->state < CONN_CLOSING)
        net_conn_lost(c, uv_strerror(status));
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    (void)status;
    free(req);
    conn_close_handle(c);
}

static void conn_finish_close(conn_t *c) {
    if (c->state != CONN_CLOSING)
        return;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req) {
        req->data = c;
        /* Lets the last answers reach the client before the FIN. */
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
            conn_set_state(c, CONN_SHUTDOWN);
            return;
        }
        free(req);
    }
    conn_close_handle(c);
}

/* ---- write side -------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    conn_t *c = w->c;
    c->queued -= w->buf.len;
    free(w->buf.base);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_write_failed(c, status);
    else if (c->moving && !c->queued)
        conn_mark_pending(c); /* its output is out: it can go */
}

static void conn_flush(conn_t *c) {
    server_stats_t *st = &c->l->svc->st;
    if (!c->out_len || c->state == CONN_CLOSED)
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
            st->writes++;
            st->bytes_out += (uint64_t)n;
            c->out_len -= (uint32_t)n;
            if (c->out_len) {
                memmove(c->out, c->out + n, c->out_len);
            } else {
                /* A busy connection keeps its buffer for the next answers;
                 * an idle one gives it back. */
                const server_protocol_ops_t *ops = ops_of(c);
                if (!ops->conn_inflight || !ops->conn_inflight(c->pc)) {
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
        net_conn_end(c, "out of memory for a write");
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
    st->writes++;
    st->bytes_out += w->buf.len;
}

int net_conn_emit(conn_t *c, const void *p, size_t n) {
    if (buf_append(&c->out, &c->out_len, &c->out_cap, 64, p, n) < 0)
        return -1;
    conn_mark_pending(c);
    return 0;
}

/* Runs once per loop turn after I/O: feeds what resumed connections kept,
 * writes each connection's output in one write, finishes closes. */
void conn_process_pending(server_t *s) {
    net_set_now(s);
    /* Feeding may queue more work (answers, closes of other connections):
     * it is done in the next round. */
    for (int round = 0; !list_empty(&s->pending) && round < PENDING_ROUNDS; round++) {
        list_t *last = s->pending.prev, *n;
        do {
            n = s->pending.next;
            list_remove(n);
            conn_t *c = LIST_ENTRY(n, conn_t, pending);
            if (c->feed_pending && c->state < CONN_CLOSING) {
                c->feed_pending = false;
                feed_buffered(c);
                if (!ops_of(c)->conn_paused(c->pc))
                    conn_read_start(c);
            }
            if (list_linked(&c->pending)) /* queued again while feeding */
                continue;
            if (c->held) /* the timer queues it again */
                continue;
            if (c->moving) { /* server_conn_move: once the output is out, it goes */
                conn_flush(c);
                if (c->moving && !c->out_len && !c->queued && c->state == CONN_CLOSING)
                    net_move_send(c);
                continue;
            }
            conn_flush(c);
            if (c->state >= CONN_CLOSING)
                conn_finish_close(c);
        } while (n != last);
    }
    if (list_empty(&s->pending) && !s->stopping && uv_is_active((uv_handle_t *)&s->idle))
        uv_idle_stop(&s->idle);
}

/* ---- what a protocol does with its connection ------------------------------------ */

int server_conn_send(server_conn_t *c, const void *buf, size_t len) {
    service_t *svc = c->l->svc;
    if (c->state == CONN_CLOSED)
        return -1;
    uint32_t limit = srv_of(c)->cfg->mqtt.max_output_buffer;
    if (svc->limits && c->out_len + c->queued + len > limit) {
        static log_ratelimit_t rl = /* one for every worker */
            LOG_RATELIMIT_INIT("output buffer limit", 10, 10000);
        log_client_ratelimited(&rl, LOG_WARN, NULL, net_conn_remote(c),
                               "%zu bytes of output queued, over mqtt.max_output_buffer %u (the "
                               "client does not read)",
                               c->out_len + c->queued + len, limit);
        svc->st.refused_output_limit++;
        return -1;
    }
    return c->tr->type->output(c->tr, c, buf, len);
}

void server_conn_close(server_conn_t *c) {
    conn_begin_close(c);
}

void server_conn_pause(server_conn_t *c) {
    c->paused = true;
    conn_read_stop(c);
}

void server_conn_resume(server_conn_t *c) {
    c->paused = false;
    if (c->state == CONN_OPEN) /* backpressure is not the client's delay */
        c->since_ms = uv_now(&srv_of(c)->loop);
    /* Not synchronously: the protocol may be in the middle of a callback. */
    c->feed_pending = true;
    conn_mark_pending(c);
}

static void on_conn_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    bool held = c->held;
    c->held = false;
    conn_timer_stop(c);
    net_set_now(srv_of(c));
    if (held) {
        conn_mark_pending(c);
        if (c->state < CONN_CLOSING && !ops_of(c)->conn_paused(c->pc))
            conn_read_start(c);
    } else if (c->state < CONN_CLOSING && ops_of(c)->conn_timer) {
        ops_of(c)->conn_timer(c->pc);
    }
}

static int conn_timer_start(conn_t *c, uint32_t ms) {
    if (!c->timer) {
        uv_timer_t *t = malloc(sizeof(*t));
        if (!t)
            return -1;
        uv_timer_init(&srv_of(c)->loop, t);
        t->data = c;
        c->timer = t;
    }
    uv_timer_start(c->timer, on_conn_timer, ms, 0);
    return 0;
}

void server_conn_hold(server_conn_t *c, uint32_t ms) {
    if (c->held || c->state == CONN_CLOSED)
        return;
    if (conn_timer_start(c, ms) != 0)
        return; /* answered at once: a missed delay, not a missed answer */
    c->held = true;
    conn_read_stop(c);
}

int server_conn_timer(server_conn_t *c, uint32_t ms) {
    if (c->held || c->state >= CONN_CLOSING)
        return -1;
    return conn_timer_start(c, ms);
}

/* ---- what the connection does for its transports ------------------------------ */

void net_conn_ready(conn_t *c) {
    if (c->state == CONN_HANDSHAKE)
        conn_set_state(c, CONN_OPEN);
}

void net_conn_input_wait(conn_t *c, bool wait) {
    c->tr_wait = wait;
    if (wait)
        conn_read_stop(c);
    else if (!ops_of(c)->conn_paused(c->pc))
        conn_read_start(c);
}

int net_conn_set_identity(conn_t *c, const char *user) {
    const server_protocol_ops_t *ops = ops_of(c);
    return ops->conn_identity ? ops->conn_identity(c->pc, user) : 0;
}

const char *net_conn_remote(const conn_t *c) {
    return ops_of(c)->conn_remote(c->pc);
}

server_stats_t *net_conn_stats(conn_t *c) {
    return &c->l->svc->st;
}

bool net_conn_closing(const conn_t *c) {
    /* A moving connection's layers decode on: what they pass up goes along. */
    return c->state == CONN_CLOSED || (c->state >= CONN_CLOSING && !c->moving);
}

/* ---- every connection ------------------------------------------------------------ */

/* Each walk may close connections, never free them: that happens in a
 * close callback. */
#define FOREACH_CONN(c, s)                                                                         \
    for (list_t *it_ = (s)->conns.next; it_ != &(s)->conns; it_ = it_->next)                       \
        if (((c) = LIST_ENTRY(it_, conn_t, node)) != NULL)

void conn_check_handshakes(server_t *s, uint64_t now) {
    unsigned limit_s = s->cfg->mqtt.connect_timeout_s;
    conn_t *c;
    FOREACH_CONN(c, s) {
        if (c->state == CONN_HANDSHAKE && now - c->since_ms >= (uint64_t)limit_s * 1000u) {
            const char *why = transport_handshake_timeout(c->tr, c, limit_s);
            if (why)
                net_conn_end(c, why);
        }
    }
}

void conn_check_partial(server_t *s, uint64_t now) {
    unsigned limit_s = s->cfg->mqtt.packet_timeout_s;
    conn_t *c;
    if (!limit_s)
        return;
    FOREACH_CONN(c, s) {
        if (c->state != CONN_OPEN || !c->in_len || !c->l->svc->limits || c->paused || c->held ||
            ops_of(c)->conn_paused(c->pc) || now - c->since_ms < (uint64_t)limit_s * 1000u)
            continue;
        char why[160];
        snprintf(why, sizeof(why),
                 "a packet not completed within mqtt.packet_timeout_s %u s (%u bytes of it "
                 "received)",
                 limit_s, c->in_len);
        c->l->svc->st.packet_timeouts++;
        net_conn_end(c, why);
        conn_begin_close(c);
    }
}

static void budget_posted(void *arg) {
    server_t *s = arg;
    input_over_budget(s, &s->svc[SERVICE_MQTT]);
}

/* Another server (worker) whose largest partial packet is larger than
 * `mine`, as each last published it; NULL when none. */
static server_t *larger_elsewhere(server_t *s, uint64_t mine) {
    server_shared_t *sh = s->sh;
    unsigned n = atomic_load(&sh->n_servers);
    server_t *best = NULL;
    for (unsigned i = 0; i < n && i < SHARED_SERVERS_MAX; i++) {
        server_t *o = atomic_load(&sh->servers[i]);
        uint64_t l = atomic_load(&sh->largest[i]);
        if (o && o != s && l > mine) {
            mine = l;
            best = o;
        }
    }
    return best;
}

/* Over max_input_buffer_bytes (every worker's input counts): the
 * connections holding the largest partial packets are closed first, until
 * the rest fits. When another worker holds a larger one, that worker is
 * asked (on its loop) to do the same. */
static void input_over_budget(server_t *s, service_t *svc) {
    uint64_t budget = s->cfg->mqtt.max_input_buffer_bytes;
    while (atomic_load(&s->sh->input) > budget) {
        conn_t *big = NULL, *c;
        FOREACH_CONN(c, s) {
            if (c->l->svc == svc && c->in_counted && (!big || c->in_cap > big->in_cap))
                big = c;
        }
        uint64_t mine = big ? big->in_cap : 0;
        if (s->sh_idx < SHARED_SERVERS_MAX)
            atomic_store(&s->sh->largest[s->sh_idx], mine);
        server_t *o = larger_elsewhere(s, mine);
        if (o && server_post(o, budget_posted, o) == 0)
            break;
        if (!big)
            break;
        char why[200];
        snprintf(why, sizeof(why),
                 "%u bytes of a partly received packet buffered, the most of any connection, "
                 "while all hold %" PRIu64 ", over mqtt.max_input_buffer_bytes %" PRIu64,
                 big->in_cap, (uint64_t)atomic_load(&s->sh->input), budget);
        svc->st.input_budget_closed++;
        conn_goodbye(big, SERVER_GOODBYE_BUSY);
        net_conn_end(big, why);
        conn_begin_close(big); /* uncounts it, whatever the protocol did */
    }
}

void conn_cut_stragglers(server_t *s, uint64_t now) {
    conn_t *c;
    FOREACH_CONN(c, s) {
        if ((c->state == CONN_CLOSING || c->state == CONN_SHUTDOWN) &&
            now - c->since_ms >= CLOSE_GRACE_MS)
            conn_close_handle(c); /* the peer does not read: cut it */
    }
}

void conn_stop_reading_all(server_t *s) {
    conn_t *c;
    FOREACH_CONN(c, s) {
        conn_read_stop(c);
    }
}

void conn_close_all(server_t *s) {
    conn_t *c;
    FOREACH_CONN(c, s) {
        if (c->moving) /* on its way to another server: sent now, or closed there */
            continue;
        conn_goodbye(c, SERVER_GOODBYE_SHUTDOWN);
        net_conn_lost(c, "server shutting down");
    }
}

void conn_cut_all(server_t *s) {
    conn_t *c;
    FOREACH_CONN(c, s) {
        conn_close_handle(c);
    }
}

void *server_conn_proto(const server_conn_t *c) {
    return c->l->svc->p.ud;
}

const char *server_conn_listener(const server_conn_t *c) {
    return c->l->name;
}

uint64_t server_conn_accepted_ns(const server_conn_t *c) {
    return conn_accepted_ns(c);
}
