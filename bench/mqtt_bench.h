/* mqtt-bench: an MQTT 3.1.1 load generator (publish, idle and sensor modes).
 *
 * Shared between the tool's files: mqtt_bench.c (command line, reports,
 * --smoke), mqtt_bench_run.c (the epoll client engine), mqtt_bench_hist.c
 * (latency histogram) and mqtt_bench_fake.c (an in-process fake broker for
 * --smoke). Single-threaded engine; only the fake broker runs in a thread. */
#ifndef M2K_MQTT_BENCH_H
#define M2K_MQTT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum {
    BENCH_MODE_PUBLISH = 0,
    BENCH_MODE_IDLE = 1,
    BENCH_MODE_SENSORS = 2,
} bench_mode_t;

typedef struct {
    bench_mode_t mode;
    const char *host;             /* numeric or resolvable; default 127.0.0.1 */
    uint16_t port;                /* default 1883 */
    uint32_t connections;         /* default 1 */
    int qos;                      /* 0, 1, 2 */
    size_t payload;               /* bytes per PUBLISH (publish mode) */
    uint32_t window;              /* unacknowledged QoS 1/2 PUBLISHes per connection */
    double rate;                  /* total msgs/s over all connections; 0 = as fast as possible */
    double duration;              /* seconds of publishing; 0 = until count or signal */
    uint64_t count;               /* PUBLISHes per connection; 0 = unlimited */
    const char *topic;            /* pattern, %d = connection number + first_id */
    const char *client_id;        /* pattern, %d as above */
    const char *username;         /* NULL = none */
    const char *password;         /* NULL = none */
    bool clean_session;           /* default true */
    bool retain;                  /* RETAIN flag on every PUBLISH */
    uint16_t keepalive;           /* seconds in CONNECT; PINGREQ after keepalive/2 of silence */
    double idle;                  /* idle mode: seconds to hold the connections */
    uint32_t interval_ms;         /* sensor mode: one reading per metric per interval */
    uint32_t first_id;            /* added to the connection number for %d */
    bool final_ping;              /* QoS 0: end with a PINGREQ round trip per connection */
    bool qos0_blast;              /* QoS 0 without flow control (no PINGREQ after each batch) */
    uint32_t connect_concurrency; /* handshakes in progress at once */
    double connect_timeout;       /* seconds from connect() to CONNACK */
    double drain_timeout;         /* seconds to wait for outstanding acks after sending stops */
    uint32_t conns_per_source;    /* loopback targets: connections per 127.0.0.x source */
    pid_t server_pid;             /* > 0: read the server's VmRSS before and after */
    bool progress;                /* one status line a second on stderr */
    const char *ws_path;          /* MQTT over WebSocket to this path; NULL: plain TCP */
} bench_opts_t;

/* Latency histogram in nanoseconds: log-linear buckets, 64 per power of two
 * (under 1.6 % relative error), exact min, max and mean. */
#define HIST_BUCKETS 3776
typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t min;
    uint64_t max;
    double sum;
} hist_t;

void hist_init(hist_t *h);
void hist_record(hist_t *h, uint64_t ns);
/* The smallest recorded bucket's upper bound covering fraction q (0..1) of the
 * values, clamped to the exact max; 0 when empty. */
uint64_t hist_quantile(const hist_t *h, double q);

typedef struct {
    /* connect phase */
    uint64_t attempted;
    uint64_t connected;
    double connect_seconds;
    /* publish phase (publish and sensor modes) */
    double publish_seconds;
    uint64_t sent;
    uint64_t acked;   /* PUBACK (QoS 1) or PUBCOMP (QoS 2) received */
    uint64_t unacked; /* still outstanding at the end (drain timeout or closed) */
    uint64_t bytes_sent;
    bool final_ping_done; /* QoS 0: every live connection answered the final PINGREQ */
    hist_t latency;
    /* errors */
    uint64_t err_connect_refused;
    uint64_t err_connect_failed; /* other connect()/socket errors */
    uint64_t err_connect_timeout;
    uint64_t err_connack_rejected;
    uint64_t err_closed_by_server;
    uint64_t err_protocol;
    /* keepalive */
    uint64_t pings_sent;
    uint64_t pongs;
    /* own CPU use (getrusage, whole process) */
    double wall_seconds;
    double cpu_user;
    double cpu_sys;
    double publish_cpu; /* user+sys during the publish phase */
    /* server memory, with --server-pid */
    long server_rss_kb_before;
    long server_rss_kb_after;
    bool interrupted; /* stopped by SIGINT/SIGTERM */
} bench_result_t;

uint64_t bench_errors_total(const bench_result_t *r);

/* Sets every option to its default. */
void bench_opts_default(bench_opts_t *o);

/* Runs one benchmark. The result is allocated by the caller (it holds the
 * histogram). Returns 0 when the run could be carried out (individual
 * connection errors are counted in the result), or -1 with a message in
 * errbuf when setup failed (bad address, too few file descriptors). */
int bench_run(const bench_opts_t *o, bench_result_t *r, char *errbuf, size_t errlen);

/* Writes pattern with every "%d" replaced by n and "%%" by "%"; other text is
 * copied as is (the pattern is never a printf format). Returns the length, or
 * -1 when it does not fit. */
int bench_format_pattern(char *out, size_t cap, const char *pattern, uint64_t n);

/* The fake broker used by --smoke: accepts on 127.0.0.1 (port chosen by the
 * kernel) in its own thread and answers CONNACK, PUBACK, PUBREC, PUBCOMP and
 * PINGRESP. It counts what it received. */
typedef struct fake_broker fake_broker_t;
typedef struct {
    uint64_t connects;
    uint64_t publishes[3]; /* by QoS */
    uint64_t pubrels;
    uint64_t pingreqs;
    uint64_t disconnects;
    uint64_t protocol_errors;
} fake_stats_t;

int fake_broker_start(fake_broker_t **out, uint16_t *port);
/* Stops the thread, fills stats, frees everything. */
void fake_broker_stop(fake_broker_t *fb, fake_stats_t *stats);

/* --websocket (mqtt_bench_ws.c). */
#define BENCH_WS_HEAD_MAX 14 /* a client frame header with its mask */
typedef struct {
    bool upgraded;      /* the 101 head was read */
    uint8_t http_match; /* bytes of "\r\n\r\n" matched */
    uint8_t hdr_len;
    uint8_t hdr[12]; /* the status line's start, then a frame header */
    uint64_t left;   /* payload bytes left in the current frame */
} bench_ws_rx_t;
/* The upgrade request; its length, or -1 when it does not fit. */
int bench_ws_request(char *out, size_t cap, const char *host, uint16_t port, const char *path);
/* Frames p[0..n) in place as one masked binary frame (p has room for
 * BENCH_WS_HEAD_MAX more bytes); returns the frame's length. */
size_t bench_ws_frame(uint8_t *p, size_t n, uint32_t mask);
/* Strips the 101 head and frame headers from p[0..n) in place; returns the
 * payload bytes left at p, or -1 on anything but 101 and binary frames. */
ssize_t bench_ws_rx(bench_ws_rx_t *s, uint8_t *p, size_t n);

/* Reads VmRSS of a process in kB; -1 if unavailable. */
long bench_read_rss_kb(pid_t pid);

#endif
