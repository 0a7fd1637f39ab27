/* Logging: one line per event, written with a single write(2) to fd 2 (so
 * lines from librdkafka's threads never interleave mid-line), in text or JSON.
 *
 * Text:  2024-05-01T12:00:00.123Z info  client=c1 addr=10.0.0.1:5555 message
 * JSON:  {"ts":"2024-05-01T12:00:00.123Z","level":"info","msg":"message",
 *         "client":"c1","addr":"10.0.0.1:5555"}
 *
 * Thread safety: the level, format and fd are C11 atomics; log_write and
 * log_write_fields may be called from any thread (librdkafka's log callback).
 * A log_ratelimit_t may be shared by threads (the workers share one per
 * message kind): its state is under a mutex taken only when a limited line
 * is about to be written (the rare path). Lines are at most LOG_LINE_MAX bytes; longer messages are
 * cut (text: "..." appended; JSON stays valid). Control characters from untrusted input (client
 * ids, topics) are escaped so one event stays one line. */
#ifndef M2K_LOG_H
#define M2K_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level_t;
typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 } log_format_t;

#define LOG_LINE_MAX 4096

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "error" | "warn" | "info" | "debug"; returns 0 or -1. */
int log_level_parse(const char *name, log_level_t *out);
const char *log_level_name(log_level_t level);

/* Output format (default LOG_FORMAT_TEXT); config key `log.format`. */
void log_set_format(log_format_t format);
log_format_t log_get_format(void);
/* Parses "text" | "json"; returns 0 or -1. */
int log_format_parse(const char *name, log_format_t *out);
/* The fd lines go to (default 2). For tests; returns the previous fd. */
int log_set_fd(int fd);

/* One extra key/value of a line: " key=value" in text (value quoted when it
 * has spaces, quotes or '='), a string member in JSON. A NULL value is
 * written as "-" in text and null in JSON. Keys are trusted identifiers. */
typedef struct {
    const char *key;
    const char *value;
} log_field_t;

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fields come before the message in text, after "msg" in JSON. */
void log_write_fields(log_level_t level, const log_field_t *fields, size_t n_fields,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_get_level() >= LOG_INFO)                                                           \
            log_write(LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* The convention for every line about one client: its client id (NULL
 * before CONNECT is decoded: "-") and remote address "ip:port" / "[v6]:port".
 *   log_client(LOG_WARN, s->client_id, s->peer, "keepalive timeout after %u s", ka);
 * -> ... warn  client=sensor-1 addr=10.0.0.7:40122 keepalive timeout after 90 s */
#define log_client(level, client_id, addr, ...)                                                    \
    do {                                                                                           \
        if (log_get_level() >= (level)) {                                                          \
            const log_field_t log_client_f_[2] = {{"client", (client_id)}, {"addr", (addr)}};      \
            log_write_fields((level), log_client_f_, 2, __VA_ARGS__);                              \
        }                                                                                          \
    } while (0)

/* Rate limiting, one object per call site (a static, or one per client):
 * at most `burst` lines per `interval_ms`; lines beyond are counted, and the
 * first line let through after the window ends is preceded by
 * "suppressed N similar lines: <name>" at the same level.
 *   static log_ratelimit_t rl = LOG_RATELIMIT_INIT("unmapped topic", 10, 10000);
 *   log_ratelimited(&rl, LOG_WARN, "no rule for topic %s: dropped", topic);
 * Thread-safe: several threads may share one object and the process then
 * writes at most `burst` lines per window in all, with one exact summary. */
typedef struct {
    pthread_mutex_t mu; /* guards the fields below name/burst/interval_ms */
    const char *name;
    uint32_t burst;
    uint32_t interval_ms;
    uint64_t window_start_ms;
    uint32_t in_window; /* lines let through in the current window */
    uint32_t suppressed;
    bool started;
} log_ratelimit_t;

#define LOG_RATELIMIT_INIT(name_, burst_, interval_ms_)                                            \
    {                                                                                              \
        .mu = PTHREAD_MUTEX_INITIALIZER, .name = (name_), .burst = (burst_),                       \
        .interval_ms = (interval_ms_)                                                              \
    }
#define LOG_RATELIMIT_DEFAULT_BURST 10
#define LOG_RATELIMIT_DEFAULT_INTERVAL_MS 10000

/* Decides for a line at now_ms (monotonic). Returns true when the line may be
 * written; then *suppressed_out is the number suppressed in the window that
 * just ended (to be reported first; 0 when none). Pure: tests pass the time. */
bool log_ratelimit_check(log_ratelimit_t *rl, uint64_t now_ms, uint32_t *suppressed_out);
/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t log_now_ms(void);
/* Writes "suppressed N similar lines: <name>" (used by the macros). */
void log_write_suppressed(log_ratelimit_t *rl, log_level_t level, uint32_t n);

#define log_ratelimited(rl, level, ...)                                                            \
    do {                                                                                           \
        uint32_t log_rl_n_;                                                                        \
        if (log_get_level() >= (level) && log_ratelimit_check((rl), log_now_ms(), &log_rl_n_)) {   \
            if (log_rl_n_ > 0)                                                                     \
                log_write_suppressed((rl), (level), log_rl_n_);                                    \
            log_write((level), __VA_ARGS__);                                                       \
        }                                                                                          \
    } while (0)

/* The same for client lines. */
#define log_client_ratelimited(rl, level, client_id, addr, ...)                                    \
    do {                                                                                           \
        uint32_t log_rl_n_;                                                                        \
        if (log_get_level() >= (level) && log_ratelimit_check((rl), log_now_ms(), &log_rl_n_)) {   \
            if (log_rl_n_ > 0)                                                                     \
                log_write_suppressed((rl), (level), log_rl_n_);                                    \
            const log_field_t log_client_f_[2] = {{"client", (client_id)}, {"addr", (addr)}};      \
            log_write_fields((level), log_client_f_, 2, __VA_ARGS__);                              \
        }                                                                                          \
    } while (0)

#endif
