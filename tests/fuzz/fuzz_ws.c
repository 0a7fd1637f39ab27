/* libFuzzer target for the WebSocket upgrade request and frame engine
 * (net/ws.h).
 *
 * The input is read twice. As an upgrade request: a result must be "need
 * more" for every prefix shorter than a complete head, and a complete one
 * must be 101 or a refusal with its exact response, the same for the head
 * alone. As client frames: fed whole and in chunks (sizes taken from the
 * input's own bytes, so a run is reproducible), the payload delivered, the
 * close frame sent back (pongs aside) and whether and why the engine closed
 * must agree. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "net/ws.h"

#define MAX_MESSAGE 1024
#define OUT_CAP (1 << 20)

static char *origins[] = {"https://ops.example.com"};
static const ws_upgrade_opts_t opts = {"/mqtt", origins, 1};

static void check_upgrade(const uint8_t *data, size_t size) {
    ws_upgrade_t u;
    int rc = ws_upgrade_parse(data, size, &opts, &u);
    if (rc == 0) {
        CHECK(size < WS_MAX_HEAD);
        return;
    }
    CHECK(rc == 1);
    CHECK(u.response_len > 0 && u.response_len <= sizeof(u.response));
    if (u.status == 431) {
        CHECK(size >= WS_MAX_HEAD);
        return;
    }
    CHECK(u.head_len >= 4 && u.head_len <= size && u.head_len <= WS_MAX_HEAD);
    CHECK(memcmp(data + u.head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(u.status == 101 || u.status == 400 || u.status == 403 || u.status == 404 ||
          u.status == 426);
    CHECK((u.status == 101) == (u.subprotocol != NULL));
    /* The head alone gives the same answer; one byte less is "need more". */
    ws_upgrade_t v;
    CHECK(ws_upgrade_parse(data, u.head_len, &opts, &v) == 1);
    CHECK(v.status == u.status && v.response_len == u.response_len &&
          memcmp(v.response, u.response, u.response_len) == 0);
    CHECK(ws_upgrade_parse(data, u.head_len - 1, &opts, &v) == 0);
}

typedef struct {
    uint8_t *in, *out;
    size_t in_len, out_len;
} sink_t;

static bool sink_data(void *ud, const uint8_t *p, size_t n) {
    sink_t *s = ud;
    CHECK(s->in_len + n <= OUT_CAP);
    memcpy(s->in + s->in_len, p, n);
    s->in_len += n;
    return true;
}

static int sink_send(void *ud, const uint8_t *p, size_t n) {
    sink_t *s = ud;
    CHECK(s->out_len + n <= OUT_CAP);
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    return 0;
}

static const ws_frames_ops_t ops = {sink_data, sink_send};

typedef struct {
    sink_t s;
    int rc;
    const char *why;
} run_t;

/* chunked: sizes 1..16 from the input's bytes. */
static void run_frames(const uint8_t *data, size_t size, bool chunked, run_t *r) {
    ws_frames_t *f = ws_frames_new(&ops, &r->s, MAX_MESSAGE);
    CHECK(f != NULL);
    r->rc = WS_OPEN;
    for (size_t off = 0, k = 0; off < size && r->rc == WS_OPEN; k++) {
        size_t n = chunked ? (size_t)(data[k % size] & 15) + 1 : size;
        if (n > size - off)
            n = size - off;
        r->rc = ws_frames_input(f, data + off, n);
        off += n;
    }
    r->why = r->rc == WS_DONE ? ws_frames_why(f) : NULL;
    /* After a close nothing more goes out. */
    if (r->rc == WS_DONE) {
        size_t before = r->s.out_len;
        CHECK(ws_frames_send(f, "x", 1) == -1);
        CHECK(r->s.out_len == before);
    }
    ws_frames_free(f);
}

/* Drops the pongs from the server frames in out[0..n) (the engine sends only
 * pongs and a close): a pong still queued when a close is queued is not
 * sent, so how many go out depends on where reads end (RFC 6455 5.5.1 lets a
 * close go first). Returns the new length. */
static size_t without_pongs(uint8_t *out, size_t n) {
    size_t in = 0, o = 0;
    while (in < n) {
        CHECK(n - in >= 2 && (out[in + 1] & 0x80) == 0 && (out[in + 1] & 0x7f) <= 125);
        size_t len = 2 + (out[in + 1] & 0x7fu);
        CHECK(len <= n - in);
        CHECK(out[in] == 0x8a || out[in] == 0x88);
        if (out[in] == 0x88) {
            memmove(out + o, out + in, len);
            o += len;
        }
        in += len;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_upgrade(data, size);
    if (size == 0)
        return 0;
    static uint8_t bufs[4][OUT_CAP];
    run_t a = {{bufs[0], bufs[1], 0, 0}, 0, NULL}, b = {{bufs[2], bufs[3], 0, 0}, 0, NULL};
    run_frames(data, size, false, &a);
    run_frames(data, size, true, &b);
    CHECK(a.rc == b.rc);
    CHECK(a.s.in_len == b.s.in_len && memcmp(a.s.in, b.s.in, a.s.in_len) == 0);
    a.s.out_len = without_pongs(a.s.out, a.s.out_len);
    b.s.out_len = without_pongs(b.s.out, b.s.out_len);
    CHECK(a.s.out_len == b.s.out_len && memcmp(a.s.out, b.s.out, a.s.out_len) == 0);
    CHECK((a.why == NULL) == (b.why == NULL));
    if (a.why)
        CHECK(strcmp(a.why, b.why) == 0);
    return 0;
}
