/* mqtt-bench --websocket: the client side of RFC 6455 on the engine's
 * buffers. The upgrade request goes out ahead of CONNECT, the 101 head is
 * skipped on the way in, every write is one masked binary frame, and server
 * frames (unmasked, binary) are stripped in place before MQTT decoding. */
#include <stdio.h>
#include <string.h>

#include "mqtt_bench.h"

int bench_ws_request(char *out, size_t cap, const char *host, uint16_t port, const char *path) {
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                     path, host, (unsigned)port);
    return n > 0 && (size_t)n < cap ? n : -1;
}

size_t bench_ws_frame(uint8_t *p, size_t n, uint32_t mask) {
    uint8_t head[BENCH_WS_HEAD_MAX];
    size_t h = 0;
    head[h++] = 0x82; /* FIN, binary */
    if (n < 126) {
        head[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(n >> 8);
        head[h++] = (uint8_t)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int s = 56; s >= 0; s -= 8)
            head[h++] = (uint8_t)((uint64_t)n >> s);
    }
    uint8_t key[4] = {(uint8_t)(mask >> 24), (uint8_t)(mask >> 16), (uint8_t)(mask >> 8),
                      (uint8_t)mask};
    memcpy(head + h, key, 4);
    h += 4;
    memmove(p + h, p, n);
    memcpy(p, head, h);
    for (size_t i = 0; i < n; i++)
        p[h + i] ^= key[i & 3];
    return h + n;
}

ssize_t bench_ws_rx(bench_ws_rx_t *s, uint8_t *p, size_t n) {
    static const char end[] = "\r\n\r\n";
    size_t in = 0, out = 0;
    while (in < n) {
        if (!s->upgraded) {
            uint8_t ch = p[in++];
            if (s->hdr_len < 12)
                s->hdr[s->hdr_len++] = ch;
            s->http_match = ch == (uint8_t)end[s->http_match] ? s->http_match + 1 : ch == '\r';
            if (s->http_match == 4) {
                if (s->hdr_len < 12 || memcmp(s->hdr, "HTTP/1.1 101", 12) != 0)
                    return -1;
                s->upgraded = true;
                s->hdr_len = 0;
            }
            continue;
        }
        if (s->left == 0) {
            s->hdr[s->hdr_len++] = p[in++];
            size_t need = 2;
            if (s->hdr_len >= 2)
                need += (s->hdr[1] & 0x7f) == 126 ? 2 : (s->hdr[1] & 0x7f) == 127 ? 8 : 0;
            if (s->hdr_len < need)
                continue;
            /* The daemon sends unmasked binary frames; a close ends the run. */
            if (s->hdr[0] != 0x82 || (s->hdr[1] & 0x80))
                return -1;
            uint64_t len = s->hdr[1] & 0x7f;
            if (len >= 126) {
                len = 0;
                for (size_t i = 2; i < need; i++)
                    len = len << 8 | s->hdr[i];
            }
            s->left = len;
            s->hdr_len = 0;
            continue;
        }
        size_t take = n - in < s->left ? n - in : (size_t)s->left;
        memmove(p + out, p + in, take);
        out += take;
        in += take;
        s->left -= take;
    }
    return (ssize_t)out;
}
