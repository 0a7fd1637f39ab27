/* The guard page of the codec tests (test_mqtt_codec*.c): an input copied so
 * that it ends exactly where a PROT_NONE page starts, so any read past its end
 * faults; and their byte-string helpers. Include after cmocka.h and
 * mqtt/codec.h. */
#ifndef M2K_TEST_CODEC_GUARD_H
#define M2K_TEST_CODEC_GUARD_H

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A byte string given as a C literal (hex escapes allowed). */
#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static inline void assert_str(mqtt_str_t s, const char *want, size_t len) {
    assert_int_equal(s.len, len);
    if (len)
        assert_memory_equal(s.ptr, want, len);
}

#define ASSERT_STR(s, lit) assert_str((s), (lit), sizeof(lit) - 1)

/* Copies an input so that it ends exactly where a PROT_NONE page starts: any
 * read past the end of the input faults. */
typedef struct {
    uint8_t *base;
    size_t usable, total;
} guard_t;

static guard_t guard;

static inline void guard_init(size_t usable) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    usable = (usable + page - 1) / page * page;
    guard.total = usable + page;
    guard.base =
        mmap(NULL, guard.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard.base != MAP_FAILED);
    assert_int_equal(mprotect(guard.base + usable, page, PROT_NONE), 0);
    guard.usable = usable;
}

static inline const uint8_t *guard_place(const uint8_t *bytes, size_t len) {
    assert_true(len <= guard.usable);
    uint8_t *p = guard.base + guard.usable - len;
    if (len)
        memcpy(p, bytes, len);
    return p;
}

static inline int setup_guard(void **state) {
    (void)state;
    guard_init(1 << 16);
    return 0;
}

static inline int teardown_guard(void **state) {
    (void)state;
    munmap(guard.base, guard.total);
    return 0;
}

#endif
