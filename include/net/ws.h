/* WebSocket (RFC 6455) without I/O, for the ws transport (src/net/transport_ws.c)
 * and its tests: the HTTP/1.1 upgrade request (parsed with http_parser) and
 * the frames after it (wslay's event engine on the caller's buffers). */
#ifndef M2K_NET_WS_H
#define M2K_NET_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bound on an upgrade request head: more without its end is 431. */
#define WS_MAX_HEAD 8192

typedef struct {
    const char *path;     /* the request path the upgrade must name */
    char *const *origins; /* allowed Origin values; n_origins 0: any */
    size_t n_origins;
} ws_upgrade_opts_t;

typedef struct {
    int status;              /* 101, or the refusal: 400, 403, 404, 426, 431 */
    const char *why;         /* a refusal's reason, for the log */
    const char *subprotocol; /* 101: "mqtt" or "mqttv3.1" */
    size_t head_len;         /* the request head's bytes (what follows is frames) */
    size_t response_len;     /* the answer to send */
    char response[320];
} ws_upgrade_t;

/* Looks at the first `len` bytes of a connection: 0 while the head is not
 * complete (and under WS_MAX_HEAD), else 1 with *u filled (status 101 or a
 * refusal, and the exact response). */
int ws_upgrade_parse(const uint8_t *buf, size_t len, const ws_upgrade_opts_t *o, ws_upgrade_t *u);

typedef struct ws_frames ws_frames_t;

typedef struct {
    /* Payload bytes of binary messages, in order. false: stop reading (the
     * connection is closing). */
    bool (*data)(void *ud, const uint8_t *p, size_t n);
    /* Frame bytes for the peer: 0, or -1 (no memory). */
    int (*send)(void *ud, const uint8_t *p, size_t n);
} ws_frames_ops_t;

enum { WS_OPEN = 0, WS_DONE = 1 };

/* A server side frame engine; `max_message` bounds a frame's payload and a
 * fragmented message's sum. NULL: no memory. */
ws_frames_t *ws_frames_new(const ws_frames_ops_t *ops, void *ud, uint64_t max_message);
void ws_frames_free(ws_frames_t *f);
void ws_frames_set_max(ws_frames_t *f, uint64_t max_message);
/* Frame bytes from the peer: payload goes to ops->data, pongs and close
 * answers to ops->send. WS_DONE once a close frame was sent (the client's
 * close answered, or ours for a violation): end the connection with
 * ws_frames_why(). */
int ws_frames_input(ws_frames_t *f, const uint8_t *p, size_t n);
/* One binary message to the peer: 0, or -1 after a close frame or without memory. */
int ws_frames_send(ws_frames_t *f, const void *p, size_t n);
/* Sends a close frame with `code` unless one was sent. */
void ws_frames_close(ws_frames_t *f, uint16_t code);
/* Why the engine closed ("WebSocket: text frame (close 1003)"). */
const char *ws_frames_why(const ws_frames_t *f);
/* Whether the client's close frame ended it (not a violation). */
bool ws_frames_by_peer(const ws_frames_t *f);

#endif
