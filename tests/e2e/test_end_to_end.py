"""The seed pipeline end to end (docs/end-to-end.md), every part real and on loopback:

    mqtt-bench --simulate sensors -> mqtt2kafka -> Apache Kafka (one KRaft node)
      -> Kafka Connect (standalone) with our CQL sink -> Apache Cassandra -> a CQL query

The configuration, the schema and the connector are the files of docs/end-to-end/,
with only the addresses replaced by the ports chosen here. Every wait is bounded;
logs stay in the test's directory (make test-e2e: build/e2e/).
"""
import datetime
import json
import os
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "kafka"))
import e2e_stack  # noqa: E402
import kafka_cluster  # noqa: E402
import m2k  # noqa: E402

DOC = os.path.join(m2k.SOURCE_DIR, "docs", "end-to-end")
BENCH = os.path.join(m2k.BUILD_DIR, "bench", "mqtt-bench")
DEVICES, PER_DEVICE = 10, 20  # 10 devices x (10 temperature + 10 brightness) readings
COLUMNS = {"temperature": ("sensor", "ts", "temperature", "unit"),
           "brightness": ("sensor", "ts", "brightness", "unit")}


def doc_connector(cassandra_port):
    """docs/end-to-end/cassandra-sink.properties with the test's CQL port."""
    props = {}
    with open(os.path.join(DOC, "cassandra-sink.properties")) as f:
        for ln in f:
            ln = ln.strip()
            if ln and not ln.startswith("#"):
                k, v = ln.split("=", 1)
                props[k] = v
    props["contact.points"] = f"127.0.0.1:{cassandra_port}"
    return props


def apply_schema(session):
    with open(os.path.join(DOC, "schema.cql")) as f:
        text = "\n".join(ln.split("--")[0] for ln in f)  # no "--" inside its strings
        for stmt in text.split(";"):
            if stmt.strip():
                session.execute(stmt)


def rows(session, table):
    cols = COLUMNS[table]
    return {tuple(r) for r in session.execute(f"SELECT {', '.join(cols)} FROM iot.{table}")}


def reading(table, payload):
    """A reading as the row it must become (ts in ms, as the driver's datetime)."""
    d = json.loads(payload)
    ts = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=d["ts"])
    return (d["sensor"], ts, d[table], d["unit"])


@pytest.fixture
def stack(tmp_path):
    """Kafka, Cassandra with the schema, Connect running the sink; all closed at the end."""
    libs = e2e_stack.fetch()
    closers = []
    try:
        k = kafka_cluster.Cluster(tmp_path / "kafka", nodes=1)
        closers.append(k.close)
        rk = kafka_cluster.RealKafka(k.bootstrap)
        for t in COLUMNS:
            rk.create_topic(t, partitions=2)
        c = e2e_stack.Cassandra(tmp_path / "cassandra", libs["cassandra"])
        closers.append(c.close)
        cluster, session = c.session()
        closers.append(cluster.shutdown)
        apply_schema(session)
        conn = e2e_stack.Connect(tmp_path / "connect", libs["connect"], libs["plugins"],
                                 k.bootstrap, doc_connector(c.port))
        closers.append(conn.close)
        conn.wait_running()
        yield k.bootstrap, session, conn
    finally:
        for close in reversed(closers):
            close()


def test_sensor_readings_reach_cassandra(tmp_path, stack):
    bootstrap, session, conn = stack
    with open(os.path.join(DOC, "mqtt2kafka.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["listeners"] = [{"listen": "127.0.0.1:0"}]
    cfg["kafka"]["bootstrap_servers"] = bootstrap
    del cfg["metrics"]  # a fixed port; not what this test checks
    d = m2k.Daemon(tmp_path, bootstrap, cfg, name="mqtt2kafka")
    try:
        r = subprocess.run([BENCH, "--simulate", "sensors", "-p", str(d.port),
                            "-c", str(DEVICES), "--count", str(PER_DEVICE),
                            "--interval-ms", "100", "-q", "1", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        pub = json.loads(r.stdout)["publish"]
        total = DEVICES * PER_DEVICE
        assert (pub["sent"], pub["acked"], pub["unacked"]) == (total, total, 0)

        # What Kafka holds is exactly what was acked: total / 2 readings a topic.
        want = {}
        for table in COLUMNS:
            recs = m2k.assert_records(bootstrap, table, total // 2)
            want[table] = {reading(table, rec.value) for rec in recs}
            assert len(want[table]) == total // 2, "two readings of one device share a ts"
            assert {rec.key.decode() for rec in recs} == {str(i) for i in range(DEVICES)}

        # Cassandra ends up with exactly those rows: none missing, none extra.
        for table in COLUMNS:
            m2k.wait_until(lambda t=table: conn.check_tasks()
                           and len(rows(session, t)) >= total // 2,
                           60, f"{total // 2} rows in iot.{table}")
            got = rows(session, table)
            assert got == want[table]
            newest = session.execute(f"SELECT {', '.join(COLUMNS[table])} FROM iot.{table} "
                                     "WHERE sensor = '7' LIMIT 2").all()
            print(f"iot.{table}: {len(got)} rows == {len(want[table])} records in Kafka; "
                  f"sensor 7, newest: {[tuple(r) for r in newest]}")
        s = conn.status()
        assert [t["state"] for t in s["tasks"]] == ["RUNNING"], s
    finally:
        assert d.stop() == 0
