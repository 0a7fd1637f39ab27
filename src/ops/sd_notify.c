#include "ops/sd_notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sd_notify_send(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path) || len < 2)
        return SD_NOTIFY_ERR_ADDRESS;
    memcpy(sa.sun_path, path, len);
    /* An abstract name is "@name" in the environment and "\0name" on the wire,
     * and its address length must not include a trailing NUL. */
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t salen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0));

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return SD_NOTIFY_ERR_SOCKET;
    size_t n = strlen(state);
    ssize_t w;
    do {
        w = sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
    } while (w < 0 && errno == EINTR);
    close(fd);
    return w == (ssize_t)n ? 1 : SD_NOTIFY_ERR_SEND;
}

int sd_notify_sendf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return SD_NOTIFY_ERR_SEND;
    return sd_notify_send(buf);
}

uint64_t sd_notify_watchdog_usec(void) {
    const char *s = getenv("WATCHDOG_USEC");
    if (!s || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long usec = strtoull(s, &end, 10);
    if (errno || *end || usec == 0)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        errno = 0;
        long long p = strtoll(pid, &end, 10);
        if (errno || *end || p != (long long)getpid())
            return 0;
    }
    return (uint64_t)usec;
}

const char *sd_notify_strerror(int err) {
    switch (err) {
    case SD_NOTIFY_ERR_ADDRESS:
        return "NOTIFY_SOCKET is neither an absolute path nor an abstract '@' name";
    case SD_NOTIFY_ERR_SOCKET:
        return "cannot create a datagram socket";
    case SD_NOTIFY_ERR_SEND:
        return "cannot send to NOTIFY_SOCKET";
    default:
        return err >= 0 ? "no error" : "unknown error";
    }
}
