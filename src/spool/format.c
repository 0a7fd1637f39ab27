/* The spool's byte format (format.h): frames, bodies, checkpoint (CRC32C
 * in crc32c.c). Pure: no I/O, no globals. */
#include "format.h"

#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static const uint8_t SEG_MAGIC[4] = {'M', '2', 'K', 'S'};
static const uint8_t FRAME_MAGIC[4] = {'M', '2', 'K', 'R'};
static const uint8_t CKPT_MAGIC[4] = {'M', '2', 'K', 'C'};
#define FORMAT_VERSION 1

void spool_seg_header_encode(uint8_t out[SPOOL_SEG_HEADER_SIZE], uint64_t base_seq) {
    memcpy(out, SEG_MAGIC, 4);
    put32(out + 4, FORMAT_VERSION);
    put64(out + 8, base_seq);
}

bool spool_seg_header_valid(const uint8_t *buf, size_t len, uint64_t base_seq) {
    return len >= SPOOL_SEG_HEADER_SIZE && memcmp(buf, SEG_MAGIC, 4) == 0 &&
           get32(buf + 4) == FORMAT_VERSION && get64(buf + 8) == base_seq;
}

void spool_checkpoint_encode(uint8_t out[SPOOL_CHECKPOINT_SIZE], uint64_t confirmed) {
    memcpy(out, CKPT_MAGIC, 4);
    put32(out + 4, FORMAT_VERSION);
    put64(out + 8, confirmed);
    put32(out + 16, spool_crc32c(0, out, 16));
    put32(out + 20, 0);
}

bool spool_checkpoint_decode(const uint8_t *buf, size_t len, uint64_t *confirmed) {
    if (len != SPOOL_CHECKPOINT_SIZE || memcmp(buf, CKPT_MAGIC, 4) != 0 ||
        get32(buf + 4) != FORMAT_VERSION || get32(buf + 16) != spool_crc32c(0, buf, 16))
        return false;
    *confirmed = get64(buf + 8);
    return *confirmed <= SPOOL_SEQ_MAX;
}

static const uint8_t STATE_MAGIC[4] = {'M', '2', 'K', 'T'};

void spool_state_header_encode(uint8_t out[SPOOL_STATE_HEADER_SIZE], const uint8_t *payload,
                               size_t len) {
    memcpy(out, STATE_MAGIC, 4);
    put32(out + 4, FORMAT_VERSION);
    put32(out + 8, (uint32_t)len);
    put32(out + 12, spool_crc32c(0, payload, len));
}

bool spool_state_valid(const uint8_t *buf, size_t len) {
    return len >= SPOOL_STATE_HEADER_SIZE && memcmp(buf, STATE_MAGIC, 4) == 0 &&
           get32(buf + 4) == FORMAT_VERSION && get32(buf + 8) == len - SPOOL_STATE_HEADER_SIZE &&
           get32(buf + 12) ==
               spool_crc32c(0, buf + SPOOL_STATE_HEADER_SIZE, len - SPOOL_STATE_HEADER_SIZE);
}

#define STATE_SLOT_VERSION 2

void spool_state_slot_encode(uint8_t out[SPOOL_STATE_SLOT_HEADER_SIZE], uint64_t gen,
                             const uint8_t *payload, size_t len) {
    memcpy(out, STATE_MAGIC, 4);
    put32(out + 4, STATE_SLOT_VERSION);
    put32(out + 8, (uint32_t)len);
    put64(out + 16, gen);
    put32(out + 12, spool_crc32c(spool_crc32c(0, out + 16, 8), payload, len));
}

bool spool_state_slot_decode(const uint8_t *buf, size_t len, uint64_t *gen, size_t *payload_len) {
    if (len < SPOOL_STATE_SLOT_HEADER_SIZE || memcmp(buf, STATE_MAGIC, 4) != 0 ||
        get32(buf + 4) != STATE_SLOT_VERSION)
        return false;
    size_t n = get32(buf + 8);
    if (n > len - SPOOL_STATE_SLOT_HEADER_SIZE ||
        get32(buf + 12) != spool_crc32c(0, buf + 16, 8 + n))
        return false;
    *gen = get64(buf + 16);
    *payload_len = n;
    return true;
}

/* A nullable blob's length on disk. */
static uint32_t blob_len(const void *p, size_t len) {
    return p ? (uint32_t)len : SPOOL_NULL_LEN;
}

size_t spool_body_size(const spool_record_t *rec) {
    if (rec->topic_len == 0 || rec->topic_len > UINT16_MAX || rec->tag_len > UINT16_MAX ||
        rec->n_headers > UINT16_MAX || rec->key_len > SPOOL_BODY_MAX ||
        rec->value_len > SPOOL_BODY_MAX)
        return 0;
    uint64_t n = 8 + 2 + rec->topic_len + 4 + (rec->key ? rec->key_len : 0) + 4 +
                 (rec->value ? rec->value_len : 0) + 2 + rec->tag_len + 2;
    for (size_t i = 0; i < rec->n_headers; i++) {
        const spool_header_t *h = &rec->headers[i];
        if (h->name_len > UINT16_MAX || h->value_len > SPOOL_BODY_MAX)
            return 0;
        n += 2 + h->name_len + 4 + (h->value ? h->value_len : 0);
        if (n > SPOOL_BODY_MAX)
            return 0;
    }
    return n > SPOOL_BODY_MAX ? 0 : (size_t)n;
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t len) {
    if (len)
        memcpy(p, src, len);
    return p + len;
}

void spool_frame_encode(uint8_t *out, const spool_record_t *rec, size_t body_len, uint64_t seq) {
    uint8_t *p = out + SPOOL_FRAME_HEADER_SIZE;
    put64(p, (uint64_t)rec->timestamp_ms);
    p += 8;
    put16(p, (uint16_t)rec->topic_len);
    p = put_bytes(p + 2, rec->topic, rec->topic_len);
    put32(p, blob_len(rec->key, rec->key_len));
    p = put_bytes(p + 4, rec->key, rec->key ? rec->key_len : 0);
    put32(p, blob_len(rec->value, rec->value_len));
    p = put_bytes(p + 4, rec->value, rec->value ? rec->value_len : 0);
    put16(p, (uint16_t)rec->tag_len);
    p = put_bytes(p + 2, rec->tag, rec->tag_len);
    put16(p, (uint16_t)rec->n_headers);
    p += 2;
    for (size_t i = 0; i < rec->n_headers; i++) {
        const spool_header_t *h = &rec->headers[i];
        put16(p, (uint16_t)h->name_len);
        p = put_bytes(p + 2, h->name, h->name_len);
        put32(p, blob_len(h->value, h->value_len));
        p = put_bytes(p + 4, h->value, h->value ? h->value_len : 0);
    }
    (void)p;
    memcpy(out, FRAME_MAGIC, 4);
    put32(out + 8, (uint32_t)body_len);
    put64(out + 12, seq);
    put32(out + 4, spool_crc32c(0, out + 8, 12 + body_len));
}

/* A bounds-checked cursor over a body. */
typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} cursor_t;

static const uint8_t *take(cursor_t *c, size_t n) {
    if (c->bad || n > c->left) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *p = c->p;
    c->p += n;
    c->left -= n;
    return p;
}
static uint16_t take16(cursor_t *c) {
    const uint8_t *p = take(c, 2);
    return p ? get16(p) : 0;
}
static uint32_t take32(cursor_t *c) {
    const uint8_t *p = take(c, 4);
    return p ? get32(p) : 0;
}
/* A nullable blob: *len and a pointer (NULL for null). */
static const void *take_blob(cursor_t *c, size_t *len) {
    uint32_t n = take32(c);
    if (n == SPOOL_NULL_LEN) {
        *len = 0;
        return NULL;
    }
    *len = n;
    const uint8_t *p = take(c, n);
    return p ? p : (const void *)"";
}

int spool_body_decode(const uint8_t *body, size_t len, spool_record_t *rec,
                      spool_header_t **headers, size_t *headers_cap) {
    cursor_t c = {body, len, false};
    spool_record_t r;
    memset(&r, 0, sizeof r);
    const uint8_t *ts = take(&c, 8);
    r.timestamp_ms = ts ? (int64_t)get64(ts) : 0;
    r.topic_len = take16(&c);
    r.topic = (const char *)take(&c, r.topic_len);
    r.key = take_blob(&c, &r.key_len);
    r.value = take_blob(&c, &r.value_len);
    r.tag_len = take16(&c);
    r.tag = take(&c, r.tag_len);
    r.n_headers = take16(&c);
    if (c.bad || r.topic_len == 0)
        return -1;
    if (headers && r.n_headers > *headers_cap) {
        spool_header_t *nh = realloc(*headers, r.n_headers * sizeof **headers);
        if (!nh)
            return SPOOL_ENOMEM;
        *headers = nh;
        *headers_cap = r.n_headers;
    }
    for (size_t i = 0; i < r.n_headers; i++) {
        spool_header_t h;
        h.name_len = take16(&c);
        h.name = (const char *)take(&c, h.name_len);
        h.value = take_blob(&c, &h.value_len);
        if (c.bad)
            return -1;
        if (headers)
            (*headers)[i] = h;
    }
    if (c.left != 0)
        return -1;
    r.headers = r.n_headers && headers ? *headers : NULL;
    if (rec)
        *rec = r;
    return 0;
}

spool_frame_result_t spool_frame_check(const uint8_t *buf, size_t len, uint64_t min_seq,
                                       size_t *frame_len, uint64_t *seq) {
    if (len < 4)
        return memcmp(buf, FRAME_MAGIC, len) == 0 ? SPOOL_FRAME_SHORT : SPOOL_FRAME_BAD;
    if (memcmp(buf, FRAME_MAGIC, 4) != 0)
        return SPOOL_FRAME_BAD;
    if (len < SPOOL_FRAME_HEADER_SIZE)
        return SPOOL_FRAME_SHORT;
    uint32_t body_len = get32(buf + 8);
    if (body_len > SPOOL_BODY_MAX)
        return SPOOL_FRAME_BAD;
    if (len - SPOOL_FRAME_HEADER_SIZE < body_len)
        return SPOOL_FRAME_SHORT;
    if (spool_crc32c(0, buf + 8, 12 + (size_t)body_len) != get32(buf + 4))
        return SPOOL_FRAME_BAD;
    uint64_t s = get64(buf + 12);
    if (s < min_seq || s > SPOOL_SEQ_MAX)
        return SPOOL_FRAME_BAD;
    *frame_len = SPOOL_FRAME_HEADER_SIZE + (size_t)body_len;
    *seq = s;
    if (spool_body_decode(buf + SPOOL_FRAME_HEADER_SIZE, body_len, NULL, NULL, NULL) != 0)
        return SPOOL_FRAME_BAD_BODY;
    return SPOOL_FRAME_OK;
}

spool_frame_result_t spool_frame_peek(const uint8_t *buf, size_t len, size_t *frame_len,
                                      uint64_t *seq) {
    if (len < SPOOL_FRAME_HEADER_SIZE)
        return SPOOL_FRAME_SHORT;
    uint32_t body_len = get32(buf + 8);
    if (memcmp(buf, FRAME_MAGIC, 4) != 0 || body_len > SPOOL_BODY_MAX)
        return SPOOL_FRAME_BAD;
    if (len - SPOOL_FRAME_HEADER_SIZE < body_len)
        return SPOOL_FRAME_SHORT;
    *frame_len = SPOOL_FRAME_HEADER_SIZE + (size_t)body_len;
    *seq = get64(buf + 12);
    return SPOOL_FRAME_OK;
}

size_t spool_frame_resync(const uint8_t *buf, size_t len, uint64_t min_seq) {
    size_t off = 1;
    while (off < len) {
        const uint8_t *m = memmem(buf + off, len - off, FRAME_MAGIC, 4);
        if (!m)
            return len;
        off = (size_t)(m - buf);
        size_t flen;
        uint64_t s;
        if (spool_frame_check(buf + off, len - off, min_seq, &flen, &s) == SPOOL_FRAME_OK)
            return off;
        off++;
    }
    return len;
}
