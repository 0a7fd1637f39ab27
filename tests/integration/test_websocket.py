"""MQTT over WebSocket (listeners[].websocket): paho-mqtt's websockets
transport at QoS 0/1/2 with the records read back from Kafka, wss with a TLS
client, every upgrade refusal and framing edge case with exact bytes on a raw
socket, the upgrade under connect_timeout_s, and the close frame on SIGTERM.
Every wait is bounded."""
import base64
import hashlib
import json
import os
import re
import signal
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest

import m2k
from test_auth import APPLIED
from test_metrics import scrape
from test_tls import Pki

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
ORIGIN = "https://ops.example.com"


def ws_daemon(daemon, tls=None, origins=(ORIGIN,), **over):
    ws = {"listen": "127.0.0.1:0", "websocket": {"path": "/mqtt"}}
    if origins:
        ws["websocket"]["origins"] = list(origins)
    if tls:
        ws["tls"] = tls
    conf = {"listeners": [{"listen": "127.0.0.1:0"}, ws], "mqtt": {"connect_timeout_s": 10}}
    d = daemon(m2k.merge(conf, over))
    label = r"\(TLS, WebSocket\)" if tls else r"\(WebSocket\)"
    # A start-up line: the whole log is the right scope.
    m = d.wait_log(m2k.line(rf"listening on 127\.0\.0\.1:(\d+) {label}", level="info",
                            regex=True), since=0)
    d.ws_port = int(m.group(1))
    return d


def upgrade_request(path="/mqtt", version="13", key=KEY, protocol="mqtt", extra=""):
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    if version is not None:
        req += f"Sec-WebSocket-Version: {version}\r\n"
    if key is not None:
        req += f"Sec-WebSocket-Key: {key}\r\n"
    if protocol is not None:
        req += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    return (req + extra + "\r\n").encode()


def switching(protocol="mqtt"):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()


def refusal(status, phrase, why, extra=""):
    body = why + "\n"
    return (f"HTTP/1.1 {status} {phrase}\r\n{extra}Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()


MASK = bytes([0x12, 0x34, 0x56, 0x78])


def frame(payload, opcode=0x2, fin=True, masked=True):
    """A client frame (masked, as the RFC requires, unless told)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def server_frame(payload, opcode=0x2):
    """A server frame: unmasked."""
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big"))
    return head + payload


def close_frame(code):
    return bytes([0x88, 0x02]) + code.to_bytes(2, "big")


def upgraded(d):
    c = m2k.Raw(d.ws_port)
    c.send(upgrade_request())
    c.expect(switching())
    return c


# --------------------------------------------------------------------------
# Real clients

def paho_ws(port, client_id, tls_ca=None, path="/mqtt"):
    c = mqtt.Client(client_id=client_id, transport="websockets")
    c.ws_set_options(path=path)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)
    connected = []
    c.on_connect = lambda cl, ud, flags, rc: connected.append(rc)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    m2k.wait_until(lambda: connected, 10, "CONNACK over WebSocket")
    assert connected == [0]
    return c


def publish_all(c, topic, payloads):
    for qos, p in payloads:
        info = c.publish(topic, p, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()


# paho sends "Origin: https://127.0.0.1:<port>": these listeners have no allow-list.
def test_paho_qos_0_1_2(daemon, mock_kafka):
    d = ws_daemon(daemon, origins=None)
    c = paho_ws(d.ws_port, "ws-paho")
    publish_all(c, "test/ws", [(0, b"q0"), (1, b"q1"), (2, b"q2")])
    c.disconnect()
    c.loop_stop()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert sorted(r.value for r in recs) == [b"q0", b"q1", b"q2"]
    assert {r.headers["mqtt.client_id"] for r in recs} == {b"ws-paho"}
    assert sorted(r.headers["mqtt.qos"] for r in recs) == [b"0", b"1", b"2"]


def test_wss_with_a_tls_client(daemon, mock_kafka, tmp_path):
    pki = Pki(tmp_path)
    d = ws_daemon(daemon, tls={"cert": pki.server[0], "key": pki.server[1]}, origins=None)
    c = paho_ws(d.ws_port, "wss-paho", tls_ca=pki.ca[0])
    publish_all(c, "test/wss", [(1, b"over-wss")])
    c.disconnect()
    c.loop_stop()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"over-wss"
    assert recs[0].headers["mqtt.client_id"] == b"wss-paho"
    # A raw TLS client sees the exact upgrade answer.
    ctx = ssl.create_default_context(cafile=pki.ca[0])
    raw = m2k.Raw(d.ws_port)
    raw.sock = ctx.wrap_socket(raw.sock, server_hostname="127.0.0.1")
    raw.send(upgrade_request(protocol="mqttv3.1"))
    raw.expect(switching("mqttv3.1"))
    raw.close()


def test_wss_client_certificate_is_the_user_and_the_acl_applies(daemon, mock_kafka, tmp_path):
    pki = Pki(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text("user device-17\ntopic write test/device-17/#\n")
    d = ws_daemon(daemon, tls={"cert": pki.server[0], "key": pki.server[1], "ca": pki.ca[0],
                               "require_client_cert": True, "use_identity_as_username": True},
                  origins=None, auth={"acl_file": str(acl), "allow_anonymous": False})
    c = mqtt.Client(client_id="wss-cert", transport="websockets")
    c.ws_set_options(path="/mqtt")
    c.tls_set(ca_certs=pki.ca[0], certfile=pki.client[0], keyfile=pki.client[1])
    c.username_pw_set("someone-else", "ignored")
    connected = []
    c.on_connect = lambda cl, ud, flags, rc: connected.append(rc)
    c.connect("127.0.0.1", d.ws_port, keepalive=30)
    c.loop_start()
    m2k.wait_until(lambda: connected, 10, "CONNACK over wss")
    assert connected == [0]
    publish_all(c, "test/device-17/t", [(1, b"by-cn")])
    # Outside the ACL: the connection is closed (acl_deny: disconnect), nothing produced.
    mark = d.mark()
    c.publish("test/other", b"denied", qos=1)
    d.wait_log(m2k.line("closing: the ACL does not allow publishing on topic 'test/other' "
                        "(auth.acl_deny: disconnect)", level="warn", client="wss-cert"),
               since=mark)
    c.disconnect()
    c.loop_stop()
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"by-cn"
    assert recs[0].headers["mqtt.username"] == b"device-17"


# --------------------------------------------------------------------------
# The upgrade

@pytest.mark.parametrize("req,status,phrase,why,extra", [
    (upgrade_request(path="/other"), 404, "Not Found", "no WebSocket endpoint at this path", ""),
    (upgrade_request(protocol=None), 400, "Bad Request",
     "no acceptable Sec-WebSocket-Protocol (mqtt, mqttv3.1)", ""),
    (upgrade_request(protocol="wamp"), 400, "Bad Request",
     "no acceptable Sec-WebSocket-Protocol (mqtt, mqttv3.1)", ""),
    (upgrade_request(key=None), 400, "Bad Request", "missing or invalid Sec-WebSocket-Key", ""),
    (upgrade_request(key="short=="), 400, "Bad Request", "missing or invalid Sec-WebSocket-Key",
     ""),
    (upgrade_request(version="8"), 426, "Upgrade Required", "WebSocket version 13 only",
     "Sec-WebSocket-Version: 13\r\n"),
    (upgrade_request(extra="Origin: https://evil.example\r\n"), 403, "Forbidden",
     "Origin not allowed", ""),
    (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n", 431,
     "Request Header Fields Too Large", "request head over 8192 bytes", ""),
], ids=["path", "no-protocol", "bad-protocol", "no-key", "bad-key", "version", "origin",
        "head-bound"])
def test_upgrade_refusals(daemon, req, status, phrase, why, extra):
    d = ws_daemon(daemon)
    mark = d.mark()
    c = m2k.Raw(d.ws_port)
    c.send(req)
    c.expect_close(refusal(status, phrase, why, extra))
    d.wait_log(m2k.line(f"WebSocket upgrade refused: {status} {why}", level="warn", client="-"),
               since=mark)


def test_refusals_and_timeouts_are_counted(daemon):
    d = ws_daemon(daemon, mqtt={"connect_timeout_s": 1}, metrics={"listen": "127.0.0.1:0"})
    # A start-up line: the whole log is the right scope.
    mport = int(d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, "
                                    r"/healthz, /readyz\)", level="info", regex=True),
                           since=0).group(1))
    key = 'mqtt2kafka_connections_refused_total{reason="websocket_upgrade"}'
    assert scrape(mport)[key] == 0
    c = m2k.Raw(d.ws_port)
    c.send(upgrade_request(version="8"))
    c.expect_close(refusal(426, "Upgrade Required", "WebSocket version 13 only",
                           "Sec-WebSocket-Version: 13\r\n"))
    c = m2k.Raw(d.ws_port)
    c.send(upgrade_request()[:10])
    c.expect_close(b"", timeout=10)
    # An upgraded connection that then says nothing is MQTT's connect timeout.
    c = upgraded(d)
    c.expect_close(close_frame(1000), timeout=10)
    s = scrape(mport)
    assert s[key] == 2
    assert s['mqtt2kafka_connections_refused_total{reason="connect_timeout"}'] == 1


def test_allowed_origin_and_no_origin_pass(daemon):
    d = ws_daemon(daemon)
    for extra in (f"Origin: {ORIGIN}\r\n", ""):
        c = m2k.Raw(d.ws_port)
        c.send(upgrade_request(extra=extra))
        c.expect(switching())
        c.close()


def test_accept_key_is_computed(daemon):
    d = ws_daemon(daemon)
    key = base64.b64encode(bytes(range(16))).decode()
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    c = m2k.Raw(d.ws_port)
    c.send(upgrade_request(key=key))
    c.expect(switching().replace(ACCEPT.encode(), want.encode()))


def test_upgrade_timeout_runs_from_accept(daemon):
    d = ws_daemon(daemon, mqtt={"connect_timeout_s": 1})
    mark = d.mark()
    c = m2k.Raw(d.ws_port)
    c.send(upgrade_request()[:20])
    c.expect_close(b"", timeout=10)
    d.wait_log(m2k.line("WebSocket upgrade not completed within connect_timeout_s 1",
                        level="warn", client="-"), since=mark)


# --------------------------------------------------------------------------
# Frames

def test_packets_across_and_within_frames(daemon, mock_kafka):
    d = ws_daemon(daemon)
    c = upgraded(d)
    # CONNECT split over a fragmented message, one byte in its own frame.
    con = m2k.connect("ws-raw")
    c.send(frame(con[:1], fin=False) + frame(con[1:5], opcode=0x0, fin=False)
           + frame(con[5:], opcode=0x0))
    c.expect(server_frame(m2k.CONNACK_OK))
    # Two PUBLISHes in one frame, a ping between frames, a PUBLISH over two frames.
    p1 = m2k.publish("test/a", b"one", qos=1, pid=1)
    p2 = m2k.publish("test/a", b"two", qos=1, pid=2)
    p3 = m2k.publish("test/a", b"three", qos=1, pid=3)
    c.send(frame(p1 + p2) + frame(b"hb", opcode=0x9) + frame(p3[:4]) + frame(p3[4:]))
    got = c.recv_exact(4, timeout=10)
    assert got == server_frame(b"hb", opcode=0xA)
    for pid in (1, 2, 3):
        c.expect(server_frame(m2k.puback(pid)), timeout=10)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 3)
    assert [r.value for r in recs] == [b"one", b"two", b"three"]
    # The client's close: answered with the same code, then the connection closes.
    mark = d.mark()
    c.send(frame(b"\x03\xe8", opcode=0x8))
    c.expect_close(close_frame(1000))
    d.wait_log(m2k.line("closing: WebSocket: closed by the client", level="info",
                        client="ws-raw"), since=mark)


@pytest.mark.parametrize("data,code,why", [
    (frame(b"hello", opcode=0x1), 1003, "WebSocket: text frame (close 1003)"),
    (frame(m2k.connect("x"), masked=False), 1002, "WebSocket: protocol violation (close 1002)"),
    (frame(b"\x00" * 1025), 1009, "WebSocket: frame over the bound (close 1009)"),
    # A CONNECT of 1000 bytes (under max_packet_size) in two fragments of 600.
    (frame(b"\x10\xe8\x07" + b"\x00" * 597, fin=False) + frame(b"\x00" * 600, opcode=0x0), 1009,
     "WebSocket: message over the bound (close 1009)"),
    (frame(b"\x03\xe8\xc0\xaf", opcode=0x8), 1007,
     "WebSocket: invalid UTF-8 in a close reason (close 1007)"),
    (frame(b"ab", opcode=0x0), 1002, "WebSocket: protocol violation (close 1002)"),
], ids=["text", "unmasked", "frame-bound", "message-bound", "close-utf8", "continuation"])
def test_frame_violations(daemon, data, code, why):
    d = ws_daemon(daemon, mqtt={"max_packet_size": 1024})
    mark = d.mark()
    c = upgraded(d)
    c.send(data)
    c.expect_close(close_frame(code))
    d.wait_log(m2k.line(f"closing: {why}", level="warn", client="-"), since=mark)


def test_frame_bound_follows_max_packet_size_on_sighup(daemon, mock_kafka):
    d = ws_daemon(daemon, mqtt={"max_packet_size": 1024})
    big = m2k.publish("test/big", b"x" * 1400, qos=1, pid=1)
    c = upgraded(d)
    c.send(frame(m2k.connect("ws-big")))
    c.expect(server_frame(m2k.CONNACK_OK))
    c.send(frame(big))
    c.expect_close(close_frame(1009))
    mark = d.mark()
    d.rewrite_config({"mqtt": {"max_packet_size": 4096}})
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(APPLIED, since=mark)
    c = upgraded(d)
    c.send(frame(m2k.connect("ws-big")))
    c.expect(server_frame(m2k.CONNACK_OK))
    c.send(frame(big))
    c.expect(server_frame(m2k.puback(1)), timeout=10)
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert recs[0].value == b"x" * 1400


def test_mqtt_violation_sends_a_close_frame(daemon):
    d = ws_daemon(daemon)
    c = upgraded(d)
    c.send(frame(m2k.publish("test/x", b"no connect")))
    c.expect_close(close_frame(1000))


def test_sigterm_sends_a_close_frame(daemon, mock_kafka):
    d = ws_daemon(daemon)
    c = upgraded(d)
    c.send(frame(m2k.connect("ws-drain")))
    c.expect(server_frame(m2k.CONNACK_OK))
    assert d.stop(signal.SIGTERM) == 0
    c.expect_close(close_frame(1000), timeout=15)
    assert re.search(r"closing 1 connections", d.log())


def test_mqtt_bench_over_websocket(daemon, mock_kafka):
    """mqtt-bench --websocket (the bench row q1-c10-ws): every QoS 1 PUBLISH
    acked and in Kafka, none missing, none duplicated."""
    d = ws_daemon(daemon, origins=None)
    bench = os.path.join(os.environ.get("M2K_BUILD_DIR", "build"), "bench", "mqtt-bench")
    r = subprocess.run([bench, "-p", str(d.ws_port), "--websocket", "/mqtt", "--json", "-q", "1",
                        "-c", "3", "-n", "200", "-s", "100", "-w", "16", "-t", "test/bench/%d"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["publish"]["sent"] == 600 and rep["publish"]["acked"] == 600
    assert rep["errors"]["total"] == 0
    recs = m2k.assert_records(mock_kafka.bootstrap, "test", 600, timeout=30)
    per_key = {}
    for rec in recs:
        per_key[rec.key] = per_key.get(rec.key, 0) + 1
    assert per_key == {b"test/bench/0": 200, b"test/bench/1": 200, b"test/bench/2": 200}
