#!/usr/bin/python3
"""Kafka -> MQTT delivery latency: a record produced with
python3-confluent-kafka (linger.ms 0) until its PUBLISH reaches a raw MQTT
subscriber, through the daemon and librdkafka's mock cluster on loopback.
30 records 50 ms apart, QoS 0; prints median, p90, max. Needs a build
(M2K_BUILD_DIR, default build/). Usage: bench/downlink_latency.py"""
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
os.environ.setdefault("M2K_BUILD_DIR", str(HERE.parent / "build"))
os.environ.setdefault("M2K_SOURCE_DIR", str(HERE.parent))
import m2k  # noqa: E402
from confluent_kafka import Producer  # noqa: E402


def main():
    mk = m2k.MockKafka()
    try:
        mk.cmd("create commands 1")
        d = m2k.Daemon(pathlib.Path(tempfile.mkdtemp()), mk.bootstrap, {
            "downlink": [{"kafka": "commands", "mqtt": "devices/{key}/commands", "qos": 0}]})
        d.wait_log(m2k.line("kafka consumer: reading commands partitions 0..0 from the end",
                            level="info"), since=0)
        c = m2k.Raw(d.port).connect("lat")
        c.send(m2k.subscribe(1, [("devices/+/commands", 0)]))
        c.expect(b"\x90\x03\x00\x01\x00")
        p = Producer({"bootstrap.servers": mk.bootstrap, "linger.ms": 0})
        lat = []
        for i in range(30):
            value = f"{i:04d}"
            t0 = time.monotonic()
            p.produce("commands", key=b"k", value=value.encode())
            p.poll(0)
            c.expect(m2k.publish("devices/k/commands", value), timeout=10)
            lat.append((time.monotonic() - t0) * 1000)
            time.sleep(0.05)
        p.flush(5)
        lat.sort()
        print(f"n={len(lat)} median {statistics.median(lat):.1f} ms "
              f"p90 {lat[int(len(lat) * 0.9)]:.1f} ms max {lat[-1]:.1f} ms")
        d.stop()
    finally:
        mk.close()


if __name__ == "__main__":
    main()
