/* log.c: exact text and JSON lines, escaping of untrusted input, client
 * fields, truncation, rate limiting, one write per line from many threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "util/log.h"

static int cap_fd = -1;
static int saved_fd = -1;
static char cap_path[] = "/tmp/m2k_test_log_XXXXXX";
static char cap_buf[1 << 20];

static void capture_begin(void) {
    strcpy(cap_path, "/tmp/m2k_test_log_XXXXXX");
    cap_fd = mkstemp(cap_path);
    assert_true(cap_fd >= 0);
    unlink(cap_path);
    saved_fd = log_set_fd(cap_fd);
}

/* Returns everything written since capture_begin, NUL-terminated. */
static const char *capture_end(void) {
    log_set_fd(saved_fd);
    off_t len = lseek(cap_fd, 0, SEEK_END);
    assert_true(len >= 0 && (size_t)len < sizeof(cap_buf));
    assert_int_equal(pread(cap_fd, cap_buf, (size_t)len, 0), len);
    cap_buf[len] = '\0';
    close(cap_fd);
    cap_fd = -1;
    return cap_buf;
}

static int setup(void **state) {
    log_set_level(LOG_INFO);
    log_set_format(LOG_FORMAT_TEXT);
    return 0;
}

/* "2024-05-01T12:00:00.123Z " then the rest, compared exactly. */
static void assert_text_line(const char *line, const char *rest) {
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd')
            assert_true(line[i] >= '0' && line[i] <= '9');
        else
            assert_int_equal(line[i], shape[i]);
    }
    assert_string_equal(line + strlen(shape), rest);
}

static void test_text_line(void **state) {
    capture_begin();
    log_info("hello %d", 42);
    assert_text_line(capture_end(), "info  hello 42\n");

    capture_begin();
    log_error("bad");
    assert_text_line(capture_end(), "error bad\n");
}

static void test_levels(void **state) {
    capture_begin();
    log_debug("not shown");
    log_write(LOG_DEBUG, "not shown either");
    log_set_level(LOG_WARN);
    log_info("not shown");
    log_warn("shown");
    log_set_level(LOG_DEBUG);
    log_debug("shown too");
    log_write((log_level_t)7, "invalid level is dropped");
    const char *out = capture_end();
    const char *second = strchr(out, '\n');
    assert_non_null(second);
    assert_text_line(second + 1, "debug shown too\n");
    char first[128];
    snprintf(first, sizeof(first), "%.*s", (int)(second + 1 - out), out);
    assert_text_line(first, "warn  shown\n");
}

static void test_parse(void **state) {
    log_level_t l;
    log_format_t f;
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("WARN", &l), -1);
    assert_int_equal(log_format_parse("json", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("text", &f), 0);
    assert_int_equal(f, LOG_FORMAT_TEXT);
    assert_int_equal(log_format_parse("xml", &f), -1);
    assert_string_equal(log_level_name(LOG_DEBUG), "debug");
    assert_string_equal(log_level_name((log_level_t)9), "?");
    log_set_format(LOG_FORMAT_JSON);
    assert_int_equal(log_get_format(), LOG_FORMAT_JSON);
}

static void test_text_escapes_control_characters(void **state) {
    capture_begin();
    log_info("topic a\nb\x1b[31m\x7f");
    assert_text_line(capture_end(), "info  topic a\\x0ab\\x1b[31m\\x7f\n");
}

/* Issue 20 finding 11: C1 controls (U+009B is CSI), bidi overrides and
 * bytes that are not UTF-8 are escaped; other UTF-8 stays as it is. */
static void test_text_escapes_c1_bidi_and_bad_utf8(void **state) {
    capture_begin();
    log_info("csi \xc2\x9b"
             "31m rlo \xe2\x80\xae lri \xe2\x81\xa6 raw \x9b\xff"
             " e \xc3\xa9 "
             "euro \xe2\x82\xac");
    assert_text_line(capture_end(), "info  csi \\u009b31m rlo \\u202e lri \\u2066 raw \\x9b\\xff "
                                    "e \xc3\xa9 euro \xe2\x82\xac\n");
    log_set_format(LOG_FORMAT_JSON);
    capture_begin();
    log_info("csi \xc2\x9b rlo \xe2\x80\xae");
    const char *out = capture_end();
    assert_non_null(strstr(out, "\"msg\":\"csi \\u009b rlo \\u202e\"}\n"));
}

static void test_text_client_fields(void **state) {
    capture_begin();
    log_client(LOG_WARN, "sensor-1", "10.0.0.7:40122", "keepalive timeout after %u s", 90u);
    assert_text_line(capture_end(),
                     "warn  client=sensor-1 addr=10.0.0.7:40122 keepalive timeout after 90 s\n");

    capture_begin();
    log_client(LOG_INFO, "a b\"c\\=\n", "[::1]:1", "x");
    assert_text_line(capture_end(), "info  client=\"a b\\\"c\\\\=\\x0a\" addr=[::1]:1 x\n");

    capture_begin();
    log_client(LOG_INFO, NULL, "1.2.3.4:5", "before CONNECT");
    log_client(LOG_INFO, "", "1.2.3.4:5", "empty id");
    log_client(LOG_DEBUG, "c", "1.2.3.4:5", "filtered by level");
    const char *out = capture_end();
    const char *nl = strchr(out, '\n');
    assert_non_null(nl);
    char first[128];
    snprintf(first, sizeof(first), "%.*s", (int)(nl + 1 - out), out);
    assert_text_line(first, "info  client=- addr=1.2.3.4:5 before CONNECT\n");
    assert_text_line(nl + 1, "info  client=\"\" addr=1.2.3.4:5 empty id\n");
}

/* Parses one JSON line and checks its ts shape; returns the object. */
static cJSON *parse_json_line(const char *line) {
    size_t len = strlen(line);
    assert_true(len > 0 && line[len - 1] == '\n');
    assert_null(memchr(line, '\n', len - 1));
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts");
    assert_true(cJSON_IsString(ts));
    assert_int_equal(strlen(ts->valuestring), 24);
    assert_int_equal(ts->valuestring[23], 'Z');
    return j;
}

static void test_json_line(void **state) {
    log_set_format(LOG_FORMAT_JSON);
    capture_begin();
    log_warn(
        "quote \" backslash \\ newline \n tab \t bell \x07 utf8 \xc3\xa9 bad \xff\xc0\x80 end");
    const char *out = capture_end();
    /* exact bytes after the timestamp */
    const char *after_ts = strstr(out, "\",\"level\"");
    assert_non_null(after_ts);
    assert_string_equal(after_ts,
                        "\",\"level\":\"warn\",\"msg\":\"quote \\\" backslash \\\\ newline \\n tab "
                        "\\t bell \\u0007 utf8 \xc3\xa9 bad \\ufffd\\ufffd\\ufffd end\"}\n");
    cJSON *j = parse_json_line(out);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "level")->valuestring, "warn");
    cJSON_Delete(j);
}

static void test_json_client_fields(void **state) {
    log_set_format(LOG_FORMAT_JSON);
    capture_begin();
    log_client(LOG_INFO, "dev\"1", "10.0.0.7:40122", "connected");
    const char *out = capture_end();
    const char *after_ts = strstr(out, "\",\"level\"");
    assert_non_null(after_ts);
    assert_string_equal(after_ts,
                        "\",\"level\":\"info\",\"msg\":\"connected\",\"client\":\"dev\\\"1\","
                        "\"addr\":\"10.0.0.7:40122\"}\n");
    cJSON *j = parse_json_line(out);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "client")->valuestring, "dev\"1");
    cJSON_Delete(j);

    capture_begin();
    log_client(LOG_INFO, NULL, "1.2.3.4:5", "no id");
    out = capture_end();
    assert_non_null(strstr(out, "\"msg\":\"no id\",\"client\":null,\"addr\":\"1.2.3.4:5\"}\n"));
}

static void test_text_truncation(void **state) {
    static char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    capture_begin();
    log_client(LOG_INFO, "c", "a:1", "%s", big);
    const char *out = capture_end();
    size_t len = strlen(out);
    /* filled to LOG_LINE_MAX minus the 8 bytes kept for the tail, then "...\n" */
    assert_int_equal(len, LOG_LINE_MAX - 8 + 4);
    assert_string_equal(out + len - 5, "x...\n");
    assert_non_null(strstr(out, " info  client=c addr=a:1 xxx"));
}

static void test_json_truncation_stays_valid(void **state) {
    static char big[10000];
    memset(big, '\n', sizeof(big) - 1); /* each byte escapes to two */
    big[sizeof(big) - 1] = '\0';
    static char longid[3000];
    memset(longid, 'i', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    log_set_format(LOG_FORMAT_JSON);

    capture_begin();
    log_client(LOG_ERROR, "c", "a:1", "%s", big);
    const char *out = capture_end();
    assert_true(strlen(out) <= LOG_LINE_MAX);
    cJSON *j = parse_json_line(out);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "client")->valuestring, "c");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "addr")->valuestring, "a:1");
    const char *msg = cJSON_GetObjectItemCaseSensitive(j, "msg")->valuestring;
    assert_true(strlen(msg) > 1900);
    assert_true(strspn(msg, "\n") == strlen(msg));
    cJSON_Delete(j);

    /* a field too long for the field budget is dropped, not cut */
    capture_begin();
    log_client(LOG_ERROR, longid, "a:1", "m");
    out = capture_end();
    j = parse_json_line(out);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "client"));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "addr"));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "msg")->valuestring, "m");
    cJSON_Delete(j);
}

static void test_ratelimit_check(void **state) {
    log_ratelimit_t rl = LOG_RATELIMIT_INIT("t", 3, 1000);
    uint32_t n = 99;
    assert_true(log_ratelimit_check(&rl, 5000, &n));
    assert_int_equal(n, 0);
    assert_true(log_ratelimit_check(&rl, 5001, &n));
    assert_true(log_ratelimit_check(&rl, 5002, &n));
    assert_false(log_ratelimit_check(&rl, 5003, &n));
    assert_false(log_ratelimit_check(&rl, 5999, &n)); /* last ms of the window */
    assert_int_equal(rl.suppressed, 2);
    assert_true(log_ratelimit_check(&rl, 6000, &n)); /* new window reports the old one */
    assert_int_equal(n, 2);
    assert_true(log_ratelimit_check(&rl, 6001, &n));
    assert_int_equal(n, 0);
    /* a quiet window reports nothing */
    assert_true(log_ratelimit_check(&rl, 90000, &n));
    assert_int_equal(n, 0);

    log_ratelimit_t zero = LOG_RATELIMIT_INIT("z", 0, 1000);
    assert_false(log_ratelimit_check(&zero, 1, &n));
    assert_int_equal(zero.suppressed, 1);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_ratelimited_macro(void **state) {
    log_ratelimit_t rl = LOG_RATELIMIT_INIT("unmapped topic", 2, 10000);
    capture_begin();
    for (int i = 0; i < 5; i++)
        log_ratelimited(&rl, LOG_WARN, "no rule for topic t/%d", i);
    const char *out = capture_end();
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "warn  no rule for topic t/0\n"));
    assert_non_null(strstr(out, "warn  no rule for topic t/1\n"));
    assert_int_equal(rl.suppressed, 3);

    /* end the window: the next line is preceded by the summary */
    rl.window_start_ms = log_now_ms() - 10000;
    capture_begin();
    log_client_ratelimited(&rl, LOG_WARN, "c1", "1.2.3.4:5", "no rule for topic t/%d", 9);
    out = capture_end();
    assert_int_equal(count_lines(out), 2);
    const char *nl = strchr(out, '\n');
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)(nl + 1 - out), out);
    assert_text_line(first, "warn  suppressed 3 similar lines: unmapped topic\n");
    assert_text_line(nl + 1, "warn  client=c1 addr=1.2.3.4:5 no rule for topic t/9\n");

    /* lines below the level do not use up the budget */
    log_ratelimit_t rl2 = LOG_RATELIMIT_INIT("x", 1, 10000);
    capture_begin();
    log_ratelimited(&rl2, LOG_DEBUG, "hidden");
    log_ratelimited(&rl2, LOG_INFO, "shown");
    out = capture_end();
    assert_int_equal(count_lines(out), 1);
    assert_text_line(out, "info  shown\n");
}

#define THREAD_LINES 500
static void *writer(void *arg) {
    const char *tag = arg;
    for (int i = 0; i < THREAD_LINES; i++)
        log_write(LOG_WARN, "%s line %04d %s", tag, i,
                  "padding padding padding padding padding padding padding padding");
    return NULL;
}

static void test_threads_one_write_per_line(void **state) {
    capture_begin();
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, writer, "A"), 0);
    assert_int_equal(pthread_create(&b, NULL, writer, "B"), 0);
    for (int i = 0; i < 1000; i++)
        log_set_level(i % 2 ? LOG_DEBUG : LOG_INFO); /* concurrent level changes */
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    const char *out = capture_end();
    assert_int_equal(count_lines(out), 2 * THREAD_LINES);
    int seen[2] = {0, 0};
    for (const char *l = out; *l;) {
        const char *nl = strchr(l, '\n');
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)(nl + 1 - l), l);
        char tag = line[31];
        assert_true(tag == 'A' || tag == 'B');
        char expect[160];
        snprintf(expect, sizeof(expect),
                 "warn  %c line %04d padding padding padding padding padding padding "
                 "padding padding\n",
                 tag, seen[tag - 'A']++);
        assert_text_line(line, expect);
        l = nl + 1;
    }
    assert_int_equal(seen[0], THREAD_LINES);
    assert_int_equal(seen[1], THREAD_LINES);
}

/* Several threads share one limiter (the workers do): the process lets
 * exactly `burst` lines through per window and the next window's first line
 * reports exactly how many were held back, once. */
#define RL_THREADS 4
#define RL_CALLS 5000
typedef struct {
    log_ratelimit_t *rl;
    pthread_barrier_t *go;
    uint64_t now_ms;
    int passed;
    uint64_t reported; /* the sum of the summaries this thread got */
    int n_reports;
} rl_hammer_t;

static void *rl_hammer(void *arg) {
    rl_hammer_t *h = arg;
    pthread_barrier_wait(h->go);
    for (int i = 0; i < RL_CALLS; i++) {
        uint32_t n;
        /* a thread that read the clock just before another started the
         * window (now_ms one lower) still counts in that window */
        if (log_ratelimit_check(h->rl, h->now_ms - (uint64_t)(i % 2), &n))
            h->passed++;
        if (n > 0) {
            h->reported += n;
            h->n_reports++;
        }
    }
    return NULL;
}

static void rl_round(log_ratelimit_t *rl, uint64_t now_ms, int *passed, uint64_t *reported,
                     int *n_reports) {
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RL_THREADS);
    rl_hammer_t h[RL_THREADS];
    pthread_t t[RL_THREADS];
    for (int i = 0; i < RL_THREADS; i++) {
        h[i] = (rl_hammer_t){.rl = rl, .go = &go, .now_ms = now_ms};
        assert_int_equal(pthread_create(&t[i], NULL, rl_hammer, &h[i]), 0);
    }
    *passed = 0;
    *reported = 0;
    *n_reports = 0;
    for (int i = 0; i < RL_THREADS; i++) {
        pthread_join(t[i], NULL);
        *passed += h[i].passed;
        *reported += h[i].reported;
        *n_reports += h[i].n_reports;
    }
    pthread_barrier_destroy(&go);
}

static void test_ratelimit_shared_by_threads(void **state) {
    log_ratelimit_t rl = LOG_RATELIMIT_INIT("shared", 10, 10000);
    uint32_t n;
    assert_true(log_ratelimit_check(&rl, 100000, &n)); /* the window starts at 100000 */
    int passed, n_reports;
    uint64_t reported;
    rl_round(&rl, 100001, &passed, &reported, &n_reports);
    assert_int_equal(passed, 9);
    assert_int_equal(n_reports, 0);
    assert_int_equal(rl.suppressed, RL_THREADS * RL_CALLS - 9);
    /* the next window: burst lines again, and one summary with the exact count */
    rl_round(&rl, 110001, &passed, &reported, &n_reports);
    assert_int_equal(passed, 10);
    assert_int_equal(n_reports, 1);
    assert_int_equal(reported, RL_THREADS * RL_CALLS - 9);
    assert_int_equal(rl.suppressed, RL_THREADS * RL_CALLS - 10);
    rl_round(&rl, 120001, &passed, &reported, &n_reports);
    assert_int_equal(passed, 10);
    assert_int_equal(n_reports, 1);
    assert_int_equal(reported, RL_THREADS * RL_CALLS - 10);
}

/* The same through the macro with the real clock: the lines written. */
static void *rl_macro_writer(void *arg) {
    log_ratelimit_t *rl = arg;
    for (int i = 0; i < 200; i++)
        log_ratelimited(rl, LOG_WARN, "refused %d", i);
    return NULL;
}

static void test_ratelimited_macro_shared_by_threads(void **state) {
    log_ratelimit_t rl = LOG_RATELIMIT_INIT("refused", 7, 3600000);
    capture_begin();
    pthread_t t[RL_THREADS];
    for (int i = 0; i < RL_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rl_macro_writer, &rl), 0);
    for (int i = 0; i < RL_THREADS; i++)
        pthread_join(t[i], NULL);
    const char *out = capture_end();
    assert_int_equal(count_lines(out), 7);
    assert_null(strstr(out, "suppressed"));
    rl.window_start_ms = log_now_ms() - 3600000; /* end the window */
    capture_begin();
    log_ratelimited(&rl, LOG_WARN, "refused again");
    out = capture_end();
    const char *nl = strchr(out, '\n');
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)(nl + 1 - out), out);
    char expect[128];
    snprintf(expect, sizeof(expect), "warn  suppressed %d similar lines: refused\n",
             RL_THREADS * 200 - 7);
    assert_text_line(first, expect);
    assert_text_line(nl + 1, "warn  refused again\n");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_text_line, setup),
        cmocka_unit_test_setup(test_levels, setup),
        cmocka_unit_test_setup(test_parse, setup),
        cmocka_unit_test_setup(test_text_escapes_control_characters, setup),
        cmocka_unit_test_setup(test_text_escapes_c1_bidi_and_bad_utf8, setup),
        cmocka_unit_test_setup(test_text_client_fields, setup),
        cmocka_unit_test_setup(test_json_line, setup),
        cmocka_unit_test_setup(test_json_client_fields, setup),
        cmocka_unit_test_setup(test_text_truncation, setup),
        cmocka_unit_test_setup(test_json_truncation_stays_valid, setup),
        cmocka_unit_test_setup(test_ratelimit_check, setup),
        cmocka_unit_test_setup(test_ratelimited_macro, setup),
        cmocka_unit_test_setup(test_threads_one_write_per_line, setup),
        cmocka_unit_test_setup(test_ratelimit_shared_by_threads, setup),
        cmocka_unit_test_setup(test_ratelimited_macro_shared_by_threads, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
