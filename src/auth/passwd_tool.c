/* `mqtt2kafka passwd`: add, update or delete one entry of a password file.
 * The existing file is validated with the same loader the daemon uses, so
 * the tool never writes a file the daemon would refuse. */
#include "auth/passwd_tool.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/passwd_file.h"

#define PROG "mqtt2kafka passwd"

static void usage(void) {
    fprintf(stderr, "usage: mqtt2kafka passwd [-D] FILE USER\n"
                    "  add USER to FILE or change its password (read from the terminal,\n"
                    "  or one line from stdin when it is not a terminal); -D deletes USER\n");
}

/* Reads one line (without its line ending) into buf; returns its length or
 * -1 at end of input or when it does not fit. */
static long read_line(FILE *in, char *buf, size_t cap) {
    size_t n = 0;
    int c;
    bool any = false;
    while ((c = getc(in)) != EOF) {
        any = true;
        if (c == '\n')
            break;
        if (n + 1 >= cap)
            return -2;
        buf[n++] = (char)c;
    }
    if (!any)
        return -1;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

static long prompt_password(const char *prompt, char *buf, size_t cap) {
    struct termios old, quiet;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tty) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    long n = read_line(stdin, buf, cap);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return n;
}

/* Fills pw; returns its length or -1 after printing why. */
static long get_password(char *pw, size_t cap) {
    long n;
    if (isatty(STDIN_FILENO)) {
        char *again = malloc(cap);
        if (!again)
            return -1;
        n = prompt_password("Password: ", pw, cap);
        long m = n >= 0 ? prompt_password("Reenter password: ", again, cap) : -1;
        if (n >= 0 && (m != n || memcmp(pw, again, (size_t)n) != 0)) {
            fprintf(stderr, PROG ": passwords do not match\n");
            n = -3;
        }
        OPENSSL_cleanse(again, cap);
        free(again);
    } else {
        n = read_line(stdin, pw, cap);
    }
    if (n > AUTH_MAX_PASSWORD_LEN)
        n = -2;
    if (n == -1)
        fprintf(stderr, PROG ": no password given\n");
    else if (n == -2)
        fprintf(stderr, PROG ": password longer than %d bytes\n", AUTH_MAX_PASSWORD_LEN);
    else if (n == 0)
        fprintf(stderr, PROG ": empty password\n");
    return n > 0 ? n : -1;
}

/* Reads the whole file; *exists false when it does not exist. */
static int read_file(const char *path, char **out, size_t *len, bool *exists, mode_t *mode) {
    *out = NULL;
    *len = 0;
    *exists = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, PROG ": %s: not a regular file\n", path);
        close(fd);
        return -1;
    }
    *exists = true;
    *mode = st.st_mode & 07777;
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replaces path with content: temp file in the same directory, fsync,
 * rename, fsync of the directory. */
static int write_atomic(const char *path, const char *content, size_t len, mode_t mode) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dcopy = strdup(path);
    int fd = -1, rc = -1;
    if (!tmp || !dcopy)
        goto out;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        fprintf(stderr, PROG ": cannot create a temporary file beside %s: %s\n", path,
                strerror(errno));
        goto out;
    }
    if (fchmod(fd, mode) != 0 || write_all(fd, content, len) != 0 || fsync(fd) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", tmp, strerror(errno));
        goto unlink_tmp;
    }
    if (close(fd) != 0) {
        fd = -1;
        fprintf(stderr, PROG ": %s: %s\n", tmp, strerror(errno));
        goto unlink_tmp;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, PROG ": cannot replace %s: %s\n", path, strerror(errno));
        goto unlink_tmp;
    }
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
    goto out;
unlink_tmp:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dcopy);
    return rc;
}

int passwd_tool_main(int argc, char **argv) {
    bool del = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-D") == 0) {
            del = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, PROG ": unknown option '%s'\n", argv[i]);
            usage();
            return 2;
        }
    }
    if (argc - i != 2) {
        usage();
        return 2;
    }
    const char *path = argv[i], *user = argv[i + 1];
    size_t ulen = strlen(user);
    const char *why = auth_user_name_error(user, ulen);
    if (why) {
        fprintf(stderr, PROG ": invalid user name: %s\n", why);
        return 1;
    }

    int status = 1;
    char *old = NULL, *out = NULL, *pw = NULL, *entry = NULL;
    auth_db_t *db = NULL;
    size_t oldlen = 0;
    bool exists;
    mode_t mode = 0600;
    if (read_file(path, &old, &oldlen, &exists, &mode) != 0)
        goto out;
    char err[512];
    db = auth_db_load_string(path, old ? old : "", oldlen, err, sizeof(err));
    if (!db) {
        fprintf(stderr, PROG ": %s (file left unchanged)\n", err);
        goto out;
    }
    bool present = auth_db_has_user(db, user, ulen);
    if (del && !present) {
        fprintf(stderr, PROG ": user '%s' not found in %s\n", user, path);
        goto out;
    }

    size_t elen = 0;
    if (!del) {
        /* Room for one byte too many, a CR and the NUL. */
        size_t pwcap = AUTH_MAX_PASSWORD_LEN + 3;
        pw = malloc(pwcap);
        entry = malloc(ulen + AUTH_LINE_OVERHEAD + 1);
        if (!pw || !entry)
            goto out;
        long n = get_password(pw, pwcap);
        if (n < 0)
            goto out;
        int r = auth_hash_password(user, ulen, (const uint8_t *)pw, (size_t)n,
                                   AUTH_DEFAULT_ITERATIONS, entry, ulen + AUTH_LINE_OVERHEAD);
        if (r < 0) {
            fprintf(stderr, PROG ": hashing the password failed\n");
            goto out;
        }
        elen = (size_t)r;
        entry[elen++] = '\n';
    }

    out = malloc(oldlen + elen + 2);
    if (!out)
        goto out;
    size_t olen = 0, pos = 0;
    bool replaced = false;
    while (pos < oldlen) {
        const char *line = old + pos;
        const char *nl = memchr(line, '\n', oldlen - pos);
        size_t llen = nl ? (size_t)(nl - line) : oldlen - pos;
        size_t full = llen + (nl ? 1 : 0);
        pos += full;
        const char *lu;
        size_t lulen;
        if (auth_line_user(line, llen, &lu, &lulen) && lulen == ulen &&
            memcmp(lu, user, ulen) == 0) {
            /* Loading guarantees one line per user. */
            if (elen)
                memcpy(out + olen, entry, elen);
            olen += elen;
            replaced = true;
            continue;
        }
        memcpy(out + olen, line, full);
        olen += full;
    }
    if (!del && !replaced) {
        if (olen && out[olen - 1] != '\n')
            out[olen++] = '\n';
        memcpy(out + olen, entry, elen);
        olen += elen;
    }
    if (write_atomic(path, out, olen, exists ? mode : 0600) != 0)
        goto out;
    status = 0;
out:
    if (pw) {
        OPENSSL_cleanse(pw, AUTH_MAX_PASSWORD_LEN + 3);
        free(pw);
    }
    free(entry);
    free(out);
    free(old);
    auth_db_free(db);
    return status;
}
