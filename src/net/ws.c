/* WebSocket without I/O (see net/ws.h): the upgrade request through
 * http_parser (the parser the metrics endpoint uses), the frames through
 * wslay's event engine, fed from and writing to the caller's buffers. */
#include "net/ws.h"

#include <assert.h>
#include <http_parser.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

/* ---- the upgrade ---- */

#define INVALID_UTF8 "WebSocket: invalid UTF-8 in a close reason (close 1007)"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PROTOCOLS_MAX 256

typedef struct {
    const char *p;
    size_t n;
} view_t;

typedef struct {
    view_t url, host, upgrade, connection, key, version, origin;
    char protocols[PROTOCOLS_MAX]; /* every Sec-WebSocket-Protocol, ", " between */
    size_t protocols_len;
    bool protocols_long;
    int field; /* the header the next value belongs to: an index into the views, -1 none */
    bool done;
} req_t;

static const char *const header_names[] = {"host",
                                           "upgrade",
                                           "connection",
                                           "sec-websocket-key",
                                           "sec-websocket-version",
                                           "origin",
                                           "sec-websocket-protocol"};

static view_t *header_view(req_t *r, int i) {
    view_t *v[] = {&r->host, &r->upgrade, &r->connection, &r->key, &r->version, &r->origin};
    return i >= 0 && i < 6 ? v[i] : NULL;
}

static int on_url(http_parser *hp, const char *at, size_t len) {
    req_t *r = hp->data;
    r->url = (view_t){at, len};
    return 0;
}

static int on_field(http_parser *hp, const char *at, size_t len) {
    req_t *r = hp->data;
    r->field = -1;
    for (int i = 0; i < (int)(sizeof(header_names) / sizeof(header_names[0])); i++)
        if (len == strlen(header_names[i]) && strncasecmp(at, header_names[i], len) == 0)
            r->field = i;
    return 0;
}

static int on_value(http_parser *hp, const char *at, size_t len) {
    req_t *r = hp->data;
    if (r->field == 6) { /* may come more than once: one list */
        size_t sep = r->protocols_len ? 2 : 0;
        if (r->protocols_len + sep + len >= PROTOCOLS_MAX) {
            r->protocols_long = true;
            return 0;
        }
        memcpy(r->protocols + r->protocols_len, ", ", sep);
        memcpy(r->protocols + r->protocols_len + sep, at, len);
        r->protocols_len += sep + len;
    } else if (header_view(r, r->field)) {
        *header_view(r, r->field) = (view_t){at, len};
    }
    return 0;
}

static int on_headers_complete(http_parser *hp) {
    ((req_t *)hp->data)->done = true;
    return 1; /* no body */
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

/* Whether the comma-separated list `v` holds `token` (case-insensitive when `nocase`). */
static bool list_has(view_t v, const char *token, bool nocase) {
    size_t tl = strlen(token), i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - s == tl &&
            (nocase ? strncasecmp(v.p + s, token, tl) : strncmp(v.p + s, token, tl)) == 0)
            return true;
    }
    return false;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A key is 16 bytes in base64: 22 characters, the last with its low 4 bits
 * zero, and "==". */
static bool key_valid(view_t k) {
    if (k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        const char *at = memchr(b64, k.p[i], 64);
        if (!k.p[i] || !at || (i == 21 && ((at - b64) & 0xf)))
            return false;
    }
    return true;
}

static void accept_value(view_t key, char out[29]) {
    unsigned char md[SHA_DIGEST_LENGTH];
    char in[24 + sizeof(WS_GUID)];
    memcpy(in, key.p, 24);
    memcpy(in + 24, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1((const unsigned char *)in, 24 + sizeof(WS_GUID) - 1, md);
    size_t o = 0;
    for (size_t i = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)md[i] << 16 | (uint32_t)md[i + 1] << 8 | md[i + 2];
        for (int s = 18; s >= 0; s -= 6)
            out[o++] = b64[(v >> s) & 63];
    }
    uint32_t v = (uint32_t)md[18] << 16 | (uint32_t)md[19] << 8;
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = '=';
    out[o] = '\0';
}

static const char *reason_phrase(int status) {
    switch (status) {
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Bad Request";
    }
}

static int refuse(ws_upgrade_t *u, int status, const char *why) {
    u->status = status;
    u->why = why;
    int n = snprintf(u->response, sizeof(u->response),
                     "HTTP/1.1 %d %s\r\n"
                     "%s"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s\n",
                     status, reason_phrase(status),
                     status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", strlen(why) + 1, why);
    u->response_len = n > 0 && (size_t)n < sizeof(u->response) ? (size_t)n : 0;
    return 1;
}

static bool origin_allowed(view_t origin, const ws_upgrade_opts_t *o) {
    if (!origin.p || o->n_origins == 0)
        return true;
    for (size_t i = 0; i < o->n_origins; i++)
        if (strlen(o->origins[i]) == origin.n && memcmp(o->origins[i], origin.p, origin.n) == 0)
            return true;
    return false;
}

int ws_upgrade_parse(const uint8_t *buf, size_t len, const ws_upgrade_opts_t *o, ws_upgrade_t *u) {
    memset(u, 0, sizeof(*u));
    const uint8_t *end = NULL;
    for (size_t i = 3; i < len && i < WS_MAX_HEAD; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    if (!end)
        return len >= WS_MAX_HEAD ? refuse(u, 431, "request head over 8192 bytes") : 0;
    u->head_len = (size_t)(end - buf);

    req_t r = {.field = -1};
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &r;
    http_parser_execute(&hp, &parser_settings, (const char *)buf, u->head_len);
    if (!r.done || HTTP_PARSER_ERRNO(&hp) != HPE_OK || hp.method != HTTP_GET ||
        hp.http_major != 1 || hp.http_minor < 1 || !r.host.p)
        return refuse(u, 400, "not an HTTP/1.1 GET request");
    struct http_parser_url pu;
    http_parser_url_init(&pu);
    view_t path = {"/", 1};
    if (http_parser_parse_url(r.url.p, r.url.n, 0, &pu) != 0)
        return refuse(u, 400, "bad request target");
    if (pu.field_set & (1 << UF_PATH))
        path = (view_t){r.url.p + pu.field_data[UF_PATH].off, pu.field_data[UF_PATH].len};
    if (path.n != strlen(o->path) || memcmp(path.p, o->path, path.n) != 0)
        return refuse(u, 404, "no WebSocket endpoint at this path");
    if (!list_has(r.upgrade, "websocket", true) || !list_has(r.connection, "upgrade", true))
        return refuse(u, 400, "not a WebSocket upgrade");
    if (r.version.n != 2 || memcmp(r.version.p, "13", 2) != 0)
        return refuse(u, 426, "WebSocket version 13 only");
    if (!key_valid(r.key))
        return refuse(u, 400, "missing or invalid Sec-WebSocket-Key");
    if (!origin_allowed(r.origin, o))
        return refuse(u, 403, "Origin not allowed");
    view_t protos = {r.protocols, r.protocols_len};
    if (r.protocols_long)
        return refuse(u, 400, "Sec-WebSocket-Protocol too long");
    /* The client's order decides; the MQTT version is CONNECT's business. */
    u->subprotocol = NULL;
    for (size_t i = 0; i < protos.n && !u->subprotocol;) {
        size_t s = i;
        while (i < protos.n && protos.p[i] != ',')
            i++;
        view_t one = {protos.p + s, i - s};
        if (list_has(one, "mqtt", false))
            u->subprotocol = "mqtt";
        else if (list_has(one, "mqttv3.1", false))
            u->subprotocol = "mqttv3.1";
        i++;
    }
    if (!u->subprotocol)
        return refuse(u, 400, "no acceptable Sec-WebSocket-Protocol (mqtt, mqttv3.1)");
    char acc[29];
    accept_value(r.key, acc);
    u->status = 101;
    int n = snprintf(u->response, sizeof(u->response),
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n"
                     "\r\n",
                     acc, u->subprotocol);
    u->response_len = (size_t)n;
    return 1;
}

/* ---- frames ---- */

/* Control frames reach wslay whole, in one read: wslay checks a close
 * reason's UTF-8 per chunk from the chunk's third byte, so a reason split
 * over two reads is misjudged both ways. The gate below follows the frames
 * it hands wslay (headers parsed, payloads skipped) and holds a control
 * frame back, in `held`, until all of it (at most 2 + 4 + 125 bytes) is there. */
#define HELD_MAX (2 + 8 + 4 + 125)

struct ws_frames {
    wslay_event_context_ptr ctx;
    ws_frames_ops_t ops;
    void *ud;
    uint64_t max;
    const uint8_t *in; /* the bytes wslay_event_recv reads from, after `held` */
    size_t in_len;
    uint8_t held[HELD_MAX]; /* the start of a frame not yet handed on */
    size_t held_len;
    uint64_t pass;    /* bytes of the current frame that may go on as they come */
    uint64_t msg_len; /* of the data message being received */
    bool stopped;     /* no more payload up */
    bool control;     /* the frame being received is a control frame */
    bool in_input;
    bool by_peer; /* the client closed first */
    const char *why;
};

static uint8_t peek(const ws_frames_t *f, size_t i) {
    return i < f->held_len ? f->held[i] : f->in[i - f->held_len];
}

/* Moves n bytes (held ones first) to buf. */
static void take(ws_frames_t *f, uint8_t *buf, size_t n) {
    size_t h = n < f->held_len ? n : f->held_len;
    memcpy(buf, f->held, h);
    memmove(f->held, f->held + h, f->held_len - h);
    f->held_len -= h;
    memcpy(buf + h, f->in, n - h);
    f->in += n - h;
    f->in_len -= n - h;
}

/* At a frame's start: its whole size, or 0 while its header is incomplete
 * or (a control frame) its payload is. */
static uint64_t next_frame(const ws_frames_t *f) {
    size_t avail = f->held_len + f->in_len;
    if (avail < 2)
        return 0;
    uint8_t b0 = peek(f, 0), b1 = peek(f, 1);
    uint64_t plen = b1 & 0x7f;
    size_t head = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0);
    if (avail < head)
        return 0;
    if (plen >= 126) {
        plen = 0;
        for (size_t i = 2; i < head; i++)
            plen = plen << 8 | peek(f, i);
    }
    head += b1 & 0x80 ? 4 : 0;
    if ((b0 & 0x8) && plen <= 125) /* a control frame wslay will take */
        return avail >= head + plen ? head + plen : 0;
    return plen > UINT64_MAX - head ? UINT64_MAX : head + plen;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    (void)flags;
    ws_frames_t *f = ud;
    size_t out = 0;
    bool incomplete = false;
    while (out < len && f->held_len + f->in_len > 0) {
        if (f->pass == 0) {
            uint64_t size = next_frame(f);
            incomplete = size == 0;
            if (incomplete || (out > 0 && (peek(f, 0) & 0x8) && size > len - out))
                break; /* more to come, or the next read has room for it */
            f->pass = size;
        }
        size_t avail = f->held_len + f->in_len;
        size_t n = len - out < avail ? len - out : avail;
        if (n > f->pass)
            n = (size_t)f->pass;
        take(f, buf + out, n);
        out += n;
        f->pass -= n;
    }
    if (incomplete && f->in_len > 0) {
        /* The start of a frame that is not whole yet (under HELD_MAX bytes
         * by next_frame): kept for the next read. */
        assert(f->held_len + f->in_len <= HELD_MAX);
        memcpy(f->held + f->held_len, f->in, f->in_len);
        f->held_len += f->in_len;
        f->in += f->in_len;
        f->in_len = 0;
    }
    if (out == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return (ssize_t)out;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud) {
    (void)flags;
    ws_frames_t *f = ud;
    if (f->ops.send(f->ud, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Closes with `code` because of what the client sent. */
static void fail(ws_frames_t *f, uint16_t code, const char *why) {
    if (!f->why)
        f->why = why;
    f->stopped = true;
    wslay_event_queue_close(f->ctx, code, NULL, 0);
    wslay_event_shutdown_read(f->ctx);
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a, void *ud) {
    (void)ctx;
    ws_frames_t *f = ud;
    f->control = (a->opcode & 0x8) != 0;
    if (f->control) /* wslay answers them */
        return;
    if (a->opcode == WSLAY_TEXT_FRAME) {
        fail(f, WSLAY_CODE_UNSUPPORTED_DATA, "WebSocket: text frame (close 1003)");
        return;
    }
    if (a->opcode == WSLAY_BINARY_FRAME)
        f->msg_len = 0;
    f->msg_len += a->payload_length;
    if (f->msg_len > f->max)
        fail(f, WSLAY_CODE_MESSAGE_TOO_BIG, "WebSocket: message over the bound (close 1009)");
}

static void on_chunk(wslay_event_context_ptr ctx,
                     const struct wslay_event_on_frame_recv_chunk_arg *a, void *ud) {
    ws_frames_t *f = ud;
    if (f->stopped || f->control || a->data_length == 0)
        return;
    if (!f->ops.data(f->ud, a->data, a->data_length)) {
        f->stopped = true;
        wslay_event_shutdown_read(ctx);
    }
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                   void *ud) {
    (void)ctx;
    ws_frames_t *f = ud;
    if (a->opcode == WSLAY_CONNECTION_CLOSE && !f->why) {
        f->why = "WebSocket: closed by the client";
        f->by_peer = true;
    }
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_chunk,
    .on_msg_recv_callback = on_msg,
};

ws_frames_t *ws_frames_new(const ws_frames_ops_t *ops, void *ud, uint64_t max_message) {
    ws_frames_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    if (wslay_event_context_server_init(&f->ctx, &callbacks, f) != 0) {
        free(f);
        return NULL;
    }
    f->ops = *ops;
    f->ud = ud;
    wslay_event_config_set_no_buffering(f->ctx, 1);
    ws_frames_set_max(f, max_message);
    return f;
}

void ws_frames_set_max(ws_frames_t *f, uint64_t max_message) {
    f->max = max_message;
    /* wslay checks each frame (control frames: 125 bytes by the RFC) */
    wslay_event_config_set_max_recv_msg_length(f->ctx, max_message > 125 ? max_message : 125);
}

void ws_frames_free(ws_frames_t *f) {
    if (!f)
        return;
    wslay_event_context_free(f->ctx);
    free(f);
}

/* The reason for a close wslay sent on its own. */
static const char *wslay_why(uint16_t code) {
    switch (code) {
    case WSLAY_CODE_MESSAGE_TOO_BIG:
        return "WebSocket: frame over the bound (close 1009)";
    case WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA:
        return INVALID_UTF8;
    default:
        return "WebSocket: protocol violation (close 1002)";
    }
}

static int flush(ws_frames_t *f) {
    if (wslay_event_send(f->ctx) != 0 && !f->why)
        f->why = "WebSocket: out of memory for output";
    if (wslay_event_get_close_sent(f->ctx)) {
        if (!f->why)
            f->why = wslay_why(wslay_event_get_status_code_sent(f->ctx));
        return WS_DONE;
    }
    return f->why && !wslay_event_get_write_enabled(f->ctx) ? WS_DONE : WS_OPEN;
}

int ws_frames_input(ws_frames_t *f, const uint8_t *p, size_t n) {
    f->in = p;
    f->in_len = n;
    f->in_input = true;
    int rc = wslay_event_recv(f->ctx);
    f->in_input = false;
    f->in_len = 0;
    if (rc == WSLAY_ERR_NOMEM) {
        f->why = "WebSocket: out of memory for input";
        return WS_DONE;
    }
    if (rc != 0) {
        /* wslay's frame layer refused a header (a control frame over 125
         * bytes or fragmented) and queued a close without a status code:
         * 1002 is the answer the RFC asks for, sent here instead. */
        static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
        f->ops.send(f->ud, close_1002, sizeof(close_1002));
        wslay_event_shutdown_write(f->ctx);
        f->why = wslay_why(WSLAY_CODE_PROTOCOL_ERROR);
        return WS_DONE;
    }
    return flush(f);
}

int ws_frames_send(ws_frames_t *f, const void *p, size_t n) {
    if (!wslay_event_get_write_enabled(f->ctx) || wslay_event_get_close_sent(f->ctx) || f->why)
        return -1;
    if (!wslay_event_want_write(f->ctx)) {
        /* Nothing of wslay's is pending (ops.send takes everything at once),
         * so a server frame, which has no mask, is written here: a header
         * and the bytes, without wslay's copy of each message. */
        uint8_t head[10];
        size_t h = 0;
        head[h++] = 0x80 | WSLAY_BINARY_FRAME;
        if (n < 126) {
            head[h++] = (uint8_t)n;
        } else if (n <= 0xffff) {
            head[h++] = 126;
            head[h++] = (uint8_t)(n >> 8);
            head[h++] = (uint8_t)n;
        } else {
            head[h++] = 127;
            for (int s = 56; s >= 0; s -= 8)
                head[h++] = (uint8_t)((uint64_t)n >> s);
        }
        return f->ops.send(f->ud, head, h) == 0 && f->ops.send(f->ud, p, n) == 0 ? 0 : -1;
    }
    struct wslay_event_msg m = {WSLAY_BINARY_FRAME, p, n};
    if (wslay_event_queue_msg(f->ctx, &m) != 0)
        return -1;
    return wslay_event_send(f->ctx) == 0 ? 0 : -1;
}

void ws_frames_close(ws_frames_t *f, uint16_t code) {
    if (wslay_event_get_close_sent(f->ctx) || !wslay_event_get_write_enabled(f->ctx))
        return;
    wslay_event_queue_close(f->ctx, code, NULL, 0);
    wslay_event_shutdown_read(f->ctx);
    f->stopped = true;
    if (!f->in_input)
        wslay_event_send(f->ctx);
}

bool ws_frames_by_peer(const ws_frames_t *f) {
    return f->by_peer;
}

const char *ws_frames_why(const ws_frames_t *f) {
    return f->why ? f->why : "WebSocket: closed";
}
