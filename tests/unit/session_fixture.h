/* The fixture of the session tests (test_session*.c): a fake producer, a fake
 * topic map, a fake security (auth ops), fake connections, a hand-driven clock,
 * MQTT packet builders and a log capture. Each test file uses a subset. */
#ifndef M2K_TEST_SESSION_FIXTURE_H
#define M2K_TEST_SESSION_FIXTURE_H

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqtt/codec.h"
#include "mqtt/session.h"
#include "ops/metrics.h"
#include "util/log.h"

#pragma GCC diagnostic ignored "-Wunused-function"

/* ---- fakes ---------------------------------------------------------------- */

#define MAX_RECS 64

typedef struct {
    char topic[128];
    char key[128];
    size_t key_len;
    char value[256];
    size_t value_len;
    char headers[512]; /* "name=value;" ... */
    int64_t ts;
    uint64_t opaque;
} rec_t;

typedef struct {
    rec_t recs[MAX_RECS];
    int n;
    int rc_queue[8]; /* return codes handed out first, then KAFKA_OK */
    int n_rc;
} producer_t;

static int fake_produce(void *ud, const kafka_record_t *r, uint64_t opaque) {
    producer_t *p = ud;
    if (p->n_rc) {
        int rc = p->rc_queue[0];
        memmove(p->rc_queue, p->rc_queue + 1, sizeof(int) * (size_t)--p->n_rc);
        if (rc != KAFKA_OK)
            return rc;
    }
    assert_true(p->n < MAX_RECS);
    rec_t *x = &p->recs[p->n++];
    memset(x, 0, sizeof(*x));
    snprintf(x->topic, sizeof(x->topic), "%s", r->topic);
    if (r->key_len) /* a record without a key has key NULL */
        memcpy(x->key, r->key, r->key_len);
    x->key_len = r->key_len;
    if (r->value_len) /* a tombstone has value NULL */
        memcpy(x->value, r->value, r->value_len);
    x->value_len = r->value_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        size_t l = strlen(x->headers);
        snprintf(x->headers + l, sizeof(x->headers) - l, "%s=%.*s;", r->headers[i].name,
                 (int)r->headers[i].len, (const char *)r->headers[i].value);
    }
    x->ts = r->timestamp_ms;
    x->opaque = opaque;
    return KAFKA_OK;
}

/* "t/..." -> Kafka "kt", key "K:" + topic; "k/NAME" -> Kafka "NAME", no key;
 * "bad/..." (rendered as the topic itself), "res/NAME" (rendered "_NAME")
 * and "room/..." give the topic map's errors; anything else is unmapped. */
static int fake_route(void *ud, const char *topic, size_t len, const topic_map_ctx_t *ctx,
                      char *scratch, size_t cap, topic_map_result_t *out) {
    (void)ud;
    (void)ctx;
    if (len >= 5 && memcmp(topic, "room/", 5) == 0)
        return TOPIC_MAP_ERR_NO_ROOM;
    bool res = len >= 4 && memcmp(topic, "res/", 4) == 0;
    bool bad = len >= 4 && memcmp(topic, "bad/", 4) == 0;
    bool k = len >= 2 && memcmp(topic, "k/", 2) == 0;
    if (res || bad || k) {
        size_t skip = res ? 3 : k ? 2 : 0; /* "res/a" -> "_a" */
        assert_true(cap > len + 2);
        memcpy(scratch, topic + skip, len - skip);
        if (res)
            scratch[0] = '_';
        scratch[len - skip] = '\0';
        out->kafka_topic = scratch;
        out->kafka_topic_len = len - skip;
        out->key = NULL;
        out->key_len = 0;
        out->rule = 1;
        return res ? TOPIC_MAP_ERR_RESERVED : bad ? TOPIC_MAP_ERR_BAD_TOPIC : TOPIC_MAP_MATCHED;
    }
    if (len < 2 || memcmp(topic, "t/", 2) != 0)
        return TOPIC_MAP_UNMAPPED;
    assert_true(cap > len + 8);
    memcpy(scratch, "kt", 3);
    memcpy(scratch + 3, "K:", 2);
    memcpy(scratch + 5, topic, len);
    out->kafka_topic = scratch;
    out->kafka_topic_len = 2;
    out->key = scratch + 3;
    out->key_len = len + 2;
    out->rule = 0;
    return TOPIC_MAP_MATCHED;
}

typedef struct {
    uint8_t out[8192];
    size_t out_len;
    int closes, pauses, resumes, holds;
    uint32_t held_ms;
    size_t out_at_hold; /* bytes queued when hold was called */
    bool paused;
    bool fail_send;
    session_conn_t *c;
} fconn_t;

static int f_send(void *ud, const void *buf, size_t len) {
    fconn_t *f = ud;
    if (f->fail_send)
        return -1;
    assert_true(f->out_len + len <= sizeof(f->out));
    memcpy(f->out + f->out_len, buf, len);
    f->out_len += len;
    return 0;
}
static void f_close(void *ud) {
    ((fconn_t *)ud)->closes++;
}
static void f_pause(void *ud) {
    fconn_t *f = ud;
    f->pauses++;
    f->paused = true;
}
static void f_resume(void *ud) {
    fconn_t *f = ud;
    f->resumes++;
    f->paused = false;
}
static void f_hold(void *ud, uint32_t ms) {
    fconn_t *f = ud;
    f->holds++;
    f->held_ms = ms;
    f->out_at_hold = f->out_len;
}
static const session_conn_ops_t f_ops = {f_send, f_close, f_pause, f_resume, NULL};
static const session_conn_ops_t f_ops_hold = {f_send, f_close, f_pause, f_resume, f_hold};

/* The auth ops: answers set by the test, calls and last arguments recorded. */
typedef struct {
    int rc;            /* connect's answer */
    uint32_t delay_ms; /* connect's throttle delay */
    uint32_t gen;      /* acl_generation's answer (0: no ACL) */
    const char *deny;  /* can_publish refuses the topics that start with it */
    int connects, checks, gens;
    bool has_user, has_pw;
    uint64_t now_ms;
    char identity[64], user[64], pass[64];          /* connect's last arguments */
    char acl_user[64], acl_cid[64], acl_topic[128]; /* can_publish's */
    const char *deny_sub;  /* can_subscribe refuses the filters that start with it */
    const char *deny_read; /* can_read refuses the topics that start with it */
    int sub_checks, read_checks;
} fake_auth_t;

static void copy_arg(char *out, size_t cap, const void *p, size_t n) {
    snprintf(out, cap, "%.*s", p ? (int)n : 0, p ? (const char *)p : "");
}

static int fa_connect(void *ud, const char *addr, const char *identity, bool has_user,
                      const char *user, size_t ulen, bool has_pw, const uint8_t *pw, size_t pwlen,
                      uint64_t now_ms, uint32_t *delay_ms) {
    fake_auth_t *a = ud;
    a->connects++;
    assert_string_equal(addr, "127.0.0.1:5000");
    copy_arg(a->identity, sizeof(a->identity), identity, identity ? strlen(identity) : 0);
    a->has_user = has_user;
    copy_arg(a->user, sizeof(a->user), user, ulen);
    a->has_pw = has_pw;
    copy_arg(a->pass, sizeof(a->pass), pw, pwlen);
    a->now_ms = now_ms;
    *delay_ms = a->delay_ms;
    return a->rc;
}

static bool fa_can_publish(void *ud, const char *user, const char *client_id, const char *topic,
                           size_t len) {
    fake_auth_t *a = ud;
    a->checks++;
    copy_arg(a->acl_user, sizeof(a->acl_user), user ? user : "(null)",
             strlen(user ? user : "(null)"));
    copy_arg(a->acl_cid, sizeof(a->acl_cid), client_id, strlen(client_id));
    copy_arg(a->acl_topic, sizeof(a->acl_topic), topic, len);
    size_t n = a->deny ? strlen(a->deny) : 0;
    return !(a->deny && len >= n && memcmp(topic, a->deny, n) == 0);
}

static bool fa_prefix(const char *deny, const char *s, size_t len) {
    size_t n = deny ? strlen(deny) : 0;
    return deny && len >= n && memcmp(s, deny, n) == 0;
}

static bool fa_can_subscribe(void *ud, const char *user, const char *client_id, const char *filter,
                             size_t len) {
    fake_auth_t *a = ud;
    (void)user, (void)client_id;
    a->sub_checks++;
    return !fa_prefix(a->deny_sub, filter, len);
}

static bool fa_can_read(void *ud, const char *user, const char *client_id, const char *topic,
                        size_t len) {
    fake_auth_t *a = ud;
    (void)user, (void)client_id;
    a->read_checks++;
    return !fa_prefix(a->deny_read, topic, len);
}

static uint32_t fa_generation(void *ud) {
    fake_auth_t *a = ud;
    a->gens++;
    return a->gen;
}

typedef struct {
    config_t cfg;
    producer_t prod;
    session_mgr_t *m;
    fconn_t conns[4];
    uint64_t now;
    metrics_histogram_t lat; /* the ack latencies the session reported */
    bool with_auth;          /* opts.auth: the fake below */
    fake_auth_t auth;
    const session_conn_ops_t *ops; /* of the connections open_conn makes */
    dl_retained_t *retained;       /* opts.retained (the test owns it) */
} fx_t;

static void fx_ack_latency(void *ud, uint32_t usec) {
    metrics_histogram_observe(&((fx_t *)ud)->lat, usec);
}

static void fx_start(fx_t *fx) {
    session_mgr_opts_t o = {
        .cfg = &fx->cfg,
        .route = fake_route,
        .produce = fake_produce,
        .produce_ud = &fx->prod,
        .max_detached_sessions = 2,
        .ack_latency = fx_ack_latency,
        .ack_latency_ud = fx,
        .retained = fx->retained,
    };
    if (fx->with_auth)
        o.auth = (session_auth_ops_t){.connect = fa_connect,
                                      .can_publish = fa_can_publish,
                                      .acl_generation = fa_generation,
                                      .ud = &fx->auth,
                                      .can_subscribe = fa_can_subscribe,
                                      .can_read = fa_can_read};
    memset(&fx->lat, 0, sizeof(fx->lat));
    fx->m = session_mgr_new(&o);
    assert_non_null(fx->m);
    session_mgr_set_now(fx->m, fx->now, 1700000000000);
}

static int setup(void **state) {
    fx_t *fx = calloc(1, sizeof(*fx));
    fx->cfg.mqtt.max_packet_size = 1024;
    fx->cfg.mqtt.max_inflight = 4;
    fx->cfg.mqtt.max_connections = 10;
    fx->cfg.mqtt.connect_timeout_s = 10;
    fx->cfg.mqtt.max_keepalive_s = 600;
    fx->cfg.mqtt.session_expiry_s = 60;
    fx->cfg.mqtt.max_session_bytes = 256u * 1024 * 1024;
    fx->cfg.mqtt.max_client_id_length = 256;
    fx->cfg.mqtt.max_username_length = 256;
    fx->cfg.mqtt.max_will_topic_length = 1024;
    fx->cfg.mqtt.max_will_payload = 4096;
    fx->cfg.mqtt.max_topic_alias_bytes = 4096;
    fx->cfg.mqtt.max_subscriptions_per_session = 100;
    fx->cfg.mqtt.max_subscription_bytes_per_session = 4096;
    fx->cfg.unmapped = UNMAPPED_DISCONNECT;
    fx->cfg.unmapped_topic = "unmapped";
    fx->cfg.headers = true;
    fx->now = 1000;
    fx->ops = &f_ops;
    fx_start(fx);
    *state = fx;
    return 0;
}

/* With the fake auth ops (accepting, no ACL) and connections that can be held. */
static int setup_auth(void **state) {
    setup(state);
    fx_t *fx = *state;
    fx->with_auth = true;
    fx->ops = &f_ops_hold;
    session_mgr_free(fx->m);
    fx_start(fx);
    return 0;
}

static int teardown(void **state) {
    fx_t *fx = *state;
    session_mgr_free(fx->m);
    free(fx);
    return 0;
}

static void fx_restart(fx_t *fx) {
    session_mgr_free(fx->m);
    memset(fx->conns, 0, sizeof(fx->conns));
    fx_start(fx);
}

static fconn_t *open_conn(fx_t *fx, int i) {
    fconn_t *f = &fx->conns[i];
    memset(f, 0, sizeof(*f));
    f->c = session_conn_new(fx->m, fx->ops, f, "127.0.0.1:5000");
    assert_non_null(f->c);
    return f;
}

static void set_time(fx_t *fx, uint64_t ms) {
    fx->now = ms;
    session_mgr_set_now(fx->m, ms, 1700000000000 + (int64_t)ms);
}

/* ---- packet builders --------------------------------------------------------- */

typedef struct {
    uint8_t b[2048];
    size_t n;
} pk_t;

static void put(pk_t *p, const void *d, size_t n) {
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void put_u8(pk_t *p, uint8_t v) {
    p->b[p->n++] = v;
}
static void put_u16(pk_t *p, uint16_t v) {
    put_u8(p, (uint8_t)(v >> 8));
    put_u8(p, (uint8_t)v);
}
static void put_str(pk_t *p, const char *s) {
    put_u16(p, (uint16_t)strlen(s));
    put(p, s, strlen(s));
}

/* Wraps a body with its fixed header. */
static pk_t frame(uint8_t first, const pk_t *body) {
    pk_t p = {.n = 0};
    put_u8(&p, first);
    size_t rl = body->n;
    do {
        uint8_t d = rl % 128;
        rl /= 128;
        put_u8(&p, (uint8_t)(d | (rl ? 0x80 : 0)));
    } while (rl);
    put(&p, body->b, body->n);
    return p;
}

typedef struct {
    const char *id;
    bool clean;
    uint16_t keepalive;
    uint8_t level;
    const char *will_topic; /* NULL: no will */
    const char *will_payload;
    uint8_t will_qos;
    bool will_retain;
    const char *user;
    const char *pass;
    const char *name; /* protocol name; NULL: "MQTT" */
} cn_t;

static pk_t connect_pk(cn_t c) {
    pk_t b = {.n = 0};
    put_str(&b, c.name ? c.name : "MQTT");
    put_u8(&b, c.level ? c.level : 4);
    uint8_t flags = (uint8_t)((c.clean ? 0x02 : 0) | (c.user ? 0x80 : 0) | (c.pass ? 0x40 : 0));
    if (c.will_topic)
        flags |= (uint8_t)(0x04 | (c.will_qos << 3) | (c.will_retain ? 0x20 : 0));
    put_u8(&b, flags);
    put_u16(&b, c.keepalive);
    put_str(&b, c.id);
    if (c.will_topic) {
        put_str(&b, c.will_topic);
        put_str(&b, c.will_payload);
    }
    if (c.user)
        put_str(&b, c.user);
    if (c.pass)
        put_str(&b, c.pass);
    return frame(0x10, &b);
}

static pk_t publish_pk(const char *topic, const char *payload, int qos, uint16_t id, bool retain) {
    pk_t b = {.n = 0};
    put_str(&b, topic);
    if (qos)
        put_u16(&b, id);
    put(&b, payload, strlen(payload));
    return frame((uint8_t)(0x30 | (qos << 1) | (retain ? 1 : 0)), &b);
}

static pk_t id_pk(uint8_t first, uint16_t id) {
    pk_t b = {.n = 0};
    put_u16(&b, id);
    return frame(first, &b);
}

static ssize_t feed(fconn_t *f, pk_t p) {
    return session_feed(f->c, p.b, p.n);
}

static void expect_out(fconn_t *f, const uint8_t *want, size_t n) {
    assert_int_equal(f->out_len, n);
    if (n)
        assert_memory_equal(f->out, want, n);
    f->out_len = 0;
}
#define EXPECT_OUT(f, ...)                                                                         \
    do {                                                                                           \
        static const uint8_t w_[] = {__VA_ARGS__};                                                 \
        expect_out((f), w_, sizeof(w_));                                                           \
    } while (0)
#define EXPECT_NO_OUT(f) expect_out((f), NULL, 0)

static fconn_t *connected(fx_t *fx, int i, cn_t c) {
    fconn_t *f = open_conn(fx, i);
    pk_t p = connect_pk(c);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x02, 0x00, 0x00);
    return f;
}

static void deliver(fx_t *fx, int rec, int err) {
    session_on_delivery(fx->m, fx->prod.recs[rec].opaque, err, err ? "Broker: boom" : NULL);
}

/* ---- log capture ---------------------------------------------------------------- */

static int log_pipe[2] = {-1, -1}, log_saved_fd = -1;

/* Lines go to a pipe until log_capture_end (a test logs far less than it holds). */
static void log_capture_begin(void) {
    assert_int_equal(pipe2(log_pipe, O_NONBLOCK), 0);
    log_saved_fd = log_set_fd(log_pipe[1]);
}

/* Everything logged since log_capture_begin (static buffer, NUL-terminated). */
static const char *log_capture_end(void) {
    static char buf[16384];
    log_set_fd(log_saved_fd);
    close(log_pipe[1]);
    ssize_t n = read(log_pipe[0], buf, sizeof(buf) - 1);
    close(log_pipe[0]);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

#endif
