"""Helpers for the integration tests: the mock Kafka process, a consumer that
reads back exact records, the daemon under test, raw MQTT 3.1.1 packets.

Every wait here is bounded, and a bound that is hit fails the test: waits
raise (AssertionError) instead of returning a falsy value; a log check looks
only after a mark() taken before the action it checks; a Kafka read raises on
any broker error and compares with the brokers' watermarks, so an
unreachable broker is a failure, never "no records".
"""
import collections
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import time

import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition, OFFSET_BEGINNING

SOURCE_DIR = os.environ.get(
    "M2K_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)
BUILD_DIR = os.environ.get("M2K_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
DAEMON = os.path.join(BUILD_DIR, "mqtt2kafka")
MOCK_KAFKA = os.path.join(BUILD_DIR, "tests", "tools", "m2k-mock-kafka")

# How the daemon spells header values (see docs/semantics.md).
HEADER_TRUE = b"1"


def free_port():
    """A loopback port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    """Polls `pred()` until it returns a truthy value and returns that value.
    When `timeout` seconds pass first, fails (AssertionError) with `what` (a
    string, or a callable giving one, evaluated then: for a log tail) and the
    last value pred returned."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            desc = what() if callable(what) else what
            raise AssertionError(f"waited {timeout} s for {desc}; last value {v!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# The mock Kafka cluster process (tests/tools/m2k-mock-kafka)

class MockKafka:
    def __init__(self, brokers=3, args=()):
        if not os.path.exists(MOCK_KAFKA):
            raise RuntimeError(f"{MOCK_KAFKA} not built")
        self.proc = subprocess.Popen(
            [MOCK_KAFKA, "--brokers", str(brokers), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        line = self._readline(10)
        if not line.startswith("BOOTSTRAP "):
            self.close()
            raise RuntimeError(f"m2k-mock-kafka said {line!r}")
        self.bootstrap = line.split(" ", 1)[1].strip()

    def _readline(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("m2k-mock-kafka did not answer")
        return self.proc.stdout.readline()

    def cmd(self, line, timeout=10):
        """Sends one command; returns the answer; raises unless it is OK."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self._readline(timeout).strip()
        if answer != "OK":
            raise RuntimeError(f"m2k-mock-kafka: {line!r} -> {answer!r}")
        return answer

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # EOF ends it
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait(5)


# --------------------------------------------------------------------------
# Reading records back

# headers: a dict; header_list: every header in order, duplicates kept.
Record = collections.namedtuple(
    "Record", "topic partition offset key value headers timestamp header_list",
    defaults=(None,)
)


def _consumer(bootstrap):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "m2k-integration",  # never joined: we assign()
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # A fetch waits at most this long for data; the watermark queries
        # after reading wait behind it (librdkafka's default is 500 ms).
        "fetch.wait.max.ms": 20,
        "log_level": 3,
    })


class KafkaReadError(AssertionError):
    """The brokers did not answer or answered with an error: a test that reads
    Kafka fails, it never takes that for "no records"."""


def _partitions(c, topic, deadline, missing_ok=False):
    """Every partition of `topic` (the mock creates a topic on its first
    metadata request, a consumer's included; Apache Kafka does not). With
    `missing_ok`, a broker's answer that the topic does not exist gives []
    (the broker answered, and a topic that does not exist holds nothing).
    Retries until `deadline`, then raises KafkaReadError with the last error."""
    last = None
    while True:
        try:
            md = c.list_topics(topic, timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            t = md.topics.get(topic)
            if t is not None and t.error is None and t.partitions:
                return sorted(t.partitions)
            if (missing_ok and t is not None and t.error is not None
                    and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                return []
            last = "no partitions" if t is None or t.error is None else t.error
        except KafkaException as e:
            last = e
        if time.monotonic() >= deadline:
            raise KafkaReadError(f"{topic}: no metadata from the brokers: {last}")
        time.sleep(0.1)


def read_topic(bootstrap, topic, n, timeout=15.0, settle=0.0, missing_ok=False):
    """Reads `topic` from the beginning of every partition until `n` records
    arrived or `timeout` passed, then `settle` seconds more (so a caller can
    check that nothing beyond `n` arrives). Returns (Records, each partition
    in offset order; the number of records the brokers then say the topic
    holds, by its low and high watermarks). Raises KafkaReadError on any
    broker error: an unreachable broker fails the test."""
    c = _consumer(bootstrap)
    out = []
    try:
        deadline = time.monotonic() + timeout
        parts = _partitions(c, topic, deadline, missing_ok)
        if not parts:
            return [], 0
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        end = None
        while True:
            now = time.monotonic()
            if end is None and (len(out) >= n or now >= deadline):
                end = now + settle
            if end is not None and now >= end:
                break
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                raise KafkaReadError(f"{topic}: {m.error()}")
            ts_type, ts = m.timestamp()
            out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                              dict(m.headers() or []), ts, list(m.headers() or [])))
        total = 0
        for p in parts:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5.0,
                                                 cached=False)
            except KafkaException as e:
                raise KafkaReadError(f"{topic} [{p}]: no watermarks: {e}") from None
            total += hi - lo
    finally:
        c.close()
    return out, total


def consume(bootstrap, topic, n, timeout=15.0, settle=0.0):
    """The Records of read_topic (at most what arrived within the bounds)."""
    return read_topic(bootstrap, topic, n, timeout, settle)[0]


def assert_records(bootstrap, topic, n, timeout=15.0, settle=1.0):
    """Exactly `n` records: fails if fewer arrive within timeout, if more
    arrive within `settle` after the n-th, or if the brokers then hold any
    other number in the topic."""
    recs, total = read_topic(bootstrap, topic, n, timeout=timeout, settle=settle)
    assert (len(recs), total) == (n, n), \
        f"{topic}: expected {n} records, read {len(recs)}, the topic holds {total}: {recs[:5]}"
    return recs


def assert_no_records(bootstrap, topic, window=1.5):
    """Nothing arrives within `window`, and the brokers (which must answer)
    then say the topic is empty."""
    recs, total = read_topic(bootstrap, topic, 1, timeout=window, missing_ok=True)
    assert (recs, total) == ([], 0), \
        f"{topic}: expected no records, read {len(recs)}, the topic holds {total}: {recs[:5]}"


def expected_headers(topic, client_id, qos, retain=False, username=None):
    h = {
        "mqtt.topic": topic.encode(),
        "mqtt.client_id": client_id.encode(),
        "mqtt.qos": str(qos).encode(),
    }
    if retain:
        h["mqtt.retain"] = HEADER_TRUE
    if username is not None:
        h["mqtt.username"] = username.encode()
    return h


# --------------------------------------------------------------------------
# The daemon under test

def spool_dirs(root):
    """Every worker's spool under spool.dir `root`: root itself (worker 0),
    then root/w1, root/w2, ... (threads: N; docs/operations.md)."""
    root = pathlib.Path(root)
    return [root] + sorted((p for p in root.glob("w[0-9]*") if p.is_dir()),
                           key=lambda p: int(p.name[1:]))


def spool_files(root):
    """The names of the files in every worker's spool, but the file
    `workers` (which places client ids on the workers)."""
    return sorted(p.name for d in spool_dirs(root) if d.exists() for p in d.iterdir()
                  if p.is_file() and not (d == pathlib.Path(root) and p.name == "workers"))


def workers(d):
    """The workers a daemon runs (its configuration's threads:; 0 or none:
    one per CPU this process may use, at most 16)."""
    return d.config.get("threads", 0) or min(len(os.sched_getaffinity(0)), 16)


def base_config(port, bootstrap):
    return {
        "listeners": [{"listen": f"127.0.0.1:{port}"}],
        "kafka": {"bootstrap_servers": bootstrap, "properties": {"linger.ms": 5}},
        "topics": [
            {"mqtt": "sensors/+/temperature", "kafka": "temperature", "key": "{1}"},
            {"regex": "^plant/([^/]+)/(.+)$", "kafka": "plant-{1}"},
            {"mqtt": "test/#", "kafka": "test"},
        ],
        "unmapped": "disconnect",
        "headers": True,
        "mqtt": {
            "max_packet_size": 1000000,
            "max_inflight": 1024,
            "max_connections": 1000,
            "connect_timeout_s": 10,
            "max_keepalive_s": 65535,
            "session_expiry_s": 86400,
        },
        "shutdown_timeout_s": 10,
        "log": {"level": "info"},
    }


def merge(base, over):
    """Nested dicts merge; anything else (lists included) replaces."""
    out = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def line(msg, level=None, client=None, addr=r"127\.0\.0\.1:\d+", regex=False):
    """A regex for one whole text log line that carries exactly `msg`
    (include/util/log.h: "<ts> <level padded to 5> [client=<id> addr=<addr> ]<msg>").
    `msg` is literal text unless `regex`; `client` is the client id ("-"
    before CONNECT) for a client line, None for a line without client fields;
    `addr` is a regex."""
    body = msg if regex else re.escape(msg)
    lvl = re.escape(f"{level:<5}") if level else r"(?:error|warn |info |debug)"
    who = "" if client is None else f"client={re.escape(client)} addr={addr} "
    return rf"^\S+ {lvl} {who}{body}$"


class Daemon:
    def __init__(self, tmp_path, bootstrap, overrides=None, name="mqtt2kafka", env=None,
                 serving=True):
        """serving=False: return once started, without waiting for the MQTT
        listener (a start that waits for an unreachable Kafka)."""
        assert os.path.exists(DAEMON), f"{DAEMON} does not exist: build first"
        # Port 0: the daemon binds any free port and names it in its log, so
        # no other process can take the port between choosing and binding.
        self.port = None
        self.config = merge(base_config(0, bootstrap), overrides)
        # M2K_THREADS=N runs the suite with N workers (threads: N), where the
        # configuration allows several (all do since 2026-12-06).
        if os.environ.get("M2K_THREADS") and "threads" not in self.config:
            self.config["threads"] = int(os.environ["M2K_THREADS"])
        self.config_path = tmp_path / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([DAEMON, "-c", str(self.config_path)],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env=None if env is None else {**os.environ, **env})
        if serving:
            self._wait_serving(10.0)

    def _wait_serving(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"mqtt2kafka exited with {rc}:\n{self.log()}")
            # The log line, not a probe connection: a probe would count
            # against max_connections until the daemon notices it closed.
            # (text or JSON log format). Only a plain listener's line ends
            # with the port: a TLS listener's ends in " (TLS)" and is not
            # taken here (tests/integration/test_tls.py matches it itself).
            m = re.search(r"[ \"]listening on 127\.0\.0\.1:(\d+)(?:\"}|$)", self.log(), re.M)
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait(5)
        self._log.close()
        raise AssertionError(f"mqtt2kafka did not start listening:\n{self.log()}")

    def rewrite_config(self, overrides=None, text=None):
        """Writes a new configuration file (merged overrides, or raw text) in place."""
        if text is None:
            self.config = merge(self.config, overrides)
            text = yaml.safe_dump(self.config, sort_keys=False)
        self.config_path.write_text(text)

    def mark(self):
        """The log's length now, in bytes: taken before an action, passed as
        `since` to log() and wait_log() so a check sees only the lines the
        daemon wrote after it (not the start-up lines, not an earlier case)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.stat().st_size

    def log(self, since=0):
        """The log from byte offset `since` (a mark()) on."""
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, *, since, timeout=10.0):
        """Waits until the regex (re.M) matches the log after the mark `since`
        and returns the match; fails with the log tail when `timeout` passes.
        `since=0` only for lines written at start-up (say so at the call)."""
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log(since)), timeout,
                          lambda: f"a log line matching {pattern!r} after byte {since}; "
                                  f"the log from there:\n{self.log(since)[-3000:]}")

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends `sig`, waits (bounded), SIGKILLs if needed; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def sanitizer_reports(self):
        """Lines in which ASan, LSan or UBSan reported a problem (sanitizer builds)."""
        return [l for l in self.log().splitlines()
                if "Sanitizer" in l and "ERROR" in l or "runtime error:" in l]

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


# --------------------------------------------------------------------------
# Raw MQTT 3.1.1 packets

def enc_len(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def enc_str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + enc_len(len(body)) + body


def connect(client_id="", clean=True, keepalive=60, will=None, username=None, password=None,
            level=4, name="MQTT", flags=None):
    """CONNECT; `will` is (topic, payload, qos, retain); `flags` overrides the
    computed flag byte (for malformed cases)."""
    f = 0x02 if clean else 0
    payload = enc_str(client_id)
    if will is not None:
        wt, wp, wq, wr = will
        f |= 0x04 | (wq << 3) | (0x20 if wr else 0)
        payload += enc_str(wt) + enc_str(wp)
    if username is not None:
        f |= 0x80
        payload += enc_str(username)
    if password is not None:
        f |= 0x40
        payload += enc_str(password)
    if flags is not None:
        f = flags
    body = enc_str(name) + bytes([level, f]) + keepalive.to_bytes(2, "big") + payload
    return packet(0x10, body)


def publish(topic, payload, qos=0, pid=None, dup=False, retain=False):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = enc_str(topic)
    if qos:
        body += (pid if pid is not None else 1).to_bytes(2, "big")
    body += payload.encode() if isinstance(payload, str) else bytes(payload)
    return packet(first, body)


def _id_packet(first, pid):
    return bytes([first, 2]) + pid.to_bytes(2, "big")


def puback(pid):
    return _id_packet(0x40, pid)


def pubrec(pid):
    return _id_packet(0x50, pid)


def pubrel(pid):
    return _id_packet(0x62, pid)


def pubcomp(pid):
    return _id_packet(0x70, pid)


def subscribe(pid, filters):
    body = pid.to_bytes(2, "big")
    for f, q in filters:
        body += enc_str(f) + bytes([q])
    return packet(0x82, body)


def unsubscribe(pid, filters):
    body = pid.to_bytes(2, "big")
    for f in filters:
        body += enc_str(f)
    return packet(0xA2, body)


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK_OK = b"\x20\x02\x00\x00"
CONNACK_OK_SESSION = b"\x20\x02\x01\x00"


class Raw:
    """One TCP connection speaking raw bytes."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n, timeout=5.0):
        """Exactly n bytes; raises TimeoutError / ConnectionError otherwise."""
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"got {buf!r} of {n} bytes")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                raise TimeoutError(f"got {buf!r} of {n} bytes") from None
            if not chunk:
                raise ConnectionError(f"closed after {buf!r} of {n} bytes")
            buf += chunk
        return buf

    def expect(self, data, timeout=5.0):
        got = self.recv_exact(len(data), timeout)
        assert got == data, f"expected {data.hex(' ')}, got {got.hex(' ')}"

    def recv_packet(self, timeout=5.0):
        """One whole packet as bytes (fixed header included)."""
        first = self.recv_exact(1, timeout)
        lb = b""
        while True:
            b = self.recv_exact(1, timeout)
            lb += b
            if not b[0] & 0x80:
                break
        n, mul = 0, 1
        for b in lb:
            n += (b & 0x7F) * mul
            mul *= 128
        return first + lb + self.recv_exact(n, timeout)

    def nothing_within(self, window):
        """True when no byte arrives (and no close) within `window` seconds."""
        r, _, _ = select.select([self.sock], [], [], window)
        return not r

    def read_until_close(self, timeout=5.0):
        """(every byte the peer sent until it closed, True) or (the bytes so
        far, False) when it is still open after `timeout`."""
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return data, False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return data, False
            except (ConnectionResetError, BrokenPipeError):
                return data, True
            if not chunk:
                return data, True
            data += chunk

    def closed_within(self, timeout=5.0):
        """True when the peer closes (EOF or reset) within timeout, discarding
        whatever bytes come first; False if still open."""
        return self.read_until_close(timeout)[1]

    def expect_close(self, data=b"", timeout=5.0):
        """The peer sends exactly `data` (default nothing) and closes within
        `timeout`."""
        got, closed = self.read_until_close(timeout)
        assert closed, f"still open after {timeout} s (got {got.hex(' ') or 'nothing'})"
        assert got == data, f"expected {data.hex(' ') or 'nothing'} then a close, " \
                            f"got {got.hex(' ') or 'nothing'}"

    def connect(self, client_id, clean=True, session_present=False, **kw):
        self.send(connect(client_id, clean=clean, **kw))
        self.expect(CONNACK_OK_SESSION if session_present else CONNACK_OK)
        return self

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def sigterm_with_acks_in_flight(d, cl, n):
    """SIGTERM while the records of cl's QoS 1 PUBLISHes 1..n are with the
    producer: every PUBACK comes before the close, the daemon exits 0 and
    says it waited for some of them (at most n). Returns the mark taken
    before the signal."""
    mark = d.mark()
    d.proc.send_signal(signal.SIGTERM)
    cl.expect_close(b"".join(puback(i) for i in range(1, n + 1)), timeout=30)
    assert d.stop(timeout=30) == 0
    m = d.wait_log(line(r"Terminated: stopping intake; waiting up to 10 s for (\d+) "
                        r"messages in flight to Kafka", level="info", regex=True), since=mark)
    assert 0 < int(m.group(1)) <= n, m.group(0)  # the flush had something to wait for
    return mark
