/* A connection handed from one server to another (server_conn_move, see
 * server.h): with threads: N each worker has its own server on its own loop
 * and thread, and a client id lives on one of them. The accepting server
 * stops reading, waits until its output is written, dup()s the socket,
 * closes its handle and posts the descriptor with the bytes not consumed,
 * the transport layers (heap objects: a TLS session's SSL and memory BIOs, a
 * WebSocket's frame state), the remote address, the listener and the accept
 * time to the target's inbox (a list under a mutex and a uv_async_t). The
 * target opens the descriptor, its protocol, and feeds the bytes.
 *
 * The connection keeps its slot in the shared bounds (max_connections, the
 * per-address count) while it travels: it is counted once, never twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/security.h"
#include "conn.h"

struct net_move {
    list_t node; /* in the source's moves, then in the target's inbox */
    conn_t *c;   /* while in the source's moves */
    server_t *to;
    int fd;
    size_t listener; /* index in listeners[]: the same address on every worker */
    transport_t *tr;
    uint64_t since_ms;
    uint64_t accepted_ns;
    bool counted_ip;
    char remote[96];
    size_t len;
    uint8_t bytes[];
};

/* The message of a moving connection (in its server's moves). */
static struct net_move *move_of(const conn_t *c) {
    server_t *s = c->l->srv;
    for (list_t *n = s->moves.next; n != &s->moves; n = n->next) {
        struct net_move *m = LIST_ENTRY(n, struct net_move, node);
        if (m->c == c)
            return m;
    }
    return NULL;
}

/* A move that cannot complete: the socket closes, its counts are given back. */
static void move_drop(server_t *s, struct net_move *m) {
    if (m->fd >= 0)
        close(m->fd);
    transport_conn_free(m->tr);
    if (m->counted_ip) {
        char ip[IPLIMIT_KEY_MAX];
        security_addr_ip(m->remote, ip, sizeof(ip));
        net_ip_release(s, ip);
    }
    atomic_fetch_sub(&s->sh->conns, 1);
    free(m);
}

/* Queues node on one of s's inbox lists and wakes s's loop: false when s
 * has stopped (nothing queued). */
static bool inbox_push(server_t *s, list_t *list, list_t *node) {
    pthread_mutex_lock(&s->inbox_mu);
    bool closed = s->inbox_closed;
    if (!closed)
        list_insert_tail(list, node);
    pthread_mutex_unlock(&s->inbox_mu);
    if (!closed)
        uv_async_send(&s->inbox_async);
    return !closed;
}

int server_conn_move(server_conn_t *c, server_t *to, const uint8_t *buf, size_t len) {
    server_t *s = c->l->srv;
    if (to == s || c->state != CONN_OPEN || c->moving || !c->l->svc->limits ||
        c->l < s->listeners || c->l >= s->listeners + s->n_listening)
        return -1;
    pthread_mutex_lock(&to->inbox_mu);
    bool closed = to->inbox_closed;
    pthread_mutex_unlock(&to->inbox_mu);
    if (closed)
        return -1;
    struct net_move *m = malloc(sizeof(*m) + len);
    if (!m)
        return -1;
    *m = (struct net_move){.c = c, .to = to, .fd = -1, .listener = (size_t)(c->l - s->listeners)};
    m->len = len;
    if (len)
        memcpy(m->bytes, buf, len);
    snprintf(m->remote, sizeof(m->remote), "%s", c->l->svc->p.ops->conn_remote(c->pc));
    m->since_ms = c->since_ms;
    m->accepted_ns = conn_accepted_ns(c);
    list_insert_tail(&s->moves, &m->node);
    c->moving = true;
    conn_read_stop(c);
    /* Closing without the transports' goodbye: the stream goes on elsewhere.
     * The input kept here (if any) is what `buf` holds. */
    conn_set_state(c, CONN_CLOSING);
    conn_mark_pending(c);
    return 0;
}

void net_move_append(conn_t *c, const uint8_t *p, size_t n) {
    struct net_move *m = move_of(c);
    list_remove(&m->node);
    struct net_move *b = realloc(m, sizeof(*m) + m->len + n);
    if (!b) {
        list_insert_tail(&c->l->srv->moves, &m->node);
        log_error("%s: out of memory moving the connection to another worker", m->remote);
        conn_close_handle(c); /* on_handle_closed abandons the move */
        return;
    }
    memcpy(b->bytes + b->len, p, n);
    b->len += n;
    list_insert_tail(&c->l->srv->moves, &b->node);
}

bool net_move_send(conn_t *c) {
    server_t *s = c->l->srv;
    struct net_move *m = move_of(c);
    server_t *to = m->to;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || (m->fd = dup(fd)) < 0) {
        log_error("%s: moving the connection to another worker: %s", m->remote,
                  "no socket to hand over");
        conn_close_handle(c); /* on_handle_closed abandons the move */
        return true;
    }
    m->tr = c->tr;
    c->tr = NULL;
    m->counted_ip = c->counted_ip;
    c->counted_ip = false;
    list_remove(&m->node);
    m->c = NULL;
    c->moving = false;
    c->moved = true;
    if (!inbox_push(to, &to->inbox, &m->node))
        move_drop(s, m); /* the target stops: the client sees a close */
    conn_close_handle(c);
    return true;
}

void net_move_abandon(conn_t *c) {
    struct net_move *m = move_of(c);
    list_remove(&m->node);
    c->moving = false;
    /* The handle, the layers and the address counts go as for any close;
     * only the message is left. */
    free(m);
}

/* On the target's loop: the connection continues here. */
static void move_open(server_t *s, struct net_move *m) {
    service_t *svc = &s->svc[SERVICE_MQTT];
    if (m->listener >= s->n_listening || s->intake_stopped || !svc->p.ops) {
        move_drop(s, m);
        return;
    }
    listener_t *l = &s->listeners[m->listener];
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("%s: out of memory taking over a connection", m->remote);
        move_drop(s, m);
        return;
    }
    c->l = l;
    list_init(&c->node);
    list_init(&c->pending);
    uv_tcp_init(&s->loop, &c->tcp);
    conn_set_accepted(c, m->accepted_ns);
    if (uv_tcp_open(&c->tcp, m->fd) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
        move_drop(s, m);
        return;
    }
    m->fd = -1; /* the handle owns it */
    net_set_now(s);
    c->tr = m->tr;
    m->tr = NULL;
    transport_conn_rebind(c->tr, &l->stack);
    c->since_ms = m->since_ms;
    if (!(c->pc = svc->p.ops->conn_open(svc->p.ud, c, m->remote))) {
        c->tr = NULL;
        uv_close((uv_handle_t *)&c->tcp, conn_on_refused_closed);
        move_drop(s, m); /* frees the layers, gives the counts back */
        return;
    }
    c->counted_ip = m->counted_ip;
    list_insert_head(&s->conns, &c->node);
    svc->n_conns++;
    conn_set_state(c, CONN_OPEN);
    transport_reopened(c->tr, c);
    if (!net_conn_closing(c))
        net_conn_deliver(c, m->bytes, m->len);
    free(m);
    transport_resume(c->tr, c); /* what a layer decoded after those bytes */
    conn_read_start(c);
}

/* A call from another thread (server_post). */
typedef struct {
    list_t node;
    void (*fn)(void *arg);
    void *arg;
} net_call_t;

int server_post(server_t *s, void (*fn)(void *arg), void *arg) {
    net_call_t *call = malloc(sizeof(*call));
    if (!call)
        return -1;
    call->fn = fn;
    call->arg = arg;
    if (!inbox_push(s, &s->calls, &call->node)) {
        free(call);
        return -1;
    }
    return 0;
}

static void take_all(list_t *from, list_t *to) {
    while (!list_empty(from)) {
        list_t *n = from->next;
        list_remove(n);
        list_insert_tail(to, n);
    }
}

static void on_inbox(uv_async_t *h) {
    server_t *s = h->data;
    list_t q, calls;
    list_init(&q);
    list_init(&calls);
    pthread_mutex_lock(&s->inbox_mu);
    take_all(&s->inbox, &q);
    take_all(&s->calls, &calls);
    pthread_mutex_unlock(&s->inbox_mu);
    while (!list_empty(&q)) {
        list_t *n = q.next;
        list_remove(n);
        move_open(s, LIST_ENTRY(n, struct net_move, node));
    }
    while (!list_empty(&calls)) {
        net_call_t *call = LIST_ENTRY(calls.next, net_call_t, node);
        list_remove(&call->node);
        call->fn(call->arg);
        free(call);
    }
}

int net_inbox_init(server_t *s) {
    list_init(&s->moves);
    list_init(&s->inbox);
    list_init(&s->calls);
    if (pthread_mutex_init(&s->inbox_mu, NULL) != 0)
        return -1;
    if (uv_async_init(&s->loop, &s->inbox_async, on_inbox) != 0) {
        pthread_mutex_destroy(&s->inbox_mu);
        return -1;
    }
    s->inbox_async.data = s;
    return 0;
}

/* Closed once, by server_stop: what is still in it is dropped. */
void net_inbox_close(server_t *s) {
    pthread_mutex_lock(&s->inbox_mu);
    bool was = s->inbox_closed;
    s->inbox_closed = true;
    pthread_mutex_unlock(&s->inbox_mu);
    if (was)
        return;
    uv_close((uv_handle_t *)&s->inbox_async, NULL);
    on_inbox(&s->inbox_async); /* s->intake_stopped: moves are dropped, calls run */
}

void net_inbox_free(server_t *s) {
    pthread_mutex_destroy(&s->inbox_mu);
}
