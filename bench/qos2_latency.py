#!/usr/bin/python3
"""QoS 2 ack latency with the spool (mode always, brokers up): N raw MQTT
clients, each in a loop PUBLISH (QoS 2, 100 bytes) -> PUBREC -> PUBREL ->
PUBCOMP for S seconds, once with persistent sessions (clean session 0:
their ids go to the spool's state file) and once with clean ones. Prints
exchanges and PUBREC / PUBCOMP latency (p50, p90, p99, ms) per kind,
through the daemon and librdkafka's mock cluster on loopback. With `idle`
> 0, that many persistent sessions (no QoS 2 id held) are created and left
first: a save that walks every session pays for them. Needs a build
(M2K_BUILD_DIR, default build/).
Usage: bench/qos2_latency.py [clients (4)] [seconds (10)] [idle (0)]"""
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
os.environ.setdefault("M2K_BUILD_DIR", str(HERE.parent / "build"))
os.environ.setdefault("M2K_SOURCE_DIR", str(HERE.parent))
import m2k  # noqa: E402


def client(port, cid, clean, seconds, rec, comp):
    c = m2k.Raw(port, timeout=10).connect(cid, clean=clean, keepalive=0)
    payload = b"x" * 100
    pid, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        pid = pid % 65535 + 1
        t0 = time.monotonic()
        c.send(m2k.publish("bench/q2", payload, qos=2, pid=pid))
        c.expect(m2k.pubrec(pid), timeout=10)
        t1 = time.monotonic()
        c.send(m2k.pubrel(pid))
        c.expect(m2k.pubcomp(pid), timeout=10)
        rec.append((t1 - t0) * 1000)
        comp.append((time.monotonic() - t1) * 1000)
    c.send(m2k.DISCONNECT)
    c.close()


def q(v, f):
    return v[min(len(v) - 1, int(len(v) * f))]


def run(port, clean, n, seconds):
    rec, comp = [], []
    ts = [threading.Thread(target=client, args=(port, f"{'c' if clean else 'p'}{i}", clean,
                                                seconds, rec, comp)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    rec.sort()
    comp.sort()
    kind = "clean" if clean else "persistent"
    print(f"{kind:10} {n} clients: {len(rec)} exchanges in {seconds} s; "
          f"PUBREC p50 {q(rec, .5):.2f} p90 {q(rec, .9):.2f} p99 {q(rec, .99):.2f} ms; "
          f"PUBCOMP p50 {q(comp, .5):.2f} p90 {q(comp, .9):.2f} p99 {q(comp, .99):.2f} ms")


def idle_sessions(port, n):
    for i in range(n):
        c = m2k.Raw(port, timeout=10).connect(f"idle{i}", clean=False, keepalive=0)
        c.send(m2k.DISCONNECT)
        c.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    idle = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    mk = m2k.MockKafka()
    tmp = pathlib.Path(tempfile.mkdtemp())
    try:
        d = m2k.Daemon(tmp, mk.bootstrap, {
            "spool": {"dir": str(tmp / "spool"), "mode": "always"},
            "mqtt": {"connect_rate_per_ip": 0, "max_persistent_sessions": idle + 1000},
            "topics": [{"mqtt": "bench/#", "kafka": "bench"}]})
        idle_sessions(d.port, idle)
        print(f"{os.environ['M2K_BUILD_DIR']}/mqtt2kafka, "
              f"{idle} idle persistent sessions")
        run(d.port, False, n, seconds)
        run(d.port, True, n, seconds)
        d.stop()
    finally:
        mk.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
