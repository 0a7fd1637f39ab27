"""What an MQTT 5 client is told when the server closes its connection for a
reason of its own (issue 13): DISCONNECT 0x8B server shutting down at
SIGTERM after the drain, 0x89 server busy over mqtt.max_input_buffer_bytes;
an MQTT 3.1.1 client gets the plain close it always got; over WebSocket the
DISCONNECT frame comes before the close frame. Exact bytes (Raw)."""
import re

import m2k
from m2k import Raw, packet, enc_str
from test_metrics import scrape
from test_mqtt5 import connack5, connect5, reason5
from test_session_limits import start
from test_websocket import close_frame, frame, server_frame, upgraded, ws_daemon


def connected5(port, client_id):
    cl = Raw(port)
    cl.send(connect5(client_id))
    assert cl.recv_packet() == connack5()
    return cl


def test_sigterm_disconnect_0x8b_to_v5_plain_close_to_v311(daemon):
    d = daemon()
    v5 = connected5(d.port, "bye5")
    v311 = Raw(d.port).connect("bye4")
    mark = d.mark()
    assert d.stop() == 0
    # [MQTT-4.13.2-1]: the reason before the close
    v5.expect_close(reason5(0xe0, 0x8b, "the server is shutting down"))
    v311.expect_close(b"")
    log = d.log(mark)
    for cid in ("bye5", "bye4"):
        assert re.search(m2k.line("closing: server shutting down", level="info", client=cid),
                             log, re.M), log


def test_input_budget_disconnect_0x89_to_v5(daemon):
    d, mport = start(daemon, mqtt={"max_input_buffer_bytes": 65536})
    big = connected5(d.port, "big5")
    small = Raw(d.port).connect("small")
    # A v5 PUBLISH, QoS 1: topic, packet id 1, no properties, 50,000 bytes.
    pa = packet(0x32, enc_str("test/a") + b"\x00\x01\x00" + b"a" * 50000)
    big.send(pa[:40000])  # buffered in 65,536 bytes: the whole budget
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_input_buffer_bytes"] == 65536, 5,
                   "40,000 bytes buffered")
    mark = d.mark()
    small.send(m2k.publish("test/b", b"b" * 100, qos=1, pid=2)[:10])  # 256 bytes more: over
    big.expect_close(reason5(0xe0, 0x89, "the server holds too many bytes of partly received "
                                         "packets"))
    d.wait_log(m2k.line("closing: 65536 bytes of a partly received packet buffered, the most of "
                        "any connection, while all hold 65792, over mqtt.max_input_buffer_bytes "
                        "65536", level="warn", client="big5"), since=mark)


def test_sigterm_disconnect_0x8b_before_the_ws_close_frame(daemon, mock_kafka):
    d = ws_daemon(daemon)
    c = upgraded(d)
    c.send(frame(connect5("ws5")))
    assert c.recv_exact(2) == b"\x82\x18"  # one binary frame of 24 bytes:
    assert c.recv_exact(0x18) == connack5()
    assert d.stop() == 0
    c.expect_close(server_frame(reason5(0xe0, 0x8b, "the server is shutting down")) +
                   close_frame(1000))
