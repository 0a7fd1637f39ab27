/* Spool benchmark: append + sync throughput (group commits of N records) for
 * 100-byte and 16 KiB values, then the drain (peek, next, a confirm per
 * 1000 records), next to the disk's own ceiling measured in the same run:
 * 1 MiB writes with O_DSYNC, as `dd bs=1M oflag=dsync`.
 *
 *   spool_bench [--dir DIR] [--seconds S]   DIR on the disk to measure
 *                                           (default ./spool-bench.tmp, removed after)
 *   spool_bench --smoke                     a tiny run in /tmp (ctest) */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool/spool.h"

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* MB/s of 1 MiB O_DSYNC writes for `seconds` (at least 4 writes). */
static double dsync_ceiling(const char *dir, double seconds) {
    char p[4096];
    snprintf(p, sizeof p, "%s/dsync.tmp", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_DSYNC, 0600);
    if (fd < 0) {
        perror(p);
        return 0;
    }
    size_t bs = 1 << 20;
    char *buf = malloc(bs);
    memset(buf, 'x', bs);
    double t0 = now_sec(), t = t0;
    long n = 0;
    do {
        if (write(fd, buf, bs) != (ssize_t)bs) {
            perror("write");
            break;
        }
        n++;
        t = now_sec();
    } while (n < 4 || t - t0 < seconds);
    close(fd);
    unlink(p);
    free(buf);
    return (double)n * (double)bs / (t - t0) / 1e6;
}

typedef struct {
    double rec_s, mb_s, drain_rec_s;
} result_t;

static int run_cell(const char *dir, size_t value_len, int group, double seconds, result_t *out) {
    empty_dir(dir);
    spool_options_t o = {.dir = dir};
    spool_t *sp;
    char err[512];
    if (spool_open(&o, &sp, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    char *value = malloc(value_len);
    memset(value, 'v', value_len);
    spool_header_t h = {"mqtt.topic", 10, "sensors/1/temperature", 21};
    uint64_t tag = 0;
    spool_record_t r = {.topic = "sensors.temperature",
                        .topic_len = 19,
                        .key = "sensor-000000001",
                        .key_len = 16,
                        .value = value,
                        .value_len = value_len,
                        .headers = &h,
                        .n_headers = 1,
                        .timestamp_ms = 1700000000000,
                        .tag = &tag,
                        .tag_len = sizeof tag};
    uint64_t n = 0, synced = 0, seq;
    double t0 = now_sec(), t = t0;
    do {
        for (int i = 0; i < group; i++, n++) {
            tag = n;
            if (spool_append(sp, &r, &seq) != 0) {
                fprintf(stderr, "append failed\n");
                return -1;
            }
        }
        if (spool_sync(sp, &synced) != 0) {
            fprintf(stderr, "sync failed\n");
            return -1;
        }
        t = now_sec();
    } while (t - t0 < seconds || n < (uint64_t)group * 2);
    spool_stats_t st;
    spool_stats(sp, &st);
    out->rec_s = (double)n / (t - t0);
    out->mb_s = (double)st.bytes / (t - t0) / 1e6;

    /* The drain: read everything, confirm every 1000 (a checkpoint each). */
    double d0 = now_sec();
    spool_record_t got;
    uint64_t read = 0;
    while (spool_peek(sp, &got, &seq) == 0) {
        spool_next(sp);
        if (++read % 1000 == 0 && spool_confirm(sp, seq) != 0)
            return -1;
    }
    if (read != n || spool_confirm(sp, synced) != 0) {
        fprintf(stderr, "drain read %llu of %llu\n", (unsigned long long)read,
                (unsigned long long)n);
        return -1;
    }
    out->drain_rec_s = (double)read / (now_sec() - d0);
    spool_close(sp);
    free(value);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "spool-bench.tmp";
    double seconds = 2.0;
    bool smoke = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke"))
            smoke = true;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--seconds S] | --smoke\n", argv[0]);
            return 2;
        }
    }
    char tmp[] = "/tmp/m2k-spool-bench-XXXXXX";
    if (smoke) {
        dir = mkdtemp(tmp);
        seconds = 0.0;
    }
    if (!dir || (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0)) {
        perror(dir ? dir : "mkdtemp");
        return 1;
    }
    double ceiling = dsync_ceiling(dir, smoke ? 0.0 : seconds);
    printf("disk: 1 MiB O_DSYNC writes (dd bs=1M oflag=dsync): %.1f MB/s\n", ceiling);
    printf("| value | records per sync | records/s | MB/s on disk | x dd | drain records/s |\n");
    printf("|---|---|---|---|---|---|\n");
    static const size_t values[] = {100, 16384};
    static const int groups[] = {1, 10, 100, 1000};
    int rc = 0;
    for (size_t v = 0; v < 2 && rc == 0; v++)
        for (size_t g = 0; g < 4 && rc == 0; g++) {
            if (smoke && g > 1)
                break;
            result_t res;
            rc = run_cell(dir, values[v], groups[g], seconds, &res);
            if (rc == 0)
                printf("| %zu B | %d | %.0f | %.1f | %.2f | %.0f |\n", values[v], groups[g],
                       res.rec_s, res.mb_s, ceiling > 0 ? res.mb_s / ceiling : 0, res.drain_rec_s);
        }
    empty_dir(dir);
    rmdir(dir);
    return rc == 0 ? 0 : 1;
}
