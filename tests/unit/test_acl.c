/* ACL: every syntax element, Mosquitto 2.0's decision order, the %u / %c
 * whole-level rule, names that never match a pattern, malformed lines.
 *
 * Also a helper for tests/integration/test_acl_compat.py:
 *   test_acl check FILE USER CLIENT TOPIC   USER "-" = none; prints the
 *                                            publish decision: allow or deny */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/acl.h"

static acl_t *load(const char *text) {
    char err[256];
    acl_t *acl = acl_load_string("t", text, strlen(text), err, sizeof(err));
    if (!acl)
        fail_msg("load failed: %s", err);
    return acl;
}

static void expect_error(const char *text, const char *want) {
    char err[256];
    acl_t *acl = acl_load_string("t", text, strlen(text), err, sizeof(err));
    if (acl) {
        acl_free(acl);
        fail_msg("loaded but expected error: %s", want);
    }
    assert_string_equal(err, want);
}

static bool pub(const acl_t *acl, const char *user, const char *cid, const char *topic) {
    return acl_can_publish(acl, user, cid, topic, strlen(topic));
}

static bool rd(const acl_t *acl, const char *user, const char *cid, const char *topic) {
    return acl_check(acl, user, cid, topic, strlen(topic), ACL_READ);
}

static bool fm(const char *f, const char *t) {
    return acl_filter_matches(f, strlen(f), t, strlen(t));
}

static void test_filter_semantics(void **state) {
    (void)state;
    assert_true(fm("a/b", "a/b"));
    assert_false(fm("a/b", "a/bc"));
    assert_false(fm("a/b", "a/b/c"));
    assert_false(fm("a/b/c", "a/b"));
    assert_true(fm("a/+", "a/b"));
    assert_true(fm("a/+", "a/"));
    assert_false(fm("a/+", "a"));
    assert_false(fm("a/+", "a/b/c"));
    assert_true(fm("+/+", "/x"));
    assert_true(fm("+", "x"));
    assert_false(fm("+", "x/y"));
    assert_true(fm("a/#", "a"));
    assert_true(fm("a/#", "a/"));
    assert_true(fm("a/#", "a/b/c"));
    assert_false(fm("a/#", "ab"));
    assert_true(fm("a/+/#", "a/b"));
    assert_false(fm("a/+/#", "a"));
    assert_true(fm("#", "a/b"));
    assert_true(fm("#", "/"));
    assert_true(fm("/#", "/a"));
    assert_false(fm("/#", "a"));
    assert_true(fm("a//b", "a//b"));
    assert_false(fm("a//b", "a/b"));
    /* $-topics: wildcards at the first level do not match [4.7.2-1]. */
    assert_false(fm("#", "$SYS/x"));
    assert_false(fm("+/x", "$SYS/x"));
    assert_true(fm("$SYS/#", "$SYS/x"));
    assert_true(fm("$SYS/#", "$SYS"));
    assert_true(fm("$SYS/+", "$SYS/x"));
    assert_false(fm("a/#", ""));
    assert_false(fm("", "a"));
}

static void test_syntax_elements(void **state) {
    (void)state;
    acl_t *acl = load("# comment\n"
                      "   # indented comment\n"
                      "\n"
                      "topic read r/#\r\n"
                      "topic write w/#\n"
                      "topic readwrite rw/#\n"
                      "topic plain/#\n"
                      "topic\tread\ttabs/#   \n"
                      "topic read a topic with blanks\n"
                      "topic read\n"
                      "topic deny\n");
    assert_false(pub(acl, NULL, "c", "r/x"));
    assert_true(rd(acl, NULL, "c", "r/x"));
    assert_true(pub(acl, NULL, "c", "w/x"));
    assert_false(rd(acl, NULL, "c", "w/x"));
    assert_true(pub(acl, NULL, "c", "rw/x"));
    assert_true(rd(acl, NULL, "c", "rw/x"));
    assert_true(pub(acl, NULL, "c", "plain/x"));
    assert_true(rd(acl, NULL, "c", "plain/x"));
    assert_true(rd(acl, NULL, "c", "tabs/x"));
    assert_true(rd(acl, NULL, "c", "a topic with blanks"));
    assert_false(pub(acl, NULL, "c", "a topic with blanks"));
    /* As in Mosquitto, one word after `topic` is the filter, even when it
     * reads like an access word. */
    assert_true(pub(acl, NULL, "c", "read"));
    assert_true(pub(acl, NULL, "c", "deny"));
    assert_false(pub(acl, NULL, "c", "other"));
    /* These entries are the anonymous section: a named user has none. */
    assert_false(pub(acl, "alice", "c", "w/x"));
    acl_free(acl);
}

static void test_user_sections(void **state) {
    (void)state;
    acl_t *acl = load("topic write anon/#\n"
                      "user alice\n"
                      "topic write alice/#\n"
                      "user bob smith\n"
                      "topic write bob/#\n"
                      "user alice\n"
                      "topic write alice2/#\n"
                      "user  carol  \n"
                      "topic write carol/#\n");
    assert_true(pub(acl, NULL, "c", "anon/1"));
    assert_false(pub(acl, NULL, "c", "alice/1"));
    assert_true(pub(acl, "alice", "c", "alice/1"));
    assert_true(pub(acl, "alice", "c", "alice2/1")); /* a repeated section continues */
    assert_false(pub(acl, "alice", "c", "anon/1"));
    assert_false(pub(acl, "alice", "c", "bob/1"));
    assert_true(pub(acl, "bob smith", "c", "bob/1"));
    assert_false(pub(acl, "bob", "c", "bob/1"));
    assert_true(pub(acl, "carol", "c", "carol/1")); /* blanks around the name trimmed */
    assert_false(pub(acl, "Alice", "c", "alice/1"));
    assert_false(pub(acl, "", "c", "anon/1")); /* an empty user name is a user name */
    assert_false(pub(acl, "dave", "c", "anon/1"));
    acl_free(acl);
}

static void test_empty_denies_all(void **state) {
    (void)state;
    const char *texts[] = {"", "# nothing\n\n", "user alice\n"};
    for (size_t i = 0; i < 3; i++) {
        acl_t *acl = load(texts[i]);
        assert_false(pub(acl, NULL, "c", "a"));
        assert_false(pub(acl, "alice", "c", "a"));
        assert_false(rd(acl, "alice", "c", "a"));
        acl_free(acl);
    }
}

static void test_deny_precedence(void **state) {
    (void)state;
    /* Within a section, deny wins wherever it appears. */
    acl_t *acl = load("user alice\n"
                      "topic write a/#\n"
                      "topic deny a/secret/#\n"
                      "topic deny b/#\n"
                      "topic write b/open\n"
                      "pattern write p/%u/#\n"
                      "pattern deny p/%u/locked\n"
                      "pattern write q/#\n");
    assert_true(pub(acl, "alice", "c", "a/x"));
    assert_false(pub(acl, "alice", "c", "a/secret"));
    assert_false(pub(acl, "alice", "c", "a/secret/x"));
    assert_false(pub(acl, "alice", "c", "b/open"));
    assert_true(pub(acl, "alice", "c", "p/alice/x"));
    assert_false(pub(acl, "alice", "c", "p/alice/locked"));
    assert_false(pub(acl, "bob", "c", "p/bob/locked"));
    assert_true(pub(acl, "bob", "c", "p/bob/x"));
    acl_free(acl);

    /* Mosquitto 2.0 order: a `topic` allow in the client's section is decided
     * before patterns, so a pattern deny does not override it; a `topic` deny
     * beats a pattern allow. A read-only topic entry does not stop the search
     * for write access. */
    acl = load("pattern deny x/%u\n"
               "pattern write y/#\n"
               "pattern write z/#\n"
               "user alice\n"
               "topic write x/alice\n"
               "topic deny y/1\n"
               "topic read z/#\n");
    assert_true(pub(acl, "alice", "c", "x/alice"));
    assert_false(pub(acl, "bob", "c", "x/bob"));
    assert_false(pub(acl, "alice", "c", "y/1"));
    assert_true(pub(acl, "alice", "c", "y/2"));
    assert_true(pub(acl, "alice", "c", "z/1"));
    acl_free(acl);
}

static void test_patterns(void **state) {
    (void)state;
    acl_t *acl = load("pattern write dev/%c/up\n"
                      "pattern readwrite users/%u/#\n"
                      "pattern write both/%u/%c\n"
                      "pattern write lit/%x/%%/u%\n"
                      "user alice\n"
                      "pattern write all/#\n" /* patterns apply to everyone */
                      "topic read nothing\n");
    assert_true(pub(acl, "alice", "c1", "dev/c1/up"));
    assert_false(pub(acl, "alice", "c1", "dev/c2/up"));
    assert_false(pub(acl, "alice", "c1", "dev/c1x/up"));
    assert_true(pub(acl, NULL, "c1", "dev/c1/up")); /* %c needs no user name */
    assert_true(pub(acl, "alice", "c1", "users/alice"));
    assert_true(pub(acl, "alice", "c1", "users/alice/a/b"));
    assert_false(pub(acl, "alice", "c1", "users/alicex/a"));
    assert_false(pub(acl, "alice", "c1", "users/bob/a"));
    assert_false(pub(acl, NULL, "c1", "users/%u/a")); /* %u never matches without a user */
    assert_false(pub(acl, NULL, "c1", "users//a"));
    assert_true(pub(acl, "bob", "cb", "both/bob/cb"));
    assert_false(pub(acl, "bob", "cb", "both/cb/bob"));
    assert_true(pub(acl, "bob", "cb", "lit/%x/%%/u%")); /* other % sequences are literal */
    assert_true(pub(acl, "bob", "cb", "all/x"));
    assert_true(pub(acl, NULL, "cb", "all/x"));
    /* The topic itself cannot smuggle a wildcard. */
    assert_false(pub(acl, "alice", "c1", "users/alice/#"));
    assert_false(pub(acl, "alice", "c1", "users/alice/+"));
    assert_false(pub(acl, "alice", "c1", ""));
    acl_free(acl);
}

static void test_dangerous_names(void **state) {
    (void)state;
    acl_t *acl = load("pattern write users/%u/#\n"
                      "pattern write dev/%c/#\n"
                      "pattern write open/#\n"
                      "user a+b\n"
                      "topic write own/#\n");
    const char *bad[] = {"a+b", "#", "a/b", "", "+"};
    for (size_t i = 0; i < 5; i++) {
        /* No pattern at all, not even one without %u / %c. */
        assert_false(pub(acl, bad[i], "c1", "open/x"));
        assert_false(pub(acl, "ok", bad[i], "open/x"));
        assert_false(pub(acl, NULL, bad[i], "open/x"));
    }
    assert_false(pub(acl, "a/b", "c1", "users/a/b/x"));
    assert_false(pub(acl, "ok", "a/b", "dev/a/b/x"));
    assert_false(pub(acl, "ok", NULL, "open/x"));
    /* The user's own `topic` entries still apply. */
    assert_true(pub(acl, "a+b", "c1", "own/x"));
    assert_true(pub(acl, "ok", "c1", "open/x"));
    assert_true(pub(acl, "ok", "c1", "users/ok/x"));
    acl_free(acl);
}

static void test_dollar_topics(void **state) {
    (void)state;
    acl_t *acl = load("topic write #\n"
                      "topic write +/x\n"
                      "topic read $SYS/#\n"
                      "pattern write $dev/%c\n");
    assert_true(pub(acl, NULL, "c", "a/b"));
    assert_false(pub(acl, NULL, "c", "$SYS/x"));
    assert_false(pub(acl, NULL, "c", "$other/x"));
    assert_true(rd(acl, NULL, "c", "$SYS/x"));
    assert_true(pub(acl, NULL, "c", "$dev/c"));
    acl_free(acl);
}

static bool sub(const acl_t *acl, const char *user, const char *cid, const char *f) {
    return acl_can_subscribe(acl, user, cid, f, strlen(f));
}

/* A SUBSCRIBE is granted when some read rule meets the filter; deny rules
 * and write rules do not count (each delivery is checked instead). */
static void test_can_subscribe(void **state) {
    (void)state;
    acl_t *acl = load("topic read pub/#\n"
                      "topic write wr/#\n"
                      "topic deny pub/secret\n"
                      "pattern read dev/%c/cmd\n"
                      "pattern readwrite users/%u/+/x\n"
                      "user alice\n"
                      "topic read a/b/c\n"
                      "topic read $SYS/info\n");
    assert_true(sub(acl, NULL, "c1", "pub/#"));
    assert_true(sub(acl, NULL, "c1", "pub"));
    assert_true(sub(acl, NULL, "c1", "pub/secret")); /* deny: checked per delivery */
    assert_true(sub(acl, NULL, "c1", "#"));          /* wider than the rules */
    assert_true(sub(acl, NULL, "c1", "+/x"));
    assert_false(sub(acl, NULL, "c1", "wr/x")); /* write only */
    assert_false(sub(acl, NULL, "c1", "other/#"));
    assert_true(sub(acl, NULL, "c1", "dev/c1/cmd"));
    assert_true(sub(acl, NULL, "c1", "dev/+/cmd"));
    assert_false(sub(acl, NULL, "c1", "dev/c2/cmd"));
    assert_false(sub(acl, NULL, "c1", "dev/c1/cmd/x"));
    assert_true(sub(acl, "alice", "c1", "a/+/c"));
    assert_true(sub(acl, "alice", "c1", "a/#"));
    assert_true(sub(acl, "alice", "c1", "a/b/c/#")); /* "a/b/c/#" matches "a/b/c" */
    assert_false(sub(acl, "alice", "c1", "a/b"));
    assert_false(sub(acl, "alice", "c1", "a/b/c/d"));
    assert_true(sub(acl, "alice", "c1", "users/alice/q/x"));
    assert_true(sub(acl, "alice", "c1", "users/+/+/+"));
    assert_false(sub(acl, "alice", "c1", "users/bob/q/x"));
    assert_false(sub(acl, "alice", "c1", "pub/#")); /* the anonymous section is not alice's */
    /* '$' topics: a wildcard first level does not reach them. */
    assert_true(sub(acl, "alice", "c1", "$SYS/#"));
    assert_false(sub(acl, "alice", "c1", "+/info"));
    assert_false(sub(acl, NULL, "a/b", "dev/+/cmd")); /* a client id no pattern takes */
    assert_false(sub(acl, NULL, "c1", ""));
    acl_free(acl);
    acl = load("topic read #\n");
    assert_true(sub(acl, NULL, "c", "a/b"));
    assert_false(sub(acl, NULL, "c", "$SYS/x"));
    acl_free(acl);
}

static void test_malformed(void **state) {
    (void)state;
    expect_error("# ok\nbogus x\n",
                 "t:2: unknown keyword 'bogus' (expected topic, pattern or user)");
    expect_error("Topic read x\n",
                 "t:1: unknown keyword 'Topic' (expected topic, pattern or user)");
    expect_error("topics x\n", "t:1: unknown keyword 'topics' (expected topic, pattern or user)");
    expect_error("\n\ntopic\n", "t:3: missing topic filter after 'topic'");
    expect_error("pattern   \n", "t:1: missing topic filter after 'pattern'");
    expect_error("topic reed x\n",
                 "t:1: unknown access 'reed' (expected read, write, readwrite or deny)");
    expect_error("topic x y\n",
                 "t:1: unknown access 'x' (expected read, write, readwrite or deny)");
    expect_error("user\n", "t:1: missing user name after 'user'");
    expect_error("user   \t\n", "t:1: missing user name after 'user'");
    expect_error("user \xff\n", "t:1: user name is not a valid MQTT string");
    expect_error("topic read a/#/b\n", "t:1: invalid topic filter 'a/#/b'");
    expect_error("topic a+\n", "t:1: invalid topic filter 'a+'");
    expect_error("topic read x\xc0\n", "t:1: invalid topic filter 'x\xc0'");
    expect_error("pattern read a#\n", "t:1: invalid topic filter 'a#'");
    expect_error("pattern write dev-%c/x\n",
                 "t:1: %u and %c must fill a whole topic level in 'dev-%c/x'");
    expect_error("pattern write a/%u%c\n",
                 "t:1: %u and %c must fill a whole topic level in 'a/%u%c'");
    expect_error("pattern write a/x%u\n",
                 "t:1: %u and %c must fill a whole topic level in 'a/x%u'");
    char buf[] = "topic a\nto\0pic b\n";
    char err[128];
    assert_null(acl_load_string("t", buf, sizeof(buf) - 1, err, sizeof(err)));
    assert_string_equal(err, "t:2: NUL byte in the file");
    /* `topic` lines keep %u literally: not an error. */
    acl_t *acl = load("topic write a/x%u\n");
    assert_true(pub(acl, NULL, "c", "a/x%u"));
    acl_free(acl);
}

static void test_load_file(void **state) {
    (void)state;
    char err[256];
    assert_null(acl_load("/nonexistent/acl", err, sizeof(err)));
    assert_string_equal(err, "/nonexistent/acl: cannot open: No such file or directory");
    char path[] = "/tmp/m2k_acl_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "user u\ntopic write a\ntopic ok x\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_null(acl_load(path, err, sizeof(err)));
    char want[300];
    snprintf(want, sizeof(want),
             "%s:3: unknown access 'ok' (expected read, write, readwrite or deny)", path);
    assert_string_equal(err, want);
    FILE *f = fopen(path, "w");
    fputs("user u\ntopic write a\n", f);
    fclose(f);
    acl_t *acl = acl_load(path, err, sizeof(err));
    assert_non_null(acl);
    assert_true(pub(acl, "u", "c", "a"));
    acl_free(acl);
    acl_free(NULL);
    unlink(path);
}

static void test_many_users(void **state) {
    (void)state;
    size_t cap = 2000 * 48;
    char *text = malloc(cap);
    size_t n = 0;
    for (int i = 1999; i >= 0; i--)
        n += (size_t)snprintf(text + n, cap - n, "user u%d\ntopic write t/%d/#\n", i, i);
    char err[128];
    acl_t *acl = acl_load_string("t", text, n, err, sizeof(err));
    assert_non_null(acl);
    char user[16], topic[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        snprintf(topic, sizeof(topic), "t/%d/x", i);
        assert_true(pub(acl, user, "c", topic));
        snprintf(topic, sizeof(topic), "t/%d/x", (i + 1) % 2000);
        assert_false(pub(acl, user, "c", topic));
    }
    acl_free(acl);
    free(text);
}

static int helper_main(int argc, char **argv) {
    if (argc != 6 || strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "usage: test_acl check FILE USER|- CLIENT TOPIC\n");
        return 2;
    }
    char err[512];
    acl_t *acl = acl_load(argv[2], err, sizeof(err));
    if (!acl) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    const char *user = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
    printf("%s\n", pub(acl, user, argv[4], argv[5]) ? "allow" : "deny");
    acl_free(acl);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1)
        return helper_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_semantics), cmocka_unit_test(test_syntax_elements),
        cmocka_unit_test(test_user_sections),    cmocka_unit_test(test_empty_denies_all),
        cmocka_unit_test(test_deny_precedence),  cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_dangerous_names),  cmocka_unit_test(test_dollar_topics),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_many_users),       cmocka_unit_test(test_can_subscribe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
