"""Kafka faults and lifecycle: acks wait for Kafka, failures close the
connection, backpressure loses nothing, shutdown flushes what was acked."""
import signal
import threading
import time

import m2k
from m2k import Raw, publish, puback


def warm(d, mock_kafka, topic="test/warm"):
    """One acked record, so metadata and broker connections are up before a
    fault is injected."""
    cl = Raw(d.port).connect("warm")
    cl.send(publish(topic, "warm", qos=1, pid=1))
    cl.expect(puback(1), timeout=15)
    cl.send(m2k.DISCONNECT)
    cl.close()


def read_until_close(cl, timeout):
    """Every byte the daemon sends until it closes (bounded)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cl.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = cl.sock.recv(4096)
        except TimeoutError:
            break
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def test_puback_waits_for_broker_rtt(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("rtt -1 300")
    cl = Raw(d.port).connect("rtt")
    t0 = time.monotonic()
    cl.send(publish("test/rtt", "slow", qos=1, pid=5))
    cl.expect(puback(5), timeout=15)
    # Causality: the broker cannot answer sooner than its RTT.
    assert time.monotonic() - t0 >= 0.3


def test_no_ack_while_brokers_down_then_ack_once(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("down", keepalive=0)
    cl.send(publish("test/down", "waited", qos=1, pid=3))
    assert cl.nothing_within(3.0), "acknowledged while Kafka was down"
    mock_kafka.cmd("up -1")
    cl.expect(puback(3), timeout=30)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"waited", b"warm"]


def test_qos2_no_pubrec_while_brokers_down(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("down2", keepalive=0)
    cl.send(publish("test/down2", "q2", qos=2, pid=4))
    assert cl.nothing_within(3.0)
    mock_kafka.cmd("up -1")
    cl.expect(m2k.pubrec(4), timeout=30)
    cl.send(m2k.pubrel(4))
    cl.expect(m2k.pubcomp(4))


def test_delivery_failure_closes_without_ack(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("push_errors Produce 10 TOPIC_AUTHORIZATION_FAILED")
    cl = Raw(d.port).connect("denied")
    cl.send(publish("test/denied", "x", qos=1, pid=2))
    data, closed = read_until_close(cl, 15)
    assert closed and data == b"", f"expected a bare close, got {data.hex(' ')}"
    assert d.wait_log(r"(?i)authori[sz]ation")
    mock_kafka.cmd("clear_errors Produce")
    Raw(d.port).connect("after")  # still serving


def test_message_timeout_closes_without_ack(daemon, mock_kafka):
    d = daemon({"kafka": {"properties": {"linger.ms": 5, "message.timeout.ms": 1000}}})
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("timeout", keepalive=0)
    cl.send(publish("test/timeout", "x", qos=1, pid=2))
    data, closed = read_until_close(cl, 15)
    assert closed and data == b"", f"expected a bare close, got {data.hex(' ')}"
    assert d.wait_log(r"(?i)timed out")


def test_backpressure_pauses_and_loses_nothing(daemon, mock_kafka):
    d = daemon({"kafka": {"properties": {"linger.ms": 0, "queue.buffering.max.messages": 5}}})
    warm(d, mock_kafka)
    mock_kafka.cmd("rtt -1 20")
    cl = Raw(d.port, timeout=60).connect("fast")
    n, payload = 400, b"p" * 1024
    acks, errors = [], []

    def reader():
        try:
            for _ in range(n):
                acks.append(cl.recv_packet(timeout=60))
        except Exception as e:
            errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    rss_before = d.rss_kb()
    batch = b"".join(publish("test/bp", b"%04d" % i + payload, qos=1, pid=i)
                     for i in range(1, n + 1))
    cl.send(batch)  # blocks while the daemon pauses reading: that is the point
    t.join(90)
    assert errors == []
    assert acks == [puback(i) for i in range(1, n + 1)]
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", n + 1, timeout=30)
    bp = [r.value[:4] for r in recs if r.key == b"test/bp"]
    assert bp == [b"%04d" % i for i in range(1, n + 1)]
    # Bounded memory: far less than keeping every payload several times.
    assert d.rss_kb() - rss_before < 64 * 1024


def test_sigterm_flushes_acked_messages(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("rtt -1 300")
    cl = Raw(d.port).connect("term")
    n = 20
    cl.send(b"".join(publish("test/term", f"{i}", qos=1, pid=i) for i in range(1, n + 1)))
    time.sleep(0.1)  # let them reach the producer
    d.proc.send_signal(signal.SIGTERM)
    data, closed = read_until_close(cl, 30)
    assert closed
    assert d.stop(timeout=30) == 0
    acked = []
    while data:
        assert data[:2] == b"\x40\x02"
        acked.append(int.from_bytes(data[2:4], "big"))
        data = data[4:]
    recs = m2k.consume(mock_kafka.bootstrap, "test", n + 1, timeout=15, settle=1.0)
    values = [r.value for r in recs]
    assert len(values) == len(set(values)), "duplicates"
    for pid in acked:
        assert f"{pid}".encode() in values, f"acked {pid} missing"


def test_will_on_abrupt_disconnect(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("mortal", will=("test/will", "gone", 1, False))
    cl.close()  # no DISCONNECT
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"gone"
    assert recs[0].headers == m2k.expected_headers("test/will", "mortal", 1)


def test_no_will_after_disconnect(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("polite", will=("test/will", "gone", 1, False))
    cl.send(m2k.DISCONNECT)
    assert cl.closed_within(5)
    warm(d, mock_kafka)  # a marker after the DISCONNECT
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"warm"


def test_client_id_takeover_closes_old_connection(daemon, mock_kafka):
    d = daemon()
    old = Raw(d.port).connect("same")
    new = Raw(d.port).connect("same")
    assert old.closed_within(5)
    new.send(m2k.PINGREQ)
    new.expect(m2k.PINGRESP)


def test_keepalive_timeout(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("sleepy", keepalive=1)
    assert cl.closed_within(5)
    assert d.wait_log(r"(?i)keep.?alive")


def test_connect_timeout(daemon, mock_kafka):
    d = daemon({"mqtt": {"connect_timeout_s": 1}})
    cl = Raw(d.port)
    assert cl.closed_within(5)


def test_max_connections(daemon, mock_kafka):
    d = daemon({"mqtt": {"max_connections": 2}})
    a = Raw(d.port).connect("a")
    b = Raw(d.port).connect("b")
    c = Raw(d.port)
    try:
        c.send(m2k.connect("c"))
    except OSError:
        pass
    data, closed = read_until_close(c, 5)
    assert closed and data in (b"", b"\x20\x02\x00\x03"), data.hex(" ")
    for cl in (a, b):
        cl.send(m2k.PINGREQ)
        cl.expect(m2k.PINGRESP)
