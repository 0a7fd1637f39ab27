#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Atomics because librdkafka's threads read them while the loop thread may
 * change them (SIGHUP reload). Relaxed order is enough: a line printed at the
 * old level around a change is harmless. */
static _Atomic int current_level = LOG_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;
static _Atomic int current_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};

void log_set_level(log_level_t level) {
    atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

log_level_t log_get_level(void) {
    return (log_level_t)atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_level_parse(const char *name, log_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(log_level_t level) {
    return (unsigned)level < 4 ? level_names[level] : "?";
}

void log_set_format(log_format_t format) {
    atomic_store_explicit(&current_format, (int)format, memory_order_relaxed);
}

log_format_t log_get_format(void) {
    return (log_format_t)atomic_load_explicit(&current_format, memory_order_relaxed);
}

int log_format_parse(const char *name, log_format_t *out) {
    for (int i = 0; i < 2; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (log_format_t)i;
            return 0;
        }
    }
    return -1;
}

int log_set_fd(int fd) {
    return atomic_exchange(&current_fd, fd);
}

/* A bounded output buffer; every append is all-or-nothing so an escape
 * sequence or a UTF-8 character is never cut in half. */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
    int truncated;
} out_t;

static int out_put(out_t *o, const char *s, size_t n) {
    if (o->truncated || o->len + n > o->cap) {
        o->truncated = 1;
        return -1;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return 0;
}

static int out_str(out_t *o, const char *s) {
    return out_put(o, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (n bytes left), 0 if none;
 * its code point in *cp. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp_out) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    *cp_out = c;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_out = cp;
    return len;
}

/* C1 controls (U+0080..U+009F: U+009B is a terminal's CSI) and the
 * bidirectional formatting characters (U+202E reverses what follows): a
 * log reader must see them, not their effect. */
static bool cp_escaped(unsigned cp) {
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* JSON string contents; invalid UTF-8 becomes U+FFFD so the line stays valid JSON. */
static void out_json_escaped(out_t *o, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            if (out_put(o, esc, 2) < 0)
                return;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named) {
                if (out_str(o, named) < 0)
                    return;
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                if (out_put(o, esc, 6) < 0)
                    return;
            }
            i++;
        } else {
            unsigned cp;
            size_t len = utf8_decode(u + i, n - i, &cp);
            if (len == 0) {
                if (out_str(o, "\\ufffd") < 0)
                    return;
                i++;
            } else if (cp_escaped(cp)) {
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
                if (out_put(o, esc, 6) < 0)
                    return;
                i += len;
            } else {
                if (out_put(o, s + i, len) < 0)
                    return;
                i += len;
            }
        }
    }
}

/* Text: control characters and bytes that are not UTF-8 as \xHH, C1 and
 * bidi characters as \uHHHH, so untrusted input cannot start a new line or
 * drive the terminal; with `quoted`, also \" and \\ (for field values in
 * quotes). */
static void out_text_escaped(out_t *o, const char *s, int quoted) {
    size_t n = strlen(s);
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        char esc[8];
        unsigned cp = 0;
        size_t len =
            *u >= 0x80 ? utf8_decode(u, n - (size_t)(u - (const unsigned char *)s), &cp) : 1;
        if (*u < 0x20 || *u == 0x7f || len == 0) {
            snprintf(esc, sizeof(esc), "\\x%02x", *u);
            if (out_put(o, esc, 4) < 0)
                return;
        } else if (len > 1) {
            if (cp_escaped(cp))
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
            if (out_put(o, cp_escaped(cp) ? esc : (const char *)u, cp_escaped(cp) ? 6 : len) < 0)
                return;
            u += len - 1;
        } else if (quoted && (*u == '"' || *u == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)*u;
            if (out_put(o, esc, 2) < 0)
                return;
        } else if (out_put(o, (const char *)u, 1) < 0) {
            return;
        }
    }
}

static void out_text_value(out_t *o, const char *v) {
    if (!v) {
        out_put(o, "-", 1);
        return;
    }
    int quote = *v == '\0';
    for (const char *c = v; *c && !quote; c++)
        quote = *c == ' ' || *c == '"' || *c == '=' || *c == '\\';
    if (quote)
        out_put(o, "\"", 1);
    out_text_escaped(o, v, quote);
    if (quote)
        out_put(o, "\"", 1);
}

static void format_ts(char *buf, size_t cap) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void write_all(const char *buf, size_t len) {
    int fd = atomic_load_explicit(&current_fd, memory_order_relaxed);
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing log */
        }
        buf += w;
        len -= (size_t)w;
    }
}

/* Room kept for the end of a line: "..." or "\"}" and the newline. */
#define LINE_TAIL 8
/* Fields share at most this much of a line, so the message always has room. */
#define FIELDS_MAX 1024

static void log_vwrite(log_level_t level, const log_field_t *fields, size_t n_fields,
                       const char *fmt, va_list ap) {
    if ((unsigned)level > LOG_DEBUG || (int)level > (int)log_get_level())
        return;
    char msg[LOG_LINE_MAX];
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    int msg_cut = m >= (int)sizeof(msg);
    if (m < 0)
        msg[0] = '\0';
    char ts[64];
    format_ts(ts, sizeof(ts));

    char line[LOG_LINE_MAX];
    out_t o = {line, 0, sizeof(line) - LINE_TAIL, 0};
    char fbuf[FIELDS_MAX];
    out_t f = {fbuf, 0, sizeof(fbuf), 0};

    if (log_get_format() == LOG_FORMAT_JSON) {
        for (size_t i = 0; i < n_fields; i++) {
            size_t mark = f.len;
            out_str(&f, ",\"");
            out_json_escaped(&f, fields[i].key);
            if (fields[i].value) {
                out_str(&f, "\":\"");
                out_json_escaped(&f, fields[i].value);
                out_str(&f, "\"");
            } else {
                out_str(&f, "\":null");
            }
            if (f.truncated) { /* drop the field that does not fit, keep the JSON valid */
                f.len = mark;
                break;
            }
        }
        out_str(&o, "{\"ts\":\"");
        out_str(&o, ts);
        out_str(&o, "\",\"level\":\"");
        out_str(&o, level_names[level]);
        out_str(&o, "\",\"msg\":\"");
        o.cap -= f.len; /* reserve the fields */
        out_json_escaped(&o, msg);
        o.cap += f.len + LINE_TAIL;
        o.truncated = 0;
        out_put(&o, "\"", 1);
        out_put(&o, fbuf, f.len);
        out_put(&o, "}\n", 2);
    } else {
        out_str(&o, ts);
        out_put(&o, " ", 1);
        char lv[8];
        snprintf(lv, sizeof(lv), "%-5s ", level_names[level]);
        out_str(&o, lv);
        for (size_t i = 0; i < n_fields; i++) {
            size_t mark = f.len;
            out_str(&f, fields[i].key);
            out_put(&f, "=", 1);
            out_text_value(&f, fields[i].value);
            out_put(&f, " ", 1);
            if (f.truncated) {
                f.len = mark;
                break;
            }
        }
        out_put(&o, fbuf, f.len);
        out_text_escaped(&o, msg, 0);
        int cut = o.truncated || msg_cut;
        o.cap += LINE_TAIL;
        o.truncated = 0;
        if (cut)
            out_put(&o, "...", 3);
        out_put(&o, "\n", 1);
    }
    write_all(line, o.len);
}

void log_write(log_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_write_fields(log_level_t level, const log_field_t *fields, size_t n_fields,
                      const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fields, n_fields, fmt, ap);
    va_end(ap);
}

bool log_ratelimit_check(log_ratelimit_t *rl, uint64_t now_ms, uint32_t *suppressed_out) {
    *suppressed_out = 0;
    pthread_mutex_lock(&rl->mu);
    bool pass = true;
    /* now_ms was read before the lock: another thread may have started a
     * window a little later; such a line belongs to that window */
    if (!rl->started ||
        (now_ms >= rl->window_start_ms && now_ms - rl->window_start_ms >= rl->interval_ms)) {
        *suppressed_out = rl->suppressed;
        rl->started = true;
        rl->window_start_ms = now_ms;
        rl->in_window = 0;
        rl->suppressed = 0;
    }
    if (rl->in_window < rl->burst) {
        rl->in_window++;
    } else {
        pass = false;
        if (rl->suppressed < UINT32_MAX)
            rl->suppressed++;
    }
    pthread_mutex_unlock(&rl->mu);
    return pass;
}

uint64_t log_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void log_write_suppressed(log_ratelimit_t *rl, log_level_t level, uint32_t n) {
    log_write(level, "suppressed %u similar lines: %s", n, rl->name ? rl->name : "?");
}
