"""A fatal producer error (librdkafka's idempotence, docs/semantics.md "Kafka
faults"): the worker replaces its producer in process. What the old one held
fails back as a failed delivery (3.1.1: closed without an ack, MQTT 5: 0x80),
nothing acked is touched, and the fourth fatal error within 60 s stops the
daemon with status 1. The errors are fabricated with the test hook
M2K_TEST_KAFKA_FATAL_AT (docs/development.md)."""
import re

import m2k
from m2k import Raw, packet, enc_str
from test_metrics import scrape
from test_mqtt5 import connect5, connack5, reason5, NOT_TAKEN
from test_spool import FAST_RECONNECT, publish_acked, spool_cfg, values_in_order

FATAL = "test_fatal_error: M2K_TEST_KAFKA_FATAL_AT"
ONE = {"threads": 1, "metrics": {"listen": "127.0.0.1:0"}}


def metrics_port(d):
    # A start-up line: the whole log is the right scope.
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return int(m.group(1))


def publish5(topic, payload, qos, pid):
    return packet(0x30 | qos << 1, enc_str(topic) + pid.to_bytes(2, "big") + b"\x00" +
                  payload.encode())


def acked(cl, publish, qos, pid):
    """Sends a QoS 1/2 PUBLISH and expects its ack (QoS 2: PUBREC, then
    PUBREL and PUBCOMP)."""
    cl.send(publish)
    cl.expect((m2k.puback if qos == 1 else m2k.pubrec)(pid), timeout=15)
    if qos == 2:
        cl.send(m2k.pubrel(pid))
        cl.expect(m2k.pubcomp(pid), timeout=15)


def test_fatal_error_replaces_the_producer(daemon, mock_kafka):
    d = daemon(ONE, env={"M2K_TEST_KAFKA_FATAL_AT": "8"})
    mport = metrics_port(d)
    pid = d.proc.pid
    a = Raw(d.port).connect("fatal-a", clean=False)  # 3.1.1, QoS 1
    b = Raw(d.port).connect("fatal-b", clean=False)  # 3.1.1, QoS 2
    c = Raw(d.port)                                  # MQTT 5, QoS 1
    c.send(connect5("fatal-c"))
    assert c.recv_packet() == connack5()
    e = Raw(d.port)                                  # MQTT 5, QoS 2
    e.send(connect5("fatal-e"))
    assert e.recv_packet() == connack5()

    # Records 1-4: acked before the fault.
    acked(a, m2k.publish("test/a", "a1", qos=1, pid=1), 1, 1)
    acked(b, m2k.publish("test/b", "b1", qos=2, pid=1), 2, 1)
    acked(c, publish5("test/c", "c1", 1, 1), 1, 1)
    acked(e, publish5("test/e", "e1", 2, 1), 2, 1)

    # Records 5-8 wait for the brokers; the 8th brings the fatal error.
    mock_kafka.cmd("down -1")
    c.send(publish5("test/c", "c2", 1, 2))
    e.send(publish5("test/e", "e2", 2, 2))
    b.send(m2k.publish("test/b", "b2", qos=2, pid=2))
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_kafka_records_produced_total"] == 7, 10,
                   "records 5-7 with the producer")
    mark = d.mark()
    a.send(m2k.publish("test/a", "a2", qos=1, pid=2))

    d.wait_log(m2k.line(f"kafka: fatal producer error: {FATAL}; replacing the producer",
                        level="error"), since=mark)
    d.wait_log(m2k.line("kafka: producer replaced; 4 records of the old one failed back to "
                        "their clients", level="warn"), since=mark)
    a.expect_close(timeout=15)
    b.expect_close(timeout=15)
    c.expect(reason5(0x40, 0x80, NOT_TAKEN, pid=2), timeout=15)
    e.expect(reason5(0x50, 0x80, NOT_TAKEN, pid=2), timeout=15)
    for client in ("fatal-a", "fatal-b"):
        d.wait_log(m2k.line("closing: Kafka did not confirm a message; the client must resend it",
                            level="warn", client=client), since=mark)
    assert d.proc.poll() is None and d.proc.pid == pid

    # The new producer takes the resends and new messages once the brokers
    # are back; MQTT 5 clients stayed connected.
    mock_kafka.cmd("up -1")
    a = Raw(d.port).connect("fatal-a", clean=False, session_present=True)
    acked(a, m2k.publish("test/a", "a2", qos=1, pid=2, dup=True), 1, 2)
    b = Raw(d.port).connect("fatal-b", clean=False, session_present=True)
    acked(b, m2k.publish("test/b", "b2", qos=2, pid=2, dup=True), 2, 2)
    acked(c, publish5("test/c", "c3", 1, 3), 1, 3)
    acked(e, publish5("test/e", "e3", 2, 3), 2, 3)
    acked(Raw(d.port).connect("fatal-f"), m2k.publish("test/f", "f1", qos=1, pid=1), 1, 1)

    got = m2k.assert_records(mock_kafka.bootstrap, "test", 9)
    assert sorted(r.value for r in got) == sorted(
        [b"a1", b"b1", b"c1", b"e1", b"a2", b"b2", b"c3", b"e3", b"f1"])
    s = scrape(mport)
    assert s["mqtt2kafka_kafka_producer_replaced_total"] == 1
    assert s['mqtt2kafka_kafka_records_failed_total{error="_PURGE_QUEUE"}'] == 4
    assert d.proc.poll() is None and d.proc.pid == pid


def test_fourth_fatal_error_within_60_s_stops(tmp_path, mock_kafka):
    d = m2k.Daemon(tmp_path, mock_kafka.bootstrap, {"threads": 1},
                   env={"M2K_TEST_KAFKA_FATAL_AT": "1,2,3,4"})
    try:
        cl = Raw(d.port).connect("fatal-q0")
        for i in range(1, 4):
            mark = d.mark()
            cl.send(m2k.publish("test/q0", f"m{i}"))
            d.wait_log(m2k.line(f"kafka: fatal producer error: {FATAL}; replacing the producer",
                                level="error"), since=mark)
            d.wait_log(m2k.line(r"kafka: producer replaced; \d+ records of the old one failed "
                                r"back to their clients", level="warn", regex=True), since=mark)
        mark = d.mark()
        cl.send(m2k.publish("test/q0", "m4"))
        d.wait_log(m2k.line(f"kafka: fatal producer error: {FATAL}; 4 fatal errors within 60 s: "
                            "stopping", level="error"), since=mark)
        d.wait_log(m2k.line("exiting with status 1", level="info"), since=mark, timeout=30)
        assert d.proc.wait(30) == 1
        assert not re.search("producer replaced", d.log(mark))
    finally:
        d.stop()


def test_each_worker_replaces_its_own_producer(daemon, mock_kafka):
    """threads: 2: a fatal error of one worker's producer replaces that
    producer only; the other worker's is replaced at its own fatal error."""
    d = daemon({"threads": 2, "metrics": {"listen": "127.0.0.1:0"}},
               env={"M2K_TEST_KAFKA_FATAL_AT": "1"})
    mport = metrics_port(d)
    pid = d.proc.pid

    def serving():
        s = scrape(mport)
        return [int(s[f'mqtt2kafka_worker_connections{{worker="{i}"}}']) for i in range(2)]

    # One client on each worker: a client id lives where its hash says.
    on, extra = {}, []
    for i in range(40):
        before = serving()
        cl = Raw(d.port).connect(f"fatal-w{i}")
        now = m2k.wait_until(lambda: sum(serving()) == sum(before) + 1 and serving(), 10,
                             "the client served by a worker")
        w = 0 if now[0] == before[0] + 1 else 1
        (extra if w in on else on.setdefault(w, [])).append(cl)
        if len(on) == 2:
            break
    assert len(on) == 2, "40 client ids, all on one worker"

    replaced = re.compile(m2k.line(f"kafka: fatal producer error: {FATAL}; replacing the producer",
                                   level="error"), re.M)
    for n, w in enumerate((0, 1), start=1):
        cl = on[w][0]
        mark = d.mark()
        # The worker's record 1 (QoS 0, to another Kafka topic): its fatal error.
        cl.send(m2k.publish(f"sensors/w{w}/temperature", f"q0-w{w}"))
        d.wait_log(m2k.line(r"kafka: producer replaced; \d+ records of the old one failed back "
                            r"to their clients", level="warn", regex=True), since=mark)
        assert len(replaced.findall(d.log(mark))) == 1
        m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_kafka_producer_replaced_total"] == n,
                       10, f"{n} producers replaced")
    for w in (0, 1):
        acked(on[w][0], m2k.publish("test/w", f"q1-w{w}", qos=1, pid=1), 1, 1)
    got = [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 2)]
    assert sorted(got) == [b"q1-w0", b"q1-w1"]
    assert d.proc.poll() is None and d.proc.pid == pid
    for cl in extra:
        cl.close()


def test_spool_feed_rewinds_into_the_new_producer(daemon, mock_kafka, tmp_path):
    """With the spool the records are acked once spooled; the fatal error
    fails what the feed had given the old producer, the feed starts again
    and the new producer takes every record, once, in order."""
    mock_kafka.cmd("down -1")
    d = daemon(m2k.merge(spool_cfg(tmp_path), {"kafka": {"properties": FAST_RECONNECT}}),
               env={"M2K_TEST_KAFKA_FATAL_AT": "5"})
    pid = d.proc.pid
    mark = d.mark()
    sent = publish_acked(d.port, "fatal-spool", 20)
    d.wait_log(m2k.line(f"kafka: fatal producer error: {FATAL}; replacing the producer",
                        level="error"), since=mark)
    d.wait_log(m2k.line(r"spool: Kafka did not take record \d+ \(Local: Purged in queue\); the "
                        r"feed starts again from the first record not confirmed once the records "
                        r"in flight are back", level="warn", regex=True), since=mark)
    d.wait_log(m2k.line("spool: the feed to Kafka starts again after record 0", level="info"),
               since=mark)
    mock_kafka.cmd("up -1")
    # Nothing was delivered before the fatal error: every record once, in order.
    assert values_in_order(mock_kafka.bootstrap, 20) == sent
    assert d.proc.poll() is None and d.proc.pid == pid
