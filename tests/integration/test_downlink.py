"""Kafka -> MQTT, the parts outside the MQTT session (issue 15): records
produced with python3-confluent-kafka reach the daemon's downlink router with
the exact rendered MQTT topic and QoS, skips are counted by reason, topics are
read from the end, and the retained store is loaded from the beginning of the
retained topic, again after a restart. A routed record is logged at debug
level and counted (its delivery to subscribers: test_subscribe.py). Every wait is bounded."""
import subprocess

from confluent_kafka import Producer

import m2k
from test_metrics import scrape

DOWNLINK = {
    "downlink": [
        {"kafka": "commands", "mqtt": "devices/{key}/commands"},
        {"kafka": "mqtt-events"},
        {"kafka": "lights", "mqtt": "site/{header:site}/light", "qos": 0},
    ],
    "retained": {"topic": "mqtt-retained"},
    "metrics": {"listen": "127.0.0.1:0"},
    "log": {"level": "debug"},
}


def produce(bootstrap, records):
    """(topic, partition, key, value, headers) each; waits for every report."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    errors = []
    for topic, partition, key, value, headers in records:
        p.produce(topic, value=value, key=key, partition=partition, headers=headers,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(15) == 0, "records left unconfirmed"
    assert errors == [], errors


def start(daemon, mock_kafka):
    d = daemon(DOWNLINK)
    # Start-up lines: the whole log is the right scope.
    port = int(d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                   r"/healthz, /readyz\)", level="info", regex=True),
                          since=0).group(1))
    for topic, parts in (("commands", "0..1"), ("mqtt-events", "0..0"), ("lights", "0..0")):
        d.wait_log(m2k.line(f"kafka consumer: reading {topic} partitions {parts} from the end",
                            level="info"), since=0)
    d.wait_log(m2k.line("kafka consumer: reading mqtt-retained partitions 0..0 from the "
                        "beginning", level="info"), since=0)
    return d, port


def routed(topic, part, offset, mqtt, qos, size):
    return m2k.line(f"downlink: {topic} [{part}] offset {offset} -> {mqtt} (qos {qos}, "
                    f"{size} bytes)", level="debug")


def test_records_reach_the_router_with_their_topics(daemon, mock_kafka):
    for topic, parts in (("commands", 2), ("mqtt-events", 1), ("lights", 1),
                         ("mqtt-retained", 1)):
        mock_kafka.cmd(f"create {topic} {parts}")
    # Before the start: read from the end, so never routed.
    produce(mock_kafka.bootstrap, [("commands", 0, b"old", b"before", None)])
    d, port = start(daemon, mock_kafka)

    mark = d.mark()
    produce(mock_kafka.bootstrap, [
        ("commands", 0, b"bulb-7", b"on", None),
        ("commands", 1, b"valve-2", b"close", [("mqtt.qos", b"2")]),
        ("mqtt-events", 0, None, b"21.5", [("mqtt.topic", b"sensors/k1/temperature"),
                                          ("mqtt.qos", b"0")]),
        ("lights", 0, None, b"50", [("site", b"lyon")]),
        # Skipped, each for its reason.
        ("commands", 1, b"a/+", b"x", None),
        ("commands", 1, None, b"x", None),
        ("mqtt-events", 0, None, b"x", None),
        ("lights", 0, None, b"x", [("site", b"\xff")]),
        ("commands", 1, b"k", b"x", [("mqtt.qos", b"5")]),
    ])
    d.wait_log(routed("commands", 0, 1, "devices/bulb-7/commands", 1, 2), since=mark)
    d.wait_log(routed("commands", 1, 0, "devices/valve-2/commands", 2, 5), since=mark)
    d.wait_log(routed("mqtt-events", 0, 0, "sensors/k1/temperature", 0, 4), since=mark)
    d.wait_log(routed("lights", 0, 0, "site/lyon/light", 0, 2), since=mark)
    for topic, part, offset, why in (("commands", 1, 1, "wildcard"), ("commands", 1, 2, "missing"),
                                     ("mqtt-events", 0, 1, "missing"), ("lights", 0, 1, "utf8"),
                                     ("commands", 1, 3, "bad_qos")):
        d.wait_log(m2k.line(f"downlink: {topic} [{part}] offset {offset} skipped: {why}",
                            level="debug"), since=mark)
    assert "before" not in d.log(since=0) and "offset 0 -> devices/old" not in d.log(since=0)

    s = scrape(port)
    expect = {
        'mqtt2kafka_downlink_records_consumed_total{topic="commands"}': 5,
        'mqtt2kafka_downlink_records_consumed_total{topic="mqtt-events"}': 2,
        'mqtt2kafka_downlink_records_consumed_total{topic="lights"}': 2,
        'mqtt2kafka_downlink_records_consumed_total{topic="mqtt-retained"}': 0,
        "mqtt2kafka_downlink_records_routed_total": 4,
        'mqtt2kafka_downlink_records_skipped_total{reason="wildcard"}': 1,
        'mqtt2kafka_downlink_records_skipped_total{reason="missing"}': 2,
        'mqtt2kafka_downlink_records_skipped_total{reason="utf8"}': 1,
        'mqtt2kafka_downlink_records_skipped_total{reason="bad_qos"}': 1,
        'mqtt2kafka_downlink_records_skipped_total{reason="empty"}': 0,
        "mqtt2kafka_downlink_partitions": 5,
        "mqtt2kafka_downlink_offset_out_of_range_total": 0,
        "mqtt2kafka_retained_messages": 0,
    }
    assert {k: s.get(k) for k in expect} == expect


def test_retained_store_loaded_at_start_and_after_restart(daemon, mock_kafka):
    for topic, parts in (("commands", 2), ("mqtt-events", 1), ("lights", 1),
                         ("mqtt-retained", 1)):
        mock_kafka.cmd(f"create {topic} {parts}")
    produce(mock_kafka.bootstrap, [
        ("mqtt-retained", 0, b"home/kitchen/temp", b"21", [("mqtt.qos", b"1")]),
        ("mqtt-retained", 0, b"home/hall/temp", b"19", None),
        ("mqtt-retained", 0, b"home/old", b"gone soon", None),
        ("mqtt-retained", 0, b"home/old", b"", None),         # deletes
        ("mqtt-retained", 0, b"bad/+", b"x", None),           # not a topic name
    ])
    want = {
        "mqtt2kafka_retained_messages": 2,
        "mqtt2kafka_retained_bytes": len("home/kitchen/temp21home/hall/temp19"),
        'mqtt2kafka_retained_updates_total{op="set"}': 3,
        'mqtt2kafka_retained_updates_total{op="delete"}': 1,
        'mqtt2kafka_retained_refused_total{reason="invalid_topic"}': 1,
        'mqtt2kafka_retained_refused_total{reason="full"}': 0,
        'mqtt2kafka_downlink_records_consumed_total{topic="mqtt-retained"}': 5,
    }
    for run in range(2):
        d, port = start(daemon, mock_kafka)
        m2k.wait_until(lambda: {k: scrape(port).get(k) for k in want} == want, 15,
                       lambda: f"run {run}: {({k: scrape(port).get(k) for k in want})}")
        assert d.stop() == 0


def test_check_names_downlink_errors_by_position(tmp_path):
    """--check: a downlink configuration is checked as the start checks it."""
    good = tmp_path / "good.yaml"
    good.write_text("kafka: {bootstrap_servers: embedded}\n"
                    "downlink:\n"
                    "  - {kafka: commands, mqtt: \"devices/{key}/commands\", qos: 2}\n"
                    "retained: {topic: mqtt-retained}\n")
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(good)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: {bootstrap_servers: embedded}\n"
                   "downlink:\n"
                   "  - kafka: commands\n"
                   "    mqtt: \"devices/{kee}/commands\"\n"
                   "  - kafka: commands\n"
                   "    qos: 3\n"
                   "retained: {topic: commands}\n")
    r = subprocess.run([m2k.DAEMON, "--check", "-c", str(bad)], capture_output=True, text=True,
                       timeout=30)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (
        f"{bad}:4:20: downlink[0].mqtt: unknown placeholder (known: {{key}}, {{header:NAME}})\n"
        f"{bad}:6:10: downlink[1].qos: expected an integer from 0 to 2, got \"3\"\n"
        f"{bad}:7:19: retained.topic: \"commands\" is also a downlink topic (line 5)\n")
