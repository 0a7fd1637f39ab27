"""MQTT 3.1 ("MQIsdp", level 3) and the strict string rules of issue 13 at
the daemon's edge: exact bytes, the log line, the records in Kafka."""
import subprocess

import m2k
from m2k import Raw, connect, publish, puback, packet, enc_str

CONTROL_TEXT = "string contains a control character (U+0001..U+001F, U+007F..U+009F)"
CONTROL = "MQTT_ERR_UTF8_CONTROL: " + CONTROL_TEXT


def test_mqisdp_connect_publish_record(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect("old31", name="MQIsdp", level=3, keepalive=30))
    cl.expect(b"\x20\x02\x00\x00")
    d.wait_log(m2k.line("connected (MQTT 3.1, clean session 1, keepalive 30 s, "
                        "session present 0)", level="info", client="old31"), since=mark)
    cl.send(publish("test/v31", b"hello", qos=1, pid=5))
    cl.expect(puback(5), timeout=15)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"hello"
    assert dict(recs[0].headers) == m2k.expected_headers("test/v31", "old31", 1)


def test_mqisdp_session_present_not_sent(daemon):
    """The 3.1 CONNACK's first byte is reserved: 00 even for a resumed session."""
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect("keep31", clean=False, name="MQIsdp", level=3))
    cl.expect(b"\x20\x02\x00\x00")
    cl.send(m2k.DISCONNECT)
    cl.expect_close()
    cl = Raw(d.port)
    cl.send(connect("keep31", clean=False, name="MQIsdp", level=3))
    cl.expect(b"\x20\x02\x00\x00")
    cl.send(m2k.PINGREQ)
    cl.expect(m2k.PINGRESP)


def test_mqisdp_client_id_over_23_bytes(daemon):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect("a" * 24, name="MQIsdp", level=3))
    cl.expect_close(b"\x20\x02\x00\x02")
    d.wait_log(m2k.line("closing: client id of 24 bytes: MQTT 3.1 allows 1 to 23",
                        level="warn", client="-"), since=mark)


def test_mosquitto_pub_mqttv31(daemon, mock_kafka):
    """A real MQTT 3.1 client: mosquitto_pub -V mqttv31."""
    d = daemon()
    mark = d.mark()
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(d.port), "-V", "mqttv31",
                    "-q", "1", "-i", "mosq31", "-t", "test/mosq31", "-m", "v31"],
                   check=True, timeout=20)
    d.wait_log(m2k.line("connected (MQTT 3.1, clean session 1, keepalive 60 s, "
                        "session present 0)", level="info", client="mosq31"), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"v31"
    assert dict(recs[0].headers) == m2k.expected_headers("test/mosq31", "mosq31", 1)


def test_client_id_control_character_refused(daemon):
    d = daemon()
    for name, level in (("MQTT", 4), ("MQIsdp", 3)):
        cl = Raw(d.port)
        mark = d.mark()
        cl.send(connect("bad\x1bid", name=name, level=level))
        cl.expect_close(b"\x20\x02\x00\x02")
        d.wait_log(m2k.line(f"closing: client id 'bad?id' refused: {CONTROL_TEXT}",
                            level="warn", client="-"), since=mark)


def test_user_name_control_character_closes(daemon):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect("u1", username="us\x7fer"))
    cl.expect_close()
    d.wait_log(m2k.line(f"closing: {CONTROL}", level="warn", client="-"), since=mark)


def test_publish_topic_noncharacter_closes(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("nonchar")
    mark = d.mark()
    cl.send(packet(0x30, enc_str("test/\ufdd0") + b"x"))
    cl.expect_close()
    d.wait_log(m2k.line("closing: MQTT_ERR_UTF8_NONCHARACTER: string contains a "
                        "non-character (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)",
                        level="warn", client="nonchar"), since=mark)
    m2k.assert_no_records(mock_kafka.bootstrap, "test")
