/* http.c: exact responses for every route and error, each request fed whole
 * and byte by byte; request size bounds at the exact limit; one request per
 * connection; timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/http.h"

typedef struct {
    char out[65536];
    size_t len;
    int writes;
    int ready;
    const char *reason;
    const char *metrics_body; /* NULL: the callback fails */
    int metrics_calls;
    char list_args[64]; /* "kind offset limit" of the last list call */
    bool list_fails;
} fixture_t;

static void cb_write(void *ud, const char *buf, size_t len) {
    fixture_t *f = ud;
    assert_true(f->len + len < sizeof(f->out));
    memcpy(f->out + f->len, buf, len);
    f->len += len;
    f->out[f->len] = '\0';
    f->writes++;
}

static char *cb_metrics(void *ud, size_t *len) {
    fixture_t *f = ud;
    f->metrics_calls++;
    if (!f->metrics_body)
        return NULL;
    *len = strlen(f->metrics_body);
    return strdup(f->metrics_body);
}

static int cb_ready(void *ud, char *reason, size_t cap) {
    fixture_t *f = ud;
    if (f->ready)
        return 1;
    snprintf(reason, cap, "%s", f->reason);
    return 0;
}

static char *cb_list(void *ud, int kind, size_t offset, size_t limit, size_t *len) {
    fixture_t *f = ud;
    snprintf(f->list_args, sizeof(f->list_args), "%d %zu %zu", kind, offset, limit);
    if (f->list_fails)
        return NULL;
    *len = 3;
    return strdup("{}\n");
}

static fixture_t fx;

static void fixture_reset(void) {
    memset(&fx, 0, sizeof(fx));
    fx.ready = 1;
    fx.metrics_body = "# TYPE x counter\nx 1\n";
}

static http_conn_t *conn_new(void) {
    http_handlers_t h = {cb_write, cb_metrics, cb_ready, cb_list, &fx};
    http_conn_t *c = http_conn_new(&h);
    assert_non_null(c);
    return c;
}

/* Feeds `req` whole, then again byte by byte on a new connection; both give
 * `expect` exactly, and HTTP_DONE only on the byte that completes it. */
static void check(const char *req, size_t req_len, const char *expect, int status) {
    fx.len = 0;
    fx.out[0] = '\0';
    http_conn_t *c = conn_new();
    assert_int_equal(http_feed(c, req, req_len), HTTP_DONE);
    assert_string_equal(fx.out, expect);
    assert_int_equal(http_status(c), status);
    http_conn_free(c);

    fx.len = 0;
    fx.out[0] = '\0';
    c = conn_new();
    size_t i;
    for (i = 0; i < req_len; i++) {
        int rc = http_feed(c, req + i, 1);
        if (rc == HTTP_DONE)
            break;
        assert_int_equal(fx.len, 0);
    }
    assert_true(i < req_len);
    assert_string_equal(fx.out, expect);
    assert_int_equal(http_status(c), status);
    /* later bytes are ignored */
    size_t len = fx.len;
    assert_int_equal(http_feed(c, "GET / HTTP/1.1\r\n\r\n", 18), HTTP_DONE);
    assert_int_equal(fx.len, len);
    http_conn_free(c);
}

#define CHECK(req, expect, status) check(req, sizeof(req) - 1, expect, status)

#define RESP(status_line, ctype, len, extra, body)                                                 \
    "HTTP/1.1 " status_line "\r\nContent-Type: " ctype "\r\nContent-Length: " #len "\r\n" extra    \
    "Connection: close\r\n\r\n" body
#define TEXT "text/plain; charset=utf-8"
#define PROM "text/plain; version=0.0.4; charset=utf-8"

static void test_metrics(void **state) {
    fixture_reset();
    CHECK("GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: Prometheus/2.45\r\n\r\n",
          RESP("200 OK", PROM, 21, "", "# TYPE x counter\nx 1\n"), 200);
    CHECK("GET /metrics?name[]=x HTTP/1.1\r\nHost: x\r\n\r\n",
          RESP("200 OK", PROM, 21, "", "# TYPE x counter\nx 1\n"), 200);
    CHECK("GET http://example:9100/metrics HTTP/1.1\r\n\r\n",
          RESP("200 OK", PROM, 21, "", "# TYPE x counter\nx 1\n"), 200);
    CHECK("GET /metrics HTTP/1.0\r\n\r\n", RESP("200 OK", PROM, 21, "", "# TYPE x counter\nx 1\n"),
          200);
    /* HEAD: the same head, no body */
    CHECK("HEAD /metrics HTTP/1.1\r\n\r\n", RESP("200 OK", PROM, 21, "", ""), 200);
    /* once per run (whole, byte by byte) of the 5 requests: HEAD renders too,
     * for Content-Length */
    assert_int_equal(fx.metrics_calls, 10);
}

static void test_metrics_failure_and_absent(void **state) {
    fixture_reset();
    fx.metrics_body = NULL;
    CHECK("GET /metrics HTTP/1.1\r\n\r\n",
          RESP("500 Internal Server Error", TEXT, 20, "", "metrics unavailable\n"), 500);

    fixture_reset();
    http_handlers_t h = {cb_write, NULL, NULL, NULL, &fx};
    http_conn_t *c = http_conn_new(&h);
    const char req[] = "GET /metrics HTTP/1.1\r\n\r\n";
    assert_int_equal(http_feed(c, req, sizeof(req) - 1), HTTP_DONE);
    assert_string_equal(fx.out, RESP("404 Not Found", TEXT, 10, "", "not found\n"));
    http_conn_free(c);
    /* without a ready callback: ready */
    fixture_reset();
    c = http_conn_new(&h);
    const char req2[] = "GET /readyz HTTP/1.1\r\n\r\n";
    assert_int_equal(http_feed(c, req2, sizeof(req2) - 1), HTTP_DONE);
    assert_string_equal(fx.out, RESP("200 OK", TEXT, 6, "", "ready\n"));
    http_conn_free(c);
}

static void test_health_and_ready(void **state) {
    fixture_reset();
    CHECK("GET /healthz HTTP/1.1\r\n\r\n", RESP("200 OK", TEXT, 3, "", "ok\n"), 200);
    CHECK("HEAD /healthz HTTP/1.1\r\n\r\n", RESP("200 OK", TEXT, 3, "", ""), 200);
    CHECK("GET /readyz HTTP/1.1\r\n\r\n", RESP("200 OK", TEXT, 6, "", "ready\n"), 200);
    fx.ready = 0;
    fx.reason = "Kafka metadata not available";
    CHECK(
        "GET /readyz HTTP/1.1\r\n\r\n",
        RESP("503 Service Unavailable", TEXT, 40, "", "not ready: Kafka metadata not available\n"),
        503);
    fx.reason = "listeners\r\nX-Injected: 1";
    CHECK("GET /readyz HTTP/1.1\r\n\r\n",
          RESP("503 Service Unavailable", TEXT, 21, "", "not ready: listeners\n"), 503);
    fx.reason = "";
    CHECK("GET /readyz HTTP/1.1\r\n\r\n",
          RESP("503 Service Unavailable", TEXT, 19, "", "not ready: unknown\n"), 503);
}

static void test_not_found_and_methods(void **state) {
    fixture_reset();
    CHECK("GET / HTTP/1.1\r\n\r\n", RESP("404 Not Found", TEXT, 10, "", "not found\n"), 404);
    CHECK("GET /metrics/ HTTP/1.1\r\n\r\n", RESP("404 Not Found", TEXT, 10, "", "not found\n"),
          404);
    CHECK("GET /METRICS HTTP/1.1\r\n\r\n", RESP("404 Not Found", TEXT, 10, "", "not found\n"), 404);
    CHECK("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
          RESP("405 Method Not Allowed", TEXT, 19, "Allow: GET, HEAD\r\n", "method not allowed\n"),
          405);
    CHECK("DELETE /healthz HTTP/1.1\r\n\r\n",
          RESP("405 Method Not Allowed", TEXT, 19, "Allow: GET, HEAD\r\n", "method not allowed\n"),
          405);
    assert_int_equal(fx.metrics_calls, 0);
}

static void test_malformed(void **state) {
    fixture_reset();
    const char *bad = RESP("400 Bad Request", TEXT, 12, "", "bad request\n");
    CHECK("GARBAGE\r\n\r\n", bad, 400);
    CHECK("GET /metrics HTTP/9.9\r\n\r\n",
          RESP("505 HTTP Version Not Supported", TEXT, 27, "", "HTTP version not supported\n"),
          505);
    CHECK("GET /metrics HTTP/0.9\r\n\r\n",
          RESP("505 HTTP Version Not Supported", TEXT, 27, "", "HTTP version not supported\n"),
          505);
    CHECK("GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n", bad, 400);
    CHECK("GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n", bad, 400);
    CHECK("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", bad, 400); /* a TLS ClientHello */
}

/* A request of exactly `total` bytes: padded with one header. */
static char *request_of_size(size_t total, const char *body_headers, const char *body) {
    const char *start = "GET /healthz HTTP/1.1\r\nX-Pad: ";
    size_t fixed = strlen(start) + 2 + strlen(body_headers) + 2 + strlen(body);
    assert_true(total > fixed);
    char *r = malloc(total + 1);
    size_t pad = total - fixed;
    strcpy(r, start);
    memset(r + strlen(start), 'p', pad);
    r[strlen(start) + pad] = '\0';
    strcat(r, "\r\n");
    strcat(r, body_headers);
    strcat(r, "\r\n");
    strcat(r, body);
    assert_int_equal(strlen(r), total);
    return r;
}

static void test_size_limits(void **state) {
    fixture_reset();
    const char *ok = RESP("200 OK", TEXT, 3, "", "ok\n");
    const char *too_large = RESP("431 Request Header Fields Too Large", TEXT, 32, "",
                                 "request header fields too large\n");
    char *r = request_of_size(HTTP_MAX_REQUEST, "", "");
    check(r, HTTP_MAX_REQUEST, ok, 200);
    free(r);
    r = request_of_size(HTTP_MAX_REQUEST + 1, "", "");
    check(r, HTTP_MAX_REQUEST + 1, too_large, 431);
    free(r);
    /* a head that never ends */
    r = request_of_size(20000, "", "");
    check(r, 20000, too_large, 431);
    free(r);

    /* complete head, body beyond the limit: 413 */
    static char body[HTTP_MAX_REQUEST];
    memset(body, 'b', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "Content-Length: %zu\r\n", strlen(body));
    r = request_of_size(HTTP_MAX_REQUEST + 1000, hdr, body);
    fixture_reset();
    check(r, HTTP_MAX_REQUEST + 1000,
          RESP("413 Payload Too Large", TEXT, 18, "", "request too large\n"), 413);
    free(r);
    /* a small body within the limit is read and ignored */
    CHECK("GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", ok, 200);
    CHECK("GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ok,
          200);
}

static void test_url_too_long(void **state) {
    fixture_reset();
    char req[HTTP_MAX_URL + 64];
    char *p = req + sprintf(req, "GET /");
    memset(p, 'u', HTTP_MAX_URL - 1); /* URL of exactly HTTP_MAX_URL bytes: fine */
    p += HTTP_MAX_URL - 1;
    p += sprintf(p, " HTTP/1.1\r\n\r\n");
    check(req, (size_t)(p - req), RESP("404 Not Found", TEXT, 10, "", "not found\n"), 404);
    p = req + sprintf(req, "GET /");
    memset(p, 'u', HTTP_MAX_URL);
    p += HTTP_MAX_URL;
    p += sprintf(p, " HTTP/1.1\r\n\r\n");
    check(req, (size_t)(p - req), RESP("414 URI Too Long", TEXT, 13, "", "URI too long\n"), 414);
}

static void test_pipelined_second_request_ignored(void **state) {
    fixture_reset();
    http_conn_t *c = conn_new();
    const char req[] = "GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n";
    assert_int_equal(http_feed(c, req, sizeof(req) - 1), HTTP_DONE);
    assert_string_equal(fx.out, RESP("200 OK", TEXT, 3, "", "ok\n"));
    assert_int_equal(fx.metrics_calls, 0);
    http_conn_free(c);
}

static void test_timeout(void **state) {
    fixture_reset();
    http_conn_t *c = conn_new();
    assert_int_equal(http_status(c), 0);
    assert_int_equal(http_feed(c, "GET /hea", 8), HTTP_MORE);
    assert_int_equal(http_feed(c, "", 0), HTTP_MORE);
    assert_int_equal(http_timeout(c), HTTP_DONE);
    assert_string_equal(fx.out, RESP("408 Request Timeout", TEXT, 16, "", "request timeout\n"));
    assert_int_equal(http_status(c), 408);
    /* nothing more after a response */
    size_t len = fx.len;
    assert_int_equal(http_timeout(c), HTTP_DONE);
    assert_int_equal(http_feed(c, "lthz HTTP/1.1\r\n\r\n", 17), HTTP_DONE);
    assert_int_equal(fx.len, len);
    http_conn_free(c);
}

#define JSON "application/json"

/* GET /clients and /sessions: the query's offset and limit, bounded. */
static void test_list_pages(void **state) {
    (void)state;
    fixture_reset();
    CHECK("GET /clients HTTP/1.1\r\n\r\n", RESP("200 OK", JSON, 3, "", "{}\n"), 200);
    assert_string_equal(fx.list_args, "0 0 100");
    CHECK("GET /sessions?offset=7&limit=2 HTTP/1.1\r\n\r\n", RESP("200 OK", JSON, 3, "", "{}\n"),
          200);
    assert_string_equal(fx.list_args, "1 7 2");
    CHECK("GET /clients?x=1&limit=1000&offset=1000000000 HTTP/1.1\r\n\r\n",
          RESP("200 OK", JSON, 3, "", "{}\n"), 200);
    assert_string_equal(fx.list_args, "0 1000000000 1000");
    CHECK("HEAD /clients HTTP/1.1\r\n\r\n", RESP("200 OK", JSON, 3, "", ""), 200);
    fx.list_args[0] = '\0';
#define BAD_LIMIT                                                                                  \
    RESP("400 Bad Request", TEXT, 53, "", "bad request: limit must be an integer from 1 to 1000\n")
#define BAD_OFFSET                                                                                 \
    RESP("400 Bad Request", TEXT, 60, "",                                                          \
         "bad request: offset must be an integer from 0 to 1000000000\n")
    CHECK("GET /clients?limit=1001 HTTP/1.1\r\n\r\n", BAD_LIMIT, 400);
    CHECK("GET /clients?limit=0 HTTP/1.1\r\n\r\n", BAD_LIMIT, 400);
    CHECK("GET /clients?limit= HTTP/1.1\r\n\r\n", BAD_LIMIT, 400);
    CHECK("GET /clients?limit=-1 HTTP/1.1\r\n\r\n", BAD_LIMIT, 400);
    CHECK("GET /sessions?offset=1000000001 HTTP/1.1\r\n\r\n", BAD_OFFSET, 400);
    CHECK("GET /sessions?offset=99999999999999999999999 HTTP/1.1\r\n\r\n", BAD_OFFSET, 400);
    CHECK("GET /sessions?offset=1x HTTP/1.1\r\n\r\n", BAD_OFFSET, 400);
    assert_string_equal(fx.list_args, "");
    fx.list_fails = true;
    CHECK("GET /clients HTTP/1.1\r\n\r\n",
          RESP("500 Internal Server Error", TEXT, 14, "", "out of memory\n"), 500);
    /* Other paths stay 404; without the callback these do too. */
    CHECK("GET /clients/x HTTP/1.1\r\n\r\n", RESP("404 Not Found", TEXT, 10, "", "not found\n"),
          404);
    http_handlers_t h = {cb_write, NULL, NULL, NULL, &fx};
    http_conn_t *c = http_conn_new(&h);
    fx.len = 0;
    const char req[] = "GET /sessions HTTP/1.1\r\n\r\n";
    assert_int_equal(http_feed(c, req, sizeof(req) - 1), HTTP_DONE);
    assert_string_equal(fx.out, RESP("404 Not Found", TEXT, 10, "", "not found\n"));
    http_conn_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_metrics_failure_and_absent),
        cmocka_unit_test(test_health_and_ready),
        cmocka_unit_test(test_not_found_and_methods),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_url_too_long),
        cmocka_unit_test(test_pipelined_second_request_ignored),
        cmocka_unit_test(test_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
