/* Mosquitto-compatible password file, verification and the failure throttle.
 * The file is parsed strictly (see auth.h); entries live in one array sorted
 * by user name so a lookup is a binary search. */
#include "auth/passwd_file.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/file_read.h"
#include "util/hash.h"
#include "mqtt/codec.h"

#include "auth_int.h"

typedef enum { HASH_SHA512 = 6, HASH_PBKDF2 = 7 } hash_type_t;

typedef struct {
    char *user;
    size_t ulen;
    unsigned line;
    hash_type_t type;
    unsigned iterations;
    uint8_t salt[AUTH_SALT_LEN];
    uint8_t hash[AUTH_HASH_LEN];
} entry_t;

struct auth_db {
    entry_t *entries;
    size_t count;
    /* Parameters of the work done for an unknown user: those of the most
     * expensive entry, so no answer is slower for a user that exists. */
    entry_t dummy;
    atomic_uint refs; /* holders besides the loader (auth_db_ref), any worker's loop */
};

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict standard base64 with padding, decoding to exactly `want` bytes. */
static bool b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t want) {
    size_t need = (want + 2) / 3 * 4;
    size_t pad = (3 - want % 3) % 3;
    if (len != need)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        /* Exactly the padding `want` implies, in the last group only. */
        size_t npad = i + 4 == len ? pad : 0;
        for (size_t j = 0; j < 4; j++) {
            char c = s[i + j];
            int d = 0;
            if (j >= 4 - npad) {
                if (c != '=')
                    return false;
            } else if ((d = b64_value(c)) < 0) {
                return false;
            }
            v = v << 6 | (uint32_t)d;
        }
        /* Bits below the last data byte must be zero (canonical encoding). */
        if ((npad == 1 && (v & 0xff)) || (npad == 2 && (v & 0xffff)))
            return false;
        uint8_t b[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        for (size_t j = 0; j < 3 - npad; j++)
            out[o++] = b[j];
    }
    return o == want;
}

static size_t b64_encode(const uint8_t *in, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < len ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *len) {
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

bool auth_line_user(const char *line, size_t len, const char **user, size_t *ulen) {
    trim(&line, &len);
    if (len == 0 || line[0] == '#')
        return false;
    const char *colon = memchr(line, ':', len);
    size_t n = colon ? (size_t)(colon - line) : len;
    trim(&line, &n);
    *user = line;
    *ulen = n;
    return true;
}

const char *auth_user_name_error(const char *user, size_t ulen) {
    if (ulen == 0)
        return "empty user name";
    if (ulen > AUTH_MAX_USER_LEN)
        return "user name longer than 65535 bytes";
    if (memchr(user, ':', ulen))
        return "user name contains ':'";
    for (size_t i = 0; i < ulen; i++)
        if ((unsigned char)user[i] < 0x20 || user[i] == 0x7f)
            return "user name contains a control character";
    if (is_blank(user[0]) || is_blank(user[ulen - 1]))
        return "user name begins or ends with a blank";
    if (mqtt_utf8_check((const uint8_t *)user, ulen) != 0)
        return "user name is not valid UTF-8";
    return NULL;
}

/* Parses "$7$iter$salt$hash" or "$6$salt$hash". Returns NULL or a message. */
static const char *parse_hash(const char *s, size_t len, entry_t *e) {
    if (len < 3 || s[0] != '$' || (s[1] != '6' && s[1] != '7') || s[2] != '$')
        return "unsupported password hash (expected $6$ or $7$ as written by mosquitto_passwd)";
    e->type = s[1] == '7' ? HASH_PBKDF2 : HASH_SHA512;
    s += 3;
    len -= 3;
    if (e->type == HASH_PBKDF2) {
        uint64_t it = 0;
        size_t i = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && it <= AUTH_MAX_ITERATIONS)
            it = it * 10 + (uint64_t)(s[i++] - '0');
        if (i == 0 || i == len || s[i] != '$' || it < 1 || it > AUTH_MAX_ITERATIONS)
            return "invalid iteration count (expected 1 to 1000000)";
        e->iterations = (unsigned)it;
        s += i + 1;
        len -= i + 1;
    } else {
        e->iterations = 0;
    }
    const char *dollar = memchr(s, '$', len);
    if (!dollar)
        return "missing '$' between salt and hash";
    size_t slen = (size_t)(dollar - s);
    if (!b64_decode_exact(s, slen, e->salt, AUTH_SALT_LEN))
        return "salt is not 12 bytes of base64";
    s += slen + 1;
    len -= slen + 1;
    if (!b64_decode_exact(s, len, e->hash, AUTH_HASH_LEN))
        return "hash is not 64 bytes of base64";
    return NULL;
}

/* An order of hashing cost: one PBKDF2 iteration (two HMAC-SHA512) costs
 * more than the single SHA-512 of a `$6$` entry. */
static uint64_t entry_cost(const entry_t *e) {
    return e->type == HASH_PBKDF2 ? 1 + (uint64_t)e->iterations : 0;
}

static int entry_cmp(const void *a, const void *b) {
    const entry_t *x = a, *y = b;
    size_t n = x->ulen < y->ulen ? x->ulen : y->ulen;
    int c = memcmp(x->user, y->user, n);
    if (c)
        return c;
    if (x->ulen != y->ulen)
        return x->ulen < y->ulen ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

void auth_db_ref(auth_db_t *db) {
    atomic_fetch_add(&db->refs, 1);
}

void auth_db_free(auth_db_t *db) {
    if (!db)
        return;
    /* The last holder frees (a holder's decrement from 0 is the owner's). */
    unsigned r = atomic_load(&db->refs);
    while (r && !atomic_compare_exchange_weak(&db->refs, &r, r - 1))
        ;
    if (r)
        return;
    for (size_t i = 0; i < db->count; i++)
        free(db->entries[i].user);
    free(db->entries);
    free(db);
}

auth_db_t *auth_db_load_string(const char *name, const char *buf, size_t len, char *errbuf,
                               size_t errlen) {
    set_err(errbuf, errlen, "%s", "");
    auth_db_t *db = calloc(1, sizeof(*db));
    size_t cap = 0;
    if (!db)
        goto oom;
    if (memchr(buf, '\0', len)) {
        size_t line = 1;
        for (const char *p = buf; *p; p++)
            line += *p == '\n';
        set_err(errbuf, errlen, "%s:%zu: NUL byte in the file", name, line);
        goto fail;
    }
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - line) : len - pos;
        pos += llen + (nl ? 1 : 0);
        lineno++;
        const char *user;
        size_t ulen;
        if (!auth_line_user(line, llen, &user, &ulen))
            continue;
        const char *colon = memchr(line, ':', llen);
        if (!colon) {
            set_err(errbuf, errlen, "%s:%u: missing ':' between user name and password hash", name,
                    lineno);
            goto fail;
        }
        const char *msg = auth_user_name_error(user, ulen);
        if (msg) {
            set_err(errbuf, errlen, "%s:%u: %s", name, lineno, msg);
            goto fail;
        }
        const char *h = colon + 1;
        size_t hlen = llen - (size_t)(h - line);
        trim(&h, &hlen);
        if (hlen == 0) {
            set_err(errbuf, errlen, "%s:%u: user '%.*s' has no password hash", name, lineno,
                    (int)(ulen > 64 ? 64 : ulen), user);
            goto fail;
        }
        if (db->count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            entry_t *ne = realloc(db->entries, ncap * sizeof(*ne));
            if (!ne)
                goto oom;
            db->entries = ne;
            cap = ncap;
        }
        entry_t *e = &db->entries[db->count];
        memset(e, 0, sizeof(*e));
        msg = parse_hash(h, hlen, e);
        if (msg) {
            set_err(errbuf, errlen, "%s:%u: %s", name, lineno, msg);
            goto fail;
        }
        e->user = malloc(ulen + 1);
        if (!e->user)
            goto oom;
        memcpy(e->user, user, ulen);
        e->user[ulen] = '\0';
        e->ulen = ulen;
        e->line = lineno;
        db->count++;
    }
    if (db->count) {
        const entry_t *worst = &db->entries[0];
        for (size_t i = 1; i < db->count; i++)
            if (entry_cost(&db->entries[i]) > entry_cost(worst))
                worst = &db->entries[i];
        db->dummy = *worst;
        db->dummy.user = NULL;
        qsort(db->entries, db->count, sizeof(entry_t), entry_cmp);
        for (size_t i = 1; i < db->count; i++) {
            entry_t *a = &db->entries[i - 1], *b = &db->entries[i];
            if (a->ulen == b->ulen && memcmp(a->user, b->user, a->ulen) == 0) {
                set_err(errbuf, errlen, "%s:%u: duplicate user '%.*s' (first on line %u)", name,
                        b->line, (int)(b->ulen > 64 ? 64 : b->ulen), b->user, a->line);
                goto fail;
            }
        }
    } else {
        db->dummy.type = HASH_PBKDF2;
        db->dummy.iterations = AUTH_DEFAULT_ITERATIONS;
    }
    return db;
oom:
    set_err(errbuf, errlen, "%s: out of memory", name);
fail:
    auth_db_free(db);
    return NULL;
}

auth_db_t *auth_db_load(const char *path, char *errbuf, size_t errlen) {
    char *buf;
    size_t len;
    /* Bounded so a wrong path (a device, a huge log) cannot exhaust memory. */
    if (file_read_all(path, 256u << 20, &buf, &len, errbuf, errlen) < 0)
        return NULL;
    auth_db_t *db = auth_db_load_string(path, buf, len, errbuf, errlen);
    free(buf);
    return db;
}

size_t auth_db_count(const auth_db_t *db) {
    return db->count;
}

static const entry_t *find(const auth_db_t *db, const char *user, size_t ulen) {
    size_t lo = 0, hi = db->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const entry_t *e = &db->entries[mid];
        size_t n = e->ulen < ulen ? e->ulen : ulen;
        int c = memcmp(e->user, user, n);
        if (c == 0 && e->ulen != ulen)
            c = e->ulen < ulen ? -1 : 1;
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

unsigned auth_db_max_iterations(const auth_db_t *db) {
    return db->dummy.type == HASH_PBKDF2 ? db->dummy.iterations : 0;
}

bool auth_db_has_user(const auth_db_t *db, const char *user, size_t ulen) {
    return find(db, user, ulen) != NULL;
}

static auth_hash_observer_t hash_observer;
static void *hash_observer_ud;

void auth_set_hash_observer(auth_hash_observer_t fn, void *ud) {
    hash_observer = fn;
    hash_observer_ud = ud;
}

static int compute(const entry_t *e, const uint8_t *pw, size_t pwlen, uint8_t out[AUTH_HASH_LEN]) {
    static const uint8_t empty[1] = {0};
    if (!pw)
        pw = empty;
    if (hash_observer)
        hash_observer((int)e->type, e->type == HASH_PBKDF2 ? e->iterations : 0, hash_observer_ud);
    if (e->type == HASH_PBKDF2) {
        if (PKCS5_PBKDF2_HMAC((const char *)pw, (int)pwlen, e->salt, AUTH_SALT_LEN,
                              (int)e->iterations, EVP_sha512(), AUTH_HASH_LEN, out) != 1)
            return AUTH_ERR_INTERNAL;
        return 0;
    }
    int rc = AUTH_ERR_INTERNAL;
    unsigned int olen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, pw, pwlen) == 1 &&
        EVP_DigestUpdate(ctx, e->salt, AUTH_SALT_LEN) == 1 &&
        EVP_DigestFinal_ex(ctx, out, &olen) == 1 && olen == AUTH_HASH_LEN)
        rc = 0;
    EVP_MD_CTX_free(ctx);
    return rc;
}

int auth_db_check(const auth_db_t *db, const char *user, size_t ulen, const uint8_t *pw,
                  size_t pwlen) {
    const entry_t *e = user ? find(db, user, ulen) : NULL;
    bool known = e != NULL;
    if (!e)
        e = &db->dummy;
    bool too_long = pwlen > AUTH_MAX_PASSWORD_LEN;
    if (too_long)
        pwlen = AUTH_MAX_PASSWORD_LEN; /* still hash, only to spend the same time */
    uint8_t got[AUTH_HASH_LEN];
    int rc = compute(e, pw, pwlen, got);
    if (rc != 0)
        return rc;
    bool match = CRYPTO_memcmp(got, e->hash, AUTH_HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return known && pw && !too_long && match ? AUTH_OK : AUTH_BAD_CREDENTIALS;
}

int auth_hash_password(const char *user, size_t ulen, const uint8_t *pw, size_t pwlen,
                       unsigned iterations, char *out, size_t outlen) {
    if (iterations < 1 || iterations > AUTH_MAX_ITERATIONS || pwlen > AUTH_MAX_PASSWORD_LEN)
        return AUTH_ERR_INTERNAL;
    if (outlen < ulen + AUTH_LINE_OVERHEAD)
        return AUTH_ERR_SPACE;
    entry_t e = {.type = HASH_PBKDF2, .iterations = iterations};
    if (RAND_bytes(e.salt, AUTH_SALT_LEN) != 1)
        return AUTH_ERR_INTERNAL;
    uint8_t h[AUTH_HASH_LEN];
    if (compute(&e, pw, pwlen, h) != 0)
        return AUTH_ERR_INTERNAL;
    char salt64[24], hash64[96];
    b64_encode(e.salt, AUTH_SALT_LEN, salt64);
    b64_encode(h, AUTH_HASH_LEN, hash64);
    OPENSSL_cleanse(h, sizeof(h));
    memcpy(out, user, ulen);
    int n = snprintf(out + ulen, outlen - ulen, ":$7$%u$%s$%s", iterations, salt64, hash64);
    if (n < 0 || (size_t)n >= outlen - ulen)
        return AUTH_ERR_SPACE;
    return (int)ulen + n;
}

const char *auth_strerror(int err) {
    switch (err) {
    case AUTH_OK:
        return "success";
    case AUTH_BAD_CREDENTIALS:
        return "bad user name or password";
    case AUTH_ERR_INTERNAL:
        return "internal error in the password hash";
    case AUTH_ERR_SPACE:
        return "output buffer too small";
    default:
        return "unknown error";
    }
}

/* ---- throttle ---------------------------------------------------------- */

typedef struct {
    char addr[AUTH_THROTTLE_ADDR_MAX + 1]; /* "" = free slot */
    uint32_t failures;
    uint64_t last_fail_ms;  /* decay reference */
    uint64_t touched_ms;    /* replacement order within a set */
    uint64_t held_until_ms; /* the last held answer is due */
    uint32_t held;          /* answers held since none was */
} slot_t;

struct auth_throttle {
    slot_t *slots;
    size_t sets; /* power of two */
    size_t used;
    uint64_t seed;
};

auth_throttle_t *auth_throttle_new(size_t capacity) {
    size_t sets = 1;
    while (sets * AUTH_THROTTLE_WAYS < capacity && sets < ((size_t)1 << 24))
        sets <<= 1;
    auth_throttle_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->slots = calloc(sets * AUTH_THROTTLE_WAYS, sizeof(slot_t));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->sets = sets;
    /* A secret seed, so a client cannot pick addresses that share a set and
     * push a throttled address out. */
    if (RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1)
        t->seed = 0x9e3779b97f4a7c15ull;
    return t;
}

void auth_throttle_free(auth_throttle_t *t) {
    if (!t)
        return;
    free(t->slots);
    free(t);
}

size_t auth_throttle_size(const auth_throttle_t *t) {
    return t->used;
}

static uint64_t addr_hash(const auth_throttle_t *t, const char *addr, size_t len) {
    /* Seeded: a client picks its address's low bits, not which set it lands in. */
    uint64_t h = m2k_hash_seed(M2K_HASH_INIT ^ t->seed, addr, len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* Applies the decay; an entry with no failures left is freed. */
static void slot_decay(auth_throttle_t *t, slot_t *s, uint64_t now_ms) {
    if (!s->addr[0] || now_ms <= s->last_fail_ms)
        return;
    uint64_t periods = (now_ms - s->last_fail_ms) / AUTH_THROTTLE_DECAY_MS;
    if (periods == 0)
        return;
    if (periods >= s->failures) {
        s->addr[0] = '\0';
        s->failures = 0;
        t->used--;
        return;
    }
    s->failures -= (uint32_t)periods;
    s->last_fail_ms += periods * AUTH_THROTTLE_DECAY_MS;
}

/* Finds the address's slot; with `create`, takes a free slot or replaces the
 * least recently touched one in the set. */
static slot_t *slot_find(auth_throttle_t *t, const char *addr, uint64_t now_ms, bool create) {
    size_t len = strnlen(addr, AUTH_THROTTLE_ADDR_MAX);
    slot_t *set = &t->slots[(addr_hash(t, addr, len) & (t->sets - 1)) * AUTH_THROTTLE_WAYS];
    slot_t *victim = NULL;
    for (size_t i = 0; i < AUTH_THROTTLE_WAYS; i++) {
        slot_t *s = &set[i];
        slot_decay(t, s, now_ms);
        if (s->addr[0] && strncmp(s->addr, addr, len) == 0 && s->addr[len] == '\0')
            return s;
        if (!victim || (victim->addr[0] && (!s->addr[0] || s->touched_ms < victim->touched_ms)))
            victim = s;
    }
    if (!create)
        return NULL;
    if (!victim->addr[0])
        t->used++;
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->addr, addr, len);
    victim->addr[len] = '\0';
    return victim;
}

uint32_t auth_throttle_delay_ms(auth_throttle_t *t, const char *addr, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, false);
    if (!s || s->failures == 0)
        return 0;
    uint32_t f = s->failures;
    if (f > 6)
        return AUTH_THROTTLE_MAX_MS;
    uint32_t d = AUTH_THROTTLE_BASE_MS << (f - 1);
    return d > AUTH_THROTTLE_MAX_MS ? AUTH_THROTTLE_MAX_MS : d;
}

void auth_throttle_fail(auth_throttle_t *t, const char *addr, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, true);
    if (s->failures < UINT32_MAX)
        s->failures++;
    s->last_fail_ms = now_ms;
    s->touched_ms = now_ms;
}

void auth_throttle_success(auth_throttle_t *t, const char *addr, uint64_t now_ms) {
    auth_throttle_forgive(t, addr, UINT32_MAX, now_ms);
}

void auth_throttle_hold(auth_throttle_t *t, const char *addr, uint32_t delay_ms, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, false);
    if (!s)
        return;
    if (now_ms >= s->held_until_ms)
        s->held = 0;
    s->held++;
    if (now_ms + delay_ms > s->held_until_ms)
        s->held_until_ms = now_ms + delay_ms;
}

uint32_t auth_throttle_held(auth_throttle_t *t, const char *addr, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, false);
    return s && now_ms < s->held_until_ms ? s->held : 0;
}

uint32_t auth_throttle_failures(auth_throttle_t *t, const char *addr, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, false);
    return s ? s->failures : 0;
}

void auth_throttle_forgive(auth_throttle_t *t, const char *addr, uint32_t n, uint64_t now_ms) {
    slot_t *s = slot_find(t, addr, now_ms, false);
    if (!s)
        return;
    if (n < s->failures) {
        s->failures -= n;
        return;
    }
    s->addr[0] = '\0';
    s->failures = 0;
    t->used--;
}
