"""Kafka -> MQTT delivery to subscribers (issue 15): records produced with
python3-confluent-kafka reach mosquitto_sub and a paho subscriber with the
exact topic, payload, QoS (min of the record's and the subscription's) and
Kafka's order; SUBSCRIBE refusals by the ACL with exact
SUBACK bytes (3.1.1 and 5.0); a delivery the read rules refuse is not made;
the subscription bounds per session; message expiry from a record header.
Every wait is bounded."""
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Producer

import m2k
from m2k import Raw, packet, enc_str
from test_downlink import produce
from test_metrics import scrape

CONFIG = {
    "downlink": [{"kafka": "commands", "mqtt": "devices/{key}/commands"}],
    "metrics": {"listen": "127.0.0.1:0"},
}


def started(d, topic, parts, where="end"):
    """The metrics port, once the consumer reads `topic` (start-up lines:
    the whole log is the right scope)."""
    port = int(d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                   r"/healthz, /readyz\)", level="info", regex=True),
                          since=0).group(1))
    d.wait_log(m2k.line(f"kafka consumer: reading {topic} partitions {parts} from the {where}",
                        level="info"), since=0)
    return port


def start(daemon, mock_kafka, extra=None):
    mock_kafka.cmd("create commands 2")
    d = daemon(m2k.merge(CONFIG, extra or {}))
    return d, started(d, "commands", "0..1")


def metric(port, name):
    return scrape(port).get(name)


def test_records_reach_mosquitto_sub_and_paho_in_order(daemon, mock_kafka):
    d, port = start(daemon, mock_kafka)
    got, done = [], threading.Event()

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload, msg.qos, msg.retain))
        if len(got) == 4:
            done.set()

    granted = []
    c = mqtt.Client(client_id="paho-sub", protocol=mqtt.MQTTv311)
    c.on_message = on_message
    c.on_subscribe = lambda cl, ud, mid, qos: granted.append(qos)
    c.connect("127.0.0.1", d.port, keepalive=30)
    c.loop_start()
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(d.port), "-i",
                            "mosq-sub", "-q", "1", "-t", "devices/bulb-7/#", "-v", "-C", "3",
                            "-W", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        c.subscribe([("devices/+/commands", 2), ("other/#", 0)])
        m2k.wait_until(lambda: granted, 10, "paho's SUBACK")
        assert list(granted[0]) == [2, 0]
        m2k.wait_until(lambda: metric(port, "mqtt2kafka_subscriptions") == 3, 10,
                       "three subscriptions")
        produce(mock_kafka.bootstrap, [
            ("commands", 0, b"bulb-7", b"on", None),
            ("commands", 0, b"bulb-7", b"dim 40", None),
            ("commands", 0, b"valve-2", b"close", None),
            ("commands", 0, b"bulb-7", b"off", None),
        ])
        assert done.wait(15), got
        out, err = sub.communicate(timeout=30)
    finally:
        c.disconnect()
        c.loop_stop()
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    # The rule's QoS 1, below paho's granted 2.
    assert got == [("devices/bulb-7/commands", b"on", 1, 0),
                   ("devices/bulb-7/commands", b"dim 40", 1, 0),
                   ("devices/valve-2/commands", b"close", 1, 0),
                   ("devices/bulb-7/commands", b"off", 1, 0)]
    assert sub.returncode == 0, err
    assert out == (b"devices/bulb-7/commands on\ndevices/bulb-7/commands dim 40\n"
                   b"devices/bulb-7/commands off\n")
    s = scrape(port)
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="1"}') == 7
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="0"}') == 0


def test_unsubscribe_ends_delivery(daemon, mock_kafka):
    d, port = start(daemon, mock_kafka)
    cl = Raw(d.port).connect("raw-sub")
    cl.send(m2k.subscribe(1, [("devices/+/commands", 1)]))
    cl.expect(b"\x90\x03\x00\x01\x01")
    produce(mock_kafka.bootstrap, [("commands", 1, b"k", b"v", None)])
    cl.expect(m2k.publish("devices/k/commands", b"v", qos=1, pid=1), timeout=15)
    cl.send(m2k.puback(1))
    cl.send(m2k.unsubscribe(2, ["devices/+/commands"]))
    cl.expect(b"\xb0\x02\x00\x02")
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_subscriptions") == 0, 10,
                   "no subscription")
    produce(mock_kafka.bootstrap, [("commands", 1, b"k", b"w", None)])
    m2k.wait_until(lambda: metric(port, 'mqtt2kafka_downlink_records_consumed_total'
                                        '{topic="commands"}') == 2, 15, "the second record")
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # and no PUBLISH before it
    cl.close()


ACL = """\
pattern read devices/%c/commands
topic read public/#
user alice
topic readwrite alice/#
"""


def connect5(client_id, username=None, password=None):
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = enc_str("MQTT") + bytes([5, flags]) + (60).to_bytes(2, "big") + b"\x00"
    body += enc_str(client_id)
    if username:
        body += enc_str(username)
    if password:
        body += enc_str(password)
    return packet(0x10, body)


def test_acl_refusals_exact_suback(daemon, mock_kafka, tmp_path):
    aclf = tmp_path / "acl"
    aclf.write_text(ACL)
    d, port = start(daemon, mock_kafka, {"auth": {"acl_file": str(aclf)},
                                         "log": {"level": "info"}})
    cl = Raw(d.port).connect("bulb-7")
    mark = d.mark()
    cl.send(m2k.subscribe(5, [("devices/bulb-7/commands", 1), ("devices/+/commands", 0),
                              ("alice/#", 2), ("#", 0)]))
    # devices/+/commands meets the pattern (granted, deliveries checked);
    # alice/# is alice's only; # meets public/#.
    cl.expect(b"\x90\x06\x00\x05\x01\x00\x80\x00")
    d.wait_log(m2k.line("client bulb-7: SUBSCRIBE to 'alice/#' refused by the ACL",
                        level="warn"), since=mark)
    c5 = Raw(d.port)
    c5.send(connect5("valve-2"))
    c5.recv_packet()  # CONNACK with properties
    c5.send(packet(0x82, b"\x00\x06\x00" + enc_str("alice/x") + b"\x01" +
                   enc_str("devices/valve-2/commands") + b"\x02"))
    c5.expect(b"\x90\x05\x00\x06\x00\x87\x02")
    # Each delivery is checked against the read rules: bulb-7's
    # devices/+/commands does not take valve-2's commands.
    produce(mock_kafka.bootstrap, [("commands", 0, b"valve-2", b"shut", None),
                                   ("commands", 0, b"bulb-7", b"on", None)])
    c5.expect(packet(0x32, enc_str("devices/valve-2/commands") + b"\x00\x01\x00shut"),
              timeout=15)
    cl.expect(m2k.publish("devices/bulb-7/commands", b"on", qos=1, pid=1), timeout=15)
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # and no valve-2 PUBLISH before it
    s = scrape(port)
    assert s.get('mqtt2kafka_subscribe_refused_total{reason="acl"}') == 2
    assert s.get('mqtt2kafka_downlink_not_delivered_total{reason="acl_read"}') == 1
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="1"}') == 2
    cl.close()
    c5.close()


def test_unacked_qos1_resent_with_dup_after_reconnect(daemon, mock_kafka):
    d, port = start(daemon, mock_kafka)
    cl = Raw(d.port).connect("nack", clean=False)
    cl.send(m2k.subscribe(1, [("devices/#", 1)]))
    cl.expect(b"\x90\x03\x00\x01\x01")
    produce(mock_kafka.bootstrap, [("commands", 0, b"v1", b"open", None)])
    cl.expect(m2k.publish("devices/v1/commands", b"open", qos=1, pid=1), timeout=15)
    cl.close()  # no PUBACK
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_persistent_sessions") == 1, 10,
                   "the session kept")
    cl = Raw(d.port)
    cl.send(m2k.connect("nack", clean=False))
    cl.expect(m2k.CONNACK_OK_SESSION + m2k.publish("devices/v1/commands", b"open", qos=1, pid=1,
                                                   dup=True))
    cl.send(m2k.puback(1))
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # nothing else resent
    cl.close()


def test_persistent_session_gets_what_was_produced_while_away(daemon, mock_kafka):
    d, port = start(daemon, mock_kafka)
    cl = Raw(d.port).connect("away", clean=False)
    cl.send(m2k.subscribe(1, [("devices/+/commands", 2)]))
    cl.expect(b"\x90\x03\x00\x01\x02")
    cl.send(m2k.DISCONNECT)
    cl.closed_within(5)
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_persistent_sessions") == 1, 10,
                   "the session kept")
    produce(mock_kafka.bootstrap, [("commands", 0, b"a", b"1", None),
                                   ("commands", 0, b"b", b"2", [("mqtt.qos", b"2")]),
                                   ("commands", 0, b"c", b"3", [("mqtt.qos", b"0")])])
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_downlink_queued_messages") == 3, 15,
                   "three messages queued")
    cl = Raw(d.port)
    cl.send(m2k.connect("away", clean=False))
    cl.expect(m2k.CONNACK_OK_SESSION +
              m2k.publish("devices/a/commands", b"1", qos=1, pid=1) +
              m2k.publish("devices/b/commands", b"2", qos=2, pid=2) +
              m2k.publish("devices/c/commands", b"3"))
    cl.send(m2k.puback(1) + m2k.pubrec(2))
    cl.expect(m2k.pubrel(2))
    cl.send(m2k.pubcomp(2))
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    assert metric(port, "mqtt2kafka_downlink_queued_messages") == 0
    cl.close()


def test_queue_bound_with_a_client_that_never_reads(daemon, mock_kafka):
    d, port = start(daemon, mock_kafka, {"mqtt": {"max_inflight": 2, "max_queued_messages": 3}})
    slow = Raw(d.port).connect("slow")
    slow.send(m2k.subscribe(1, [("devices/#", 1)]))
    slow.expect(b"\x90\x03\x00\x01\x01")
    fast = Raw(d.port).connect("fast")
    fast.send(m2k.subscribe(1, [("devices/#", 0)]))
    fast.expect(b"\x90\x03\x00\x01\x00")
    produce(mock_kafka.bootstrap, [("commands", 0, b"k", str(i).encode(), None)
                                   for i in range(10)])
    # The client that never acks (nor reads) does not hold the other up.
    fast.expect(b"".join(m2k.publish("devices/k/commands", str(i)) for i in range(10)),
                timeout=15)
    s = scrape(port)
    assert s.get("mqtt2kafka_downlink_queued_messages") == 3
    assert s.get('mqtt2kafka_downlink_dropped_total{reason="queue_full"}') == 5
    assert s.get('mqtt2kafka_downlink_dropped_total{reason="oldest_qos0"}') == 0
    assert s.get('mqtt2kafka_downlink_dropped_total{reason="session_bytes"}') == 0
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="1"}') == 2
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="0"}') == 10
    slow.close()
    fast.close()


RETAINED = {"retained": {"topic": "mqtt-retained"}, "metrics": {"listen": "127.0.0.1:0"}}


def start_retained(daemon):
    d = daemon(RETAINED)
    return d, started(d, "mqtt-retained", "0..0", "beginning")


def mosquitto_pub(port, *args):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-r",
                    *args], check=True, timeout=30)


def test_retained_publish_subscribe_delete_and_restart(daemon, mock_kafka):
    mock_kafka.cmd("create mqtt-retained 1")
    d, port = start_retained(daemon)
    mosquitto_pub(d.port, "-t", "test/lamp", "-m", "on")
    mosquitto_pub(d.port, "-t", "test/old", "-m", "x")
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 2, 15,
                   "two retained messages")
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-retained", 2)
    assert [(r.key, r.value, r.header_list) for r in recs] == [
        (b"test/lamp", b"on", [("mqtt.qos", b"1")]), (b"test/old", b"x", [("mqtt.qos", b"1")])]
    cl = Raw(d.port).connect("late")
    cl.send(m2k.subscribe(1, [("test/lamp", 2)]))
    cl.expect(b"\x90\x03\x00\x01\x02" + m2k.publish("test/lamp", b"on", qos=1, pid=1, retain=True))
    cl.send(m2k.puback(1))
    # An empty payload deletes.
    mosquitto_pub(d.port, "-t", "test/old", "-n")
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 1, 15,
                   "one retained message")
    cl.send(m2k.subscribe(2, [("test/old", 1)]))
    cl.expect(b"\x90\x03\x00\x02\x01")
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)  # nothing retained for test/old
    cl.close()
    assert d.stop() == 0
    # A restart reads the retained topic again from the beginning.
    d, port = start_retained(daemon)
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 1, 15,
                   "the retained message after the restart")
    cl = Raw(d.port).connect("after")
    cl.send(m2k.subscribe(1, [("test/+", 0)]))
    cl.expect(b"\x90\x03\x00\x01\x00" + m2k.publish("test/lamp", b"on", retain=True))
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    cl.close()


ROUND_TRIP = {
    "topics": [{"mqtt": "#", "kafka": "mqtt-events"}],
    "downlink": [{"kafka": "mqtt-events"}],
    "metrics": {"listen": "127.0.0.1:0"},
}


def test_round_trip_through_kafka_behaves_as_a_broker(daemon, mock_kafka):
    """What clients publish reaches the subscribers through Kafka (the
    mqtt.topic header), in Kafka's order, at min(publish QoS, granted QoS)."""
    mock_kafka.cmd("create mqtt-events 1")
    d = daemon(ROUND_TRIP)
    d.wait_log(m2k.line("kafka consumer: reading mqtt-events partitions 0..0 from the end",
                        level="info"), since=0)
    sub = Raw(d.port).connect("sub")
    sub.send(m2k.subscribe(1, [("home/#", 1)]))
    sub.expect(b"\x90\x03\x00\x01\x01")
    pubs = [Raw(d.port).connect("pub-a"), Raw(d.port).connect("pub-b")]
    sent = []
    for i in range(6):
        topic, payload = f"home/{'ab'[i % 2]}", f"m{i}"
        pubs[i % 2].send(m2k.publish(topic, payload, qos=2 if i == 5 else 1, pid=i + 1))
        if i == 5:
            pubs[1].expect(m2k.pubrec(6), timeout=15)
            pubs[1].send(m2k.pubrel(6))
            pubs[1].expect(m2k.pubcomp(6))
        else:
            pubs[i % 2].expect(m2k.puback(i + 1), timeout=15)
        sent.append((topic, payload))
    # Each PUBLISH was acked (in Kafka) before the next was sent: Kafka's
    # order is the publishing order, and so is the subscriber's.
    want = b"".join(m2k.publish(t, p, qos=1, pid=i + 1) for i, (t, p) in enumerate(sent))
    sub.expect(want, timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-events", 6)
    assert [r.headers["mqtt.topic"] for r in recs] == [t.encode() for t, _ in sent]
    for c in pubs + [sub]:
        c.close()


def test_1000_subscribers_with_10000_filters(daemon, mock_kafka):
    """Each client has its own command topic and nine other filters (10,000
    in all); ten of them also take every device's commands. A record reaches
    exactly its owner and those ten."""
    d, port = start(daemon, mock_kafka, {"mqtt": {"max_connections": 2000}})
    clients = []
    for i in range(1000):
        c = Raw(d.port).connect(f"c{i}")
        filters = [(f"devices/d{i}/commands", 0)] + [(f"fleet/{i}/+/x{j}", 1) for j in range(8)]
        filters.append(("devices/+/commands", 0) if i % 100 == 0 else (f"site/{i}/#", 2))
        c.send(m2k.subscribe(1, filters))
        clients.append(c)
    for i, c in enumerate(clients):
        c.expect(m2k.packet(0x90, b"\x00\x01\x00" + b"\x01" * 8 + (b"\x00" if i % 100 == 0
                                                                   else b"\x02")), timeout=10)
    assert metric(port, "mqtt2kafka_subscriptions") == 10000
    produce(mock_kafka.bootstrap, [("commands", 0, f"d{k}".encode(), f"go {k}".encode(), None)
                                   for k in (5, 123, 999)])
    for k in (5, 123, 999):
        if k % 100:
            clients[k].expect(m2k.publish(f"devices/d{k}/commands", f"go {k}"), timeout=15)
    for i in range(0, 1000, 100):
        clients[i].expect(b"".join(m2k.publish(f"devices/d{k}/commands", f"go {k}")
                                   for k in (5, 123, 999)), timeout=15)
    for c in clients:  # and nothing else, to anyone
        c.send(m2k.PINGREQ)
    for c in clients:
        c.expect(m2k.PINGRESP)
        c.close()
    s = scrape(port)
    assert s.get('mqtt2kafka_downlink_deliveries_total{qos="0"}') == 3 + 30


def test_paho_v5_gets_user_properties_and_subscription_ids(daemon, mock_kafka):
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    d, port = start(daemon, mock_kafka)
    got, granted = [], []
    c = mqtt.Client(client_id="paho5-sub", protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, ud, msg: got.append(
        (msg.topic, msg.payload, msg.qos, getattr(msg.properties, "UserProperty", None),
         getattr(msg.properties, "SubscriptionIdentifier", None)))
    c.on_subscribe = lambda cl, ud, mid, codes, props: granted.append(codes)
    c.connect("127.0.0.1", d.port, keepalive=30, clean_start=True)
    c.loop_start()
    try:
        sp = Properties(PacketTypes.SUBSCRIBE)
        sp.SubscriptionIdentifier = 7
        c.subscribe("devices/+/commands", qos=1, properties=sp)
        m2k.wait_until(lambda: granted, 10, "paho's SUBACK")
        produce(mock_kafka.bootstrap, [("commands", 1, b"lamp", b"on",
                                        [("trace", b"t-1"), ("mqtt.qos", b"0"),
                                         ("bin", b"\xff"), ("user", b"ops")])])
        m2k.wait_until(lambda: got, 15, "the command")
    finally:
        c.disconnect()
        c.loop_stop()
    assert got == [("devices/lamp/commands", b"on", 0, [("trace", "t-1"), ("user", "ops")], [7])]


def test_round_trip_no_local_with_paho_v5(daemon, mock_kafka):
    from paho.mqtt.subscribeoptions import SubscribeOptions
    mock_kafka.cmd("create mqtt-events 1")
    d = daemon(ROUND_TRIP)
    d.wait_log(m2k.line("kafka consumer: reading mqtt-events partitions 0..0 from the end",
                        level="info"), since=0)
    got, granted = [], []
    c = mqtt.Client(client_id="self", protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload))
    c.on_subscribe = lambda cl, ud, mid, codes, props: granted.append(codes)
    c.connect("127.0.0.1", d.port, keepalive=30, clean_start=True)
    c.loop_start()
    try:
        c.subscribe("home/#", options=SubscribeOptions(qos=1, noLocal=True))
        m2k.wait_until(lambda: granted, 10, "paho's SUBACK")
        c.publish("home/mine", b"1", qos=1).wait_for_publish(10)
        other = Raw(d.port).connect("other")
        other.send(m2k.publish("home/theirs", b"2", qos=1, pid=1))
        other.expect(m2k.puback(1), timeout=15)
        m2k.wait_until(lambda: got, 15, "the other client's message")
        other.close()
    finally:
        c.disconnect()
        c.loop_stop()
    # Both went through Kafka in this order; only the other's came back.
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-events", 2)
    assert [r.headers["mqtt.client_id"] for r in recs] == [b"self", b"other"]
    assert got == [("home/theirs", b"2")]


def test_subscription_bounds_per_session(daemon, mock_kafka):
    """mqtt.max_subscriptions_per_session and ..._bytes_per_session: a new
    filter past either is refused (0x80) with a log line and a count; what
    was granted is still delivered."""
    d, port = start(daemon, mock_kafka, {"mqtt": {"max_subscriptions_per_session": 2,
                                                  "max_subscription_bytes_per_session": 40}})
    cl = Raw(d.port).connect("bulb-7")
    mark = d.mark()
    cl.send(m2k.subscribe(3, [("devices/bulb-7/commands", 1), ("x", 0), ("y", 0)]))
    cl.expect(b"\x90\x05\x00\x03\x01\x00\x80")
    d.wait_log(m2k.line("client bulb-7: SUBSCRIBE to 'y' refused: the session holds 2 "
                        "subscriptions of 24 bytes (mqtt.max_subscriptions_per_session 2, "
                        "mqtt.max_subscription_bytes_per_session 40)", level="warn"), since=mark)
    cl.send(m2k.unsubscribe(4, ["x"]))
    cl.expect(b"\xb0\x02\x00\x04")
    cl.send(m2k.subscribe(5, [("a" * 18, 0), ("a" * 17, 0)]))  # 23 + 18 > 40; 23 + 17 = 40
    cl.expect(b"\x90\x04\x00\x05\x80\x00")
    assert metric(port, 'mqtt2kafka_subscribe_refused_total{reason="quota"}') == 2
    assert metric(port, "mqtt2kafka_subscriptions") == 2
    produce(mock_kafka.bootstrap, [("commands", 0, b"bulb-7", b"on", None)])
    cl.expect(m2k.publish("devices/bulb-7/commands", b"on", qos=1, pid=1), timeout=15)
    cl.close()


def test_message_expiry_header(daemon, mock_kafka):
    """A record's mqtt.message_expiry counts from its Kafka timestamp: one
    written 60 s ago with 10 s goes to nobody (counted); an MQTT 5
    subscriber gets the other with what is left of its 3600 s."""
    d, port = start(daemon, mock_kafka)
    c5 = Raw(d.port)
    c5.send(connect5("valve-2"))
    c5.recv_packet()  # CONNACK with properties
    c5.send(packet(0x82, b"\x00\x01\x00" + enc_str("devices/valve-2/commands") + b"\x01"))
    c5.expect(b"\x90\x04\x00\x01\x00\x01")
    p = Producer({"bootstrap.servers": mock_kafka.bootstrap, "linger.ms": 0})
    now = int(time.time() * 1000)
    p.produce("commands", value=b"old", key=b"valve-2", partition=0, timestamp=now - 60000,
              headers=[("mqtt.message_expiry", b"10")])
    p.produce("commands", value=b"shut", key=b"valve-2", partition=0, timestamp=now,
              headers=[("mqtt.message_expiry", b"3600"), ("site", b"b")])
    assert p.flush(15) == 0, "records left unconfirmed"
    got = c5.recv_packet(timeout=15)
    head = b"\x32\x30" + enc_str("devices/valve-2/commands") + b"\x00\x01" + b"\x0f\x02"
    tail = b"\x26" + enc_str("site") + enc_str("b") + b"shut"
    assert got[:len(head)] == head and got[len(head) + 4:] == tail, got.hex(" ")
    left = int.from_bytes(got[len(head):len(head) + 4], "big")
    # less its age, rounded up; the waits above bound that age below 60 s
    assert 3540 <= left <= 3600, left
    c5.send(packet(0x40, b"\x00\x01"))
    c5.send(m2k.PINGREQ)
    c5.expect(m2k.PINGRESP)  # and nothing else before it
    expired = 'mqtt2kafka_downlink_dropped_total{reason="expired"}'
    m2k.wait_until(lambda: metric(port, expired) == 1, 10, "the expired record counted")
    c5.close()
