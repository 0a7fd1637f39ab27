/* Password file loading, verification against mosquitto_passwd vectors,
 * hashing, the passwd tool and the failure throttle.
 *
 * Also a helper for tests/integration/test_passwd_compat.py (main.c does not
 * wire the subcommand yet):
 *   test_auth passwd [-D] FILE USER   runs passwd_tool_main
 *   test_auth check FILE USER         password from stdin; prints OK or BAD
 *   test_auth load FILE               prints the user count or the error */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/passwd_file.h"
#include "auth/security.h"
#include "mqtt/codec.h"
#include "auth/passwd_tool.h"

/* Made with mosquitto_passwd 2.0.11 (-b; bob with -H sha512, dave with -I 1000). */
#define ALICE                                                                                      \
    "alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMDFneeJhke49uq9" \
    "LmnVeNTWLOIMpDmPbIE3K2PQ=="
#define BOB                                                                                        \
    "bob:$6$A0uSUP9L2mTWmF22$PSY+RnakcXayl9KO4c3zCEZES3KIMsJxqRv4qxDMV5jU3FGHj0nLW03vwHLE7ibesGXh" \
    "0jxmXTHXL/tx3fBdUw=="
#define CAROL                                                                                      \
    "carol \xc3\xbc:$7$101$pdi/nY0lf9qbX+V6$MmMW3mu1AH7xiV3IrvU/toA2S+"                            \
    "ZxuT8KWqh7ljY4Xi84HDpRfgePEt8byA+NYVp4xJGhJCKrymfh7kkKV8lcgg=="
#define DAVE                                                                                       \
    "dave:$7$1000$CCxG16U/PVuyZpSx$B3LtuuAeJGg0nBeGjJfTwUSBBZvEo5bGJGnoVb7NA1jee+"                 \
    "263EuQRgAUqR7ES34Fwc0B6ftuZQS5Pm/mWb/SBA=="
/* Python: hashlib.pbkdf2_hmac('sha512', b'secret', bytes(range(12)), 101, 64) */
#define PYVEC                                                                                      \
    "py:$7$101$AAECAwQFBgcICQoL$Xr99N9ym9ys8TWxis5ajETJq6EVYzmc6nb8t3pUYnPBbCAbICS4xejTltonXWCtJN" \
    "BvA+By+TXUqU6qCblO00w=="
#define SALT_HASH_TAIL                                                                             \
    "$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMDFneeJhke49uq9"             \
    "LmnVeNTWLOIMpDmPbIE3K2PQ=="

static auth_db_t *load(const char *text) {
    char err[256];
    auth_db_t *db = auth_db_load_string("t", text, strlen(text), err, sizeof(err));
    if (!db)
        fail_msg("load failed: %s", err);
    return db;
}

static void expect_error(const char *text, const char *want) {
    char err[256];
    auth_db_t *db = auth_db_load_string("t", text, strlen(text), err, sizeof(err));
    if (db) {
        auth_db_free(db);
        fail_msg("loaded but expected error: %s", want);
    }
    assert_string_equal(err, want);
}

static int check(const auth_db_t *db, const char *user, const char *pw) {
    return auth_db_check(db, user, user ? strlen(user) : 0, (const uint8_t *)pw,
                         pw ? strlen(pw) : 0);
}

static void test_mosquitto_vectors(void **state) {
    (void)state;
    auth_db_t *db = load(ALICE "\n" BOB "\n" CAROL "\n" DAVE "\n" PYVEC "\n");
    assert_int_equal(auth_db_count(db), 5);
    assert_int_equal(check(db, "alice", "secret"), AUTH_OK);
    assert_int_equal(check(db, "bob", "hunter2"), AUTH_OK);
    assert_int_equal(check(db, "carol \xc3\xbc", "p\xc3\xa4ssw\xc3\xb6rd"), AUTH_OK);
    assert_int_equal(check(db, "dave", "x"), AUTH_OK);
    assert_int_equal(check(db, "py", "secret"), AUTH_OK);

    assert_int_equal(check(db, "alice", "Secret"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "alice", "secre"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "alice", "secret "), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "alice", ""), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "alice", NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "bob", "hunter"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "bob", "secret"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "alice", "hunter2"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "carol", "p\xc3\xa4ssw\xc3\xb6rd"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "mallory", "secret"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, "", "secret"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, NULL, "secret"), AUTH_BAD_CREDENTIALS);
    /* The user name is compared by length, not up to a NUL. */
    assert_int_equal(auth_db_check(db, "alicex", 5, (const uint8_t *)"secret", 6), AUTH_OK);
    assert_int_equal(auth_db_check(db, "alice", 4, (const uint8_t *)"secret", 6),
                     AUTH_BAD_CREDENTIALS);
    /* The password is binary: a NUL inside it counts (Mosquitto stops there). */
    assert_int_equal(auth_db_check(db, "alice", 5, (const uint8_t *)"secret\0x", 8),
                     AUTH_BAD_CREDENTIALS);
    assert_true(auth_db_has_user(db, "dave", 4));
    assert_false(auth_db_has_user(db, "dav", 3));
    auth_db_free(db);
}

typedef struct {
    int calls, type;
    unsigned iterations;
} hashes_t;

static void count_hash(int type, unsigned iterations, void *ud) {
    hashes_t *h = ud;
    h->calls++;
    h->type = type;
    h->iterations = iterations;
}

/* One check computes exactly one hash, of this type and iteration count
 * (seen through the seam), and answers `want`. */
static void expect_hash(const auth_db_t *db, const char *user, const char *pw, int want, int type,
                        unsigned iterations) {
    hashes_t h = {0};
    auth_set_hash_observer(count_hash, &h);
    assert_int_equal(check(db, user, pw), want);
    auth_set_hash_observer(NULL, NULL);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.type, type);
    assert_int_equal(h.iterations, iterations);
}

static void test_unknown_user_pays_the_most_expensive_entry(void **state) {
    (void)state;
    /* A `$6$` entry first, the most expensive (dave, 1000 iterations) third. */
    auth_db_t *db = load(BOB "\n" ALICE "\n" DAVE "\n" CAROL "\n");
    expect_hash(db, "mallory", "secret", AUTH_BAD_CREDENTIALS, 7, 1000);
    expect_hash(db, NULL, "secret", AUTH_BAD_CREDENTIALS, 7, 1000);
    /* Known users hash with their own parameters. */
    expect_hash(db, "dave", "x", AUTH_OK, 7, 1000);
    expect_hash(db, "alice", "secret", AUTH_OK, 7, 101);
    expect_hash(db, "bob", "hunter2", AUTH_OK, 6, 0);
    auth_db_free(db);
    /* Only `$6$` entries: the dummy is `$6$`. */
    db = load(BOB "\n");
    expect_hash(db, "mallory", "secret", AUTH_BAD_CREDENTIALS, 6, 0);
    auth_db_free(db);
    /* An empty file: the mosquitto_passwd default. */
    db = load("# nobody\n");
    expect_hash(db, "mallory", "secret", AUTH_BAD_CREDENTIALS, 7, AUTH_DEFAULT_ITERATIONS);
    auth_db_free(db);
}

static void test_layout_accepted(void **state) {
    (void)state;
    /* Comments, blanks, CRLF, blanks around fields, no final newline. */
    auth_db_t *db = load("# users\n\n   \n  # indented comment\r\n" ALICE "\r\n"
                         "\t bob \t:\t$6$A0uSUP9L2mTWmF22$PSY+RnakcXayl9KO4c3zCEZES3KIMsJxqRv4qx"
                         "DMV5jU3FGHj0nLW03vwHLE7ibesGXh0jxmXTHXL/tx3fBdUw==  \n" DAVE);
    assert_int_equal(auth_db_count(db), 3);
    assert_int_equal(check(db, "alice", "secret"), AUTH_OK);
    assert_int_equal(check(db, "bob", "hunter2"), AUTH_OK);
    assert_int_equal(check(db, "dave", "x"), AUTH_OK);
    auth_db_free(db);

    db = load("");
    assert_int_equal(auth_db_count(db), 0);
    assert_int_equal(check(db, "alice", "secret"), AUTH_BAD_CREDENTIALS);
    assert_int_equal(check(db, NULL, NULL), AUTH_BAD_CREDENTIALS);
    auth_db_free(db);
    db = load("# only a comment\n\n");
    assert_int_equal(auth_db_count(db), 0);
    auth_db_free(db);
}

static void test_malformed_lines(void **state) {
    (void)state;
    expect_error("# c\nalice\n", "t:2: missing ':' between user name and password hash");
    expect_error(":$7$101" SALT_HASH_TAIL, "t:1: empty user name");
    expect_error("  :$7$101" SALT_HASH_TAIL, "t:1: empty user name");
    expect_error("alice:\n", "t:1: user 'alice' has no password hash");
    expect_error("alice:   \n", "t:1: user 'alice' has no password hash");
    const char *unsupported =
        "t:1: unsupported password hash (expected $6$ or $7$ as written by mosquitto_passwd)";
    expect_error("alice:secret\n", unsupported);
    expect_error("alice:$5$abc$def\n", unsupported);
    expect_error("alice:$7\n", unsupported);
    expect_error("alice:$77$101" SALT_HASH_TAIL, unsupported);
    const char *iter = "t:1: invalid iteration count (expected 1 to 1000000)";
    expect_error("alice:$7$0" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$-1" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$+101" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$101x" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$1000001" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$99999999999999999999999" SALT_HASH_TAIL, iter);
    expect_error("alice:$7$101", iter);
    expect_error("alice:$7$101$JzD2re65drHd+hhB", "t:1: missing '$' between salt and hash");
    const char *salt = "t:1: salt is not 12 bytes of base64";
    expect_error("alice:$7$101$AAECAwQFBgcICQo=$x", salt);     /* 11 bytes */
    expect_error("alice:$7$101$AAECAwQFBgcICQoLDA==$x", salt); /* 13 bytes */
    expect_error("alice:$7$101$AAECAwQFBgcICQo*$x", salt);
    expect_error("alice:$7$101$$x", salt);
    const char *hash = "t:1: hash is not 64 bytes of base64";
    /* Without padding, with a bit set below the last byte, truncated, with
     * trailing junk, with a fifth field, with a blank inside. */
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2PQ",
                 hash);
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2PR==",
                 hash);
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2",
                 hash);
    /* One '=' where two belong, and '=' before a data character (the first
     * overflowed the output before a fuzzer found it). */
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2PQA=",
                 hash);
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2P=A",
                 hash);
    expect_error("alice:$7$101$JzD2re65drHd+hhB=$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2PQ==",
                 salt);
    expect_error("alice:$7$101$JzD2re65drHd+hh=$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIMpDmPbIE3K2PQ==",
                 salt);
    expect_error(ALICE "x", hash);
    expect_error(ALICE "$", hash);
    expect_error(ALICE ":x", hash);
    expect_error("alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMD"
                 "FneeJhke49uq9LmnVeNTWLOIM pDmPbIE3K2PQ==",
                 hash);
    expect_error(ALICE "\n" BOB "\nalice:$6$A0uSUP9L2mTWmF22$PSY+RnakcXayl9KO4c3zCEZES3KIMsJxqRv4q"
                       "xDMV5jU3FGHj0nLW03vwHLE7ibesGXh0jxmXTHXL/tx3fBdUw==\n",
                 "t:3: duplicate user 'alice' (first on line 1)");
    expect_error("a\x01lice:$7$101" SALT_HASH_TAIL "\n",
                 "t:1: user name contains a control character");
    expect_error("al\xffice:$7$101" SALT_HASH_TAIL "\n", "t:1: user name is not valid UTF-8");

    char buf[] = ALICE "\nbob\0:x\n";
    char err[128];
    assert_null(auth_db_load_string("t", buf, sizeof(buf) - 1, err, sizeof(err)));
    assert_string_equal(err, "t:2: NUL byte in the file");
    /* A tiny error buffer truncates without overflowing. */
    assert_null(auth_db_load_string("t", "alice\n", 6, err, 8));
    assert_string_equal(err, "t:1: mi");
}

static void test_load_file(void **state) {
    (void)state;
    char err[256];
    assert_null(auth_db_load("/nonexistent/pw", err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/pw: cannot open: No such file or directory");
    char path[] = "/tmp/m2k_auth_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# x\n" ALICE "\nbroken\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_null(auth_db_load(path, err, sizeof(err)));
    char want[300];
    snprintf(want, sizeof(want), "%s:3: missing ':' between user name and password hash", path);
    assert_string_equal(err, want);
    FILE *f = fopen(path, "w");
    fputs(ALICE "\n", f);
    fclose(f);
    auth_db_t *db = auth_db_load(path, err, sizeof(err));
    assert_non_null(db);
    assert_int_equal(check(db, "alice", "secret"), AUTH_OK);
    auth_db_free(db);
    unlink(path);
}

static void test_hash_password(void **state) {
    (void)state;
    char a[200], b[200];
    int n = auth_hash_password("u\xc3\xa9", 3, (const uint8_t *)"pw", 2, 101, a, sizeof(a));
    /* user ":$7$101$" salt(16) "$" hash(88) */
    assert_int_equal(n, 3 + 8 + 16 + 1 + 88);
    assert_int_equal(strlen(a), (size_t)n);
    assert_memory_equal(a, "u\xc3\xa9:$7$101$", 11);
    assert_int_equal(a[11 + 16], '$');
    assert_string_equal(a + n - 2, "==");
    int m = auth_hash_password("u\xc3\xa9", 3, (const uint8_t *)"pw", 2, 101, b, sizeof(b));
    assert_int_equal(m, n);
    assert_string_not_equal(a, b); /* fresh salt each time */
    auth_db_t *db = load(a);
    assert_int_equal(check(db, "u\xc3\xa9", "pw"), AUTH_OK);
    assert_int_equal(check(db, "u\xc3\xa9", "pW"), AUTH_BAD_CREDENTIALS);
    auth_db_free(db);

    /* Binary password with a NUL, other iteration count. */
    n = auth_hash_password("z", 1, (const uint8_t *)"a\0b", 3, 7, a, sizeof(a));
    assert_memory_equal(a, "z:$7$7$", 7);
    db = load(a);
    assert_int_equal(auth_db_check(db, "z", 1, (const uint8_t *)"a\0b", 3), AUTH_OK);
    assert_int_equal(auth_db_check(db, "z", 1, (const uint8_t *)"a", 1), AUTH_BAD_CREDENTIALS);
    auth_db_free(db);

    assert_int_equal(auth_hash_password("z", 1, (const uint8_t *)"a", 1, 101, a, 120),
                     AUTH_ERR_SPACE);
    assert_int_equal(auth_hash_password("z", 1, (const uint8_t *)"a", 1, 101, a, 121) > 0, 1);
    assert_int_equal(auth_hash_password("z", 1, (const uint8_t *)"a", 1, 0, a, sizeof(a)),
                     AUTH_ERR_INTERNAL);
    assert_int_equal(
        auth_hash_password("z", 1, (const uint8_t *)"a", 1, AUTH_MAX_ITERATIONS + 1, a, sizeof(a)),
        AUTH_ERR_INTERNAL);
}

static void test_strerror(void **state) {
    (void)state;
    assert_string_equal(auth_strerror(AUTH_OK), "success");
    assert_string_equal(auth_strerror(AUTH_BAD_CREDENTIALS), "bad user name or password");
    assert_string_equal(auth_strerror(AUTH_ERR_INTERNAL), "internal error in the password hash");
    assert_string_equal(auth_strerror(AUTH_ERR_SPACE), "output buffer too small");
    assert_string_equal(auth_strerror(-99), "unknown error");
}

static void test_user_names(void **state) {
    (void)state;
    assert_null(auth_user_name_error("alice", 5));
    assert_null(auth_user_name_error("a b", 3));
    assert_string_equal(auth_user_name_error("", 0), "empty user name");
    assert_string_equal(auth_user_name_error("a:b", 3), "user name contains ':'");
    assert_string_equal(auth_user_name_error("a\tb", 3), "user name contains a control character");
    assert_string_equal(auth_user_name_error("a\x7f", 2), "user name contains a control character");
    assert_string_equal(auth_user_name_error(" a", 2), "user name begins or ends with a blank");
    assert_string_equal(auth_user_name_error("a ", 2), "user name begins or ends with a blank");
    assert_string_equal(auth_user_name_error("\xc3", 1), "user name is not valid UTF-8");
    char *big = malloc(65536);
    memset(big, 'a', 65536);
    assert_null(auth_user_name_error(big, 65535));
    assert_string_equal(auth_user_name_error(big, 65536), "user name longer than 65535 bytes");
    free(big);

    const char *u;
    size_t ul;
    assert_true(auth_line_user("  bob : x", 9, &u, &ul));
    assert_int_equal(ul, 3);
    assert_memory_equal(u, "bob", 3);
    assert_true(auth_line_user("bob", 3, &u, &ul));
    assert_int_equal(ul, 3);
    assert_false(auth_line_user("  # bob:x", 9, &u, &ul));
    assert_false(auth_line_user(" \t\r", 3, &u, &ul));
    assert_false(auth_line_user("", 0, &u, &ul));
}

/* ---- passwd tool ---- */

static char tool_err[4096]; /* stderr of the last run_tool */

/* Runs the tool in a child with stdin from `input` (a file, so not a tty);
 * its stderr lands in tool_err. */
static int run_tool(const char *input, const char *a1, const char *a2, const char *a3) {
    char errpath[] = "/tmp/m2k_pwerr_XXXXXX";
    int efd = mkstemp(errpath);
    assert_true(efd >= 0);
    char in[] = "/tmp/m2k_pwin_XXXXXX";
    int fd = mkstemp(in);
    assert_true(fd >= 0);
    if (input)
        assert_int_equal(write(fd, input, strlen(input)), (ssize_t)strlen(input));
    lseek(fd, 0, SEEK_SET);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 0);
        dup2(efd, 2);
        char *argv[5] = {"passwd", (char *)a1, (char *)a2, (char *)a3, NULL};
        int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
        int rc = passwd_tool_main(argc, argv);
        fflush(NULL);
        _exit(rc);
    }
    close(fd);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(in);
    ssize_t got = pread(efd, tool_err, sizeof(tool_err) - 1, 0);
    tool_err[got > 0 ? got : 0] = '\0';
    close(efd);
    unlink(errpath);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_passwd_tool(void **state) {
    (void)state;
    char dir[] = "/tmp/m2k_pwdir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/pw", dir);
    struct stat st;
    char err[256];

    /* Create: mode 0600, one entry that verifies. */
    assert_int_equal(run_tool("s3cret\n", path, "alice", NULL), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    auth_db_t *db = auth_db_load(path, err, sizeof(err));
    assert_non_null(db);
    assert_int_equal(auth_db_count(db), 1);
    assert_int_equal(check(db, "alice", "s3cret"), AUTH_OK);
    auth_db_free(db);

    /* Update keeps comments, blank lines, other users, their order, CRLF,
     * and the file's mode. */
    put(path, "# head\r\n" BOB "\r\n\nalice:$7$101" SALT_HASH_TAIL "\n# tail");
    chmod(path, 0640);
    assert_int_equal(run_tool("new pw\r\n", path, "alice", NULL), 0);
    char *text = slurp(path);
    const char *prefix = "# head\r\n" BOB "\r\n\nalice:$7$101$";
    assert_memory_equal(text, prefix, strlen(prefix));
    char *nl = strchr(text + strlen(prefix), '\n');
    assert_non_null(nl);
    assert_string_equal(nl, "\n# tail");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    db = auth_db_load(path, err, sizeof(err));
    assert_int_equal(check(db, "alice", "new pw"), AUTH_OK);
    assert_int_equal(check(db, "bob", "hunter2"), AUTH_OK);
    auth_db_free(db);
    free(text);

    /* Add appends after a last line that lacks its newline. */
    assert_int_equal(run_tool("pw3\n", path, "carol", NULL), 0);
    text = slurp(path);
    assert_non_null(strstr(text, "\n# tail\ncarol:$7$101$"));
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);

    /* Delete keeps everything else. */
    assert_int_equal(run_tool(NULL, "-D", path, "alice"), 0);
    text = slurp(path);
    assert_null(strstr(text, "alice"));
    const char *kept = "# head\r\n" BOB "\r\n\n# tail\ncarol:$7$101$";
    assert_memory_equal(text, kept, strlen(kept));
    free(text);
    assert_int_equal(run_tool(NULL, "-D", path, "alice"), 1);
    char want[256];
    snprintf(want, sizeof(want), "mqtt2kafka passwd: user 'alice' not found in %s\n", path);
    assert_string_equal(tool_err, want);

    /* Refusals leave the file as it was. */
    char *before = slurp(path);
    assert_int_equal(run_tool("", path, "dave", NULL), 1);
    assert_string_equal(tool_err, "mqtt2kafka passwd: no password given\n");
    assert_int_equal(run_tool("\n", path, "dave", NULL), 1);
    assert_string_equal(tool_err, "mqtt2kafka passwd: empty password\n");
    assert_int_equal(run_tool("x\n", path, "a:b", NULL), 1);
    assert_string_equal(tool_err, "mqtt2kafka passwd: invalid user name: user name contains ':'\n");
    assert_int_equal(run_tool("x\n", path, " ab", NULL), 1);
    assert_string_equal(
        tool_err, "mqtt2kafka passwd: invalid user name: user name begins or ends with a blank\n");
    const char *usage = "usage: mqtt2kafka passwd [-D] FILE USER\n"
                        "  add USER to FILE or change its password (read from the terminal,\n"
                        "  or one line from stdin when it is not a terminal); -D deletes USER\n";
    assert_int_equal(run_tool("x\n", path, NULL, NULL), 2);
    assert_string_equal(tool_err, usage);
    assert_int_equal(run_tool("x\n", path, "a", "b"), 2);
    assert_string_equal(tool_err, usage);
    assert_int_equal(run_tool("x\n", "-X", path, "dave"), 2);
    snprintf(want, sizeof(want), "mqtt2kafka passwd: unknown option '-X'\n%s", usage);
    assert_string_equal(tool_err, want);
    assert_int_equal(run_tool(NULL, "-h", NULL, NULL), 0);
    assert_string_equal(tool_err, usage);
    /* 65536 bytes: one too many, with LF or CRLF. */
    char *big = malloc(AUTH_MAX_PASSWORD_LEN + 4);
    memset(big, 'p', AUTH_MAX_PASSWORD_LEN + 1);
    strcpy(big + AUTH_MAX_PASSWORD_LEN + 1, "\n");
    assert_int_equal(run_tool(big, path, "dave", NULL), 1);
    assert_string_equal(tool_err, "mqtt2kafka passwd: password longer than 65535 bytes\n");
    strcpy(big + AUTH_MAX_PASSWORD_LEN + 1, "\r\n");
    assert_int_equal(run_tool(big, path, "dave", NULL), 1);
    assert_string_equal(tool_err, "mqtt2kafka passwd: password longer than 65535 bytes\n");
    strcpy(big + AUTH_MAX_PASSWORD_LEN, "\r\n");
    char *after = slurp(path);
    assert_string_equal(before, after);
    free(after);
    /* The longest password fits, also with CRLF. */
    assert_int_equal(run_tool(big, path, "dave", NULL), 0);
    assert_string_equal(tool_err, "");
    db = auth_db_load(path, err, sizeof(err));
    assert_int_equal(auth_db_check(db, "dave", 4, (const uint8_t *)big, AUTH_MAX_PASSWORD_LEN),
                     AUTH_OK);
    /* One byte more is refused even though only the first 65535 are hashed. */
    big = realloc(big, AUTH_MAX_PASSWORD_LEN + 1);
    big[AUTH_MAX_PASSWORD_LEN] = 'p';
    assert_int_equal(auth_db_check(db, "dave", 4, (const uint8_t *)big, AUTH_MAX_PASSWORD_LEN + 1),
                     AUTH_BAD_CREDENTIALS);
    auth_db_free(db);
    free(big);

    /* A corrupt file is never rewritten. */
    put(path, "# x\nbroken line\n");
    assert_int_equal(run_tool("x\n", path, "dave", NULL), 1);
    snprintf(want, sizeof(want),
             "mqtt2kafka passwd: %s:2: missing ':' between user name and password hash "
             "(file left unchanged)\n",
             path);
    assert_string_equal(tool_err, want);
    text = slurp(path);
    assert_string_equal(text, "# x\nbroken line\n");
    free(text);
    free(before);

    /* No temporary files are left behind. */
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* ---- throttle ---- */

static int sec_connect(security_t *s, const char *user, const char *pw, uint64_t now,
                       uint32_t *delay) {
    return security_connect(s, "192.0.2.7:4000", NULL, true, user, strlen(user), true,
                            (const uint8_t *)pw, strlen(pw), now, delay);
}

/* Issue 20 finding 5: a guesser from one address gets AUTH_THROTTLE_BURST
 * checked guesses, then one per decay period (refused before hashing, the
 * right password too); another user's login clears only its own failures. */
/* A security_t with a password file of `lines` (removed again at once: it is
 * read by security_new). */
static security_t *sec_with(const char *lines) {
    char path[] = "/tmp/m2k_sec_XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, lines, strlen(lines)), (ssize_t)strlen(lines));
    close(fd);
    config_auth_t cfg = {.password_file = path};
    security_t *s;
    assert_int_equal(security_new(&cfg, &s, err, sizeof(err)), 0);
    unlink(path);
    return s;
}

/* Issue 20 finding 5: an address with recent failures has its answers held;
 * at most AUTH_THROTTLE_MAX_HELD at once, then CONNECTs are refused at once
 * (no hold, no hash) until the held ones are due. */
static void test_security_held_answers_cap(void **state) {
    (void)state;
    security_t *s = sec_with(ALICE "\n");
    uint32_t delay;
    uint64_t t = 5000000;
    assert_int_equal(sec_connect(s, "alice", "guess", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(delay, 0);
    uint32_t longest = 0;
    for (int i = 0; i < AUTH_THROTTLE_MAX_HELD; i++) {
        assert_int_equal(sec_connect(s, "alice", "guess", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
        assert_true(delay > 0);
        longest = delay > longest ? delay : longest;
    }
    uint64_t before = security_refused_unchecked(s);
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(delay, 0);
    assert_int_equal(security_refused_unchecked(s), before + 1);
    /* once the held answers are due, answers are held again */
    assert_int_equal(sec_connect(s, "alice", "guess", t + longest, &delay),
                     MQTT_CONNACK_BAD_CREDENTIALS);
    assert_true(delay > 0);
    security_free(s);
}

/* Issue 20 finding 6: the daemon hashes on the threadpool and hands the
 * verdict in; security_connect then does not hash, uses it once, and keeps
 * the throttle's bookkeeping. */
static void test_security_verdict(void **state) {
    (void)state;
    security_t *s = sec_with(ALICE "\n");
    uint32_t delay;
    uint64_t t = 1000000;
    assert_true(security_will_hash(s, "192.0.2.7:4000", NULL, true, t));
    assert_false(security_will_hash(s, "192.0.2.7:4000", NULL, false, t));
    assert_false(security_will_hash(s, "192.0.2.7:4000", "cert-user", true, t));
    struct auth_db *db = security_db_ref(s);
    assert_non_null(db);
    hashes_t h = {0};
    auth_set_hash_observer(count_hash, &h);
    security_set_verdict(s, AUTH_OK); /* what the thread found */
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_ACCEPTED);
    assert_int_equal(h.calls, 0);
    security_set_verdict(s, AUTH_BAD_CREDENTIALS);
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(h.calls, 0);
    assert_int_equal(delay, 0);
    /* Used once: the next check hashes, and the failure above delays it. */
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_ACCEPTED);
    assert_int_equal(h.calls, 1);
    assert_int_equal(delay, AUTH_THROTTLE_BASE_MS);
    auth_set_hash_observer(NULL, NULL);
    /* The reference keeps the file after security_free. */
    security_free(s);
    assert_int_equal(auth_db_check(db, "alice", 5, (const uint8_t *)"secret", 6), AUTH_OK);
    auth_db_free(db);
}

static void test_security_failure_budget(void **state) {
    (void)state;
    char lines[400];
    int n = snprintf(lines, sizeof(lines), "%s\n", ALICE);
    assert_true(auth_hash_password("bob", 3, (const uint8_t *)"pw", 2, 101, lines + n,
                                   sizeof(lines) - (size_t)n - 1) > 0);
    strcat(lines, "\n");
    security_t *s = sec_with(lines);
    uint32_t delay;
    uint64_t t = 1000000;
    for (int i = 0; i < AUTH_THROTTLE_BURST - 1; i++)
        assert_int_equal(sec_connect(s, "alice", "guess", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    /* bob's login leaves alice's 9 failures: the answers stay delayed */
    assert_int_equal(sec_connect(s, "bob", "pw", t, &delay), MQTT_CONNACK_ACCEPTED);
    assert_int_equal(delay, AUTH_THROTTLE_MAX_MS);
    assert_int_equal(sec_connect(s, "alice", "guess", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(security_refused_unchecked(s), 0);
    /* 10 failures: the right password is refused unchecked (and not counted) */
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(sec_connect(s, "bob", "pw", t + 1, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(security_refused_unchecked(s), 2);
    /* one failure decays: one guess is checked again */
    t += AUTH_THROTTLE_DECAY_MS;
    assert_int_equal(sec_connect(s, "alice", "secret", t, &delay), MQTT_CONNACK_ACCEPTED);
    assert_int_equal(security_refused_unchecked(s), 2);
    /* alice's own failures are forgotten, the address's with them */
    assert_int_equal(sec_connect(s, "alice", "guess", t, &delay), MQTT_CONNACK_BAD_CREDENTIALS);
    assert_int_equal(delay, 0);
    security_free(s);
}

static void test_throttle_growth_and_reset(void **state) {
    (void)state;
    auth_throttle_t *t = auth_throttle_new(64);
    assert_non_null(t);
    const uint32_t want[] = {0, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(auth_throttle_delay_ms(t, "192.0.2.1", 1000 + i), want[i]);
        auth_throttle_fail(t, "192.0.2.1", 1000 + i);
    }
    for (int i = 0; i < 100; i++)
        auth_throttle_fail(t, "192.0.2.1", 2000);
    assert_int_equal(auth_throttle_delay_ms(t, "192.0.2.1", 2000), 2000);
    assert_int_equal(auth_throttle_delay_ms(t, "192.0.2.2", 2000), 0);
    assert_int_equal(auth_throttle_size(t), 1);
    auth_throttle_success(t, "192.0.2.1", 2001);
    assert_int_equal(auth_throttle_delay_ms(t, "192.0.2.1", 2001), 0);
    assert_int_equal(auth_throttle_size(t), 0);
    auth_throttle_success(t, "192.0.2.9", 2001); /* unknown: no effect */
    assert_int_equal(auth_throttle_size(t), 0);
    auth_throttle_free(t);
    auth_throttle_free(NULL);
}

static void test_throttle_decay(void **state) {
    (void)state;
    auth_throttle_t *t = auth_throttle_new(64);
    for (int i = 0; i < 3; i++)
        auth_throttle_fail(t, "::1", 5000); /* 3 failures: 400 ms */
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5000 + AUTH_THROTTLE_DECAY_MS - 1), 400);
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5000 + AUTH_THROTTLE_DECAY_MS), 200);
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5000 + 2 * AUTH_THROTTLE_DECAY_MS), 100);
    /* Time going backwards decays nothing. */
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 10), 100);
    /* A failure restarts the quiet period from now. */
    auth_throttle_fail(t, "::1", 5000 + 2 * AUTH_THROTTLE_DECAY_MS + 5);
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5000 + 3 * AUTH_THROTTLE_DECAY_MS), 200);
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5005 + 3 * AUTH_THROTTLE_DECAY_MS), 100);
    assert_int_equal(auth_throttle_size(t), 1);
    assert_int_equal(auth_throttle_delay_ms(t, "::1", 5005 + 4 * AUTH_THROTTLE_DECAY_MS), 0);
    assert_int_equal(auth_throttle_size(t), 0);
    auth_throttle_free(t);
}

static void test_throttle_bounded(void **state) {
    (void)state;
    /* Capacity 4 is one set: the fifth address replaces the one touched
     * longest ago. */
    auth_throttle_t *t = auth_throttle_new(4);
    const char *a[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"};
    for (int i = 0; i < 4; i++)
        auth_throttle_fail(t, a[i], 100 + (uint64_t)i);
    auth_throttle_fail(t, a[0], 200); /* a[0] is now the most recent */
    assert_int_equal(auth_throttle_size(t), 4);
    auth_throttle_fail(t, a[4], 300);
    assert_int_equal(auth_throttle_size(t), 4);
    assert_int_equal(auth_throttle_delay_ms(t, a[0], 300), 200);
    assert_int_equal(auth_throttle_delay_ms(t, a[1], 300), 0);
    assert_int_equal(auth_throttle_delay_ms(t, a[2], 300), 100);
    assert_int_equal(auth_throttle_delay_ms(t, a[4], 300), 100);
    auth_throttle_free(t);

    /* Many addresses never grow the table beyond its capacity. */
    t = auth_throttle_new(100); /* rounded up to 128 */
    char addr[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(addr, sizeof(addr), "2001:db8::%x", i);
        auth_throttle_fail(t, addr, 1000);
    }
    assert_true(auth_throttle_size(t) <= 128);
    assert_true(auth_throttle_size(t) >= 64);
    auth_throttle_free(t);

    /* Keys are cut at AUTH_THROTTLE_ADDR_MAX bytes. */
    t = auth_throttle_new(16);
    char l1[100], l2[100];
    memset(l1, 'x', 99);
    l1[99] = '\0';
    memcpy(l2, l1, 100);
    l2[98] = 'y';
    auth_throttle_fail(t, l1, 1);
    assert_int_equal(auth_throttle_delay_ms(t, l2, 1), 100);
    l2[AUTH_THROTTLE_ADDR_MAX - 1] = 'y';
    assert_int_equal(auth_throttle_delay_ms(t, l2, 1), 0);
    auth_throttle_free(t);
}

static int helper_main(int argc, char **argv) {
    char err[1024];
    if (strcmp(argv[1], "passwd") == 0)
        return passwd_tool_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "load") == 0 && argc == 3) {
        auth_db_t *db = auth_db_load(argv[2], err, sizeof(err));
        if (!db) {
            printf("%s\n", err);
            return 1;
        }
        printf("%zu\n", auth_db_count(db));
        auth_db_free(db);
        return 0;
    }
    if (strcmp(argv[1], "check") == 0 && argc == 4) {
        auth_db_t *db = auth_db_load(argv[2], err, sizeof(err));
        if (!db) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        static char pw[70000];
        size_t n = fread(pw, 1, sizeof(pw), stdin);
        if (n && pw[n - 1] == '\n')
            n--;
        int rc = auth_db_check(db, argv[3], strlen(argv[3]), (const uint8_t *)pw, n);
        printf("%s\n", rc == AUTH_OK ? "OK" : "BAD");
        auth_db_free(db);
        return rc == AUTH_OK ? 0 : 1;
    }
    fprintf(stderr, "usage: test_auth [passwd ...|load FILE|check FILE USER]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc > 1)
        return helper_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mosquitto_vectors),
        cmocka_unit_test(test_unknown_user_pays_the_most_expensive_entry),
        cmocka_unit_test(test_layout_accepted),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_hash_password),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_user_names),
        cmocka_unit_test(test_passwd_tool),
        cmocka_unit_test(test_throttle_growth_and_reset),
        cmocka_unit_test(test_throttle_decay),
        cmocka_unit_test(test_security_failure_budget),
        cmocka_unit_test(test_security_verdict),
        cmocka_unit_test(test_security_held_answers_cap),
        cmocka_unit_test(test_throttle_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
