/* Codec benchmark: decodes a stream of PUBLISH packets (100-byte payloads,
 * topics like sensors/<n>/temperature, half QoS 0 and half QoS 1), topic
 * UTF-8 and wildcard checks included, and prints the median of several runs;
 * then the same stream as MQTT 5 PUBLISHes with two user properties each,
 * decoded by mqtt5_decode with the properties walked (as headers are made).
 *
 *   codec_bench            7 runs of ~0.3 s each
 *   codec_bench --smoke    one tiny run (ctest)
 *   codec_bench --runs N --seconds S */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqtt/codec.h"
#include "mqtt/codec5.h"

#define NPACKETS 4096
#define PAYLOAD_LEN 100

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const mqtt_str_t user_props[] = {{(const uint8_t *)"site", 4},
                                        {(const uint8_t *)"berlin-7", 8},
                                        {(const uint8_t *)"unit", 4},
                                        {(const uint8_t *)"celsius", 7}};

/* Builds the packet stream (v5: with two user properties); returns its length. */
static size_t build_stream(uint8_t *buf, size_t cap, bool v5) {
    static const char *const metrics[] = {"temperature", "humidity", "pressure", "co2"};
    uint8_t payload[PAYLOAD_LEN];
    memset(payload, 'x', sizeof(payload));
    size_t off = 0;
    for (int i = 0; i < NPACKETS; i++) {
        char topic[64];
        int n = snprintf(topic, sizeof(topic), "sensors/%d/%s", (i * 7919) % 10000, metrics[i % 4]);
        mqtt_publish_t p = {.qos = (uint8_t)(i % 2), .packet_id = (uint16_t)(i % 2 ? i + 1 : 0)};
        p.topic.ptr = (const uint8_t *)topic;
        p.topic.len = (size_t)n;
        p.payload.ptr = payload;
        p.payload.len = sizeof(payload);
        mqtt5_props_t props = {.user = user_props, .n_user = 2};
        size_t sz = v5 ? mqtt5_encode_publish(buf + off, cap - off, &p, &props)
                       : mqtt_encode_publish(buf + off, cap - off, &p);
        if (sz == 0 || sz > cap - off)
            return 0;
        off += sz;
    }
    return off;
}

/* Decodes the whole stream once; returns the number of packets or -1. */
static long decode_stream(const uint8_t *buf, size_t len, uint64_t *sink) {
    size_t off = 0;
    long n = 0;
    while (off < len) {
        mqtt_packet_t pkt;
        ssize_t rc = mqtt_decode(buf + off, len - off, 1 << 20, &pkt);
        if (rc <= 0 || pkt.type != MQTT_PUBLISH)
            return -1;
        *sink += pkt.u.publish.topic.len + pkt.u.publish.payload.len + pkt.u.publish.packet_id;
        off += (size_t)rc;
        n++;
    }
    return n;
}

/* The v5 stream: decoded, and the user properties walked. */
static long decode_stream5(const uint8_t *buf, size_t len, uint64_t *sink) {
    size_t off = 0;
    long n = 0;
    while (off < len) {
        mqtt5_packet_t pkt;
        ssize_t rc = mqtt5_decode(buf + off, len - off, 1 << 20, &pkt);
        if (rc <= 0 || pkt.type != MQTT_PUBLISH)
            return -1;
        size_t po = 0;
        mqtt5_prop_t pr;
        while (mqtt5_prop_next(&pkt.props, &po, &pr))
            *sink += pr.str.len + pr.value.len;
        *sink += pkt.u.publish.topic.len + pkt.u.publish.payload.len + pkt.u.publish.packet_id;
        off += (size_t)rc;
        n++;
    }
    return n;
}

/* Median, min and max ns per packet over `runs` runs of at least `seconds`. */
static int measure(const uint8_t *buf, size_t len, bool v5, int runs, double seconds, double out[3],
                   uint64_t *sink) {
    double ns[101];
    for (int r = 0; r < runs; r++) {
        long packets = 0;
        double t0 = now_sec(), t;
        do {
            long n = v5 ? decode_stream5(buf, len, sink) : decode_stream(buf, len, sink);
            if (n != NPACKETS)
                return -1;
            packets += n;
            t = now_sec() - t0;
        } while (t < seconds);
        ns[r] = t * 1e9 / (double)packets;
    }
    qsort(ns, (size_t)runs, sizeof(ns[0]), cmp_double);
    out[0] = ns[runs / 2];
    out[1] = ns[0];
    out[2] = ns[runs - 1];
    return 0;
}

int main(int argc, char **argv) {
    int runs = 7;
    double seconds = 0.3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            runs = 1;
            seconds = 0.0; /* a single pass over the stream */
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--smoke] [--runs N] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 101) {
        fprintf(stderr, "codec_bench: --runs must be 1..101\n");
        return 2;
    }
    size_t cap = (size_t)NPACKETS * (PAYLOAD_LEN + 128);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return 1;
    int rc = 0;
    for (int v5 = 0; v5 < 2 && rc == 0; v5++) {
        size_t len = build_stream(buf, cap, v5);
        double r[3];
        uint64_t sink = 0;
        if (len == 0 || measure(buf, len, v5, runs, seconds, r, &sink) != 0) {
            fprintf(stderr, "codec_bench: could not build or decode the stream\n");
            rc = 1;
            break;
        }
        printf("codec_bench: %sPUBLISH decode, %d-byte payload, %zu-byte stream of %d packets\n",
               v5 ? "MQTT 5 (two user properties) " : "", PAYLOAD_LEN, len, NPACKETS);
        printf("codec_bench: median %.1f ns/packet, %.2f M packets/s (%d runs, min %.1f, max "
               "%.1f ns/packet) [sink %llu]\n",
               r[0], 1e3 / r[0], runs, r[1], r[2], (unsigned long long)(sink & 0xff));
    }
    free(buf);
    return rc;
}
