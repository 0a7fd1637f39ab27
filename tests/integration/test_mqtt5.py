"""MQTT 5 clients at the daemon's edge (issue 13): mosquitto_pub -V mqttv5 and
paho's MQTTv5 client, records read back with their headers in order; exact
bytes for CONNACK's reason codes and DISCONNECT before a close."""
import subprocess

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

import m2k
from m2k import Raw, packet, enc_str


def ours(topic, client_id, qos):
    return [("mqtt.topic", topic.encode()), ("mqtt.client_id", client_id.encode()),
            ("mqtt.qos", str(qos).encode())]


def connect5(client_id, props=b"", flags=0x02):
    body = enc_str("MQTT") + bytes([5, flags]) + (60).to_bytes(2, "big")
    body += bytes([len(props)]) + props + enc_str(client_id)
    return packet(0x10, body)


def test_mosquitto_pub_v5_user_properties_headers(daemon, mock_kafka):
    d = daemon()
    mark = d.mark()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                    "-q", "1", "-i", "mosq5", "-t", "test/v5", "-m", "hello",
                    "-D", "publish", "user-property", "site", "berlin",
                    "-D", "publish", "user-property", "site", "paris",
                    "-D", "publish", "user-property", "mqtt.topic", "not-ours",
                    "-D", "publish", "content-type", "text/plain"],
                   check=True, timeout=20)
    d.wait_log(m2k.line("connected (MQTT 5, clean start 1, session expiry 0 s, keepalive 60 s, "
                        "session present 0)", level="info", client="mosq5"), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"hello"
    assert recs[0].header_list == ours("test/v5", "mosq5", 1) + [
        ("mqtt.content_type", b"text/plain"), ("site", b"berlin"), ("site", b"paris"),
        ("mqtt.topic", b"not-ours")]


def test_mosquitto_pub_v5_session_expiry(daemon, mock_kafka):
    d = daemon()
    mark = d.mark()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                    "-q", "1", "-i", "keep5", "-t", "test/keep", "-m", "k",
                    "-D", "connect", "session-expiry-interval", "100"],
                   check=True, timeout=20)
    d.wait_log(m2k.line("connected (MQTT 5, clean start 1, session expiry 100 s, keepalive 60 "
                        "s, session present 0)", level="info", client="keep5"), since=mark)
    m2k.assert_records(mock_kafka.bootstrap, "test", 1)


def test_paho_v5_publish_with_properties(daemon, mock_kafka):
    d = daemon()
    c = mqtt.Client(client_id="paho5", protocol=mqtt.MQTTv5)
    connected = []
    c.on_connect = lambda cl, ud, flags, rc, props: connected.append((rc, props))
    c.connect("127.0.0.1", d.port, keepalive=30, clean_start=True)
    c.loop_start()
    try:
        m2k.wait_until(lambda: connected, 10, "paho's MQTT 5 CONNACK")
        rc, props = connected[0]
        assert rc == 0
        assert props.ReceiveMaximum == 1024 and props.WildcardSubscriptionAvailable == 1
        assert props.SharedSubscriptionAvailable == 1
        assert props.SubscriptionIdentifierAvailable == 1
        p = Properties(PacketTypes.PUBLISH)
        p.UserProperty = [("k", "v1"), ("k", "v2")]
        p.CorrelationData = b"\x00\x01"
        p.ResponseTopic = "reply/here"
        info = c.publish("test/paho5", b"p5", qos=2, properties=p)
        info.wait_for_publish(20)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].header_list == ours("test/paho5", "paho5", 2) + [
        ("mqtt.response_topic", b"reply/here"), ("mqtt.correlation_data", b"\x00\x01"),
        ("k", b"v1"), ("k", b"v2")]


def test_v5_authentication_method_refused(daemon):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect5("am", props=b"\x15" + enc_str("SCRAM-SHA-1")))
    cl.expect_close(b"\x20\x03\x00\x8c\x00")
    d.wait_log(m2k.line("closing: authentication method 'SCRAM-SHA-1' not supported (enhanced "
                        "authentication)", level="warn", client="-"), since=mark)


def test_v5_malformed_property_disconnect(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect5("mal5"))
    ack = cl.recv_packet()
    assert ack[:4] == b"\x20\x13\x00\x00"
    mark = d.mark()
    # Topic alias maximum is a CONNECT/CONNACK property, not PUBLISH's.
    cl.send(packet(0x30, enc_str("test/x") + b"\x03\x22\x00\x01" + b"x"))
    cl.expect_close(b"\xe0\x01\x81")
    d.wait_log(m2k.line("closing: MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed in this "
                        "packet", level="warn", client="mal5"), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_v5_topic_alias_disconnect(daemon):
    d = daemon()
    mark = d.mark()
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                        "-q", "1", "-i", "alias5", "-t", "test/a", "-m", "x",
                        "-D", "publish", "topic-alias", "1"], timeout=20, capture_output=True)
    assert r.returncode != 0
    d.wait_log(m2k.line("closing: topic alias 1, but the topic alias maximum is 0 "
                        "[MQTT-3.3.2-10]", level="warn", client="alias5"), since=mark)


def test_mosquitto_pub_v5_topic_alias(daemon, mock_kafka):
    """With mqtt.topic_alias_maximum: mosquitto_pub -D publish topic-alias
    sets the alias with the first message and sends the next ones with an
    empty topic; every record has the topic."""
    d = daemon({"mqtt": {"topic_alias_maximum": 4}})
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                    "-q", "1", "-i", "alias5ok", "-t", "test/alias", "--repeat", "3",
                    "-m", "r", "-D", "publish", "topic-alias", "1"], check=True, timeout=20)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert [r.headers["mqtt.topic"] for r in recs] == [b"test/alias"] * 3


def test_v5_kafka_failure_is_puback_0x80(daemon, mock_kafka):
    """Where 3.1.1 closes (test_proxy_faults.py), an MQTT 5 client gets a
    negative ack and stays connected."""
    d = daemon()
    warm = Raw(d.port).connect("warm")
    warm.send(m2k.publish("test/warm", "warm", qos=1, pid=1))
    warm.expect(m2k.puback(1), timeout=15)
    mock_kafka.cmd("push_errors Produce 10 TOPIC_AUTHORIZATION_FAILED")
    cl = Raw(d.port)
    cl.send(connect5("nack5"))
    assert cl.recv_packet()[:4] == b"\x20\x13\x00\x00"
    mark = d.mark()
    cl.send(packet(0x32, enc_str("test/denied") + b"\x00\x02\x00" + b"x"))
    cl.expect(b"\x40\x03\x00\x02\x80", timeout=15)
    d.wait_log(m2k.line("Kafka did not take a QoS 1 message on topic 'test/denied': Broker: "
                        "Topic authorization failed", level="error", client="nack5"), since=mark)
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    # The topic's error is now in librdkafka's metadata: the producer refuses
    # at once, and that is a negative ack too.
    mark = d.mark()
    cl.send(packet(0x32, enc_str("test/again") + b"\x00\x03\x00" + b"y"))
    cl.expect(b"\x40\x03\x00\x03\x80", timeout=15)
    d.wait_log(m2k.line("the producer refused a message on topic 'test/again' (produce error): "
                        "refused (0x80)", level="error", client="nack5"), since=mark)
    mock_kafka.cmd("clear_errors Produce")
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"warm"]


def test_v5_unmapped_is_puback_0x90(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect5("unm5"))
    assert cl.recv_packet()[:4] == b"\x20\x13\x00\x00"
    mark = d.mark()
    cl.send(packet(0x32, enc_str("nowhere/x") + b"\x00\x05\x00" + b"x"))
    cl.expect(b"\x40\x03\x00\x05\x90")
    d.wait_log(m2k.line("topic 'nowhere/x' is not mapped: no rule matches: refused (0x90)",
                        level="warn", client="unm5"), since=mark)
    cl.send(packet(0x30, enc_str("nowhere/x") + b"\x00" + b"x"))
    cl.expect_close(b"\xe0\x01\x90")


def test_v5_receive_maximum_exceeded(daemon, mock_kafka):
    """CONNACK's receive maximum is max_inflight (4 here); a fifth QoS 1
    PUBLISH while four wait for Kafka gets DISCONNECT 0x93."""
    d = daemon({"mqtt": {"max_inflight": 4}})
    mock_kafka.cmd("rtt -1 2000")
    cl = Raw(d.port)
    cl.send(connect5("rmax5"))
    assert cl.recv_packet()[:8] == b"\x20\x13\x00\x00\x10\x21\x00\x04"
    mark = d.mark()
    cl.send(b"".join(packet(0x32, enc_str("test/r") + bytes([0, i, 0]) + b"x")
                     for i in range(1, 6)))
    cl.expect_close(b"\xe0\x01\x93", timeout=10)
    d.wait_log(m2k.line("closing: 4 QoS 1/2 messages unacknowledged, receive maximum 4 exceeded "
                        "[MQTT-3.3.4-9]", level="warn", client="rmax5"), since=mark)
    mock_kafka.cmd("rtt -1 0")
