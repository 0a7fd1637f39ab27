/* One mqtt-bench connection: its output buffer, the connect phase, the
 * pre-encoded PUBLISH (and the sensor simulation's payloads) and the packets
 * it reads back. The loop that drives them is in mqtt_bench_run.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mqtt_bench_conn.h"

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

void bench_mark_dirty(bench_t *b, conn_t *c) {
    if (!c->dirty && c->state != C_CLOSED) {
        c->dirty = true;
        b->dirty[b->ndirty++] = c->index;
    }
}

void bench_conn_close(bench_t *b, conn_t *c) {
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
int bench_conn_write(bench_t *b, conn_t *c) {
    if (b->o->ws_path && c->oframed < c->olen) {
        if (obuf_reserve(c, BENCH_WS_HEAD_MAX) < 0) {
            b->r->err_protocol++;
            bench_conn_close(b, c);
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
            bench_conn_close(b, c);
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

int bench_queue_empty_packet(conn_t *c, mqtt_type_t type) {
    if (obuf_reserve(c, 2) < 0)
        return -1;
    c->olen += (uint32_t)mqtt_encode_empty(c->obuf + c->olen, 2, type);
    return 0;
}

/* A server answers PINGREQs in order and only after reading everything
 * before them, so each PINGRESP confirms the QoS 0 PUBLISHes sent before its
 * PINGREQ. Returns -1 when the FIFO is full. */
int bench_queue_ping(bench_t *b, conn_t *c, uint32_t covers) {
    if (c->ping_n == PING_FIFO || bench_queue_empty_packet(c, MQTT_PINGREQ) < 0)
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
    bench_conn_close(b, c);
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

void bench_start_connects(bench_t *b) {
    while (b->next_connect < b->n && b->handshakes < b->o->connect_concurrency)
        conn_start(b, &b->conns[b->next_connect++]);
}

void bench_on_connected(bench_t *b, conn_t *c) {
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
            bench_conn_close(b, c);
            return;
        }
        memcpy(c->obuf + c->olen, req, (size_t)n);
        c->olen += (uint32_t)n;
        c->oframed = c->olen;
    }
    if (queue_connect(b, c) < 0) {
        b->r->err_connect_failed++;
        bench_conn_close(b, c);
        return;
    }
    bench_conn_write(b, c);
}

/* ---- publishing ---- */

int bench_conn_prepare_publish(bench_t *b, conn_t *c) {
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
void bench_conn_flush(bench_t *b, conn_t *c) {
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
                bench_conn_close(b, c);
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
            bench_queue_ping(b, c, start_slot_count) < 0) {
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
        bench_conn_write(b, c);
    else if (c->olen == c->ooff)
        c->olen = c->ooff = c->oframed = 0;
}

/* ---- reading ---- */

static void protocol_error(bench_t *b, conn_t *c) {
    b->r->err_protocol++;
    bench_conn_close(b, c);
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
        bench_mark_dirty(b, c);
        return;
    }
    c->slot_state[slot] = SLOT_FREE;
    c->free_stack[c->nfree++] = (uint16_t)slot;
    c->inflight--;
    b->inflight--;
    b->r->acked++;
    hist_record(&b->r->latency, t - c->sent_ns[slot]);
    b->t_last_event = t;
    bench_mark_dirty(b, c);
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
            bench_conn_close(b, c);
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
            bench_mark_dirty(b, c);
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

void bench_on_readable(bench_t *b, conn_t *c) {
    uint8_t buf[READ_BUF + CARRY_MAX];
    memcpy(buf, c->carry, c->carry_len);
    ssize_t n = recv(c->fd, buf + c->carry_len, READ_BUF, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        b->r->err_closed_by_server++;
        bench_conn_close(b, c);
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
