"""The `make run` demo: the daemon on its embedded Kafka, fed by
mosquitto_pub, read back by kcat, as the README shows."""
import os
import re
import socket
import subprocess

import pytest
import yaml

import m2k


def demo_overrides(embedded_port=0):
    """The shipped config (when present) with embedded Kafka; its fixed
    embedded_port (19092) replaced, as parallel tests cannot share a port."""
    shipped = os.path.join(m2k.SOURCE_DIR, "config", "mqtt2kafka.yaml")
    overrides = {"kafka": {"bootstrap_servers": "embedded", "embedded_port": embedded_port}}
    if os.path.exists(shipped):
        with open(shipped) as f:
            base = yaml.safe_load(f)
        overrides = m2k.merge(base, overrides)
        overrides.pop("listeners", None)  # keep base_config's free loopback port
    return overrides


@pytest.fixture
def demo_daemon(tmp_path):
    """The shipped config (when present) on a free port with embedded Kafka."""
    d = m2k.Daemon(tmp_path, "embedded", demo_overrides())
    yield d
    rc = d.stop()
    assert not d.sanitizer_reports()
    assert rc == 0


def test_make_run_demo(demo_daemon):
    d = demo_daemon
    # Start-up lines: the whole log is the right scope.
    m = d.wait_log(m2k.line(r"embedded Kafka \(mock cluster\) listening on (\S+); read with: "
                            r"kcat -b \1 -C -t <topic>", level="info", regex=True), since=0)
    bootstrap = m.group(1)
    d.wait_log(m2k.line("embedded Kafka is librdkafka's in-memory mock cluster: for trying out "
                        "only, records are not durable and vanish when mqtt2kafka exits",
                        level="warn"), since=0)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-q", "1",
                    "-i", "demo", "-t", "sensors/1/temperature", "-m", "21.5"],
                   check=True, timeout=20)
    out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "temperature", "-c", "1", "-e",
                          "-f", "%k %s\\n"], check=True, timeout=30, capture_output=True, text=True)
    assert out.stdout == "1 21.5\n"
    assert d.stop() == 0


def test_embedded_port_relays_to_the_mock_cluster(tmp_path):
    """kafka.embedded_port: kcat bootstraps through 127.0.0.1:PORT (a relay to
    the first mock broker) and reads the records; the log names the command."""
    port = m2k.free_port()
    d = m2k.Daemon(tmp_path, "embedded", demo_overrides(port))
    try:
        m = d.wait_log(m2k.line(rf"embedded Kafka: bootstrap also on 127\.0\.0\.1:{port} "
                                r"\(relayed to (127\.0\.0\.1:\d+)\); read with: kcat -b "
                                rf"127\.0\.0\.1:{port} -C -t <topic>", level="info", regex=True),
                       since=0)
        first = m.group(1)
        d.wait_log(m2k.line(rf"embedded Kafka \(mock cluster\) listening on {re.escape(first)},"
                            r"\S+; read with: .*", level="info", regex=True), since=0)
        for i in range(3):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-q", "1",
                            "-i", f"s{i}", "-t", f"sensors/{i}/temperature", "-m", f"t{i}"],
                           check=True, timeout=20)
        out = subprocess.run(["kcat", "-b", f"127.0.0.1:{port}", "-C", "-t", "temperature",
                              "-c", "3", "-e", "-q", "-f", "%k %s\\n"], check=True, timeout=30,
                             capture_output=True, text=True)
        assert sorted(out.stdout.splitlines()) == ["0 t0", "1 t1", "2 t2"]
        recs = m2k.assert_records(f"127.0.0.1:{port}", "temperature", 3)
        assert sorted((r.key, r.value) for r in recs) == [(b"0", b"t0"), (b"1", b"t1"),
                                                          (b"2", b"t2")]
    finally:
        rc = d.stop()
    assert rc == 0 and not d.sanitizer_reports()


def test_embedded_port_in_use_fails_the_start(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        d = m2k.Daemon(tmp_path, "embedded", demo_overrides(port), serving=False)
        rc = d.proc.wait(30)
        d.stop()
    assert rc == 1
    assert re.search(m2k.line(f"embedded Kafka: kafka.embedded_port {port}: cannot listen on "
                              f"127.0.0.1:{port}: address already in use", level="error"),
                     d.log(), re.M), d.log()
    assert "listening on 127.0.0.1" not in d.log().replace("embedded Kafka (mock cluster) "
                                                           "listening on 127.0.0.1", "")
