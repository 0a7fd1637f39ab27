/* The mqtt-bench client engine: one thread, one epoll set, N non-blocking
 * MQTT connections.
 *
 * Phases: connect all (at most connect_concurrency handshakes at once), then
 * publish (or hold idle), then drain outstanding acks, then DISCONNECT.
 * The generator must not be the bottleneck, so:
 *  - a PUBLISH is pre-encoded once per connection (fixed header, topic,
 *    packet id slot); sending copies the prefix, patches the id and copies the
 *    shared payload;
 *  - every connection keeps its in-flight window full (pipelining) and gets
 *    at most one write per loop turn carrying everything due (PUBLISHes,
 *    PUBRELs, PINGREQ);
 *  - a rate-limited or sensor run walks connections in a fixed phase order
 *    with a cursor, so a loop turn touches only the connections that are due
 *    instead of scanning all of them. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mqtt_bench.h"
#include "mqtt/codec.h"

enum {
    C_NEW = 0,
    C_CONNECTING, /* TCP connect in progress */
    C_CONNACK,    /* CONNECT sent, waiting for CONNACK */
    C_READY,      /* connected; publishing or idle */
    C_CLOSED,     /* failed or finished; fd closed */
};

/* Slot states for QoS 1/2 packet ids (packet id = slot + 1). */
enum { SLOT_FREE = 0, SLOT_WAIT_ACK = 1, SLOT_WAIT_COMP = 2 };

#define CARRY_MAX 16           /* the server only sends small packets to a publisher */
#define BATCH_MAX (256 * 1024) /* bytes queued per connection per loop turn */
#define READ_BUF 65536
/* PINGREQs outstanding per connection; QoS 0 flow control uses up to
 * PING_FIFO - 2 so a keepalive or final PINGREQ always fits. */
#define PING_FIFO 8

typedef struct {
    int fd;
    uint8_t state;
    bool dirty;                      /* in the flush list for this turn */
    bool want_out;                   /* EPOLLOUT registered */
    bool ping_wait;                  /* final PINGREQ sent, PINGRESP not yet seen */
    uint8_t ping_head, ping_n;       /* PINGREQs awaiting PINGRESP, oldest first */
    uint32_t ping_covers[PING_FIFO]; /* QoS 0 PUBLISHes each PINGREQ confirms */
    uint32_t unconfirmed;            /* QoS 0 PUBLISHes not yet confirmed */
    uint8_t carry_len;
    uint8_t carry[CARRY_MAX];
    uint32_t index;
    uint8_t *obuf;
    uint32_t olen, ooff, ocap;
    uint32_t oframed;   /* --websocket: obuf[0..oframed) is in wire form */
    bench_ws_rx_t wsrx; /* --websocket: the input side */
    uint64_t t_connect;
    uint64_t last_tx;
    uint64_t next_due;
    uint64_t owed; /* PUBLISHes due but not yet written (rate/sensor modes) */
    uint64_t sent;
    uint32_t inflight;
    uint32_t nfree;
    uint64_t *sent_ns;
    uint8_t *slot_state;
    uint16_t *free_stack;
    uint8_t *tmpl; /* PUBLISH without payload */
    uint16_t tmpl_len;
    uint16_t pid_off;
    /* sensor simulation */
    double temp, temp_base, bright_factor;
    uint64_t rng;
} conn_t;

typedef struct {
    const bench_opts_t *o;
    bench_result_t *r;
    int epfd;
    conn_t *conns;
    uint32_t n;
    uint32_t *dirty;
    uint32_t ndirty;
    uint8_t *payload;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool bind_source;
    /* connect phase */
    uint32_t next_connect;
    uint32_t handshakes;
    uint32_t resolved; /* connected or failed */
    /* publish phase */
    bool publishing;
    bool stop_sending;
    bool unlimited;
    uint64_t period_ns; /* per connection, rate/sensor modes */
    uint32_t cursor;
    uint64_t inflight; /* over all connections */
    uint32_t ping_waits;
    uint64_t t_last_event;
} bench_t;

static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
    (void)sig;
    g_signals++;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double cpu_seconds(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double u = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
    double s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    if (user)
        *user = u;
    if (sys)
        *sys = s;
    return u + s;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* Uniform in [-1, 1). */
static double rnd_signed(uint64_t *s) {
    return (double)(xorshift(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

void bench_opts_default(bench_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 1883;
    o->connections = 1;
    o->qos = 1;
    o->payload = 100;
    o->window = 16;
    o->duration = 10;
    o->topic = "bench/%d";
    o->client_id = "mqtt-bench-%d";
    o->clean_session = true;
    o->keepalive = 60;
    o->interval_ms = 1000;
    o->final_ping = true;
    o->connect_concurrency = 100;
    o->connect_timeout = 10;
    o->drain_timeout = 5;
    o->conns_per_source = 25000;
}

uint64_t bench_errors_total(const bench_result_t *r) {
    return r->err_connect_refused + r->err_connect_failed + r->err_connect_timeout +
           r->err_connack_rejected + r->err_closed_by_server + r->err_protocol;
}

int bench_format_pattern(char *out, size_t cap, const char *pattern, uint64_t n) {
    size_t len = 0;
    char num[24];
    int nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
    for (const char *p = pattern; *p; p++) {
        const char *piece = p;
        size_t plen = 1;
        if (p[0] == '%' && p[1] == 'd') {
            piece = num;
            plen = (size_t)nl;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            p++;
        }
        if (len + plen >= cap)
            return -1;
        memcpy(out + len, piece, plen);
        len += plen;
    }
    if (len >= cap)
        return -1;
    out[len] = '\0';
    return (int)len;
}

long bench_read_rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* ---- output buffer ---- */

static int obuf_reserve(conn_t *c, size_t more) {
    size_t need = (size_t)c->olen + more;
    if (need <= c->ocap)
        return 0;
    size_t cap = c->ocap ? c->ocap : 128;
    while (cap < need)
        cap *= 2;
    uint8_t *nb = realloc(c->obuf, cap);
    if (!nb)
        return -1;
    c->obuf = nb;
    c->ocap = (uint32_t)cap;
    return 0;
}

static void mark_dirty(bench_t *b, conn_t *c) {
    if (!c->dirty && c->state != C_CLOSED) {
        c->dirty = true;
        b->dirty[b->ndirty++] = c->index;
    }
}

static void conn_close(bench_t *b, conn_t *c) {
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_CONNECTING || c->state == C_CONNACK) {
        b->handshakes--;
        b->resolved++;
    }
    close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    b->r->unacked += c->inflight;
    b->inflight -= c->inflight;
    c->inflight = 0;
    if (c->ping_wait) {
        c->ping_wait = false;
        b->ping_waits--;
    }
    free(c->obuf);
    c->obuf = NULL;
    c->olen = c->ooff = c->ocap = c->oframed = 0;
}

static void set_out(bench_t *b, conn_t *c, bool on) {
    if (c->want_out == on || c->state == C_CLOSED)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.u32 = c->index};
    epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Writes what is queued; returns -1 if the connection was closed. */
static int conn_write(bench_t *b, conn_t *c) {
    if (b->o->ws_path && c->oframed < c->olen) {
        if (obuf_reserve(c, BENCH_WS_HEAD_MAX) < 0) {
            b->r->err_protocol++;
            conn_close(b, c);
            return -1;
        }
        c->olen =
            c->oframed + (uint32_t)bench_ws_frame(c->obuf + c->oframed, c->olen - c->oframed,
                                                  (uint32_t)(c->sent * 2654435761u) ^ c->index);
        c->oframed = c->olen;
    }
    while (c->ooff < c->olen) {
        ssize_t w = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(b, c, true);
                return 0;
            }
            b->r->err_closed_by_server++;
            conn_close(b, c);
            return -1;
        }
        c->ooff += (uint32_t)w;
        b->r->bytes_sent += (uint64_t)w;
    }
    c->olen = c->ooff = c->oframed = 0;
    c->last_tx = now_ns();
    set_out(b, c, false);
    return 0;
}

static int queue_empty_packet(conn_t *c, mqtt_type_t type) {
    if (obuf_reserve(c, 2) < 0)
        return -1;
    c->olen += (uint32_t)mqtt_encode_empty(c->obuf + c->olen, 2, type);
    return 0;
}

/* A server answers PINGREQs in order and only after reading everything
 * before them, so each PINGRESP confirms the QoS 0 PUBLISHes sent before its
 * PINGREQ. Returns -1 when the FIFO is full. */
static int queue_ping(bench_t *b, conn_t *c, uint32_t covers) {
    if (c->ping_n == PING_FIFO || queue_empty_packet(c, MQTT_PINGREQ) < 0)
        return -1;
    c->ping_covers[(c->ping_head + c->ping_n) % PING_FIFO] = covers;
    c->ping_n++;
    b->r->pings_sent++;
    return 0;
}

/* ---- connect phase ---- */

static int queue_connect(bench_t *b, conn_t *c) {
    const bench_opts_t *o = b->o;
    char cid[256];
    int n = bench_format_pattern(cid, sizeof(cid), o->client_id, (uint64_t)c->index + o->first_id);
    if (n < 0)
        return -1;
    mqtt_connect_t ct = {.clean_session = o->clean_session, .keepalive = o->keepalive};
    ct.client_id.ptr = (const uint8_t *)cid;
    ct.client_id.len = (size_t)n;
    if (o->username) {
        ct.has_username = true;
        ct.username.ptr = (const uint8_t *)o->username;
        ct.username.len = strlen(o->username);
    }
    if (o->password) {
        ct.has_password = true;
        ct.password.ptr = (const uint8_t *)o->password;
        ct.password.len = strlen(o->password);
    }
    size_t need = mqtt_encode_connect(NULL, 0, &ct);
    if (need == 0 || obuf_reserve(c, need) < 0)
        return -1;
    c->olen += (uint32_t)mqtt_encode_connect(c->obuf + c->olen, need, &ct);
    return 0;
}

static void connect_failed(bench_t *b, conn_t *c, int err) {
    if (err == ECONNREFUSED)
        b->r->err_connect_refused++;
    else
        b->r->err_connect_failed++;
    conn_close(b, c);
}

static void conn_start(bench_t *b, conn_t *c) {
    b->r->attempted++;
    b->handshakes++;
    c->state = C_CONNECTING;
    c->t_connect = now_ns();
    int fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        b->r->err_connect_failed++;
        b->handshakes--;
        b->resolved++;
        c->fd = -1;
        c->state = C_CLOSED;
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (b->bind_source) {
        /* The port is picked at connect() time, so ports are shared between
         * source addresses' 4-tuples rather than reserved at bind(). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + c->index / b->o->conns_per_source);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            connect_failed(b, c, errno);
            return;
        }
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = c->index};
    c->want_out = true;
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        connect_failed(b, c, errno);
        return;
    }
    if (connect(fd, (struct sockaddr *)&b->addr, b->addrlen) < 0 && errno != EINPROGRESS) {
        connect_failed(b, c, errno);
        return;
    }
}

static void start_connects(bench_t *b) {
    while (b->next_connect < b->n && b->handshakes < b->o->connect_concurrency)
        conn_start(b, &b->conns[b->next_connect++]);
}

static void on_connected(bench_t *b, conn_t *c) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        connect_failed(b, c, err);
        return;
    }
    c->state = C_CONNACK;
    if (b->o->ws_path) {
        char req[512];
        int n = bench_ws_request(req, sizeof(req), b->o->host, b->o->port, b->o->ws_path);
        if (n < 0 || obuf_reserve(c, (size_t)n) < 0) {
            b->r->err_connect_failed++;
            conn_close(b, c);
            return;
        }
        memcpy(c->obuf + c->olen, req, (size_t)n);
        c->olen += (uint32_t)n;
        c->oframed = c->olen;
    }
    if (queue_connect(b, c) < 0) {
        b->r->err_connect_failed++;
        conn_close(b, c);
        return;
    }
    conn_write(b, c);
}

/* ---- publishing ---- */

static int conn_prepare_publish(bench_t *b, conn_t *c) {
    const bench_opts_t *o = b->o;
    uint64_t id = (uint64_t)c->index + o->first_id;
    if (o->qos > 0) {
        c->sent_ns = calloc(o->window, sizeof(*c->sent_ns));
        c->slot_state = calloc(o->window, 1);
        c->free_stack = calloc(o->window, sizeof(*c->free_stack));
        if (!c->sent_ns || !c->slot_state || !c->free_stack)
            return -1;
        for (uint32_t i = 0; i < o->window; i++)
            c->free_stack[i] = (uint16_t)(o->window - 1 - i);
        c->nfree = o->window;
    }
    if (o->mode == BENCH_MODE_SENSORS) {
        c->rng = 0x9e3779b97f4a7c15ull ^ (id * 0xbf58476d1ce4e5b9ull) ^ 1u;
        for (int i = 0; i < 4; i++)
            xorshift(&c->rng);
        c->temp_base = 20.0 + 3.0 * rnd_signed(&c->rng);
        c->temp = c->temp_base + 0.5 * rnd_signed(&c->rng);
        c->bright_factor = 0.6 + 0.4 * rnd_signed(&c->rng);
        return 0;
    }
    char topic[1024];
    int tl = bench_format_pattern(topic, sizeof(topic), o->topic, id);
    if (tl <= 0)
        return -1;
    mqtt_publish_t p = {.qos = (uint8_t)o->qos, .retain = o->retain, .packet_id = 1};
    p.topic.ptr = (const uint8_t *)topic;
    p.topic.len = (size_t)tl;
    p.payload.ptr = b->payload;
    p.payload.len = o->payload;
    size_t total = mqtt_encode_publish(NULL, 0, &p);
    if (total == 0)
        return -1;
    uint8_t *full = malloc(total);
    if (!full)
        return -1;
    mqtt_encode_publish(full, total, &p);
    c->tmpl_len = (uint16_t)(total - o->payload);
    c->pid_off = (uint16_t)(c->tmpl_len - 2);
    c->tmpl = malloc(c->tmpl_len);
    if (c->tmpl)
        memcpy(c->tmpl, full, c->tmpl_len);
    free(full);
    return c->tmpl ? 0 : -1;
}

/* Encodes one sensor reading; metric alternates temperature / brightness. */
static int queue_sensor_publish(bench_t *b, conn_t *c, uint16_t pid) {
    const bench_opts_t *o = b->o;
    uint64_t id = (uint64_t)c->index + o->first_id;
    bool temperature = c->sent % 2 == 0;
    char topic[1024], json[256], base[1000];
    if (bench_format_pattern(base, sizeof(base), o->topic, id) < 0)
        return -1;
    int tl =
        snprintf(topic, sizeof(topic), "%s/%s", base, temperature ? "temperature" : "brightness");
    uint64_t ts = wall_ms();
    int jl;
    if (temperature) {
        /* A random walk pulled back towards the device's own base value. */
        c->temp += 0.05 * (c->temp_base - c->temp) + 0.15 * rnd_signed(&c->rng);
        jl = snprintf(json, sizeof(json),
                      "{\"sensor\":\"%llu\",\"temperature\":%.1f,\"unit\":\"C\",\"ts\":%llu}",
                      (unsigned long long)id, c->temp, (unsigned long long)ts);
    } else {
        /* Daylight: a sine over the wall-clock day, peak at 13:00 UTC. */
        double day = (double)(ts % 86400000u) / 86400000.0;
        double sun = sin((day - 0.29) * 2.0 * M_PI);
        double lux = sun > 0 ? 800.0 * sun * c->bright_factor : 0.0;
        lux += 5.0 + 3.0 * rnd_signed(&c->rng) + 0.03 * lux * rnd_signed(&c->rng);
        if (lux < 0)
            lux = 0;
        jl = snprintf(json, sizeof(json),
                      "{\"sensor\":\"%llu\",\"brightness\":%.0f,\"unit\":\"lx\",\"ts\":%llu}",
                      (unsigned long long)id, lux, (unsigned long long)ts);
    }
    mqtt_publish_t p = {.qos = (uint8_t)o->qos, .retain = o->retain, .packet_id = pid};
    p.topic.ptr = (const uint8_t *)topic;
    p.topic.len = (size_t)tl;
    p.payload.ptr = (const uint8_t *)json;
    p.payload.len = (size_t)jl;
    size_t need = mqtt_encode_publish(NULL, 0, &p);
    if (need == 0 || obuf_reserve(c, need) < 0)
        return -1;
    c->olen += (uint32_t)mqtt_encode_publish(c->obuf + c->olen, need, &p);
    return 0;
}

static int queue_publish(bench_t *b, conn_t *c, uint16_t pid) {
    if (b->o->mode == BENCH_MODE_SENSORS)
        return queue_sensor_publish(b, c, pid);
    size_t len = c->tmpl_len + b->o->payload;
    if (obuf_reserve(c, len) < 0)
        return -1;
    uint8_t *dst = c->obuf + c->olen;
    memcpy(dst, c->tmpl, c->tmpl_len);
    if (b->o->qos > 0) {
        dst[c->pid_off] = (uint8_t)(pid >> 8);
        dst[c->pid_off + 1] = (uint8_t)pid;
    }
    memcpy(dst + c->tmpl_len, b->payload, b->o->payload);
    c->olen += (uint32_t)len;
    return 0;
}

static void protocol_error(bench_t *b, conn_t *c);

/* Appends every PUBLISH that is due and fits the window, then writes once. */
static void conn_flush(bench_t *b, conn_t *c) {
    const bench_opts_t *o = b->o;
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_READY && b->publishing && !b->stop_sending && !c->want_out &&
        c->olen < BATCH_MAX) {
        uint32_t start_slot_count = 0;
        uint16_t batch_slots[1024];
        for (;;) {
            if (o->count && c->sent >= o->count)
                break;
            if (!b->unlimited && c->owed == 0)
                break;
            if (c->olen >= BATCH_MAX)
                break;
            uint16_t pid = 0;
            if (o->qos > 0) {
                if (c->nfree == 0 || start_slot_count == 1024)
                    break;
                uint16_t slot = c->free_stack[--c->nfree];
                c->slot_state[slot] = SLOT_WAIT_ACK;
                batch_slots[start_slot_count++] = slot;
                pid = (uint16_t)(slot + 1);
            } else if (!o->qos0_blast) {
                if (c->unconfirmed >= o->window || c->ping_n >= PING_FIFO - 2)
                    break;
                c->unconfirmed++;
                start_slot_count++;
            } else if (b->unlimited && start_slot_count++ >= o->window) {
                /* Blast: a window's worth per turn keeps turns short,
                 * requeue_qos0() brings the connection back. */
                break;
            }
            if (queue_publish(b, c, pid) < 0) {
                b->r->err_protocol++;
                conn_close(b, c);
                return;
            }
            c->sent++;
            b->r->sent++;
            if (c->owed)
                c->owed--;
            if (o->qos > 0) {
                c->inflight++;
                b->inflight++;
            }
        }
        if (o->qos == 0 && !o->qos0_blast && start_slot_count > 0 &&
            queue_ping(b, c, start_slot_count) < 0) {
            protocol_error(b, c);
            return;
        }
        /* Latency starts at the write that carries the PUBLISH. */
        uint64_t t = now_ns();
        if (o->qos > 0)
            for (uint32_t i = 0; i < start_slot_count; i++)
                c->sent_ns[batch_slots[i]] = t;
    }
    if (c->olen > c->ooff)
        conn_write(b, c);
    else if (c->olen == c->ooff)
        c->olen = c->ooff = c->oframed = 0;
}

/* ---- reading ---- */

static void protocol_error(bench_t *b, conn_t *c) {
    b->r->err_protocol++;
    conn_close(b, c);
}

static void on_ack(bench_t *b, conn_t *c, mqtt_type_t type, uint16_t pid, uint64_t t) {
    uint32_t slot = (uint32_t)pid - 1u;
    uint8_t want = type == MQTT_PUBCOMP ? SLOT_WAIT_COMP : SLOT_WAIT_ACK;
    int qos_for_type = type == MQTT_PUBACK ? 1 : 2;
    if (b->o->qos != qos_for_type || pid == 0 || slot >= b->o->window ||
        c->slot_state[slot] != want) {
        protocol_error(b, c);
        return;
    }
    if (type == MQTT_PUBREC) {
        c->slot_state[slot] = SLOT_WAIT_COMP;
        if (obuf_reserve(c, 4) < 0) {
            protocol_error(b, c);
            return;
        }
        c->olen += (uint32_t)mqtt_encode_ack(c->obuf + c->olen, 4, MQTT_PUBREL, pid);
        mark_dirty(b, c);
        return;
    }
    c->slot_state[slot] = SLOT_FREE;
    c->free_stack[c->nfree++] = (uint16_t)slot;
    c->inflight--;
    b->inflight--;
    b->r->acked++;
    hist_record(&b->r->latency, t - c->sent_ns[slot]);
    b->t_last_event = t;
    mark_dirty(b, c);
}

static void on_packet(bench_t *b, conn_t *c, const mqtt_packet_t *p, uint64_t t) {
    switch (p->type) {
    case MQTT_CONNACK:
        if (c->state != C_CONNACK) {
            protocol_error(b, c);
            return;
        }
        b->handshakes--;
        b->resolved++;
        c->state = C_READY;
        if (p->u.connack.return_code != MQTT_CONNACK_ACCEPTED) {
            b->r->err_connack_rejected++;
            conn_close(b, c);
            return;
        }
        b->r->connected++;
        return;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        if (c->state != C_READY || !c->slot_state) {
            protocol_error(b, c);
            return;
        }
        on_ack(b, c, p->type, p->u.packet_id, t);
        return;
    case MQTT_PINGRESP:
        if (c->ping_n == 0) {
            protocol_error(b, c);
            return;
        }
        b->r->pongs++;
        c->unconfirmed -= c->ping_covers[c->ping_head];
        c->ping_head = (uint8_t)((c->ping_head + 1) % PING_FIFO);
        c->ping_n--;
        if (b->o->qos == 0 && !b->o->qos0_blast)
            mark_dirty(b, c);
        if (c->ping_wait && c->ping_n == 0) {
            c->ping_wait = false;
            b->ping_waits--;
            b->t_last_event = t;
        }
        return;
    default:
        protocol_error(b, c);
        return;
    }
}

static void on_readable(bench_t *b, conn_t *c) {
    uint8_t buf[READ_BUF + CARRY_MAX];
    memcpy(buf, c->carry, c->carry_len);
    ssize_t n = recv(c->fd, buf + c->carry_len, READ_BUF, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        b->r->err_closed_by_server++;
        conn_close(b, c);
        return;
    }
    if (n < 0)
        return;
    uint64_t t = now_ns();
    if (b->o->ws_path) {
        n = bench_ws_rx(&c->wsrx, buf + c->carry_len, (size_t)n);
        if (n < 0) {
            protocol_error(b, c);
            return;
        }
    }
    size_t len = c->carry_len + (size_t)n, off = 0;
    while (off < len && c->state != C_CLOSED) {
        mqtt_packet_t p;
        ssize_t used = mqtt_decode(buf + off, len - off, CARRY_MAX, &p);
        if (used < 0) {
            protocol_error(b, c);
            return;
        }
        if (used == 0)
            break;
        on_packet(b, c, &p, t);
        off += (size_t)used;
    }
    if (c->state == C_CLOSED)
        return;
    c->carry_len = (uint8_t)(len - off);
    memcpy(c->carry, buf + off, c->carry_len);
}

/* ---- the loop ---- */

static void flush_dirty(bench_t *b) {
    /* conn_flush may mark the same connection again (QoS 0 batches). */
    uint32_t n = b->ndirty;
    b->ndirty = 0;
    for (uint32_t i = 0; i < n; i++) {
        conn_t *c = &b->conns[b->dirty[i]];
        c->dirty = false;
        conn_flush(b, c);
    }
}

/* Unlimited QoS 0: connections with work left go back on the list. */
static void requeue_qos0(bench_t *b) {
    if (b->o->qos != 0 || !b->o->qos0_blast || !b->unlimited || !b->publishing || b->stop_sending)
        return;
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state == C_READY && !c->want_out && (!b->o->count || c->sent < b->o->count))
            mark_dirty(b, c);
    }
}

static void housekeeping(bench_t *b, uint64_t t) {
    uint64_t ka = (uint64_t)b->o->keepalive * 1000000000u / 2;
    uint64_t cto = (uint64_t)(b->o->connect_timeout * 1e9);
    for (uint32_t i = 0; i < b->next_connect; i++) {
        conn_t *c = &b->conns[i];
        if ((c->state == C_CONNECTING || c->state == C_CONNACK) && t - c->t_connect > cto) {
            b->r->err_connect_timeout++;
            conn_close(b, c);
        } else if (c->state == C_READY && ka && t - c->last_tx >= ka) {
            if (queue_ping(b, c, 0) == 0) {
                c->last_tx = t; /* do not queue a second one before the write */
                mark_dirty(b, c);
            }
        }
    }
}

static bool all_sent(bench_t *b) {
    if (!b->o->count)
        return false;
    for (uint32_t i = 0; i < b->n; i++)
        if (b->conns[i].state == C_READY && b->conns[i].sent < b->o->count)
            return false;
    return true;
}

static void advance_schedule(bench_t *b, uint64_t t) {
    if (b->unlimited || !b->publishing || b->stop_sending)
        return;
    uint64_t per_due = b->o->mode == BENCH_MODE_SENSORS ? 2 : 1;
    for (uint32_t guard = 0; guard < 4u * b->n + 1024u; guard++) {
        conn_t *c = &b->conns[b->cursor];
        if (c->next_due > t)
            break;
        if (c->state == C_READY) {
            c->owed += per_due;
            mark_dirty(b, c);
        }
        c->next_due += b->period_ns;
        b->cursor = (b->cursor + 1) % b->n;
    }
}

static int wait_timeout_ms(bench_t *b, uint64_t t, uint64_t deadline) {
    if (b->ndirty)
        return 0;
    uint64_t until = deadline;
    if (!b->unlimited && b->publishing && !b->stop_sending) {
        uint64_t due = b->conns[b->cursor].next_due;
        if (due < until)
            until = due;
    }
    if (until <= t)
        return 0;
    uint64_t ms = (until - t + 999999u) / 1000000u;
    return ms > 100 ? 100 : (int)ms;
}

static void dispatch(bench_t *b, struct epoll_event *evs, int n) {
    for (int i = 0; i < n; i++) {
        conn_t *c = &b->conns[evs[i].data.u32];
        if (c->state == C_CLOSED)
            continue;
        if (c->state == C_CONNECTING) {
            if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                on_connected(b, c);
            continue;
        }
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(b, c);
        if (c->state != C_CLOSED && (evs[i].events & EPOLLOUT)) {
            if (conn_write(b, c) == 0 && c->olen == 0)
                mark_dirty(b, c);
        }
    }
}

/* Runs the loop until done() says so or the deadline passes; returns true if
 * done() was reached. */
static bool run_until(bench_t *b, uint64_t deadline, bool (*done)(bench_t *)) {
    struct epoll_event evs[512];
    uint64_t next_hk = now_ns() + 100000000u;
    uint64_t next_progress = now_ns() + 1000000000u;
    int handled_signals = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (g_signals != handled_signals) {
            handled_signals = g_signals;
            b->r->interrupted = true;
            if (g_signals > 1)
                return false;
            if (!b->publishing)
                return false;
            b->stop_sending = true;
        }
        if (done(b))
            return true;
        if (t >= deadline)
            return false;
        if (t >= next_hk) {
            housekeeping(b, t);
            next_hk = t + (b->publishing ? 1000000000u : 100000000u);
        }
        if (b->o->progress && t >= next_progress) {
            fprintf(stderr, "mqtt-bench: connected %llu sent %llu acked %llu errors %llu\n",
                    (unsigned long long)b->r->connected, (unsigned long long)b->r->sent,
                    (unsigned long long)b->r->acked, (unsigned long long)bench_errors_total(b->r));
            next_progress = t + 1000000000u;
        }
        start_connects(b);
        advance_schedule(b, t);
        requeue_qos0(b);
        uint64_t limit = deadline < next_hk ? deadline : next_hk;
        int nev = epoll_wait(b->epfd, evs, 512, wait_timeout_ms(b, t, limit));
        if (nev < 0 && errno != EINTR)
            return false;
        if (nev > 0)
            dispatch(b, evs, nev);
        flush_dirty(b);
    }
}

static bool connects_done(bench_t *b) {
    return b->resolved >= b->n;
}

static bool never_done(bench_t *b) {
    return false;
}

static bool sending_done(bench_t *b) {
    if (b->stop_sending)
        return true;
    if (b->o->count && all_sent(b))
        return true;
    return false;
}

static bool drained(bench_t *b) {
    return b->inflight == 0;
}

static bool pinged(bench_t *b) {
    return b->ping_waits == 0;
}

static int resolve(bench_t *b, char *errbuf, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", b->o->port);
    int rc = getaddrinfo(b->o->host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot resolve %s: %s", b->o->host, gai_strerror(rc));
        return -1;
    }
    memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
    b->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (b->addr.ss_family == AF_INET && b->o->conns_per_source > 0 &&
        b->o->connections > b->o->conns_per_source) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&b->addr;
        b->bind_source = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    return 0;
}

static int raise_fd_limit(uint32_t conns, char *errbuf, size_t errlen) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    rlim_t need = (rlim_t)conns + 64;
    if (rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        snprintf(errbuf, errlen,
                 "%u connections need %llu file descriptors, the hard limit is %llu "
                 "(raise it with ulimit -Hn as root)",
                 conns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(errbuf, errlen, "setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)need,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static void start_publishing(bench_t *b, uint64_t t) {
    const bench_opts_t *o = b->o;
    b->publishing = true;
    if (o->mode == BENCH_MODE_SENSORS) {
        b->unlimited = false;
        b->period_ns = (uint64_t)o->interval_ms * 1000000u;
    } else if (o->rate > 0) {
        b->unlimited = false;
        b->period_ns = (uint64_t)((double)b->n / o->rate * 1e9);
        if (b->period_ns == 0)
            b->period_ns = 1;
    } else {
        b->unlimited = true;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        /* Spread the connections' first sends evenly over one period. */
        c->next_due = t + (uint64_t)((double)b->period_ns * i / b->n);
        if (c->state == C_READY)
            mark_dirty(b, c);
    }
    b->cursor = 0;
}

static void send_final_pings(bench_t *b) {
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state != C_READY || queue_ping(b, c, 0) < 0)
            continue;
        c->ping_wait = true;
        b->ping_waits++;
        mark_dirty(b, c);
    }
}

static void disconnect_all(bench_t *b) {
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state == C_READY && queue_empty_packet(c, MQTT_DISCONNECT) == 0)
            conn_write(b, c);
        if (c->state != C_CLOSED) {
            /* Outstanding acks at this point are already counted as unacked. */
            b->inflight -= c->inflight;
            c->inflight = 0;
            close(c->fd);
            c->state = C_CLOSED;
        }
        free(c->obuf);
        free(c->sent_ns);
        free(c->slot_state);
        free(c->free_stack);
        free(c->tmpl);
    }
}

int bench_run(const bench_opts_t *o, bench_result_t *r, char *errbuf, size_t errlen) {
    memset(r, 0, sizeof(*r));
    hist_init(&r->latency);
    r->server_rss_kb_before = r->server_rss_kb_after = -1;
    bench_t b = {.o = o, .r = r, .n = o->connections, .epfd = -1};
    uint64_t t_begin = now_ns();
    int rc = -1;
    if (o->connections == 0 || o->qos < 0 || o->qos > 2 || o->window == 0 || o->window > 65535) {
        snprintf(errbuf, errlen, "invalid options");
        return -1;
    }
    if (resolve(&b, errbuf, errlen) < 0 || raise_fd_limit(o->connections, errbuf, errlen) < 0)
        return -1;
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g_signals = 0;

    b.conns = calloc(b.n, sizeof(*b.conns));
    b.dirty = calloc(b.n, sizeof(*b.dirty));
    b.payload = malloc(o->payload ? o->payload : 1);
    b.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!b.conns || !b.dirty || !b.payload || b.epfd < 0) {
        snprintf(errbuf, errlen, "out of memory or epoll_create1: %s", strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < o->payload; i++)
        b.payload[i] = (uint8_t)('a' + i % 26);
    for (uint32_t i = 0; i < b.n; i++) {
        b.conns[i].index = i;
        b.conns[i].fd = -1;
    }
    if (o->server_pid > 0)
        r->server_rss_kb_before = bench_read_rss_kb(o->server_pid);

    uint64_t far = UINT64_MAX / 2;
    run_until(&b, far, connects_done);
    uint64_t t_connected = now_ns();
    r->connect_seconds = (double)(t_connected - t_begin) * 1e-9;

    if (o->mode == BENCH_MODE_IDLE) {
        if (!r->interrupted)
            run_until(&b, t_connected + (uint64_t)(o->idle * 1e9), never_done);
        if (o->server_pid > 0)
            r->server_rss_kb_after = bench_read_rss_kb(o->server_pid);
    } else if (r->connected > 0 && !r->interrupted) {
        for (uint32_t i = 0; i < b.n; i++) {
            if (b.conns[i].state == C_READY && conn_prepare_publish(&b, &b.conns[i]) < 0) {
                snprintf(errbuf, errlen, "cannot prepare PUBLISH (topic too long?)");
                goto out;
            }
        }
        double cpu0 = cpu_seconds(NULL, NULL);
        uint64_t t0 = now_ns();
        b.t_last_event = t0;
        start_publishing(&b, t0);
        uint64_t end = o->duration > 0 ? t0 + (uint64_t)(o->duration * 1e9) : far;
        run_until(&b, end, sending_done);
        b.stop_sending = true;
        uint64_t t_stop = now_ns();
        flush_dirty(&b);
        if (o->qos == 0)
            b.t_last_event = t_stop;
        uint64_t drain_end = now_ns() + (uint64_t)(o->drain_timeout * 1e9);
        run_until(&b, drain_end, drained);
        if (o->qos == 0 && o->final_ping) {
            /* The server may still be reading megabytes of queued QoS 0
             * PUBLISHes, so the round trip gets its own time limit. */
            send_final_pings(&b);
            r->final_ping_done =
                run_until(&b, now_ns() + (uint64_t)(o->drain_timeout * 1e9), pinged);
        }
        r->unacked += b.inflight;
        uint64_t t_end = b.t_last_event > t_stop ? b.t_last_event : t_stop;
        r->publish_seconds = (double)(t_end - t0) * 1e-9;
        r->publish_cpu = cpu_seconds(NULL, NULL) - cpu0;
        if (o->server_pid > 0)
            r->server_rss_kb_after = bench_read_rss_kb(o->server_pid);
    }
    rc = 0;
out:
    if (b.conns)
        disconnect_all(&b);
    r->wall_seconds = (double)(now_ns() - t_begin) * 1e-9;
    cpu_seconds(&r->cpu_user, &r->cpu_sys);
    if (b.epfd >= 0)
        close(b.epfd);
    free(b.conns);
    free(b.dirty);
    free(b.payload);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}
