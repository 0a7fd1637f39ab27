"""Operations: JSON logs, rate-limited repetitive lines, systemd notifications
(READY/STOPPING/RELOADING/WATCHDOG over a test NOTIFY_SOCKET) and SIGHUP
reload (new rules for connected clients, rejected configs, restart-only
settings). Every wait is bounded."""
import json
import re
import signal
import socket
import time

import m2k
from m2k import Raw


def test_json_log_lines_parse_and_carry_client_fields(daemon):
    d = daemon({"log": {"level": "info", "format": "json"}})
    r = Raw(d.port).connect("json-1")
    r.send(m2k.publish("test/j", "x", qos=1, pid=7))
    r.expect(m2k.puback(7))
    r.send(m2k.connect("json-1"))  # second CONNECT: a protocol error
    assert r.closed_within(5)
    assert d.wait_log(r'"msg":"closing: second CONNECT')
    assert d.stop() == 0
    lines = [l for l in d.log().splitlines() if l.strip()]
    objs = [json.loads(l) for l in lines]  # every line is one JSON object
    for o in objs:
        assert set(o) >= {"ts", "level", "msg"}, o
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", o["ts"]), o
        assert o["level"] in ("error", "warn", "info", "debug"), o
    client = [o for o in objs if o.get("client") == "json-1"]
    msgs = [o["msg"] for o in client]
    assert any(m.startswith("connected (clean session 1") for m in msgs), msgs
    assert "closing: second CONNECT [MQTT-3.1.0-2]" in msgs, msgs
    for o in client:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", o["addr"]), o


def test_protocol_error_lines_are_rate_limited(daemon):
    """15 protocol errors in a burst: exactly 10 closing lines (the burst per
    10 s window; the exact count is in the metrics, see test_metrics)."""
    d = daemon()
    for _ in range(15):
        r = Raw(d.port)
        r.send(m2k.publish("test/x", "x"))  # PUBLISH before CONNECT
        assert r.closed_within(5)
        r.close()
    assert d.stop() == 0
    n = len(re.findall(r"closing: first packet is PUBLISH, not CONNECT", d.log()))
    assert n == 10, d.log()


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []

    def recv_until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred(self.got):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return False
        return True

    def states(self):
        """Every KEY=VALUE of every datagram in order, STATUS= excluded."""
        return [kv for msg in self.got for kv in msg.split("\n")
                if kv and not kv.startswith("STATUS=")]

    def close(self):
        self.sock.close()


def test_sd_notify_ready_watchdog_reload_stopping(daemon, tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        d = daemon(env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"})
        assert ns.recv_until(lambda g: "WATCHDOG=1" in "\n".join(g)
                             and "\n".join(g).count("WATCHDOG=1") >= 2, 10), ns.got
        first = ns.got[0].split("\n")
        assert first[0] == "READY=1", ns.got
        assert first[1].startswith("STATUS=serving; Kafka "), ns.got
        d.proc.send_signal(signal.SIGHUP)
        assert ns.recv_until(lambda g: "RELOADING=1" in ns.states()
                             and ns.states()[ns.states().index("RELOADING=1"):].count("READY=1")
                             >= 1, 10), ns.got
        assert d.stop() == 0
        ns.recv_until(lambda g: "STOPPING=1" in ns.states(), 5)
        st = [s for s in ns.states() if s != "WATCHDOG=1"]
        assert st == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], ns.got
    finally:
        ns.close()


def test_no_watchdog_without_watchdog_usec(daemon, tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        d = daemon(env={"NOTIFY_SOCKET": ns.path})
        assert ns.recv_until(lambda g: len(g) >= 1, 10)
        assert d.stop() == 0
        ns.recv_until(lambda g: "STOPPING=1" in ns.states(), 5)
        assert ns.states() == ["READY=1", "STOPPING=1"], ns.got
    finally:
        ns.close()


def reload_and_wait(d, pattern, timeout=10):
    n = len(re.findall(pattern, d.log()))
    d.proc.send_signal(signal.SIGHUP)
    ok = m2k.wait_until(lambda: len(re.findall(pattern, d.log())) > n, timeout)
    assert ok, f"no {pattern!r} after SIGHUP:\n{d.log()}"


def test_reload_new_rule_applies_to_connected_client(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-1")
    r.send(m2k.publish("test/a", "before", qos=1, pid=1))
    r.expect(m2k.puback(1))
    rules = [{"mqtt": "test/#", "kafka": "test-reloaded", "key": "{topic}"}]
    d.rewrite_config({"topics": rules, "log": {"level": "debug"}})
    reload_and_wait(d, r"reload: configuration applied")
    # The same connection, no reconnect: the next PUBLISH goes to the new topic.
    r.send(m2k.publish("test/a", "after", qos=1, pid=2))
    r.expect(m2k.puback(2))
    recs = m2k.assert_records(mock_kafka.bootstrap, "test-reloaded", 1)
    assert recs[0].value == b"after"
    old = m2k.assert_records(mock_kafka.bootstrap, "test", 1)
    assert old[0].value == b"before"
    assert "needs a restart" not in d.log()
    # log.level debug applied: the accept of a new connection is logged now.
    assert not re.search(r"debug +accepted", d.log())
    Raw(d.port).connect("rl-1b").close()
    assert d.wait_log(r"debug +accepted 127\.0\.0\.1:\d+ on 127\.0\.0\.1", 5), d.log()
    r.send(m2k.PINGREQ)
    r.expect(m2k.PINGRESP)


def test_reload_broken_config_keeps_the_old_one(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-2")
    good = d.config_path.read_text()
    # Two errors: an illegal unmapped topic name and an invalid filter.
    d.rewrite_config(text=good.replace("unmapped: disconnect", "unmapped: bad topic!")
                     .replace("test/#", "test/#/x"))
    reload_and_wait(d, r"reload: the running configuration stays unchanged")
    log = d.log()
    name = re.escape(str(d.config_path))
    assert re.search(rf"reload: configuration rejected: {name}:\d+:\d+: unmapped", log), log
    assert re.search(rf"reload: configuration rejected: {name}:\d+:\d+: .*test/#/x", log), log
    assert "reload: configuration applied" not in log
    # Still the old rules, same connection.
    r.send(m2k.publish("test/b", "still", qos=1, pid=3))
    r.expect(m2k.puback(3))
    m2k.assert_records(mock_kafka.bootstrap, "test", 1)


def test_reload_names_settings_that_need_a_restart(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-3")
    other = m2k.free_port()
    d.rewrite_config({"listeners": [{"listen": f"127.0.0.1:{other}"}],
                      "kafka": {"properties": {"linger.ms": 7}},
                      "metrics": {"listen": f"127.0.0.1:{m2k.free_port()}"}})
    reload_and_wait(d, r"reload: configuration applied")
    log = d.log()
    assert "reload: listeners changed; this needs a restart" in log
    assert "reload: kafka.properties changed; this needs a restart" in log
    assert "reload: metrics.listen changed; this needs a restart (still off)" in log
    assert "kafka.bootstrap_servers changed" not in log
    # Still serving on the old port, connection intact.
    r.send(m2k.PINGREQ)
    r.expect(m2k.PINGRESP)
    Raw(d.port).connect("rl-3b").close()
