"""MQTT 3.1.1 protocol rules at the daemon's edge: exact bytes for the
answers, a close (and a log line naming the reason) for every malformed
packet, and the daemon serving the next client afterwards."""
import pytest

import m2k
from m2k import Raw, connect, publish, puback, pubrec, pubrel, pubcomp, enc_str, packet

# name, send CONNECT first?, bytes, log regex naming the reason
MALFORMED = [
    ("reserved_type_0", True, b"\x00\x00", r"reserved|packet type|malformed"),
    ("reserved_type_15", True, b"\xf0\x00", r"reserved|packet type|malformed"),
    ("puback_bad_flags", True, b"\x41\x02\x00\x01", r"flag"),
    ("pubrel_bad_flags", True, b"\x60\x02\x00\x01", r"flag"),
    ("subscribe_bad_flags", True, b"\x80\x06\x00\x01\x00\x01a\x00", r"flag"),
    ("pingreq_bad_flags", True, b"\xc1\x00", r"flag"),
    ("publish_qos3", True, b"\x36" + bytes([9]) + enc_str("t/a") + b"\x00\x01xx", r"qos"),
    ("publish_qos0_dup", True, b"\x38\x05" + enc_str("t/a"), r"dup"),
    ("publish_qos1_id0", True, b"\x32\x07" + enc_str("t/a") + b"\x00\x00", r"packet id|identifier"),
    ("length_5_bytes", True, b"\x30\xff\xff\xff\xff\x01", r"length"),
    ("topic_bad_utf8", True, packet(0x30, b"\x00\x03t\xff/" + b"x"), r"utf-?8"),
    ("topic_nul", True, packet(0x30, b"\x00\x03t\x00a" + b"x"), r"utf-?8|nul|null"),
    ("topic_surrogate", True, packet(0x30, b"\x00\x05t\xed\xa0\x80a" + b"x"), r"utf-?8"),
    ("topic_plus", True, publish("test/+", "x"), r"wildcard"),
    ("topic_hash", True, publish("test/#", "x"), r"wildcard"),
    ("topic_empty", True, packet(0x30, b"\x00\x00x"), r"empty|topic"),
    ("second_connect", True, connect("again"), r"second connect|connect"),
    ("publish_before_connect", False, publish("test/a", "x"), r"connect"),
    ("pingreq_before_connect", False, m2k.PINGREQ, r"connect"),
    ("connack_from_client", True, b"\x20\x02\x00\x00", r"connack|server"),
    ("suback_from_client", True, b"\x90\x03\x00\x01\x00", r"suback|server"),
    ("unsuback_from_client", True, b"\xb0\x02\x00\x01", r"unsuback|server"),
    ("pingresp_from_client", True, b"\xd0\x00", r"pingresp|server"),
    ("connect_reserved_flag", False, connect("r", flags=0x03), r"reserved|flag"),
    ("connect_password_without_user", False, connect("p", flags=0x42) + b"", r"password|user"),
    ("connect_will_qos3", False, connect("w", will=("t/w", "x", 3, False)), r"will|qos"),
    ("connect_bad_name", False, connect("n", name="MQIsdp"), r"protocol"),
    ("connect_trailing_bytes", False,
     packet(0x10, enc_str("MQTT") + b"\x04\x02\x00\x3c" + enc_str("t") + b"junk"), r"malformed|length|trailing"),
    ("subscribe_no_filter", True, b"\x82\x02\x00\x01", r"filter|subscribe"),
    ("subscribe_qos3", True, m2k.subscribe(1, [("a/b", 3)]), r"qos"),
]


@pytest.mark.parametrize("name,connect_first,data,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_closes(daemon, name, connect_first, data, reason):
    d = daemon()
    cl = Raw(d.port)
    if connect_first:
        cl.connect(f"mal-{name}")
    cl.send(data)
    assert cl.closed_within(5), f"{name}: still open"
    assert d.wait_log(f"(?i)({reason})"), f"{name}: no log line matching {reason!r}:\n{d.log()}"
    ok = Raw(d.port).connect("next")
    ok.send(m2k.PINGREQ)
    ok.expect(m2k.PINGRESP)


def test_oversize_packet_closed_from_fixed_header(daemon):
    d = daemon({"mqtt": {"max_packet_size": 1024}})
    cl = Raw(d.port).connect("big")
    # Announces 100000 bytes and sends only the header: the daemon must not
    # wait for the body to refuse it.
    cl.send(b"\x30" + m2k.enc_len(100000))
    assert cl.closed_within(5)
    assert d.wait_log(r"(?i)(too large|max_packet_size|oversize|exceeds)")


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
    cl.send(publish(topic, payload + b"f", qos=1, pid=2))  # 1025 bytes
    assert cl.closed_within(5)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == payload


def test_protocol_level_3_refused(daemon):
    d = daemon()
    cl = Raw(d.port)
    cl.send(connect("old", level=3))
    cl.expect(b"\x20\x02\x00\x01")
    assert cl.closed_within(5)


def test_zero_length_client_id(daemon):
    d = daemon()
    Raw(d.port).connect("", clean=True)
    cl = Raw(d.port)
    cl.send(connect("", clean=False))
    cl.expect(b"\x20\x02\x00\x02")
    assert cl.closed_within(5)


def test_subscribe_refused_per_filter(daemon):
    d = daemon()
    cl = Raw(d.port).connect("sub")
    cl.send(m2k.subscribe(0x0105, [("a/b", 0), ("c/#", 1), ("+/d", 2)]))
    cl.expect(b"\x90\x05\x01\x05\x80\x80\x80")
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
    m2k.assert_records(mock_kafka.bootstrap, "test", 1)


def test_clean_session_discards_state(daemon):
    d = daemon()
    cl = Raw(d.port).connect("cs", clean=False)
    cl.send(m2k.DISCONNECT)
    cl.close()
    Raw(d.port).connect("cs", clean=True, session_present=False).send(m2k.DISCONNECT)
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
