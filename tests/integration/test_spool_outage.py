"""The spool in `mode: outage` (the default): Kafka directly while it takes
records, the spool while it cannot (every broker down, a retriable delivery
error, a hung broker), records in the producer taken back at the switch and
spooled ahead of newer ones, the spool drained in order when Kafka is back,
then Kafka directly again; a start with Kafka unreachable serves at once."""
import re
import subprocess

import yaml

import m2k
from m2k import Raw, publish, puback
from test_metrics import http_get, scrape
from test_spool import FAST_RECONNECT, QUIET_TOPICS, per_client, publish_acked, values_in_order

SWITCH = (r"spool: Kafka cannot take records \({why}\): switching to the spool, records are "
          r"acknowledged once fsync'ed; {n} records taken back from the producer")
DRAINED = r"spool: drained; records go to Kafka directly again after \d+\.\d s on the spool"


def start(daemon, tmp_path, bootstrap=None, props=None, **spool):
    """A daemon with the spool in its default mode (outage) and a metrics
    listener; (d, metrics port)."""
    d = daemon(m2k.merge({"spool": {"dir": str(tmp_path / "spool"), **spool}},
                         {"kafka": {"properties": {**FAST_RECONNECT, **(props or {})}},
                          "topics": [{"mqtt": "test/spool", "kafka": "test"}],
                          "metrics": {"listen": "127.0.0.1:0"}}), bootstrap=bootstrap)
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)  # a start-up line
    return d, int(m.group(1))


def first_copies(values):
    """The values with every repeat of an earlier one left out."""
    seen = set()
    return [v for v in values if not (v in seen or seen.add(v))]


def test_check_accepts_outage_without_touching_the_dir(tmp_path):
    cfg = m2k.merge(m2k.base_config(0, "embedded"),
                    {"spool": {"dir": str(tmp_path / "s")}, "topics": QUIET_TOPICS})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stderr) == (0, "")
    assert not (tmp_path / "s").exists()


def test_brokers_down_takes_back_the_producer_spools_and_drains_in_order(daemon, mock_kafka,
                                                                        tmp_path):
    d, mport = start(daemon, tmp_path)
    # Kafka takes records: acked on its report, nothing written to the spool.
    direct = publish_acked(d.port, "direct", 10, qos2_every=3)
    s = scrape(mport)
    assert (s["mqtt2kafka_spool_state"], s["mqtt2kafka_spool_records_spooled_total"]) == (0, 0)
    assert s["mqtt2kafka_spool_bytes"] == 24 * m2k.workers(d)  # each spool's checkpoint only
    # 20 records held by the producer (their Produce requests fail with a
    # retriable error, which librdkafka retries) when every broker goes down.
    mock_kafka.cmd("push_errors Produce 64 NOT_ENOUGH_REPLICAS")
    cl = Raw(d.port).connect("inflight", keepalive=0)
    held = [f"h{i:03d}".encode() for i in range(20)]
    for i, payload in enumerate(held):
        cl.send(publish("test/spool", payload, qos=1, pid=i + 1))
    key = "mqtt2kafka_kafka_records_produced_total"
    m2k.wait_until(lambda: scrape(mport)[key] == 30, 10, "the 20 records are with the producer")
    assert cl.nothing_within(0.3), "acknowledged before Kafka or the spool had the records"
    mark = d.mark()
    mock_kafka.cmd("down -1")
    d.wait_log(m2k.line(SWITCH.format(why="Kafka unreachable: .*", n=20), level="warn",
                        regex=True), since=mark)
    for i in range(20):  # from the spool, in order
        cl.expect(puback(i + 1), timeout=10)
    cl.send(m2k.DISCONNECT)
    cl.close()
    # threads: N: each worker switches on its own producer's signal; once
    # every one has, nothing more is taken back.
    switch = re.compile(m2k.line(SWITCH.format(why=".*", n=r"\d+"), level="warn", regex=True),
                        re.M)
    m2k.wait_until(lambda: len(switch.findall(d.log(mark))) == m2k.workers(d), 10,
                   "every worker on the spool")
    # While the brokers are down: QoS 1 and QoS 2 acked from the spool.
    spooled = publish_acked(d.port, "spooled", 10, first=30, qos2_every=2)
    s = scrape(mport)
    assert s["mqtt2kafka_spool_state"] == 1
    assert s["mqtt2kafka_spool_outages_total"] == 1
    assert s["mqtt2kafka_spool_records_taken_back_total"] == 20
    assert s["mqtt2kafka_spool_records_spooled_total"] == 30
    assert s["mqtt2kafka_spool_records"] == 30
    assert http_get(mport, "/readyz")[0] == 200  # the spool takes records
    mark = d.mark()
    mock_kafka.cmd("clear_errors Produce")
    mock_kafka.cmd("up -1")
    drained = re.compile(m2k.line(DRAINED, level="info", regex=True), re.M)
    m2k.wait_until(lambda: len(drained.findall(d.log(mark))) == m2k.workers(d), 30,
                   "every worker back to Kafka directly")
    s = scrape(mport)
    assert (s["mqtt2kafka_spool_state"], s["mqtt2kafka_spool_records"]) == (0, 0)
    assert s["mqtt2kafka_spool_records_drained_total"] == 30
    # Kafka directly again, behind the drained records.
    after = publish_acked(d.port, "after", 5, first=40)
    s = scrape(mport)
    assert s["mqtt2kafka_spool_records_spooled_total"] == 30
    # Kafka confirmed 15 sent directly and 30 from the spool.
    assert s["mqtt2kafka_kafka_records_delivered_total"] == 45
    # The errored requests wrote nothing and the brokers were down: every
    # acked record once, in the order it was acked, across both switches.
    per_client(values_in_order(mock_kafka.bootstrap, 45), m2k.workers(d), direct, held, spooled,
               after)


def test_hung_broker_switches_after_outage_after_ms(daemon, mock_kafka, tmp_path):
    d, mport = start(daemon, tmp_path, outage_after_ms=1000)
    sent = publish_acked(d.port, "warm", 3)
    mock_kafka.cmd("rtt -1 4000")
    mark = d.mark()
    cl = Raw(d.port).connect("hung", keepalive=0)
    for i in range(5):
        cl.send(publish("test/spool", f"slow{i}", qos=1, pid=i + 1))
    d.wait_log(m2k.line(SWITCH.format(why=r"a record waited \d+ ms for its delivery report",
                                      n=5), level="warn", regex=True), since=mark)
    for i in range(5):
        cl.expect(puback(i + 1), timeout=10)
    sent += [f"slow{i}".encode() for i in range(5)]
    s = scrape(mport)
    assert s["mqtt2kafka_spool_records_taken_back_total"] == 5
    maybe = s["mqtt2kafka_spool_records_maybe_twice_total"]
    assert maybe <= 5
    mark = d.mark()
    mock_kafka.cmd("rtt -1 0")
    d.wait_log(m2k.line(DRAINED, level="info", regex=True), since=mark, timeout=30)
    cl.send(m2k.DISCONNECT)
    cl.close()
    sent += publish_acked(d.port, "after", 3, first=10)
    # Records taken back from flight that the broker wrote anyway appear
    # twice (counted); every acked record is there, first copies in order.
    recs, total = m2k.read_topic(mock_kafka.bootstrap, "test", len(sent), timeout=30, settle=1.0)
    got = [r.value for r in sorted(recs, key=lambda r: r.offset)]
    assert len(recs) == total and len({r.partition for r in recs}) == 1
    assert first_copies(got) == sent
    assert len(got) - len(sent) <= maybe
    print(f"hung broker: {maybe} records taken back from flight, {len(got) - len(sent)} twice")


def test_start_with_kafka_unreachable_serves_at_once(daemon, tmp_path):
    closed = m2k.free_port()
    d, mport = start(daemon, tmp_path, bootstrap=f"127.0.0.1:{closed}")
    d.wait_log(m2k.line(f"spool: {tmp_path / 'spool'}, mode outage: 0 records ({24 * m2k.workers(d)} bytes) to send "
                        f"to Kafka first; not waiting for Kafka metadata from 127.0.0.1:{closed}",
                        level="info"), since=0)  # a start-up line
    cl = Raw(d.port).connect("early", keepalive=0)
    cl.send(publish("test/spool", "first", qos=1, pid=1))
    cl.expect(puback(1), timeout=10)
    cl.send(publish("test/spool", "second", qos=2, pid=2))
    cl.expect(m2k.pubrec(2), timeout=10)
    cl.send(m2k.pubrel(2))
    cl.expect(m2k.pubcomp(2))
    s = scrape(mport)
    assert s["mqtt2kafka_spool_state"] == 1
    assert s["mqtt2kafka_spool_records"] == 2
    assert http_get(mport, "/readyz")[0] == 200


def test_sigterm_waits_for_the_records_sent_directly(daemon, mock_kafka, tmp_path):
    """Records with the producer when SIGTERM comes (no outage) are waited
    for as without a spool, acked on Kafka's reports; the spool stays empty."""
    d, mport = start(daemon, tmp_path, outage_after_ms=60000)
    sent = publish_acked(d.port, "warm", 1)
    mock_kafka.cmd("rtt -1 500")
    cl = Raw(d.port).connect("term", keepalive=0)
    n = 10
    cl.send(b"".join(publish("test/spool", f"t{i}", qos=1, pid=i) for i in range(1, n + 1)))
    key = "mqtt2kafka_kafka_records_produced_total"
    m2k.wait_until(lambda: scrape(mport)[key] == n + 1, 10, "the records are with the producer")
    m2k.sigterm_with_acks_in_flight(d, cl, n)
    mock_kafka.cmd("rtt -1 0")
    assert values_in_order(mock_kafka.bootstrap, n + 1) == sent + [b"t%d" % i
                                                                   for i in range(1, n + 1)]
    assert m2k.spool_files(tmp_path / "spool") == []  # nothing was spooled
