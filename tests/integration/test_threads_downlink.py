"""downlink: and retained: with threads: 2 (docs/architecture.md, "Workers",
"The downlink across workers"): one consumer on worker 0 hands each record
to both workers' sessions; the retained store is one for the process. Each
test finds client ids that live on each worker (test_threads.served_on_both:
a client id lives on worker hash(id) mod 2) and asserts exact bytes, Kafka
topics and summed metrics. Every wait is bounded."""
import os
import signal
import subprocess

import m2k
from m2k import Raw
from test_downlink import produce
from test_metrics import scrape
from test_subscribe import started
from test_threads import THREADS, served_on_both

CONFIG = m2k.merge(THREADS, {
    "downlink": [{"kafka": "commands", "mqtt": "devices/{key}/commands"}],
    "retained": {"topic": "mqtt-retained"},
})
SUBACK1 = b"\x90\x03\x00\x01\x01"


def start(daemon, mock_kafka, extra=None):
    mock_kafka.cmd("create commands 2")
    mock_kafka.cmd("create mqtt-retained 1")
    d = daemon(m2k.merge(CONFIG, extra or {}))
    mport = started(d, "commands", "0..1")
    started(d, "mqtt-retained", "0..0", "beginning")
    return d, mport


def on_each(clients):
    """One (raw, id) served by worker 0 and one by worker 1."""
    return [next((c, cid) for c, cid, w in clients if w == i) for i in (0, 1)]


def test_check_accepts_threads_with_downlink_and_retained(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: embedded\nthreads: 2\n"
                   "downlink:\n  - kafka: commands\n    mqtt: devices/{key}/commands\n"
                   "retained:\n  topic: mqtt-retained\n")
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


def test_auto_with_the_downlink_is_every_cpu(daemon, mock_kafka):
    mock_kafka.cmd("create commands 2")
    d = daemon({"threads": 0, "downlink": CONFIG["downlink"]})
    n = min(len(os.sched_getaffinity(0)), 16)
    d.wait_log(m2k.line(f"threads: {n} (auto)", level="info"), since=0)


def test_records_reach_subscribers_on_both_workers(daemon, mock_kafka):
    """Every subscriber, on either worker, gets every record of a partition
    in offset order, exact bytes; the metrics add up over the workers."""
    d, mport = start(daemon, mock_kafka)
    clients = served_on_both(d, mport, "sub")
    for c, _, _ in clients:
        c.send(m2k.subscribe(1, [("devices/+/commands", 1)]))
        c.expect(SUBACK1)
    m2k.wait_until(lambda: scrape(mport).get("mqtt2kafka_subscriptions") == len(clients), 10,
                   f"{len(clients)} subscriptions")
    produce(mock_kafka.bootstrap, [("commands", 0, b"lamp", b"on", None),
                                   ("commands", 0, b"valve", b"shut", None),
                                   ("commands", 0, b"lamp", b"off", None)])
    want = (m2k.publish("devices/lamp/commands", b"on", qos=1, pid=1) +
            m2k.publish("devices/valve/commands", b"shut", qos=1, pid=2) +
            m2k.publish("devices/lamp/commands", b"off", qos=1, pid=3))
    for c, _, _ in clients:
        c.expect(want, timeout=15)
        c.send(m2k.puback(1) + m2k.puback(2) + m2k.puback(3))
        c.send(m2k.PINGREQ)
        c.expect(m2k.PINGRESP)  # nothing more
    s = scrape(mport)
    assert s['mqtt2kafka_downlink_records_consumed_total{topic="commands"}'] == 3
    assert s["mqtt2kafka_downlink_records_routed_total"] == 3
    assert s['mqtt2kafka_downlink_deliveries_total{qos="1"}'] == 3 * len(clients)
    assert s["mqtt2kafka_subscriptions"] == len(clients)
    assert s["mqtt2kafka_downlink_queued_messages"] == 0
    assert s["mqtt2kafka_downlink_fanout_waits_total"] == 0
    assert [s[f'mqtt2kafka_worker_downlink_records_total{{worker="{i}"}}'] for i in (0, 1)] == \
        [3, 3]
    for c, _, _ in clients:
        c.close()


def handed(mport):
    s = scrape(mport)
    return [s[f'mqtt2kafka_worker_downlink_records_total{{worker="{i}"}}'] for i in (0, 1)]


def test_a_worker_without_subscriptions_gets_no_record(daemon, mock_kafka):
    """Records go only to workers that hold a subscription: none to worker
    1 until its client subscribes (the next record reaches it), none again
    once it unsubscribed."""
    d, mport = start(daemon, mock_kafka)
    clients = served_on_both(d, mport, "only")
    (c0, _), (c1, _) = on_each(clients)
    c0.send(m2k.subscribe(1, [("devices/+/commands", 0)]))
    c0.expect(b"\x90\x03\x00\x01\x00")
    produce(mock_kafka.bootstrap, [("commands", 0, b"a", b"1", None),
                                   ("commands", 0, b"a", b"2", None)])
    c0.expect(m2k.publish("devices/a/commands", b"1") + m2k.publish("devices/a/commands", b"2"),
              timeout=15)
    assert handed(mport) == [2, 0]
    c1.send(m2k.subscribe(1, [("devices/+/commands", 0)]))
    c1.expect(b"\x90\x03\x00\x01\x00")
    produce(mock_kafka.bootstrap, [("commands", 0, b"a", b"3", None)])
    for c in (c0, c1):
        c.expect(m2k.publish("devices/a/commands", b"3"), timeout=15)
    assert handed(mport) == [3, 1]
    c1.send(m2k.unsubscribe(2, ["devices/+/commands"]))
    c1.expect(b"\xb0\x02\x00\x02")
    produce(mock_kafka.bootstrap, [("commands", 0, b"a", b"4", None)])
    c0.expect(m2k.publish("devices/a/commands", b"4"), timeout=15)
    c1.send(m2k.PINGREQ)
    c1.expect(m2k.PINGRESP)  # and no PUBLISH before it
    assert handed(mport) == [4, 1]
    for c, _, _ in clients:
        c.close()


def retained_count(mport, n):
    m2k.wait_until(lambda: scrape(mport).get("mqtt2kafka_retained_messages") == n, 15,
                   f"{n} retained messages")


def test_retained_set_through_either_worker_seen_on_the_other(daemon, mock_kafka):
    """A RETAIN 1 PUBLISH on worker 1 reaches a SUBSCRIBE on worker 0 and
    the other way round (its record and its copy in Kafka, the store one);
    retained.max_messages bounds the process's one store; a delete through
    one worker is seen on the other; a record written to the retained topic
    by another Kafka client reaches both."""
    d, mport = start(daemon, mock_kafka, {"retained": {"max_messages": 2}})
    clients = served_on_both(d, mport, "ret")
    (c0, id0), (c1, id1) = on_each(clients)
    c1.send(m2k.publish("test/r1", b"from1", qos=1, pid=1, retain=True))
    c1.expect(m2k.puback(1), timeout=15)
    c0.send(m2k.publish("test/r0", b"from0", qos=1, pid=1, retain=True))
    c0.expect(m2k.puback(1), timeout=15)
    retained_count(mport, 2)
    c0.send(m2k.subscribe(1, [("test/r1", 1)]))
    c0.expect(SUBACK1 + m2k.publish("test/r1", b"from1", qos=1, pid=1, retain=True))
    c0.send(m2k.puback(1))
    c1.send(m2k.subscribe(1, [("test/r0", 1)]))
    c1.expect(SUBACK1 + m2k.publish("test/r0", b"from0", qos=1, pid=1, retain=True))
    c1.send(m2k.puback(1))
    # A third topic: over retained.max_messages 2 for the process.
    mark = d.mark()
    c1.send(m2k.publish("test/r2", b"over", qos=1, pid=2, retain=True))
    c1.expect(m2k.puback(2), timeout=15)
    d.wait_log(m2k.line("retained: mqtt-retained [0] offset 2 not kept: retained.max_messages "
                        "or retained.max_bytes reached", level="warn"), since=mark)
    # A delete of worker 0's message through worker 1.
    c1.send(m2k.publish("test/r0", b"", qos=1, pid=3, retain=True))
    c1.expect(m2k.puback(3), timeout=15)
    retained_count(mport, 1)
    c0.send(m2k.subscribe(2, [("test/r0", 1)]))
    c0.expect(b"\x90\x03\x00\x02\x01")
    c0.send(m2k.PINGREQ)
    c0.expect(m2k.PINGRESP)  # no retained message
    # Straight into the retained topic: both workers' new subscriptions see it.
    produce(mock_kafka.bootstrap, [("mqtt-retained", 0, b"test/k", b"from kafka", None)])
    retained_count(mport, 2)
    for c in (c0, c1):
        c.send(m2k.subscribe(3, [("test/k", 0)]))
        c.expect(b"\x90\x03\x00\x03\x00" + m2k.publish("test/k", b"from kafka", retain=True))
    s = scrape(mport)
    assert s['mqtt2kafka_retained_updates_total{op="set"}'] == 3
    assert s['mqtt2kafka_retained_updates_total{op="delete"}'] == 1
    assert s['mqtt2kafka_retained_refused_total{reason="full"}'] == 1
    assert s["mqtt2kafka_retained_bytes"] == len("test/r1from1") + len("test/kfrom kafka")
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-retained", 5)
    assert [(r.key, r.value) for r in recs] == [
        (b"test/r1", b"from1"), (b"test/r0", b"from0"), (b"test/r2", b"over"),
        (b"test/r0", None), (b"test/k", b"from kafka")]
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 4)
    assert sorted(r.value for r in recs) == [b"", b"from0", b"from1", b"over"]
    for c, _, _ in clients:
        c.close()


def test_away_sessions_on_both_workers_queue_within_their_bound(daemon, mock_kafka):
    """Persistent sessions away on both workers: each queues the records
    (mqtt.max_queued_messages 2 per session: the third is refused), the
    summed gauges and counters say so, and each gets its two, in order,
    when it comes back through whichever worker accepts it."""
    d, mport = start(daemon, mock_kafka, {"mqtt": {"max_queued_messages": 2}})
    clients = served_on_both(d, mport, "away", clean=False)
    n = len(clients)
    for c, _, _ in clients:
        c.send(m2k.subscribe(1, [("devices/+/commands", 1)]))
        c.expect(SUBACK1)
        c.send(m2k.DISCONNECT)
        c.closed_within(5)
    m2k.wait_until(lambda: scrape(mport).get("mqtt2kafka_persistent_sessions") == n, 10,
                   f"{n} sessions kept")
    produce(mock_kafka.bootstrap, [("commands", 1, b"a", b"1", None),
                                   ("commands", 1, b"a", b"2", None),
                                   ("commands", 1, b"a", b"3", None)])
    m2k.wait_until(lambda: scrape(mport).get("mqtt2kafka_downlink_queued_messages") == 2 * n,
                   15, f"{2 * n} queued")
    s = scrape(mport)
    assert s['mqtt2kafka_downlink_dropped_total{reason="queue_full"}'] == n
    assert s['mqtt2kafka_downlink_records_consumed_total{topic="commands"}'] == 3
    for _, cid, _ in clients:
        c = Raw(d.port)
        c.send(m2k.connect(cid, clean=False))
        c.expect(m2k.CONNACK_OK_SESSION +
                 m2k.publish("devices/a/commands", b"1", qos=1, pid=1) +
                 m2k.publish("devices/a/commands", b"2", qos=1, pid=2), timeout=15)
        c.send(m2k.puback(1) + m2k.puback(2) + m2k.PINGREQ)
        c.expect(m2k.PINGRESP)
        c.close()
    s = scrape(mport)
    assert s["mqtt2kafka_downlink_queued_messages"] == 0
    assert s['mqtt2kafka_downlink_deliveries_total{qos="1"}'] == 2 * n


def test_sighup_and_sigterm_with_the_downlink(daemon, mock_kafka):
    """A reload parks both workers with records flowing to both; after it
    the subscribers on both still get records and the uplink takes the new
    map; SIGTERM then ends the process with status 0."""
    d, mport = start(daemon, mock_kafka)
    clients = served_on_both(d, mport, "hup")
    for c, _, _ in clients:
        c.send(m2k.subscribe(1, [("devices/+/commands", 0)]))
        c.expect(b"\x90\x03\x00\x01\x00")
    d.rewrite_config({"topics": [{"mqtt": "test/#", "kafka": "after"}]})
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line("reload: configuration applied (1 topic rules, unmapped disconnect, log "
                        "level info)", level="info"), since=mark)
    produce(mock_kafka.bootstrap, [("commands", 0, b"x", b"after hup", None)])
    for c, cid, _ in clients:
        c.expect(m2k.publish("devices/x/commands", b"after hup"), timeout=15)
        c.send(m2k.publish("test/x", cid.encode(), qos=1, pid=1))
        c.expect(m2k.puback(1), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "after", len(clients))
    assert sorted(r.value for r in recs) == sorted(cid.encode() for _, cid, _ in clients)
    assert scrape(mport)['mqtt2kafka_downlink_deliveries_total{qos="0"}'] == len(clients)
    mark = d.mark()
    d.proc.send_signal(signal.SIGTERM)
    for c, _, _ in clients:
        c.closed_within(15)
    assert d.stop(timeout=30) == 0
    d.wait_log(m2k.line("shutdown: %d records produced, %d delivered, 0 failed; closing %d "
                        "connections" % (len(clients), len(clients), len(clients)),
                        level="info"), since=mark)
