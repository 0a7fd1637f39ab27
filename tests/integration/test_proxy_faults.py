"""Kafka faults and lifecycle: acks wait for Kafka, failures close the
connection, backpressure loses nothing, shutdown flushes what was acked."""
import threading
import time

import m2k
from m2k import Raw, publish, puback
from test_metrics import scrape, start as metrics_daemon

NOT_CONFIRMED = "closing: Kafka did not confirm a message; the client must resend it"


def warm(d, mock_kafka, topic="test/warm"):
    """One acked record, so metadata and broker connections are up before a
    fault is injected."""
    cl = Raw(d.port).connect("warm")
    cl.send(publish(topic, "warm", qos=1, pid=1))
    cl.expect(puback(1), timeout=15)
    cl.send(m2k.DISCONNECT)
    cl.close()


def wait_produced(mport, n):
    """Until the daemon has handed exactly n records to the producer."""
    key = "mqtt2kafka_kafka_records_produced_total"
    m2k.wait_until(lambda: scrape(mport)[key] == n, 10,
                   lambda: f"{key} {n}, metrics say {scrape(mport)[key]}")


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


# librdkafka reconnects to a broker that was down after up to
# reconnect.backoff.max.ms (10 s by default): 0.5 s keeps these tests short.
FAST_RECONNECT = {"reconnect.backoff.max.ms": 500}


def test_no_ack_while_brokers_down_then_ack_once(daemon, mock_kafka):
    d, mport = metrics_daemon(daemon, **FAST_RECONNECT)
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("down", keepalive=0)
    cl.send(publish("test/down", "waited", qos=1, pid=3))
    # The PUBLISH is with the producer; an ack now would not wait for Kafka.
    wait_produced(mport, 2)
    assert cl.nothing_within(1.0), "acknowledged while Kafka was down"
    mock_kafka.cmd("up -1")
    cl.expect(puback(3), timeout=30)
    assert cl.nothing_within(0.3), "more than one answer"
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"waited", b"warm"]


def test_qos2_no_pubrec_while_brokers_down(daemon, mock_kafka):
    d, mport = metrics_daemon(daemon, **FAST_RECONNECT)
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("down2", keepalive=0)
    cl.send(publish("test/down2", "q2", qos=2, pid=4))
    wait_produced(mport, 2)
    assert cl.nothing_within(1.0), "PUBREC while Kafka was down"
    mock_kafka.cmd("up -1")
    cl.expect(m2k.pubrec(4), timeout=30)
    cl.send(m2k.pubrel(4))
    cl.expect(m2k.pubcomp(4))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert sorted(r.value for r in recs) == [b"q2", b"warm"]


def test_delivery_failure_closes_without_ack(daemon, mock_kafka):
    d = daemon()
    warm(d, mock_kafka)
    mock_kafka.cmd("push_errors Produce 10 TOPIC_AUTHORIZATION_FAILED")
    cl = Raw(d.port).connect("denied")
    mark = d.mark()
    cl.send(publish("test/denied", "x", qos=1, pid=2))
    cl.expect_close(timeout=15)
    d.wait_log(m2k.line("Kafka did not take a QoS 1 message on topic 'test/denied': Broker: "
                        "Topic authorization failed", level="error", client="denied"), since=mark)
    d.wait_log(m2k.line(NOT_CONFIRMED, level="warn", client="denied"), since=mark)
    mock_kafka.cmd("clear_errors Produce")
    Raw(d.port).connect("after")  # still serving
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"warm"]


def test_message_timeout_closes_without_ack(daemon, mock_kafka):
    d = daemon({"kafka": {"properties": {"linger.ms": 5, "message.timeout.ms": 1000}}})
    warm(d, mock_kafka)
    mock_kafka.cmd("down -1")
    cl = Raw(d.port).connect("timeout", keepalive=0)
    mark = d.mark()
    cl.send(publish("test/timeout", "x", qos=1, pid=2))
    cl.expect_close(timeout=15)
    d.wait_log(m2k.line("Kafka did not take a QoS 1 message on topic 'test/timeout': Local: "
                        "Message timed out", level="error", client="timeout"), since=mark)
    d.wait_log(m2k.line(NOT_CONFIRMED, level="warn", client="timeout"), since=mark)
    mock_kafka.cmd("up -1")


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
    assert not t.is_alive(), f"{len(acks)} of {n} acks after 90 s"
    assert errors == []
    assert acks == [puback(i) for i in range(1, n + 1)]
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", n + 1, timeout=30)
    bp = [r.value[:4] for r in recs if r.key == b"test/bp"]
    assert bp == [b"%04d" % i for i in range(1, n + 1)]
    # Bounded memory: far less than keeping every payload several times.
    assert d.rss_kb() - rss_before < 64 * 1024


def test_sigterm_flushes_acked_messages(daemon, mock_kafka):
    """SIGTERM while 20 QoS 1 records wait for a slow broker: the daemon stops
    reading, waits for Kafka, sends every PUBACK, then closes; every record
    acked is in Kafka once, in order."""
    d, mport = metrics_daemon(daemon)
    warm(d, mock_kafka)
    mock_kafka.cmd("rtt -1 500")
    cl = Raw(d.port).connect("term")
    n = 20
    cl.send(b"".join(publish("test/term", f"{i}", qos=1, pid=i) for i in range(1, n + 1)))
    wait_produced(mport, n + 1)  # all 20 are with the producer, none confirmed yet
    mark = m2k.sigterm_with_acks_in_flight(d, cl, n)
    d.wait_log(m2k.line(f"shutdown: {n + 1} records produced, {n + 1} delivered, 0 failed; "
                        "closing 1 connections", level="info"), since=mark)
    mock_kafka.cmd("rtt -1 0")
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", n + 1)
    assert [r.value for r in recs if r.key == b"test/term"] == [b"%d" % i for i in range(1, n + 1)]


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
    cl.expect_close()
    warm(d, mock_kafka)  # a marker after the DISCONNECT
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"warm"


def test_client_id_takeover_closes_old_connection(daemon, mock_kafka):
    d = daemon()
    old = Raw(d.port).connect("same")
    mark = d.mark()
    new = Raw(d.port).connect("same")
    old.expect_close()
    d.wait_log(m2k.line(r"closing: taken over by a new connection from 127\.0\.0\.1:\d+",
                        level="info", client="same", regex=True), since=mark)
    new.send(m2k.PINGREQ)
    new.expect(m2k.PINGRESP)


def test_keepalive_timeout(daemon, mock_kafka):
    d = daemon()
    mark = d.mark()
    t0 = time.monotonic()
    cl = Raw(d.port).connect("sleepy", keepalive=1)
    cl.expect_close()
    assert time.monotonic() - t0 >= 1.5, "closed before 1.5 x keepalive"
    d.wait_log(m2k.line("closing: no packet within 1.5 x keepalive 1 s", level="warn",
                        client="sleepy"), since=mark)


def test_connect_timeout(daemon, mock_kafka):
    d = daemon({"mqtt": {"connect_timeout_s": 1}})
    mark = d.mark()
    t0 = time.monotonic()
    cl = Raw(d.port)
    cl.expect_close()
    assert time.monotonic() - t0 >= 1.0, "closed before connect_timeout_s"
    d.wait_log(m2k.line("closing: no CONNECT within connect_timeout_s 1", level="warn",
                        client="-"), since=mark)


def test_max_connections(daemon, mock_kafka):
    d = daemon({"mqtt": {"max_connections": 2}})
    a = Raw(d.port).connect("a")
    b = Raw(d.port).connect("b")
    mark = d.mark()
    c = Raw(d.port)
    try:
        c.send(m2k.connect("c"))
    except OSError:
        pass
    c.expect_close()  # accepted and closed at once, no CONNACK
    d.wait_log(m2k.line("refused: max_connections 2 reached", level="warn", client="-"),
               since=mark)
    for cl in (a, b):
        cl.send(m2k.PINGREQ)
        cl.expect(m2k.PINGRESP)
