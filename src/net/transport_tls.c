/* The TLS layer (see transport.h) over tls.c's memory-BIO engine:
 * ciphertext from below is fed to OpenSSL, handshake records and encrypted
 * output go down, plaintext goes up. Its handshake failures and timeouts are
 * logged (rate-limited) and counted as tls_handshake_failures; with
 * use_identity_as_username the verified certificate's CN becomes the
 * protocol's peer identity.
 *
 * Until the handshake is done, each read's ciphertext is put into the
 * memory BIO on the loop and SSL_do_handshake (the private-key operations)
 * runs as a job on a worker (work.c): one step per connection at a time,
 * the socket not read meanwhile, so the SSL object is touched by one thread
 * at a time; the loop then writes what the step produced. After the
 * handshake, records are decrypted and encrypted on the loop. */
#include <stdio.h>
#include <stdlib.h>

#include "net/tls.h"
#include "transport.h"
#include "util/log.h"

#define PLAIN_BUF_SIZE (64 * 1024)

/* One TLS listener. */
typedef struct {
    tls_ctx_t *ctx;
    /* As the daemon started: use_identity_as_username, and the files a
     * listener that changed in a reloaded configuration keeps using. */
    const config_listener_t *cfg;
    uint8_t *plain; /* one read's plaintext, for every connection of the listener */
} tls_listen_t;

typedef struct {
    transport_t base;
    tls_listen_t *l;
    tls_conn_t *tls;
    net_job_t job;
    conn_t *conn; /* while the job is queued or runs */
    int step_rc;  /* the job's answer, TLS_OK or TLS_ERR */
    bool busy;    /* the job is queued or runs: the loop keeps off tls */
    bool orphan;  /* freed while the job ran: done() frees it */
    bool open;    /* the handshake is done (as the loop saw it) */
} tls_layer_t;

/* One for every worker: the limit holds for the process. */
static log_ratelimit_t tls_log = LOG_RATELIMIT_INIT("TLS failure", 20, 10000);

static int tls_listen_new(const config_listener_t *cl, void **ctx, char *errbuf, size_t errlen) {
    *ctx = NULL;
    if (!cl->tls.enabled)
        return 0;
    tls_listen_t *l = calloc(1, sizeof(*l));
    uint8_t *plain = malloc(PLAIN_BUF_SIZE);
    if (!l || !plain) {
        free(l);
        free(plain);
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    if (tls_ctx_new(&cl->tls, &l->ctx, errbuf, errlen) != 0) {
        free(l);
        free(plain);
        return -1;
    }
    l->cfg = cl;
    l->plain = plain;
    *ctx = l;
    return 0;
}

static void tls_listen_free(void *ctx) {
    tls_listen_t *l = ctx;
    tls_ctx_free(l->ctx);
    free(l->plain);
    free(l);
}

static int tls_reload_prepare(void *ctx, const config_listener_t *next, void **update, char *errbuf,
                              size_t errlen) {
    tls_listen_t *l = ctx;
    const config_tls_t *tc = next && next->tls.enabled ? &next->tls : &l->cfg->tls;
    return tls_ctx_new(tc, (tls_ctx_t **)update, errbuf, errlen);
}

static void tls_reload_commit(void *ctx, void *update, const char *listener_name) {
    tls_listen_t *l = ctx;
    tls_ctx_replace(l->ctx, update);
    log_info("reload: listener %s: TLS certificate reloaded (new handshakes use it)",
             listener_name);
}

static void tls_reload_abort(void *update) {
    tls_ctx_free(update);
}

static transport_t *tls_layer_new(void *ctx) {
    tls_listen_t *l = ctx;
    tls_layer_t *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->l = l;
    x->tls = tls_conn_new(l->ctx);
    if (!x->tls) {
        free(x);
        return NULL;
    }
    return &x->base;
}

static void tls_layer_free(transport_t *t) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->busy && !net_job_cancel(&x->job)) {
        x->orphan = true; /* its step runs on a worker: step_done frees */
        return;
    }
    tls_conn_free(x->tls);
    free(x);
}

/* Moves the ciphertext OpenSSL produced down. */
static int drain(tls_layer_t *x, conn_t *c) {
    uint8_t chunk[16384];
    size_t n;
    while ((n = tls_conn_take_output(x->tls, chunk, sizeof(chunk))) > 0) {
        if (transport_down(&x->base, c, chunk, n) != 0)
            return -1;
    }
    return 0;
}

/* use_identity_as_username: the verified certificate's CN to the protocol.
 * -1: the connection was ended. */
static int set_identity(tls_layer_t *x, conn_t *c) {
    if (!x->l->cfg->tls.use_identity_as_username)
        return 0;
    char cn[256];
    if (tls_conn_peer_cn(x->tls, cn, sizeof(cn)) != 0) {
        net_conn_end(c, "TLS: the client certificate has no usable common name "
                        "(use_identity_as_username)");
        return -1;
    }
    if (net_conn_set_identity(c, cn) != 0) {
        net_conn_end(c, "out of memory for the certificate identity");
        return -1;
    }
    return 0;
}

static void handshake_done(tls_layer_t *x, conn_t *c) {
    log_debug("%s: TLS handshake done (%s)", net_conn_remote(c), tls_conn_version(x->tls));
    if (set_identity(x, c) == 0)
        transport_ready(&x->base, c);
}

static void tls_failed(tls_layer_t *x, conn_t *c) {
    if (!x->open)
        net_conn_stats(c)->tls_handshake_failures++;
    log_client_ratelimited(&tls_log, LOG_WARN, NULL, net_conn_remote(c), "%s",
                           tls_conn_error(x->tls));
    net_conn_lost(c, tls_conn_error(x->tls));
}

/* Plaintext up while there is any. */
static void read_plain(tls_layer_t *x, conn_t *c) {
    while (!net_conn_closing(c)) {
        ssize_t got = tls_conn_read(x->tls, x->l->plain, PLAIN_BUF_SIZE);
        drain(x, c);
        if (got < 0) {
            net_conn_lost(c, tls_conn_error(x->tls));
            return;
        }
        if (got == 0)
            break;
        transport_up(&x->base, c, x->l->plain, (size_t)got);
    }
}

/* On a worker: the only thread touching x->tls until step_done. */
static void step_work(void *arg) {
    tls_layer_t *x = arg;
    x->step_rc = tls_conn_handshake_step(x->tls);
}

/* Back on the loop: write what the step produced, then open or go on. */
static void step_done(void *arg) {
    tls_layer_t *x = arg;
    conn_t *c = x->conn;
    x->busy = false;
    x->conn = NULL;
    if (x->orphan) { /* the connection closed while the step ran */
        tls_conn_free(x->tls);
        free(x);
        return;
    }
    if (net_conn_closing(c))
        return; /* closed meanwhile (timeout, shutdown): nothing more to say */
    net_conn_input_wait(c, false);
    drain(x, c);
    if (x->step_rc != TLS_OK) {
        tls_failed(x, c);
        return;
    }
    if (!tls_conn_handshake_done(x->tls))
        return; /* the client's next flight comes with the next read */
    x->open = true;
    handshake_done(x, c);
    read_plain(x, c); /* application data that came with the client's Finished */
}

/* Ciphertext in: handshake records out, plaintext up. */
static void tls_input(transport_t *t, conn_t *c, const uint8_t *p, size_t n) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->busy) { /* cannot happen: the socket is not read while a step runs */
        net_conn_lost(c, "TLS: input while a handshake step runs");
        return;
    }
    if (!x->open) {
        if (tls_conn_put(x->tls, p, n) != TLS_OK) {
            tls_failed(x, c);
            return;
        }
        x->busy = true;
        x->conn = c;
        x->job = (net_job_t){.work = step_work, .done = step_done, .arg = x};
        net_conn_stats(c)->tls_handshake_steps++;
        net_conn_input_wait(c, true);
        net_job_submit(c, &x->job); /* may run step_done at once (no memory): x is done with */
        return;
    }
    int rc = tls_conn_feed(x->tls, p, n);
    drain(x, c);
    if (rc != TLS_OK) {
        tls_failed(x, c);
        return;
    }
    read_plain(x, c);
}

static int tls_output(transport_t *t, conn_t *c, const void *p, size_t n) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (!x->open)
        return -1; /* nothing goes out before the handshake (nor while a step runs) */
    return tls_conn_write(x->tls, p, n) == TLS_OK && drain(x, c) == 0 ? 0 : -1;
}

static void tls_shutdown(transport_t *t, conn_t *c) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->busy)
        return; /* a worker has the SSL object; the handshake is not done anyway */
    tls_conn_shutdown(x->tls);
    drain(x, c);
}

static void tls_conn_rebind(transport_t *t, void *ctx) {
    ((tls_layer_t *)t)->l = ctx; /* its plaintext buffer is the new loop's */
}

/* The protocol opened again on the new loop: the same identity as at the
 * handshake (the CONNECT that moved was checked with it). */
static void tls_reopened(transport_t *t, conn_t *c) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->open)
        set_identity(x, c);
}

/* Records that came with the CONNECT and were not decrypted before the move. */
static void tls_resume(transport_t *t, conn_t *c) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->open && !x->busy)
        read_plain(x, c);
}

static const char *tls_handshake_timeout(transport_t *t, conn_t *c, unsigned limit_s) {
    tls_layer_t *x = (tls_layer_t *)t;
    if (x->open)
        return NULL;
    net_conn_stats(c)->tls_handshake_failures++;
    log_client_ratelimited(&tls_log, LOG_WARN, NULL, net_conn_remote(c),
                           "TLS handshake not completed within connect_timeout_s %u", limit_s);
    return "TLS handshake timeout";
}

const transport_type_t transport_tls_type = {
    .name = "TLS",
    .handshake = true,
    .listen_new = tls_listen_new,
    .listen_free = tls_listen_free,
    .reload_prepare = tls_reload_prepare,
    .reload_commit = tls_reload_commit,
    .reload_abort = tls_reload_abort,
    .conn_new = tls_layer_new,
    .conn_free = tls_layer_free,
    .input = tls_input,
    .output = tls_output,
    .shutdown = tls_shutdown,
    .conn_rebind = tls_conn_rebind,
    .resume = tls_resume,
    .reopened = tls_reopened,
    .handshake_timeout = tls_handshake_timeout,
};
