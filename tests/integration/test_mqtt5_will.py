"""The will of an MQTT 5 client (issue 13): its properties become the
record's headers as a PUBLISH's do; the payload format indicator is checked
at CONNECT; the will delay interval (published after it, dropped when the
client comes back to its session, published at SIGTERM). Records read back
with their headers in order, exact bytes with Raw."""
import re

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

import m2k
from m2k import Raw, packet, enc_str
from test_mqtt5 import reason5


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
        ("mqtt.message_expiry", b"60"), ("mqtt.content_type", b"text/plain"), ("mqtt.response_topic", b"reply/here"),
        ("mqtt.correlation_data", b"\x00\x01"), ("site", b"berlin"), ("site", b"paris")]


def test_v5_will_payload_not_utf8_connack_0x99(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    # Will flag, clean start; will properties: payload format indicator 1.
    body = enc_str("MQTT") + bytes([5, 0x06]) + (60).to_bytes(2, "big") + b"\x00"
    body += enc_str("fmt5") + b"\x02\x01\x01" + enc_str("test/will") + b"\x00\x02\xff\xfe"
    cl.send(packet(0x10, body))
    cl.expect_close(reason5(0x20, 0x99, "will message of client id 'fmt5' is not UTF-8 as its "
                                        "payload format indicator says (CONNACK 0x99)"))
    d.wait_log(m2k.line("closing: will message of client id 'fmt5' is not UTF-8 as its payload "
                        "format indicator says (CONNACK 0x99)", level="warn", client="-"),
               since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def kept(seconds=60):
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = seconds
    return p


def delayed(seconds):
    p = Properties(PacketTypes.WILLMESSAGE)
    p.WillDelayInterval = seconds
    return p


def drop(d, c, client_id):
    mark = d.mark()
    c.socket().close()
    d.wait_log(m2k.line("closing: connection closed by the client", level="info",
                        client=client_id), since=mark)


def test_v5_will_delay_published_after_it(daemon, mock_kafka):
    d = daemon()
    c = paho5_with_will(d.port, "delay5", delayed(1), kept())
    mark = d.mark()
    drop(d, c, "delay5")
    d.wait_log(m2k.line("publishing the will message after its will delay interval of 1 s",
                        level="info", client="delay5"), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert (recs[0].value, recs[0].header_list) == (b"gone", ours("test/will", "delay5", 1))


def test_v5_will_delay_cancelled_by_reconnect(daemon, mock_kafka):
    """[MQTT-3.1.3-9]: back to the session within the delay, no will."""
    d = daemon()
    c = paho5_with_will(d.port, "back5", delayed(30), kept())
    drop(d, c, "back5")
    mark = d.mark()
    again = mqtt.Client(client_id="back5", protocol=mqtt.MQTTv5)
    flags = []
    again.on_connect = lambda cl, ud, f, rc, props: flags.append((f["session present"], rc))
    again.connect("127.0.0.1", d.port, keepalive=30, clean_start=False, properties=kept())
    m2k.wait_until(lambda: again.loop(0.1) != 0 or flags, 10, "the second CONNACK")
    assert flags == [(1, 0)]
    d.wait_log(m2k.line("will message not published: the client came back to its session "
                        "within the will delay interval of 30 s [MQTT-3.1.3-9]", level="info",
                        client="back5"), since=mark)
    again.disconnect()
    m2k.assert_no_records(mock_kafka.bootstrap, "test")


def test_v5_will_delay_published_at_sigterm(daemon, mock_kafka):
    """Sessions live in memory and end with the process: a will still
    waiting for its delay is published at SIGTERM, before the drain."""
    d = daemon()
    c = paho5_with_will(d.port, "term5", delayed(300), kept())
    drop(d, c, "term5")
    mark = d.mark()
    assert d.stop() == 0
    log = d.log(mark)
    assert re.search(m2k.line("publishing the will message at shutdown, before its will "
                                  "delay interval passed (sessions end with the process)",
                                  level="info", client="term5"), log, re.M), log
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].header_list == ours("test/will", "term5", 1)
