/* What the MQTT 5 session tests share: CONNECT and PUBLISH in their level 5
 * form, the CONNACK every accepted CONNECT gets with the fixture, and the
 * reason code packets with their reason strings. */
#ifndef M2K_TEST_SESSION5_FIXTURE_H
#define M2K_TEST_SESSION5_FIXTURE_H

#include "session_fixture.h"

typedef struct {
    const char *id;
    bool clean;
    uint16_t keepalive;
    const char *props; /* property bytes (without their length) */
    size_t props_len;
    const char *will_topic; /* NULL: no will */
    const char *will_payload;
} cn5_t;

static void put_vbi(pk_t *p, size_t v) {
    do {
        uint8_t d = v % 128;
        v /= 128;
        put_u8(p, (uint8_t)(d | (v ? 0x80 : 0)));
    } while (v);
}

static pk_t connect5(cn5_t c) {
    pk_t b = {.n = 0};
    put_str(&b, "MQTT");
    put_u8(&b, 5);
    put_u8(&b, (uint8_t)((c.clean ? 0x02 : 0) | (c.will_topic ? 0x04 : 0)));
    put_u16(&b, c.keepalive);
    put_vbi(&b, c.props_len);
    if (c.props_len)
        put(&b, c.props, c.props_len);
    put_str(&b, c.id);
    if (c.will_topic) {
        put_u8(&b, 0); /* no will properties */
        put_str(&b, c.will_topic);
        put_str(&b, c.will_payload);
    }
    return frame(0x10, &b);
}

static pk_t publish5(const char *topic, int qos, uint16_t id, const char *props, size_t props_len,
                     const char *payload) {
    pk_t b = {.n = 0};
    put_str(&b, topic);
    if (qos)
        put_u16(&b, id);
    put_vbi(&b, props_len);
    if (props_len)
        put(&b, props, props_len);
    put(&b, payload, strlen(payload));
    return frame((uint8_t)(0x30 | qos << 1), &b);
}

#define P(lit) lit, sizeof(lit) - 1
#define PROPS(lit) .props = lit, .props_len = sizeof(lit) - 1

/* The CONNACK properties every accepted CONNECT gets with this fixture, in
 * identifier order: receive maximum 4 (max_inflight), retain available 1,
 * maximum packet size 1024, wildcard subscriptions, subscription identifiers
 * and shared subscriptions available 1. */
#define CONNACK_PROPS                                                                              \
    0x21, 0x00, 0x04, 0x25, 0x01, 0x27, 0x00, 0x00, 0x04, 0x00, 0x28, 0x01, 0x29, 0x01, 0x2a, 0x01

/* max_keepalive_s 65535: a keep alive of 0 stays 0 (below it, 0 gets
 * max_keepalive_s and CONNACK's server keep alive says so). */
static int setup5(void **state) {
    setup(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

static int setup5_auth(void **state) {
    setup_auth(state);
    ((fx_t *)*state)->cfg.mqtt.max_keepalive_s = 65535;
    return 0;
}

static fconn_t *connected5(fx_t *fx, int i, cn5_t c) {
    fconn_t *f = open_conn(fx, i);
    pk_t p = connect5(c);
    assert_int_equal(feed(f, p), (ssize_t)p.n);
    EXPECT_OUT(f, 0x20, 0x13, 0x00, 0x00, 0x10, CONNACK_PROPS);
    return f;
}

static const char *closed(fconn_t *f, pk_t p) {
    log_capture_begin();
    ssize_t r = feed(f, p);
    const char *log = log_capture_end();
    assert_int_equal(r, -1);
    assert_int_equal(f->closes, 1);
    return log;
}

/* Appends the v5 packet `first` (CONNACK 0x20, PUBACK 0x40, PUBREC 0x50,
 * DISCONNECT 0xe0; pid < 0: none) with reason code rc and the reason string
 * (property 0x1F) why, NULL for none. */
static void reason5(pk_t *out, uint8_t first, int pid, uint8_t rc, const char *why) {
    pk_t b = {.n = 0};
    if (first == 0x20)
        put_u8(&b, 0); /* session present 0 */
    if (pid >= 0)
        put_u16(&b, (uint16_t)pid);
    put_u8(&b, rc);
    size_t n = why ? strlen(why) : 0;
    if (why || first == 0x20) /* else the shortest form: no property length */
        put_vbi(&b, why ? n + 3 : 0);
    if (why) {
        put_u8(&b, 0x1f);
        put_str(&b, why);
    }
    pk_t p = frame(first, &b);
    put(out, p.b, p.n);
}

static void expect_pk(fconn_t *f, const pk_t *want) {
    if (f->out_len != want->n || memcmp(f->out, want->b, want->n) != 0) {
        char got[4096] = "";
        for (size_t i = 0, o = 0; i < f->out_len && o + 5 < sizeof(got); i++)
            o += (size_t)snprintf(got + o, sizeof(got) - o,
                                  f->out[i] >= 0x20 && f->out[i] < 0x7f ? "%c" : "\\x%02x",
                                  f->out[i]);
        fail_msg("got %zu bytes: %s", f->out_len, got);
    }
    f->out_len = 0;
}

/* One packet from reason5 expected. */
static void expect_reason(fconn_t *f, uint8_t first, int pid, uint8_t rc, const char *why) {
    pk_t w = {.n = 0};
    reason5(&w, first, pid, rc, why);
    expect_pk(f, &w);
}

static void assert_logged(const char *log, const char *line) {
    if (!strstr(log, line))
        fail_msg("no line \"%s\" in:\n%s", line, log);
}

#endif
