"""The downlink consumer against Apache Kafka, where the mock cannot go:
partitions added to a downlink topic while the daemon runs are found by the
consumer's metadata refresh (every 5 s) and read from their beginning, and a
topic created after the start is read from its beginning too.

Runs under M2K_KAFKA=real only (ctest integration_real.test_real_kafka_downlink)."""
import os

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewPartitions

import m2k
from test_downlink import DOWNLINK, produce, routed, start

pytestmark = pytest.mark.skipif(os.environ.get("M2K_KAFKA") != "real",
                                reason="needs a real Kafka cluster: M2K_KAFKA=real")


def test_partitions_and_topics_that_appear_later(daemon, mock_kafka):
    for topic, parts in (("commands", 2), ("mqtt-events", 1), ("mqtt-retained", 1)):
        mock_kafka.cmd(f"create {topic} {parts}")
    # "lights" does not exist yet.
    d = daemon(DOWNLINK)
    for topic, parts in (("commands", "0..1"), ("mqtt-events", "0..0")):
        d.wait_log(m2k.line(f"kafka consumer: reading {topic} partitions {parts} from the end",
                            level="info"), since=0)

    mark = d.mark()
    admin = mock_kafka._admin()
    admin.create_partitions([NewPartitions("commands", 3)])["commands"].result(30)
    # Written as soon as the partition exists: before the consumer found it.
    produce(mock_kafka.bootstrap, [("commands", 2, b"new-part", b"hello", None)])
    d.wait_log(m2k.line("kafka consumer: reading commands partitions 2..2 from the beginning",
                        level="info"), since=mark, timeout=30)
    d.wait_log(routed("commands", 2, 0, "devices/new-part/commands", 1, 5), since=mark)

    mark = d.mark()
    mock_kafka.cmd("create lights 1")
    produce(mock_kafka.bootstrap, [("lights", 0, None, b"on", [("site", b"lyon")])])
    d.wait_log(m2k.line("kafka consumer: reading lights partitions 0..0 from the beginning",
                        level="info"), since=mark, timeout=30)
    d.wait_log(routed("lights", 0, 0, "site/lyon/light", 0, 2), since=mark)


def test_latency_produce_to_router(daemon, mock_kafka):
    """Prints a FIGURES line (pytest -s): produce (confluent-kafka, acks=all,
    one record at a time after its report) to the daemon's debug line, from
    the wall clocks of this process and the daemon's log; not asserted."""
    import datetime
    import time
    for topic, parts in (("commands", 2), ("mqtt-events", 1), ("lights", 1),
                         ("mqtt-retained", 1)):
        mock_kafka.cmd(f"create {topic} {parts}")
    d, _ = start(daemon, mock_kafka)
    p = Producer({"bootstrap.servers": mock_kafka.bootstrap, "linger.ms": 0})
    p.produce("commands", b"warm-up", partition=0)
    assert p.flush(15) == 0
    lat = []
    for i in range(20):
        time.sleep(0.2)  # idle: the consumer sits in a fetch, as in production
        mark = d.mark()
        t0 = time.time()
        p.produce("commands", b"x", key=f"dev-{i}".encode(), partition=i % 2)
        assert p.flush(15) == 0
        m = d.wait_log(r"^(\S+) debug downlink: commands \[\d\] offset \d+ -> "
                       rf"devices/dev-{i}/commands ", since=mark)
        at = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        lat.append((at - t0) * 1000)
    lat.sort()
    print(f"FIGURES downlink latency, Apache Kafka 1 node, fetch.wait.max.ms=10: produce start to "
          f"routed, median {lat[10]:.1f} ms, max {lat[-1]:.1f} ms over 20 (the producer's "
          f"round trip included)")
