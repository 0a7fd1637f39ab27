/* net/ws.c: the upgrade request (exact responses for the upgrade and every
 * refusal, every prefix of a valid request is "need more", the head bound)
 * and the frame engine (payload across and within frames, fragments,
 * ping/pong, the close handshake, and the exact close frame of each
 * violation), fed whole and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"

/* ---- the upgrade ---- */

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ==" /* RFC 6455 1.3 */
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static char *origins[] = {"https://ops.example.com", "http://localhost:8080"};
static const ws_upgrade_opts_t opts = {"/mqtt", origins, 2};

static char req_buf[16384];

/* A request with the given path, version, key, protocol and extra header
 * lines (NULL: left out). */
static const char *request(const char *path, const char *version, const char *key,
                           const char *protocol, const char *extra) {
    int n = snprintf(req_buf, sizeof(req_buf),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:8083\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n",
                     path);
    if (version)
        n += snprintf(req_buf + n, sizeof(req_buf) - (size_t)n, "Sec-WebSocket-Version: %s\r\n",
                      version);
    if (key)
        n += snprintf(req_buf + n, sizeof(req_buf) - (size_t)n, "Sec-WebSocket-Key: %s\r\n", key);
    if (protocol)
        n += snprintf(req_buf + n, sizeof(req_buf) - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n",
                      protocol);
    snprintf(req_buf + n, sizeof(req_buf) - (size_t)n, "%s\r\n", extra ? extra : "");
    return req_buf;
}

static ws_upgrade_t parse(const char *req) {
    ws_upgrade_t u;
    assert_int_equal(ws_upgrade_parse((const uint8_t *)req, strlen(req), &opts, &u), 1);
    assert_int_equal(u.head_len, strlen(req));
    return u;
}

static void assert_response(const ws_upgrade_t *u, const char *want) {
    assert_int_equal(u->response_len, strlen(want));
    assert_memory_equal(u->response, want, u->response_len);
}

static void assert_refused(const char *req, int status, const char *extra_head, const char *why) {
    ws_upgrade_t u = parse(req);
    char want[512];
    const char *phrase = status == 403   ? "Forbidden"
                         : status == 404 ? "Not Found"
                         : status == 426 ? "Upgrade Required"
                                         : "Bad Request";
    snprintf(want, sizeof(want),
             "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s\n",
             status, phrase, extra_head, strlen(why) + 1, why);
    assert_int_equal(u.status, status);
    assert_string_equal(u.why, why);
    assert_response(&u, want);
}

static void test_upgrade_ok(void **state) {
    (void)state;
    const char *req = request("/mqtt", "13", RFC_KEY, "mqtt", NULL);
    ws_upgrade_t u = parse(req);
    assert_int_equal(u.status, 101);
    assert_string_equal(u.subprotocol, "mqtt");
    assert_response(&u, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                        "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
    /* Every prefix is "need more". */
    for (size_t i = 0; i < strlen(req); i++) {
        ws_upgrade_t p;
        assert_int_equal(ws_upgrade_parse((const uint8_t *)req, i, &opts, &p), 0);
    }
    /* Frame bytes after the head are not part of it. */
    char more[2048];
    snprintf(more, sizeof(more), "%s\x82\x80", req);
    ws_upgrade_t m;
    assert_int_equal(ws_upgrade_parse((const uint8_t *)more, strlen(more), &opts, &m), 1);
    assert_int_equal(m.status, 101);
    assert_int_equal(m.head_len, strlen(req));
}

static void test_upgrade_subprotocols(void **state) {
    (void)state;
    /* The client's order decides; a list or several headers. */
    assert_string_equal(parse(request("/mqtt", "13", RFC_KEY, "mqttv3.1, mqtt", NULL)).subprotocol,
                        "mqttv3.1");
    assert_string_equal(parse(request("/mqtt", "13", RFC_KEY, "wamp,mqtt", NULL)).subprotocol,
                        "mqtt");
    assert_string_equal(
        parse(request("/mqtt", "13", RFC_KEY, "wamp", "Sec-WebSocket-Protocol: mqttv3.1\r\n"))
            .subprotocol,
        "mqttv3.1");
    assert_refused(request("/mqtt", "13", RFC_KEY, NULL, NULL), 400, "",
                   "no acceptable Sec-WebSocket-Protocol (mqtt, mqttv3.1)");
    assert_refused(request("/mqtt", "13", RFC_KEY, "wamp, MQTT", NULL), 400, "",
                   "no acceptable Sec-WebSocket-Protocol (mqtt, mqttv3.1)");
}

static void test_upgrade_refusals(void **state) {
    (void)state;
    assert_refused(request("/other", "13", RFC_KEY, "mqtt", NULL), 404, "",
                   "no WebSocket endpoint at this path");
    assert_refused(request("/mqtt/", "13", RFC_KEY, "mqtt", NULL), 404, "",
                   "no WebSocket endpoint at this path");
    /* A query does not change the path. */
    assert_int_equal(parse(request("/mqtt?x=1", "13", RFC_KEY, "mqtt", NULL)).status, 101);
    assert_refused(request("/mqtt", "8", RFC_KEY, "mqtt", NULL), 426,
                   "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only");
    assert_refused(request("/mqtt", NULL, RFC_KEY, "mqtt", NULL), 426,
                   "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 only");
    const char *bad_keys[] = {NULL,
                              "",
                              "dGhlIHNhbXBsZSBub25jZQ=",
                              "dGhlIHNhbXBsZSBub25jZR==",
                              "dGhlIHNhbXBsZSBub25jZ*==",
                              "dGhlIHNhbXBsZSBub25jZQ==="};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        assert_refused(request("/mqtt", "13", bad_keys[i], "mqtt", NULL), 400, "",
                       "missing or invalid Sec-WebSocket-Key");
    assert_refused("GET /mqtt HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, "",
                   "not a WebSocket upgrade");
    assert_refused("POST /mqtt HTTP/1.1\r\nHost: h\r\n\r\n", 400, "",
                   "not an HTTP/1.1 GET request");
    assert_refused("GET /mqtt HTTP/1.0\r\nHost: h\r\n\r\n", 400, "", "not an HTTP/1.1 GET request");
    assert_refused("GET /mqtt HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400, "",
                   "not an HTTP/1.1 GET request");
    assert_refused("\x16\x03\x01\x02\x05\r\n\r\n", 400, "", "not an HTTP/1.1 GET request");
}

static void test_upgrade_origins(void **state) {
    (void)state;
    assert_int_equal(
        parse(request("/mqtt", "13", RFC_KEY, "mqtt", "Origin: https://ops.example.com\r\n"))
            .status,
        101);
    assert_int_equal(
        parse(request("/mqtt", "13", RFC_KEY, "mqtt", "Origin: http://localhost:8080\r\n")).status,
        101);
    const char *bad[] = {"Origin: https://ops.example.com.evil.net\r\n",
                         "Origin: http://ops.example.com\r\n", "Origin: https://ops.example.co\r\n",
                         "Origin: http://localhost\r\n", "Origin: null\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused(request("/mqtt", "13", RFC_KEY, "mqtt", bad[i]), 403, "",
                       "Origin not allowed");
    /* Without an allow-list any Origin passes. */
    const ws_upgrade_opts_t any = {"/mqtt", NULL, 0};
    const char *req = request("/mqtt", "13", RFC_KEY, "mqtt", "Origin: https://x.example\r\n");
    ws_upgrade_t u;
    assert_int_equal(ws_upgrade_parse((const uint8_t *)req, strlen(req), &any, &u), 1);
    assert_int_equal(u.status, 101);
}

static void test_upgrade_head_bound(void **state) {
    (void)state;
    static char big[WS_MAX_HEAD + 64];
    /* Exactly at the bound: accepted. */
    const char *base = request("/mqtt", "13", RFC_KEY, "mqtt", NULL);
    size_t blen = strlen(base) - 2, pad = WS_MAX_HEAD - strlen(base) - strlen("X-Pad: \r\n");
    memcpy(big, base, blen);
    memcpy(big + blen, "X-Pad: ", 7);
    memset(big + blen + 7, 'a', pad);
    memcpy(big + blen + 7 + pad, "\r\n\r\n", 5);
    assert_int_equal(strlen(big), WS_MAX_HEAD);
    assert_int_equal(parse(big).status, 101);
    /* One byte more: 431 once the bound is reached without the end. */
    memmove(big + blen + 8, big + blen + 7, pad + 5);
    ws_upgrade_t u;
    assert_int_equal(ws_upgrade_parse((const uint8_t *)big, WS_MAX_HEAD - 1, &opts, &u), 0);
    assert_int_equal(ws_upgrade_parse((const uint8_t *)big, WS_MAX_HEAD, &opts, &u), 1);
    assert_int_equal(u.status, 431);
    assert_response(&u, "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        "Content-Type: text/plain\r\nContent-Length: 29\r\n"
                        "Connection: close\r\n\r\nrequest head over 8192 bytes\n");
}

/* ---- frames ---- */

typedef struct {
    uint8_t in[4096]; /* payload delivered */
    size_t in_len;
    uint8_t out[4096]; /* frame bytes sent */
    size_t out_len;
    bool stop_after; /* data() answers false */
} sink_t;

static bool sink_data(void *ud, const uint8_t *p, size_t n) {
    sink_t *s = ud;
    assert_true(s->in_len + n <= sizeof(s->in));
    memcpy(s->in + s->in_len, p, n);
    s->in_len += n;
    return !s->stop_after;
}

static int sink_send(void *ud, const uint8_t *p, size_t n) {
    sink_t *s = ud;
    assert_true(s->out_len + n <= sizeof(s->out));
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    return 0;
}

static const ws_frames_ops_t sink_ops = {sink_data, sink_send};

/* A client frame: masked unless `unmasked`. Returns its length. */
static size_t frame(uint8_t *out, bool fin, uint8_t opcode, const void *payload, size_t n,
                    bool unmasked) {
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t o = 0;
    out[o++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t m = unmasked ? 0 : 0x80;
    if (n < 126) {
        out[o++] = (uint8_t)(m | n);
    } else {
        out[o++] = m | 126;
        out[o++] = (uint8_t)(n >> 8);
        out[o++] = (uint8_t)n;
    }
    if (!unmasked) {
        memcpy(out + o, key, 4);
        o += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[o + i] = (uint8_t)(((const uint8_t *)payload)[i] ^ (unmasked ? 0 : key[i % 4]));
    return o + n;
}

/* Feeds `in` whole (bytewise false) or one byte at a time; returns the last result. */
static int feed(ws_frames_t *f, const uint8_t *in, size_t n, bool bytewise) {
    int rc = WS_OPEN;
    if (!bytewise)
        return ws_frames_input(f, in, n);
    for (size_t i = 0; i < n && rc == WS_OPEN; i++)
        rc = ws_frames_input(f, in + i, 1);
    return rc;
}

static void test_frames_payload(void **state) {
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        sink_t s = {0};
        ws_frames_t *f = ws_frames_new(&sink_ops, &s, 1000);
        assert_non_null(f);
        uint8_t in[512];
        size_t n = 0;
        /* Two PINGREQs in one frame, then a PUBLISH split over a fragmented
         * message (binary + continuation) with a ping between. */
        n += frame(in + n, true, 0x2, "\xc0\x00\xc0\x00", 4, false);
        n += frame(in + n, false, 0x2, "\x30\x07\x00\x01", 4, false);
        n += frame(in + n, true, 0x9, "hi", 2, false);
        n += frame(in + n, true, 0x0, "tabc", 4, false);
        assert_int_equal(feed(f, in, n, bytewise), WS_OPEN);
        assert_int_equal(s.in_len, 12);
        assert_memory_equal(s.in, "\xc0\x00\xc0\x00\x30\x07\x00\x01tabc", 12);
        /* The pong, unmasked, with the ping's payload. */
        assert_int_equal(s.out_len, 4);
        assert_memory_equal(s.out, "\x8a\x02hi", 4);
        /* Output: one binary frame per message; 126 and more in 16 bits. */
        s.out_len = 0;
        assert_int_equal(ws_frames_send(f, "\x20\x02\x00\x00", 4), 0);
        assert_memory_equal(s.out, "\x82\x04\x20\x02\x00\x00", 6);
        uint8_t big[300];
        memset(big, 'x', sizeof(big));
        s.out_len = 0;
        assert_int_equal(ws_frames_send(f, big, sizeof(big)), 0);
        assert_int_equal(s.out_len, 304);
        assert_memory_equal(s.out, "\x82\x7e\x01\x2c", 4);
        assert_memory_equal(s.out + 4, big, sizeof(big));
        ws_frames_free(f);
    }
}

/* Feeds `in` and expects exactly the close frame `code`, WS_DONE and `why`. */
static void expect_close(const uint8_t *in, size_t n, uint64_t max, uint16_t code, const char *why,
                         size_t delivered) {
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        sink_t s = {0};
        ws_frames_t *f = ws_frames_new(&sink_ops, &s, max);
        assert_int_equal(feed(f, in, n, bytewise), WS_DONE);
        uint8_t want[4] = {0x88, 0x02, (uint8_t)(code >> 8), (uint8_t)code};
        assert_int_equal(s.out_len, 4);
        assert_memory_equal(s.out, want, 4);
        assert_string_equal(ws_frames_why(f), why);
        assert_false(ws_frames_by_peer(f));
        assert_int_equal(s.in_len, delivered);
        /* Nothing goes out after the close frame. */
        assert_int_equal(ws_frames_send(f, "x", 1), -1);
        ws_frames_close(f, 1000);
        assert_int_equal(s.out_len, 4);
        ws_frames_free(f);
    }
}

static void test_frames_violations(void **state) {
    (void)state;
    uint8_t in[512];
    size_t n;
    n = frame(in, true, 0x2, "\xc0\x00", 2, true);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
    n = frame(in, true, 0x1, "hello", 5, false);
    expect_close(in, n, 1000, 1003, "WebSocket: text frame (close 1003)", 0);
    /* A continuation without a start, an unknown opcode. */
    n = frame(in, true, 0x0, "ab", 2, false);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
    n = frame(in, true, 0x3, "ab", 2, false);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
    /* A frame over the bound; exactly at it passes. */
    uint8_t body[200];
    memset(body, 0, sizeof(body));
    n = frame(in, true, 0x2, body, 129, false);
    expect_close(in, n, 128, 1009, "WebSocket: frame over the bound (close 1009)", 0);
    sink_t s = {0};
    ws_frames_t *f = ws_frames_new(&sink_ops, &s, 128);
    n = frame(in, true, 0x2, body, 128, false);
    assert_int_equal(ws_frames_input(f, in, n), WS_OPEN);
    assert_int_equal(s.in_len, 128);
    ws_frames_free(f);
    /* A fragmented message whose sum is over it. */
    n = frame(in, false, 0x2, body, 100, false);
    n += frame(in + n, true, 0x0, body, 29, false);
    expect_close(in, n, 128, 1009, "WebSocket: message over the bound (close 1009)", 100);
    /* Invalid UTF-8 in a close reason: a bad byte, an overlong form, a
     * surrogate, a sequence cut at the end. */
    const char *bad_reasons[] = {"\x03\xe8\xff\xfe", "\x03\xe8\xc0\xaf", "\x03\xe8\xed\xa0\x80",
                                 "\x03\xe8ok\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
        n = frame(in, true, 0x8, bad_reasons[i], strlen(bad_reasons[i]), false);
        expect_close(in, n, 1000, 1007, "WebSocket: invalid UTF-8 in a close reason (close 1007)",
                     0);
    }
    /* A close code that may not be sent. */
    n = frame(in, true, 0x8, "\x03\xed", 2, false);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
    /* A control frame over 125 bytes. */
    n = frame(in, true, 0x9, body, 126, false);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
    /* A fragmented control frame. */
    n = frame(in, false, 0x9, "ab", 2, false);
    expect_close(in, n, 1000, 1002, "WebSocket: protocol violation (close 1002)", 0);
}

static void test_frames_close_handshake(void **state) {
    (void)state;
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        sink_t s = {0};
        ws_frames_t *f = ws_frames_new(&sink_ops, &s, 1000);
        uint8_t in[64];
        size_t n = frame(in, true, 0x8,
                         "\x03\xe8"
                         "bye \xe2\x82\xac",
                         9, false);
        assert_int_equal(feed(f, in, n, bytewise), WS_DONE);
        /* The answer echoes the code and reason. */
        assert_int_equal(s.out_len, 11);
        assert_memory_equal(s.out,
                            "\x88\x09\x03\xe8"
                            "bye \xe2\x82\xac",
                            11);
        assert_true(ws_frames_by_peer(f));
        assert_string_equal(ws_frames_why(f), "WebSocket: closed by the client");
        ws_frames_free(f);
    }
    /* A close frame across wslay's 4 KiB read buffer, after 4,088 bytes of
     * a data frame: its reason still reaches wslay's UTF-8 check whole. */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        sink_t s = {0};
        ws_frames_t *f = ws_frames_new(&sink_ops, &s, 5000);
        static uint8_t in[4200], body[4080];
        memset(body, 'x', sizeof(body));
        size_t n = frame(in, true, 0x2, body, sizeof(body), false);
        assert_int_equal(n, 4088);
        n += frame(in + n, true, 0x8, "\x03\xe8\xe2\x82\xac\xe2\x82\xac", 8, false);
        assert_int_equal(feed(f, in, n, bytewise), WS_DONE);
        assert_int_equal(s.in_len, 4080);
        assert_true(ws_frames_by_peer(f));
        assert_int_equal(s.out_len, 10);
        assert_memory_equal(s.out, "\x88\x08\x03\xe8\xe2\x82\xac\xe2\x82\xac", 10);
        ws_frames_free(f);
    }
    /* Ours (the connection closes): one close frame, then nothing. */
    sink_t s = {0};
    ws_frames_t *f = ws_frames_new(&sink_ops, &s, 1000);
    ws_frames_close(f, 1001);
    ws_frames_close(f, 1000);
    assert_int_equal(s.out_len, 4);
    assert_memory_equal(s.out, "\x88\x02\x03\xe9", 4);
    assert_int_equal(ws_frames_send(f, "x", 1), -1);
    ws_frames_free(f);
}

/* A payload over 65535 bytes: a 64-bit length. */
static int count_send(void *ud, const uint8_t *p, size_t n) {
    sink_t *s = ud;
    if (s->out_len + n <= sizeof(s->out))
        memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    return 0;
}

static void test_frames_send_64bit_length(void **state) {
    (void)state;
    static const ws_frames_ops_t ops = {sink_data, count_send};
    sink_t s = {0};
    ws_frames_t *f = ws_frames_new(&ops, &s, 1000);
    static uint8_t big[70000];
    assert_int_equal(ws_frames_send(f, big, sizeof(big)), 0);
    assert_int_equal(s.out_len, 10 + sizeof(big));
    assert_memory_equal(s.out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
    ws_frames_free(f);
}

static void test_frames_stop(void **state) {
    (void)state;
    /* The protocol closed the connection: nothing more is delivered. */
    sink_t s = {.stop_after = true};
    ws_frames_t *f = ws_frames_new(&sink_ops, &s, 1000);
    uint8_t in[64];
    size_t n = frame(in, true, 0x2, "ab", 2, false);
    n += frame(in + n, true, 0x2, "cd", 2, false);
    ws_frames_input(f, in, n);
    assert_int_equal(s.in_len, 2);
    ws_frames_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_ok),
        cmocka_unit_test(test_upgrade_subprotocols),
        cmocka_unit_test(test_upgrade_refusals),
        cmocka_unit_test(test_upgrade_origins),
        cmocka_unit_test(test_upgrade_head_bound),
        cmocka_unit_test(test_frames_payload),
        cmocka_unit_test(test_frames_violations),
        cmocka_unit_test(test_frames_close_handshake),
        cmocka_unit_test(test_frames_send_64bit_length),
        cmocka_unit_test(test_frames_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
