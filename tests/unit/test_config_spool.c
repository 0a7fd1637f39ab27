/* spool: in the configuration: absent by default, its rows, every error with
 * its file:line:col (mode `outage` is refused: not implemented yet), and
 * the reload's "needs a restart". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

#define MIN "kafka:\n  bootstrap_servers: embedded\n"

static char errbuf[8192];

static config_t *load_ok(const char *yaml) {
    config_t *cfg = NULL;
    if (config_load_string(yaml, strlen(yaml), "/etc/m/t.yaml", &cfg, errbuf, sizeof(errbuf)) != 0)
        fail_msg("unexpected errors:\n%s", errbuf);
    return cfg;
}

static void expect_errors(const char *yaml, const char *errors) {
    config_t *cfg = (config_t *)1;
    assert_int_equal(config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, errbuf, sizeof(errbuf)),
                     -1);
    assert_null(cfg);
    assert_string_equal(errbuf, errors);
}

static void test_spool_rows(void **state) {
    (void)state;
    config_t *cfg = load_ok(MIN);
    assert_false(cfg->spool.enabled);
    assert_null(cfg->spool.dir);
    assert_int_equal(cfg->spool.max_bytes, 0);
    config_free(cfg);

    cfg = load_ok(MIN "spool:\n  dir: spool\n  max_bytes: 10737418240\n  mode: always\n");
    assert_true(cfg->spool.enabled);
    assert_string_equal(cfg->spool.dir, "/etc/m/spool"); /* beside the configuration file */
    assert_true(cfg->spool.max_bytes == 10737418240ull);
    assert_int_equal(cfg->spool.mode, SPOOL_MODE_ALWAYS);
    assert_int_equal(cfg->spool.pos.line, 4);
    config_free(cfg);

    cfg = load_ok(MIN "spool: {dir: /var/s, mode: always, max_bytes: 18446744073709551615}\n");
    assert_string_equal(cfg->spool.dir, "/var/s");
    assert_true(cfg->spool.max_bytes == UINT64_MAX);
    config_free(cfg);
}

static void test_spool_errors(void **state) {
    (void)state;
    expect_errors(MIN "spool:\n  dir: /s\n", "t.yaml:4:3: spool.mode: outage (the default) is not "
                                             "implemented yet; write `mode: always`\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: outage\n",
                  "t.yaml:5:9: spool.mode: outage is not implemented yet; write `mode: always`\n");
    expect_errors(MIN "spool:\n  mode: always\n",
                  "t.yaml:4:3: spool.dir: missing (the spool directory)\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: sometimes\n",
                  "t.yaml:5:9: spool.mode: expected outage or always, got \"sometimes\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  max_bytes: 18446744073709551616\n",
                  "t.yaml:6:14: spool.max_bytes: expected an integer from 0 to "
                  "18446744073709551615, got \"18446744073709551616\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  max_bytes: -1\n",
                  "t.yaml:6:14: spool.max_bytes: expected an integer from 0 to "
                  "18446744073709551615, got \"-1\"\n");
    expect_errors(MIN "spool:\n  dir: /s\n  mode: always\n  segment: 1\n",
                  "t.yaml:6:3: spool.segment: unknown key (expected one of: dir, max_bytes, "
                  "mode)\n");
}

static void note(void *ud, const char *msg) {
    strncat(ud, msg, 1023 - strlen(ud));
    strncat(ud, "\n", 1023 - strlen(ud));
}

static void test_spool_restart(void **state) {
    (void)state;
    config_t *a = load_ok(MIN);
    config_t *b = load_ok(MIN "spool:\n  dir: /s\n  mode: always\n");
    config_t *c = load_ok(MIN "spool:\n  dir: /t\n  mode: always\n");
    char msgs[1024] = "";
    assert_int_equal(config_restart_changes(a, b, note, msgs), 3);
    assert_string_equal(msgs, "spool changed; this needs a restart (the spool stays as it "
                              "started)\n"
                              "spool.dir changed; this needs a restart (still spooling to off)\n"
                              "spool.mode changed; this needs a restart (the spool keeps its "
                              "mode)\n");
    msgs[0] = '\0';
    assert_int_equal(config_restart_changes(b, c, note, msgs), 1);
    assert_string_equal(msgs, "spool.dir changed; this needs a restart (still spooling to /s)\n");
    config_free(a);
    config_free(b);
    config_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spool_rows),
        cmocka_unit_test(test_spool_errors),
        cmocka_unit_test(test_spool_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
