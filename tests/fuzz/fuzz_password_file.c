/* libFuzzer target for the password file parser.
 *
 * The input is a password file. Whatever it holds, loading must not crash,
 * and must either fail with a "NAME:" message or yield a database whose
 * users are exactly the entry lines' user names (as auth_line_user sees
 * them). No password is checked: an entry may ask for a million PBKDF2
 * iterations, which would only measure the fuzzer's patience. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "auth/passwd_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    char err[256];
    auth_db_t *db = auth_db_load_string("f", buf, size, err, sizeof(err));
    if (!db) {
        CHECK(strncmp(err, "f:", 2) == 0);
        return 0;
    }
    size_t entries = 0, pos = 0;
    while (pos < size) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl ? 1 : 0);
        const char *u;
        size_t ulen;
        if (!auth_line_user(line, len, &u, &ulen))
            continue;
        entries++;
        CHECK(auth_user_name_error(u, ulen) == NULL);
        CHECK(auth_db_has_user(db, u, ulen));
    }
    CHECK(auth_db_count(db) == entries);
    auth_db_free(db);
    return 0;
}
