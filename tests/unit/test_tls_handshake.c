/* TLS handshake steps off the loop thread (issue 20 finding 6): a TLS
 * listener in-process with a fake protocol, libuv's threadpool held by
 * blocking jobs so that a handshake step is provably queued on it (running,
 * as far as the server knows) and a second one waits for a worker
 * (mqtt.max_tls_handshake_workers 1), then the connections close: by the
 * handshake timeout, or by server_stop. The running step completes after
 * its connection is gone and frees the layer; the waiting one is dropped.
 * Under ASan (make sanitize) a use after free or a leak fails the test.
 *
 * The certificate is made by openssl(1) in a temporary directory; the
 * ClientHello by OpenSSL's client over memory BIOs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <semaphore.h>
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

#define POOL 4 /* UV_THREADPOOL_SIZE, set before the pool starts */
#define CONNS 2
#define WAIT_MS 20000

typedef struct {
    server_t *srv;
    uint16_t port;
    bool stop_on_steps; /* server_stop once both steps were handed out */
    bool stopping, released;
    int opened;
    atomic_int freed;
    char remote[CONNS][64];
    char lost[CONNS][96];
    int n_lost;
    sem_t block; /* the jobs holding the threadpool wait on it */
} fixture_t;

static uint8_t hello[4096];
static size_t hello_len;
static char dir[64], cert[96], key[96];

/* ---- the fake protocol: one object per connection, its index ------------------ */

typedef struct {
    fixture_t *f;
    server_conn_t *conn;
    int i;
} pc_t;

static void *fk_open(void *proto, server_conn_t *conn, const char *remote) {
    fixture_t *f = proto;
    assert_true(f->opened < CONNS);
    pc_t *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->f = f;
    p->conn = conn;
    p->i = f->opened++;
    snprintf(f->remote[p->i], sizeof(f->remote[p->i]), "%s", remote);
    return p;
}

static ssize_t fk_feed(void *pc, const uint8_t *buf, size_t len) {
    (void)pc;
    (void)buf;
    fail_msg("fed %zu bytes: no handshake was completed", len);
    return -1;
}

static void fk_lost(void *pc, const char *reason) {
    pc_t *p = pc;
    snprintf(p->f->lost[p->f->n_lost++ % CONNS], sizeof(p->f->lost[0]), "%s", reason);
}

/* The server needs it closed (the handshake timeout): as the session does. */
static void fk_close(void *pc, const char *reason) {
    pc_t *p = pc;
    fk_lost(pc, reason);
    server_conn_close(p->conn);
}

static bool fk_paused(const void *pc) {
    (void)pc;
    return false;
}

static const char *fk_remote(const void *pc) {
    const pc_t *p = pc;
    return p->f->remote[p->i];
}

static void release(fixture_t *f) {
    if (!f->released) {
        f->released = true;
        for (int i = 0; i < POOL; i++)
            sem_post(&f->block);
    }
}

static void fk_free(void *pc) {
    pc_t *p = pc;
    fixture_t *f = p->f;
    free(p);
    /* Both connections are gone while a step still runs on the pool: let it. */
    if (atomic_fetch_add(&f->freed, 1) + 1 == CONNS)
        release(f);
}

static const server_protocol_ops_t fake_ops = {
    .conn_open = fk_open,
    .conn_feed = fk_feed,
    .conn_lost = fk_lost,
    .conn_close = fk_close,
    .conn_paused = fk_paused,
    .conn_remote = fk_remote,
    .conn_free = fk_free,
};

static void on_tick(void *ud) {
    fixture_t *f = ud;
    const server_stats_t *st = server_stats(f->srv);
    if (f->stopping)
        return;
    if ((f->stop_on_steps && st->tls_handshake_steps == CONNS) ||
        (f->released && atomic_load(&f->freed) == CONNS)) {
        f->stopping = true;
        server_stop(f->srv);
    }
}

/* ---- the threadpool held ------------------------------------------------------- */

static void block_work(void *arg) {
    fixture_t *f = arg;
    sem_wait(&f->block);
}

static void block_done(void *arg) {
    (void)arg;
}

/* ---- set-up -------------------------------------------------------------------- */

/* A self-signed P-256 certificate, and a ClientHello to replay. */
static int group_setup(void **state) {
    (void)state;
    setenv("UV_THREADPOOL_SIZE", "4", 1);
    snprintf(dir, sizeof(dir), "/tmp/m2k-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!ssl || !rb || !wb)
        return -1;
    SSL_set_bio(ssl, rb, wb);
    if (SSL_connect(ssl) != -1 || SSL_get_error(ssl, -1) != SSL_ERROR_WANT_READ)
        return -1;
    int n = BIO_read(wb, hello, sizeof(hello));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (n <= 5 || hello[0] != 0x16)
        return -1;
    hello_len = (size_t)n;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

/* Connects CONNS clients, each sending the ClientHello, then keeps them
 * open until the server freed both (it reads nothing while a step runs, so
 * a client's close would be seen only after). */
static void *client(void *arg) {
    fixture_t *f = arg;
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(f->port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) != 0 ||
            send(fds[i], hello, hello_len, MSG_NOSIGNAL) != (ssize_t)hello_len)
            fprintf(stderr, "client: connect or send failed\n");
    }
    for (int waited = 0; atomic_load(&f->freed) < CONNS && waited < WAIT_MS; waited++)
        usleep(1000);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    return NULL;
}

/* Serves a TLS listener with the threadpool held until both connections
 * are gone; st gets the counters. */
static void run(fixture_t *f, unsigned connect_timeout_s, server_stats_t *st) {
    char yaml[1024], err[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - listen: \"127.0.0.1:0\"\n    tls:\n      cert: %s\n      key: %s\n"
             "kafka:\n  bootstrap_servers: embedded\n"
             "mqtt:\n  max_tls_handshake_workers: 1\n  connect_timeout_s: %u\n",
             cert, key, connect_timeout_s);
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    assert_int_equal(sem_init(&f->block, 0, 0), 0);
    server_opts_t o = {
        .cfg = cfg, .mqtt = {&fake_ops, f}, .ud = f, .watch_fd = -1, .on_tick = on_tick};
    if (server_new(&o, &f->srv, err, sizeof(err)) != 0 || server_listen(f->srv, err, sizeof(err)))
        fail_msg("server: %s", err);
    server_set_tick(f->srv, 5);
    for (int i = 0; i < POOL; i++)
        assert_int_equal(server_work(f->srv, block_work, block_done, f), 0);
    f->port = server_listener_port(f->srv, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, f), 0);
    server_run(f->srv);
    release(f); /* a failed test must not hang in server_free */
    pthread_join(t, NULL);
    *st = *server_stats(f->srv);
    server_free(f->srv); /* waits for the step: it frees its layer */
    config_free(cfg);
    sem_destroy(&f->block);
    assert_int_equal(f->opened, CONNS);
    assert_int_equal(atomic_load(&f->freed), CONNS);
    assert_int_equal(st->accepted, CONNS);
    /* One step each: one handed to the held pool, one waiting for the worker. */
    assert_int_equal(st->tls_handshake_steps, CONNS);
}

/* The handshake timeout closes both connections while one step is on the
 * pool and one waits: each counted and logged as a timeout. */
static void test_timeout_while_steps_wait(void **state) {
    (void)state;
    fixture_t f = {0};
    server_stats_t st;
    run(&f, 1, &st);
    assert_int_equal(st.tls_handshake_failures, CONNS);
    assert_int_equal(f.n_lost, CONNS);
    assert_string_equal(f.lost[0], "TLS handshake timeout");
    assert_string_equal(f.lost[1], "TLS handshake timeout");
}

/* server_stop while one step is on the pool and one waits. */
static void test_stop_while_steps_wait(void **state) {
    (void)state;
    fixture_t f = {.stop_on_steps = true};
    server_stats_t st;
    run(&f, 30, &st);
    assert_int_equal(st.tls_handshake_failures, 0);
    assert_int_equal(f.n_lost, CONNS);
    assert_string_equal(f.lost[0], "server shutting down");
    assert_string_equal(f.lost[1], "server shutting down");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_while_steps_wait),
        cmocka_unit_test(test_stop_while_steps_wait),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
