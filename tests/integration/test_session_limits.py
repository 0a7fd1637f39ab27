"""Memory bounds per client and per detached session (docs/security.md,
"Memory per client"): the caps on CONNECT strings, and the gauges of the
persistent sessions kept without a connection. Raw clients, exact bytes,
exact log lines after a mark, exact counters. Every wait is bounded."""
import m2k
from m2k import Raw
from test_metrics import metrics_overrides, scrape


def start(daemon, **over):
    d = daemon(m2k.merge(metrics_overrides(0), over))
    m = d.wait_log(m2k.line(r"metrics listening on 127\.0\.0\.1:(\d+) \(GET /metrics, /healthz, "
                            r"/readyz\)", level="info", regex=True), since=0)
    return d, int(m.group(1))


def test_connect_caps(daemon):
    d, mport = start(daemon, mqtt={"max_will_payload": 100})
    mark = d.mark()
    # A client id one byte over the default 256: CONNACK 2, then the close.
    c = Raw(d.port)
    c.send(m2k.connect("i" * 257, clean=False))
    c.expect_close(b"\x20\x02\x00\x02")
    d.wait_log(m2k.line("closing: client id of 257 bytes above mqtt.max_client_id_length 256",
                        level="warn", client="-"), since=mark)
    # A will message over the cap: no CONNACK code fits in 3.1.1, closed unanswered.
    c = Raw(d.port)
    c.send(m2k.connect("dev1", will=("test/will", b"w" * 101, 1, False)))
    c.expect_close(b"")
    d.wait_log(m2k.line("closing: CONNECT refused: will message of 101 bytes above "
                        "mqtt.max_will_payload 100", level="warn", client="-"), since=mark)
    # At the caps: accepted.
    Raw(d.port).connect("i" * 256, will=("test/will", b"w" * 100, 1, False)).close()
    s = scrape(mport)
    assert s['mqtt2kafka_connections_refused_total{reason="identifier_rejected"}'] == 1
    assert s['mqtt2kafka_connections_refused_total{reason="connect_too_long"}'] == 1


def test_persistent_session_gauges(daemon):
    d, mport = start(daemon)
    cid = "p" * 200
    c = Raw(d.port).connect(cid, clean=False)
    for pid in (1, 2, 3):
        c.send(m2k.publish("test/gauge", b"x", qos=1, pid=pid))
        c.expect(m2k.puback(pid))
    assert scrape(mport)["mqtt2kafka_persistent_sessions"] == 0  # connected: not counted
    c.close()
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_persistent_sessions"] == 1, 5,
                   "the session kept after the close")
    s = scrape(mport)
    # The session object and its 200-byte client id; every report came back,
    # so no in-flight ring is kept.
    assert 201 < s["mqtt2kafka_persistent_session_bytes"] < 201 + 512
    Raw(d.port).connect(cid, clean=False, session_present=True).close()
    m2k.wait_until(lambda: scrape(mport)["mqtt2kafka_persistent_sessions"] == 1, 5,
                   "the session kept again after the second close")
    c = Raw(d.port).connect(cid, clean=True)
    s = scrape(mport)
    assert s["mqtt2kafka_persistent_sessions"] == 0
    assert s["mqtt2kafka_persistent_session_bytes"] == 0
    c.close()
