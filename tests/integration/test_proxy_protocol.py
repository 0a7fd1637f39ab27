"""MQTT 3.1.1 protocol rules at the daemon's edge: exact bytes for the
answers, a close (and a log line naming the reason) for every malformed
packet, and the daemon serving the next client afterwards."""
import pytest

import m2k
from m2k import Raw, connect, publish, puback, pubrec, pubrel, pubcomp, enc_str, packet

FLAGS = "MQTT_ERR_FIXED_HEADER_FLAGS: reserved fixed header flags are wrong for the packet type"
WILDCARD = "MQTT_ERR_TOPIC_WILDCARD: topic name contains a wildcard (+ or #)"
CONNACK_BAD_PROTOCOL = b"\x20\x02\x00\x01"

# name, send CONNECT first?, bytes, what the daemon sends before closing, the
# exact reason of its "closing: <reason>" line (src/mqtt/session.c, the codec's
# error table in src/mqtt/codec.c)
MALFORMED = [
    ("reserved_type_0", True, b"\x00\x00", b"",
     "MQTT_ERR_RESERVED_TYPE: reserved packet type 0 or 15"),
    ("reserved_type_15", True, b"\xf0\x00", b"",
     "MQTT_ERR_RESERVED_TYPE: reserved packet type 0 or 15"),
    ("puback_bad_flags", True, b"\x41\x02\x00\x01", b"", FLAGS),
    ("pubrel_bad_flags", True, b"\x60\x02\x00\x01", b"", FLAGS),
    ("subscribe_bad_flags", True, b"\x80\x06\x00\x01\x00\x01a\x00", b"", FLAGS),
    ("pingreq_bad_flags", True, b"\xc1\x00", b"", FLAGS),
    ("publish_qos3", True, b"\x36" + bytes([9]) + enc_str("t/a") + b"\x00\x01xx", b"",
     "MQTT_ERR_QOS_INVALID: PUBLISH with QoS 3"),
    ("publish_qos0_dup", True, b"\x38\x05" + enc_str("t/a"), b"",
     "MQTT_ERR_DUP_ON_QOS0: PUBLISH with QoS 0 and DUP set"),
    ("publish_qos1_id0", True, b"\x32\x07" + enc_str("t/a") + b"\x00\x00", b"",
     "MQTT_ERR_PACKET_ID_ZERO: packet identifier 0 where a non-zero one is required"),
    ("length_5_bytes", True, b"\x30\xff\xff\xff\xff\x01", b"",
     "MQTT_ERR_REMAINING_LENGTH: remaining length uses more than 4 bytes"),
    ("topic_bad_utf8", True, packet(0x30, b"\x00\x03t\xff/" + b"x"), b"",
     "MQTT_ERR_UTF8_INVALID: string is not well-formed UTF-8"),
    ("topic_nul", True, packet(0x30, b"\x00\x03t\x00a" + b"x"), b"",
     "MQTT_ERR_UTF8_NUL: string contains U+0000"),
    ("topic_surrogate", True, packet(0x30, b"\x00\x05t\xed\xa0\x80a" + b"x"), b"",
     "MQTT_ERR_UTF8_SURROGATE: string encodes a surrogate code point (U+D800..U+DFFF)"),
    ("topic_plus", True, publish("test/+", "x"), b"", WILDCARD),
    ("topic_hash", True, publish("test/#", "x"), b"", WILDCARD),
    ("topic_empty", True, packet(0x30, b"\x00\x00x"), b"",
     "MQTT_ERR_TOPIC_EMPTY: topic name is empty"),
    ("second_connect", True, connect("again"), b"", "second CONNECT [MQTT-3.1.0-2]"),
    ("publish_before_connect", False, publish("test/a", "x"), b"",
     "first packet is PUBLISH, not CONNECT [MQTT-3.1.0-1]"),
    ("pingreq_before_connect", False, m2k.PINGREQ, b"",
     "first packet is PINGREQ, not CONNECT [MQTT-3.1.0-1]"),
    ("connack_from_client", True, b"\x20\x02\x00\x00", b"", "CONNACK is a server-only packet"),
    ("suback_from_client", True, b"\x90\x03\x00\x01\x00", b"",
     "SUBACK is a server-only packet"),
    ("unsuback_from_client", True, b"\xb0\x02\x00\x01", b"",
     "UNSUBACK is a server-only packet"),
    ("pingresp_from_client", True, b"\xd0\x00", b"", "PINGRESP is a server-only packet"),
    ("connect_reserved_flag", False, connect("r", flags=0x03), b"",
     "MQTT_ERR_CONNECT_RESERVED: CONNECT reserved flag bit is set"),
    ("connect_password_without_user", False, connect("p", flags=0x42), b"",
     "MQTT_ERR_PASSWORD_NO_USERNAME: password flag set without the username flag"),
    ("connect_will_qos3", False, connect("w", will=("t/w", "x", 3, False)), b"",
     "MQTT_ERR_WILL_QOS: will QoS 3"),
    # MQTT 3.1's name with 3.1.1's level gets CONNACK 1, which 3.1 clients
    # understand (codec.c); the line names the level the client sent and the
    # one "MQIsdp" goes with (test_mqtt31.py: level 3 is served).
    ("connect_bad_name", False, connect("n", name="MQIsdp"), CONNACK_BAD_PROTOCOL,
     'unsupported protocol level 4 for "MQIsdp" (only 3, MQTT 3.1) [MQTT-3.1.2-2]'),
    ("connect_trailing_bytes", False,
     packet(0x10, enc_str("MQTT") + b"\x04\x02\x00\x3c" + enc_str("t") + b"junk"), b"",
     "MQTT_ERR_TRAILING_BYTES: bytes left over after the last field of the packet"),
    ("subscribe_no_filter", True, b"\x82\x02\x00\x01", b"",
     "MQTT_ERR_NO_FILTERS: SUBSCRIBE or UNSUBSCRIBE without a topic filter"),
    ("subscribe_qos3", True, m2k.subscribe(1, [("a/b", 3)]), b"",
     "MQTT_ERR_SUBSCRIBE_QOS: SUBSCRIBE requested QoS above 2 or reserved option bits set"),
]


@pytest.mark.parametrize("name,connect_first,data,answer,reason", MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_closes(daemon, name, connect_first, data, answer, reason):
    d = daemon()
    cl = Raw(d.port)
    if connect_first:
        cl.connect(f"mal-{name}")
    mark = d.mark()
    cl.send(data)
    cl.expect_close(answer)
    d.wait_log(m2k.line(f"closing: {reason}", level="warn",
                        client=f"mal-{name}" if connect_first else "-"), since=mark)
    ok = Raw(d.port).connect("next")
    ok.send(m2k.PINGREQ)
    ok.expect(m2k.PINGRESP)


def test_oversize_packet_closed_from_fixed_header(daemon):
    d = daemon({"mqtt": {"max_packet_size": 1024}})
    cl = Raw(d.port).connect("big")
    mark = d.mark()
    # Announces 100000 bytes and sends only the header: the daemon must not
    # wait for the body to refuse it.
    cl.send(b"\x30" + m2k.enc_len(100000))
    cl.expect_close()
    d.wait_log(m2k.line("closing: MQTT_ERR_PACKET_TOO_LARGE PUBLISH packet of 100004 bytes is "
                        "over max_packet_size 1024", level="warn", client="big"), since=mark)


def test_packet_at_max_size_accepted(daemon, mock_kafka):
    d = daemon({"mqtt": {"max_packet_size": 1024}})
    cl = Raw(d.port).connect("fits")
    topic = "test/fit"
    body_len = 1024 - 1 - 2  # fixed header of a 1021-byte body: 1 + 2 bytes
    payload = b"f" * (body_len - 2 - len(topic) - 2)
    pkt = publish(topic, payload, qos=1, pid=1)
    assert len(pkt) == 1024
    cl.send(pkt)
    cl.expect(puback(1), timeout=15)
    mark = d.mark()
    cl.send(publish(topic, payload + b"f", qos=1, pid=2))  # 1025 bytes
    cl.expect_close()
    d.wait_log(m2k.line("closing: MQTT_ERR_PACKET_TOO_LARGE PUBLISH packet of 1025 bytes is "
                        "over max_packet_size 1024", level="warn", client="fits"), since=mark)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == payload


def test_protocol_level_3_refused(daemon):
    d = daemon()
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect("old", level=3))
    cl.expect_close(CONNACK_BAD_PROTOCOL)
    d.wait_log(m2k.line("closing: unsupported protocol level 3 (only 4, MQTT 3.1.1) "
                        "[MQTT-3.1.2-2]", level="warn", client="-"), since=mark)


def test_zero_length_client_id(daemon):
    d = daemon()
    Raw(d.port).connect("", clean=True)
    cl = Raw(d.port)
    mark = d.mark()
    cl.send(connect("", clean=False))
    cl.expect_close(b"\x20\x02\x00\x02")
    d.wait_log(m2k.line("closing: empty client id with clean session 0 [MQTT-3.1.3-8]",
                        level="warn", client="-"), since=mark)


def test_subscribe_granted_per_filter(daemon):
    d = daemon()
    cl = Raw(d.port).connect("sub")
    cl.send(m2k.subscribe(0x0105, [("a/b", 0), ("c/#", 1), ("+/d", 2)]))
    cl.expect(b"\x90\x05\x01\x05\x00\x01\x02")
    cl.send(m2k.unsubscribe(0x0106, ["a/b"]))
    cl.expect(b"\xb0\x02\x01\x06")
    cl.send(m2k.PINGREQ)
    cl.expect(b"\xd0\x00")


def test_qos2_duplicate_before_pubrel_one_record(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("q2dup")
    cl.send(publish("test/q2", "once", qos=2, pid=77))
    cl.expect(pubrec(77), timeout=15)
    cl.send(publish("test/q2", "once", qos=2, pid=77, dup=True))
    cl.expect(pubrec(77), timeout=15)
    cl.send(pubrel(77))
    cl.expect(pubcomp(77))
    # After PUBCOMP the id is free: the same id is a new message.
    cl.send(publish("test/q2", "again", qos=2, pid=77))
    cl.expect(pubrec(77), timeout=15)
    cl.send(pubrel(77))
    cl.expect(pubcomp(77))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2)
    assert [r.value for r in recs] == [b"once", b"again"]


def test_qos2_session_resumes_pubrel(daemon, mock_kafka):
    d = daemon()
    cl = Raw(d.port).connect("q2sess", clean=False)
    cl.send(publish("test/q2s", "kept", qos=2, pid=12))
    cl.expect(pubrec(12), timeout=15)
    cl.close()  # gone before PUBREL
    cl = Raw(d.port).connect("q2sess", clean=False, session_present=True)
    cl.send(publish("test/q2s", "kept", qos=2, pid=12, dup=True))
    cl.expect(pubrec(12), timeout=15)
    cl.send(pubrel(12))
    cl.expect(pubcomp(12))
    assert [r.value for r in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"kept"]


def test_clean_session_discards_state(daemon):
    d = daemon()
    for clean, present in ((False, False), (False, True), (True, False)):
        # The second CONNECT proves the session was kept; after the clean one
        # there is none.
        cl = Raw(d.port).connect("cs", clean=clean, session_present=present)
        cl.send(m2k.DISCONNECT)
        cl.expect_close()
    Raw(d.port).connect("cs", clean=False, session_present=False)


def test_pubrel_unknown_id_gets_pubcomp(daemon):
    d = daemon()
    cl = Raw(d.port).connect("relx")
    cl.send(pubrel(4242))
    cl.expect(pubcomp(4242))


def test_pingreq_exact_bytes(daemon):
    d = daemon()
    cl = Raw(d.port).connect("ping")
    cl.send(m2k.PINGREQ)
    cl.expect(b"\xd0\x00")
