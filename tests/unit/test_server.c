/* The server in-process with a fake protocol, in the manner of libuv's
 * test-tcp-write-queue-order.c: a real loop on 127.0.0.1 port 0, a raw
 * client socket in a second thread, and assertions on the bytes the client
 * got and on what the protocol saw: write-queue order and one write per
 * loop turn, partial writes up to the output bound (the connection is cut
 * and counted), close while writing (the queued output is flushed before
 * the FIN), pause and resume (the buffered input is fed again), a unit
 * begun in one read completed from the next without copying what follows.
 *
 * The fake protocol takes commands, one byte each: 'o' sends 100 small
 * pieces, 'b' sends 16 MiB and closes, 'f' fills the output from the tick
 * until server_conn_send refuses, 'p' pauses (the rest of the read stays
 * with the server) and the tick resumes later; other bytes are echoed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "net/server.h"

#define TICK_MS 2
#define BIG (16 * 1024 * 1024) /* well over what the kernel buffers (a few MiB) */
#define CHUNK (16 * 1024)
#define CLIENT_WAIT_MS 20000

typedef struct fake fake_t;
struct fake {
    server_t *srv;
    uint16_t port;
    /* Seen on the loop thread. */
    server_conn_t *conn;
    char remote[64];
    int opened, lost, closed;
    char lost_reason[128];
    char feeds[256]; /* every conn_feed's bytes, each followed by '|' */
    int fed_while_paused;
    bool framed;      /* units "<length digit><bytes>", consumed whole only */
    atomic_int n_fed; /* conn_feed calls */
    bool paused, filling;
    unsigned ticks, paused_at;
    uint64_t sent; /* bytes server_conn_send took: the running pattern */
    int refused_sends;
    bool stopping;
    atomic_bool bound_hit, gone, client_done;
    /* The client's findings (read after the thread is joined). */
    const struct script *script;
    char got[1024]; /* the first bytes */
    uint64_t got_total;
    bool got_eof, pattern_ok;
};

static uint8_t pattern_at(uint64_t i) {
    return (uint8_t)(i % 251);
}

/* Sends n bytes of the running pattern in pieces of `piece`; false once the
 * server refuses. */
static bool send_pattern(fake_t *f, size_t n, size_t piece) {
    uint8_t buf[CHUNK];
    while (n > 0) {
        size_t k = n < piece ? n : piece;
        for (size_t i = 0; i < k; i++)
            buf[i] = pattern_at(f->sent + i);
        if (server_conn_send(f->conn, buf, k) != 0) {
            f->refused_sends++;
            return false;
        }
        f->sent += k;
        n -= k;
    }
    return true;
}

/* ---- the fake protocol ------------------------------------------------------ */

static void *fk_open(void *proto, server_conn_t *conn, const char *remote) {
    fake_t *f = proto;
    f->conn = conn;
    f->opened++;
    snprintf(f->remote, sizeof(f->remote), "%s", remote);
    return f;
}

static ssize_t fk_feed(void *pc, const uint8_t *buf, size_t len) {
    fake_t *f = pc;
    size_t fl = strlen(f->feeds);
    snprintf(f->feeds + fl, sizeof(f->feeds) - fl, "%.*s|", (int)len, (const char *)buf);
    atomic_fetch_add(&f->n_fed, 1);
    if (f->framed) {
        size_t off = 0;
        while (off < len && buf[off] - '0' > 0 && (size_t)(buf[off] - '0') <= len - off)
            off += (size_t)(buf[off] - '0');
        return (ssize_t)off;
    }
    if (f->paused)
        f->fed_while_paused++;
    for (size_t i = 0; i < len; i++) {
        switch (buf[i]) {
        case 'o':
            for (int k = 0; k < 100; k++) {
                char piece[8];
                int n = snprintf(piece, sizeof(piece), "%d,", k);
                assert_int_equal(server_conn_send(f->conn, piece, (size_t)n), 0);
            }
            break;
        case 'b':
            send_pattern(f, BIG, CHUNK);
            server_conn_close(f->conn);
            return -1;
        case 'f':
            f->filling = true;
            break;
        case 'p':
            f->paused = true;
            f->paused_at = f->ticks;
            server_conn_pause(f->conn);
            return (ssize_t)(i + 1);
        default:
            server_conn_send(f->conn, &buf[i], 1);
        }
    }
    return (ssize_t)len;
}

static size_t fk_need(const void *pc, const uint8_t *buf, size_t len) {
    const fake_t *f = pc;
    return f->framed && len > 0 && buf[0] > '0' && buf[0] <= '9' ? (size_t)(buf[0] - '0') : 0;
}

static void fk_lost(void *pc, const char *reason) {
    fake_t *f = pc;
    f->lost++;
    snprintf(f->lost_reason, sizeof(f->lost_reason), "%s", reason);
}

static void fk_close(void *pc, const char *reason) {
    fake_t *f = pc;
    (void)reason;
    f->closed++;
    server_conn_close(f->conn);
}

static bool fk_paused(const void *pc) {
    const fake_t *f = pc;
    return f->paused;
}

static const char *fk_remote(const void *pc) {
    const fake_t *f = pc;
    return f->remote;
}

static void fk_free(void *pc) {
    fake_t *f = pc;
    f->conn = NULL;
    atomic_store(&f->gone, true);
}

static void fk_tick(void *proto) {
    fake_t *f = proto;
    f->ticks++;
    if (f->paused && f->ticks >= f->paused_at + 5) {
        f->paused = false;
        server_conn_resume(f->conn);
    }
    /* Two chunks a tick: the socket fills, then the write queue grows. */
    if (f->filling && !send_pattern(f, 2 * CHUNK, CHUNK)) {
        f->filling = false;
        atomic_store(&f->bound_hit, true);
        server_conn_close(f->conn); /* what a protocol does when the bound is hit */
    }
}

static const server_protocol_ops_t fake_ops = {
    .conn_open = fk_open,
    .conn_feed = fk_feed,
    .conn_need = fk_need,
    .conn_lost = fk_lost,
    .conn_close = fk_close,
    .conn_paused = fk_paused,
    .conn_remote = fk_remote,
    .conn_free = fk_free,
    .tick = fk_tick,
};

/* The server's tick: stop once the client is done. */
static void on_tick(void *ud) {
    fake_t *f = ud;
    if (!f->stopping && atomic_load(&f->client_done)) {
        f->stopping = true;
        server_stop(f->srv);
    }
}

/* ---- the client thread ------------------------------------------------------ */

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A blocking socket to the server; rcvbuf > 0 shrinks its receive buffer. */
static int client_connect(uint16_t port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or until `want` bytes came (0: no bound), keeping the
 * start in f->got and checking every byte against the pattern. */
static void client_read(fake_t *f, int fd, size_t want) {
    uint64_t end = mono_ms() + CLIENT_WAIT_MS;
    f->pattern_ok = true;
    while (mono_ms() < end && (want == 0 || f->got_total < want)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        uint8_t buf[CHUNK];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            f->got_eof = n == 0;
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            f->pattern_ok &= buf[i] == pattern_at(f->got_total);
            if (f->got_total < sizeof(f->got) - 1)
                f->got[f->got_total] = (char)buf[i];
            f->got_total++;
        }
    }
}

static void wait_flag(atomic_bool *flag) {
    uint64_t end = mono_ms() + CLIENT_WAIT_MS;
    while (!atomic_load(flag) && mono_ms() < end)
        usleep(1000);
}

/* What the client thread does. */
typedef struct script {
    const char *send; /* the commands */
    int rcvbuf;       /* > 0: a small receive buffer */
    bool wait_bound;  /* read nothing until the output bound was hit */
    unsigned delay_ms;
    size_t read_n;    /* bytes to read; 0: until EOF */
    const char *then; /* sent once the server has fed `send` */
} script_t;

/* Runs the script, closes, waits until the server freed the connection and
 * lets the server stop. */
static void *client(void *arg) {
    fake_t *f = arg;
    const script_t *sc = f->script;
    int fd = client_connect(f->port, sc->rcvbuf);
    size_t n = strlen(sc->send);
    if (fd < 0 || send(fd, sc->send, n, MSG_NOSIGNAL) != (ssize_t)n)
        fprintf(stderr, "client: connect or send failed\n");
    if (sc->then) {
        uint64_t end = mono_ms() + CLIENT_WAIT_MS;
        while (atomic_load(&f->n_fed) == 0 && mono_ms() < end)
            usleep(1000);
        n = strlen(sc->then);
        if (send(fd, sc->then, n, MSG_NOSIGNAL) != (ssize_t)n)
            fprintf(stderr, "client: send failed\n");
    }
    if (sc->wait_bound)
        wait_flag(&f->bound_hit);
    usleep(sc->delay_ms * 1000u);
    client_read(f, fd, sc->read_n);
    close(fd);
    wait_flag(&f->gone);
    atomic_store(&f->client_done, true);
    return NULL;
}

/* ---- fixture ------------------------------------------------------------------ */

/* Serves the fake protocol until the client thread is done; st gets the
 * server's counters. */
static void run(fake_t *f, const char *mqtt_yaml, const script_t *sc, server_stats_t *st) {
    char yaml[512], err[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - listen: \"127.0.0.1:0\"\nkafka:\n  bootstrap_servers: embedded\n"
             "mqtt:\n%s",
             mqtt_yaml);
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    server_opts_t o = {
        .cfg = cfg,
        .mqtt = {&fake_ops, f},
        .ud = f,
        .watch_fd = -1,
        .on_tick = on_tick,
    };
    if (server_new(&o, &f->srv, err, sizeof(err)) != 0 || server_listen(f->srv, err, sizeof(err)))
        fail_msg("server: %s", err);
    server_set_tick(f->srv, TICK_MS);
    f->port = server_listener_port(f->srv, 0);
    assert_true(f->port > 0);
    assert_int_equal(server_listener_port(f->srv, 1), 0);
    f->script = sc;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, f), 0);
    server_run(f->srv);
    pthread_join(t, NULL);
    *st = *server_stats(f->srv);
    assert_int_equal(server_conn_count(f->srv), 0);
    server_free(f->srv);
    config_free(cfg);
    assert_int_equal(f->opened, 1);
    assert_true(atomic_load(&f->gone));
}

/* ---- tests -------------------------------------------------------------------- */

/* 100 sends in one feed reach the client whole and in order, in one write. */
static void test_write_queue_order(void **state) {
    (void)state;
    fake_t f = {0};
    server_stats_t st;
    run(&f, "  max_output_buffer: 65536\n", &(script_t){.send = "o", .read_n = 290}, &st);
    char want[300] = "";
    for (int k = 0; k < 100; k++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d,", k);
    assert_string_equal(f.got, want);
    assert_int_equal(st.writes, 1);
    assert_int_equal(st.bytes_out, strlen(want));
    assert_int_equal(st.bytes_in, 1);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(f.lost, 1);
    assert_string_equal(f.lost_reason, "connection closed by the client");
    assert_string_equal(f.feeds, "o|");
}

/* A client that does not read: the socket fills, partial writes queue the
 * rest, the bound refuses the next send (counted), and everything accepted
 * before still arrives, in order, before the FIN. */
static void test_output_bound(void **state) {
    (void)state;
    fake_t f = {0};
    server_stats_t st;
    run(&f, "  max_output_buffer: 65536\n",
        &(script_t){.send = "f", .rcvbuf = 4096, .wait_bound = true}, &st);
    assert_true(atomic_load(&f.bound_hit));
    assert_int_equal(f.refused_sends, 1);
    assert_int_equal(st.refused_output_limit, 1);
    assert_true(f.sent > 65536); /* more than the bound went out through the socket */
    assert_true(f.pattern_ok);
    assert_int_equal(f.got_total, f.sent);
    assert_true(f.got_eof);
    assert_int_equal(st.bytes_out, f.sent);
    assert_true(st.writes > 1);
}

/* Closing with most of 16 MiB still queued: all of it is written, then the
 * FIN. */
static void test_close_while_writing(void **state) {
    (void)state;
    fake_t f = {0};
    server_stats_t st;
    run(&f, "  max_output_buffer: 33554432\n",
        &(script_t){.send = "b", .rcvbuf = 4096, .delay_ms = 100}, &st);
    assert_int_equal(f.sent, BIG);
    assert_true(st.writes >= 2); /* the socket took a part, the rest was queued */
    assert_true(f.pattern_ok);
    assert_int_equal(f.got_total, BIG);
    assert_true(f.got_eof);
    assert_int_equal(st.bytes_out, BIG);
    assert_int_equal(f.lost, 0); /* the server closed it, not the client */
    assert_int_equal(f.closed, 0);
}

/* Bytes after the pause stay with the server and are fed again once the
 * protocol resumes, exactly once, not before. */
static void test_pause_resume(void **state) {
    (void)state;
    fake_t f = {0};
    server_stats_t st;
    run(&f, "  max_output_buffer: 65536\n", &(script_t){.send = "pxyz", .read_n = 3}, &st);
    assert_string_equal(f.feeds, "pxyz|xyz|");
    assert_int_equal(f.fed_while_paused, 0);
    assert_string_equal(f.got, "xyz");
    assert_int_equal(st.bytes_in, 4);
}

/* A unit begun in one read ("4ab" of "4abc") is completed with its missing
 * byte only; the unit after it in the same read is fed from the read buffer
 * on its own, not copied behind the first. */
static void test_split_unit(void **state) {
    (void)state;
    fake_t f = {.framed = true};
    server_stats_t st;
    run(&f, "  max_output_buffer: 65536\n", &(script_t){.send = "4ab", .then = "c3xy2z"}, &st);
    assert_string_equal(f.feeds, "4ab|4abc|3xy2z|");
    assert_int_equal(st.bytes_in, 9);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_queue_order),   cmocka_unit_test(test_output_bound),
        cmocka_unit_test(test_close_while_writing), cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_split_unit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
