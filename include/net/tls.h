/* TLS for MQTT listeners over memory BIOs (OpenSSL libssl is used here only).
 *
 * Pure with respect to I/O: the server feeds the ciphertext it read with
 * tls_conn_feed(), takes the plaintext out with tls_conn_read(), hands
 * plaintext to send to tls_conn_write(), and writes whatever
 * tls_conn_take_output() gives back to the socket. The session code never
 * sees whether its bytes were encrypted.
 *
 * A tls_ctx_t is one listener's configuration (certificate, key, CA, policy).
 * A reload builds a new one with tls_ctx_new() and moves it into the running
 * one with tls_ctx_replace(): new handshakes use it, established connections
 * keep the context they started with (OpenSSL reference-counts it). */
#ifndef M2K_TLS_H
#define M2K_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

#define TLS_OK 0
#define TLS_ERR (-1) /* the connection must be closed; tls_conn_error() says why */

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* Loads cert, key and CA of a listener's tls: section (read here only, not
 * kept). 0, or -1 with a message naming the file in errbuf. */
int tls_ctx_new(const config_tls_t *cfg, tls_ctx_t **out, char *errbuf, size_t errlen);
void tls_ctx_free(tls_ctx_t *t);
/* Moves from's OpenSSL context into t (the old one is released once no
 * connection uses it) and frees from. Cannot fail. */
void tls_ctx_replace(tls_ctx_t *t, tls_ctx_t *from);

/* A server-side connection; NULL on allocation failure. */
tls_conn_t *tls_conn_new(tls_ctx_t *t);
void tls_conn_free(tls_conn_t *c);
/* Feeds ciphertext from the socket and advances the handshake. TLS_OK or
 * TLS_ERR (handshake or record failure). */
int tls_conn_feed(tls_conn_t *c, const uint8_t *buf, size_t len);
/* The same in two halves, for a handshake run off the loop thread: put
 * buffers the ciphertext (TLS_ERR: no memory); handshake_step runs
 * SSL_do_handshake over what was put (the private-key operations), on any
 * thread, as long as no other thread touches c meanwhile. */
int tls_conn_put(tls_conn_t *c, const uint8_t *buf, size_t len);
int tls_conn_handshake_step(tls_conn_t *c);
/* Decrypted bytes into buf: the count (0 when none is ready) or TLS_ERR. */
ssize_t tls_conn_read(tls_conn_t *c, uint8_t *buf, size_t cap);
/* Encrypts plaintext (after the handshake). TLS_OK or TLS_ERR. */
int tls_conn_write(tls_conn_t *c, const uint8_t *buf, size_t len);
/* Ciphertext waiting to be written to the socket. */
size_t tls_conn_pending_output(const tls_conn_t *c);
/* Moves up to cap bytes of that ciphertext into buf; returns the count. */
size_t tls_conn_take_output(tls_conn_t *c, uint8_t *buf, size_t cap);
/* Sends a close_notify alert (its bytes then wait in the output). */
void tls_conn_shutdown(tls_conn_t *c);
bool tls_conn_handshake_done(const tls_conn_t *c);
/* Why the connection failed, for the log ("" when it did not). */
const char *tls_conn_error(const tls_conn_t *c);
/* "TLSv1.3" etc., after the handshake. */
const char *tls_conn_version(const tls_conn_t *c);
/* The verified client certificate's subject CN into out: 0, or -1 when there
 * is no verified certificate or no CN (or it does not fit / has a NUL). */
int tls_conn_peer_cn(const tls_conn_t *c, char *out, size_t cap);

#endif
