"""MQTT over WebSocket from a real browser: headless Chromium loads a page,
served over HTTP on loopback, that uses MQTT.js's browser bundle to connect
over ws:// (its Origin on the listener's allow-list), publish a reading at
QoS 1 and, once the PUBACK is back, a second message saying so; the records
are read back from Kafka. A second page subscribes to its command topic and
reports, by publishing, the command a service wrote to Kafka.

The driver is the plain `chromium --headless=new` process: the page needs no
DevTools client, since what it did is what reaches Kafka. The test waits
(bounded) for the records and then ends the browser. chromium and the
bundle come with scripts/install-deps.sh test: a missing one fails, never
skips."""
import contextlib
import http.server
import os
import re
import shutil
import subprocess
import threading

import pytest

import m2k

SOURCE = os.environ.get("M2K_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>starting</title>
<script src="mqtt.min.js"></script></head>
<body><script>
const port = new URLSearchParams(location.search).get("port");
const c = mqtt.connect("ws://127.0.0.1:" + port + "/mqtt",
                       {clientId: "browser-1", protocolVersion: 4, reconnectPeriod: 0});
c.on("connect", () => {
  c.publish("test/browser/reading", JSON.stringify({sensor: "s1", celsius: 21.5}), {qos: 1},
            (err) => {
    document.title = err ? "error" : "acked";
    c.publish("test/browser/done", err ? "error: " + err.message : "puback received",
              {qos: 1}, () => c.end());
  });
});
c.on("error", (e) => { document.title = "error " + e.message; });
</script></body></html>
"""


def mqttjs_bundle():
    """The path install-deps.sh puts the pinned bundle at."""
    text = open(os.path.join(SOURCE, "scripts", "install-deps.sh")).read()
    version = re.search(r"^MQTTJS_VERSION=(\S+)$", text, re.M).group(1)
    cache = os.environ.get("M2K_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mqtt2kafka")
    return os.path.join(cache, f"mqttjs-{version}", "mqtt.min.js")


@pytest.fixture
def site(tmp_path):
    """The page and the bundle over HTTP on loopback: (server, origin)."""
    bundle = mqttjs_bundle()
    assert os.path.exists(bundle), f"{bundle} is missing: run scripts/install-deps.sh test"
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    shutil.copy(bundle, root / "mqtt.min.js")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def browser(chromium, tmp_path, url):
    """Headless Chromium on `url`, ended (bounded) when the block ends."""
    p = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
         f"--user-data-dir={tmp_path / 'profile'}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield p
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_browser_publishes_over_websocket(daemon, mock_kafka, site, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/install-deps.sh test"
    d = daemon({"listeners": [{"listen": "127.0.0.1:0"},
                              {"listen": "127.0.0.1:0", "websocket": {"origins": [site]}}]})
    # A start-up line: the whole log is the right scope.
    port = int(d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(WebSocket\)",
                                   level="info", regex=True), since=0).group(1))
    mark = d.mark()
    with browser(chromium, tmp_path, f"{site}/index.html?port={port}"):
        recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2, timeout=60)
    got = sorted((r.key, r.value) for r in recs)
    assert got == [(b"test/browser/done", b"puback received"),
                   (b"test/browser/reading", b'{"sensor":"s1","celsius":21.5}')]
    assert {r.headers["mqtt.client_id"] for r in recs} == {b"browser-1"}
    assert {r.headers["mqtt.qos"] for r in recs} == {b"1"}
    d.wait_log(m2k.line("connected (clean session 1, keepalive 60 s, session present 0)",
                        level="info", client="browser-1"), since=mark)


COMMAND_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>starting</title>
<script src="mqtt.min.js"></script></head>
<body><script>
const port = new URLSearchParams(location.search).get("port");
const c = mqtt.connect("ws://127.0.0.1:" + port + "/mqtt",
                       {clientId: "browser-2", protocolVersion: 4, reconnectPeriod: 0});
c.on("connect", () => {
  c.subscribe("devices/browser-2/commands", {qos: 1}, (err, granted) => {
    c.publish("test/browser/subscribed", err ? "error" : String(granted[0].qos), {qos: 1});
  });
});
c.on("message", (topic, payload, packet) => {
  c.publish("test/browser/got", topic + " " + payload.toString() + " qos " + packet.qos,
            {qos: 1}, () => c.end());
});
c.on("error", (e) => { document.title = "error " + e.message; });
</script></body></html>
"""


def test_browser_receives_a_command(daemon, mock_kafka, site, tmp_path):
    """Kafka -> MQTT over WebSocket: the page subscribes to its command
    topic, a service writes the command to Kafka, the page reports what it
    got by publishing it."""
    from confluent_kafka import Producer
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/install-deps.sh test"
    (tmp_path / "site" / "cmd.html").write_text(COMMAND_PAGE)
    mock_kafka.cmd("create commands 1")
    d = daemon({"listeners": [{"listen": "127.0.0.1:0"},
                              {"listen": "127.0.0.1:0", "websocket": {"origins": [site]}}],
                "downlink": [{"kafka": "commands", "mqtt": "devices/{key}/commands"}]})
    port = int(d.wait_log(m2k.line(r"listening on 127\.0\.0\.1:(\d+) \(WebSocket\)",
                                   level="info", regex=True), since=0).group(1))
    d.wait_log(m2k.line("kafka consumer: reading commands partitions 0..0 from the end",
                        level="info"), since=0)
    with browser(chromium, tmp_path, f"{site}/cmd.html?port={port}"):
        recs = m2k.assert_records(mock_kafka.bootstrap, "test", 1, timeout=60, settle=0)
        assert (recs[0].key, recs[0].value) == (b"test/browser/subscribed", b"1")
        p = Producer({"bootstrap.servers": mock_kafka.bootstrap, "linger.ms": 0})
        p.produce("commands", key=b"browser-2", value=b"blink")
        assert p.flush(15) == 0
        recs = m2k.assert_records(mock_kafka.bootstrap, "test", 2, timeout=30)
    assert (recs[1].key, recs[1].value) == (b"test/browser/got",
                                            b"devices/browser-2/commands blink qos 1")
