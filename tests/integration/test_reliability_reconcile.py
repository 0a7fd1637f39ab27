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


# librdkafka's Produce debug lines, as the daemon logs them (debug: msg).
def produce_line(part, n, msgid, seq, epoch=0, pid=1000, topic="rel"):
    return (f"2026-11-25T03:29:25.437Z debug kafka: mqtt2kafka#producer-1: [PRODUCE] "
            f"[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/2: {topic} [{part}]: Produce MessageSet "
            f"with {n} message(s) ({40 * n} bytes, ApiVersion 7, MsgVersion 2, MsgId {msgid}, "
            f"BaseSeq {seq}, PID{{Id:{pid},Epoch:{epoch}}}, uncompressed)")


def test_resent_batches_from_the_debug_log():
    log = "\n".join([
        produce_line(3, 2, 96280, 6004, epoch=27),
        produce_line(3, 1, 96282, 6006, epoch=27),
        produce_line(3, 2, 96280, 6004, epoch=27),   # the same batch again: a resend
        produce_line(3, 2, 96280, 6004, epoch=28),   # new epoch: a new batch to Kafka
        produce_line(0, 2, 96280, 6004, epoch=27),   # other partition
        produce_line(3, 3, 96283, 6007, epoch=27),
        produce_line(3, 4, 96283, 6007, epoch=27),   # same sequence, other content: not a resend
        produce_line(3, 2, 96280, 6004, epoch=27, topic="other"),
        produce_line(3, 2, 96280, 6004, epoch=27, pid=1001),  # another daemon process
        produce_line(3, 2, 96280, 6004, epoch=27),   # and once more
    ])
    assert rel.resent_batches(log) == {3: [(96280, 2), (96280, 2)]}


def kafka(records, ts=None):
    """Read-back 5-tuples: create timestamp per record (default: by offset)."""
    return [r + ((ts or {}).get(r[1], 1000 + r[1]),) for r in records]


def test_batch_the_mock_appended_twice_is_not_a_duplicate():
    a, b = FakeDevice("a", 1, 3), FakeDevice("b", 2, 3)
    first = [rec(a, 0, off=0), rec(b, 0, off=1), rec(a, 1, off=2), rec(b, 1, off=3)]
    again = [rec(a, 1, off=4), rec(b, 1, off=5)]   # offsets 2..3 appended again
    last = [rec(a, 2, off=6), rec(b, 2, off=7)]
    records = kafka(first + again + last, ts={4: 1002, 5: 1003})
    r = rel.reconcile([a, b], records, {0: [(17, 2)]})
    assert (r["mock_reappended"], r["dup_q1"], r["dup_q2"], r["excess"], r["order"]) == \
        (2, 0, 0, 0, 0)
    assert r["violations"] == []
    # Without the resend in the log the same records are duplicates.
    r = rel.reconcile([a, b], records, {})
    assert (r["mock_reappended"], r["excess"]) == (0, 2)
    # A resend of another length does not explain them.
    r = rel.reconcile([a, b], records, {0: [(17, 3)]})
    assert (r["mock_reappended"], r["excess"]) == (0, 2)
    # Nor one in another partition.
    r = rel.reconcile([a, b], records, {1: [(17, 2)]})
    assert (r["mock_reappended"], r["excess"]) == (0, 2)
    # Two adjacent resent batches (1 + 1) cover the run of 2; two that are not
    # adjacent (message ids 17 and 19) do not.
    r = rel.reconcile([a, b], records, {0: [(17, 1), (18, 1)]})
    assert (r["mock_reappended"], r["excess"]) == (2, 0)
    r = rel.reconcile([a, b], records, {0: [(17, 1), (19, 1)]})
    assert r["excess"] == 2


def test_record_the_daemon_produced_twice_is_still_a_duplicate():
    # Same bytes but a later create timestamp: a second produce call, not a
    # batch sent again; a resend of that length in the log does not hide it.
    a = FakeDevice("a", 1, 2)
    records = kafka([rec(a, 0, off=0), rec(a, 1, off=1), rec(a, 1, off=2)])
    r = rel.reconcile([a], records, {0: [(5, 1)]})
    assert (r["mock_reappended"], r["excess"]) == (0, 1)
    # Copies whose first copies are not adjacent (seq 0 and 2, then both again)
    # are not one batch either.
    a = FakeDevice("a", 1, 3)
    records = kafka([rec(a, 0, off=0), rec(a, 1, off=1), rec(a, 2, off=2), rec(a, 0, off=3),
                     rec(a, 2, off=4)], ts={3: 1000, 4: 1002})
    r = rel.reconcile([a], records, {0: [(5, 2)]})
    assert (r["mock_reappended"], r["excess"]) == (0, 2)


def stamped(r, ts):
    return r + (ts,)


def test_spool_replay_after_a_restart_is_counted_not_excess():
    # sent[:4] then, after a restart, sent[2:]: records 2 and 3 (same value
    # and timestamp: the spool keeps it) went again from the spool.
    d = FakeDevice("a", 1, 6)
    first = [stamped(rec(d, i), 100 + i) for i in range(4)]
    again = [stamped(rec(d, i, off=4 + i - 2), 100 + i) for i in range(2, 6)]
    r = rel.reconcile([d], first + again, spool_restarts=1)
    assert (r["spool_replayed"], r["dup_q1"], r["excess"], r["order"]) == (2, 0, 0, 0)
    assert r["violations"] == [] and r["in_kafka"] == 6
    # Without a restart the same records are a violation.
    r = rel.reconcile([d], first + again, spool_restarts=0)
    assert r["spool_replayed"] == 0 and r["excess"] == 2 and r["order"] >= 1


def test_spool_replay_needs_the_same_timestamps_and_one_run_per_restart():
    d = FakeDevice("a", 1, 6)
    first = [stamped(rec(d, i), 100 + i) for i in range(6)]
    # A copy produced anew (a later timestamp) is not a replay.
    r = rel.reconcile([d], first + [stamped(rec(d, 4, off=6), 999)], spool_restarts=1)
    assert (r["spool_replayed"], r["excess"]) == (0, 1)
    # Two separate runs, one restart: only the longer run is a replay.
    runs = [stamped(rec(d, 1, off=6), 101), stamped(rec(d, 2, off=7), 102),
            stamped(rec(d, 4, off=8), 104)]
    r = rel.reconcile([d], first + runs, spool_restarts=1)
    assert (r["spool_replayed"], r["excess"]) == (2, 1)


def test_spool_replays_of_two_workers_interleaved_in_one_partition():
    # Devices a and b live on two workers; after one restart each worker's
    # spool sends its device's unconfirmed tail again, and the two replays
    # interleave in the one partition: one run per device, not per partition.
    a, b = FakeDevice("a", 1, 4), FakeDevice("b", 1, 4)
    first = []
    for i in range(4):
        first += [stamped(rec(a, i, off=2 * i), 100 + i),
                  stamped(rec(b, i, off=2 * i + 1), 200 + i)]
    again = [stamped(rec(a, 2, off=8), 102), stamped(rec(b, 1, off=9), 201),
             stamped(rec(a, 3, off=10), 103), stamped(rec(b, 2, off=11), 202),
             stamped(rec(b, 3, off=12), 203)]
    r = rel.reconcile([a, b], first + again, spool_restarts=1)
    assert (r["spool_replayed"], r["excess"], r["order"], r["violations"]) == (5, 0, 0, [])
    # A second run of device a's records needs a second restart.
    more = [stamped(rec(a, 0, off=13), 100), stamped(rec(a, 1, off=14), 101)]
    r = rel.reconcile([a, b], first + again + more, spool_restarts=1)
    assert (r["spool_replayed"], r["excess"]) == (5, 2)
    r = rel.reconcile([a, b], first + again + more, spool_restarts=2)
    assert (r["spool_replayed"], r["excess"], r["violations"]) == (7, 0, [])
