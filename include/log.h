/* Logging: one line per event on stderr (journald adds its own timestamps, but
 * a line run by hand needs one too). Not thread-safe beyond what stdio gives;
 * only the loop thread and librdkafka's log callback write. */
#ifndef M2K_LOG_H
#define M2K_LOG_H

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level_t;

/* Sets the most verbose level that is printed (default LOG_INFO). */
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "error" | "warn" | "info" | "debug"; returns 0 or -1. */
int log_level_parse(const char *name, log_level_t *out);
const char *log_level_name(log_level_t level);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

#endif
