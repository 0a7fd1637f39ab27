"""Operations: JSON logs, rate-limited repetitive lines, systemd notifications
(READY/STOPPING/RELOADING/WATCHDOG over a test NOTIFY_SOCKET) and SIGHUP
reload (new rules for connected clients, rejected configs, restart-only
settings). Every wait is bounded."""
import json
import re
import signal
import socket
import time

import yaml

import m2k
from m2k import Raw


def test_json_log_lines_parse_and_carry_client_fields(daemon):
    d = daemon({"log": {"level": "info", "format": "json"}})
    r = Raw(d.port).connect("json-1")
    r.send(m2k.publish("test/j", "x", qos=1, pid=7))
    r.expect(m2k.puback(7))
    mark = d.mark()
    r.send(m2k.connect("json-1"))  # second CONNECT: a protocol error
    r.expect_close()
    d.wait_log(r'"level":"warn","msg":"closing: second CONNECT \[MQTT-3\.1\.0-2\]",'
               r'"client":"json-1","addr":"127\.0\.0\.1:\d+"\}$', since=mark)
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
        r.expect_close()
        r.close()
    assert d.stop() == 0
    n = len(re.findall(m2k.line("closing: first packet is PUBLISH, not CONNECT [MQTT-3.1.0-1]",
                                level="warn", client="-"), d.log(), re.M))
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
        assert ns.recv_until(lambda g: "STOPPING=1" in ns.states(), 5), ns.got
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
        assert ns.recv_until(lambda g: "STOPPING=1" in ns.states(), 5), ns.got
        assert ns.states() == ["READY=1", "STOPPING=1"], ns.got
    finally:
        ns.close()


def reload_and_wait(d, pattern):
    """SIGHUP; waits for the line `pattern`; returns the log the reload wrote."""
    mark = d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(m2k.line(f"SIGHUP: reloading {d.config_path}", level="info"), since=mark)
    d.wait_log(pattern, since=mark)
    return d.log(mark)


def test_reload_new_rule_applies_to_connected_client(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-1")
    r.send(m2k.publish("test/a", "before", qos=1, pid=1))
    r.expect(m2k.puback(1))
    rules = [{"mqtt": "test/#", "kafka": "test-reloaded", "key": "{topic}"}]
    d.rewrite_config({"topics": rules, "log": {"level": "debug"}})
    reload_and_wait(d, m2k.line("reload: configuration applied (1 topic rules, unmapped "
                                "disconnect, log level debug)", level="info"))
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
    mark = d.mark()
    Raw(d.port).connect("rl-1b").close()
    d.wait_log(m2k.line(r"accepted 127\.0\.0\.1:\d+ on 127\.0\.0\.1:0", level="debug",
                        regex=True), since=mark)
    r.send(m2k.PINGREQ)
    r.expect(m2k.PINGRESP)


def test_reload_broken_config_keeps_the_old_one(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-2")
    good = d.config_path.read_text()
    # Two errors: an illegal unmapped topic name and an invalid filter.
    d.rewrite_config(text=good.replace("unmapped: disconnect", "unmapped: bad topic!")
                     .replace("test/#", "test/#/x"))
    log = reload_and_wait(d, m2k.line("reload: the running configuration stays unchanged",
                                      level="error"))
    rejected = f"reload: configuration rejected: {d.config_path}"
    lines = [l.split(" ", 2)[2] for l in log.splitlines() if "configuration rejected" in l]
    assert lines == [
        f"{rejected}:13:9: topics[2].mqtt: invalid topic filter \"test/#/x\": '#' must be alone "
        "in the last level",
        f"{rejected}:15:11: unmapped: expected disconnect, drop or {{topic: NAME}}, got "
        "\"bad topic!\""], log
    assert "reload: configuration applied" not in log
    # Still the old rules, same connection.
    r.send(m2k.publish("test/b", "still", qos=1, pid=3))
    r.expect(m2k.puback(3))
    assert [x.value for x in m2k.assert_records(mock_kafka.bootstrap, "test", 1)] == [b"still"]


def test_reload_names_settings_that_need_a_restart(daemon, mock_kafka):
    d = daemon()
    r = Raw(d.port).connect("rl-3")
    other = m2k.free_port()
    d.rewrite_config({"listeners": [{"listen": f"127.0.0.1:{other}"}],
                      "kafka": {"properties": {"linger.ms": 7}},
                      "metrics": {"listen": f"127.0.0.1:{m2k.free_port()}"}})
    log = reload_and_wait(d, m2k.line("reload: configuration applied (3 topic rules, unmapped "
                                      "disconnect, log level info)", level="info"))
    warned = [l.split(" ", 2)[2].lstrip() for l in log.splitlines() if "needs a restart" in l]
    assert warned == [
        "reload: listeners changed; this needs a restart (still listening as before)",
        "reload: kafka.properties changed; this needs a restart (the producer keeps its "
        "settings)",
        "reload: metrics.listen changed; this needs a restart (still off)"], log
    # Still serving on the old port, connection intact.
    r.send(m2k.PINGREQ)
    r.expect(m2k.PINGRESP)
    Raw(d.port).connect("rl-3b").close()


def test_lint_warnings_logged_at_start_and_reload(daemon, mock_kafka):
    """--check's warnings are warn lines at the start and in a reload, which
    they never refuse."""
    d = daemon({"unmapped": "drop"})
    path = d.config_path
    # since=0: the start-up lines are what is checked here.
    d.wait_log(m2k.line(f"{path}:15:11: warning: unmapped: drop: QoS 1 and 2 messages to topics "
                        "no rule maps are acknowledged and thrown away", level="warn"), since=0)
    rules = d.config["topics"] + [{"mqtt": "test/a/+", "kafka": "never"}]
    d.rewrite_config({"topics": rules, "unmapped": "disconnect"})
    log = reload_and_wait(d, m2k.line("reload: configuration applied (4 topic rules, unmapped "
                                      "disconnect, log level info)", level="info"))
    warned = [l.split(" ", 2)[2].lstrip() for l in log.splitlines() if "warning:" in l]
    assert warned == [
        f"reload: {path}:12:10: warning: topics[1].kafka: {{1}} is regex group 1, which may match "
        "a byte a Kafka topic name cannot hold (write the group with [a-zA-Z0-9._-]): a message "
        "whose rendered Kafka topic is illegal is refused, never acknowledged (allowed: a-z A-Z "
        "0-9 . _ -, 1..249 characters)",
        f"reload: {path}:15:9: warning: topics[3].mqtt: \"test/a/+\" never applies: topics[2] "
        "\"test/#\" (line 13) comes first and matches every topic it matches"], log


def test_reload_restart_warnings_compare_with_what_runs(daemon, mock_kafka):
    """Not with the last file read: the second change names the running
    value, restoring the file is silent, and a changed listener warns on every
    reload while it differs from the one listening."""
    d = daemon()
    running = d.config["kafka"]["bootstrap_servers"]
    original = d.config_path.read_text()
    applied = m2k.line("reload: configuration applied (3 topic rules, unmapped disconnect, "
                       "log level info)", level="info")

    def warnings(log):
        return [l.split(" ", 2)[2].lstrip() for l in log.splitlines() if "needs a restart" in l]

    bootstrap_warning = ("reload: kafka.bootstrap_servers changed; this needs a restart "
                         f"(still using {running})")
    for other in ("127.0.0.1:1", "127.0.0.1:2"):
        d.rewrite_config({"kafka": {"bootstrap_servers": other}})
        assert warnings(reload_and_wait(d, applied)) == [bootstrap_warning]
    d.rewrite_config(text=original)
    assert warnings(reload_and_wait(d, applied)) == []
    d.rewrite_config({"kafka": {"bootstrap_servers": running},
                      "listeners": [{"listen": f"127.0.0.1:{m2k.free_port()}"}]})
    listener_warning = "reload: listeners changed; this needs a restart (still listening as before)"
    for _ in range(2):
        assert warnings(reload_and_wait(d, applied)) == [listener_warning]
    r = Raw(d.port).connect("rl-4")
    r.send(m2k.PINGREQ)
    r.expect(m2k.PINGRESP)


def test_reload_refuses_max_packet_size_above_the_running_message_max_bytes(daemon, mock_kafka):
    """message.max.bytes needs a restart, so the running producer keeps its
    own: a reload may not raise mqtt.max_packet_size above it (set, or derived
    from the new message.max.bytes)."""
    d = daemon()
    original = d.config_path.read_text()
    stays = m2k.line("reload: the running configuration stays unchanged", level="error")
    d.rewrite_config({"kafka": {"properties": {"message.max.bytes": 2000000}},
                      "mqtt": {"max_packet_size": 1500000}})
    text = d.config_path.read_text()
    lines = text.splitlines()
    row = next(i for i, l in enumerate(lines) if "max_packet_size:" in l)
    col = lines[row].index("1500000") + 1
    log = reload_and_wait(d, stays)
    rejected = [l.split(" ", 2)[2].lstrip() for l in log.splitlines() if "rejected" in l]
    assert rejected == [
        f"reload: configuration rejected: {d.config_path}:{row + 1}:{col}: mqtt.max_packet_size: "
        "1500000 is above the running producer's message.max.bytes (1000000), which changes "
        "only with a restart; lower it or restart"], log
    assert "configuration applied" not in log
    derived = yaml.safe_load(original)
    derived["kafka"].setdefault("properties", {})["message.max.bytes"] = 2000000
    derived["mqtt"].pop("max_packet_size")
    d.rewrite_config(text=yaml.safe_dump(derived, sort_keys=False))
    log = reload_and_wait(d, stays)
    rejected = [l.split(" ", 2)[2].lstrip() for l in log.splitlines() if "rejected" in l]
    assert rejected == [
        f"reload: configuration rejected: {d.config_path}: mqtt.max_packet_size (from "
        "kafka.properties.message.max.bytes): 2000000 is above the running producer's "
        "message.max.bytes (1000000), which changes only with a restart; lower it or restart"], log
    # Within the running bound, the same setting applies.
    within = yaml.safe_load(original)
    within["mqtt"]["max_packet_size"] = 500000
    d.rewrite_config(text=yaml.safe_dump(within, sort_keys=False))
    log = reload_and_wait(d, m2k.line("reload: configuration applied (3 topic rules, unmapped "
                                      "disconnect, log level info)", level="info"))
    assert "rejected" not in log


def test_debug_log_routed_lines_rate_limited(daemon, mock_kafka):
    """log.level: debug shows one "routed" line per record a rule mapped, at
    most 10 per second: the lines let through plus the suppressed counts add
    up to the records produced (an unmapped or refused message has none)."""
    d = daemon({"log": {"level": "debug"}})
    r = Raw(d.port).connect("dbg-1")
    mark = d.mark()
    r.send(m2k.publish("sensors/7/temperature", b"x", qos=1, pid=1))
    r.expect(m2k.puback(1))
    d.wait_log(m2k.line("routed topic=sensors/7/temperature kafka=temperature key=7",
                        level="debug"), since=mark)
    routed = re.compile(r"^\S+ debug routed topic=test/n(\d+) kafka=test key=test/n\d+$", re.M)
    suppressed = re.compile(r"^\S+ debug suppressed (\d+) similar lines: routed messages$", re.M)
    mark = d.mark()
    sent = 0
    for _ in range(30):  # a burst: more than one second's lines
        sent += 1
        r.send(m2k.publish(f"test/n{sent}", b"x", qos=1, pid=sent % 60000 + 1))
        r.expect(m2k.puback(sent % 60000 + 1))

    def suppressed_reported():
        # One message more (bounded) until the window's count is written.
        nonlocal sent
        if suppressed.search(d.log(mark)):
            return True
        if sent < 200:
            sent += 1
            r.send(m2k.publish(f"test/n{sent}", b"x", qos=1, pid=sent % 60000 + 1))
            r.expect(m2k.puback(sent % 60000 + 1))
        return False

    m2k.wait_until(suppressed_reported, 30, "a 'suppressed ... routed messages' line", interval=0.2)
    m2k.assert_records(mock_kafka.bootstrap, "test", sent)
    log = d.log(mark)
    let_through = [int(n) for n in routed.findall(log)]
    dropped = sum(int(n) for n in suppressed.findall(log))
    last = max(let_through)
    # Up to the last line let through, every record is a line or counted.
    assert len(let_through) + dropped == last, log
    assert dropped > 0 and last <= sent
    r.close()
