/* util/: the hash functions (FNV-1a and SipHash-2-4 vectors), the intrusive list and the
 * hash map (growth keeps every element findable, removal, iteration that
 * frees), the allocator settings (fastbins off unless GLIBC_TUNABLES says). */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/hash.h"
#include "util/hmap.h"
#include "util/list.h"
#include "util/malloc_tune.h"

static void test_hash_vectors(void **state) {
    (void)state;
    /* The FNV-1a 64-bit reference values (draft-eastlake-fnv). */
    assert_true(m2k_hash("", 0) == 0xcbf29ce484222325ull);
    assert_true(m2k_hash("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(m2k_hash("foobar", 6) == 0x85944171f73967e8ull);
    /* Chaining hashes the concatenation. */
    assert_true(m2k_hash_seed(m2k_hash("foo", 3), "bar", 3) == m2k_hash("foobar", 6));
    assert_true(m2k_hash_u32(1) != m2k_hash_u32(2));
}

static void test_siphash_vectors(void **state) {
    (void)state;
    /* The reference's vectors (veorq/SipHash vectors.h): key 00..0f, message
     * 00, 01, ... of length 0..17, each hash as 8 little-endian bytes. */
    static const uint64_t want[18] = {
        0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
        0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
        0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
        0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
        0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull,
    };
    uint8_t key[16], msg[18];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 18; i++)
        msg[i] = (uint8_t)i;
    for (size_t n = 0; n < 18; n++)
        assert_true(m2k_siphash24(key, msg, n) == want[n]);
    /* The process key is not all zeroes (it came from getrandom), and it is
     * the same for every call. */
    static const uint8_t zero[16];
    assert_true(m2k_hash_keyed("client-1", 8) != m2k_siphash24(zero, "client-1", 8));
    assert_true(m2k_hash_keyed("client-1", 8) == m2k_hash_keyed("client-1", 8));
}

typedef struct {
    list_t node;
    int v;
} item_t;

static void test_list(void **state) {
    (void)state;
    list_t head;
    list_init(&head);
    assert_true(list_empty(&head));
    assert_null(list_first(&head));
    item_t it[4];
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        list_init(&it[i].node);
        assert_false(list_linked(&it[i].node));
    }
    list_insert_tail(&head, &it[1].node);
    list_insert_tail(&head, &it[2].node);
    list_insert_head(&head, &it[0].node);
    list_insert_tail(&head, &it[3].node);
    assert_true(list_linked(&it[2].node));
    int want = 0;
    list_t *n, *nx;
    LIST_FOREACH_SAFE(n, nx, &head) {
        assert_int_equal(LIST_ENTRY(n, item_t, node)->v, want++);
    }
    assert_int_equal(want, 4);
    /* Removing while iterating, and removing twice, are both safe. */
    LIST_FOREACH_SAFE(n, nx, &head) {
        if (LIST_ENTRY(n, item_t, node)->v % 2 == 0)
            list_remove(n);
    }
    list_remove(&it[0].node);
    assert_false(list_linked(&it[0].node));
    assert_ptr_equal(list_first(&head), &it[1].node);
    assert_ptr_equal(head.next->next, &it[3].node);
    assert_ptr_equal(head.prev, &it[3].node);
    list_remove(&it[1].node);
    list_remove(&it[3].node);
    assert_true(list_empty(&head));
}

typedef struct {
    hmap_node_t node;
    uint32_t key;
} entry_t;

static uint64_t entry_hash(const hmap_node_t *n) {
    return m2k_hash_u32(HMAP_ENTRY(n, entry_t, node)->key);
}

static entry_t *find(hmap_t *m, uint32_t key) {
    hmap_node_t *n;
    HMAP_FOR_BUCKET(n, m, m2k_hash_u32(key)) {
        entry_t *e = HMAP_ENTRY(n, entry_t, node);
        if (e->key == key)
            return e;
    }
    return NULL;
}

static void count_and_free(hmap_node_t *n, void *ud) {
    (*(size_t *)ud)++;
    free(HMAP_ENTRY(n, entry_t, node));
}

/* hmap_set_load(2): the bucket array doubles only past two entries a
 * bucket; everything stays findable. */
static void test_hmap_load(void **state) {
    (void)state;
    hmap_t m;
    hmap_init(&m, entry_hash, 16);
    hmap_set_load(&m, 2);
    entry_t e[65];
    for (uint32_t i = 0; i < 65; i++) {
        e[i].key = i * 7919u;
        assert_int_equal(hmap_insert(&m, &e[i].node, m2k_hash_u32(e[i].key)), 0);
        assert_int_equal(m.nb, i < 32 ? 16 : i < 64 ? 32 : 64);
    }
    for (uint32_t i = 0; i < 65; i++)
        assert_ptr_equal(find(&m, i * 7919u), &e[i]);
    hmap_free(&m);
}

static void test_hmap(void **state) {
    (void)state;
    hmap_t m;
    hmap_init(&m, entry_hash, 0);
    assert_null(find(&m, 7)); /* no bucket array yet */
    hmap_remove(&m, NULL, 0); /* ignored on an empty map */
    enum { N = 1000 };
    for (uint32_t i = 0; i < N; i++) {
        entry_t *e = malloc(sizeof(*e));
        assert_non_null(e);
        e->key = i * 7919u;
        assert_int_equal(hmap_insert(&m, &e->node, m2k_hash_u32(e->key)), 0);
    }
    assert_int_equal(m.n, N);
    assert_true(m.nb >= N); /* doubled as it filled */
    assert_int_equal(m.nb & (m.nb - 1), 0);
    for (uint32_t i = 0; i < N; i++)
        assert_non_null(find(&m, i * 7919u));
    assert_null(find(&m, 1));
    /* Remove every other one; the rest stay findable. */
    for (uint32_t i = 0; i < N; i += 2) {
        entry_t *e = find(&m, i * 7919u);
        hmap_remove(&m, &e->node, m2k_hash_u32(e->key));
        free(e);
    }
    assert_int_equal(m.n, N / 2);
    for (uint32_t i = 0; i < N; i++) {
        if (i % 2)
            assert_non_null(find(&m, i * 7919u));
        else
            assert_null(find(&m, i * 7919u));
    }
    size_t seen = 0;
    hmap_each(&m, count_and_free, &seen);
    assert_int_equal(seen, N / 2);
    hmap_free(&m);
    assert_int_equal(m.n, 0);
}

#if !defined(__SANITIZE_ADDRESS__) && defined(M_MXFAST)
/* Small chunks freed past the tcache's 7 per size: the bytes glibc keeps in
 * fastbins for them (mallinfo2's fsmblks). */
static size_t fastbin_bytes_after_frees(void) {
    void *p[32];
    for (int i = 0; i < 32; i++)
        p[i] = malloc(24);
    for (int i = 0; i < 32; i++)
        free(p[i]);
    return mallinfo2().fsmblks;
}
#endif

static void test_malloc_tune(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__) || !defined(M_MXFAST)
    skip(); /* ASan's allocator has no fastbins */
#else
    /* An mxfast in GLIBC_TUNABLES is the operator's: left alone. */
    assert_int_equal(setenv("GLIBC_TUNABLES", "glibc.malloc.mxfast=64", 1), 0);
    assert_false(m2k_malloc_tune());
    assert_true(fastbin_bytes_after_frees() > 0);
    assert_int_equal(unsetenv("GLIBC_TUNABLES"), 0);
    assert_true(m2k_malloc_tune());
    assert_int_equal(fastbin_bytes_after_frees(), 0);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vectors), cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_list),         cmocka_unit_test(test_hmap),
        cmocka_unit_test(test_hmap_load),    cmocka_unit_test(test_malloc_tune),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
