"""Metrics and health endpoints of the running daemon: exact counters after a
known load (raw clients: messages per QoS, protocol errors, refusals),
/healthz, /readyz with Kafka up and with every mock broker down.

Scrapes use curl, as an operator would. Every wait is bounded."""
import os
import re
import signal
import shutil
import socket
import subprocess

import pytest

import m2k
from m2k import Raw

# curl comes with scripts/install-deps.sh: a missing curl fails, never skips.
CURL = shutil.which("curl") or "curl"


def metrics_overrides(port, **kafka_props):
    o = {"metrics": {"listen": f"127.0.0.1:{port}"}}
    if kafka_props:
        o["kafka"] = {"properties": {"linger.ms": 5, **kafka_props}}
    return o


def http_get(port, path):
    """(status, body) from curl; raises when curl cannot connect."""
    out = subprocess.run(
        [CURL, "-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, f"curl {path}: exit {out.returncode} {out.stderr}"
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


def scrape(port):
    code, body = http_get(port, "/metrics")
    assert code == 200, body
    samples = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def start(daemon, **kafka_props):
    # Port 0: the daemon names the port it bound.
    d = daemon(metrics_overrides(0, **kafka_props))
    # A start-up line: the whole log is the right scope.
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return d, int(m.group(1))


class Counted:
    """A raw connection that counts the bytes it sends."""

    sent = 0

    def __init__(self, port):
        self.raw = Raw(port)

    def send(self, data):
        Counted.sent += len(data)
        self.raw.send(data)


def test_counters_match_the_load(daemon, mock_kafka):
    d, mport = start(daemon)
    Counted.sent = 0

    # A: 5 x QoS 0, 4 x QoS 1, 3 x QoS 2 (with PUBREL), a ping, DISCONNECT.
    a = Counted(d.port)
    a.send(m2k.connect("m-a"))
    a.raw.expect(m2k.CONNACK_OK)
    for i in range(5):
        a.send(m2k.publish("test/q0", f"q0-{i}", qos=0))
    for i in range(4):
        a.send(m2k.publish("test/q1", f"q1-{i}", qos=1, pid=10 + i))
        a.raw.expect(m2k.puback(10 + i))
    for i in range(3):
        a.send(m2k.publish("test/q2", f"q2-{i}", qos=2, pid=20 + i))
        a.raw.expect(b"\x50\x02" + (20 + i).to_bytes(2, "big"))
        a.send(m2k.pubrel(20 + i))
        a.raw.expect(b"\x70\x02" + (20 + i).to_bytes(2, "big"))
    a.send(m2k.PINGREQ)
    a.raw.expect(m2k.PINGRESP)

    # While connected: one connection, nothing refused yet.
    s = scrape(mport)
    assert s["mqtt2kafka_connections"] == 1
    assert s['mqtt2kafka_messages_received_total{qos="1"}'] == 4

    a.send(m2k.DISCONNECT)
    a.raw.expect_close()

    # B: PUBLISH before CONNECT -> protocol error, refused.
    b = Counted(d.port)
    b.send(m2k.publish("test/x", "x"))
    b.raw.expect_close()
    # C: a second CONNECT.
    c = Counted(d.port)
    c.send(m2k.connect("m-c"))
    c.raw.expect(m2k.CONNACK_OK)
    c.send(m2k.connect("m-c"))
    c.raw.expect_close()
    # D: PUBLISH with QoS 3.
    dd = Counted(d.port)
    dd.send(m2k.connect("m-d"))
    dd.raw.expect(m2k.CONNACK_OK)
    dd.send(b"\x36\x05\x00\x01t\x00\x01")
    dd.raw.expect_close()
    # E: protocol level 3 -> CONNACK 0x01.
    e = Counted(d.port)
    e.send(m2k.connect("m-e", level=3))
    e.raw.expect_close(b"\x20\x02\x00\x01")

    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 12)
    assert sorted(r.value for r in recs) == sorted(
        [b"q0-%d" % i for i in range(5)] + [b"q1-%d" % i for i in range(4)]
        + [b"q2-%d" % i for i in range(3)])

    def settled():
        s = scrape(mport)
        return s if (s["mqtt2kafka_connections"] == 0 and
                     s["mqtt2kafka_kafka_records_delivered_total"] == 12) else None
    s = m2k.wait_until(settled, 10, lambda: f"no connections and 12 records delivered in "
                                            f"{scrape(mport)}")

    expect = {
        "mqtt2kafka_connections": 0,
        "mqtt2kafka_connections_total": 5,
        'mqtt2kafka_connections_refused_total{reason="protocol_error"}': 1,
        'mqtt2kafka_connections_refused_total{reason="protocol_version"}': 1,
        'mqtt2kafka_connections_refused_total{reason="max_connections"}': 0,
        'mqtt2kafka_connections_refused_total{reason="identifier_rejected"}': 0,
        'mqtt2kafka_connections_refused_total{reason="connect_timeout"}': 0,
        'mqtt2kafka_packets_received_total{type="connect"}': 4,
        'mqtt2kafka_packets_received_total{type="publish"}': 13,
        'mqtt2kafka_packets_received_total{type="pubrel"}': 3,
        'mqtt2kafka_packets_received_total{type="pingreq"}': 1,
        'mqtt2kafka_packets_received_total{type="disconnect"}': 1,
        'mqtt2kafka_packets_received_total{type="puback"}': 0,
        'mqtt2kafka_packets_sent_total{type="connack"}': 4,
        'mqtt2kafka_packets_sent_total{type="puback"}': 4,
        'mqtt2kafka_packets_sent_total{type="pubrec"}': 3,
        'mqtt2kafka_packets_sent_total{type="pubcomp"}': 3,
        'mqtt2kafka_packets_sent_total{type="pingresp"}': 1,
        'mqtt2kafka_messages_received_total{qos="0"}': 5,
        'mqtt2kafka_messages_received_total{qos="1"}': 4,
        'mqtt2kafka_messages_received_total{qos="2"}': 3,
        'mqtt2kafka_protocol_errors_total{kind="first_packet_not_connect"}': 1,
        'mqtt2kafka_protocol_errors_total{kind="second_connect"}': 1,
        'mqtt2kafka_protocol_errors_total{kind="MQTT_ERR_QOS_INVALID"}': 1,
        "mqtt2kafka_bytes_received_total": Counted.sent,
        "mqtt2kafka_bytes_sent_total": 4 * 4 + 4 * 4 + 3 * 4 + 3 * 4 + 2,
        "mqtt2kafka_ack_latency_seconds_count": 7,
        "mqtt2kafka_kafka_records_produced_total": 12,
        "mqtt2kafka_kafka_records_delivered_total": 12,
        'mqtt2kafka_kafka_topic_records_produced_total{topic="test"}': 12,
        'mqtt2kafka_kafka_topic_records_delivered_total{topic="test"}': 12,
        'mqtt2kafka_kafka_topic_records_failed_total{topic="test"}': 0,
        "mqtt2kafka_inflight_messages": 0,
        "mqtt2kafka_paused_readers": 0,
        'mqtt2kafka_unmapped_total{action="disconnect"}': 0,
        "mqtt2kafka_config_reloads_total": 0,
    }
    got = {k: s.get(k) for k in expect}
    assert got == expect
    assert s['mqtt2kafka_ack_latency_seconds_bucket{le="+Inf"}'] == 7
    assert not [k for k in s if k.startswith("mqtt2kafka_kafka_records_failed_total")
                and s[k] != 0]
    # One Kafka topic was used: one sample per per-topic family, no "(other)".
    assert sorted(k for k in s if k.startswith("mqtt2kafka_kafka_topic_records_")) == sorted(
        k for k in expect if k.startswith("mqtt2kafka_kafka_topic_records_"))
    # Exactly three protocol error kinds were seen.
    kinds = [k for k in s if k.startswith("mqtt2kafka_protocol_errors_total")]
    assert sorted(kinds) == sorted(k for k in expect
                                   if k.startswith("mqtt2kafka_protocol_errors_total"))


def test_healthz_readyz_and_errors(daemon):
    d, mport = start(daemon)
    assert http_get(mport, "/healthz") == (200, "ok\n")
    assert http_get(mport, "/readyz") == (200, "ready\n")
    assert http_get(mport, "/nope")[0] == 404


def test_readyz_503_when_all_brokers_down(daemon, mock_kafka):
    if os.environ.get("M2K_KAFKA") == "real":
        pytest.skip("needs the mock's fault commands (down -1)")
    # Statistics every 500 ms so recovery shows without traffic quickly.
    d, mport = start(daemon, **{"statistics.interval.ms": 500})
    assert http_get(mport, "/readyz") == (200, "ready\n")
    def brokers():
        return {k: v for k, v in scrape(mport).items()
                if k.startswith("mqtt2kafka_kafka_broker_up{")}
    # The first statistics name the three brokers, one at least up
    # (librdkafka connects only to the brokers it needs).
    brokers_up = m2k.wait_until(lambda: (lambda b: b if len(b) == 3 and 1 in b.values()
                                         else None)(brokers()), 10,
                                lambda: f"three brokers, one up, in the metrics: {brokers()}")
    mock_kafka.cmd("down -1")
    got = m2k.wait_until(lambda: (lambda r: r if r[0] == 503 else None)(http_get(mport, "/readyz")),
                         30, lambda: f"/readyz to say 503:\n{d.log()}", interval=0.2)
    # Whichever tells first: librdkafka's _ALL_BROKERS_DOWN error or its
    # statistics without a broker UP (src/kafka/producer.c, src/daemon.c).
    assert got in [(503, f"not ready: Kafka unreachable: {why}\n") for why in
                   ("3/3 brokers are down", "no broker connection is up")], got
    # Liveness is unaffected.
    assert http_get(mport, "/healthz") == (200, "ok\n")
    # A broker is up while one worker's producer has it up (threads: N):
    # the first worker that sees them all down makes /readyz say 503, the
    # others' statistics (every 500 ms) follow.
    m2k.wait_until(lambda: brokers() == {k: 0 for k in brokers_up}, 10,
                   lambda: f"every broker down in the metrics: {brokers()}")
    mock_kafka.cmd("up -1")
    m2k.wait_until(lambda: http_get(mport, "/readyz") == (200, "ready\n"), 40,
                   lambda: f"/readyz to recover:\n{d.log()}", interval=0.2)


def from_addr(src, port):
    """A Raw connection to the metrics port from loopback address `src`."""
    r = Raw.__new__(Raw)
    r.sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    return r


def test_http_connection_cap_and_idle_timeout(daemon):
    """More than 16 idle HTTP connections (4 from each of 4 addresses): the
    17th is closed at once."""
    d, mport = start(daemon)
    conns = [from_addr(f"127.0.0.{2 + i // 4}", mport) for i in range(16)]
    m2k.wait_until(lambda: all(c.nothing_within(0.01) for c in conns), 5,
                   "16 connections accepted and held")
    extra = from_addr("127.0.0.6", mport)
    extra.expect_close()
    for c in conns:
        assert c.nothing_within(0.01)
    for c in conns:
        c.close()
    # Slots are free again once the daemon saw the closes.
    m2k.wait_until(lambda: http_get(mport, "/healthz") == (200, "ok\n"), 5,
                   "/healthz to answer again")


def test_probe_answered_while_one_address_holds_idle_sockets(daemon):
    """Issue 20 finding 8: 16 idle sockets from one address took every slot
    and /healthz failed. Now one address holds at most 4 (the rest closed at
    once), a probe from another is answered, and an idle socket gets 408
    after 2 s."""
    d, mport = start(daemon)
    mark = d.mark()
    conns = [from_addr("127.0.0.2", mport) for _ in range(16)]
    for c in conns[4:]:
        c.expect_close()
    d.wait_log(m2k.line(r"metrics listener: refusing 127\.0\.0\.2:\d+: 4 connections from its "
                        r"address", level="warn", regex=True), since=mark)
    assert all(c.nothing_within(0.01) for c in conns[:4])
    assert http_get(mport, "/healthz") == (200, "ok\n")  # from 127.0.0.1
    head, closed = conns[0].read_until_close(timeout=10)
    assert closed and head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), head


def test_healthz_answers_while_the_start_waits_for_kafka(tmp_path):
    """The metrics listener binds before the start's wait for Kafka metadata
    (up to 10 s): /healthz answers at once, /readyz says why it is not ready,
    a SIGTERM during the wait exits 0; librdkafka's connection errors are
    logged once (its error event, not also its FAIL log line)."""
    dead = m2k.free_port()  # nothing listens there: every connect is refused
    d = m2k.Daemon(tmp_path, f"127.0.0.1:{dead}", metrics_overrides(0), serving=False)
    try:
        m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                r"/healthz, /readyz\)", level="info", regex=True), since=0)
        mport = int(m.group(1))
        assert http_get(mport, "/healthz") == (200, "ok\n")
        readyz = http_get(mport, "/readyz")
        # Still inside the 10 s wait (else the answers below prove nothing).
        assert "no metadata from" not in d.log(), d.log()
        assert readyz == (503, f"not ready: waiting for Kafka metadata from 127.0.0.1:{dead}\n")
        refused = (f"kafka: _TRANSPORT: 127.0.0.1:{dead}/bootstrap: Connect to "
                   f"ipv4#127.0.0.1:{dead} failed: Connection refused (after ")
        d.wait_log(m2k.line(re.escape(refused) + r"\d+ms in state CONNECT\)", level="warn",
                            regex=True), since=0)
        assert [l for l in d.log().splitlines() if "Connection refused" in l] == \
            [l for l in d.log().splitlines() if refused in l], d.log()
        assert "[FAIL]" not in d.log(), d.log()
        # A reload must wait for the start (the listeners are not bound yet).
        mark = d.mark()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(m2k.line("SIGHUP while the start waits for Kafka: ignored (reload once "
                            "started)", level="warn"), since=mark)
        mark = d.mark()
    finally:
        rc = d.stop()
    assert rc == 0, d.log()
    assert re.search(m2k.line("Terminated: stopping intake; waiting up to 10 s for 0 messages "
                              "in flight to Kafka", level="info"), d.log(mark), re.M), d.log(mark)
    assert not re.search(r"listening on 127\.0\.0\.1:\d+$", d.log(), re.M), d.log()


def test_wills_published_and_lost_are_exported(daemon, mock_kafka):
    """A will on a mapped topic is published, one on an unmapped topic (under
    unmapped: disconnect) is lost: both counted in /metrics."""
    d, mport = start(daemon)
    for cid, topic in (("w-mapped", "test/will"), ("w-unmapped", "nowhere/will")):
        raw = Raw(d.port)
        raw.send(m2k.connect(cid, will=(topic, "gone", 0, False)))
        raw.expect(b"\x20\x02\x00\x00")
        mark = d.mark()
        raw.close()  # no DISCONNECT: the will goes out
        if topic == "test/will":
            d.wait_log(m2k.line("closing: connection closed by the client", client=cid), since=mark)
        else:
            d.wait_log(m2k.line("will message not published: no rule matches (unmapped policy)",
                                level="warn", client=cid), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert [r.value for r in recs] == [b"gone"]
    s = m2k.wait_until(lambda: (lambda s: s if s["mqtt2kafka_connections"] == 0 else None)(
        scrape(mport)), 10, "no connections left")
    assert (s["mqtt2kafka_wills_published_total"], s["mqtt2kafka_wills_lost_total"]) == (1, 1)
