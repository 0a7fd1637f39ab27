/* A TCP relay on the loop: connections to a fixed loopback port are passed
 * byte for byte to one target address. It gives the embedded Kafka (whose
 * mock brokers listen on ports the kernel picks; librdkafka 2.0.2 cannot fix
 * them) a fixed bootstrap address: a Kafka client bootstraps through the
 * relay, reads the brokers' real addresses from the metadata and connects
 * to them directly. For trying out only, like the mock cluster itself. */
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "util/log.h"

#define FWD_READ_SIZE 65536
#define FWD_HIGH_WATER (1u << 20) /* stop reading a side while its peer owes this much */

typedef struct fwd_pair fwd_pair_t;

typedef struct {
    uv_tcp_t tcp;
    fwd_pair_t *pair;
    bool reading;
} fwd_side_t;

struct fwd_pair {
    list_t node;
    fwd_side_t side[2]; /* 0: the client, 1: the target */
    uv_connect_t connect;
    int open_handles;
    bool closing;
};

struct server_forward {
    uv_tcp_t listener;
    struct sockaddr_storage target;
    char target_name[64];
    list_t pairs;
    bool closed;
};

static void pair_close(fwd_pair_t *p);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    buf->base = malloc(FWD_READ_SIZE);
    buf->len = buf->base ? FWD_READ_SIZE : 0;
}

static fwd_side_t *peer_of(fwd_side_t *s) {
    return s == &s->pair->side[0] ? &s->pair->side[1] : &s->pair->side[0];
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void side_read(fwd_side_t *s, bool on) {
    if (s->reading == on || s->pair->closing)
        return;
    s->reading = on;
    if (on)
        uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&s->tcp);
}

static void on_write(uv_write_t *w, int status) {
    fwd_side_t *to = w->data;
    free(w);
    if (status < 0) {
        pair_close(to->pair);
        return;
    }
    if (to->tcp.write_queue_size < FWD_HIGH_WATER)
        side_read(peer_of(to), true);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    fwd_side_t *s = st->data;
    if (n <= 0) {
        free(buf->base);
        if (n < 0) /* end of stream or an error: the relay ends both ways */
            pair_close(s->pair);
        return;
    }
    fwd_side_t *to = peer_of(s);
    /* The buffer travels with the write request and is freed with it. */
    uv_write_t *w = malloc(sizeof(*w) + (size_t)n);
    if (!w) {
        free(buf->base);
        pair_close(s->pair);
        return;
    }
    memcpy(w + 1, buf->base, (size_t)n);
    free(buf->base);
    w->data = to;
    uv_buf_t out = uv_buf_init((char *)(w + 1), (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&to->tcp, &out, 1, on_write) != 0) {
        free(w);
        pair_close(s->pair);
        return;
    }
    if (to->tcp.write_queue_size >= FWD_HIGH_WATER)
        side_read(s, false);
}

static void on_pair_handle_closed(uv_handle_t *h) {
    fwd_side_t *s = h->data;
    fwd_pair_t *p = s->pair;
    if (--p->open_handles == 0)
        free(p);
}

static void pair_close(fwd_pair_t *p) {
    if (p->closing)
        return;
    p->closing = true;
    list_remove(&p->node);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&p->side[i].tcp, on_pair_handle_closed);
}

static void on_connected(uv_connect_t *req, int status) {
    fwd_pair_t *p = req->data;
    if (p->closing)
        return;
    if (status < 0) {
        log_warn("embedded Kafka relay: cannot connect to the broker: %s", uv_strerror(status));
        pair_close(p);
        return;
    }
    side_read(&p->side[0], true);
    side_read(&p->side[1], true);
}

static void on_accept(uv_stream_t *ls, int status) {
    server_forward_t *f = ls->data;
    if (status < 0 || f->closed)
        return;
    fwd_pair_t *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    list_init(&p->node);
    for (int i = 0; i < 2; i++) {
        uv_tcp_init(ls->loop, &p->side[i].tcp);
        p->side[i].tcp.data = &p->side[i];
        p->side[i].pair = p;
        p->open_handles++;
    }
    list_insert_tail(&f->pairs, &p->node);
    if (uv_accept(ls, (uv_stream_t *)&p->side[0].tcp) != 0) {
        pair_close(p);
        return;
    }
    p->connect.data = p;
    if (uv_tcp_connect(&p->connect, &p->side[1].tcp, (struct sockaddr *)&f->target, on_connected) !=
        0)
        pair_close(p);
}

int server_forward(server_t *s, const char *host, uint16_t port, const char *target, char *errbuf,
                   size_t errlen) {
    if (s->fwd) {
        snprintf(errbuf, errlen, "a relay is running already");
        return -1;
    }
    server_forward_t *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    list_init(&f->pairs);
    /* The target is "IPv4:port", the first address the mock cluster names. */
    const char *colon = strrchr(target, ':');
    char thost[64];
    struct sockaddr_in listen_at;
    int r = -1;
    if (colon && (size_t)(colon - target) < sizeof(thost)) {
        memcpy(thost, target, (size_t)(colon - target));
        thost[colon - target] = '\0';
        r = uv_ip4_addr(thost, atoi(colon + 1), (struct sockaddr_in *)&f->target);
    }
    if (r != 0 || uv_ip4_addr(host, port, &listen_at) != 0) {
        snprintf(errbuf, errlen, "bad address %s or %s:%u", target, host, port);
        free(f);
        return -1;
    }
    snprintf(f->target_name, sizeof(f->target_name), "%s", target);
    uv_tcp_init(&s->loop, &f->listener);
    f->listener.data = f;
    s->fwd = f; /* from here server_stop closes the listener */
    r = uv_tcp_bind(&f->listener, (struct sockaddr *)&listen_at, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&f->listener, 64, on_accept);
    if (r != 0) {
        snprintf(errbuf, errlen, "cannot listen on %s:%u: %s", host, port, uv_strerror(r));
        return -1;
    }
    return 0;
}

void forward_stop(server_t *s) {
    server_forward_t *f = s->fwd;
    if (!f || f->closed)
        return;
    f->closed = true;
    uv_close((uv_handle_t *)&f->listener, NULL);
    list_t *it, *nx;
    LIST_FOREACH_SAFE(it, nx, &f->pairs)
    pair_close(LIST_ENTRY(it, fwd_pair_t, node));
}

void forward_free(server_t *s) {
    free(s->fwd);
    s->fwd = NULL;
}
