"""The `make run` demo: the daemon on its embedded Kafka, fed by
mosquitto_pub, read back by kcat, as the README shows."""
import os
import subprocess

import pytest
import yaml

import m2k


@pytest.fixture
def demo_daemon(tmp_path):
    """The shipped config (when present) on a free port with embedded Kafka."""
    shipped = os.path.join(m2k.SOURCE_DIR, "config", "mqtt2kafka.yaml")
    overrides = {"kafka": {"bootstrap_servers": "embedded"}}
    if os.path.exists(shipped):
        with open(shipped) as f:
            base = yaml.safe_load(f)
        overrides = m2k.merge(base, overrides)
        overrides.pop("listeners", None)  # keep base_config's free loopback port
    d = m2k.Daemon(tmp_path, "embedded", overrides)
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
