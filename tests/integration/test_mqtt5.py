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


def reason5(first, rc, why=None, pid=None):
    """A v5 CONNACK (0x20), PUBACK (0x40), PUBREC (0x50) or DISCONNECT (0xe0)
    with reason code rc and the reason string why (property 0x1F)."""
    body = (b"\x00" if first == 0x20 else b"") + (pid.to_bytes(2, "big") if pid else b"")
    body += bytes([rc])
    if why is not None:
        body += bytes([len(why) + 3]) + b"\x1f" + enc_str(why)
    elif first == 0x20:
        body += b"\x00"
    return packet(first, body)


def connack5(receive_maximum=1024):
    """The CONNACK of an accepted CONNECT with the base configuration:
    receive maximum, topic alias maximum 10 (the default), retain available,
    maximum packet size 1000000, wildcard subscriptions, subscription
    identifiers and shared subscriptions available."""
    props = (b"\x21" + receive_maximum.to_bytes(2, "big") + b"\x22\x00\x0a\x25\x01"
             b"\x27\x00\x0f\x42\x40\x28\x01\x29\x01\x2a\x01")
    return packet(0x20, b"\x00\x00" + bytes([len(props)]) + props)


NO_RULE = "no rule maps this topic to a legal Kafka topic"
NOT_TAKEN = "Kafka did not take the message"


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


def test_property_templates_topic_and_key(daemon, mock_kafka):
    """{property:NAME} in the Kafka topic and key templates: the first user
    property NAME of a v5 PUBLISH; an MQTT 3.1.1 message renders it empty."""
    rules = [{"mqtt": "site/+", "kafka": "site-{property:site}",
              "key": "{property:dev}/{1}"}]
    d = daemon({"topics": rules})
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                    "-q", "1", "-i", "prop5", "-t", "site/a", "-m", "v5",
                    "-D", "publish", "user-property", "site", "berlin",
                    "-D", "publish", "user-property", "dev", "d-17",
                    "-D", "publish", "user-property", "site", "paris"],
                   check=True, timeout=20)
    recs = m2k.assert_records(mock_kafka.bootstrap, "site-berlin", 1)
    assert (recs[0].key, recs[0].value) == (b"d-17/a", b"v5")
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv311",
                    "-q", "1", "-i", "prop3", "-t", "site/b", "-m", "v3"],
                   check=True, timeout=20)
    # "site-" is a legal name: the 3.1.1 message lands there, key "/b".
    recs = m2k.assert_records(mock_kafka.bootstrap, "site-", 1)
    assert (recs[0].key, recs[0].value) == (b"/b", b"v3")
    # A will's user properties are its will properties' (as its headers are).
    cl = Raw(d.port)
    wprops = b"\x26" + enc_str("site") + enc_str("rome")
    body = enc_str("MQTT") + bytes([5, 0x06]) + (60).to_bytes(2, "big") + b"\x00"
    body += enc_str("propw") + bytes([len(wprops)]) + wprops + enc_str("site/w") + enc_str("w")
    cl.send(packet(0x10, body))
    assert cl.recv_packet() == connack5()
    cl.close()
    recs = m2k.assert_records(mock_kafka.bootstrap, "site-rome", 1)
    assert (recs[0].key, recs[0].value) == (b"/w", b"w")


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


def paho5_connect(d, client_id, clean_start, **props):
    """A paho MQTTv5 client, connected (CONNECT properties from props); returns
    it and CONNACK's (flags, rc, properties)."""
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
    connected = []
    c.on_connect = lambda cl, ud, flags, rc, p: connected.append((flags, rc, p))
    p = Properties(PacketTypes.CONNECT)
    for k, v in props.items():
        setattr(p, k, v)
    c.connect("127.0.0.1", d.port, keepalive=30, clean_start=clean_start, properties=p)
    c.loop_start()
    m2k.wait_until(lambda: connected, 10, f"paho's MQTT 5 CONNACK for {client_id}")
    return c, connected[0]


def paho5_close(c):
    c.disconnect()
    c.loop_stop()


def test_paho_v5_shorter_session_expiry(daemon, mock_kafka):
    """A session expiry interval below mqtt.session_expiry_s is honoured (the
    session ends after it); above, CONNACK says the interval in use."""
    d = daemon({"mqtt": {"session_expiry_s": 600}})
    c, (flags, rc, props) = paho5_connect(d, "exp2", False, SessionExpiryInterval=2)
    assert rc == 0 and not hasattr(props, "SessionExpiryInterval")
    c.publish("test/exp", b"e", qos=1).wait_for_publish(20)
    mark = d.mark()
    paho5_close(c)
    d.wait_log(m2k.line("session expired after 2 s without a connection", level="info",
                        client="exp2", addr="-"), since=mark)
    c, (flags, rc, props) = paho5_connect(d, "exp2", False, SessionExpiryInterval=100000)
    assert (flags["session present"], rc) == (0, 0)
    assert props.SessionExpiryInterval == 600
    paho5_close(c)
    m2k.assert_records(mock_kafka.bootstrap, "test", 1)


def test_v5_disconnect_expiry_after_zero_raw(daemon):
    """DISCONNECT may not give a session expiry interval when CONNECT's was 0
    [MQTT-3.14.2-2]: DISCONNECT 0x82 with its reason string, and the close."""
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect5("zero5"))
    assert cl.recv_packet() == connack5()
    mark = d.mark()
    cl.send(packet(0xe0, b"\x00\x05\x11\x00\x00\x00\x0a"))
    why = "DISCONNECT sets a session expiry interval after 0 in CONNECT [MQTT-3.14.2-2]"
    cl.expect_close(reason5(0xe0, 0x82, why))
    d.wait_log(m2k.line("closing: " + why, level="warn", client="zero5"), since=mark)


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


def test_paho_v5_request_response_information(daemon):
    """Request response information 1: the daemon offers none, so CONNACK has
    no response information property (docs/semantics.md)."""
    d = daemon()
    c = mqtt.Client(client_id="rri5", protocol=mqtt.MQTTv5)
    connected = []
    c.on_connect = lambda cl, ud, flags, rc, props: connected.append((rc, props))
    p = Properties(PacketTypes.CONNECT)
    p.RequestResponseInformation = 1
    c.connect("127.0.0.1", d.port, keepalive=30, clean_start=True, properties=p)
    c.loop_start()
    try:
        m2k.wait_until(lambda: connected, 10, "paho's MQTT 5 CONNACK")
        rc, props = connected[0]
        assert rc == 0 and props.ReceiveMaximum == 1024
        assert not hasattr(props, "ResponseInformation")
    finally:
        c.disconnect()
        c.loop_stop()


def test_v5_authentication_method_refused(daemon):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect5("am", props=b"\x15" + enc_str("SCRAM-SHA-1")))
    cl.expect_close(reason5(0x20, 0x8c, "authentication method 'SCRAM-SHA-1' not supported "
                                      "(enhanced authentication)"))
    d.wait_log(m2k.line("closing: authentication method 'SCRAM-SHA-1' not supported (enhanced "
                        "authentication)", level="warn", client="-"), since=mark)


def test_v5_malformed_property_disconnect(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect5("mal5"))
    ack = cl.recv_packet()
    assert ack == connack5()
    mark = d.mark()
    # Topic alias maximum is a CONNECT/CONNACK property, not PUBLISH's.
    cl.send(packet(0x30, enc_str("test/x") + b"\x03\x22\x00\x01" + b"x"))
    cl.expect_close(reason5(0xe0, 0x81, "MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed "
                                      "in this packet"))
    d.wait_log(m2k.line("closing: MQTT_ERR_PROPERTY_NOT_ALLOWED: property not allowed in this "
                        "packet", level="warn", client="mal5"), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_v5_topic_alias_disconnect(daemon):
    d = daemon({"mqtt": {"topic_alias_maximum": 0}})
    mark = d.mark()
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                        "-q", "1", "-i", "alias5", "-t", "test/a", "-m", "x",
                        "-D", "publish", "topic-alias", "1"], timeout=20, capture_output=True)
    assert r.returncode != 0
    d.wait_log(m2k.line("closing: topic alias 1, but the topic alias maximum is 0 "
                        "[MQTT-3.3.2-10]", level="warn", client="alias5"), since=mark)


def test_mosquitto_pub_v5_topic_alias(daemon, mock_kafka):
    """With the default mqtt.topic_alias_maximum (10): mosquitto_pub -D
    publish topic-alias sets the alias with the first message and sends the
    next ones with an empty topic; every record has the topic."""
    d = daemon()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv5",
                    "-q", "1", "-i", "alias5ok", "-t", "test/alias", "--repeat", "3",
                    "-m", "r", "-D", "publish", "topic-alias", "1"], check=True, timeout=20)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert [r.headers["mqtt.topic"] for r in recs] == [b"test/alias"] * 3


def test_v5_topic_alias_bytes_quota(daemon, mock_kafka):
    """The topics a connection's aliases hold are bounded
    (mqtt.max_topic_alias_bytes): one more is DISCONNECT 0x97."""
    d = daemon({"mqtt": {"max_topic_alias_bytes": 256}})
    cl = Raw(d.port)
    cl.send(connect5("quota5"))
    assert cl.recv_packet() == connack5()
    topic = "test/" + "a" * 200
    cl.send(packet(0x30, enc_str(topic) + b"\x03\x23\x00\x01" + b"x"))
    mark = d.mark()
    cl.send(packet(0x30, enc_str("test/" + "b" * 95) + b"\x03\x23\x00\x02" + b"y"))
    why = "topic alias 2 would hold 305 bytes of topics, over mqtt.max_topic_alias_bytes 256"
    cl.expect_close(reason5(0xe0, 0x97, why))
    d.wait_log(m2k.line("closing: " + why, level="warn", client="quota5"), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].headers["mqtt.topic"] == topic.encode()


def test_v5_max_topics_is_puback_0x97(daemon, mock_kafka):
    """kafka.max_topics reached: PUBACK 0x97 (quota exceeded) for an MQTT 5
    client, which stays connected; 3.1.1 closes (test_budgets.py)."""
    d = daemon({"kafka": {"max_topics": 1}})
    cl = Raw(d.port)
    cl.send(connect5("topics5"))
    assert cl.recv_packet() == connack5()
    cl.send(packet(0x32, enc_str("test/a") + b"\x00\x01\x00" + b"a"))
    cl.expect(m2k.puback(1), timeout=15)
    mark = d.mark()
    cl.send(packet(0x32, enc_str("sensors/7/temperature") + b"\x00\x02\x00" + b"b"))
    cl.expect(reason5(0x40, 0x97, "a new Kafka topic past kafka.max_topics", pid=2))
    d.wait_log(m2k.line("topic 'sensors/7/temperature': a new topic past kafka.max_topics "
                        "distinct Kafka topics: refused (0x97)", level="warn", client="topics5"),
               since=mark)
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"a"]


def test_v5_will_topic_over_cap_is_connack_0x97(daemon):
    """A CONNECT string over its cap: MQTT 5 gets CONNACK 0x97 where 3.1.1
    is closed unanswered (test_hostile.py)."""
    d = daemon({"mqtt": {"max_will_topic_length": 16}})
    cl = Raw(d.port)
    mark = d.mark()
    body = enc_str("MQTT") + bytes([5, 0x06]) + (60).to_bytes(2, "big") + b"\x00"
    body += enc_str("will5") + b"\x00" + enc_str("test/0123456789ab") + enc_str("x")
    cl.send(packet(0x10, body))
    why = "CONNECT refused: will topic of 17 bytes above mqtt.max_will_topic_length 16"
    cl.expect_close(reason5(0x20, 0x97, why))
    d.wait_log(m2k.line("closing: " + why, level="warn", client="-"), since=mark)


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
    assert cl.recv_packet() == connack5()
    mark = d.mark()
    cl.send(packet(0x32, enc_str("test/denied") + b"\x00\x02\x00" + b"x"))
    cl.expect(reason5(0x40, 0x80, NOT_TAKEN, pid=2), timeout=15)
    d.wait_log(m2k.line("Kafka did not take a QoS 1 message on topic 'test/denied': Broker: "
                        "Topic authorization failed", level="error", client="nack5"), since=mark)
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)
    # The topic's error is now in librdkafka's metadata: the producer refuses
    # at once, and that is a negative ack too.
    mark = d.mark()
    cl.send(packet(0x32, enc_str("test/again") + b"\x00\x03\x00" + b"y"))
    cl.expect(reason5(0x40, 0x80, NOT_TAKEN, pid=3), timeout=15)
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
    assert cl.recv_packet() == connack5()
    mark = d.mark()
    cl.send(packet(0x32, enc_str("nowhere/x") + b"\x00\x05\x00" + b"x"))
    cl.expect(reason5(0x40, 0x90, NO_RULE, pid=5))
    d.wait_log(m2k.line("topic 'nowhere/x' is not mapped: no rule matches: refused (0x90)",
                        level="warn", client="unm5"), since=mark)
    cl.send(packet(0x30, enc_str("nowhere/x") + b"\x00" + b"x"))
    cl.expect_close(reason5(0xe0, 0x90, NO_RULE))


def test_v5_receive_maximum_exceeded(daemon, mock_kafka):
    """CONNACK's receive maximum is max_inflight (4 here); a fifth QoS 1
    PUBLISH while four wait for Kafka gets DISCONNECT 0x93."""
    d = daemon({"mqtt": {"max_inflight": 4}})
    mock_kafka.cmd("rtt -1 2000")
    cl = Raw(d.port)
    cl.send(connect5("rmax5"))
    assert cl.recv_packet() == connack5(receive_maximum=4)
    mark = d.mark()
    cl.send(b"".join(packet(0x32, enc_str("test/r") + bytes([0, i, 0]) + b"x")
                     for i in range(1, 6)))
    cl.expect_close(reason5(0xe0, 0x93, "4 QoS 1/2 messages unacknowledged, receive maximum 4 "
                                      "exceeded [MQTT-3.3.4-9]"), timeout=10)
    d.wait_log(m2k.line("closing: 4 QoS 1/2 messages unacknowledged, receive maximum 4 exceeded "
                        "[MQTT-3.3.4-9]", level="warn", client="rmax5"), since=mark)
    mock_kafka.cmd("rtt -1 0")
