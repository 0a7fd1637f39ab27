/* server_conn_move (threads: N): two servers, each on its own loop in its
 * own thread, sharing their bounds (server_shared_t). A client connects to
 * server A, whose protocol hands the connection with the bytes of its first
 * read to server B; the client then sends more. B must see every byte once
 * and in order ("move" fed as if just read, then the socket's), echo them,
 * and the close path must work on both sides: A frees its protocol object
 * without a loss or close callback and never sends a FIN, B sees the
 * client's close. Then max_connections counts the connections of both
 * servers, and a TLS connection moves with its session (the client's
 * records after the move decrypt on B). Under ASan (make sanitize) a leak
 * or a use after free fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
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

#define WAIT_MS 20000

typedef struct side side_t;
typedef struct pair pair_t;

struct side {
    pair_t *p;
    server_t *srv;
    side_t *to; /* non-NULL: move every connection there on its first feed */
    bool stopping;
    /* On this side's loop thread; read after its thread is joined. */
    atomic_int opened, freed, lost, closed, moved;
    char fed[256];
};

/* Two servers on two loop threads, sharing their bounds. */
struct pair {
    side_t a, b;
    config_t *cfg;
    server_shared_t *sh;
    pthread_t ta, tb;
    atomic_bool done; /* the client is done: both servers stop */
};

/* One connection's protocol object. */
typedef struct {
    side_t *s;
    server_conn_t *conn;
    char remote[64];
} pconn_t;

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *pr_open(void *proto, server_conn_t *conn, const char *remote) {
    side_t *s = proto;
    pconn_t *pc = calloc(1, sizeof(*pc));
    assert_non_null(pc);
    pc->s = s;
    pc->conn = conn;
    snprintf(pc->remote, sizeof(pc->remote), "%s", remote);
    atomic_fetch_add(&s->opened, 1);
    return pc;
}

static ssize_t pr_feed(void *pcv, const uint8_t *buf, size_t len) {
    pconn_t *pc = pcv;
    side_t *s = pc->s;
    if (s->to) {
        assert_int_equal(server_conn_move(pc->conn, s->to->srv, buf, len), 0);
        atomic_fetch_add(&s->moved, 1);
        return -1;
    }
    size_t fl = strlen(s->fed);
    snprintf(s->fed + fl, sizeof(s->fed) - fl, "%.*s|", (int)len, (const char *)buf);
    assert_int_equal(server_conn_send(pc->conn, buf, len), 0);
    return (ssize_t)len;
}

static void pr_lost(void *pc, const char *reason) {
    (void)reason;
    atomic_fetch_add(&((pconn_t *)pc)->s->lost, 1);
}

static void pr_close(void *pcv, const char *reason) {
    pconn_t *pc = pcv;
    (void)reason;
    atomic_fetch_add(&pc->s->closed, 1);
    server_conn_close(pc->conn);
}

static bool pr_paused(const void *pc) {
    (void)pc;
    return false;
}

static const char *pr_remote(const void *pc) {
    return ((const pconn_t *)pc)->remote;
}

static void pr_free(void *pcv) {
    pconn_t *pc = pcv;
    atomic_fetch_add(&pc->s->freed, 1);
    free(pc);
}

static const server_protocol_ops_t ops = {
    .conn_open = pr_open,
    .conn_feed = pr_feed,
    .conn_lost = pr_lost,
    .conn_close = pr_close,
    .conn_paused = pr_paused,
    .conn_remote = pr_remote,
    .conn_free = pr_free,
};

static void on_tick(void *ud) {
    side_t *s = ud;
    if (!s->stopping && atomic_load(&s->p->done)) {
        s->stopping = true;
        server_stop(s->srv);
    }
}

static void *loop_thread(void *arg) {
    server_run(((side_t *)arg)->srv);
    return NULL;
}

static config_t *load(const char *extra) {
    char yaml[1024], err[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - listen: \"127.0.0.1:0\"\n%skafka:\n  bootstrap_servers: embedded\n",
             extra);
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    return cfg;
}

static int client_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Reads until `want` bytes or EOF (or WAIT_MS): the count read. */
static size_t read_some(int fd, char *buf, size_t want) {
    size_t got = 0;
    uint64_t end = mono_ms() + WAIT_MS;
    while (got < want && mono_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, want - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void wait_for(atomic_int *v, int want) {
    uint64_t end = mono_ms() + WAIT_MS;
    while (atomic_load(v) < want && mono_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

/* A, then B with A's bound ports, both with SO_REUSEPORT, each on its
 * thread; with `move`, A hands every connection it accepts to B. */
static void pair_start(pair_t *p, const char *extra_yaml, bool move) {
    char err[1024];
    p->cfg = load(extra_yaml);
    p->sh = server_shared_new(p->cfg);
    side_t *sides[2] = {&p->a, &p->b};
    for (int i = 0; i < 2; i++) {
        server_opts_t o = {
            .cfg = p->cfg,
            .shared = p->sh,
            .first = i ? p->a.srv : NULL,
            .reuseport = true,
            .mqtt = {&ops, sides[i]},
            .ud = sides[i],
            .watch_fd = -1,
            .on_tick = on_tick,
        };
        sides[i]->p = p;
        if (server_new(&o, &sides[i]->srv, err, sizeof(err)) != 0 ||
            server_listen(sides[i]->srv, err, sizeof(err)) != 0)
            fail_msg("server: %s", err);
        server_set_tick(sides[i]->srv, 2);
    }
    assert_int_equal(server_listener_port(p->b.srv, 0), server_listener_port(p->a.srv, 0));
    if (move)
        p->a.to = &p->b;
    assert_int_equal(pthread_create(&p->ta, NULL, loop_thread, &p->a), 0);
    assert_int_equal(pthread_create(&p->tb, NULL, loop_thread, &p->b), 0);
}

/* Both loops stop; the servers stay to be read. */
static void pair_join(pair_t *p) {
    atomic_store(&p->done, true);
    pthread_join(p->ta, NULL);
    pthread_join(p->tb, NULL);
}

static void pair_free(pair_t *p) {
    assert_int_equal(server_conn_count(p->a.srv), 0);
    assert_int_equal(server_conn_count(p->b.srv), 0);
    server_free(p->a.srv);
    server_free(p->b.srv);
    server_shared_free(p->sh);
    config_free(p->cfg);
}

static void pair_finish(pair_t *p) {
    pair_join(p);
    pair_free(p);
}

/* The connection lands on whichever server the kernel picks: the one that
 * gets it moves it to the other (`to` set on both: a moved connection's
 * feeds go to a side whose `to` is cleared once it took one over). */
static void test_move_bytes_in_order(void **state) {
    (void)state;
    pair_t p = {0};
    pair_start(&p, "", true);
    side_t *a = &p.a, *b = &p.b;
    uint16_t port = server_listener_port(a->srv, 0);
    /* Connect until one lands on A (the kernel spreads by the source port). */
    int fd = -1, extra[16], n_extra = 0;
    for (int i = 0; i < 16 && fd < 0; i++) {
        int before = atomic_load(&a->opened);
        int c = client_connect(port);
        assert_int_equal(send(c, "move", 4, MSG_NOSIGNAL), 4);
        uint64_t end = mono_ms() + WAIT_MS;
        while (atomic_load(&a->opened) == before && atomic_load(&b->opened) <= n_extra &&
               mono_ms() < end)
            usleep(1000);
        if (atomic_load(&a->opened) > before)
            fd = c;
        else
            extra[n_extra++] = c;
    }
    assert_true(fd >= 0);
    wait_for(&a->moved, 1);
    wait_for(&b->opened, n_extra + 1);
    assert_int_equal(send(fd, "after", 5, MSG_NOSIGNAL), 5);
    char got[32] = "";
    assert_int_equal(read_some(fd, got, 9), 9);
    assert_memory_equal(got, "moveafter", 9);
    close(fd);
    for (int i = 0; i < n_extra; i++)
        close(extra[i]);
    wait_for(&b->freed, n_extra + 1);
    pair_finish(&p);
    /* A: opened and freed, never told of a loss or a close. */
    assert_int_equal(atomic_load(&a->opened), 1);
    assert_int_equal(atomic_load(&a->freed), 1);
    assert_int_equal(atomic_load(&a->lost), 0);
    assert_int_equal(atomic_load(&a->closed), 0);
    /* B: the moved bytes first, then the socket's. */
    assert_int_equal(atomic_load(&b->lost), n_extra + 1);
    assert_non_null(strstr(b->fed, "move|after|"));
}

/* mqtt.max_connections 1 over two servers: the second connection is
 * refused whichever server the kernel gives it to. */
static void test_max_connections_shared(void **state) {
    (void)state;
    pair_t p = {0};
    pair_start(&p, "mqtt:\n  max_connections: 1\n", false);
    side_t *a = &p.a, *b = &p.b;
    uint16_t port = server_listener_port(a->srv, 0);
    int c1 = client_connect(port);
    char got[8];
    assert_int_equal(send(c1, "x", 1, MSG_NOSIGNAL), 1);
    assert_int_equal(read_some(c1, got, 1), 1);
    /* Several tries, so that some land on the other server. */
    for (int i = 0; i < 6; i++) {
        int c2 = client_connect(port);
        send(c2, "y", 1, MSG_NOSIGNAL);
        assert_int_equal(read_some(c2, got, 1), 0); /* closed, nothing echoed */
        close(c2);
    }
    close(c1);
    int open_n = atomic_load(&a->opened) + atomic_load(&b->opened);
    assert_int_equal(open_n, 1);
    wait_for(&a->freed, atomic_load(&a->opened));
    wait_for(&b->freed, atomic_load(&b->opened));
    pair_join(&p);
    uint64_t refused = server_stats(a->srv)->refused_max_connections +
                       server_stats(b->srv)->refused_max_connections;
    pair_free(&p);
    assert_int_equal(refused, 6);
}

/* ---- TLS: the session moves with the connection ---- */

static char dir[64], cert[96], key[96];

static int tls_setup(void **state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/m2k-move-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1",
             key, cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int tls_teardown(void **state) {
    (void)state;
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

/* The client writes two records back to back: the first makes A move the
 * connection, the second may still be in A's SSL object (decrypted on B by
 * the layer's resume) or in the socket (read by B). */
static void test_move_tls(void **state) {
    (void)state;
    char extra_yaml[512];
    snprintf(extra_yaml, sizeof(extra_yaml), "    tls:\n      cert: %s\n      key: %s\n", cert,
             key);
    pair_t p = {0};
    pair_start(&p, extra_yaml, true);
    side_t *a = &p.a, *b = &p.b;
    uint16_t port = server_listener_port(a->srv, 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL *ssl = NULL, *extra[16];
    int fd = -1, extra_fd[16], n_extra = 0;
    for (int i = 0; i < 16 && !ssl; i++) {
        int before = atomic_load(&a->opened);
        int c = client_connect(port);
        SSL *x = SSL_new(ctx);
        SSL_set_fd(x, c);
        assert_int_equal(SSL_connect(x), 1);
        uint64_t end = mono_ms() + WAIT_MS;
        while (atomic_load(&a->opened) == before && atomic_load(&b->opened) <= n_extra &&
               mono_ms() < end)
            usleep(1000);
        if (atomic_load(&a->opened) > before) {
            ssl = x;
            fd = c;
        } else {
            extra[n_extra] = x;
            extra_fd[n_extra++] = c;
        }
    }
    assert_non_null(ssl);
    assert_int_equal(SSL_write(ssl, "move", 4), 4);
    assert_int_equal(SSL_write(ssl, "after", 5), 5);
    char got[16] = "";
    int got_n = 0;
    while (got_n < 9) {
        int n = SSL_read(ssl, got + got_n, 9 - got_n);
        if (n <= 0)
            break;
        got_n += n;
    }
    assert_int_equal(got_n, 9);
    assert_memory_equal(got, "moveafter", 9);
    wait_for(&a->moved, 1);
    SSL_free(ssl);
    close(fd);
    for (int i = 0; i < n_extra; i++) {
        SSL_free(extra[i]);
        close(extra_fd[i]);
    }
    wait_for(&b->freed, n_extra + 1);
    wait_for(&a->freed, 1);
    pair_finish(&p);
    assert_int_equal(atomic_load(&a->lost), 0);
    assert_int_equal(atomic_load(&a->closed), 0);
    SSL_CTX_free(ctx);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_move_bytes_in_order),
        cmocka_unit_test(test_max_connections_shared),
        cmocka_unit_test_setup_teardown(test_move_tls, tls_setup, tls_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
