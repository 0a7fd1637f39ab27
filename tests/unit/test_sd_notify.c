/* sd_notify.c: exact datagrams on a filesystem and an abstract socket, the
 * no-op without NOTIFY_SOCKET, bad addresses, watchdog environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ops/sd_notify.h"

/* Receives one datagram without blocking (the send happened before). */
static void assert_received(int fd, const char *expect) {
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_int_equal(n, (ssize_t)strlen(expect));
    buf[n] = '\0';
    assert_string_equal(buf, expect);
}

static void assert_nothing_received(int fd) {
    char buf[16];
    assert_int_equal(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
}

static void test_path_socket(void **state) {
    char dir[] = "/tmp/m2k_sd_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sd_notify_send("READY=1"), 1);
    assert_received(fd, "READY=1");
    assert_int_equal(sd_notify_send("STATUS=serving 3 listeners\nWATCHDOG=1"), 1);
    assert_received(fd, "STATUS=serving 3 listeners\nWATCHDOG=1");
    assert_int_equal(sd_notify_sendf("STATUS=%d clients", 12), 1);
    assert_received(fd, "STATUS=12 clients");
    assert_nothing_received(fd);

    close(fd);
    unlink(path);
    /* nobody listening any more */
    assert_int_equal(sd_notify_send("STOPPING=1"), SD_NOTIFY_ERR_SEND);
    rmdir(dir);
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state) {
    char name[64];
    snprintf(name, sizeof(name), "m2k-test-notify-%d", (int)getpid());
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, name, strlen(name)); /* sun_path[0] = '\0' */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);

    char env[80];
    snprintf(env, sizeof(env), "@%s", name);
    setenv("NOTIFY_SOCKET", env, 1);
    assert_int_equal(sd_notify_send("STOPPING=1"), 1);
    assert_received(fd, "STOPPING=1");

    /* the address length must be exact: a longer name is another socket */
    snprintf(env, sizeof(env), "@%sx", name);
    setenv("NOTIFY_SOCKET", env, 1);
    assert_int_equal(sd_notify_send("READY=1"), SD_NOTIFY_ERR_SEND);
    assert_nothing_received(fd);
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_no_socket_is_noop(void **state) {
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sd_notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sd_notify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

static void test_bad_addresses(void **state) {
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(sd_notify_send("READY=1"), SD_NOTIFY_ERR_ADDRESS);
    setenv("NOTIFY_SOCKET", "@", 1);
    assert_int_equal(sd_notify_send("READY=1"), SD_NOTIFY_ERR_ADDRESS);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(sd_notify_send("READY=1"), SD_NOTIFY_ERR_ADDRESS);
    longpath[107] = '\0'; /* 107 bytes + NUL fill sun_path[108] exactly */
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(sd_notify_send("READY=1"), SD_NOTIFY_ERR_SEND); /* valid, nobody there */
    unsetenv("NOTIFY_SOCKET");
    assert_string_equal(sd_notify_strerror(SD_NOTIFY_ERR_ADDRESS),
                        "NOTIFY_SOCKET is neither an absolute path nor an abstract '@' name");
    assert_string_equal(sd_notify_strerror(SD_NOTIFY_ERR_SEND), "cannot send to NOTIFY_SOCKET");
    assert_string_equal(sd_notify_strerror(0), "no error");
    assert_string_equal(sd_notify_strerror(-99), "unknown error");
}

static void test_watchdog_usec(void **state) {
    char pid[32];
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sd_notify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0); /* meant for another process */
    setenv("WATCHDOG_PID", "12x", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "0", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "5s", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "99999999999999999999999", 1);
    assert_int_equal(sd_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),       cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_no_socket_is_noop), cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_watchdog_usec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
