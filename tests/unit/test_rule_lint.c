/* Lint of the topic map's rules: shadowed rules and regexes that never match,
 * checked against the real matcher (topic_map_lookup, regexec). */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "map/rule_lint.h"
#include "map/topic_map.h"

/* A small universe: every filter of 1..3 levels over these, '#' last; every
 * topic of 1..4 levels over the literals. */
static const char *const lits[] = {"a", "b", "", "$x"};
#define N_LITS 4
#define MAX_FILTERS 400
#define MAX_TOPICS 400

static size_t gen(char (*out)[32], size_t max, int levels, int wild, const char *prefix,
                  int first) {
    size_t n = 0;
    int syms = N_LITS + (wild ? 2 : 0);
    for (int s = 0; s < syms; s++) {
        const char *l = s < N_LITS ? lits[s] : s == N_LITS ? "+" : "#";
        char buf[32];
        snprintf(buf, sizeof(buf), "%s%s%s", prefix, first ? "" : "/", l);
        assert_true(n < max);
        if (buf[0]) /* "" is neither a filter nor a topic */
            strcpy(out[n++], buf);
        if (levels > 1 && s != N_LITS + 1)
            n += gen(out + n, max - n, levels - 1, wild, buf, 0);
    }
    return n;
}

static int matches(const char *filter, const char *topic) {
    config_rule_t r = {.kind = RULE_FILTER,
                       .pattern = (char *)filter,
                       .kafka = "t",
                       .key = "{topic}",
                       .file = "t.yaml"};
    char err[256], scratch[256];
    topic_map_t *m = topic_map_new(&r, 1, err, sizeof(err));
    if (!m)
        fail_msg("%s: %s", filter, err);
    topic_map_result_t out;
    int rc = topic_map_lookup(m, topic, strlen(topic), NULL, scratch, sizeof(scratch), &out);
    topic_map_free(m);
    return rc == TOPIC_MAP_MATCHED;
}

/* covers(f, g) is exactly "every topic g matches, f matches" over the
 * universe, for every pair of filters. */
static void test_covers_against_matcher(void **state) {
    (void)state;
    static char filters[MAX_FILTERS][32], topics[MAX_TOPICS][32];
    static uint64_t set[MAX_FILTERS][8];
    size_t nf = gen(filters, MAX_FILTERS, 3, 1, "", 1);
    size_t nt = gen(topics, MAX_TOPICS, 4, 0, "", 1);
    assert_true(nt <= 8 * 64);
    for (size_t i = 0; i < nf; i++)
        for (size_t t = 0; t < nt; t++)
            if (matches(filters[i], topics[t]))
                set[i][t / 64] |= 1ull << (t % 64);
    size_t covered = 0;
    for (size_t f = 0; f < nf; f++)
        for (size_t g = 0; g < nf; g++) {
            int want = 1;
            for (int w = 0; w < 8; w++)
                want &= (set[g][w] & ~set[f][w]) == 0;
            if (topic_map_filter_covers(filters[f], filters[g]) != want)
                fail_msg("covers(\"%s\", \"%s\"): want %d", filters[f], filters[g], want);
            covered += (size_t)want;
        }
    /* Both outcomes, many times. */
    assert_true(nf > 150);
    assert_true(covered > 1000 && covered < nf * nf / 2);
}

typedef struct {
    char out[4096];
    size_t len;
} collect_t;

static void collect(void *ud, config_pos_t pos, const char *msg) {
    collect_t *c = ud;
    c->len += (size_t)snprintf(c->out + c->len, sizeof(c->out) - c->len, "%d:%d: %s\n", pos.line,
                               pos.col, msg);
}

static const char *lint(const char *const *specs, size_t n, collect_t *c) {
    config_rule_t rules[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        bool regex = strncmp(specs[i], "re:", 3) == 0;
        rules[i] = (config_rule_t){.kind = regex ? RULE_REGEX : RULE_FILTER,
                                   .pattern = (char *)specs[i] + (regex ? 3 : 0),
                                   .kafka = "t",
                                   .key = "{topic}",
                                   .pattern_pos = {(int)i + 2, 11},
                                   .file = "t.yaml"};
    }
    c->len = 0;
    c->out[0] = '\0';
    size_t count = topic_map_lint(rules, n, collect, c);
    size_t lines = 0;
    for (const char *p = c->out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(count, lines);
    return c->out;
}

static void test_shadowed_rules(void **state) {
    (void)state;
    collect_t c;
    const char *const a[] = {"a/#", "a/+", "a",         "+/b",    "a/b/c",   "$SYS/x",
                             "#",   "b/c", "re:^dev/x", "re:x/y", "re:^\\$x"};
    assert_string_equal(
        lint(a, sizeof(a) / sizeof(a[0]), &c),
        "3:11: topics[1].mqtt: \"a/+\" never applies: topics[0] \"a/#\" (line 2) comes first and "
        "matches every topic it matches\n"
        "4:11: topics[2].mqtt: \"a\" never applies: topics[0] \"a/#\" (line 2) comes first and "
        "matches every topic it matches\n"
        "6:11: topics[4].mqtt: \"a/b/c\" never applies: topics[0] \"a/#\" (line 2) comes first "
        "and matches every topic it matches\n"
        "9:11: topics[7].mqtt: \"b/c\" never applies: topics[6] \"#\" (line 8) comes first and "
        "matches every topic it matches\n"
        "10:11: topics[8].regex: \"^dev/x\" never applies: topics[6] \"#\" (line 8) comes first "
        "and matches every topic it matches\n"
        "11:11: topics[9].regex: \"x/y\" applies only to topics beginning with '$': topics[6] "
        "\"#\" (line 8) comes first and matches every other topic\n"
        "12:11: topics[10].regex: \"^\\$x\" applies only to topics beginning with '$': topics[6] "
        "\"#\" (line 8) comes first and matches every other topic\n");
    /* Nothing to say: distinct, more specific first, regex before '#'. */
    const char *const b[] = {"a/b", "a/+", "+/+", "a/#", "re:^x$", "#"};
    assert_string_equal(lint(b, sizeof(b) / sizeof(b[0]), &c), "");
}

/* Each "dead" regex never matches any topic of the universe nor the samples;
 * each live one is silent and matches its sample. */
static void test_regex_never_matches(void **state) {
    (void)state;
    static const struct {
        const char *re, *why; /* why NULL: live, `sample` matches */
        const char *sample;
    } cases[] = {
        {"^a$/b", "'$' (the end of the topic) is followed by more to match", "a/b"},
        {"a$$b", "'$' (the end of the topic) is followed by more to match", "ab"},
        {"(x)$[^/]", "'$' (the end of the topic) is followed by more to match", "xy"},
        {"a$\\.", "'$' (the end of the topic) is followed by more to match", "a."},
        {"a\\+b", "it requires a '+', which a PUBLISH topic cannot contain", "a+b"},
        {"^dev/#", "it requires a '#', which a PUBLISH topic cannot contain", "dev/#"},
        {"[+]x\\#+", "it requires a '#', which a PUBLISH topic cannot contain", "+x#"},
        {"^a$|b", NULL, "b"},
        {"(a$)?b", NULL, "b"},
        {"a$b?", NULL, "a"},
        {"a$(b)*", NULL, "a"},
        {"(a$|c)b", NULL, "cb"},
        {"a\\+?b", NULL, "ab"},
        {"a(#)?", NULL, "a"},
        {"a#*", NULL, "a"},
        {"[#+]", NULL, "#"},
        {"a$", NULL, "a"},
        {"^a/[$]b", NULL, "a/$b"},
        {"\\$a", NULL, "$a"},
    };
    static char topics[MAX_TOPICS][32];
    size_t nt = gen(topics, MAX_TOPICS, 4, 0, "", 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char spec[64], want[256] = "";
        snprintf(spec, sizeof(spec), "re:%s", cases[i].re);
        const char *const s[] = {spec};
        collect_t c;
        if (cases[i].why)
            snprintf(want, sizeof(want), "2:11: topics[0].regex: \"%s\" can never match: %s\n",
                     cases[i].re, cases[i].why);
        assert_string_equal(lint(s, 1, &c), want);
        regex_t re;
        assert_int_equal(regcomp(&re, cases[i].re, REG_EXTENDED | REG_NOSUB), 0);
        int sample = regexec(&re, cases[i].sample, 0, NULL, 0) == 0;
        if (!cases[i].why) {
            if (!sample)
                fail_msg("%s should match %s", cases[i].re, cases[i].sample);
        } else {
            /* The sample holds '+' or '#' (not a topic), or nothing matches. */
            if (sample && !strpbrk(cases[i].sample, "+#"))
                fail_msg("%s matches %s", cases[i].re, cases[i].sample);
            for (size_t t = 0; t < nt; t++)
                if (regexec(&re, topics[t], 0, NULL, 0) == 0)
                    fail_msg("%s matches %s", cases[i].re, topics[t]);
        }
        regfree(&re);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covers_against_matcher),
        cmocka_unit_test(test_shadowed_rules),
        cmocka_unit_test(test_regex_never_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
