/* Topic map: MQTT filter semantics, rule order, captures, templates, bounds.
 * What topic_map_new refuses and --check's warnings are in
 * test_topic_map_rules.c. */
#include "topic_map_fixture.h"

/* One filter against one topic, per MQTT 3.1.1 section 4.7. */
static void test_filter_semantics(void **state) {
    (void)state;
    static const struct {
        const char *filter, *topic;
        int match;
    } cases[] = {
        {"a/b", "a/b", 1},
        {"a/b", "a/b/c", 0},
        {"a/b", "a", 0},
        {"a/b", "A/b", 0},
        {"a/+", "a/b", 1},
        {"a/+", "a", 0},
        {"a/+", "a/", 1}, /* an empty level is a level */
        {"a/+", "a/b/c", 0},
        {"a/#", "a", 1}, /* '#' covers its parent level */
        {"a/#", "a/", 1},
        {"a/#", "a/b/c", 1},
        {"a/#", "ab", 0},
        {"a/#", "b/a", 0},
        {"#", "a", 1},
        {"#", "/", 1},
        {"#", "a/b/c", 1},
        {"+", "a", 1},
        {"+", "/", 0},
        {"+/+", "/", 1},
        {"/+", "/x", 1},
        {"+", "/finance", 0},
        {"+/+", "/finance", 1},
        {"/+", "/finance", 1},
        {"sport/tennis/+", "sport/tennis/player1", 1},
        {"sport/tennis/+", "sport/tennis/player1/ranking", 0},
        {"sport/+", "sport", 0},
        {"sport/+", "sport/", 1},
        {"a//b", "a//b", 1},
        {"a/+/b", "a//b", 1},
        {"a//b", "a/b", 0},
        {"+/+/+", "a/b/c", 1},
        {"+/+/+", "a/b", 0},
        {"a/+/#", "a/b", 1},
        {"a/+/#", "a", 0},
        /* [MQTT-4.7.2-1]: '$' topics do not match a leading wildcard. */
        {"#", "$SYS/broker", 0},
        {"+/broker", "$SYS/broker", 0},
        {"#", "$", 0},
        {"$SYS/#", "$SYS/broker", 1},
        {"$SYS/+", "$SYS/broker", 1},
        {"$SYS/#", "$SYS", 1},
        {"a/#", "a/$x", 1}, /* only the first level is special */
        {"a/+", "a/$x", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rule_spec_t s = {"mqtt", cases[i].filter, "t", NULL};
        topic_map_t *m = map_of(&s, 1);
        res_t r = lookup(m, cases[i].topic);
        if (r.rc != (cases[i].match ? TOPIC_MAP_MATCHED : TOPIC_MAP_UNMAPPED))
            fail_msg("filter \"%s\" topic \"%s\": got %d", cases[i].filter, cases[i].topic, r.rc);
        assert_int_equal(r.rule, cases[i].match ? 0 : -1);
        topic_map_free(m);
    }
}

static void test_first_rule_wins(void **state) {
    (void)state;
    rule_spec_t a[] = {
        {"mqtt", "a/#", "t0", NULL}, {"mqtt", "a/b", "t1", NULL}, {"mqtt", "+/b", "t2", NULL}};
    topic_map_t *m = map_of(a, 3);
    assert_int_equal(lookup(m, "a/b").rule, 0);
    assert_string_equal(lookup(m, "a/b").topic, "t0");
    assert_int_equal(lookup(m, "x/b").rule, 2);
    topic_map_free(m);

    rule_spec_t b[] = {{"mqtt", "+/b", "t0", NULL},
                       {"mqtt", "a/b", "t1", NULL},
                       {"mqtt", "a/#", "t2", NULL},
                       {"mqtt", "#", "t3", NULL}};
    m = map_of(b, 4);
    assert_int_equal(lookup(m, "a/b").rule, 0);
    assert_int_equal(lookup(m, "a/c").rule, 2);
    assert_int_equal(lookup(m, "a").rule, 2);
    assert_int_equal(lookup(m, "z").rule, 3);
    assert_int_equal(lookup(m, "$z").rc, TOPIC_MAP_UNMAPPED);
    topic_map_free(m);

    /* The same filter twice: the first one. */
    rule_spec_t c[] = {{"mqtt", "x", "t0", NULL}, {"mqtt", "x", "t1", NULL}};
    m = map_of(c, 2);
    assert_string_equal(lookup(m, "x").topic, "t0");
    topic_map_free(m);
}

/* The topic is a view into the read buffer: regex rules must see exactly
 * topic_len bytes (not what follows) and never read past them. Under ASan
 * the view ends at the end of its allocation, where a strlen would be
 * caught. */
static void test_regex_sees_only_the_view(void **state) {
    (void)state;
    rule_spec_t a[] = {{"regex", "^plant/([^/]+)/(.+)$", "plant-{1}", "{2}"}};
    topic_map_t *m = map_of(a, 1);
    const char *text = "plant/3/statusXYZ/more";
    size_t len = strlen("plant/3/status");
    char *view = malloc(len); /* not NUL-terminated, nothing after it */
    assert_non_null(view);
    memcpy(view, text, len);
    char scratch[64];
    topic_map_result_t out;
    assert_int_equal(topic_map_lookup(m, view, len, NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_MATCHED);
    assert_string_equal(out.kafka_topic, "plant-3");
    assert_int_equal(out.key_len, 6);
    assert_memory_equal(out.key, "status", 6);
    /* The same bytes followed by more topic: only the view counts. */
    assert_int_equal(topic_map_lookup(m, text, len, NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_MATCHED);
    assert_int_equal(out.key_len, 6);
    /* A view cut inside a level does not match "(.+)$" past its end. */
    assert_int_equal(
        topic_map_lookup(m, text, strlen("plant/3/"), NULL, scratch, sizeof(scratch), &out),
        TOPIC_MAP_UNMAPPED);
    /* The copy for regexec lives in scratch: a topic longer than it is refused. */
    assert_int_equal(topic_map_lookup(m, view, len, NULL, scratch, len, &out),
                     TOPIC_MAP_ERR_NO_ROOM);
    free(view);
    topic_map_free(m);
}

static void test_regex_keeps_rule_order(void **state) {
    (void)state;
    rule_spec_t a[] = {{"mqtt", "x/#", "filter", NULL}, {"regex", "^x/y$", "regex", NULL}};
    topic_map_t *m = map_of(a, 2);
    assert_string_equal(lookup(m, "x/y").topic, "filter");
    topic_map_free(m);

    rule_spec_t b[] = {{"regex", "^x/y$", "regex", NULL},
                       {"mqtt", "x/#", "filter", NULL},
                       {"regex", "^q", "late", NULL}};
    m = map_of(b, 3);
    assert_string_equal(lookup(m, "x/y").topic, "regex");
    assert_int_equal(lookup(m, "x/y").rule, 0);
    assert_string_equal(lookup(m, "x/z").topic, "filter");
    assert_int_equal(lookup(m, "q/z").rule, 2);
    /* Unanchored regexes search. */
    assert_int_equal(lookup(m, "aq").rc, TOPIC_MAP_UNMAPPED);
    topic_map_free(m);

    rule_spec_t c[] = {
        {"regex", "nomatch", "r0", NULL}, {"regex", "a", "r1", NULL}, {"mqtt", "#", "f", NULL}};
    m = map_of(c, 3);
    assert_int_equal(lookup(m, "bab").rule, 1);
    assert_int_equal(lookup(m, "bbb").rule, 2);
    topic_map_free(m);
}

static void test_captures(void **state) {
    (void)state;
    rule_spec_t a[] = {
        {"mqtt", "sensors/+/temperature", "temperature", "{1}"},
        {"mqtt", "k/+/+/#", "k-{1}-{2}", "{3}"},
        {"mqtt", "b/#", "b", "[{1}]"},
        {"regex", "^plant/([^/]+)/(.+)$", "plant-{1}", "{2}"},
        {"regex", "^opt(/(x))?$", "opt", "<{2}>"},
    };
    topic_map_t *m = map_of(a, 5);
    res_t r = lookup(m, "sensors/s1/temperature");
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_string_equal(r.topic, "temperature");
    assert_string_equal(r.key, "s1");
    r = lookup(m, "k/a/b/c/d");
    assert_string_equal(r.topic, "k-a-b");
    assert_string_equal(r.key, "c/d");
    r = lookup(m, "k/a/b");
    assert_string_equal(r.topic, "k-a-b");
    assert_string_equal(r.key, "");
    assert_int_equal(r.key_null, 0);
    r = lookup(m, "b");
    assert_string_equal(r.key, "[]");
    r = lookup(m, "plant/p1/x/y");
    assert_int_equal(r.rule, 3);
    assert_string_equal(r.topic, "plant-p1");
    assert_string_equal(r.key, "x/y");
    r = lookup(m, "opt");
    assert_int_equal(r.rule, 4);
    assert_string_equal(r.key, "<>"); /* a group that did not take part is empty */
    r = lookup(m, "opt/x");
    assert_string_equal(r.key, "<x>");
    topic_map_free(m);
}

static void test_templates(void **state) {
    (void)state;
    rule_spec_t a[] = {
        {"mqtt", "u/+", "by-user", "{username}|{client_id}|{topic}"},
        {"mqtt", "braces", "lit", "{{x}}-{{{topic}}}"},
        {"mqtt", "nokey", "nk", ""},
        {"mqtt", "default", "d", NULL},
    };
    topic_map_t *m = map_of(a, 4);
    topic_map_ctx_t ctx = {"dev-7", 5, "alice", 5, NULL, NULL};
    res_t r = lookup_ctx(m, "u/x", &ctx);
    assert_string_equal(r.key, "alice|dev-7|u/x");
    ctx.username = NULL;
    ctx.username_len = 0;
    r = lookup_ctx(m, "u/x", &ctx);
    assert_string_equal(r.key, "|dev-7|u/x");
    r = lookup(m, "u/x"); /* no context at all */
    assert_string_equal(r.key, "||u/x");
    r = lookup(m, "braces");
    assert_string_equal(r.key, "{x}-{braces}");
    r = lookup(m, "nokey");
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_int_equal(r.key_null, 1);
    r = lookup(m, "default");
    assert_string_equal(r.key, "default");
    assert_int_equal(r.key_null, 0);
    topic_map_free(m);
}

/* A fake MQTT 5 property list: "name=value" strings, NULL-terminated; the
 * first entry with the name wins, as session5_user_property does. */
static bool fake_property(const void *props, const char *name, size_t len, const char **val,
                          size_t *val_len) {
    for (const char *const *p = props; *p; p++) {
        const char *eq = strchr(*p, '=');
        if ((size_t)(eq - *p) == len && memcmp(*p, name, len) == 0) {
            *val = eq + 1;
            *val_len = strlen(eq + 1);
            return true;
        }
    }
    return false;
}

static void test_property_templates(void **state) {
    (void)state;
    rule_spec_t a[] = {
        {"mqtt", "p/+", "t-{property:site}", "{property:dev}|{property:site}|{1}"},
        {"mqtt", "q", "q", "{{property:dev}}{property:a b}}}x"},
    };
    topic_map_t *m = map_of(a, 2);
    const char *const props[] = {"site=berlin", "dev=d1", "dev=d2", "a b=sp", NULL};
    topic_map_ctx_t ctx = {"c", 1, NULL, 0, fake_property, props};
    res_t r = lookup_ctx(m, "p/x", &ctx);
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_string_equal(r.topic, "t-berlin");
    assert_string_equal(r.key, "d1|berlin|x"); /* the first of two "dev" */
    /* Names are bytes up to the first '}' (spaces too); {{ }} stay literal. */
    r = lookup_ctx(m, "q", &ctx);
    assert_string_equal(r.key, "{property:dev}sp}x");
    /* Absent: empty; a Kafka topic needs what it renders to be legal. */
    const char *const other[] = {"site=", "Dev=d9", NULL};
    ctx.props = other;
    r = lookup_ctx(m, "p/y", &ctx);
    assert_string_equal(r.topic, "t-");
    assert_string_equal(r.key, "||y");
    /* MQTT 3.1.1 (no property callback) and no context at all: empty. */
    ctx.property = NULL;
    r = lookup_ctx(m, "p/z", &ctx);
    assert_string_equal(r.key, "||z");
    r = lookup(m, "p/z");
    assert_string_equal(r.key, "||z");
    const char *const bad[] = {"site=a/b", NULL};
    ctx = (topic_map_ctx_t){"c", 1, NULL, 0, fake_property, bad};
    r = lookup_ctx(m, "p/x", &ctx);
    assert_int_equal(r.rc, TOPIC_MAP_ERR_BAD_TOPIC);
    topic_map_free(m);
}

static void test_bad_rendered_topic(void **state) {
    (void)state;
    rule_spec_t a[] = {{"mqtt", "a/+", "t-{1}", NULL},
                       {"mqtt", "b/+", "{1}", NULL},
                       {"mqtt", "c/#", "{topic}", NULL}};
    topic_map_t *m = map_of(a, 3);
    assert_int_equal(lookup(m, "a/ok.x_y-Z9").rc, TOPIC_MAP_MATCHED);
    res_t r = lookup(m, "a/sp ace");
    assert_int_equal(r.rc, TOPIC_MAP_ERR_BAD_TOPIC);
    assert_int_equal(r.rule, 0);
    assert_int_equal(lookup(m, "a/\xc3\xa9").rc, TOPIC_MAP_ERR_BAD_TOPIC);
    assert_int_equal(lookup(m, "b/").rc, TOPIC_MAP_ERR_BAD_TOPIC); /* empty */
    assert_int_equal(lookup(m, "b/.").rc, TOPIC_MAP_ERR_BAD_TOPIC);
    assert_int_equal(lookup(m, "b/..").rc, TOPIC_MAP_ERR_BAD_TOPIC);
    assert_int_equal(lookup(m, "b/...").rc, TOPIC_MAP_MATCHED);
    assert_int_equal(lookup(m, "c").rc, TOPIC_MAP_MATCHED);
    assert_int_equal(lookup(m, "c/d").rc, TOPIC_MAP_ERR_BAD_TOPIC); /* '/' */
    char t[300] = "b/";
    memset(t + 2, 'x', 249);
    t[251] = '\0';
    assert_int_equal(lookup(m, t).rc, TOPIC_MAP_MATCHED);
    t[251] = 'x';
    t[252] = '\0';
    assert_int_equal(lookup(m, t).rc, TOPIC_MAP_ERR_BAD_TOPIC);
    topic_map_free(m);
}

/* Finding 3: a rendered name starting with '_' (Kafka's __consumer_offsets,
 * Schema Registry's _schemas) only from a template that starts with it. */
static void test_reserved_rendered_topic(void **state) {
    (void)state;
    rule_spec_t a[] = {
        {"mqtt", "a/+", "{1}", NULL}, {"mqtt", "b/+", "_{1}", NULL}, {"mqtt", "c/+", "x{1}", NULL}};
    topic_map_t *m = map_of(a, 3);
    res_t r = lookup(m, "a/_schemas");
    assert_int_equal(r.rc, TOPIC_MAP_ERR_RESERVED);
    assert_int_equal(r.rule, 0);
    assert_int_equal(lookup(m, "a/__consumer_offsets").rc, TOPIC_MAP_ERR_RESERVED);
    assert_int_equal(lookup(m, "a/x_").rc, TOPIC_MAP_MATCHED);
    r = lookup(m, "b/_x");
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_string_equal(r.topic, "__x");
    assert_int_equal(lookup(m, "c/_x").rc, TOPIC_MAP_MATCHED);
    topic_map_free(m);
    /* The refused name is handed back for the log line. */
    m = map_of(a, 1);
    char scratch[64];
    topic_map_result_t out;
    assert_int_equal(topic_map_lookup(m, "a/_s", 4, NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_ERR_RESERVED);
    assert_int_equal(out.kafka_topic_len, 2);
    assert_memory_equal(out.kafka_topic, "_s", 2);
    assert_int_equal(topic_map_lookup(m, "a/a b", 5, NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_ERR_BAD_TOPIC);
    assert_int_equal(out.kafka_topic_len, 3);
    assert_memory_equal(out.kafka_topic, "a b", 3);
    topic_map_free(m);
}

/* Finding 2: topics over the bound skip regex rules (not filter rules). */
static void test_regex_topic_bound(void **state) {
    (void)state;
    rule_spec_t a[] = {{"regex", "(.+)/alarm", "alarms", NULL}, {"mqtt", "f/#", "f", NULL}};
    topic_map_t *m = map_of(a, 2);
    topic_map_set_regex_topic_max(m, 16);
    char t[64];
    snprintf(t, sizeof(t), "%s", "0123456789/alarm"); /* 16 bytes */
    res_t r = lookup(m, t);
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_int_equal(r.rule, 0);
    snprintf(t, sizeof(t), "%s", "01234567890/alarm"); /* 17 */
    char scratch[64];
    topic_map_result_t out;
    assert_int_equal(topic_map_lookup(m, t, strlen(t), NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_UNMAPPED);
    assert_int_equal(out.regex_skipped, 1);
    assert_int_equal(topic_map_lookup(m, "x/alarm", 7, NULL, scratch, sizeof(scratch), &out),
                     TOPIC_MAP_MATCHED);
    assert_int_equal(out.regex_skipped, 0);
    snprintf(t, sizeof(t), "%s", "f/01234567890/alarm"); /* the filter rule still applies */
    r = lookup(m, t);
    assert_int_equal(r.rc, TOPIC_MAP_MATCHED);
    assert_int_equal(r.rule, 1);
    topic_map_free(m);
}

static void test_scratch_bound(void **state) {
    (void)state;
    rule_spec_t a[] = {{"mqtt", "s/+", "topic-{1}", "key-{1}"}};
    topic_map_t *m = map_of(a, 1);
    /* "topic-abc" NUL "key-abc" = 9 + 1 + 7 */
    char scratch[17];
    topic_map_result_t out;
    assert_int_equal(topic_map_lookup(m, "s/abc", 5, NULL, scratch, 17, &out), TOPIC_MAP_MATCHED);
    assert_memory_equal(scratch, "topic-abc\0key-abc", 17);
    assert_ptr_equal(out.kafka_topic, scratch);
    assert_ptr_equal(out.key, scratch + 10);
    assert_int_equal(out.key_len, 7);
    for (size_t cap = 0; cap < 17; cap++)
        assert_int_equal(topic_map_lookup(m, "s/abc", 5, NULL, scratch, cap, &out),
                         TOPIC_MAP_ERR_NO_ROOM);
    /* The topic need not be NUL-terminated: only topic_len bytes count. */
    assert_int_equal(topic_map_lookup(m, "s/abcZZZ", 5, NULL, scratch, 17, &out),
                     TOPIC_MAP_MATCHED);
    assert_memory_equal(out.key, "key-abc", 7);
    topic_map_free(m);

    rule_spec_t b[] = {{"regex", "^r/(.*)$", "r", "{1}"}};
    m = map_of(b, 1);
    assert_int_equal(topic_map_lookup(m, "r/xyZZ", 4, NULL, scratch, 17, &out), TOPIC_MAP_MATCHED);
    assert_int_equal(out.key_len, 2);
    assert_memory_equal(out.key, "xy", 2);
    assert_int_equal(topic_map_lookup(m, "q/xy", 4, NULL, scratch, 17, &out), TOPIC_MAP_UNMAPPED);
    assert_int_equal(out.rule, -1);
    topic_map_free(m);
}

static void test_no_rules(void **state) {
    (void)state;
    topic_map_t *m = map_of(NULL, 0);
    assert_int_equal(lookup(m, "a").rc, TOPIC_MAP_UNMAPPED);
    topic_map_free(m);
    topic_map_free(NULL);
}

/* Reference matcher: MQTT 4.7 written the obvious way. */
static int naive_match(const char *f, const char *t) {
    if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
        return 0;
    for (;;) {
        if (f[0] == '#')
            return 1;
        const char *fe = strchr(f, '/'), *te = strchr(t, '/');
        size_t fl = fe ? (size_t)(fe - f) : strlen(f), tl = te ? (size_t)(te - t) : strlen(t);
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return 0;
        if (!fe && !te)
            return 1;
        if (!te)
            return fe && strcmp(fe + 1, "#") == 0; /* "a/#" matches "a" */
        if (!fe)
            return 0;
        f = fe + 1;
        t = te + 1;
    }
}

static void random_levels(char *out, int levels, int allow_wild, unsigned *seed) {
    static const char *lits[] = {"a", "b", "", "$x"};
    out[0] = '\0';
    for (int i = 0; i < levels; i++) {
        int r = (int)(rand_r(seed) % (allow_wild ? 6 : 4));
        const char *l = r < 4 ? lits[r] : (r == 4 || i + 1 < levels) ? "+" : "#";
        if (r == 5 && i + 1 < levels)
            l = "+";
        if (i)
            strcat(out, "/");
        strcat(out, l);
    }
}

static void test_against_reference(void **state) {
    (void)state;
    unsigned seed = 12345;
    int matched = 0, unmatched = 0;
    for (int round = 0; round < 200; round++) {
        enum { N = 12 };
        char filters[N][64];
        rule_spec_t specs[N];
        for (int i = 0; i < N; i++) {
            random_levels(filters[i], 1 + (int)(rand_r(&seed) % 4), 1, &seed);
            if (filters[i][0] == '\0')
                strcpy(filters[i], "b"); /* "" is not a filter */
            specs[i] = (rule_spec_t){"mqtt", filters[i], "t", NULL};
        }
        topic_map_t *m = map_of(specs, N);
        for (int k = 0; k < 50; k++) {
            char topic[64];
            random_levels(topic, 1 + (int)(rand_r(&seed) % 4), 0, &seed);
            int want = -1;
            for (int i = 0; i < N && want < 0; i++)
                if (naive_match(filters[i], topic))
                    want = i;
            res_t r = lookup(m, topic);
            matched += want >= 0;
            unmatched += want < 0;
            if (r.rule != want)
                fail_msg("topic \"%s\": got rule %d, want %d (\"%s\")", topic, r.rule, want,
                         want >= 0 ? filters[want] : "-");
        }
        topic_map_free(m);
    }
    /* The random mix exercises both outcomes. */
    assert_true(matched > 2000);
    assert_true(unmatched > 2000);
}

static void test_many_rules(void **state) {
    (void)state;
    enum { N = 1000 };
    static char pats[N][48], kafkas[N][16];
    rule_spec_t specs[N];
    for (int i = 0; i < N; i++) {
        snprintf(pats[i], sizeof(pats[i]), i % 2 ? "site/%d/+/temp" : "site/%d/dev/#", i / 2);
        snprintf(kafkas[i], sizeof(kafkas[i]), "t%d", i);
        specs[i] = (rule_spec_t){"mqtt", pats[i], kafkas[i], "{1}"};
    }
    topic_map_t *m = map_of(specs, N);
    res_t r = lookup(m, "site/7/dev/temp");
    assert_int_equal(r.rule, 14); /* site/7/dev/# comes before site/7/+/temp */
    assert_string_equal(r.key, "temp");
    r = lookup(m, "site/7/x/temp");
    assert_int_equal(r.rule, 15);
    assert_string_equal(r.key, "x");
    assert_int_equal(lookup(m, "site/500/x/temp").rc, TOPIC_MAP_UNMAPPED);
    topic_map_free(m);
}

/* The codec's rules decide what a filter may be; the topic map only names
 * the misplaced wildcard. */
static void test_filter_check_uses_codec_rules(void **state) {
    (void)state;
    const char *why = NULL;
    assert_int_equal(topic_map_filter_check("a/+/#", 5, &why), 0);
    assert_int_equal(topic_map_filter_check("", 0, &why), -1);
    assert_string_equal(why, "an empty topic filter matches nothing");
    assert_int_equal(topic_map_filter_check("a/b+", 4, &why), -1);
    assert_string_equal(why, "'+' must be alone in its level");
    assert_int_equal(topic_map_filter_check("a#", 2, &why), -1);
    assert_string_equal(why, "'#' must be alone in the last level");
    assert_int_equal(topic_map_filter_check("a/\xed\xa0\x80", 5, &why), -1);
    assert_string_equal(why, "string encodes a surrogate code point (U+D800..U+DFFF)");
    assert_int_equal(topic_map_filter_check("a\0b", 3, &why), -1);
    assert_string_equal(why, mqtt_strerror(MQTT_ERR_UTF8_NUL));
    size_t n = 65536;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    assert_int_equal(topic_map_filter_check(big, n, &why), -1);
    assert_string_equal(why, "string longer than 65,535 bytes");
    assert_int_equal(topic_map_filter_check(big, n - 1, &why), 0);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_semantics),
        cmocka_unit_test(test_first_rule_wins),
        cmocka_unit_test(test_regex_keeps_rule_order),
        cmocka_unit_test(test_regex_sees_only_the_view),
        cmocka_unit_test(test_captures),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_property_templates),
        cmocka_unit_test(test_bad_rendered_topic),
        cmocka_unit_test(test_reserved_rendered_topic),
        cmocka_unit_test(test_regex_topic_bound),
        cmocka_unit_test(test_scratch_bound),
        cmocka_unit_test(test_no_rules),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_many_rules),
        cmocka_unit_test(test_filter_check_uses_codec_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
