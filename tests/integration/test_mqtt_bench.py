"""mqtt-bench against a real mosquitto on a free loopback port: the JSON
report must account for every PUBLISH (acked == sent, no errors). Skipped when
mosquitto is not installed."""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

BUILD = os.environ.get("M2K_BUILD_DIR", "build")
BENCH = os.path.join(BUILD, "bench", "mqtt-bench")
# scripts/install-deps.sh installs mosquitto for `make test`: no skip.
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nallow_anonymous true\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("mosquitto did not start")
            time.sleep(0.05)
    yield proc, port
    proc.terminate()
    proc.wait(timeout=10)


def bench(port, *args):
    r = subprocess.run([BENCH, "-p", str(port), "--json", *args], capture_output=True,
                       text=True, timeout=60)
    assert r.stderr == ""
    return r.returncode, json.loads(r.stdout)


def test_qos1_four_connections_every_publish_acked(broker):
    _, port = broker
    rc, rep = bench(port, "-q", "1", "-c", "4", "-d", "1.5")
    assert rc == 0
    assert rep["tool"] == "mqtt-bench" and rep["mode"] == "publish"
    assert rep["connect"] == {**rep["connect"], "attempted": 4, "connected": 4}
    pub = rep["publish"]
    assert pub["sent"] > 0
    assert pub["acked"] == pub["sent"]
    assert pub["unacked"] == 0
    assert rep["latency_us"]["count"] == pub["acked"]
    lat = rep["latency_us"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert rep["errors"]["total"] == 0
    assert rep["interrupted"] is False


def test_counted_runs_are_exact_for_each_qos(broker):
    _, port = broker
    for qos in (0, 1, 2):
        rc, rep = bench(port, "-q", str(qos), "-c", "3", "-n", "200", "-w", "8")
        assert rc == 0, rep
        assert rep["publish"]["sent"] == 600
        assert rep["publish"]["acked"] == (0 if qos == 0 else 600)
        assert rep["errors"]["total"] == 0
        if qos == 0:
            # every PINGREQ (one per batch plus the final one) was answered
            assert rep["publish"]["final_ping"] is True
            assert rep["pings"]["answered"] == rep["pings"]["sent"]
        else:
            assert rep["latency_us"]["count"] == 600


def test_idle_mode_reads_server_rss(broker):
    proc, port = broker
    rc, rep = bench(port, "-c", "50", "--idle", "0.3", "--server-pid", str(proc.pid))
    assert rc == 0
    assert rep["mode"] == "idle"
    assert rep["connect"]["connected"] == 50
    assert rep["server"]["pid"] == proc.pid
    assert rep["server"]["rss_kb_before"] > 0 and rep["server"]["rss_kb_after"] > 0


def test_refused_connections_are_counted():
    port = free_port()  # nothing listens there
    rc, rep = bench(port, "-c", "3", "-d", "0.2")
    assert rc == 1
    assert rep["connect"]["connected"] == 0
    assert rep["errors"]["connect_refused"] == 3
    assert rep["errors"]["total"] == 3
