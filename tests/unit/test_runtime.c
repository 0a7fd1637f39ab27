/* The one build-from-config path (runtime.h): --check reports every file and
 * property that does not load, in the start's order and format; the start
 * commits into the daemon's slots; a reload replaces them, or leaves them
 * untouched when a step fails. The producer uses the embedded mock cluster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime.h"

static char errbuf[8192];
static char dir[] = "/tmp/m2k_test_runtime_XXXXXX";

static config_t *load(const char *yaml) {
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    return cfg;
}

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    write_file("passwd", "");
    write_file("acl", "topic write a/#\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/passwd", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/acl", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

static void test_check_ok(void **state) {
    (void)state;
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "kafka:\n  bootstrap_servers: embedded\nauth:\n  password_file: %s/passwd\n"
             "  acl_file: %s/acl\n",
             dir, dir);
    config_t *cfg = load(yaml);
    runtime_prep_t *p = NULL;
    assert_int_equal(runtime_prepare(NULL, cfg, RUNTIME_CHECK, &p, errbuf, sizeof(errbuf)), 0);
    assert_non_null(p);
    assert_string_equal(errbuf, "");
    runtime_abort(p);
    config_free(cfg);
}

/* Every step reports (properties, TLS listeners, auth), sorted by line. */
static void test_check_reports_every_step(void **state) {
    (void)state;
    config_t *cfg = load("listeners:\n"
                         "  - listen: \"127.0.0.1:8883\"\n"
                         "    tls: {cert: /nonexistent/c.pem, key: /nonexistent/c.key}\n"
                         "  - listen: \"127.0.0.1:8884\"\n"
                         "    tls: {cert: /nonexistent/d.pem, key: /nonexistent/d.key}\n"
                         "kafka:\n  bootstrap_servers: embedded\n"
                         "  properties:\n    linger.ms: soon\n"
                         "auth:\n  password_file: /nonexistent/passwd\n");
    runtime_prep_t *p = (runtime_prep_t *)1;
    assert_int_equal(runtime_prepare(NULL, cfg, RUNTIME_CHECK, &p, errbuf, sizeof(errbuf)), -1);
    assert_null(p);
    assert_string_equal(
        errbuf, "t.yaml:3:10: listeners[0].tls: /nonexistent/c.pem: No such file or directory\n"
                "t.yaml:5:10: listeners[1].tls: /nonexistent/d.pem: No such file or directory\n"
                "t.yaml:9:16: kafka.properties.linger.ms: Invalid value for configuration "
                "property \"queue.buffering.max.ms\"\n"
                "t.yaml:11:3: auth: /nonexistent/passwd: cannot open: No such file or "
                "directory\n");
    config_free(cfg);
}

static void on_delivery(void *ud, uint64_t opaque, int err, const char *errstr) {
    (void)ud;
    (void)opaque;
    (void)err;
    (void)errstr;
}

static void on_fatal(void *ud, const char *errstr) {
    (void)ud;
    (void)errstr;
}

/* Start = prepare + commit into the slots; a reload replaces the topic map
 * and the security files, and a failing reload leaves both as they were. */
static void test_start_then_reload(void **state) {
    (void)state;
    kafka_t *k = NULL;
    topic_map_t *tm = NULL;
    security_t *sec = NULL;
    runtime_t rt = {.kafka = &k,
                    .topics = &tm,
                    .security = &sec,
                    .kafka_opts = {.on_delivery = on_delivery, .on_fatal = on_fatal}};
    config_t *cfg = load("kafka:\n  bootstrap_servers: embedded\n"
                         "topics:\n  - mqtt: \"a/#\"\n    kafka: a\n");
    runtime_prep_t *p = NULL;
    assert_int_equal(runtime_prepare(&rt, cfg, RUNTIME_START, &p, errbuf, sizeof(errbuf)), 0);
    assert_null(k); /* nothing is touched before the commit */
    runtime_commit(&rt, p);
    assert_non_null(k);
    assert_non_null(tm);
    assert_non_null(sec);
    uint32_t gen = security_generation(sec);
    security_t *first_sec = sec;

    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "kafka:\n  bootstrap_servers: embedded\ntopics:\n  - mqtt: \"b/#\"\n    kafka: b\n"
             "auth:\n  password_file: %s/passwd\n",
             dir);
    config_t *next = load(yaml);
    assert_int_equal(runtime_prepare(&rt, next, RUNTIME_RELOAD, &p, errbuf, sizeof(errbuf)), 0);
    runtime_commit(&rt, p);
    assert_ptr_equal(sec, first_sec); /* updated in place: sessions hold it */
    assert_true(security_generation(sec) != gen);
    char scratch[256];
    topic_map_result_t res;
    assert_int_equal(
        topic_map_lookup(tm, "b/x", 3, &(topic_map_ctx_t){0}, scratch, sizeof(scratch), &res),
        TOPIC_MAP_MATCHED);
    assert_string_equal(res.kafka_topic, "b");

    /* A password file that does not load: the step's name in front, and the
     * running map and files stay. */
    config_t *bad = load("kafka:\n  bootstrap_servers: embedded\n"
                         "topics:\n  - mqtt: \"c/#\"\n    kafka: c\n"
                         "auth:\n  password_file: /nonexistent/passwd\n");
    topic_map_t *running = tm;
    gen = security_generation(sec);
    p = (runtime_prep_t *)1;
    assert_int_equal(runtime_prepare(&rt, bad, RUNTIME_RELOAD, &p, errbuf, sizeof(errbuf)), -1);
    assert_null(p);
    assert_string_equal(
        errbuf, "auth files: /nonexistent/passwd: cannot open: No such file or directory\n");
    assert_ptr_equal(tm, running);
    assert_int_equal(security_generation(sec), gen);

    kafka_free(k);
    topic_map_free(tm);
    security_free(sec);
    config_free(bad);
    config_free(next);
    config_free(cfg);
}

/* The producer is created last, and not at all when a file fails: it is
 * only checked then, as --check does, so its error is reported too. */
static void test_start_failure_builds_no_producer(void **state) {
    (void)state;
    kafka_t *k = NULL;
    topic_map_t *tm = NULL;
    security_t *sec = NULL;
    runtime_t rt = {.kafka = &k, .topics = &tm, .security = &sec};
    config_t *cfg = load("kafka:\n  bootstrap_servers: embedded\n"
                         "  properties:\n    acks: 1\n"
                         "auth:\n  acl_file: /nonexistent/acl\n");
    runtime_prep_t *p = NULL;
    assert_int_equal(runtime_prepare(&rt, cfg, RUNTIME_START, &p, errbuf, sizeof(errbuf)), -1);
    /* acks: 1 with idempotence is refused by the producer's check; none was made. */
    assert_string_equal(errbuf, "t.yaml:4:11: kafka.properties.acks: kafka producer: `acks` must "
                                "be set to `all` when `enable.idempotence` is true\n"
                                "t.yaml:6:3: auth: /nonexistent/acl: cannot open: No such file or "
                                "directory\n");
    assert_null(k);
    assert_null(tm);
    assert_null(sec);
    config_free(cfg);
}

/* Lines with a position by line then column (stable); the others after them,
 * in their order; another file's name is no position. */
static void test_sort_errors(void **state) {
    (void)state;
    char buf[512] = "t.yaml:12:3: c\n"
                    "t.yaml: kafka.properties.x (built-in default): d\n"
                    "t.yaml:2:9: b\n"
                    "other.yaml:1:1: e\n"
                    "t.yaml:2:5: a\n"
                    "t.yaml:12:3: c2\n";
    runtime_sort_errors(buf, "t.yaml");
    assert_string_equal(buf, "t.yaml:2:5: a\n"
                             "t.yaml:2:9: b\n"
                             "t.yaml:12:3: c\n"
                             "t.yaml:12:3: c2\n"
                             "t.yaml: kafka.properties.x (built-in default): d\n"
                             "other.yaml:1:1: e\n");
    /* Truncated output (no final newline) stays as it is. */
    char cut[64] = "t.yaml:9:1: z\nt.yaml:1:1: a";
    runtime_sort_errors(cut, "t.yaml");
    assert_string_equal(cut, "t.yaml:9:1: z\nt.yaml:1:1: a");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_ok),
        cmocka_unit_test(test_check_reports_every_step),
        cmocka_unit_test(test_start_then_reload),
        cmocka_unit_test(test_start_failure_builds_no_producer),
        cmocka_unit_test(test_sort_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
