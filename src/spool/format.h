/* The spool's on-disk format (docs/architecture.md, "Spool file format"):
 * pure functions over byte buffers, no I/O. All integers little-endian.
 *
 * segment:    header (16 bytes) then frames
 *   header:   "M2KS" | u32 version (1) | u64 base_seq (the file's name)
 * frame:      u32 magic "M2KR" | u32 crc32c | u32 body_len | u64 seq | body
 *             the CRC covers body_len, seq and body (bytes 8 .. 20 + body_len)
 * body:       i64 timestamp_ms | u16 topic_len topic | u32 key_len key |
 *             u32 value_len value | u16 tag_len tag | u16 n_headers
 *             { u16 name_len name | u32 value_len value }*
 *             a length of 0xFFFFFFFF is a null key, value or header value
 * checkpoint: "M2KC" | u32 version (1) | u64 confirmed_seq | u32 crc32c of
 *             the 16 bytes before it | u32 zero
 * state:      "M2KT" | u32 version (1) | u32 len | u32 crc32c of the payload |
 *             payload (len bytes, the caller's); read at open only, from the
 *             daemons before the state slots
 * state slot: "M2KT" | u32 version (2) | u32 len | u32 crc32c of gen and
 *             payload | u64 gen | payload (len bytes); the file may go on
 *             past it (what is left of an older, longer state)
 */
#ifndef M2K_SPOOL_FORMAT_H
#define M2K_SPOOL_FORMAT_H

#include "spool/spool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_SEG_HEADER_SIZE 16
#define SPOOL_FRAME_HEADER_SIZE 20
#define SPOOL_CHECKPOINT_SIZE 24
#define SPOOL_NULL_LEN 0xFFFFFFFFu
/* Sequence numbers, segment names and the checkpoint above this are corrupt
 * (so next_seq never wraps): 2^62, a million years at 100k records/s. */
#define SPOOL_SEQ_MAX (UINT64_C(1) << 62)

/* CRC32C (Castagnoli, as iSCSI, RFC 3720): crc32c_update(0, buf, len). */
uint32_t spool_crc32c(uint32_t crc, const void *buf, size_t len);
/* The two implementations behind it (crc32c.c), for the tests: the SSE4.2
 * instruction (the table where the CPU or the build has none) and the table. */
bool spool_crc32c_hw_available(void);
uint32_t spool_crc32c_hw(uint32_t crc, const void *buf, size_t len);
uint32_t spool_crc32c_table(uint32_t crc, const void *buf, size_t len);

void spool_seg_header_encode(uint8_t out[SPOOL_SEG_HEADER_SIZE], uint64_t base_seq);
bool spool_seg_header_valid(const uint8_t *buf, size_t len, uint64_t base_seq);

void spool_checkpoint_encode(uint8_t out[SPOOL_CHECKPOINT_SIZE], uint64_t confirmed);
bool spool_checkpoint_decode(const uint8_t *buf, size_t len, uint64_t *confirmed);

#define SPOOL_STATE_HEADER_SIZE 16
void spool_state_header_encode(uint8_t out[SPOOL_STATE_HEADER_SIZE], const uint8_t *payload,
                               size_t len);
/* A state slot's header for gen and payload. */
#define SPOOL_STATE_SLOT_HEADER_SIZE 24
void spool_state_slot_encode(uint8_t out[SPOOL_STATE_SLOT_HEADER_SIZE], uint64_t gen,
                             const uint8_t *payload, size_t len);
/* Whether buf (a slot file's len bytes) starts with a whole state slot: its
 * gen, and its payload at buf + SPOOL_STATE_SLOT_HEADER_SIZE. */
bool spool_state_slot_decode(const uint8_t *buf, size_t len, uint64_t *gen, size_t *payload_len);
/* Whether buf is a whole state file; its payload is buf + SPOOL_STATE_HEADER_SIZE. */
bool spool_state_valid(const uint8_t *buf, size_t len);

/* The body's size, or 0 when a field is too long or the body would pass
 * SPOOL_BODY_MAX. */
size_t spool_body_size(const spool_record_t *rec);
/* Writes the frame (header and body) of rec with seq into out, which has
 * SPOOL_FRAME_HEADER_SIZE + spool_body_size(rec) bytes. */
void spool_frame_encode(uint8_t *out, const spool_record_t *rec, size_t body_len, uint64_t seq);

typedef enum {
    SPOOL_FRAME_OK = 0,
    SPOOL_FRAME_SHORT,   /* the buffer ends inside the frame (a torn tail at EOF) */
    SPOOL_FRAME_BAD,     /* wrong magic, length out of bounds, CRC mismatch, seq < min_seq */
    SPOOL_FRAME_BAD_BODY /* the CRC holds but the body does not decode */
} spool_frame_result_t;

/* Checks the frame at buf[0..len): on SPOOL_FRAME_OK *frame_len is its size and
 * *seq its sequence number. Records with seq < min_seq are SPOOL_FRAME_BAD. */
spool_frame_result_t spool_frame_check(const uint8_t *buf, size_t len, uint64_t min_seq,
                                       size_t *frame_len, uint64_t *seq);
/* The frame header at buf[0..len) of a frame the caller wrote itself: its
 * size and sequence number without the CRC check; SPOOL_FRAME_SHORT when
 * buf does not hold it whole, SPOOL_FRAME_BAD on a wrong magic or length. */
spool_frame_result_t spool_frame_peek(const uint8_t *buf, size_t len, size_t *frame_len,
                                      uint64_t *seq);
/* The offset of the first whole valid frame (seq >= min_seq) in buf[1..len),
 * or len when there is none. */
size_t spool_frame_resync(const uint8_t *buf, size_t len, uint64_t min_seq);

/* Decodes a body (bounds-checked). Header views go to *headers (malloc'ed,
 * grown as needed; *headers_cap is its capacity). Returns 0, -1 on a malformed
 * body, SPOOL_ENOMEM. */
int spool_body_decode(const uint8_t *body, size_t len, spool_record_t *rec,
                      spool_header_t **headers, size_t *headers_cap);

#endif
