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
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mqtt_bench_conn.h"

static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
    (void)sig;
    g_signals++;
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

/* ---- the loop ---- */

static void flush_dirty(bench_t *b) {
    /* conn_flush may mark the same connection again (QoS 0 batches). */
    uint32_t n = b->ndirty;
    b->ndirty = 0;
    for (uint32_t i = 0; i < n; i++) {
        conn_t *c = &b->conns[b->dirty[i]];
        c->dirty = false;
        bench_conn_flush(b, c);
    }
}

/* Unlimited QoS 0: connections with work left go back on the list. */
static void requeue_qos0(bench_t *b) {
    if (b->o->qos != 0 || !b->o->qos0_blast || !b->unlimited || !b->publishing || b->stop_sending)
        return;
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state == C_READY && !c->want_out && (!b->o->count || c->sent < b->o->count))
            bench_mark_dirty(b, c);
    }
}

static void housekeeping(bench_t *b, uint64_t t) {
    uint64_t ka = (uint64_t)b->o->keepalive * 1000000000u / 2;
    uint64_t cto = (uint64_t)(b->o->connect_timeout * 1e9);
    for (uint32_t i = 0; i < b->next_connect; i++) {
        conn_t *c = &b->conns[i];
        if ((c->state == C_CONNECTING || c->state == C_CONNACK) && t - c->t_connect > cto) {
            b->r->err_connect_timeout++;
            bench_conn_close(b, c);
        } else if (c->state == C_READY && ka && t - c->last_tx >= ka) {
            if (bench_queue_ping(b, c, 0) == 0) {
                c->last_tx = t; /* do not queue a second one before the write */
                bench_mark_dirty(b, c);
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
            bench_mark_dirty(b, c);
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
                bench_on_connected(b, c);
            continue;
        }
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            bench_on_readable(b, c);
        if (c->state != C_CLOSED && (evs[i].events & EPOLLOUT)) {
            if (bench_conn_write(b, c) == 0 && c->olen == 0)
                bench_mark_dirty(b, c);
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
        bench_start_connects(b);
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
            bench_mark_dirty(b, c);
    }
    b->cursor = 0;
}

static void send_final_pings(bench_t *b) {
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state != C_READY || bench_queue_ping(b, c, 0) < 0)
            continue;
        c->ping_wait = true;
        b->ping_waits++;
        bench_mark_dirty(b, c);
    }
}

static void disconnect_all(bench_t *b) {
    for (uint32_t i = 0; i < b->n; i++) {
        conn_t *c = &b->conns[i];
        if (c->state == C_READY && bench_queue_empty_packet(c, MQTT_DISCONNECT) == 0)
            bench_conn_write(b, c);
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
            if (b.conns[i].state == C_READY && bench_conn_prepare_publish(&b, &b.conns[i]) < 0) {
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
