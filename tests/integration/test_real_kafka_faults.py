"""Faults that only a real Kafka has, on a three-node Apache Kafka cluster
(tests/kafka/kafka_cluster.py: KRaft, replication factor 3,
min.insync.replicas=2): a partition leader killed with -9 under a QoS 1 load,
a rolling restart of every node, the ISR below min.insync.replicas, a record
above the topic's max.message.bytes, a topic deleted and recreated.

Runs under M2K_KAFKA=real only (ctest integration_real.test_real_kafka_faults).
Each test prints a FIGURES line (pytest -s shows it) that docs/reliability.md
quotes.
"""
import os
import select
import threading
import time

import pytest

import kafka_cluster
import m2k
from m2k import Raw, publish, puback
from test_proxy_faults import read_until_close

pytestmark = pytest.mark.skipif(os.environ.get("M2K_KAFKA") != "real",
                                reason="needs a real Kafka cluster: M2K_KAFKA=real")


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    with kafka_cluster.Cluster(tmp_path_factory.mktemp("kafka3"), nodes=3) as c:
        c.admin = kafka_cluster.RealKafka(c.bootstrap)
        yield c


@pytest.fixture
def cluster(cluster3):
    """The three nodes running and no user topic left by an earlier test."""
    if len(cluster3.alive_nodes()) < 3:
        cluster3.start()
    cluster3.admin.delete_user_topics()
    return cluster3


def payload(seq):
    return b"m%06d" % seq


class Qos1Load(threading.Thread):
    """One MQTT connection publishing `n` QoS 1 messages to `topic` (payload
    m000000, m000001, ...) in a thread, at most `window` unacknowledged, about
    `rate` a second. PUBACKs must come in order; the time of each is kept."""

    def __init__(self, port, n, topic="test/load", window=32, rate=250):
        super().__init__(daemon=True)
        self.cl = Raw(port).connect("load", keepalive=0)
        self.n, self.topic, self.window, self.rate = n, topic, window, rate
        self.sent = 0
        self.acked = []  # monotonic time of each PUBACK, in order
        self.error = None
        self.halt = threading.Event()
        self.buf = b""
        self.start()

    def _pid(self, seq):
        return seq % 65535 + 1

    def _read(self, timeout):
        r, _, _ = select.select([self.cl.sock], [], [], timeout)
        if not r:
            return
        self.cl.sock.settimeout(1)
        chunk = self.cl.sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(self.acked)} acks")
        self.buf += chunk
        while len(self.buf) >= 4:
            assert self.buf[0] == 0x40 and self.buf[1] == 2, f"not a PUBACK: {self.buf[:8]!r}"
            pid = int.from_bytes(self.buf[2:4], "big")
            want = self._pid(len(self.acked))
            assert pid == want, f"PUBACK {pid} out of order (expected {want})"
            self.acked.append(time.monotonic())
            self.buf = self.buf[4:]

    def run(self):
        start = time.monotonic()
        try:
            while len(self.acked) < self.n and not self.halt.is_set():
                now = time.monotonic()
                while (self.sent < self.n and self.sent - len(self.acked) < self.window
                       and self.sent <= (now - start) * self.rate):
                    self.cl.send(publish(self.topic, payload(self.sent), qos=1,
                                         pid=self._pid(self.sent)))
                    self.sent += 1
                self._read(0.01)
        except Exception as e:  # noqa: BLE001 - reported by wait_acked
            self.error = e

    def wait_acked(self, k, timeout):
        """Waits until `k` messages are acknowledged; fails when the load
        failed or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while len(self.acked) < k:
            assert self.error is None, f"load failed: {self.error}"
            assert time.monotonic() < deadline, (
                f"{len(self.acked)} of {k} acked after {timeout} s ({self.sent} sent)")
            time.sleep(0.02)

    def longest_gap(self, since):
        """Seconds of the longest wait between acks after `since`."""
        ts = [since] + [t for t in self.acked if t >= since]
        return max(b - a for a, b in zip(ts, ts[1:]))


def assert_exact(bootstrap, n, topic="test"):
    """Exactly n records m000000.. in order: nothing acked lost, no duplicate."""
    recs = m2k.assert_records(bootstrap, topic, n, timeout=60, settle=2.0)
    values = [r.value for r in sorted(recs, key=lambda r: (r.partition, r.offset))]
    dups = len(values) - len(set(values))
    assert values == [payload(i) for i in range(n)], (
        f"{dups} duplicates; first difference at "
        f"{next(i for i, (a, b) in enumerate(zip(values, map(payload, range(n)))) if a != b)}")


def test_leader_killed_mid_load(cluster, daemon):
    cluster.admin.create_topic("test", 1, 3)
    d = daemon(bootstrap=cluster.bootstrap)
    n = 2000
    load = Qos1Load(d.port, n)
    load.wait_acked(500, timeout=30)
    leader, replicas, isr = cluster.admin.partition("test")
    assert sorted(isr) == [1, 2, 3], f"ISR {isr} before the kill"
    t_kill = time.monotonic()
    cluster.kill(leader)
    load.wait_acked(n, timeout=120)
    gap = load.longest_gap(t_kill)
    new_leader = cluster.admin.partition("test")[0]
    assert new_leader not in (leader, -1)
    assert_exact(cluster.bootstrap, n)
    print(f"\nFIGURES leader_kill: {n} acked, {n} in Kafka, 0 duplicates, acks stalled "
          f"{gap:.1f} s after kill -9 of leader {leader} (new leader {new_leader})")


def test_rolling_restart_under_load(cluster, daemon):
    cluster.admin.create_topic("test", 1, 3)
    d = daemon(bootstrap=cluster.bootstrap)
    n = 3000
    load = Qos1Load(d.port, n, rate=150)
    load.wait_acked(100, timeout=30)
    t0 = time.monotonic()
    for node in (1, 2, 3):
        cluster.restart(node, timeout=90)
        kafka_cluster.wait_for(lambda: len(cluster.admin.partition("test")[2]) == 3, 60,
                               f"node {node} back in the ISR")
    load.wait_acked(n, timeout=120)
    gap = load.longest_gap(t0)
    assert_exact(cluster.bootstrap, n)
    print(f"\nFIGURES rolling_restart: {n} acked, {n} in Kafka, 0 duplicates, "
          f"longest ack wait {gap:.1f} s while restarting nodes 1, 2, 3 in turn")


def _log_size(node):
    return os.path.getsize(node.log_path)


def _log_since(node, offset):
    with open(node.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def test_isr_below_min_insync_replicas(cluster, daemon):
    # Replicas on nodes 2 and 3 (2 the leader); stopping 3 leaves ISR {2},
    # below min.insync.replicas=2, while the KRaft quorum (2 of 3) stays up.
    cluster.admin.create_topic("test", replicas=[[2, 3]])
    d = daemon(bootstrap=cluster.bootstrap)
    cl = Raw(d.port).connect("isr", keepalive=0)
    cl.send(publish("test/isr", "before", qos=1, pid=1))
    cl.expect(puback(1), timeout=30)
    node2 = cluster.node(2)
    mark = _log_size(node2)
    cluster.stop_node(3)
    kafka_cluster.wait_for(lambda: cluster.admin.partition("test")[2] == [2], 30,
                           "ISR to shrink to [2]")
    cl.send(publish("test/isr", "during", qos=1, pid=2))
    t_sent = time.monotonic()
    kafka_cluster.wait_for(lambda: "NotEnoughReplicas" in _log_since(node2, mark), 30,
                           "node 2 to refuse the record with NOT_ENOUGH_REPLICAS")
    assert cl.nothing_within(5), "acked while the ISR was below min.insync.replicas"
    t_start = time.monotonic()
    cluster.start_node(3)
    cl.expect(puback(2), timeout=90)
    t_ack = time.monotonic()
    recs = m2k.assert_records(cluster.bootstrap, "test", 2, timeout=30)
    assert [r.value for r in recs] == [b"before", b"during"]
    print(f"\nFIGURES isr: no ack for {t_start - t_sent:.1f} s with ISR [2] < 2, acked "
          f"{t_ack - t_start:.1f} s after node 3 was started; 2 records, each once")


def test_record_above_topic_max_message_bytes(cluster, daemon):
    cluster.admin.create_topic("test", 1, 3, config={"max.message.bytes": "2000"})
    d = daemon(bootstrap=cluster.bootstrap)
    small = Raw(d.port).connect("small")
    small.send(publish("test/small", "small", qos=1, pid=1))
    small.expect(puback(1), timeout=30)
    big = Raw(d.port).connect("big", keepalive=0)
    mark = d.mark()
    big.send(publish("test/big", b"x" * 5000, qos=1, pid=1))
    data, closed = read_until_close(big, 30)
    assert closed and data == b"", f"expected a bare close, got {data.hex(' ')}"
    m = d.wait_log(r"^.* error client=big .* Kafka did not take a QoS 1 message on topic "
                   r"'test/big': Broker: Message size too large$", since=mark, timeout=5)
    after = Raw(d.port).connect("after")
    after.send(publish("test/after", "after", qos=1, pid=1))
    after.expect(puback(1), timeout=30)
    recs = m2k.assert_records(cluster.bootstrap, "test", 2, timeout=30)
    assert [r.value for r in recs] == [b"small", b"after"]
    print(f"\nFIGURES too_large: bare close, daemon log: {m.group(0)}")


def test_topic_deleted_and_recreated(cluster, daemon):
    cluster.admin.create_topic("test", 1, 3)
    d = daemon(bootstrap=cluster.bootstrap)
    cl = Raw(d.port).connect("before")
    cl.send(publish("test/x", "old", qos=1, pid=1))
    cl.expect(puback(1), timeout=30)
    cluster.admin.delete_user_topics()
    cluster.admin.create_topic("test", 1, 3)
    cl2 = Raw(d.port).connect("after", keepalive=0)
    cl2.send(publish("test/x", "new", qos=1, pid=1))
    t_sent = time.monotonic()
    cl2.expect(puback(1), timeout=60)
    t_ack = time.monotonic()
    recs = m2k.assert_records(cluster.bootstrap, "test", 1, timeout=30)
    assert [r.value for r in recs] == [b"new"]
    print(f"\nFIGURES recreated: acked {t_ack - t_sent:.1f} s after the PUBLISH into the "
          f"recreated topic; 1 record (the old topic's went with it)")
