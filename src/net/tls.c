/* TLS over memory BIOs (see tls.h). */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_ERR_MAX 512

struct tls_ctx {
    SSL_CTX *ctx;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool done, failed, first_seen;
    uint8_t first_byte;
    char err[TLS_ERR_MAX];
};

/* OpenSSL's error queue as one line; the queue is left empty. */
static void take_errors(char *out, size_t cap) {
    size_t o = 0;
    unsigned long e;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        /* A failed open() is queued as the system error (errno) followed by
         * "system lib" entries: say the errno once, drop the rest. */
        const char *r =
            ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
        char code[32];
        if (r && strcmp(r, "system lib") == 0)
            continue;
        if (!r) {
            snprintf(code, sizeof(code), "error %lx", e);
            r = code;
        }
        if (o + 3 < cap) {
            int n = snprintf(out + o, cap - o, "%s%s", o ? "; " : "", r);
            if (n > 0)
                o += (size_t)n < cap - o ? (size_t)n : cap - o - 1;
        }
    }
    if (!out[0])
        snprintf(out, cap, "unknown OpenSSL error");
}

static SSL_CTX *ctx_build(const config_tls_t *cfg, char *errbuf, size_t errlen) {
    char why[TLS_ERR_MAX];
    const char *file = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version == CONFIG_TLS_1_3 ? TLS1_3_VERSION
                                                                          : TLS1_2_VERSION);
    /* Renegotiation is a CPU-exhaustion lever for a client and MQTT does not need it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    static const unsigned char sid_ctx[] = "mqtt2kafka";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    file = cfg->cert;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1)
        goto fail;
    file = cfg->key;
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    if (cfg->ca) {
        file = cfg->ca;
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1)
            goto fail;
        if (cfg->crl) {
            /* Every certificate of the chain is checked: one whose issuer
             * has no CRL here fails, so a CRL file cannot silently cover
             * only part of the chain. */
            file = cfg->crl;
            X509_STORE *st = SSL_CTX_get_cert_store(ctx);
            X509_LOOKUP *lu = X509_STORE_add_lookup(st, X509_LOOKUP_file());
            if (!lu || X509_load_crl_file(lu, cfg->crl, X509_FILETYPE_PEM) <= 0)
                goto fail;
            X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
            file = cfg->ca;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | (cfg->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
fail:
    take_errors(why, sizeof(why));
    if (file)
        snprintf(errbuf, errlen, "%s: %s", file, why);
    else
        snprintf(errbuf, errlen, "TLS context: %s", why);
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_ctx_new(const config_tls_t *cfg, tls_ctx_t **out, char *errbuf, size_t errlen) {
    *out = NULL;
    tls_ctx_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    t->ctx = ctx_build(cfg, errbuf, errlen);
    if (!t->ctx) {
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tls_ctx_free(tls_ctx_t *t) {
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

void tls_ctx_replace(tls_ctx_t *t, tls_ctx_t *from) {
    /* Connections made with the old context hold their own reference. */
    SSL_CTX_free(t->ctx);
    t->ctx = from->ctx;
    free(from);
}

tls_conn_t *tls_conn_new(tls_ctx_t *t) {
    tls_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ssl = SSL_new(t->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        SSL_free(c->ssl);
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO means "no data yet", not end of file. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return c;
}

void tls_conn_free(tls_conn_t *c) {
    if (!c)
        return;
    SSL_free(c->ssl);
    free(c);
}

static int fail(tls_conn_t *c, const char *what) {
    char why[200];
    long vr = SSL_get_verify_result(c->ssl);
    take_errors(why, sizeof(why));
    if (vr != X509_V_OK && strstr(why, "certificate verify failed"))
        snprintf(c->err, sizeof(c->err), "%s: client certificate verify failed: %s", what,
                 X509_verify_cert_error_string(vr));
    else if (!c->done && c->first_byte != 0x16)
        snprintf(c->err, sizeof(c->err),
                 "%s: %s (first byte 0x%02x is not a TLS handshake: a plaintext client on a "
                 "TLS listener?)",
                 what, why, c->first_byte);
    else
        snprintf(c->err, sizeof(c->err), "%s: %s", what, why);
    c->failed = true;
    return TLS_ERR;
}

static int step_handshake(tls_conn_t *c) {
    if (c->done)
        return TLS_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->done = true;
        return TLS_OK;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return TLS_OK;
    return fail(c, "TLS handshake failed");
}

int tls_conn_put(tls_conn_t *c, const uint8_t *buf, size_t len) {
    if (c->failed)
        return TLS_ERR;
    if (len && !c->first_seen) {
        c->first_seen = true;
        c->first_byte = buf[0];
    }
    if (len && BIO_write(c->rbio, buf, (int)len) != (int)len) {
        snprintf(c->err, sizeof(c->err), "TLS: out of memory buffering input");
        c->failed = true;
        return TLS_ERR;
    }
    return TLS_OK;
}

int tls_conn_handshake_step(tls_conn_t *c) {
    /* OpenSSL's error queue is per thread: fail() reads this thread's. */
    return c->failed ? TLS_ERR : step_handshake(c);
}

int tls_conn_feed(tls_conn_t *c, const uint8_t *buf, size_t len) {
    int rc = tls_conn_put(c, buf, len);
    return rc == TLS_OK ? step_handshake(c) : rc;
}

ssize_t tls_conn_read(tls_conn_t *c, uint8_t *buf, size_t cap) {
    if (c->failed)
        return TLS_ERR;
    if (!c->done)
        return 0;
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, buf, cap, &n);
    if (r == 1)
        return (ssize_t)n;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(c->err, sizeof(c->err), "connection closed by the client (TLS close_notify)");
        c->failed = true;
        return TLS_ERR;
    }
    return fail(c, "TLS read failed");
}

int tls_conn_write(tls_conn_t *c, const uint8_t *buf, size_t len) {
    if (c->failed || !c->done)
        return TLS_ERR;
    size_t n = 0;
    ERR_clear_error();
    /* A memory BIO takes everything: one call writes it all. */
    if (len && SSL_write_ex(c->ssl, buf, len, &n) != 1)
        return fail(c, "TLS write failed");
    return TLS_OK;
}

size_t tls_conn_pending_output(const tls_conn_t *c) {
    return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_take_output(tls_conn_t *c, uint8_t *buf, size_t cap) {
    size_t n = 0;
    if (cap && BIO_ctrl_pending(c->wbio) && BIO_read_ex(c->wbio, buf, cap, &n) != 1)
        return 0;
    return n;
}

void tls_conn_shutdown(tls_conn_t *c) {
    if (c->done && !c->failed) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

bool tls_conn_handshake_done(const tls_conn_t *c) {
    return c->done;
}

const char *tls_conn_error(const tls_conn_t *c) {
    return c->err;
}

const char *tls_conn_version(const tls_conn_t *c) {
    return SSL_get_version(c->ssl);
}

int tls_conn_peer_cn(const tls_conn_t *c, char *out, size_t cap) {
    if (!c->done || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return -1;
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    if (!cert)
        return -1;
    int rc = -1;
    X509_NAME *name = X509_get_subject_name(cert);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx >= 0) {
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *u = NULL;
        int n = d ? ASN1_STRING_to_UTF8(&u, d) : -1;
        if (n > 0 && (size_t)n < cap && !memchr(u, '\0', (size_t)n)) {
            memcpy(out, u, (size_t)n);
            out[n] = '\0';
            rc = 0;
        }
        OPENSSL_free(u);
    }
    X509_free(cert);
    return rc;
}
