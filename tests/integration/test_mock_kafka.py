"""The test fixtures themselves: m2k-mock-kafka and the consumer helpers,
driven by a real confluent_kafka Producer, and the harness's own checks,
which must be able to fail: a Kafka read against brokers that are down
raises, a wait that times out raises, a log check sees only what follows
its mark."""
import os
import time

import pytest
from confluent_kafka import KafkaError, Producer

import m2k

pytestmark = pytest.mark.skipif(os.environ.get("M2K_KAFKA") == "real",
                                reason="tests the mock Kafka process itself")


def produce(bootstrap, topic, records, **conf):
    """Produces (key, value, headers) tuples; returns the delivery errors."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "log_level": 3, **conf})
    for key, value, headers in records:
        p.produce(topic, value=value, key=key, headers=headers,
                  on_delivery=lambda err, msg: errors.append(err))
    left = p.flush(20)
    assert left == 0, f"{left} records not delivered within 20 s"
    return errors


def test_bootstrap_names_three_brokers(mock_kafka):
    hosts = mock_kafka.bootstrap.split(",")
    assert len(hosts) == 3
    assert all(h.startswith("127.0.0.1:") for h in hosts)


def test_produce_and_consume_exact_records(mock_kafka):
    recs = [(b"k%d" % i, b"v%d" % i, [("h", b"x%d" % i)]) for i in range(20)]
    assert produce(mock_kafka.bootstrap, "fixture", recs) == [None] * 20
    got = m2k.assert_records(mock_kafka.bootstrap, "fixture", 20)
    # Auto-created with the mock's default of 4 partitions; same key, same
    # partition, so order by (partition, offset) and check content.
    assert {r.partition for r in got} <= {0, 1, 2, 3}
    by_key = {r.key: r for r in got}
    for k, v, h in recs:
        assert by_key[k].value == v
        assert by_key[k].headers == dict(h)
        assert by_key[k].topic == "fixture"


def test_created_topic_partitions_and_order(mock_kafka):
    mock_kafka.cmd("create ordered 1 1")
    recs = [(None, b"%03d" % i, None) for i in range(50)]
    assert produce(mock_kafka.bootstrap, "ordered", recs) == [None] * 50
    got = m2k.assert_records(mock_kafka.bootstrap, "ordered", 50)
    assert [r.value for r in got] == [b"%03d" % i for i in range(50)]
    assert [r.offset for r in got] == list(range(50))
    assert {r.partition for r in got} == {0}


def test_no_records_on_untouched_topic(mock_kafka):
    mock_kafka.cmd("create empty 1 1")
    m2k.assert_no_records(mock_kafka.bootstrap, "empty", window=1.0)


def test_push_errors_fail_delivery(mock_kafka):
    mock_kafka.cmd("create denied 1 1")
    mock_kafka.cmd("push_errors Produce 1 TOPIC_AUTHORIZATION_FAILED")
    errs = produce(mock_kafka.bootstrap, "denied", [(None, b"x", None)])
    assert len(errs) == 1 and errs[0] is not None
    assert errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    m2k.assert_no_records(mock_kafka.bootstrap, "denied", window=1.0)


def test_brokers_down_then_up(mock_kafka):
    mock_kafka.cmd("create downup 1 1")
    mock_kafka.cmd("down -1")
    errors = []
    p = Producer({"bootstrap.servers": mock_kafka.bootstrap, "log_level": 0})
    p.produce("downup", b"late", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(1.5) == 1  # nothing can be delivered while down
    mock_kafka.cmd("up -1")
    assert p.flush(20) == 0
    assert errors == [None]
    got = m2k.assert_records(mock_kafka.bootstrap, "downup", 1)
    assert got[0].value == b"late"


def test_rtt_delays_delivery(mock_kafka):
    mock_kafka.cmd("create slow 1 1")
    p = Producer({"bootstrap.servers": mock_kafka.bootstrap, "linger.ms": 0, "log_level": 3})
    p.list_topics("slow", timeout=10)  # connections and metadata ready
    mock_kafka.cmd("rtt -1 400")
    t0 = time.monotonic()
    p.produce("slow", b"x")
    assert p.flush(20) == 0
    # A lower bound by causality: the broker answers after its RTT.
    assert time.monotonic() - t0 >= 0.4


def test_bad_commands_are_refused(mock_kafka):
    with pytest.raises(RuntimeError, match="ERR bad broker id: 9"):
        mock_kafka.cmd("down 9")
    with pytest.raises(RuntimeError, match="ERR unknown error: NOPE"):
        mock_kafka.cmd("push_errors Produce 1 NOPE")
    mock_kafka.cmd("up -1")  # still serving after refusals


def test_exits_on_stdin_eof():
    mk = m2k.MockKafka()
    mk.proc.stdin.close()
    assert mk.proc.wait(10) == 0


def test_reads_fail_while_the_brokers_are_down(mock_kafka):
    """"No records" needs an answer from the brokers: unreachable ones fail
    the read instead of passing for an empty topic."""
    mock_kafka.cmd("create quiet 1 1")
    mock_kafka.cmd("down -1")
    with pytest.raises(m2k.KafkaReadError):
        m2k.assert_no_records(mock_kafka.bootstrap, "quiet", window=1.0)
    with pytest.raises(m2k.KafkaReadError):
        m2k.consume(mock_kafka.bootstrap, "quiet", 1, timeout=1.0)
    mock_kafka.cmd("up -1")
    m2k.assert_no_records(mock_kafka.bootstrap, "quiet", window=0.5)


def test_assert_records_counts_exactly(mock_kafka):
    mock_kafka.cmd("create three 1 1")
    assert produce(mock_kafka.bootstrap, "three", [(None, b"%d" % i, None) for i in range(3)]) \
        == [None] * 3
    for n in (2, 4):
        with pytest.raises(AssertionError, match=f"expected {n} records, read "):
            m2k.assert_records(mock_kafka.bootstrap, "three", n, timeout=1.0, settle=0.2)
    with pytest.raises(AssertionError, match="expected no records"):
        m2k.assert_no_records(mock_kafka.bootstrap, "three", window=0.2)
    m2k.assert_records(mock_kafka.bootstrap, "three", 3, settle=0.2)


def test_wait_until_fails_on_timeout():
    calls = []
    with pytest.raises(AssertionError, match=r"waited 0\.2 s for the impossible; last value 0"):
        m2k.wait_until(lambda: calls.append(1) or 0, 0.2, "the impossible")
    assert len(calls) > 1
    assert m2k.wait_until(lambda: "yes", 0.2, "a value") == "yes"


def test_wait_log_sees_only_what_follows_the_mark(daemon):
    d = daemon()
    connected = m2k.line(r"kafka: connected to \S+", level="info", regex=True)
    d.wait_log(connected, since=0)  # a start-up line: in the whole log
    mark = d.mark()
    with pytest.raises(AssertionError, match="the log from there"):
        d.wait_log(connected, since=mark, timeout=0.3)
    m2k.Raw(d.port).connect("after-mark").close()
    d.wait_log(m2k.line("connected (clean session 1, keepalive 60 s, session present 0)",
                        level="info", client="after-mark"), since=mark)
    assert "kafka: connected" not in d.log(mark)
