/* file_read_all: whole file, empty file, the size bound, and each failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/file_read.h"

static char dir[] = "/tmp/m2k-file-read-XXXXXX";

static void write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_reads_whole_file_nul_terminated(void **state) {
    (void)state;
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/a", dir);
    /* Larger than the first 4 KiB buffer, with a NUL inside. */
    size_t n = 10000;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    data[5000] = '\0';
    write_file(path, data, n);
    char *buf;
    size_t len;
    assert_int_equal(file_read_all(path, n, &buf, &len, err, sizeof(err)), 0);
    assert_int_equal(len, n);
    assert_memory_equal(buf, data, n);
    assert_int_equal(buf[n], '\0');
    free(buf);
    free(data);
    unlink(path);
}

static void test_empty_file(void **state) {
    (void)state;
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/empty", dir);
    write_file(path, "", 0);
    char *buf;
    size_t len = 99;
    assert_int_equal(file_read_all(path, 10, &buf, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    free(buf);
    unlink(path);
}

static void test_size_bound(void **state) {
    (void)state;
    char path[256], err[256], want[300];
    snprintf(path, sizeof(path), "%s/big", dir);
    write_file(path, "0123456789", 10);
    char *buf;
    size_t len;
    assert_int_equal(file_read_all(path, 10, &buf, &len, err, sizeof(err)), 0);
    free(buf);
    assert_int_equal(file_read_all(path, 9, &buf, &len, err, sizeof(err)), -1);
    assert_null(buf);
    snprintf(want, sizeof(want), "%s: larger than 9 bytes", path);
    assert_string_equal(err, want);
    unlink(path);
}

static void test_missing_file(void **state) {
    (void)state;
    char err[256];
    char *buf;
    size_t len;
    assert_int_equal(file_read_all("/nonexistent/x", 10, &buf, &len, err, sizeof(err)), -1);
    assert_null(buf);
    assert_string_equal(err, "/nonexistent/x: cannot open: No such file or directory");
}

static void test_directory_cannot_be_read(void **state) {
    (void)state;
    char err[256], want[300];
    char *buf;
    size_t len;
    assert_int_equal(file_read_all(dir, 10, &buf, &len, err, sizeof(err)), -1);
    assert_null(buf);
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
    assert_string_equal(err, want);
}

int main(void) {
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_whole_file_nul_terminated),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_directory_cannot_be_read),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(dir);
    return rc;
}
