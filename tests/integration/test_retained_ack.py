"""Retained messages from MQTT publishers (issue 15). A QoS 1/2 PUBLISH with
RETAIN 1 is acked only once both its record and its copy to the retained
topic are in Kafka: with the retained topic's leader down the copy times
out, and the client is closed without an ack (MQTT 3.1.1) or gets PUBACK
0x80 (MQTT 5), though the mapped record went in; with the broker back the
resend is acked and Kafka holds exactly what was produced. An MQTT 5
message expiry goes round through Kafka and expires the retained message.
Every wait is bounded."""
import m2k
from m2k import Raw, packet, enc_str
from test_mqtt5 import connect5, connack5, reason5, NOT_TAKEN
from test_proxy_faults import NOT_CONFIRMED
from test_subscribe import metric, started

CONFIG = {
    "retained": {"topic": "mqtt-retained"},
    "metrics": {"listen": "127.0.0.1:0"},
    # Fast failure while broker 3 is down, and a fast reconnect once it is up.
    "kafka": {"properties": {"linger.ms": 5, "message.timeout.ms": 3000,
                             "reconnect.backoff.max.ms": 100}},
}


def test_retained_copy_failure_withholds_the_ack(daemon, mock_kafka):
    # The mapped topic on broker 1, the retained topic on broker 3.
    mock_kafka.cmd("create test 1")
    mock_kafka.cmd("leader test 0 1")
    mock_kafka.cmd("create mqtt-retained 1")
    mock_kafka.cmd("leader mqtt-retained 0 3")
    d = daemon(CONFIG)
    port = started(d, "mqtt-retained", "0..0", "beginning")
    mock_kafka.cmd("down 3")

    cl = Raw(d.port).connect("lamp311")
    mark = d.mark()
    cl.send(m2k.publish("test/lamp", "on", qos=1, pid=1, retain=True))
    cl.expect_close(timeout=15)  # no PUBACK before the close
    d.wait_log(m2k.line("Kafka did not take the retained copy of a QoS 1 message on topic "
                        "'test/lamp': Local: Message timed out", level="error",
                        client="lamp311"), since=mark)
    d.wait_log(m2k.line(NOT_CONFIRMED, level="warn", client="lamp311"), since=mark)

    v5 = Raw(d.port)
    v5.send(connect5("lamp5"))
    assert v5.recv_packet() == connack5()
    v5.send(packet(0x33, enc_str("test/lamp5") + b"\x00\x02\x00" + b"on"))
    v5.expect(reason5(0x40, 0x80, NOT_TAKEN, pid=2), timeout=15)
    v5.close()
    # The copies were lost for the clients to resend, not counted as lost.
    assert metric(port, "mqtt2kafka_retained_copies_lost_total") == 0

    mock_kafka.cmd("up 3")
    cl = Raw(d.port).connect("lamp311")
    cl.send(m2k.publish("test/lamp", "on", qos=1, pid=1, dup=True, retain=True))
    cl.expect(m2k.puback(1), timeout=15)
    cl.close()
    # Each first try's record went in (at least once); the copy once.
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert [(r.headers["mqtt.topic"], r.headers["mqtt.retain"]) for r in recs] == [
        (b"test/lamp", b"1"), (b"test/lamp5", b"1"), (b"test/lamp", b"1")]
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-retained", 1)
    assert [(r.key, r.value, r.header_list) for r in recs] == [
        (b"test/lamp", b"on", [("mqtt.qos", b"1")])]
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 1, 15,
                   "the retained message read back")


ROUND_TRIP = {
    "topics": [{"mqtt": "#", "kafka": "mqtt-events"}],
    "downlink": [{"kafka": "mqtt-events"}],
    "retained": {"topic": "mqtt-retained"},
    "metrics": {"listen": "127.0.0.1:0"},
}


def test_message_expiry_round_trip_with_paho_v5(daemon, mock_kafka):
    """An MQTT 5 PUBLISH's message expiry travels as mqtt.message_expiry on
    its record and its retained copy: a connected subscriber gets it with
    what is left (1 s, rounded up); a subscription made after it expired
    gets the retained messages without it, and the store drops it."""
    import time

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    mock_kafka.cmd("create mqtt-events 1")
    mock_kafka.cmd("create mqtt-retained 1")
    d = daemon(ROUND_TRIP)
    port = started(d, "mqtt-events", "0..0")
    got, granted = [], []

    def on_message(client, userdata, msg):
        left = getattr(msg.properties, "MessageExpiryInterval", None)
        got.append((msg.topic, msg.payload, msg.retain, left))

    sub = mqtt.Client(client_id="sub", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda cl, ud, mid, codes, props: granted.append(codes)
    sub.connect("127.0.0.1", d.port, keepalive=30, clean_start=True)
    sub.loop_start()
    pub = mqtt.Client(client_id="pub", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", d.port, keepalive=30, clean_start=True)
    pub.loop_start()
    try:
        sub.subscribe("home/#", qos=1)
        m2k.wait_until(lambda: granted, 10, "paho's SUBACK")
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = 1
        published = time.monotonic()
        pub.publish("home/lamp", b"on", qos=1, retain=True, properties=props).wait_for_publish(10)
        pub.publish("home/hall", b"19", qos=1, retain=True).wait_for_publish(10)
        m2k.wait_until(lambda: len(got) == 2, 15, "both messages at the subscriber")
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    # Live deliveries have RETAIN 0; the expiring one carries what is left.
    assert got == [("home/lamp", b"on", False, 1), ("home/hall", b"19", False, None)]
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-events", 2)
    assert [r.headers.get("mqtt.message_expiry") for r in recs] == [b"1", None]
    recs = m2k.assert_records(mock_kafka.bootstrap, "mqtt-retained", 2)
    assert [(r.key, r.value, r.header_list) for r in recs] == [
        (b"home/lamp", b"on", [("mqtt.qos", b"1"), ("mqtt.message_expiry", b"1")]),
        (b"home/hall", b"19", [("mqtt.qos", b"1")])]
    m2k.wait_until(lambda: metric(port, "mqtt2kafka_retained_messages") == 2, 15,
                   "both retained messages in the store")
    # 2 s after the publish: home/lamp's second has passed.
    time.sleep(max(0.0, published + 2.0 - time.monotonic()))
    late = Raw(d.port)
    late.send(connect5("late"))
    assert late.recv_packet() == connack5()
    late.send(packet(0x82, b"\x00\x01\x00" + enc_str("home/#") + b"\x00"))
    late.expect(b"\x90\x04\x00\x01\x00\x00" + packet(0x31, enc_str("home/hall") + b"\x00" + b"19"),
                timeout=15)
    late.send(m2k.PINGREQ)
    late.expect(m2k.PINGRESP)  # and nothing else before it
    late.close()
    assert metric(port, "mqtt2kafka_retained_messages") == 1
    assert metric(port, "mqtt2kafka_retained_expired_total") == 1
