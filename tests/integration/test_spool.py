"""The spool (`spool:`, mode `always`; mode `outage` in test_spool_outage.py): acked once fsync'ed, Kafka fed from
the spool in order, restarts replay what Kafka did not confirm, max_bytes
backpressure, and the refusal of an unusable directory."""
import re
import subprocess

import yaml

import m2k
from m2k import Raw, publish, puback
from test_metrics import http_get, scrape
from test_mqtt5 import connack5, connect5, reason5


def spool_cfg(tmp_path, **kw):
    return {"spool": {"dir": str(tmp_path / "spool"), "mode": "always", **kw}}


def run(*args):
    return subprocess.run([m2k.DAEMON, *args], capture_output=True, text=True, timeout=30)


# Rules without --check warnings (base_config's regex rule can render an
# illegal Kafka name, which --check warns about), so stderr is the error alone.
QUIET_TOPICS = [{"mqtt": "test/#", "kafka": "test"}]


def test_unusable_dir_is_refused_by_check_and_at_start(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    cases = [
        (tmp_path / "file", "cannot open the spool directory: Not a directory"),
        (tmp_path / "missing" / "spool", "cannot create the spool directory: No such file or "
                                         "directory"),
    ]
    for where, why in cases:
        cfg = m2k.merge(m2k.base_config(0, "embedded"),
                        {"spool": {"dir": str(where), "mode": "always"}, "topics": QUIET_TOPICS})
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # The spool section is the last key: its mapping starts at "dir".
        n = path.read_text().splitlines().index("spool:") + 2
        want = f"{path}:{n}:3: spool.dir: {where}: {why}\n"
        r = run("--check", "-c", str(path))
        assert (r.returncode, r.stdout + r.stderr) == (1, want)
        r = run("-c", str(path))
        assert r.returncode == 1
        assert r.stderr == want, r.stderr
    assert not (tmp_path / "missing").exists()


FAST_RECONNECT = {"linger.ms": 5, "reconnect.backoff.max.ms": 500}


def start(daemon, tmp_path, name=None, **spool):
    """A daemon with the spool (mode always) and a metrics listener; (d, metrics port)."""
    d = daemon(m2k.merge(spool_cfg(tmp_path, **spool),
                         {"kafka": {"properties": FAST_RECONNECT},
                          "topics": [{"mqtt": "test/spool", "kafka": "test"},
                                     {"mqtt": "test/other", "kafka": "test-other"}],
                          "metrics": {"listen": "127.0.0.1:0"}}), name=name)
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)  # a start-up line
    return d, int(m.group(1))


def publish_acked(port, client_id, n, first=0, qos2_every=0, prefix="m"):
    """n QoS 1 PUBLISH (every qos2_every-th one QoS 2) on test/spool, each
    acked before the next is sent; returns their payloads (prefix and a
    number) in order."""
    cl = Raw(port).connect(client_id, keepalive=0)
    sent = []
    for i in range(first, first + n):
        pid = i % 60000 + 1
        payload = f"{prefix}{i:05d}"
        if qos2_every and i % qos2_every == 0:
            cl.send(publish("test/spool", payload, qos=2, pid=pid))
            cl.expect(m2k.pubrec(pid), timeout=10)
            cl.send(m2k.pubrel(pid))
            cl.expect(m2k.pubcomp(pid))
        else:
            cl.send(publish("test/spool", payload, qos=1, pid=pid))
            cl.expect(puback(pid), timeout=10)
        sent.append(payload.encode())
    cl.send(m2k.DISCONNECT)
    cl.close()
    return sent


def values_in_order(bootstrap, n, topic="test"):
    recs = m2k.assert_records(bootstrap, topic, n, timeout=30)
    assert len({r.partition for r in recs}) == 1  # one MQTT topic, one key, one partition
    return [r.value for r in sorted(recs, key=lambda r: r.offset)]


def per_client(got, workers, *clients):
    """got (the values in Kafka's order) against each client's acked
    payloads: with one worker exactly their concatenation; with threads: N
    each client's in its own order (clients on different workers drain
    side by side), every one once."""
    if workers == 1:
        assert got == [v for c in clients for v in c]
        return
    assert sorted(got) == sorted(v for c in clients for v in c)
    assert [[v for v in got if v in set(c)] for c in clients] == list(clients)


def test_acked_from_the_spool_while_every_broker_is_down_then_in_order(daemon, mock_kafka,
                                                                          tmp_path):
    mock_kafka.cmd("down -1")
    d, mport = start(daemon, tmp_path)
    sent = publish_acked(d.port, "spooled", 60, qos2_every=3)
    s = scrape(mport)
    assert s["mqtt2kafka_spool_records_spooled_total"] == 60
    assert s["mqtt2kafka_spool_records"] == 60
    assert s["mqtt2kafka_spool_records_drained_total"] == 0
    assert s["mqtt2kafka_spool_bytes"] > 60 * 20
    # Acked from the spool: ready while Kafka is down.
    assert http_get(mport, "/readyz")[0] == 200
    mock_kafka.cmd("up -1")
    assert values_in_order(mock_kafka.bootstrap, 60) == sent
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 15,
                   "the spool confirms every record")
    s = scrape(mport)
    assert s["mqtt2kafka_spool_records_drained_total"] == 60
    # The checkpoint (one per worker's spool) only: the segments are deleted.
    assert s["mqtt2kafka_spool_bytes"] == 24 * m2k.workers(d)
    assert s["mqtt2kafka_spool_oldest_record_age_seconds"] == 0
    # New records keep their place behind the drained ones.
    sent += publish_acked(d.port, "later", 5, first=60)
    assert values_in_order(mock_kafka.bootstrap, 65) == sent


def test_sigkill_after_acks_with_brokers_down_then_restart_sends_every_acked_record(
        daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    over = m2k.merge(spool_cfg(tmp_path), {"kafka": {"properties": FAST_RECONNECT}})
    # Not the fixture's: this one is SIGKILLed, its exit status is -9.
    d1 = m2k.Daemon(tmp_path, mock_kafka.bootstrap, over, name="killed")
    try:
        sent = publish_acked(d1.port, "before", 40, qos2_every=4)
    finally:
        d1.proc.kill()
        d1.proc.wait(10)
        d1._log.close()
    mock_kafka.cmd("up -1")
    d2, mport = start(daemon, tmp_path, name="restarted")
    # A start-up line: the spool found every acked record.
    d2.wait_log(m2k.line(f"spool: {tmp_path / 'spool'}, mode always: 40 records (", level="info",
                         regex=False)[:-1], since=0)
    after = publish_acked(d2.port, "after", 5, first=40)
    # Brokers were down for the whole first run: nothing was confirmed, so
    # nothing goes twice; the spooled records go before the new ones (with
    # threads: N, each client's: "after" may live on another worker).
    per_client(values_in_order(mock_kafka.bootstrap, 45), m2k.workers(d2), sent, after)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 15,
                   "the spool confirms every record")


def sigterm_keeps(d, n):
    """SIGTERM: exit status 0 and the line that counts the n records every
    worker's spool keeps for the next start."""
    mark = d.mark()
    assert d.stop() == 0
    assert re.search(m2k.line(f"Terminated: stopping; the spool is synced and keeps {n} records "
                              "Kafka has not confirmed for the next start", level="info"),
                     d.log(mark), re.M)


def test_sigterm_syncs_and_keeps_what_kafka_did_not_confirm(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d1, _ = start(daemon, tmp_path, name="first")
    sent = publish_acked(d1.port, "c", 10)
    sigterm_keeps(d1, 10)
    mock_kafka.cmd("up -1")
    start(daemon, tmp_path, name="second")
    assert values_in_order(mock_kafka.bootstrap, 10) == sent


def test_the_feed_reads_the_files_after_a_restart_and_memory_while_it_keeps_up(
        daemon, mock_kafka, tmp_path):
    """The records a restart finds are read back from the segment files; the
    records appended after it reach Kafka from the writer's memory (the
    spool counts both, in its line at shutdown). One client id, so one
    worker's spool (spool.dir, or spool.dir/w<k> with threads: N) holds all;
    each other worker's spool fed nothing and says nothing."""
    mock_kafka.cmd("down -1")
    d1, _ = start(daemon, tmp_path, name="first")
    sent = publish_acked(d1.port, "feed", 10)
    assert d1.stop() == 0
    mock_kafka.cmd("up -1")
    d2, _ = start(daemon, tmp_path, name="second")
    assert values_in_order(mock_kafka.bootstrap, 10) == sent
    sent += publish_acked(d2.port, "feed", 5, first=10)
    assert values_in_order(mock_kafka.bootstrap, 15) == sent
    mark = d2.mark()
    assert d2.stop() == 0
    fed = m2k.line(r"spool: \S+: \d+ records fed from memory, \d+ read from the files",
                   level="info", regex=True)
    assert len(re.findall(fed, d2.log(mark), re.M)) == 1, d2.log(mark)
    assert re.search(m2k.line(re.escape(f"spool: {tmp_path / 'spool'}") + r"(/w\d+)?: 5 records "
                              "fed from memory, 10 read from the files", level="info", regex=True),
                     d2.log(mark), re.M)


def test_max_bytes_pauses_qos1_without_ack_drops_qos0_and_loses_nothing(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d, mport = start(daemon, tmp_path, max_bytes=4096)
    cl = Raw(d.port).connect("full", keepalive=0)
    sent = []
    for i in range(100):
        payload = f"{i:03d}".encode() + b"x" * 300
        cl.send(publish("test/spool", payload, qos=1, pid=i + 1))
        sent.append(payload)
        if cl.nothing_within(1.0):
            break
        cl.expect(puback(i + 1))
    acked = len(sent) - 1
    assert 3 <= acked < 100, acked
    s = scrape(mport)
    assert s["mqtt2kafka_spool_full_total"] >= 1
    assert s["mqtt2kafka_spool_bytes"] <= 4096
    assert s["mqtt2kafka_spool_records"] == acked
    assert http_get(mport, "/readyz") == (
        503, "not ready: the spool is full (spool.max_bytes or the disk)\n")
    # QoS 0 (no smaller than the refused message, so it cannot fit where
    # that one did not) is dropped, counted and logged; its client is read on.
    q0 = Raw(d.port).connect("qos0", keepalive=0)
    before = scrape(mport)["mqtt2kafka_spool_full_total"]
    mark = d.mark()
    for _ in range(3):
        q0.send(publish("test/other", b"q0" + b"x" * 300, qos=0))
    q0.send(m2k.PINGREQ)
    q0.expect(m2k.PINGRESP)  # read after the three: not paused
    d.wait_log(m2k.line("dropped a QoS 0 message on topic 'test/other': the spool is full",
                        level="warn", client="qos0"), since=mark)
    s = scrape(mport)
    assert s["mqtt2kafka_spool_qos0_dropped_total"] == 3
    assert s["mqtt2kafka_spool_full_total"] >= before + 3
    assert s["mqtt2kafka_spool_records"] == acked  # the QoS 1 message still waits, unacked
    # Kafka back: the spool drains, gives its space back, the paused
    # message is taken and acked; every acked message once, in order.
    mock_kafka.cmd("up -1")
    cl.expect(puback(len(sent)), timeout=30)
    cl.send(m2k.DISCONNECT)
    cl.close()
    assert values_in_order(mock_kafka.bootstrap, len(sent)) == sent
    # Room again: QoS 0 goes; the dropped ones never reach Kafka.
    q0.send(publish("test/other", b"after", qos=0))
    q0.send(m2k.DISCONNECT)
    q0.close()
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test-other", 1)] == [
        b"after"]
    assert scrape(mport)["mqtt2kafka_spool_qos0_dropped_total"] == 3
    m2k.wait_until(lambda: http_get(mport, "/readyz")[0] == 200, 10, "ready again")


def test_max_bytes_answers_mqtt5_with_0x97_and_reads_on(daemon, mock_kafka, tmp_path):
    """MQTT 5 at a full spool: PUBACK/PUBREC 0x97 quota exceeded with its
    reason string, the client read on (3.1.1 waits paused, above); nothing
    refused is in Kafka, nothing acked is lost."""
    mock_kafka.cmd("down -1")
    d, mport = start(daemon, tmp_path, max_bytes=4096)
    cl = Raw(d.port)
    cl.send(connect5("full5"))
    assert cl.recv_packet() == connack5()
    why = "the spool is full (spool.max_bytes or the disk)"
    sent = []
    mark = d.mark()
    for i in range(100):
        payload = f"{i:03d}".encode() + b"x" * 300
        cl.send(m2k.packet(0x32, m2k.enc_str("test/spool") + (i + 1).to_bytes(2, "big") +
                           b"\x00" + payload))
        got = cl.recv_packet(timeout=10)
        if got != puback(i + 1):
            assert got == reason5(0x40, 0x97, why, pid=i + 1)
            break
        sent.append(payload)
    assert 3 <= len(sent) < 100, len(sent)
    d.wait_log(m2k.line("refused a QoS 1 message on topic 'test/spool': the spool is full "
                        "(0x97)", level="warn", client="full5"), since=mark)
    cl.send(m2k.packet(0x34, m2k.enc_str("test/spool") + b"\x00\x65\x00" + b"q2" * 200))
    cl.expect(reason5(0x50, 0x97, why, pid=0x65))
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # read on: not paused
    assert scrape(mport)["mqtt2kafka_spool_records"] == len(sent)
    # Kafka back: the spool drains and gives its space back; the refused
    # message, sent again, is taken.
    mock_kafka.cmd("up -1")
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 30, "spool drained")
    again = b"again" + b"x" * 300
    cl.send(m2k.packet(0x32, m2k.enc_str("test/spool") + b"\x01\x00\x00" + again))
    cl.expect(puback(0x100), timeout=10)
    cl.send(m2k.DISCONNECT)
    cl.close()
    assert values_in_order(mock_kafka.bootstrap, len(sent) + 1) == sent + [again]


def test_failed_deliveries_rewind_the_feed_and_keep_the_order(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d = daemon(m2k.merge(spool_cfg(tmp_path),
                         {"kafka": {"properties": {**FAST_RECONNECT,
                                                   "message.timeout.ms": 1000}}}))
    mark = d.mark()
    sent = publish_acked(d.port, "rw", 20)
    d.wait_log(m2k.line("spool: Kafka did not take record 1 (Local: Message timed out); the feed "
                        "starts again from the first record not confirmed once the records in "
                        "flight are back", level="warn"), since=mark)
    d.wait_log(m2k.line("spool: the feed to Kafka starts again after record 0", level="info"),
               since=mark)
    mock_kafka.cmd("up -1")
    # Nothing was delivered before the failures: every record once, in order.
    assert values_in_order(mock_kafka.bootstrap, 20) == sent


def test_sigkill_while_draining_duplicates_only_what_was_not_checkpointed(daemon, mock_kafka,
                                                                          tmp_path):
    over = m2k.merge(spool_cfg(tmp_path), {"kafka": {"properties": FAST_RECONNECT}})
    d1 = m2k.Daemon(tmp_path, mock_kafka.bootstrap, over, name="killed")  # SIGKILLed: not the fixture's
    try:
        sent = publish_acked(d1.port, "drain", 200)
    finally:
        d1.proc.kill()
        d1.proc.wait(10)
        d1._log.close()
    d2, mport = start(daemon, tmp_path, name="restarted")
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 20,
                   "the spool confirms every record")
    n = scrape(mport)["mqtt2kafka_spool_records_drained_total"]
    # Kafka holds sent[:k] from the first run, then sent[c:] from the
    # restart (c = the checkpoint, c <= k): the k - c records Kafka confirmed
    # after the last checkpoint go twice, no record is missing or reordered.
    recs, total = m2k.read_topic(mock_kafka.bootstrap, "test", 200, timeout=30, settle=1.0)
    assert len(recs) == total and len({r.partition for r in recs}) == 1
    got = [r.value for r in sorted(recs, key=lambda r: r.offset)]
    c = 200 - int(n)
    k = len(got) - int(n)
    assert 0 <= c <= k <= 200
    assert got == sent[:k] + sent[c:], f"first run {k}, checkpoint {c}"
    print(f"duplicates after SIGKILL while draining: {k - c} (first run delivered {k}, "
          f"checkpoint {c})")


def test_corrupt_record_is_skipped_logged_and_counted(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d1, _ = start(daemon, tmp_path, name="first")
    sent = publish_acked(d1.port, "flip", 5)
    assert d1.stop() == 0
    # In the spool of the client's worker (threads: N: spool/w<k> for k > 0).
    seg, = [d / "00000000000000000001.seg" for d in m2k.spool_dirs(tmp_path / "spool")
            if (d / "00000000000000000001.seg").exists()]
    data = bytearray(seg.read_bytes())
    at = data.index(b"m00002")
    data[at] ^= 0x01
    seg.write_bytes(bytes(data))
    mock_kafka.cmd("up -1")
    d2, mport = start(daemon, tmp_path, name="second")
    d2.wait_log(m2k.line(rf"spool: {seg}: corrupt record at offset \d+ \(bad frame\): \d+ bytes skipped",
                         level="error", regex=True), since=0)  # a start-up line
    assert scrape(mport)["mqtt2kafka_spool_corrupt_records_skipped_total"] == 1
    assert values_in_order(mock_kafka.bootstrap, 4) == sent[:2] + sent[3:]
