"""The will of an MQTT 5 client (issue 13): its properties become the
record's headers as a PUBLISH's do; the payload format indicator is checked
at CONNECT. Records read back with their headers in order, exact bytes with
Raw."""
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

import m2k
from m2k import Raw, packet, enc_str


def ours(topic, client_id, qos):
    return [("mqtt.topic", topic.encode()), ("mqtt.client_id", client_id.encode()),
            ("mqtt.qos", str(qos).encode())]


def paho5_with_will(port, client_id, will_props, connect_props=None):
    """A paho MQTTv5 client with the will "test/will", connected (its CONNACK
    read) and driven by hand, so nothing reconnects once its socket is cut."""
    c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
    c.will_set("test/will", b"gone", qos=1, properties=will_props)
    connected = []
    c.on_connect = lambda cl, ud, flags, rc, props: connected.append(rc)
    c.connect("127.0.0.1", port, keepalive=30, clean_start=True, properties=connect_props)
    m2k.wait_until(lambda: c.loop(0.1) != 0 or connected, 10, "paho's MQTT 5 CONNACK")
    assert connected == [0]
    return c


def test_paho_v5_will_properties_become_headers(daemon, mock_kafka):
    d = daemon()
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.ContentType = "text/plain"
    wp.ResponseTopic = "reply/here"
    wp.CorrelationData = b"\x00\x01"
    wp.MessageExpiryInterval = 60
    wp.PayloadFormatIndicator = 1
    wp.UserProperty = [("site", "berlin"), ("site", "paris")]
    c = paho5_with_will(d.port, "will5", wp)
    mark = d.mark()
    c.socket().close()  # the connection dropped: no DISCONNECT
    d.wait_log(m2k.line("closing: connection closed by the client", level="info", client="will5"),
               since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"gone"
    assert recs[0].header_list == ours("test/will", "will5", 1) + [
        ("mqtt.content_type", b"text/plain"), ("mqtt.response_topic", b"reply/here"),
        ("mqtt.correlation_data", b"\x00\x01"), ("site", b"berlin"), ("site", b"paris")]


def test_v5_will_payload_not_utf8_connack_0x99(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    # Will flag, clean start; will properties: payload format indicator 1.
    body = enc_str("MQTT") + bytes([5, 0x06]) + (60).to_bytes(2, "big") + b"\x00"
    body += enc_str("fmt5") + b"\x02\x01\x01" + enc_str("test/will") + b"\x00\x02\xff\xfe"
    cl.send(packet(0x10, body))
    cl.expect_close(b"\x20\x03\x00\x99\x00")
    d.wait_log(m2k.line("closing: will message of client id 'fmt5' is not UTF-8 as its payload "
                        "format indicator says (CONNACK 0x99)", level="warn", client="-"),
               since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
