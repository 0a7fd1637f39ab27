/* The HTTP endpoint (/metrics, /healthz, /readyz; http.h handles the
 * requests) as a protocol on net/ connections: the daemon passes
 * http_server_ops and an http_server_t as server_opts_t.http, and the server
 * accepts, reads and writes for it on cfg->metrics_listen.
 *
 * At most HTTP_SERVER_MAX_CONNS connections at once, HTTP_SERVER_MAX_PER_ADDR
 * from one address (more are closed at accept, so a scraper that opens
 * connections without end costs no memory, and one address cannot starve a
 * health probe);
 * one request per connection; a connection without a complete request
 * HTTP_IDLE_TIMEOUT_MS after accept gets 408; after the response the
 * connection is flushed and closed. */
#ifndef M2K_HTTP_SERVER_H
#define M2K_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "net/server.h"

#define HTTP_SERVER_MAX_CONNS 16
#define HTTP_SERVER_MAX_PER_ADDR 4

typedef struct {
    /* The metrics text (malloc'd, freed by the server; NULL: 500). */
    char *(*metrics)(void *ud, size_t *len);
    /* Readiness: 1, or 0 with a one-line reason in reason (cap bytes). */
    int (*ready)(void *ud, char *reason, size_t cap);
    void *ud;
} http_server_opts_t;

typedef struct {
    uint64_t requests; /* answered after a complete (or malformed) request */
    uint64_t refused;  /* closed at accept, over HTTP_SERVER_MAX_CONNS or _PER_ADDR */
} http_server_stats_t;

typedef struct http_server http_server_t;

extern const server_protocol_ops_t http_server_ops;

/* NULL when out of memory. */
http_server_t *http_server_new(const http_server_opts_t *opts);
/* After the server that served it has stopped. */
void http_server_free(http_server_t *h);
const http_server_stats_t *http_server_stats(const http_server_t *h);

#endif
