"""Hostile input: every vector in tests/data/hostile/ against one daemon.

A vector file (one per attack, from the classes of past CVEs in MQTT
servers) has lines:
    # description
    name: NAME
    connect: yes              optional: a valid CONNECT first (CONNACK 0 expected)
    send: HEX                 bytes to send (repeatable)
    send-expr: PYTHON         bytes from an expression over m2k's packet builders
    send-slow: HEX            one byte per second until the server closes
    expect: close | bytes HEX then close | bytes HEX then open
    log: REGEX                the line the daemon must log for it (re.M, searched in what
                              it logged after the vector started; the exact message)
For each: the outcome is exactly as stated, and afterwards a well-behaved
client still connects and gets its QoS 1 PUBLISH acknowledged. At the end the
daemon's resident memory must not have grown by more than RSS_BOUND_KB over
repeated rounds of the vectors that declare huge lengths. Under `make
sanitize` the same test runs against the ASan+UBSan daemon and the fixture
fails on any report. Every wait is bounded."""
import glob
import os
import re
import socket
import time

import pytest

import m2k

VECTORS = sorted(glob.glob(os.path.join(m2k.SOURCE_DIR, "tests", "data", "hostile", "*.txt")))
RSS_BOUND_KB = 16 * 1024
REPEAT_ROUNDS = 100
VECTORS_PER_DAEMON = 8  # under the log rate limit's burst of 10


def parse(path):
    v = {"sends": [], "connect": False, "log": None, "path": path}
    for line in open(path):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        key, _, val = line.partition(": ")
        if key == "name":
            v["name"] = val
        elif key == "connect":
            v["connect"] = val == "yes"
        elif key == "send":
            v["sends"].append(("now", bytes.fromhex(val)))
        elif key == "send-expr":
            v["sends"].append(("now", eval(val, {"publish": m2k.publish, "connect": m2k.connect,
                                                 "packet": m2k.packet})))
        elif key == "send-slow":
            v["sends"].append(("slow", bytes.fromhex(val)))
        elif key == "expect":
            m = re.fullmatch(r"close|bytes ([0-9a-f]+) then (close|open)", val)
            assert m, f"{path}: bad expect line {val!r}"
            v["expect_bytes"] = bytes.fromhex(m.group(1)) if m.group(1) else b""
            v["expect_open"] = m.group(2) == "open"
        elif key == "log":
            v["log"] = val
        else:
            raise AssertionError(f"{path}: unknown key {key!r}")
    assert "name" in v and "expect_bytes" in v, path
    assert v["name"] == os.path.basename(path)[:-4], f"{path}: name differs from the file name"
    return v


def send_all(c, sends):
    for mode, data in sends:
        try:
            if mode == "now":
                c.send(data)
                continue
            for i in range(len(data)):
                c.send(data[i:i + 1])
                # Stop as soon as the server has given up on us.
                if not c.nothing_within(1.0):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return


def run_vector(d, v, check_log=True):
    """Returns a list of problems (empty when the vector behaved)."""
    problems = []
    mark = d.mark()
    c = m2k.Raw(d.port)
    try:
        if v["connect"]:
            c.connect("h-" + v["name"][:40])
        send_all(c, v["sends"])
        if v["expect_bytes"]:
            try:
                c.expect(v["expect_bytes"], timeout=8)
            except (AssertionError, TimeoutError, ConnectionError) as e:
                problems.append(f"expected bytes {v['expect_bytes'].hex()}: {e}")
        if v["expect_open"]:
            if not c.nothing_within(0.3):
                problems.append("expected the connection to stay open and quiet")
        else:
            extra, closed = c.read_until_close(8)
            if not closed:
                problems.append("expected the connection to be closed")
            elif extra:
                problems.append(f"expected nothing more before the close, got {extra.hex()}")
    finally:
        c.close()
    if check_log and v["log"]:
        try:
            d.wait_log(v["log"], since=mark, timeout=5)
        except AssertionError:
            problems.append(f"no log line matching {v['log']!r}")
    return problems


def good_client(d, n):
    c = m2k.Raw(d.port).connect(f"good-{n}")
    c.send(m2k.publish("test/good", b"ok", qos=1, pid=1))
    c.expect(m2k.puback(1))
    c.close()


def hostile_daemon(daemon):
    return daemon({"mqtt": {"connect_timeout_s": 2, "max_inflight": 16}})


def test_corpus_is_complete():
    names = {os.path.basename(p)[:-4] for p in VECTORS}
    assert len(names) >= 50
    for must in ["remlen-5-bytes", "remlen-max-not-connect", "second-connect",
                 "server-only-pingresp", "connect-will-qos-3", "utf8-d800-topic",
                 "utf8-nul-username", "utf8-overlong-will-topic", "publish-65535-levels",
                 "publish-qos-3", "publish-packet-id-0", "unsolicited-pubrec", "qos2-flood",
                 "slow-loris", "connect-and-silent"]:
        assert must in names


def test_every_vector(daemon):
    # Protocol errors and refusals are logged at most 10 per 10 s per kind
    # (log.h): a fresh daemon every VECTORS_PER_DAEMON vectors keeps every
    # vector's own line within that budget, without waiting out the window.
    failures = []
    d = None
    for i, path in enumerate(VECTORS):
        if i % VECTORS_PER_DAEMON == 0:
            if d is not None:
                assert d.proc.poll() is None, "daemon died:\n" + d.log()
                d.stop()
            d = hostile_daemon(daemon)
        v = parse(path)
        probs = run_vector(d, v)
        if probs:
            failures.append(f"{v['name']}: " + "; ".join(probs) + "\n--- log:\n" + d.log()[-2000:])
        good_client(d, i)
    assert d.proc.poll() is None, "daemon died:\n" + d.log()
    assert not failures, "\n".join(failures)


def test_memory_bounded(daemon):
    """Huge declared lengths and malformed packets, many times over: RSS
    stays within RSS_BOUND_KB of where it was after one round."""
    d = hostile_daemon(daemon)
    fast = [parse(p) for p in VECTORS]
    fast = [v for v in fast if not any(m == "slow" for m, _ in v["sends"])
            and v["name"] not in ("declared-longer-than-sent", "connect-and-silent")]
    for v in fast:
        assert run_vector(d, v, check_log=False) == [], v["name"]
    base = d.rss_kb()
    for _ in range(REPEAT_ROUNDS // 10):
        for v in fast:
            assert run_vector(d, v, check_log=False) == [], v["name"]
    for _ in range(REPEAT_ROUNDS):
        for name in ("remlen-max-not-connect", "remlen-max-connect", "remlen-5-bytes"):
            assert run_vector(d, next(v for v in fast if v["name"] == name),
                              check_log=False) == [], name
    good_client(d, 0)
    grown = d.rss_kb() - base
    assert grown < RSS_BOUND_KB, f"RSS grew by {grown} kB"


def test_per_address_connection_limit(daemon):
    d = daemon({"mqtt": {"max_connections_per_ip": 2}})
    a = m2k.Raw(d.port).connect("a")
    b = m2k.Raw(d.port).connect("b")
    mark = d.mark()
    c = m2k.Raw(d.port)
    c.expect_close()
    d.wait_log(m2k.line(r"refusing 127\.0\.0\.1:\d+ on 127\.0\.0\.1:0: max_connections_per_ip "
                        r"reached", level="warn", regex=True), since=mark)
    a.close()
    # The slot is free again once the daemon has seen the close.
    m2k.wait_until(lambda: _connects(d, "a2"), 5, "a third connection after one closed")
    b.close()


def _connects(d, cid):
    c = m2k.Raw(d.port)
    try:
        c.connect(cid)
        return True
    except (AssertionError, TimeoutError, ConnectionError, OSError):
        return False
    finally:
        c.close()


def test_per_address_connect_rate(daemon):
    d = daemon({"mqtt": {"connect_rate_per_ip": 1, "connect_burst_per_ip": 2}})
    m2k.Raw(d.port).connect("r1").close()
    m2k.Raw(d.port).connect("r2").close()
    mark = d.mark()
    c = m2k.Raw(d.port)
    c.expect_close()
    d.wait_log(m2k.line(r"refusing 127\.0\.0\.1:\d+ on 127\.0\.0\.1:0: connect_rate_per_ip "
                        r"exceeded", level="warn", regex=True), since=mark)
    # One token per second comes back.
    m2k.wait_until(lambda: _connects(d, "r3"), 5, "a connection once a token came back")


@pytest.mark.parametrize("limit", [4096, 65536])
def test_output_buffer_bound(daemon, limit):
    """A client that publishes QoS 1 and never reads: the PUBACKs fill its
    receive buffer and the daemon's socket send buffer, the daemon's writes
    fail with EAGAIN or go partial (with 64 KiB, one loop turn's acks overrun
    what the socket still takes) and the rest queues; once more than
    max_output_buffer bytes wait for the client, it is cut. What it did get
    is the exact PUBACK sequence, in order, nothing lost or repeated at the
    partial writes; everyone else is still served."""
    d = daemon({"mqtt": {"max_output_buffer": limit}, "unmapped": "drop"})
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.connect(("127.0.0.1", d.port))
    s.settimeout(5)
    s.sendall(m2k.connect("no-reader"))
    assert s.recv(4) == m2k.CONNACK_OK
    mark = d.mark()
    batch, sent, cut = 2000, 0, False
    deadline = time.monotonic() + 60
    while not cut and time.monotonic() < deadline and sent < 3_000_000:
        data = b"".join(m2k.publish("unmapped/x", b"", qos=1, pid=(sent + i) % 65535 + 1)
                        for i in range(batch))
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            break
        sent += batch
        cut = f"over mqtt.max_output_buffer {limit}" in d.log(mark)
    d.wait_log(m2k.line(rf"\d+ bytes of output queued, over mqtt\.max_output_buffer {limit} \(the "
                        r"client does not read\)", level="warn", client="-", regex=True),
               since=mark, timeout=30)
    d.wait_log(m2k.line("closing: output buffer limit reached", level="warn",
                        client="no-reader"), since=mark)
    got, closed = b"", False
    # Read what is still on its way with a wider window: the 1 KiB one made
    # the kernel trickle the queued acks (~3 KB/s on a loaded machine, so a
    # megabyte queued took minutes), which says nothing about the daemon.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(10)
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                closed = True
                break
            got += chunk
    except ConnectionResetError:  # it did not read what we sent: a reset
        closed = True
    except socket.timeout:
        pass
    s.close()
    assert closed, f"still open 10 s after the cut ({len(got)} bytes read)"
    n = len(got) // 4
    assert n > 0 and len(got) == 4 * n, f"{len(got)} bytes"
    want = b"".join(m2k.puback(i % 65535 + 1) for i in range(n))
    assert got == want, "the PUBACKs that reached the client are not the exact sequence"
    assert n < sent, f"{n} PUBACKs for {sent} PUBLISHes: the bound never applied"
    good_client(d, 1)
