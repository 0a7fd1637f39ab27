"""The reliability suite's reconciliation must catch every violation it
claims to (a check that cannot fail is a defect): synthetic devices and
records, no daemon."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reliability"))
import rel  # noqa: E402


class FakeDevice:
    def __init__(self, cid, qos, n, acked=True, incs=(1,), sends=1):
        self.cid, self.qos, self.topic = cid, qos, f"rel/{cid}"
        self.msgs = []
        for i in range(n):
            m = rel.Msg(i, qos)
            m.acked = acked and qos > 0
            m.sends = sends
            m.incs = set(incs)
            m.state = "done"
            self.msgs.append(m)


def rec(d, seq, conn=1, part=0, off=None, qos=None):
    q = d.qos if qos is None else qos
    return (part, off if off is not None else seq, d.topic.encode(),
            f"R|{d.cid}|{seq}|{q}|{conn}|xx".encode())


def test_clean_run_has_no_violation():
    d = FakeDevice("a", 1, 3)
    r = rel.reconcile([d], [rec(d, 0), rec(d, 1), rec(d, 2)])
    assert (r["lost"], r["excess"], r["phantom"], r["order"], r["unacked"]) == (0, 0, 0, 0, 0)
    assert r["violations"] == []
    assert (r["sent"], r["acked"], r["in_kafka"]) == (3, 3, 3)


def test_acked_message_missing_is_lost():
    d = FakeDevice("a", 2, 3)
    r = rel.reconcile([d], [rec(d, 0), rec(d, 2, off=1)])
    assert r["lost"] == 1
    assert r["violations"] == ["LOST a seq 1 QoS 2 (acked, not in Kafka)"]


def test_qos0_missing_is_not_lost():
    d = FakeDevice("a", 0, 2)
    r = rel.reconcile([d], [rec(d, 0)])
    assert (r["lost"], r["qos0_missing"], r["violations"]) == (0, 1, [])


def test_phantom_record():
    d = FakeDevice("a", 1, 1)
    r = rel.reconcile([d], [rec(d, 0), (0, 1, b"rel/a", b"R|nobody|0|1|1|")])
    assert r["phantom"] == 1
    assert r["violations"] == ["1 records in Kafka that no device sent"]


def test_qos2_twice_from_one_daemon_process_is_excess():
    d = FakeDevice("a", 2, 1, incs=(1,), sends=2)
    r = rel.reconcile([d], [rec(d, 0, conn=1), rec(d, 0, conn=2, off=1)])
    assert (r["dup_q2"], r["excess"]) == (1, 1)
    # Sent to two daemon processes (a crash in between): allowed.
    d = FakeDevice("a", 2, 1, incs=(1, 2), sends=2)
    r = rel.reconcile([d], [rec(d, 0, conn=1), rec(d, 0, conn=2, off=1)])
    assert (r["dup_q2"], r["excess"], r["violations"]) == (1, 0, [])


def test_qos1_more_copies_than_sent_is_excess():
    d = FakeDevice("a", 1, 1, sends=1)
    r = rel.reconcile([d], [rec(d, 0, conn=1), rec(d, 0, conn=1, off=1)])
    assert r["excess"] == 1


def test_order_within_a_connection_and_across_connections():
    d = FakeDevice("a", 1, 3, sends=2)
    # seq 1 before seq 0 from the same connection
    r = rel.reconcile([d], [rec(d, 1, off=0), rec(d, 0, off=1), rec(d, 2, off=2)])
    assert r["order"] == 1
    # a copy from connection 1 after one from connection 2
    r = rel.reconcile([d], [rec(d, 0, conn=2, off=0), rec(d, 1, conn=1, off=1),
                            rec(d, 2, conn=2, off=2)])
    assert r["order"] == 1
    # one device spread over two partitions
    r = rel.reconcile([d], [rec(d, 0, part=0), rec(d, 1, part=1), rec(d, 2, part=1)])
    assert r["order"] == 1


def test_unacked_at_end():
    d = FakeDevice("a", 1, 1, acked=False)
    r = rel.reconcile([d], [])
    assert (r["unacked"], r["lost"]) == (1, 0)
