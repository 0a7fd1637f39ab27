/* The spools of N workers and the placement of client ids (spool_workers.h).
 *
 * dir/workers is text, replaced atomically (workers.tmp, fsync, rename,
 * fsync of the directory):
 *   mqtt2kafka spool workers 1
 *   workers 2
 *   key 00112233445566778899aabbccddeeff
 */
#include "spool_workers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "util/hash.h"
#include "util/log.h"

#define HEADER "mqtt2kafka spool workers 1\n"

static void sub_path(char *out, size_t cap, const char *dir, unsigned k) {
    snprintf(out, cap, "%s/w%u", dir, k);
}

/* 1: read; 0: no file; -1: unreadable (errbuf filled). */
static int read_layout(const char *dir, unsigned *n, uint8_t key[16], char *errbuf, size_t errlen) {
    char path[4096], buf[256], hex[33];
    snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_WORKERS_FILE);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(errbuf, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    unsigned workers = 0;
    int used = 0;
    if (strncmp(buf, HEADER, strlen(HEADER)) != 0 ||
        sscanf(buf + strlen(HEADER), "workers %u\nkey %32[0-9a-f]\n%n", &workers, hex, &used) !=
            2 ||
        strlen(hex) != 32 || workers < 1 || workers > CONFIG_THREADS_MAX ||
        strlen(HEADER) + (size_t)used != len) {
        snprintf(errbuf, errlen,
                 "%s: not a file of this version (it places client ids on the workers whose "
                 "spools hold their records): fix or restore it",
                 path);
        return -1;
    }
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        key[i] = (uint8_t)v;
    }
    *n = workers;
    return 1;
}

static int write_layout(const char *dir, unsigned n, const uint8_t key[16], char *errbuf,
                        size_t errlen) {
    char path[4096], tmp[4100], buf[128];
    snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_WORKERS_FILE);
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, SPOOL_WORKERS_FILE);
    int len = snprintf(buf, sizeof(buf), HEADER "workers %u\nkey ", n);
    for (int i = 0; i < 16; i++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%02x", key[i]);
    len += snprintf(buf + len, sizeof(buf) - (size_t)len, "\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    const char *step = "cannot write";
    if (fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) != 0)
        goto fail;
    close(fd);
    fd = -1;
    step = "cannot rename";
    if (rename(tmp, path) != 0)
        goto fail;
    step = "cannot fsync the directory";
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(fd) != 0)
        goto fail;
    close(fd);
    return 0;
fail:
    snprintf(errbuf, errlen, "%s: %s: %s", fd < 0 && step[7] == 'w' ? tmp : path, step,
             strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* 1 + the highest k of a directory dir/w<k> (1 when there is none). */
static unsigned dirs_found(const char *dir) {
    unsigned have = 1;
    DIR *d = opendir(dir);
    if (!d)
        return have;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        if (e->d_name[0] != 'w' || (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) ||
            e->d_name[1] < '1' || e->d_name[1] > '9')
            continue;
        unsigned long k = strtoul(e->d_name + 1, &end, 10);
        if (*end == '\0' && k < CONFIG_THREADS_MAX && k + 1 > have)
            have = (unsigned)k + 1;
    }
    closedir(d);
    return have;
}

/* A spool past the worker count that holds nothing: its files, then
 * itself. Whether it is gone. */
static bool remove_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            unlinkat(dirfd(d), e->d_name, 0) != 0)
            log_error("spool: %s/%s: cannot delete: %s", path, e->d_name, strerror(errno));
    closedir(d);
    if (rmdir(path) != 0) {
        log_error("spool: %s: cannot delete: %s", path, strerror(errno));
        return false;
    }
    return true;
}

static int open_one(spool_workers_t *sw, const char *dir, unsigned k, uint64_t max_bytes,
                    char *errbuf, size_t errlen) {
    char path[4096];
    sub_path(path, sizeof(path), dir, k);
    spool_options_t o = {.dir = path, .max_bytes = max_bytes};
    return spool_open(&o, &sw->spools[k], errbuf, errlen) == 0 ? 0 : -1;
}

int spool_workers_open(spool_workers_t *sw, const char *dir, uint64_t max_bytes, spool_t *sp0,
                       unsigned want, spool_workers_holds_fn holds, void *ud, char *errbuf,
                       size_t errlen) {
    memset(sw->spools, 0, sizeof(sw->spools));
    atomic_init(&sw->bytes, 0);
    sw->spools[0] = sp0;
    sw->n = 1;
    unsigned layout = 1;
    int found = read_layout(dir, &layout, sw->key, errbuf, errlen);
    if (found < 0)
        return -1;
    if (!found && getrandom(sw->key, sizeof(sw->key), 0) != (ssize_t)sizeof(sw->key)) {
        snprintf(errbuf, errlen, "%s: no random bytes for the key of %s/%s", dir, dir,
                 SPOOL_WORKERS_FILE);
        return -1;
    }
    unsigned have = dirs_found(dir);
    if (layout > have)
        have = layout;
    for (unsigned k = 1; k < have; k++)
        if (open_one(sw, dir, k, max_bytes, errbuf, errlen) != 0)
            goto fail;
    sw->n = have;      /* what spool_workers_close closes */
    bool held = false; /* asked only when the count changes */
    for (unsigned k = 0; k < have && have != want && !held; k++)
        held = holds(sw->spools[k], ud);
    unsigned n = want;
    if (have != want && held) {
        n = have;
        log_warn("spool: %s was written with threads: %u and holds records or QoS 2 ids: "
                 "running threads: %u, not %u, until a start finds the spools empty",
                 dir, have, have, want);
    }
    for (unsigned k = have; k < n; k++) {
        if (open_one(sw, dir, k, max_bytes, errbuf, errlen) != 0)
            goto fail;
        sw->n = k + 1;
    }
    /* One worker that never had more keeps the layout of a daemon before
     * workers (no file). */
    if ((found ? layout != n : n > 1) && write_layout(dir, n, sw->key, errbuf, errlen) != 0)
        goto fail;
    for (unsigned k = n; k < have; k++) {
        /* Nothing held: the client ids they placed live elsewhere now. */
        char path[4096];
        sub_path(path, sizeof(path), dir, k);
        spool_close(sw->spools[k]);
        sw->spools[k] = NULL;
        if (remove_dir(path))
            log_info("spool: %s: removed (empty; threads: %u now)", path, n);
    }
    sw->n = n;
    for (unsigned k = 0; k < n; k++)
        spool_share_bytes(sw->spools[k], &sw->bytes);
    return 0;
fail:
    spool_workers_close(sw);
    return -1;
}

unsigned spool_workers_owner(const spool_workers_t *sw, const void *id, size_t len) {
    return (unsigned)(m2k_siphash24(sw->key, id, len) % sw->n);
}

void spool_workers_close(spool_workers_t *sw) {
    for (unsigned k = 1; k < CONFIG_THREADS_MAX; k++) {
        spool_close(sw->spools[k]);
        sw->spools[k] = NULL;
    }
}
