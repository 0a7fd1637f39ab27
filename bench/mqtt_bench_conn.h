/* The mqtt-bench client engine's insides, shared by mqtt_bench_run.c (the
 * loop and its phases) and mqtt_bench_conn.c (one connection: its output
 * buffer, CONNECT, PUBLISH and the packets it reads). Not for the tool's
 * other parts, which use mqtt_bench.h. */
#ifndef M2K_BENCH_MQTT_BENCH_CONN_H
#define M2K_BENCH_MQTT_BENCH_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "mqtt_bench.h"
#include "mqtt/codec.h"

enum {
    C_NEW = 0,
    C_CONNECTING, /* TCP connect in progress */
    C_CONNACK,    /* CONNECT sent, waiting for CONNACK */
    C_READY,      /* connected; publishing or idle */
    C_CLOSED,     /* failed or finished; fd closed */
};

/* Slot states for QoS 1/2 packet ids (packet id = slot + 1). */
enum { SLOT_FREE = 0, SLOT_WAIT_ACK = 1, SLOT_WAIT_COMP = 2 };

#define CARRY_MAX 16           /* the server only sends small packets to a publisher */
#define BATCH_MAX (256 * 1024) /* bytes queued per connection per loop turn */
#define READ_BUF 65536
/* PINGREQs outstanding per connection; QoS 0 flow control uses up to
 * PING_FIFO - 2 so a keepalive or final PINGREQ always fits. */
#define PING_FIFO 8

typedef struct {
    int fd;
    uint8_t state;
    bool dirty;                      /* in the flush list for this turn */
    bool want_out;                   /* EPOLLOUT registered */
    bool ping_wait;                  /* final PINGREQ sent, PINGRESP not yet seen */
    uint8_t ping_head, ping_n;       /* PINGREQs awaiting PINGRESP, oldest first */
    uint32_t ping_covers[PING_FIFO]; /* QoS 0 PUBLISHes each PINGREQ confirms */
    uint32_t unconfirmed;            /* QoS 0 PUBLISHes not yet confirmed */
    uint8_t carry_len;
    uint8_t carry[CARRY_MAX];
    uint32_t index;
    uint8_t *obuf;
    uint32_t olen, ooff, ocap;
    uint32_t oframed;   /* --websocket: obuf[0..oframed) is in wire form */
    bench_ws_rx_t wsrx; /* --websocket: the input side */
    uint64_t t_connect;
    uint64_t last_tx;
    uint64_t next_due;
    uint64_t owed; /* PUBLISHes due but not yet written (rate/sensor modes) */
    uint64_t sent;
    uint32_t inflight;
    uint32_t nfree;
    uint64_t *sent_ns;
    uint8_t *slot_state;
    uint16_t *free_stack;
    uint8_t *tmpl; /* PUBLISH without payload */
    uint16_t tmpl_len;
    uint16_t pid_off;
    /* sensor simulation */
    double temp, temp_base, bright_factor;
    uint64_t rng;
} conn_t;

typedef struct {
    const bench_opts_t *o;
    bench_result_t *r;
    int epfd;
    conn_t *conns;
    uint32_t n;
    uint32_t *dirty;
    uint32_t ndirty;
    uint8_t *payload;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool bind_source;
    /* connect phase */
    uint32_t next_connect;
    uint32_t handshakes;
    uint32_t resolved; /* connected or failed */
    /* publish phase */
    bool publishing;
    bool stop_sending;
    bool unlimited;
    uint64_t period_ns; /* per connection, rate/sensor modes */
    uint32_t cursor;
    uint64_t inflight; /* over all connections */
    uint32_t ping_waits;
    uint64_t t_last_event;
} bench_t;

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* mqtt_bench_conn.c */
void bench_mark_dirty(bench_t *b, conn_t *c);
void bench_conn_close(bench_t *b, conn_t *c);
int bench_conn_write(bench_t *b, conn_t *c);
int bench_queue_empty_packet(conn_t *c, mqtt_type_t type);
int bench_queue_ping(bench_t *b, conn_t *c, uint32_t covers);
void bench_start_connects(bench_t *b);
void bench_on_connected(bench_t *b, conn_t *c);
int bench_conn_prepare_publish(bench_t *b, conn_t *c);
void bench_conn_flush(bench_t *b, conn_t *c);
void bench_on_readable(bench_t *b, conn_t *c);

#endif
