/* Unit tests for the MQTT codec's string and topic checks: UTF-8 boundaries,
 * a bad byte at every position, which error wins, the strict (control
 * character) checks, topic names and filters, each input ending right at a
 * PROT_NONE guard page. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

#include "codec_guard.h"

/* ---- Strings and topics ------------------------------------------------- */

static void test_utf8_valid_boundaries(void **state) {
    (void)state;
    static const char *const ok[] = {
        "\x7f",
        "\xc2\x80",
        "\xdf\xbf",
        "\xe0\xa0\x80",
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf",
        "\xef\xbb\xbf",
        "\x01\x1f\x7f\xc2\x9f",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t n = strlen(ok[i]);
        assert_int_equal(mqtt_utf8_check(guard_place((const uint8_t *)ok[i], n), n), 0);
    }
    assert_int_equal(mqtt_utf8_check(NULL, 0), 0);
    /* Multi-byte characters across the 8-byte words of the fast path. */
    static const char *const long_ok[] = {
        "abcdefg\xc3\xa9xyz",
        "abcdef\xe2\x82\xac/rest/of/topic",
        "abcdefghijklmno\xf0\x9f\x98\x80",
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof(long_ok) / sizeof(long_ok[0]); i++) {
        size_t n = strlen(long_ok[i]);
        assert_int_equal(mqtt_utf8_check(guard_place((const uint8_t *)long_ok[i], n), n), 0);
        assert_int_equal(mqtt_topic_name_check(guard_place((const uint8_t *)long_ok[i], n), n), 0);
    }
}

/* One bad byte at every position of strings of every length up to 40, so
 * the word loop, the overlapping last word and the byte loop all see it. */
static void test_string_bad_byte_every_position(void **state) {
    (void)state;
    uint8_t s[40];
    for (size_t len = 1; len <= sizeof(s); len++) {
        for (size_t pos = 0; pos < len; pos++) {
            memset(s, 'a', len);
            assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), 0);
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len), 0);
            s[pos] = 0;
            assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), MQTT_ERR_UTF8_NUL);
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len), MQTT_ERR_UTF8_NUL);
            s[pos] = '+';
            assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), 0);
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len),
                             MQTT_ERR_TOPIC_WILDCARD);
            s[pos] = '#';
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len),
                             MQTT_ERR_TOPIC_WILDCARD);
            s[pos] = 0x80;
            assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), MQTT_ERR_UTF8_INVALID);
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len),
                             MQTT_ERR_UTF8_INVALID);
            s[pos] = 0xc3; /* truncated when last, else followed by 'a' */
            assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), MQTT_ERR_UTF8_INVALID);
        }
    }
}

static void test_string_first_error_wins(void **state) {
    (void)state;
    /* Errors are reported in the order they appear in the string. */
    assert_int_equal(mqtt_topic_name_check(B("a+\xff")), MQTT_ERR_TOPIC_WILDCARD);
    assert_int_equal(mqtt_topic_name_check(B("a\xff+")), MQTT_ERR_UTF8_INVALID);
    assert_int_equal(mqtt_topic_name_check(B("\xed\xa0\x80\x00")), MQTT_ERR_UTF8_SURROGATE);
    assert_int_equal(mqtt_utf8_check(B("\x00\xed\xa0\x80")), MQTT_ERR_UTF8_NUL);
    /* A surrogate lead with a bad continuation is simply ill-formed. */
    assert_int_equal(mqtt_utf8_check(B("\xed\xa0\x41")), MQTT_ERR_UTF8_INVALID);
    assert_int_equal(mqtt_utf8_check(B("\xed\xa0")), MQTT_ERR_UTF8_INVALID);
}

/* Strict strings (client ids in the session, user names, topic names, will
 * topics): control characters and non-characters refused, as Mosquitto does;
 * mqtt_utf8_check (ACL and password files) still accepts them
 * [MQTT-1.5.3-1: the standard lets a server refuse them]. */
static void test_strict_strings(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int err;
    } cases[] = {
        {"\x01", MQTT_ERR_UTF8_CONTROL},
        {"\x1f", MQTT_ERR_UTF8_CONTROL},
        {"\x7f", MQTT_ERR_UTF8_CONTROL},
        {"\xc2\x80", MQTT_ERR_UTF8_CONTROL},
        {"\xc2\x9f", MQTT_ERR_UTF8_CONTROL},
        {"\xef\xb7\x90", MQTT_ERR_UTF8_NONCHARACTER},     /* U+FDD0 */
        {"\xef\xb7\xaf", MQTT_ERR_UTF8_NONCHARACTER},     /* U+FDEF */
        {"\xef\xbf\xbe", MQTT_ERR_UTF8_NONCHARACTER},     /* U+FFFE */
        {"\xef\xbf\xbf", MQTT_ERR_UTF8_NONCHARACTER},     /* U+FFFF */
        {"\xf0\x9f\xbf\xbe", MQTT_ERR_UTF8_NONCHARACTER}, /* U+1FFFE */
        {"\xf4\x8f\xbf\xbf", MQTT_ERR_UTF8_NONCHARACTER}, /* U+10FFFF */
        {" ", 0},
        {"~", 0},
        {"\xc2\xa0", 0},         /* U+00A0 */
        {"\xef\xb7\x8f", 0},     /* U+FDCF */
        {"\xef\xb7\xb0", 0},     /* U+FDF0 */
        {"\xef\xbf\xbd", 0},     /* U+FFFD */
        {"\xef\xbb\xbf", 0},     /* BOM */
        {"\xf0\x9f\xbf\xbd", 0}, /* U+1FFFD */
        {"\xf0\x9f\x98\x80", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].s);
        const uint8_t *p = guard_place((const uint8_t *)cases[i].s, n);
        assert_int_equal(mqtt_text_check(p, n), cases[i].err);
        assert_int_equal(mqtt_topic_name_check(p, n), cases[i].err);
        assert_int_equal(mqtt_utf8_check(p, n), 0);
    }
    /* Every position of every length up to 40: the word loop, the
     * overlapping last word and the byte loop all see it. */
    uint8_t s[40];
    static const uint8_t bad[] = {0x01, 0x09, 0x1f, 0x7f};
    for (size_t len = 1; len <= sizeof(s); len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (size_t b = 0; b < sizeof(bad); b++) {
                memset(s, 'a', len);
                s[pos] = bad[b];
                assert_int_equal(mqtt_text_check(guard_place(s, len), len), MQTT_ERR_UTF8_CONTROL);
                assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len),
                                 MQTT_ERR_UTF8_CONTROL);
                assert_int_equal(mqtt_utf8_check(guard_place(s, len), len), 0);
            }
            memset(s, 'a', len);
            s[pos] = ' ';
            assert_int_equal(mqtt_text_check(guard_place(s, len), len), 0);
            s[pos] = '~';
            assert_int_equal(mqtt_topic_name_check(guard_place(s, len), len), 0);
            s[pos] = '+';
            assert_int_equal(mqtt_text_check(guard_place(s, len), len), 0);
        }
    }
    /* The first problem by position wins. */
    assert_int_equal(mqtt_topic_name_check(B("a\x01+")), MQTT_ERR_UTF8_CONTROL);
    assert_int_equal(mqtt_topic_name_check(B("a+\x01")), MQTT_ERR_TOPIC_WILDCARD);
    assert_int_equal(mqtt_text_check(B("\x01\x00")), MQTT_ERR_UTF8_CONTROL);
    assert_int_equal(mqtt_text_check(B("\x00\x01")), MQTT_ERR_UTF8_NUL);
    assert_int_equal(mqtt_text_check(B("\xef\xbf\xbe\xff")), MQTT_ERR_UTF8_NONCHARACTER);
    assert_int_equal(mqtt_text_check(B("\xff\xef\xbf\xbe")), MQTT_ERR_UTF8_INVALID);
    /* Topic filters and plain UTF-8 are not strict. */
    assert_int_equal(mqtt_topic_filter_check(B("a/\x01/#")), 0);
    assert_int_equal(mqtt_utf8_check(NULL, 0), 0);
    assert_int_equal(mqtt_text_check(NULL, 0), 0);
}

static void test_topic_name_check(void **state) {
    (void)state;
    assert_int_equal(mqtt_topic_name_check(B("")), MQTT_ERR_TOPIC_EMPTY);
    assert_int_equal(mqtt_topic_name_check(B("/")), 0);
    assert_int_equal(mqtt_topic_name_check(B("$SYS/x")), 0);
    assert_int_equal(mqtt_topic_name_check(B(" ")), 0);
    static uint8_t big[65536];
    memset(big, 'a', sizeof(big));
    assert_int_equal(mqtt_topic_name_check(big, 65535), 0);
    assert_int_equal(mqtt_topic_name_check(big, 65536), MQTT_ERR_STRING_TOO_LONG);
    assert_int_equal(mqtt_topic_filter_check(big, 65535), 0);
    assert_int_equal(mqtt_topic_filter_check(big, 65536), MQTT_ERR_STRING_TOO_LONG);
}

static void test_topic_filter_check(void **state) {
    (void)state;
    static const char *const ok[] = {
        "#",
        "+",
        "+/+",
        "/",
        "//",
        "a//b",
        "/#",
        "+/#",
        "$SYS/#",
        "a/+",
        "+/b",
        "sport/+/player1",
        "sport/tennis/#",
        "a/b/c/d",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        size_t n = strlen(ok[i]);
        if (mqtt_topic_filter_check(guard_place((const uint8_t *)ok[i], n), n) != 0)
            fail_msg("filter %s refused", ok[i]);
    }
    static const char *const bad[] = {
        "", "a#", "#a", "a/#/b", "#/", "##", "+#", "a+", "+a", "a/+b", "a+/b", "++", "/#/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]);
        if (mqtt_topic_filter_check(guard_place((const uint8_t *)bad[i], n), n) !=
            MQTT_ERR_FILTER_INVALID)
            fail_msg("filter %s accepted", bad[i]);
    }
    assert_int_equal(mqtt_topic_filter_check(B("a/\xed\xa0\x80")), MQTT_ERR_UTF8_SURROGATE);
    assert_int_equal(mqtt_topic_filter_check(B("a\x00/#")), MQTT_ERR_UTF8_NUL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_boundaries),
        cmocka_unit_test(test_string_bad_byte_every_position),
        cmocka_unit_test(test_string_first_error_wins),
        cmocka_unit_test(test_strict_strings),
        cmocka_unit_test(test_topic_name_check),
        cmocka_unit_test(test_topic_filter_check),
    };
    return cmocka_run_group_tests(tests, setup_guard, teardown_guard);
}
