/* Shared by the MQTT 3.1.1 codec (codec.c) and the MQTT 5.0 codec
 * (codec5.c, props.c): the bounds-checked reader, the writers, the fixed
 * header. Private to src/mqtt/. */
#ifndef M2K_MQTT_CODEC_INT_H
#define M2K_MQTT_CODEC_INT_H

#include <string.h>

#include "mqtt/codec.h"
#include "mqtt/codec5.h"

/* Reserved low nibble of the first byte per type; PUBLISH is checked apart. */
extern const uint8_t codec_required_flags[16];

/* The fixed header, for 3.1.1 (v5 false: fixed-size packets checked, type 15
 * reserved) or 5.0 (v5 true: AUTH is type 15, only PINGREQ/PINGRESP have a
 * fixed size). Returns the header length, 0 for more bytes, or an error. */
int codec_fixed_header(const uint8_t *buf, size_t len, mqtt_fixed_header_t *fh, bool v5);

/* ---- Reader ---------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader_t;

static inline int read_u8(reader_t *r, uint8_t *v) {
    if (r->p >= r->end)
        return MQTT_ERR_PACKET_TOO_SHORT;
    *v = *r->p++;
    return 0;
}

static inline int read_u16(reader_t *r, uint16_t *v) {
    if (r->end - r->p < 2)
        return MQTT_ERR_PACKET_TOO_SHORT;
    *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
    r->p += 2;
    return 0;
}

/* A two-byte length followed by that many bytes. */
static inline int read_str(reader_t *r, mqtt_str_t *s) {
    uint16_t n;
    int rc = read_u16(r, &n);
    if (rc < 0)
        return rc;
    if ((size_t)(r->end - r->p) < n)
        return MQTT_ERR_PACKET_TOO_SHORT;
    s->ptr = r->p;
    s->len = n;
    r->p += n;
    return 0;
}

static inline int read_packet_id(reader_t *r, uint16_t *id) {
    int rc = read_u16(r, id);
    if (rc < 0)
        return rc;
    return *id == 0 ? MQTT_ERR_PACKET_ID_ZERO : 0;
}

static inline bool str_is(const mqtt_str_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

/* The CONNECT flags byte, the same in 3.1.1 and 5.0: the reserved bit, the
 * will's flag, QoS and retain checked; whether a password needs a user name
 * is the caller's (it differs). Fills c's flag fields; 0 or an error. */
int codec_connect_flags(reader_t *r, mqtt_connect_t *c);

/* ---- Writers --------------------------------------------------------- */

/* Total size of a packet with remaining length rl, 0 if it cannot exist. */
static inline size_t packet_size(size_t rl) {
    if (rl > MQTT_MAX_REMAINING_LENGTH)
        return 0;
    size_t vl = rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4;
    return 1 + vl + rl;
}

static inline uint8_t *put_header(uint8_t *p, uint8_t b0, size_t rl) {
    *p++ = b0;
    do {
        uint8_t b = rl & 0x7F;
        rl >>= 7;
        if (rl)
            b |= 0x80;
        *p++ = b;
    } while (rl);
    return p;
}

static inline uint8_t *put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *put_bytes(uint8_t *p, const uint8_t *s, size_t n) {
    if (n)
        memcpy(p, s, n);
    return p + n;
}

static inline uint8_t *put_str(uint8_t *p, const mqtt_str_t *s) {
    return put_bytes(put_u16(p, (uint16_t)s->len), s->ptr, s->len);
}

/* CONNECT for 3.1.1 (props NULL: level 4 unless given) or 5.0 (props
 * non-NULL: level 5 unless given, the properties, and the will's when the
 * will flag is set). Returns as the other encoders do. */
size_t codec_encode_connect(uint8_t *buf, size_t cap, const mqtt_connect_t *c,
                            const mqtt5_props_t *props, const mqtt5_props_t *will);

/* PUBLISH for 3.1.1 (props NULL) or 5.0 (props non-NULL, perhaps empty). */
size_t codec_encode_publish(uint8_t *buf, size_t cap, const mqtt_publish_t *p,
                            const mqtt5_props_t *props);

/* ---- MQTT 5.0 properties (props.c) ------------------------------------ */

/* Reads a property length and the properties of packet type `where` (0: the
 * will properties of a CONNECT) into p, which the caller has zeroed,
 * checking the table's rules. */
int codec5_props_decode(reader_t *r, unsigned where, mqtt5_props_t *p);
/* The property bytes of p (NULL: none), SIZE_MAX when they cannot exist. */
size_t codec5_props_size(const mqtt5_props_t *p);
/* Writes the property length n (from codec5_props_size) and the properties. */
uint8_t *codec5_props_put(uint8_t *w, const mqtt5_props_t *p, size_t n);

#endif
