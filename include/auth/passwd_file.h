/* Password authentication against a Mosquitto-format password file, and the
 * failed-attempt throttle.
 *
 * File format (what mosquitto_passwd 2.0 writes, so its files work unchanged):
 *     user:$7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512
 *     user:$6$<base64 salt>$<base64 hash>                SHA512(password + salt)
 * The salt is 12 bytes and the hash 64, both standard base64 with padding.
 * Blank lines and lines whose first non-blank character is '#' are ignored.
 * Anything else that is not a valid entry, and a user named twice, is a load
 * error naming FILE:LINE: a broken line never becomes a user without a
 * password. See docs/security.md for the differences from Mosquitto.
 *
 * Only this module and passwd_tool.c use OpenSSL's libcrypto for hashing. */
#ifndef M2K_AUTH_H
#define M2K_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_OK 0
#define AUTH_BAD_CREDENTIALS (-1) /* unknown user or wrong password: never say which */
#define AUTH_ERR_INTERNAL (-2)    /* libcrypto failed; treat as a refusal */
#define AUTH_ERR_SPACE (-3)       /* output buffer too small */
const char *auth_strerror(int err);

#define AUTH_SALT_LEN 12
#define AUTH_HASH_LEN 64
#define AUTH_DEFAULT_ITERATIONS 101 /* mosquitto_passwd 2.0's PW_DEFAULT_ITERATIONS */
/* A larger count in a file is a load error: one check would stall the loop. */
#define AUTH_MAX_ITERATIONS 1000000
#define AUTH_MAX_USER_LEN 65535     /* an MQTT string */
#define AUTH_MAX_PASSWORD_LEN 65535 /* MQTT binary data */
/* "user:" + "$7$" + up to 7 digits + "$" + 16 + "$" + 88 + NUL */
#define AUTH_LINE_OVERHEAD 120

typedef struct auth_db auth_db_t;

/* Loads a password file. Returns NULL with a "FILE:LINE: message" (or
 * "FILE: message") in errbuf on any error. The caller owns the result. */
auth_db_t *auth_db_load(const char *path, char *errbuf, size_t errlen);
/* The same from a buffer (need not be NUL-terminated); `name` is used in
 * messages. A NUL byte in the buffer is an error. */
auth_db_t *auth_db_load_string(const char *name, const char *buf, size_t len, char *errbuf,
                               size_t errlen);
/* Frees the database, or drops one reference auth_db_ref took: a password
 * check running on another thread keeps the file it started with alive
 * across a reload. Both on one thread (the loop). */
void auth_db_free(auth_db_t *db);
void auth_db_ref(auth_db_t *db);
size_t auth_db_count(const auth_db_t *db);
/* The highest `$7$` iteration count in the file (what an unknown user's
 * check costs); 0 when every entry is `$6$`. */
unsigned auth_db_max_iterations(const auth_db_t *db);
bool auth_db_has_user(const auth_db_t *db, const char *user, size_t ulen);

/* Verifies a CONNECT's user name and password. `pw` may be NULL (no password
 * flag), as is a password longer than AUTH_MAX_PASSWORD_LEN: both are
 * AUTH_BAD_CREDENTIALS. An unknown user costs the hashing work of the most
 * expensive entry in the file (the highest `$7$` iteration count, or `$6$`
 * when there is no `$7$` entry), so no existing user answers more slowly
 * than an unknown one; the hash comparison is constant-time.
 * Cost: one PBKDF2 with the entry's iteration count (see docs/security.md). */
int auth_db_check(const auth_db_t *db, const char *user, size_t ulen, const uint8_t *pw,
                  size_t pwlen);

/* Test seam: called before each hash this module computes, with the hash
 * type (6 or 7) and the iteration count (0 for 6). NULL (the default): none.
 * Set it only while no check runs on another thread. */
typedef void (*auth_hash_observer_t)(int type, unsigned iterations, void *ud);
void auth_set_hash_observer(auth_hash_observer_t fn, void *ud);

/* Writes "user:$7$<iterations>$<salt>$<hash>" (no newline) with a fresh random
 * salt into out. Returns the length written, AUTH_ERR_SPACE or
 * AUTH_ERR_INTERNAL. out needs ulen + AUTH_LINE_OVERHEAD bytes. */
int auth_hash_password(const char *user, size_t ulen, const uint8_t *pw, size_t pwlen,
                       unsigned iterations, char *out, size_t outlen);

/* Checks a user name for a password file entry: 1..65535 bytes of UTF-8, no
 * ':', no control characters, no blank at either end (the loader trims
 * them). Returns NULL if valid, else a message. */
const char *auth_user_name_error(const char *user, size_t ulen);

/* For tools that rewrite a file line by line: if the line (without its line
 * ending) is an entry, sets the user name view (trimmed) and returns true;
 * blank and comment lines return false. Does not validate the hash. */
bool auth_line_user(const char *line, size_t len, const char **user, size_t *ulen);

/* ---- Failed-attempt throttle ----------------------------------------------
 * Remembers recent authentication failures per remote address (the IP
 * without the port, so reconnecting from a new port does not reset it) in a
 * fixed-size set-associative table: memory is bounded, and when a set is full
 * the entry touched longest ago is replaced. Pure: time is passed in.
 *
 * delay = 0 after 0 failures, then 100, 200, 400, 800, 1600, 2000 ms (cap).
 * Every AUTH_THROTTLE_DECAY_MS without a failure forgets one failure; a
 * success forgets all of them for that key. security.c keys it by address,
 * and by address and user (so a success forgets only that user's failures),
 * and refuses without checking the password while an address has
 * AUTH_THROTTLE_BURST failures (a token bucket: one guess per DECAY_MS then). */
#define AUTH_THROTTLE_BASE_MS 100
#define AUTH_THROTTLE_MAX_MS 2000
#define AUTH_THROTTLE_DECAY_MS 10000
#define AUTH_THROTTLE_WAYS 4
#define AUTH_THROTTLE_ADDR_MAX 63 /* longer keys are truncated */
#define AUTH_THROTTLE_BURST 10
/* CONNECTs of one address whose answer is being held: more are refused at
 * once (security.c), so parallel connections cannot pile up held answers. */
#define AUTH_THROTTLE_MAX_HELD 16

typedef struct auth_throttle auth_throttle_t;

/* capacity: entries remembered, rounded up to a power of two >= WAYS. */
auth_throttle_t *auth_throttle_new(size_t capacity);
void auth_throttle_free(auth_throttle_t *t);
/* The delay to apply before answering this address's CONNECT. */
uint32_t auth_throttle_delay_ms(auth_throttle_t *t, const char *addr, uint64_t now_ms);
void auth_throttle_fail(auth_throttle_t *t, const char *addr, uint64_t now_ms);
void auth_throttle_success(auth_throttle_t *t, const char *addr, uint64_t now_ms);
/* The failures remembered for the key now (after the decay). */
uint32_t auth_throttle_failures(auth_throttle_t *t, const char *addr, uint64_t now_ms);
/* An answer to the key's address is held for delay_ms from now. */
void auth_throttle_hold(auth_throttle_t *t, const char *addr, uint32_t delay_ms, uint64_t now_ms);
/* Answers held since the address last had none held (an upper bound of
 * those still held: they are forgotten together when the last is due). */
uint32_t auth_throttle_held(auth_throttle_t *t, const char *addr, uint64_t now_ms);
/* Forgets n of the key's failures (all of them: the key is freed). */
void auth_throttle_forgive(auth_throttle_t *t, const char *addr, uint32_t n, uint64_t now_ms);
/* Number of addresses currently remembered (tests, metrics). */
size_t auth_throttle_size(const auth_throttle_t *t);

#endif
