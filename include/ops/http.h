/* A tiny HTTP/1.1 server-side request handler for the metrics endpoint. No
 * I/O: the server feeds the bytes it reads and receives the response bytes
 * through a callback. nodejs/http-parser (libhttp-parser, Debian's
 * predecessor of llhttp) is used here only.
 *
 * One request per connection: the response always carries
 * "Connection: close"; after it, http_feed returns HTTP_DONE and ignores
 * input. The server then finishes writing and closes the connection.
 *
 * Routes (GET or HEAD; any other method gets 405 with "Allow: GET, HEAD"):
 *   /metrics   200, Prometheus text 0.0.4 from handlers.metrics (500 if NULL)
 *   /healthz   200 "ok\n": the process is alive and its loop turns
 *   /readyz    200 "ready\n", or 503 "not ready: <reason>\n" (handlers.ready)
 *   other      404 "not found\n"
 * The query string is ignored. Limits: request head and body together at
 * most HTTP_MAX_REQUEST bytes (431 while the head is incomplete, 413 after),
 * URL at most HTTP_MAX_URL bytes (414), malformed requests 400.
 *
 * What the server should do around it: close a connection that has not
 * produced a response HTTP_IDLE_TIMEOUT_MS after accept (call
 * http_timeout first to send 408), limit concurrent metrics connections
 * (e.g. 16; refuse beyond), and close on EOF or read error. */
#ifndef M2K_HTTP_H
#define M2K_HTTP_H

#include <stddef.h>

#define HTTP_MAX_REQUEST 8192
#define HTTP_MAX_URL 1024
/* Short: a request is one line and a few headers; idle sockets would hold
 * the few connection slots (a health probe must get one). */
#define HTTP_IDLE_TIMEOUT_MS 2000

typedef struct {
    /* Receives response bytes, possibly in several calls during one
     * http_feed/http_timeout. The bytes are valid only during the call:
     * copy them (or write them out) before returning. */
    void (*write)(void *ud, const char *buf, size_t len);
    /* Renders the metrics text into a malloc'd buffer (http frees it) and
     * sets *len; NULL means failure (500). NULL callback: 404 for /metrics. */
    char *(*metrics)(void *ud, size_t *len);
    /* Returns 1 when ready; 0 when not, with a one-line reason written into
     * reason (cap bytes). NULL callback: always ready. */
    int (*ready)(void *ud, char *reason, size_t cap);
    void *ud;
} http_handlers_t;

typedef struct http_conn http_conn_t;

enum {
    HTTP_MORE = 0, /* need more bytes */
    HTTP_DONE = 1, /* the response has been written: flush and close */
};

/* One per accepted connection. `h` is copied. NULL when out of memory. */
http_conn_t *http_conn_new(const http_handlers_t *h);
void http_conn_free(http_conn_t *c);

/* Parses len bytes; writes the response when the request is complete or
 * wrong. Returns HTTP_MORE or HTTP_DONE. */
int http_feed(http_conn_t *c, const char *buf, size_t len);
/* The idle timeout expired: writes 408 unless a response was already
 * written. Returns HTTP_DONE. */
int http_timeout(http_conn_t *c);
/* The status code of the response written, 0 before (for logs and tests). */
int http_status(const http_conn_t *c);

#endif
