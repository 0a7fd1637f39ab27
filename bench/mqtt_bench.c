/* mqtt-bench: MQTT 3.1.1 load generator. Command line, text and JSON reports,
 * and --smoke (a self-contained run against an in-process fake broker).
 * The engine is in mqtt_bench_run.c; docs/mqtt-bench.md documents every
 * option and JSON field. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_bench.h"

#define JSON_VERSION 1

static void usage(FILE *f) {
    fputs("usage: mqtt-bench [options]\n"
          "  -H, --host HOST             broker address (127.0.0.1)\n"
          "  -p, --port PORT             broker port (1883)\n"
          "  -c, --connections N         connections (1)\n"
          "  -q, --qos 0|1|2             PUBLISH QoS (1)\n"
          "  -s, --payload BYTES         payload size (100)\n"
          "  -w, --window N              unacknowledged QoS 1/2 PUBLISHes per connection (16)\n"
          "  -r, --rate MSGS             total PUBLISH/s over all connections (0 = max)\n"
          "  -d, --duration SECONDS      publishing time (10; 0 = until --count or Ctrl-C)\n"
          "  -n, --count N               PUBLISHes per connection (0 = unlimited)\n"
          "  -t, --topic PATTERN         topic, %d = connection number (bench/%d)\n"
          "  -i, --client-id PATTERN     client id, %d = connection number (mqtt-bench-%d)\n"
          "  -u, --username USER         CONNECT user name\n"
          "  -P, --password PASS         CONNECT password\n"
          "      --clean-session 0|1     clean session flag (1)\n"
          "      --retain                set RETAIN on every PUBLISH\n"
          "  -k, --keepalive SECONDS     CONNECT keepalive; PINGREQ after half of it idle (60)\n"
          "      --first-id N            number of the first connection for %d (0)\n"
          "      --idle SECONDS          idle mode: connect, hold with PINGREQs only, leave\n"
          "      --simulate sensors      sensor mode: temperature and brightness JSON\n"
          "      --interval-ms MS        sensor mode: reading interval per metric (1000)\n"
          "      --no-final-ping         QoS 0: do not end with a PINGREQ round trip\n"
          "      --qos0-blast            QoS 0: no flow control (no PINGREQ per batch)\n"
          "      --connect-concurrency N handshakes in progress at once (100)\n"
          "      --connect-timeout S     connect() to CONNACK limit (10)\n"
          "      --drain-timeout S       wait for outstanding acks after sending stops (5)\n"
          "      --conns-per-source N    loopback: connections per 127.0.0.x source (25000)\n"
          "      --server-pid PID        report the server's VmRSS before and after\n"
          "      --websocket PATH        MQTT over WebSocket (ws://HOST:PORT/PATH, subprotocol "
          "mqtt)\n"
          "      --progress              a status line per second on stderr\n"
          "      --json                  one JSON object on stdout instead of text\n"
          "      --smoke, --self-test    ~1 s self-check against an in-process fake broker\n"
          "  -h, --help                  this text\n",
          f);
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "mqtt-bench: --%s: expected a number from %g to %g, got \"%s\"\n", name, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static const char *mode_name(bench_mode_t m) {
    return m == BENCH_MODE_IDLE ? "idle" : m == BENCH_MODE_SENSORS ? "sensors" : "publish";
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static double rate_of(double n, double secs) {
    return secs > 0 ? n / secs : 0;
}

static double msgs_per_s(const bench_opts_t *o, const bench_result_t *r) {
    return rate_of((double)(o->qos ? r->acked : r->sent), r->publish_seconds);
}

static double us(uint64_t ns) {
    return (double)ns / 1000.0;
}

static void report_json(FILE *f, const bench_opts_t *o, const bench_result_t *r) {
    const hist_t *h = &r->latency;
    fprintf(f, "{\"tool\":\"mqtt-bench\",\"version\":%d,\"mode\":\"%s\",", JSON_VERSION,
            mode_name(o->mode));
    fputs("\"options\":{\"host\":", f);
    json_string(f, o->host);
    fprintf(f,
            ",\"port\":%u,\"connections\":%u,\"qos\":%d,\"payload_bytes\":%zu,\"window\":%u,"
            "\"rate\":%g,\"duration_s\":%g,\"count\":%llu,\"topic\":",
            o->port, o->connections, o->qos, o->payload, o->window, o->rate, o->duration,
            (unsigned long long)o->count);
    json_string(f, o->topic);
    fprintf(f,
            ",\"keepalive\":%u,\"clean_session\":%s,\"qos0_blast\":%s,\"idle_s\":%g,"
            "\"interval_ms\":%u},",
            o->keepalive, o->clean_session ? "true" : "false", o->qos0_blast ? "true" : "false",
            o->idle, o->interval_ms);
    fprintf(f,
            "\"connect\":{\"attempted\":%llu,\"connected\":%llu,\"seconds\":%.6f,"
            "\"per_s\":%.1f},",
            (unsigned long long)r->attempted, (unsigned long long)r->connected, r->connect_seconds,
            rate_of((double)r->connected, r->connect_seconds));
    fprintf(f,
            "\"publish\":{\"seconds\":%.6f,\"sent\":%llu,\"acked\":%llu,\"unacked\":%llu,"
            "\"msgs_per_s\":%.1f,\"bytes_sent\":%llu,\"final_ping\":%s},",
            r->publish_seconds, (unsigned long long)r->sent, (unsigned long long)r->acked,
            (unsigned long long)r->unacked, msgs_per_s(o, r), (unsigned long long)r->bytes_sent,
            o->mode != BENCH_MODE_IDLE && o->qos == 0 && o->final_ping
                ? (r->final_ping_done ? "true" : "false")
                : "null");
    if (h->total)
        fprintf(f,
                "\"latency_us\":{\"count\":%llu,\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,"
                "\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},",
                (unsigned long long)h->total, us(h->min), h->sum / (double)h->total / 1000.0,
                us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)), us(hist_quantile(h, 0.99)),
                us(hist_quantile(h, 0.999)), us(h->max));
    else
        fputs("\"latency_us\":null,", f);
    fprintf(f,
            "\"errors\":{\"total\":%llu,\"connect_refused\":%llu,\"connect_failed\":%llu,"
            "\"connect_timeout\":%llu,\"connack_rejected\":%llu,\"closed_by_server\":%llu,"
            "\"protocol\":%llu},",
            (unsigned long long)bench_errors_total(r), (unsigned long long)r->err_connect_refused,
            (unsigned long long)r->err_connect_failed, (unsigned long long)r->err_connect_timeout,
            (unsigned long long)r->err_connack_rejected,
            (unsigned long long)r->err_closed_by_server, (unsigned long long)r->err_protocol);
    fprintf(f, "\"pings\":{\"sent\":%llu,\"answered\":%llu},", (unsigned long long)r->pings_sent,
            (unsigned long long)r->pongs);
    double cpu = r->cpu_user + r->cpu_sys;
    fprintf(f,
            "\"cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f,\"wall_s\":%.3f,\"percent\":%.1f,"
            "\"publish_percent\":%.1f},",
            r->cpu_user, r->cpu_sys, r->wall_seconds, 100.0 * rate_of(cpu, r->wall_seconds),
            100.0 * rate_of(r->publish_cpu, r->publish_seconds));
    if (o->server_pid > 0) {
        long delta = r->server_rss_kb_before >= 0 && r->server_rss_kb_after >= 0
                         ? r->server_rss_kb_after - r->server_rss_kb_before
                         : 0;
        fprintf(f,
                "\"server\":{\"pid\":%ld,\"rss_kb_before\":%ld,\"rss_kb_after\":%ld,"
                "\"rss_bytes_per_connection\":%.0f},",
                (long)o->server_pid, r->server_rss_kb_before, r->server_rss_kb_after,
                rate_of((double)delta * 1024.0, (double)r->connected));
    } else {
        fputs("\"server\":null,", f);
    }
    fprintf(f, "\"interrupted\":%s}\n", r->interrupted ? "true" : "false");
}

static void report_text(FILE *f, const bench_opts_t *o, const bench_result_t *r) {
    const hist_t *h = &r->latency;
    fprintf(f, "mode %s, %u connections to %s:%u", mode_name(o->mode), o->connections, o->host,
            o->port);
    if (o->mode == BENCH_MODE_SENSORS)
        fprintf(f, ", QoS %d, JSON readings every %u ms, window %u", o->qos, o->interval_ms,
                o->window);
    else if (o->mode == BENCH_MODE_PUBLISH)
        fprintf(f, ", QoS %d, %zu-byte payload, window %u", o->qos, o->payload, o->window);
    fputc('\n', f);
    fprintf(f, "connect:   %llu/%llu connected in %.3f s (%.0f/s)\n",
            (unsigned long long)r->connected, (unsigned long long)r->attempted, r->connect_seconds,
            rate_of((double)r->connected, r->connect_seconds));
    if (o->mode != BENCH_MODE_IDLE) {
        fprintf(f, "publish:   %llu sent, %llu acked, %llu unacked in %.3f s\n",
                (unsigned long long)r->sent, (unsigned long long)r->acked,
                (unsigned long long)r->unacked, r->publish_seconds);
        fprintf(f, "rate:      %.0f msgs/s%s, %.1f MB/s written\n", msgs_per_s(o, r),
                o->qos ? " acked" : " sent",
                rate_of((double)r->bytes_sent, r->publish_seconds) / 1e6);
        if (o->qos == 0 && o->final_ping)
            fprintf(f, "final ping: %s\n",
                    r->final_ping_done ? "all answered (the server has read every PUBLISH)"
                                       : "NOT all answered: the rate is only what was written");
    }
    if (h->total)
        fprintf(f,
                "latency:   p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us "
                "(mean %.0f us, %llu samples)\n",
                us(hist_quantile(h, 0.5)), us(hist_quantile(h, 0.9)), us(hist_quantile(h, 0.99)),
                us(hist_quantile(h, 0.999)), us(h->max), h->sum / (double)h->total / 1000.0,
                (unsigned long long)h->total);
    fprintf(f,
            "errors:    %llu (refused %llu, connect failed %llu, connect timeout %llu, "
            "CONNACK rejected %llu, closed by server %llu, protocol %llu)\n",
            (unsigned long long)bench_errors_total(r), (unsigned long long)r->err_connect_refused,
            (unsigned long long)r->err_connect_failed, (unsigned long long)r->err_connect_timeout,
            (unsigned long long)r->err_connack_rejected,
            (unsigned long long)r->err_closed_by_server, (unsigned long long)r->err_protocol);
    fprintf(f, "pings:     %llu PINGREQ sent, %llu PINGRESP\n", (unsigned long long)r->pings_sent,
            (unsigned long long)r->pongs);
    fprintf(f, "own cpu:   user %.2f s, sys %.2f s (%.0f%% of one core over %.2f s", r->cpu_user,
            r->cpu_sys, 100.0 * rate_of(r->cpu_user + r->cpu_sys, r->wall_seconds),
            r->wall_seconds);
    if (o->mode != BENCH_MODE_IDLE)
        fprintf(f, "; %.0f%% while publishing",
                100.0 * rate_of(r->publish_cpu, r->publish_seconds));
    fputs(")\n", f);
    if (o->server_pid > 0 && r->server_rss_kb_before >= 0 && r->server_rss_kb_after >= 0)
        fprintf(f, "server:    pid %ld VmRSS %ld kB -> %ld kB (%.0f bytes per connection)\n",
                (long)o->server_pid, r->server_rss_kb_before, r->server_rss_kb_after,
                rate_of((double)(r->server_rss_kb_after - r->server_rss_kb_before) * 1024.0,
                        (double)r->connected));
    if (r->interrupted)
        fputs("interrupted\n", f);
}

/* One smoke case: run against the fake broker and check the counts. */
static int smoke_case(const char *name, bench_opts_t *o, uint64_t want_sent) {
    static bench_result_t r;
    fake_broker_t *fb;
    fake_stats_t st;
    char err[256];
    uint16_t p;
    if (fake_broker_start(&fb, &p) < 0) {
        fprintf(stderr, "smoke %s: cannot start the fake broker\n", name);
        return -1;
    }
    o->port = p;
    int rc = bench_run(o, &r, err, sizeof(err));
    fake_broker_stop(fb, &st);
    if (rc < 0) {
        fprintf(stderr, "smoke %s: %s\n", name, err);
        return -1;
    }
    uint64_t received = st.publishes[0] + st.publishes[1] + st.publishes[2];
    const char *why = NULL;
    if (bench_errors_total(&r))
        why = "errors";
    else if (r.connected != o->connections || st.connects != o->connections)
        why = "not every connection was accepted";
    else if (o->mode != BENCH_MODE_IDLE && r.sent == 0)
        why = "nothing was sent";
    else if (want_sent && r.sent != want_sent)
        why = "sent differs from connections x count";
    else if (received != r.sent || st.publishes[o->qos] != r.sent)
        why = "the broker did not receive every PUBLISH";
    else if (o->qos > 0 && (r.acked != r.sent || r.unacked != 0 || r.latency.total != r.acked))
        why = "acked differs from sent";
    else if (o->qos == 2 && st.pubrels != r.sent)
        why = "a PUBREL is missing";
    else if (o->mode != BENCH_MODE_IDLE && o->qos == 0 && !r.final_ping_done)
        why = "the final PINGREQ round trip did not complete";
    else if (r.pongs != r.pings_sent || st.pingreqs != r.pings_sent)
        why = "PINGREQ/PINGRESP counts differ";
    else if (st.disconnects != o->connections)
        why = "not every connection sent DISCONNECT";
    fprintf(stderr, "smoke %-14s %s: sent %llu acked %llu received %llu pings %llu errors %llu\n",
            name, why ? "FAIL" : "ok", (unsigned long long)r.sent, (unsigned long long)r.acked,
            (unsigned long long)received, (unsigned long long)r.pings_sent,
            (unsigned long long)bench_errors_total(&r));
    if (why) {
        fprintf(stderr, "smoke %s: %s\n", name, why);
        report_text(stderr, o, &r);
        return -1;
    }
    return 0;
}

static int run_smoke(void) {
    char buf[64];
    if (bench_format_pattern(buf, sizeof(buf), "a/%d/%%d/%s", 42) != 10 ||
        strcmp(buf, "a/42/%d/%s") != 0 || bench_format_pattern(buf, 4, "abcd", 0) != -1) {
        fprintf(stderr, "smoke: bench_format_pattern is wrong\n");
        return 1;
    }
    hist_t *h = malloc(sizeof(*h));
    if (!h)
        return 1;
    hist_init(h);
    for (uint64_t v = 1; v <= 1000; v++)
        hist_record(h, v * 1000);
    uint64_t p50 = hist_quantile(h, 0.5), p999 = hist_quantile(h, 0.999);
    int hist_ok = p50 >= 500000 && p50 <= 508000 && p999 >= 999000 && p999 <= 1000000 &&
                  hist_quantile(h, 1.0) == 1000000;
    free(h);
    if (!hist_ok) {
        fprintf(stderr, "smoke: histogram quantiles are wrong (p50 %llu, p99.9 %llu)\n",
                (unsigned long long)p50, (unsigned long long)p999);
        return 1;
    }

    bench_opts_t o;
    int fails = 0;
    for (int qos = 0; qos <= 2; qos++) {
        char name[32];
        bench_opts_default(&o);
        o.connections = 4;
        o.qos = qos;
        o.duration = 0.2;
        snprintf(name, sizeof(name), "qos%d-duration", qos);
        fails += smoke_case(name, &o, 0) < 0;
        bench_opts_default(&o);
        o.connections = 3;
        o.qos = qos;
        o.duration = 0;
        o.count = 500;
        o.window = 7;
        o.payload = 1000;
        snprintf(name, sizeof(name), "qos%d-count", qos);
        fails += smoke_case(name, &o, 1500) < 0;
    }
    bench_opts_default(&o);
    o.connections = 4;
    o.qos = 0;
    o.qos0_blast = true;
    o.duration = 0.1;
    fails += smoke_case("qos0-blast", &o, 0) < 0;
    bench_opts_default(&o);
    o.connections = 4;
    o.rate = 2000;
    o.duration = 0.15;
    fails += smoke_case("rate", &o, 0) < 0;
    bench_opts_default(&o);
    o.mode = BENCH_MODE_SENSORS;
    o.topic = "sensors/%d";
    o.connections = 5;
    o.interval_ms = 20;
    o.duration = 0.1;
    fails += smoke_case("sensors", &o, 0) < 0;
    bench_opts_default(&o);
    o.mode = BENCH_MODE_IDLE;
    o.connections = 20;
    o.keepalive = 1; /* a PINGREQ after 0.5 s of silence */
    o.idle = 0.7;
    fails += smoke_case("idle", &o, 0) < 0;
    return fails ? 1 : 0;
}

int main(int argc, char **argv) {
    enum {
        OPT_CLEAN = 256,
        OPT_RETAIN,
        OPT_FIRST_ID,
        OPT_IDLE,
        OPT_SIMULATE,
        OPT_INTERVAL,
        OPT_NO_FINAL_PING,
        OPT_BLAST,
        OPT_CONC,
        OPT_CTIMEOUT,
        OPT_DTIMEOUT,
        OPT_PER_SOURCE,
        OPT_SERVER_PID,
        OPT_PROGRESS,
        OPT_JSON,
        OPT_SMOKE,
        OPT_WS,
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'},
        {"qos", required_argument, NULL, 'q'},
        {"payload", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"topic", required_argument, NULL, 't'},
        {"client-id", required_argument, NULL, 'i'},
        {"username", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'P'},
        {"keepalive", required_argument, NULL, 'k'},
        {"clean-session", required_argument, NULL, OPT_CLEAN},
        {"retain", no_argument, NULL, OPT_RETAIN},
        {"first-id", required_argument, NULL, OPT_FIRST_ID},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"simulate", required_argument, NULL, OPT_SIMULATE},
        {"interval-ms", required_argument, NULL, OPT_INTERVAL},
        {"no-final-ping", no_argument, NULL, OPT_NO_FINAL_PING},
        {"qos0-blast", no_argument, NULL, OPT_BLAST},
        {"connect-concurrency", required_argument, NULL, OPT_CONC},
        {"connect-timeout", required_argument, NULL, OPT_CTIMEOUT},
        {"drain-timeout", required_argument, NULL, OPT_DTIMEOUT},
        {"conns-per-source", required_argument, NULL, OPT_PER_SOURCE},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"json", no_argument, NULL, OPT_JSON},
        {"smoke", no_argument, NULL, OPT_SMOKE},
        {"self-test", no_argument, NULL, OPT_SMOKE},
        {"websocket", required_argument, NULL, OPT_WS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bench_opts_t o;
    bench_opts_default(&o);
    bool json = false, duration_set = false;
    int opt;
    double v;
    while ((opt = getopt_long(argc, argv, "H:p:c:q:s:w:r:d:n:t:i:u:P:k:h", longopts, NULL)) != -1) {
        const char *name = NULL;
        for (const struct option *lo = longopts; lo->name; lo++)
            if (lo->val == opt)
                name = lo->name;
        switch (opt) {
        case 'H':
            o.host = optarg;
            continue;
        case 't':
            o.topic = optarg;
            continue;
        case 'i':
            o.client_id = optarg;
            continue;
        case 'u':
            o.username = optarg;
            continue;
        case 'P':
            o.password = optarg;
            continue;
        case OPT_RETAIN:
            o.retain = true;
            continue;
        case OPT_NO_FINAL_PING:
            o.final_ping = false;
            continue;
        case OPT_BLAST:
            o.qos0_blast = true;
            continue;
        case OPT_PROGRESS:
            o.progress = true;
            continue;
        case OPT_WS:
            o.ws_path = optarg;
            continue;
        case OPT_JSON:
            json = true;
            continue;
        case OPT_SMOKE:
            return run_smoke();
        case 'h':
            usage(stdout);
            return 0;
        case OPT_SIMULATE:
            if (strcmp(optarg, "sensors") != 0) {
                fprintf(stderr, "mqtt-bench: --simulate: only \"sensors\" is known\n");
                return 2;
            }
            o.mode = BENCH_MODE_SENSORS;
            continue;
        case '?':
            usage(stderr);
            return 2;
        default:
            break;
        }
        static const struct {
            int opt;
            double lo, hi;
        } ranges[] = {
            {'p', 1, 65535},        {'c', 1, 10000000},       {'q', 0, 2},
            {'s', 0, 16 << 20},     {'w', 1, 65535},          {'r', 0, 1e9},
            {'d', 0, 1e7},          {'n', 0, 1e15},           {'k', 0, 65535},
            {OPT_CLEAN, 0, 1},      {OPT_FIRST_ID, 0, 4e9},   {OPT_IDLE, 0, 1e7},
            {OPT_INTERVAL, 1, 1e7}, {OPT_CONC, 1, 1e7},       {OPT_CTIMEOUT, 0.001, 1e5},
            {OPT_DTIMEOUT, 0, 1e5}, {OPT_PER_SOURCE, 0, 1e7}, {OPT_SERVER_PID, 1, 4194304},
        };
        double lo = 0, hi = 0;
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
            if (ranges[i].opt == opt) {
                lo = ranges[i].lo;
                hi = ranges[i].hi;
            }
        if (parse_num(name, optarg, lo, hi, &v) < 0)
            return 2;
        switch (opt) {
        case 'p':
            o.port = (uint16_t)v;
            break;
        case 'c':
            o.connections = (uint32_t)v;
            break;
        case 'q':
            o.qos = (int)v;
            break;
        case 's':
            o.payload = (size_t)v;
            break;
        case 'w':
            o.window = (uint32_t)v;
            break;
        case 'r':
            o.rate = v;
            break;
        case 'd':
            o.duration = v;
            duration_set = true;
            break;
        case 'n':
            o.count = (uint64_t)v;
            break;
        case 'k':
            o.keepalive = (uint16_t)v;
            break;
        case OPT_CLEAN:
            o.clean_session = v != 0;
            break;
        case OPT_FIRST_ID:
            o.first_id = (uint32_t)v;
            break;
        case OPT_IDLE:
            o.mode = BENCH_MODE_IDLE;
            o.idle = v;
            break;
        case OPT_INTERVAL:
            o.interval_ms = (uint32_t)v;
            break;
        case OPT_CONC:
            o.connect_concurrency = (uint32_t)v;
            break;
        case OPT_CTIMEOUT:
            o.connect_timeout = v;
            break;
        case OPT_DTIMEOUT:
            o.drain_timeout = v;
            break;
        case OPT_PER_SOURCE:
            o.conns_per_source = (uint32_t)v;
            break;
        case OPT_SERVER_PID:
            o.server_pid = (pid_t)v;
            break;
        default:
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mqtt-bench: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    /* --count alone means "until the count", not "the count or 10 s". */
    if (o.count && !duration_set)
        o.duration = 0;
    /* A soak or demo run of the sensor simulation goes on until Ctrl-C. */
    if (o.mode == BENCH_MODE_SENSORS && !duration_set)
        o.duration = 0;
    if (o.mode == BENCH_MODE_SENSORS && strcmp(o.topic, "bench/%d") == 0)
        o.topic = "sensors/%d";
    if (o.mode == BENCH_MODE_SENSORS && !o.count && o.duration == 0)
        fprintf(stderr, "mqtt-bench: simulating %u sensors until Ctrl-C\n", o.connections);

    static bench_result_t r;
    char err[512];
    if (bench_run(&o, &r, err, sizeof(err)) < 0) {
        fprintf(stderr, "mqtt-bench: %s\n", err);
        return 1;
    }
    if (json)
        report_json(stdout, &o, &r);
    else
        report_text(stdout, &o, &r);
    return bench_errors_total(&r) || r.unacked ? 1 : 0;
}
