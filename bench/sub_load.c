/* A subscriber load generator for the downlink bench rows (bench/run-downlink):
 * opens N MQTT 3.1.1 connections, each subscribes to one topic filter (%d in
 * the pattern = the connection's number), then counts the PUBLISH packets
 * they receive and acknowledges QoS 1 ones with PUBACK (QoS 2 with PUBREC
 * and, on PUBREL, PUBCOMP). It prints "ready" once every SUBACK came, and a
 * JSON line at the end: deliveries, the time from the first to the last,
 * the rate, its own CPU time since "ready" (to show it is not the
 * bottleneck), and the
 * first and last delivery on CLOCK_MONOTONIC (uv_hrtime) in seconds.
 *   sub_load -p PORT -c 1000 -t 'fan/out' -q 1 -n 1000000 [-T 60] [-I 5]
 *   sub_load --smoke    the packet handler on canned packets
 * It ends when -n deliveries arrived, -I seconds passed without one after
 * the first, or -T seconds passed in all. Loopback only, by design. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#define BUF 65536

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int idx;
    bool subscribed;
    size_t len;
    uint8_t buf[BUF];
} sconn_t;

typedef struct {
    uv_write_t req;
    uv_buf_t b;
} wreq_t;

static struct {
    const char *host, *topic, *id_pattern;
    int port, n, qos, next, open, subscribed, failed, concurrency, in_progress;
    uint64_t want, got, acked;
    double first, last, start, idle_s, total_s, cpu_ready;
    sconn_t **conns;
    uv_loop_t *loop;
    uv_timer_t timer;
    bool done;
} g = {.host = "127.0.0.1",
       .port = 1883,
       .n = 1,
       .qos = 0,
       .topic = "bench/%d",
       .id_pattern = "sub-load-%d",
       .concurrency = 200,
       .idle_s = 5,
       .total_s = 120};

static double now_s(void) {
    return (double)uv_hrtime() / 1e9;
}

static size_t put_str(uint8_t *p, const char *s) {
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

static void on_written(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

static void send_bytes(sconn_t *c, const uint8_t *p, size_t n) {
    wreq_t *w = malloc(sizeof(*w) + n);
    if (!w)
        exit(1);
    memcpy(w + 1, p, n);
    w->b = uv_buf_init((char *)(w + 1), (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->b, 1, on_written) != 0)
        free(w);
}

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fmt_pattern(char *out, size_t cap, const char *pattern, int i) {
    const char *d = strstr(pattern, "%d");
    if (!d) {
        snprintf(out, cap, "%s", pattern);
        return;
    }
    snprintf(out, cap, "%.*s%d%s", (int)(d - pattern), pattern, i, d + 2);
}

/* One whole packet (header byte h, body of n bytes); acks go into out. */
static size_t on_packet(sconn_t *c, uint8_t h, const uint8_t *body, size_t n, uint8_t *out) {
    uint8_t type = h >> 4, qos = (h >> 1) & 3;
    if (type == 2) { /* CONNACK: subscribe */
        uint8_t p[512];
        char f[300];
        fmt_pattern(f, sizeof(f), g.topic, c->idx);
        size_t k = 2;
        p[k++] = 0;
        p[k++] = 1;
        k += put_str(p + k, f);
        p[k++] = (uint8_t)g.qos;
        p[0] = 0x82;
        p[1] = (uint8_t)(k - 2); /* filters under 125 bytes */
        send_bytes(c, p, k);
        return 0;
    }
    if (type == 9 && !c->subscribed) { /* SUBACK */
        c->subscribed = true;
        if (n >= 3 && body[2] == 0x80) {
            fprintf(stderr, "sub_load: subscription %d refused\n", c->idx);
            exit(1);
        }
        if (++g.subscribed == g.n) {
            g.cpu_ready = cpu_now();
            printf("ready\n");
            fflush(stdout);
        }
        return 0;
    }
    if (type == 6 && n >= 2) { /* PUBREL: PUBCOMP */
        out[0] = 0x70, out[1] = 2, out[2] = body[0], out[3] = body[1];
        return 4;
    }
    if (type != 3)
        return 0;
    double t = now_s();
    if (!g.got)
        g.first = t;
    g.last = t;
    g.got++;
    if (!qos || n < 4)
        return 0;
    size_t tl = (size_t)body[0] << 8 | body[1];
    if (2 + tl + 2 > n)
        return 0;
    out[0] = qos == 1 ? 0x40 : 0x50, out[1] = 2;
    out[2] = body[2 + tl], out[3] = body[3 + tl];
    g.acked++;
    return 4;
}

/* Every whole packet of c->buf; the rest moves to the front. Acks of one
 * read go out in one write. -1 on a malformed stream. */
static int parse(sconn_t *c) {
    static uint8_t acks[BUF];
    size_t i = 0, na = 0;
    while (i + 2 <= c->len) {
        size_t rem = 0, mul = 1, j = i + 1;
        for (;; j++) {
            if (j >= c->len)
                goto partial;
            rem += (size_t)(c->buf[j] & 0x7f) * mul;
            mul *= 128;
            if (!(c->buf[j] & 0x80))
                break;
            if (j - i >= 4)
                return -1;
        }
        if (rem > BUF - 8)
            return -1;
        if (j + 1 + rem > c->len)
            break;
        if (na + 4 > sizeof(acks)) {
            send_bytes(c, acks, na);
            na = 0;
        }
        na += on_packet(c, c->buf[i], c->buf + j + 1, rem, acks + na);
        i = j + 1 + rem;
    }
partial:
    if (na)
        send_bytes(c, acks, na);
    memmove(c->buf, c->buf + i, c->len - i);
    c->len -= i;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)suggested;
    sconn_t *c = h->data;
    *b = uv_buf_init((char *)c->buf + c->len, (unsigned)(BUF - c->len));
}

static void finish(void);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    (void)b;
    sconn_t *c = s->data;
    if (nread < 0) {
        fprintf(stderr, "sub_load: connection %d closed: %s\n", c->idx, uv_strerror((int)nread));
        uv_read_stop(s);
        g.failed++;
        return;
    }
    c->len += (size_t)nread;
    if (parse(c) != 0) {
        fprintf(stderr, "sub_load: connection %d: malformed stream\n", c->idx);
        exit(1);
    }
    if (g.want && g.got >= g.want)
        finish();
}

static void connect_more(void);

static void on_connect(uv_connect_t *req, int status) {
    sconn_t *c = req->data;
    g.in_progress--;
    if (status != 0) {
        fprintf(stderr, "sub_load: connect %d: %s\n", c->idx, uv_strerror(status));
        exit(1);
    }
    g.open++;
    uint8_t p[300];
    char id[200];
    fmt_pattern(id, sizeof(id), g.id_pattern, c->idx);
    size_t k = 2;
    k += put_str(p + k, "MQTT");
    p[k++] = 4;
    p[k++] = 0x02; /* clean session */
    p[k++] = 0x01; /* keepalive 300 s: the run is shorter */
    p[k++] = 0x2c;
    k += put_str(p + k, id);
    p[0] = 0x10;
    p[1] = (uint8_t)(k - 2);
    send_bytes(c, p, k);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    connect_more();
}

static void connect_more(void) {
    struct sockaddr_in a;
    uv_ip4_addr(g.host, g.port, &a);
    while (g.next < g.n && g.in_progress < g.concurrency) {
        sconn_t *c = calloc(1, sizeof(*c));
        if (!c)
            exit(1);
        c->idx = g.next;
        g.conns[g.next++] = c;
        uv_tcp_init(g.loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        g.in_progress++;
        if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, on_connect) != 0) {
            fprintf(stderr, "sub_load: connect %d failed\n", c->idx);
            exit(1);
        }
    }
}

static void finish(void) {
    if (g.done)
        return;
    g.done = true;
    double cpu = cpu_now() - g.cpu_ready, span = g.got > 1 ? g.last - g.first : 0;
    printf(
        "{\"subscribers\": %d, \"deliveries\": %llu, \"acked\": %llu, \"span_s\": %.4f, "
        "\"rate\": %.0f, \"cpu_s\": %.3f, \"closed\": %d, \"first_s\": %.6f, \"last_s\": %.6f}\n",
        g.n, (unsigned long long)g.got, (unsigned long long)g.acked, span,
        span > 0 ? (double)g.got / span : 0.0, cpu, g.failed, g.first, g.last);
    fflush(stdout);
    exit(g.want && g.got < g.want ? 2 : 0);
}

static void on_tick(uv_timer_t *t) {
    (void)t;
    double n = now_s();
    if (n - g.start > g.total_s || (g.got && n - g.last > g.idle_s))
        finish();
}

/* The packet handler on canned packets: SUBACK, a QoS 1 PUBLISH, a QoS 0
 * one; the PUBACK carries the packet id. */
static int smoke(void) {
    static sconn_t c;
    static const uint8_t pub1[] = {0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'x'};
    static const uint8_t pub0[] = {0x00, 0x03, 'a', '/', 'b', 'y'};
    uint8_t out[16];
    size_t na = on_packet(&c, 0x90, (const uint8_t *)"\x00\x01\x01", 3, out);
    if (g.subscribed != 1 || na != 0)
        return 1;
    na += on_packet(&c, 0x32, pub1, sizeof(pub1), out);
    na += on_packet(&c, 0x30, pub0, sizeof(pub0), out + na);
    if (g.got != 2 || na != 4 || memcmp(out, "\x40\x02\x12\x34", 4) != 0) {
        fprintf(stderr, "smoke: got %llu, acks %zu\n", (unsigned long long)g.got, na);
        return 1;
    }
    printf("sub_load smoke: ok\n");
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--smoke") == 0)
            return smoke();
        if (!v) {
            fprintf(stderr, "usage: sub_load [-H host] [-p port] [-c conns] [-t filter] [-q qos] "
                            "[-n deliveries] [-T total_s] [-I idle_s] [-i id_pattern]\n");
            return 64;
        }
        i++;
        if (strcmp(a, "-H") == 0)
            g.host = v;
        else if (strcmp(a, "-p") == 0)
            g.port = atoi(v);
        else if (strcmp(a, "-c") == 0)
            g.n = atoi(v);
        else if (strcmp(a, "-t") == 0)
            g.topic = v;
        else if (strcmp(a, "-i") == 0)
            g.id_pattern = v;
        else if (strcmp(a, "-q") == 0)
            g.qos = atoi(v);
        else if (strcmp(a, "-n") == 0)
            g.want = strtoull(v, NULL, 10);
        else if (strcmp(a, "-T") == 0)
            g.total_s = atof(v);
        else if (strcmp(a, "-I") == 0)
            g.idle_s = atof(v);
        else {
            fprintf(stderr, "sub_load: unknown option %s\n", a);
            return 64;
        }
    }
    if (g.n < 1 || g.qos < 0 || g.qos > 2 || strlen(g.topic) > 120)
        return 64;
    g.loop = uv_default_loop();
    g.conns = calloc((size_t)g.n, sizeof(*g.conns));
    g.start = now_s();
    uv_timer_init(g.loop, &g.timer);
    uv_timer_start(&g.timer, on_tick, 100, 100);
    connect_more();
    uv_run(g.loop, UV_RUN_DEFAULT);
    return 0;
}
