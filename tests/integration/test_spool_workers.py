"""The spool with threads: N (docs/architecture.md, "Workers"): a spool per
worker, client ids placed by the key in spool/workers so a restart finds
each client's records and QoS 2 ids on its worker; a restart with another
worker count while the spools hold records or ids keeps theirs; max_bytes
bounds the sum; records of each client in Kafka exactly once, in order."""
import re
import struct

import m2k
from m2k import Raw, publish, puback
from test_metrics import scrape
from test_spool import FAST_RECONNECT, per_client, publish_acked, sigterm_keeps, values_in_order
from test_spool_outage import DRAINED, SWITCH
from test_threads import serving

M64 = (1 << 64) - 1


def siphash24(key, data):
    """SipHash-2-4 (the daemon's m2k_siphash24) of bytes under a 16-byte key."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d,
         k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573]

    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    def rounds(n):
        for _ in range(n):
            v[0] = (v[0] + v[1]) & M64
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & M64
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & M64
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & M64
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m, = struct.unpack_from("<Q", data, i)
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    b = (len(data) << 56) & M64
    for i, c in enumerate(data[end:]):
        b |= c << (8 * i)
    v[3] ^= b
    rounds(2)
    v[0] ^= b
    v[2] ^= 0xff
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_siphash_reference_vector():
    # The reference implementation's first vectors (key 00..0f).
    key = bytes(range(16))
    assert siphash24(key, b"") == 0x726fdb47dd0e0e31
    assert siphash24(key, bytes(range(15))) == 0xa129ca6149be45e5


def layout(tmp_path):
    """(workers, key) from spool/workers."""
    text = (tmp_path / "spool" / "workers").read_text()
    m = re.fullmatch(r"mqtt2kafka spool workers 1\nworkers (\d+)\nkey ([0-9a-f]{32})\n", text)
    assert m, text
    return int(m.group(1)), bytes.fromhex(m.group(2))


def ids_on(tmp_path, per_worker, prefix="c"):
    """per_worker client ids for each worker, as spool/workers places them."""
    n, key = layout(tmp_path)
    ids = [[] for _ in range(n)]
    i = 0
    while min(len(x) for x in ids) < per_worker:
        cid = f"{prefix}{i}"
        w = siphash24(key, cid.encode()) % n
        if len(ids[w]) < per_worker:
            ids[w].append(cid)
        i += 1
    return ids


def cfg(tmp_path, threads, mode="outage", **spool):
    return {"threads": threads,
            "spool": {"dir": str(tmp_path / "spool"), "mode": mode, **spool},
            "kafka": {"properties": FAST_RECONNECT},
            "topics": [{"mqtt": "test/spool", "kafka": "test"}],
            "metrics": {"listen": "127.0.0.1:0"}}


def metrics_port(d):
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)  # a start-up line
    return int(m.group(1))


def keeps_count(tmp_path, d, written, configured):
    """d's start found records or QoS 2 ids written with `written` workers
    and runs that many, not the `configured` ones: both start-up lines."""
    d.wait_log(m2k.line(f"spool: {tmp_path / 'spool'} was written with threads: {written} and "
                        f"holds records or QoS 2 ids: running threads: {written}, not "
                        f"{configured}, until a start finds the spools empty", level="warn"),
               since=0)
    d.wait_log(m2k.line(f"threads: {written} (the spool's)", level="info"), since=0)


def killed(tmp_path, mock_kafka, over, name):
    """A daemon this test SIGKILLs (not the fixture's: its exit status is -9)."""
    return m2k.Daemon(tmp_path, mock_kafka.bootstrap, over, name=name)


def kill(d):
    d.proc.kill()
    d.proc.wait(10)
    d._log.close()


def count(d, pattern, level, since):
    return len(re.findall(m2k.line(pattern, level=level, regex=True), d.log(since), re.M))


def test_outage_spools_on_both_workers_then_drains_in_order_per_client(daemon, mock_kafka,
                                                                       tmp_path):
    d = daemon(cfg(tmp_path, 2))
    mport = metrics_port(d)
    ids = ids_on(tmp_path, 2)
    clients = ids[0] + ids[1]
    sent = {c: publish_acked(d.port, c, 3, prefix=c) for c in clients}  # to Kafka directly
    s = scrape(mport)
    assert (s["mqtt2kafka_spool_state"], s["mqtt2kafka_spool_records_spooled_total"]) == (0, 0)
    mark = d.mark()
    mock_kafka.cmd("down -1")
    m2k.wait_until(lambda: count(d, SWITCH.format(why=".*", n=r"\d+"), "warn", mark) == 2, 15,
                   "both workers on the spool")
    conns = {c: Raw(d.port).connect(c, keepalive=0) for c in clients}
    assert serving(mport) == [2, 2]  # where spool/workers places them
    for i in range(10):  # QoS 1 and 2, acked from each worker's spool
        for c in clients:
            pid, payload = i + 1, f"{c}-s{i}"
            if i % 3 == 0:
                conns[c].send(publish("test/spool", payload, qos=2, pid=pid))
                conns[c].expect(m2k.pubrec(pid), timeout=10)
                conns[c].send(m2k.pubrel(pid))
                conns[c].expect(m2k.pubcomp(pid))
            else:
                conns[c].send(publish("test/spool", payload, qos=1, pid=pid))
                conns[c].expect(puback(pid), timeout=10)
            sent[c].append(payload.encode())
    s = scrape(mport)
    assert s["mqtt2kafka_spool_records_spooled_total"] == 40
    assert s["mqtt2kafka_spool_records"] == 40
    assert s["mqtt2kafka_spool_state"] == 1
    assert s["mqtt2kafka_spool_outages_total"] == 1  # one outage, seen by each worker
    # Both spools hold records: worker 0's in spool/, worker 1's in spool/w1.
    segs = [len(list(p.glob("*.seg"))) for p in m2k.spool_dirs(tmp_path / "spool")]
    assert segs == [1, 1]
    mark = d.mark()
    mock_kafka.cmd("up -1")
    m2k.wait_until(lambda: count(d, DRAINED, "info", mark) == 2, 30,
                   "both workers back to Kafka directly")
    s = scrape(mport)
    assert (s["mqtt2kafka_spool_state"], s["mqtt2kafka_spool_records"]) == (0, 0)
    assert s["mqtt2kafka_spool_records_drained_total"] == 40
    # Each spool's checkpoint only, once the drained segments are deleted
    # (the newest after a checkpoint that covers it).
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_bytes"] == 2 * 24, 10,
                   "both spools' segments deleted")
    for c in clients:
        conns[c].send(publish("test/spool", f"{c}-after", qos=1, pid=100))
        conns[c].expect(puback(100), timeout=10)
        sent[c].append(f"{c}-after".encode())
        conns[c].send(m2k.DISCONNECT)
        conns[c].close()
    per_client(values_in_order(mock_kafka.bootstrap, 4 * 14), 2, *sent.values())


def test_sigkill_restarts_with_2_then_1_worker_keep_every_record_in_order(daemon, mock_kafka,
                                                                          tmp_path):
    """Run 1 (2 workers) and run 2 (2 workers) are SIGKILLed with every
    broker down; run 3 asks for 1 worker, finds records of 2 and runs 2;
    once the spools are empty, run 4 runs 1 and removes spool/w1. Every
    acked record once, each client's in order."""
    mock_kafka.cmd("down -1")
    d1 = killed(tmp_path, mock_kafka, cfg(tmp_path, 2), "first")
    try:
        ids = ids_on(tmp_path, 1)
        clients = ids[0] + ids[1]
        sent = {c: publish_acked(d1.port, c, 10, qos2_every=4, prefix=c) for c in clients}
    finally:
        kill(d1)
    d2 = killed(tmp_path, mock_kafka, cfg(tmp_path, 2), "second")
    try:
        d2.wait_log(m2k.line(f"spool: {tmp_path / 'spool'}, mode outage: 20 records (",
                             level="info")[:-1], since=0)  # a start-up line
        for c in clients:
            sent[c] += publish_acked(d2.port, c, 5, first=10, prefix=c)
    finally:
        kill(d2)
    mock_kafka.cmd("up -1")
    d3 = daemon(cfg(tmp_path, 1), name="third")
    mport = metrics_port(d3)
    keeps_count(tmp_path, d3, 2, 1)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 30,
                   "every worker's spool drained")
    for c in clients:
        sent[c] += publish_acked(d3.port, c, 3, first=15, prefix=c)
    assert d3.stop() == 0
    d4 = daemon(cfg(tmp_path, 1), name="fourth")
    d4.wait_log(m2k.line(f"spool: {tmp_path / 'spool' / 'w1'}: removed (empty; threads: 1 now)",
                         level="info"), since=0)  # a start-up line
    assert not (tmp_path / "spool" / "w1").exists()
    assert layout(tmp_path)[0] == 1
    for c in clients:
        sent[c] += publish_acked(d4.port, c, 2, first=18, prefix=c)
    assert not re.search(m2k.line("threads: .*", level="info", regex=True), d4.log(), re.M)
    per_client(values_in_order(mock_kafka.bootstrap, 2 * 20), 2, *sent.values())


def test_records_of_one_worker_keep_one_at_a_start_with_two(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d1 = killed(tmp_path, mock_kafka, cfg(tmp_path, 1), "first")
    try:
        sent = {c: publish_acked(d1.port, c, 8, prefix=c) for c in ("a", "b", "c")}
    finally:
        kill(d1)
    assert not (tmp_path / "spool" / "workers").exists()  # one worker: the layout before workers
    mock_kafka.cmd("up -1")
    d2 = daemon(cfg(tmp_path, 2), name="second")
    mport = metrics_port(d2)
    keeps_count(tmp_path, d2, 1, 2)
    for c in sent:
        sent[c] += publish_acked(d2.port, c, 2, first=8, prefix=c)
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 30,
                   "the spool drained")
    assert not (tmp_path / "spool" / "w1").exists()
    assert d2.stop() == 0
    d3 = daemon(cfg(tmp_path, 2), name="third")
    d3.wait_log(m2k.line("threads: 2", level="info"), since=0)  # a start-up line
    assert layout(tmp_path)[0] == 2 and (tmp_path / "spool" / "w1").is_dir()
    for c in sent:
        sent[c] += publish_acked(d3.port, c, 2, first=10, prefix=c)
    per_client(values_in_order(mock_kafka.bootstrap, 3 * 12), 2, *sent.values())


def test_sigterm_syncs_every_workers_spool(daemon, mock_kafka, tmp_path):
    mock_kafka.cmd("down -1")
    d1 = daemon(cfg(tmp_path, 2, mode="always"), name="first")
    ids = ids_on(tmp_path, 1, prefix="t")
    sent = {c: publish_acked(d1.port, c, 5, prefix=c) for c in (ids[0][0], ids[1][0])}
    sigterm_keeps(d1, 10)
    mock_kafka.cmd("up -1")
    d2 = daemon(cfg(tmp_path, 2, mode="always"), name="second")
    d2.wait_log(m2k.line(f"spool: {tmp_path / 'spool'}, mode always: 10 records (",
                         level="info")[:-1], since=0)  # a start-up line
    per_client(values_in_order(mock_kafka.bootstrap, 10), 2, *sent.values())


def test_qos2_ids_of_a_persistent_session_survive_a_restart_that_changes_threads(
        daemon, mock_kafka, tmp_path):
    """A persistent session on worker 1 holds id 7 between PUBREC and
    PUBREL at SIGTERM; a start with threads: 1 finds the id and keeps 2
    workers, the resend gets PUBREC without a second record; once the id is
    released, the next start runs 1 worker."""
    d1 = daemon(cfg(tmp_path, 2, mode="always"), name="first")
    mport = metrics_port(d1)
    cid = ids_on(tmp_path, 1, prefix="q")[1][0]
    cl = Raw(d1.port).connect(cid, clean=False, keepalive=0)
    cl.send(publish("test/spool", b"once", qos=2, pid=7))
    cl.expect(m2k.pubrec(7), timeout=10)
    assert serving(mport) == [0, 1]
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_spool_records"] == 0, 15,
                   "Kafka confirmed the record")
    cl.close()
    assert d1.stop() == 0
    w1 = tmp_path / "spool" / "w1"
    assert (w1 / "state.0").exists() or (w1 / "state.1").exists()  # the id, in worker 1's spool
    d2 = daemon(cfg(tmp_path, 1, mode="always"), name="second")
    keeps_count(tmp_path, d2, 2, 1)  # the id is in worker 1's spool
    d2.wait_log(m2k.line("spool: restored 1 sessions with 1 QoS 2 ids awaiting PUBREL "
                         "(0 not restored)", level="info"), since=0)
    cl = Raw(d2.port).connect(cid, clean=False, session_present=True, keepalive=0)
    cl.send(publish("test/spool", b"once", qos=2, pid=7, dup=True))
    cl.expect(m2k.pubrec(7), timeout=10)  # not produced again
    cl.send(m2k.pubrel(7))
    cl.expect(m2k.pubcomp(7))
    cl.send(m2k.DISCONNECT)
    cl.close()
    assert d2.stop() == 0
    d3 = daemon(cfg(tmp_path, 1, mode="always"), name="third")
    d3.wait_log(m2k.line(f"spool: {tmp_path / 'spool' / 'w1'}: removed (empty; threads: 1 now)",
                         level="info"), since=0)  # a start-up line
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"once"]


def test_max_bytes_bounds_every_worker_together(daemon, mock_kafka, tmp_path):
    """Brokers down, one publisher on each worker, each acked message
    300 bytes: the two spools together never pass max_bytes (each alone
    would take twice as many), both publishers end paused, nothing acked is
    lost and each client's records arrive in order once Kafka is back."""
    mock_kafka.cmd("down -1")
    d = daemon(cfg(tmp_path, 2, mode="always", max_bytes=8192))
    mport = metrics_port(d)
    ids = ids_on(tmp_path, 1, prefix="full")
    conns = [Raw(d.port).connect(ids[w][0], keepalive=0) for w in range(2)]
    sent = [[], []]
    paused = [False, False]
    for i in range(60):
        for w in range(2):
            if paused[w]:
                continue
            payload = f"{w}-{i:03d}".encode() + b"x" * 300
            conns[w].send(publish("test/spool", payload, qos=1, pid=i + 1))
            sent[w].append(payload)
            if conns[w].nothing_within(1.0):
                paused[w] = True
            else:
                conns[w].expect(puback(i + 1))
        if all(paused):
            break
    assert all(paused), [len(s) for s in sent]
    acked = len(sent[0]) + len(sent[1]) - 2
    s = scrape(mport)
    assert s["mqtt2kafka_spool_bytes"] <= 8192
    assert s["mqtt2kafka_spool_records"] == acked
    assert s["mqtt2kafka_spool_full_total"] >= 2
    assert min(len(x) for x in sent) >= 3
    mock_kafka.cmd("up -1")
    for w in range(2):
        conns[w].expect(puback(len(sent[w])), timeout=30)
        conns[w].send(m2k.DISCONNECT)
        conns[w].close()
    per_client(values_in_order(mock_kafka.bootstrap, len(sent[0]) + len(sent[1])), 2, *sent)
