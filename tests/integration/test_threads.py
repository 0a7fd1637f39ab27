"""threads: 2 (docs/architecture.md, "Workers"): two event loops, each with
its own listening socket (SO_REUSEPORT), sessions and producer. The kernel
spreads connections by their source port; a client id lives on the worker
its keyed hash names, so a connection whose CONNECT landed on the other one
is handed over before anything else happens. Which worker accepted a
connection is read from mqtt2kafka_worker_connections_accepted_total."""
import signal
import subprocess
import time

import m2k
from m2k import Raw, connect, publish, puback, pubrec, pubrel, pubcomp
from test_metrics import scrape

THREADS = {"threads": 2, "metrics": {"listen": "127.0.0.1:0"}}


def start(daemon, **over):
    d = daemon(m2k.merge(THREADS, over))
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return d, int(m.group(1))


def accepted(mport):
    s = scrape(mport)
    return [int(s[f'mqtt2kafka_worker_connections_accepted_total{{worker="{i}"}}'])
            for i in range(2)]


def serving(mport):
    s = scrape(mport)
    return [int(s[f'mqtt2kafka_worker_connections{{worker="{i}"}}']) for i in range(2)]


def open_on(d, mport, worker, keep):
    """A raw connection (no CONNECT yet) that worker `worker` accepted; the
    ones that landed on the other worker go to `keep` (closed by the test)."""
    for _ in range(40):
        before = accepted(mport)
        c = Raw(d.port)
        m2k.wait_until(lambda: sum(accepted(mport)) == sum(before) + 1, 10,
                       "the connection counted by a worker")
        after = accepted(mport)
        if after[worker] == before[worker] + 1:
            return c
        keep.append(c)
    raise AssertionError(f"40 connections, none accepted by worker {worker}")


def test_check_refuses_threads_with_the_spool(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: embedded\n"
                   f"spool:\n  dir: {tmp_path}/spool\n"
                   "threads: 2\n")
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"{cfg}:5:10: threads: 2: the spool (spool:) runs on one worker for now; "
                        "set threads: 1 (or 0: auto, which gives 1)\n")


def test_auto_with_the_spool_is_one_worker(daemon, tmp_path):
    d = daemon({"threads": 0, "spool": {"dir": str(tmp_path / "spool")}})
    d.wait_log(m2k.line(r"threads: 1 \(spool: runs on one worker\)", level="info", regex=True),
               since=0)


def test_connections_spread_and_every_record_in_kafka(daemon, mock_kafka):
    """40 connections: both workers accept some; each publishes 5 QoS 1
    messages under its own key; every acked record is in Kafka, in order
    per connection, and the summed metrics count exactly."""
    d, mport = start(daemon)
    n, per = 40, 5
    conns = []
    for i in range(n):
        c = Raw(d.port)
        c.connect(f"spread{i}")
        conns.append(c)
    for p in range(1, per + 1):
        for i, c in enumerate(conns):
            c.send(publish(f"sensors/c{i}/temperature", f"c{i}-{p}".encode(), qos=1, pid=p))
    for c in conns:
        for p in range(1, per + 1):
            c.expect(puback(p), timeout=15)
    acc = accepted(mport)
    assert sum(acc) == n and min(acc) > 0, acc
    assert sum(serving(mport)) == n
    assert min(serving(mport)) > 0
    recs = m2k.assert_records(mock_kafka.bootstrap, "temperature", n * per)
    by_key = {}
    for r in recs:
        by_key.setdefault(r.key.decode(), []).append(r.value.decode())
    for i in range(n):
        assert by_key[f"c{i}"] == [f"c{i}-{p}" for p in range(1, per + 1)]
    s = scrape(mport)
    assert s['mqtt2kafka_messages_received_total{qos="1"}'] == n * per
    assert s["mqtt2kafka_kafka_records_delivered_total"] == n * per
    assert s["mqtt2kafka_connections"] == n
    assert s["mqtt2kafka_connections_total"] == n
    for c in conns:
        c.close()
