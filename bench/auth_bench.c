/* Cost of one password check (what a CONNECT costs the loop thread) and of
 * one ACL publish decision.
 *   auth_bench            ~1 s per case, prints microseconds per call
 *   auth_bench --smoke    a few calls, checks results */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/acl.h"
#include "auth/passwd_file.h"

/* mosquitto_passwd 2.0.11 defaults (-b): PBKDF2-SHA512, 101 iterations. */
#define ALICE                                                                                      \
    "alice:$7$101$JzD2re65drHd+hhB$RvlNJVzb6l8X6kHCFDP8bAAxcb3BF+x6Zwmd9ejvcrIVUScMDFneeJhke49uq9" \
    "LmnVeNTWLOIMpDmPbIE3K2PQ==\n"
#define BOB                                                                                        \
    "bob:$6$A0uSUP9L2mTWmF22$PSY+RnakcXayl9KO4c3zCEZES3KIMsJxqRv4qxDMV5jU3FGHj0nLW03vwHLE7ibesGXh" \
    "0jxmXTHXL/tx3fBdUw==\n"
#define DAVE                                                                                       \
    "dave:$7$1000$CCxG16U/PVuyZpSx$B3LtuuAeJGg0nBeGjJfTwUSBBZvEo5bGJGnoVb7NA1jee+"                 \
    "263EuQRgAUqR7ES34Fwc0B6ftuZQS5Pm/mWb/SBA==\n"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    const char *name, *user, *pw;
    int want;
} pw_case_t;

int main(int argc, char **argv) {
    bool smoke = argc > 1 && strcmp(argv[1], "--smoke") == 0;
    double budget = smoke ? 0.0 : 1.0;
    char err[256];
    const char *text = ALICE BOB DAVE;
    auth_db_t *db = auth_db_load_string("bench", text, strlen(text), err, sizeof(err));
    if (!db) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    /* The same users with a `$6$` entry first (the unknown user used to pay
     * the first entry's cost: 1.6 us, which told it did not exist). */
    const char *text6 = BOB ALICE DAVE;
    auth_db_t *db6 = auth_db_load_string("bench6", text6, strlen(text6), err, sizeof(err));
    if (!db6) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const pw_case_t cases[] = {
        {"$7$ 101 iterations (mosquitto_passwd default), right password", "alice", "secret",
         AUTH_OK},
        {"$7$ 101 iterations, wrong password", "alice", "nope", AUTH_BAD_CREDENTIALS},
        {"unknown user (dummy work)", "mallory", "secret", AUTH_BAD_CREDENTIALS},
        {"$6$ salted SHA-512", "bob", "hunter2", AUTH_OK},
        {"$7$ 1000 iterations", "dave", "x", AUTH_OK},
        {"$6$ first: $6$ user bob", "bob", "hunter2", AUTH_OK},
        {"$6$ first: $7$ 101 user alice", "alice", "secret", AUTH_OK},
        {"$6$ first: $7$ 1000 user dave", "dave", "x", AUTH_OK},
        {"$6$ first: unknown user", "mallory", "secret", AUTH_BAD_CREDENTIALS},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const pw_case_t *k = &cases[c];
        long n = 0;
        double t0 = now_s(), t;
        const auth_db_t *in = strncmp(k->name, "$6$ first", 9) == 0 ? db6 : db;
        do {
            int rc =
                auth_db_check(in, k->user, strlen(k->user), (const uint8_t *)k->pw, strlen(k->pw));
            if (rc != k->want) {
                fprintf(stderr, "%s: got %d\n", k->name, rc);
                return 1;
            }
            n++;
            t = now_s() - t0;
        } while (t < budget || n < 3);
        if (!smoke)
            printf("auth_db_check  %-62s %8.1f us/check\n", k->name, t / (double)n * 1e6);
    }
    auth_db_free(db);
    auth_db_free(db6);

    /* A mid-sized ACL: 1,000 users with 5 entries each and 10 patterns. */
    size_t cap = 1 << 20, len = 0;
    char *acl_text = malloc(cap);
    for (int p = 0; p < 10; p++)
        len += (size_t)snprintf(acl_text + len, cap - len, "pattern write site%d/%%u/+/data\n", p);
    len += (size_t)snprintf(acl_text + len, cap - len, "pattern deny site0/%%u/admin/#\n");
    for (int u = 0; u < 1000; u++) {
        len += (size_t)snprintf(acl_text + len, cap - len, "user u%d\n", u);
        for (int e = 0; e < 5; e++)
            len += (size_t)snprintf(acl_text + len, cap - len, "topic write u%d/t%d/#\n", u, e);
    }
    acl_t *acl = acl_load_string("bench", acl_text, len, err, sizeof(err));
    free(acl_text);
    if (!acl) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const char *topics[] = {"u500/t4/x/y", "site9/u500/dev1/data", "other/topic/here",
                            "site0/u500/admin/x"};
    const bool want[] = {true, true, false, false};
    for (size_t i = 0; i < 4; i++) {
        long n = 0;
        double t0 = now_s(), t;
        do {
            for (int r = 0; r < 1000; r++)
                if (acl_can_publish(acl, "u500", "c1", topics[i], strlen(topics[i])) != want[i]) {
                    fprintf(stderr, "acl %s: wrong decision\n", topics[i]);
                    return 1;
                }
            n += 1000;
            t = now_s() - t0;
        } while (t < budget);
        if (!smoke)
            printf("acl_can_publish %-22s (%s) %8.3f us/decision\n", topics[i],
                   want[i] ? "allow" : "deny ", t / (double)n * 1e6);
    }
    acl_free(acl);
    return 0;
}
